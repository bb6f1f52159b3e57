/**
 * Deadline arithmetic: a point in `Clock` time, what is left of it, and a step bounded by it.
 *
 * Every bounded sequence of the tier (the shutdown, the WAL's final flush, the workers' drain)
 * computes "deadline = now + budget" once and then gives each step what is left, so that a slow step
 * shortens the next ones instead of pushing the end past the deadline. Times are `Clock`
 * milliseconds, so the TestClock drives them in tests.
 *
 * Replaces: nothing in OrioleDB, whose shutdown waits had no deadline (docs/ORIGINAL.md §7).
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Fiber, Option, Ref, type Scope } from "effect"

/** The `Clock` time `budgetMs` from now. */
export const deadlineAt = (budgetMs: number): Effect.Effect<number> =>
  Effect.map(Clock.currentTimeMillis, (nowMs) => nowMs + Math.max(0, budgetMs))

/** What is left until `deadlineAtMs`, never negative. */
export const remainingMs = (deadlineAtMs: number): Effect.Effect<number> =>
  Effect.map(Clock.currentTimeMillis, (nowMs) => Math.max(0, deadlineAtMs - nowMs))

/**
 * Runs `step` for at most `ms` (None when the bound cut it), in an interruptible region of its own.
 * A finalizer runs uninterruptibly (a caller's interruption must not cut a shutdown in half), and a
 * fiber forked there inherits that: a timeout racing the step could never interrupt a stalled
 * request. So a step that waits is made interruptible here, under its own bound.
 */
export const bounded = <A, E, R>(step: Effect.Effect<A, E, R>, ms: number): Effect.Effect<Option.Option<A>, E, R> =>
  Effect.interruptible(step).pipe(Effect.timeoutOption(Duration.millis(Math.max(0, ms))))

/**
 * Forks `effect` as a daemon of the current scope whose `stop` interrupts it and waits for its end
 * for `stopBoundMs` at most; closing the scope stops it the same way, unless a stop was already cut
 * short. A daemon in a step that cannot stop at once (a disk change a stalled disk holds returns
 * only once it has landed) thus holds neither its stopper nor the close past the bound: it ends on
 * its own when the step does.
 */
export const forkStoppableDaemon = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  stopBoundMs: number
): Effect.Effect<
  { readonly fiber: Fiber.RuntimeFiber<A, E>; readonly stop: Effect.Effect<void> },
  never,
  R | Scope.Scope
> =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkDaemon(effect)
    const abandonedRef = yield* Ref.make(false)
    const stop = Effect.flatMap(
      bounded(Fiber.interrupt(fiber), stopBoundMs),
      (ended) => (Option.isNone(ended) ? Ref.set(abandonedRef, true) : Effect.void)
    )
    yield* Effect.addFinalizer(() =>
      Effect.flatMap(Ref.get(abandonedRef), (abandoned) => (abandoned ? Effect.void : stop))
    )
    return { fiber, stop }
  })
