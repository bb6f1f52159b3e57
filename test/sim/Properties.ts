/**
 * The properties of the simulation, as pure judgements of one run record (test/sim/Harness.ts).
 * The same judgements apply to the real Storage layer and to the model of the original protocol.
 *
 * Liveness
 * - `shutdown-within-deadline`: every shutdown (of the instances at the shutdown instant, and of
 *   the restarted and restored instances) completes within the shutdown deadline of simulated time.
 * - `quiescent-after-shutdown`: afterwards no fiber of the system is alive, no lease is held, no
 *   task is queued or in flight (every handle resolved), and every operation the application had
 *   in flight has returned. A write the disk holds (`writeStalls`) past the shutdown excuses the
 *   fibers, leases and operations it keeps: the shutdown cannot end a system call, and returns
 *   within its deadline all the same (the data directory stays locked until the write lands).
 * - `failures-reach-waiters`: an operation (a read, an insert, a checkpoint, the shutdown
 *   checkpoint) never ends by running out of its time while the bucket only ever answered at once:
 *   no fault, or only permanent errors, on that instance's view during the operation. Then every
 *   request either succeeded or failed immediately, and a waiter that still waited for its deadline
 *   was never told the outcome.
 * - `waits-bounded`: a read of one part returns within the system's read deadline (the lease
 *   timeout), whatever the bucket does: the wait for a part to load is cut by its own deadline. The
 *   deadline bounds the waits for the bucket, not the local disk's own calls: on a slow disk a read
 *   may take up to three of its calls' latency more.
 * Safety
 * - `part-state-invariants`: the part-state invariants hold after every step.
 * - `reads-see-applied-writes`: a read returns every write of its instance applied before it began
 *   (for a slot written several times, the latest such write or a later one), and never a value
 *   that no write of that slot wrote.
 * - `checkpoint-restores-acknowledged`: every checkpoint in the bucket, read back independently,
 *   holds every insert logged below its WAL position and everything of the checkpoint before it,
 *   and nothing else than inserted values; every checkpoint reported committed is in the bucket.
 * - `manifest-references-exist`: no manifest references a missing or corrupt object.
 * - `references-named-at-their-number`: an object under checkpoint number k that a later checkpoint
 *   names is named by checkpoint k's own root too, when the audits read that root. The collector
 *   deletes what the latest checkpoint does not name under its number (Retention.mayStillBeNamed);
 *   a later checkpoint naming such an object would lose it to a pass between the two commits.
 * - `stale-writer-fenced`: after a take-over, the stale writer never commits a checkpoint (with a
 *   healthy bucket its attempt fails with Fenced), and checkpoint epochs never go back.
 * - `restart-keeps-acknowledged`: after shutdown (and a crash dropping unsynced writes), the
 *   reopened directory holds every insert acknowledged on it, by any incarnation of its instance
 *   (crashes and restarts in the middle of the run included); a restart after a crash opens.
 * - `restore-from-bucket`: a fresh directory restored from the bucket alone (latest checkpoint +
 *   archived WAL) holds every insert of the latest checkpoint and every acknowledged insert below
 *   the archived WAL position; and, judged on the workload's own ledger rather than on anything
 *   the system reports, every insert whose commit was acknowledged before the application was
 *   told it is in the bucket (an archive of the WAL it waited for, a checkpoint reported
 *   committed, a shutdown whose final checkpoint committed), by an instance that had not been
 *   taken over yet.
 * - `fenced-stops-acknowledging`: once a stale writer has been told it is fenced, it acknowledges
 *   no commit any more (what it acknowledges can never reach the bucket).
 * - `take-over-breaks-old-locks`: a take-over is never refused as locked by the instance it
 *   replaces or by any instance opened before it began: their lock, or a late renewal of it that
 *   lands during the take-over, is what a take-over exists to break (only a newer holder's lock
 *   may refuse it).
 * - `report-counts-commits`: after a shutdown, the last checkpoint the instance's figures report
 *   committed is the one it knows committed (and its shutdown checkpoint, when that committed): a
 *   commit is counted even when the shutdown interrupted its checkpoint right after it.
 *
 * Bit rot (a flipped byte in the stopped directory): the restart may refuse to open (the damage was
 * detected); if it opens, it must hold everything it would hold without the rot, except the one
 * acknowledged record whose own WAL frame was flipped when that frame is the log's last acknowledged
 * one and lies at or past the durable end the directory recorded (`lostToUnrecordedRot`).
 *
 * Crashes: an insert that a crashed incarnation logged but never acknowledged may be gone, and its
 * LSN reused by the next incarnation; such an insert is never required.
 *
 * Rewrites: a slot may be written again (the workload's `Rewrite`); its writes never overlap, so
 * they are ordered by id, and wherever a judge requires a write of a slot, that write or a later
 * one of the same slot satisfies it, and an earlier one does not.
 */
import type {
  AuditedCheckpoint,
  BucketAudit,
  InsertRecord,
  InstanceInfo,
  PartRead,
  RestoreRecord,
  RunRecord,
  ShutdownRecord
} from "./Harness.js"
import { diskOf, isZero, sameBytes, slotKey, slotsOfPart } from "./Harness.js"
import { dataModel } from "./Schedule.js"

export type PropertyName =
  | "shutdown-within-deadline"
  | "quiescent-after-shutdown"
  | "failures-reach-waiters"
  | "waits-bounded"
  | "part-state-invariants"
  | "reads-see-applied-writes"
  | "checkpoint-restores-acknowledged"
  | "manifest-references-exist"
  | "references-named-at-their-number"
  | "stale-writer-fenced"
  | "restart-keeps-acknowledged"
  | "restore-from-bucket"
  | "fenced-stops-acknowledging"
  | "take-over-breaks-old-locks"
  | "report-counts-commits"
  | "gc-keeps-retained"
  | "checkpoint-numbers-kept"
  | "gc-fails-closed"
  | "restore-under-lease"
  | "restore-at-target"
  | "bucket-bounded"
  | "harness"

export interface Violation {
  readonly property: PropertyName
  readonly detail: string
}

const liveness = new Set<PropertyName>([
  "shutdown-within-deadline",
  "quiescent-after-shutdown",
  "failures-reach-waiters",
  "waits-bounded"
])
export const isLiveness = (violation: Violation): boolean => liveness.has(violation.property)

