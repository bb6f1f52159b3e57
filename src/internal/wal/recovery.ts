/**
 * Recovery of the WAL at open: the local segments are scanned in order and the log continues after
 * the last valid frame. A torn tail (nothing valid after the bad frame, and past the durable end
 * recorded at the last clean stop or checkpoint, or in the durable-end mark) is cut off; other damage
 * is repaired from the bucket's copy or refused (WalCorrupt). When the bucket is ahead of the local
 * directory (a restore on a new machine), the log continues from the bucket's end. A new epoch first
 * uploads the segment where its history begins (Wal.archivedLineage).
 *
 * Replaces: PostgreSQL's own WAL recovery as OrioleDB relied on it, and the loader's copy of the
 * archived WAL into a fresh pg_wal (orioledb_s3_loader.py), which missed the last segment.
 *
 * @since 0.1.0
 */
import { Effect, Option } from "effect"
import {
  CorruptObject,
  type Fenced,
  type LocalIoError,
  type ObjectStoreError,
  WalCorrupt,
  WalGap
} from "../../domain/Errors.js"
import * as Wal from "../../domain/Wal.js"
import * as WalArchive from "../../domain/WalArchive.js"
import type { LocalDiskService } from "../../services/LocalDisk.js"
import type { ObjectStoreService } from "../../services/ObjectStore.js"
import { withRequestPolicy } from "../../services/RequestPolicy.js"
import type { StorageConfigValue } from "../../services/StorageConfig.js"
import {
  type Archive,
  durableMarkPath,
  largest,
  listArchived,
  listLocal,
  localSegmentPath,
  readLocalBytes
} from "./segments.js"

/** One local segment as recovery left it. */
export interface LocalSegment {
  readonly segment: number
  readonly sizeBytes: number
  readonly sealed: boolean
}

/** What the open found: where the log ends, its local segments, what is archived and still to upload. */
export interface Recovered {
  readonly endLsn: number
  readonly local: ReadonlyArray<LocalSegment>
  readonly progress: WalArchive.ArchiveProgress
  readonly pendingFull: ReadonlyArray<number>
  readonly localLowest: number
}

/** What recovery is given: the services, this writer's epoch and key, its fence, and what start-up decided. */
export interface RecoveryContext {
  readonly disk: LocalDiskService
  readonly store: ObjectStoreService
  readonly config: StorageConfigValue
  readonly epoch: number
  readonly bucketKey: (segment: number) => string
  readonly fence: Effect.Effect<void, Fenced> | undefined
  readonly replayFromLsn: number
  /** The log's durable end at the last clean stop (Control.walDurableLsn), or 0. */
  readonly durableAtCleanStop: number
}

/**
 * Damage in segment `segment` (a bad frame, or a clean end while later segments exist) is in the
 * middle of the log when a valid frame follows it: later in the segment, or in a later segment.
 * Otherwise it is a torn tail: a crash cut the last write, and nothing after it was ever durable.
 */
