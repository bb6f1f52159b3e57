/**
 * Goal: the in-memory bucket keeps the ObjectStore contract, orders keys as S3 does, is
 * deterministic on the TestClock, and its inspection handle sees what the store wrote.
 * Method: the shared contract suite, plus property and example tests of the key order and the
 * handle, run with `it.effect` (TestClock: nothing here may need real time).
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, FastCheck, Option, Stream, TestClock } from "effect"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { codePoint } from "../support/Shared.js"
import { suite } from "./ObjectStoreSuite.js"

suite("MemoryObjectStore", MemoryObjectStore.layer, { dotSegmentKeys: true, readsInto: true })

const utf8Order = (left: string, right: string): number =>
  Math.sign(Buffer.compare(Buffer.from(left, "utf8"), Buffer.from(right, "utf8")))

describe("MemoryObjectStore", () => {
  it("compareKeys is the order of the UTF-8 bytes (S3's key order)", () => {
    const key = FastCheck.string({ unit: codePoint, maxLength: 6 })
    FastCheck.assert(
      FastCheck.property(
        key,
        key,
        (left, right) => MemoryObjectStore.compareKeys(left, right) === utf8Order(left, right)
      ),
      { numRuns: 1000 }
    )
    // The case where UTF-16 order is wrong: U+FF01 (one unit, EF BC 81) < U+1F600 (surrogates, F0 …).
    assert.strictEqual(MemoryObjectStore.compareKeys("\uff01", "\u{1F600}"), -1)
    assert.isTrue("\uff01" > "\u{1F600}")
  })

  it.effect("runs on the TestClock: listing and conditional puts need no real time", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* MemoryObjectStore.make("clockless")
      yield* Effect.forEach(
        Array.from({ length: 2500 }, (_, index) => `k/${index.toString().padStart(4, "0")}`),
        (key) => store.put(key, new Uint8Array([1])),
        { discard: true }
      )
      const listed = yield* Stream.runCollect(store.list("k/"))
      assert.strictEqual(Chunk.size(listed), 2500)
      assert.strictEqual((yield* bucket.keys).length, 2500)
      assert.strictEqual(store.description, "memory://clockless")
    }))

  it.effect("an object's last-modified time is the Clock's at its put, and an overwrite renews it", () =>
    Effect.gen(function*() {
      const { store } = yield* MemoryObjectStore.make()
      yield* TestClock.setTime(1_000)
      yield* store.put("a", new Uint8Array([1]))
      yield* TestClock.adjust("5 seconds")
      yield* store.put("b", new Uint8Array([2]))
      assert.deepStrictEqual(
        Chunk.toReadonlyArray(yield* Stream.runCollect(store.list(""))).map((info) => info.lastModifiedMs),
        [1_000, 6_000]
      )
      yield* TestClock.adjust("1 second")
      yield* store.put("a", new Uint8Array([3]))
      assert.strictEqual((yield* store.head("a")).lastModifiedMs, 7_000)
    }))

  it.effect("list pages see later writes ahead of the cursor, as S3's pages do", () =>
    Effect.gen(function*() {
      const { store } = yield* MemoryObjectStore.make()
      yield* Effect.forEach(
        Array.from({ length: 1500 }, (_, index) => `p/${index.toString().padStart(4, "0")}`),
        (key) => store.put(key, new Uint8Array(0)),
        { discard: true }
      )
      let written = false
      const listed = yield* store.list("p/").pipe(
        Stream.tap((info) => (info.key === "p/0999" && !written
          ? Effect.zipRight(Effect.sync(() => (written = true)), store.put("p/9999", new Uint8Array(0)))
          : Effect.void)
        ),
        Stream.runCollect
      )
      assert.strictEqual(Chunk.size(listed), 1501)
      assert.strictEqual(Option.getOrThrow(Chunk.last(listed)).key, "p/9999")
    }))

  it.effect("stores a copy: changing the caller's buffer after put or get changes nothing stored", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* MemoryObjectStore.make()
      const bytes = new Uint8Array([1, 2, 3])
      yield* store.put("k", bytes)
      bytes[0] = 9
      const read = yield* store.get("k")
      read[1] = 9
      assert.deepStrictEqual(Array.from(yield* store.get("k")), [1, 2, 3])
      assert.deepStrictEqual(Array.from(Option.getOrThrow(yield* bucket.read("k"))), [1, 2, 3])
    }))

  it.effect("the MemoryBucket handle reads, seeds and removes objects below the store", () =>
    Effect.gen(function*() {
      const bucket = yield* MemoryObjectStore.MemoryBucket
      const store = yield* ObjectStore
      yield* bucket.write("seeded", new Uint8Array([7]))
      assert.deepStrictEqual(Array.from(yield* store.get("seeded")), [7])
      yield* store.put("written", new Uint8Array([8]))
      assert.deepStrictEqual((yield* bucket.snapshot).map(([key, bytes]) => [key, Array.from(bytes)]), [
        ["seeded", [7]],
        ["written", [8]]
      ])
      assert.isTrue(yield* bucket.remove("seeded"))
      assert.isFalse(yield* bucket.remove("seeded"))
      assert.deepStrictEqual(yield* bucket.keys, ["written"])
    }).pipe(Effect.provide(MemoryObjectStore.layer)))

  it.effect("two stores over one bucket state share objects (a restart in the simulation)", () =>
    Effect.gen(function*() {
      const state = yield* MemoryObjectStore.makeBucket("shared")
      const first = MemoryObjectStore.storeOf(state)
      const second = MemoryObjectStore.storeOf(state)
      yield* first.put("k", new Uint8Array([1]), { ifNoneMatch: true })
      const lost = yield* Effect.either(second.put("k", new Uint8Array([2]), { ifNoneMatch: true }))
      assert.isTrue(lost._tag === "Left" && lost.left._tag === "PreconditionFailed")
      assert.deepStrictEqual(Array.from(yield* second.get("k")), [1])
    }))

  it.effect("getRange with a negative offset is a defect, not a typed failure", () =>
    Effect.gen(function*() {
      const { store } = yield* MemoryObjectStore.make()
      yield* store.put("k", new Uint8Array([1]))
      const exit = yield* Effect.exit(store.getRange("k", -1, 1))
      assert.isTrue(exit._tag === "Failure" && exit.cause._tag === "Die")
    }))
})
