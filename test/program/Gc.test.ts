/**
 * Goal: `gc` as a user runs it (a spawned process) against the bucket a short `run` left: a dry run
 * changes nothing and says what a pass would delete; the pass then deletes exactly that, with the
 * run's retention flags read back from its root manifests, and the latest checkpoint still
 * verifies; bad flags exit 2 with one line, changing nothing.
 * Method: the filesystem store; its files are listed before and after each command.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { GcReport } from "../../src/services/GarbageCollector.js"
import type { InspectReport } from "../../src/workload/Inspect.js"
import { hasStackTrace, parseReport, quickRun, runCli, temporaryDirectory } from "./Cli.js"

/** Every object file of a filesystem store, with its size. */
const storeFiles = (root: string): ReadonlyArray<string> =>
  (fs.readdirSync(root, { recursive: true, withFileTypes: true }) as Array<fs.Dirent>)
    .filter((entry) => entry.isFile() && !path.join(entry.parentPath, entry.name).includes(`${path.sep}.tmp`))
    .map((entry) =>
      `${path.relative(root, path.join(entry.parentPath, entry.name))}:${
        fs.statSync(path.join(entry.parentPath, entry.name)).size
      }`
    )
    .sort()

const totalObjects = (report: GcReport) => Object.values(report.deleted).reduce((sum, tally) => sum + tally.objects, 0)

describe("CLI gc (filesystem store)", () => {
  it.scopedLive(
    "a dry run changes nothing; the pass deletes what it said, keeps the latest verifiable; bad flags exit 2",
    () =>
      Effect.gen(function*() {
        const parent = yield* temporaryDirectory("es3t-gc-")
        const store = path.join(parent, "store")
        const run = yield* runCli([
          "run",
          ...quickRun,
          "--dir",
          path.join(parent, "data"),
          "--store-dir",
          store,
          "--no-verify",
          "--retain-checkpoints",
          "1",
          "--retain-for",
          "0",
          "--json"
        ])
        assert.strictEqual(run.code, 0, run.stderr)
        const before = storeFiles(store)

        for (const bad of [["--min-age", "10parsecs"], ["--retain-checkpoints", "0"], ["--retain-for", "-5s"]]) {
          const refused = yield* runCli(["gc", "--store-dir", store, ...bad])
          assert.strictEqual(refused.code, 2, `${bad.join(" ")}: ${refused.stderr}`)
          assert.strictEqual(refused.stderr.trim().split("\n").length, 1, refused.stderr)
          assert.include(refused.stderr, bad[0]!)
          assert.strictEqual(refused.stdout, "")
        }
        assert.deepStrictEqual(storeFiles(store), before, "bad input changed the store")

        const dry = yield* runCli(["gc", "--store-dir", store, "--dry-run", "--min-age", "0", "--json"])
        assert.strictEqual(dry.code, 0, dry.stderr)
        assert.isFalse(hasStackTrace(dry.stderr), dry.stderr)
        const dryReport = parseReport<GcReport>(dry)
        assert.isTrue(dryReport.dryRun)
        assert.strictEqual(
          dryReport.policy.retainCheckpointsMin,
          1,
          "the run's --retain-checkpoints, read from its root manifests"
        )
        assert.strictEqual(dryReport.policy.retainForMs, 0)
        assert.isAbove(dryReport.expiredNow.length, 0)
        assert.isAbove(totalObjects(dryReport), 0)
        assert.deepStrictEqual(storeFiles(store), before, "a dry run changed the store")

        const text = yield* runCli(["gc", "--store-dir", store, "--dry-run", "--min-age", "0"])
        assert.strictEqual(text.code, 0, text.stderr)
        assert.include(text.stdout, "a pass would delete")

        const pass = yield* runCli(["gc", "--store-dir", store, "--min-age", "0", "--json"])
        assert.strictEqual(pass.code, 0, pass.stderr)
        const passReport = parseReport<GcReport>(pass)
        assert.deepStrictEqual(passReport.deleted, dryReport.deleted)
        assert.deepStrictEqual(passReport.expiredNow, dryReport.expiredNow)
        assert.strictEqual(storeFiles(store).length, before.length - totalObjects(dryReport))

        const verify = yield* runCli(["verify", "--store-dir", store])
        assert.strictEqual(verify.code, 0, verify.stderr)
        const inspected = parseReport<InspectReport>(yield* runCli(["inspect", "--store-dir", store, "--json"]))
        assert.deepStrictEqual(
          inspected.checkpoints.filter((row) => row.expired === true).map((row) => row.checkpoint),
          passReport.expiredNow
        )
      }),
    300_000
  )
})
