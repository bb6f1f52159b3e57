/**
 * WaitRegistry: who waits on what, since when. Every potentially long wait of the library (a task
 * handle, a part load, a WAL archive position, the shutdown checkpoint) is wrapped in `track`, so
 * that diagnostics and the CLI can print the current wait-for list instead of attaching a debugger
 * (the original's hangs, #340 and #373, were diagnosed from gdb backtraces).
 *
 * IMPLEMENTATION: placeholder signatures; see issue "2 of 8".
 *
 * @since 0.1.0
 */
import { Context, type Effect } from "effect"

/** One current wait. */
export interface Wait {
  readonly id: number
  /** The waiting fiber, as Effect prints it (`#42`). */
  readonly fiber: string
  /** What waits, e.g. "PartTable.lease", "Checkpointer.checkpoint 7". */
  readonly waiter: string
  /** What it waits on, e.g. "task 17 ReadPart users#3", "part users#3 Loading". */
  readonly on: string
  readonly sinceMs: number
}

/** The operations of the registry. @category models */
export interface WaitRegistryService {
  /** Runs `effect`, registered as a wait of `waiter` on `on` for as long as it runs. */
  readonly track: <A, E, R>(waiter: string, on: string, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** The current waits, oldest first. */
  readonly current: Effect.Effect<ReadonlyArray<Wait>>
}

/** The registry of current waits. @category tags */
export class WaitRegistry extends Context.Tag("effect-s3-tier/WaitRegistry")<WaitRegistry, WaitRegistryService>() {}
