/**
 * Checkpoint manifests, Schema-encoded and versioned, and the invariants checked before every PUT
 * and after every GET of one.
 *
 * A checkpoint N commits by writing its root manifest `checkpoints/<N>` last, with
 * `If-None-Match: *`. The root manifest names, for every file, the file manifest that holds the
 * file's part map (`manifests/<M>/<file>.json`, M ≤ N: a file whose parts did not change keeps the
 * file manifest of an older checkpoint, so a checkpoint costs O(files + parts of changed files),
 * never O(all parts) nor anything quadratic). A file manifest names, for every part, the
 * content-addressed object that holds its latest version and that object's SHA-256.
 *
 * A root manifest carries a commit token, unique per commit attempt: when the network leaves the
 * outcome of the conditional put unknown (a lost response, a 412 on a retry), the manifest read back
 * from its key tells who committed (`commitOwner`).
 *
 * Replaces: OrioleDB's `file_checksums` (`FILE: <p>, CHECKSUM: <sha256>, CHECKPOINT: <n>`) and its
 * two completion markers `data/N/global/pg_control` + `data/N/orioledb_data/control` (docs/ORIGINAL.md
 * §5, invariant 4), and the control-file identity check of src/s3/control.c.
 *
 * @since 0.1.0
 */
import { Either, ParseResult, Schema } from "effect"
import { createHash } from "node:crypto"
import { CorruptObject } from "./Errors.js"
import { CheckpointNumber, Epoch, FileId, InstanceId, Lsn, PartIndex, Sha256Hex } from "./Ids.js"

/** Where the latest uploaded version of a part lives. @category models */
export const RemotePart = Schema.Struct({
  checkpoint: CheckpointNumber,
  sha256: Sha256Hex,
  sizeBytes: Schema.Int.pipe(Schema.nonNegative())
})
export type RemotePart = typeof RemotePart.Type

/** The `format` field of a file manifest. */
export const fileManifestFormat = "effect-s3-tier/file-manifest@1" as const
/** The `format` field of a committed checkpoint's root manifest. */
export const checkpointManifestFormat = "effect-s3-tier/checkpoint@1" as const

/** One part of a file manifest, as a compact tuple: [part, checkpoint, sha256, sizeBytes]. */
export const PartEntry = Schema.Tuple(PartIndex, CheckpointNumber, Sha256Hex, Schema.Int.pipe(Schema.nonNegative()))
export type PartEntry = typeof PartEntry.Type

/** A file's part map at one checkpoint. @category models */
export const FileManifest = Schema.Struct({
  format: Schema.Literal(fileManifestFormat),
  instanceId: InstanceId,
  checkpoint: CheckpointNumber,
  file: FileId,
  parts: Schema.Array(PartEntry)
})
export type FileManifest = typeof FileManifest.Type

// The envelope of a file manifest, decoded by Schema; its part tuples are checked by the loop in
// `decodeParts` (a per-element Schema decode costs ~9 µs a part: 9 s for a million parts).
const FileManifestEnvelope = Schema.Struct({
  format: Schema.Literal(fileManifestFormat),
  instanceId: InstanceId,
  checkpoint: CheckpointNumber,
  file: FileId,
  parts: Schema.Array(Schema.Unknown)
})

const shaPattern = /^[0-9a-f]{64}$/
const isIndex = (value: unknown, max: number): value is number =>
  typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= max

const decodeParts = (parts: ReadonlyArray<unknown>): Either.Either<ReadonlyArray<PartEntry>, string> => {
  const decoded: Array<PartEntry> = new Array(parts.length)
  for (let index = 0; index < parts.length; index++) {
    const tuple = parts[index]
    if (
      !Array.isArray(tuple) || tuple.length !== 4 ||
      !isIndex(tuple[0], 2 ** 31 - 1) || !isIndex(tuple[1], Number.MAX_SAFE_INTEGER) ||
      typeof tuple[2] !== "string" || !shaPattern.test(tuple[2]) || !isIndex(tuple[3], Number.MAX_SAFE_INTEGER)
    ) {
      return Either.left(
        `part entry ${index} is not [part, checkpoint, sha256, sizeBytes]: ${JSON.stringify(tuple)?.slice(0, 200)}`
      )
    }
    // Each element was checked just above against the same bounds as the branded schemas.
    decoded[index] = tuple as unknown as PartEntry
  }
  return Either.right(decoded)
}

