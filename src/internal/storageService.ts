/**
 * How the Storage service is built: the internal services composed in order, then the service over
 * them (every operation admitted while open and awaited or cut at the shutdown, admission.ts; the
 * fence on append and commit; start-up replay; the shutdown as the layer's finalizer).
 * Storage.layer exposes the result as `Storage` alone; tests, the benchmark and the simulation
 * reach the internal services through src/internal/storageLayer.ts.
 *
 * Composition (each layer built on the ones before it; closed in reverse):
 *   StorageConfig, ObjectStore, LocalDisk (given; each Storage's view of it through its guard,
 *   directoryGuard.ts, which keeps the directory locked until the last write has landed)
 *   → WaitRegistry → TaskQueue → S3Workers → Hasher → PartTable → Loader (start-up: checks, lock, install)
 *   → WalArchiver → Checkpointer (periodic trigger) → Evictor → GarbageCollector (periodic pass)
 *   → Storage (replay, then the API).
 *
 * Replaces: OrioleDB's postmaster start-up order (docs/ORIGINAL.md §1): the S3 workers and the
 * checkpointer started as background workers, the control check, then recovery replay.
 *
 * @since 0.1.0
 */
import { Cause, Effect, Fiber, Layer } from "effect"
import { messageOf, ReplayFailed } from "../domain/Errors.js"
import type { Lsn } from "../domain/Ids.js"
import * as CountingObjectStore from "../layers/CountingObjectStore.js"
import type { StorageOptions, StorageService } from "../layers/Storage.js"
import * as Checkpointer from "../services/Checkpointer.js"
import * as Evictor from "../services/Evictor.js"
import * as GarbageCollector from "../services/GarbageCollector.js"
import * as Hasher from "../services/Hasher.js"
import * as Loader from "../services/Loader.js"
import { LocalDisk } from "../services/LocalDisk.js"
import * as PartTable from "../services/PartTable.js"
import * as S3Workers from "../services/S3Workers.js"
import { StorageConfig } from "../services/StorageConfig.js"
import * as TaskQueue from "../services/TaskQueue.js"
import * as WaitRegistry from "../services/WaitRegistry.js"
import * as WalArchiver from "../services/WalArchiver.js"
import * as Admission from "./admission.js"
import * as DirectoryGuard from "./directoryGuard.js"
import * as Shutdown from "./shutdown.js"

/** The internal services under Storage. */
export type InternalServices =
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

