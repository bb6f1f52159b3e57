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
import { Clock, Duration, Effect, type Option } from "effect"

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
