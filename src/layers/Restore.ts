/**
 * Restore: the bucket's state at a point in time, read into a fresh directory, read-only on the
 * bucket. The target is the latest state, a checkpoint N, an LSN L or a time T; the base is the
 * newest retained (not tombstoned) checkpoint at or before it (N itself; the newest whose WAL
 * position is at most L; the newest created at or before T), then the archived WAL from the base's
 * position is replayed up to the target through the application's replay function: records below L;
 * for T, records below the last time mark at or before T (Wal.ts: the group commit writes one at most
 * once per `walTimeMarkIntervalMs`, so a record appended after it but before T is left out); for the
 * latest state, every archived record. A target outside what the bucket retains is refused with one
 * line naming the window (RestoreRefused).
 *
 * Read-only: no bucket lock, no take-over claim, no checkpoint, no WAL archiving, no write-back: the
 * store is wrapped so that nothing but the reader lease can be written (ReaderLease.ts). The lease
 * names the base checkpoint and is written before its root manifest is read, renewed while the
 * restored state is open and deleted when its scope closes; the garbage collector keeps the base's
 * objects and the WAL from its position on while it lives. The restored parts live in the given
 * LocalDisk (PartTable's layout), fetched on first use or all at once (`prefetch`); the replay's
 * writes stay there. The base's choice is in src/internal/restore/base.ts, the WAL's replay in
 * src/internal/restore/replay.ts; this file opens the restored state.
 *
 * Replaces: orioledb_s3_loader.py's download of the highest checkpoint plus its WAL range (no
 * point in time, no protection from deletion: OrioleDB deletes nothing), and this project's own
 * earlier restore, which opened a full Storage (bucket lock, take-over, a shutdown checkpoint).
 *
 * @since 0.2.0
 */
import { Context, Effect, Layer, type Scope } from "effect"
import {
  CorruptObject,
  type DirectoryLocked,
  type LocalIoError,
  type ObjectStoreError,
  type ReaderLeaseLost,
  RestoreRefused,
  WalGap
} from "../domain/Errors.js"
import * as Ids from "../domain/Ids.js"
import { CheckpointNumber, type FileId, Lsn, type PartIndex } from "../domain/Ids.js"
import * as Manifest from "../domain/Manifest.js"
import * as PartPath from "../domain/PartPath.js"
import * as ReaderLease from "../internal/ReaderLease.js"
import { chooseBase, describeTarget, readRoot, refusal } from "../internal/restore/base.js"
import { archivedEnd, replayWal, stopOf } from "../internal/restore/replay.js"
import * as Hasher from "../services/Hasher.js"
import * as Loader from "../services/Loader.js"
import { LocalDisk } from "../services/LocalDisk.js"
import { ObjectStore, type ObjectStoreService } from "../services/ObjectStore.js"
import * as PartTable from "../services/PartTable.js"
import * as S3Workers from "../services/S3Workers.js"
import { StorageConfig, type StorageConfigValue } from "../services/StorageConfig.js"
import * as TaskQueue from "../services/TaskQueue.js"
import * as WaitRegistry from "../services/WaitRegistry.js"

// The types the restore's signatures name, so that an application can name them too.
export type { HeldReaderLease } from "../internal/ReaderLease.js"
export { describeTarget, describeWindow } from "../internal/restore/base.js"

/** What to restore. @category models */
export type RestoreTarget =
  | { readonly _tag: "Latest" }
  | { readonly _tag: "Checkpoint"; readonly checkpoint: number }
  | { readonly _tag: "Lsn"; readonly lsn: number }
  | { readonly _tag: "Time"; readonly timeMs: number }

/** Restore the latest state: the newest checkpoint and every archived WAL record after it. */
export const latest: RestoreTarget = { _tag: "Latest" }
/** Restore checkpoint N as it was committed (no WAL is replayed). */
export const checkpoint = (checkpoint: number): RestoreTarget => ({ _tag: "Checkpoint", checkpoint })
/** Restore the state just before WAL position `lsn`. */
export const lsn = (lsn: number): RestoreTarget => ({ _tag: "Lsn", lsn })
/** Restore the state at `timeMs` (to the precision of the WAL's time marks). */
export const time = (timeMs: number): RestoreTarget => ({ _tag: "Time", timeMs })

/** The restored state: reads and writes go to the local directory only. Each fails with
 * ReaderLeaseLost once the reader lease was lost. */
export interface RestoredData {
  readonly read: (
    file: FileId,
    offset: number,
    length: number
  ) => Effect.Effect<Uint8Array, PartTable.LeaseError | ReaderLeaseLost>
  readonly write: (
    file: FileId,
    offset: number,
    bytes: Uint8Array
  ) => Effect.Effect<void, PartTable.LeaseError | ReaderLeaseLost>
  readonly lease: (
    file: FileId,
    part: PartIndex
  ) => Effect.Effect<PartTable.PartLease, PartTable.LeaseError | ReaderLeaseLost, Scope.Scope>
}