const isMidLog = (
  disk: LocalDiskService,
  scan: Wal.SegmentScan,
  bytes: Uint8Array,
  later: ReadonlyArray<number>,
  segmentBytes: number
) =>
  Effect.gen(function*() {
    const validInSegment = scan.stop === "Invalid" &&
      Wal.validFrameAfter(bytes, scan.segment, segmentBytes, scan.validBytes + 1) !== undefined
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
const repairFromBucket = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  copy: Wal.ArchivedCopy | undefined,
  scan: Wal.SegmentScan,
  bytes: Uint8Array
) =>
  Effect.gen(function*() {
    if (copy === undefined) return undefined
    const archived = yield* store.get(copy.key).pipe(withRequestPolicy(config, "get", copy.key))
    const archivedScan = Wal.scanSegment(archived, scan.segment, config.walSegmentBytes)
    if (
      archivedScan.stop === "Invalid" || (archivedScan.stop === "End" && archivedScan.validBytes <= scan.validBytes)
    ) return undefined
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
  context: RecoveryContext,
  archive: Archive,
  segment: number,
  later: ReadonlyArray<number>,
  durableLsn: number
) =>
  Effect.gen(function*() {
    const { config, disk, store } = context
    const segmentBytes = config.walSegmentBytes
    const path = localSegmentPath(segment)
    let bytes = yield* readLocalBytes(disk, segment)
    let scan = Wal.scanSegment(bytes, segment, segmentBytes)
    const belowDurable = () => Wal.segmentStart(segment, segmentBytes) + scan.validBytes < durableLsn
    const damaged = () => scan.stop === "Invalid" || (scan.stop === "End" && (later.length > 0 || belowDurable()))
    const mustHold = () => (belowDurable() ? Effect.succeed(true) : isMidLog(disk, scan, bytes, later, segmentBytes))
    if (damaged() && (yield* mustHold())) {
      const damageLsn = Wal.segmentStart(segment, segmentBytes) + scan.validBytes
      const ending = later.length > 0
        ? `the segment ends at offset ${scan.validBytes} and segment ${later[0]} follows`
        : `the segment ends at offset ${scan.validBytes}`
      const problem = `${scan.problem ?? ending}${
        belowDurable() ? `, below the log's recorded durable end ${durableLsn}` : ""
      }`
      const repaired = yield* repairFromBucket(store, config, archive.lineage.get(segment), scan, bytes)
      if (repaired === undefined) {
        return yield* new WalCorrupt({
          segment,
          lsn: damageLsn,
          detail: `${problem}; the bucket has no intact copy of the segment that reaches past it`
        })
      }
      yield* Effect.logWarning(
        `WAL: segment ${segment} was damaged at position ${damageLsn} (${problem}); repaired from the bucket's copy`
      )
      yield* disk.writeAtomic(path, repaired)
      bytes = repaired
      scan = Wal.scanSegment(bytes, segment, segmentBytes)
      if (damaged() && (yield* mustHold())) {
        const at = Wal.segmentStart(segment, segmentBytes) + scan.validBytes
        return yield* new WalCorrupt({
          segment,
          lsn: at,
          detail: `${scan.problem ?? "an early end"}, past the bucket's copy`
        })
      }
    }
    if (scan.stop === "Invalid") {
      yield* Effect.logWarning(
        `WAL: segment ${segment} is cut at byte ${scan.validBytes} (a torn tail: nothing valid follows): ${
          scan.problem ?? "invalid frame"
        }`
      )
      bytes = bytes.slice(0, scan.validBytes)
      yield* disk.writeAtomic(path, bytes)
    }
    return { bytes, scan }
  })

/** Scans the local segments in order: repairs or refuses damage in the middle (examineSegment),
 * cuts a torn tail and removes what follows it (which holds nothing valid). */
const scanLocal = (context: RecoveryContext, archive: Archive, durableLsn: number) =>
  Effect.gen(function*() {
    const { disk } = context
    const segmentBytes = context.config.walSegmentBytes
    const { foreign, segments } = yield* listLocal(disk)
    for (const path of foreign) {
      yield* Effect.logWarning(`WAL: ignoring a foreign file in the local wal directory: ${path}`)
    }
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
      const { bytes, scan } = yield* examineSegment(context, archive, segment, later, durableLsn)
      found.push({ segment, sizeBytes: bytes.length, sealed: scan.stop === "Sealed" })
      if (scan.stop !== "Sealed") {
        for (const after of later) {
          yield* Effect.logWarning(
            `WAL: removing segment ${after}, which follows the end of the valid log and holds no valid frame`
          )
          yield* disk.remove(localSegmentPath(after))
        }
        break
      }
    }
    return found
  })

/** The bucket is ahead of the local directory: continue from the bucket's end. With no local segment
 * at all this is a new machine (a restore, or a take-over into an empty directory), the normal case;
 * local segments that fall short of the bucket's are not (a directory that lost part of its log). */
