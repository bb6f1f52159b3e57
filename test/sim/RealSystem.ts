/**
 * The real Storage layer (src/layers/Storage.ts) as a system under test of the simulation: every
 * instance is the whole composed layer over the shared in-memory bucket seen through its own fault
 * decorator (test/sim/SimBucket.ts) and its own in-memory disk (src/layers/MemoryDisk.ts, whose
 * `crash` drops unsynced writes), with a small configuration so that a few steps reach every path:
 * 4 KiB parts, 4 KiB WAL segments, a two-part local budget, three workers, short timeouts.
 *
 * An insert writes its slot through `write`, logs a WAL record (slot + value) with `append` and
 * acknowledges with `commit`; the layer's `replay` option writes the record back at start-up.
 * Shutdown is the layer's scope closing (or `shutdown` then the scope closing); "fibers alive" is
 * counted by a `Supervisor.track` installed over the layer's construction and every call into it,
 * after the scope closed, besides what the ShutdownReport says.
 *
 * The auditor reads every checkpoint of the bucket with the Loader's own readers (root manifest,
 * file manifests with their digests) and fetches every part object a manifest references, checking
 * its SHA-256: a missing or altered object is a `manifest-references-exist` violation.
 */
import {
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  Layer,
  Option,
  Scope,
  Stream,
  Supervisor
} from "effect"
import * as Control from "../../src/domain/Control.js"
import { checkpointNumber, type FileId, fileId, partIndex } from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as Manifest from "../../src/domain/Manifest.js"
import * as PartPath from "../../src/domain/PartPath.js"
import * as PartState from "../../src/domain/PartState.js"
import * as Wal from "../../src/domain/Wal.js"
import { layerWithServices } from "../../src/internal/storageLayer.js"
import * as FaultyDisk from "../../src/layers/FaultyDisk.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as Restore from "../../src/layers/Restore.js"
import * as Storage from "../../src/layers/Storage.js"
import * as Checkpointer from "../../src/services/Checkpointer.js"
import * as Evictor from "../../src/services/Evictor.js"
import * as GarbageCollector from "../../src/services/GarbageCollector.js"
import * as Loader from "../../src/services/Loader.js"
import { LocalDisk, type LocalDiskService } from "../../src/services/LocalDisk.js"
import { ObjectStore, type ObjectStoreService } from "../../src/services/ObjectStore.js"
import * as PartTable from "../../src/services/PartTable.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as TaskQueue from "../../src/services/TaskQueue.js"
import * as WaitRegistry from "../../src/services/WaitRegistry.js"
import * as WalArchiver from "../../src/services/WalArchiver.js"
import type {
  AuditedCheckpoint,
  BucketAudit,
  CheckpointResult,
  GcPassResult,
  Instance,
  Observation,
  OpResult,
  PartRead,
  RestoreChoice,
  RestoreResult,
  ShutdownResult,
  Slot,
  SystemUnderTest
} from "./Harness.js"
import { diskOf, isZero, slotKey, slotsOfPart } from "./Harness.js"
import { gatedDisk, gatedStore, makeGate, type ProcessGate } from "./Process.js"
import {
  dataModel,
  type DiskTarget,
  type Fault,
  type GcSettings,
  holdsCallers,
  type RestartSettings
} from "./Schedule.js"
import type { FaultControl, FaultyView, SimBucket } from "./SimBucket.js"
import { makeSimBucket } from "./SimBucket.js"

/** The configuration of every simulated instance. */
export const simConfigInput: Partial<StorageConfig.StorageConfigValue> = {
  partSizeBytes: dataModel.partSizeBytes,
  workerCount: 3,
  // Hashes on the simulation's own thread: the simulation is deterministic on a virtual clock, and
  // a real worker thread is a source of time and order it cannot schedule (the workers are tested
  // live in test/services/Hasher.test.ts and test/layers/Storage.test.ts).
  hashWorkerCount: 0,
  queueCapacity: 16,
  requestTimeoutMs: 500,
  retryAttemptsMax: 3,
  retryDelayBaseMs: 20,
  retryDelayMaxMs: 200,
  retryElapsedMaxMs: 1_000,
  drainDeadlineMs: 500,
  localBytesMax: 2 * dataModel.partSizeBytes,
  evictionIntervalMs: 200,
  leaseTimeoutMs: 1_000,
  checkpointIntervalMs: 1_000,
  checkpointDeadlineMs: 2_000,
  shutdownDeadlineMs: 5_000,
  shutdownCheckpointDeadlineMs: 3_000,
  // Renewed several times a run, so that an old holder's renewal can land during a take-over.
  lockRenewIntervalMs: 250,
  lockLeaseMs: 1_000,
  walSegmentBytes: 4_096,
  takeOver: false
}

export const simConfig: StorageConfig.StorageConfigValue = Either.getOrThrowWith(
  StorageConfig.validate(simConfigInput),
  (error) => new Error(`the simulation's configuration is invalid: ${error.message}`)
)

/** Sampling period of the shutdown timeline (simulated ms). */
const timelineStepMs = 250

const fileIds: ReadonlyArray<FileId> = Array.from({ length: dataModel.files }, (_, index) => fileId(`f${index}`))