/** One WAL record given to the replay function. */
export interface ReplayRecord {
  readonly lsn: Lsn
  readonly bytes: Uint8Array
}

/** What to restore, who reads, and how WAL records are applied. */
export interface RestoreOptions<E = never> {
  readonly target?: RestoreTarget
  /** Who reads, written into the lease (e.g. "restore pid 123"). */
  readonly holder?: string
  /** Applies one WAL record (the same function the Storage layer replays with). Without it the WAL
   * is not replayed: the state is the base checkpoint's. */
  readonly replay?: (record: ReplayRecord, data: RestoredData) => Effect.Effect<void, E>
}

/** What a restore did. @category models */
export interface RestoreSummary {
  readonly target: string
  readonly checkpoint: number
  readonly checkpointCreatedAtMs: number
  /** Records at and after it are not in the checkpoint's parts. */
  readonly walFromLsn: number
  /** Every archived record starting below it was replayed: the LSN target, the last time mark at
   * or before the time target, or the archived WAL's end. */
  readonly walToLsn: number
  readonly records: number
  readonly recordBytes: number
  readonly segments: number
  readonly files: number
  readonly parts: number
  readonly partBytes: number
  readonly leaseId: string
}

/** An open restored state: its data, what it is, and its lease. @category models */
export interface Restored extends RestoredData {
  readonly summary: RestoreSummary
  readonly readerLease: ReaderLease.HeldReaderLease
  /** Loads every part of the base locally (`concurrency` at a time). */
  readonly prefetch: (
    concurrency: number,
    onProgress?: (done: number, total: number) => Effect.Effect<void>
  ) => Effect.Effect<number, PartTable.LeaseError | ReaderLeaseLost>
  /** fsyncs every part file the restore loaded or wrote. */
  readonly sync: Effect.Effect<number, LocalIoError>
}

/** Why a restore failed (besides the replay function's own errors). */
export type RestoreError =
  | ObjectStoreError
  | CorruptObject
  | LocalIoError
  | DirectoryLocked
  | RestoreRefused
  | ReaderLeaseLost
  | WalGap
  | PartTable.LeaseError

/** The part table and its workers over the read-only store, in the caller's scope. */
const partsOver = (config: StorageConfigValue, store: ObjectStoreService) =>
  Effect.gen(function*() {
    const disk = yield* LocalDisk
    const queueLayer = TaskQueue.layer.pipe(Layer.provideMerge(WaitRegistry.layer))
    const workersLayer = S3Workers.layer.pipe(Layer.provideMerge(queueLayer))
    const partsLayer = PartTable.layer.pipe(Layer.provideMerge(Hasher.layer), Layer.provideMerge(workersLayer))
    const context = yield* Layer.build(partsLayer.pipe(
      Layer.provide(
        Layer.mergeAll(
          Layer.succeed(StorageConfig, config),
          Layer.succeed(ObjectStore, store),
          Layer.succeed(LocalDisk, disk)
        )
      )
    ))
    return Context.get(context, PartTable.PartTable)
  })

/** The base of a bucket without a checkpoint: nothing, and the WAL from its start. */
const emptyBase = (config: StorageConfigValue): Manifest.CheckpointManifest => ({
  format: Manifest.checkpointManifestFormat,
  instanceId: Ids.InstanceId.make("i0000000000000000"),
  epoch: Ids.Epoch.make(0),
  checkpoint: CheckpointNumber.make(0),
  previous: CheckpointNumber.make(0),
  createdAtMs: 0,
  partSizeBytes: config.partSizeBytes,
  walSegmentBytes: config.walSegmentBytes,
  walPosition: Lsn.make(0),
  files: []
})

/**
 * Opens the bucket's state at `options.target` (default: the latest) over the LocalDisk, a fresh
 * directory, for the life of the scope (see the module comment). The lease is taken before the base's
 * root manifest is read, and every read after it is guarded by it.
 */