const adoptBucket = (context: RecoveryContext, local: ReadonlyArray<LocalSegment>, last: Wal.ArchivedCopy) =>
  Effect.gen(function*() {
    const { config, disk, store } = context
    const segmentBytes = config.walSegmentBytes
    if (local.length === 0) {
      yield* Effect.logInfo(`WAL: the local log is empty; continuing from the bucket's end (segment ${last.segment})`)
    } else {
      yield* Effect.logWarning(
        `WAL: the bucket's log (through segment ${last.segment}) is ahead of the local one: continuing from the bucket's end`
      )
    }
    for (const segment of local) yield* disk.remove(localSegmentPath(segment.segment))
    const bytes = yield* store.get(last.key).pipe(withRequestPolicy(config, "get", last.key))
    const scan = Wal.scanSegment(bytes, last.segment, segmentBytes)
    if (scan.stop === "Invalid") {
      return yield* new CorruptObject({ key: last.key, detail: scan.problem ?? "an invalid frame" })
    }
    const kept = bytes.slice(0, scan.stop === "Sealed" ? bytes.length : scan.validBytes)
    yield* disk.writeAtomic(localSegmentPath(last.segment), kept)
    const endLsn = Wal.scanEndLsn(scan, segmentBytes)
    return {
      endLsn,
      local: [{ segment: last.segment, sizeBytes: kept.length, sealed: scan.stop === "Sealed" }],
      progress: WalArchive.initialProgress(endLsn),
      pendingFull: [],
      localLowest: last.segment
    } satisfies Recovered
  })

/** Whether the bucket's last copy reaches past the local log. */
const localIsBehind = (
  local: ReadonlyArray<LocalSegment>,
  lastCopy: Wal.ArchivedCopy | undefined
): lastCopy is Wal.ArchivedCopy => {
  const localLast = local[local.length - 1]
  return lastCopy !== undefined &&
    (localLast === undefined ||
      localLast.segment < lastCopy.segment ||
      (localLast.segment === lastCopy.segment && !localLast.sealed && localLast.sizeBytes < lastCopy.sizeBytes))
}

/** What of the local segments is archived already, and which sealed ones are still to upload. */
const archivedOf = (local: ReadonlyArray<LocalSegment>, archive: Archive, segmentBytes: number) => {
  // Local segments below the lowest present one were removed, which they are only once archived.
  const first = local[0]
  let progress = WalArchive.initialProgress(first === undefined ? 0 : Wal.segmentStart(first.segment, segmentBytes))
  const pendingFull: Array<number> = []
  for (const segment of local) {
    const bucketBytes = archive.lineage.get(segment.segment)?.sizeBytes
    if (segment.sealed && bucketBytes === segment.sizeBytes) {
      progress = WalArchive.markArchived(
        progress,
        segment.segment,
        Wal.segmentEnd(segment.segment, segmentBytes),
        segmentBytes
      )
      continue
    }
    if (bucketBytes !== undefined && bucketBytes < segment.sizeBytes) {
      progress = WalArchive.markArchived(
        progress,
        segment.segment,
        Wal.segmentStart(segment.segment, segmentBytes) + bucketBytes,
        segmentBytes
      )
    }
    if (segment.sealed) pendingFull.push(segment.segment)
  }
  // A new epoch archives its own copy of every sealed segment past the contiguous archive, so its
  // history has no older epoch's copy after one of its own (Wal.archivedLineage).
  if (!archive.ownCopies) {
    for (const segment of local) {
      if (
        segment.sealed && Wal.segmentEnd(segment.segment, segmentBytes) > progress.through &&
        !pendingFull.includes(segment.segment)
      ) {
        pendingFull.push(segment.segment)
      }
    }
  }
  return { progress, pendingFull }
}