const fileOf = (file: number): FileId => fileIds[file] ?? fileId(`f${file}`)

// ---------------------------------------------------------------------------------------------
// WAL records: the slot and its value
// ---------------------------------------------------------------------------------------------

const recordHeaderBytes = 12

/** The WAL's durable end as a directory records it: what a start reads (WalArchiver's flush mark,
 * the control file's `walDurableLsn`), the higher of the two; 0 when neither is there. */
const recordedDurableLsn = (disk: LocalDiskService): Effect.Effect<number> =>
  Effect.gen(function*() {
    const mark = Option.flatMap(yield* disk.readAll(WalArchiver.durableMarkPath), (bytes) =>
      Option.fromNullable(Wal.decodeDurableMark(bytes)))
    const control = Option.flatMap(yield* disk.readAll(Loader.controlPath), (bytes) =>
      Either.getRight(Control.decodeControl(Loader.controlPath, bytes)))
    return Math.max(
      Option.getOrElse(mark, () =>
        0),
      Option.match(control, {
        onNone: () =>
          0,
        onSome: (value) =>
          value.walDurableLsn ?? 0
      })
    )
  }).pipe(Effect.orDie)

export const encodeRecord = (slot: Slot, value: Uint8Array): Uint8Array => {
  const bytes = new Uint8Array(recordHeaderBytes + value.length)
  const view = new DataView(bytes.buffer)
  view.setUint32(0, slot.file)
  view.setUint32(4, slot.part)
  view.setUint32(8, slot.index)
  bytes.set(value, recordHeaderBytes)
  return bytes
}

export const decodeRecord = (bytes: Uint8Array): { readonly slot: Slot; readonly value: Uint8Array } => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return {
    slot: { file: view.getUint32(0), part: view.getUint32(4), index: view.getUint32(8) },
    value: bytes.slice(recordHeaderBytes)
  }
}

const slotOffset = (slot: Slot): number => slot.part * dataModel.partSizeBytes + slot.index * dataModel.slotBytes

/** The application's replay function; `recordMs` of simulated time per record (a slow replay). */
const replayRecord = (recordMs: number): NonNullable<Storage.StorageOptions["replay"]> => (record, storage) => {
  const { slot, value } = decodeRecord(record.bytes)
  const write = storage.write(fileOf(slot.file), slotOffset(slot), value)
  return recordMs > 0 ? Effect.zipRight(Effect.sleep(Duration.millis(recordMs)), write) : write
}

// ---------------------------------------------------------------------------------------------
// Instances
// ---------------------------------------------------------------------------------------------

/** One instance's local directory, kept across its restart. */
interface Disk {
  readonly disk: LocalDiskService
  readonly control: MemoryDisk.MemoryDiskControlService
}

/** One running (or starting) instance as a process: its kill switch and its layer's scope. */
interface Process {
  readonly gate: ProcessGate
  readonly scope: Scope.CloseableScope
}

export interface RealWorld {
  readonly bucket: SimBucket
  /** By directory (`diskOf(label)`): every incarnation of an instance reopens the same one. */
  readonly disks: Map<string, Disk>
  /** By label: the process of each instance opened. */
  readonly processes: Map<string, Process>
  /** Checkpoints already audited in this run, by root manifest key and digest (or the problem found). */
  readonly audited: Map<string, AuditedCheckpoint | string>
  /** Every committed checkpoint audited in this run, by number (the latest read). */
  readonly history: Map<number, AuditedCheckpoint>
  readonly faultControls: Array<FaultControl>
  /** Retention and the writers' collector (schedules with garbage collection). */
  gc: GcSettings | undefined
  /** The view of the run's own collector (`gc` steps), made at its first use. */
  gcView: FaultyView | undefined
}

/** The configuration of every process of a run: with garbage collection, the schedule's retention,
 * the writers' periodic pass with a minimum age of 0, and one-second reader leases with no skew. */
const configOf = (world: RealWorld): StorageConfig.StorageConfigValue =>
  world.gc === undefined
    ? simConfig
    : {
      ...simConfig,
      retainCheckpointsMin: world.gc.retainCheckpointsMin,
      retainForMs: world.gc.retainForMs,
      gcIntervalMs: world.gc.writerGcIntervalMs,
      gcMinAgeMs: 0,
      readerLeaseMs: 1_000,
      readerLeaseSkewMs: 0
    }

const errorText = (error: unknown): string =>
  typeof error === "object" && error !== null && "_tag" in error
    ? `${String(error._tag)}${"message" in error ? `: ${String(error.message)}` : ""}`
    : String(error)

const errorTag = (
  error: unknown
): string => (typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : "unknown")

const exitText = <A, E>(exit: Exit.Exit<A, E>): string | undefined =>
  Exit.isSuccess(exit)
    ? undefined
    : Option.match(
      Exit.causeOption(exit).pipe(
        Option.flatMap((cause) => (cause._tag === "Fail" ? Option.some(cause.error) : Option.none()))
      ),
      {
        onNone: () => String(exit.cause).split("\n")[0] ?? "failed",
        onSome: errorText
      }
    )

