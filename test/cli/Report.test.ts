/**
 * Goal: the exit decision is exactly the rule (shutdown within its deadline, no lease, no
 * fiber, verify without mismatch) and the report carries the fields the README documents.
 */
import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Report from "../../src/cli/Report.js"

const shutdown: Report.ShutdownSection = {
  returned: true,
  durationMs: 800,
  deadlineMs: 15_000,
  metDeadline: true,
  finalCheckpoint: "completed",
  finalCheckpointNumber: 4,
  finalCheckpointDetail: null,
  dirtyPartsLeft: 0,
  leasesHeld: 0,
  fibersAlive: 0,
  lockReleased: true,
  lock: "released",
  tasks: { drained: 3, interrupted: 0, aborted: 0 },
  cutWaits: [],
  writersInterrupted: 0
}

const verify: Report.VerifySection = {
  ...Report.verifySkipped("x"),
  ran: true,
  skipped: null,
  ok: true,
  mode: "every-acknowledged",
  pagesChecked: 8192,
  pagesRequired: 8000
}

const facts = {
  interruptedBy: null,
  settings: {
    durationMs: 15_000,
    writers: 8,
    files: 4,
    pagesPerFile: 2048,
    pageBytes: 8192,
    checkpointIntervalMs: 5_000,
    s3Workers: 8,
    localBudgetBytes: 64 * 1024 * 1024,
    shutdownDeadlineMs: 15_000,
    walSegmentBytes: 1024 * 1024,
    store: "file:///tmp/b",
    dataDirectory: "/tmp/d",
    faults: []
  },
  elapsedMs: 15_000,
  counters: { attempted: 10, acknowledged: 9, failed: 1, failures: { PartLeaseTimeout: 1 }, bytesWritten: 10 * 8192 },
  pageBytes: 8192,
  wal: { archivedThrough: 100, endLsn: 200, localOnly: null },
  checkpoints: { completed: 3, failed: 0, last: 4 },
  bytesUploaded: 1234,
  faults: null,
  shutdown,
  verify
}

