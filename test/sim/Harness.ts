/**
 * The simulation harness: the interface a system under test offers the properties, and the driver
 * that plays one schedule against it on simulated time and records everything the properties judge.
 *
 * One run (`simulate`):
 * 1. open the first instance over a fresh world (a memory bucket; a local disk per instance);
 * 2. play the schedule: each step starts at its instant in its own fiber (the workload runs
 *    concurrently); faults go to the current instance's fault decorator; a take-over opens a new
 *    instance on the bucket and makes the old one a stale writer that tries to commit;
 *    after every step the part-state invariants of every live instance are checked;
 * 3. at the shutdown instant the application stops (interrupting its lease holders, or everything
 *    it has in flight) and every instance shuts down at once, faults still active. Each shutdown
 *    runs in a daemon fiber raced against its deadline plus a margin, so that a hung shutdown (the
 *    model of the original, by design) is observed, never waited for;
 * 4. if every shutdown completed: heal, restart the current instance on its own disk (after an
 *    optional crash that drops unsynced writes) and read everything back; restore a fresh instance
 *    from the bucket alone; audit every checkpoint in the bucket.
 * The record is pure data; test/sim/Properties.ts judges it.
 *
 * The harness never awaits the system without a bound: every call is forked as a daemon and
 * awaited under a timeout, so one run always ends, whatever the system does.
 */
import { Duration, Effect, Exit, Fiber, Option, Ref } from "effect"
import type { DiskFault, Fault, HoldingDiskFault, RestartSettings, Rot, SimSchedule, Step } from "./Schedule.js"
import { dataModel, holdsCallers, stepText } from "./Schedule.js"

// ---------------------------------------------------------------------------------------------
// The data model
// ---------------------------------------------------------------------------------------------

export interface Slot {
  readonly file: number
  readonly part: number
  readonly index: number
}

export const slotKey = (slot: Slot): string => `f${slot.file}#${slot.part}.${slot.index}`

/** The local directory of an instance: every incarnation of `A` (`A`, `A.2`, `A.3`, after crashes)
 * runs on directory `A`. */
export const diskOf = (label: string): string => label.split(".")[0] ?? label

/** The label of the next incarnation on the same directory. */
export const nextIncarnation = (label: string): string => {
  const [disk, incarnation] = label.split(".")
  return `${disk ?? label}.${Number(incarnation ?? 1) + 1}`
}

/** The bytes of insert `id`: never zero in its first word, different for every id. */
export const insertValue = (id: number): Uint8Array => {
  const bytes = new Uint8Array(dataModel.slotBytes)
  const view = new DataView(bytes.buffer)
  view.setUint32(0, 0x51_4d_00_00 + (id & 0xffff))
  view.setUint32(4, id + 1)
  for (let index = 8; index < bytes.length; index++) bytes[index] = ((id * 31 + index * 7) & 0xff) | 1
  return bytes
}

export const sameBytes = (left: Uint8Array, right: Uint8Array): boolean =>
  left.length === right.length && left.every((byte, index) => byte === right[index])

export const isZero = (bytes: Uint8Array): boolean => bytes.every((byte) => byte === 0)

/** The slots of a part's bytes. */
export const slotsOfPart = (
  file: number,
  part: number,
  bytes: Uint8Array
): ReadonlyArray<readonly [Slot, Uint8Array]> =>
  Array.from({ length: dataModel.slotsPerPart }, (_, index) => {
    const start = index * dataModel.slotBytes
    const slice = bytes.length >= start + dataModel.slotBytes
      ? bytes.slice(start, start + dataModel.slotBytes)
      : new Uint8Array(dataModel.slotBytes)
    return [{ file, part, index }, slice] as const
  })

// ---------------------------------------------------------------------------------------------
// The interface of a system under test
// ---------------------------------------------------------------------------------------------

export interface InsertResult {
  /** The write into the part returned. */
  readonly applied: boolean
  /** The LSN of the WAL record, once appended. */
  readonly lsn: number | undefined
  /** The commit returned: the insert is acknowledged. */
  readonly acked: boolean
  readonly error: string | undefined
}

export interface PartRead {
  readonly bytes: Uint8Array | undefined
  readonly error: string | undefined
}

export interface CheckpointResult {
  readonly completed: { readonly checkpoint: number; readonly walPosition: number } | undefined
  /** `nothing-to-do` and similar non-commits. */
  readonly skipped: string | undefined
  readonly error: { readonly tag: string; readonly detail: string } | undefined
}

export interface OpResult {
  readonly error: string | undefined
}

export interface ShutdownResult {
  readonly metDeadline: boolean
  readonly durationMs: number
  /** Records below this LSN are in the bucket's archived WAL. */
  readonly archivedThroughLsn: number | undefined
  /** The number of the checkpoint the shutdown committed, if any. */
  readonly finalCheckpoint: number | undefined
  /** The shutdown checkpoint ran out of its time budget (rather than completing or failing). */
  readonly finalCheckpointTimedOut: boolean
  /** Problems the system's own report states (leases or fibers left, ...). */
  readonly problems: ReadonlyArray<string>
  readonly detail: string
  /** After the shutdown: the last checkpoint the instance's figures (its stats) report committed,
   * and the one it knows committed (where its next checkpoint would start); when it reports them. */
  readonly reportedLastCheckpoint?: number
  readonly knownLatestCheckpoint?: number
}

export interface Observation {
  readonly leasesHeld: number
  /** Fibers of the system still alive (the harness's own fibers not counted). */
  readonly fibersAlive: number
  readonly fibersAliveDetail: string
  /** Tasks still queued or in flight (unresolved handles). */
  readonly unresolvedTasks: number
  readonly invariantProblems: ReadonlyArray<string>
}

/** One running instance of the system. Operations report failures as values: they never fail. */
export interface Instance {
  readonly label: string
  /** The instance identity the bucket's manifests carry. */
  readonly instanceId: string
  readonly epoch: number
  readonly insert: (slot: Slot, value: Uint8Array) => Effect.Effect<InsertResult>
  readonly readPart: (file: number, part: number) => Effect.Effect<PartRead>
  readonly holdLease: (file: number, part: number, holdMs: number) => Effect.Effect<OpResult>
  readonly checkpoint: Effect.Effect<CheckpointResult>
  readonly evict: Effect.Effect<OpResult>
  readonly archiveWal: Effect.Effect<OpResult>
  /** Injects a fault into the instance's local disk (absent: not supported); `heal` ends it. */
  readonly injectDiskFault?: (fault: DiskFault) => Effect.Effect<void>
  /** Archives the WAL written so far and waits until it is in the bucket (absent: not supported). */
  readonly archiveWalAwaited?: Effect.Effect<OpResult>
  readonly inject: (fault: Fault) => Effect.Effect<void>
  readonly heal: Effect.Effect<void>
  /** Whether a fault was injected since the last heal. */
  readonly faultsActive: Effect.Effect<boolean>
  /** Shuts the instance down (`byScope`: by closing its scope). May never end: the harness bounds it. */
  readonly shutdown: (byScope: boolean) => Effect.Effect<ShutdownResult>
  readonly observe: Effect.Effect<Observation>
  /** The part-state invariant problems now (cheap: checked after every step). */
  readonly invariants: Effect.Effect<ReadonlyArray<string>>
  /** Who waits on what, for failure reports (the wait-for graph). */
  readonly diagnose: Effect.Effect<string>
}

