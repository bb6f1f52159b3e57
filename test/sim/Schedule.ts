/**
 * Schedules of the simulation: what the workload does, which faults hit the bucket and when, and
 * the instant of shutdown; as data, with fast-check arbitraries (so that a failing schedule
 * shrinks) and a compact printed form (so that the shrunk schedule is readable in a report).
 *
 * A schedule is a list of steps, each `delayMs` after the previous one (0: at the same instant,
 * concurrently), plus the shutdown instant. Steps run concurrently: a step starts at its instant
 * whether or not earlier steps finished, as the requests of independent clients would.
 *
 * Profiles narrow the generator the way TigerBeetle's VOPR has a safety and a liveness mode:
 * - `full`: every step and fault;
 * - `no-faults`: the workload alone (inserts, reads, leases, checkpoints, evictions, WAL
 *   archiving) and shutdown; the search for #340-shaped hangs, which need no fault at all;
 * - `failing-tasks`: no eviction (so no part is ever loaded back), transient and permanent errors
 *   on writes; the search for #373-shaped hangs;
 * - `adversarial`: `full`, plus what an operator's worst day brings, in three classes that also
 *   run alone as the profiles `crashes`, `lost-responses` and `stale-writers`:
 *   - crashes: the owner killed at random instants (its fibers stop mid-flight, its unsynced
 *     writes are lost) and restarted with another checkpoint interval (off, or shorter than a
 *     replay slowed by the application), some killed again during their start-up replay; the
 *     first instance's checkpoint interval varies too; a kill instead of a shutdown at the
 *     shutdown instant;
 *   - lost responses: requests that take effect in the bucket while their caller sees a
 *     connection error, and late requests that land after their caller gave up (out of order),
 *     on puts and deletes of every key family;
 *   - stale writers: take-overs after which the old writer keeps inserting, committing, archiving
 *     and checkpointing, and the new owner shutting down cleanly (deleting the lock) mid-run; late
 *     requests, most of them on the lock (an old holder's renewal landing after a take-over);
 *   - disk faults (the profile `disk-faults`): the local disk full after N more bytes (the write
 *     that crosses the limit is torn) and failing fsyncs, on parts, on the WAL or on everything;
 *   - bit rot (the profile `bit-rot`): a flipped byte in a local WAL segment or part file after
 *     the stop, before the restart;
 *   - garbage collection (the profile `gc`): retention, collectors of their own beside the
 *     writers, faults on their view, and point-in-time restores under reader leases.
 *   Every one of them also archives the WAL and waits for it: the workload's ledger of what it was
 *   told is in the bucket, which the properties judge restores against (test/sim/Properties.ts).
 * - `stragglers`: writes that outlive their instance: the disk holds the next writes for up to 9 s
 *   (past the shutdown's wait for the application and its whole deadline), the application
 *   restarts its storage on the same directory in the middle of the run, and rewrites rows in
 *   place, so that a write abandoned by a shutdown could land over the next instance's own. Every
 *   profile but `no-faults` and `failing-tasks` (kept as they find the original's hangs) draws
 *   rewrites and, but `gc`, restarts; `disk-faults` and `adversarial` draw held writes too.
 */
import { FastCheck as fc } from "effect"

/** Which bucket keys a fault hits; the same families exist in both systems' layouts. */
export type KeyFamily = "any" | "data" | "manifests" | "checkpoints" | "wal" | "lock" | "leases"
/** Which object-store operations a fault hits (`list`: listings, by the listed prefix). */
export type OperationFamily = "any" | "get" | "put" | "delete" | "list"

export interface FaultTarget {
  readonly operation: OperationFamily
  readonly keys: KeyFamily
}

export type Fault =
  /** Every matching request takes `ms` longer. */
  | { readonly kind: "latency"; readonly ms: number; readonly target: FaultTarget }
  /** A matching request fails with a transient error with probability `ratePercent`/100. */
  | { readonly kind: "transient"; readonly ratePercent: number; readonly target: FaultTarget }
  /** Every matching request fails with a permanent error (403-like). */
  | { readonly kind: "permanent"; readonly target: FaultTarget }
  /** Matching requests hang until the faults are healed. */
  | { readonly kind: "stall"; readonly target: FaultTarget }
  /** A matching request takes effect in the bucket, and then, with probability `ratePercent`/100,
   * its caller gets a connection error instead of the answer. */
  | { readonly kind: "lostResponse"; readonly ratePercent: number; readonly target: FaultTarget }
  /** A matching request, with probability `ratePercent`/100, reaches the bucket up to `maxMs`
   * late (a delay drawn per request), and lands even if its caller gave up meanwhile (a request
   * already on the wire): writes land after their caller's timeout or shutdown, and out of order. */
  | { readonly kind: "late"; readonly maxMs: number; readonly ratePercent: number; readonly target: FaultTarget }

/** Which paths a disk fault applies to: part files, the WAL, the control file, or every path. */
export type DiskTarget = "parts" | "wal" | "control" | "any"

