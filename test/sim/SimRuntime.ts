/**
 * The deterministic executor of the simulation: a simulated `Clock` and a `Scheduler` that runs
 * every fiber of one simulation on a single, explicit run queue, pumped synchronously.
 *
 * Why not `TestClock.adjust`: it waits for quiescence by polling every test fiber with real
 * `setTimeout(0)` ticks before and after each timer it fires (effect/src/TestClock.ts, `run` →
 * `awaitSuspended`), which costs a millisecond or more of wall time per simulated wake-up; one
 * schedule wakes fibers hundreds of times. Here quiescence is exact and free: the system is idle
 * when the run queue is empty, and only then does time move, straight to the next timer. Code under
 * test sees an ordinary `Clock` (through `Effect.withClock`), exactly as with the TestClock: every
 * `Effect.sleep`, `timeout` and `Schedule` of the library runs on simulated time.
 *
 * Determinism: one seed gives one run. Fibers run in scheduling order (FIFO within a priority),
 * timers fire in (time, creation) order, `Random` is seeded. Nothing may wait on real I/O or on a
 * Promise inside a simulation: a fiber waiting on one would look idle (it is reported as a
 * deadlock, never silently waited for).
 *
 * Anchors: FoundationDB's simulator and TigerBeetle's VOPR run a whole cluster on one thread with
 * a simulated clock in exactly this way (https://apple.github.io/foundationdb/testing.html,
 * https://docs.tigerbeetle.com/about/vopr).
 */
import { Clock, Duration, Effect, Exit, FiberRef, Logger, LogLevel, Random, Scheduler } from "effect"
import type { Fiber } from "effect"

interface Timer {
  readonly atMs: number
  readonly sequence: number
  readonly fire: () => void
  cancelled: boolean
}

/** A binary min-heap of timers ordered by (atMs, sequence). */
class TimerHeap {
  private readonly items: Array<Timer> = []

  get size(): number {
    return this.items.length
  }

  push(timer: Timer): void {
    this.items.push(timer)
    let index = this.items.length - 1
    while (index > 0) {
      const parent = (index - 1) >> 1
      if (!this.before(index, parent)) break
      this.swap(index, parent)
      index = parent
    }
  }

  peek(): Timer | undefined {
    return this.items[0]
  }

  pop(): Timer | undefined {
    const top = this.items[0]
    const last = this.items.pop()
    if (top === undefined || last === undefined || this.items.length === 0) return top
    this.items[0] = last
    let index = 0
    for (;;) {
      const left = 2 * index + 1
      const right = left + 1
      let smallest = index
      if (left < this.items.length && this.before(left, smallest)) smallest = left
      if (right < this.items.length && this.before(right, smallest)) smallest = right
      if (smallest === index) break
      this.swap(index, smallest)
      index = smallest
    }
    return top
  }

  private before(left: number, right: number): boolean {
    const a = this.items[left]
    const b = this.items[right]
    // Both indices are in range: callers check them against the length first.
    if (a === undefined || b === undefined) return false
    return a.atMs < b.atMs || (a.atMs === b.atMs && a.sequence < b.sequence)
  }

  private swap(left: number, right: number): void {
    const a = this.items[left]
    const b = this.items[right]
    if (a === undefined || b === undefined) return
    this.items[left] = b
    this.items[right] = a
  }
}

/** Simulated time. Only `advanceToNextTimer` moves it. */
export class SimClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  private nowMs = 0
  private sequence = 0
  private readonly timers = new TimerHeap()

  unsafeCurrentTimeMillis(): number {
    return this.nowMs
  }

  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.nowMs)

  unsafeCurrentTimeNanos(): bigint {
    return BigInt(Math.round(this.nowMs * 1_000_000))
  }

  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())

  sleep(duration: Duration.Duration): Effect.Effect<void> {
    const durationMs = Duration.toMillis(duration)
    return Effect.async<void>((resume) => {
      // An infinite sleep never fires: it has no timer, so it cannot keep the simulation busy.
      if (!Number.isFinite(durationMs)) return
      const timer: Timer = {
        atMs: this.nowMs + Math.max(0, durationMs),
        sequence: this.sequence++,
        fire: () => resume(Effect.void),
        cancelled: false
      }
      this.timers.push(timer)
      return Effect.sync(() => {
        timer.cancelled = true
      })
    })
  }

  /** The time of the earliest live timer, if any. */
  nextTimerAtMs(): number | undefined {
    for (;;) {
      const top = this.timers.peek()
      if (top === undefined) return undefined
      if (!top.cancelled) return top.atMs
      this.timers.pop()
    }
  }

  /** Moves time to the earliest timer and fires every timer due at that instant, in order. */
  advanceToNextTimer(): boolean {
    const atMs = this.nextTimerAtMs()
    if (atMs === undefined) return false
    this.nowMs = Math.max(this.nowMs, atMs)
    for (;;) {
      const top = this.timers.peek()
      if (top === undefined || top.atMs > this.nowMs) break
      this.timers.pop()
      if (!top.cancelled) top.fire()
    }
    return true
  }

  /** Moves time forward with no timer (used when the simulation is idle up to a limit). */
  advanceTo(atMs: number): void {
    this.nowMs = Math.max(this.nowMs, atMs)
  }
}

