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
 * Replaces: the lock protocol of OrioleDB's src/s3/control.c (`s3_put_lock_file`, ≤ 10 retries on
 * 409, FATAL otherwise, deleted at postmaster exit; docs/ORIGINAL.md §6), which had no epoch, so a
 * paused old instance could go on writing after another started.
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Either, Option, Random, Ref, type Scope } from "effect"
import * as Control from "../domain/Control.js"
import { BucketLocked, CorruptObject, Fenced, type ObjectStoreError } from "../domain/Errors.js"
import { Epoch, type InstanceId } from "../domain/Ids.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import type { ObjectStoreService } from "./ObjectStore.js"
import { withRequestPolicy, withRequestTimeout } from "./RequestPolicy.js"
import { keyLayout, type StorageConfigValue } from "./StorageConfig.js"

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

/**
 * Rounds of put-then-read in `acquire`. A round decides unless the lock it lost to was gone when
 * read back (released meanwhile) or gone at the end of its lease wait; three rounds leave room for
 * two such holders stopping while this one starts. Each round waits at most once for a lease (the
 * lock's own, else `lockLeaseMs`; at most `leaseWaitMaxMs`), its requests bounded by the request
 * policy.
 */
export const acquireRoundsMax = 3

/** The longest lease wait: the largest `lockLeaseMs` the configuration allows. A lock that claims a
 * longer lease (written by another configuration) is not waited for longer. */
export const leaseWaitMaxMs = 3_600_000

/** The shortest poll of a watched lease: the smallest `lockRenewIntervalMs` the configuration allows. */
export const leasePollMinMs = 10

/**
 * Rewrites of a watched lock after which its open counts as alive. A live open renews at least
 * three times a lease (`lockLeaseMs` >= 3 x `lockRenewIntervalMs`); a crashed open's renewals that
 * were on their way when it died land once or twice after. Whatever the count, a lock is taken only
 * after a full lease with no rewrite, so a live open is never taken for a dead one.
 */
export const renewalsSeenToRefuse = 3

/** A fresh generation nonce: 16 random hex digits (Effect's Random, so a seed decides it in tests). */
export const newGeneration: Effect.Effect<string> = Effect.map(
  Effect.all(Array.from({ length: 4 }, () => Random.nextIntBetween(0, 0x10000))),
  (words) => `g${words.map((word) => word.toString(16).padStart(4, "0")).join("")}`
)

/** The lock object names exactly this holder: instance, epoch and generation. */
export const isHeldBy = (
  current: Control.LockObject,
  lock: { readonly instanceId: InstanceId; readonly epoch: Epoch; readonly generation: string | undefined }
): boolean =>
  current.instanceId === lock.instanceId && current.epoch === lock.epoch && current.generation === lock.generation

const describe = (lock: Control.LockObject): string =>
  `instance ${lock.instanceId} at epoch ${lock.epoch}, generation ${lock.generation ?? "unknown"}`

const sameContent = (left: Control.LockObject, right: Control.LockObject): boolean =>
  isHeldBy(left, { instanceId: right.instanceId, epoch: right.epoch, generation: right.generation }) &&
  left.acquiredAtMs === right.acquiredAtMs && left.renewedAtMs === right.renewedAtMs

const lockBytes = (
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

/** What a start sees while it waits for another open's lease. */
type LeaseWatch = "expired" | "gone" | { readonly renewed: Control.LockObject }

/**
 * Watches a lock of another open for its lease (`leaseMs` of the lock, else the configuration's),
 * on this process's clock: unchanged for that long, it has expired; rewritten
 * `renewalsSeenToRefuse` times, its holder lives. A rewrite short of that starts the lease again.
 * An unreadable lock counts as unchanged (the holder renews only if it reaches the bucket).
 */
const watchLease = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  observed: Control.LockObject
): Effect.Effect<LeaseWatch> =>
  Effect.gen(function*() {
    const leaseMs = Math.min(observed.leaseMs ?? config.lockLeaseMs, leaseWaitMaxMs)
    const pollMs = Math.max(leasePollMinMs, Math.min(config.lockRenewIntervalMs, Math.floor(leaseMs / 4)))
    let untilMs = (yield* Clock.currentTimeMillis) + leaseMs
    let last = observed
    let renewals = 0
    yield* Effect.logInfo(
      `bucket lock: ${describe(observed)} is another open of this instance; waiting up to ${leaseMs} ms for its lease`
    )
    for (;;) {
      const leftMs = untilMs - (yield* Clock.currentTimeMillis)
      if (leftMs <= 0) return "expired" as const
      yield* Effect.sleep(Duration.millis(Math.min(pollMs, leftMs)))
      const current = yield* Effect.either(read(store, config))
      if (Either.isLeft(current)) continue
      if (current.right === undefined) return "gone" as const
      if (sameContent(current.right, last)) continue
      if (++renewals >= renewalsSeenToRefuse) return { renewed: current.right }
      yield* Effect.logInfo(
        `bucket lock: ${describe(current.right)} was rewritten (${renewals} of ${renewalsSeenToRefuse} ` +
          `rewrites that show a live open); waiting ${leaseMs} ms for its lease again`
      )
      last = current.right
      untilMs = (yield* Clock.currentTimeMillis) + leaseMs
    }
  })

