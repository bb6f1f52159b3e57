/**
 * Goal: one sweeper per store bounds every request as a timer per request did: a request's
 * controller is aborted exactly `timeoutMs` after its start unless it ended first, whatever the
 * other requests in flight; a request that ends is forgotten (its controller never aborted later),
 * on every exit; the sweeper runs only while requests are in flight, so an idle store holds no
 * fiber and no timer. Method: under the TestClock, requests that end when told to (a Deferred) or
 * when their controller aborts, recording the Clock's time then; a property over random start
 * times and lengths.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Exit, FastCheck, Fiber, TestClock } from "effect"
import * as Deadlines from "../../../src/internal/s3/deadlines.js"
import { settleUntil } from "../../support/PartTableHarness.js"

/** A request that lasts until `done` completes or its controller aborts; returns the Clock's time
 * of the abort, or "ended" if it ended first. */
const request = (deadlines: Deadlines.Deadlines, done: Deferred.Deferred<void>) =>
  deadlines.within((deadline) =>
    Effect.raceFirst(
      Effect.as(Deferred.await(done), "ended" as const),
      Effect.zipRight(
        Effect.async<void>((resume) => {
          if (deadline.signal.aborted) return resume(Effect.void)
          deadline.signal.addEventListener("abort", () => resume(Effect.void), { once: true })
        }),
        Clock.currentTimeMillis
      )
    )
  )

const start = (deadlines: Deadlines.Deadlines) =>
  Effect.gen(function*() {
    const done = yield* Deferred.make<void>()
    const fiber = yield* Effect.fork(request(deadlines, done))
    yield* Effect.yieldNow()
    return { done, fiber }
  })

/** The outcome of a request that must have ended by now (failing at once, not hanging, if not). */
const ended = <A>(fiber: Fiber.RuntimeFiber<A>) =>
  Effect.gen(function*() {
    yield* settleUntil(Effect.sync(() => fiber.unsafePoll() !== null), 1_000)
    const exit = fiber.unsafePoll()
    assert.isNotNull(exit, "the request has ended")
    return yield* (exit as Exit.Exit<A>)
  })

/** Asserts that a request still runs after every other fiber has had its turns. */
const stillRunning = <A>(fiber: Fiber.RuntimeFiber<A>) =>
  Effect.gen(function*() {
    yield* settleUntil(Effect.succeed(false), 100)
    assert.isNull(fiber.unsafePoll(), "the request still runs")
  })

/** Asserts the deadlines' stats once the fibers have settled (an interrupted sweeper takes a few
 * scheduler turns to end). */
const statsSettle = (deadlines: Deadlines.Deadlines, expected: { inFlight: number; sweepers: number }) =>
  Effect.gen(function*() {
    const same = () => JSON.stringify(deadlines.stats()) === JSON.stringify(expected)
    yield* settleUntil(Effect.sync(same), 1_000)
    assert.deepStrictEqual(deadlines.stats(), expected)
  })

