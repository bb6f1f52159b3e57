/**
 * Storage: the whole tier composed from one Config, and its shutdown.
 *
 * Composition (each layer built on the ones before it; closed in reverse):
 *   StorageConfig, ObjectStore, LocalDisk (given)
 *   → WaitRegistry → TaskQueue → S3Workers → Hasher → PartTable → Loader (start-up: checks, lock, install)
 *   → WalArchiver → Checkpointer (periodic trigger) → Evictor → GarbageCollector (periodic pass)
 *   → Storage (replay, then the API).
 *
 * Shutdown (`shutdown`, or closing the layer's scope, which runs it once) is an ordered sequence
 * bounded as a whole by `shutdownDeadlineMs`, whatever the bucket does:
 *   0. the garbage collector's periodic pass is interrupted (with its deletes in flight);
 *   1. refuse new leases, writes and appends (ShuttingDown); stop the periodic checkpoint;
 *   2. the WAL archives its final partial segment (so it is in the bucket before the manifest);
 *   3. the shutdown checkpoint, under `shutdownCheckpointDeadlineMs` minus what step 2 used;
 *   4. the part table closes: leases still waiting on a load wake with ShuttingDown;
 *   5. the workers drain the queue for at most `drainDeadlineMs`, then in-flight requests are
 *      interrupted (their HTTP requests aborted) and every pending handle fails with TaskAborted;
 *   6. the bucket lock is deleted if it is still ours and time remains (its renewals stopped
 *      after step 3).
 * A fenced instance (a take-over seen by any lock check or renewal; BucketLock's sticky fence) fails
 * `append` and `commit` with Fenced, and its report names the WAL range that only it holds.
 * The ShutdownReport says what happened; it is logged, returned by `shutdown`, and passed to
 * `onShutdown` when the scope closes.
 *
 * Replaces: OrioleDB's shutdown, which was not a protocol at all (orioledb-s3.md §7): the
 * checkpointer's shutdown checkpoint waited on queue locations with no timeout (#340, #373), and the
 * postmaster waited on the checkpointer.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Context, Duration, Effect, Either, Exit, Fiber, Layer, Option, Ref } from "effect"
import type { Scope } from "effect"
import { type Fenced, type InvalidConfig, ReplayFailed, ShuttingDown } from "../domain/Errors.js"
import type { FileId, Lsn, PartIndex } from "../domain/Ids.js"
import * as BucketLock from "../services/BucketLock.js"
import * as Checkpointer from "../services/Checkpointer.js"
import * as Evictor from "../services/Evictor.js"
import * as GarbageCollector from "../services/GarbageCollector.js"
import * as Loader from "../services/Loader.js"
import { LocalDisk } from "../services/LocalDisk.js"
import { ObjectStore } from "../services/ObjectStore.js"
import * as Hasher from "../services/Hasher.js"
import * as PartTable from "../services/PartTable.js"
import * as PartPath from "../domain/PartPath.js"
import * as S3Workers from "../services/S3Workers.js"
import { StorageConfig } from "../services/StorageConfig.js"
import * as TaskQueue from "../services/TaskQueue.js"
import * as WaitRegistry from "../services/WaitRegistry.js"
import * as WalArchiver from "../services/WalArchiver.js"

/** How the final checkpoint went. */
export type FinalCheckpoint =
  | { readonly outcome: "completed"; readonly checkpoint: number }
  | { readonly outcome: "none" }
  | { readonly outcome: "timed-out"; readonly detail: string }
  | { readonly outcome: "failed"; readonly detail: string }

/** What shutdown did. Leases held and fibers alive must be 0. @category models */
export interface ShutdownReport {
  readonly durationMs: number
  readonly deadlineMs: number
  readonly metDeadline: boolean
  readonly finalCheckpoint: FinalCheckpoint
  readonly dirtyPartsLeft: number
  readonly tasks: { readonly drained: number; readonly interrupted: number; readonly aborted: number }
  readonly leasesHeld: number
  readonly fibersAlive: number
  readonly wal: { readonly archivedThrough: number; readonly endLsn: number; readonly localOnly: { readonly fromLsn: number; readonly toLsn: number } | undefined }
  readonly lock: BucketLock.ReleaseOutcome | "left-fenced"
  /** The waits that the deadline cut: who was still waiting on what when the final checkpoint's
   * deadline passed. */
  readonly cutWaits: ReadonlyArray<WaitRegistry.Wait>
}