/** One start's attempt at the lock: who it is, and what it has seen. */
interface Starter {
  readonly store: ObjectStoreService
  readonly config: StorageConfigValue
  readonly key: string
  readonly instanceId: InstanceId
  readonly generation: string
  /** The highest epoch this instance knows of (the bucket's latest manifest, its control file). */
  readonly seenEpoch: number
  /** The lock generation of this directory's open that stopped cleanly last, if recorded. */
  readonly stoppedGeneration: string | undefined
}

/** A lock of the open that stopped cleanly: whatever renewal of it is seen landed late. */
const isStopped = (starter: Starter, lock: Control.LockObject): boolean =>
  lock.generation !== undefined && lock.generation === starter.stoppedGeneration

const heldBy = (starter: Starter, epoch: number, tookOver: boolean): HeldLock => ({
  key: starter.key,
  instanceId: starter.instanceId,
  epoch: Epoch.make(epoch),
  generation: starter.generation,
  tookOver,
  created: true
})

/**
 * Writes the lock at `epoch` (create-only with `ifNoneMatch`): "written", or "exists" (the
 * conditional put lost). A lost or timed-out response leaves the outcome unknown: the lock read back
 * decides (our generation: it landed).
 */
const putLock = (
  starter: Starter,
  epoch: number,
  ifNoneMatch: boolean
): Effect.Effect<"written" | "exists", ObjectStoreError | CorruptObject> => {
  const { config, generation, instanceId, key, store } = starter
  return Clock.currentTimeMillis.pipe(
    Effect.flatMap((now) =>
      store.put(key, lockBytes(config, { instanceId, epoch: Epoch.make(epoch), generation }, now, now), { ifNoneMatch })
    ),
    withRequestPolicy(config, "write lock", key),
    Effect.as("written" as const),
    Effect.catchTag("PreconditionFailed", () => Effect.succeed("exists" as const)),
    Effect.catchTag(
      "ObjectStoreUnavailable",
      (error) =>
        Effect.flatMap(read(store, config), (current) =>
          current === undefined
            ? Effect.fail(error)
            : Effect.succeed(current.generation === generation ? ("written" as const) : ("exists" as const)))
    )
  )
}

/** Overwrites a lock that is not (or no longer) held, then confirms that ours is the one there. A
 * lock of a lower epoch read back is a predecessor's late renewal that landed after our PUT: it
 * does not lock us out (as for a holder, see `notHeldDetail`), and our first renewal rewrites it. */
const overwrite = (
  starter: Starter,
  epoch: number
): Effect.Effect<HeldLock, ObjectStoreError | CorruptObject | BucketLocked> =>
  Effect.gen(function*() {
    yield* putLock(starter, epoch, false)
    const current = yield* read(starter.store, starter.config)
    const held = heldBy(starter, epoch, true)
    if (current !== undefined && isOursToHold(current, held)) return held
    return yield* new BucketLocked({
      key: starter.key,
      holder: current === undefined ? "unknown (the lock vanished while it was taken)" : describe(current),
      epoch: current?.epoch ?? 0
    })
  })

/** What a round found in the lock it lost to: the lock, none (released meanwhile), or one it cannot decode. */
type Found = Either.Either<Control.LockObject | undefined, CorruptObject>

