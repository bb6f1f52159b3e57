/**
 * Goal: the bucket lock keeps one writer per bucket across crashes, copies of a live data directory,
 * take-overs and lost responses. Method: the lock functions and the held-lock service over the
 * in-memory bucket (behind the fault decorator where a response is lost); the lease on the
 * TestClock (`it.effect` + `TestClock.adjust`), lost responses live with millisecond retries.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Fiber, Option, Ref, Scope, TestClock } from "effect"
import * as Control from "../../src/domain/Control.js"
import { ObjectNotFound } from "../../src/domain/Errors.js"
import * as Ids from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as FaultyObjectStore from "../../src/layers/FaultyObjectStore.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as BucketLock from "../../src/services/BucketLock.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"

const config: StorageConfig.StorageConfigValue = Either.getOrThrow(
  StorageConfig.validate({
    requestTimeoutMs: 200,
    retryAttemptsMax: 3,
    retryDelayBaseMs: 5,
    retryDelayMaxMs: 20,
    retryElapsedMaxMs: 500,
    lockRenewIntervalMs: 100,
    lockLeaseMs: 1_000
  })
)
const lockKey = KeyLayout.lockKey(KeyLayout.make(""))
const instance = Ids.InstanceId.make("i-one")

const setup = Effect.gen(function*() {
  const state = yield* MemoryObjectStore.makeBucket("lock-test")
  const { controller, store } = yield* FaultyObjectStore.make(MemoryObjectStore.storeOf(state), { seed: 1 })
  return { bucket: MemoryObjectStore.inspect(state), store, faults: controller }
})

const lockIn = (bucket: MemoryObjectStore.MemoryBucketService) =>
  Effect.flatMap(
    bucket.read(lockKey),
    (bytes) => (Option.isNone(bytes) ? Effect.succeed(undefined) : Control.decodeLock(lockKey, bytes.value))
  )

/** A lock another open left: its holder wrote it once and never again (a crash). */
const leftLock = (generation: string, epoch = 3, renewedAtMs = 0): Uint8Array =>
  Control.encodeLock({
    format: Control.lockFormat,
    instanceId: instance,
    epoch: Ids.epoch(epoch),
    acquiredAtMs: 0,
    generation,
    renewedAtMs,
    leaseMs: config.lockLeaseMs
  })

