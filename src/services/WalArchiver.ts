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
 *   uploads finish in (Wal.markArchived). A failed upload is retried on the next flush or
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
 * Replaces: OrioleDB's WAL archiving (src/s3/archive.c: `archive_preload_file_cb` enqueued a PUT of a
 * finished segment and `archive_file_cb` waited for it with no timeout and always returned true), the
 * busy-wait WAL switch after a checkpoint (`o_after_checkpoint_cleanup_hook`, 100 ms `pg_usleep` with
 * no interrupt check, orioledb-s3.md §5), and the loader's WAL range that missed the last segment.
 *
 * @since 0.1.0
 */
import {
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  FiberSet,
  Layer,
  List,
  Option,
  Queue,
  Ref,
  type Scope,
  Stream,
  SubscriptionRef
} from "effect"
import {
  CorruptObject,
  type Fenced,
  LocalIoError,
  type ObjectStoreError,
  ShuttingDown,
  WalArchiveTimeout,
  WalCorrupt,
  WalGap,
  WalRecordTooLarge
} from "../domain/Errors.js"
import { epoch as toEpoch, type Lsn, lsn as toLsn, segmentNumber } from "../domain/Ids.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import { WriteWalSegment } from "../domain/Task.js"
import * as Wal from "../domain/Wal.js"
import { LocalDisk, type LocalDiskService } from "./LocalDisk.js"
import { ObjectStore, type ObjectStoreService } from "./ObjectStore.js"
import { withRequestPolicy } from "./RequestPolicy.js"
import { keyLayout, StorageConfig, type StorageConfigValue } from "./StorageConfig.js"
import { TaskQueue } from "./TaskQueue.js"
import { WaitRegistry } from "./WaitRegistry.js"

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

/** Counters for reports and the CLI. @category models */
export interface WalStats {
  readonly appendedRecords: number
  /** Payload bytes appended (frames add `Wal.headerBytes` each). */
  readonly appendedBytes: number
  readonly commits: number
  /** Group-commit cycles that wrote and synced (each one at least one fsync). */
  readonly flushes: number
  /** `LocalDisk.sync` calls made by the log. */
  readonly fsyncs: number
  readonly flushFailures: number
  /** Successful uploads of segments, full or partial. */
  readonly segmentsArchived: number
  /** Bytes those uploads sent. */
  readonly archivedBytes: number
  readonly uploadFailures: number
  readonly segmentsRemoved: number
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
  readonly appendWithEnd: (record: Uint8Array) => Effect.Effect<{ readonly lsn: Lsn; readonly endLsn: Lsn }, AppendError>
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
  readonly replayArchived: <E, R>(fromLsn: Lsn, apply: ApplyRecord<E, R>) => Effect.Effect<ReplaySummary, E | ReplayError, R>
  /** Every record at or after `fromLsn` in the local segments. */
  readonly replayLocal: <E, R>(fromLsn: Lsn, apply: ApplyRecord<E, R>) => Effect.Effect<ReplaySummary, E | ReplayError, R>
  /** Stops appends, flushes, archives the final partial segment and waits for every pending upload,
   * all within `deadlineMs`; runs once (later calls return the first report). When it ends, however
   * it ends, the archive is closed: no upload starts any more, and the waits of `awaitArchived` and
   * of commits still short of their position fail with ShuttingDown. */
  readonly shutdown: (deadlineMs: number) => Effect.Effect<WalShutdownReport>
  readonly stats: Effect.Effect<WalStats>
}

/** The write-ahead log. @category tags */
export class WalArchiver extends Context.Tag("effect-s3-tier/WalArchiver")<WalArchiver, WalArchiverService>() {}

/**
 * Optional: checked before every segment upload, so a superseded (fenced) instance that is still
 * running stops archiving (its copies, keyed by its own epoch, could not replace the new writer's
 * anyway). The Storage layer provides it from the bucket lock. @category tags
 */
export class WalFence extends Context.Tag("effect-s3-tier/WalFence")<WalFence, { readonly check: Effect.Effect<void, Fenced> }>() {}

/**
 * Optional: what start-up decided, for the log. The Storage layer provides it from the Loader.
 * `epoch` is the writer's fencing epoch, put into every archived segment's key.
 * `replayFromLsn` is the position start-up replay begins at (the base checkpoint's WAL position):
 * until `replay` or `advanceTo` ends start-up, `position` does not pass what replay has applied.
 * @category tags
 */
export class WalStartup extends Context.Tag("effect-s3-tier/WalStartup")<
  WalStartup,
  {
    readonly replayFromLsn: Lsn
    /** The writer's epoch (the bucket lock's): in every archived key; restore reads the history of it. */
    readonly epoch: number
    /** Everything below it was durable in the local log at the last clean stop (Control.walDurableLsn):
     * damage below it is never a torn tail, it is repaired from the bucket or refused (WalCorrupt). */
    readonly durableLsn?: Lsn
  }
>() {}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

type FlushDone = Deferred.Deferred<void, CommitError>

/** The log's end, what waits for a flush, and who is being served. */
interface LogState {
  readonly endLsn: number
  /** Frames appended and not yet written, newest first (a prepend is O(1)). */
  readonly pendingNewestFirst: List.List<Wal.FrameWrite>
  readonly pendingBytes: number
  readonly durableLsn: number
  /** The flush running now and what it covers. */
  readonly running: { readonly endLsn: number; readonly done: FlushDone } | undefined
  /** The flush that will run next: every committer not covered by `running` waits on it. */
  readonly next: FlushDone
  readonly closing: boolean
  /** Records were appended since the last time mark. */
  readonly unmarked: boolean
  /** When the last time mark was written (or the log opened). */
  readonly lastMarkMs: number
}

/** What `awaitArchived` watches: the archived prefix, and whether the archive is closed (nothing
 * more is archived: a waiter still short of its position is told at once). */
interface ArchivedView {
  readonly through: number
  readonly closed: boolean
}

/** One upload of a segment, full or partial, and the LSN its copy reaches. */
interface Upload {
  readonly segment: number
  readonly partial: boolean
  readonly coveredLsn: number
}

/** What is archived, what is to upload, what is in flight. */
interface ArchiveState {
  readonly progress: Wal.ArchiveProgress
  /** Sealed, durable segments whose full copy is still to upload. */
  readonly pendingFull: ReadonlySet<number>
  /** Segments whose last full upload failed: retried on the next flush or `archivePending`. */
  readonly failedFull: ReadonlySet<number>
  readonly inFlight: ReadonlyMap<number, Upload>
  /** The LSN a partial upload of the current segment must reach. */
  readonly partialWantedLsn: number
  readonly partialFailed: boolean
  readonly coveredLsn: number
  /** Every local segment below this one was removed. */
  readonly localLowest: number
}