/** Runs scheduled fiber steps from one queue, synchronously, when `drain` is called. */
export class SimScheduler implements Scheduler.Scheduler {
  private readonly buckets = new Scheduler.PriorityBuckets()
  private pending = 0
  tasksRun = 0

  shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    return fiber.currentOpCount > fiber.getFiberRef(FiberRef.currentMaxOpsBeforeYield)
      ? fiber.getFiberRef(FiberRef.currentSchedulingPriority)
      : false
  }

  scheduleTask(task: Scheduler.Task, priority: number): void {
    this.buckets.scheduleTask(task, priority)
    this.pending++
  }

  get idle(): boolean {
    return this.pending === 0
  }

  /** Runs tasks until none is left or `tasksMax` ran; returns how many ran. */
  drain(tasksMax: number): number {
    let ran = 0
    while (this.pending > 0 && ran < tasksMax) {
      const buckets = this.buckets.buckets
      this.buckets.buckets = []
      for (const [, tasks] of buckets) {
        for (const task of tasks) {
          this.pending--
          ran++
          task()
        }
      }
    }
    this.tasksRun += ran
    return ran
  }
}

/** How a simulated run ended. */
export type SimStop =
  /** The root effect finished. */
  | "done"
  /** Nothing can run and no timer is set, but the root effect has not finished. */
  | "deadlock"
  /** Fibers kept running at one instant without ever letting time move. */
  | "livelock"
  /** The simulated time limit passed before the root effect finished. */
  | "time-limit"

/** The result of `runSimulated`. */
export interface SimRun<A, E> {
  readonly stop: SimStop
  readonly exit: Exit.Exit<A, E> | undefined
  readonly endMs: number
  readonly tasksRun: number
  /** The last log lines of the run (bounded), for failure reports. */
  readonly logs: ReadonlyArray<string>
}

/** Options of one simulated run. */
export interface SimRunOptions {
  readonly seed: number
  /** Simulated milliseconds after which the run is abandoned. */
  readonly timeLimitMs: number
  /** Scheduler tasks allowed at a single instant before the run counts as a livelock. */
  readonly tasksPerInstantMax?: number
  /** Log lines kept for the report. */
  readonly logLinesMax?: number
  /** Minimum level of the captured logs. */
  readonly logLevel?: LogLevel.LogLevel
}

/**
 * Runs an effect to completion on simulated time, synchronously. Fibers still suspended when the
 * root effect ends (a hung system under test, by design of the properties) are abandoned: nothing
 * refers to them once this returns.
 */
export const runSimulated = <A, E>(effect: Effect.Effect<A, E>, options: SimRunOptions): SimRun<A, E> => {
  const clock = new SimClock()
  const scheduler = new SimScheduler()
  const logs: Array<string> = []
  const logLinesMax = options.logLinesMax ?? 200
  const logger = Logger.make(({ date: _date, logLevel, message }) => {
    const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
    logs.push(`[${clock.unsafeCurrentTimeMillis().toFixed(1)} ms] ${logLevel.label} ${text}`)
    if (logs.length > logLinesMax) logs.shift()
  })
  const program = effect.pipe(
    Effect.withClock(clock),
    Effect.withRandom(Random.make(options.seed)),
    Logger.withMinimumLogLevel(options.logLevel ?? LogLevel.Info),
    Effect.provide(Logger.replace(Logger.defaultLogger, logger))
  )
  const fiber = Effect.runFork(program, { scheduler })
  const tasksPerInstantMax = options.tasksPerInstantMax ?? 5_000_000
  let stop: SimStop = "done"
  for (;;) {
    const ran = scheduler.drain(tasksPerInstantMax)
    if (fiber.unsafePoll() !== null) break
    if (!scheduler.idle && ran >= tasksPerInstantMax) {
      stop = "livelock"
      break
    }
    const nextMs = clock.nextTimerAtMs()
    if (nextMs === undefined) {
      stop = "deadlock"
      break
    }
    if (nextMs > options.timeLimitMs) {
      clock.advanceTo(options.timeLimitMs)
      stop = "time-limit"
      break
    }
    clock.advanceToNextTimer()
  }
  const exit = fiber.unsafePoll() ?? undefined
  return {
    stop: exit === undefined ? stop : "done",
    exit,
    endMs: clock.unsafeCurrentTimeMillis(),
    tasksRun: scheduler.tasksRun,
    logs
  }
}

/** Unwraps a finished run or throws with its logs (for harness code that must finish). */
export const expectDone = <A, E>(run: SimRun<A, E>): A => {
  if (run.exit !== undefined && Exit.isSuccess(run.exit)) return run.exit.value
  const reason = run.exit === undefined ? run.stop : String(Exit.isFailure(run.exit) ? run.exit.cause : "")
  throw new Error(`simulation did not finish (${reason}) at ${run.endMs} ms\n${run.logs.slice(-30).join("\n")}`)
}