/** A checkpoint read back from the bucket by the auditor, independently of the system's restore. */
export interface AuditedCheckpoint {
  readonly checkpoint: number
  readonly previous: number
  readonly epoch: number
  readonly instanceId: string
  readonly walPosition: number
  /** Every non-zero slot of the checkpoint's data. */
  readonly slots: ReadonlyMap<string, Uint8Array>
  /** The keys of every object it names (file manifests and parts). */
  readonly references?: ReadonlyArray<string>
}

export interface BucketAudit {
  /** The committed checkpoints (root manifests that are not tombstones). */
  readonly checkpoints: ReadonlyArray<AuditedCheckpoint>
  /** A manifest referencing a missing object, a corrupt object, ... */
  readonly problems: ReadonlyArray<string>
  /** A committed checkpoint number whose root object vanished, or that was committed again. */
  readonly numberProblems?: ReadonlyArray<string>
  /** Checkpoints whose root manifest is a tombstone (expired by the collector). */
  readonly expired?: ReadonlyArray<number>
  /** Every object of the bucket, by key. */
  readonly objects?: ReadonlyArray<{ readonly key: string; readonly sizeBytes: number }>
  /** Every committed checkpoint any audit of the run has read (tombstoned since or not), the
   * latest read of each number. */
  readonly history?: ReadonlyArray<AuditedCheckpoint>
  readonly walSegmentBytes?: number
}

/** What one garbage-collection pass did. */
export interface GcPassResult {
  /** `Tag: message` of the failure, if it failed. */
  readonly error: string | undefined
  readonly deletedObjects: number
  readonly expiredNow: ReadonlyArray<number>
  readonly retained: ReadonlyArray<number>
  readonly complete: boolean
  /** The prefixes whose last listing in the pass failed, and the root and file manifests whose
   * last read failed (as the bucket answered, below any retry). */
  readonly listingsFailed?: ReadonlyArray<string>
}

/** What a restore was asked for (chosen from the bucket at the step's instant). */
export type RestoreChoice =
  | { readonly _tag: "Latest" }
  | { readonly _tag: "Checkpoint"; readonly checkpoint: number }
  | { readonly _tag: "Lsn"; readonly lsn: number }

export interface RestoreResult {
  readonly error: { readonly tag: string; readonly detail: string } | undefined
  /** The base checkpoint it restored from (0: the empty state). */
  readonly base: number | undefined
  readonly walFromLsn: number | undefined
  readonly walToLsn: number | undefined
  readonly parts: ReadonlyArray<{ readonly file: number; readonly part: number; readonly read: PartRead }>
}

/** A system the properties can judge. */
export interface SystemUnderTest<W> {
  readonly name: string
  readonly shutdownDeadlineMs: number
  /** A read of one part returns within this, whatever the bucket does (undefined: no bound). */
  readonly readDeadlineMs: number | undefined
  readonly makeWorld: Effect.Effect<W>
  /** Opens the first instance (`checkpointIntervalMs`: its periodic checkpoint interval, if the
   * schedule sets one). */
  readonly open: (world: W, label: string, checkpointIntervalMs?: number) => Effect.Effect<Instance, string>
  /** Opens a new instance that takes the bucket over; undefined when the system has no take-over. */
  readonly takeOver:
    | ((world: W, label: string, faults?: ReadonlyArray<Fault>) => Effect.Effect<Instance, string>)
    | undefined
  /** Heals every fault of the world. */
  readonly healAll: (world: W) => Effect.Effect<void>
  /** Reopens `label`'s local directory (after a crash if asked) with WAL replay. */
  readonly restart: (
    world: W,
    label: string,
    crash: boolean,
    settings?: RestartSettings
  ) => Effect.Effect<Instance, string>
  /** Kills instance `label` (SIGKILL: its fibers stop mid-flight, nothing it does afterwards
   * reaches its disk or the bucket, its directory loses every unsynced write), running or still
   * starting. Undefined: the system cannot be killed (its Crash steps are skipped). */
  readonly crash?: (world: W, label: string) => Effect.Effect<void>
  /** Flips a byte of a file in `label`'s stopped directory (bit rot), after the crash that drops
   * its unsynced writes when `crashFirst` (rot happens at rest); says what it flipped. */
  readonly rot?: (world: W, label: string, rot: Rot, crashFirst: boolean) => Effect.Effect<RotOutcome>
  /** How long a start after a kill waits before it starts its work (the dead open's lock lease):
   * a Crash step's `crashAgainAfterMs` counts from then, so that it lands in the start-up's replay. */
  readonly restartDelayMs?: number
  /** Starts instance `label` on its directory (`diskOf(label)`) after a crash. */
  readonly reopen?: (
    world: W,
    label: string,
    settings: RestartSettings,
    faults?: ReadonlyArray<Fault>
  ) => Effect.Effect<Instance, string>
  /** Opens a fresh directory from the bucket alone: latest checkpoint + archived WAL. */
  readonly restore: (world: W, label: string) => Effect.Effect<Instance, string>
  readonly audit: (world: W) => Effect.Effect<BucketAudit>
  /** Takes the schedule's run-wide settings (retention, the writers' collector) before the first
   * instance opens. */
  readonly configure?: (world: W, schedule: SimSchedule) => void
  /** One garbage-collection pass by a collector of its own, as the `gc` command runs it (no lock,
   * minimum age 0), over its own faulty view of the bucket. Undefined: no collector. */
  readonly gcPass?: (world: W) => Effect.Effect<GcPassResult>
  /** A fault of the collector's view; `gcHeal` clears them. */
  readonly gcInject?: (world: W, fault: Fault) => Effect.Effect<void>
  readonly gcHeal?: (world: W) => Effect.Effect<void>
  /** The target of a restore step, chosen from the bucket as it is now (no fault, no request). */
  readonly chooseRestore?: (world: W, step: Extract<Step, { _tag: "Restore" }>) => Effect.Effect<RestoreChoice>
  /** A point-in-time restore under a reader lease into a fresh directory, reading every part back. */
  readonly restoreAt?: (world: W, choice: RestoreChoice, latencyMs: number) => Effect.Effect<RestoreResult>
}

// ---------------------------------------------------------------------------------------------
// The run record
// ---------------------------------------------------------------------------------------------

/** What a bit flip hit. */
export interface RotOutcome {
  readonly detail: string
  /** The flipped byte lies in the WAL record at `lsn`; `recordedDurableLsn` is the WAL's durable
   * end as the directory records it at that moment (the clean stop's or checkpoint's record, or the
   * flush mark, whichever is higher; 0 when none survived), the end below which a start may not
   * take damage for a torn write. */
  readonly walRecord?: { readonly lsn: number; readonly recordedDurableLsn: number }
}

export interface InsertRecord {
  readonly id: number
  readonly slot: Slot
  readonly value: Uint8Array
  /** For a rewrite: the insert whose slot it writes again (the slot's last write before it). */
  readonly rewrites?: number
  readonly instance: string
  readonly startedAtMs: number
  result: InsertResult | undefined
  endedAtMs: number | undefined
  /** Applied at this instant (the write returned), if it did. */
  appliedAtMs: number | undefined
}

export interface ReadRecord {
  readonly file: number
  readonly part: number
  readonly instance: string
  readonly startedAtMs: number
  result: PartRead | undefined
  endedAtMs: number | undefined
}