/* eslint-disable max-lines-per-function -- the restore's steps in their order, read top to bottom */
export const open = <E = never>(
  options: RestoreOptions<E> = {}
): Effect.Effect<Restored, RestoreError | E, StorageConfig | ObjectStore | LocalDisk | Scope.Scope> =>
  Effect.gen(function*() {
    /* eslint-enable max-lines-per-function */
    const config = yield* StorageConfig
    const store = ReaderLease.readOnlyExceptLeases(yield* ObjectStore, config)
    const disk = yield* LocalDisk
    yield* disk.lockDirectory
    const target = options.target ?? latest
    const base = yield* chooseBase(store, config, target)
    const readerLease = yield* ReaderLease.acquire(store, config, {
      checkpoint: CheckpointNumber.make(base),
      holder: options.holder ?? "restore"
    })
    // Only now, with the lease written, is the root manifest read: a tombstone means it expired first.
    const root = base === 0 ? undefined : yield* readerLease.guard(readRoot(store, config, base))
    if (root?.object._tag === "Expired") {
      const what = target._tag === "Checkpoint"
        ? "is outside the retention window (it has expired)"
        : `needs checkpoint ${base}, which has expired`
      return yield* refusal(store, config, target, "Expired", what)
    }
    const manifest = root?.object._tag === "Committed" ? root.object.manifest : emptyBase(config)
    const stop = stopOf(target)
    if (target._tag === "Lsn" && target.lsn > manifest.walPosition) {
      const end = yield* readerLease.guard(archivedEnd(store, config, manifest.walSegmentBytes))
      if (target.lsn > end) {
        return yield* refusal(store, config, target, "BeyondArchive", `is beyond the archived WAL's end (LSN ${end})`)
      }
    }
    const loaded = yield* readerLease.guard(Loader.readCheckpoint(store, config, manifest))
    // The checkpoint's own part and segment sizes, whatever the configuration says.
    const partsConfig: StorageConfigValue = {
      ...config,
      partSizeBytes: manifest.partSizeBytes,
      walSegmentBytes: manifest.walSegmentBytes,
      checkpointIntervalMs: 0
    }
    const parts = yield* partsOver(partsConfig, store)
    const entries: Array<PartTable.InstallEntry> = []
    let partBytes = 0
    for (const [file, fileParts] of loaded.files) {
      for (const [part, partCheckpoint, sha256, sizeBytes] of fileParts.parts) {
        entries.push({ file, part, remote: { checkpoint: partCheckpoint, sha256, sizeBytes } })
        partBytes += sizeBytes
      }
    }
    yield* parts.install(entries, CheckpointNumber.make(manifest.checkpoint + 1), { trustLocal: false })
    // A part loaded after the lease was lost may be gone or half-collected: every use checks it.
    const checked = <A, E2, R>(effect: Effect.Effect<A, E2, R>) =>
      readerLease.check.pipe(Effect.zipRight(effect), Effect.zipLeft(readerLease.check))
    const data: RestoredData = {
      read: (file, offset, length) => checked(parts.read(file, offset, length)),
      write: (file, offset, bytes) => checked(parts.write(file, offset, bytes)),
      lease: (file, part) => checked(parts.lease(file, part))
    }
    const apply = options.replay
    const replayed = stop === undefined || apply === undefined
      ? { toLsn: manifest.walPosition, records: 0, recordBytes: 0, segments: 0 }
      : yield* readerLease.guard(
        replayWal(
          store,
          config,
          manifest.walSegmentBytes,
          manifest.walPosition,
          stop,
          (record) => apply({ lsn: Lsn.make(record.lsn), bytes: record.payload }, data)
        )
      )
    const summary: RestoreSummary = {
      target: describeTarget(target),
      checkpoint: manifest.checkpoint,
      checkpointCreatedAtMs: manifest.createdAtMs,
      walFromLsn: manifest.walPosition,
      walToLsn: replayed.toLsn,
      records: replayed.records,
      recordBytes: replayed.recordBytes,
      segments: replayed.segments,
      files: loaded.files.size,
      parts: entries.length,
      partBytes,
      leaseId: readerLease.id
    }
    return {
      ...data,
      summary,
      readerLease,
      prefetch: (concurrency, onProgress) => readerLease.guard(prefetchAll(parts, entries, concurrency, onProgress)),
      sync: syncLoaded(parts, disk)
    } satisfies Restored
  })

const prefetchAll = (
  parts: PartTable.PartTableService,
  entries: ReadonlyArray<PartTable.InstallEntry>,
  concurrency: number,
  onProgress?: (done: number, total: number) => Effect.Effect<void>
) => {
  let done = 0
  return Effect.forEach(
    entries,
    (entry) =>
      Effect.scoped(parts.lease(entry.file, entry.part)).pipe(
        Effect.zipRight(Effect.sync(() => ++done)),
        Effect.flatMap((count) => (onProgress === undefined ? Effect.void : onProgress(count, entries.length)))
      ),
    { concurrency: Math.max(1, concurrency), discard: true }
  ).pipe(Effect.as(entries.length))
}

const syncLoaded = (parts: PartTable.PartTableService, disk: LocalDisk["Type"]): Effect.Effect<number, LocalIoError> =>
  Effect.gen(function*() {
    const loaded = (yield* parts.states).filter(([, , state]) => state.status === "Loaded")
    yield* Effect.forEach(loaded, ([file, part]) => disk.sync(PartPath.partPath(file, part)), {
      concurrency: 8,
      discard: true
    })
    return loaded.length
  })

/**
 * A whole restore into the LocalDisk: open, load every part, replay, fsync, close (the lease is
 * deleted). Returns what it restored.
 */
export const restore = <E = never>(
  options: RestoreOptions<E> & {
    readonly concurrency?: number
    readonly onProgress?: (done: number, total: number) => Effect.Effect<void>
  } = {}
): Effect.Effect<RestoreSummary, RestoreError | E, StorageConfig | ObjectStore | LocalDisk> =>
  Effect.scoped(
    Effect.gen(function*() {
      const restored = yield* open(options)
      yield* restored.prefetch(options.concurrency ?? 8, options.onProgress)
      yield* restored.sync
      yield* restored.readerLease.check
      return restored.summary
    })
  )
