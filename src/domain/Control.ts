/**
 * The local control file (`control.json` in the data directory) and the bucket's lock object, as
 * versioned Schemas, and the start-up decision as one pure function.
 *
 * Replaces: OrioleDB's `orioledb_data/control` + `s3_check_control` and the lock protocol of
 * src/s3/control.c (docs/ORIGINAL.md §5 "Startup", §6 "Lock protocol", invariant 6).
 *
 * @since 0.1.0
 */
import { Either, ParseResult, Schema } from "effect"
import { CorruptObject, StartupRefused } from "./Errors.js"
import { CheckpointNumber, Epoch, InstanceId, Lsn } from "./Ids.js"

/** The `format` field of a control file this version writes and reads. */
export const controlFormat = "effect-s3-tier/control@1" as const
/** The `format` field of a lock object this version writes and reads. */
export const lockFormat = "effect-s3-tier/lock@1" as const

/** What a data directory remembers of its bucket. Written atomically after every checkpoint. */
export const Control = Schema.Struct({
  format: Schema.Literal(controlFormat),
  instanceId: InstanceId,
  epoch: Epoch,
  /** The bucket (ObjectStore.description) and key prefix this directory belongs to. */
  store: Schema.String,
  prefix: Schema.String,
  lastCheckpoint: CheckpointNumber,
  walPosition: Lsn,
  partSizeBytes: Schema.Int.pipe(Schema.positive()),
  walSegmentBytes: Schema.Int.pipe(Schema.positive()),
  /** True only between a clean shutdown (dirty part files synced) and the next start. After a
   * crash the local part files may be older than the checkpoint and are not trusted. */
  cleanShutdown: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** Written with `cleanShutdown`: the SHA-256 of each local part file at the clean stop, by path.
   * The next start keeps a part file that differs from the bucket only if it still has this hash;
   * a clean stop without it vouches for no part file. */
  localParts: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  /** The commit token of the checkpoint this directory was opened from, when another instance
   * wrote it: until this directory commits a checkpoint of its own, that one is its base. */
  baseCommitToken: Schema.optional(Schema.String),
  /** Everything below it was durable in the local WAL at a clean stop (its end then). A bad frame
   * below it is damage, never a torn tail. Kept by later opens (durable bytes stay durable) and
   * raised by each clean stop; absent in control files of older versions. */
  walDurableLsn: Schema.optional(Lsn),
  /** Written with `cleanShutdown`: the generation of the bucket lock of the open that stopped. That
   * open renews no more, so a lock of this generation met by the next start is a late renewal still
   * landing, not a live open of a copy of this directory (BucketLock.acquire). */
  stoppedLockGeneration: Schema.optional(Schema.String)
})
export type Control = typeof Control.Type

/** The lock object: which instance writes this bucket prefix, at which epoch, and which open of it
 * (`generation`, a random nonce per start). The holder rewrites it every renewal interval
 * (`renewedAtMs` changes), so a starter that sees it unchanged for `leaseMs` knows the holder is
 * gone. The last three fields are optional: a lock without them is another generation's. */
export const LockObject = Schema.Struct({
  format: Schema.Literal(lockFormat),
  instanceId: InstanceId,
  epoch: Epoch,
  acquiredAtMs: Schema.Int.pipe(Schema.nonNegative()),
  generation: Schema.optional(Schema.String),
  renewedAtMs: Schema.optional(Schema.Int.pipe(Schema.nonNegative())),
  leaseMs: Schema.optional(Schema.Int.pipe(Schema.positive()))
})
export type LockObject = typeof LockObject.Type

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

/** Who writes a control file: the instance and the epoch of its open. */
export interface ControlHolder {
  readonly instanceId: InstanceId
  readonly epoch: Epoch
}

/** The checkpoint a control file records. A root manifest is one; `instanceId` and `commitToken`
 * say who committed it (absent: this directory's own). */
export interface ControlBase {
  readonly checkpoint: CheckpointNumber
  readonly walPosition: Lsn
  readonly instanceId?: InstanceId
  readonly commitToken?: string | undefined
}

/**
 * The control file of a directory at checkpoint `base` (none: checkpoint 0, WAL position 0), written
 * by `holder` for the bucket `store` + `config.prefix`. The one constructor of the record: start-up
 * writes it before and after taking the lock, the checkpointer after each commit. It is not a clean
 * stop's (`cleanShutdown: false`, no local part hashes). It keeps `base`'s commit token when another
 * instance committed `base`: until this directory commits a checkpoint of its own, that one is its
 * base (`planStartup`). `walDurableLsn`, when given, is carried on (see the field).
 */
