/**
 * Reading the WAL back: every record at or after a position, from the segment holding it through
 * the last one there is, from local segments where present and from the bucket's history otherwise.
 * A missing segment before the last is a WalGap; every segment but the last must be sealed. During
 * start-up replay the log's `position` is the end of the last record applied (see `Replayed`), so a
 * checkpoint taken meanwhile never covers a record that is not applied yet.
 *
 * Replaces: the loader's WAL range (orioledb_s3_loader.py), which missed the last segment of a
 * range (docs/ORIGINAL.md §5), and PostgreSQL's replay of the restored pg_wal.
 *
 * @since 0.1.0
 */
import { Effect, Either, Ref } from "effect"
import { CorruptObject, type LocalIoError, type ObjectStoreError, WalGap } from "../../domain/Errors.js"
import { type Lsn, lsn as toLsn } from "../../domain/Ids.js"
import * as Wal from "../../domain/Wal.js"
import type { LocalDiskService } from "../../services/LocalDisk.js"
import type { ObjectStoreService } from "../../services/ObjectStore.js"
import { withRequestPolicy } from "../../services/RequestPolicy.js"
import type { StorageConfigValue } from "../../services/StorageConfig.js"
import type { ApplyRecord, ReplayError, ReplaySummary } from "../../services/WalArchiver.js"
import * as GroupCommit from "./groupCommit.js"
import { largest, listArchived, listLocal, localSegmentPath, readLocalBytes } from "./segments.js"

/** What replay reads from. */
export interface Sources {
  readonly config: StorageConfigValue
  readonly disk: LocalDiskService
  readonly store: ObjectStoreService
  /** The writer's epoch: the bucket is read as its history. */
  readonly epoch: number
}

/** While start-up replay runs: the end of the last record it applied (records below it are in the
 * parts). Undefined once start-up is over: then every record below the log's end is applied. */
export type Replayed = Ref.Ref<number | undefined>

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
  Effect.gen(function*() {
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
const rangeOf = (available: ReadonlySet<number>, fromLsn: number, segmentBytes: number) => {
  const last = largest(available)
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

const readLocal = (disk: LocalDiskService) => (segment: number): Effect.Effect<SegmentBytes, LocalIoError> =>
  Effect.map(readLocalBytes(disk, segment), (bytes) => ({ bytes, source: "local", name: localSegmentPath(segment) }))

const readBucket =
  (sources: Sources, lineage: ReadonlyMap<number, Wal.ArchivedCopy>) =>
  (segment: number): Effect.Effect<SegmentBytes, ObjectStoreError | WalGap> => {
    const segmentBytes = sources.config.walSegmentBytes
    const copy = lineage.get(segment)
    if (copy === undefined) {
      const detail = `segment ${segment} has no archived copy in this epoch's history`
      return Effect.fail(
        new WalGap({
          fromLsn: Wal.segmentStart(segment, segmentBytes),
          toLsn: Wal.segmentEnd(segment, segmentBytes),
          detail
        })
      )
    }
    return Effect.map(
      sources.store.get(copy.key).pipe(withRequestPolicy(sources.config, "get", copy.key)),
      (bytes) => ({ bytes, source: "bucket", name: copy.key })
    )
  }

/** Every record at or after `fromLsn` in the bucket's archived segments, through the last one. */
export const replayArchived = <E, R>(sources: Sources, fromLsn: Lsn, apply: ApplyRecord<E, R>) =>
  Effect.gen(function*() {
    const archived = (yield* listArchived(sources.store, sources.config, sources.epoch)).lineage
    const range = yield* rangeOf(new Set(archived.keys()), fromLsn, sources.config.walSegmentBytes)
    return yield* applySegments(sources.config.walSegmentBytes, fromLsn, range, readBucket(sources, archived), apply)
  })

/** Every record at or after `fromLsn` in the local segments. */
export const replayLocal = <E, R>(sources: Sources, fromLsn: Lsn, apply: ApplyRecord<E, R>) =>
  Effect.gen(function*() {
    const present = new Set((yield* listLocal(sources.disk)).segments)
    const range = yield* rangeOf(present, fromLsn, sources.config.walSegmentBytes)
    return yield* applySegments(sources.config.walSegmentBytes, fromLsn, range, readLocal(sources.disk), apply)
  })

/** Start-up replay: every record at or after `fromLsn`, local segments first, the bucket for the
 * rest, then `advanceTo(fromLsn)`; `replayed` follows the records applied until it ends. The
 * `wal.replay` span wraps every `apply`. */
export const replay = <E, R>(
  sources: Sources,
  log: GroupCommit.Log,
  replayed: Replayed,
  fromLsn: Lsn,
  apply: ApplyRecord<E, R>
) =>
  Effect.gen(function*() {
    yield* Ref.set(replayed, fromLsn)
    const present = new Set((yield* listLocal(sources.disk)).segments)
    const archived = (yield* listArchived(sources.store, sources.config, sources.epoch)).lineage
    const endLsn = (yield* Ref.get(log.state)).endLsn
    const range = yield* rangeOf(new Set([...present, ...archived.keys()]), fromLsn, sources.config.walSegmentBytes)
    // A checkpoint during replay may cover a record only once it is applied.
    const applyThenMark: ApplyRecord<E, R> = (at, bytes) =>
      Effect.zipRight(apply(at, bytes), Ref.set(replayed, at + Wal.headerBytes + bytes.length))
    const fromBucket = readBucket(sources, archived)
    const read = (segment: number) => (present.has(segment) ? readLocal(sources.disk)(segment) : fromBucket(segment))
    const summary = yield* applySegments(sources.config.walSegmentBytes, fromLsn, range, read, applyThenMark)
    if (fromLsn > endLsn) yield* GroupCommit.advanceTo(log, fromLsn)
    yield* Ref.set(replayed, undefined)
    yield* Effect.annotateCurrentSpan({ toLsn: summary.endLsn, records: summary.records, segments: summary.segments })
    return summary
  }).pipe(Effect.withSpan("wal.replay", { attributes: { fromLsn } }))
