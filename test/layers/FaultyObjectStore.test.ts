/**
 * Goal: each fault kind of the decorator does what it says and nothing more: latency moves with the
 * TestClock, error rates are decided by a seed (reproducible), permanent failures and stalls hit
 * only the filtered operations and keys, a stall is interruptible and healable, and the counters
 * (injected faults, operations started/finished, stalled now) tell the truth.
 * Method: the decorator over a MemoryObjectStore, on the TestClock (`it.effect`); waits are on the
 * controller's counters (`awaitStats`) or the clock, never on real time.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Either, Fiber, Layer, Option, Random, Stream, Supervisor, TestClock } from "effect"
import type { ObjectStoreError } from "../../src/domain/Errors.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import { taskTypes } from "../../src/domain/Task.js"
import * as FaultyObjectStore from "../../src/layers/FaultyObjectStore.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { suite } from "./ObjectStoreSuite.js"

// With no rule, the decorator must be invisible: the whole contract holds through it.
suite("FaultyObjectStore without faults", FaultyObjectStore.layer().pipe(Layer.provide(MemoryObjectStore.layer)), {
  dotSegmentKeys: true,
  listKeyCount: 1001,
  readsInto: true
})

const faulty = (options: FaultyObjectStore.FaultyObjectStoreOptions = {}) =>
  Effect.flatMap(
    MemoryObjectStore.make(),
    ({ bucket, store }) => Effect.map(FaultyObjectStore.make(store, options), (made) => ({ ...made, bucket }))
  )

const bytes = new Uint8Array([1, 2, 3])

/** Which of `count` puts failed with an injected error, as a string of 0/1. */
const failurePattern = (
  store: { readonly put: (key: string, bytes: Uint8Array) => Effect.Effect<void, { readonly _tag: string }> },
  count: number
) =>
  Effect.map(
    Effect.forEach(Array.from({ length: count }, (_, index) => index), (index) =>
      Effect.either(store.put(`k${index}`, bytes))),
    (results) =>
      results.map((result) => (Either.isLeft(result) ? "1" : "0")).join("")
  )