/** What a round does with the lock it lost to: the lock held, or "retry" (it was released meanwhile). */
const decide = (
  starter: Starter,
  found: Found
): Effect.Effect<HeldLock | "retry", ObjectStoreError | CorruptObject | BucketLocked> =>
  Effect.gen(function*() {
    const { config, key, seenEpoch } = starter
    if (Either.isLeft(found)) {
      return yield* config.takeOver
        ? overwrite(starter, seenEpoch + 1)
        : Effect.fail(found.left)
    }
    const holder = found.right
    if (holder === undefined) return "retry" as const
    // An earlier attempt of this start landed although its response was lost.
    if (holder.generation === starter.generation) return heldBy(starter, holder.epoch, false)
    if (holder.instanceId === starter.instanceId) {
      // Another open of this instance: a crashed run (its lease runs out) or a live copy of the
      // data directory (it renews); or the open that stopped cleanly, whose renewals only land late.
      const watched = isStopped(starter, holder) ? "expired" : yield* watchLease(starter.store, config, holder)
      if (watched === "gone") return "retry" as const
      if (watched !== "expired" && !isStopped(starter, watched.renewed)) {
        return yield* new BucketLocked({
          key,
          holder: `${describe(watched.renewed)} (another open of this data directory, renewing its lease)`,
          epoch: watched.renewed.epoch
        })
      }
      return yield* overwrite(starter, Math.max(holder.epoch, seenEpoch) + 1)
    }
    // The bucket's latest checkpoint was committed at a higher epoch than this lock names: a
    // take-over superseded its holder, which is fenced. Its lock is back only because a late
    // renewal (read before the take-over, written after the new owner released) resurrected it.
    if (holder.epoch < seenEpoch) return yield* overwrite(starter, seenEpoch + 1)
    if (!config.takeOver) return yield* new BucketLocked({ key, holder: holder.instanceId, epoch: holder.epoch })
    return yield* overwrite(starter, Math.max(holder.epoch, seenEpoch) + 1)
  })

/**
 * Acquires the lock for `instanceId` under `generation`; `seenEpoch` is the highest epoch this
 * instance knows of (the bucket's latest manifest); `stoppedGeneration` the generation of this
 * directory's last open, if it stopped cleanly (Control.stoppedLockGeneration). Bounded: at most
 * `acquireRoundsMax` rounds of put-then-read, each with at most one lease wait.
 */
export const acquire = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  instanceId: InstanceId,
  seenEpoch: number,
  generation: string,
  stoppedGeneration?: string
): Effect.Effect<HeldLock, ObjectStoreError | CorruptObject | BucketLocked> =>
  Effect.gen(function*() {
    const starter: Starter = {
      store,
      config,
      key: KeyLayout.lockKey(keyLayout(config)),
      instanceId,
      generation,
      seenEpoch,
      stoppedGeneration
    }
    for (let round = 0; round < acquireRoundsMax; round++) {
      const epoch = seenEpoch + 1
      if ((yield* putLock(starter, epoch, true)) === "written") return heldBy(starter, epoch, false)
      const found: Found = yield* read(store, config).pipe(
        Effect.map(Either.right),
        Effect.catchTag("CorruptObject", (error) => Effect.succeed(Either.left(error)))
      )
      const decided = yield* decide(starter, found)
      if (decided !== "retry") return decided
    }
    return yield* new BucketLocked({
      key: starter.key,
      holder: `unknown (the lock changed hands ${acquireRoundsMax} times during start-up)`,
      epoch: 0
    })
  })

/** What happened to the lock at shutdown. */
export type ReleaseOutcome = "released" | "not-ours" | "failed"

/** The lock object is `lock`'s, or a predecessor's late renewal over it (see `notHeldDetail`). */
const isOursToHold = (current: Control.LockObject, lock: HeldLock): boolean =>
  isHeldBy(current, lock) || current.epoch < lock.epoch

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

/**
 * Why the lock object read is not `lock`'s (the fence's detail), or undefined when it is. A lock of
 * a lower epoch is not a take-over (every take-over and every expired lease takes a higher epoch):
 * it is a predecessor's renewal that read the lock as its own before this holder took it and wrote
 * after (a read and a PUT, two requests); it does not fence, and the next renewal rewrites ours.
 */
const notHeldDetail = (current: Control.LockObject | undefined, lock: HeldLock): string | undefined =>
  current === undefined
    ? "the lock object is gone: another instance took the bucket over and released it"
    : isOursToHold(current, lock)
    ? undefined
    : `the lock object names ${describe(current)}`

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