export type DiskFault =
  /** The disk is full after `afterBytes` more written bytes: the write that crosses it is torn. */
  | { readonly kind: "full"; readonly afterBytes: number; readonly target: DiskTarget }
  /** The next `count` fsyncs fail (EIO). */
  | { readonly kind: "syncFails"; readonly count: number; readonly target: DiskTarget }
  /** The next `count` reads into a caller's buffer (an upload's read of a part) hang until
   * interrupted, and land late, into that buffer (FaultyDisk.stallReads). */
  | { readonly kind: "readStalls"; readonly count: number; readonly target: DiskTarget }
  /** The next `count` changes (a part's slot, a WAL append, an atomic write such as a loaded part
   * or the control file, a remove) land `holdMs` late, their callers waiting, interrupted or not,
   * while every other disk call answers at once (FaultyDisk.stallWrites): a system call stuck in
   * the device's queue, which lands after a shutdown returned. */
  | { readonly kind: "writeStalls"; readonly count: number; readonly holdMs: number; readonly target: DiskTarget }
  /** Every fsync (and atomic write, which syncs) takes `latencyMs` until healed
   * (FaultyDisk.slowSyncs): the steps after a durable write take time, so a shutdown or a
   * deadline can fall between them. */
  | { readonly kind: "slowSyncs"; readonly latencyMs: number; readonly target: DiskTarget }
  /** Every disk operation (reads and writes too) takes `latencyMs` until healed
   * (FaultyDisk.slowAll): an operation of the application is still on the disk when a shutdown
   * comes. */
  | { readonly kind: "slowDisk"; readonly latencyMs: number; readonly target: DiskTarget }

/** The disk faults that hold their callers (a hung read, a slow fsync or disk call), which the
 * judges count as faults while they last; a full disk and failed fsyncs fail at once. */
export type HoldingDiskFault = Extract<
  DiskFault,
  { readonly kind: "readStalls" | "writeStalls" | "slowSyncs" | "slowDisk" }
>

export const holdsCallers = (fault: DiskFault): fault is HoldingDiskFault =>
  fault.kind === "readStalls" || fault.kind === "writeStalls" || fault.kind === "slowSyncs" ||
  fault.kind === "slowDisk"

/** A flipped byte in a local file after the stop: the `pick`-th WAL segment or part file (modulo
 * how many there are), at a drawn offset. */
export interface Rot {
  readonly target: "wal" | "parts"
  readonly pick: number
}

/** How an instance restarted after a crash runs. */
export interface RestartSettings {
  /** Its periodic checkpoint interval (0: off). */
  readonly checkpointIntervalMs: number
  /** Simulated time the application's replay function spends on each WAL record at start-up. */
  readonly replayRecordMs: number
}

export type Step =
  /** Insert one record into the next free slot of (file, part): write, log, commit. */
  | { readonly _tag: "Insert"; readonly file: number; readonly part: number }
  /** Write a new value into a slot of (file, part) that an earlier insert wrote (write, log,
   * commit), as an update rewrites a row in place: first a slot whose last write was abandoned by
   * an instance that stopped (the application restarted its storage meanwhile), else the slot last
   * written in that part whose write returned, else in another part of the file. Writes to a slot
   * never overlap: a slot whose last write is still running on a live instance is not chosen. */
  | { readonly _tag: "Rewrite"; readonly file: number; readonly part: number }
  /** Read the first slot of (file, part) (loads the part if it was evicted). */
  | { readonly _tag: "Read"; readonly file: number; readonly part: number }
  /** Hold a lease on (file, part) for `holdMs`. */
  | { readonly _tag: "HoldLease"; readonly file: number; readonly part: number; readonly holdMs: number }
  /** An on-demand checkpoint. */
  | { readonly _tag: "Checkpoint" }
  /** One eviction sweep. */
  | { readonly _tag: "Evict" }
  /** Archive the WAL written so far (close the current segment and upload it); with `await`, wait
   * until it is in the bucket (the application's acknowledgement that its commits are archived). */
  | { readonly _tag: "ArchiveWal"; readonly await?: boolean }
  | { readonly _tag: "Fault"; readonly fault: Fault }
  /** Clear every fault; stalled requests resume. */
  | { readonly _tag: "Heal" }
  /** A new instance takes the bucket over; the current one becomes a stale writer that then tries
   * to commit a checkpoint (with `staleKeepsRunning`: that goes on inserting, committing, archiving
   * and checkpointing until shutdown). */
  | { readonly _tag: "TakeOver"; readonly staleKeepsRunning?: boolean }
  /** The owner is killed (SIGKILL: its fibers stop mid-flight, its unsynced local writes are lost)
   * and restarted on its directory with `restart`; with `crashAgainAfterMs`, the restart is killed
   * that long after it began (during its start-up replay if that lasts long enough) and started
   * once more. */
  | { readonly _tag: "Crash"; readonly restart: RestartSettings; readonly crashAgainAfterMs: number | undefined }
  /** The owner shuts down cleanly in the middle of the run (deleting the lock); it stays down. */
  | { readonly _tag: "OwnerStops" }
  /** The application restarts its storage: it ends its operations on the owner, shuts it down
   * cleanly and opens the same directory again at once as the next incarnation (with `restart`),
   * retrying while the directory is still locked (a write of the old instance still on the disk),
   * within the harness's open bound. */
  | { readonly _tag: "Restart"; readonly restart: RestartSettings }
  /** A fault of the owner's local disk (healed by `Heal`). */
  | { readonly _tag: "DiskFault"; readonly fault: DiskFault }
  /** One garbage-collection pass over the bucket by a collector of its own (as the `gc` command
   * runs it: no lock, minimum age 0, the writer's retention policy), beside the writers; with
   * `everyMs`, one pass after another, that long apart, until shutdown (a cron job). */
  | { readonly _tag: "Gc"; readonly everyMs?: number }
  /** A fault of the collector's view of the bucket (healed by `Heal`). */
  | { readonly _tag: "GcFault"; readonly fault: Fault }
  /** A point-in-time restore through Restore.ts, under a reader lease, into a fresh directory:
   * of a committed checkpoint (the `pick`-th of those in the bucket now), of an LSN inside the
   * window (`pick`‰ of the way from the oldest committed checkpoint's position to the archived
   * end), or of the latest state; every get of its view `latencyMs` slow. */
  | {
    readonly _tag: "Restore"
    readonly target: "checkpoint" | "lsn" | "latest"
    readonly pick: number
    readonly latencyMs: number
  }

