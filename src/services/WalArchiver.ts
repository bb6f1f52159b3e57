/**
 * WalArchiver: the application's write-ahead log, durable locally by group commit and archived to
 * the bucket segment by segment.
 *
 * - `append(record)` gives the record its LSN (its start; `appendWithEnd` also gives its end). The
 *   record is framed (src/domain/Wal.ts) and kept in memory until the next flush.
 * - `commit` waits until an fsync that covers everything appended so far has completed. One flusher
 *   fiber writes and fsyncs at a time; a flush covers everything appended before it started, and the
 *   committers that arrive while it runs are served by the next one, so many concurrent committers
 *   share one fsync (group commit). A failed flush fails its committers and keeps its frames for the
 *   next flush (rewriting them is idempotent).
 * - Segments: local files `wal/<16 hex>` of `walSegmentBytes`. When a segment is full and durable, a
 *   `WriteWalSegment` task uploads it to `<prefix>/wal/<16 hex>-<epoch>` (the writer's epoch, from
 *   WalStartup: no epoch overwrites another's copy). `archivePartial` uploads the
 *   current segment's durable prefix under the same key; a later upload of the full segment
 *   overwrites it, which is safe because the partial copy is a prefix of the full one, and at most
 *   one upload of a segment is in flight at a time, so a partial PUT never lands after a full one.
 * - `archivedThrough` advances only over a contiguous prefix of archived segments, whatever order the
 *   uploads finish in (WalArchive.markArchived). A failed upload is retried on the next flush or
 *   `archivePending`, never skipped.
 * - `checkpointCovered(lsn)`: a completed checkpoint covers every record below `lsn`; a local segment
 *   is removed once it is both archived and entirely below the latest such position.
 * - Open: local segments are scanned in order and the log continues after the last valid frame. A
 *   torn tail (nothing valid after the bad frame, and past the durable end recorded at the last clean
 *   stop or checkpoint, or in the unsynced mark `durableMarkPath` rewritten after each flush) is cut off; other damage is repaired from the bucket's copy or refused (WalCorrupt). When the bucket is ahead of the local
 *   directory (a restore on a new machine), the local WAL is dropped and the log continues from the
 *   bucket's end, its last segment copied locally so that its later full upload keeps its records.
 *   The bucket is read as the history of this epoch (Wal.archivedLineage); a new epoch first uploads
 *   the segment where its history begins, so a stale writer's later copies never enter it.
 * - `replay(from, apply)`: every record at or after `from`, from local segments where present and
 *   from the bucket otherwise, from the segment holding `from` through the last one; `replayArchived`
 *   reads the bucket only (a restore), `replayLocal` the local directory only. While start-up replay
 *   runs (from the open, when the Storage layer gives `WalStartup`, until `replay` or `advanceTo`
 *   ends), `position` is the end of the last record applied, not the log's end: a checkpoint taken
 *   meanwhile covers only applied records, so it never lets unreplayed segments be removed.
 * - `shutdown(deadlineMs)`: refuses appends, flushes, archives the final partial segment and every
 *   pending one, waits for them within the deadline, and reports what is only local.
 *
 * Parts (src/internal/wal/): groupCommit (append, flush, commit), archiver (the upload fiber over the
 * pure bookkeeping of src/domain/WalArchive.ts), recovery (the open), replay, shutdown, segments (the
 * one listing of the local directory and of the bucket's copies).
 *
 * Replaces: OrioleDB's WAL archiving (src/s3/archive.c: `archive_preload_file_cb` enqueued a PUT of a
 * finished segment and `archive_file_cb` waited for it with no timeout and always returned true), the
 * busy-wait WAL switch after a checkpoint (`o_after_checkpoint_cleanup_hook`, 100 ms `pg_usleep` with
 * no interrupt check, docs/ORIGINAL.md §5), and the loader's WAL range that missed the last segment.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Option, Ref, type Scope, Stream } from "effect"
import type {
  CorruptObject,
  Fenced,
  LocalIoError,
  ObjectStoreError,
  ShuttingDown,
  WalArchiveTimeout,
  WalCorrupt,
  WalGap,
  WalRecordTooLarge
} from "../domain/Errors.js"
import { epoch as toEpoch, type Lsn, lsn as toLsn, segmentNumber } from "../domain/Ids.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import * as Archiver from "../internal/wal/archiver.js"
import * as Counters from "../internal/wal/counters.js"
import * as GroupCommit from "../internal/wal/groupCommit.js"
import { recoverAtOpen } from "../internal/wal/recovery.js"
import * as Replay from "../internal/wal/replay.js"
import * as Shutdown from "../internal/wal/shutdown.js"
import { LocalDisk } from "./LocalDisk.js"
import { ObjectStore } from "./ObjectStore.js"
import { keyLayout, StorageConfig } from "./StorageConfig.js"
import { TaskQueue } from "./TaskQueue.js"
import { WaitRegistry } from "./WaitRegistry.js"
import { WalFence } from "./WalFence.js"
import { WalStartup } from "./WalStartup.js"

export { type Archive, durableMarkPath, listArchived, localSegmentPath } from "../internal/wal/segments.js"
export { WalFence } from "./WalFence.js"
export { WalStartup } from "./WalStartup.js"

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/** Why an append fails. */
export type AppendError = WalRecordTooLarge | ShuttingDown | LocalIoError
/** Why a commit fails: the flush that was to cover it failed. */
export type CommitError = LocalIoError | ShuttingDown
/** Why reading the log back fails (`replay` may also pad the log: ShuttingDown). */
export type ReplayError = WalGap | CorruptObject | LocalIoError | ObjectStoreError | ShuttingDown
/** Why opening the log fails. WalCorrupt: the local log is damaged in its middle and the bucket
 * cannot repair it; Fenced: a newer epoch took over before this one recorded where it starts. */
