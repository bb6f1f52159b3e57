/**
 * A restore's replay of the archived WAL: the records from the base's position up to the target
 * (the end, below an LSN, or below the last time mark at or before a time), read segment by segment
 * from the newest epoch's lineage, each checked (a damaged copy is a CorruptObject, a missing or
 * unsealed segment before the last a WalGap). Used by Restore (src/layers/Restore.ts).
 *
 * Replaces: orioledb_s3_loader.py's download of the REDO WAL segment range after the highest
 * checkpoint (docs/ORIGINAL.md §5, "Read-back"), which replayed no point in time.
 *
 * @since 0.2.0
 */
import { Effect } from "effect"
import { CorruptObject, type ObjectStoreError, WalGap } from "../../domain/Errors.js"
import * as Wal from "../../domain/Wal.js"
import type { RestoreTarget } from "../../layers/Restore.js"
import type { ObjectStoreService } from "../../services/ObjectStore.js"
import { withRequestPolicy } from "../../services/RequestPolicy.js"
import type { StorageConfigValue } from "../../services/StorageConfig.js"
import * as WalArchiver from "../../services/WalArchiver.js"

/** The archived history (one copy per segment, the newest epoch's lineage). */
const listWal = (store: ObjectStoreService, config: StorageConfigValue) =>
  Effect.map(WalArchiver.listArchived(store, config, Number.MAX_SAFE_INTEGER), (archive) => archive.lineage)

/** Where the replay stops: records below `beforeLsn`, or below the last mark at or before `timeMs`. */
export type Stop = { readonly _tag: "End" } | { readonly _tag: "Lsn"; readonly beforeLsn: number } | {
  readonly _tag: "Time"
  readonly timeMs: number
}

export interface WalReplay {
  readonly toLsn: number
  readonly records: number
  readonly recordBytes: number
  readonly segments: number
}

/**
 * Replays the archived records from `fromLsn` up to `stop`. Every segment but the last read must be
 * sealed (else WalGap); a damaged copy in the bucket is a CorruptObject. For a time, records after
 * the last mark seen are held back until a mark at or before the time releases them.
 */
// eslint-disable-next-line max-lines-per-function -- the restore's steps in their order, read top to bottom
export const replayWal = <E, R>(
  store: ObjectStoreService,
  config: StorageConfigValue,
  segmentBytes: number,
  fromLsn: number,
  stop: Stop,
  apply: (record: Wal.WalRecord) => Effect.Effect<void, E, R>
): Effect.Effect<WalReplay, E | ObjectStoreError | CorruptObject | WalGap, R> =>
  Effect.gen(function*() {
    const lineage = yield* listWal(store, config)
    const last = Math.max(-1, ...lineage.keys())
    let toLsn = fromLsn
    let records = 0
    let recordBytes = 0
    let segments = 0
    let held: Array<Wal.WalRecord> = []
    const release = (below: number) =>
      Effect.gen(function*() {
        for (const record of held) {
          if (record.lsn >= below) break
          yield* apply(record)
          records++
          recordBytes += record.payload.length
        }
        held = held.filter((record) => record.lsn >= below)
      })
    for (let segment = Wal.segmentOf(fromLsn, segmentBytes); segment <= last; segment++) {
      if (stop._tag === "Lsn" && Wal.segmentStart(segment, segmentBytes) >= stop.beforeLsn) break
      const copy = lineage.get(segment)
      if (copy === undefined) {
        return yield* new WalGap({
          fromLsn: Math.max(fromLsn, Wal.segmentStart(segment, segmentBytes)),
          toLsn: Wal.segmentEnd(segment, segmentBytes),
          detail: `segment ${segment} is missing and segment ${last} exists`
        })
      }
      const bytes = yield* store.get(copy.key).pipe(withRequestPolicy(config, "get", copy.key))
      const scan = Wal.scanSegment(bytes, segment, segmentBytes)
      segments++
      if (scan.stop === "Invalid") {
        return yield* new CorruptObject({ key: copy.key, detail: scan.problem ?? "an invalid frame" })
      }
      const frames = [
        ...scan.records.map((record) => ({ lsn: record.lsn, record })),
        ...scan.marks.map((mark) => ({ lsn: mark.lsn, mark }))
      ].sort((a, b) => a.lsn - b.lsn)
      for (const frame of frames) {
        if ("record" in frame) {
          if (frame.lsn >= fromLsn) held.push(frame.record)
        } else if (stop._tag === "Time") {
          // Records before a mark at or before the time were appended by then; a later mark ends it.
          if (frame.mark.timeMs > stop.timeMs) return { toLsn, records, recordBytes, segments }
          yield* release(frame.lsn)
          toLsn = Math.max(toLsn, frame.lsn)
        }
      }
      const scanEnd = Wal.scanEndLsn(scan, segmentBytes)
      if (stop._tag === "End") {
        yield* release(Number.MAX_SAFE_INTEGER)
        toLsn = Math.max(toLsn, scanEnd)
      } else if (stop._tag === "Lsn") {
        yield* release(stop.beforeLsn)
        toLsn = Math.max(toLsn, Math.min(stop.beforeLsn, scanEnd))
        if (scanEnd >= stop.beforeLsn) break
      }
      if (segment < last && scan.stop !== "Sealed") {
        return yield* new WalGap({
          fromLsn: scanEnd,
          toLsn: Wal.segmentEnd(segment, segmentBytes),
          detail: `segment ${segment} (${copy.key}) ends before its end and segment ${segment + 1} exists`
        })
      }
    }
    return { toLsn, records, recordBytes, segments }
  })

/** The end of the archived WAL as listed (a bound: the last copy's bytes reach at most this far). */
export const archivedEnd = (store: ObjectStoreService, config: StorageConfigValue, segmentBytes: number) =>
  Effect.map(listWal(store, config), (lineage) => {
    let end = 0
    for (const [segment, copy] of lineage) {
      end = Math.max(end, Wal.segmentStart(segment, segmentBytes) + Math.min(copy.sizeBytes, segmentBytes))
    }
    return end
  })

/** The stop of a target whose base is `base`, and whether the WAL is replayed at all. */
export const stopOf = (target: RestoreTarget): Stop | undefined => {
  switch (target._tag) {
    case "Latest":
      return { _tag: "End" }
    case "Checkpoint":
      return undefined
    case "Lsn":
      return { _tag: "Lsn", beforeLsn: target.lsn }
    case "Time":
      return { _tag: "Time", timeMs: target.timeMs }
  }
}
