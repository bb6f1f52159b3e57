/**
 * A garbage-collection pass's writes (steps d and h of the pass described in
 * src/services/GarbageCollector.ts): the tombstones over expiring checkpoints, then the deletes,
 * bounded in concurrency and by the caller's deadline, each checking the writer's fence first.
 *
 * Replaces: nothing in OrioleDB, which deletes nothing (its issue #334).
 *
 * @internal
 * @since 0.2.0
 */
import { Duration, Effect, Either, Option, Ref } from "effect"
import type { Fenced, GcFailed } from "../../domain/Errors.js"
import * as KeyLayout from "../../domain/KeyLayout.js"
import * as Manifest from "../../domain/Manifest.js"
import * as Retention from "../../domain/Retention.js"
import type { ExpiredCache, GcFence, Tally } from "../../services/GarbageCollector.js"
import type { ObjectInfo, ObjectStoreService } from "../../services/ObjectStore.js"
import { withRequestPolicy } from "../../services/RequestPolicy.js"
import { keyLayout, type StorageConfigValue } from "../../services/StorageConfig.js"
import { add, emptyKinds } from "./plan.js"
import { failed, readLease, summaryOf } from "./read.js"

export const writeTombstones = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  manifests: ReadonlyArray<Manifest.CheckpointManifest>,
  nowMs: number,
  cache: ExpiredCache
): Effect.Effect<void, GcFailed> => {
  const layout = keyLayout(config)
  return Effect.forEach(
    manifests,
    (manifest) => {
      const key = KeyLayout.checkpointKey(layout, manifest.checkpoint)
      const tombstone = Manifest.expiredCheckpointOf(manifest, nowMs)
      return store.put(key, Manifest.encodeExpiredCheckpoint(tombstone)).pipe(
        withRequestPolicy(config, "gc expire checkpoint", key),
        Effect.mapError(failed(`writing the tombstone ${key}`)),
        Effect.zipRight(
          Ref.update(
            cache,
            (current) => new Map([...current, [manifest.checkpoint, summaryOf({ _tag: "Expired", tombstone })]])
          )
        )
      )
    },
    { concurrency: Math.min(config.workerCount, 16), discard: true }
  )
}

/** One object to delete. */
export interface Doomed {
  readonly info: ObjectInfo
  readonly kind: Retention.ObjectKind
}

/** Deletes one object; a lease only if it is still expired when read again. True when deleted. */
export const deleteOne = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  doomed: Doomed,
  nowMs: number
): Effect.Effect<boolean> => {
  const key = doomed.info.key
  const recheck: Effect.Effect<boolean> = doomed.kind !== "lease"
    ? Effect.succeed(true)
    : Effect.map(
      Effect.either(readLease(store, config, key)),
      (read) =>
        Either.isRight(read) && Option.isSome(read.right) &&
        !Retention.leaseLive(
          {
            id: read.right.value.id,
            checkpoint: read.right.value.checkpoint,
            expiresAtMs: read.right.value.expiresAtMs
          },
          nowMs,
          config.readerLeaseSkewMs
        )
    )
  return Effect.flatMap(recheck, (still) =>
    still
      ? store.delete(key).pipe(
        withRequestPolicy(config, "gc delete", key),
        Effect.as(true),
        Effect.catchAll((error) =>
          Effect.as(
            Effect.logWarning(`gc: deleting ${key} failed (the next pass tries again): ${error.message}`),
            false
          )
        )
      )
      : Effect.succeed(false))
}

export const deleteAll = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  doomed: ReadonlyArray<Doomed>,
  fence: GcFence | undefined,
  nowMs: number,
  deadlineMs: number | undefined
): Effect.Effect<
  { readonly deleted: Record<Retention.ObjectKind, Tally>; readonly failures: number; readonly complete: boolean },
  Fenced
> =>
  Effect.gen(function*() {
    const tallies = yield* Ref.make({ deleted: emptyKinds(), failures: 0 })
    const each = (item: Doomed) =>
      Effect.zipRight(
        fence?.ensureNotFenced ?? Effect.void,
        Effect.flatMap(deleteOne(store, config, item, nowMs), (done) =>
          Ref.update(tallies, (current) =>
            done
              ? {
                ...current,
                deleted: { ...current.deleted, [item.kind]: add(current.deleted[item.kind], item.info.sizeBytes) }
              }
              : { ...current, failures: current.failures + (item.kind === "lease" ? 0 : 1) }))
      )
    const all = Effect.forEach(doomed, each, { concurrency: config.gcConcurrency, discard: true })
    const finished = deadlineMs === undefined
      ? yield* Effect.as(all, true)
      : Option.isSome(yield* Effect.timeoutOption(all, Duration.millis(deadlineMs)))
    const final = yield* Ref.get(tallies)
    return { deleted: final.deleted, failures: final.failures, complete: finished }
  })