/** Counters for progress lines and reports. */
export interface StorageStats {
  readonly parts: PartTable.PartTableStats
  readonly queue: TaskQueue.TaskQueueStats
  readonly checkpoints: Checkpointer.CheckpointerStats
  readonly wal: WalArchiver.WalStats
}

/** The public API of the storage tier. @category models */
export interface StorageService {
  readonly instanceId: string
  readonly epoch: number
  /** What start-up found (plan, base checkpoint, WAL position replayed from). */
  readonly opened: Loader.Opened
  /** A lease on one part (see PartTable.lease); ShuttingDown once shutdown began. */
  readonly lease: (file: FileId, part: PartIndex) => Effect.Effect<PartTable.PartLease, PartTable.LeaseError, Scope.Scope>
  readonly read: (file: FileId, offset: number, length: number) => Effect.Effect<Uint8Array, PartTable.LeaseError>
  readonly write: (file: FileId, offset: number, bytes: Uint8Array) => Effect.Effect<void, PartTable.LeaseError>
  /** Appends a WAL record (log a change after applying it through a lease); returns its LSN. */
  readonly append: (record: Uint8Array) => Effect.Effect<Lsn, WalArchiver.AppendError | Fenced>
  /** Makes every record appended so far durable locally (group commit). Fenced once a newer
   * instance or open took the bucket over: then nothing more is acknowledged. */
  readonly commit: Effect.Effect<void, WalArchiver.CommitError | Fenced>
  readonly checkpoint: Effect.Effect<Checkpointer.CheckpointReport, Checkpointer.CheckpointError>
  /** Runs the bounded shutdown once; later calls return the same report. */
  readonly shutdown: Effect.Effect<ShutdownReport>
  readonly stats: Effect.Effect<StorageStats>
}

/** The storage tier. @category tags */
export class Storage extends Context.Tag("effect-s3-tier/Storage")<Storage, StorageService>() {}

/** One WAL record given to the application's replay function at start-up. */
export interface ReplayRecord {
  readonly lsn: Lsn
  readonly bytes: Uint8Array
}

/** Options of the Storage layer. */
export interface StorageOptions {
  /** Applies one WAL record at start-up (records after the base checkpoint's WAL position). */
  readonly replay?: (record: ReplayRecord, storage: StorageService) => Effect.Effect<void, unknown>
  /** Receives the shutdown report when the layer's scope closes. */
  readonly onShutdown?: (report: ShutdownReport) => Effect.Effect<void>
}

const remainingMs = (deadlineAtMs: number) => Effect.map(Clock.currentTimeMillis, (now) => Math.max(0, deadlineAtMs - now))

/** The WAL's positions when its own shutdown step overran its bound. */
const walFromStats = (stats: WalArchiver.WalStats): WalArchiver.WalShutdownReport => ({
  archivedThrough: stats.archivedThrough,
  durableLsn: stats.durableLsn,
  endLsn: stats.endLsn,
  localOnly: stats.archivedThrough < stats.endLsn ? { fromLsn: stats.archivedThrough, toLsn: stats.endLsn } : undefined
})

/**
 * Shutdown runs uninterruptibly (it is a finalizer, and a caller's interruption must not cut it in
 * half), and a fiber forked there inherits that: a timeout racing it could never interrupt a stalled
 * request. So every step that waits runs in an interruptible region of its own, under its own bound.
 */
const bounded = <A, E, R>(step: Effect.Effect<A, E, R>, ms: number): Effect.Effect<Option.Option<A>, E, R> =>
  Effect.interruptible(step).pipe(Effect.timeoutOption(Duration.millis(Math.max(0, ms))))