/** One file in a root manifest. */
export const FileEntry = Schema.Struct({
  file: FileId,
  /** The checkpoint whose `manifests/<M>/<file>.json` holds this file's part map. */
  manifestCheckpoint: CheckpointNumber,
  /** SHA-256 of that file manifest's bytes. */
  manifestSha256: Sha256Hex,
  partCount: Schema.Int.pipe(Schema.nonNegative()),
  sizeBytes: Schema.Int.pipe(Schema.nonNegative())
})
export type FileEntry = typeof FileEntry.Type

/** A checkpoint's root manifest: its commit marker. @category models */
export const CheckpointManifest = Schema.Struct({
  format: Schema.Literal(checkpointManifestFormat),
  instanceId: InstanceId,
  /** The fencing epoch of the writer; a newer take-over raises it. */
  epoch: Epoch,
  checkpoint: CheckpointNumber,
  /** The checkpoint this one builds on (0 for the first). */
  previous: CheckpointNumber,
  createdAtMs: Schema.Int.pipe(Schema.nonNegative()),
  partSizeBytes: Schema.Int.pipe(Schema.positive()),
  walSegmentBytes: Schema.Int.pipe(Schema.positive()),
  /** Every WAL record below this position is reflected in this checkpoint's parts. */
  walPosition: Lsn,
  files: Schema.Array(FileEntry),
  /** Unique per commit attempt (absent in manifests written before tokens existed). */
  commitToken: Schema.optional(Schema.String),
  /** The writer's retention policy (Retention.ts), read by `gc`, `restore` and `inspect`; absent in
   * manifests written before retention existed. */
  retainCheckpointsMin: Schema.optional(Schema.Int.pipe(Schema.positive())),
  retainForMs: Schema.optional(Schema.Int.pipe(Schema.nonNegative()))
})
export type CheckpointManifest = typeof CheckpointManifest.Type

/** A root manifest about to be committed: it carries its attempt's commit token. */
export type RootManifest = CheckpointManifest & { readonly commitToken: string }

const byFile = (
  left: FileEntry,
  right: FileEntry
): number => (left.file < right.file ? -1 : left.file > right.file ? 1 : 0)

/**
 * The root manifest of checkpoint `checkpoint`, built on `previous`, by `writer`. The one constructor
 * of the record: the checkpointer's commit and the loader's claim after a take-over (a copy of the
 * latest checkpoint's files under the new epoch) both build it here. Files are sorted by id (the
 * order `checkpointManifestProblem` requires). `config` gives the sizes every reader checks against
 * its own and the writer's retention policy, read by `gc`, `restore` and `inspect`.
 */
export const rootManifest = (options: {
  readonly writer: { readonly instanceId: InstanceId; readonly epoch: Epoch }
  readonly checkpoint: CheckpointNumber
  readonly previous: CheckpointNumber
  readonly createdAtMs: number
  readonly walPosition: Lsn
  readonly files: Iterable<FileEntry>
  readonly commitToken: string
  readonly config: {
    readonly partSizeBytes: number
    readonly walSegmentBytes: number
    readonly retainCheckpointsMin: number
    readonly retainForMs: number
  }
}): RootManifest => ({
  format: checkpointManifestFormat,
  instanceId: options.writer.instanceId,
  epoch: options.writer.epoch,
  checkpoint: options.checkpoint,
  previous: options.previous,
  createdAtMs: options.createdAtMs,
  partSizeBytes: options.config.partSizeBytes,
  walSegmentBytes: options.config.walSegmentBytes,
  walPosition: options.walPosition,
  files: [...options.files].sort(byFile),
  commitToken: options.commitToken,
  retainCheckpointsMin: options.config.retainCheckpointsMin,
  retainForMs: options.config.retainForMs
})