/** Judges one run: every violated property, with what was seen. */
export const judge = (record: RunRecord): ReadonlyArray<Violation> => {
  const violations: Array<Violation> = []
  const add = (property: PropertyName, detail: string) => violations.push({ property, detail })
  for (const error of record.harnessErrors) add("harness", error)
  judgeShutdowns(record, add)
  judgeFailurePropagation(record, add)
  for (const { atMs, instance, problem } of record.invariantProblems) {
    add("part-state-invariants", `t=${atMs}ms ${instance}: ${problem}`)
  }
  judgeReads(record, add)
  judgeCheckpoints(record, add)
  judgeReferenceNumbers(record, add)
  judgeStaleWriters(record, add)
  judgeFencedAcknowledgements(record, add)
  judgeTakeOvers(record, add)
  judgeReopens(record, add)
  judgeGc(record, add)
  judgeRestores(record, add)
  judgeBound(record, add)
  return violations
}

type Add = (property: PropertyName, detail: string) => void

const judgeShutdown = (record: RunRecord, shutdown: ShutdownRecord, what: string, add: Add) => {
  const deadlineMs = record.shutdownDeadlineMs
  if (shutdown.completedAtMs === undefined) {
    const late = shutdown.completedLateAtMs === undefined
      ? "still running at the end of the probe window (a permanent hang)"
      : `completed late, at t=${shutdown.completedLateAtMs}ms`
    add(
      "shutdown-within-deadline",
      `${what} started at t=${shutdown.startedAtMs}ms did not complete within its ${deadlineMs} ms deadline: ${late}` +
        (shutdown.diagnosisAtDeadline === undefined
          ? ""
          : `\n    waits at the deadline:\n${indent(shutdown.diagnosisAtDeadline, 6)}`)
    )
    return
  }
  const durationMs = shutdown.completedAtMs - shutdown.startedAtMs
  const diagnosis = shutdown.diagnosisAtDeadline === undefined
    ? ""
    : `\n    diagnosis:\n${indent(shutdown.diagnosisAtDeadline, 6)}`
  if (durationMs > deadlineMs) {
    add("shutdown-within-deadline", `${what} took ${durationMs} ms, over its ${deadlineMs} ms deadline${diagnosis}`)
  }
  if (shutdown.result !== undefined && !shutdown.result.metDeadline) {
    add("shutdown-within-deadline", `${what} reports metDeadline=false: ${shutdown.result.detail}`)
  }
  // A write the disk holds past the shutdown holds its lease (and its operation) until it lands, and
  // the daemon whose step it is (an eviction's unlink, a committed checkpoint's control file) stays
  // alive until then: the shutdown cannot end a system call, and returns within its deadline all
  // the same, reporting both.
  const writeHeld = writesHeldDuring(record, shutdown.instance, shutdown.startedAtMs, shutdown.completedAtMs)
  const excused = (problem: string) =>
    writeHeld && (problem.includes("lease(s) held") || problem.includes("fiber(s) alive"))
  for (const problem of shutdown.result?.problems ?? []) {
    if (!excused(problem)) add("quiescent-after-shutdown", `${what}: ${problem}`)
  }
  judgeReport(shutdown, what, add)
  const observation = shutdown.observation
  if (observation !== undefined) {
    if (observation.fibersAlive > 0 && !writeHeld) {
      add(
        "quiescent-after-shutdown",
        `${what}: ${observation.fibersAlive} fiber(s) of the system alive afterwards: ${observation.fibersAliveDetail}`
      )
    }
    if (observation.leasesHeld > 0 && !writeHeld) {
      add("quiescent-after-shutdown", `${what}: ${observation.leasesHeld} lease(s) held afterwards`)
    }
    if (observation.unresolvedTasks > 0) {
      add("quiescent-after-shutdown", `${what}: ${observation.unresolvedTasks} task(s) queued or in flight afterwards`)
    }
  }
}

/** The figures an instance reports after its shutdown count every checkpoint it knows committed,
 * its shutdown checkpoint included. */
const judgeReport = (shutdown: ShutdownRecord, what: string, add: Add) => {
  const result = shutdown.result
  const reported = result?.reportedLastCheckpoint
  if (result === undefined || reported === undefined) return
  const known = result.knownLatestCheckpoint
  if (known !== undefined && reported !== known) {
    add(
      "report-counts-commits",
      `${what}: its figures report checkpoint ${reported} as the last committed, but it knows ${known} committed`
    )
  }
  if (result.finalCheckpoint !== undefined && reported !== result.finalCheckpoint) {
    add(
      "report-counts-commits",
      `${what}: its figures report checkpoint ${reported}, its shutdown committed ${result.finalCheckpoint}`
    )
  }
}

const judgeShutdowns = (record: RunRecord, add: Add) => {
  for (const shutdown of record.shutdowns) judgeShutdown(record, shutdown, `shutdown of ${shutdown.instance}`, add)
  for (const name of record.unfinishedWorkload) {
    const instance = name.split(" on ").at(-1) ?? ""
    const shutdown = record.shutdowns.find((each) => each.instance === instance)
    if (
      shutdown !== undefined && writesHeldDuring(record, instance, shutdown.startedAtMs, shutdown.completedAtMs)
    ) continue
    add("quiescent-after-shutdown", `operation still running after shutdown returned: ${name}`)
  }
}

/** Whether a write that the disk holds (`writeStalls`) may still have been on `instance`'s disk
 * during [fromMs, toMs]. */
const writesHeldDuring = (record: RunRecord, instance: string, fromMs: number, toMs: number | undefined): boolean =>
  toMs !== undefined && faultsDuring(record, instance, fromMs, toMs).has("writeStalls")

/** The fault kinds active on `instance`'s view at some instant of [fromMs, toMs] (a late request
 * may still land up to `lingersMs` after the heal). */
const faultsDuring = (record: RunRecord, instance: string, fromMs: number, toMs: number): ReadonlySet<string> => {
  const kinds = new Set<string>()
  record.faults.forEach((event, index) => {
    if (event.kind === "heal" || event.instance !== instance || event.atMs > toMs) return
    const healed = record.faults.find((later, laterIndex) => laterIndex > index && later.kind === "heal")
    const lingersMs = "lingersMs" in event ? event.lingersMs ?? 0 : 0
    if (healed === undefined || healed.atMs + lingersMs > fromMs) kinds.add(event.kind)
  })
  return kinds
}

/** The latency of the slowest disk fault (`slowSyncs`, `slowDisk`, a held write's hold) active on
 * `instance` at some instant of [fromMs, toMs]; 0 when none. */
const diskLatencyDuring = (record: RunRecord, instance: string, fromMs: number, toMs: number): number => {
  let latencyMs = 0
  record.faults.forEach((event, index) => {
    if (event.kind === "heal" || event.instance !== instance || event.atMs > toMs) return
    const healed = record.faults.find((later, laterIndex) => laterIndex > index && later.kind === "heal")
    const lingersMs = "lingersMs" in event ? event.lingersMs ?? 0 : 0
    if (healed === undefined || healed.atMs + lingersMs > fromMs) {
      latencyMs = Math.max(latencyMs, event.diskLatencyMs ?? 0)
    }
  })
  return latencyMs
}

