/**
 * Goal: the Storage's intake admits operations while open and refuses them once closed, the close
 * is idle only once every admitted operation has ended (whichever way), and an operation admitted
 * as `cut` is interrupted by the close and fails with ShuttingDown.
 * Method: the intake alone, with operations held on Deferreds; whether it is idle yet is read with
 * a timeout on the TestClock.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Option, TestClock } from "effect"
import * as Admission from "../../src/internal/admission.js"

const isShuttingDown = <A, E>(exit: Exit.Exit<A, E>): boolean =>
  Exit.isFailure(exit) &&
  Option.exists(Cause.failureOption(exit.cause), (error) => (error as { _tag?: string })._tag === "ShuttingDown")

/** Whether the intake is idle within 1 ms of simulated time. */
const idleNow = (intake: Admission.Admission) =>
  Effect.gen(function*() {
    const waiting = yield* Effect.fork(Effect.timeout(intake.idle, "1 millis"))
    yield* TestClock.adjust("1 millis")
    return Exit.isSuccess(yield* Fiber.await(waiting))
  })

/** An admitted operation that says when it has begun, then waits for `release`. */
const held = (begun: Deferred.Deferred<void>, release: Deferred.Deferred<void>) =>
  Effect.zipRight(Deferred.succeed(begun, undefined), Deferred.await(release))

describe("Admission", () => {
  it.effect("the close refuses later operations and is idle once the admitted ones have ended, failed or not", () =>
    Effect.gen(function*() {
      const intake = yield* Admission.make
      const release = yield* Deferred.make<void>()
      const readBegun = yield* Deferred.make<void>()
      const writeBegun = yield* Deferred.make<void>()
      const running = yield* Effect.fork(intake.admit("read", held(readBegun, release)))
      const failing = yield* Effect.fork(
        intake.admit("write", Effect.zipRight(held(writeBegun, release), Effect.fail("disk")))
      )
      yield* Deferred.await(readBegun)
      yield* Deferred.await(writeBegun)
      assert.strictEqual(yield* intake.inFlight, 2)
      yield* intake.close
      assert.isTrue(isShuttingDown(yield* Effect.exit(intake.admit("append", Effect.void))), "refused after the close")
      assert.isTrue(isShuttingDown(yield* Effect.exit(intake.refuseIfClosed("lease"))))
      assert.isFalse(yield* idleNow(intake), "not idle while two run")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(running)
      assert.isTrue(Exit.isFailure(yield* Fiber.await(failing)))
      assert.isTrue(yield* idleNow(intake), "idle once both ended")
      assert.strictEqual(yield* intake.inFlight, 0)
    }))

  it.effect("a close with nothing in flight is idle at once; a cut operation is interrupted by the close", () =>
    Effect.gen(function*() {
      const quiet = yield* Admission.make
      assert.isFalse(yield* idleNow(quiet), "an open intake is never idle")
      yield* quiet.close
      assert.isTrue(yield* idleNow(quiet))
      const intake = yield* Admission.make
      const begun = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const checkpoint = yield* Effect.fork(
        intake.cut(
          "checkpoint",
          Effect.onInterrupt(held(begun, yield* Deferred.make<void>()), () => Deferred.succeed(interrupted, undefined))
        )
      )
      yield* Deferred.await(begun)
      assert.strictEqual(yield* intake.inFlight, 1)
      yield* intake.close
      assert.isTrue(isShuttingDown(yield* Fiber.await(checkpoint)), "it fails with ShuttingDown")
      assert.isTrue(yield* Deferred.isDone(interrupted), "its work was interrupted")
      assert.isTrue(yield* idleNow(intake))
    }))
})
