/**
 * Goal: the registry lists exactly the waits in progress — with the waiting fiber, what waits, what
 * it waits on and since when — and forgets a wait on every way it can end (success, failure,
 * interruption), so diagnostics never show a stale wait nor miss a live one.
 * Method: track waits on Deferreds the test controls, on the TestClock, and read `current`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, FiberId, TestClock } from "effect"
import * as WaitRegistry from "../../src/services/WaitRegistry.js"

/** Forks `track` on a fresh Deferred and returns both once the wait is registered. */
const startWait = (registry: WaitRegistry.WaitRegistryService, waiter: string, on: string | (() => string)) =>
  Effect.gen(function*() {
    const gate = yield* Deferred.make<string, string>()
    const registered = yield* Deferred.make<void>()
    const fiber = yield* Effect.fork(
      registry.track(waiter, on, Effect.zipRight(Deferred.succeed(registered, undefined), Deferred.await(gate)))
    )
    yield* Deferred.await(registered)
    return { gate, fiber }
  })

describe("WaitRegistry", () => {
  it.effect("lists a wait while it runs, with its fiber, labels and start time", () =>
    Effect.gen(function*() {
      const registry = yield* WaitRegistry.make
      yield* TestClock.adjust(1234)
      const { fiber, gate } = yield* startWait(registry, "Checkpointer.checkpoint 7", "task 3 WriteObject Manifest m")
      const current = yield* registry.current
      assert.strictEqual(current.length, 1)
      const wait = current[0]
      assert.isDefined(wait)
      assert.strictEqual(wait?.waiter, "Checkpointer.checkpoint 7")
      assert.strictEqual(wait?.on, "task 3 WriteObject Manifest m")
      assert.strictEqual(wait?.sinceMs, 1234)
      assert.strictEqual(wait?.fiber, FiberId.threadName(fiber.id()))
      assert.strictEqual(yield* registry.size, 1)
      yield* Deferred.succeed(gate, "done")
      assert.strictEqual(yield* Fiber.join(fiber), "done")
      assert.deepStrictEqual(yield* registry.current, [])
      assert.strictEqual(yield* registry.size, 0)
    }))

  it.effect("forgets a wait that fails or is interrupted", () =>
    Effect.gen(function*() {
      const registry = yield* WaitRegistry.make
      const failing = yield* startWait(registry, "a", "x")
      const interrupted = yield* startWait(registry, "b", "y")
      assert.strictEqual((yield* registry.current).length, 2)
      yield* Deferred.fail(failing.gate, "boom")
      const failed = yield* Fiber.await(failing.fiber)
      assert.deepStrictEqual(failed, Exit.fail("boom"))
      assert.deepStrictEqual((yield* registry.current).map((wait) => wait.waiter), ["b"])
      yield* Fiber.interrupt(interrupted.fiber)
      assert.deepStrictEqual(yield* registry.current, [])
    }))

  it.effect("orders waits oldest first and resolves a lazy label only when read", () =>
    Effect.gen(function*() {
      const registry = yield* WaitRegistry.make
      let labelsBuilt = 0
      const lazy = () => {
        labelsBuilt += 1
        return "lazy target"
      }
      const first = yield* startWait(registry, "first", "one")
      yield* TestClock.adjust(10)
      const second = yield* startWait(registry, "second", lazy)
      yield* TestClock.adjust(10)
      const third = yield* startWait(registry, "third", "three")
      assert.strictEqual(labelsBuilt, 0)
      const current = yield* registry.current
      assert.deepStrictEqual(current.map((wait) => [wait.waiter, wait.on, wait.sinceMs]), [
        ["first", "one", 0],
        ["second", "lazy target", 10],
        ["third", "three", 20]
      ])
      assert.strictEqual(labelsBuilt, 1)
      assert.isTrue(current.every((wait, index) => index === 0 || (current[index - 1]?.id ?? 0) < wait.id))
      yield* Fiber.interruptAll([first.fiber, second.fiber, third.fiber])
      assert.strictEqual(yield* registry.size, 0)
    }))

  it.effect("the layer provides one shared registry", () =>
    Effect.gen(function*() {
      const registry = yield* WaitRegistry.WaitRegistry
      const result = yield* registry.track("t", "u", Effect.succeed(42))
      assert.strictEqual(result, 42)
      assert.strictEqual(yield* registry.size, 0)
    }).pipe(Effect.provide(WaitRegistry.layer)))
})
