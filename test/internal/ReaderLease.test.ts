/**
 * Goal: a reader lease is the object the collector trusts: written when acquired, renewed every
 * third of its life with a later expiry, deleted when its scope closes; a renewal that cannot land
 * before the lease expires loses it, and work guarded by it then fails with ReaderLeaseLost (the
 * collector may have deleted what it reads). The read-only view of the store refuses every write
 * but a lease's. Method: the lease over an in-memory bucket behind the fault decorator, under the
 * TestClock (renewals are timed by it).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Exit, Fiber, Scope, TestClock } from "effect"
import * as Ids from "../../src/domain/Ids.js"
import * as ReaderLease from "../../src/internal/ReaderLease.js"
import * as FaultyObjectStore from "../../src/layers/FaultyObjectStore.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"

const config = Either.getOrThrow(StorageConfig.validate({ prefix: "tier", readerLeaseMs: 3_000, retryAttemptsMax: 1 }))

const setup = Effect.gen(function*() {
  const { store, bucket } = yield* MemoryObjectStore.make("leases")
  const faults = yield* FaultyObjectStore.makeController({ seed: 1 })
  return { store: faults.wrap(store), bucket, faults }
})

describe("ReaderLease", () => {
  it.effect("is written at once, renewed every third of its life with a later expiry, and deleted when its scope closes", () =>
    Effect.gen(function*() {
      const { store, bucket } = yield* setup
      const scope = yield* Scope.make()
      const lease = yield* ReaderLease.acquire(store, config, {
        checkpoint: Ids.CheckpointNumber.make(7),
        holder: "test pid 1"
      }).pipe(Scope.extend(scope))
      const first = yield* ReaderLease.readLease(store, config, lease.id)
      assert.deepStrictEqual([first.checkpoint, first.holder, first.expiresAtMs], [7, "test pid 1", 3_000])
      assert.strictEqual(lease.key, `tier/leases/${lease.id}`)
      yield* TestClock.adjust(1_000)
      assert.strictEqual((yield* ReaderLease.readLease(store, config, lease.id)).expiresAtMs, 4_000)
      yield* TestClock.adjust(1_000)
      assert.strictEqual((yield* ReaderLease.readLease(store, config, lease.id)).expiresAtMs, 5_000)
      assert.strictEqual(yield* lease.expiresAtMs, 5_000)
      yield* lease.check
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* bucket.keys, [])
      // Nothing renews it after the close.
      yield* TestClock.adjust(10_000)
      assert.deepStrictEqual(yield* bucket.keys, [])
    }))

  it.effect("renewals that fail until the lease expires lose it: guarded work fails with ReaderLeaseLost", () =>
    Effect.gen(function*() {
      const { store, faults } = yield* setup
      const scope = yield* Scope.make()
      const lease = yield* ReaderLease.acquire(store, config, {
        checkpoint: Ids.CheckpointNumber.make(3),
        holder: "test"
      }).pipe(Scope.extend(scope))
      const reader = yield* Effect.fork(lease.guard(Effect.never))
      yield* faults.failPermanently({ operations: ["put"], keyPrefix: "tier/leases/" })
      // Failed renewals at 1 s and 2 s: the lease (expiring at 3 s) still stands.
      yield* TestClock.adjust(2_000)
      yield* lease.check
      assert.isNull(
        yield* Fiber.poll(reader).pipe(Effect.map((polled) => (polled._tag === "None" ? null : polled.value)))
      )
      yield* TestClock.adjust(1_000)
      assert.isTrue(Exit.isFailure(yield* Effect.exit(lease.check)), "the lease is lost at its expiry")
      const exit = yield* Fiber.await(reader)
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
      assert.strictEqual(error?._tag, "ReaderLeaseLost")
      assert.include(error?.message ?? "", "checkpoint 3")
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("the read-only view writes leases and refuses every other put or delete", () =>
    Effect.gen(function*() {
      const { store, bucket } = yield* setup
      const readOnly = ReaderLease.readOnlyExceptLeases(store, config)
      yield* readOnly.put("tier/leases/r1", new Uint8Array([1]))
      const put = yield* Effect.exit(readOnly.put("tier/lock", new Uint8Array([1])))
      const removed = yield* Effect.exit(readOnly.delete("tier/checkpoints/0000000000000001"))
      assert.isTrue(Exit.isFailure(put) && Exit.isFailure(removed))
      assert.deepStrictEqual(yield* bucket.keys, ["tier/leases/r1"])
      yield* readOnly.delete("tier/leases/r1")
      assert.deepStrictEqual(yield* bucket.keys, [])
    }))
})
