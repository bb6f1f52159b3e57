/**
 * Goal: two processes never write one data directory. A second `run --dir D` while a first runs on
 * D is refused with one line naming the process that holds it, exit 2, and changes nothing: the
 * first run still shuts down cleanly and releases its locks. Method: two spawned
 * CLI processes on one directory (the first started with a long duration, stopped by SIGTERM).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { hasStackTrace, parseReport, quick, quickRun, runCli, start, temporaryDirectory } from "./Cli.js"

describe("CLI run: one process per data directory", () => {
  it.scopedLive(
    "a second run on the data directory of a live run is refused with DirectoryLocked, changing nothing",
    () =>
      Effect.gen(function*() {
        const parent = yield* temporaryDirectory("es3t-dir-")
        const dataDirectory = path.join(parent, "data")
        const storeDirectory = path.join(parent, "bucket")
        const first = yield* start([
          "run",
          ...quick({ duration: "60s" }),
          "--dir",
          dataDirectory,
          "--store-dir",
          storeDirectory,
          "--json"
        ])
        yield* first.waitForStderr(/writes\/s/)
        const instanceOf = () =>
          (JSON.parse(fs.readFileSync(path.join(dataDirectory, "control.json"), "utf8")) as { instanceId: string })
            .instanceId
        const before = instanceOf()
        const second = yield* runCli(["run", ...quickRun, "--dir", dataDirectory, "--store-dir", storeDirectory])
        assert.strictEqual(second.code, 2, second.stderr)
        const lines = second.stderr.trim().split("\n").filter((line) => !line.includes("writes/s"))
        assert.match(lines.at(-1) ?? "", /in use by process \d+/)
        assert.isFalse(hasStackTrace(second.stderr))
        assert.strictEqual(second.stdout, "")
        assert.strictEqual(instanceOf(), before)
        yield* first.kill("SIGTERM")
        const firstResult = yield* first.result
        assert.strictEqual(firstResult.code, 0, firstResult.stderr)
        const report = parseReport(firstResult)
        assert.isTrue(report.shutdown.lockReleased)
        assert.isFalse(fs.existsSync(path.join(dataDirectory, ".directory.lock")), "the lock file went with the run")
      }),
    150_000
  )
})
