/**
 * Every typed failure of the storage tier, as Schema.TaggedError classes with a readable message.
 *
 * Replaces: OrioleDB's `ereport(FATAL)` on every HTTP failure (src/s3/requests.c), which killed the
 * process and left its waiters asleep forever (docs/ORIGINAL.md §2, §7: issues #340, #373). Here a
 * failure is a value that reaches every waiter. Transient object-store failures
 * (`ObjectStoreUnavailable`) are retried by the workers; everything else fails at once.
 *
 * @since 0.1.0
 */
import { Cause, Predicate, Schema } from "effect"

const OptionalKey = Schema.optional(Schema.String)

// ---------------------------------------------------------------------------------------------
// Object store
// ---------------------------------------------------------------------------------------------

/** The object does not exist. @category errors */
export class ObjectNotFound extends Schema.TaggedError<ObjectNotFound>("effect-s3-tier/ObjectNotFound")(
  "ObjectNotFound",
  { operation: Schema.String, key: Schema.String }
) {
  override get message(): string {
    return `${this.operation}: object ${JSON.stringify(this.key)} does not exist`
  }
}

/**
 * Transient: the store could not be reached or did not answer in time (network failure, timeout,
 * HTTP 5xx, 429/503 SlowDown). The workers retry these with backoff. @category errors
 */
export class ObjectStoreUnavailable extends Schema.TaggedError<ObjectStoreUnavailable>(
  "effect-s3-tier/ObjectStoreUnavailable"
)("ObjectStoreUnavailable", {
  operation: Schema.String,
  key: OptionalKey,
  reason: Schema.Literal("Network", "Timeout", "ServerError", "Throttled", "Injected"),
  detail: Schema.String
}) {
  override get message(): string {
    const target = this.key === undefined ? "" : ` ${JSON.stringify(this.key)}`
    return `${this.operation}${target}: object store unavailable (${this.reason}): ${this.detail}`
  }
}

/**
 * Permanent: the store refused the request (403, 400, missing bucket, bad credentials, a local
 * store root that is not a directory). Never retried. @category errors
 */
export class ObjectStoreRejected extends Schema.TaggedError<ObjectStoreRejected>(
  "effect-s3-tier/ObjectStoreRejected"
)("ObjectStoreRejected", {
  operation: Schema.String,
  key: OptionalKey,
  status: Schema.optional(Schema.Number),
  code: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    const target = this.key === undefined ? "" : ` ${JSON.stringify(this.key)}`
    const status = this.status === undefined ? "" : ` (HTTP ${this.status})`
    return `${this.operation}${target}: rejected by the object store${status}, ${this.code}: ${this.detail}`
  }
}

/** A conditional put (`If-None-Match: *`) found the key already present. @category errors */
export class PreconditionFailed extends Schema.TaggedError<PreconditionFailed>(
  "effect-s3-tier/PreconditionFailed"
)("PreconditionFailed", { operation: Schema.String, key: Schema.String }) {
  override get message(): string {
    return `${this.operation}: ${JSON.stringify(this.key)} already exists (conditional put lost)`
  }
}

/** Any failure of an ObjectStore operation. @category errors */
export type ObjectStoreError = ObjectNotFound | ObjectStoreUnavailable | ObjectStoreRejected | PreconditionFailed

/** Whether an error is worth retrying (only `ObjectStoreUnavailable` is). */
export const isTransient = (error: unknown): boolean => Predicate.isTagged(error, "ObjectStoreUnavailable")

/** Whether an error is a request that did not answer in time (a stalled store shows as these). */
export const isRequestTimeout = (error: unknown): boolean =>
  Schema.is(ObjectStoreUnavailable)(error) && error.reason === "Timeout"

// ---------------------------------------------------------------------------------------------
// Task queue
// ---------------------------------------------------------------------------------------------

/** The queue no longer accepts tasks: the storage layer is shutting down. @category errors */
export class QueueClosed extends Schema.TaggedError<QueueClosed>("effect-s3-tier/QueueClosed")("QueueClosed", {
  taskType: Schema.String
}) {
  override get message(): string {
    return `cannot enqueue a ${this.taskType} task: the task queue is closed (shutting down)`
  }
}