/** Builds the Storage service over the internal services; its shutdown runs when the scope closes. */
export const make = (options: StorageOptions) =>
  Effect.gen(function*() {
    const loader = yield* Loader.Loader
    const parts = yield* PartTable.PartTable
    const wal = yield* WalArchiver.WalArchiver
    const checkpointer = yield* Checkpointer.Checkpointer
    const queue = yield* TaskQueue.TaskQueue
    const bucketLock = loader.bucketLock
    const intake = yield* Admission.make
    const shutdown = yield* Effect.cached(Shutdown.run({
      config: yield* StorageConfig,
      disk: yield* LocalDisk,
      waits: yield* WaitRegistry.WaitRegistry,
      gc: yield* GarbageCollector.GarbageCollector,
      checkpointer,
      evictor: yield* Evictor.Evictor,
      wal,
      parts,
      workers: yield* S3Workers.S3Workers,
      bucketLock,
      refuseNewWork: intake.close,
      operations: intake
    }))

    const service: StorageService = {
      instanceId: loader.opened.lock.instanceId,
      epoch: loader.opened.lock.epoch,
      opened: loader.opened,
      // The application's operations are admitted while the storage is open, and the shutdown
      // waits for those in flight (src/internal/admission.ts).
      lease: (file, part) => Effect.zipRight(intake.refuseIfClosed("lease"), parts.lease(file, part)),
      read: (file, offset, length) => intake.admit("read", parts.read(file, offset, length)),
      write: (file, offset, bytes) => intake.admit("write", parts.write(file, offset, bytes)),
      // A fenced instance appends nothing and acknowledges nothing: the check after the commit's
      // wait withholds an acknowledgement that the fence overtook.
      append: (record) => intake.admit("append", Effect.zipRight(bucketLock.ensureNotFenced, wal.append(record))),
      commit: intake.admit(
        "commit",
        Effect.zipRight(bucketLock.ensureNotFenced, Effect.zipRight(wal.commit, bucketLock.ensureNotFenced))
      ),
      // Cut at the shutdown: its own checkpoint supersedes one on demand, and must not wait for it.
      checkpoint: intake.cut("checkpoint", checkpointer.checkpoint({ reason: "on demand" })),
      shutdown,
      stats: Effect.all({ parts: parts.stats, queue: queue.stats, checkpoints: checkpointer.stats, wal: wal.stats })
    }

    if (options.replay === undefined) {
      // A restored log must not reuse positions after the base checkpoint's that the archive lacks.
      yield* wal.advanceTo(loader.opened.walPosition)
    } else {
      const apply = options.replay
      yield* wal.replay(loader.opened.walPosition, (lsn: Lsn, bytes: Uint8Array) =>
        // The cause is the application's own error object (a failure raised inside a span is
        // seen through a proxy that carries the span).
        apply({ lsn, bytes }, service).pipe(Effect.mapError((error) =>
          new ReplayFailed({ lsn, detail: messageOf(error), cause: Cause.originalError(error) })
        ))).pipe(Effect.withSpan("storage.replay", { attributes: { "wal.fromLsn": loader.opened.walPosition } }))
    }
    // On a fiber of its own: the scope may close because its fiber was interrupted (SIGINT under
    // NodeRuntime.runMain), and the shutdown's interruptible steps would be cut by that interrupt.
    yield* Effect.addFinalizer(() =>
      shutdown.pipe(
        Effect.flatMap((report) => (options.onShutdown === undefined ? Effect.void : options.onShutdown(report))),
        Effect.fork,
        Effect.flatMap(Fiber.join)
      )
    )
    return service
  })

/** The WAL's fence: the bucket lock still names this instance and epoch (see WalArchiver.WalFence). */
const walFenceLayer = Layer.effect(
  WalArchiver.WalFence,
  Effect.map(Loader.Loader, (loader) => ({ check: loader.bucketLock.check }))
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
  Effect.gen(function*() {
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

/** The internal services, composed in order over StorageConfig, ObjectStore and LocalDisk. A new
 * layer per call, so that two instances in one build never share a service by memoization. */
export const servicesLayer = () => {
  const queueLayer = TaskQueue.layer.pipe(Layer.provideMerge(WaitRegistry.layer))
  const workersLayer = S3Workers.layer.pipe(Layer.provideMerge(queueLayer))
  const partsLayer = PartTable.layer.pipe(Layer.provideMerge(Hasher.layer), Layer.provideMerge(workersLayer))
  const loaderLayer = Loader.layer.pipe(Layer.provideMerge(partsLayer))
  const walLayer = WalArchiver.layer.pipe(
    Layer.provide(walFenceLayer),
    Layer.provide(walStartupLayer),
    Layer.provideMerge(loaderLayer)
  )
  const checkpointLayer = checkpointerLayer.pipe(Layer.provideMerge(walLayer))
  const evictorLayer = Evictor.layer.pipe(Layer.provideMerge(checkpointLayer))
  // Every service sees the store through the request meter (object_store_requests).
  // Every service sees the data directory through its guard (src/internal/directoryGuard.ts), and
  // so does the Storage service built over them: the directory stays locked while a write of this
  // instance may still land in it.
  return GarbageCollector.layer.pipe(
    Layer.provideMerge(evictorLayer),
    Layer.provide(CountingObjectStore.layerMetered),
    Layer.provideMerge(DirectoryGuard.layer())
  )
}