export interface TimedStep {
  readonly delayMs: number
  readonly step: Step
}

export interface SimSchedule {
  readonly steps: ReadonlyArray<TimedStep>
  /** Simulated instant of shutdown (ms since the first instance opened). */
  readonly shutdownAtMs: number
  /** At shutdown the application interrupts every operation it has in flight (else only the
   * lease holders, whose work is open-ended). */
  readonly interruptWorkloadAtShutdown: boolean
  /** Shut down by closing the layer's scope (else by calling `shutdown`, then closing it). */
  readonly shutdownByScope: boolean
  /** The local disk loses every unsynced write before the restart. */
  readonly crashBeforeRestart: boolean
  /** Seeds the run's `Random` (error-rate draws, jitter, instance ids). */
  readonly randomSeed: number
  /** The first instance's periodic checkpoint interval (absent: the system's default). */
  readonly checkpointIntervalMs?: number
  /** How the final restart runs (absent: as the first instance). */
  readonly restart?: RestartSettings
  /** At the shutdown instant the owner is killed instead of shut down (the others shut down). */
  readonly crashAtShutdown?: boolean
  /** Bit rot in the owner's directory after the stop, before the restart. */
  readonly rotBeforeRestart?: Rot
  /** Retention and garbage collection (the `gc` class): the writers' policy and their own
   * periodic pass (0: none). Absent: the configuration's defaults, no pass within a run. */
  readonly gc?: GcSettings
}

/** The retention policy of every writer of a run, and its periodic collector. */
export interface GcSettings {
  readonly retainCheckpointsMin: number
  readonly retainForMs: number
  /** The lock holder's periodic pass (0: off). */
  readonly writerGcIntervalMs: number
}

export type Profile =
  | "full"
  | "no-faults"
  | "failing-tasks"
  | "crashes"
  | "lost-responses"
  | "stale-writers"
  | "disk-faults"
  | "bit-rot"
  | "adversarial"
  | "gc"
  | "stragglers"
export const profiles: ReadonlyArray<Profile> = [
  "full",
  "no-faults",
  "failing-tasks",
  "crashes",
  "lost-responses",
  "stale-writers",
  "disk-faults",
  "bit-rot",
  "adversarial",
  "gc",
  "stragglers"
]

/** The fault classes a profile adds to `full`. */
interface FaultClasses {
  readonly crashes: boolean
  readonly lostResponses: boolean
  readonly staleWriters: boolean
  readonly diskFaults: boolean
  readonly bitRot: boolean
  readonly gc?: boolean
}

const faultClasses = (profile: Profile): FaultClasses | undefined => {
  switch (profile) {
    case "crashes":
      return { crashes: true, lostResponses: false, staleWriters: false, diskFaults: false, bitRot: false }
    case "lost-responses":
      return { crashes: false, lostResponses: true, staleWriters: false, diskFaults: false, bitRot: false }
    case "stale-writers":
      return { crashes: false, lostResponses: false, staleWriters: true, diskFaults: false, bitRot: false }
    case "disk-faults":
      return { crashes: false, lostResponses: false, staleWriters: false, diskFaults: true, bitRot: false }
    case "bit-rot":
      return { crashes: false, lostResponses: false, staleWriters: false, diskFaults: false, bitRot: true }
    case "adversarial":
      return { crashes: true, lostResponses: true, staleWriters: true, diskFaults: true, bitRot: true, gc: true }
    case "gc":
      return { crashes: false, lostResponses: false, staleWriters: true, diskFaults: false, bitRot: false, gc: true }
    case "stragglers":
      return { crashes: false, lostResponses: false, staleWriters: false, diskFaults: true, bitRot: false }
    default:
      return undefined
  }
}