export const forCheckpoint = (options: {
  readonly holder: ControlHolder
  readonly store: string
  readonly config: { readonly prefix: string; readonly partSizeBytes: number; readonly walSegmentBytes: number }
  readonly base: ControlBase | undefined
  readonly walDurableLsn?: Lsn | undefined
}): Control => {
  const { base, config, holder, walDurableLsn } = options
  const committedByAnother = base?.instanceId !== undefined && base.instanceId !== holder.instanceId
  const baseCommitToken = committedByAnother ? base?.commitToken : undefined
  return {
    format: controlFormat,
    instanceId: holder.instanceId,
    epoch: holder.epoch,
    store: options.store,
    prefix: config.prefix,
    lastCheckpoint: base?.checkpoint ?? CheckpointNumber.make(0),
    walPosition: base?.walPosition ?? Lsn.make(0),
    partSizeBytes: config.partSizeBytes,
    walSegmentBytes: config.walSegmentBytes,
    cleanShutdown: false,
    ...(baseCommitToken === undefined ? {} : { baseCommitToken }),
    ...(walDurableLsn === undefined ? {} : { walDurableLsn })
  }
}

/** The control file's bytes (indented JSON). */
export const encodeControl = (control: Control): Uint8Array =>
  encoder.encode(JSON.stringify(Schema.encodeSync(Control)(control), null, 2))
/** The lock object's bytes (JSON). */
export const encodeLock = (lock: LockObject): Uint8Array =>
  encoder.encode(JSON.stringify(Schema.encodeSync(LockObject)(lock)))

const decodeJson = <A, I>(
  schema: Schema.Schema<A, I>,
  name: string,
  bytes: Uint8Array
): Either.Either<A, CorruptObject> => {
  try {
    return Either.mapLeft(
      Schema.decodeUnknownEither(schema)(JSON.parse(decoder.decode(bytes))),
      (error) => new CorruptObject({ key: name, detail: ParseResult.TreeFormatter.formatErrorSync(error) })
    )
  } catch (cause) {
    return Either.left(new CorruptObject({ key: name, detail: `not JSON (${bytes.length} bytes): ${String(cause)}` }))
  }
}

/** Parses a control file read from `path`; anything else is CorruptObject naming it. */
export const decodeControl = (path: string, bytes: Uint8Array): Either.Either<Control, CorruptObject> =>
  decodeJson(Control, path, bytes)
/** Parses the lock object read from `key`; anything else is CorruptObject naming it. */
export const decodeLock = (key: string, bytes: Uint8Array): Either.Either<LockObject, CorruptObject> =>
  decodeJson(LockObject, key, bytes)

/** Who committed one checkpoint, from its root manifest. */
export interface CheckpointSummary {
  readonly checkpoint: CheckpointNumber
  readonly instanceId: InstanceId
  readonly epoch: Epoch
  /** The checkpoint it builds on. */
  readonly previous?: CheckpointNumber
  readonly commitToken?: string | undefined
}

/** What the bucket says at start-up. */
export interface BucketState {
  readonly store: string
  readonly prefix: string
  /** The highest complete checkpoint, if any. */
  readonly latest: CheckpointSummary | undefined
  /** For a directory behind the bucket: the checkpoints after its last one through `latest`,
   * ascending (the loader reads them only when `latest` is of the directory's instance and epoch). */
  readonly newer?: ReadonlyArray<CheckpointSummary>
}

/** What start-up does with a directory. */
export type StartupPlan =
  | { readonly _tag: "Fresh" } // empty directory, empty bucket
  | { readonly _tag: "Restore" } // empty directory, the bucket has checkpoints: install them
  | { readonly _tag: "Reopen"; readonly control: Control } // our directory, in step with the bucket

/**
 * Why the checkpoints after the directory's last one are not all its own history, or undefined when
 * they are: numbered on from the directory's, each building on the one before, each committed by
 * the directory's instance at the directory's epoch (the epoch of the open that last wrote its
 * control file: a later open of this directory rewrites it, a copy of it run elsewhere takes a new
 * epoch). Such a directory is behind only because its control file was not rewritten after them
 * (a crash right after a commit, a failed write); its WAL holds every record after them.
 */
export const foreignHistory = (
  control: Control,
  latest: CheckpointSummary,
  newer: ReadonlyArray<CheckpointSummary> | undefined
): string | undefined => {
  const stranger = (entry: CheckpointSummary) =>
    entry.instanceId !== control.instanceId || entry.epoch !== control.epoch
      ? `checkpoint ${entry.checkpoint} was written by instance ${entry.instanceId} at epoch ${entry.epoch}, this directory is instance ${control.instanceId} at epoch ${control.epoch}`
      : undefined
  const latestStranger = stranger(latest)
  if (latestStranger !== undefined) return latestStranger
  const chain = newer ?? [latest]
  const expectedCount = latest.checkpoint - control.lastCheckpoint
  if (chain.length !== expectedCount || chain[chain.length - 1]?.checkpoint !== latest.checkpoint) {
    return `the bucket holds ${chain.length} of the ${expectedCount} checkpoints after ${control.lastCheckpoint}`
  }
  for (let index = 0; index < chain.length; index++) {
    const entry = chain[index]
    if (entry === undefined) continue
    const before = index === 0 ? control.lastCheckpoint : entry.checkpoint - 1
    if (
      entry.checkpoint !== control.lastCheckpoint + index + 1 ||
      (entry.previous !== undefined && entry.previous !== before)
    ) {
      return `checkpoint ${entry.checkpoint} does not build on checkpoint ${before}`
    }
    const problem = stranger(entry)
    if (problem !== undefined) return problem
  }
  return undefined
}

