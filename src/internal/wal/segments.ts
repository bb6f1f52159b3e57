/**
 * Where the WAL's segments are: the local files (`wal/<16 hex>` and the durable-end mark) and the
 * bucket's archived copies (the history of one epoch, Wal.archivedLineage). One listing of each,
 * shared by recovery at open and by replay.
 *
 * Replaces: the segment naming of PostgreSQL's pg_wal as OrioleDB archived it (src/s3/archive.c,
 * one `wal/<name>` object per segment file).
 *
 * @since 0.1.0
 */
import { Effect, Option, Stream } from "effect"
import type { LocalIoError, ObjectStoreError } from "../../domain/Errors.js"
import { segmentNumber } from "../../domain/Ids.js"
import * as KeyLayout from "../../domain/KeyLayout.js"
import * as Wal from "../../domain/Wal.js"
import type { LocalDiskService } from "../../services/LocalDisk.js"
import type { ObjectStoreService } from "../../services/ObjectStore.js"
import { withRequestPolicy } from "../../services/RequestPolicy.js"
import { keyLayout, type StorageConfigValue } from "../../services/StorageConfig.js"

/** The local file of the durable-end mark (Wal.encodeDurableMark), rewritten after every flush and
 * never synced: when it survives (a process crash keeps it, a power loss may not), no write below
 * it can have been torn, so damage below it is repaired or refused like damage recorded at a clean stop. */
export const durableMarkPath = "wal.durable"

/** The local path of a segment: the bucket's naming without the prefix. */
export const localSegmentPath = (segment: number): string => KeyLayout.walKey({ prefix: "" }, segmentNumber(segment))

/** The local wal directory, parsed: its segments in ascending order, and the files that are not
 * segments of this log (named with an epoch, or not WAL names at all). */
export interface LocalListing {
  readonly segments: ReadonlyArray<number>
  readonly foreign: ReadonlyArray<string>
}

/** Lists and parses the local wal directory. */
export const listLocal = (disk: LocalDiskService): Effect.Effect<LocalListing, LocalIoError> =>
  Effect.map(disk.list("wal"), (paths) => {
    const segments: Array<number> = []
    const foreign: Array<string> = []
    for (const path of paths) {
      const key = KeyLayout.parseKey({ prefix: "" }, path)
      if (Option.isSome(key) && key.value._tag === "Wal" && key.value.epoch === undefined) {
        segments.push(key.value.segment)
      } else foreign.push(path)
    }
    segments.sort((left, right) => left - right)
    return { segments, foreign }
  })

/** A local segment's bytes (empty when the file is missing). */
export const readLocalBytes = (disk: LocalDiskService, segment: number): Effect.Effect<Uint8Array, LocalIoError> =>
  Effect.map(disk.readAll(localSegmentPath(segment)), Option.getOrElse(() => new Uint8Array(0)))

/** The bucket's archived copies: the log's history as the writer of this epoch has it (one copy per
 * segment, Wal.archivedLineage), and whether any copy is this epoch's own. */
export interface Archive {
  readonly lineage: ReadonlyMap<number, Wal.ArchivedCopy>
  readonly ownCopies: boolean
}

/** Lists the archived WAL: the lineage as a writer of `epoch` sees it (Number.MAX_SAFE_INTEGER: the
 * newest epoch's, as a restore reads it). */
export const listArchived = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  epoch: number
): Effect.Effect<Archive, ObjectStoreError> => {
  const layout = keyLayout(config)
  const prefix = KeyLayout.walPrefix(layout)
  return Stream.runCollect(store.list(prefix)).pipe(
    withRequestPolicy(config, "list", prefix),
    Effect.map((infos) => {
      const copies: Array<Wal.ArchivedCopy> = []
      for (const info of infos) {
        const key = KeyLayout.parseKey(layout, info.key)
        if (Option.isSome(key) && key.value._tag === "Wal") {
          copies.push({
            segment: key.value.segment,
            epoch: key.value.epoch ?? Wal.epochUnknown,
            key: info.key,
            sizeBytes: info.sizeBytes
          })
        }
      }
      return { lineage: Wal.archivedLineage(copies, epoch), ownCopies: copies.some((copy) => copy.epoch === epoch) }
    })
  )
}

/** The largest number of an iterable, or undefined when it is empty (no spread, so iterables of every size work). */
export const largest = (values: Iterable<number>): number | undefined => {
  let found: number | undefined
  for (const value of values) if (found === undefined || value > found) found = value
  return found
}