const make = (options: StorageOptions) =>
  Effect.gen(function* () {
    const config = yield* StorageConfig
    const store = yield* ObjectStore
    const parts = yield* PartTable.PartTable
    const queue = yield* TaskQueue.TaskQueue
    const workers = yield* S3Workers.S3Workers
    const waits = yield* WaitRegistry.WaitRegistry
    const wal = yield* WalArchiver.WalArchiver
    const checkpointer = yield* Checkpointer.Checkpointer
    const evictor = yield* Evictor.Evictor
    const gc = yield* GarbageCollector.GarbageCollector
    const loader = yield* Loader.Loader
    const disk = yield* LocalDisk
    const opened = loader.opened
    const closing = yield* Ref.make(false)
    const bucketLock = loader.bucketLock
    // Sticky: set by the WAL's fence check, the checkpointer's lock check or commit, or a renewal.
    const fenced = Effect.map(Effect.all([checkpointer.stats, bucketLock.fenced]), ([stats, shared]) => stats.fenced || Option.isSome(shared))

    const refuseWhenClosing = (operation: string) =>
      Effect.flatMap(Ref.get(closing), (isClosing) => (isClosing ? Effect.fail(new ShuttingDown({ operation })) : Effect.void))

    const runShutdown = Effect.gen(function* () {
      const startMs = yield* Clock.currentTimeMillis
      const deadlineAtMs = startMs + config.shutdownDeadlineMs
      // First: a pass in flight stops deleting (its deletes are interruptible requests).
      yield* bounded(gc.stop, Math.min(config.requestTimeoutMs, config.shutdownDeadlineMs / 10))
      yield* Ref.set(closing, true)
      yield* checkpointer.stopPeriodic
      yield* evictor.stop
      // Half-way diagnostics: who waits on what, instead of a debugger.
      const diagnostics = yield* Effect.forkDaemon(Effect.interruptible(
        Effect.sleep(Duration.millis(config.shutdownDeadlineMs / 2)).pipe(
          Effect.zipRight(waits.current),
          Effect.flatMap((current) =>
            Effect.logWarning(`shutdown not finished at half its deadline (${config.shutdownDeadlineMs / 2} ms); waiting:\n${current.map((wait) => `  ${wait.fiber} ${wait.waiter} on ${wait.on} since ${wait.sinceMs}`).join("\n")}`)
          )
        )
      ))
      const checkpointBudgetAtMs = startMs + config.shutdownCheckpointDeadlineMs
      // The WAL gets at most half of the checkpoint's share, so a stalled archive leaves the
      // checkpoint time to try (and to report what it could not do).
      const walBudgetMs = Math.floor((yield* remainingMs(checkpointBudgetAtMs)) / 2)
      const walReport = yield* Option.match(yield* bounded(wal.shutdown(walBudgetMs), walBudgetMs + 100), {
        onSome: Effect.succeed,
        onNone: () => Effect.map(wal.stats, walFromStats)
      })
      let cutWaits: ReadonlyArray<WaitRegistry.Wait> = []
      let finalCheckpoint: FinalCheckpoint
      if (yield* fenced) {
        finalCheckpoint = { outcome: "failed", detail: "fenced: a newer instance took over the bucket" }
      } else {
        const budgetMs = yield* remainingMs(checkpointBudgetAtMs)
        const fiber = yield* Effect.fork(Effect.interruptible(checkpointer.checkpoint({ deadlineMs: Math.max(1, budgetMs), reason: "shutdown" })))
        // The checkpoint bounds itself; this outer bound also snapshots the waits it cuts.
        const exit = yield* bounded(Fiber.await(fiber), budgetMs + 50)
        if (Option.isNone(exit)) {
          cutWaits = yield* waits.current
          yield* Fiber.interrupt(fiber)
          finalCheckpoint = { outcome: "timed-out", detail: `not committed within ${budgetMs} ms` }
        } else {
          finalCheckpoint = Exit.match(exit.value, {
            onSuccess: (report): FinalCheckpoint =>
              report.outcome === "completed" ? { outcome: "completed", checkpoint: report.checkpoint } : { outcome: "none" },
            onFailure: (cause): FinalCheckpoint => {
              // The first failure names the cause; concurrent uploads may add more of the same kind.
              const failure = Option.getOrUndefined(Cause.failureOption(cause))
              if (failure?._tag === "CheckpointFailed" && failure.reason === "TimedOut") return { outcome: "timed-out", detail: failure.message }
              return { outcome: "failed", detail: failure?.message ?? Cause.pretty(cause).split("\n")[0] ?? "unknown" }
            }
          })
          if (finalCheckpoint.outcome === "timed-out") cutWaits = yield* waits.current
        }
      }
      // Nothing more goes to the bucket but the lock's DELETE: a renewal in flight ends during the
      // drain instead of delaying the release.
      yield* bucketLock.stopRenewals
      yield* parts.close
      const workerReport = yield* Effect.interruptible(workers.shutdown)
      const isFenced = yield* fenced
      // The lock gets what is left, less a margin for the bookkeeping after it, so that a stalled
      // bucket cannot push the close past its deadline. The margins are wide enough for a starved
      // event loop: on 2 busy cores a timer fires tens of ms late, and a cut step ends after it.
      const marginMs = Math.min(300, Math.ceil(config.shutdownDeadlineMs * 0.1))
      const lockBudgetMs = Math.min((yield* remainingMs(deadlineAtMs)) - marginMs, config.requestTimeoutMs)
      // Out of time, the release is cut at once (and marked failed, so no later one runs).
      const lock = isFenced
        ? ("left-fenced" as const)
        : Option.getOrElse(
            yield* bounded(bucketLock.release({ ...config, requestTimeoutMs: Math.max(10, lockBudgetMs), retryAttemptsMax: 1 }), Math.max(0, lockBudgetMs)),
            () => "failed" as const
          )
      yield* Fiber.interrupt(diagnostics)
      // Sync the part files that hold data no checkpoint has, then mark the shutdown clean, so the
      // next start keeps them (after a crash it would rebuild them from the checkpoint and the WAL).
      const states = yield* parts.states
      // Every part written through a lease since it was loaded (version > 0): an uploaded part's file
      // may still hold unsynced bytes, and a crash after this "clean" stop must not revert it.
      const dirtyPaths = states.filter(([, , state]) => state.status === "Loaded" && state.version > 0).map(([file, part]) => PartPath.partPath(file, part))
      const cleanBudgetMs = (yield* remainingMs(deadlineAtMs)) - Math.min(150, Math.ceil(config.shutdownDeadlineMs * 0.05))
      const markClean = Effect.flatMap(Effect.zip(parts.localPartHashes, wal.durableLsn), ([hashes, walDurable]) => Loader.markCleanShutdown(disk, dirtyPaths, hashes, walDurable))
      const marked = cleanBudgetMs > 0 ? yield* bounded(Effect.either(markClean), cleanBudgetMs) : Option.none()
      const markedClean = Option.isSome(marked) && Either.isRight(marked.value)
      if (!markedClean) yield* Effect.logWarning("shutdown: the local part files were not all synced in time; the next start treats this stop as a crash")
      const partStats = yield* parts.stats
      const endMs = yield* Clock.currentTimeMillis
      const report: ShutdownReport = {
        durationMs: endMs - startMs,
        deadlineMs: config.shutdownDeadlineMs,
        metDeadline: endMs <= deadlineAtMs,
        finalCheckpoint,
        dirtyPartsLeft: partStats.dirty + partStats.writing,
        tasks: { drained: workerReport.drainedTasks, interrupted: workerReport.interruptedTasks, aborted: workerReport.abortedTasks },
        leasesHeld: partStats.leasesHeld,
        fibersAlive: workerReport.workersAlive + ((yield* evictor.alive) ? 1 : 0) + ((yield* checkpointer.periodicAlive) ? 1 : 0) + ((yield* gc.periodicAlive) ? 1 : 0),
        wal: walReport,
        lock,
        cutWaits
      }
      yield* Effect.logInfo("storage shut down").pipe(Effect.annotateLogs({ report: JSON.stringify(report) }))
      return report
    }).pipe(Effect.uninterruptible)
    const shutdown = yield* Effect.cached(runShutdown)

    const service: StorageService = Storage.of({
      instanceId: opened.lock.instanceId,
      epoch: opened.lock.epoch,
      opened,
      lease: (file, part) => Effect.zipRight(refuseWhenClosing("lease"), parts.lease(file, part)),
      read: (file, offset, length) => Effect.zipRight(refuseWhenClosing("read"), parts.read(file, offset, length)),
      write: (file, offset, bytes) => Effect.zipRight(refuseWhenClosing("write"), parts.write(file, offset, bytes)),
      // A fenced instance appends nothing and acknowledges nothing: the check after the commit's
      // wait withholds an acknowledgement that the fence overtook.
      append: (record) => Effect.zipRight(Effect.zipRight(refuseWhenClosing("append"), bucketLock.ensureNotFenced), wal.append(record)),
      commit: Effect.zipRight(Effect.zipRight(refuseWhenClosing("commit"), bucketLock.ensureNotFenced), Effect.zipRight(wal.commit, bucketLock.ensureNotFenced)),
      checkpoint: Effect.zipRight(refuseWhenClosing("checkpoint"), checkpointer.checkpoint({ reason: "on demand" })),
      shutdown,
      stats: Effect.all({ parts: parts.stats, queue: queue.stats, checkpoints: checkpointer.stats, wal: wal.stats })
    })

    if (options.replay === undefined) {
      // A restored log must not reuse positions after the base checkpoint's that the archive lacks.
      yield* wal.advanceTo(opened.walPosition)
    } else {
      const apply = options.replay
      yield* wal.replay(opened.walPosition, (lsn: Lsn, bytes: Uint8Array) =>
        apply({ lsn, bytes }, service).pipe(
          Effect.mapError((error) => new ReplayFailed({ lsn, detail: error instanceof Error || (typeof error === "object" && error !== null && "message" in error) ? String((error as { message: unknown }).message) : String(error) }))
        ))
    }
    yield* Effect.addFinalizer(() =>
      shutdown.pipe(Effect.flatMap((report) => (options.onShutdown === undefined ? Effect.void : options.onShutdown(report))))
    )
    return service
  })

