/**
 * Branded identifiers of the storage tier, as Schemas so that every boundary (config, CLI flags,
 * manifests read back from a bucket) validates them the same way.
 *
 * Replaces: OrioleDB's raw (datoid, reloid, relnode, segNum, partNum) tuples and its 8-bit
 * checkpoint number packed into block offsets (docs/ORIGINAL.md §4, §9: it wraps after 255).
 *
 * @since 0.1.0
 */
import { Either, ParseResult, Schema } from "effect"
import { InvalidId } from "./Errors.js"

// A FileId names an application data file: a relative, slash-separated path with no empty,
// `.` or `..` segment, no control characters and no backslash, so that it can never escape the
// local data directory nor collide with the key layout's own segments.
const fileIdProblem = (value: string): string | undefined => {
  if (value.length === 0) return "must not be empty"
  if (value.length > 200) return "must be at most 200 characters"
  // Local part directories are named by the URI-encoded FileId, one flat directory per file.
  if (encodeURIComponent(value).length > 240) return "must URI-encode to at most 240 characters"
  if (value.startsWith("/")) return "must be relative (it starts with '/')"
  if (/[\u0000-\u001f\u007f]/.test(value)) return "must not contain control characters"
  if (value.includes("\\")) return "must not contain a backslash"
  for (const segment of value.split("/")) {
    if (segment.length === 0) return "must not contain an empty segment ('//' or a trailing '/')"
    if (segment === "." || segment === "..") return "must not contain '.' or '..' segments"
  }
  return undefined
}

/** A relative, path-like name of a data file. @since 0.1.0 @category models */
export const FileId = Schema.String.pipe(
  Schema.filter((value) => {
    const problem = fileIdProblem(value)
    return problem === undefined ? true : `FileId ${JSON.stringify(value)} ${problem}`
  }),
  Schema.brand("FileId")
)
export type FileId = typeof FileId.Type

/** The index of a fixed-size part within a file (part i = bytes [i·partSize, (i+1)·partSize)). */
export const PartIndex = Schema.Int.pipe(
  Schema.between(0, 2 ** 31 - 1),
  Schema.brand("PartIndex")
)
export type PartIndex = typeof PartIndex.Type

/** A checkpoint number. 0 means "no checkpoint yet"; the first checkpoint is 1. */
export const CheckpointNumber = Schema.Int.pipe(
  Schema.between(0, Number.MAX_SAFE_INTEGER),
  Schema.brand("CheckpointNumber")
)
export type CheckpointNumber = typeof CheckpointNumber.Type

/** The identity of one task in the S3 task queue; unique within a queue's lifetime. */
export const TaskId = Schema.Int.pipe(Schema.positive(), Schema.brand("TaskId"))
export type TaskId = typeof TaskId.Type

/** The identity of one storage instance (one local directory writing to one bucket prefix). */
export const InstanceId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, {
    message: () => "an InstanceId is 1 to 64 characters of letters, digits, '-' and '_'"
  }),
  Schema.brand("InstanceId")
)
export type InstanceId = typeof InstanceId.Type

/** The fencing epoch: raised by every take-over of a bucket. */
export const Epoch = Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER), Schema.brand("Epoch"))
export type Epoch = typeof Epoch.Type

/** A log sequence number: a byte position in the write-ahead log stream. */
export const Lsn = Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER), Schema.brand("Lsn"))
export type Lsn = typeof Lsn.Type

/** The number of a WAL segment: segment s holds the LSNs [s·segmentBytes, (s+1)·segmentBytes). */
export const SegmentNumber = Schema.Int.pipe(
  Schema.between(0, Number.MAX_SAFE_INTEGER),
  Schema.brand("SegmentNumber")
)
export type SegmentNumber = typeof SegmentNumber.Type

/** A lowercase hex SHA-256 digest. */
export const Sha256Hex = Schema.String.pipe(
  Schema.pattern(/^[0-9a-f]{64}$/, { message: () => "a SHA-256 digest is 64 lowercase hex digits" }),
  Schema.brand("Sha256Hex")
)
export type Sha256Hex = typeof Sha256Hex.Type

/** Constructors for code that has already validated its input (tests, pure arithmetic): they throw
 * on a bad value. For untrusted input use the `decode*` constructors below. */
export const fileId = Schema.decodeUnknownSync(FileId)
/** A PartIndex from a number already known valid (throws otherwise). */
export const partIndex = (value: number): PartIndex => PartIndex.make(value)
/** A CheckpointNumber from a number already known valid (throws otherwise). */
export const checkpointNumber = (value: number): CheckpointNumber => CheckpointNumber.make(value)
/** An Lsn (a byte position in the WAL) from a number already known valid (throws otherwise). */
export const lsn = (value: number): Lsn => Lsn.make(value)
/** A SegmentNumber from a number already known valid (throws otherwise). */
export const segmentNumber = (value: number): SegmentNumber => SegmentNumber.make(value)
/** An Epoch (the bucket lock's fencing epoch) from a number already known valid (throws otherwise). */
export const epoch = (value: number): Epoch => Epoch.make(value)

const describeValue = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value)
  if (typeof value === "number" || typeof value === "boolean" || value === null || value === undefined) {
    return String(value)
  }
  return typeof value
}

const decoderOf = <A, I>(schema: Schema.Schema<A, I>, kind: string) => {
  const decode = Schema.decodeUnknownEither(schema)
  return (value: unknown): Either.Either<A, InvalidId> =>
    Either.mapLeft(
      decode(value),
      (error) =>
        new InvalidId({
          kind,
          value: describeValue(value),
          detail: ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => issue.message).join("; ")
        })
    )
}

/**
 * Constructors with a typed failure, for untrusted input (a CLI flag, a request, a file name read
 * back): each returns `Either<Id, InvalidId>`, which is also an Effect (`yield*` it in Effect.gen
 * to fail with InvalidId). @since 0.1.0 @category constructors
 */
export const decodeFileId = decoderOf(FileId, "FileId")
/** A PartIndex from untrusted input, or InvalidId. */
export const decodePartIndex = decoderOf(PartIndex, "PartIndex")
/** A CheckpointNumber from untrusted input, or InvalidId. */
export const decodeCheckpointNumber = decoderOf(CheckpointNumber, "CheckpointNumber")
/** A TaskId from untrusted input, or InvalidId. */
export const decodeTaskId = decoderOf(TaskId, "TaskId")
/** An InstanceId from untrusted input, or InvalidId. */
export const decodeInstanceId = decoderOf(InstanceId, "InstanceId")
/** An Epoch from untrusted input, or InvalidId. */
export const decodeEpoch = decoderOf(Epoch, "Epoch")
/** An Lsn from untrusted input, or InvalidId. */
export const decodeLsn = decoderOf(Lsn, "Lsn")
/** A SegmentNumber from untrusted input, or InvalidId. */
export const decodeSegmentNumber = decoderOf(SegmentNumber, "SegmentNumber")
/** A Sha256Hex from untrusted input, or InvalidId. */
export const decodeSha256Hex = decoderOf(Sha256Hex, "Sha256Hex")
