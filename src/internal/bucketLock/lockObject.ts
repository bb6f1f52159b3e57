/**
 * The bucket's lock object as this instance reads and writes it: the lock held (`HeldLock`), the
 * read, its bytes, and the rules that tell a holder's own lock (or a predecessor's late renewal
 * over it) from another holder's. Shared by the start-up protocol (`acquire.ts`) and the held
 * lock's renewals and release (src/services/BucketLock.ts, where the protocol is described).
 *
 * Replaces: the lock file of OrioleDB's src/s3/control.c (`s3_put_lock_file`), which held no epoch
 * or generation.
 *
 * @since 0.1.0
 */
import { Effect, Either } from "effect"
import * as Control from "../../domain/Control.js"
import type { CorruptObject, ObjectStoreError } from "../../domain/Errors.js"
import type { Epoch, InstanceId } from "../../domain/Ids.js"
import * as KeyLayout from "../../domain/KeyLayout.js"
import type { ObjectStoreService } from "../../services/ObjectStore.js"
import { withRequestPolicy } from "../../services/RequestPolicy.js"
import { keyLayout, type StorageConfigValue } from "../../services/StorageConfig.js"

/** The lock this instance holds. */
export interface HeldLock {
  readonly key: string
  readonly instanceId: InstanceId
  readonly epoch: Epoch
  /** The nonce of this open: two opens of one instance id never share it. */
  readonly generation: string
  /** True when this start overwrote a lock of another instance or of an expired earlier open. */
  readonly tookOver: boolean
  /** True when the lock object was created by this start (false: it was already ours). */
  readonly created: boolean
}

/** Reads the lock object, if any. */
export const read = (
  store: ObjectStoreService,
  config: StorageConfigValue
): Effect.Effect<Control.LockObject | undefined, ObjectStoreError | CorruptObject> => {
  const key = KeyLayout.lockKey(keyLayout(config))
  return store.get(key).pipe(
    withRequestPolicy(config, "read lock", key),
    Effect.flatMap((bytes) =>
      Either.match(Control.decodeLock(key, bytes), { onLeft: Effect.fail, onRight: Effect.succeed })
    ),
    Effect.catchTag("ObjectNotFound", () => Effect.succeed(undefined))
  )
}

/** The lock object names exactly this holder: instance, epoch and generation. */
export const isHeldBy = (
  current: Control.LockObject,
  lock: { readonly instanceId: InstanceId; readonly epoch: Epoch; readonly generation: string | undefined }
): boolean =>
  current.instanceId === lock.instanceId && current.epoch === lock.epoch && current.generation === lock.generation

export const describeLock = (lock: Control.LockObject): string =>
  `instance ${lock.instanceId} at epoch ${lock.epoch}, generation ${lock.generation ?? "unknown"}`

export const sameContent = (left: Control.LockObject, right: Control.LockObject): boolean =>
  isHeldBy(left, { instanceId: right.instanceId, epoch: right.epoch, generation: right.generation }) &&
  left.acquiredAtMs === right.acquiredAtMs && left.renewedAtMs === right.renewedAtMs

export const lockBytes = (
  config: StorageConfigValue,
  holder: Pick<HeldLock, "instanceId" | "epoch" | "generation">,
  acquiredAtMs: number,
  nowMs: number
) =>
  Control.encodeLock({
    format: Control.lockFormat,
    instanceId: holder.instanceId,
    epoch: holder.epoch,
    acquiredAtMs,
    generation: holder.generation,
    renewedAtMs: nowMs,
    leaseMs: config.lockLeaseMs
  })

/** The lock object is `lock`'s, or a predecessor's late renewal over it (see `notHeldDetail`). */
export const isOursToHold = (current: Control.LockObject, lock: HeldLock): boolean =>
  isHeldBy(current, lock) || current.epoch < lock.epoch

/**
 * Why the lock object read is not `lock`'s (the fence's detail), or undefined when it is. A lock of
 * a lower epoch is not a take-over (every take-over and every expired lease takes a higher epoch):
 * it is a predecessor's renewal that read the lock as its own before this holder took it and wrote
 * after (a read and a PUT, two requests); it does not fence, and the next renewal rewrites ours.
 */
export const notHeldDetail = (current: Control.LockObject | undefined, lock: HeldLock): string | undefined =>
  current === undefined
    ? "the lock object is gone: another instance took the bucket over and released it"
    : isOursToHold(current, lock)
    ? undefined
    : `the lock object names ${describeLock(current)}`