/** Everything the Storage layer provides. */
export type StorageServices =
  | Storage
  | PartTable.PartTable
  | Hasher.Hasher
  | TaskQueue.TaskQueue
  | S3Workers.S3Workers
  | WaitRegistry.WaitRegistry
  | WalArchiver.WalArchiver
  | Checkpointer.Checkpointer
  | Evictor.Evictor
  | GarbageCollector.GarbageCollector
  | Loader.Loader

/** The WAL's fence: the bucket lock still names this instance and epoch (see WalArchiver.WalFence). */
const walFenceLayer = Layer.effect(
  WalArchiver.WalFence,
  Effect.gen(function* () {
    const loader = yield* Loader.Loader
    return { check: loader.bucketLock.check }
  })
)

/** Where start-up replay begins, the writer's epoch, and the WAL's durable end recorded at the last
 * clean stop (see WalArchiver.WalStartup). */
const walStartupLayer = Layer.effect(
  WalArchiver.WalStartup,
  Effect.map(Loader.Loader, (loader) => ({
    replayFromLsn: loader.opened.walPosition,
    epoch: loader.opened.lock.epoch,
    ...(loader.opened.walDurableLsn === undefined ? {} : { durableLsn: loader.opened.walDurableLsn })
  }))
)

const checkpointerLayer = Layer.scoped(
  Checkpointer.Checkpointer,
  Effect.gen(function* () {
    const loader = yield* Loader.Loader
    const wal = yield* WalArchiver.WalArchiver
    return yield* Checkpointer.make({
      base: loader.opened.base,
      lock: loader.opened.lock,
      wal: { position: wal.position, covered: wal.checkpointCovered, durableLsn: wal.durableLsn },
      fence: loader.bucketLock
    })
  })
)

