/**
 * Goal: the close's log line reads as a sentence: how long, the final checkpoint, the WAL, the lock,
 * then whatever went wrong; and the shutdown's margins stay inside the deadline they serve.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Shutdown from "../../src/internal/shutdown.js"
import type { ShutdownReport } from "../../src/layers/Storage.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"

const clean: ShutdownReport = {
  durationMs: 812,
  deadlineMs: 15_000,
  metDeadline: true,
  finalCheckpoint: { outcome: "completed", checkpoint: 41 },
  dirtyPartsLeft: 0,
  tasks: { drained: 3, interrupted: 0, aborted: 0 },
  leasesHeld: 0,
  fibersAlive: 0,
  wal: { archivedThrough: 123456, endLsn: 123456, localOnly: undefined },
  lock: "released",
  cutWaits: []
}

describe("shutdown", () => {
  it("a clean close is one line", () => {
    assert.strictEqual(
      Shutdown.describeShutdown(clean),
      "storage closed in 812ms: final checkpoint 41 completed, WAL archived through 123456, lock released"
    )
  })

  it("a cut close says what was cut and what is only local", () => {
    const cut: ShutdownReport = {
      ...clean,
      durationMs: 15_200,
      metDeadline: false,
      finalCheckpoint: { outcome: "timed-out", detail: "not committed within 9000 ms" },
      dirtyPartsLeft: 2,
      tasks: { drained: 0, interrupted: 1, aborted: 4 },
      wal: { archivedThrough: 100, endLsn: 900, localOnly: { fromLsn: 100, toLsn: 900 } },
      lock: "failed"
    }
    assert.strictEqual(
      Shutdown.describeShutdown(cut),
      "storage closed in 15.2s (past its 15s deadline): final checkpoint timed out (not committed within 9000 ms), " +
        "WAL archived through 100 (100 to 900 only in the local WAL), lock not released (it expires after its lease), " +
        "2 dirty part(s) left for the next start, 1 request(s) interrupted, 4 task(s) aborted"
    )
  })

  it("the reserves after the lock and after marking clean fit in the smallest deadline StorageConfig accepts", () => {
    for (const shutdownDeadlineMs of [10, 100, 1_500, StorageConfig.defaults.shutdownDeadlineMs]) {
      const config = { ...StorageConfig.defaults, shutdownDeadlineMs }
      assert.isAtMost(
        Shutdown.reserveAfterLockMs(config) + Shutdown.reserveAfterMarkCleanMs(config),
        Math.ceil(shutdownDeadlineMs * 0.15) + 1
      )
      assert.isAtMost(StorageConfig.daemonStopBoundMs(config), shutdownDeadlineMs / 10)
    }
  })
})
