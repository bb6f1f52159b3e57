/**
 * A checkpoint's commit and what follows it: the root manifest written with `If-None-Match: *`
 * (the commit point), its outcome resolved (src/internal/RootCommit.ts), and, once it is known to
 * be in, the steps that record it: the writer's own state, the local control file, the WAL's
 * cleanup and the figures, uninterruptibly, so that a deadline or a shutdown that falls after the
 * commit cuts none of them. A number taken by an earlier attempt of this writer is adopted; by a
 * newer epoch, the writer is fenced. Used by the Checkpointer (src/services/Checkpointer.ts).
 *
 * Replaces: the end of an OrioleDB checkpoint in S3 mode (`o_after_checkpoint_cleanup_hook`,
 * src/checkpoint/checkpoint.c: the completion markers PUT, then an untimed wait), whose markers
 * were plain PUTs that any writer could overwrite; docs/ORIGINAL.md §5.
 *
 * @since 0.1.0
 */
import { Clock, Data, Effect, Option, Ref } from "effect"
import * as ControlDomain from "../../domain/Control.js"
import {
  CheckpointFailed,
  type Fenced,
  type LocalIoError,
  messageOf,
  type ObjectStoreError,
  type QueueClosed,
  type TaskAborted
} from "../../domain/Errors.js"
import type { CheckpointNumber } from "../../domain/Ids.js"
import * as KeyLayout from "../../domain/KeyLayout.js"
import * as Manifest from "../../domain/Manifest.js"
import type { WriteObject } from "../../domain/Task.js"
import type { HeldLock } from "../../services/BucketLock.js"
import type { CheckpointerStats, CheckpointReport, CheckpointWal } from "../../services/Checkpointer.js"
import type { ObjectStoreService } from "../../services/ObjectStore.js"
import { keyLayout, type StorageConfigValue } from "../../services/StorageConfig.js"
import { readBackRoot, readCheckpoint } from "../checkpoints.js"
import { type CommitResolution, commitRootManifest, newCommitToken } from "../RootCommit.js"
import { type Completed, fromLoaded } from "./partMaps.js"

/** The commit found N committed by an earlier attempt of this writer, now adopted: run again. */
export class EarlierAttemptCommitted
  extends Data.TaggedError("EarlierAttemptCommitted")<{ readonly checkpoint: CheckpointNumber }>
{}

/** What the commit reads and records: the checkpointer's state, shared with it. */
export interface CommitContext {
  readonly config: StorageConfigValue
  readonly store: ObjectStoreService
  /** Rewrites the local control file (serialized with the clean stop's mark; skipped after it). */
  readonly writeControl: (control: ControlDomain.Control) => Effect.Effect<void, LocalIoError>
  readonly lock: HeldLock
  readonly wal: Pick<CheckpointWal, "covered" | "durableLsn">
  readonly fence: (detail: string) => Effect.Effect<never, Fenced>
  /** Writes one object through the queue and waits for exactly that task. */
  readonly writeObject: (
    key: string,
    kind: WriteObject["kind"],
    bytes: Uint8Array,
    ifNoneMatch: boolean
  ) => Effect.Effect<void, ObjectStoreError | QueueClosed | TaskAborted>
  /** The latest checkpoint this writer knows committed. */
  readonly completedRef: Ref.Ref<Completed>
  readonly statsRef: Ref.Ref<Omit<CheckpointerStats, "fenced">>
  /** Commit tokens of the attempts at the open checkpoint number (any may still land). */
  readonly attemptTokensRef: Ref.Ref<ReadonlySet<string>>
  /** The report of the checkpoint committed by the running call, if it committed one. */
  readonly committedRef: Ref.Ref<Option.Option<CheckpointReport>>
}