const recover = (context: RecoveryContext, archive: Archive, durableLsn: number) =>
  Effect.gen(function*() {
    const segmentBytes = context.config.walSegmentBytes
    const local = yield* scanLocal(context, archive, durableLsn)
    const bucketLast = largest(archive.lineage.keys())
    const lastCopy = bucketLast === undefined ? undefined : archive.lineage.get(bucketLast)
    if (localIsBehind(local, lastCopy)) return yield* adoptBucket(context, local, lastCopy)
    const { pendingFull, progress } = archivedOf(local, archive, segmentBytes)
    for (const segment of local) yield* context.disk.sync(localSegmentPath(segment.segment))
    const localLast = local[local.length - 1]
    const endLsn = localLast === undefined
      ? 0
      : localLast.sealed
      ? Wal.segmentEnd(localLast.segment, segmentBytes)
      : Wal.segmentStart(localLast.segment, segmentBytes) + localLast.sizeBytes
    if (endLsn < durableLsn) {
      const detail =
        `the local log ends at ${endLsn}, below its recorded durable end ${durableLsn}, and the bucket's copy does not reach past it`
      return yield* new WalCorrupt({ segment: Wal.segmentOf(endLsn, segmentBytes), lsn: endLsn, detail })
    }
    return {
      endLsn,
      local,
      progress,
      pendingFull,
      localLowest: local[0]?.segment ?? Wal.segmentOf(endLsn, segmentBytes)
    } satisfies Recovered
  })

/** The epoch of the first open of a bucket: no writer of an older epoch can exist. */
const firstEpoch = 1

/**
 * A writer of a new epoch first uploads the segment where its history begins (its log's end at the
 * open, with the bytes below it: its predecessor's history as it adopted it), before any other: from
 * that segment on, a restore takes no older epoch's copy (Wal.archivedLineage), so a stale writer's
 * later uploads never enter this history. Nothing to do for an epoch with copies already, or for the
 * first epoch over an empty bucket. Any later epoch records its start even when it is position 0 with
 * nothing archived (an empty copy of segment 0): its predecessor may hold a log it has not archived
 * yet, and that log, archived late, must not pass for this epoch's history at the next open.
 */
const archiveEpochStart = (
  context: RecoveryContext,
  archive: Archive,
  recovered: Recovered
): Effect.Effect<Recovered, Fenced | ObjectStoreError | LocalIoError> =>
  Effect.gen(function*() {
    const { config, disk, store } = context
    const segmentBytes = config.walSegmentBytes
    if (
      archive.ownCopies ||
      (context.epoch <= firstEpoch && archive.lineage.size === 0 && recovered.endLsn === 0 &&
        context.replayFromLsn === 0)
    ) return recovered
    const segment = Wal.segmentOf(recovered.endLsn, segmentBytes)
    const bytes = (yield* readLocalBytes(disk, segment)).slice(
      0,
      recovered.endLsn - Wal.segmentStart(segment, segmentBytes)
    )
    const key = context.bucketKey(segment)
    if (context.fence !== undefined) yield* context.fence
    yield* store.put(key, bytes).pipe(withRequestPolicy(config, "put", key))
    yield* Effect.logInfo(`WAL: this epoch's history begins at position ${recovered.endLsn} (${key})`)
    return {
      ...recovered,
      progress: WalArchive.markArchived(recovered.progress, segment, recovered.endLsn, segmentBytes)
    }
  })

/** Opens the log: lists the archive, recovers the local segments against it (repairing, cutting or
 * refusing damage; adopting the bucket's end when it is ahead), then archives this epoch's start. */
export const recoverAtOpen = (context: RecoveryContext) =>
  Effect.gen(function*() {
    const archive = yield* listArchived(context.store, context.config, context.epoch)
    const durableAtCleanStop = context.durableAtCleanStop
    const durableMarked = Wal.decodeDurableMark(Option.getOrElse(yield* context.disk.readAll(durableMarkPath), () =>
      new Uint8Array(0))) ?? 0
    const opened = yield* recover(context, archive, Math.max(durableAtCleanStop, durableMarked))
    const recovered = yield* archiveEpochStart(context, archive, opened)
    yield* Effect.annotateCurrentSpan({
      endLsn: recovered.endLsn,
      archivedThrough: recovered.progress.through,
      localSegments: recovered.local.length
    })
    return recovered
  }).pipe(Effect.withSpan("wal.recover", { attributes: { epoch: context.epoch } }))