const shutdownResultOf = (report: Storage.ShutdownReport): ShutdownResult => {
  const problems: Array<string> = []
  if (report.leasesHeld > 0) problems.push(`the report says ${report.leasesHeld} lease(s) held`)
  if (report.fibersAlive > 0) problems.push(`the report says ${report.fibersAlive} fiber(s) alive`)
  return {
    metDeadline: report.metDeadline,
    durationMs: report.durationMs,
    archivedThroughLsn: report.wal.archivedThrough,
    finalCheckpoint: report.finalCheckpoint.outcome === "completed" ? report.finalCheckpoint.checkpoint : undefined,
    finalCheckpointTimedOut: report.finalCheckpoint.outcome === "timed-out",
    problems,
    detail:
      `final checkpoint ${report.finalCheckpoint.outcome}${
        "detail" in report.finalCheckpoint ? ` (${report.finalCheckpoint.detail})` : ""
      }, ` +
      `tasks drained ${report.tasks.drained} interrupted ${report.tasks.interrupted} aborted ${report.tasks.aborted}, lock ${report.lock}, ` +
      `WAL archived through ${report.wal.archivedThrough} of ${report.wal.endLsn}, ${report.durationMs} ms`
  }
}

const diskFilterOf = (target: DiskTarget): FaultyDisk.DiskFaultFilter => {
  switch (target) {
    case "parts":
      return { pathPrefix: `${PartPath.partsDirectory}/` }
    case "wal":
      return { pathPrefix: "wal/" }
    case "control":
      return { pathPrefix: Loader.controlPath }
    case "any":
      return {}
  }
}

interface OpenOptions {
  readonly takeOver: boolean
  /** Faults active on its view of the bucket from the start. */
  readonly faults?: ReadonlyArray<Fault> | undefined
  readonly settings?: RestartSettings | undefined
  readonly checkpointIntervalMs?: number | undefined
}

/** A crash of the machine under directory `name`: every process that ran on it is dead (a write
 * its disk still held never lands), and the disk loses its unsynced writes. */
const crashDirectory = (world: RealWorld, name: string, disk: Disk): Effect.Effect<void> =>
  Effect.suspend(() => {
    for (const [label, process] of world.processes) if (diskOf(label) === name) process.gate.dead = true
    return disk.control.crash
  })

/** Opens one instance: the whole layer in a scope of its own, its fibers tracked, as a process
 * that `crash` can kill (test/sim/Process.ts). */