/** The `format` field of an expired checkpoint's tombstone. */
export const expiredCheckpointFormat = "effect-s3-tier/checkpoint-expired@1" as const

/**
 * What the garbage collector writes over the root manifest of a checkpoint it expires, before it
 * deletes anything of it: the key stays taken, so the number can never be committed again by a
 * create-if-absent put, and a reader that finds it knows the checkpoint is gone.
 * @category models
 */
export const ExpiredCheckpoint = Schema.Struct({
  format: Schema.Literal(expiredCheckpointFormat),
  instanceId: InstanceId,
  epoch: Epoch,
  checkpoint: CheckpointNumber,
  createdAtMs: Schema.Int.pipe(Schema.nonNegative()),
  walPosition: Lsn,
  expiredAtMs: Schema.Int.pipe(Schema.nonNegative())
})
export type ExpiredCheckpoint = typeof ExpiredCheckpoint.Type

/** The tombstone of a committed checkpoint. */
export const expiredCheckpointOf = (manifest: CheckpointManifest, expiredAtMs: number): ExpiredCheckpoint => ({
  format: expiredCheckpointFormat,
  instanceId: manifest.instanceId,
  epoch: manifest.epoch,
  checkpoint: manifest.checkpoint,
  createdAtMs: manifest.createdAtMs,
  walPosition: manifest.walPosition,
  expiredAtMs
})

/**
 * The manifest a tombstone stands for, as a commit's read-back sees it: the writer, epoch, number and
 * WAL position of the checkpoint it replaced; no commit token and no files (they are gone). `sizes`
 * are the reader's own (a tombstone does not record them).
 */
export const tombstoneStandIn = (
  tombstone: ExpiredCheckpoint,
  sizes: { readonly partSizeBytes: number; readonly walSegmentBytes: number }
): CheckpointManifest => ({
  format: checkpointManifestFormat,
  instanceId: tombstone.instanceId,
  epoch: tombstone.epoch,
  checkpoint: tombstone.checkpoint,
  previous: CheckpointNumber.make(Math.max(0, tombstone.checkpoint - 1)),
  createdAtMs: tombstone.createdAtMs,
  partSizeBytes: sizes.partSizeBytes,
  walSegmentBytes: sizes.walSegmentBytes,
  walPosition: tombstone.walPosition,
  files: []
})

/** What a `checkpoints/<N>` key holds. @category models */
export type RootObject =
  | { readonly _tag: "Committed"; readonly manifest: CheckpointManifest }
  | { readonly _tag: "Expired"; readonly tombstone: ExpiredCheckpoint }

/** Who wrote the root manifest found at the key of a commit whose outcome was unknown. */
export type CommitOwner =
  | "this-attempt" // our put landed: committed
  | "earlier-attempt" // an earlier, interrupted attempt of this writer landed late: committed too
  | "newer-epoch" // a take-over: this writer is fenced
  | "other-writer" // anything else: the number is taken

/** Compares the manifest found at the key with the attempt's identity; `earlierTokens` are the
 * tokens of this writer's earlier attempts at the same checkpoint. */
export const commitOwner = (
  found: CheckpointManifest,
  attempt: { readonly instanceId: InstanceId; readonly epoch: Epoch; readonly commitToken: string },
  earlierTokens: ReadonlySet<string>
): CommitOwner => {
  if (found.epoch > attempt.epoch) return "newer-epoch"
  if (found.instanceId !== attempt.instanceId || found.epoch !== attempt.epoch || found.commitToken === undefined) {
    return "other-writer"
  }
  if (found.commitToken === attempt.commitToken) return "this-attempt"
  return earlierTokens.has(found.commitToken) ? "earlier-attempt" : "other-writer"
}

// ---------------------------------------------------------------------------------------------
// Invariants (plain predicates; each returns the first problem found)
// ---------------------------------------------------------------------------------------------