export type OpenError = WalGap | WalCorrupt | CorruptObject | LocalIoError | ObjectStoreError | Fenced

/** Counters for reports and the CLI: what the log has done since it opened, and its positions.
 * @category models */
export interface WalStats extends Counters.WalCounters {
  readonly endLsn: Lsn
  readonly durableLsn: Lsn
  readonly archivedThrough: Lsn
  readonly coveredLsn: Lsn
}

/** What `shutdown` achieved. Every record below `archivedThrough` is in the bucket; those in
 * `localOnly` ([fromLsn, toLsn)) are not, and are on the local disk only if below `durableLsn`. */
export interface WalShutdownReport {
  readonly archivedThrough: number
  readonly durableLsn: number
  readonly endLsn: number
  readonly localOnly: { readonly fromLsn: number; readonly toLsn: number } | undefined
}

/** What a replay went through. */
export interface ReplaySummary {
  readonly fromLsn: number
  /** The position after the last frame read. */
  readonly endLsn: number
  readonly records: number
  readonly segments: number
}

/** Applies one record during replay: its LSN (start) and payload. */
export type ApplyRecord<E, R> = (lsn: Lsn, bytes: Uint8Array) => Effect.Effect<void, E, R>

/** The operations of the write-ahead log. @category models */
export interface WalArchiverService {
  /** Appends a record; its LSN. Not durable until a commit covers it. Fails with WalRecordTooLarge
   * (larger than a segment can hold), ShuttingDown (after `shutdown` began), or, when more than two
   * segments wait for a flush, with the error of the flush it then waits for (and then the record
   * was not appended). */
  readonly append: (record: Uint8Array) => Effect.Effect<Lsn, AppendError>
  /** `append`, also giving the record's end: `commitThrough(endLsn)` makes exactly it durable. */
  readonly appendWithEnd: (
    record: Uint8Array
  ) => Effect.Effect<{ readonly lsn: Lsn; readonly endLsn: Lsn }, AppendError>
  /** Makes everything appended so far durable locally (group commit). Interruptible. */
  readonly commit: Effect.Effect<void, CommitError>
  /** Makes everything below `lsn` durable locally (a record is covered by its end LSN). */
  readonly commitThrough: (lsn: Lsn) => Effect.Effect<void, CommitError>
  /** Every record below it is applied: the checkpointer records it as `walPosition`. The end of the
   * log, except during start-up replay (from the WalStartup's position, or while `replay` runs),
   * where it is the end of the last record replay has applied, so a checkpoint taken then never
   * covers a record that is not applied yet. */
  readonly position: Effect.Effect<Lsn>
  /** Everything below it is written and fsynced locally. */
  readonly durableLsn: Effect.Effect<Lsn>
  /** Everything below it is in the bucket. */
  readonly archivedThrough: Effect.Effect<Lsn>
  /** `archivedThrough` and its changes (the current value first). */
  readonly archivedChanges: Stream.Stream<Lsn>
  /** Waits until every record below `lsn` is archived; WalArchiveTimeout after `timeoutMs`;
   * ShuttingDown as soon as the archive closes (`shutdown` ended, or the layer's scope closed)
   * short of it, since nothing more is archived then. */
  readonly awaitArchived: (lsn: Lsn, timeoutMs: number) => Effect.Effect<void, WalArchiveTimeout | ShuttingDown>
  /** Flushes, then asks for the current segment's durable prefix to be uploaded (and every pending
   * segment); returns the LSN that `awaitArchived` must reach for it. */
  readonly archivePartial: Effect.Effect<Lsn, CommitError>
  /** Re-enqueues every segment whose upload failed or is still to do. */
  readonly archivePending: Effect.Effect<void>
  /** A completed checkpoint covers every record below `lsn`: archived segments below it may go. */
  readonly checkpointCovered: (lsn: Lsn) => Effect.Effect<void>
  /** Pads the log so that the next record goes at or after `lsn` (a restored log must not reuse the
   * positions after a checkpoint's `walPosition` that its archive does not reach). */
  readonly advanceTo: (lsn: Lsn) => Effect.Effect<void, CommitError>
  /** Every record at or after `fromLsn`, local segments first, the bucket for the rest, through the
   * last segment; then `advanceTo(fromLsn)`. For start-up. */
  readonly replay: <E, R>(fromLsn: Lsn, apply: ApplyRecord<E, R>) => Effect.Effect<ReplaySummary, E | ReplayError, R>
  /** Every record at or after `fromLsn` in the bucket's archived segments, through the last one. */
  readonly replayArchived: <E, R>(
    fromLsn: Lsn,
    apply: ApplyRecord<E, R>
  ) => Effect.Effect<ReplaySummary, E | ReplayError, R>
  /** Every record at or after `fromLsn` in the local segments. */
  readonly replayLocal: <E, R>(
    fromLsn: Lsn,
    apply: ApplyRecord<E, R>
  ) => Effect.Effect<ReplaySummary, E | ReplayError, R>
  /** Stops appends, flushes, archives the final partial segment and waits for every pending upload,
   * all within `deadlineMs`; runs once (later calls return the first report). When it ends, however
   * it ends, the archive is closed: no upload starts any more, and the waits of `awaitArchived` and
   * of commits still short of their position fail with ShuttingDown. */
  readonly shutdown: (deadlineMs: number) => Effect.Effect<WalShutdownReport>
  readonly stats: Effect.Effect<WalStats>
}