const openInstance = (world: RealWorld, label: string, options: OpenOptions): Effect.Effect<Instance, string> =>
  Effect.gen(function*() {
    const gate = makeGate()
    // The gate above the faults: a request the process sent before it died (delayed, stalled or
    // late on the network) may still land; what it sends after its death never leaves it.
    const view = yield* world.bucket.view
    world.faultControls.push(view.faults)
    for (const fault of options.faults ?? []) yield* view.faults.inject(fault)
    let disk = world.disks.get(diskOf(label))
    if (disk === undefined) {
      disk = yield* MemoryDisk.make
      world.disks.set(diskOf(label), disk)
    }
    // Disk faults of this process (the disk is full, fsyncs fail); crashes and rot are the disk's own.
    // Gated below the faults too: a write the disk held lands only if no crash came meanwhile.
    const faultyDisk = yield* FaultyDisk.make(gatedDisk(disk.disk, gate))
    // Whether reads were made to hang since the last heal (a fault the judges excuse, as a stalled bucket).
    let diskWaitsInjected = false
    const checkpointIntervalMs = options.settings?.checkpointIntervalMs ?? options.checkpointIntervalMs ??
      simConfig.checkpointIntervalMs
    const config: StorageConfig.StorageConfigValue = {
      ...configOf(world),
      takeOver: options.takeOver,
      checkpointIntervalMs
    }
    const scope = yield* Scope.make()
    world.processes.set(label, { gate, scope })
    const supervisor = yield* Supervisor.track
    const reported = yield* Deferred.make<Storage.ShutdownReport>()
    const layer = layerWithServices({
      replay: replayRecord(options.settings?.replayRecordMs ?? 0),
      onShutdown: (report) => Deferred.succeed(reported, report)
    }).pipe(
      Layer.provide(
        Layer.mergeAll(
          Layer.succeed(StorageConfig.StorageConfig, config),
          Layer.succeed(ObjectStore, gatedStore(view.store, gate)),
          Layer.succeed(LocalDisk, gatedDisk(faultyDisk.disk, gate))
        )
      )
    )
    // Interrupted while starting (the harness kills a start-up): what was built winds down.
    const built = yield* Layer.buildWithScope(layer, scope).pipe(
      Effect.supervised(supervisor),
      Effect.either,
      Effect.onInterrupt(() => Effect.forkDaemon(Scope.close(scope, Exit.void)))
    )
    if (Either.isLeft(built)) {
      yield* Scope.close(scope, Exit.void)
      return yield* Effect.fail(`open of ${label} failed: ${errorText(built.left)}`)
    }
    const context = built.right
    const storage = Context.get(context, Storage.Storage)
    const parts = Context.get(context, PartTable.PartTable)
    const queue = Context.get(context, TaskQueue.TaskQueue)
    const evictor = Context.get(context, Evictor.Evictor)
    const wal = Context.get(context, WalArchiver.WalArchiver)
    const waits = Context.get(context, WaitRegistry.WaitRegistry)
    const checkpointer = Context.get(context, Checkpointer.Checkpointer)
    const tracked = <A, E>(effect: Effect.Effect<A, E>) => Effect.supervised(effect, supervisor)

    const timeline: Array<string> = []
    const invariants = Effect.map(parts.states, (states) => {
      const problems: Array<string> = []
      for (const [file, part, state] of states) {
        const problem = PartState.invariantProblem(state)
        if (problem !== undefined) problems.push(`${file}#${part}: ${problem}`)
      }
      return problems
    })
    const fibersAlive = Effect.map(supervisor.value, (fibers) => fibers.filter((fiber) => fiber.unsafePoll() === null))

    const instance: Instance = {
      label,
      instanceId: storage.instanceId,
      epoch: storage.epoch,
      insert: (slot, value) =>
        tracked(
          Effect.gen(function*() {
            const wrote = yield* Effect.exit(storage.write(fileOf(slot.file), slotOffset(slot), value))
            if (Exit.isFailure(wrote)) return { applied: false, lsn: undefined, acked: false, error: exitText(wrote) }
            const appended = yield* Effect.exit(storage.append(encodeRecord(slot, value)))
            if (Exit.isFailure(appended)) {
              return { applied: true, lsn: undefined, acked: false, error: exitText(appended) }
            }
            const committed = yield* Effect.exit(storage.commit)
            return { applied: true, lsn: appended.value, acked: Exit.isSuccess(committed), error: exitText(committed) }
          })
        ),
      readPart: (file, part) =>
        tracked(
          Effect.map(
            Effect.exit(storage.read(fileOf(file), part * dataModel.partSizeBytes, dataModel.partSizeBytes)),
            (exit): PartRead => (Exit.isSuccess(exit)
              ? { bytes: exit.value, error: undefined }
              : { bytes: undefined, error: exitText(exit) })
          )
        ),
      holdLease: (file, part, holdMs) =>
        tracked(
          Effect.map(
            Effect.exit(
              Effect.scoped(
                Effect.zipRight(storage.lease(fileOf(file), partIndex(part)), Effect.sleep(Duration.millis(holdMs)))
              )
            ),
            (exit): OpResult => ({ error: exitText(exit) })
          )
        ),
      checkpoint: tracked(
        Effect.map(Effect.exit(storage.checkpoint), (exit): CheckpointResult => {
          if (Exit.isSuccess(exit)) {
            return exit.value.outcome === "completed"
              ? {
                completed: { checkpoint: exit.value.checkpoint, walPosition: exit.value.walPosition },
                skipped: undefined,
                error: undefined
              }
              : { completed: undefined, skipped: exit.value.outcome, error: undefined }
          }
          const failure = Option.getOrUndefined(
            Exit.causeOption(exit).pipe(
              Option.flatMap((cause) => (cause._tag === "Fail" ? Option.some(cause.error) : Option.none()))
            )
          )
          return {
            completed: undefined,
            skipped: undefined,
            error: { tag: failure === undefined ? "defect" : errorTag(failure), detail: exitText(exit) ?? "" }
          }
        })
      ),
      evict: tracked(Effect.map(Effect.exit(evictor.runNow), (exit): OpResult => ({ error: exitText(exit) }))),
      archiveWal: tracked(Effect.map(Effect.exit(wal.archivePartial), (exit): OpResult => ({ error: exitText(exit) }))),
      archiveWalAwaited: tracked(
        Effect.map(
          Effect.exit(
            Effect.flatMap(wal.archivePartial, (lsn) => wal.awaitArchived(lsn, simConfig.checkpointDeadlineMs))
          ),
          (exit): OpResult => ({ error: exitText(exit) })
        )
      ),
      inject: view.faults.inject,
      heal: Effect.zipRight(view.faults.heal, faultyDisk.faults.heal).pipe(
        Effect.zipRight(Effect.sync(() => void (diskWaitsInjected = false)))
      ),
      injectDiskFault: (fault) => {
        const filter = diskFilterOf(fault.target)
        if (holdsCallers(fault)) diskWaitsInjected = true
        switch (fault.kind) {
          case "full":
            return faultyDisk.faults.fillAfter(fault.afterBytes, filter)
          case "syncFails":
            return faultyDisk.faults.failSync(fault.count, filter)
          case "readStalls":
            return faultyDisk.faults.stallReads(fault.count, filter)
          case "writeStalls":
            return faultyDisk.faults.stallWrites(fault.count, fault.holdMs, filter)
          case "slowSyncs":
            return faultyDisk.faults.slowSyncs(fault.latencyMs, filter)
          case "slowDisk":
            return faultyDisk.faults.slowAll(fault.latencyMs, filter)
        }
      },
      // A write the full disk refused damaged its part until the next start, healed or not: a
      // checkpoint then fails on that part before it could learn that it is fenced.
      faultsActive: Effect.zipWith(
        view.faults.active,
        faultyDisk.faults.stats,
        (active, stats) => active || diskWaitsInjected || stats.noSpaceWrites > 0
      ),
      shutdown: (byScope) =>
        Effect.gen(function*() {
          // A timeline of the waits while shutdown runs, for the report of a slow one.
          const sampler = yield* Effect.forkDaemon(
            Effect.forever(
              Effect.zipRight(
                Effect.flatMap(
                  Effect.all([Effect.clockWith((clock) => clock.currentTimeMillis), waits.current, queue.stats]),
                  ([atMs, current, queueStats]) =>
                    Effect.sync(() => {
                      const line =
                        `t=${atMs}ms queue depth ${queueStats.depth} in flight ${queueStats.inFlight}${
                          queueStats.closed ? " closed" : ""
                        }; ` +
                        (current.length === 0
                          ? "no waits"
                          : current.map((wait) => `${wait.waiter} on ${wait.on}`).join(" | "))
                      if (timeline[timeline.length - 1]?.slice(line.indexOf(" ")) !== line.slice(line.indexOf(" "))) {
                        timeline.push(line)
                      }
                    })
                ),
                Effect.sleep(Duration.millis(timelineStepMs))
              )
            )
          )
          if (!byScope) yield* tracked(storage.shutdown)
          yield* Scope.close(scope, Exit.void)
          yield* Fiber.interrupt(sampler)
          // What the instance reports having committed, read once it is closed (its Refs outlive it).
          const reportedLastCheckpoint = (yield* storage.stats).checkpoints.lastCheckpoint
          const knownLatestCheckpoint = yield* checkpointer.latest
          return {
            ...shutdownResultOf(yield* Deferred.await(reported)),
            reportedLastCheckpoint,
            knownLatestCheckpoint
          }
        }),
      observe: Effect.gen(function*() {
        const stats = yield* parts.stats
        const queueStats = yield* queue.stats
        const alive = yield* fibersAlive
        return {
          leasesHeld: stats.leasesHeld,
          fibersAlive: alive.length,
          fibersAliveDetail: alive.map((fiber) => `#${fiber.id().id}`).join(", "),
          // Every task published and not completed (queued, in flight, or dropped without an outcome).
          unresolvedTasks: Math.max(
            queueStats.depth + queueStats.inFlight,
            queueStats.enqueued - queueStats.completed - queueStats.failed - queueStats.aborted
          ),
          invariantProblems: yield* invariants
        } satisfies Observation
      }),
      invariants,
      diagnose: Effect.gen(function*() {
        const current = yield* waits.current
        const queueStats = yield* queue.stats
        const lines = [
          `queue: depth ${queueStats.depth}, in flight ${queueStats.inFlight}, closed ${queueStats.closed}`
        ]
        for (const wait of current) {
          lines.push(`${wait.fiber} ${wait.waiter} waits on ${wait.on} since t=${wait.sinceMs}ms`)
        }
        if (timeline.length > 0) {
          lines.push(
            "timeline of the shutdown (every change, sampled each " + timelineStepMs + " ms):",
            ...timeline.map((line) => `  ${line}`)
          )
        }
        return lines.join("\n")
      })
    }
    return instance
  })