export interface CheckpointRecord {
  readonly instance: string
  readonly startedAtMs: number
  readonly stale: boolean
  /** For a stale writer's attempt: whether its store had a fault active when it began. */
  readonly faultsActive: boolean
  /** For a stale writer's attempt: whether its insert just before was logged. */
  readonly afterLoggedInsert: boolean
  result: CheckpointResult | undefined
  endedAtMs: number | undefined
}

export interface ShutdownRecord {
  readonly instance: string
  readonly startedAtMs: number
  completedAtMs: number | undefined
  result: ShutdownResult | undefined
  /** If it had not completed by the deadline + margin: who waited on what then. */
  diagnosisAtDeadline: string | undefined
  /** If it had not completed by the deadline + margin: did it ever, within the probe window? */
  completedLateAtMs: number | undefined
  observation: Observation | undefined
}

export interface ReopenRecord {
  readonly kind: "restart" | "restore"
  readonly instance: string
  readonly instanceId: string | undefined
  readonly epoch: number | undefined
  readonly crash: boolean
  readonly error: string | undefined
  /** A restart in the middle of the run that started with network faults active (lost responses,
   * late requests): it may fail on them like any request. */
  readonly networkFaulty?: boolean
  readonly parts: ReadonlyArray<{ readonly file: number; readonly part: number; readonly read: PartRead }>
  readonly shutdown: ShutdownRecord | undefined
}

export interface InstanceInfo {
  readonly label: string
  readonly instanceId: string
  readonly epoch: number
  readonly openedAtMs: number
  /** The label of the instance it took over from. */
  readonly tookOverFrom: string | undefined
  /** When its take-over began (the instance it replaced was superseded from then on). */
  readonly takeOverStartedAtMs?: number
}

/** An instance killed during the run (by a Crash step, or at the shutdown instant). */
export interface CrashRecord {
  readonly instance: string
  readonly atMs: number
  readonly during: "running" | "start-up"
}

/** An archive of the WAL that the application waited for: its success acknowledges that every
 * commit acknowledged before it began is in the bucket. */
export interface ArchiveRecord {
  readonly instance: string
  readonly startedAtMs: number
  result: OpResult | undefined
  endedAtMs: number | undefined
}

/** A take-over that did not open (while it runs: one not opened yet). */
export interface FailedTakeOver {
  readonly label: string
  readonly replacing: string
  readonly atMs: number
  /** How it failed (absent while it runs). */
  readonly error?: string
}

/** A fault injected into one instance's view of the bucket, or a heal of every view. */
export type FaultEvent =
  | {
    readonly atMs: number
    readonly instance: string
    readonly kind: Fault["kind"] | HoldingDiskFault["kind"]
    /** How long after the next heal its requests may still be on their way (`late`), or its held
     * writes still land (`writeStalls`). */
    readonly lingersMs?: number
    /** For a slow disk (`slowSyncs`, `slowDisk`): what each of its calls takes; for held writes
     * (`writeStalls`): their hold. */
    readonly diskLatencyMs?: number
  }
  | { readonly atMs: number; readonly instance: "*"; readonly kind: "heal" }

/** A garbage-collection pass of the collector of the run (`gc`), and the audit right after it. */
export interface GcPassRecord {
  readonly startedAtMs: number
  /** Whether the collector's view had a fault when the pass began. */
  readonly faultsActive: boolean
  /** The bucket's keys when it began. */
  readonly objectsBefore: ReadonlyArray<string> | undefined
  result: GcPassResult | undefined
  endedAtMs: number | undefined
  audit: BucketAudit | undefined
}

/** A restore under a lease during the run. */
export interface RestoreRecord {
  readonly startedAtMs: number
  readonly choice: RestoreChoice
  readonly latencyMs: number
  result: RestoreResult | undefined
  endedAtMs: number | undefined
}

export interface RunRecord {
  readonly system: string
  readonly shutdownDeadlineMs: number
  readonly readDeadlineMs: number | undefined
  readonly schedule: SimSchedule
  readonly instances: Array<InstanceInfo>
  readonly inserts: Array<InsertRecord>
  readonly reads: Array<ReadRecord>
  readonly checkpoints: Array<CheckpointRecord>
  readonly invariantProblems: Array<{ readonly atMs: number; readonly instance: string; readonly problem: string }>
  readonly faults: Array<FaultEvent>
  readonly shutdowns: Array<ShutdownRecord>
  /** Workload operations still running once every shutdown returned. */
  readonly unfinishedWorkload: Array<string>
  readonly reopens: Array<ReopenRecord>
  readonly crashes: Array<CrashRecord>
  readonly archives: Array<ArchiveRecord>
  /** Take-overs that never opened (failed, ran out of time, or were cut at the shutdown instant):
   * `replacing` was the owner then. Such a start may still have taken the bucket over (its claim
   * landed, its answer was lost or never awaited). */
  readonly failedTakeOvers?: Array<FailedTakeOver>
  /** Bit rot injected into the restarted directory before the restart, if any. */
  rot: string | undefined
  /** For rot in a WAL record: where, and the durable end the directory recorded (see RotOutcome). */
  rotWalRecord?: RotOutcome["walRecord"]
  /** The bucket right after the shutdown, before anything reopened it. */
  audit: BucketAudit | undefined
  /** The bucket at the end (after the restart and the restore wrote to it too). */
  finalAudit: BucketAudit | undefined
  /** The collector's passes during the run (schedules with garbage collection). */
  readonly gcPasses?: Array<GcPassRecord>
  /** Audits taken every few ms during the run (schedules with garbage collection): those that found
   * a problem. */
  readonly gcAudits?: Array<{ readonly atMs: number; readonly audit: BucketAudit }>
  readonly restores?: Array<RestoreRecord>
  /** A last pass at the end, with nothing in flight (every instance stopped, faults healed), and
   * the audit after it. */
  finalGc?: { readonly result: GcPassResult | undefined; readonly audit: BucketAudit | undefined }
  readonly trace: Array<string>
  readonly harnessErrors: Array<string>
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

/** Bounds of the harness's own waits (simulated time). */
export interface HarnessBounds {
  /** Waiting for a shutdown beyond its deadline before calling it hung. */
  readonly hangMarginMs: number
  /** After the margin, how much longer to watch a hung shutdown (did it ever end?). */
  readonly hangProbeMs: number
  /** Opening, take-over, restart, restore, audit. */
  readonly openTimeoutMs: number
  /** Reading back one part after a restart. */
  readonly readTimeoutMs: number
}

export const defaultHarnessBounds: HarnessBounds = {
  hangMarginMs: 1_000,
  hangProbeMs: 5_000,
  openTimeoutMs: 60_000,
  readTimeoutMs: 10_000
}

const now = Effect.clockWith((clock) => clock.currentTimeMillis)

const faultEvent = (atMs: number, instance: string, fault: Fault): FaultEvent =>
  fault.kind === "late"
    ? { atMs, instance, kind: fault.kind, lingersMs: fault.maxMs }
    : { atMs, instance, kind: fault.kind }

/** Runs `effect` in a daemon fiber and waits at most `ms` for it; None if it did not finish. */
const bounded = <A, E>(effect: Effect.Effect<A, E>, ms: number): Effect.Effect<Option.Option<Exit.Exit<A, E>>> =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkDaemon(effect)
    const exit = yield* Fiber.await(fiber).pipe(Effect.timeout(Duration.millis(ms)), Effect.option)
    if (Option.isNone(exit)) yield* Fiber.interruptFork(fiber)
    return exit
  })