/** Why the Storage layer could not be built. */
export type StorageOpenError = Loader.OpenError | WalArchiver.OpenError | WalArchiver.ReplayError | ReplayFailed | InvalidConfig

/**
 * The storage tier over a given StorageConfig, ObjectStore and LocalDisk. Closing its scope is
 * shutdown. @category layers
 */
export const layer = (options: StorageOptions = {}): Layer.Layer<StorageServices, StorageOpenError, StorageConfig | ObjectStore | LocalDisk> => {
  const queueLayer = TaskQueue.layer.pipe(Layer.provideMerge(WaitRegistry.layer))
  const workersLayer = S3Workers.layer.pipe(Layer.provideMerge(queueLayer))
  const partsLayer = PartTable.layer.pipe(Layer.provideMerge(Hasher.layer), Layer.provideMerge(workersLayer))
  const loaderLayer = Loader.layer.pipe(Layer.provideMerge(partsLayer))
  const walLayer = WalArchiver.layer.pipe(Layer.provide(walFenceLayer), Layer.provide(walStartupLayer), Layer.provideMerge(loaderLayer))
  const checkpointLayer = checkpointerLayer.pipe(Layer.provideMerge(walLayer))
  const evictorLayer = Evictor.layer.pipe(Layer.provideMerge(checkpointLayer))
  const gcLayer = GarbageCollector.layer.pipe(Layer.provideMerge(evictorLayer))
  return Layer.scoped(Storage, make(options)).pipe(Layer.provideMerge(gcLayer))
}
