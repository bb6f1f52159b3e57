/**
 * WalFence: the check made before every WAL segment upload, so that a superseded (fenced) instance
 * that is still running stops archiving. Optional: the Storage layer provides it from the bucket lock.
 *
 * Replaces: nothing in OrioleDB, whose archiver uploaded whatever instance ran it (no fencing).
 *
 * @since 0.1.0
 */
import { Context, type Effect } from "effect"
import type { Fenced } from "../domain/Errors.js"

/**
 * Optional: checked before every segment upload, so a superseded (fenced) instance that is still
 * running stops archiving (its copies, keyed by its own epoch, could not replace the new writer's
 * anyway). The Storage layer provides it from the bucket lock. @category tags
 */
export class WalFence
  extends Context.Tag("effect-s3-tier/WalFence")<WalFence, { readonly check: Effect.Effect<void, Fenced> }>()
{}
