/**
 * Goal: every property of the simulation can fail, and says why. Method: a run record that
 * satisfies every property, then one small change per property (a late shutdown, a fiber left
 * alive, a lost acknowledged insert, a foreign byte, a missing object, a stale commit, ...), each
 * of which must be reported by exactly that property.
 */
import { assert, describe, it } from "@effect/vitest"
import type { AuditedCheckpoint, InsertRecord, RunRecord, ShutdownRecord } from "./Harness.js"
import { insertValue, slotKey } from "./Harness.js"
import { judge, type PropertyName } from "./Properties.js"
import { dataModel } from "./Schedule.js"

const partBytes = (inserts: ReadonlyArray<InsertRecord>): Uint8Array => {
  const bytes = new Uint8Array(dataModel.partSizeBytes)
  for (const insert of inserts) bytes.set(insert.value, insert.slot.index * dataModel.slotBytes)
  return bytes
}

const insert = (id: number, index: number, lsn: number, acked = true): InsertRecord => ({
  id,
  slot: { file: 0, part: 0, index },
  value: insertValue(id),
  instance: "A",
  startedAtMs: id * 10,
  result: { applied: true, lsn, acked, error: undefined },
  endedAtMs: id * 10 + 1,
  appliedAtMs: id * 10 + 1
})

const shutdown = (instance: string): ShutdownRecord => ({
  instance,
  startedAtMs: 1_000,
  completedAtMs: 1_500,
  result: {
    metDeadline: true,
    durationMs: 500,
    archivedThroughLsn: 2_000,
    finalCheckpoint: 1,
    finalCheckpointTimedOut: false,
    problems: [],
    detail: "",
    reportedLastCheckpoint: 1,
    knownLatestCheckpoint: 1
  },
  diagnosisAtDeadline: undefined,
  completedLateAtMs: undefined,
  observation: { leasesHeld: 0, fibersAlive: 0, fibersAliveDetail: "", unresolvedTasks: 0, invariantProblems: [] }
})

const checkpointOf = (inserts: ReadonlyArray<InsertRecord>, walPosition: number): AuditedCheckpoint => ({
  checkpoint: 1,
  previous: 0,
  epoch: 1,
  instanceId: "iA",
  walPosition,
  slots: new Map(inserts.map((each) => [slotKey(each.slot), each.value]))
})

/** A run where everything went right: two acknowledged inserts, one checkpoint holding both. */
const healthy = (): RunRecord => {
  const inserts = [insert(0, 0, 0), insert(1, 1, 600)]
  return {
    system: "test",
    shutdownDeadlineMs: 1_000,
    readDeadlineMs: 1_000,
    schedule: {
      steps: [],
      shutdownAtMs: 1_000,
      interruptWorkloadAtShutdown: false,
      shutdownByScope: true,
      crashBeforeRestart: false,
      randomSeed: 0
    },
    instances: [{ label: "A", instanceId: "iA", epoch: 1, openedAtMs: 0, tookOverFrom: undefined }],
    inserts,
    reads: [{
      file: 0,
      part: 0,
      instance: "A",
      startedAtMs: 500,
      result: { bytes: partBytes(inserts), error: undefined },
      endedAtMs: 501
    }],
    checkpoints: [{
      instance: "A",
      startedAtMs: 100,
      stale: false,
      faultsActive: false,
      afterLoggedInsert: false,
      result: { completed: { checkpoint: 1, walPosition: 1_200 }, skipped: undefined, error: undefined },
      endedAtMs: 200
    }],
    invariantProblems: [],
    faults: [],
    shutdowns: [shutdown("A")],
    unfinishedWorkload: [],
    reopens: [
      {
        kind: "restart",
        instance: "A",
        instanceId: "iA",
        epoch: 1,
        crash: true,
        error: undefined,
        parts: [{ file: 0, part: 0, read: { bytes: partBytes(inserts), error: undefined } }],
        shutdown: shutdown("A")
      },
      {
        kind: "restore",
        instance: "R",
        instanceId: "iR",
        epoch: 2,
        crash: false,
        error: undefined,
        parts: [{ file: 0, part: 0, read: { bytes: partBytes(inserts), error: undefined } }],
        shutdown: shutdown("R")
      }
    ],
    crashes: [],
    archives: [],
    failedTakeOvers: [],
    rot: undefined,
    audit: { checkpoints: [checkpointOf(inserts, 1_200)], problems: [] },
    finalAudit: { checkpoints: [checkpointOf(inserts, 1_200)], problems: [] },
    trace: [],
    harnessErrors: []
  }
}

const violated = (
  record: RunRecord
): ReadonlyArray<PropertyName> => [...new Set(judge(record).map((violation) => violation.property))]