describe("Deadlines", () => {
  it.effect("aborts a request's controller exactly timeoutMs after its start, not before", () =>
    Effect.gen(function*() {
      const deadlines = Deadlines.make(1_000)
      const { fiber } = yield* start(deadlines)
      yield* TestClock.adjust(999)
      yield* stillRunning(fiber)
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* ended(fiber), 1_000)
      yield* statsSettle(deadlines, { inFlight: 0, sweepers: 0 })
    }))

  it.effect("gives each request its full timeout, whichever started first or ends first", () =>
    Effect.gen(function*() {
      const deadlines = Deadlines.make(1_000)
      const first = yield* start(deadlines)
      yield* TestClock.adjust(400)
      const second = yield* start(deadlines)
      yield* TestClock.adjust(300)
      const third = yield* start(deadlines)
      // The first ends early: the sweeper, asleep until its deadline, must still keep the others'.
      yield* Deferred.succeed(first.done, undefined)
      assert.strictEqual(yield* ended(first.fiber), "ended")
      yield* TestClock.adjust(699)
      yield* stillRunning(second.fiber)
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* ended(second.fiber), 1_400)
      yield* TestClock.adjust(299)
      yield* stillRunning(third.fiber)
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* ended(third.fiber), 1_700)
    }))

  it.effect("forgets a request that ends, on every exit, and stops the sweeper with the last one", () =>
    Effect.gen(function*() {
      const deadlines = Deadlines.make(1_000)
      let seen: AbortController | undefined
      const failed = yield* Effect.exit(deadlines.within((deadline) => {
        seen = deadline
        return Effect.fail("boom")
      }))
      assert.isTrue(Exit.isFailure(failed))
      const running = yield* start(deadlines)
      const interrupted = yield* start(deadlines)
      yield* statsSettle(deadlines, { inFlight: 2, sweepers: 1 })
      yield* Fiber.interrupt(interrupted.fiber)
      yield* statsSettle(deadlines, { inFlight: 1, sweepers: 1 })
      yield* Deferred.succeed(running.done, undefined)
      yield* ended(running.fiber)
      yield* statsSettle(deadlines, { inFlight: 0, sweepers: 0 })
      yield* TestClock.adjust(5_000)
      assert.isFalse(seen?.signal.aborted ?? true, "an ended request's controller is never aborted")
      // The next busy period starts a sweeper of its own, which keeps its deadline.
      const later = yield* start(deadlines)
      yield* statsSettle(deadlines, { inFlight: 1, sweepers: 1 })
      yield* TestClock.adjust(1_000)
      assert.strictEqual(yield* ended(later.fiber), 6_000)
      yield* statsSettle(deadlines, { inFlight: 0, sweepers: 0 })
    }))

  it.effect.prop(
    "over random starts and lengths, a request is aborted at start + timeoutMs iff it lasts that long",
    [
      FastCheck.array(
        FastCheck.record({
          gapMs: FastCheck.integer({ min: 0, max: 700 }),
          lengthMs: FastCheck.integer({ min: 1, max: 2_000 })
        }),
        { minLength: 1, maxLength: 12 }
      )
    ],
    ([requests]) =>
      Effect.gen(function*() {
        const timeoutMs = 1_000
        const deadlines = Deadlines.make(timeoutMs)
        let startMs = 0
        const planned = requests.map(({ gapMs, lengthMs }) => {
          startMs += gapMs
          return { startMs, endMs: startMs + lengthMs }
        })
        const started: Array<
          { readonly done: Deferred.Deferred<void>; readonly fiber: Fiber.RuntimeFiber<number | "ended"> }
        > = []
        const endsFirst = (plan: (typeof planned)[number]) => plan.endMs < plan.startMs + timeoutMs
        const times = new Set(planned.flatMap((plan) => [plan.startMs, plan.startMs + timeoutMs, plan.endMs]))
        // At each moment: the clock moves (firing the deadlines due), then requests end, then start.
        for (const nowMs of [...times].sort((a, b) => a - b)) {
          yield* TestClock.setTime(nowMs)
          for (const [index, plan] of planned.entries()) {
            if (plan.endMs === nowMs && endsFirst(plan)) {
              yield* Deferred.succeed((started[index] as (typeof started)[number]).done, undefined)
            }
          }
          for (const plan of planned) {
            if (plan.startMs === nowMs) started.push(yield* start(deadlines))
          }
        }
        for (const [index, plan] of planned.entries()) {
          const outcome = yield* ended((started[index] as (typeof started)[number]).fiber)
          const expected = endsFirst(plan) ? "ended" : plan.startMs + timeoutMs
          assert.strictEqual(outcome, expected, `request ${index} (${plan.startMs}..${plan.endMs} ms)`)
        }
        yield* statsSettle(deadlines, { inFlight: 0, sweepers: 0 })
      }),
    { fastCheck: { numRuns: 40 } }
  )
})