/** The data model both systems share: files of parts of slots. */
export const dataModel = {
  files: 2,
  partsPerFile: 4,
  partSizeBytes: 4096,
  slotBytes: 512,
  slotsPerPart: 8
} as const

/** Generator bounds (the CLI can raise `stepsMax` for long campaigns). */
export interface GeneratorBounds {
  readonly stepsMax: number
  readonly horizonMs: number
}

export const defaultBounds: GeneratorBounds = { stepsMax: 24, horizonMs: 3_000 }

/** The `stragglers` profile runs this many times the horizon: its held writes last seconds. */
const stragglersHorizonFactor = 4

const fileArb = fc.integer({ min: 0, max: dataModel.files - 1 })
const partArb = fc.integer({ min: 0, max: dataModel.partsPerFile - 1 })

const targetArb = (
  operations: ReadonlyArray<OperationFamily>,
  keys: ReadonlyArray<KeyFamily>
): fc.Arbitrary<FaultTarget> => fc.record({ operation: fc.constantFrom(...operations), keys: fc.constantFrom(...keys) })

const faultArb = (profile: Profile): fc.Arbitrary<Fault> => {
  if (profile === "failing-tasks") {
    const target = targetArb(["put", "any"], ["data", "manifests", "wal", "any"])
    return fc.oneof(
      fc.record({ kind: fc.constant("permanent" as const), target }),
      fc.record({ kind: fc.constant("transient" as const), ratePercent: fc.integer({ min: 10, max: 100 }), target })
    )
  }
  const target = targetArb(["any", "get", "put"], ["any", "data", "manifests", "checkpoints", "wal", "lock"])
  const late = (operations: ReadonlyArray<OperationFamily>, keys: ReadonlyArray<KeyFamily>) =>
    fc.record({
      kind: fc.constant("late" as const),
      maxMs: fc.constantFrom(50, 300, 800, 1_500),
      ratePercent: fc.integer({ min: 20, max: 100 }),
      target: targetArb(operations, keys)
    })
  if (faultClasses(profile)?.lostResponses === true) {
    const lostTarget = targetArb(["put", "delete", "any"], ["any", "data", "manifests", "checkpoints", "wal", "lock"])
    return fc.oneof(
      {
        weight: 2,
        arbitrary: fc.record({
          kind: fc.constant("lostResponse" as const),
          ratePercent: fc.integer({ min: 20, max: 100 }),
          target: lostTarget
        })
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant("transient" as const),
          ratePercent: fc.integer({ min: 10, max: 100 }),
          target
        })
      },
      {
        weight: 1,
        arbitrary: fc.record({ kind: fc.constant("latency" as const), ms: fc.integer({ min: 1, max: 1_500 }), target })
      },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("permanent" as const), target }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("stall" as const), target }) },
      {
        weight: 1,
        arbitrary: late(["put", "delete", "any"], ["any", "data", "manifests", "checkpoints", "wal", "lock"])
      }
    )
  }
  if (faultClasses(profile)?.staleWriters === true) {
    return fc.oneof(
      fc.record({ kind: fc.constant("transient" as const), ratePercent: fc.integer({ min: 10, max: 100 }), target }),
      fc.record({ kind: fc.constant("latency" as const), ms: fc.integer({ min: 1, max: 1_500 }), target }),
      fc.record({ kind: fc.constant("permanent" as const), target }),
      fc.record({ kind: fc.constant("stall" as const), target }),
      // Reads of the lock late too, so that a renewal can land between a start's PUT and read-back.
      late(["any", "any", "put", "delete"], ["lock", "lock", "lock", "any", "checkpoints", "manifests", "wal"])
    )
  }
  return fc.oneof(
    fc.record({ kind: fc.constant("transient" as const), ratePercent: fc.integer({ min: 10, max: 100 }), target }),
    fc.record({ kind: fc.constant("latency" as const), ms: fc.integer({ min: 1, max: 1_500 }), target }),
    fc.record({ kind: fc.constant("permanent" as const), target }),
    fc.record({ kind: fc.constant("stall" as const), target })
  )
}

/** Step weights per profile: the no-faults search leans on reads, checkpoints and evictions (the
 * load path), the failing-tasks search on writes and checkpoints. */
const noGc = { Gc: 0, GcFault: 0, Restore: 0 } as const