/** A waiter's deadline passed before the task completed (the task itself goes on). @category errors */
export class TaskTimeout extends Schema.TaggedError<TaskTimeout>("effect-s3-tier/TaskTimeout")("TaskTimeout", {
  taskId: Schema.Number,
  taskType: Schema.String,
  timeoutMs: Schema.Number
}) {
  override get message(): string {
    return `task ${this.taskId} (${this.taskType}) did not complete within ${this.timeoutMs} ms`
  }
}

/** The task was abandoned at shutdown: it was still queued or running when the drain deadline passed. */
export class TaskAborted extends Schema.TaggedError<TaskAborted>("effect-s3-tier/TaskAborted")("TaskAborted", {
  taskId: Schema.Number,
  taskType: Schema.String,
  reason: Schema.Literal("DrainDeadline", "QueueClosed")
}) {
  override get message(): string {
    return `task ${this.taskId} (${this.taskType}) was aborted at shutdown (${this.reason})`
  }
}

// ---------------------------------------------------------------------------------------------
// Parts, local files, shutdown
// ---------------------------------------------------------------------------------------------

/** The storage layer is closing: new leases, writes and checkpoints are refused. @category errors */
export class ShuttingDown extends Schema.TaggedError<ShuttingDown>("effect-s3-tier/ShuttingDown")("ShuttingDown", {
  operation: Schema.String
}) {
  override get message(): string {
    return `${this.operation}: the storage layer is shutting down`
  }
}

/** Loading a part from the object store failed; every waiter of that load receives this. */
export class PartLoadFailed extends Schema.TaggedError<PartLoadFailed>("effect-s3-tier/PartLoadFailed")(
  "PartLoadFailed",
  { file: Schema.String, part: Schema.Number, detail: Schema.String }
) {
  override get message(): string {
    return `loading part ${this.part} of ${JSON.stringify(this.file)} failed: ${this.detail}`
  }
}

/**
 * A write to a part's local file failed (a full disk, an I/O error), so the file may hold a torn
 * mix of old and new bytes: the part is neither served nor uploaded until the next start rebuilds
 * it from the checkpoint and the WAL. The failed write and every later use of the part fail with it.
 */
export class PartDamaged extends Schema.TaggedError<PartDamaged>("effect-s3-tier/PartDamaged")(
  "PartDamaged",
  { file: Schema.String, part: Schema.Number, detail: Schema.String }
) {
  override get message(): string {
    return `part ${this.part} of ${JSON.stringify(this.file)} is out of service until the next start: ${this.detail}`
  }
}

/** A lease waited longer than its deadline for a part to load or finish evicting. */
export class PartLeaseTimeout extends Schema.TaggedError<PartLeaseTimeout>("effect-s3-tier/PartLeaseTimeout")(
  "PartLeaseTimeout",
  { file: Schema.String, part: Schema.Number, timeoutMs: Schema.Number }
) {
  override get message(): string {
    return `lease of part ${this.part} of ${JSON.stringify(this.file)} waited more than ${this.timeoutMs} ms`
  }
}

/** A read or write does not fit in a part or a file (bad offset, length). */
export class InvalidRange extends Schema.TaggedError<InvalidRange>("effect-s3-tier/InvalidRange")("InvalidRange", {
  detail: Schema.String
}) {
  override get message(): string {
    return `invalid range: ${this.detail}`
  }
}

