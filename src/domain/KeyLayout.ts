/**
 * The bucket key layout, as pure functions: every key the tier writes is built here and every key
 * it lists is parsed here, so `parseKey(layout, keyOf(layout, k))` is `k` for every kind of key.
 *
 * Replaces: the key formats spread over OrioleDB's src/s3/worker.c, checkpoint.c and control.c
 * (docs/ORIGINAL.md §6). Differences, on purpose:
 * - part objects are keyed by checkpoint number *and* by the SHA-256 of their content, so an object
 *   key always names the same bytes: a completed checkpoint's objects are never overwritten, and a
 *   stale writer can never change an object that a newer manifest references;
 * - file manifests are content-addressed too, so a late PUT of an abandoned attempt of checkpoint N
 *   can never replace the file manifest a committed root names;
 * - the checkpoint's root manifest (`checkpoints/<N>`) is the per-checkpoint commit marker and is
 *   written last, with `If-None-Match: *`;
 * - archived WAL segments carry the writer's epoch, so that no writer can overwrite a segment of
 *   another epoch's history (a stale writer after a take-over writes keys the restore ignores past
 *   where the newer epoch begins: Wal.archivedLineage). Keys without an epoch (`wal/<segment>`,
 *   written before epochs were in the key) still parse, as older than every epoch;
 * - numbers are zero-padded so that listing order is numeric order.
 *
 * ```
 * <prefix>/data/<N:16>/<fileId>/<part:10>-<sha256>   a part's bytes, uploaded while N was open
 * <prefix>/manifests/<N:16>/<fileId>.<sha256>.json   a file's part map at checkpoint N
 * <prefix>/checkpoints/<N:16>                        checkpoint N's root manifest = commit marker
 * <prefix>/wal/<segment:16 hex>-<epoch:16>           an archived WAL segment, as the writer of that epoch had it
 * <prefix>/lock                                      the one-instance-per-bucket lock object
 * <prefix>/leases/<id>                               a reader's lease on one checkpoint (Lease.ts)
 * ```
 *
 * @since 0.1.0
 */
import { Either, Option, Schema } from "effect"
import {
  type CheckpointNumber,
  CheckpointNumber as CheckpointNumberSchema,
  type Epoch,
  Epoch as EpochSchema,
  type FileId,
  FileId as FileIdSchema,
  type PartIndex,
  PartIndex as PartIndexSchema,
  type SegmentNumber,
  SegmentNumber as SegmentNumberSchema,
  type Sha256Hex,
  Sha256Hex as Sha256HexSchema
} from "./Ids.js"

/** Where in a bucket this tier's keys live. `prefix` is "" or slash-separated segments. */
export interface KeyLayout {
  readonly prefix: string
}

/** Every kind of key, as data. @category models */
export type BucketKey =
  | {
    readonly _tag: "Part"
    readonly checkpoint: CheckpointNumber
    readonly file: FileId
    readonly part: PartIndex
    readonly sha256: Sha256Hex
  }
  | {
    readonly _tag: "FileManifest"
    readonly checkpoint: CheckpointNumber
    readonly file: FileId
    readonly sha256: Sha256Hex
  }
  | { readonly _tag: "Checkpoint"; readonly checkpoint: CheckpointNumber }
  /** An archived WAL segment; `epoch` absent: the key form without one (older buckets). */
  | { readonly _tag: "Wal"; readonly segment: SegmentNumber; readonly epoch?: Epoch }
  | { readonly _tag: "Lock" }
  | { readonly _tag: "Lease"; readonly id: string }

const checkpointDigits = 16
const partDigits = 10
const segmentDigits = 16
const epochDigits = 16

/** Checks a prefix: empty, or segments without `.`/`..`, empty parts or control characters. */
export const validatePrefix = (prefix: string): Either.Either<string, string> => {
  if (prefix === "") return Either.right(prefix)
  if (prefix.length > 256) return Either.left("a prefix is at most 256 characters")
  if (/[\u0000-\u001f\u007f\\]/.test(prefix)) return Either.left("a prefix has no control characters or backslashes")
  for (const segment of prefix.split("/")) {
    if (segment === "") {
      return Either.left(`prefix ${JSON.stringify(prefix)} has an empty segment (leading, trailing or double '/')`)
    }
    if (segment === "." || segment === "..") {
      return Either.left(`prefix ${JSON.stringify(prefix)} has a '.' or '..' segment`)
    }
  }
  return Either.right(prefix)
}