const weights: Record<Profile, Record<Step["_tag"], number>> = {
  full: {
    Insert: 8,
    Rewrite: 3,
    Read: 3,
    HoldLease: 1,
    Checkpoint: 3,
    Evict: 3,
    ArchiveWal: 2,
    Fault: 3,
    Heal: 2,
    TakeOver: 1,
    Crash: 0,
    OwnerStops: 0,
    Restart: 1,
    DiskFault: 0,
    ...noGc
  },
  "no-faults": {
    Insert: 6,
    Rewrite: 0,
    Read: 5,
    HoldLease: 1,
    Checkpoint: 4,
    Evict: 2,
    ArchiveWal: 1,
    Fault: 0,
    Heal: 0,
    TakeOver: 0,
    Crash: 0,
    OwnerStops: 0,
    Restart: 0,
    DiskFault: 0,
    ...noGc
  },
  "failing-tasks": {
    Insert: 8,
    Rewrite: 0,
    Read: 2,
    HoldLease: 1,
    Checkpoint: 4,
    Evict: 0,
    ArchiveWal: 2,
    Fault: 3,
    Heal: 1,
    TakeOver: 0,
    Crash: 0,
    OwnerStops: 0,
    Restart: 0,
    DiskFault: 0,
    ...noGc
  },
  crashes: {
    Insert: 12,
    Rewrite: 4,
    Read: 2,
    HoldLease: 1,
    Checkpoint: 3,
    Evict: 2,
    ArchiveWal: 3,
    Fault: 3,
    Heal: 2,
    TakeOver: 1,
    Crash: 3,
    OwnerStops: 0,
    Restart: 1,
    DiskFault: 0,
    ...noGc
  },
  "lost-responses": {
    Insert: 12,
    Rewrite: 3,
    Read: 2,
    HoldLease: 1,
    Checkpoint: 3,
    Evict: 2,
    ArchiveWal: 3,
    Fault: 4,
    Heal: 2,
    TakeOver: 1,
    Crash: 0,
    OwnerStops: 0,
    Restart: 1,
    DiskFault: 0,
    ...noGc
  },
  "stale-writers": {
    Insert: 12,
    Rewrite: 3,
    Read: 2,
    HoldLease: 1,
    Checkpoint: 3,
    Evict: 2,
    ArchiveWal: 3,
    Fault: 3,
    Heal: 2,
    TakeOver: 2,
    Crash: 0,
    OwnerStops: 1,
    Restart: 1,
    DiskFault: 0,
    ...noGc
  },
  "disk-faults": {
    Insert: 12,
    Rewrite: 5,
    Read: 2,
    HoldLease: 1,
    Checkpoint: 3,
    Evict: 2,
    ArchiveWal: 3,
    Fault: 2,
    Heal: 2,
    TakeOver: 1,
    Crash: 0,
    OwnerStops: 0,
    Restart: 2,
    DiskFault: 3,
    ...noGc
  },
  "bit-rot": {
    Insert: 12,
    Rewrite: 3,
    Read: 2,
    HoldLease: 1,
    Checkpoint: 3,
    Evict: 2,
    ArchiveWal: 3,
    Fault: 2,
    Heal: 2,
    TakeOver: 1,
    Crash: 0,
    OwnerStops: 0,
    Restart: 1,
    DiskFault: 0,
    ...noGc
  },
  adversarial: {
    Insert: 12,
    Rewrite: 4,
    Read: 2,
    HoldLease: 1,
    Checkpoint: 3,
    Evict: 2,
    ArchiveWal: 3,
    Fault: 4,
    Heal: 2,
    TakeOver: 2,
    Crash: 3,
    OwnerStops: 1,
    Restart: 2,
    DiskFault: 2,
    Gc: 2,
    GcFault: 1,
    Restore: 2
  },
  stragglers: {
    Insert: 8,
    Rewrite: 8,
    Read: 4,
    HoldLease: 1,
    Checkpoint: 2,
    Evict: 1,
    ArchiveWal: 2,
    Fault: 1,
    Heal: 1,
    TakeOver: 0,
    Crash: 0,
    OwnerStops: 0,
    Restart: 4,
    DiskFault: 4,
    ...noGc
  },
  gc: {
    Insert: 14,
    Rewrite: 3,
    Read: 1,
    HoldLease: 1,
    Checkpoint: 5,
    Evict: 1,
    ArchiveWal: 3,
    Fault: 2,
    Heal: 2,
    TakeOver: 1,
    Crash: 0,
    OwnerStops: 0,
    Restart: 0,
    DiskFault: 0,
    Gc: 6,
    GcFault: 3,
    Restore: 5
  }
}

/** Checkpoint intervals of instances after a crash: off, shorter than a slow replay, the default. */
const checkpointIntervalArb = fc.constantFrom(0, 30, 100, 1_000)

const diskTargetArb = fc.constantFrom<DiskTarget>("parts", "wal", "any")

const diskFaultArb: fc.Arbitrary<DiskFault> = fc.oneof(
  fc.record({
    kind: fc.constant("full" as const),
    afterBytes: fc.integer({ min: 0, max: 12_288 }),
    target: diskTargetArb
  }),
  fc.record({ kind: fc.constant("syncFails" as const), count: fc.integer({ min: 1, max: 4 }), target: diskTargetArb }),
  fc.record({ kind: fc.constant("readStalls" as const), count: fc.integer({ min: 1, max: 3 }), target: diskTargetArb }),
  fc.record({
    kind: fc.constant("writeStalls" as const),
    count: fc.integer({ min: 1, max: 3 }),
    holdMs: fc.constantFrom(100, 700, 1_500),
    target: diskTargetArb
  }),
  fc.record({
    kind: fc.constant("slowSyncs" as const),
    latencyMs: fc.constantFrom(50, 150, 400),
    target: diskTargetArb
  }),
  fc.record({
    kind: fc.constant("slowDisk" as const),
    latencyMs: fc.constantFrom(20, 50, 150),
    target: diskTargetArb
  })
)