const describeExit = <A, E>(exit: Exit.Exit<A, E>): string =>
  Exit.isSuccess(exit) ? "ok" : String(exit.cause).split("\n")[0] ?? "failure"

interface Live {
  readonly instance: Instance
  readonly info: InstanceInfo
}

/** Plays one schedule against one system and records what happened. */
export const simulate = <W>(
  system: SystemUnderTest<W>,
  schedule: SimSchedule,
  bounds: HarnessBounds = defaultHarnessBounds
): Effect.Effect<RunRecord> =>
  Effect.gen(function*() {
    const record: RunRecord = {
      system: system.name,
      shutdownDeadlineMs: system.shutdownDeadlineMs,
      readDeadlineMs: system.readDeadlineMs,
      schedule,
      instances: [],
      inserts: [],
      reads: [],
      checkpoints: [],
      invariantProblems: [],
      faults: [],
      shutdowns: [],
      unfinishedWorkload: [],
      reopens: [],
      crashes: [],
      archives: [],
      failedTakeOvers: [],
      gcPasses: [],
      gcAudits: [],
      restores: [],
      rot: undefined,
      audit: undefined,
      finalAudit: undefined,
      trace: [],
      harnessErrors: []
    }
    const trace = (line: string) => Effect.map(now, (atMs) => void record.trace.push(`t=${atMs.toFixed(1)}ms ${line}`))
    const world = yield* system.makeWorld
    system.configure?.(world, schedule)
    const opened = yield* bounded(system.open(world, "A", schedule.checkpointIntervalMs), bounds.openTimeoutMs)
    if (Option.isNone(opened) || Exit.isFailure(opened.value)) {
      record.harnessErrors.push(
        `the first instance did not open: ${Option.isNone(opened) ? "timed out" : describeExit(opened.value)}`
      )
      return record
    }
    const live: Array<Live> = []
    /** Every instance opened, by label. */
    const opened_ = new Map<string, Instance>()
    const addInstance = (instance: Instance, tookOverFrom: string | undefined, takeOverStartedAtMs?: number) =>
      Effect.map(now, (openedAtMs) => {
        const info: InstanceInfo = {
          label: instance.label,
          instanceId: instance.instanceId,
          epoch: instance.epoch,
          openedAtMs,
          tookOverFrom,
          ...(takeOverStartedAtMs === undefined ? {} : { takeOverStartedAtMs })
        }
        record.instances.push(info)
        live.push({ instance, info })
        opened_.set(instance.label, instance)
      })
    yield* addInstance(opened.value.value, undefined)
    const currentRef = yield* Ref.make(opened.value.value)
    const workload: Array<
      {
        readonly name: string
        readonly instance: string
        readonly fiber: Fiber.RuntimeFiber<void>
        readonly leaseHolder: boolean
      }
    > = []
    /** Lost-response and late faults since the last heal: they come from the network path that
     * every process shares, so an instance started later (a restart, a take-over) starts with them. */
    const networkFaults: Array<Fault> = []
    /** The lost-response faults a new instance `label` starts with (recorded as injected into it). */
    const networkFaultsFor = (label: string) =>
      Effect.map(now, (atMs): ReadonlyArray<Fault> => {
        for (const fault of networkFaults) record.faults.push(faultEvent(atMs, label, fault))
        return [...networkFaults]
      })
    /** Shutdowns begun during the run (an owner stopping), awaited before the end. */
    const midRunShutdowns: Array<Fiber.RuntimeFiber<void>> = []
    /** Owners stopping in the middle of the run: no longer live, but a heal still reaches them. */
    const stoppingOwners: Array<Instance> = []
    const nextSlotIndex = new Map<string, number>()
    /** The last write of each slot, by slot key. */
    const lastWriteBySlot = new Map<string, InsertRecord>()
    let nextInsertId = 0
    let nextLabel = 1

    // Slots fill a part from its end, so that a part's file has its full size from its first
    // insert (parts are sparse files: a budget in bytes then counts parts, and eviction happens).
    const allocateSlot = (file: number, part: number): Slot | undefined => {
      for (let offset = 0; offset < dataModel.partsPerFile; offset++) {
        const candidate = (part + offset) % dataModel.partsPerFile
        const key = `${file}#${candidate}`
        const used = nextSlotIndex.get(key) ?? 0
        if (used < dataModel.slotsPerPart) {
          nextSlotIndex.set(key, used + 1)
          return { file, part: candidate, index: dataModel.slotsPerPart - 1 - used }
        }
      }
      return undefined
    }

    const isLive = (label: string) => live.some((each) => each.instance.label === label)

    // A rewrite never overlaps the slot's last write on a live instance (the application orders
    // the writes of one row, as a database's row lock does), so the slots' writes are ordered by id.
    // A write still running on an instance that stopped was abandoned: its slot is chosen first (of
    // any file), then the part's latest written slot, then the file's.
    const chooseRewrite = (file: number, part: number): InsertRecord | undefined => {
      const written = [...lastWriteBySlot.values()].sort((left, right) => right.id - left.id)
      const rank = (each: InsertRecord) =>
        each.endedAtMs === undefined && !isLive(each.instance)
          ? 0
          : each.slot.file !== file
          ? 3
          : each.slot.part === part
          ? 1
          : 2
      const candidates = written.filter((each) => each.endedAtMs !== undefined || !isLive(each.instance))
      return candidates.sort((left, right) => rank(left) - rank(right))[0]
    }

    const insertOn = (instance: Instance, file: number, part: number, rewrite = false) =>
      Effect.gen(function*() {
        const previous = rewrite ? chooseRewrite(file, part) : undefined
        const slot = rewrite ? previous?.slot : allocateSlot(file, part)
        if (slot === undefined) return undefined
        const id = nextInsertId++
        const insert: InsertRecord = {
          id,
          slot,
          value: insertValue(id),
          ...(previous === undefined ? {} : { rewrites: previous.id }),
          instance: instance.label,
          startedAtMs: yield* now,
          result: undefined,
          endedAtMs: undefined,
          appliedAtMs: undefined
        }
        record.inserts.push(insert)
        lastWriteBySlot.set(slotKey(slot), insert)
        return insert
      })

    const runInsert = (instance: Instance, insert: InsertRecord) =>
      instance.insert(insert.slot, insert.value).pipe(
        Effect.flatMap((result) =>
          Effect.map(now, (endedAtMs) => {
            insert.result = result
            insert.endedAtMs = endedAtMs
            // The system reports `applied` only once the write returned; the harness takes the
            // end of the whole insert as a safe upper bound of that instant.
            if (result.applied) insert.appliedAtMs = endedAtMs
          })
        )
      )

    const runCheckpoint = (instance: Instance, checkpoint: CheckpointRecord) =>
      instance.checkpoint.pipe(
        Effect.flatMap((result) =>
          Effect.map(now, (endedAtMs) => {
            checkpoint.result = result
            checkpoint.endedAtMs = endedAtMs
          })
        )
      )

    const fork = (name: string, effect: Effect.Effect<void>, leaseHolder = false, instance = "") =>
      Effect.gen(function*() {
        const fiber = yield* Effect.forkDaemon(effect)
        workload.push({
          name,
          instance: instance === "" ? name.split(" on ").at(-1) ?? "" : instance,
          fiber,
          leaseHolder
        })
      })

    const runArchiveAwaited = (instance: Instance) =>
      Effect.gen(function*() {
        const archive = instance.archiveWalAwaited
        if (archive === undefined) return
        const entry: ArchiveRecord = {
          instance: instance.label,
          startedAtMs: yield* now,
          result: undefined,
          endedAtMs: undefined
        }
        record.archives.push(entry)
        const result = yield* archive
        entry.result = result
        entry.endedAtMs = yield* now
      })

    /** Kills an instance: the system stops it, and its application (every operation it has in
     * flight) dies with it. */
    const kill = (label: string, during: CrashRecord["during"]) =>
      Effect.gen(function*() {
        const crash = system.crash
        if (crash === undefined) return
        yield* crash(world, label)
        record.crashes.push({ instance: label, atMs: yield* now, during })
        for (const each of workload) if (each.instance === label) yield* Fiber.interruptFork(each.fiber)
        const index = live.findIndex((each) => each.instance.label === label)
        if (index >= 0) live.splice(index, 1)
        yield* trace(`${label} killed (${during === "start-up" ? "during its start-up" : "while running"})`)
      })

    /** Starts the next incarnation of `victim` on its directory; with `crashAgainAfterMs`, kills
     * it that long after it began (still starting, or running) and starts the one after it. A
     * start-up cut by the shutdown instant is killed too. */
    const restartAfterCrash = (
      victim: string,
      settings: RestartSettings,
      crashAgainAfterMs: number | undefined
    ): Effect.Effect<void> =>
      Effect.gen(function*() {
        const reopenFn = system.reopen
        if (reopenFn === undefined) return
        const label = nextIncarnation(victim)
        const faults = yield* networkFaultsFor(label)
        const fiber = yield* Effect.forkDaemon(reopenFn(world, label, settings, faults))
        const killOnCut = Effect.onInterrupt(() => Effect.zipRight(kill(label, "start-up"), Fiber.interruptFork(fiber)))
        const waitMs = crashAgainAfterMs === undefined
          ? bounds.openTimeoutMs
          : crashAgainAfterMs + (system.restartDelayMs ?? 0)
        const exit = yield* Fiber.await(fiber).pipe(Effect.timeout(Duration.millis(waitMs)), Effect.option, killOnCut)
        const failure = Option.isSome(exit) && Exit.isFailure(exit.value)
          ? describeExit(exit.value)
          : Option.isNone(exit) && crashAgainAfterMs === undefined
          ? `did not open within ${waitMs} ms`
          : undefined
        if (failure !== undefined) {
          record.reopens.push({
            kind: "restart",
            instance: label,
            instanceId: undefined,
            epoch: undefined,
            crash: true,
            error: failure,
            networkFaulty: faults.length > 0,
            parts: [],
            shutdown: undefined
          })
          yield* trace(`restart of ${label} after a crash failed: ${failure}`)
        }
        if (crashAgainAfterMs !== undefined) {
          if (Option.isSome(exit) && Exit.isSuccess(exit.value)) yield* addInstance(exit.value.value, undefined)
          yield* kill(label, Option.isNone(exit) ? "start-up" : "running")
          yield* Fiber.interruptFork(fiber)
          return yield* restartAfterCrash(label, settings, undefined)
        }
        if (Option.isNone(exit) || Exit.isFailure(exit.value)) {
          yield* kill(label, "start-up")
          yield* Fiber.interruptFork(fiber)
          return
        }
        yield* addInstance(exit.value.value, undefined)
        yield* Ref.set(currentRef, exit.value.value)
        yield* trace(`${label} restarted on directory ${diskOf(label)} (epoch ${exit.value.value.epoch})`)
      })

    /** The application restarts its storage: it ends every operation it runs on `instance`, shuts
     * it down cleanly, and opens its directory again at once as the next incarnation, retrying
     * while the directory is locked (a write of the old instance still on its disk), within the
     * open bound. A restart that does not open within it is recorded as a failed restart. */
    const restartAfterStop = (instance: Instance, settings: RestartSettings): Effect.Effect<void> =>
      Effect.gen(function*() {
        const reopenFn = system.reopen
        if (reopenFn === undefined) return
        live.splice(live.findIndex((each) => each.instance.label === instance.label), 1)
        for (const each of workload) if (each.instance === instance.label) yield* Fiber.interruptFork(each.fiber)
        // Awaited at the end too, should the shutdown instant cut this step.
        const stopping = yield* Effect.forkDaemon(shutdownOf(instance))
        midRunShutdowns.push(stopping)
        yield* Fiber.await(stopping)
        const label = nextIncarnation(instance.label)
        const faults = yield* networkFaultsFor(label)
        // Cut by the shutdown instant, one that opened all the same is live, and shut down with the others.
        const opened = (next: Instance) => Effect.zipRight(addInstance(next, undefined), Ref.set(currentRef, next))
        const { exit, refusals } = yield* openRetryingLocked(
          reopenFn(world, label, settings, faults),
          bounds.openTimeoutMs,
          opened
        )
        if (Option.isSome(exit) && Exit.isSuccess(exit.value)) {
          yield* opened(exit.value.value)
          return yield* trace(`${label} opened directory ${diskOf(label)} again after ${refusals} refusal(s)`)
        }
        const error = Option.isNone(exit) ? `did not open within ${bounds.openTimeoutMs} ms` : describeExit(exit.value)
        record.reopens.push({
          kind: "restart",
          instance: label,
          instanceId: undefined,
          epoch: undefined,
          crash: false,
          error,
          networkFaulty: faults.length > 0,
          parts: [],
          shutdown: undefined
        })
        yield* trace(`restart of ${label} on its directory failed: ${error}`)
      })

    /** The stale writer of a take-over goes on as if nothing happened: inserts and commits, and
     * now and then archives its WAL and checkpoints, until shutdown. */
    const staleWriterLoop = (stale: Instance) =>
      Effect.gen(function*() {
        for (let round = 0; round < 12; round++) {
          yield* Effect.sleep(Duration.millis(80))
          const insert = yield* insertOn(stale, round % dataModel.files, (round * 3) % dataModel.partsPerFile)
          if (insert !== undefined) yield* runInsert(stale, insert)
          if (round % 3 === 1) yield* runArchiveAwaited(stale)
          if (round % 3 === 2) {
            const checkpoint: CheckpointRecord = {
              instance: stale.label,
              startedAtMs: yield* now,
              stale: true,
              faultsActive: yield* stale.faultsActive,
              afterLoggedInsert: false,
              result: undefined,
              endedAtMs: undefined
            }
            record.checkpoints.push(checkpoint)
            yield* runCheckpoint(stale, checkpoint)
          }
        }
      })

    const auditNow = Effect.gen(function*() {
      const audit = yield* auditBounded(system, world, bounds, record)
      if (audit !== undefined && (audit.problems.length > 0 || (audit.numberProblems ?? []).length > 0)) {
        record.gcAudits?.push({ atMs: yield* now, audit })
      }
      return audit
    })

    const runGcPass = Effect.gen(function*() {
      const gcPass = system.gcPass
      if (gcPass === undefined) return
      const before = yield* auditNow
      const pass: GcPassRecord = {
        startedAtMs: yield* now,
        faultsActive: record.faults.some((event) => event.instance === "gc"),
        objectsBefore: before?.objects?.map((object) => object.key),
        result: undefined,
        endedAtMs: undefined,
        audit: undefined
      }
      record.gcPasses?.push(pass)
      pass.result = yield* gcPass(world)
      pass.endedAtMs = yield* now
      pass.audit = yield* auditNow
    })

    const checkInvariants = Effect.gen(function*() {
      const atMs = yield* now
      for (const { instance } of live) {
        const problems = yield* bounded(instance.invariants, 1)
        if (Option.isNone(problems) || Exit.isFailure(problems.value)) {
          record.harnessErrors.push(`the invariant check of ${instance.label} did not answer at once`)
          continue
        }
        for (const problem of problems.value.value) {
          record.invariantProblems.push({ atMs, instance: instance.label, problem })
        }
      }
    })

    const takeOver = (staleKeepsRunning: boolean) =>
      Effect.gen(function*() {
        const takeOverFn = system.takeOver
        if (takeOverFn === undefined) {
          yield* trace("take-over: not supported by this system (skipped)")
          return
        }
        const stale = yield* Ref.get(currentRef)
        const label = String.fromCharCode("A".charCodeAt(0) + nextLabel++)
        const startedAtMs = yield* now
        const attempt = { label, replacing: stale.label, atMs: startedAtMs }
        record.failedTakeOvers?.push(attempt) // until it opens
        const fresh = yield* bounded(takeOverFn(world, label, yield* networkFaultsFor(label)), bounds.openTimeoutMs)
        if (Option.isNone(fresh) || Exit.isFailure(fresh.value)) {
          const error = Option.isNone(fresh) ? "timed out" : describeExit(fresh.value)
          record.failedTakeOvers?.splice(record.failedTakeOvers.indexOf(attempt), 1, { ...attempt, error })
          yield* trace(`take-over by ${label} failed: ${error}`)
          return
        }
        record.failedTakeOvers?.splice(record.failedTakeOvers.indexOf(attempt), 1)
        yield* addInstance(fresh.value.value, stale.label, startedAtMs)
        yield* Ref.set(currentRef, fresh.value.value)
        yield* trace(
          `take-over: ${label} (epoch ${fresh.value.value.epoch}) replaces ${stale.label}; ${stale.label} is now stale`
        )
        // The stale writer logs one more insert and tries to commit it.
        const insert = yield* insertOn(stale, 0, 0)
        const faultsActive = yield* stale.faultsActive
        yield* fork(
          `stale ${stale.label} insert+checkpoint`,
          Effect.gen(function*() {
            if (insert !== undefined) yield* runInsert(stale, insert)
            const checkpoint: CheckpointRecord = {
              instance: stale.label,
              startedAtMs: yield* now,
              stale: true,
              faultsActive,
              afterLoggedInsert: insert?.result?.lsn !== undefined,
              result: undefined,
              endedAtMs: undefined
            }
            record.checkpoints.push(checkpoint)
            yield* runCheckpoint(stale, checkpoint)
            if (staleKeepsRunning) yield* staleWriterLoop(stale)
          }),
          staleKeepsRunning,
          stale.label
        )
      })

    const shutdownOf = (instance: Instance) =>
      Effect.gen(function*() {
        const shutdown: ShutdownRecord = {
          instance: instance.label,
          startedAtMs: yield* now,
          completedAtMs: undefined,
          result: undefined,
          diagnosisAtDeadline: undefined,
          completedLateAtMs: undefined,
          observation: undefined
        }
        record.shutdowns.push(shutdown)
        const fiber = yield* Effect.forkDaemon(
          instance.shutdown(schedule.shutdownByScope).pipe(
            Effect.tap((result) =>
              Effect.map(now, (completedAtMs) => {
                shutdown.result = result
                shutdown.completedAtMs = completedAtMs
              })
            )
          )
        )
        const inTime = yield* Fiber.await(fiber).pipe(
          Effect.timeout(Duration.millis(system.shutdownDeadlineMs + bounds.hangMarginMs)),
          Effect.option
        )
        if (Option.isSome(inTime)) {
          if (Exit.isFailure(inTime.value)) {
            record.harnessErrors.push(`shutdown of ${instance.label} died: ${describeExit(inTime.value)}`)
          } else if (
            (shutdown.completedAtMs ?? 0) - shutdown.startedAtMs > system.shutdownDeadlineMs ||
            !inTime.value.value.metDeadline
          ) {
            shutdown.diagnosisAtDeadline = yield* bounded(instance.diagnose, 1).pipe(
              Effect.map((
                exit
              ) => (Option.isSome(exit) && Exit.isSuccess(exit.value) ? exit.value.value : "(no diagnosis)"))
            )
          }
          return
        }
        shutdown.diagnosisAtDeadline = yield* bounded(instance.diagnose, 1).pipe(
          Effect.map((
            exit
          ) => (Option.isSome(exit) && Exit.isSuccess(exit.value) ? exit.value.value : "(no diagnosis)"))
        )
        yield* trace(`shutdown of ${instance.label} not complete ${bounds.hangMarginMs} ms after its deadline`)
        const late = yield* Fiber.await(fiber).pipe(Effect.timeout(Duration.millis(bounds.hangProbeMs)), Effect.option)
        if (Option.isSome(late)) shutdown.completedLateAtMs = shutdown.completedAtMs
      })
    const play = (step: Step) =>
      Effect.gen(function*() {
        const instance = yield* Ref.get(currentRef)
        yield* trace(`${instance.label}: ${stepText(step)}`)
        switch (step._tag) {
          case "Insert": {
            const insert = yield* insertOn(instance, step.file, step.part)
            if (insert !== undefined) {
              yield* fork(`insert ${slotKey(insert.slot)} on ${instance.label}`, runInsert(instance, insert))
            }
            return
          }
          case "Rewrite": {
            const insert = yield* insertOn(instance, step.file, step.part, true)
            if (insert === undefined) return yield* trace("no slot of that file to rewrite (skipped)")
            yield* trace(`insert ${insert.id} rewrites slot ${slotKey(insert.slot)} (insert ${insert.rewrites})`)
            return yield* fork(`rewrite ${slotKey(insert.slot)} on ${instance.label}`, runInsert(instance, insert))
          }
          case "Read": {
            const read: ReadRecord = {
              file: step.file,
              part: step.part,
              instance: instance.label,
              startedAtMs: yield* now,
              result: undefined,
              endedAtMs: undefined
            }
            record.reads.push(read)
            yield* fork(
              `read f${step.file}#${step.part} on ${instance.label}`,
              Effect.flatMap(instance.readPart(step.file, step.part), (result) =>
                Effect.map(now, (endedAtMs) => {
                  read.result = result
                  read.endedAtMs = endedAtMs
                }))
            )
            return
          }
          case "HoldLease":
            // An application that stopped its storage takes no more leases from it.
            if (
              !live.some((each) => each.instance.label === instance.label)
            ) {
              return yield* trace(`${instance.label} is stopped: no lease (skipped)`)
            }
            return yield* fork(
              `lease f${step.file}#${step.part} on ${instance.label}`,
              Effect.asVoid(instance.holdLease(step.file, step.part, step.holdMs)),
              true
            )
          case "Checkpoint": {
            const checkpoint: CheckpointRecord = {
              instance: instance.label,
              startedAtMs: yield* now,
              stale: false,
              faultsActive: false,
              afterLoggedInsert: false,
              result: undefined,
              endedAtMs: undefined
            }
            record.checkpoints.push(checkpoint)
            return yield* fork(`checkpoint on ${instance.label}`, runCheckpoint(instance, checkpoint))
          }
          case "Evict":
            return yield* fork(`evict on ${instance.label}`, Effect.asVoid(instance.evict))
          case "ArchiveWal":
            return step.await === true && instance.archiveWalAwaited !== undefined
              ? yield* fork(`archive-wal (awaited) on ${instance.label}`, runArchiveAwaited(instance))
              : yield* fork(`archive-wal on ${instance.label}`, Effect.asVoid(instance.archiveWal))
          case "Fault":
            if (step.fault.kind === "lostResponse" || step.fault.kind === "late") networkFaults.push(step.fault)
            record.faults.push(faultEvent(yield* now, instance.label, step.fault))
            return yield* instance.inject(step.fault)
          case "Heal":
            networkFaults.length = 0
            record.faults.push({ atMs: yield* now, instance: "*", kind: "heal" })
            if (system.gcHeal !== undefined) yield* system.gcHeal(world)
            return yield* Effect.forEach(
              [...live.map(({ instance: each }) => each), ...stoppingOwners],
              (each) => each.heal,
              { discard: true }
            )
          case "Gc":
            if (system.gcPass === undefined) return yield* trace("gc: not supported by this system (skipped)")
            // The `gc` command is interruptible: the application's shutdown cuts a pass in flight.
            return yield* fork(
              "gc pass on gc",
              step.everyMs === undefined
                ? runGcPass
                : Effect.forever(Effect.zipRight(runGcPass, Effect.sleep(Duration.millis(step.everyMs ?? 0)))),
              true,
              "gc"
            )
          case "GcFault":
            if (system.gcInject === undefined) return yield* trace("gc: not supported by this system (skipped)")
            record.faults.push({ atMs: yield* now, instance: "gc", kind: step.fault.kind })
            return yield* system.gcInject(world, step.fault)
          case "Restore": {
            const choose = system.chooseRestore
            const restoreAt = system.restoreAt
            if (choose === undefined || restoreAt === undefined) {
              return yield* trace("restore: not supported by this system (skipped)")
            }
            const restore: RestoreRecord = {
              startedAtMs: yield* now,
              choice: yield* choose(world, step),
              latencyMs: step.latencyMs,
              result: undefined,
              endedAtMs: undefined
            }
            record.restores?.push(restore)
            yield* trace(`restore of ${
              restore.choice._tag === "Latest"
                ? "the latest state"
                : restore.choice._tag === "Checkpoint"
                ? `checkpoint ${restore.choice.checkpoint}`
                : `LSN ${restore.choice.lsn}`
            } begins`)
            return yield* fork(
              "restore on restore",
              Effect.flatMap(restoreAt(world, restore.choice, step.latencyMs), (result) =>
                Effect.map(now, (endedAtMs) => {
                  restore.result = result
                  restore.endedAtMs = endedAtMs
                })),
              true,
              "restore"
            )
          }
          case "TakeOver":
            return yield* takeOver(step.staleKeepsRunning === true)
          case "Crash":
            if (system.crash === undefined || system.reopen === undefined) {
              return yield* trace("crash: not supported by this system (skipped)")
            }
            yield* kill(instance.label, "running")
            return yield* restartAfterCrash(instance.label, step.restart, step.crashAgainAfterMs)
          case "DiskFault":
            if (instance.injectDiskFault === undefined) {
              return yield* trace("disk fault: not supported by this system (skipped)")
            }
            // A hung read holds its task until the request timeout, as a stalled bucket does, and a
            // slow fsync holds its caller: the judges count each as a fault while it lasts (full
            // disks and failed fsyncs fail at once).
            if (holdsCallers(step.fault)) {
              record.faults.push({
                atMs: yield* now,
                instance: instance.label,
                kind: step.fault.kind,
                // A held write lands (and holds its caller) up to its hold after a heal.
                ...("latencyMs" in step.fault
                  ? { diskLatencyMs: step.fault.latencyMs }
                  : "holdMs" in step.fault
                  ? { diskLatencyMs: step.fault.holdMs, lingersMs: step.fault.holdMs }
                  : {})
              })
            }
            return yield* instance.injectDiskFault(step.fault)
          case "OwnerStops": {
            const index = live.findIndex((each) => each.instance.label === instance.label)
            if (index < 0) return yield* trace(`${instance.label} is not running (skipped)`)
            live.splice(index, 1)
            stoppingOwners.push(instance)
            // As at the shutdown instant: the application ends its lease holders on it first (a
            // lease held through a shutdown is reported as held, and judged).
            for (const each of workload) {
              if (each.leaseHolder && each.instance === instance.label) yield* Fiber.interruptFork(each.fiber)
            }
            // Uninterruptible from the driver: the shutdown instant does not cut it; awaited at the end.
            midRunShutdowns.push(yield* Effect.forkDaemon(shutdownOf(instance)))
            return
          }
          case "Restart": {
            if (system.reopen === undefined) return yield* trace("restart: not supported by this system (skipped)")
            if (!isLive(instance.label)) return yield* trace(`${instance.label} is not running (skipped)`)
            return yield* restartAfterStop(instance, step.restart)
          }
        }
      })

    // 2. The workload, until the shutdown instant.
    const driver = Effect.gen(function*() {
      let atMs = 0
      const steps = schedule.steps
      for (let index = 0; index < steps.length;) {
        const first = steps[index]
        if (first === undefined) break
        atMs += first.delayMs
        if (atMs >= schedule.shutdownAtMs) return
        if (first.delayMs > 0) yield* Effect.sleep(Duration.millis(first.delayMs))
        // Every step of this instant starts before any of them runs on: same-instant steps are
        // concurrent (races between them are part of what a schedule explores).
        yield* play(first.step)
        index++
        for (let next = steps[index]; next !== undefined && next.delayMs === 0; next = steps[index]) {
          yield* play(next.step)
          index++
        }
        // Let every fiber runnable at this instant run, then check the invariants.
        yield* Effect.sleep(Duration.zero)
        yield* checkInvariants
      }
    })
    const driverFiber = yield* Effect.forkDaemon(driver)
    // With garbage collection in the run, the auditor looks at the bucket every few ms (the
    // writers' own passes run at instants no step marks).
    const auditor = schedule.gc === undefined
      ? undefined
      : yield* Effect.forkDaemon(
        Effect.forever(Effect.zipRight(Effect.sleep(Duration.millis(gcAuditIntervalMs)), auditNow))
      )
    yield* Effect.sleep(Duration.millis(schedule.shutdownAtMs))
    // The driver stops before any step at the shutdown instant; a step it is playing (a take-over
    // waiting for its open) is cut.
    yield* Fiber.interrupt(driverFiber)
    if (auditor !== undefined) yield* Fiber.interrupt(auditor)
    if (schedule.crashAtShutdown === true) {
      const owner = yield* Ref.get(currentRef)
      if (live.some((each) => each.instance === owner)) yield* kill(owner.label, "running")
    }

    // 3. Shutdown, faults still active.
    yield* trace(`shutdown of ${live.map((each) => each.instance.label).join(", ")}`)
    for (const each of workload) {
      if (schedule.interruptWorkloadAtShutdown || each.leaseHolder) yield* Fiber.interruptFork(each.fiber)
    }
    yield* Effect.forEach(live, ({ instance }) => shutdownOf(instance), { concurrency: "unbounded", discard: true })
    for (const fiber of midRunShutdowns) yield* Fiber.await(fiber)
    // The collector's passes and the restores are processes of their own (the `gc` and `restore`
    // commands), interrupted with the application: each winds down on its own deadlines.
    for (const each of workload) {
      if (each.instance === "gc" || each.instance === "restore") {
        yield* Fiber.await(each.fiber).pipe(Effect.timeout(Duration.millis(system.shutdownDeadlineMs)), Effect.option)
      }
    }
    // Let everything runnable at this instant run before looking.
    yield* Effect.sleep(Duration.zero)
    for (const each of workload) {
      if (each.fiber.unsafePoll() === null) {
        record.unfinishedWorkload.push(each.name)
      }
    }
    for (const shutdown of record.shutdowns) {
      const instance = opened_.get(shutdown.instance)
      if (instance === undefined || shutdown.completedAtMs === undefined) continue
      const observation = yield* bounded(instance.observe, 1)
      if (Option.isSome(observation) && Exit.isSuccess(observation.value)) {
        shutdown.observation = observation.value.value
      }
    }
    if (record.shutdowns.some((shutdown) => shutdown.completedAtMs === undefined)) {
      // A hung system cannot be restarted (its directory is in use); audit the bucket only.
      record.audit = yield* auditBounded(system, world, bounds, record)
      return record
    }

    // 4. Audit, restart, restore, audit again: faults healed.
    yield* system.healAll(world)
    record.audit = yield* auditBounded(system, world, bounds, record)
    const current = yield* Ref.get(currentRef)
    const rotFn = system.rot
    if (schedule.rotBeforeRestart !== undefined && rotFn !== undefined) {
      const rotted = yield* rotFn(world, current.label, schedule.rotBeforeRestart, schedule.crashBeforeRestart)
      record.rot = rotted.detail
      if (rotted.walRecord !== undefined) record.rotWalRecord = rotted.walRecord
      yield* trace(`bit rot in ${diskOf(current.label)}'s directory: ${record.rot}`)
    }
    yield* reopen(
      system,
      record,
      "restart",
      current.label,
      schedule.crashBeforeRestart,
      system.restart(world, current.label, schedule.crashBeforeRestart, schedule.restart),
      bounds
    )
    yield* reopen(system, record, "restore", "R", false, system.restore(world, "R"), bounds)
    record.finalAudit = yield* auditBounded(system, world, bounds, record)
    const gcPass = system.gcPass
    if (schedule.gc !== undefined && gcPass !== undefined) {
      // Nothing in flight: every instance stopped, faults healed, no lease but a leftover one.
      if (system.gcHeal !== undefined) yield* system.gcHeal(world)
      const pass = yield* bounded(gcPass(world), bounds.openTimeoutMs)
      const result = Option.isSome(pass) && Exit.isSuccess(pass.value) ? pass.value.value : undefined
      if (result === undefined) record.harnessErrors.push("the final gc pass did not finish")
      record.finalGc = { result, audit: yield* auditBounded(system, world, bounds, record) }
    }
    return record
  })