/** The write-ahead log. @category tags */
export class WalArchiver extends Context.Tag("effect-s3-tier/WalArchiver")<WalArchiver, WalArchiverService>() {}

// ---------------------------------------------------------------------------------------------
// The service: recovery at open, then the group commit, the archiver, replay and shutdown wired
// over one log (src/internal/wal/).
// ---------------------------------------------------------------------------------------------

/** Builds the log over its directory and bucket; its fibers live in the given scope. @category constructors */
export const make: Effect.Effect<
  WalArchiverService,
  OpenError,
  StorageConfig | LocalDisk | TaskQueue | ObjectStore | WaitRegistry | Scope.Scope
> = Effect.gen(function*() {
  const config = yield* StorageConfig
  const disk = yield* LocalDisk
  const queue = yield* TaskQueue
  const store = yield* ObjectStore
  const waits = yield* WaitRegistry
  const fence = Option.getOrUndefined(Option.map(yield* Effect.serviceOption(WalFence), (value) => value.check))
  const startup = Option.getOrUndefined(yield* Effect.serviceOption(WalStartup))
  const epoch = startup?.epoch ?? 0
  const layout = keyLayout(config)
  const bucketKey = (segment: number) => KeyLayout.walKey(layout, segmentNumber(segment), toEpoch(epoch))
  const recovered = yield* recoverAtOpen({
    disk,
    store,
    config,
    epoch,
    bucketKey,
    fence,
    replayFromLsn: startup?.replayFromLsn ?? 0,
    durableAtCleanStop: startup?.durableLsn ?? 0
  })
  const counters = yield* Counters.make(recovered.local.length)
  const archiver = yield* Archiver.make({ config, disk, store, queue, waits, counters, fence, bucketKey }, recovered)
  const log = yield* GroupCommit.make(
    { config, disk, waits, counters, onDurable: Archiver.onFlushed(archiver) },
    recovered.endLsn
  )
  const durableLsn = Effect.map(Ref.get(log.state), (state) => state.durableLsn)
  yield* Archiver.start(archiver, durableLsn)
  yield* Effect.addFinalizer(() => Shutdown.closeAll(log, archiver))
  // While start-up replay runs: the end of the last record it applied (Replay.Replayed).
  const replayed: Replay.Replayed = yield* Ref.make<number | undefined>(startup?.replayFromLsn)
  const sources: Replay.Sources = { config, disk, store, epoch }
  const commit = GroupCommit.commit(log)
  return WalArchiver.of({
    append: (record) => Effect.map(GroupCommit.appendWithEnd(log, record), (appended) => appended.lsn),
    appendWithEnd: (record) => GroupCommit.appendWithEnd(log, record),
    commit,
    commitThrough: (lsn) => GroupCommit.commitThrough(log, lsn),
    position: Effect.map(
      Effect.zip(Ref.get(log.state), Ref.get(replayed)),
      ([state, replayedLsn]) => toLsn(replayedLsn ?? state.endLsn)
    ),
    durableLsn: Effect.map(durableLsn, toLsn),
    archivedThrough: Effect.map(Archiver.archivedThrough(archiver), toLsn),
    archivedChanges: Stream.changes(Stream.map(archiver.archived.changes, (view) => toLsn(view.through))),
    awaitArchived: (lsn, timeoutMs) => Archiver.awaitArchived(archiver, lsn, timeoutMs),
    archivePartial: Effect.gen(function*() {
      yield* commit
      const durable = yield* durableLsn
      yield* Archiver.archivePartial(archiver, durable)
      return toLsn(durable)
    }),
    archivePending: Archiver.archivePending(archiver),
    checkpointCovered: (lsn) => Archiver.checkpointCovered(archiver, lsn),
    // Start-up is over once the log's end is past `lsn`: everything below it is applied (or was never the parts' to have).
    advanceTo: (lsn) => Effect.zipRight(GroupCommit.advanceTo(log, lsn), Ref.set(replayed, undefined)),
    replay: (fromLsn, apply) => Replay.replay(sources, log, replayed, fromLsn, apply),
    replayArchived: (fromLsn, apply) => Replay.replayArchived(sources, fromLsn, apply),
    replayLocal: (fromLsn, apply) => Replay.replayLocal(sources, fromLsn, apply),
    shutdown: yield* Shutdown.make(log, archiver),
    stats: statsOf(log, archiver)
  })
})

const statsOf = (log: GroupCommit.Log, archiver: Archiver.Archiver): Effect.Effect<WalStats> =>
  Effect.gen(function*() {
    const state = yield* Ref.get(log.state)
    return {
      ...(yield* Ref.get(log.counters)),
      endLsn: toLsn(state.endLsn),
      durableLsn: toLsn(state.durableLsn),
      archivedThrough: toLsn(yield* Archiver.archivedThrough(archiver)),
      coveredLsn: toLsn((yield* Ref.get(archiver.state)).coveredLsn)
    }
  })

/** The write-ahead log as a layer; closing its scope stops its fibers (call `shutdown` first to
 * archive what is local). @category layers */
export const layer: Layer.Layer<
  WalArchiver,
  OpenError,
  StorageConfig | LocalDisk | TaskQueue | ObjectStore | WaitRegistry
> = Layer.scoped(WalArchiver, make)