/** Builds a layout, throwing on a bad prefix: for callers that validated it already (Config). */
export const make = (prefix: string): KeyLayout =>
  Either.match(validatePrefix(prefix), {
    onLeft: (problem) => {
      throw new Error(problem)
    },
    onRight: (valid) => ({ prefix: valid })
  })

const pad = (value: number, digits: number): string => value.toString().padStart(digits, "0")
const padHex = (value: number, digits: number): string => value.toString(16).toUpperCase().padStart(digits, "0")
const join = (layout: KeyLayout, rest: string): string => (layout.prefix === "" ? rest : `${layout.prefix}/${rest}`)

/** The key of a bucket object. */
export const keyOf = (layout: KeyLayout, key: BucketKey): string => {
  switch (key._tag) {
    case "Part":
      return join(
        layout,
        `data/${pad(key.checkpoint, checkpointDigits)}/${key.file}/${pad(key.part, partDigits)}-${key.sha256}`
      )
    case "FileManifest":
      return join(layout, `manifests/${pad(key.checkpoint, checkpointDigits)}/${key.file}.${key.sha256}.json`)
    case "Checkpoint":
      return join(layout, `checkpoints/${pad(key.checkpoint, checkpointDigits)}`)
    case "Wal":
      return join(
        layout,
        `wal/${padHex(key.segment, segmentDigits)}${key.epoch === undefined ? "" : `-${pad(key.epoch, epochDigits)}`}`
      )
    case "Lock":
      return join(layout, "lock")
    case "Lease":
      return join(layout, `leases/${key.id}`)
  }
}

/** A part's key: `data/<N>/<fileId>/<part>-<sha256>`, under the checkpoint open when it was written. */
export const partKey = (
  layout: KeyLayout,
  checkpoint: CheckpointNumber,
  file: FileId,
  part: PartIndex,
  sha256: Sha256Hex
): string => keyOf(layout, { _tag: "Part", checkpoint, file, part, sha256 })
/** A file manifest's key: `manifests/<N>/<fileId>.<sha256>.json`. */
export const fileManifestKey = (
  layout: KeyLayout,
  checkpoint: CheckpointNumber,
  file: FileId,
  sha256: Sha256Hex
): string => keyOf(layout, { _tag: "FileManifest", checkpoint, file, sha256 })
/** Checkpoint N's root manifest (its commit marker, or its tombstone once expired). */
export const checkpointKey = (layout: KeyLayout, checkpoint: CheckpointNumber): string =>
  keyOf(layout, { _tag: "Checkpoint", checkpoint })
/** An archived segment's key: with the writer's epoch; without one, the older form (also the local file name). */
export const walKey = (layout: KeyLayout, segment: SegmentNumber, epoch?: Epoch): string =>
  keyOf(layout, epoch === undefined ? { _tag: "Wal", segment } : { _tag: "Wal", segment, epoch })
/** The bucket lock object's key. */
export const lockKey = (layout: KeyLayout): string => keyOf(layout, { _tag: "Lock" })
/** A reader lease's key, `leases/<id>` (see `isLeaseId`). */
export const leaseKey = (layout: KeyLayout, id: string): string => keyOf(layout, { _tag: "Lease", id })

/** A lease id: 1 to 64 letters, digits, '-' and '_' (one path segment). */
export const isLeaseId = (id: string): boolean => /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(id)

/** The listing prefixes (each ends with '/'). */
export const checkpointsPrefix = (layout: KeyLayout): string => join(layout, "checkpoints/")
/** The prefix of archived WAL segments. */
export const walPrefix = (layout: KeyLayout): string => join(layout, "wal/")
/** The prefix of part objects. */
export const dataPrefix = (layout: KeyLayout): string => join(layout, "data/")
/** The prefix of file manifests. */
export const manifestsPrefix = (layout: KeyLayout): string => join(layout, "manifests/")
/** The prefix of reader leases. */
export const leasesPrefix = (layout: KeyLayout): string => join(layout, "leases/")
/** The bucket prefix itself, with a trailing '/' (empty for no prefix). */
export const rootPrefix = (layout: KeyLayout): string => (layout.prefix === "" ? "" : `${layout.prefix}/`)

const decodeOption = <A, I>(schema: Schema.Schema<A, I>, value: unknown): Option.Option<A> =>
  Option.getRight(Schema.decodeUnknownEither(schema)(value))