describe("BucketLock: generations and the lease", () => {
  it.scoped("a start of the same instance under another generation is refused while that open renews its lease (a copy of a live directory)", () =>
    Effect.gen(function*() {
      const { store } = yield* setup
      const original = yield* BucketLock.acquire(store, config, instance, 0, "g-original")
      yield* BucketLock.make(store, config, original) // renews every 100 ms
      const copy = yield* Effect.fork(Effect.either(BucketLock.acquire(store, config, instance, 0, "g-copy")))
      yield* TestClock.adjust(config.lockLeaseMs + config.lockRenewIntervalMs)
      const outcome = yield* Fiber.join(copy)
      assert.isTrue(
        Either.isLeft(outcome) && outcome.left._tag === "BucketLocked",
        `the copy was admitted: ${String(outcome)}`
      )
    }))

  it.effect("a lock left by a crashed open of this instance is taken once its lease ran out, without takeOver, at a higher epoch", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* setup
      yield* bucket.write(lockKey, leftLock("g-crashed"))
      const restart = yield* Effect.fork(BucketLock.acquire(store, config, instance, 1, "g-restart"))
      yield* TestClock.adjust(config.lockLeaseMs - 200)
      assert.isTrue(Option.isNone(yield* restart.poll), "the restart waits for the lease")
      yield* TestClock.adjust(400)
      const held = yield* Fiber.join(restart)
      assert.strictEqual(held.generation, "g-restart")
      assert.strictEqual(held.epoch, 4)
      assert.isTrue(held.tookOver, "the next checkpoint number is claimed, as after a take-over")
      const now = yield* lockIn(bucket)
      assert.strictEqual(now?.generation, "g-restart")
    }))

  it.effect("a crashed open's renewal landing after its death restarts the lease wait instead of refusing the restart", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* setup
      yield* bucket.write(lockKey, leftLock("g-crashed"))
      const restart = yield* Effect.fork(BucketLock.acquire(store, config, instance, 1, "g-restart"))
      yield* TestClock.adjust(300)
      // The renewal the crashed open sent just before it died lands now, once.
      yield* bucket.write(lockKey, leftLock("g-crashed", 3, 250))
      yield* TestClock.adjust(config.lockLeaseMs - 100)
      assert.isTrue(
        Option.isNone(yield* restart.poll),
        "the restart waits a full lease after the rewrite (neither refused nor done)"
      )
      yield* TestClock.adjust(200)
      const held = yield* Fiber.join(restart)
      assert.deepStrictEqual([held.generation, held.epoch, held.tookOver], ["g-restart", 4, true])
    }))

  it.effect("the lock of this directory's open that stopped cleanly is taken at once: its renewals can only land late", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* setup
      yield* bucket.write(lockKey, leftLock("g-stopped"))
      const restart = yield* Effect.fork(BucketLock.acquire(store, config, instance, 1, "g-restart", "g-stopped"))
      yield* TestClock.adjust(1)
      const done = yield* restart.poll
      assert.isTrue(Option.isSome(done), "the restart waited for the stopped open's lease")
      const held = yield* Fiber.join(restart)
      assert.deepStrictEqual([held.generation, held.epoch, held.tookOver], ["g-restart", 4, true])
      // The stopped open's renewal that was on the wire lands now: a lower epoch, not a fence.
      yield* bucket.write(lockKey, leftLock("g-stopped"))
      const service = yield* BucketLock.make(store, config, held).pipe(Scope.extend(yield* Scope.make()))
      yield* TestClock.adjust(config.lockRenewIntervalMs)
      assert.isTrue(Option.isNone(yield* service.fenced), "the holder is not fenced by the late renewal")
      assert.strictEqual((yield* lockIn(bucket))?.generation, "g-restart", "its renewal took the lock back")
    }))

  it.scoped("a live open of another generation is still watched and refused when a stopped generation is known", () =>
    Effect.gen(function*() {
      const { store } = yield* setup
      const original = yield* BucketLock.acquire(store, config, instance, 0, "g-original")
      yield* BucketLock.make(store, config, original)
      const copy = yield* Effect.fork(
        Effect.either(BucketLock.acquire(store, config, instance, 0, "g-copy", "g-stopped-long-ago"))
      )
      yield* TestClock.adjust(config.lockLeaseMs + config.lockRenewIntervalMs)
      const outcome = yield* Fiber.join(copy)
      assert.isTrue(Either.isLeft(outcome) && outcome.left._tag === "BucketLocked", String(outcome))
    }))
})

