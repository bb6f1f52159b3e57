/**
 * WaitRegistry: who waits on what, since when. Every potentially long wait of the library (a task
 * handle, a part load, a WAL archive position, the shutdown checkpoint) is wrapped in `track`, so
 * that diagnostics and the CLI can print the current wait-for list instead of attaching a debugger
 * (the original's hangs, #340 and #373, were diagnosed from gdb backtraces: docs/ORIGINAL.md §7).
 *
 * A wait is registered before the tracked effect starts and removed on every exit of it (success,
 * failure, defect, interruption), so the registry never lists a wait that ended. The registry holds
 * one small record per current wait and nothing else: its size is the number of fibers waiting.
 *
 * Replaces: nothing in OrioleDB; its waits (`ConditionVariableSleep` on `erasedLocationCV`,
 * `pg_usleep` polls) were invisible except to a debugger.
 *
 * @since 0.1.0
 */
import { Context, Effect, FiberId, Layer } from "effect"

/** One current wait. @category models */
export interface Wait {
  /** Unique within the registry's lifetime, increasing with registration order. */
  readonly id: number
  /** The waiting fiber, as Effect prints it (`#42`). */
  readonly fiber: string
  /** What waits, e.g. "PartTable.lease", "Checkpointer.checkpoint 7". */
  readonly waiter: string
  /** What it waits on, e.g. "task 17 ReadPart users#3", "part users#3 Loading". */
  readonly on: string
  /** When the wait began, in `Clock` milliseconds (the TestClock's in tests). */
  readonly sinceMs: number
}

/** The operations of the registry. @category models */
export interface WaitRegistryService {
  /**
   * Runs `effect`, registered as a wait of `waiter` on `on` for as long as it runs. The
   * registration is removed on every exit (including interruption). Adds no bound of its own: the
   * caller bounds the wait (a deadline from StorageConfig). `on` may be a function, called only
   * when the registry is read (for hot paths that should not build a string per wait).
   */
  readonly track: <A, E, R>(
    waiter: string,
    on: string | (() => string),
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E, R>
  /** The current waits, oldest first (by `sinceMs`, then registration order). */
  readonly current: Effect.Effect<ReadonlyArray<Wait>>
  /** How many waits are current (cheaper than `current` for checks and gauges). */
  readonly size: Effect.Effect<number>
}

/** The registry of current waits. @category tags */
export class WaitRegistry extends Context.Tag("effect-s3-tier/WaitRegistry")<WaitRegistry, WaitRegistryService>() {}

/** Oldest first; registration order breaks ties (and orders waits if a clock ever stepped back). */
const byAge = (left: Wait, right: Wait): number => left.sinceMs - right.sinceMs || left.id - right.id

/** A registered wait; the fiber's name and a lazy `on` are resolved only when someone reads. */
interface Registration {
  readonly id: number
  readonly fiberId: FiberId.FiberId
  readonly waiter: string
  readonly on: string | (() => string)
  readonly sinceMs: number
}

const toWait = (registration: Registration): Wait => ({
  id: registration.id,
  fiber: FiberId.threadName(registration.fiberId),
  waiter: registration.waiter,
  on: typeof registration.on === "string" ? registration.on : registration.on(),
  sinceMs: registration.sinceMs
})

/** Builds an empty registry. @category constructors */
export const make: Effect.Effect<WaitRegistryService> = Effect.sync(() => {
  // Plain mutable state: every access is one synchronous step of one fiber, so no access can
  // interleave with another, and a Map keeps registration order for free.
  const registrations = new Map<number, Registration>()
  let lastId = 0

  const track = <A, E, R>(
    waiter: string,
    on: string | (() => string),
    effect: Effect.Effect<A, E, R>
  ): Effect.Effect<A, E, R> =>
    // Registration cannot be interrupted half-way, and the removal runs on every exit of `effect`.
    Effect.uninterruptibleMask((restore) =>
      Effect.clockWith((clock) =>
        Effect.fiberIdWith((fiberId) => {
          lastId += 1
          const id = lastId
          registrations.set(id, { id, fiberId, waiter, on, sinceMs: clock.unsafeCurrentTimeMillis() })
          return Effect.ensuring(
            restore(effect),
            Effect.sync(() => {
              registrations.delete(id)
            })
          )
        })
      )
    )

  return WaitRegistry.of({
    track,
    current: Effect.sync(() => Array.from(registrations.values(), toWait).sort(byAge)),
    size: Effect.sync(() => registrations.size)
  })
})

/** The registry as a layer. @category layers */
export const layer: Layer.Layer<WaitRegistry> = Layer.effect(WaitRegistry, make)
