/**
 * BucketLock: one writing instance per bucket prefix, and the epoch that fences a stale writer.
 *
 * Protocol. At start an instance writes the lock object with `If-None-Match: *`, holding its id and
 * an epoch one above every epoch it has seen. If the object exists and names this instance (a restart
 * after a crash), it proceeds with that epoch. If it names another instance, start-up is refused with
 * BucketLocked, unless the caller takes over (`takeOver`, for an instance known to be dead): then the
 * lock is overwritten with an epoch above the old holder's, and the Loader claims the next checkpoint
 * number with a manifest of the new epoch, so that the old holder's next commit finds that number
 * taken by a newer epoch and fails with Fenced. At clean shutdown the lock is deleted, but only if it
 * still names this instance and epoch.
 *
 * Replaces: the lock protocol of OrioleDB's src/s3/control.c (`s3_put_lock_file`, ≤ 10 retries on
 * 409, FATAL otherwise, deleted at postmaster exit; orioledb-s3.md §6), which had no epoch, so a
 * paused old instance could go on writing after another started.
 *
 * @since 0.1.0
 */
import { Clock, Effect, Either } from "effect"
import * as Control from "../domain/Control.js"
import { BucketLocked, CorruptObject, Fenced, type ObjectStoreError } from "../domain/Errors.js"
import { Epoch, type InstanceId } from "../domain/Ids.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import type { ObjectStoreService } from "./ObjectStore.js"
import { withRequestPolicy } from "./RequestPolicy.js"
import type { StorageConfigValue } from "./StorageConfig.js"

/** The lock this instance holds. */
export interface HeldLock {
  readonly key: string
  readonly instanceId: InstanceId
  readonly epoch: Epoch
  /** True when this start overwrote another instance's lock. */
  readonly tookOver: boolean
  /** True when the lock object was created by this start (false: it was already ours). */
  readonly created: boolean
}

/** Reads the lock object, if any. */
export const read = (store: ObjectStoreService, config: StorageConfigValue): Effect.Effect<Control.LockObject | undefined, ObjectStoreError | CorruptObject> => {
  const key = KeyLayout.lockKey(StorageConfigLayout(config))
  return store.get(key).pipe(
    withRequestPolicy(config, "read lock", key),
    Effect.flatMap((bytes) => Control.decodeLock(key, bytes)),
    Effect.catchTag("ObjectNotFound", () => Effect.succeed(undefined))
  )
}

const StorageConfigLayout = (config: StorageConfigValue): KeyLayout.KeyLayout => ({ prefix: config.prefix })

/**
 * Acquires the lock for `instanceId`; `seenEpoch` is the highest epoch this instance knows of (the
 * bucket's latest manifest). Bounded: at most three rounds of put-then-read.
 */
export const acquire = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  instanceId: InstanceId,
  seenEpoch: number
): Effect.Effect<HeldLock, ObjectStoreError | CorruptObject | BucketLocked> =>
  Effect.gen(function* () {
    const key = KeyLayout.lockKey(StorageConfigLayout(config))
    const put = (epoch: number, ifNoneMatch: boolean) =>
      Clock.currentTimeMillis.pipe(
        Effect.flatMap((now) =>
          store.put(key, Control.encodeLock({ format: Control.lockFormat, instanceId, epoch: Epoch.make(epoch), acquiredAtMs: now }), { ifNoneMatch })
        ),
        withRequestPolicy(config, "write lock", key)
      )
    for (let round = 0; round < 3; round++) {
      const epoch = seenEpoch + 1
      const created = yield* put(epoch, true).pipe(
        Effect.as(true),
        Effect.catchTag("PreconditionFailed", () => Effect.succeed(false))
      )
      if (created) return { key, instanceId, epoch: Epoch.make(epoch), tookOver: false, created: true }
      const existing = yield* read(store, config).pipe(
        Effect.map(Either.right),
        Effect.catchTag("CorruptObject", (error) => Effect.succeed(Either.left(error)))
      )
      if (Either.isRight(existing) && existing.right === undefined) continue // released meanwhile: try again
      if (Either.isRight(existing) && existing.right !== undefined && existing.right.instanceId === instanceId) {
        return { key, instanceId, epoch: existing.right.epoch, tookOver: false, created: false }
      }
      if (!config.takeOver) {
        if (Either.isLeft(existing)) return yield* Effect.fail(existing.left)
        const holder = existing.right
        // Checked above: holder is defined here (the undefined case `continue`d).
        return yield* Effect.fail(new BucketLocked({ key, holder: holder?.instanceId ?? "unknown", epoch: holder?.epoch ?? 0 }))
      }
      const heldEpoch = Either.isRight(existing) && existing.right !== undefined ? existing.right.epoch : 0
      const takeOverEpoch = Math.max(heldEpoch, seenEpoch) + 1
      yield* put(takeOverEpoch, false)
      return { key, instanceId, epoch: Epoch.make(takeOverEpoch), tookOver: true, created: true }
    }
    return yield* Effect.fail(new BucketLocked({ key, holder: "unknown (the lock changed hands three times during start-up)", epoch: 0 }))
  })

/** What happened to the lock at shutdown. */
export type ReleaseOutcome = "released" | "not-ours" | "failed"

/** Deletes the lock if it still names this instance and epoch. Never fails: says what happened. */
export const release = (store: ObjectStoreService, config: StorageConfigValue, lock: HeldLock): Effect.Effect<ReleaseOutcome> =>
  read(store, config).pipe(
    Effect.flatMap((current) =>
      current !== undefined && current.instanceId === lock.instanceId && current.epoch === lock.epoch
        ? store.delete(lock.key).pipe(withRequestPolicy(config, "delete lock", lock.key), Effect.as("released" as const))
        : Effect.succeed(current === undefined ? ("released" as const) : ("not-ours" as const))
    ),
    Effect.catchAll(() => Effect.succeed("failed" as const))
  )

/**
 * Fails with Fenced when the lock object names another instance or epoch than `lock`: a newer
 * instance took the bucket over. An unreadable or absent lock passes (the write that follows fails
 * on its own if the bucket is unreachable; fencing of commits does not depend on this check).
 */
export const verify = (store: ObjectStoreService, config: StorageConfigValue, lock: HeldLock): Effect.Effect<void, Fenced> =>
  read(store, config).pipe(
    Effect.catchAll(() => Effect.succeed(undefined)),
    Effect.flatMap((current) =>
      current !== undefined && (current.instanceId !== lock.instanceId || current.epoch !== lock.epoch)
        ? Effect.fail(new Fenced({ epoch: lock.epoch, detail: `the lock object names instance ${current.instanceId} at epoch ${current.epoch}` }))
        : Effect.void
    )
  )
