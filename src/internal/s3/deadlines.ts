/**
 * The deadlines of one S3 store's requests: each request registers an AbortController with its
 * deadline, `timeoutMs` after its start on the Clock, and one sweeper fiber per store aborts every
 * controller whose deadline has passed. The sweeper runs only while requests are in flight: the
 * first request of a busy period forks it, the last one to end interrupts it. So a request costs a
 * map entry, not a timer fiber of its own (forking and interrupting one cost a 1 MiB PutObject
 * about a tenth of its CPU time).
 *
 * Replaces: OrioleDB's src/s3/requests.c, whose libcurl requests had no timeout
 * (docs/ORIGINAL.md §7).
 */
import { Clock, Duration, Effect, type Fiber } from "effect"

export interface Deadlines {
  /**
   * Runs `use` with a fresh AbortController that is aborted once `timeoutMs` have passed since
   * the start, unless `use` has ended by then. The controller is forgotten on every exit of `use`.
   */
  readonly within: <A, E, R>(use: (deadline: AbortController) => Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Requests in flight, and the sweeper fibers alive (for tests: 0 or 1 but for a moment). */
  readonly stats: () => { readonly inFlight: number; readonly sweepers: number }
}

/** The Clock's monotonic time in milliseconds (its nanoseconds: a wall-clock step back or forth
 * moves no deadline). */
const monotonicMs = (clock: Clock.Clock): number => Number(clock.unsafeCurrentTimeNanos() / 1_000_000n)

export const make = (timeoutMs: number): Deadlines => {
  const inFlight = new Map<AbortController, number>()
  let sweeper: Fiber.RuntimeFiber<void> | undefined
  // Which sweeper is the current one: one that was told to stop may still run a last round.
  let generation = 0
  let sweepersAlive = 0

  /** Aborts the controllers past their deadlines, then sleeps until the earliest other one; ends
   * when none is left or a newer sweeper has replaced it. A request that registers meanwhile never
   * needs it woken early: with one timeout and a monotonic clock, its deadline is at or after
   * every earlier request's. */
  const sweep = (clock: Clock.Clock, own: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (own !== generation) return Effect.void
      const now = monotonicMs(clock)
      let earliest = Number.POSITIVE_INFINITY
      for (const [controller, deadline] of inFlight) {
        if (deadline <= now) {
          inFlight.delete(controller)
          controller.abort()
        } else if (deadline < earliest) {
          earliest = deadline
        }
      }
      if (earliest === Number.POSITIVE_INFINITY) {
        sweeper = undefined
        return Effect.void
      }
      return Effect.zipRight(clock.sleep(Duration.millis(earliest - now)), sweep(clock, own))
    })

  const register = (deadline: AbortController): Effect.Effect<void> =>
    Effect.clockWith((clock) => {
      inFlight.set(deadline, monotonicMs(clock) + timeoutMs)
      if (sweeper !== undefined) return Effect.void
      const own = ++generation
      sweepersAlive++
      // Forked uninterruptible (as the acquire that runs this), so the count is kept on every exit.
      const sweeping = Effect.ensuring(Effect.interruptible(sweep(clock, own)), Effect.sync(() => sweepersAlive--))
      return Effect.map(Effect.forkDaemon(sweeping), (fiber) => {
        if (own === generation) sweeper = fiber
      })
    })

  const forget = (deadline: AbortController): Effect.Effect<void> =>
    Effect.fiberIdWith((self) =>
      Effect.sync(() => {
        inFlight.delete(deadline)
        if (inFlight.size > 0 || sweeper === undefined) return
        // The last request ended: stop the sweeper without waiting for it (it only sleeps).
        const idle = sweeper
        sweeper = undefined
        generation++
        idle.unsafeInterruptAsFork(self)
      })
    )

  return {
    within: (use) =>
      Effect.suspend(() => {
        const deadline = new AbortController()
        return Effect.acquireUseRelease(register(deadline), () => use(deadline), () => forget(deadline))
      }),
    stats: () => ({ inFlight: inFlight.size, sweepers: sweepersAlive })
  }
}