describe("BucketLock: the sticky fence", () => {
  it.scoped("a renewal that cannot read the lock does not rewrite it: a newer holder's lock stays", () =>
    Effect.gen(function*() {
      const { bucket, faults, store } = yield* setup
      const held = yield* BucketLock.make(store, config, yield* BucketLock.acquire(store, config, instance, 0, "g-a"))
      // A take-over this holder cannot see: its reads of the lock fail.
      const newer = Control.encodeLock({
        format: Control.lockFormat,
        instanceId: Ids.InstanceId.make("i-newer"),
        epoch: Ids.epoch(2),
        acquiredAtMs: 0,
        generation: "g-b"
      })
      yield* bucket.write(lockKey, newer)
      yield* faults.failPermanently({ operations: ["get"], keyPrefix: lockKey })
      yield* held.renew
      assert.strictEqual(
        (yield* lockIn(bucket))?.instanceId,
        "i-newer",
        "the renewal took the bucket back from its new holder"
      )
      assert.isTrue(Option.isNone(yield* held.fenced), "nothing was read, so nothing is known yet")
      yield* faults.heal
      assert.strictEqual((yield* Effect.flip(held.renew))._tag, "Fenced")
    }))

  it.effect("a lock resurrected by a superseded holder's late renewal does not lock the bucket out: a lower epoch than the latest checkpoint's is taken without takeOver", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* setup
      // Epoch 3's holder was taken over (the latest checkpoint is at epoch 4), the new owner released
      // the lock, and then the old holder's renewal, read before the take-over, wrote it back.
      yield* bucket.write(lockKey, leftLock("g-old", 3))
      const acquired = yield* BucketLock.acquire(store, config, Ids.InstanceId.make("i-three"), 4, "g-next")
      assert.strictEqual(acquired.epoch, 5)
      assert.strictEqual((yield* lockIn(bucket))?.generation, "g-next")
      // A lock at the latest checkpoint's epoch is a live holder's: refused without takeOver.
      yield* bucket.write(lockKey, leftLock("g-live", 4))
      const refused = yield* Effect.either(
        BucketLock.acquire(store, config, Ids.InstanceId.make("i-four"), 4, "g-other")
      )
      assert.isTrue(Either.isLeft(refused) && refused.left._tag === "BucketLocked")
    }))

  it.scoped("a predecessor's late renewal (a lock naming a lower epoch) does not fence the holder: its next renewal takes the lock back", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* setup
      const old = leftLock("g-old", 3)
      yield* bucket.write(lockKey, old)
      const acquired = yield* BucketLock.acquire(
        store,
        { ...config, takeOver: true },
        Ids.InstanceId.make("i-two"),
        3,
        "g-new"
      )
      assert.strictEqual(acquired.epoch, 4)
      const held = yield* BucketLock.make(store, config, acquired)
      // The old holder's renewal had read the lock as its own before the take-over; its PUT lands after.
      yield* bucket.write(lockKey, old)
      yield* held.check
      yield* held.renew
      assert.strictEqual((yield* lockIn(bucket))?.generation, "g-new", "the holder's renewal rewrote its lock")
      assert.isTrue(Option.isNone(yield* held.fenced))
      // Released over such a late renewal, the lock is deleted (not left naming a dead predecessor).
      yield* bucket.write(lockKey, old)
      const second = yield* BucketLock.make(store, config, acquired)
      yield* bucket.write(lockKey, old)
      assert.strictEqual(yield* second.release(config), "released")
      assert.isTrue(Option.isNone(yield* bucket.read(lockKey)))
      // A lock of a higher epoch is a take-over: that one fences.
      yield* bucket.write(lockKey, leftLock("g-later", 5))
      assert.strictEqual((yield* Effect.flip(held.check))._tag, "Fenced")
    }))

  it.scoped("a predecessor's late renewal that lands between a take-over's PUT and its read-back does not refuse the start; a newer lock there does", () =>
    Effect.gen(function*() {
      const state = yield* MemoryObjectStore.makeBucket("lock-test")
      const bucket = MemoryObjectStore.inspect(state)
      const inner = MemoryObjectStore.storeOf(state)
      const old = leftLock("g-old", 3)
      yield* bucket.write(lockKey, old)
      // What lands right after the take-over's overwrite (an unconditional PUT of the lock).
      const interloper = yield* Ref.make<Uint8Array | undefined>(old)
      const store = {
        ...inner,
        put: (key: string, bytes: Uint8Array, options?: { readonly ifNoneMatch?: boolean }) =>
          Effect.zipRight(
            inner.put(key, bytes, options),
            key === lockKey && options?.ifNoneMatch !== true
              ? Effect.flatMap(Ref.getAndSet(interloper, undefined), (late) =>
                late === undefined ? Effect.void : bucket.write(lockKey, late))
              : Effect.void
          )
      }
      const takeOver = { ...config, takeOver: true }
      const acquired = yield* BucketLock.acquire(store, takeOver, Ids.InstanceId.make("i-two"), 3, "g-new")
      assert.strictEqual(acquired.epoch, 4)
      assert.strictEqual((yield* lockIn(bucket))?.generation, "g-old", "the late renewal landed after the PUT")
      const held = yield* BucketLock.make(store, config, acquired)
      yield* held.renew
      assert.strictEqual((yield* lockIn(bucket))?.generation, "g-new", "the first renewal rewrote the lock")
      assert.isTrue(Option.isNone(yield* held.fenced))
      // A lock of a higher epoch landing there is a newer holder's: the start is refused.
      yield* Ref.set(interloper, leftLock("g-later", 9))
      const refused = yield* Effect.flip(
        BucketLock.acquire(store, takeOver, Ids.InstanceId.make("i-three"), 4, "g-third")
      )
      assert.strictEqual(refused._tag, "BucketLocked")
    }))

  it.scoped("a missing lock is not ours: a running holder whose lock is deleted under it is fenced", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* setup
      const held = yield* BucketLock.make(store, config, yield* BucketLock.acquire(store, config, instance, 0, "g-a"))
      yield* bucket.remove(lockKey)
      const fenced = yield* Effect.flip(held.check)
      assert.strictEqual(fenced._tag, "Fenced")
      assert.isTrue(Option.isSome(yield* held.fenced))
    }))

  it.scoped("once a renewal found another holder, the fence stays: after that holder released the lock, and while the lock cannot be read", () =>
    Effect.gen(function*() {
      const { bucket, faults, store } = yield* setup
      const held = yield* BucketLock.make(store, config, yield* BucketLock.acquire(store, config, instance, 0, "g-a"))
      yield* bucket.write(
        lockKey,
        Control.encodeLock({
          format: Control.lockFormat,
          instanceId: Ids.InstanceId.make("i-newer"),
          epoch: Ids.epoch(2),
          acquiredAtMs: 0,
          generation: "g-b"
        })
      )
      assert.strictEqual((yield* Effect.flip(held.renew))._tag, "Fenced")
      // The newer holder shut down cleanly, and the bucket cannot be read: neither unfences.
      yield* bucket.remove(lockKey)
      yield* faults.failPermanently({ operations: ["get"], keyPrefix: lockKey })
      assert.strictEqual((yield* Effect.flip(held.check))._tag, "Fenced")
      assert.strictEqual((yield* Effect.flip(held.ensureNotFenced))._tag, "Fenced")
      // A fenced holder never rewrites the lock, and leaves it alone at release.
      assert.strictEqual(yield* held.release(config), "left-fenced")
      assert.isTrue(Option.isNone(yield* bucket.read(lockKey)))
    }))
})