/** The `stragglers` profile's disk faults: mostly writes held longer than the shutdown waits for
 * the application's operations (the simulation's 500 ms) or than the whole shutdown takes (its
 * checkpoint waits for the part up to 3 s, and the rest follows), so that one outlives the
 * shutdown and meets a restart of the directory; sometimes any other. */
const stragglerDiskFaultArb: fc.Arbitrary<DiskFault> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("writeStalls" as const),
      count: fc.integer({ min: 1, max: 4 }),
      holdMs: fc.constantFrom(700, 2_500, 5_500, 7_000, 9_000),
      target: fc.constantFrom<DiskTarget>("parts", "parts", "wal", "any")
    })
  },
  { weight: 1, arbitrary: diskFaultArb }
)

const rotArb: fc.Arbitrary<Rot> = fc.record({
  target: fc.constantFrom<Rot["target"]>("wal", "parts"),
  pick: fc.integer({ min: 0, max: 7 })
})

const restartSettingsArb: fc.Arbitrary<RestartSettings> = fc.record({
  checkpointIntervalMs: checkpointIntervalArb,
  replayRecordMs: fc.constantFrom(0, 5, 20)
})

/** Faults of the collector's view: listings, reads and deletes that fail, stall, lag, or take effect
 * unanswered. */
const gcFaultArb: fc.Arbitrary<Fault> = (() => {
  // Reads of root manifests weigh double: a pass reads every one of them.
  const target = targetArb(["list", "get", "get", "delete", "any"], [
    "any",
    "data",
    "manifests",
    "checkpoints",
    "checkpoints",
    "wal",
    "leases"
  ])
  return fc.oneof(
    fc.record({ kind: fc.constant("transient" as const), ratePercent: fc.integer({ min: 10, max: 100 }), target }),
    fc.record({ kind: fc.constant("stall" as const), target }),
    fc.record({ kind: fc.constant("latency" as const), ms: fc.integer({ min: 1, max: 400 }), target }),
    fc.record({ kind: fc.constant("permanent" as const), target }),
    fc.record({
      kind: fc.constant("lostResponse" as const),
      ratePercent: fc.integer({ min: 20, max: 100 }),
      target: targetArb(["delete", "put"], ["any", "data", "checkpoints", "leases"])
    })
  )
})()

const gcSettingsArb: fc.Arbitrary<GcSettings> = fc.record({
  retainCheckpointsMin: fc.constantFrom(1, 1, 2),
  retainForMs: fc.constantFrom(0, 0, 300, 1_000),
  writerGcIntervalMs: fc.constantFrom(0, 0, 30, 100)
})

const stepArb = (profile: Profile): fc.Arbitrary<Step> => {
  const arbitraries: Record<Step["_tag"], fc.Arbitrary<Step>> = {
    Insert: fc.record({ _tag: fc.constant("Insert" as const), file: fileArb, part: partArb }),
    Rewrite: fc.record({ _tag: fc.constant("Rewrite" as const), file: fileArb, part: partArb }),
    Read: fc.record({ _tag: fc.constant("Read" as const), file: fileArb, part: partArb }),
    HoldLease: fc.record({
      _tag: fc.constant("HoldLease" as const),
      file: fileArb,
      part: partArb,
      holdMs: fc.integer({ min: 1, max: 500 })
    }),
    Checkpoint: fc.record({ _tag: fc.constant("Checkpoint" as const) }),
    Evict: fc.record({ _tag: fc.constant("Evict" as const) }),
    ArchiveWal: faultClasses(profile) !== undefined
      ? fc.record({ _tag: fc.constant("ArchiveWal" as const), await: fc.boolean() })
      : fc.record({ _tag: fc.constant("ArchiveWal" as const) }),
    Fault: fc.record({ _tag: fc.constant("Fault" as const), fault: faultArb(profile) }),
    Heal: fc.record({ _tag: fc.constant("Heal" as const) }),
    TakeOver: faultClasses(profile)?.staleWriters === true
      ? fc.record({ _tag: fc.constant("TakeOver" as const), staleKeepsRunning: fc.boolean() })
      : fc.record({ _tag: fc.constant("TakeOver" as const) }),
    Crash: fc.record({
      _tag: fc.constant("Crash" as const),
      restart: restartSettingsArb,
      crashAgainAfterMs: fc.option(fc.integer({ min: 0, max: 400 }), { nil: undefined })
    }),
    OwnerStops: fc.record({ _tag: fc.constant("OwnerStops" as const) }),
    Restart: fc.record({ _tag: fc.constant("Restart" as const), restart: restartSettingsArb }),
    DiskFault: fc.record({
      _tag: fc.constant("DiskFault" as const),
      fault: profile === "stragglers" ? stragglerDiskFaultArb : diskFaultArb
    }),
    Gc: fc.oneof(
      fc.record({ _tag: fc.constant("Gc" as const) }),
      fc.record({ _tag: fc.constant("Gc" as const), everyMs: fc.constantFrom(20, 60, 150) })
    ),
    GcFault: fc.record({ _tag: fc.constant("GcFault" as const), fault: gcFaultArb }),
    Restore: fc.record({
      _tag: fc.constant("Restore" as const),
      target: fc.constantFrom("checkpoint" as const, "lsn" as const, "latest" as const),
      pick: fc.integer({ min: 0, max: 999 }),
      latencyMs: fc.constantFrom(0, 0, 40, 150, 300)
    })
  }
  const choices = (Object.keys(arbitraries) as Array<Step["_tag"]>)
    .filter((tag) => weights[profile][tag] > 0)
    .map((tag) => ({ weight: weights[profile][tag], arbitrary: arbitraries[tag] }))
  return fc.oneof(...choices)
}

