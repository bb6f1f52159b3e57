/**
 * RootCommit: the commit point of a checkpoint, a conditional put (`If-None-Match: *`) of its root
 * manifest, with the outcomes the network leaves unknown resolved by reading the key back.
 *
 * A put may reach the bucket and lose its response (a reset or a timeout after the server applied
 * it; its retry then gets 412), it may be cut at shutdown while in flight, and S3 answers 409
 * ConditionalRequestConflict when another conditional write to the key is in progress. None of
 * these says whether the manifest is in. So after any of them the manifest at the key is read back:
 * - it is the attempt's own (same instance, epoch and commit token): committed;
 * - it is another one: `Taken`, with `Manifest.commitOwner` saying whose (an earlier attempt of this
 *   writer, a newer epoch, another writer);
 * - there is none: after a 412/409 (a conflicting write that did not land) the put is retried, at
 *   most `conflictRetriesMax` times; after a transient error the put's error stands (its request may
 *   still land: the next attempt at the same number finds it and adopts it as an earlier attempt's).
 * A read-back that fails leaves the outcome unknown: the put's error stands.
 *
 * Replaces: OrioleDB's commit by two marker objects written with plain PUTs (docs/ORIGINAL.md §5,
 * invariant 4), where a lost response failed the checkpoint whatever the bucket held.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Option, Predicate, Random } from "effect"
import * as Manifest from "../domain/Manifest.js"

/** A fresh commit token: 128 bits from Effect's Random, as 32 hex digits. */
export const newCommitToken: Effect.Effect<string> = Effect.map(
  Effect.all(Array.from({ length: 8 }, () => Random.nextIntBetween(0, 0x10000))),
  (words) => words.map((word) => word.toString(16).padStart(4, "0")).join("")
)

/** How a commit ended, when it ended. */
export type CommitResolution =
  | { readonly _tag: "Committed"; readonly resolvedBy: "response" | "read-back" }
  | {
    readonly _tag: "Taken"
    readonly owner: Exclude<Manifest.CommitOwner, "this-attempt">
    readonly found: Manifest.CheckpointManifest
  }

/** One commit attempt. */
export interface RootCommitAttempt<E> {
  /** The manifest being committed; it carries the attempt's `commitToken`. */
  readonly manifest: Manifest.RootManifest
  /** The conditional put of its bytes (with its own timeouts and retries of transient errors). */
  readonly put: Effect.Effect<void, E>
  /** The manifest at the key now; None when there is none. */
  readonly readBack: Effect.Effect<Option.Option<Manifest.CheckpointManifest>, unknown>
  /** Tokens of this writer's earlier attempts at the same checkpoint. */
  readonly earlierTokens: ReadonlySet<string>
  readonly conflictRetriesMax: number
  readonly conflictDelayMs: number
}

/** Failures after which the put may or may not have been applied. */
const outcomeUnknown = (error: unknown): boolean =>
  ["PreconditionFailed", "ObjectStoreUnavailable", "TaskAborted", "TaskTimeout"].some((tag) =>
    Predicate.isTagged(error, tag)
  )

const isPreconditionFailed = (error: unknown): boolean => Predicate.isTagged(error, "PreconditionFailed")

/** Puts the root manifest and resolves an unknown outcome; see the module comment. */
export const commitRootManifest = <E>(attempt: RootCommitAttempt<E>): Effect.Effect<CommitResolution, E> =>
  Effect.gen(function*() {
    for (let round = 0;; round++) {
      const put = yield* Effect.either(attempt.put)
      if (put._tag === "Right") return { _tag: "Committed", resolvedBy: "response" } as const
      const error = put.left
      if (!outcomeUnknown(error)) return yield* Effect.fail(error)
      const found = yield* Effect.either(attempt.readBack)
      if (found._tag === "Left") return yield* Effect.fail(error)
      if (Option.isSome(found.right)) {
        const manifest = found.right.value
        const owner = Manifest.commitOwner(manifest, attempt.manifest, attempt.earlierTokens)
        return owner === "this-attempt"
          ? ({ _tag: "Committed", resolvedBy: "read-back" } as const)
          : ({ _tag: "Taken", owner, found: manifest } as const)
      }
      if (!isPreconditionFailed(error) || round >= attempt.conflictRetriesMax) return yield* Effect.fail(error)
      yield* Effect.sleep(Duration.millis(attempt.conflictDelayMs * (round + 1)))
    }
  })