describe("BucketLock: outcomes that a lost response left unknown", () => {
  it.live("a start whose every lock PUT response is lost holds the lock, read back by its generation", () =>
    Effect.gen(function*() {
      const { bucket, faults, store } = yield* setup
      yield* faults.lostResponse({ operations: ["put"], keyPrefix: lockKey })
      const held = yield* BucketLock.acquire(store, config, instance, 0, "g-lost")
      assert.strictEqual(held.generation, "g-lost")
      assert.strictEqual((yield* lockIn(bucket))?.generation, "g-lost")
      assert.isAbove((yield* faults.stats).injected.lostResponse, 0)
    }))

  it.live("a DELETE whose response is lost is reported released when the lock is gone", () =>
    Effect.gen(function*() {
      const { bucket, faults, store } = yield* setup
      const held = yield* BucketLock.acquire(store, config, instance, 0, "g-a")
      yield* faults.lostResponse({ operations: ["delete"], keyPrefix: lockKey })
      assert.strictEqual(yield* BucketLock.release(store, config, held), "released")
      assert.isTrue(Option.isNone(yield* bucket.read(lockKey)))
    }))
})

describe("BucketLock: rounds and epochs of acquire", () => {
  const other = Ids.InstanceId.make("i-other")
  const otherLock = (epoch: number): Uint8Array =>
    Control.encodeLock({
      format: Control.lockFormat,
      instanceId: other,
      epoch: Ids.epoch(epoch),
      acquiredAtMs: 0,
      generation: "g-other",
      renewedAtMs: 0,
      leaseMs: config.lockLeaseMs
    })

  it.effect(`gives up with BucketLocked after ${BucketLock.acquireRoundsMax} rounds when the lock it lost to is gone each time it reads it`, () =>
    Effect.gen(function*() {
      const state = yield* MemoryObjectStore.makeBucket("lock-test")
      yield* MemoryObjectStore.inspect(state).write(lockKey, otherLock(1))
      const inner = MemoryObjectStore.storeOf(state)
      const puts = yield* Ref.make(0)
      // Every put loses to a lock that is released before it can be read: a holder stopping while this one starts.
      const store = {
        ...inner,
        put: (key: string, bytes: Uint8Array, options?: { readonly ifNoneMatch?: boolean }) =>
          Effect.zipRight(Ref.update(puts, (n) => n + 1), inner.put(key, bytes, options)),
        get: (key: string) => Effect.fail(new ObjectNotFound({ operation: "get", key }))
      }
      const refused = yield* Effect.flip(BucketLock.acquire(store, config, instance, 0, "g-a"))
      assert.strictEqual(refused._tag, "BucketLocked")
      assert.strictEqual(
        yield* Ref.get(puts),
        BucketLock.acquireRoundsMax,
        "one conditional put per round, and no more rounds"
      )
    }))

  it.effect("a take-over takes an epoch above both the holder's and every epoch this instance has seen; without takeOver the holder's lock stands", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* setup
      yield* bucket.write(lockKey, otherLock(6))
      const refused = yield* Effect.flip(BucketLock.acquire(store, config, instance, 6, "g-a"))
      assert(refused._tag === "BucketLocked", refused._tag)
      assert.strictEqual(refused.holder, other)
      assert.strictEqual(refused.epoch, 6)
      assert.strictEqual((yield* lockIn(bucket))?.instanceId, other)
      const takeOver = { ...config, takeOver: true }
      const aboveHolder = yield* BucketLock.acquire(store, takeOver, instance, 2, "g-b")
      assert.strictEqual(aboveHolder.epoch, 7, "above the holder's epoch 6")
      assert.isTrue(aboveHolder.tookOver)
      assert.strictEqual((yield* lockIn(bucket))?.epoch, 7)
      yield* bucket.write(lockKey, otherLock(3))
      const aboveSeen = yield* BucketLock.acquire(store, takeOver, instance, 9, "g-c")
      assert.strictEqual(aboveSeen.epoch, 10, "above the epoch 9 this instance has seen")
    }))

  it.effect("a lock that cannot be decoded refuses the start (CorruptObject) unless takeOver, which overwrites it", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* setup
      yield* bucket.write(lockKey, new TextEncoder().encode("not a lock"))
      const refused = yield* Effect.flip(BucketLock.acquire(store, config, instance, 2, "g-a"))
      assert.strictEqual(refused._tag, "CorruptObject")
      const held = yield* BucketLock.acquire(store, { ...config, takeOver: true }, instance, 2, "g-b")
      assert.strictEqual(held.epoch, 3)
      assert.strictEqual((yield* lockIn(bucket))?.generation, "g-b")
    }))
})

