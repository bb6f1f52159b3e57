/**
 * Checkpointer: makes the local state durable in the bucket, one checkpoint at a time.
 *
 * Checkpoint N = last completed + 1:
 * 1. read the WAL position P (the application logs a change after applying it through a lease, so
 *    every record below P is already in the parts), then snapshot the parts (PartTable.snapshot);
 * 2. make sure every part that was dirty at the snapshot has an upload at least as new (its own
 *    WritePart tasks, awaited by handle — never a queue position), under the checkpoint deadline;
 * 3. write the file manifest of every file whose part map changed (unchanged files keep the file
 *    manifest of an older checkpoint, so unchanged parts are never uploaded again);
 * 4. check the lock still names this instance and epoch (beside step 3's writes, so it costs no
 *    round trip of its own), then write the root manifest `checkpoints/<N>`, carrying a commit
 *    token new for this attempt, with `If-None-Match: *`. That write is the commit point: before it
 *    the previous checkpoint is the latest and every stray object of N is harmless (part objects
 *    are content-addressed and unreferenced); after it N is complete. When the network leaves its
 *    outcome unknown (a lost response, a 412 on a retry, a 409) the manifest at the key is read
 *    back (src/internal/RootCommit.ts): our token means committed;
 * 5. record N in the local control file, tell the WAL that P is covered and count N in the figures.
 *    These steps run uninterruptibly once N is committed, and their result stands even past the
 *    deadline or a shutdown's interruption (src/internal/checkpoint/commit.ts: steps 4 and 5).
 *    The control file's rewrites are serialized with the clean stop's mark (`sealControl`), which
 *    is the last: none lands after it.
 * A conditional put that finds N taken by a newer epoch means a take-over happened: Fenced, and this
 * instance stops checkpointing. N taken by an earlier attempt of this writer (interrupted at its
 * deadline, its put landing later) is adopted: steps 5 run for it, then N+1 is checkpointed.
 * Triggers: periodic (`checkpointIntervalMs`), on demand, at shutdown. Each checkpoint is a span
 * `checkpoint` (attributes `checkpoint.number`, `checkpoint.reason`) whose children are its uploads'
 * tasks, a `checkpoint.manifest` per file manifest and the `checkpoint.commit`.
 *
 * Replaces: the S3 half of OrioleDB's checkpointer (src/checkpoint/checkpoint.c, src/s3/checkpoint.c,
 * `o_after_checkpoint_cleanup_hook`; docs/ORIGINAL.md §5), whose waits were untimed queue-location
 * waits (`s3_queue_wait_for_location(maxLocation)`) that one stuck task could block forever (#373).
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Either, Fiber, Option, Ref, Schedule } from "effect"
import type * as Control from "../domain/Control.js"
import { CheckpointFailed, Fenced, isRequestTimeout, messageOf, type ShuttingDown } from "../domain/Errors.js"
import { type CheckpointNumber, CheckpointNumber as CheckpointNumberSchema, type Lsn } from "../domain/Ids.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import { WriteObject } from "../domain/Task.js"
import { makeCommit } from "../internal/checkpoint/commit.js"
import { fromLoaded, partMapsOf } from "../internal/checkpoint/partMaps.js"
import type { LoadedCheckpoint } from "../internal/checkpoints.js"
import { forkStoppableDaemon } from "../internal/deadline.js"
import * as BucketLock from "./BucketLock.js"
import * as Loader from "./Loader.js"
import { LocalDisk } from "./LocalDisk.js"
import { ObjectStore } from "./ObjectStore.js"
import { PartTable } from "./PartTable.js"
import { daemonStopBoundMs, keyLayout, StorageConfig } from "./StorageConfig.js"
import { TaskQueue } from "./TaskQueue.js"
import { WaitRegistry } from "./WaitRegistry.js"

/** What the checkpointer needs of the WAL. */
export interface CheckpointWal {
  /** The current end of the log: every record below it is applied to the parts. */
  readonly position: Effect.Effect<Lsn>
  /** A completed checkpoint covers every record below `lsn`: archived segments below it may go. */
  readonly covered: (lsn: Lsn) => Effect.Effect<void>
  /** Everything below it is durable in the local log: recorded in the control file with each
   * checkpoint (Control.walDurableLsn), so a later open never takes damage below it for a torn tail. */
  readonly durableLsn?: Effect.Effect<Lsn>
}

