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
 * Generations and the lease. The lock also names the generation of this open (a random nonce per
 * start), so a copy of a live data directory (same instance id) is told apart from a restart. The
 * holder renews the lock every `lockRenewIntervalMs` (the `BucketLock` service): it re-reads it,
 * and finding it gone or naming another instance, epoch or generation, becomes fenced for good
 * (sticky: whatever the lock later says, a fenced instance stays fenced), else rewrites it with a
 * new `renewedAtMs`. A start whose instance id matches the lock under another generation watches
 * it: renewed meanwhile (`renewalsSeenToRefuse` rewrites, each starting the lease again: a crashed
 * open's renewals still on their way land after its death), start-up is refused (BucketLocked);
 * unchanged for the lease (`lockLeaseMs`), the previous open is gone (a crash) and the lock is
 * taken with a higher epoch, like a take-over. A lock of the generation this directory recorded at
 * its last clean stop is not watched: that open renews no more, so any renewal of it is a late one
 * still landing, and the lock is taken at once. An unknown outcome of a lock PUT or DELETE (a lost
 * response) is resolved by reading the lock back: our generation there means the PUT landed; no
 * lock means the DELETE did.
 * A renewal reads the lock, then rewrites it: a predecessor's renewal may so land just after a
 * take-over. Its lock names a lower epoch than the holder's (epochs only grow), so it does not fence
 * the holder, whose next renewal (or release) takes the lock back; nor does it refuse a start that
 * reads it back just after writing its own.
 *
 * Files: the start-up rounds (`acquire`, the lease watch) are in src/internal/bucketLock/acquire.ts,
 * the lock object's read, bytes and ownership rules in src/internal/bucketLock/lockObject.ts; this
 * file holds the running lock: renewals, the sticky fence, the release.
 *
 * Replaces: the lock protocol of OrioleDB's src/s3/control.c (`s3_put_lock_file`, ≤ 10 retries on
 * 409, FATAL otherwise, deleted at postmaster exit; docs/ORIGINAL.md §6), which had no epoch, so a
 * paused old instance could go on writing after another started.
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Either, Option, Ref, type Scope } from "effect"
import { Fenced } from "../domain/Errors.js"
import { type HeldLock, isOursToHold, lockBytes, notHeldDetail, read } from "../internal/bucketLock/lockObject.js"
import type { ObjectStoreService } from "./ObjectStore.js"
import { withRequestPolicy, withRequestTimeout } from "./RequestPolicy.js"
import type { StorageConfigValue } from "./StorageConfig.js"

export {
  acquire,
  acquireRoundsMax,
  leasePollMinMs,
  leaseWaitMaxMs,
  newGeneration,
  renewalsSeenToRefuse
} from "../internal/bucketLock/acquire.js"
export { type HeldLock, isHeldBy, read } from "../internal/bucketLock/lockObject.js"

/** What happened to the lock at shutdown. */
export type ReleaseOutcome = "released" | "not-ours" | "failed"

/**
 * Deletes the lock if it still names this instance, epoch and generation (or a lower epoch, a
 * predecessor's late renewal). Never fails: says what happened. A DELETE whose response is lost is
 * resolved by reading back: gone means released.
 */
export const release = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  lock: HeldLock
): Effect.Effect<ReleaseOutcome> =>
  read(store, config).pipe(
    Effect.flatMap((current) =>
      current !== undefined && isOursToHold(current, lock)
        ? store.delete(lock.key).pipe(
          withRequestPolicy(config, "delete lock", lock.key),
          Effect.as("released" as const),
          Effect.catchAll((error) =>
            Effect.flatMap(read(store, config), (after) =>
              after === undefined
                ? Effect.succeed("released" as const)
                : isOursToHold(after, lock)
                ? Effect.fail(error)
                : Effect.succeed("not-ours" as const))
          )
        )
        : Effect.succeed(current === undefined ? ("released" as const) : ("not-ours" as const))
    ),
    Effect.catchAll(() => Effect.succeed("failed" as const))
  )

/**
 * Fails with Fenced when the lock object is gone or names another instance, epoch or generation
 * than `lock`: a newer instance took the bucket over, or a running instance's lock was deleted
 * under it. An unreadable lock passes (the write that follows fails on its own if the bucket is
 * unreachable; fencing of commits does not depend on this check).
 */
export const verify = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  lock: HeldLock
): Effect.Effect<void, Fenced> =>
  read(store, config).pipe(
    Effect.either,
    Effect.flatMap((current) => {
      const notHeld = Either.isLeft(current) ? undefined : notHeldDetail(current.right, lock)
      return notHeld === undefined ? Effect.void : Effect.fail(new Fenced({ epoch: lock.epoch, detail: notHeld }))
    })
  )

// ---------------------------------------------------------------------------------------------
// The held lock as a service: sticky fence, renewal, release
// ---------------------------------------------------------------------------------------------

/** The lock held by a running Storage. @category models */
export interface BucketLockService {
  readonly lock: HeldLock
  /** The fence, once set: it is never cleared. */
  readonly fenced: Effect.Effect<Option.Option<Fenced>>
  /** Fails with the fence if set; no I/O. */
  readonly ensureNotFenced: Effect.Effect<void, Fenced>
  /** Fenced if set; else reads the lock, and one that is gone or not ours sets the fence. */
  readonly check: Effect.Effect<void, Fenced>
  /** Sets the fence (the first detail stays) and fails with it. */
  readonly fence: (detail: string) => Effect.Effect<never, Fenced>
  /** One renewal: `check`, then the lock rewritten with a new `renewedAtMs`. Transient failures
   * are logged (the next renewal tries again); a release stops renewals. */
  readonly renew: Effect.Effect<void, Fenced>
  /** No renewal starts after this (one in flight ends on its own): a shutdown calls it once it has
   * nothing more to write, so that the release does not wait behind a renewal. */
  readonly stopRenewals: Effect.Effect<void>
  /** Stops renewals and deletes the lock if it is still ours; once (later calls return the first
   * outcome). A fenced holder leaves the lock alone. */
  readonly release: (config: StorageConfigValue) => Effect.Effect<ReleaseOutcome | "left-fenced">
}

