/**
 * Goal: the simulation's executor (test/sim/SimRuntime.ts) is a faithful, deterministic stand-in
 * for the TestClock: time moves only when every fiber is idle, straight to the next timer; timers
 * fire in order; a run that can never finish is reported (deadlock, livelock, time limit) instead
 * of hanging the test; and one seed gives one run. Method: small effects with known timings.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Random, Ref } from "effect"
import { runSimulated } from "./SimRuntime.js"

const now = Effect.clockWith((clock) => clock.currentTimeMillis)

const valueOf = <A, E>(run: { readonly exit: Exit.Exit<A, E> | undefined }): A => {
  if (run.exit === undefined || Exit.isFailure(run.exit)) {
    throw new Error(`the run did not succeed: ${String(run.exit)}`)
  }
  return run.exit.value
}

describe("SimRuntime", () => {
  it("moves time only to the next timer, and fires same-instant timers in creation order", () => {
    const run = runSimulated(
      Effect.gen(function*() {
        const order = yield* Ref.make<ReadonlyArray<string>>([])
        const note = (name: string) =>
          Effect.flatMap(now, (atMs) => Ref.update(order, (names) => [...names, `${name}@${atMs}`]))
        const fibers = yield* Effect.all(
          [
            Effect.fork(Effect.zipRight(Effect.sleep(Duration.millis(30)), note("c"))),
            Effect.fork(Effect.zipRight(Effect.sleep(Duration.millis(10)), note("a"))),
            Effect.fork(Effect.zipRight(Effect.sleep(Duration.millis(10)), note("b")))
          ]
        )
        yield* Fiber.joinAll(fibers)
        return yield* Ref.get(order)
      }),
      { seed: 1, timeLimitMs: 1_000 }
    )
    assert.deepStrictEqual(valueOf(run), ["a@10", "b@10", "c@30"])
    assert.strictEqual(run.endMs, 30)
  })

  it("runs timeouts and interruptions on simulated time", () => {
    const run = runSimulated(
      Effect.gen(function*() {
        const cut = yield* Effect.sleep(Duration.seconds(60)).pipe(Effect.timeout(Duration.millis(250)), Effect.either)
        const fiber = yield* Effect.fork(Effect.sleep(Duration.hours(1)))
        yield* Effect.sleep(Duration.millis(50))
        yield* Fiber.interrupt(fiber)
        return { cut: cut._tag, atMs: yield* now }
      }),
      { seed: 1, timeLimitMs: 10_000 }
    )
    assert.deepStrictEqual(valueOf(run), { cut: "Left", atMs: 300 })
  })

  it("reports a deadlock instead of waiting forever", () => {
    const run = runSimulated(Effect.flatMap(Deferred.make<void>(), Deferred.await), { seed: 1, timeLimitMs: 1_000 })
    assert.strictEqual(run.stop, "deadlock")
    assert.strictEqual(run.exit, undefined)
  })

  it("reports a livelock: fibers that keep running at one instant", () => {
    const spin = Effect.forever(Effect.yieldNow())
    const run = runSimulated(spin, { seed: 1, timeLimitMs: 1_000, tasksPerInstantMax: 10_000 })
    assert.strictEqual(run.stop, "livelock")
  })

  it("stops at the time limit when timers keep the system busy", () => {
    const run = runSimulated(Effect.forever(Effect.sleep(Duration.millis(100))), { seed: 1, timeLimitMs: 1_000 })
    assert.strictEqual(run.stop, "time-limit")
    assert.strictEqual(run.endMs, 1_000)
  })

  it("gives one run per seed: same seed, same draws and timings; another seed, other draws", () => {
    const program = Effect.gen(function*() {
      const draws: Array<number> = []
      for (let index = 0; index < 5; index++) {
        const delayMs = yield* Random.nextIntBetween(0, 100)
        yield* Effect.sleep(Duration.millis(delayMs))
        draws.push(delayMs)
      }
      return { draws, atMs: yield* now }
    })
    const first = valueOf(runSimulated(program, { seed: 42, timeLimitMs: 10_000 }))
    const second = valueOf(runSimulated(program, { seed: 42, timeLimitMs: 10_000 }))
    const other = valueOf(runSimulated(program, { seed: 43, timeLimitMs: 10_000 }))
    assert.deepStrictEqual(first, second)
    assert.notDeepEqual(first.draws, other.draws)
  })

  it("captures the run's logs with their simulated time", () => {
    const run = runSimulated(Effect.zipRight(Effect.sleep(Duration.millis(5)), Effect.logWarning("slow")), {
      seed: 1,
      timeLimitMs: 100
    })
    assert.deepStrictEqual(run.logs, ["[5.0 ms] WARN slow"])
  })
})