/** The commit of the checkpointer whose state `context` holds. */
/* eslint-disable max-lines-per-function -- a constructor: its steps are small functions sharing one closure, each under a screen */
export const makeCommit = (context: CommitContext) => {
  /* eslint-enable max-lines-per-function */
  const {
    attemptTokensRef,
    committedRef,
    completedRef,
    config,
    fence,
    lock,
    statsRef,
    store,
    wal,
    writeControl,
    writeObject
  } = context
  const layout = keyLayout(config)

  /**
   * The commit is in: count it in the figures, record it locally, tell the WAL; returns when it
   * ended. Runs to its end once started: a checkpoint interrupted once its commit is in (a periodic
   * one stopped at shutdown) is still counted, so the figures agree with `completedRef` and the bucket.
   */
  const afterCommit = (completed: Completed, bytesUploaded: number) =>
    Effect.gen(function*() {
      yield* Ref.set(completedRef, completed)
      yield* Ref.set(attemptTokensRef, new Set())
      // Counted before the control file's rewrite, which a stalled disk can hold past a shutdown
      // that stops waiting for this checkpoint: the figures never lag the commit.
      const endMs = yield* Clock.currentTimeMillis
      yield* Ref.update(statsRef, (stats) => ({
        ...stats,
        completed: stats.completed + 1,
        lastCheckpoint: completed.checkpoint,
        lastCompletedAtMs: endMs,
        bytesUploaded: stats.bytesUploaded + bytesUploaded
      }))
      const walDurableLsn = wal.durableLsn === undefined ? undefined : yield* wal.durableLsn
      yield* writeControl(
        ControlDomain.forCheckpoint({
          holder: lock,
          store: store.description,
          config,
          base: completed,
          walDurableLsn
        })
      ).pipe(Effect.catchAll((error) =>
        Effect.logWarning(
          `checkpoint ${completed.checkpoint} committed, but the control file was not rewritten: ${error.message}`
        )
      ))
      yield* wal.covered(completed.walPosition)
      return endMs
    }).pipe(Effect.uninterruptible)

  /** The commit found N holding another manifest: fenced, an earlier attempt of ours (adopted), or
   * another writer's. */
  const onTaken = (checkpoint: CheckpointNumber, taken: Extract<CommitResolution, { _tag: "Taken" }>) =>
    Effect.gen(function*() {
      const found = taken.found
      switch (taken.owner) {
        case "newer-epoch":
          return yield* fence(
            `checkpoint ${checkpoint} was committed by instance ${found.instanceId} at epoch ${found.epoch}`
          )
        case "earlier-attempt": {
          const loaded = yield* readCheckpoint(store, config, found).pipe(
            Effect.mapError((error) =>
              new CheckpointFailed({
                checkpoint,
                reason: "CommitFailed",
                detail:
                  `checkpoint ${checkpoint} was committed by an earlier attempt of this instance, but reading it back failed: ${error.message}`
              })
            )
          )
          yield* afterCommit(fromLoaded(loaded), 0)
          return yield* Effect.fail(new EarlierAttemptCommitted({ checkpoint }))
        }
        case "other-writer":
          return yield* Effect.fail(
            new CheckpointFailed({
              checkpoint,
              reason: "CommitFailed",
              detail:
                `checkpoint ${checkpoint} was committed by another writer (instance ${found.instanceId}, epoch ${found.epoch})`
            })
          )
      }
    })

  /**
   * Writes the root manifest of `completed` (the commit point) and, once it is known to be in,
   * runs the steps after it and records the report (`committedRef`), uninterruptibly: a deadline
   * interrupts only the commit itself (`restore`), whose outcome a later attempt then resolves.
   */
  const commit = (
    completed: Completed,
    previous: CheckpointNumber,
    bytesUploaded: number,
    toReport: (endMs: number) => CheckpointReport
  ) =>
    Effect.gen(function*() {
      const { checkpoint, files, walPosition } = completed
      const root = Manifest.rootManifest({
        writer: lock,
        checkpoint,
        previous,
        createdAtMs: yield* Clock.currentTimeMillis,
        walPosition,
        files: [...files.values()].map((state) => state.entry),
        commitToken: yield* newCommitToken,
        config
      })
      const problem = Manifest.checkpointManifestProblem(root)
      if (problem !== undefined) {
        return yield* Effect.die(new Error(`checkpoint ${checkpoint}: invariant broken before commit: ${problem}`))
      }
      const rootKey = KeyLayout.checkpointKey(layout, checkpoint)
      const earlierTokens = yield* Ref.getAndUpdate(
        attemptTokensRef,
        (tokens) => new Set([...tokens, root.commitToken])
      )
      return yield* Effect.uninterruptibleMask((restore) =>
        restore(commitRootManifest({
          manifest: root,
          put: writeObject(rootKey, "Manifest", Manifest.encodeCheckpointManifest(root), true),
          readBack: readBackRoot(store, config, checkpoint),
          earlierTokens,
          conflictRetriesMax: config.retryAttemptsMax,
          conflictDelayMs: config.retryDelayBaseMs
        })).pipe(
          Effect.mapError((error) =>
            new CheckpointFailed({ checkpoint, reason: "CommitFailed", detail: `${rootKey}: ${messageOf(error)}` })
          ),
          Effect.flatMap((resolution) =>
            resolution._tag === "Taken"
              ? restore(onTaken(checkpoint, resolution))
              // Committed. Everything after this point is bookkeeping; the checkpoint stands whatever happens.
              : afterCommit(completed, bytesUploaded).pipe(
                Effect.map(toReport),
                Effect.tap((report) => Ref.set(committedRef, Option.some(report)))
              )
          )
        )
      )
    }).pipe(Effect.withSpan("checkpoint.commit", { attributes: { "checkpoint.number": completed.checkpoint } }))

  return commit
}