interface Counters {
  appendedRecords: number
  appendedBytes: number
  commits: number
  flushes: number
  fsyncs: number
  flushFailures: number
  segmentsArchived: number
  archivedBytes: number
  uploadFailures: number
  segmentsRemoved: number
}

/** The local file of the durable-end mark (Wal.encodeDurableMark), rewritten after every flush and
 * never synced: when it survives (a process crash keeps it, a power loss may not), no write below
 * it can have been torn, so damage below it is repaired or refused like damage recorded at a clean stop. */
export const durableMarkPath = "wal.durable"

/** The local path of a segment: the bucket's naming without the prefix. */
export const localSegmentPath = (segment: number): string => KeyLayout.walKey({ prefix: "" }, segmentNumber(segment))

const prependFrames = (newestFirst: List.List<Wal.FrameWrite>, frames: ReadonlyArray<Wal.FrameWrite>): List.List<Wal.FrameWrite> => {
  let list = newestFirst
  for (const frame of frames) list = List.prepend(list, frame)
  return list
}

/** The largest number of an iterable, or undefined when it is empty (no spread, so iterables of every size work). */
const largest = (values: Iterable<number>): number | undefined => {
  let found: number | undefined
  for (const value of values) if (found === undefined || value > found) found = value
  return found
}

const withAdded = <A>(set: ReadonlySet<A>, values: Iterable<A>): ReadonlySet<A> => {
  const next = new Set(set)
  for (const value of values) next.add(value)
  return next
}

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  if (parts.length === 1 && parts[0] !== undefined) return parts[0]
  const total = parts.reduce((sum, part) => sum + part.length, 0)
  const joined = new Uint8Array(total)
  let offset = 0
  for (const part of parts) {
    joined.set(part, offset)
    offset += part.length
  }
  return joined
}

/** Contiguous runs of frames within one segment: [segment, offset in it, bytes]. */
const runsOf = (frames: Iterable<Wal.FrameWrite>, segmentBytes: number): Array<readonly [number, number, Uint8Array]> => {
  const runs: Array<readonly [number, number, Uint8Array]> = []
  let current: { segment: number; start: number; end: number; parts: Array<Uint8Array> } | undefined
  const close = () => {
    if (current !== undefined) runs.push([current.segment, current.start % segmentBytes, concat(current.parts)])
  }
  for (const frame of frames) {
    const segment = Wal.segmentOf(frame.lsn, segmentBytes)
    if (current !== undefined && current.segment === segment && current.end === frame.lsn) {
      current.parts.push(frame.bytes)
      current.end += frame.bytes.length
    } else {
      close()
      current = { segment, start: frame.lsn, end: frame.lsn + frame.bytes.length, parts: [frame.bytes] }
    }
  }
  close()
  return runs
}

// ---------------------------------------------------------------------------------------------
// Open: recovery of the local segments, reconciliation with the bucket
// ---------------------------------------------------------------------------------------------

interface LocalSegment {
  readonly segment: number
  readonly sizeBytes: number
  readonly sealed: boolean
}

interface Recovered {
  readonly endLsn: number
  readonly local: ReadonlyArray<LocalSegment>
  readonly progress: Wal.ArchiveProgress
  readonly pendingFull: ReadonlyArray<number>
  readonly localLowest: number
}

/** The bucket's archived copies: the log's history as the writer of this epoch has it (one copy per
 * segment, Wal.archivedLineage), and whether any copy is this epoch's own. */
export interface Archive {
  readonly lineage: ReadonlyMap<number, Wal.ArchivedCopy>
  readonly ownCopies: boolean
}

/** Lists the archived WAL: the lineage as a writer of `epoch` sees it (Number.MAX_SAFE_INTEGER: the
 * newest epoch's, as a restore reads it). */
export const listArchived = (store: ObjectStoreService, config: StorageConfigValue, epoch: number): Effect.Effect<Archive, ObjectStoreError> => {
  const layout = keyLayout(config)
  const prefix = KeyLayout.walPrefix(layout)
  return Stream.runCollect(store.list(prefix)).pipe(
    withRequestPolicy(config, "list", prefix),
    Effect.map((infos) => {
      const copies: Array<Wal.ArchivedCopy> = []
      for (const info of infos) {
        const key = KeyLayout.parseKey(layout, info.key)
        if (Option.isSome(key) && key.value._tag === "Wal") {
          copies.push({ segment: key.value.segment, epoch: key.value.epoch ?? Wal.epochUnknown, key: info.key, sizeBytes: info.sizeBytes })
        }
      }
      return { lineage: Wal.archivedLineage(copies, epoch), ownCopies: copies.some((copy) => copy.epoch === epoch) }
    })
  )
}

const readLocalBytes = (disk: LocalDiskService, segment: number) =>
  Effect.map(disk.readAll(localSegmentPath(segment)), Option.getOrElse(() => new Uint8Array(0)))

/**
 * Damage in segment `segment` (a bad frame, or a clean end while later segments exist) is in the
 * middle of the log when a valid frame follows it: later in the segment, or in a later segment.
 * Otherwise it is a torn tail: a crash cut the last write, and nothing after it was ever durable.
 */
const isMidLog = (disk: LocalDiskService, scan: Wal.SegmentScan, bytes: Uint8Array, later: ReadonlyArray<number>, segmentBytes: number) =>
  Effect.gen(function* () {
    const validInSegment = scan.stop === "Invalid" && Wal.validFrameAfter(bytes, scan.segment, segmentBytes, scan.validBytes + 1) !== undefined
    let validLater = false
    for (const segment of later) {
      if (validLater) break
      validLater = Wal.validFrameAfter(yield* readLocalBytes(disk, segment), segment, segmentBytes, 0) !== undefined
    }
    const midLog = validInSegment || validLater
    return midLog
  })

/** The local segment mended with the bucket's copy, when that copy is intact and reaches past the
 * damage (an archived copy is a prefix of the segment as its writer had it); else undefined. */
const repairFromBucket = (store: ObjectStoreService, config: StorageConfigValue, copy: Wal.ArchivedCopy | undefined, scan: Wal.SegmentScan, bytes: Uint8Array) =>
  Effect.gen(function* () {
    if (copy === undefined) return undefined
    const archived = yield* store.get(copy.key).pipe(withRequestPolicy(config, "get", copy.key))
    const archivedScan = Wal.scanSegment(archived, scan.segment, config.walSegmentBytes)
    if (archivedScan.stop === "Invalid" || (archivedScan.stop === "End" && archivedScan.validBytes <= scan.validBytes)) return undefined
    if (archivedScan.stop === "Sealed") return archived
    const repaired = new Uint8Array(Math.max(bytes.length, archivedScan.validBytes))
    repaired.set(bytes)
    repaired.set(archived.subarray(0, archivedScan.validBytes))
    return repaired
  })

/** One local segment checked: its bytes (repaired or cut if damaged) and scan. Fails with WalCorrupt
 * for damage that the bucket's copy cannot repair in the middle of the log or below `durableLsn`
 * (the log's durable end at the last clean stop: no crash can have torn a write below it). */
