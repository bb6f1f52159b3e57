/**
 * Storage: the whole tier composed from one Config, and its shutdown. The public API: the service,
 * its options, its report and its layer.
 *
 * `Storage.layer` builds, over a StorageConfig, an ObjectStore and a LocalDisk, every internal
 * service in order (src/internal/storageService.ts: queue, workers, part table, loader with its
 * start-up checks and lock, WAL, checkpointer, evictor, garbage collector), replays the WAL through
 * the application's `replay`, and provides `Storage` alone.
 *
 * Shutdown (`shutdown`, or closing the layer's scope, which runs it once) is six named steps
 * bounded as a whole by `shutdownDeadlineMs`, whatever the bucket does (src/internal/shutdown.ts):
 * stop intake (the collector's pass, new work refused with ShuttingDown, the periodic checkpoint,
 * the evictor), archive the WAL's final segment, the final checkpoint (under
 * `shutdownCheckpointDeadlineMs`), drain the queue (`drainDeadlineMs`, then requests aborted),
 * release the bucket lock, mark the stop clean. A fenced instance (a take-over seen by any lock
 * check or renewal; BucketLock's sticky fence) fails `append` and `commit` with Fenced, and its
 * report names the WAL range that only it holds. The ShutdownReport says what happened; it is
 * returned by `shutdown` and passed to `onShutdown` when the scope closes, and one INFO line sums it
 * up. Spans: `storage.shutdown` and a child per step, `storage.replay`, `checkpoint`.
 *
 * Replaces: OrioleDB's shutdown, which was not a protocol at all (docs/ORIGINAL.md §7): the
 * checkpointer's shutdown checkpoint waited on queue locations with no timeout (#340, #373), and the
 * postmaster waited on the checkpointer.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer } from "effect"
import type { Scope } from "effect"
import type { Fenced, InvalidConfig, RecordNotApplied, ReplayFailed } from "../domain/Errors.js"
import type { FileId, Lsn, PartIndex } from "../domain/Ids.js"
import { make, servicesLayer } from "../internal/storageService.js"
import type * as BucketLock from "../services/BucketLock.js"
import type * as Checkpointer from "../services/Checkpointer.js"
import type * as Loader from "../services/Loader.js"
import type { LocalDisk } from "../services/LocalDisk.js"
import type { ObjectStore } from "../services/ObjectStore.js"
import type * as PartTable from "../services/PartTable.js"
import type { StorageConfig } from "../services/StorageConfig.js"
import type * as TaskQueue from "../services/TaskQueue.js"
import type * as WaitRegistry from "../services/WaitRegistry.js"
import type * as WalArchiver from "../services/WalArchiver.js"

import * as Config from "effect/Config"
import * as Errors from "../domain/Errors.js"
import * as StorageConfigModule from "../services/StorageConfig.js"
import * as FileObjectStore from "./FileObjectStore.js"
import * as FileSystemDisk from "./FileSystemDisk.js"
import * as MemoryDisk from "./MemoryDisk.js"
import * as MemoryObjectStore from "./MemoryObjectStore.js"
import * as S3ObjectStore from "./S3ObjectStore.js"

export { RecordNotApplied } from "../domain/Errors.js"
// The types the service's signatures name, so that an application can name them too.
export type { LoadedCheckpoint, LoadedFile } from "../internal/checkpoints.js"
export type { HeldLock, ReleaseOutcome } from "../services/BucketLock.js"
export type { CheckpointError, CheckpointerStats, CheckpointReport } from "../services/Checkpointer.js"
export type { Opened, OpenError as LoaderOpenError } from "../services/Loader.js"
export type { LeaseError, PartLease, PartTableStats } from "../services/PartTable.js"
export type { TaskQueueStats } from "../services/TaskQueue.js"
export type { Wait } from "../services/WaitRegistry.js"
export type {
  AppendError,
  CommitError,
  OpenError as WalOpenError,
  ReplayError as WalReplayError,
  WalStats
} from "../services/WalArchiver.js"

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
  readonly wal: {
    readonly archivedThrough: number
    readonly endLsn: number
    readonly localOnly: { readonly fromLsn: number; readonly toLsn: number } | undefined
  }
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
  readonly lease: (
    file: FileId,
    part: PartIndex
  ) => Effect.Effect<PartTable.PartLease, PartTable.LeaseError, Scope.Scope>
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

/** How the application's replay function may fail: its own reason, or the storage's errors. */
export type ReplayFunctionError = RecordNotApplied | PartTable.LeaseError | Checkpointer.CheckpointError