/** Part entries sorted by part index without duplicates, sizes within a part, versions not newer
 * than the checkpoint after the manifest's (write-back may upload under the open checkpoint). */
export const fileManifestProblem = (manifest: FileManifest, partSizeBytes: number): string | undefined => {
  let previousPart = -1
  for (const [part, checkpoint, , sizeBytes] of manifest.parts) {
    if (part <= previousPart) return `part ${part} is out of order or duplicated`
    if (sizeBytes > partSizeBytes) {
      return `part ${part} has ${sizeBytes} bytes, more than the part size ${partSizeBytes}`
    }
    if (checkpoint > manifest.checkpoint + 1) {
      return `part ${part} names checkpoint ${checkpoint}, after ${manifest.checkpoint + 1}`
    }
    previousPart = part
  }
  return undefined
}

/** Files sorted without duplicates, each file manifest not newer than the checkpoint. */
export const checkpointManifestProblem = (manifest: CheckpointManifest): string | undefined => {
  if (manifest.previous >= manifest.checkpoint) {
    return `previous checkpoint ${manifest.previous} is not before ${manifest.checkpoint}`
  }
  let previousFile: string | undefined
  for (const entry of manifest.files) {
    if (previousFile !== undefined && entry.file <= previousFile) {
      return `file ${entry.file} is out of order or duplicated`
    }
    if (entry.manifestCheckpoint > manifest.checkpoint) {
      return `file ${entry.file} names manifest ${entry.manifestCheckpoint}, after the checkpoint`
    }
    previousFile = entry.file
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Encoding and decoding (JSON bytes; a bad object is a CorruptObject naming its key)
// ---------------------------------------------------------------------------------------------

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })

const encodeJson = <A, I>(schema: Schema.Schema<A, I>, value: A): Uint8Array =>
  textEncoder.encode(JSON.stringify(Schema.encodeSync(schema)(value)))

const decodeJson = <A, I>(
  schema: Schema.Schema<A, I>,
  key: string,
  bytes: Uint8Array,
  what: string
): Either.Either<A, CorruptObject> => {
  let json: unknown
  try {
    json = JSON.parse(textDecoder.decode(bytes))
  } catch (cause) {
    return Either.left(
      new CorruptObject({ key, detail: `not a JSON ${what} (${bytes.length} bytes): ${String(cause)}` })
    )
  }
  if (typeof json === "object" && json !== null && "format" in json) {
    const format = (json as { format: unknown }).format
    if (format !== fileManifestFormat && format !== checkpointManifestFormat && format !== expiredCheckpointFormat) {
      return Either.left(
        new CorruptObject({
          key,
          detail: `unknown format ${JSON.stringify(format)} (this version reads ${what} format 1)`
        })
      )
    }
  }
  return Either.mapLeft(
    Schema.decodeUnknownEither(schema)(json, { onExcessProperty: "ignore" }),
    (error) =>
      new CorruptObject({ key, detail: `not a valid ${what}: ${ParseResult.TreeFormatter.formatErrorSync(error)}` })
  )
}

/** Plain JSON: every field of a file manifest is a primitive or a brand over one, so its encoded
 * form is its type form, and a per-element Schema encode would cost seconds at a million parts. */
export const encodeFileManifest = (manifest: FileManifest): Uint8Array => textEncoder.encode(JSON.stringify(manifest))
/** A root manifest's bytes (JSON). */
export const encodeCheckpointManifest = (manifest: CheckpointManifest): Uint8Array =>
  encodeJson(CheckpointManifest, manifest)
/** A tombstone's bytes (JSON). */
export const encodeExpiredCheckpoint = (tombstone: ExpiredCheckpoint): Uint8Array =>
  encodeJson(ExpiredCheckpoint, tombstone)