// ---------------------------------------------------------------------------------------------
// The auditor
// ---------------------------------------------------------------------------------------------

/**
 * Reads every checkpoint of the bucket back, independently of the layer: a snapshot of the raw
 * bucket, decoded with the domain's own decoders (src/domain/Manifest.ts: formats, digests,
 * invariants), every referenced part object fetched from the snapshot and its SHA-256 and size
 * checked. Objects are immutable (content-addressed parts, manifests written once), so a decoded
 * checkpoint is cached for the run's second audit.
 */
export const auditBucket = (
  bucket: SimBucket,
  cache: Map<string, AuditedCheckpoint | string>,
  history: Map<number, AuditedCheckpoint> = new Map()
): Effect.Effect<BucketAudit> =>
  Effect.map(bucket.inspect.snapshot, (snapshot) => {
    const layout = StorageConfig.keyLayout(simConfig)
    const objects = new Map(snapshot)
    const problems: Array<string> = []
    const checkpoints: Array<AuditedCheckpoint> = []
    const expired: Array<number> = []
    const numberProblems: Array<string> = []
    const rootNumbers = new Set<number>()
    for (const [key, bytes] of snapshot) {
      const parsed = KeyLayout.parseKey(layout, key)
      if (Option.isNone(parsed) || parsed.value._tag !== "Checkpoint") continue
      const number = parsed.value.checkpoint
      rootNumbers.add(number)
      const root = Manifest.decodeRootObject(key, bytes, number)
      // A tombstone: the collector expired the checkpoint, which is no longer restorable.
      if (Either.isRight(root) && root.right._tag === "Expired") {
        expired.push(number)
        continue
      }
      // By key and content: a number committed again (after its root was deleted) is a new checkpoint.
      const cacheKey = `${key}@${Manifest.sha256Hex(bytes)}`
      const cached = cache.get(cacheKey)
      const audited = cached ?? auditCheckpoint(layout, objects, key, bytes, number)
      cache.set(cacheKey, audited)
      if (typeof audited === "string") problems.push(audited)
      else {
        checkpoints.push(audited)
        const before = history.get(number)
        if (before !== undefined && before !== audited) {
          numberProblems.push(
            `checkpoint ${number} was committed again: by ${audited.instanceId} (epoch ${audited.epoch}, WAL position ${audited.walPosition}), before by ${before.instanceId} (epoch ${before.epoch}, WAL position ${before.walPosition})`
          )
        }
        history.set(number, audited)
        // Still there? A collector must keep every object a committed checkpoint names.
        if (cached !== undefined) {
          for (const reference of audited.references ?? []) {
            if (!objects.has(reference)) problems.push(`checkpoint ${number} references ${reference}, which is gone`)
          }
        }
      }
    }
    for (const number of history.keys()) {
      if (!rootNumbers.has(number)) {
        numberProblems.push(
          `checkpoint ${number}'s root manifest is gone, with no tombstone: its number can be committed again`
        )
      }
    }
    return {
      checkpoints,
      problems,
      numberProblems,
      expired,
      objects: snapshot.map(([key, bytes]) => ({ key, sizeBytes: bytes.length })),
      history: [...history.values()],
      walSegmentBytes: simConfig.walSegmentBytes
    }
  })