/** Options of the Storage layer. */
export interface StorageOptions {
  /**
   * Applies one WAL record at start-up, before the layer is built: the application redoes the change
   * the record logs, through `storage` (`write`, `lease`, `read`, `checkpoint`; not `append`).
   *
   * - Which records: every record the log holds from the base checkpoint's WAL position on (the
   *   latest checkpoint the open found, `opened.walPosition`), in LSN order, each once per start,
   *   from the local log where it has them and from the bucket's archive otherwise. That is every
   *   acknowledged (committed) record after the checkpoint, and possibly records that were appended
   *   but never acknowledged, if they reached the disk.
   * - At least once: a record is given again at every start until a checkpoint covers it (a start
   *   that fails or crashes during or after replay, before its next checkpoint, replays it again),
   *   so applying it must be idempotent: write the record's bytes where they go, not increments.
   * - A failure: the function fails with `RecordNotApplied` (the application's reason) or passes on
   *   the storage's own errors (`LeaseError`, `CheckpointError`); start-up then stops at that record and the layer fails with
   *   `ReplayFailed` (its `lsn`, and the function's error as `cause`). The instance is closed
   *   (lock released, nothing checkpointed past the records already covered), and the next start
   *   replays from the same base again.
   *
   * Without `replay`, the log is not read: the next record is appended after the base position.
   */
  readonly replay?: (record: ReplayRecord, storage: StorageService) => Effect.Effect<void, ReplayFunctionError>
  /** Receives the shutdown report when the layer's scope closes. */
  readonly onShutdown?: (report: ShutdownReport) => Effect.Effect<void>
}

/** Why the Storage layer could not be built. */
export type StorageOpenError =
  | Loader.OpenError
  | WalArchiver.OpenError
  | WalArchiver.ReplayError
  | ReplayFailed
  | InvalidConfig

/**
 * The storage tier over a given StorageConfig, ObjectStore and LocalDisk; it provides `Storage`
 * alone. Closing its scope is shutdown. @category layers
 */
export const layer = (
  options: StorageOptions = {}
): Layer.Layer<Storage, StorageOpenError, StorageConfig | ObjectStore | LocalDisk> =>
  Layer.scoped(Storage, make(options)).pipe(Layer.provide(servicesLayer()))

// ---------------------------------------------------------------------------------------------
// One-call opens: the common compositions, each providing `Storage` alone
// ---------------------------------------------------------------------------------------------

/** Options of the one-call opens: the Storage options and the configuration over the defaults. */
export interface OpenOptions extends StorageOptions {
  /** Fields over `StorageConfig.defaults`, validated once (a bad one fails the layer with InvalidConfig). */
  readonly config?: Partial<StorageConfigModule.StorageConfigValue>
}

/** Options of `layerNode`. */
export interface NodeOpenOptions extends OpenOptions {
  /** The instance's local data directory (WAL, part cache, control file); created when missing. */
  readonly dataDir: string
  /** The directory that plays the bucket (the file object store); created when missing. */
  readonly storeDir: string
}

/** Why a layer over the file system could not be built. */
export type NodeOpenError = StorageOpenError | Errors.LocalIoError

/**
 * Storage over a directory playing the bucket and a local data directory, on Node's file system
 * (needs @effect/platform-node). Closing the layer's scope is the bounded shutdown.
 * @example
 * Storage.layerNode({ dataDir: "/tmp/data", storeDir: "/tmp/bucket", config: { checkpointIntervalMs: 5_000 } })
 * @category layers
 */
export const layerNode = (options: NodeOpenOptions): Layer.Layer<Storage, NodeOpenError> =>
  layer(options).pipe(
    Layer.provide(Layer.mergeAll(
      StorageConfigModule.layer(options.config),
      FileObjectStore.layerNode({ root: options.storeDir, create: true }),
      FileSystemDisk.layerNode({ root: options.dataDir })
    ))
  )

/** The data directory's key of `layerConfig`. @category config */
export const dataDirConfig: Config.Config<string> = Config.string("S3_TIER_DATA_DIR").pipe(
  Config.withDescription("the instance's local data directory (WAL, part cache, control file); created when missing")
)

const readDataDir: Effect.Effect<string, Errors.InvalidConfig> = Effect.mapError(
  dataDirConfig,
  () => new Errors.InvalidConfig({ field: "S3_TIER_DATA_DIR", detail: "must be set to the local data directory" })
)

/**
 * Storage configured entirely from the ambient ConfigProvider (the environment by default): the
 * `S3_TIER_*` keys of `StorageConfig.layerConfig`, the S3 store's `S3_TIER_S3_*` keys
 * (`S3ObjectStore.layerConfig`) and the data directory `S3_TIER_DATA_DIR` (or `options.dataDir`).
 * @category layers
 */
export const layerConfig = (
  options: StorageOptions & { readonly dataDir?: string } = {}
): Layer.Layer<Storage, NodeOpenError> => {
  const dataDir = options.dataDir === undefined ? readDataDir : Effect.succeed(options.dataDir)
  const disk = Layer.unwrapEffect(Effect.map(dataDir, (root) => FileSystemDisk.layerNode({ root })))
  return layer(options).pipe(
    Layer.provide(Layer.merge(S3ObjectStore.layerConfig, disk)),
    Layer.provide(StorageConfigModule.layerConfig)
  )
}

/**
 * Storage in memory (a memory bucket and a memory disk, fresh for each build), for an app's own
 * tests: `it.layer(Storage.layerMemory())`. Parts are hashed on the calling fiber
 * (`hashWorkerCount: 0`) unless `config` says otherwise.
 * @category layers
 */
export const layerMemory = (options: OpenOptions = {}): Layer.Layer<Storage, StorageOpenError> =>
  layer(options).pipe(
    Layer.provide(Layer.mergeAll(
      StorageConfigModule.layer({ hashWorkerCount: 0, ...options.config }),
      MemoryObjectStore.layer,
      MemoryDisk.layer
    ))
  )
