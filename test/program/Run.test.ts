/**
 * Goal: `run` does what the issue promises, tested as a user runs it (a spawned process) against the
 * embedded filesystem store: a clean run ends with exit 0, its shutdown within the deadline, no
 * lease or fiber left, the lock released and every acknowledged insert found by verify; under each
 * fault it still exits within the deadline with a report that says what happened; SIGTERM during
 * the run shuts down gracefully, a second signal stops at once; `inspect` and `verify` read the
 * bucket the run left; a second `run` against a bucket that a live run holds is refused.
 * Method: short runs (see Cli.quickRun); signals are sent when a line appears on stderr.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { type RunReport, RunReport as RunReportSchema } from "../../src/cli/Report.js"
import { CheckpointNumber } from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import type * as Manifest from "../../src/domain/Manifest.js"
import { keyToSegments } from "../../src/layers/FileObjectStore.js"
import type { InspectReport } from "../../src/workload/Inspect.js"
import type { CheckpointVerification } from "../../src/workload/Verify.js"
import {
  hasStackTrace,
  parseReport,
  quick,
  quickManyRequests,
  quickRun,
  quickStalled,
  runCli,
  start,
  temporaryDirectory
} from "./Cli.js"

/** What every run must satisfy, faults or not: the exit rule, checked field by field. */
export const assertBoundedShutdown = (report: RunReport, label: string) => {
  const shutdown = report.shutdown
  assert.isTrue(shutdown.returned, `${label}: shutdown returned`)
  assert.isTrue(shutdown.metDeadline, `${label}: deadline met (${shutdown.durationMs} of ${shutdown.deadlineMs} ms)`)
  assert.isAtMost(shutdown.durationMs, shutdown.deadlineMs, label)
  assert.strictEqual(shutdown.leasesHeld, 0, label)
  assert.strictEqual(shutdown.fibersAlive, 0, label)
  assert.isAbove(report.writes, 0, label)
  assert.isAbove(report.inserts.acknowledged, 0, label)
}

/** Runs the CLI with `--json` and checks the exit rule: 0 exactly when the report says ok. */
export const runJson = (args: ReadonlyArray<string>, env?: Record<string, string>) =>
  Effect.gen(function*() {
    const result = yield* runCli([...args, "--json"], env === undefined ? {} : { env })
    assert.isFalse(hasStackTrace(result.stderr), result.stderr)
    const report = parseReport(result)
    // Every report a run prints decodes against the published Schema (docs/report.schema.json).
    Schema.decodeUnknownSync(RunReportSchema)(report)
    assert.strictEqual(result.code, report.ok ? 0 : 1, `${result.stderr}\n${JSON.stringify(report.problems)}`)
    return { result, report }
  })