/** How long a restart waits before it tries a directory that was locked again (simulated ms). */
const restartRetryMs = 50

/** How often the auditor looks at the bucket during a run with garbage collection (simulated ms). */
const gcAuditIntervalMs = 20

const auditBounded = <W>(system: SystemUnderTest<W>, world: W, bounds: HarnessBounds, record: RunRecord) =>
  Effect.map(bounded(system.audit(world), bounds.openTimeoutMs), (exit) => {
    if (Option.isSome(exit) && Exit.isSuccess(exit.value)) return exit.value.value
    record.harnessErrors.push(
      `the bucket audit did not finish: ${Option.isNone(exit) ? "timed out" : describeExit(exit.value)}`
    )
    return undefined
  })

/** The parts to read back: every part an insert went to, and one untouched part per file. */
const partsToRead = (record: RunRecord): ReadonlyArray<readonly [number, number]> => {
  const keys = new Set(record.inserts.map((insert) => `${insert.slot.file}#${insert.slot.part}`))
  for (let file = 0; file < dataModel.files; file++) keys.add(`${file}#${dataModel.partsPerFile - 1}`)
  return [...keys].sort().map((key) => {
    const [file, part] = key.split("#").map(Number)
    return [file ?? 0, part ?? 0] as const
  })
}

/** Opens with `open`, again every `restartRetryMs` while it fails because the directory is locked (a
 * write of the instance before it still on the disk), as an application restarting would, within
 * `timeoutMs` in all; with how many refusals came first. Interrupted, it interrupts the open, and
 * gives an instance that opened all the same to `onCut`. */