/** The lock held by a running Storage. @category tags */
export class BucketLock extends Context.Tag("effect-s3-tier/BucketLock")<BucketLock, BucketLockService>() {}

/** Holds `lock` for the current scope: renews it every `lockRenewIntervalMs` until released or fenced. */
// eslint-disable-next-line max-lines-per-function -- a service's constructor: its operations are small functions sharing one closure, each under a screen
export const make = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  lock: HeldLock
): Effect.Effect<BucketLockService, never, Scope.Scope> =>
  // eslint-disable-next-line max-lines-per-function -- a service's constructor: its operations are small functions sharing one closure, each under a screen
  Effect.gen(function*() {
    const fencedRef = yield* Ref.make(Option.none<Fenced>())
    const releasedRef = yield* Ref.make(Option.none<ReleaseOutcome | "left-fenced">())
    const stoppedRef = yield* Ref.make(false)
    const exclusive = yield* Effect.makeSemaphore(1) // a renewal's PUT never follows the release's DELETE
    const acquiredAtMs = yield* Clock.currentTimeMillis

    const fence = (detail: string): Effect.Effect<never, Fenced> =>
      Ref.modify(fencedRef, (current): readonly [readonly [Fenced, boolean], Option.Option<Fenced>] => {
        if (Option.isSome(current)) return [[current.value, false], current]
        const fresh = new Fenced({ epoch: lock.epoch, detail })
        return [[fresh, true], Option.some(fresh)]
      }).pipe(Effect.flatMap(([fenced, first]) =>
        Effect.zipRight(first ? Effect.logError(`bucket lock: ${fenced.message}`) : Effect.void, Effect.fail(fenced))
      ))
    const ensureNotFenced = Effect.flatMap(
      Ref.get(fencedRef),
      Option.match({
        onNone: () =>
          Effect.void,
        onSome: (fenced) => Effect.fail(fenced)
      })
    )
    const check = Effect.zipRight(
      ensureNotFenced,
      verify(store, config, lock).pipe(Effect.catchTag("Fenced", (error) => fence(error.detail)))
    )

    const renew = exclusive.withPermits(1)(
      Effect.gen(function*() {
        if (Option.isSome(yield* Ref.get(releasedRef)) || (yield* Ref.get(stoppedRef))) {
          return
        }
        yield* ensureNotFenced
        // One attempt per request, as for the PUT below: the next renewal is the retry. The lock is
        // rewritten only after it was read as ours: an unreadable lock may be a newer holder's, and
        // a blind rewrite would take the bucket back from it.
        const current = yield* read(store, { ...config, retryAttemptsMax: 1 }).pipe(Effect.either)
        if (Either.isLeft(current)) {
          return yield* Effect.logWarning(
            `bucket lock: renewal could not read the lock, retried in ${config.lockRenewIntervalMs} ms: ${current.left.message}`
          )
        }
        const notHeld = notHeldDetail(current.right, lock)
        if (notHeld !== undefined) return yield* fence(notHeld)
        const nowMs = yield* Clock.currentTimeMillis
        // The release never waits long behind a renewal.
        yield* store.put(lock.key, lockBytes(config, lock, acquiredAtMs, nowMs)).pipe(
          withRequestTimeout(config, "renew lock", lock.key),
          Effect.catchAll((error) =>
            Effect.logWarning(
              `bucket lock: renewal failed, retried in ${config.lockRenewIntervalMs} ms: ${error.message}`
            )
          )
        )
      })
    )
    yield* Effect.forkScoped(
      Effect.forever(Effect.zipRight(Effect.sleep(Duration.millis(config.lockRenewIntervalMs)), renew)).pipe(
        Effect.catchTag("Fenced", () => Effect.void)
      )
    )

    // The outcome once decided is returned at once, without waiting behind a renewal.
    const releaseWith = (releaseConfig: StorageConfigValue) =>
      Effect.flatMap(
        Ref.get(releasedRef),
        (decided) => Option.isSome(decided) ? Effect.succeed(decided.value) : releaseOnce(releaseConfig)
      )
    const releaseOnce = (releaseConfig: StorageConfigValue) =>
      exclusive.withPermits(1)(
        Effect.gen(function*() {
          const done = yield* Ref.get(releasedRef)
          if (Option.isSome(done)) {
            return done.value
          }
          const outcome = Option.isSome(yield* Ref.get(fencedRef))
            ? ("left-fenced" as const)
            : yield* release(store, releaseConfig, lock)
          yield* Ref.set(releasedRef, Option.some(outcome))
          return outcome
        })
      ).pipe(
        // Cut by its bound: the outcome is "failed", and no later release goes to the bucket.
        Effect.onInterrupt(() =>
          Ref.update(releasedRef, (done) => (Option.isSome(done) ? done : Option.some("failed" as const)))
        )
      )

    return BucketLock.of({
      lock,
      fenced: Ref.get(fencedRef),
      ensureNotFenced,
      check,
      fence,
      renew,
      stopRenewals: Ref.set(stoppedRef, true),
      release: releaseWith
    })
  })