const delayArb = fc.oneof(
  { weight: 1, arbitrary: fc.constant(0) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 400 }) }
)

/** The schedule generator of a profile. */
export const scheduleArb = (
  profile: Profile,
  generatorBounds: GeneratorBounds = defaultBounds
): fc.Arbitrary<SimSchedule> => {
  const classes = faultClasses(profile)
  // A held write outlives a shutdown, and the restart after it meets it, only seconds into a run.
  const bounds = profile === "stragglers"
    ? { ...generatorBounds, horizonMs: generatorBounds.horizonMs * stragglersHorizonFactor }
    : generatorBounds
  const base = classes?.crashes === true
    ? crashingArb(profile, bounds)
    : classes?.bitRot === true
    ? rottingArb(profile, bounds)
    : baseArb(profile, bounds)
  return classes?.gc === true ? withGc(base, bounds) : base
}

/** Retention and collectors on top of `base`: checkpoints often, a run long enough for several to
 * commit and expire. */
const withGc = (base: fc.Arbitrary<SimSchedule>, bounds: GeneratorBounds): fc.Arbitrary<SimSchedule> =>
  fc.record({
    base,
    gc: gcSettingsArb,
    checkpointIntervalMs: fc.constantFrom(50, 150, 400, 1_000),
    shutdownAtMs: fc.integer({ min: Math.min(1_000, bounds.horizonMs), max: bounds.horizonMs })
  }).map(({ base, ...extra }) => ({ ...base, ...extra }))

const baseArb = (profile: Profile, bounds: GeneratorBounds): fc.Arbitrary<SimSchedule> =>
  fc.record({
    steps: fc.array(fc.record({ delayMs: delayArb, step: stepArb(profile) }), {
      maxLength: bounds.stepsMax,
      size: "max"
    }),
    shutdownAtMs: fc.integer({ min: 0, max: bounds.horizonMs }),
    interruptWorkloadAtShutdown: fc.boolean(),
    shutdownByScope: fc.boolean(),
    crashBeforeRestart: fc.boolean(),
    randomSeed: fc.integer({ min: 0, max: 0x7fffffff })
  })

const crashingArb = (profile: Profile, bounds: GeneratorBounds): fc.Arbitrary<SimSchedule> =>
  fc.record({
    base: baseArb(profile, bounds),
    checkpointIntervalMs: checkpointIntervalArb,
    restart: restartSettingsArb,
    crashAtShutdown: fc.boolean(),
    rot: faultClasses(profile)?.bitRot === true ? fc.option(rotArb, { nil: undefined }) : fc.constant(undefined)
  }).map(({ base, rot, ...extra }) => ({ ...base, ...extra, ...(rot === undefined ? {} : { rotBeforeRestart: rot }) }))

const rottingArb = (profile: Profile, bounds: GeneratorBounds): fc.Arbitrary<SimSchedule> =>
  fc.record({ base: baseArb(profile, bounds), rot: rotArb }).map(({ base, rot }) => ({
    ...base,
    rotBeforeRestart: rot
  }))

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

const targetText = (target: FaultTarget): string => `${target.operation}:${target.keys}`

export const faultText = (fault: Fault): string => {
  switch (fault.kind) {
    case "latency":
      return `latency ${fault.ms}ms ${targetText(fault.target)}`
    case "transient":
      return `transient ${fault.ratePercent}% ${targetText(fault.target)}`
    case "permanent":
      return `permanent ${targetText(fault.target)}`
    case "stall":
      return `stall ${targetText(fault.target)}`
    case "lostResponse":
      return `lost responses ${fault.ratePercent}% ${targetText(fault.target)}`
    case "late":
      return `late ${fault.ratePercent}% by up to ${fault.maxMs}ms ${targetText(fault.target)}`
  }
}