const openRetryingLocked = (
  open: Effect.Effect<Instance, string>,
  timeoutMs: number,
  onCut: (instance: Instance) => Effect.Effect<void> = () => Effect.void
) =>
  Effect.gen(function*() {
    const deadlineMs = (yield* now) + timeoutMs
    for (let refusals = 0;; refusals++) {
      const fiber = yield* Effect.forkDaemon(open)
      const exit = yield* Fiber.await(fiber).pipe(
        Effect.timeout(Duration.millis(Math.max(1, deadlineMs - (yield* now)))),
        Effect.option,
        Effect.onInterrupt(() =>
          Effect.flatMap(Fiber.interrupt(fiber), (cut) => (Exit.isSuccess(cut) ? onCut(cut.value) : Effect.void))
        )
      )
      if (Option.isNone(exit)) yield* Fiber.interruptFork(fiber)
      const locked = Option.isSome(exit) && Exit.isFailure(exit.value) &&
        describeExit(exit.value).includes("DirectoryLocked")
      if (!locked || (yield* now) + restartRetryMs >= deadlineMs) return { exit, refusals }
      yield* Effect.sleep(Duration.millis(restartRetryMs))
    }
  })

const reopen = <W>(
  system: SystemUnderTest<W>,
  record: RunRecord,
  kind: "restart" | "restore",
  label: string,
  crash: boolean,
  open: Effect.Effect<Instance, string>,
  bounds: HarnessBounds
) =>
  Effect.gen(function*() {
    const { exit: opened } = yield* openRetryingLocked(open, bounds.openTimeoutMs)
    if (Option.isNone(opened) || Exit.isFailure(opened.value)) {
      record.reopens.push({
        kind,
        instance: label,
        instanceId: undefined,
        epoch: undefined,
        crash,
        error: Option.isNone(opened) ? `did not open within ${bounds.openTimeoutMs} ms` : describeExit(opened.value),
        parts: [],
        shutdown: undefined
      })
      return
    }
    const instance = opened.value.value
    const parts: Array<{ file: number; part: number; read: PartRead }> = []
    for (const [file, part] of partsToRead(record)) {
      const read = yield* bounded(instance.readPart(file, part), bounds.readTimeoutMs)
      parts.push({
        file,
        part,
        read: Option.isSome(read) && Exit.isSuccess(read.value)
          ? read.value.value
          : { bytes: undefined, error: "read did not finish" }
      })
    }
    const startedAtMs = yield* now
    const shutdown: ShutdownRecord = {
      instance: label,
      startedAtMs,
      completedAtMs: undefined,
      result: undefined,
      diagnosisAtDeadline: undefined,
      completedLateAtMs: undefined,
      observation: undefined
    }
    const closed = yield* bounded(instance.shutdown(true), system.shutdownDeadlineMs + bounds.hangMarginMs)
    if (Option.isSome(closed) && Exit.isSuccess(closed.value)) {
      shutdown.result = closed.value.value
      shutdown.completedAtMs = yield* now
    }
    record.reopens.push({
      kind,
      instance: label,
      instanceId: instance.instanceId,
      epoch: instance.epoch,
      crash,
      error: undefined,
      parts,
      shutdown
    })
  })
