/**
 * The start-up side of the bucket lock: `acquire`'s rounds of create-only PUT and read-back, the
 * decision on a lock it lost to (retry, refuse, overwrite, or watch another open's lease), and the
 * lease watch. The protocol is described in src/services/BucketLock.ts, which re-exports `acquire`.
 *
 * Replaces: `s3_put_lock_file`'s start-up in OrioleDB's src/s3/control.c (≤ 10 retries on 409,
 * FATAL otherwise; docs/ORIGINAL.md §6).
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Either, Random } from "effect"
import type * as Control from "../../domain/Control.js"
import { BucketLocked, type CorruptObject, type ObjectStoreError } from "../../domain/Errors.js"
import { Epoch, type InstanceId } from "../../domain/Ids.js"
import * as KeyLayout from "../../domain/KeyLayout.js"
import type { ObjectStoreService } from "../../services/ObjectStore.js"
import { withRequestPolicy } from "../../services/RequestPolicy.js"
import { keyLayout, type StorageConfigValue } from "../../services/StorageConfig.js"
import { describeLock, type HeldLock, isOursToHold, lockBytes, read, sameContent } from "./lockObject.js"

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
    const holder = describeLock(observed)
    yield* Effect.logInfo(
      `bucket lock: ${holder} is another open of this instance; waiting up to ${leaseMs} ms for its lease`
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
        `bucket lock: ${describeLock(current.right)} was rewritten (${renewals} of ${renewalsSeenToRefuse} ` +
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
      holder: current === undefined ? "unknown (the lock vanished while it was taken)" : describeLock(current),
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
          holder: `${describeLock(watched.renewed)} (another open of this data directory, renewing its lease)`,
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