describe.concurrent("CLI run (filesystem store)", () => {
  it.scopedLive("a clean run verifies, and inspect and verify read the bucket it left", () =>
    Effect.gen(function*() {
      const parent = yield* temporaryDirectory("es3t-run-")
      const dataDirectory = path.join(parent, "data")
      const { report, result } = yield* runJson(["run", ...quickRun, "--dir", dataDirectory])
      assert.strictEqual(result.code, 0, result.stderr)
      assertBoundedShutdown(report, "clean")
      // "none": a periodic checkpoint that ran after the writers stopped already covered everything.
      assert.include(
        ["completed", "none"],
        report.shutdown.finalCheckpoint,
        report.shutdown.finalCheckpointDetail ?? ""
      )
      assert.strictEqual(report.shutdown.dirtyPartsLeft, 0)
      assert.isTrue(report.shutdown.lockReleased)
      assert.deepStrictEqual(report.shutdown.cutWaits, [])
      assert.strictEqual(report.inserts.failed, 0)
      assert.strictEqual(report.inserts.acknowledged, report.inserts.attempted)
      assert.isAtLeast(report.checkpoints.completed, 1)
      if (report.shutdown.finalCheckpoint === "completed") {
        assert.strictEqual(report.checkpoints.last, report.shutdown.finalCheckpointNumber)
      }
      assert.isAbove(report.bytesUploaded, 0)
      assert.strictEqual(report.wal.archivedThrough, report.wal.endLsn)
      assert.isTrue(report.verify.ran)
      assert.isTrue(report.verify.ok)
      assert.strictEqual(report.verify.mode, "every-acknowledged")
      assert.strictEqual(report.verify.pagesChecked, 2 * 256)
      assert.strictEqual(report.verify.mismatches, 0)
      assert.isAbove(report.verify.pagesRequired, 0)
      // The default store lives beside the data directory, and the data directory is ours now.
      const storeDirectory = `${dataDirectory}-bucket`
      assert.isTrue(fs.existsSync(path.join(dataDirectory, "control.json")))
      // inspect writes nothing to the store, and verify nothing but its reader lease, which it
      // deletes: every object stays exactly as it was, name, size and modification time.
      const storeState = () =>
        fs.readdirSync(storeDirectory, { recursive: true }).map(String).filter((name) =>
          !name.startsWith(".tmp") && fs.statSync(path.join(storeDirectory, name)).isFile()
        ).sort().map((name) => {
          const info = fs.statSync(path.join(storeDirectory, name))
          return `${name} ${info.size} ${info.mtimeMs}`
        })
      const storeBefore = storeState()
      const inspected = yield* runCli(["inspect", "--store-dir", storeDirectory, "--json"])
      assert.strictEqual(inspected.code, 0, inspected.stderr)
      const inspectReport = parseReport<InspectReport>(inspected)
      assert.strictEqual(inspectReport.lock, null)
      const last = inspectReport.checkpoints.filter((row) => row.complete).at(-1)
      assert.strictEqual(last?.checkpoint, report.checkpoints.last, JSON.stringify(inspectReport.checkpoints))
      assert.strictEqual(last?.parts, 4)
      assert.isAbove(inspectReport.walSegments, 0)
      const table = yield* runCli(["inspect", "--store-dir", storeDirectory])
      assert.include(table.stdout, "complete")
      // The run's own verify left an empty `leases` directory; verify's lease makes it again.
      fs.rmSync(path.join(storeDirectory, "leases"), { recursive: true, force: true })
      const verified = yield* runCli(["verify", "--store-dir", storeDirectory, "--json"])
      assert.strictEqual(verified.code, 0, verified.stderr)
      const verifyReport = parseReport<CheckpointVerification>(verified)
      assert.isTrue(verifyReport.ok)
      assert.strictEqual(verifyReport.partsChecked, 4)
      assert.strictEqual(verifyReport.checkpoint, report.checkpoints.last)
      assert.deepStrictEqual(storeState(), storeBefore)
      // verify held a reader lease while it read (its directory is there), and deleted it.
      assert.deepStrictEqual(fs.readdirSync(path.join(storeDirectory, "leases")), [])
      // A corrupted part object is found by verify (exit 1, one line naming it). The object is one
      // the last checkpoint references: a checkpoint that timed out under load may leave stray
      // objects in the bucket that no manifest names, and corrupting one of those changes nothing.
      const layout = KeyLayout.make("")
      const objectFile = (key: string): string => {
        const mapped = keyToSegments(key)
        if ("problem" in mapped) throw new Error(mapped.problem)
        return path.join(storeDirectory, ...mapped.segments)
      }
      const readJson = (key: string): unknown => JSON.parse(fs.readFileSync(objectFile(key), "utf8"))
      const lastCheckpoint = CheckpointNumber.make(report.checkpoints.last)
      const root = readJson(KeyLayout.checkpointKey(layout, lastCheckpoint)) as Manifest.CheckpointManifest
      const fileEntry = root.files.find((entry) => entry.partCount > 0)
      assert.isDefined(fileEntry, JSON.stringify(root))
      const fileManifest = readJson(
        KeyLayout.fileManifestKey(layout, fileEntry.manifestCheckpoint, fileEntry.file, fileEntry.manifestSha256)
      ) as Manifest.FileManifest
      const entry = fileManifest.parts[0]
      assert.isDefined(entry)
      const [part, holder, sha256] = entry
      const partFile = objectFile(KeyLayout.partKey(layout, holder, fileEntry.file, part, sha256))
      const bytes = fs.readFileSync(partFile)
      bytes[100] = (bytes[100] ?? 0) ^ 0xff
      fs.writeFileSync(partFile, bytes)
      const corrupted = yield* runCli(["verify", "--store-dir", storeDirectory])
      assert.strictEqual(corrupted.code, 1, corrupted.stderr)
      assert.include(corrupted.stdout, "FAILED")
      assert.isFalse(hasStackTrace(corrupted.stderr))
    }), 240_000)

  const faultCases: ReadonlyArray<[string, ReadonlyArray<string>, (report: RunReport) => void]> = [
    ["stall-at-shutdown", ["--fault", "stall-at-shutdown"], (report) => {
      assert.notStrictEqual(report.shutdown.finalCheckpoint, "completed")
      assert.isAbove(report.faults?.injected["stall"] ?? 0, 0)
    }],
    ["stall-after", ["--fault", "stall-after=600ms"], (report) => {
      assert.notStrictEqual(report.shutdown.finalCheckpoint, "completed")
      assert.isAbove(report.faults?.injected["stall"] ?? 0, 0)
    }],
    ["error-rate", ["--fault", "error-rate=0.3"], (report) => {
      assert.isAbove(report.faults?.injected["error"] ?? 0, 0)
    }],
    ["latency", ["--fault", "latency=20ms"], (report) => {
      assert.isAbove(report.faults?.injected["latency"] ?? 0, 0)
    }],
    ["fail-task=WritePart (the #373 shape)", ["--fault", "fail-task=WritePart"], (report) => {
      assert.notStrictEqual(report.shutdown.finalCheckpoint, "completed")
      assert.isAbove(report.faults?.injected["permanent"] ?? 0, 0)
    }]
  ]
  for (const [name, faultArgs, check] of faultCases) {
    it.live(`under --fault ${name} it exits within the deadline and says what happened`, () =>
      Effect.gen(function*() {
        const stalls = faultArgs.some((arg) => arg.startsWith("stall") || arg.startsWith("fail-task"))
        const runArgs = name === "error-rate" ? quickManyRequests : stalls ? quickStalled : quickRun
        const { report, result } = yield* runJson(["run", ...runArgs, ...faultArgs])
        assertBoundedShutdown(report, name)
        assert.deepStrictEqual(report.settings.faults, faultArgs.slice(1))
        check(report)
        // Verify restores without the faults and requires every insert below the archived WAL.
        assert.isTrue(report.verify.ran, JSON.stringify(report.verify))
        assert.strictEqual(report.verify.mode, "archived-wal")
        assert.isTrue(report.verify.ok, JSON.stringify(report.verify.examples))
        assert.strictEqual(result.code, 0, result.stderr)
      }), 150_000)
  }

  it.scopedLive("SIGTERM during the run shuts down gracefully; the report says so", () =>
    Effect.gen(function*() {
      const running = yield* start(["run", ...quick({ duration: "120s" }), "--json"])
      yield* running.waitForStderr(/writes\/s/)
      yield* running.kill("SIGTERM")
      const result = yield* running.result
      const report = parseReport(result)
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(report.interruptedBy, "SIGTERM")
      assert.isBelow(report.elapsedMs, 120_000)
      assertBoundedShutdown(report, "SIGTERM")
      assert.include(
        ["completed", "none"],
        report.shutdown.finalCheckpoint,
        report.shutdown.finalCheckpointDetail ?? ""
      )
      assert.isFalse(report.verify.ran)
      assert.include(report.verify.skipped ?? "", "SIGTERM")
      assert.include(result.stderr, "SIGTERM received")
    }), 150_000)

  it.scopedLive(
    "a second signal stops at once; the lock it leaves is taken over with --take-over",
    () =>
      Effect.gen(function*() {
        const parent = yield* temporaryDirectory("es3t-kill-")
        const storeDirectory = path.join(parent, "bucket")
        // A stalled bucket and a long deadline: the graceful shutdown would take 20 s.
        // --dir inside the test's directory: a process killed at once cannot remove its own.
        const running = yield* start([
          "run",
          ...quick({ duration: "60s", deadline: "20s" }),
          "--dir",
          path.join(parent, "data"),
          "--store-dir",
          storeDirectory,
          "--fault",
          "stall-at-shutdown"
        ])
        yield* running.waitForStderr(/writes\/s/)
        yield* running.kill("SIGINT")
        yield* running.waitForStderr(/SIGINT received/)
        const signalledAt = performance.now()
        yield* running.kill("SIGTERM")
        const result = yield* running.result
        assert.strictEqual(result.signal, "SIGTERM", result.stderr)
        assert.isBelow(performance.now() - signalledAt, 5_000)
        // The killed run left its lock: a new run is refused, and told how to proceed.
        const refused = yield* runCli(["run", ...quickRun, "--store-dir", storeDirectory])
        assert.strictEqual(refused.code, 2, refused.stderr)
        assert.include(refused.stderr, "--take-over")
        const takeOver = yield* runJson(["run", ...quickRun, "--store-dir", storeDirectory, "--take-over"])
        assert.strictEqual(takeOver.result.code, 0, takeOver.result.stderr)
        assert.isTrue(takeOver.report.verify.ok)
        assert.isTrue(takeOver.report.shutdown.lockReleased)
      }),
    240_000
  )

  it.scopedLive(
    "a second run against a bucket that a live run holds is refused, changing nothing",
    () =>
      Effect.gen(function*() {
        const parent = yield* temporaryDirectory("es3t-two-")
        const storeDirectory = path.join(parent, "bucket")
        const first = yield* start(["run", ...quick({ duration: "60s" }), "--store-dir", storeDirectory, "--json"])
        yield* first.waitForStderr(/writes\/s/)
        const secondDirectory = path.join(parent, "second")
        const second = yield* runCli(["run", ...quickRun, "--store-dir", storeDirectory, "--dir", secondDirectory])
        assert.strictEqual(second.code, 2, second.stderr)
        const lines = second.stderr.trim().split("\n").filter((line) => !line.includes("writes/s"))
        assert.match(lines.at(-1) ?? "", /locked/)
        assert.isFalse(hasStackTrace(second.stderr))
        assert.strictEqual(second.stdout, "")
        assert.isFalse(fs.existsSync(secondDirectory), "the refused run removed the data directory it had created")
        // The live run is untouched: it still shuts down cleanly and verifies.
        yield* first.kill("SIGTERM")
        const firstResult = yield* first.result
        assert.strictEqual(firstResult.code, 0, firstResult.stderr)
        const report = parseReport(firstResult)
        assert.isTrue(report.shutdown.lockReleased)
      }),
    150_000
  )
})