/** Simulated milliseconds a read may take beyond its deadline (local work is instantaneous). */
const readSlackMs = 10

/** The local disk calls a read may wait for beyond its deadline, which bounds its waits for the
 * bucket, not its own disk's calls: the read of the part, and a load's write of it and its sync. */
const readDiskCallsMax = 3

const answeredAtOnce = (kinds: ReadonlySet<string>): boolean => [...kinds].every((kind) => kind === "permanent")

const judgeFailurePropagation = (record: RunRecord, add: Add) => {
  const judge = (instance: string, fromMs: number, toMs: number | undefined, timedOut: boolean, what: string) => {
    if (!timedOut || toMs === undefined) return
    const kinds = faultsDuring(record, instance, fromMs, toMs)
    if (!answeredAtOnce(kinds)) return
    const faults = kinds.size === 0 ? "no fault" : "only permanent errors"
    add(
      "failures-reach-waiters",
      `${what} on ${instance} (t=${fromMs}..${toMs}ms) ran out of time with ${faults} on the bucket: an outcome did not reach its waiter`
    )
  }
  const readDeadlineMs = record.readDeadlineMs
  if (readDeadlineMs !== undefined) {
    for (const read of record.reads) {
      if (read.endedAtMs === undefined) continue
      const diskMs = readDiskCallsMax * diskLatencyDuring(record, read.instance, read.startedAtMs, read.endedAtMs)
      if (read.endedAtMs - read.startedAtMs > readDeadlineMs + readSlackMs + diskMs) {
        add(
          "waits-bounded",
          `the read of f${read.file}#${read.part} on ${read.instance} took ${
            read.endedAtMs - read.startedAtMs
          } ms (t=${read.startedAtMs}..${read.endedAtMs}ms), over its ${readDeadlineMs} ms deadline${
            diskMs > 0 ? ` and ${diskMs} ms of its slow disk's calls` : ""
          }`
        )
      }
    }
  }
  for (const read of record.reads) {
    judge(
      read.instance,
      read.startedAtMs,
      read.endedAtMs,
      read.result?.error?.includes("Timeout") === true,
      `the read of f${read.file}#${read.part}`
    )
  }
  for (const insert of record.inserts) {
    judge(
      insert.instance,
      insert.startedAtMs,
      insert.endedAtMs,
      insert.result?.error?.includes("Timeout") === true,
      `insert ${insert.id}`
    )
  }
  for (const attempt of record.checkpoints) {
    judge(
      attempt.instance,
      attempt.startedAtMs,
      attempt.endedAtMs,
      attempt.result?.error?.detail.includes("(TimedOut)") === true,
      "a checkpoint"
    )
  }
  for (const shutdown of record.shutdowns) {
    judge(
      shutdown.instance,
      shutdown.startedAtMs,
      shutdown.completedAtMs,
      shutdown.result?.finalCheckpointTimedOut === true,
      "the shutdown checkpoint"
    )
  }
}

/** Every write of each slot (its insert and its rewrites), in issue order: the workload never
 * lets two writes of one slot overlap, so a later write of a slot replaces every earlier one. */
const writesBySlot = (record: RunRecord): ReadonlyMap<string, ReadonlyArray<InsertRecord>> => {
  const bySlot = new Map<string, Array<InsertRecord>>()
  for (const insert of record.inserts) {
    const key = slotKey(insert.slot)
    const writes = bySlot.get(key)
    if (writes === undefined) bySlot.set(key, [insert])
    else writes.push(insert)
  }
  for (const writes of bySlot.values()) writes.sort((left, right) => left.id - right.id)
  return bySlot
}

/** Why `bytes` of slot `key` are no write of it, if they are none. */
const foreignBytes = (
  writes: ReadonlyArray<InsertRecord>,
  key: string,
  bytes: Uint8Array
): string | undefined => {
  if (writes.some((write) => sameBytes(bytes, write.value))) return undefined
  if (writes.length === 0) return `slot ${key} was never written but holds data`
  return writes.length === 1
    ? `slot ${key} holds bytes that insert ${writes[0]?.id} did not write`
    : `slot ${key} holds bytes that none of its writes (inserts ${writes.map((write) => write.id).join(", ")}) wrote`
}

/**
 * Checks one slot's bytes against its writes: nothing but a value one of them wrote, and not older
 * than the latest write `required` names (that write or a later one: a later write of the slot
 * replaces it); the reason it is required, or undefined.
 */
const checkSlot = (
  writes: ReadonlyArray<InsertRecord>,
  key: string,
  bytes: Uint8Array | undefined,
  required: (insert: InsertRecord) => string | undefined
): string | undefined => {
  let latest: { readonly insert: InsertRecord; readonly why: string } | undefined
  for (const insert of writes) {
    const why = required(insert)
    if (why !== undefined) latest = { insert, why }
  }
  if (bytes === undefined || isZero(bytes)) {
    return latest === undefined ? undefined : `insert ${latest.insert.id} (slot ${key}, ${latest.why}) is missing`
  }
  const foreign = foreignBytes(writes, key, bytes)
  if (foreign !== undefined || latest === undefined) return foreign
  const held = writes.find((write) => sameBytes(bytes, write.value))
  return held !== undefined && held.id < latest.insert.id
    ? `slot ${key} holds insert ${held.id}'s bytes, older than insert ${latest.insert.id} (${latest.why}), which is missing`
    : undefined
}

/** Checks every slot of a part's bytes: nothing but written values; `required` writes present
 * (or a later write of their slot). */
const checkPartBytes = (
  record: RunRecord,
  file: number,
  part: number,
  read: PartRead,
  required: (insert: InsertRecord) => string | undefined,
  what: string,
  property: PropertyName,
  add: Add
) => {
  if (read.bytes === undefined) return
  const bySlot = writesBySlot(record)
  for (const [slot, bytes] of slotsOfPart(file, part, read.bytes)) {
    const key = slotKey(slot)
    const problem = checkSlot(bySlot.get(key) ?? [], key, bytes, required)
    if (problem !== undefined) add(property, `${what}: ${problem}`)
  }
}

const judgeReads = (record: RunRecord, add: Add) => {
  for (const read of record.reads) {
    if (read.result === undefined) continue
    checkPartBytes(
      record,
      read.file,
      read.part,
      read.result,
      (insert) =>
        insert.instance === read.instance && insert.appliedAtMs !== undefined && insert.appliedAtMs < read.startedAtMs
          ? `applied at t=${insert.appliedAtMs}ms, before the read began at t=${read.startedAtMs}ms on ${read.instance}`
          : undefined,
      `read of f${read.file}#${read.part} on ${read.instance} at t=${read.startedAtMs}ms`,
      "reads-see-applied-writes",
      add
    )
  }
}

const infoOf = (record: RunRecord, label: string): InstanceInfo | undefined =>
  record.instances.find((info) => info.label === label)

const sameIdentity = (info: InstanceInfo | undefined, checkpoint: AuditedCheckpoint): boolean =>
  info !== undefined && info.instanceId === checkpoint.instanceId && info.epoch === checkpoint.epoch

/** Whether an insert's LSN names it for good: it was acknowledged, or its instance was never
 * killed (a killed instance's unacknowledged records may be lost and their LSNs reused). */
const lsnStands = (record: RunRecord, insert: InsertRecord): boolean =>
  insert.result?.acked === true || !record.crashes.some((crash) => crash.instance === insert.instance)

/** The inserts a checkpoint must hold (each, or a later write of its slot): its own instance's
 * inserts logged below its WAL position, and everything its previous checkpoint must hold. */
const mustHold = (
  record: RunRecord,
  checkpoints: ReadonlyMap<number, AuditedCheckpoint>,
  checkpoint: AuditedCheckpoint
): Map<number, string> => {
  const required = new Map<number, string>()
  const seen = new Set<number>()
  let current: AuditedCheckpoint | undefined = checkpoint
  while (current !== undefined && !seen.has(current.checkpoint)) {
    seen.add(current.checkpoint)
    const at: AuditedCheckpoint = current
    for (const insert of record.inserts) {
      const lsn = insert.result?.lsn
      if (lsn === undefined || required.has(insert.id) || !lsnStands(record, insert)) continue
      if (sameIdentity(infoOf(record, insert.instance), at) && lsn < at.walPosition) {
        required.set(
          insert.id,
          `logged at LSN ${lsn} by ${insert.instance}, below checkpoint ${at.checkpoint}'s WAL position ${at.walPosition}`
        )
      }
    }
    current = checkpoints.get(at.previous)
  }
  return required
}

const checkForeignSlots = (record: RunRecord, checkpoint: AuditedCheckpoint, add: Add) => {
  const bySlot = writesBySlot(record)
  const what = `checkpoint ${checkpoint.checkpoint} (epoch ${checkpoint.epoch}, WAL position ${checkpoint.walPosition})`
  for (const [key, bytes] of checkpoint.slots) {
    const problem = foreignBytes(bySlot.get(key) ?? [], key, bytes)
    if (problem !== undefined) add("checkpoint-restores-acknowledged", `${what}: ${problem}`)
  }
}

const judgeCheckpoints = (record: RunRecord, add: Add) => {
  // The final audit sees what the restart and the restore wrote too: its checkpoints are judged
  // for references and foreign data only (the restart's own WAL positions are not the run's).
  const final = record.finalAudit
  if (final !== undefined) {
    for (const problem of final.problems) add("manifest-references-exist", `at the end: ${problem}`)
    const judged = new Set((record.audit?.checkpoints ?? []).map((checkpoint) => checkpoint.checkpoint))
    for (const checkpoint of final.checkpoints) {
      if (!judged.has(checkpoint.checkpoint)) checkForeignSlots(record, checkpoint, add)
    }
  }
  const audit = record.audit
  if (audit === undefined) return
  for (const problem of audit.problems) add("manifest-references-exist", problem)
  const byNumber = new Map(audit.checkpoints.map((checkpoint) => [checkpoint.checkpoint, checkpoint]))
  // A checkpoint the collector expired (a tombstone now) is judged as the audits read it before.
  const expired = new Set(audit.expired ?? [])
  const chain = new Map([...everAudited(record), ...byNumber])
  for (const checkpoint of audit.checkpoints) {
    checkForeignSlots(record, checkpoint, add)
    const what =
      `checkpoint ${checkpoint.checkpoint} (epoch ${checkpoint.epoch}, WAL position ${checkpoint.walPosition})`
    const required = mustHold(record, chain, checkpoint)
    for (const [key, writes] of writesBySlot(record)) {
      // Foreign bytes were reported above; here, what is missing or older than required.
      const bytes = checkpoint.slots.get(key)
      if (bytes !== undefined && foreignBytes(writes, key, bytes) !== undefined) continue
      const problem = checkSlot(writes, key, bytes, (insert) => required.get(insert.id))
      if (problem !== undefined) add("checkpoint-restores-acknowledged", `${what}: ${problem}`)
    }
  }
  for (const attempt of record.checkpoints) {
    const completed = attempt.result?.completed
    if (completed === undefined) continue
    const audited = byNumber.get(completed.checkpoint) ??
      (expired.has(completed.checkpoint) ? chain.get(completed.checkpoint) : undefined)
    if (audited === undefined || !sameIdentity(infoOf(record, attempt.instance), audited)) {
      add(
        "checkpoint-restores-acknowledged",
        `checkpoint ${completed.checkpoint} reported committed by ${attempt.instance} is not in the bucket as its own`
      )
    }
  }
  for (const shutdown of record.shutdowns) {
    const finalCheckpoint = shutdown.result?.finalCheckpoint
    if (finalCheckpoint !== undefined && !byNumber.has(finalCheckpoint) && !expired.has(finalCheckpoint)) {
      add(
        "checkpoint-restores-acknowledged",
        `the shutdown checkpoint ${finalCheckpoint} of ${shutdown.instance} is not in the bucket`
      )
    }
  }
}

const judgeStaleWriters = (record: RunRecord, add: Add) => {
  for (const attempt of record.checkpoints) {
    if (!attempt.stale || attempt.result === undefined) continue
    if (attempt.result.completed !== undefined) {
      add(
        "stale-writer-fenced",
        `the stale writer ${attempt.instance} committed checkpoint ${attempt.result.completed.checkpoint} after the take-over`
      )
    } else if (!attempt.faultsActive && attempt.afterLoggedInsert && attempt.result.error?.tag !== "Fenced") {
      add(
        "stale-writer-fenced",
        `the stale writer ${attempt.instance}'s checkpoint after the take-over ended with ${
          attempt.result.error?.tag ?? attempt.result.skipped ?? "?"
        }, not Fenced`
      )
    }
  }
  for (const shutdown of record.shutdowns) {
    const finalCheckpoint = shutdown.result?.finalCheckpoint
    // A shutdown that began after a take-over from its instance began.
    if (
      finalCheckpoint !== undefined &&
      record.instances.some((info) =>
        info.tookOverFrom === shutdown.instance && (info.takeOverStartedAtMs ?? info.openedAtMs) <= shutdown.startedAtMs
      )
    ) {
      add(
        "stale-writer-fenced",
        `the stale writer ${shutdown.instance}'s shutdown committed checkpoint ${finalCheckpoint} after the take-over`
      )
    }
  }
  const checkpoints = [...(record.finalAudit ?? record.audit)?.checkpoints ?? []].sort((left, right) =>
    left.checkpoint - right.checkpoint
  )
  for (let index = 1; index < checkpoints.length; index++) {
    const before = checkpoints[index - 1]
    const after = checkpoints[index]
    if (before !== undefined && after !== undefined && after.epoch < before.epoch) {
      add(
        "stale-writer-fenced",
        `checkpoint ${after.checkpoint} has epoch ${after.epoch}, below checkpoint ${before.checkpoint}'s epoch ${before.epoch}`
      )
    }
  }
}

const judgeTakeOvers = (record: RunRecord, add: Add) => {
  for (const attempt of record.failedTakeOvers ?? []) {
    const error = attempt.error
    if (error === undefined || !error.includes("BucketLocked")) continue
    const older = record.instances.find((info) =>
      info.label !== attempt.label && (info.label === attempt.replacing || info.openedAtMs < attempt.atMs) &&
      error.includes(info.instanceId)
    )
    if (older !== undefined) {
      add(
        "take-over-breaks-old-locks",
        `the take-over by ${attempt.label} (replacing ${attempt.replacing}, t=${attempt.atMs}ms) was refused by the lock of ${older.label}, opened before it: ${error}`
      )
    }
  }
}

/** When `label` was first told it is fenced (a checkpoint or an insert failing with Fenced). */
const fencedAtMs = (record: RunRecord, label: string): number | undefined => {
  const instants = [
    ...record.checkpoints.filter((attempt) => attempt.instance === label && attempt.result?.error?.tag === "Fenced")
      .map((attempt) => attempt.endedAtMs),
    ...record.inserts.filter((insert) =>
      insert.instance === label && insert.result?.error?.startsWith("Fenced") === true
    ).map((insert) => insert.endedAtMs)
  ].filter((atMs): atMs is number => atMs !== undefined)
  return instants.length === 0 ? undefined : Math.min(...instants)
}

const judgeFencedAcknowledgements = (record: RunRecord, add: Add) => {
  for (const info of record.instances) {
    const fencedAt = fencedAtMs(record, info.label)
    if (fencedAt === undefined) continue
    for (const insert of record.inserts) {
      if (insert.instance === info.label && insert.startedAtMs > fencedAt && insert.result?.acked === true) {
        add(
          "fenced-stops-acknowledging",
          `${info.label} was told at t=${fencedAt}ms that it is fenced, and then acknowledged insert ${insert.id} (slot ${
            slotKey(insert.slot)
          }, t=${insert.startedAtMs}..${insert.endedAtMs}ms)`
        )
      }
    }
  }
}

/** When directory `disk`'s instance was superseded (a take-over from it began), if it was. */
const supersededAtMs = (record: RunRecord, disk: string): number =>
  Math.min(
    ...record.instances.filter((info) => info.tookOverFrom !== undefined && diskOf(info.tookOverFrom) === disk).map((
      info
    ) => info.takeOverStartedAtMs ?? info.openedAtMs),
    Number.POSITIVE_INFINITY
  )

/**
 * The workload's ledger of what is in the bucket: every insert whose commit was acknowledged
 * before (at an earlier instant: same-instant steps race) an acknowledgement of archiving began
 * on the same directory (an awaited WAL archive, a
 * checkpoint reported committed, a shutdown whose final checkpoint committed), when that
 * acknowledgement came before the directory's instance was taken over.
 */
const bucketLedger = (record: RunRecord): Map<number, string> => {
  const acknowledgements = [
    ...record.archives.filter((archive) => archive.result !== undefined && archive.result.error === undefined).map((
      archive
    ) => ({
      instance: archive.instance,
      startedAtMs: archive.startedAtMs,
      endedAtMs: archive.endedAtMs,
      what: "an awaited WAL archive"
    })),
    ...record.checkpoints.filter((attempt) => !attempt.stale && attempt.result?.completed !== undefined).map((
      attempt
    ) => ({
      instance: attempt.instance,
      startedAtMs: attempt.startedAtMs,
      endedAtMs: attempt.endedAtMs,
      what: `checkpoint ${attempt.result?.completed?.checkpoint} reported committed`
    })),
    ...record.shutdowns.filter((shutdown) => shutdown.result?.finalCheckpoint !== undefined).map((shutdown) => ({
      instance: shutdown.instance,
      startedAtMs: shutdown.startedAtMs,
      endedAtMs: shutdown.completedAtMs,
      what: `the shutdown checkpoint ${shutdown.result?.finalCheckpoint}`
    }))
  ]
  const required = new Map<number, string>()
  for (const insert of record.inserts) {
    if (insert.result?.acked !== true || insert.endedAtMs === undefined) continue
    const disk = diskOf(insert.instance)
    const supersededAt = supersededAtMs(record, disk)
    const covering = acknowledgements.find(
      (ack) =>
        diskOf(ack.instance) === disk && ack.endedAtMs !== undefined && ack.endedAtMs < supersededAt &&
        (insert.endedAtMs ?? Infinity) < ack.startedAtMs
    )
    if (covering !== undefined) {
      required.set(
        insert.id,
        `acknowledged by ${insert.instance} at t=${insert.endedAtMs}ms, then archived: ${covering.what} by ${covering.instance} at t=${covering.startedAtMs}..${covering.endedAtMs}ms`
      )
    }
  }
  return required
}

/**
 * The one loss a restart may show after bit rot (docs/ARCHITECTURE.md, the durability argument,
 * invariant 1): the flipped byte lies in the insert's own WAL record, at or past the durable end
 * the directory recorded (after a crash that dropped the unsynced flush mark, that may be below
 * acknowledged records). A bad frame there with nothing valid after it cannot be told from a torn
 * write, so the start cuts it. A record below the recorded end, or with a valid record after it,
 * must be repaired or refused, never cut.
 */
const lostToUnrecordedRot = (record: RunRecord, insert: InsertRecord): boolean => {
  const rotted = record.rotWalRecord
  return rotted !== undefined && insert.result?.lsn === rotted.lsn && rotted.lsn >= rotted.recordedDurableLsn &&
    !record.inserts.some((other) =>
      diskOf(other.instance) === diskOf(insert.instance) && other.result?.acked === true &&
      (other.result.lsn ?? -1) > rotted.lsn
    )
}

/**
 * A take-over whose start failed after its claim checkpoint landed (the answer lost) has taken the
 * bucket over all the same: the operator declared the owner dead, and the owner's restart is
 * refused as taken over (ForeignInstance), with its remedy. True when such a take-over of
 * `label` was attempted, the restart was refused for that reason, and the bucket's latest checkpoint
 * is of a newer epoch and of an instance id that no instance of the run opened with.
 */
const takenOverByFailedStart = (record: RunRecord, label: string, error: string): boolean => {
  const info = infoOf(record, label)
  const newest = [...(record.audit?.checkpoints ?? [])].sort((left, right) => right.checkpoint - left.checkpoint)[0]
  return info !== undefined && newest !== undefined && error.includes("(ForeignInstance)") &&
    (record.failedTakeOvers ?? []).some((attempt) => attempt.replacing === label) &&
    newest.epoch > info.epoch && !record.instances.some((other) => other.instanceId === newest.instanceId)
}

/**
 * A take-over that never opened, cut after its lock PUT went out, can leave its lock: the PUT lands
 * late, after the attempt was given up. A restart of the instance it replaced is then refused as
 * locked by an instance it cannot know to be dead (BucketLocked, with its remedy): the contract.
 * True when such a take-over of `label` was attempted and the lock named is of no instance that
 * opened in the run.
 */
const lockedByFailedStart = (record: RunRecord, label: string, error: string): boolean =>
  error.includes("BucketLocked") &&
  (record.failedTakeOvers ?? []).some((attempt) => attempt.replacing === label) &&
  !record.instances.some((info) => error.includes(info.instanceId))

const judgeReopens = (record: RunRecord, add: Add) => {
  const audit = record.audit
  const byNumber = new Map((audit?.checkpoints ?? []).map((checkpoint) => [checkpoint.checkpoint, checkpoint]))
  const latest = [...byNumber.values()].sort((left, right) => right.checkpoint - left.checkpoint)
  for (const reopen of record.reopens) {
    const property = reopen.kind === "restart" ? "restart-keeps-acknowledged" : "restore-from-bucket"
    const what = reopen.kind === "restart"
      ? `restart of ${reopen.instance}${reopen.crash ? " after a crash" : ""}`
      : "restore from the bucket"
    if (reopen.error !== undefined) {
      // A restart may refuse a directory whose files rotted: the damage was detected, not served.
      // And one whose bucket a failed take-over took (refused as taken over: the contract).
      if (
        !(reopen.kind === "restart" &&
          (record.rot !== undefined || takenOverByFailedStart(record, reopen.instance, reopen.error) ||
            lockedByFailedStart(record, reopen.instance, reopen.error) ||
            // A restart in the middle of the run, on a network that loses or delays requests, may
            // fail on them (transiently, typed): the final restart, healed, must open and hold all.
            (reopen.networkFaulty === true && reopen.error.includes("ObjectStoreUnavailable"))))
      ) {
        add(property, `${what} failed: ${reopen.error}`)
      }
      continue
    }
    if (reopen.shutdown !== undefined) judgeShutdown(record, reopen.shutdown, `shutdown after the ${what}`, add)
    let required: ReadonlyMap<number, string>
    if (reopen.kind === "restart") {
      const info = infoOf(record, reopen.instance)
      const own = latest.find((checkpoint) => sameIdentity(info, checkpoint))
      const fromCheckpoint = own === undefined ? new Map<number, string>() : mustHold(record, byNumber, own)
      for (const insert of record.inserts) {
        if (
          diskOf(insert.instance) === diskOf(reopen.instance) && insert.result?.acked === true &&
          !lostToUnrecordedRot(record, insert)
        ) {
          fromCheckpoint.set(insert.id, `acknowledged by ${insert.instance}`)
        }
      }
      required = fromCheckpoint
    } else {
      const newest = latest[0]
      const fromCheckpoint = newest === undefined ? new Map<number, string>() : mustHold(record, byNumber, newest)
      // The archived WAL of the instance that wrote the newest checkpoint covers its acknowledged
      // inserts below the archived position.
      // (Every incarnation of that instance, after crashes, shares its identity and its log.)
      const writers = new Set(
        record.instances.filter((info) => newest !== undefined && sameIdentity(info, newest)).map((info) => info.label)
      )
      const archivedPositions = record.shutdowns.filter((shutdown) => writers.has(shutdown.instance)).map((shutdown) =>
        shutdown.result?.archivedThroughLsn ?? 0
      )
      const archivedThrough = archivedPositions.length === 0 ? undefined : Math.max(...archivedPositions)
      if (archivedThrough !== undefined) {
        for (const insert of record.inserts) {
          const lsn = insert.result?.lsn
          if (
            writers.has(insert.instance) && insert.result?.acked === true && lsn !== undefined && lsn < archivedThrough
          ) {
            fromCheckpoint.set(
              insert.id,
              `acknowledged by ${insert.instance} at LSN ${lsn}, below the archived WAL position ${archivedThrough}`
            )
          }
        }
      }
      for (const [id, why] of bucketLedger(record)) if (!fromCheckpoint.has(id)) fromCheckpoint.set(id, why)
      required = fromCheckpoint
    }
    for (const { file, part, read } of reopen.parts) {
      if (read.error !== undefined) add(property, `${what}: reading f${file}#${part} failed: ${read.error}`)
      checkPartBytes(record, file, part, read, (insert) => required.get(insert.id), what, property, add)
    }
  }
}

const indent = (text: string, spaces: number): string =>
  text
    .split("\n")
    .map((line) => " ".repeat(spaces) + line)
    .join("\n")

// ---------------------------------------------------------------------------------------------
// Garbage collection, reader leases and point-in-time restore
// ---------------------------------------------------------------------------------------------

/** Every committed checkpoint an audit of the run read (tombstoned since or not), by number. */
const everAudited = (record: RunRecord): Map<number, AuditedCheckpoint> => {
  const all = new Map<number, AuditedCheckpoint>()
  for (const audit of [record.audit, record.finalAudit, record.finalGc?.audit]) {
    for (const checkpoint of audit?.history ?? []) all.set(checkpoint.checkpoint, checkpoint)
  }
  return all
}

/**
 * `checkpoint-numbers-kept`: a checkpoint number once committed keeps its root object (the manifest
 * or the tombstone that replaced it) and is never committed again (SlateDB RFC 0026).
 * `gc-keeps-retained`: no committed (not tombstoned) checkpoint ever lacks an object it names: the
 * auditor looks after every pass of the run's collector, every 20 ms while it runs (the writers'
 * own passes), and after a last pass at the end. `gc-fails-closed`: a pass whose listing failed,
 * or whose read of a root or file manifest failed (the last answer for that prefix or key, below
 * any retry; a key that is gone is an answer), fails; and a pass that failed deleted nothing
 * (judged when no other collector ran meanwhile: the writers' periodic pass off, no pass of the
 * run's collector overlapping).
 */
const judgeGc = (record: RunRecord, add: Add) => {
  const seen = new Set<string>()
  const report = (when: string, audit: BucketAudit | undefined, objects = true) => {
    const problems = [
      ...(objects ? audit?.problems ?? [] : []).map((problem) => ["gc-keeps-retained", problem] as const),
      ...(audit?.numberProblems ?? []).map((problem) => ["checkpoint-numbers-kept", problem] as const)
    ]
    for (const [property, problem] of problems) {
      if (seen.has(problem)) continue
      seen.add(problem)
      add(property, `${when}: ${problem}`)
    }
  }
  for (const { atMs, audit } of record.gcAudits ?? []) report(`t=${atMs}ms`, audit)
  // (Its missing objects are `manifest-references-exist`'s.)
  report("at the end", record.finalAudit, false)
  report("after the last gc pass", record.finalGc?.audit)
  for (const pass of record.gcPasses ?? []) {
    const failed = pass.result?.listingsFailed ?? []
    if (pass.result !== undefined && pass.result.error === undefined && failed.length > 0) {
      add(
        "gc-fails-closed",
        `the gc pass at t=${pass.startedAtMs}..${pass.endedAtMs}ms went on after its listing of ${
          failed.join(", ")
        } failed (deleted ${pass.result.deletedObjects} object(s)): a failed listing or read must end the pass`
      )
    }
  }
  if (record.schedule.gc === undefined || record.schedule.gc.writerGcIntervalMs > 0) return
  const passes = record.gcPasses ?? []
  for (const pass of passes) {
    if (
      pass.result?.error === undefined || pass.endedAtMs === undefined || pass.objectsBefore === undefined ||
      pass.audit?.objects === undefined
    ) continue
    const endedAtMs = pass.endedAtMs
    const overlapping = passes.some((other) =>
      other !== pass && other.startedAtMs <= endedAtMs && (other.endedAtMs ?? Infinity) >= pass.startedAtMs
    )
    if (overlapping) continue
    const after = new Set(pass.audit.objects.map((object) => object.key))
    const gone = pass.objectsBefore.filter((key) => /^(data|manifests|wal)\//.test(key) && !after.has(key))
    if (gone.length > 0) {
      add(
        "gc-fails-closed",
        `the gc pass at t=${pass.startedAtMs}..${endedAtMs}ms failed (${pass.result.error}) and deleted ${gone.length} object(s): ${
          gone.slice(0, 3).join(", ")
        }`
      )
    }
  }
}

const choiceText = (restore: RestoreRecord): string =>
  restore.choice._tag === "Latest"
    ? "the latest state"
    : restore.choice._tag === "Checkpoint"
    ? `checkpoint ${restore.choice.checkpoint}`
    : `LSN ${restore.choice.lsn}`

/**
 * The workload's ledger of its archived WAL at `beforeMs`: every insert acknowledged before (at an
 * earlier instant) an awaited WAL archive began that succeeded before `beforeMs`, on the same
 * directory, before that directory's instance was taken over.
 */
const archivedLedger = (record: RunRecord, beforeMs: number): ReadonlyMap<number, string> => {
  const required = new Map<number, string>()
  const archives = record.archives.filter((archive) =>
    archive.result !== undefined && archive.result.error === undefined && archive.endedAtMs !== undefined &&
    archive.endedAtMs < beforeMs
  )
  for (const insert of record.inserts) {
    if (insert.result?.acked !== true || insert.endedAtMs === undefined) continue
    const disk = diskOf(insert.instance)
    const supersededAt = supersededAtMs(record, disk)
    const covering = archives.find((archive) =>
      diskOf(archive.instance) === disk && (archive.endedAtMs ?? Infinity) < supersededAt &&
      (insert.endedAtMs ?? Infinity) < archive.startedAtMs
    )
    if (covering !== undefined) {
      required.set(
        insert.id,
        `acknowledged by ${insert.instance} at t=${insert.endedAtMs}ms, LSN ${insert.result.lsn}, then archived (awaited by ${covering.instance} at t=${covering.startedAtMs}..${covering.endedAtMs}ms)`
      )
    }
  }
  return required
}

/**
 * `restore-under-lease`: a restore that holds a reader lease completes, or is refused cleanly (the
 * target expired or lies outside the window: RestoreRefused; its lease could not be kept:
 * ReaderLeaseLost); it never meets a missing or damaged object (ObjectNotFound, CorruptObject,
 * WalGap, ...): nothing it reads may be deleted under its lease.
 * `restore-at-target`: a restore that completed holds exactly the acknowledged data of its target:
 * its base is the checkpoint asked for (for an LSN, one at or below it); every insert the base's
 * audited read must hold (`mustHold`); for an LSN or the latest state, every insert of the base's
 * writer logged from the base's WAL position up to the target that the workload's ledger says was
 * archived before the restore began; for an LSN, no insert logged at or after it that the base's
 * parts do not hold; and no byte that no insert wrote.
 */
const judgeRestores = (record: RunRecord, add: Add) => {
  const chain = everAudited(record)
  for (const restore of record.restores ?? []) {
    const result = restore.result
    if (result === undefined) continue
    const what = `the restore of ${choiceText(restore)} at t=${restore.startedAtMs}..${restore.endedAtMs}ms${
      restore.latencyMs > 0 ? ` (gets ${restore.latencyMs} ms slow)` : ""
    }`
    if (result.error !== undefined) {
      if (result.error.tag !== "RestoreRefused" && result.error.tag !== "ReaderLeaseLost") {
        add("restore-under-lease", `${what} failed: ${result.error.detail}`)
      }
      continue
    }
    const base = result.base ?? 0
    const audited = base === 0 ? undefined : chain.get(base)
    if (base !== 0 && audited === undefined) {
      add("restore-at-target", `${what} restored from checkpoint ${base}, which no audit read as committed`)
      continue
    }
    if (restore.choice._tag === "Checkpoint" && base !== restore.choice.checkpoint) {
      add("restore-at-target", `${what} restored from checkpoint ${base}`)
    }
    if (restore.choice._tag === "Lsn" && audited !== undefined && audited.walPosition > restore.choice.lsn) {
      add(
        "restore-at-target",
        `${what} restored from checkpoint ${base}, whose WAL position ${audited.walPosition} is past the target`
      )
    }
    const required = audited === undefined ? new Map<number, string>() : mustHold(record, chain, audited)
    const upToLsn = restore.choice._tag === "Lsn"
      ? restore.choice.lsn
      : restore.choice._tag === "Latest"
      ? Number.POSITIVE_INFINITY
      : undefined
    if (upToLsn !== undefined && audited !== undefined) {
      for (const [id, why] of archivedLedger(record, restore.startedAtMs)) {
        const insert = record.inserts[id]
        const lsn = insert?.result?.lsn
        if (insert === undefined || lsn === undefined || !sameIdentity(infoOf(record, insert.instance), audited)) {
          continue
        }
        if (lsn >= audited.walPosition && lsn < upToLsn && !required.has(id)) required.set(id, why)
      }
    }
    // For an LSN: the writes logged at or after it that the base's parts do not hold.
    const absent = new Map<string, Array<InsertRecord>>()
    if (restore.choice._tag === "Lsn") {
      for (const insert of record.inserts) {
        const lsn = insert.result?.lsn
        const key = slotKey(insert.slot)
        const inBase = audited?.slots.get(key)
        if (
          lsn !== undefined && lsn >= restore.choice.lsn && (inBase === undefined || !sameBytes(inBase, insert.value))
        ) {
          absent.set(key, [...absent.get(key) ?? [], insert])
        }
      }
    }
    for (const { file, part, read } of result.parts) {
      if (read.error !== undefined) {
        add("restore-under-lease", `${what}: reading f${file}#${part} failed: ${read.error}`)
      }
      checkPartBytes(record, file, part, read, (insert) => required.get(insert.id), what, "restore-at-target", add)
      if (read.bytes === undefined) continue
      for (const [slot, bytes] of slotsOfPart(file, part, read.bytes)) {
        const insert = absent.get(slotKey(slot))?.find((each) => sameBytes(bytes, each.value))
        if (insert !== undefined) {
          add(
            "restore-at-target",
            `${what}: holds insert ${insert.id} (slot ${
              slotKey(slot)
            }), logged at LSN ${insert.result?.lsn}, at or after the target, and not in checkpoint ${base}'s parts`
          )
        }
      }
    }
  }
}

/** `data/<N>/…` and `manifests/<N>/…`: N; `wal/<segment hex>…`: the segment. */
const keyNumbers = (
  key: string
): { readonly family: "data" | "manifests" | "wal" | "other"; readonly number: number } => {
  const object = /^(data|manifests)\/(\d+)\//.exec(key)
  if (object !== null) return { family: object[1] === "data" ? "data" : "manifests", number: Number(object[2]) }
  const wal = /^wal\/([0-9a-f]+)/.exec(key)
  if (wal !== null) return { family: "wal", number: Number.parseInt(wal[1] ?? "0", 16) }
  return { family: "other", number: 0 }
}

/** `references-named-at-their-number` over every checkpoint the run's audits read. */
const judgeReferenceNumbers = (record: RunRecord, add: Add) => {
  // A root never changes: every audited read of a number that listed its references counts.
  const audited = [...everAudited(record).values(), ...(record.finalAudit?.checkpoints ?? [])]
    .filter((checkpoint) => checkpoint.references !== undefined)
  const namedBy = new Map<number, Set<string>>()
  for (const checkpoint of audited) {
    const named = namedBy.get(checkpoint.checkpoint) ?? new Set<string>()
    for (const key of checkpoint.references ?? []) named.add(key)
    namedBy.set(checkpoint.checkpoint, named)
  }
  const reported = new Set<string>()
  for (const checkpoint of audited) {
    for (const key of checkpoint.references ?? []) {
      const { number } = keyNumbers(key)
      const own = namedBy.get(number)
      const problem = `${checkpoint.checkpoint} ${key}`
      if (number >= checkpoint.checkpoint || own === undefined || own.has(key) || reported.has(problem)) continue
      reported.add(problem)
      add(
        "references-named-at-their-number",
        `checkpoint ${checkpoint.checkpoint} names ${key}, which checkpoint ${number} does not name`
      )
    }
  }
}

/** The bytes of every part of the data model: what a checkpoint's parts can hold at most. */
const liveDataBytes = dataModel.files * dataModel.partsPerFile * dataModel.partSizeBytes

/**
 * `bucket-bounded`, after a last pass with nothing in flight (every instance stopped, faults
 * healed, minimum age 0), with R the committed checkpoints left (what the retention keeps):
 * - every part and file manifest is named by one of them, or belongs to a checkpoint number above
 *   the latest (an upload of a commit that never happened, which no pass can tell from one in
 *   flight; one at the latest number that its root does not name is a failed attempt's, which no
 *   later checkpoint names: Retention.mayStillBeNamed);
 * - every archived WAL segment ends past the oldest one's WAL position (the window's WAL);
 * - the parts' bytes are at most (R + 1) × the live data (each committed checkpoint names at most
 *   one object per part of the data model, and the uploads above the latest are at most one
 *   checkpoint's worth), and there are at most (R + 1) × files file manifests.
 */
const judgeBound = (record: RunRecord, add: Add) => {
  const final = record.finalGc
  const audit = final?.audit
  if (
    final?.result === undefined || final.result.error !== undefined || !final.result.complete ||
    audit?.objects === undefined
  ) return
  const retained = audit.checkpoints
  const latest = Math.max(0, ...retained.map((checkpoint) => checkpoint.checkpoint), ...(audit.expired ?? []))
  const referenced = new Set(retained.flatMap((checkpoint) => checkpoint.references ?? []))
  const floorLsn = retained.length === 0 ? 0 : Math.min(...retained.map((checkpoint) => checkpoint.walPosition))
  const walSegmentBytes = audit.walSegmentBytes ?? dataModel.partSizeBytes
  let partBytes = 0
  let fileManifests = 0
  const garbage: Array<string> = []
  for (const object of audit.objects) {
    const { family, number } = keyNumbers(object.key)
    if (family === "data" || family === "manifests") {
      if (family === "data") partBytes += object.sizeBytes
      else fileManifests++
      if (!referenced.has(object.key) && number <= latest) garbage.push(object.key)
    } else if (family === "wal" && (number + 1) * walSegmentBytes <= floorLsn) {
      garbage.push(
        `${object.key} (ends at ${
          (number + 1) * walSegmentBytes
        }, at or below the oldest kept checkpoint's WAL position ${floorLsn})`
      )
    }
  }
  const what = `after the last gc pass (${retained.length} checkpoint(s) kept: ${
    retained.map((checkpoint) => checkpoint.checkpoint).join(", ")
  }; latest ${latest})`
  if (garbage.length > 0) {
    add(
      "bucket-bounded",
      `${what}: ${garbage.length} object(s) no kept checkpoint needs: ${garbage.slice(0, 4).join(", ")}`
    )
  }
  const partBound = (retained.length + 1) * liveDataBytes
  if (partBytes > partBound) {
    add("bucket-bounded", `${what}: ${partBytes} bytes of parts, over (${retained.length} + 1) × ${liveDataBytes}`)
  }
  if (fileManifests > (retained.length + 1) * dataModel.files) {
    add(
      "bucket-bounded",
      `${what}: ${fileManifests} file manifests, over (${retained.length} + 1) × ${dataModel.files}`
    )
  }
}