describe("Properties", () => {
  it("a healthy run violates nothing", () => {
    assert.deepStrictEqual(judge(healthy()), [])
  })

  it("shutdown-within-deadline: a shutdown that never completed, or completed late", () => {
    const hung = healthy()
    const first = hung.shutdowns[0]
    if (first === undefined) throw new Error("fixture")
    hung.shutdowns[0] = {
      ...first,
      completedAtMs: undefined,
      result: undefined,
      observation: undefined,
      diagnosisAtDeadline: "checkpointer: s3_queue_wait_for_location(576)"
    }
    assert.deepStrictEqual(violated(hung), ["shutdown-within-deadline"])
    assert.include(judge(hung)[0]?.detail ?? "", "s3_queue_wait_for_location(576)")
    const late = healthy()
    late.shutdowns[0] = { ...first, completedAtMs: 2_001 }
    assert.deepStrictEqual(violated(late), ["shutdown-within-deadline"])
  })

  it("quiescent-after-shutdown: a fiber alive, a lease held, a task unresolved, an operation still running", () => {
    for (
      const observation of [
        { leasesHeld: 0, fibersAlive: 1, fibersAliveDetail: "#7", unresolvedTasks: 0, invariantProblems: [] },
        { leasesHeld: 1, fibersAlive: 0, fibersAliveDetail: "", unresolvedTasks: 0, invariantProblems: [] },
        { leasesHeld: 0, fibersAlive: 0, fibersAliveDetail: "", unresolvedTasks: 2, invariantProblems: [] }
      ]
    ) {
      const record = healthy()
      const first = record.shutdowns[0]
      if (first === undefined) throw new Error("fixture")
      record.shutdowns[0] = { ...first, observation }
      assert.deepStrictEqual(violated(record), ["quiescent-after-shutdown"])
    }
    const running = healthy()
    running.unfinishedWorkload.push("lease f0#0 on A")
    assert.deepStrictEqual(violated(running), ["quiescent-after-shutdown"])
  })

  it("failures-reach-waiters: a timeout while the bucket answered at once; not under latency", () => {
    const record = healthy()
    record.faults.push({ atMs: 50, instance: "A", kind: "permanent" })
    record.checkpoints.push({
      instance: "A",
      startedAtMs: 300,
      stale: false,
      faultsActive: false,
      afterLoggedInsert: false,
      result: {
        completed: undefined,
        skipped: undefined,
        error: { tag: "CheckpointFailed", detail: "checkpoint 2 failed (TimedOut): not committed within 2000 ms" }
      },
      endedAtMs: 2_300
    })
    assert.deepStrictEqual(violated(record), ["failures-reach-waiters"])
    record.faults.push({ atMs: 60, instance: "A", kind: "latency" })
    assert.deepStrictEqual(violated(record), [])
    const healed = healthy()
    healed.faults.push({ atMs: 50, instance: "A", kind: "stall" }, { atMs: 100, instance: "*", kind: "heal" })
    const first = healed.shutdowns[0]
    if (first === undefined || first.result === undefined) throw new Error("fixture")
    healed.shutdowns[0] = { ...first, result: { ...first.result, finalCheckpointTimedOut: true } }
    assert.deepStrictEqual(violated(healed), ["failures-reach-waiters"])
  })

  it("waits-bounded: a read that outlived its deadline", () => {
    const record = healthy()
    const read = record.reads[0]
    if (read === undefined) throw new Error("fixture")
    read.endedAtMs = read.startedAtMs + 1_500
    assert.deepStrictEqual(violated(record), ["waits-bounded"])
  })

  it("part-state-invariants: any problem reported after a step", () => {
    const record = healthy()
    record.invariantProblems.push({ atMs: 10, instance: "A", problem: "f0#0: Evicting but dirty" })
    assert.deepStrictEqual(violated(record), ["part-state-invariants"])
  })

  it("reads-see-applied-writes: a read missing an earlier write, or returning bytes nobody wrote", () => {
    const missing = healthy()
    const read = missing.reads[0]
    if (read === undefined) throw new Error("fixture")
    read.result = { bytes: partBytes([missing.inserts[1] as InsertRecord]), error: undefined }
    assert.deepStrictEqual(violated(missing), ["reads-see-applied-writes"])
    const foreign = healthy()
    const bytes = partBytes(foreign.inserts)
    bytes[7 * dataModel.slotBytes] = 9
    const foreignRead = foreign.reads[0]
    if (foreignRead === undefined) throw new Error("fixture")
    foreignRead.result = { bytes, error: undefined }
    assert.deepStrictEqual(violated(foreign), ["reads-see-applied-writes"])
  })

  it("checkpoint-restores-acknowledged: an insert below the WAL position missing, a reported commit absent", () => {
    const record = healthy()
    const only = record.inserts[0] as InsertRecord
    record.audit = { checkpoints: [checkpointOf([only], 1_200)], problems: [] }
    assert.deepStrictEqual(violated(record), ["checkpoint-restores-acknowledged"])
    assert.include(judge(record)[0]?.detail ?? "", "insert 1")
    const unreported = healthy()
    unreported.audit = { checkpoints: [], problems: [] }
    assert.deepStrictEqual(violated(unreported), ["checkpoint-restores-acknowledged"])
  })

  it("checkpoint-restores-acknowledged: an insert logged at or after the WAL position may be absent", () => {
    const record = healthy()
    record.audit = { checkpoints: [checkpointOf([record.inserts[0] as InsertRecord], 600)], problems: [] }
    record.checkpoints.length = 0
    record.finalAudit = record.audit
    assert.deepStrictEqual(violated(record), [])
  })

  it("manifest-references-exist: any problem of the audit", () => {
    const record = healthy()
    record.audit = {
      checkpoints: record.audit?.checkpoints ?? [],
      problems: ["checkpoint 1 references data/1/f0/0-abc, which is missing"]
    }
    assert.deepStrictEqual(violated(record), ["manifest-references-exist"])
  })

  it("stale-writer-fenced: a stale commit, a non-Fenced failure on a healthy bucket, an epoch going back", () => {
    const committed = healthy()
    committed.checkpoints.push({
      instance: "A",
      startedAtMs: 300,
      stale: true,
      faultsActive: false,
      afterLoggedInsert: true,
      result: { completed: { checkpoint: 2, walPosition: 1_300 }, skipped: undefined, error: undefined },
      endedAtMs: 310
    })
    assert.include(violated(committed), "stale-writer-fenced")
    const wrongError = healthy()
    wrongError.checkpoints.push({
      instance: "A",
      startedAtMs: 300,
      stale: true,
      faultsActive: false,
      afterLoggedInsert: true,
      result: { completed: undefined, skipped: undefined, error: { tag: "CheckpointFailed", detail: "" } },
      endedAtMs: 310
    })
    assert.deepStrictEqual(violated(wrongError), ["stale-writer-fenced"])
    const faulty = healthy()
    faulty.checkpoints.push({
      instance: "A",
      startedAtMs: 300,
      stale: true,
      faultsActive: true,
      afterLoggedInsert: true,
      result: { completed: undefined, skipped: undefined, error: { tag: "CheckpointFailed", detail: "" } },
      endedAtMs: 310
    })
    assert.deepStrictEqual(violated(faulty), [])
    const backwards = healthy()
    const base = checkpointOf(backwards.inserts, 1_200)
    backwards.finalAudit = {
      checkpoints: [{ ...base, epoch: 2 }, { ...base, checkpoint: 2, previous: 1, epoch: 1 }],
      problems: []
    }
    assert.include(violated(backwards), "stale-writer-fenced")
  })

  it("restart-keeps-acknowledged: an acknowledged insert lost across a crash and restart", () => {
    const record = healthy()
    const restart = record.reopens[0]
    if (restart === undefined) throw new Error("fixture")
    record.reopens[0] = {
      ...restart,
      parts: [{ file: 0, part: 0, read: { bytes: partBytes([record.inserts[0] as InsertRecord]), error: undefined } }]
    }
    assert.deepStrictEqual(violated(record), ["restart-keeps-acknowledged"])
    const failed = healthy()
    failed.reopens[0] = { ...restart, error: "BucketLocked" }
    assert.deepStrictEqual(violated(failed), ["restart-keeps-acknowledged"])
  })

  it("restart-keeps-acknowledged: an insert never acknowledged may be lost", () => {
    const record = healthy()
    record.inserts[1] = insert(1, 1, 1_300, false)
    record.audit = { checkpoints: [checkpointOf([record.inserts[0] as InsertRecord], 1_200)], problems: [] }
    record.finalAudit = record.audit
    const restart = record.reopens[0]
    if (restart === undefined) throw new Error("fixture")
    record.reopens[0] = {
      ...restart,
      parts: [{ file: 0, part: 0, read: { bytes: partBytes([record.inserts[0] as InsertRecord]), error: undefined } }]
    }
    record.reads.length = 0
    assert.deepStrictEqual(violated(record).filter((name) => name === "restart-keeps-acknowledged"), [])
  })

  it("restart-keeps-acknowledged after WAL rot: only the last acknowledged record, flipped past the recorded durable end, may be cut", () => {
    const rotted = (recordedDurableLsn: number, later?: InsertRecord) => {
      const record = healthy()
      if (later !== undefined) record.inserts.push(later)
      record.audit = { checkpoints: [checkpointOf([record.inserts[0] as InsertRecord], 500)], problems: [] }
      record.finalAudit = record.audit
      record.reads.length = 0
      record.rot = "flipped a byte of wal/0000000000000000"
      record.rotWalRecord = { lsn: 600, recordedDurableLsn }
      const restart = record.reopens[0]
      if (restart === undefined) throw new Error("fixture")
      const kept = [record.inserts[0] as InsertRecord, ...(later === undefined ? [] : [later])]
      record.reopens[0] = {
        ...restart,
        parts: [{ file: 0, part: 0, read: { bytes: partBytes(kept), error: undefined } }]
      }
      return violated(record).filter((name) => name === "restart-keeps-acknowledged")
    }
    // Past the recorded end (a crash dropped the flush mark): indistinguishable from a torn write.
    assert.deepStrictEqual(rotted(600), [])
    assert.deepStrictEqual(rotted(0), [])
    // Below the recorded end, or with an acknowledged record after it: must be repaired or refused.
    assert.deepStrictEqual(rotted(1_136), ["restart-keeps-acknowledged"])
    assert.deepStrictEqual(rotted(600, insert(2, 2, 1_200)), ["restart-keeps-acknowledged"])
  })

  it("restart-keeps-acknowledged: a restart refused as taken over counts only after a take-over that never opened but claimed the bucket", () => {
    const takenOver = (options: { readonly attempted: boolean; readonly claimedBy: string }) => {
      const record = healthy()
      const restart = record.reopens[0]
      const first = record.audit?.checkpoints[0]
      if (restart === undefined || first === undefined) throw new Error("fixture")
      const claim = { ...first, checkpoint: 2, previous: 1, epoch: 2, instanceId: options.claimedBy }
      record.audit = { checkpoints: [first, claim], problems: [] }
      record.finalAudit = record.audit
      if (options.attempted) record.failedTakeOvers?.push({ label: "B", replacing: "A", atMs: 900 })
      record.reopens[0] = {
        ...restart,
        error:
          "StartupRefused: start-up refused (ForeignInstance): the bucket's latest checkpoint 2 was written by instance iB"
      }
      return violated(record).filter((name) => name === "restart-keeps-acknowledged")
    }
    assert.deepStrictEqual(takenOver({ attempted: true, claimedBy: "iB" }), [])
    assert.deepStrictEqual(takenOver({ attempted: false, claimedBy: "iB" }), ["restart-keeps-acknowledged"])
    assert.deepStrictEqual(takenOver({ attempted: true, claimedBy: "iA" }), ["restart-keeps-acknowledged"])
  })

  it("take-over-breaks-old-locks: a take-over refused by the lock of an instance opened before it; a newer holder may refuse it", () => {
    const refused = (holderLabel: string, error = "BucketLocked: the bucket is locked by instance ") => {
      const record = healthy()
      record.instances.push({ label: "C", instanceId: "iC", epoch: 3, openedAtMs: 950, tookOverFrom: "A" })
      const holder = record.instances.find((info) => info.label === holderLabel)
      record.failedTakeOvers?.push({
        label: "B",
        replacing: "A",
        atMs: 900,
        error: `${error}${holder?.instanceId} at epoch 1`
      })
      return violated(record).filter((name) => name === "take-over-breaks-old-locks")
    }
    assert.deepStrictEqual(refused("A"), ["take-over-breaks-old-locks"])
    assert.deepStrictEqual(refused("C"), [], "C opened after B's take-over began: a newer holder")
    assert.deepStrictEqual(refused("A", "ObjectStoreUnavailable: get \"lock\" "), [], "not refused by a lock")
  })

  it("report-counts-commits: figures that miss a commit the instance knows of, or its shutdown checkpoint", () => {
    const reporting = (reportedLastCheckpoint: number, knownLatestCheckpoint: number, finalCheckpoint?: number) => {
      const record = healthy()
      const first = record.shutdowns[0]
      if (first?.result === undefined) throw new Error("fixture")
      record.shutdowns[0] = {
        ...first,
        result: { ...first.result, reportedLastCheckpoint, knownLatestCheckpoint, finalCheckpoint }
      }
      return judge(record)
    }
    // A checkpoint interrupted right after its commit, not counted: what a CLI run reported once.
    const missed = reporting(0, 1, undefined)
    assert.deepStrictEqual(missed.map((violation) => violation.property), ["report-counts-commits"])
    assert.include(missed[0]?.detail ?? "", "report checkpoint 0 as the last committed, but it knows 1")
    assert.deepStrictEqual(
      reporting(1, 2, 2).filter((violation) => violation.property === "report-counts-commits").length,
      2,
      "the known commit and the shutdown checkpoint, each missed"
    )
    assert.deepStrictEqual(reporting(1, 1, undefined), [], "no shutdown checkpoint: nothing new to commit")
  })

  it("restart-keeps-acknowledged: a restart in the middle of the run may fail transiently only on a faulty network", () => {
    const failedRestart = (networkFaulty: boolean, error: string) => {
      const record = healthy()
      record.reopens.push({
        kind: "restart",
        instance: "A.2",
        instanceId: undefined,
        epoch: undefined,
        crash: true,
        error,
        networkFaulty,
        parts: [],
        shutdown: undefined
      })
      return violated(record).filter((name) => name === "restart-keeps-acknowledged")
    }
    const lost = "Error: open of A.2 failed: ObjectStoreUnavailable: get \"lock\": the response was lost"
    assert.deepStrictEqual(failedRestart(true, lost), [])
    assert.deepStrictEqual(failedRestart(false, lost), ["restart-keeps-acknowledged"])
    assert.deepStrictEqual(failedRestart(true, "Error: open of A.2 failed: WalCorrupt: …"), [
      "restart-keeps-acknowledged"
    ])
  })

  it("restore-from-bucket: an insert of the latest checkpoint, or acknowledged below the archive, missing", () => {
    const record = healthy()
    const restore = record.reopens[1]
    if (restore === undefined) throw new Error("fixture")
    record.reopens[1] = {
      ...restore,
      parts: [{ file: 0, part: 0, read: { bytes: new Uint8Array(dataModel.partSizeBytes), error: undefined } }]
    }
    assert.deepStrictEqual(violated(record), ["restore-from-bucket"])
  })

  it("restore-from-bucket: the ledger requires what the workload was told is archived, until a take-over began", () => {
    // Insert 1 is in no checkpoint and below no reported archive position: only the ledger knows.
    const record = healthy()
    const first = record.inserts[0] as InsertRecord
    record.audit = { checkpoints: [checkpointOf([first], 600)], problems: [] }
    record.finalAudit = record.audit
    record.checkpoints.length = 0
    const shutdownA = record.shutdowns[0]
    if (shutdownA === undefined || shutdownA.result === undefined) throw new Error("fixture")
    record.shutdowns[0] = {
      ...shutdownA,
      result: { ...shutdownA.result, archivedThroughLsn: 0, finalCheckpoint: undefined }
    }
    const restore = record.reopens[1]
    if (restore === undefined) throw new Error("fixture")
    record.reopens[1] = {
      ...restore,
      parts: [{ file: 0, part: 0, read: { bytes: partBytes([first]), error: undefined } }]
    }
    record.reads.length = 0
    assert.deepStrictEqual(violated(record), [])
    record.archives.push({ instance: "A", startedAtMs: 20, endedAtMs: 30, result: { error: undefined } })
    assert.deepStrictEqual(violated(record), ["restore-from-bucket"])
    assert.include(judge(record)[0]?.detail ?? "", "awaited WAL archive")
    // Archived only after another instance began taking A's bucket over: no longer a promise.
    record.instances.push({
      label: "B",
      instanceId: "iB",
      epoch: 2,
      openedAtMs: 40,
      tookOverFrom: "A",
      takeOverStartedAtMs: 25
    })
    assert.deepStrictEqual(violated(record), [])
  })

  it("fenced-stops-acknowledging: an acknowledgement after the writer was told it is fenced", () => {
    const record = healthy()
    record.checkpoints.push({
      instance: "A",
      startedAtMs: 300,
      stale: true,
      faultsActive: false,
      afterLoggedInsert: false,
      result: { completed: undefined, skipped: undefined, error: { tag: "Fenced", detail: "" } },
      endedAtMs: 310
    })
    const late = { ...insert(2, 2, 1_300), startedAtMs: 400, endedAtMs: 401 }
    record.inserts.push(late)
    assert.deepStrictEqual(violated(record).filter((name) => name === "fenced-stops-acknowledging"), [
      "fenced-stops-acknowledging"
    ])
    record.inserts[2] = { ...late, result: { applied: true, lsn: 1_300, acked: false, error: "Fenced" } }
    assert.deepStrictEqual(violated(record).filter((name) => name === "fenced-stops-acknowledging"), [])
  })

  it("crashes: a killed incarnation's unacknowledged insert may be lost; its acknowledged ones may not", () => {
    // A logs insert 1 at LSN 600 without acknowledging it and is killed; A.2 reuses the position.
    const record = healthy()
    const first = record.inserts[0] as InsertRecord
    record.inserts[1] = insert(1, 1, 600, false)
    record.instances.push({ label: "A.2", instanceId: "iA", epoch: 1, openedAtMs: 50, tookOverFrom: undefined })
    record.audit = { checkpoints: [checkpointOf([first], 1_200)], problems: [] }
    record.finalAudit = record.audit
    record.reads.length = 0
    const restart = record.reopens[0]
    const restore = record.reopens[1]
    if (restart === undefined || restore === undefined) throw new Error("fixture")
    const onlyFirst = [{ file: 0, part: 0, read: { bytes: partBytes([first]), error: undefined } }]
    record.reopens[0] = { ...restart, instance: "A.2", parts: onlyFirst }
    record.reopens[1] = { ...restore, parts: onlyFirst }
    assert.include(
      violated(record),
      "checkpoint-restores-acknowledged",
      "not killed: its LSN is below the checkpoint's position"
    )
    record.crashes.push({ instance: "A", atMs: 40, during: "running" })
    assert.deepStrictEqual(violated(record), [])
    // Acknowledged by the killed incarnation: the restart on the same directory must have it.
    record.inserts[1] = insert(1, 1, 600, true)
    record.audit = { checkpoints: [checkpointOf(record.inserts, 1_200)], problems: [] }
    record.finalAudit = record.audit
    assert.deepStrictEqual(violated(record), ["restart-keeps-acknowledged", "restore-from-bucket"])
  })

  describe("garbage collection", () => {
    const passResult = { error: undefined, deletedObjects: 2, expiredNow: [1], retained: [2], complete: true }
    const referencing = (checkpoint: AuditedCheckpoint, references: ReadonlyArray<string>): AuditedCheckpoint => ({
      ...checkpoint,
      references
    })
    const gcRun = (): RunRecord => {
      const record = healthy()
      const kept = referencing(checkpointOf(record.inserts, 1_200), ["data/0000000000000001/f0/0000000000-a"])
      return {
        ...record,
        schedule: { ...record.schedule, gc: { retainCheckpointsMin: 1, retainForMs: 0, writerGcIntervalMs: 0 } },
        gcPasses: [],
        gcAudits: [],
        restores: [],
        finalGc: {
          result: passResult,
          audit: {
            checkpoints: [kept],
            problems: [],
            expired: [],
            history: [kept],
            walSegmentBytes: 4_096,
            objects: [{ key: "data/0000000000000001/f0/0000000000-a", sizeBytes: 4_096 }, {
              key: "wal/0000000000000000-0000000000000001",
              sizeBytes: 1_300
            }]
          }
        }
      }
    }

    it("a healthy run with a pass and a restore violates nothing", () => {
      const record = gcRun()
      record.restores?.push({
        startedAtMs: 500,
        choice: { _tag: "Checkpoint", checkpoint: 1 },
        latencyMs: 0,
        endedAtMs: 600,
        result: {
          error: undefined,
          base: 1,
          walFromLsn: 1_200,
          walToLsn: 1_200,
          parts: [{ file: 0, part: 0, read: { bytes: partBytes(record.inserts), error: undefined } }]
        }
      })
      assert.deepStrictEqual(violated(record), [])
    })

    it("gc-keeps-retained: a committed checkpoint lacking an object, during the run or after the last pass", () => {
      const record = gcRun()
      record.gcAudits?.push({
        atMs: 300,
        audit: { checkpoints: [], problems: ["checkpoint 1 references data/x, which is gone"] }
      })
      assert.deepStrictEqual(violated(record), ["gc-keeps-retained"])
    })

    it("checkpoint-numbers-kept: a committed number whose root vanished, or committed again", () => {
      const record = gcRun()
      record.gcAudits?.push({
        atMs: 300,
        audit: {
          checkpoints: [],
          problems: [],
          numberProblems: ["checkpoint 1's root manifest is gone, with no tombstone: its number can be committed again"]
        }
      })
      assert.deepStrictEqual(violated(record), ["checkpoint-numbers-kept"])
    })

    it("gc-fails-closed: a pass that went on after a failed listing, or deleted while failing", () => {
      const record = gcRun()
      record.gcPasses?.push({
        startedAtMs: 100,
        faultsActive: true,
        objectsBefore: [],
        endedAtMs: 120,
        audit: { checkpoints: [], problems: [], objects: [] },
        result: { ...passResult, listingsFailed: ["leases/"] }
      })
      assert.deepStrictEqual(violated(record), ["gc-fails-closed"])
      const failing = gcRun()
      failing.gcPasses?.push({
        startedAtMs: 100,
        faultsActive: true,
        objectsBefore: ["data/0000000000000001/f0/0000000000-b"],
        endedAtMs: 120,
        audit: { checkpoints: [], problems: [], objects: [] },
        result: { ...passResult, error: "GcFailed: listing data/" }
      })
      assert.deepStrictEqual(violated(failing), ["gc-fails-closed"])
    })

    it("restore-under-lease: a restore that met a missing object; a refusal is clean", () => {
      const record = gcRun()
      const failed = (tag: string) => ({
        startedAtMs: 500,
        choice: { _tag: "Checkpoint", checkpoint: 1 } as const,
        latencyMs: 0,
        endedAtMs: 600,
        result: {
          error: { tag, detail: `${tag}: …` },
          base: undefined,
          walFromLsn: undefined,
          walToLsn: undefined,
          parts: []
        }
      })
      record.restores?.push(failed("RestoreRefused"), failed("ReaderLeaseLost"))
      assert.deepStrictEqual(violated(record), [])
      record.restores?.push(failed("ObjectNotFound"))
      assert.deepStrictEqual(violated(record), ["restore-under-lease"])
    })

    it("restore-at-target: an insert of the base missing, the wrong base, or an insert past the LSN target", () => {
      const record = gcRun()
      const [first, second] = record.inserts as [InsertRecord, InsertRecord]
      record.restores?.push({
        startedAtMs: 500,
        choice: { _tag: "Checkpoint", checkpoint: 1 },
        latencyMs: 0,
        endedAtMs: 600,
        result: {
          error: undefined,
          base: 1,
          walFromLsn: 1_200,
          walToLsn: 1_200,
          parts: [{ file: 0, part: 0, read: { bytes: partBytes([first]), error: undefined } }]
        }
      })
      assert.deepStrictEqual(violated(record), ["restore-at-target"])
      // To LSN 300 from an empty base: insert 1 (LSN 600) must not be there.
      const lsn = gcRun()
      lsn.restores?.push({
        startedAtMs: 500,
        choice: { _tag: "Lsn", lsn: 300 },
        latencyMs: 0,
        endedAtMs: 600,
        result: {
          error: undefined,
          base: 0,
          walFromLsn: 0,
          walToLsn: 300,
          parts: [{ file: 0, part: 0, read: { bytes: partBytes([first, second]), error: undefined } }]
        }
      })
      assert.deepStrictEqual(violated(lsn), ["restore-at-target"])
    })

    it("references-named-at-their-number: a later checkpoint naming what an earlier one left unnamed at its number", () => {
      const record = gcRun()
      const audit = record.finalGc?.audit
      const [first] = audit?.checkpoints ?? []
      if (audit === undefined || record.finalGc === undefined || first === undefined) throw new Error("fixture")
      const second = (references: ReadonlyArray<string>): AuditedCheckpoint => ({
        ...first,
        checkpoint: 2,
        previous: 1,
        references
      })
      const withSecond = (references: ReadonlyArray<string>): RunRecord => ({
        ...record,
        finalGc: {
          ...record.finalGc,
          result: passResult,
          audit: { ...audit, history: [first, second(references)] }
        }
      })
      // Named under 1 by checkpoint 1 itself, or under 2 (its own number): fine.
      assert.deepStrictEqual(
        violated(withSecond(["data/0000000000000001/f0/0000000000-a", "data/0000000000000002/f0/0000000000-b"])),
        []
      )
      // Under 1, but checkpoint 1 does not name it: an attempt at 1 that lost its number left it.
      assert.deepStrictEqual(violated(withSecond(["data/0000000000000001/f0/0000000000-orphan"])), [
        "references-named-at-their-number"
      ])
    })

    it("bucket-bounded: an object no kept checkpoint needs below the latest, or WAL below the window", () => {
      const record = gcRun()
      const audit = record.finalGc?.audit
      if (audit === undefined || record.finalGc === undefined) throw new Error("fixture")
      record.finalGc = {
        ...record.finalGc,
        audit: {
          ...audit,
          checkpoints: audit.checkpoints.map((each) => ({ ...each, checkpoint: 2 })),
          expired: [1],
          objects: [...audit.objects ?? [], { key: "data/0000000000000001/f0/0000000000-old", sizeBytes: 4_096 }]
        }
      }
      assert.deepStrictEqual(violated(record), ["bucket-bounded"])
      const wal = gcRun()
      const walAudit = wal.finalGc?.audit
      if (walAudit === undefined || wal.finalGc === undefined) throw new Error("fixture")
      wal.finalGc = {
        ...wal.finalGc,
        audit: { ...walAudit, checkpoints: walAudit.checkpoints.map((each) => ({ ...each, walPosition: 9_000 })) }
      }
      assert.deepStrictEqual(violated(wal), ["bucket-bounded"])
    })
  })

  describe("rewrites of a slot and writes the disk holds", () => {
    /** `healthy`, where insert 2 then wrote slot 0 again (insert 0's slot), logged below the
     * checkpoint's WAL position and acknowledged; every read, checkpoint and reopen holds it. */
    const rewritten = (): RunRecord => {
      const record = healthy()
      record.inserts.push({ ...insert(2, 0, 900), rewrites: 0 })
      const bytes = partBytes(record.inserts)
      const read = record.reads[0]
      if (read === undefined) throw new Error("fixture")
      read.result = { bytes, error: undefined }
      record.audit = { checkpoints: [checkpointOf(record.inserts, 1_200)], problems: [] }
      record.finalAudit = record.audit
      record.reopens.forEach((reopen, index) => {
        record.reopens[index] = { ...reopen, parts: [{ file: 0, part: 0, read: { bytes, error: undefined } }] }
      })
      return record
    }
    /** The part's bytes with slot 0 back at insert 0's value. */
    const olderBytes = (record: RunRecord) => partBytes(record.inserts.filter((each) => each.id !== 2))

    it("the latest write of a slot, or a later one, is what every judge requires", () => {
      assert.deepStrictEqual(judge(rewritten()), [])
      // A checkpoint whose WAL position lies between the two writes may hold either (a fuzzy one).
      const fuzzy = rewritten()
      fuzzy.audit = { checkpoints: [checkpointOf(fuzzy.inserts, 700)], problems: [] }
      fuzzy.finalAudit = fuzzy.audit
      fuzzy.checkpoints.length = 0
      assert.deepStrictEqual(violated(fuzzy), [])
    })

    it("reads-see-applied-writes: the slot's older value after its rewrite was applied; before it, either", () => {
      const record = rewritten()
      const read = record.reads[0]
      if (read === undefined) throw new Error("fixture")
      read.result = { bytes: olderBytes(record), error: undefined }
      assert.deepStrictEqual(violated(record), ["reads-see-applied-writes"])
      assert.include(judge(record)[0]?.detail ?? "", "holds insert 0's bytes, older than insert 2")
      record.reads[0] = { ...read, startedAtMs: 15 } // before insert 2 was applied (t=21)
      assert.deepStrictEqual(violated(record), [])
    })

    it("checkpoint-restores-acknowledged, restart-keeps-acknowledged, restore-from-bucket: the older value", () => {
      const checkpoint = rewritten()
      const older = checkpointOf(checkpoint.inserts.filter((each) => each.id !== 2), 1_200)
      checkpoint.audit = { checkpoints: [older], problems: [] }
      checkpoint.finalAudit = checkpoint.audit
      assert.include(violated(checkpoint), "checkpoint-restores-acknowledged")
      for (const [index, property] of [[0, "restart-keeps-acknowledged"], [1, "restore-from-bucket"]] as const) {
        const record = rewritten()
        const reopen = record.reopens[index]
        if (reopen === undefined) throw new Error("fixture")
        record.reopens[index] = {
          ...reopen,
          parts: [{ file: 0, part: 0, read: { bytes: olderBytes(record), error: undefined } }]
        }
        assert.deepStrictEqual(violated(record), [property])
      }
    })

    it("quiescent-after-shutdown: a lease, a fiber and an operation a held write keeps are excused; a task is not", () => {
      const held = (record: RunRecord) =>
        record.faults.push({ atMs: 50, instance: "A", kind: "writeStalls", diskLatencyMs: 6_000, lingersMs: 6_000 })
      const record = healthy()
      held(record)
      const first = record.shutdowns[0]
      if (first === undefined || first.result === undefined) throw new Error("fixture")
      record.shutdowns[0] = {
        ...first,
        result: { ...first.result, problems: ["the report says 1 lease(s) held", "the report says 1 fiber(s) alive"] },
        observation: {
          leasesHeld: 1,
          fibersAlive: 1,
          fibersAliveDetail: "#9",
          unresolvedTasks: 0,
          invariantProblems: []
        }
      }
      record.unfinishedWorkload.push("insert f0#0.0 on A")
      assert.deepStrictEqual(violated(record), [])
      record.faults.length = 0
      assert.deepStrictEqual(violated(record), ["quiescent-after-shutdown"])
      const task = healthy()
      held(task)
      task.shutdowns[0] = {
        ...first,
        observation: { leasesHeld: 0, fibersAlive: 0, fibersAliveDetail: "", unresolvedTasks: 1, invariantProblems: [] }
      }
      assert.deepStrictEqual(violated(task), ["quiescent-after-shutdown"])
    })

    it("waits-bounded: a read on a slow disk may add its calls' latency, not more", () => {
      const record = healthy()
      record.faults.push({ atMs: 100, instance: "A", kind: "slowDisk", diskLatencyMs: 600 })
      const read = record.reads[0]
      if (read === undefined) throw new Error("fixture")
      read.endedAtMs = read.startedAtMs + 1_000 + 3 * 600
      assert.deepStrictEqual(violated(record), [])
      read.endedAtMs += 20
      assert.deepStrictEqual(violated(record), ["waits-bounded"])
    })
  })
})