const examineSegment = (
  disk: LocalDiskService,
  store: ObjectStoreService,
  config: StorageConfigValue,
  archive: Archive,
  segment: number,
  later: ReadonlyArray<number>,
  durableLsn: number
) =>
  Effect.gen(function* () {
    const segmentBytes = config.walSegmentBytes
    const path = localSegmentPath(segment)
    let bytes = yield* readLocalBytes(disk, segment)
    let scan = Wal.scanSegment(bytes, segment, segmentBytes)
    const belowDurable = () => Wal.segmentStart(segment, segmentBytes) + scan.validBytes < durableLsn
    const damaged = () => scan.stop === "Invalid" || (scan.stop === "End" && (later.length > 0 || belowDurable()))
    const mustHold = () => (belowDurable() ? Effect.succeed(true) : isMidLog(disk, scan, bytes, later, segmentBytes))
    if (damaged() && (yield* mustHold())) {
      const damageLsn = Wal.segmentStart(segment, segmentBytes) + scan.validBytes
      const ending = later.length > 0 ? `the segment ends at offset ${scan.validBytes} and segment ${later[0]} follows` : `the segment ends at offset ${scan.validBytes}`
      const problem = `${scan.problem ?? ending}${belowDurable() ? `, below the log's recorded durable end ${durableLsn}` : ""}`
      const repaired = yield* repairFromBucket(store, config, archive.lineage.get(segment), scan, bytes)
      if (repaired === undefined) {
        return yield* new WalCorrupt({ segment, lsn: damageLsn, detail: `${problem}; the bucket has no intact copy of the segment that reaches past it` })
      }
      yield* Effect.logWarning(`WAL: segment ${segment} was damaged at position ${damageLsn} (${problem}); repaired from the bucket's copy`)
      yield* disk.writeAtomic(path, repaired)
      bytes = repaired
      scan = Wal.scanSegment(bytes, segment, segmentBytes)
      if (damaged() && (yield* mustHold())) {
        const at = Wal.segmentStart(segment, segmentBytes) + scan.validBytes
        return yield* new WalCorrupt({ segment, lsn: at, detail: `${scan.problem ?? "an early end"}, past the bucket's copy` })
      }
    }
    if (scan.stop === "Invalid") {
      yield* Effect.logWarning(`WAL: segment ${segment} is cut at byte ${scan.validBytes} (a torn tail: nothing valid follows): ${scan.problem ?? "invalid frame"}`)
      bytes = bytes.slice(0, scan.validBytes)
      yield* disk.writeAtomic(path, bytes)
    }
    return { bytes, scan }
  })

/** Scans the local segments in order: repairs or refuses damage in the middle (examineSegment),
 * cuts a torn tail and removes what follows it (which holds nothing valid). */
const scanLocal = (disk: LocalDiskService, store: ObjectStoreService, config: StorageConfigValue, archive: Archive, durableLsn: number) =>
  Effect.gen(function* () {
    const segmentBytes = config.walSegmentBytes
    const segments: Array<number> = []
    for (const path of yield* disk.list("wal")) {
      const key = KeyLayout.parseKey({ prefix: "" }, path)
      if (Option.isSome(key) && key.value._tag === "Wal" && key.value.epoch === undefined) segments.push(key.value.segment)
      else yield* Effect.logWarning(`WAL: ignoring a foreign file in the local wal directory: ${path}`)
    }
    segments.sort((left, right) => left - right)
    const found: Array<LocalSegment> = []
    for (let index = 0; index < segments.length; index++) {
      const segment = segments[index] ?? 0
      const previous = found[found.length - 1]
      if (previous !== undefined && previous.segment + 1 !== segment) {
        return yield* new WalGap({
          fromLsn: Wal.segmentEnd(previous.segment, segmentBytes),
          toLsn: Wal.segmentStart(segment, segmentBytes),
          detail: `the local wal directory lacks the segments between ${previous.segment} and ${segment}`
        })
      }
      const later = segments.slice(index + 1)
      const { bytes, scan } = yield* examineSegment(disk, store, config, archive, segment, later, durableLsn)
      found.push({ segment, sizeBytes: bytes.length, sealed: scan.stop === "Sealed" })
      if (scan.stop !== "Sealed") {
        for (const after of later) {
          yield* Effect.logWarning(`WAL: removing segment ${after}, which follows the end of the valid log and holds no valid frame`)
          yield* disk.remove(localSegmentPath(after))
        }
        break
      }
    }
    return found
  })

/** The bucket is ahead of the local directory: continue from the bucket's end. */
const adoptBucket = (
  disk: LocalDiskService,
  store: ObjectStoreService,
  config: StorageConfigValue,
  local: ReadonlyArray<LocalSegment>,
  last: Wal.ArchivedCopy
) =>
  Effect.gen(function* () {
    const segmentBytes = config.walSegmentBytes
    yield* Effect.logWarning(`WAL: the bucket's log (through segment ${last.segment}) is ahead of the local one: continuing from the bucket's end`)
    for (const segment of local) yield* disk.remove(localSegmentPath(segment.segment))
    const bytes = yield* store.get(last.key).pipe(withRequestPolicy(config, "get", last.key))
    const scan = Wal.scanSegment(bytes, last.segment, segmentBytes)
    if (scan.stop === "Invalid") return yield* new CorruptObject({ key: last.key, detail: scan.problem ?? "an invalid frame" })
    const kept = bytes.slice(0, scan.stop === "Sealed" ? bytes.length : scan.validBytes)
    yield* disk.writeAtomic(localSegmentPath(last.segment), kept)
    const endLsn = Wal.scanEndLsn(scan, segmentBytes)
    return {
      endLsn,
      local: [{ segment: last.segment, sizeBytes: kept.length, sealed: scan.stop === "Sealed" }],
      progress: Wal.initialProgress(endLsn),
      pendingFull: [],
      localLowest: last.segment
    } satisfies Recovered
  })

