/**
 * Goal: the Storage's intake admits operations while open and refuses them once closed, the close
 * is idle only once every admitted operation has ended (whichever way), and an operation admitted
 * as `cut` is interrupted by the close and fails with ShuttingDown.
 * Method: the intake alone, with operations held on Deferreds.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Option } from "effect"
import * as Admission from "../../src/internal/admission.js"

const isShuttingDown = <A, E>(exit: Exit.Exit<A, E>): boolean =>
  Exit.isFailure(exit) &&
  Option.exists(Cause.failureOption(exit.cause), (error) => (error as { _tag?: string })._tag === "ShuttingDown")

describe("Admission", () => {
  it.effect("the close refuses later operations and is idle once the admitted ones have ended, failed or not", () =>
    Effect.gen(function*() {
      const intake = yield* Admission.make
      const release = yield* Deferred.make<void>()
      const running = yield* Effect.fork(intake.admit("read", Deferred.await(release)))
      const failing = yield* Effect.fork(
        intake.admit("write", Effect.zipRight(Deferred.await(release), Effect.fail("disk")))
      )
      yield* Effect.yieldNow()
      assert.strictEqual(yield* intake.inFlight, 2)
      yield* intake.close
      assert.isTrue(isShuttingDown(yield* Effect.exit(intake.admit("append", Effect.void))), "refused after the close")
      assert.isTrue(isShuttingDown(yield* Effect.exit(intake.refuseIfClosed("lease"))))
      const idle = yield* Effect.fork(intake.idle)
      yield* Effect.yieldNow()
      assert.isTrue(Option.isNone(yield* Fiber.poll(idle)), "not idle while two run")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(running)
      assert.isTrue(Exit.isFailure(yield* Fiber.await(failing)))
      yield* Fiber.join(idle)
      assert.strictEqual(yield* intake.inFlight, 0)
    }))

  it.effect("a close with nothing in flight is idle at once; a cut operation is interrupted by the close", () =>
    Effect.gen(function*() {
      const quiet = yield* Admission.make
      yield* quiet.close
      yield* quiet.idle
      const intake = yield* Admission.make
      const interrupted = yield* Deferred.make<void>()
      const checkpoint = yield* Effect.fork(
        intake.cut("checkpoint", Effect.onInterrupt(Effect.never, () => Deferred.succeed(interrupted, undefined)))
      )
      yield* Effect.yieldNow()
      assert.strictEqual(yield* intake.inFlight, 1)
      yield* intake.close
      assert.isTrue(isShuttingDown(yield* Fiber.await(checkpoint)), "it fails with ShuttingDown")
      assert.isTrue(yield* Deferred.isDone(interrupted), "its work was interrupted")
      yield* intake.idle
    }))
})