/** What one checkpoint did. @category models */
export interface CheckpointReport {
  readonly checkpoint: CheckpointNumber
  readonly outcome: "completed" | "nothing-to-do"
  readonly partsUploaded: number
  readonly bytesUploaded: number
  readonly filesWritten: number
  readonly walPosition: Lsn
  readonly durationMs: number
}

/** Counters for reports and the CLI. */
export interface CheckpointerStats {
  readonly completed: number
  readonly failed: number
  readonly lastCheckpoint: CheckpointNumber
  readonly lastCompletedAtMs: number | undefined
  readonly bytesUploaded: number
  readonly fenced: boolean
}

export type CheckpointError = CheckpointFailed | Fenced | ShuttingDown

/** The operations of the checkpointer. @category models */
export interface CheckpointerService {
  /** Runs one checkpoint now (waiting for a running one first), bounded by `deadlineMs`
   * (default `checkpointDeadlineMs`). */
  readonly checkpoint: (
    options?: { readonly deadlineMs?: number; readonly reason?: string }
  ) => Effect.Effect<CheckpointReport, CheckpointError>
  /** Stops the periodic trigger (shutdown does this first): interrupts it and waits for its end, which
   * a checkpoint whose commit is in reaches only once its control-file rewrite has landed, for
   * `daemonStopBoundMs` at most. Idempotent. */
  readonly stopPeriodic: Effect.Effect<void>
  /** Whether the periodic trigger's fiber is still running. */
  readonly periodicAlive: Effect.Effect<boolean>
  /**
   * Runs `last`, this instance's last write of the local control file (the clean stop's mark), once
   * no checkpoint's rewrite of it runs; a checkpoint that commits afterwards leaves the file as
   * `last` left it. A rewrite that a stalled disk holds thus delays the mark (its caller bounds the
   * wait) instead of landing over it later: a mark undone after the shutdown reported it would let
   * the next start trust local part files as a clean stop's.
   */
  readonly sealControl: <A, E, R>(last: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly stats: Effect.Effect<CheckpointerStats>
  /** The latest completed checkpoint as this instance knows it. */
  readonly latest: Effect.Effect<CheckpointNumber>
}

/** The checkpointer. @category tags */
export class Checkpointer extends Context.Tag("effect-s3-tier/Checkpointer")<Checkpointer, CheckpointerService>() {}

/** Inputs of `make` that start-up decides. */
export interface CheckpointerOptions {
  readonly base: LoadedCheckpoint | undefined
  readonly lock: BucketLock.HeldLock
  readonly wal: CheckpointWal
  /** The running holder's sticky fence (BucketLock service), the one record of whether this
   * instance is fenced: its check is the lock check before each commit, and a fence found here (a
   * newer epoch's commit) is set there. */
  readonly fence: Pick<BucketLock.BucketLockService, "check" | "fenced" | "fence">
}

/** Builds the checkpointer and forks its periodic trigger into the current scope. */
/* eslint-disable max-lines-per-function -- a service's constructor: its operations are small functions sharing one closure, each under a screen */
export const make = (options: CheckpointerOptions) =>
  Effect.gen(function*() {
    /* eslint-enable max-lines-per-function */
    const config = yield* StorageConfig
    const store = yield* ObjectStore
    const queue = yield* TaskQueue
    const parts = yield* PartTable
    const disk = yield* LocalDisk
    const waits = yield* WaitRegistry
    const layout = keyLayout(config)
    const completedRef = yield* Ref.make(fromLoaded(options.base))
    const statsRef = yield* Ref.make<Omit<CheckpointerStats, "fenced">>({
      completed: 0,
      failed: 0,
      lastCheckpoint: options.base?.manifest.checkpoint ?? CheckpointNumberSchema.make(0),
      lastCompletedAtMs: undefined,
      bytesUploaded: 0
    })
    const oneAtATime = yield* Effect.makeSemaphore(1)
    /** One writer of the control file at a time; once sealed, checkpoints no longer rewrite it. */
    const controlFile = yield* Effect.makeSemaphore(1)
    const controlSealedRef = yield* Ref.make(false)
    const writeControlFile = (control: Control.Control) =>
      controlFile.withPermits(1)(Effect.flatMap(
        Ref.get(controlSealedRef),
        (sealed) => (sealed ? Effect.void : Loader.writeControl(disk, control))
      ))
    const sealControl = <A, E, R>(last: Effect.Effect<A, E, R>) =>
      controlFile.withPermits(1)(Effect.zipRight(Ref.set(controlSealedRef, true), last))
    /** Commit tokens of the attempts at the open checkpoint number (any may still land). */
    const attemptTokensRef = yield* Ref.make<ReadonlySet<string>>(new Set())
    /** The report of the checkpoint committed by the running call, if it committed one. */
    const committedRef = yield* Ref.make(Option.none<CheckpointReport>())

    /** Writes one object through the queue and waits for exactly that task. */
    const writeObject = (key: string, kind: WriteObject["kind"], bytes: Uint8Array, ifNoneMatch: boolean) =>
      queue.enqueue(new WriteObject({ key, kind }), store.put(key, bytes, { ifNoneMatch })).pipe(
        Effect.flatMap((handle) => handle.await)
      )

    const checkLock = options.fence.check
    const isFenced = Effect.map(options.fence.fenced, Option.isSome)

    const commit = makeCommit({
      config,
      store,
      writeControl: writeControlFile,
      lock: options.lock,
      wal: options.wal,
      fence: options.fence.fence,
      writeObject,
      completedRef,
      statsRef,
      attemptTokensRef,
      committedRef
    })

    const run = (startMs: number) =>
      Effect.gen(function*() {
        const previous = yield* Ref.get(completedRef)
        const checkpoint = CheckpointNumberSchema.make(previous.checkpoint + 1)
        yield* Effect.annotateCurrentSpan("checkpoint.number", checkpoint)
        const walPosition = yield* options.wal.position
        const snapshot = yield* parts.snapshot(checkpoint)
        const needsUpload = snapshot.filter((entry) => entry.needsUpload)
        // While an earlier attempt at this number may still land, this one uploads under the next
        // number: if that attempt lands, this one is adopted away and the next checkpoint names
        // these parts, so under N they would be objects N does not name that a later checkpoint
        // does. The collector deletes what the latest committed checkpoint does not name at its
        // own number, and keeps what is above it (Retention.mayStillBeNamed).
        const earlierMayLand = (yield* Ref.get(attemptTokensRef)).size > 0
        const uploadAt = earlierMayLand ? CheckpointNumberSchema.make(checkpoint + 1) : checkpoint
        // A stalled bucket shows as request timeouts: a checkpoint cut by them has timed out.
        const failUpload = (detail: string, cause?: unknown) =>
          new CheckpointFailed({ checkpoint, reason: isRequestTimeout(cause) ? "TimedOut" : "UploadFailed", detail })
        const uploaded = yield* Effect.forEach(
          needsUpload,
          (entry) =>
            parts.ensureUploaded(entry, uploadAt).pipe(
              Effect.map((remote) => [entry, remote] as const),
              Effect.mapError((error) => failUpload(`part ${entry.part} of ${entry.file}: ${error.message}`, error))
            ),
          { concurrency: Math.max(1, Math.min(config.queueCapacity, config.workerCount * 4)) }
        )
        const { files, changed, bytesUploaded } = partMapsOf(
          previous,
          checkpoint,
          snapshot,
          uploaded,
          options.lock.instanceId
        )
        const written = changed.map(({ bytes, entry }) => {
          const key = KeyLayout.fileManifestKey(layout, checkpoint, entry.file, entry.manifestSha256)
          return writeObject(key, "FileManifest", bytes, false).pipe(
            Effect.mapError((error) => failUpload(`file manifest ${key}: ${messageOf(error)}`, error)),
            Effect.withSpan("checkpoint.manifest", { attributes: { "checkpoint.file": entry.file, key } })
          )
        })
        // Nothing new: no part map changed (a part uploaded by an attempt whose checkpoint number was
        // then taken by an adopted earlier attempt is new here) and the WAL did not move.
        if (written.length === 0 && walPosition === previous.walPosition && previous.checkpoint > 0) {
          return {
            checkpoint: previous.checkpoint,
            outcome: "nothing-to-do",
            partsUploaded: 0,
            bytesUploaded: 0,
            filesWritten: 0,
            walPosition,
            durationMs: 0
          } as const
        }
        // The lock check runs beside the file-manifest writes (one round trip fewer before the
        // commit) and still ends before the commit. Both run to their end (each is bounded by its
        // requests' timeouts) and neither interrupts the other, so a failure is one plain error:
        // Fenced first, else the writes' failure.
        const [writes, lock] = yield* Effect.all(
          [
            Effect.either(Effect.all(written, { concurrency: Math.max(1, config.workerCount), discard: true })),
            Effect.either(checkLock)
          ],
          { concurrency: 2 }
        )
        if (Either.isLeft(lock)) return yield* Effect.fail(lock.left)
        if (Either.isLeft(writes)) return yield* Effect.fail(writes.left)
        return yield* commit({ checkpoint, walPosition, files }, previous.checkpoint, bytesUploaded, (endMs) => ({
          checkpoint,
          outcome: "completed",
          partsUploaded: uploaded.length,
          bytesUploaded,
          filesWritten: written.length,
          walPosition,
          durationMs: endMs - startMs
        }))
      })

    const checkpoint: CheckpointerService["checkpoint"] = (runOptions) =>
      Effect.gen(function*() {
        if (yield* isFenced) {
          return yield* Effect.fail(
            new Fenced({ epoch: options.lock.epoch, detail: "a newer instance took over this bucket" })
          )
        }
        const deadlineMs = runOptions?.deadlineMs ?? config.checkpointDeadlineMs
        const startMs = yield* Clock.currentTimeMillis
        const attempted = (yield* Ref.get(completedRef)).checkpoint + 1
        yield* Ref.set(committedRef, Option.none())
        // An interrupted earlier attempt (a periodic one stopped at shutdown, one past its deadline)
        // may commit N after all: it is adopted, then this checkpoint runs once more from there.
        return yield* run(startMs).pipe(
          Effect.catchTag("EarlierAttemptCommitted", () => run(startMs)),
          Effect.catchTag("EarlierAttemptCommitted", (adopted) =>
            Effect.fail(
              new CheckpointFailed({
                checkpoint: adopted.checkpoint,
                reason: "CommitFailed",
                detail: "committed by an earlier attempt twice in a row"
              })
            )),
          Effect.timeoutFail({
            duration: Duration.millis(deadlineMs),
            onTimeout: () =>
              new CheckpointFailed({
                checkpoint: attempted,
                reason: "TimedOut",
                detail: `not committed within ${deadlineMs} ms`
              })
          }),
          // A deadline that fell in the steps after a commit waited for them: the commit stands.
          Effect.catchAll((error) =>
            Effect.flatMap(
              Ref.get(committedRef),
              Option.match({ onNone: () => Effect.fail(error), onSome: Effect.succeed })
            )
          ),
          Effect.tapError(() => Ref.update(statsRef, (current) => ({ ...current, failed: current.failed + 1 })))
        )
      }).pipe(
        // The uploads, manifests and commit are children of this span (the queue carries it to its tasks).
        Effect.withSpan("checkpoint", {
          attributes: runOptions?.reason === undefined ? {} : { "checkpoint.reason": runOptions.reason }
        }),
        oneAtATime.withPermits(1),
        (effect) =>
          waits.track(
            `Checkpointer.checkpoint${runOptions?.reason === undefined ? "" : ` (${runOptions.reason})`}`,
            "uploads and manifest",
            effect
          )
      )

    const periodic = config.checkpointIntervalMs === 0
      ? Effect.void
      : checkpoint({ reason: "periodic" }).pipe(
        Effect.catchTag("Fenced", (error) => Effect.logError(error.message).pipe(Effect.zipRight(Effect.interrupt))),
        Effect.catchAll((error) => Effect.logWarning(`periodic checkpoint failed: ${error.message}`)),
        Effect.repeat(Schedule.spaced(Duration.millis(config.checkpointIntervalMs))),
        Effect.delay(Duration.millis(config.checkpointIntervalMs)),
        Effect.asVoid
      )
    // A daemon whose stop waits for its end for `daemonStopBoundMs` at most: a committed checkpoint's
    // control-file rewrite, which a stalled disk can hold, must not hold the shutdown or the close
    // (the directory guard keeps the directory locked until that write lands).
    const { fiber: periodicFiber, stop: stopPeriodic } = yield* forkStoppableDaemon(periodic, daemonStopBoundMs(config))

    return Checkpointer.of({
      checkpoint,
      stopPeriodic,
      periodicAlive: Effect.map(periodicFiber.poll, Option.isNone),
      sealControl,
      stats: Effect.map(Effect.zip(Ref.get(statsRef), isFenced), ([stats, fenced]) => ({ ...stats, fenced })),
      latest: Effect.map(Ref.get(completedRef), (completed) => completed.checkpoint)
    })
  })