export const stepText = (step: Step): string => {
  switch (step._tag) {
    case "Insert":
      return `insert f${step.file}#${step.part}`
    case "Rewrite":
      return `rewrite a slot of f${step.file}#${step.part}`
    case "Read":
      return `read f${step.file}#${step.part}`
    case "HoldLease":
      return `lease f${step.file}#${step.part} for ${step.holdMs}ms`
    case "Checkpoint":
      return "checkpoint"
    case "Evict":
      return "evict"
    case "ArchiveWal":
      return step.await === true ? "archive-wal and await it" : "archive-wal"
    case "Fault":
      return `fault ${faultText(step.fault)}`
    case "Heal":
      return "heal"
    case "TakeOver":
      return step.staleKeepsRunning === true ? "take-over (the old writer keeps running)" : "take-over"
    case "Crash":
      return `crash; restart with ${restartText(step.restart)}` +
        (step.crashAgainAfterMs === undefined
          ? ""
          : `, crashed again ${step.crashAgainAfterMs}ms into it and restarted`)
    case "OwnerStops":
      return "the owner shuts down cleanly"
    case "Restart":
      return `the owner shuts down cleanly and its directory is opened again at once, with ${restartText(step.restart)}`
    case "DiskFault":
      return step.fault.kind === "full"
        ? `disk full after ${step.fault.afterBytes} more bytes (${step.fault.target})`
        : step.fault.kind === "syncFails"
        ? `the next ${step.fault.count} fsync(s) fail (${step.fault.target})`
        : step.fault.kind === "readStalls"
        ? `the next ${step.fault.count} read(s) into a buffer hang and land late (${step.fault.target})`
        : step.fault.kind === "writeStalls"
        ? `the next ${step.fault.count} write(s) land ${step.fault.holdMs}ms late (${step.fault.target})`
        : step.fault.kind === "slowSyncs"
        ? `every fsync takes ${step.fault.latencyMs}ms until healed (${step.fault.target})`
        : `every disk operation takes ${step.fault.latencyMs}ms until healed (${step.fault.target})`
    case "Gc":
      return step.everyMs === undefined
        ? "gc pass (min age 0)"
        : `gc passes every ${step.everyMs}ms until shutdown (min age 0)`
    case "GcFault":
      return `gc fault ${faultText(step.fault)}`
    case "Restore":
      return `restore ${
        step.target === "latest"
          ? "the latest state"
          : step.target === "checkpoint"
          ? `checkpoint #${step.pick}`
          : `LSN at ${step.pick}‰ of the window`
      }` +
        (step.latencyMs > 0 ? ` (gets ${step.latencyMs}ms slow)` : "") + " under a lease"
  }
}

const restartText = (settings: RestartSettings): string =>
  `checkpoint interval ${
    settings.checkpointIntervalMs === 0 ? "off" : `${settings.checkpointIntervalMs}ms`
  }, replay ${settings.replayRecordMs}ms/record`

/** One line per step with its absolute instant, then the shutdown line. */
export const scheduleText = (schedule: SimSchedule): string => {
  const lines: Array<string> = []
  if (schedule.gc !== undefined) {
    lines.push(
      `  retention: ${schedule.gc.retainCheckpointsMin} latest + ${schedule.gc.retainForMs}ms window; writer gc ${
        schedule.gc.writerGcIntervalMs === 0 ? "off" : `every ${schedule.gc.writerGcIntervalMs}ms`
      }`
    )
  }
  if (schedule.checkpointIntervalMs !== undefined) {
    lines.push(
      `  first instance: checkpoint interval ${
        schedule.checkpointIntervalMs === 0 ? "off" : `${schedule.checkpointIntervalMs}ms`
      }`
    )
  }
  let atMs = 0
  for (const { delayMs, step } of schedule.steps) {
    atMs += delayMs
    const late = atMs >= schedule.shutdownAtMs ? "   (after shutdown: not issued)" : ""
    lines.push(`  t=${String(atMs).padStart(5)}ms  ${stepText(step)}${late}`)
  }
  lines.push(
    `  t=${String(schedule.shutdownAtMs).padStart(5)}ms  shutdown (${
      schedule.shutdownByScope ? "scope close" : "shutdown call"
    }, ` +
      `${schedule.interruptWorkloadAtShutdown ? "workload interrupted" : "lease holders interrupted"})` +
      `${schedule.crashAtShutdown === true ? "; the owner is killed instead" : ""}` +
      `${schedule.crashBeforeRestart ? ", then crash + restart" : ", then restart"}` +
      `${
        schedule.rotBeforeRestart === undefined
          ? ""
          : ` (a byte of local ${schedule.rotBeforeRestart.target} file #${schedule.rotBeforeRestart.pick} flipped first)`
      }` +
      `${schedule.restart === undefined ? "" : ` with ${restartText(schedule.restart)}`}`
  )
  return lines.join("\n")
}

/** The absolute instant of each step. */
export const stepInstants = (schedule: SimSchedule): ReadonlyArray<number> => {
  let atMs = 0
  return schedule.steps.map(({ delayMs }) => (atMs += delayMs))
}