/** Local disk I/O failed (the data directory, a WAL segment, the control file). */
export class LocalIoError extends Schema.TaggedError<LocalIoError>("effect-s3-tier/LocalIoError")("LocalIoError", {
  operation: Schema.String,
  path: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `${this.operation} ${JSON.stringify(this.path)} failed: ${this.detail}`
  }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints, manifests, start-up, fencing
// ---------------------------------------------------------------------------------------------

/** An object read back from the bucket is corrupt, truncated, of another version or foreign. */
export class CorruptObject extends Schema.TaggedError<CorruptObject>("effect-s3-tier/CorruptObject")(
  "CorruptObject",
  { key: Schema.String, detail: Schema.String }
) {
  override get message(): string {
    return `object ${JSON.stringify(this.key)} is corrupt or foreign: ${this.detail}`
  }
}

/** A checkpoint did not commit; the previous one is intact. */
export class CheckpointFailed extends Schema.TaggedError<CheckpointFailed>("effect-s3-tier/CheckpointFailed")(
  "CheckpointFailed",
  {
    checkpoint: Schema.Number,
    reason: Schema.Literal("TimedOut", "UploadFailed", "CommitFailed", "Fenced", "ShuttingDown"),
    detail: Schema.String
  }
) {
  override get message(): string {
    return `checkpoint ${this.checkpoint} failed (${this.reason}): ${this.detail}`
  }
}

/** Why start-up refused a data directory. */
export type StartupRefusedReason =
  | "ForeignInstance"
  | "LocalAhead"
  | "LocalBehind"
  | "NotOurDirectory"
  | "ForeignBucket"

/** What the operator should do for each StartupRefused reason (the end of its message). */
export const startupRefusedRemedy: Readonly<Record<StartupRefusedReason, string>> = {
  ForeignInstance:
    "this directory's instance was superseded (another instance took the bucket over) and the directory cannot be reopened, with or without takeOver; " +
    "to write again from here, open an empty data directory: it restores the bucket's latest checkpoint and archived WAL (refused with BucketLocked while the instance that took over runs); " +
    "records of this directory that were not archived before the take-over are not in the bucket (`restore --dir <empty dir>` shows what the bucket holds)",
  LocalAhead:
    "check that the store and prefix are this directory's; if the bucket lost checkpoints (deleted, or replaced by an older copy), put them back; " +
    "otherwise open an empty data directory to go on from what the bucket holds (this directory's later checkpoints and WAL are not in it)",
  LocalBehind:
    "the bucket went on without this directory (a copy of it ran, or another instance took over), so it cannot be reopened; " +
    "open an empty data directory to go on from the bucket's latest checkpoint and archived WAL (this directory's changes after its last checkpoint are not in it)",
  NotOurDirectory:
    "open a missing or empty directory (a new store, or a restore of the bucket), or this tier's own data directory with the partSizeBytes and walSegmentBytes it was made with",
  ForeignBucket:
    "open the directory with the store and prefix it belongs to, or use an empty data directory for this bucket"
}

/** Start-up refused, like OrioleDB's control check (src/s3/control.c). The message ends with the
 * remedy for its reason (`startupRefusedRemedy`). */
export class StartupRefused extends Schema.TaggedError<StartupRefused>("effect-s3-tier/StartupRefused")(
  "StartupRefused",
  {
    reason: Schema.Literal("ForeignInstance", "LocalAhead", "LocalBehind", "NotOurDirectory", "ForeignBucket"),
    detail: Schema.String
  }
) {
  override get message(): string {
    return `start-up refused (${this.reason}): ${this.detail}. What to do: ${startupRefusedRemedy[this.reason]}`
  }
}

/** Another live instance holds the bucket's lock object. */
export class BucketLocked extends Schema.TaggedError<BucketLocked>("effect-s3-tier/BucketLocked")("BucketLocked", {
  key: Schema.String,
  holder: Schema.String,
  epoch: Schema.Number
}) {
  override get message(): string {
    return `the bucket is locked by instance ${this.holder} (epoch ${this.epoch}, lock object ${
      JSON.stringify(this.key)
    }); stop that instance first; only if it is dead (its process gone for good, not merely unreachable) open with takeOver (CLI \`--take-over\`), which raises the fencing epoch`
  }
}

/** Another live process has the data directory open (its directory lock is held). */
export class DirectoryLocked
  extends Schema.TaggedError<DirectoryLocked>("effect-s3-tier/DirectoryLocked")("DirectoryLocked", {
    path: Schema.String,
    holder: Schema.String
  })
{
  override get message(): string {
    return `the data directory ${
      JSON.stringify(this.path)
    } is in use by ${this.holder}; one process at a time may open it: stop that process first (a lock left by a dead process is replaced at the next open)`
  }
}

/** A newer instance took over the bucket: this one must stop writing. */
export class Fenced extends Schema.TaggedError<Fenced>("effect-s3-tier/Fenced")("Fenced", {
  epoch: Schema.Number,
  detail: Schema.String
}) {
  override get message(): string {
    return `fenced: this instance (epoch ${this.epoch}) was superseded: ${this.detail}; close it: its writes are refused, and its WAL past what it archived is only in its data directory (the shutdown report names the range); go on from the instance that took over`
  }
}

/** A garbage-collection pass could not read everything it needs (a listing, a root or file
 * manifest, a lease) and stopped before deleting anything: it fails closed. */
export class GcFailed extends Schema.TaggedError<GcFailed>("effect-s3-tier/GcFailed")("GcFailed", {
  stage: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `garbage collection stopped (${this.stage}) and deleted nothing: ${this.detail}`
  }
}

/** A configuration value is out of bounds or inconsistent. */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>("effect-s3-tier/InvalidConfig")(
  "InvalidConfig",
  { field: Schema.String, detail: Schema.String }
) {
  override get message(): string {
    return `invalid configuration ${this.field}: ${this.detail}`
  }
}

// ---------------------------------------------------------------------------------------------
// Write-ahead log
// ---------------------------------------------------------------------------------------------

/** A WAL record does not fit in one segment (records never span segments). */
export class WalRecordTooLarge extends Schema.TaggedError<WalRecordTooLarge>("effect-s3-tier/WalRecordTooLarge")(
  "WalRecordTooLarge",
  { recordBytes: Schema.Number, recordBytesMax: Schema.Number }
) {
  override get message(): string {
    return `a WAL record of ${this.recordBytes} bytes is larger than the largest that fits in a segment (${this.recordBytesMax} bytes)`
  }
}

/** A wait for a WAL position to be archived passed its deadline (the uploads go on). */
export class WalArchiveTimeout extends Schema.TaggedError<WalArchiveTimeout>("effect-s3-tier/WalArchiveTimeout")(
  "WalArchiveTimeout",
  { lsn: Schema.Number, archivedThrough: Schema.Number, timeoutMs: Schema.Number }
) {
  override get message(): string {
    return `WAL position ${this.lsn} was not archived within ${this.timeoutMs} ms (archived through ${this.archivedThrough})`
  }
}

/** Records are missing from the WAL: a segment absent, or incomplete while later ones exist. */
export class WalGap extends Schema.TaggedError<WalGap>("effect-s3-tier/WalGap")("WalGap", {
  fromLsn: Schema.Number,
  toLsn: Schema.Number,
  detail: Schema.String
}) {
  override get message(): string {
    return `the WAL has a gap between positions ${this.fromLsn} and ${this.toLsn}: ${this.detail}`
  }
}

/**
 * The application's replay function could not apply a WAL record (`Storage.StorageOptions.replay`):
 * the application fails with it, naming why; start-up then fails with ReplayFailed.
 */
export class RecordNotApplied
  extends Schema.TaggedError<RecordNotApplied>("effect-s3-tier/RecordNotApplied")("RecordNotApplied", {
    detail: Schema.String,
    cause: Schema.optional(Schema.Unknown)
  })
{
  override get message(): string {
    return `the application could not apply the record: ${this.detail}`
  }
}

/** The application's replay function failed on a WAL record at start-up; `cause` is its error. */
export class ReplayFailed extends Schema.TaggedError<ReplayFailed>("effect-s3-tier/ReplayFailed")("ReplayFailed", {
  lsn: Schema.Number,
  detail: Schema.String,
  cause: Schema.optional(Schema.Unknown)
}) {
  override get message(): string {
    return `replaying the WAL record at ${this.lsn} failed: ${this.detail}`
  }
}

/** The local WAL is damaged in its middle (valid records follow the bad frame), and the bucket has
 * no intact copy of the segment to repair it from: start-up is refused rather than cut the log. */
export class WalCorrupt extends Schema.TaggedError<WalCorrupt>("effect-s3-tier/WalCorrupt")("WalCorrupt", {
  segment: Schema.Number,
  lsn: Schema.Number,
  detail: Schema.String
}) {
  override get message(): string {
    return `the local WAL segment ${this.segment} is corrupt at position ${this.lsn}, inside its durable records: ${this.detail}; put back the segment from a copy of the data directory if there is one, or move the directory aside and open an empty one to go on from the bucket's latest checkpoint and archived WAL (the records past the bucket's copy are lost)`
  }
}

/** The bucket's WAL was written with another segment size than the configuration's. */
export class WalSegmentSizeMismatch
  extends Schema.TaggedError<WalSegmentSizeMismatch>("effect-s3-tier/WalSegmentSizeMismatch")(
    "WalSegmentSizeMismatch",
    { bucketSegmentBytes: Schema.Number, configuredSegmentBytes: Schema.Number, detail: Schema.String }
  )
{
  override get message(): string {
    return `the bucket's WAL segments are ${this.bucketSegmentBytes} bytes, the configuration says ${this.configuredSegmentBytes} (walSegmentBytes): ${this.detail}`
  }
}

// ---------------------------------------------------------------------------------------------
// Readers: leases and point-in-time restore
// ---------------------------------------------------------------------------------------------

/** A reader's lease expired before a renewal landed: the garbage collector may have removed the
 * checkpoint's objects, so nothing the reader read after that can be trusted. */
export class ReaderLeaseLost
  extends Schema.TaggedError<ReaderLeaseLost>("effect-s3-tier/ReaderLeaseLost")("ReaderLeaseLost", {
    id: Schema.String,
    checkpoint: Schema.Number,
    detail: Schema.String
  })
{
  override get message(): string {
    return `the reader lease ${this.id} on checkpoint ${this.checkpoint} was lost: ${this.detail}`
  }
}

/** What to do for each RestoreRefused reason (the end of its message). */
export const restoreRefusedRemedy: Readonly<
  Record<"Expired" | "OutsideWindow" | "BeyondArchive" | "NoCheckpoint", string>
> = {
  Expired: "choose a target at or after the oldest restorable checkpoint",
  OutsideWindow: "choose a target at or after the oldest restorable checkpoint",
  BeyondArchive: "choose a target below the archived WAL's end, or restore the latest state",
  NoCheckpoint:
    "check the store and prefix; a writer commits its first checkpoint at its first periodic checkpoint or its clean shutdown"
}

/**
 * A restore cannot give what was asked: the target is outside what the bucket retains (Expired: its
 * checkpoint's root manifest is a tombstone; OutsideWindow: older than the oldest restorable
 * checkpoint; BeyondArchive: past the archived WAL's end), or the bucket has no checkpoint at all
 * (NoCheckpoint). The message is one line naming the window.
 */
export class RestoreRefused
  extends Schema.TaggedError<RestoreRefused>("effect-s3-tier/RestoreRefused")("RestoreRefused", {
    reason: Schema.Literal("Expired", "OutsideWindow", "BeyondArchive", "NoCheckpoint"),
    detail: Schema.String
  })
{
  override get message(): string {
    return `${this.detail}; ${restoreRefusedRemedy[this.reason]}`
  }
}

// ---------------------------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------------------------

/** A value is not a valid identifier of its kind (a FileId, a PartIndex, an InstanceId, ...); the
 * `Ids.decode*` constructors fail with it where the plain ones throw. */
export class InvalidId extends Schema.TaggedError<InvalidId>("effect-s3-tier/InvalidId")("InvalidId", {
  kind: Schema.String,
  value: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `invalid ${this.kind} ${this.value}: ${this.detail}`
  }
}

// ---------------------------------------------------------------------------------------------
// Errors as text
// ---------------------------------------------------------------------------------------------

/**
 * The one-line text of any failure: an Error's message (every error above has one), else a
 * `message` string, else a `_tag`, else the value as a string.
 */
export const messageOf = (error: unknown): string => {
  if (error instanceof Error && error.message !== "") return error.message
  if (Predicate.hasProperty(error, "message") && Predicate.isString(error.message) && error.message !== "") {
    return error.message
  }
  if (Predicate.hasProperty(error, "_tag") && Predicate.isString(error._tag)) return error._tag
  return String(error)
}

/** The one-line text of a Cause: its first failure (else its first defect), or "interrupted". */
export const describeCause = (cause: Cause.Cause<unknown>): string =>
  Cause.isInterruptedOnly(cause) ? "interrupted" : messageOf(Cause.squash(cause))