/** Decodes and validates a file manifest read from `key` against the digest its root manifest names. */
export const decodeFileManifest = (
  key: string,
  bytes: Uint8Array,
  expected: { readonly file: FileId; readonly sha256: Sha256Hex; readonly partSizeBytes: number }
): Either.Either<FileManifest, CorruptObject> => {
  const actual = sha256Hex(bytes)
  if (actual !== expected.sha256) {
    return Either.left(
      new CorruptObject({ key, detail: `its SHA-256 is ${actual}, the root manifest says ${expected.sha256}` })
    )
  }
  const envelope = decodeJson(FileManifestEnvelope, key, bytes, "file manifest")
  return Either.flatMap(envelope, (decodedEnvelope) => {
    const parts = decodeParts(decodedEnvelope.parts)
    if (Either.isLeft(parts)) return Either.left(new CorruptObject({ key, detail: parts.left }))
    const manifest: FileManifest = { ...decodedEnvelope, parts: parts.right }
    if (manifest.file !== expected.file) {
      return Either.left(new CorruptObject({ key, detail: `names file ${manifest.file}, expected ${expected.file}` }))
    }
    const problem = fileManifestProblem(manifest, expected.partSizeBytes)
    return problem === undefined ? Either.right(manifest) : Either.left(new CorruptObject({ key, detail: problem }))
  })
}

const tombstoneMark = textEncoder.encode(`"format":"${expiredCheckpointFormat}"`)

const isTombstone = (bytes: Uint8Array): boolean => {
  // Cheap test before a full parse: a tombstone is written with its format first.
  if (Buffer.from(bytes.subarray(0, 128)).indexOf(tombstoneMark) < 0) return false
  try {
    const json: unknown = JSON.parse(textDecoder.decode(bytes))
    return typeof json === "object" && json !== null &&
      (json as { format?: unknown }).format === expiredCheckpointFormat
  } catch {
    return false
  }
}

/** Decodes what `checkpoints/<N>` holds: a committed root manifest or the tombstone of an expired one. */
export const decodeRootObject = (
  key: string,
  bytes: Uint8Array,
  expectedCheckpoint: CheckpointNumber
): Either.Either<RootObject, CorruptObject> => {
  if (!isTombstone(bytes)) {
    return Either.map(
      decodeCheckpointManifest(key, bytes, expectedCheckpoint),
      (manifest) => ({ _tag: "Committed", manifest }) as const
    )
  }
  return Either.flatMap(
    decodeJson(ExpiredCheckpoint, key, bytes, "expired checkpoint"),
    (tombstone) =>
      tombstone.checkpoint === expectedCheckpoint
        ? Either.right({ _tag: "Expired", tombstone } as const)
        : Either.left(
          new CorruptObject({
            key,
            detail: `holds the tombstone of checkpoint ${tombstone.checkpoint}, expected ${expectedCheckpoint}`
          })
        )
  )
}

/** Decodes and validates a root manifest read from `key`; a tombstone is a CorruptObject saying the
 * checkpoint has expired (use `decodeRootObject` to tell the two apart). */
export const decodeCheckpointManifest = (
  key: string,
  bytes: Uint8Array,
  expectedCheckpoint: CheckpointNumber
): Either.Either<CheckpointManifest, CorruptObject> =>
  isTombstone(bytes)
    ? Either.left(
      new CorruptObject({
        key,
        detail: `checkpoint ${expectedCheckpoint} has expired: its root manifest is a tombstone`
      })
    )
    : Either.flatMap(decodeJson(CheckpointManifest, key, bytes, "checkpoint manifest"), (manifest) => {
      if (manifest.checkpoint !== expectedCheckpoint) {
        return Either.left(
          new CorruptObject({ key, detail: `holds checkpoint ${manifest.checkpoint}, expected ${expectedCheckpoint}` })
        )
      }
      const problem = checkpointManifestProblem(manifest)
      return problem === undefined ? Either.right(manifest) : Either.left(new CorruptObject({ key, detail: problem }))
    })

/** SHA-256 of bytes, as lowercase hex (synchronous and deterministic). */
export const sha256Hex = (bytes: Uint8Array): Sha256Hex =>
  Sha256Hex.make(createHash("sha256").update(bytes).digest("hex"))