describe("BucketLock: release only if ours", () => {
  it.effect("deletes the lock that names this holder, and reports a lock already gone as released", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* setup
      const held = yield* BucketLock.acquire(store, config, instance, 0, "g-a")
      assert.strictEqual(yield* BucketLock.release(store, config, held), "released")
      assert.isTrue(Option.isNone(yield* bucket.read(lockKey)))
      assert.strictEqual(yield* BucketLock.release(store, config, held), "released")
    }))

  it.effect("leaves a newer holder's lock alone (not-ours), and one it cannot read (failed)", () =>
    Effect.gen(function*() {
      const { bucket, faults, store } = yield* setup
      const held = yield* BucketLock.acquire(store, config, instance, 0, "g-a")
      const newer = Control.encodeLock({
        format: Control.lockFormat,
        instanceId: Ids.InstanceId.make("i-newer"),
        epoch: Ids.epoch(held.epoch + 1),
        acquiredAtMs: 0,
        generation: "g-b"
      })
      yield* bucket.write(lockKey, newer)
      assert.strictEqual(yield* BucketLock.release(store, config, held), "not-ours")
      assert.deepStrictEqual(Option.getOrUndefined(yield* bucket.read(lockKey)), newer)
      // The same instance and epoch under another generation (a copy of the directory) is not ours either.
      yield* bucket.write(lockKey, leftLock("g-copy", held.epoch))
      assert.strictEqual(yield* BucketLock.release(store, config, held), "not-ours")
      assert.strictEqual((yield* lockIn(bucket))?.generation, "g-copy")
      yield* bucket.write(lockKey, leftLock("g-a", held.epoch))
      yield* faults.failPermanently({ operations: ["get"], keyPrefix: lockKey })
      assert.strictEqual(yield* BucketLock.release(store, config, held), "failed")
      assert.isTrue(Option.isSome(yield* bucket.read(lockKey)), "an unread lock is not deleted")
    }))

  it.scoped("the held lock is released once: a later call returns the first outcome and touches nothing", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* setup
      const held = yield* BucketLock.make(store, config, yield* BucketLock.acquire(store, config, instance, 0, "g-a"))
      assert.strictEqual(yield* held.release(config), "released")
      const next = leftLock("g-next", held.lock.epoch)
      yield* bucket.write(lockKey, next)
      assert.strictEqual(yield* held.release(config), "released")
      assert.deepStrictEqual(Option.getOrUndefined(yield* bucket.read(lockKey)), next, "the next holder's lock stands")
      yield* held.renew
      assert.deepStrictEqual(Option.getOrUndefined(yield* bucket.read(lockKey)), next, "a released lock is not renewed")
    }))
})