describe("FaultyObjectStore", () => {
  it.effect("latency delays the operation by exactly its duration on the TestClock", () =>
    Effect.gen(function*() {
      const { controller, store } = yield* faulty()
      yield* controller.latency(100, { operations: ["put"] })
      const put = yield* Effect.fork(store.put("k", bytes))
      yield* TestClock.adjust("99 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(put)), "still sleeping at 99 ms")
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(put)
      // get is not filtered in: it runs at once.
      assert.deepStrictEqual(Array.from(yield* store.get("k")), [1, 2, 3])
      const stats = yield* controller.stats
      assert.strictEqual(stats.injected.latency, 1)
      assert.deepStrictEqual(stats.operations.put, { started: 1, finished: 1 })
    }))

  it.effect("errorRate(1) fails every filtered operation with a transient Injected error; errorRate(0) none", () =>
    Effect.gen(function*() {
      const { controller, store } = yield* faulty({ seed: 1 })
      const id = yield* controller.errorRate(1, { keyPrefix: "bad/" })
      const failed = yield* Effect.either(store.put("bad/k", bytes))
      assert.isTrue(
        Either.isLeft(failed) && failed.left._tag === "ObjectStoreUnavailable" && failed.left.reason === "Injected"
      )
      yield* store.put("good/k", bytes)
      yield* controller.remove(id)
      yield* controller.errorRate(0)
      assert.strictEqual(yield* failurePattern(store, 50), "0".repeat(50))
      assert.strictEqual((yield* controller.stats).injected.error, 1)
    }))

  it.effect("a seed decides the error pattern: same seed, same failures; another seed, others", () =>
    Effect.gen(function*() {
      const run = (seed: number) =>
        Effect.gen(function*() {
          const { controller, store } = yield* faulty({ seed })
          yield* controller.errorRate(0.5)
          return yield* failurePattern(store, 64)
        })
      const first = yield* run(42)
      assert.strictEqual(yield* run(42), first)
      assert.notStrictEqual(yield* run(43), first)
      const failures = first.split("").filter((bit) => bit === "1").length
      assert.isTrue(failures > 10 && failures < 54, `about half fail: ${first}`)
      // Without a seed option the draws come from the caller's Random: seeding it reproduces too.
      const ambient = (seed: number) =>
        Effect.gen(function*() {
          const { controller, store } = yield* faulty()
          yield* controller.errorRate(0.5)
          return yield* failurePattern(store, 64)
        }).pipe(Effect.withRandom(Random.make(seed)))
      assert.strictEqual(yield* ambient(7), yield* ambient(7))
    }))

  it.effect("failPermanently rejects the filtered operations only, and never reaches the inner store", () =>
    Effect.gen(function*() {
      const { bucket, controller, store } = yield* faulty()
      yield* controller.failPermanently({ operations: ["put"], keyMatches: (key) => key.endsWith(".json") })
      const rejected = yield* Effect.either(store.put("m.json", bytes))
      assert.isTrue(
        Either.isLeft(rejected) && rejected.left._tag === "ObjectStoreRejected" &&
          rejected.left.code === "InjectedFailure"
      )
      assert.isTrue(Option.isNone(yield* bucket.read("m.json")))
      yield* store.put("part", bytes)
      assert.strictEqual(Chunk.size(yield* Stream.runCollect(store.list(""))), 1, "list is not filtered in")
      assert.strictEqual((yield* controller.stats).injected.permanent, 1)
    }))

  it.effect("lostResponse applies the request and fails its answer; `times` bounds it, and a retry then sees what the store holds", () =>
    Effect.gen(function*() {
      const { bucket, controller, store } = yield* faulty()
      yield* controller.lostResponse({ operations: ["put"], keyPrefix: "checkpoints/" }, { times: 1 })
      const lost = yield* Effect.either(store.put("checkpoints/1", bytes, { ifNoneMatch: true }))
      assert.isTrue(
        Either.isLeft(lost) && lost.left._tag === "ObjectStoreUnavailable" && lost.left.reason === "Network",
        String(lost)
      )
      assert.deepStrictEqual(
        Option.map(yield* bucket.read("checkpoints/1"), Array.from),
        Option.some([1, 2, 3]),
        "the put was applied"
      )
      // The rule is used up: the retry gets the store's own answer.
      const retried = yield* Effect.either(store.put("checkpoints/1", bytes, { ifNoneMatch: true }))
      assert.isTrue(Either.isLeft(retried) && retried.left._tag === "PreconditionFailed", String(retried))
      yield* controller.lostResponse({ operations: ["get"] })
      for (let round = 0; round < 3; round++) {
        assert.isTrue(Either.isLeft(yield* Effect.either(store.get("checkpoints/1"))))
      }
      yield* store.put("other", bytes)
      assert.strictEqual((yield* controller.stats).injected.lostResponse, 4)
      assert.isTrue((yield* Effect.exit(controller.lostResponse({}, { times: 0 })))._tag === "Failure")
    }))

  it.effect("lostResponse with a probability applies every filtered request and loses a seeded share of the answers; deletes too", () =>
    Effect.gen(function*() {
      const run = (seed: number) =>
        Effect.gen(function*() {
          const { bucket, controller, store } = yield* faulty({ seed })
          yield* controller.lostResponse({ operations: ["put", "delete"], keyPrefix: "wal/" }, { probability: 0.5 })
          const pattern = yield* failurePattern({ put: (key, value) => store.put(`wal/${key}`, value) }, 64)
          for (let index = 0; index < 64; index++) {
            assert.isTrue(Option.isSome(yield* bucket.read(`wal/k${index}`)), "every put was applied")
          }
          const deletes = yield* Effect.forEach(
            Array.from({ length: 16 }, (_, index) => index),
            (index) => Effect.either(store.delete(`wal/k${index}`))
          )
          for (let index = 0; index < 16; index++) {
            assert.isTrue(Option.isNone(yield* bucket.read(`wal/k${index}`)), "every delete was applied")
          }
          yield* store.put("data/x", bytes)
          return {
            pattern,
            lost: (yield* controller.stats).injected.lostResponse,
            failedDeletes: deletes.filter(Either.isLeft).length
          }
        })
      const first = yield* run(5)
      assert.deepStrictEqual(yield* run(5), first, "a seed decides which answers are lost")
      const lostPuts = first.pattern.split("").filter((bit) => bit === "1").length
      assert.isTrue(lostPuts > 10 && lostPuts < 54, `about half: ${first.pattern}`)
      assert.strictEqual(first.lost, lostPuts + first.failedDeletes)
    }))

  it.effect("stall holds an operation until it is interrupted; the counters follow", () =>
    Effect.gen(function*() {
      const { controller, store } = yield* faulty()
      yield* store.put("k", bytes)
      yield* controller.stall({ operations: ["get"] })
      const get = yield* Effect.fork(store.get("k"))
      yield* controller.awaitStats((stats) => stats.stalledNow === 1)
      yield* TestClock.adjust("1 hour")
      assert.isTrue(Option.isNone(yield* Fiber.poll(get)), "no time ends a stall")
      yield* store.head("k")
      yield* Fiber.interrupt(get)
      const stats = yield* controller.stats
      assert.strictEqual(stats.stalledNow, 0)
      assert.deepStrictEqual(stats.operations.get, { started: 1, finished: 1 })
      assert.strictEqual(stats.injected.stall, 1)
    }))

  it.effect("heal releases stalled operations (they proceed) and removes every rule", () =>
    Effect.gen(function*() {
      const { controller, store } = yield* faulty()
      yield* store.put("k", bytes)
      yield* controller.stall()
      yield* controller.failPermanently()
      const operations: ReadonlyArray<Effect.Effect<unknown, ObjectStoreError>> = [
        store.get("k"),
        store.get("k"),
        store.head("k")
      ]
      const fibers = yield* Effect.forEach(operations, (effect) => Effect.fork(Effect.either(effect)))
      yield* controller.awaitStats((stats) => stats.stalledNow === 3)
      yield* controller.heal
      const results = yield* Fiber.joinAll(fibers)
      assert.isTrue(results.every(Either.isRight), "after heal the stalled operations succeed")
      yield* store.put("after", bytes)
      assert.strictEqual((yield* controller.stats).stalledNow, 0)
    }))

  it.effect("a stalled list is interruptible and healable too", () =>
    Effect.gen(function*() {
      const { controller, store } = yield* faulty()
      yield* store.put("a/1", bytes)
      yield* controller.stall({ operations: ["list"], keyPrefix: "a/" })
      const listing = yield* Effect.fork(Stream.runCollect(store.list("a/")))
      yield* controller.awaitStats((stats) => stats.stalledNow === 1)
      assert.strictEqual(Chunk.size(yield* Stream.runCollect(store.list("b/"))), 0, "another prefix is not stalled")
      yield* controller.heal
      assert.strictEqual(Chunk.size(yield* Fiber.join(listing)), 1)
      assert.deepStrictEqual((yield* controller.stats).operations.list, { started: 2, finished: 2 })
    }))

  it.effect("stallAfter stalls only operations that start after its delay", () =>
    Effect.gen(function*() {
      const { controller, store } = yield* faulty()
      yield* controller.stallAfter(1000)
      yield* store.put("early", bytes)
      yield* TestClock.adjust("999 millis")
      yield* store.put("still-early", bytes)
      yield* TestClock.adjust("1 millis")
      const late = yield* Effect.fork(store.put("late", bytes))
      yield* controller.awaitStats((stats) => stats.stalledNow === 1)
      yield* Fiber.interrupt(late)
      assert.deepStrictEqual((yield* controller.stats).operations.put, { started: 3, finished: 3 })
    }))

  it.effect("probe has no key: key-filtered rules never apply to it, unfiltered ones do", () =>
    Effect.gen(function*() {
      const { controller, store } = yield* faulty()
      yield* controller.failPermanently({ keyPrefix: "" })
      yield* store.probe
      yield* controller.failPermanently({ operations: ["probe"] })
      assert.isTrue(Either.isLeft(yield* Effect.either(store.probe)))
    }))

  it.effect("a controller made first can flip faults on a store built later (stall-at-shutdown)", () =>
    Effect.gen(function*() {
      const controller = yield* FaultyObjectStore.makeController()
      const program = Effect.gen(function*() {
        const store = yield* ObjectStore
        const tag = yield* FaultyObjectStore.FaultController
        assert.strictEqual(tag, controller)
        yield* store.put("k", bytes)
        yield* controller.stall()
        const put = yield* Effect.fork(store.put("k", bytes))
        yield* controller.awaitStats((stats) => stats.stalledNow === 1)
        yield* Fiber.interrupt(put)
      })
      yield* program.pipe(
        Effect.provide(FaultyObjectStore.layer(controller).pipe(Layer.provide(MemoryObjectStore.layer)))
      )
    }))

  it.effect("lostResponse: the request takes effect in the store, and its caller gets a transient failure", () =>
    Effect.gen(function*() {
      const { bucket, controller, store } = yield* faulty()
      yield* controller.lostResponse({ operations: ["put", "delete"], keyPrefix: "lost/" })
      const put = yield* Effect.flip(store.put("lost/a", bytes))
      assert.strictEqual(put._tag, "ObjectStoreUnavailable")
      assert.deepStrictEqual(yield* bucket.read("lost/a"), Option.some(bytes), "the PUT landed")
      // A conditional PUT that the store refused: the 412 is lost as well.
      const conditional = yield* Effect.flip(store.put("lost/a", bytes, { ifNoneMatch: true }))
      assert.strictEqual(conditional._tag, "ObjectStoreUnavailable")
      assert.strictEqual((yield* Effect.flip(store.delete("lost/a")))._tag, "ObjectStoreUnavailable")
      assert.isTrue(Option.isNone(yield* bucket.read("lost/a")), "the DELETE deleted")
      yield* store.put("kept/b", bytes) // other keys answer
      assert.strictEqual((yield* controller.stats).injected.lostResponse, 3)
    }))

  /** Steps the TestClock 1 ms at a time until `key` holds `value`; the instant it landed (ms). */
  const landingMs = (bucket: MemoryObjectStore.MemoryBucketService, key: string, value: number, limitMs: number) =>
    Effect.gen(function*() {
      for (let atMs = 0; atMs <= limitMs; atMs++) {
        const held = yield* bucket.read(key)
        if (Option.isSome(held) && held.value[0] === value) return atMs
        yield* TestClock.adjust("1 millis")
      }
      return -1
    })

  it.effect("late: a request whose caller gave up still lands, within its drawn delay; a waiting caller gets the answer", () =>
    Effect.gen(function*() {
      const { bucket, controller, store } = yield* faulty({ seed: 3 })
      yield* controller.late(100, { operations: ["put", "delete"], keyPrefix: "lock" })
      const abandoned = yield* Effect.fork(store.put("lock", new Uint8Array([7])))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(abandoned)
      assert.isTrue(Option.isNone(yield* bucket.read("lock")), "not landed when its caller gave up")
      const landedAtMs = yield* landingMs(bucket, "lock", 7, 100)
      assert.isTrue(landedAtMs >= 1 && landedAtMs <= 100, `landed ${landedAtMs} ms after it was sent`)
      // A caller that waits gets the store's answer when the request lands; an unfiltered key is not delayed.
      const waited = yield* Effect.fork(store.delete("lock"))
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(waited)
      assert.isTrue(Option.isNone(yield* bucket.read("lock")), "the delete landed")
      yield* store.put("other", bytes)
      assert.deepStrictEqual(yield* bucket.read("other"), Option.some(bytes))
      const stats = yield* controller.stats
      assert.strictEqual(stats.injected.late, 2)
      assert.deepStrictEqual(stats.operations.put, { started: 2, finished: 2 })
    }))

  it.effect("late reorders writes: over seeds, a put sent first sometimes lands last, and the bucket keeps the last to land", () =>
    Effect.gen(function*() {
      let reordered = 0
      for (let seed = 1; seed <= 16; seed++) {
        const { bucket, controller, store } = yield* faulty({ seed })
        yield* controller.late(50, { operations: ["put"] })
        const first = yield* Effect.fork(store.put("k", new Uint8Array([1])))
        const second = yield* Effect.fork(store.put("k", new Uint8Array([2])))
        yield* Effect.yieldNow()
        const firstAtMs = yield* landingMs(bucket, "k", 1, 50)
        yield* TestClock.adjust("50 millis")
        yield* Fiber.join(first)
        yield* Fiber.join(second)
        const final = Option.map(yield* bucket.read("k"), (held) => held[0])
        // Put 1 seen in the bucket after put 2 was sent: if it stayed, it landed last.
        if (Option.getOrNull(final) === 1) reordered++
        else assert.deepStrictEqual(final, Option.some(2), `seed ${seed}: put 1 seen at ${firstAtMs} ms`)
      }
      assert.isTrue(reordered >= 2 && reordered <= 14, `${reordered} of 16 seeds reordered the two puts`)
    }))

  it.effect("late: the delayed request runs outside its caller's supervisor (the network's, not the process's)", () =>
    Effect.gen(function*() {
      const { bucket, controller, store } = yield* faulty()
      yield* controller.late(40, { operations: ["put"] })
      const supervisor = yield* Supervisor.track
      const caller = yield* Effect.fork(Effect.supervised(store.put("k", bytes), supervisor))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(caller)
      assert.strictEqual((yield* supervisor.value).length, 0, "no fiber of the caller's is alive")
      assert.isTrue(Option.isNone(yield* bucket.read("k")), "the request is still on its way")
      yield* TestClock.adjust("40 millis")
      assert.deepStrictEqual(yield* bucket.read("k"), Option.some(bytes), "and it landed")
    }))

  it.effect("out-of-range fault parameters are defects", () =>
    Effect.gen(function*() {
      const { controller } = yield* faulty()
      for (
        const add of [
          controller.errorRate(1.5),
          controller.latency(-1),
          controller.stallAfter(Number.NaN),
          controller.late(0),
          controller.late(10, {}, { probability: 2 })
        ]
      ) {
        const exit = yield* Effect.exit(add)
        assert.isTrue(exit._tag === "Failure" && exit.cause._tag === "Die")
      }
    }))
})

describe("failTaskFilter", () => {
  const layout = KeyLayout.make("tier")
  const decide = (
    filter: FaultyObjectStore.FaultFilter,
    operation: FaultyObjectStore.Operation,
    key: string
  ): boolean =>
    (filter.operations === undefined || filter.operations.includes(operation)) &&
    (filter.keyPrefix === undefined || key.startsWith(filter.keyPrefix)) &&
    (filter.keyMatches === undefined || filter.keyMatches(key))

  const requests: ReadonlyArray<readonly [FaultyObjectStore.Operation, string]> = [
    ["put", "tier/data/0000000000000001/7/0000000000-ab"],
    ["get", "tier/data/0000000000000001/7/0000000000-ab"],
    ["getRange", "tier/data/0000000000000001/7/0000000000-ab"],
    ["put", "tier/manifests/0000000000000001/7.json"],
    ["put", "tier/checkpoints/0000000000000001"],
    ["put", "tier/lock"],
    ["put", "tier/wal/00000000000000A1"],
    ["delete", "tier/data/0000000000000001/7/0000000000-ab"],
    ["put", "other/data/x"],
    ["get", "tier/manifests/0000000000000001/7.json"]
  ]
  const expected: Record<(typeof taskTypes)[number], ReadonlyArray<boolean>> = {
    WritePart: [true, false, false, false, false, false, false, false, false, false],
    ReadPart: [false, true, true, false, false, false, false, false, false, false],
    WriteObject: [false, false, false, true, true, true, false, false, false, false],
    WriteWalSegment: [false, false, false, false, false, false, true, false, false, false],
    DeleteObject: [false, false, false, false, false, false, false, true, false, false]
  }

  it("maps each task type to exactly its requests", () => {
    for (const taskType of taskTypes) {
      const filter = FaultyObjectStore.failTaskFilter(taskType, layout)
      assert.deepStrictEqual(
        requests.map(([operation, key]) => decide(filter, operation, key)),
        expected[taskType],
        taskType
      )
    }
  })

  it.effect("fail-task=WritePart through the decorator fails part uploads only", () =>
    Effect.gen(function*() {
      const { controller, store } = yield* faulty()
      yield* controller.failPermanently(FaultyObjectStore.failTaskFilter("WritePart", layout))
      assert.isTrue(Either.isLeft(yield* Effect.either(store.put("tier/data/0000000000000001/7/0000000000-ab", bytes))))
      yield* store.put("tier/checkpoints/0000000000000001", bytes)
      yield* store.put("tier/wal/00000000000000A1", bytes)
    }))
})