const decimal = (text: string, digits: number): Option.Option<number> =>
  text.length === digits && /^[0-9]+$/.test(text) ? Option.some(Number(text)) : Option.none()

const hexadecimal = (text: string, digits: number): Option.Option<number> =>
  text.length === digits && /^[0-9A-F]+$/.test(text) ? Option.some(parseInt(text, 16)) : Option.none()

const parseCheckpoint = (text: string): Option.Option<CheckpointNumber> =>
  Option.flatMap(decimal(text, checkpointDigits), (n) => decodeOption(CheckpointNumberSchema, n))

const parsePart = (rest: string): Option.Option<BucketKey> => {
  // rest = <N:16>/<fileId>/<part:10>-<sha256>
  const firstSlash = rest.indexOf("/")
  const lastSlash = rest.lastIndexOf("/")
  if (firstSlash < 0 || lastSlash <= firstSlash) return Option.none()
  const leaf = rest.slice(lastSlash + 1)
  const dash = leaf.indexOf("-")
  if (dash < 0) return Option.none()
  return Option.gen(function*() {
    const checkpoint = yield* parseCheckpoint(rest.slice(0, firstSlash))
    const file = yield* decodeOption(FileIdSchema, rest.slice(firstSlash + 1, lastSlash))
    const part = yield* Option.flatMap(
      decimal(leaf.slice(0, dash), partDigits),
      (n) => decodeOption(PartIndexSchema, n)
    )
    const sha256 = yield* decodeOption(Sha256HexSchema, leaf.slice(dash + 1))
    return { _tag: "Part", checkpoint, file, part, sha256 } as const
  })
}

const parseFileManifest = (rest: string): Option.Option<BucketKey> => {
  // rest = <N:16>/<fileId>.<sha256:64>.json
  const firstSlash = rest.indexOf("/")
  const suffixLength = 1 + 64 + ".json".length
  if (firstSlash < 0 || !rest.endsWith(".json") || rest.length - firstSlash - 1 <= suffixLength) return Option.none()
  const shaStart = rest.length - ".json".length - 64
  if (rest[shaStart - 1] !== ".") return Option.none()
  return Option.gen(function*() {
    const checkpoint = yield* parseCheckpoint(rest.slice(0, firstSlash))
    const file = yield* decodeOption(FileIdSchema, rest.slice(firstSlash + 1, shaStart - 1))
    const sha256 = yield* decodeOption(Sha256HexSchema, rest.slice(shaStart, rest.length - ".json".length))
    return { _tag: "FileManifest", checkpoint, file, sha256 } as const
  })
}

const parseWal = (rest: string): Option.Option<BucketKey> => {
  // rest = <segment:16 hex> or <segment:16 hex>-<epoch:16>
  const segment = Option.flatMap(
    hexadecimal(rest.slice(0, segmentDigits), segmentDigits),
    (n) => decodeOption(SegmentNumberSchema, n)
  )
  if (rest.length === segmentDigits) return Option.map(segment, (value) => ({ _tag: "Wal", segment: value }) as const)
  if (rest[segmentDigits] !== "-") return Option.none()
  const epoch = Option.flatMap(decimal(rest.slice(segmentDigits + 1), epochDigits), (n) => decodeOption(EpochSchema, n))
  return Option.zipWith(
    segment,
    epoch,
    (value, epochValue) => ({ _tag: "Wal", segment: value, epoch: epochValue }) as const
  )
}

/** Parses a key of this layout; `None` for anything else (a foreign object, another prefix). */
export const parseKey = (layout: KeyLayout, key: string): Option.Option<BucketKey> => {
  const root = rootPrefix(layout)
  if (!key.startsWith(root)) return Option.none()
  const local = key.slice(root.length)
  if (local === "lock") return Option.some({ _tag: "Lock" })
  if (local.startsWith("data/")) return parsePart(local.slice("data/".length))
  if (local.startsWith("manifests/")) return parseFileManifest(local.slice("manifests/".length))
  if (local.startsWith("checkpoints/")) {
    return Option.map(
      parseCheckpoint(local.slice("checkpoints/".length)),
      (checkpoint) => ({ _tag: "Checkpoint", checkpoint }) as const
    )
  }
  if (local.startsWith("wal/")) return parseWal(local.slice("wal/".length))
  if (local.startsWith("leases/")) {
    const id = local.slice("leases/".length)
    return isLeaseId(id) ? Option.some({ _tag: "Lease", id }) : Option.none()
  }
  return Option.none()
}