const auditCheckpoint = (
  layout: KeyLayout.KeyLayout,
  objects: ReadonlyMap<string, Uint8Array>,
  key: string,
  bytes: Uint8Array,
  number: ReturnType<typeof checkpointNumber>
): AuditedCheckpoint | string => {
  const root = Manifest.decodeCheckpointManifest(key, bytes, number)
  if (Either.isLeft(root)) return `checkpoint ${number}: root manifest corrupt: ${root.left.message}`
  const references: Array<string> = []
  const slots = new Map<string, Uint8Array>()
  for (const entry of root.right.files) {
    const manifestKey = KeyLayout.fileManifestKey(layout, entry.manifestCheckpoint, entry.file, entry.manifestSha256)
    references.push(manifestKey)
    const manifestBytes = objects.get(manifestKey)
    if (manifestBytes === undefined) return `checkpoint ${number} references ${manifestKey}, which is missing`
    const fileManifest = Manifest.decodeFileManifest(manifestKey, manifestBytes, {
      file: entry.file,
      sha256: entry.manifestSha256,
      partSizeBytes: root.right.partSizeBytes
    })
    if (Either.isLeft(fileManifest)) {
      return `checkpoint ${number}: file manifest ${manifestKey} corrupt: ${fileManifest.left.message}`
    }
    const fileNumber = fileIds.indexOf(entry.file)
    for (const [part, checkpoint, sha256, sizeBytes] of fileManifest.right.parts) {
      const partKey = KeyLayout.partKey(layout, checkpoint, entry.file, part, sha256)
      references.push(partKey)
      const partBytes = objects.get(partKey)
      if (partBytes === undefined) return `checkpoint ${number} references ${partKey}, which is missing`
      if (partBytes.length !== sizeBytes || Manifest.sha256Hex(partBytes) !== sha256) {
        return `checkpoint ${number} references ${partKey}, whose content does not match its digest or size`
      }
      const padded = new Uint8Array(dataModel.partSizeBytes)
      padded.set(partBytes.subarray(0, dataModel.partSizeBytes))
      for (const [slot, value] of slotsOfPart(fileNumber, part, padded)) {
        if (!isZero(value)) slots.set(slotKey(slot), value)
      }
    }
  }
  return {
    checkpoint: number,
    previous: root.right.previous,
    epoch: root.right.epoch,
    instanceId: root.right.instanceId,
    walPosition: root.right.walPosition,
    slots,
    references
  }
}

// ---------------------------------------------------------------------------------------------
// The system
// ---------------------------------------------------------------------------------------------