/**
 * The start-up decision, like OrioleDB's `s3_check_control` (ctl:39-138): a directory of another
 * bucket or instance, or one ahead of the bucket, or one behind it by checkpoints that are not its
 * own history (`foreignHistory`), is refused, because going on would lose or fork data; each
 * refusal names the remedy. A directory behind only by its own checkpoints reopens from the
 * bucket's latest and replays its WAL from there. `takeOver` lets a directory whose instance was
 * superseded be refused all the same: take-over is for a fresh directory (a new machine), never for
 * the stale one.
 */
// eslint-disable-next-line max-lines-per-function -- the start-up decision table, one case per state of the directory and the bucket
export const planStartup = (
  control: Control | undefined,
  directoryHasOtherFiles: boolean,
  bucket: BucketState,
  expected: { readonly partSizeBytes: number; readonly walSegmentBytes: number }
): Either.Either<StartupPlan, StartupRefused> => {
  if (control === undefined) {
    if (directoryHasOtherFiles) {
      return Either.left(
        new StartupRefused({
          reason: "NotOurDirectory",
          detail: "the data directory is not empty and has no control.json: it is not an effect-s3-tier directory"
        })
      )
    }
    return Either.right(bucket.latest === undefined ? { _tag: "Fresh" } : { _tag: "Restore" })
  }
  if (control.store !== bucket.store || control.prefix !== bucket.prefix) {
    return Either.left(
      new StartupRefused({
        reason: "ForeignBucket",
        detail: `the data directory belongs to ${control.store} prefix ${
          JSON.stringify(control.prefix)
        }, not ${bucket.store} prefix ${JSON.stringify(bucket.prefix)}`
      })
    )
  }
  if (control.partSizeBytes !== expected.partSizeBytes || control.walSegmentBytes !== expected.walSegmentBytes) {
    return Either.left(
      new StartupRefused({
        reason: "NotOurDirectory",
        detail:
          `the data directory was made with part size ${control.partSizeBytes} and WAL segment ${control.walSegmentBytes} bytes; the configuration says ${expected.partSizeBytes} and ${expected.walSegmentBytes}`
      })
    )
  }
  const latest = bucket.latest
  if (latest === undefined) {
    if (control.lastCheckpoint === 0) return Either.right({ _tag: "Reopen", control })
    return Either.left(
      new StartupRefused({
        reason: "LocalAhead",
        detail:
          `the directory has checkpoint ${control.lastCheckpoint} but the bucket has none: the bucket lost its checkpoints or is not this directory's`
      })
    )
  }
  // Another instance's checkpoint is foreign unless it is the very one this directory opened from
  // (its commit token, unique per commit): a directory restored from another instance's bucket
  // that has not committed a checkpoint of its own yet is in step.
  const openedFromIt = latest.checkpoint === control.lastCheckpoint && latest.commitToken !== undefined &&
    latest.commitToken === control.baseCommitToken
  if (latest.instanceId !== control.instanceId && !openedFromIt) {
    return Either.left(
      new StartupRefused({
        reason: "ForeignInstance",
        detail:
          `the bucket's latest checkpoint ${latest.checkpoint} was written by instance ${latest.instanceId}, this directory is instance ${control.instanceId} (it was taken over)`
      })
    )
  }
  if (control.lastCheckpoint > latest.checkpoint) {
    return Either.left(
      new StartupRefused({
        reason: "LocalAhead",
        detail:
          `the directory is at checkpoint ${control.lastCheckpoint}, the bucket only at ${latest.checkpoint}: the bucket lost checkpoints`
      })
    )
  }
  // Behind only by its own checkpoints (the crash window between a commit and the control file's
  // rewrite, a rewrite that failed): its WAL has every record after the bucket's latest.
  const foreign = control.lastCheckpoint < latest.checkpoint ? foreignHistory(control, latest, bucket.newer) : undefined
  if (foreign !== undefined) {
    return Either.left(
      new StartupRefused({
        reason: "LocalBehind",
        detail:
          `the directory is at checkpoint ${control.lastCheckpoint}, behind the bucket's ${latest.checkpoint}, and ${foreign} (another history)`
      })
    )
  }
  return Either.right({ _tag: "Reopen", control })
}