describe("Report", () => {
  it("passes a clean run and carries the documented fields", () => {
    const report = Report.make(facts)
    assert.isTrue(report.ok)
    assert.strictEqual(report.exitCode, 0)
    assert.strictEqual(report.writes, 10)
    assert.strictEqual(report.inserts.acknowledged, 9)
    assert.strictEqual(report.wal.archivedThrough, 100)
    assert.strictEqual(report.checkpoints.last, 4)
    assert.strictEqual(report.shutdown.finalCheckpoint, "completed")
    assert.isTrue(report.shutdown.lockReleased)
    assert.strictEqual(report.verify.pagesChecked, 8192)
    assert.include(Report.summary(report), "result: ok")
    // A JSON round trip keeps it whole (no undefined, no functions).
    assert.deepStrictEqual(JSON.parse(JSON.stringify(report)), report)
  })

  it("fails on each broken rule, naming it", () => {
    const cases: Array<[Partial<Report.ShutdownSection>, Partial<Report.VerifySection>, string]> = [
      [{ metDeadline: false, durationMs: 16_000 }, {}, "over its deadline"],
      [{ leasesHeld: 2 }, {}, "lease"],
      [{ fibersAlive: 1 }, {}, "fiber"],
      [{}, {
        ok: false,
        mismatches: 3,
        examples: [{
          file: 0,
          page: 1,
          required: 5,
          attemptedMax: 6,
          found: "zeros",
          problem: "zeros, but insert 5 was acknowledged"
        }]
      }, "3 page(s)"],
      [{}, { ran: false, ok: false, skipped: "restore failed: boom" }, "restore failed"]
    ]
    for (const [shutdownPatch, verifyPatch, fragment] of cases) {
      const report = Report.make({
        ...facts,
        shutdown: { ...shutdown, ...shutdownPatch },
        verify: { ...verify, ...verifyPatch }
      })
      assert.isFalse(report.ok, fragment)
      assert.strictEqual(report.exitCode, 1)
      assert.include(report.problems.join("; "), fragment)
    }
    const notReturned = Report.make({ ...facts, shutdown: Report.shutdownNotReturned(17_000, 15_000, [], 2) })
    assert.include(notReturned.problems[0] ?? "", "did not return")
    // A stalled final checkpoint alone is no failure: the deadline was met and nothing leaked.
    const stalled = Report.make({
      ...facts,
      shutdown: {
        ...shutdown,
        finalCheckpoint: "timed-out",
        finalCheckpointDetail: "stall",
        lockReleased: false,
        lock: "failed"
      }
    })
    assert.isTrue(stalled.ok)
  })

  it("says in words when acknowledged data is only local and when the lock was left, and what to do", () => {
    const clean = Report.summary(Report.make(facts))
    assert.match(
      clean,
      /^result: ok: shut down within its deadline, and every acknowledged insert was found in the bucket$/m
    )
    const report = Report.make({
      ...facts,
      wal: { archivedThrough: 100, endLsn: 300, localOnly: { fromLsn: 100, toLsn: 300 } },
      shutdown: {
        ...shutdown,
        finalCheckpoint: "timed-out",
        finalCheckpointDetail: "stall",
        lockReleased: false,
        lock: "failed",
        dirtyPartsLeft: 3
      }
    })
    assert.isTrue(report.ok)
    const text = Report.summary(report)
    assert.notMatch(text, /^result: ok:/m)
    assert.match(text, /^result: ok \(shut down within its deadline, nothing leaked\), with what to do next:$/m)
    assert.match(
      text,
      /^  - acknowledged inserts are only in the local WAL \(LSN 100 to 300, 200B\), not in the bucket: keep \/tmp\/d and start from it again \(--dir\)/m
    )
    assert.match(text, /^  - the bucket's lock was left behind \(failed\): .* or pass --take-over/m)
    assert.match(text, /^  - 3 part\(s\) changed since the last checkpoint/m)
    // A temporary data directory is removed at exit: the summary says the local-only inserts are lost.
    assert.match(
      Report.summary(report, { dataDirectoryRemoved: true }),
      /^  - acknowledged inserts are only in the local WAL .*, and the data directory was a temporary one, removed at exit: they are lost; give --dir/m
    )
  })

  it("groups the cut waits by who waits on what, most first", () => {
    const wait = (id: number, waiter: string, on: string) => ({
      id,
      fiber: `#${id}`,
      waiter,
      on,
      sinceMs: 1_796_000_000_000 + id
    })
    const waits = [
      wait(1, "TaskHandle.await", "task 12 WritePart users#3"),
      wait(2, "Checkpointer.checkpoint 7", "task 14 WritePart users#4"),
      wait(3, "TaskHandle.await", "task 13 WritePart users#5")
    ]
    assert.deepStrictEqual(Report.groupWaits(waits), [
      "2 × TaskHandle.await on task N WritePart usersN",
      "1 × Checkpointer.checkpoint N on task N WritePart usersN"
    ])
    const text = Report.summary(Report.make({ ...facts, shutdown: { ...shutdown, cutWaits: waits } }))
    assert.include(
      text,
      "3 wait(s) cut:\n  2 × TaskHandle.await on task N WritePart usersN\n  1 × Checkpointer.checkpoint N"
    )
    assert.notInclude(text, "1796000000001")
  })

  it("publishes the report's JSON Schema in docs/ (generated from the Schema) and a report decodes against the Schema", () => {
    const generated = `${JSON.stringify(Report.runReportJsonSchema(), null, 2)}\n`
    const file = path.join(import.meta.dirname, "..", "..", "docs", "report.schema.json")
    if (process.env["UPDATE_REPORT_SCHEMA"] === "1") fs.writeFileSync(file, generated)
    assert.strictEqual(
      fs.readFileSync(file, "utf8"),
      generated,
      "docs/report.schema.json is stale: run UPDATE_REPORT_SCHEMA=1 npx vitest run test/cli/Report.test.ts"
    )
    const report = Report.make({
      ...facts,
      faults: { asked: ["latency=5ms"], injected: { latency: 3 }, stalledAtEnd: 0 }
    })
    assert.deepStrictEqual(Schema.decodeUnknownSync(Report.RunReport)(JSON.parse(JSON.stringify(report))), report)
    assert.throws(() =>
      Schema.decodeUnknownSync(Report.RunReport)({
        ...report,
        shutdown: { ...report.shutdown, finalCheckpoint: "maybe" }
      })
    )
  })
})