/** The real Storage layer as a system under test. */
export const realSystem: SystemUnderTest<RealWorld> = {
  name: "real",
  shutdownDeadlineMs: simConfig.shutdownDeadlineMs,
  readDeadlineMs: simConfig.leaseTimeoutMs,
  makeWorld: Effect.map(
    makeSimBucket,
    (bucket): RealWorld => ({
      bucket,
      disks: new Map(),
      processes: new Map(),
      audited: new Map(),
      history: new Map(),
      faultControls: [],
      gc: undefined,
      gcView: undefined
    })
  ),
  configure: (world, schedule) => {
    world.gc = schedule.gc
  },
  open: (world, label, checkpointIntervalMs) => openInstance(world, label, { takeOver: false, checkpointIntervalMs }),
  takeOver: (world, label, faults) => openInstance(world, label, { takeOver: true, faults }),
  healAll: (world) => Effect.forEach(world.faultControls, (control) => control.heal, { discard: true }),
  restart: (world, label, crash, settings) =>
    Effect.gen(function*() {
      const disk = world.disks.get(diskOf(label))
      if (disk === undefined) return yield* Effect.fail(`no disk for ${label}`)
      if (crash) yield* crashDirectory(world, diskOf(label), disk)
      return yield* openInstance(world, label, { takeOver: false, settings })
    }),
  crash: (world, label) =>
    Effect.gen(function*() {
      const process = world.processes.get(label)
      if (process !== undefined && !process.gate.dead) {
        process.gate.dead = true
        // Its fibers wind down on their own (everything they touch fails now); nothing waits.
        yield* Effect.forkDaemon(Scope.close(process.scope, Exit.void))
      }
      const disk = world.disks.get(diskOf(label))
      if (disk !== undefined) yield* crashDirectory(world, diskOf(label), disk)
    }),
  rot: (world, label, rot, crashFirst) =>
    Effect.gen(function*() {
      const disk = world.disks.get(diskOf(label))
      if (disk === undefined) return { detail: `no directory ${diskOf(label)}` }
      if (crashFirst) yield* crashDirectory(world, diskOf(label), disk)
      const files = yield* Effect.orDie(disk.disk.list(rot.target === "wal" ? "wal" : PartPath.partsDirectory))
      const path = files[rot.pick % Math.max(1, files.length)]
      if (path === undefined) return { detail: `no local ${rot.target} file to flip a byte of` }
      const before = yield* Effect.orDie(disk.disk.readAll(path))
      const { faults } = yield* FaultyDisk.make(disk.disk, { seed: rot.pick })
      const offset = Option.getOrElse(yield* Effect.orDie(faults.flipByte(path)), () => -1)
      const detail = `flipped the byte at offset ${offset} of ${path} (of ${files.length} ${rot.target} file(s))`
      const key = KeyLayout.parseKey({ prefix: "" }, path)
      if (rot.target !== "wal" || Option.isNone(before) || Option.isNone(key) || key.value._tag !== "Wal") {
        return { detail }
      }
      const segment = key.value.segment
      const scan = Wal.scanSegment(before.value, segment, simConfig.walSegmentBytes)
      const byteLsn = Wal.segmentStart(segment, simConfig.walSegmentBytes) + offset
      const hit = scan.records.find((record) =>
        record.lsn <= byteLsn && byteLsn < record.lsn + Wal.headerBytes + record.payload.length
      )
      if (hit === undefined) return { detail }
      return { detail, walRecord: { lsn: hit.lsn, recordedDurableLsn: yield* recordedDurableLsn(disk.disk) } }
    }),
  restartDelayMs: simConfig.lockLeaseMs,
  reopen: (world, label, settings, faults) => openInstance(world, label, { takeOver: false, settings, faults }),
  restore: (world, label) => openInstance(world, label, { takeOver: true }),
  audit: (world) => auditBucket(world.bucket, world.audited, world.history),
  gcPass: (world) =>
    Effect.gen(function*() {
      const view = yield* gcViewOf(world)
      // How each listing of the pass ended, as the bucket answered it (the last answer per prefix).
      const listings = new Map<string, "ended" | "failed">()
      // And how each read of a root or file manifest ended (a key that is gone is an answer too).
      const reads = new Map<string, "read" | "failed">()
      const store: ObjectStoreService = {
        ...view.store,
        get: (key) =>
          view.store.get(key).pipe(
            Effect.tapBoth({
              onFailure: (error) =>
                Effect.sync(() => void reads.set(key, error._tag === "ObjectNotFound" ? "read" : "failed")),
              onSuccess: () => Effect.sync(() => void reads.set(key, "read"))
            })
          ),
        list: (prefix) =>
          Stream.concat(
            view.store.list(prefix).pipe(Stream.tapError(() => Effect.sync(() => void listings.set(prefix, "failed")))),
            Stream.execute(Effect.sync(() => void listings.set(prefix, "ended")))
          )
      }
      const exit = yield* Effect.exit(GarbageCollector.collect(store, configOf(world), { minAgeMs: 0 }))
      const listingsFailed = [
        ...[...listings].flatMap(([prefix, outcome]) => (outcome === "failed" ? [prefix] : [])),
        ...[...reads].flatMap((
          [key, outcome]
        ) => (outcome === "failed" && /^(checkpoints|manifests)\//.test(key) ? [`${key} (read)`] : []))
      ]
      if (Exit.isFailure(exit)) {
        return {
          error: exitText(exit),
          deletedObjects: 0,
          expiredNow: [],
          retained: [],
          complete: false,
          listingsFailed
        } satisfies GcPassResult
      }
      const report = exit.value
      return {
        listingsFailed,
        error: undefined,
        deletedObjects: Object.values(report.deleted).reduce((sum, tally) => sum + tally.objects, 0),
        expiredNow: report.expiredNow,
        retained: report.retained.map((each) => each.checkpoint),
        complete: report.complete
      } satisfies GcPassResult
    }),
  gcInject: (world, fault) => Effect.flatMap(gcViewOf(world), (view) => view.faults.inject(fault)),
  gcHeal: (world) => (world.gcView === undefined ? Effect.void : world.gcView.faults.heal),
  chooseRestore: (world, step) => chooseRestore(world, step.target, step.pick),
  restoreAt: (world, choice, latencyMs) => restoreAt(world, choice, latencyMs)
}

const gcViewOf = (world: RealWorld): Effect.Effect<FaultyView> =>
  world.gcView !== undefined
    ? Effect.succeed(world.gcView)
    : Effect.map(world.bucket.view, (view) => {
      world.gcView = view
      return view
    })

/** The committed checkpoints of the bucket now (number, WAL position), and the archived WAL's end:
 * read below every fault, without a request. */
const bucketNow = (world: RealWorld) =>
  Effect.map(world.bucket.inspect.snapshot, (snapshot) => {
    const layout = StorageConfig.keyLayout(simConfig)
    const committed: Array<{ readonly checkpoint: number; readonly walPosition: number }> = []
    const copies: Array<Wal.ArchivedCopy> = []
    for (const [key, bytes] of snapshot) {
      const parsed = KeyLayout.parseKey(layout, key)
      if (Option.isNone(parsed)) continue
      if (parsed.value._tag === "Checkpoint") {
        const root = Manifest.decodeRootObject(key, bytes, parsed.value.checkpoint)
        if (Either.isRight(root) && root.right._tag === "Committed") {
          committed.push({ checkpoint: root.right.manifest.checkpoint, walPosition: root.right.manifest.walPosition })
        }
      } else if (parsed.value._tag === "Wal") {
        copies.push({
          segment: parsed.value.segment,
          epoch: parsed.value.epoch ?? Wal.epochUnknown,
          key,
          sizeBytes: bytes.length
        })
      }
    }
    let archivedEnd = 0
    for (const [segment, copy] of Wal.archivedLineage(copies, Number.MAX_SAFE_INTEGER)) {
      archivedEnd = Math.max(
        archivedEnd,
        Wal.segmentStart(segment, simConfig.walSegmentBytes) + Math.min(copy.sizeBytes, simConfig.walSegmentBytes)
      )
    }
    return {
      committed: committed.sort((left, right) => left.checkpoint - right.checkpoint),
      archivedEnd
    }
  })

const chooseRestore = (
  world: RealWorld,
  target: "checkpoint" | "lsn" | "latest",
  pick: number
): Effect.Effect<RestoreChoice> =>
  Effect.map(bucketNow(world), ({ archivedEnd, committed }): RestoreChoice => {
    if (target === "latest") return { _tag: "Latest" }
    if (target === "checkpoint") {
      const chosen = committed[pick % Math.max(1, committed.length)]
      return chosen === undefined ? { _tag: "Latest" } : { _tag: "Checkpoint", checkpoint: chosen.checkpoint }
    }
    const from = committed[0]?.walPosition ?? 0
    return { _tag: "Lsn", lsn: from + Math.floor((pick * Math.max(0, archivedEnd - from)) / 1_000) }
  })

/** A restore under a reader lease into a fresh directory (Restore.ts), over a view of the bucket
 * whose gets are `latencyMs` slow; every part is loaded, then every part of the data model read. */
const restoreAt = (world: RealWorld, choice: RestoreChoice, latencyMs: number): Effect.Effect<RestoreResult> =>
  Effect.gen(function*() {
    const view = yield* world.bucket.view
    if (latencyMs > 0) {
      yield* view.faults.inject({ kind: "latency", ms: latencyMs, target: { operation: "get", keys: "any" } })
    }
    const disk = yield* MemoryDisk.make
    const target = choice._tag === "Latest"
      ? Restore.latest
      : choice._tag === "Checkpoint"
      ? Restore.checkpoint(choice.checkpoint)
      : Restore.lsn(choice.lsn)
    const program = Effect.scoped(
      Effect.gen(function*() {
        const restored = yield* Restore.open({
          target,
          holder: "simulation restore",
          replay: (record, data) => {
            const { slot, value } = decodeRecord(record.bytes)
            return data.write(fileOf(slot.file), slotOffset(slot), value)
          }
        })
        yield* restored.prefetch(3)
        const parts: Array<{ file: number; part: number; read: PartRead }> = []
        for (let file = 0; file < dataModel.files; file++) {
          for (let part = 0; part < dataModel.partsPerFile; part++) {
            const read = yield* Effect.exit(
              restored.readerLease.guard(
                restored.read(fileOf(file), part * dataModel.partSizeBytes, dataModel.partSizeBytes)
              )
            )
            parts.push({
              file,
              part,
              read: Exit.isSuccess(read)
                ? { bytes: read.value, error: undefined }
                : { bytes: undefined, error: exitText(read) }
            })
          }
        }
        yield* restored.readerLease.check
        return { summary: restored.summary, parts }
      })
    ).pipe(
      Effect.provide(
        Layer.mergeAll(
          Layer.succeed(StorageConfig.StorageConfig, configOf(world)),
          Layer.succeed(ObjectStore, view.store),
          Layer.succeed(LocalDisk, disk.disk)
        )
      )
    )
    const exit = yield* Effect.exit(program)
    if (Exit.isFailure(exit)) {
      const failure = Option.getOrUndefined(
        Option.flatMap(
          Exit.causeOption(exit),
          (cause) => (cause._tag === "Fail" ? Option.some(cause.error) : Option.none())
        )
      )
      return {
        error: { tag: errorTag(failure), detail: exitText(exit) ?? "failed" },
        base: undefined,
        walFromLsn: undefined,
        walToLsn: undefined,
        parts: []
      }
    }
    return {
      error: undefined,
      base: exit.value.summary.checkpoint,
      walFromLsn: exit.value.summary.walFromLsn,
      walToLsn: exit.value.summary.walToLsn,
      parts: exit.value.parts
    }
  })