const recover = (disk: LocalDiskService, store: ObjectStoreService, config: StorageConfigValue, archive: Archive, durableLsn: number) =>
  Effect.gen(function* () {
    const segmentBytes = config.walSegmentBytes
    const local = yield* scanLocal(disk, store, config, archive, durableLsn)
    const archived = archive.lineage
    const bucketLast = largest(archived.keys())
    const lastCopy = bucketLast === undefined ? undefined : archived.get(bucketLast)
    const localLast = local[local.length - 1]
    const behind =
      lastCopy !== undefined &&
      (localLast === undefined ||
        localLast.segment < lastCopy.segment ||
        (localLast.segment === lastCopy.segment && !localLast.sealed && localLast.sizeBytes < lastCopy.sizeBytes))
    if (behind && lastCopy !== undefined) return yield* adoptBucket(disk, store, config, local, lastCopy)
    // Local segments below the lowest present one were removed, which they are only once archived.
    const first = local[0]
    let progress = Wal.initialProgress(first === undefined ? 0 : Wal.segmentStart(first.segment, segmentBytes))
    const pendingFull: Array<number> = []
    for (const segment of local) {
      const bucketBytes = archived.get(segment.segment)?.sizeBytes
      if (segment.sealed && bucketBytes === segment.sizeBytes) {
        progress = Wal.markArchived(progress, segment.segment, Wal.segmentEnd(segment.segment, segmentBytes), segmentBytes)
        continue
      }
      if (bucketBytes !== undefined && bucketBytes < segment.sizeBytes) {
        progress = Wal.markArchived(progress, segment.segment, Wal.segmentStart(segment.segment, segmentBytes) + bucketBytes, segmentBytes)
      }
      if (segment.sealed) pendingFull.push(segment.segment)
    }
    // A new epoch archives its own copy of every sealed segment past the contiguous archive, so its
    // history has no older epoch's copy after one of its own (Wal.archivedLineage).
    if (!archive.ownCopies) {
      for (const segment of local) {
        if (segment.sealed && Wal.segmentEnd(segment.segment, segmentBytes) > progress.through && !pendingFull.includes(segment.segment)) {
          pendingFull.push(segment.segment)
        }
      }
    }
    for (const segment of local) yield* disk.sync(localSegmentPath(segment.segment))
    const endLsn =
      localLast === undefined
        ? 0
        : localLast.sealed
          ? Wal.segmentEnd(localLast.segment, segmentBytes)
          : Wal.segmentStart(localLast.segment, segmentBytes) + localLast.sizeBytes
    if (endLsn < durableLsn) {
      const detail = `the local log ends at ${endLsn}, below its recorded durable end ${durableLsn}, and the bucket's copy does not reach past it`
      return yield* new WalCorrupt({ segment: Wal.segmentOf(endLsn, segmentBytes), lsn: endLsn, detail })
    }
    return { endLsn, local, progress, pendingFull, localLowest: first?.segment ?? Wal.segmentOf(endLsn, segmentBytes) } satisfies Recovered
  })

/**
 * A writer of a new epoch first uploads the segment where its history begins (its log's end at the
 * open, with the bytes below it: its predecessor's history as it adopted it), before any other: from
 * that segment on, a restore takes no older epoch's copy (Wal.archivedLineage), so a stale writer's
 * later uploads never enter this history. Nothing to do for an epoch with copies already, or for a
 * log that has no predecessor (empty, and nothing archived or to replay).
 */
const archiveEpochStart = (
  disk: LocalDiskService,
  store: ObjectStoreService,
  config: StorageConfigValue,
  archive: Archive,
  recovered: Recovered,
  writer: { readonly key: (segment: number) => string; readonly fence: Effect.Effect<void, Fenced> | undefined; readonly replayFromLsn: number }
): Effect.Effect<Recovered, Fenced | ObjectStoreError | LocalIoError> =>
  Effect.gen(function* () {
    const segmentBytes = config.walSegmentBytes
    if (archive.ownCopies || (archive.lineage.size === 0 && recovered.endLsn === 0 && writer.replayFromLsn === 0)) return recovered
    const segment = Wal.segmentOf(recovered.endLsn, segmentBytes)
    const bytes = (yield* readLocalBytes(disk, segment)).slice(0, recovered.endLsn - Wal.segmentStart(segment, segmentBytes))
    const key = writer.key(segment)
    if (writer.fence !== undefined) yield* writer.fence
    yield* store.put(key, bytes).pipe(withRequestPolicy(config, "put", key))
    yield* Effect.logInfo(`WAL: this epoch's history begins at position ${recovered.endLsn} (${key})`)
    return { ...recovered, progress: Wal.markArchived(recovered.progress, segment, recovered.endLsn, segmentBytes) }
  })

// ---------------------------------------------------------------------------------------------
// Reading segments back
// ---------------------------------------------------------------------------------------------

/** A segment's bytes and where they came from (a local path or a bucket key). */
interface SegmentBytes {
  readonly bytes: Uint8Array
  readonly source: "local" | "bucket"
  readonly name: string
}

/** Applies the records of consecutive segments; every segment but the last must be sealed. */
const applySegments = <E, R>(
  segmentBytes: number,
  fromLsn: number,
  segments: ReadonlyArray<number>,
  read: (segment: number) => Effect.Effect<SegmentBytes, ReplayError>,
  apply: ApplyRecord<E, R>
): Effect.Effect<ReplaySummary, E | ReplayError, R> =>
  Effect.gen(function* () {
    let records = 0
    let endLsn = fromLsn
    for (let index = 0; index < segments.length; index++) {
      const segment = segments[index] ?? 0
      const { bytes, name, source } = yield* read(segment)
      const scan = Wal.scanSegment(bytes, segment, segmentBytes)
      const isLast = index === segments.length - 1
      if (scan.stop === "Invalid" && source === "bucket") {
        return yield* new CorruptObject({ key: name, detail: scan.problem ?? "an invalid frame" })
      }
      for (const record of scan.records) {
        if (record.lsn < fromLsn) continue
        yield* apply(toLsn(record.lsn), record.payload)
        records++
      }
      endLsn = Math.max(endLsn, Wal.scanEndLsn(scan, segmentBytes))
      if (!isLast && scan.stop !== "Sealed") {
        return yield* new WalGap({
          fromLsn: Wal.scanEndLsn(scan, segmentBytes),
          toLsn: Wal.segmentStart(segment + 1, segmentBytes),
          detail: `segment ${segment} (${source} ${name}) ends before its end and segment ${segment + 1} exists`
        })
      }
    }
    return { fromLsn, endLsn, records, segments: segments.length }
  })

/** The segments from the one holding `fromLsn` through `last`, checking that none is missing. */
const rangeOf = (available: ReadonlySet<number>, fromLsn: number, last: number | undefined, segmentBytes: number) => {
  const first = Wal.segmentOf(fromLsn, segmentBytes)
  const segments: Array<number> = []
  if (last === undefined || last < first) return Either.right(segments)
  for (let segment = first; segment <= last; segment++) {
    if (!available.has(segment)) {
      return Either.left(
        new WalGap({
          fromLsn: Math.max(fromLsn, Wal.segmentStart(segment, segmentBytes)),
          toLsn: Wal.segmentEnd(segment, segmentBytes),
          detail: `segment ${segment} is missing and segment ${last} exists`
        })
      )
    }
    segments.push(segment)
  }
  return Either.right(segments)
}

// ---------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------

/** Builds the log over its directory and bucket; its fibers live in the given scope. @category constructors */
export const make: Effect.Effect<
  WalArchiverService,
  OpenError,
  StorageConfig | LocalDisk | TaskQueue | ObjectStore | WaitRegistry | Scope.Scope
> = Effect.gen(function* () {
  const config = yield* StorageConfig
  const disk = yield* LocalDisk
  const queue = yield* TaskQueue
  const store = yield* ObjectStore
  const waits = yield* WaitRegistry
  const fence = yield* Effect.serviceOption(WalFence)
  const startup = yield* Effect.serviceOption(WalStartup)
  const segmentBytes = config.walSegmentBytes
  const layout = keyLayout(config)
  const ownEpoch = Option.match(startup, { onNone: () => 0, onSome: (value) => value.epoch })
  const bucketKey = (segment: number) => KeyLayout.walKey(layout, segmentNumber(segment), toEpoch(ownEpoch))

  const archive = yield* listArchived(store, config, ownEpoch)
  const durableAtCleanStop = Option.match(startup, { onNone: () => 0, onSome: (value) => value.durableLsn ?? 0 })
  const durableMarked = Wal.decodeDurableMark(Option.getOrElse(yield* disk.readAll(durableMarkPath), () => new Uint8Array(0))) ?? 0
  const opened = yield* recover(disk, store, config, archive, Math.max(durableAtCleanStop, durableMarked))
  const recovered = yield* archiveEpochStart(disk, store, config, archive, opened, {
    key: bucketKey,
    fence: Option.getOrUndefined(Option.map(fence, (value) => value.check)),
    replayFromLsn: Option.match(startup, { onNone: () => 0, onSome: (value) => value.replayFromLsn })
  })
  const counters: Counters = {
    appendedRecords: 0,
    appendedBytes: 0,
    commits: 0,
    flushes: 0,
    fsyncs: recovered.local.length,
    flushFailures: 0,
    segmentsArchived: 0,
    archivedBytes: 0,
    uploadFailures: 0,
    segmentsRemoved: 0
  }
  const logRef = yield* Ref.make<LogState>({
    endLsn: recovered.endLsn,
    pendingNewestFirst: List.empty(),
    pendingBytes: 0,
    durableLsn: recovered.endLsn,
    running: undefined,
    next: yield* Deferred.make<void, CommitError>(),
    closing: false,
    unmarked: false,
    lastMarkMs: yield* Clock.currentTimeMillis
  })
  const archiveRef = yield* Ref.make<ArchiveState>({
    progress: recovered.progress,
    pendingFull: new Set(recovered.pendingFull),
    failedFull: new Set(),
    inFlight: new Map(),
    partialWantedLsn: 0,
    partialFailed: false,
    coveredLsn: 0,
    localLowest: recovered.localLowest
  })
  const archivedRef = yield* SubscriptionRef.make<ArchivedView>({ through: recovered.progress.through, closed: false })
  // While start-up replay runs: the end of the last record it applied (records below it are in the
  // parts). Undefined once start-up is over: then every record below the log's end is applied.
  const replayedRef = yield* Ref.make<number | undefined>(Option.getOrUndefined(Option.map(startup, (value) => value.replayFromLsn)))
  const flushWake = yield* Queue.sliding<void>(1)
  const archiveWake = yield* Queue.sliding<void>(1)
  const watchers = yield* FiberSet.make()
  const wakeFlusher = Queue.offer(flushWake, undefined)
  const wakeArchiver = Queue.offer(archiveWake, undefined)
  const count = (update: (counters: Counters) => void) => Effect.sync(() => update(counters))

  // --- group commit -------------------------------------------------------------------------

  const writeFrames = (frames: ReadonlyArray<Wal.FrameWrite>) =>
    Effect.gen(function* () {
      const runs = runsOf(frames, segmentBytes)
      for (const [segment, offset, bytes] of runs) yield* disk.write(localSegmentPath(segment), offset, bytes)
      for (const segment of new Set(runs.map(([segment]) => segment))) {
        yield* count((c) => void c.fsyncs++)
        yield* disk.sync(localSegmentPath(segment))
      }
    })

  // Sealed segments that this flush made durable are queued for upload; failed ones get retried.
  const afterFlush = (previousDurable: number, durable: number) =>
    Effect.zipRight(
      Ref.update(archiveRef, (state) => {
        const sealed: Array<number> = []
        for (let segment = Wal.segmentOf(previousDurable, segmentBytes); segment < Wal.segmentOf(durable, segmentBytes); segment++) {
          sealed.push(segment)
        }
        return {
          ...state,
          pendingFull: withAdded(withAdded(state.pendingFull, sealed), state.failedFull),
          failedFull: new Set<number>(),
          partialFailed: false
        }
      }),
      wakeArchiver
    )

  // A time mark after the records of this flush, at most once per interval (Wal.planTimeMark).
  const withTimeMark = (state: LogState, nowMs: number): LogState => {
    const intervalMs = config.walTimeMarkIntervalMs
    if (!state.unmarked || intervalMs === 0 || nowMs - state.lastMarkMs < intervalMs) return state
    const plan = Wal.planTimeMark(state.endLsn, nowMs, segmentBytes)
    return {
      ...state,
      endLsn: plan.nextEndLsn,
      pendingNewestFirst: prependFrames(state.pendingNewestFirst, plan.frames),
      pendingBytes: state.pendingBytes + plan.frames.reduce((sum, frame) => sum + frame.bytes.length, 0),
      unmarked: false,
      lastMarkMs: nowMs
    }
  }

  const flushOnce = Effect.gen(function* () {
    const fresh = yield* Deferred.make<void, CommitError>()
    const nowMs = yield* Clock.currentTimeMillis
    const taken = yield* Ref.modify(logRef, (current) => {
      const state = withTimeMark(current, nowMs)
      const running = { endLsn: state.endLsn, done: state.next }
      return [
        { framesNewestFirst: state.pendingNewestFirst, pendingBytes: state.pendingBytes, running, previousDurable: state.durableLsn },
        { ...state, pendingNewestFirst: List.empty<Wal.FrameWrite>(), pendingBytes: 0, running, next: fresh }
      ] as const
    })
    const frames = List.toArray(List.reverse(taken.framesNewestFirst))
    const exit = yield* Effect.exit(frames.length === 0 ? Effect.void : writeFrames(frames))
    if (Exit.isSuccess(exit)) {
      // After the fsync: the mark never claims a byte that is not durable (a failed write keeps the old one).
      if (frames.length > 0) {
        yield* disk.write(durableMarkPath, 0, Wal.encodeDurableMark(Math.max(taken.previousDurable, taken.running.endLsn))).pipe(Effect.ignore)
      }
      yield* Ref.update(logRef, (state) => ({ ...state, durableLsn: Math.max(state.durableLsn, taken.running.endLsn), running: undefined }))
      if (frames.length > 0) yield* count((c) => void c.flushes++)
      yield* Deferred.succeed(taken.running.done, undefined)
      if (taken.running.endLsn > taken.previousDurable) yield* afterFlush(taken.previousDurable, taken.running.endLsn)
      return
    }
    // Keep the frames for the next flush (rewriting them is idempotent) and fail this flush's waiters.
    yield* Ref.update(logRef, (state) => ({
      ...state,
      pendingNewestFirst: List.appendAll(state.pendingNewestFirst, taken.framesNewestFirst),
      pendingBytes: state.pendingBytes + taken.pendingBytes,
      running: undefined
    }))
    yield* count((c) => void c.flushFailures++)
    yield* Deferred.failCause(taken.running.done, exit.cause)
  }).pipe(Effect.uninterruptible)

  yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Queue.take(flushWake), flushOnce)))
  yield* Effect.addFinalizer(() =>
    Effect.flatMap(Ref.get(logRef), (state) => Deferred.fail(state.next, new ShuttingDown({ operation: "commit" })))
  )

  // Waits until a flush covers `target`: the running one if it does, else the next one.
  const awaitDurable = (target: number): Effect.Effect<void, CommitError> => {
    const loop: Effect.Effect<void, CommitError> = Effect.flatten(
      Ref.modify(logRef, (state): readonly [Effect.Effect<void, CommitError>, LogState] => {
        const wanted = Math.min(target, state.endLsn)
        if (state.durableLsn >= wanted) return [Effect.void, state]
        if (state.running !== undefined && state.running.endLsn >= wanted) {
          return [Effect.zipRight(Deferred.await(state.running.done), loop), state]
        }
        return [Effect.zipRight(Effect.zipRight(wakeFlusher, Deferred.await(state.next)), loop), state]
      })
    )
    return waits.track("WalArchiver.commit", `fsync through LSN ${target}`, loop)
  }
  const commitThrough = (target: Lsn): Effect.Effect<void, CommitError> =>
    Effect.zipRight(count((c) => void c.commits++), awaitDurable(target))
  const commit = Effect.flatMap(Ref.get(logRef), (state) => commitThrough(toLsn(state.endLsn)))

  // More than two segments of unflushed frames make an appender wait for a flush before it appends,
  // so memory stays bounded and a failed wait means the record was not appended.
  const backpressure = Effect.flatMap(Ref.get(logRef), (state) =>
    state.pendingBytes >= 2 * segmentBytes ? Effect.zipRight(wakeFlusher, awaitDurable(state.endLsn)) : Effect.void
  )

  const appendWithEnd = (record: Uint8Array) =>
    Effect.gen(function* () {
      yield* backpressure
      type Planned = Wal.AppendPlan & { readonly sealed: boolean; readonly pendingBytes: number }
      const planned = yield* Effect.flatten(
        Ref.modify(logRef, (state): readonly [Effect.Effect<Planned, AppendError>, LogState] => {
          if (state.closing) return [Effect.fail(new ShuttingDown({ operation: "WalArchiver.append" })), state]
          const plan = Wal.planAppend(state.endLsn, record, segmentBytes)
          if (plan._tag === "Left") {
            return [Effect.fail(new WalRecordTooLarge({ recordBytes: record.length, recordBytesMax: plan.payloadBytesMax })), state]
          }
          const frameBytes = plan.plan.frames.reduce((sum, frame) => sum + frame.bytes.length, 0)
          const next: LogState = {
            ...state,
            endLsn: plan.plan.nextEndLsn,
            pendingNewestFirst: prependFrames(state.pendingNewestFirst, plan.plan.frames),
            pendingBytes: state.pendingBytes + frameBytes,
            unmarked: true
          }
          const sealed = Wal.segmentOf(next.endLsn, segmentBytes) > Wal.segmentOf(state.endLsn, segmentBytes)
          return [Effect.succeed({ ...plan.plan, sealed, pendingBytes: next.pendingBytes }), next]
        })
      )
      yield* count((c) => {
        c.appendedRecords++
        c.appendedBytes += record.length
      })
      // A full segment is flushed (and then archived) without waiting for a commit.
      if (planned.sealed || planned.pendingBytes >= segmentBytes) yield* wakeFlusher
      return { lsn: toLsn(planned.lsn), endLsn: toLsn(planned.endLsn) }
    })

  const advanceTo = (target: Lsn) =>
    Effect.gen(function* () {
      const end = yield* Effect.flatten(
        Ref.modify(logRef, (state): readonly [Effect.Effect<number, ShuttingDown>, LogState] => {
          if (state.closing) return [Effect.fail(new ShuttingDown({ operation: "WalArchiver.advanceTo" })), state]
          if (state.endLsn >= target) return [Effect.succeed(state.endLsn), state]
          const plan = Wal.planAdvance(state.endLsn, target, segmentBytes)
          const bytes = plan.frames.reduce((sum, frame) => sum + frame.bytes.length, 0)
          return [
            Effect.succeed(plan.nextEndLsn),
            {
              ...state,
              endLsn: plan.nextEndLsn,
              pendingNewestFirst: prependFrames(state.pendingNewestFirst, plan.frames),
              pendingBytes: state.pendingBytes + bytes
            }
          ]
        })
      )
      yield* Effect.logDebug(`WAL: log end advanced to ${end} (asked ${target})`)
      yield* awaitDurable(end)
      // Start-up is over: everything below the log's end is applied (or was never the parts' to have).
      yield* Ref.set(replayedRef, undefined)
    })

  // --- archiving ----------------------------------------------------------------------------

  const upload = (item: Upload) =>
    Effect.gen(function* () {
      const path = localSegmentPath(item.segment)
      const bytes = item.partial
        ? yield* disk.read(path, 0, item.coveredLsn - Wal.segmentStart(item.segment, segmentBytes))
        : yield* Effect.flatMap(disk.readAll(path), (found) =>
            Option.match(found, {
              onNone: () => Effect.fail(new LocalIoError({ operation: "archive", path, detail: "the segment file is missing" })),
              onSome: Effect.succeed
            })
          )
      if (Option.isSome(fence)) yield* fence.value.check
      yield* store.put(bucketKey(item.segment), bytes)
      return bytes.length
    })

  const completeUpload = (item: Upload, exit: Exit.Exit<unknown, unknown>) =>
    Effect.gen(function* () {
      if (Exit.isSuccess(exit)) {
        const through = yield* Ref.modify(archiveRef, (state) => {
          const inFlight = new Map(state.inFlight)
          inFlight.delete(item.segment)
          const progress = Wal.markArchived(state.progress, item.segment, item.coveredLsn, segmentBytes)
          return [progress.through, { ...state, inFlight, progress }] as const
        })
        yield* count((c) => {
          c.segmentsArchived++
          c.archivedBytes += typeof exit.value === "number" ? exit.value : 0
        })
        yield* SubscriptionRef.update(archivedRef, (current) => ({ ...current, through: Math.max(current.through, through) }))
        yield* wakeArchiver
        return
      }
      yield* Ref.update(archiveRef, (state) => {
        const inFlight = new Map(state.inFlight)
        inFlight.delete(item.segment)
        return item.partial
          ? { ...state, inFlight, partialFailed: true }
          : { ...state, inFlight, failedFull: withAdded(state.failedFull, [item.segment]) }
      })
      yield* count((c) => void c.uploadFailures++)
      yield* Effect.logWarning(`WAL: upload of segment ${item.segment}${item.partial ? " (partial)" : ""} failed; it will be retried`, exit.cause)
    })

  const startUpload = (item: Upload) =>
    Effect.gen(function* () {
      const enqueued = yield* Effect.either(queue.enqueue(new WriteWalSegment({ segment: segmentNumber(item.segment), partial: item.partial }), upload(item)))
      if (Either.isLeft(enqueued)) return yield* completeUpload(item, Exit.fail(enqueued.left))
      yield* FiberSet.run(watchers, Effect.flatMap(Effect.exit(enqueued.right.await), (exit) => completeUpload(item, exit)))
    })

  // Picks the uploads to start: every pending full segment not in flight, and the partial one.
  const planUploads = (durable: number) =>
    Ref.modify(archiveRef, (state) => {
      const starts: Array<Upload> = []
      for (const segment of Array.from(state.pendingFull).sort((left, right) => left - right)) {
        if (!state.inFlight.has(segment)) starts.push({ segment, partial: false, coveredLsn: Wal.segmentEnd(segment, segmentBytes) })
      }
      const target = Math.min(state.partialWantedLsn, durable)
      const current = Wal.segmentOf(target, segmentBytes)
      const reached = Math.max(state.progress.through, state.progress.done.get(current) ?? 0)
      if (
        !state.partialFailed && target > Wal.segmentStart(current, segmentBytes) && current === Wal.segmentOf(durable, segmentBytes) &&
        !state.inFlight.has(current) && reached < target
      ) {
        starts.push({ segment: current, partial: true, coveredLsn: target })
      }
      const inFlight = new Map(state.inFlight)
      const pendingFull = new Set(state.pendingFull)
      for (const item of starts) {
        inFlight.set(item.segment, item)
        if (!item.partial) pendingFull.delete(item.segment)
      }
      return [starts, { ...state, inFlight, pendingFull }] as const
    })

  // Removes local segments that are archived and below the latest completed checkpoint's position.
  const removeCovered = (durable: number) =>
    Effect.gen(function* () {
      for (;;) {
        const state = yield* Ref.get(archiveRef)
        const limit = Math.min(state.coveredLsn, state.progress.through)
        const segment = state.localLowest
        if (Wal.segmentEnd(segment, segmentBytes) > limit || segment >= Wal.segmentOf(durable, segmentBytes)) return
        yield* disk.remove(localSegmentPath(segment))
        yield* Ref.update(archiveRef, (current) => ({ ...current, localLowest: Math.max(current.localLowest, segment + 1) }))
        yield* count((c) => void c.segmentsRemoved++)
      }
    })

  const archiveOnce = Effect.gen(function* () {
    const durable = (yield* Ref.get(logRef)).durableLsn
    if (!(yield* SubscriptionRef.get(archivedRef)).closed) for (const item of yield* planUploads(durable)) yield* startUpload(item)
    yield* removeCovered(durable).pipe(
      Effect.catchAll((error) => Effect.logWarning(`WAL: removing an archived segment failed; retried later: ${error.message}`))
    )
  }).pipe(Effect.catchAllCause((cause) => Effect.logError("WAL: archive cycle failed", cause)))

  yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Queue.take(archiveWake), archiveOnce)))
  yield* wakeArchiver

  const archivePending = Effect.zipRight(
    Ref.update(archiveRef, (state) => ({
      ...state,
      pendingFull: withAdded(state.pendingFull, state.failedFull),
      failedFull: new Set<number>(),
      partialFailed: false
    })),
    wakeArchiver
  )

  const archivePartial = Effect.gen(function* () {
    yield* commit
    const durable = (yield* Ref.get(logRef)).durableLsn
    yield* Ref.update(archiveRef, (state) => ({ ...state, partialWantedLsn: Math.max(state.partialWantedLsn, durable) }))
    yield* archivePending
    return toLsn(durable)
  })

  const awaitArchived = (target: Lsn, timeoutMs: number) =>
    waits.track(
      "WalArchiver.awaitArchived",
      `archive through LSN ${target}`,
      archivedRef.changes.pipe(
        Stream.filter((view) => view.through >= target || view.closed),
        Stream.runHead,
        Effect.flatMap((view) =>
          Option.isSome(view) && view.value.through < target ? Effect.fail(new ShuttingDown({ operation: "WalArchiver.awaitArchived" })) : Effect.void
        ),
        Effect.timeoutFail({
          duration: Duration.millis(Math.max(0, timeoutMs)),
          onTimeout: () => new WalArchiveTimeout({ lsn: target, archivedThrough: -1, timeoutMs })
        }),
        Effect.catchTag("WalArchiveTimeout", (error) =>
          Effect.flatMap(SubscriptionRef.get(archivedRef), (view) =>
            Effect.fail(new WalArchiveTimeout({ lsn: error.lsn, archivedThrough: view.through, timeoutMs }))
          )
        )
      )
    )

  const checkpointCovered = (covered: Lsn) =>
    Effect.zipRight(Ref.update(archiveRef, (state) => ({ ...state, coveredLsn: Math.max(state.coveredLsn, covered) })), wakeArchiver)

  // --- replay ---------------------------------------------------------------------------------

  const readLocal = (segment: number): Effect.Effect<SegmentBytes, LocalIoError> => {
    const name = localSegmentPath(segment)
    return Effect.map(disk.readAll(name), (found) => ({ bytes: Option.getOrElse(found, () => new Uint8Array(0)), source: "local", name }))
  }
  const readBucket = (lineage: ReadonlyMap<number, Wal.ArchivedCopy>) => (segment: number): Effect.Effect<SegmentBytes, ObjectStoreError | WalGap> => {
    const copy = lineage.get(segment)
    if (copy === undefined) {
      const detail = `segment ${segment} has no archived copy in this epoch's history`
      return Effect.fail(new WalGap({ fromLsn: Wal.segmentStart(segment, segmentBytes), toLsn: Wal.segmentEnd(segment, segmentBytes), detail }))
    }
    return Effect.map(store.get(copy.key).pipe(withRequestPolicy(config, "get", copy.key)), (bytes) => ({ bytes, source: "bucket", name: copy.key }))
  }

  const localSegments = Effect.gen(function* () {
    const segments = new Set<number>()
    for (const path of yield* disk.list("wal")) {
      const key = KeyLayout.parseKey({ prefix: "" }, path)
      if (Option.isSome(key) && key.value._tag === "Wal") segments.add(key.value.segment)
    }
    return segments
  })

  const replayArchived = <E, R>(fromLsn: Lsn, apply: ApplyRecord<E, R>) =>
    Effect.gen(function* () {
      const archived = (yield* listArchived(store, config, ownEpoch)).lineage
      const last = largest(archived.keys())
      const range = yield* rangeOf(new Set(archived.keys()), fromLsn, last, segmentBytes)
      return yield* applySegments(segmentBytes, fromLsn, range, readBucket(archived), apply)
    })

  const replayLocal = <E, R>(fromLsn: Lsn, apply: ApplyRecord<E, R>) =>
    Effect.gen(function* () {
      const present = yield* localSegments
      const last = largest(present)
      const range = yield* rangeOf(present, fromLsn, last, segmentBytes)
      return yield* applySegments(segmentBytes, fromLsn, range, readLocal, apply)
    })

  const replay = <E, R>(fromLsn: Lsn, apply: ApplyRecord<E, R>) =>
    Effect.gen(function* () {
      yield* Ref.set(replayedRef, fromLsn)
      const present = yield* localSegments
      const archived = (yield* listArchived(store, config, ownEpoch)).lineage
      const endLsn = (yield* Ref.get(logRef)).endLsn
      const available = new Set([...present, ...archived.keys()])
      const last = largest(available)
      const range = yield* rangeOf(available, fromLsn, last, segmentBytes)
      // A checkpoint during replay may cover a record only once it is applied.
      const applyThenMark: ApplyRecord<E, R> = (at, bytes) =>
        Effect.zipRight(apply(at, bytes), Ref.set(replayedRef, at + Wal.headerBytes + bytes.length))
      const summary = yield* applySegments(segmentBytes, fromLsn, range, (segment) => (present.has(segment) ? readLocal(segment) : readBucket(archived)(segment)), applyThenMark)
      if (fromLsn > endLsn) yield* advanceTo(fromLsn)
      yield* Ref.set(replayedRef, undefined)
      return summary
    })

  // --- shutdown -------------------------------------------------------------------------------

  const report = Effect.gen(function* () {
    const log = yield* Ref.get(logRef)
    const through = (yield* SubscriptionRef.get(archivedRef)).through
    return {
      archivedThrough: through,
      durableLsn: log.durableLsn,
      endLsn: log.endLsn,
      localOnly: through < log.endLsn ? { fromLsn: through, toLsn: log.endLsn } : undefined
    } satisfies WalShutdownReport
  })

  const runShutdown = (deadlineMs: number) =>
    Effect.gen(function* () {
      const deadlineAtMs = (yield* Clock.currentTimeMillis) + Math.max(0, deadlineMs)
      const remaining = Effect.map(Clock.currentTimeMillis, (now) => Duration.millis(Math.max(0, deadlineAtMs - now)))
      yield* Ref.update(logRef, (state) => ({ ...state, closing: true }))
      const flushed = yield* commit.pipe(Effect.timeout(yield* remaining), Effect.either)
      if (Either.isLeft(flushed)) yield* Effect.logWarning(`WAL: the final flush did not complete: ${String(flushed.left)}`)
      // Whatever is durable goes to the bucket: the final partial segment and every pending one.
      const target = (yield* Ref.get(logRef)).durableLsn
      yield* Ref.update(archiveRef, (state) => ({ ...state, partialWantedLsn: Math.max(state.partialWantedLsn, target) }))
      yield* archivePending
      const left = yield* remaining
      yield* waits.track(
        "WalArchiver.shutdown",
        `archive through LSN ${target}`,
        archivedRef.changes.pipe(Stream.filter((view) => view.through >= target), Stream.runHead, Effect.timeout(left), Effect.ignore)
      )
      const result = yield* report
      if (result.localOnly !== undefined) {
        yield* Effect.logWarning(`WAL: at shutdown, positions ${result.localOnly.fromLsn} to ${result.localOnly.toLsn} are not archived`)
      }
      return result
    })

  // Nothing more is archived: every wait for the archive, or for a flush, that is still short of
  // its position ends now with ShuttingDown instead of running out its deadline. A flush still
  // running may yet complete: its committers were told it would not, which withholds no durability.
  const closeArchive = Effect.gen(function* () {
    yield* SubscriptionRef.update(archivedRef, (view) => ({ ...view, closed: true }))
    const log = yield* Ref.get(logRef)
    const closed = new ShuttingDown({ operation: "WalArchiver.commit" })
    if (log.running !== undefined) yield* Deferred.fail(log.running.done, closed)
    yield* Deferred.fail(log.next, closed)
  })
  yield* Effect.addFinalizer(() => closeArchive)

  const shutdownOnce = yield* Ref.make<Deferred.Deferred<WalShutdownReport> | undefined>(undefined)
  const shutdown = (deadlineMs: number) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function* () {
        const fresh = yield* Deferred.make<WalShutdownReport>()
        const existing = yield* Ref.modify(shutdownOnce, (current) => (current === undefined ? [undefined, fresh] : [current, current]))
        if (existing !== undefined) return yield* restore(Deferred.await(existing))
        const result = yield* restore(runShutdown(deadlineMs)).pipe(Effect.catchAllCause(() => report), Effect.ensuring(closeArchive))
        yield* Deferred.succeed(fresh, result)
        return result
      })
    )

  const stats = Effect.gen(function* () {
    const log = yield* Ref.get(logRef)
    const archive = yield* Ref.get(archiveRef)
    return {
      ...counters,
      endLsn: toLsn(log.endLsn),
      durableLsn: toLsn(log.durableLsn),
      archivedThrough: toLsn((yield* SubscriptionRef.get(archivedRef)).through),
      coveredLsn: toLsn(archive.coveredLsn)
    } satisfies WalStats
  })

  return WalArchiver.of({
    append: (record) => Effect.map(appendWithEnd(record), (appended) => appended.lsn),
    appendWithEnd,
    commit,
    commitThrough,
    position: Effect.map(Effect.zip(Ref.get(logRef), Ref.get(replayedRef)), ([state, replayed]) => toLsn(replayed ?? state.endLsn)),
    durableLsn: Effect.map(Ref.get(logRef), (state) => toLsn(state.durableLsn)),
    archivedThrough: Effect.map(SubscriptionRef.get(archivedRef), (view) => toLsn(view.through)),
    archivedChanges: Stream.changes(Stream.map(archivedRef.changes, (view) => toLsn(view.through))),
    awaitArchived,
    archivePartial,
    archivePending,
    checkpointCovered,
    advanceTo,
    replay,
    replayArchived,
    replayLocal,
    shutdown,
    stats
  })
})

/** The write-ahead log as a layer; closing its scope stops its fibers (call `shutdown` first to
 * archive what is local). @category layers */
export const layer: Layer.Layer<WalArchiver, OpenError, StorageConfig | LocalDisk | TaskQueue | ObjectStore | WaitRegistry> =
  Layer.scoped(WalArchiver, make)
