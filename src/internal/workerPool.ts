/**
 * The worker pool's machinery: the worker seats and their fibers, a task's attempts, retries and
 * hand-over to a replacement worker after a timeout, and the watchdog that enforces the request
 * timeout. The public surface (the service, its metrics, shutdown and layer) and the reasons for
 * this design are in src/services/S3Workers.ts.
 *
 * Replaces: the loop of OrioleDB's src/s3/worker.c (`s3worker_main`; docs/ORIGINAL.md §3).
 *
 * @internal
 * @since 0.1.0
 */
import { Cause, Duration, Effect, Exit, Fiber, HashSet, Option, Schedule } from "effect"
import type { Tracer } from "effect"
import { isTransient, ObjectStoreUnavailable, TaskAborted } from "../domain/Errors.js"
import { describe as describeTask, subjectOf, type TaskType } from "../domain/Task.js"
import { retrySchedule } from "../services/RequestPolicy.js"
import type { StorageConfigValue } from "../services/StorageConfig.js"
import type { PickedTask, TaskQueueService } from "../services/TaskQueue.js"

/** Where the workers report what the metrics show (the service binds them to its labels). */
export interface WorkerMetrics {
  /** A task ended: its outcome, its attempts after the first, ms from enqueue to completion. */
  readonly finished: (
    type: TaskType,
    outcome: "completed" | "failed" | "interrupted",
    retries: number,
    latencyMs: number
  ) => void
  /** An attempt was cut by the request timeout. */
  readonly timedOut: (type: TaskType) => void
}

// ---------------------------------------------------------------------------------------------
// Pool state
// ---------------------------------------------------------------------------------------------

/** One worker seat: the fiber that holds it and its current attempt, for the watchdog. */
export interface WorkerSeat {
  readonly index: number
  fiber: Fiber.RuntimeFiber<unknown> | undefined
  /** Increases with every attempt started in this seat. */
  attempt: number
  attemptActive: boolean
  attemptDeadlineMs: number
  /** The attempt number the watchdog interrupted last. */
  timedOutAttempt: number
}

/** A task's retry state, carried from a timed-out worker to its replacement. */
export interface TaskRetries {
  readonly picked: PickedTask
  readonly span: Tracer.Span
  attempts: number
  driver: Schedule.ScheduleDriver<unknown, unknown, never> | undefined
}

/** The pool's bookkeeping; every method is synchronous (one step of one fiber). */
export class PoolState {
  readonly seats: ReadonlyArray<WorkerSeat>
  readonly workers = new Set<Fiber.RuntimeFiber<unknown>>()
  watchdog: Fiber.RuntimeFiber<unknown> | undefined = undefined
  /** Set while the watchdog waits for any attempt to start. */
  wakeWatchdog: (() => void) | undefined = undefined
  /** Set once the drain deadline has passed and the workers are being interrupted: from then on no
   * attempt, retry, wait for work or replacement worker starts. */
  stopping = false
  busy = 0
  interrupted = 0
  replaced = 0

  constructor(workerCount: number) {
    this.seats = Array.from({ length: workerCount }, (_, index) => ({
      index,
      fiber: undefined,
      attempt: 0,
      attemptActive: false,
      attemptDeadlineMs: 0,
      timedOutAttempt: 0
    }))
  }

  workersAlive(): number {
    return this.workers.size
  }
}

// ---------------------------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------------------------

const timeoutError = (picked: PickedTask, timeoutMs: number): ObjectStoreUnavailable =>
  new ObjectStoreUnavailable({
    operation: picked.task._tag,
    key: describeTask(picked.task),
    reason: "Timeout",
    detail: `attempt did not finish within ${timeoutMs} ms`
  })

/** Whether the current fiber has been interrupted (by shutdown or by the watchdog). */
const isFiberInterrupted: Effect.Effect<boolean> = Effect.descriptorWith((descriptor) =>
  Effect.succeed(HashSet.size(descriptor.interruptors) > 0)
)

/**
 * The steps of the pool's workers, as fields calling each other: a task's attempt, what follows
 * from its outcome (retry, hand-over to a replacement worker, completion), a worker's take-run
 * loop and its start, and the watchdog. Every step runs in one fiber; the shared state is `pool`.
 */
export class Workers {
  private readonly schedule: Schedule.Schedule<unknown, unknown>

  constructor(
    private readonly config: StorageConfigValue,
    private readonly queue: TaskQueueService,
    private readonly pool: PoolState,
    private readonly metrics: WorkerMetrics
  ) {
    this.schedule = retrySchedule(config)
  }

  /** Completes the task with its final Exit (TaskAborted when `cut` by shutdown), records it and
   * ends its span. Every path of a task ends here exactly once. Never fails. */
  readonly finish = (retries: TaskRetries, exit: Exit.Exit<unknown, unknown>, cut: boolean): Effect.Effect<void> =>
    Effect.clockWith((clock) => {
      const { picked } = retries
      const type = picked.task._tag
      this.pool.busy -= 1
      let outcome = exit
      if (cut) {
        // Shutdown cut the task mid-run: its waiters learn that it was aborted.
        this.pool.interrupted += 1
        outcome = Exit.fail(new TaskAborted({ taskId: picked.id, taskType: type, reason: "DrainDeadline" }))
      }
      const ended = cut ? "interrupted" : Exit.isSuccess(exit) ? "completed" : "failed"
      this.metrics.finished(
        type,
        ended,
        Math.max(0, retries.attempts - 1),
        Math.max(0, clock.unsafeCurrentTimeMillis() - picked.enqueuedAtMs)
      )
      retries.span.end(clock.unsafeCurrentTimeNanos(), outcome)
      return picked.complete(outcome)
    })

  /** One attempt on the current fiber (which holds `seat`), then what follows from its Exit. */
  readonly attempt = (seat: WorkerSeat, retries: TaskRetries, lastError: unknown): Effect.Effect<void> =>
    Effect.clockWith((clock) => {
      // Past the drain deadline no attempt starts (a fiber that missed shutdown's interrupt).
      if (this.pool.stopping) return this.finish(retries, Exit.fail(lastError), true)
      retries.attempts += 1
      seat.attempt += 1
      seat.attemptDeadlineMs = clock.unsafeCurrentTimeMillis() + this.config.requestTimeoutMs
      seat.attemptActive = true
      const wake = this.pool.wakeWatchdog
      if (wake !== undefined) {
        this.pool.wakeWatchdog = undefined
        wake()
      }
      const run = Effect.withParentSpan(retries.picked.run, retries.span)
      // Awaited to its end even when the watchdog cuts it: an attempt in a step that cannot stop at
      // once (a disk change returns only once it has landed) must not be overtaken by its retry, or
      // a load's held write would land over what a lease wrote after the retry's load.
      return Effect.flatMap(Effect.exit(Effect.interruptible(run)), (exit) => {
        seat.attemptActive = false
        return this.afterAttempt(seat, retries, exit)
      })
    })

  readonly afterAttempt = (
    seat: WorkerSeat,
    retries: TaskRetries,
    exit: Exit.Exit<unknown, unknown>
  ): Effect.Effect<void> => {
    if (Exit.isSuccess(exit)) return this.finish(retries, exit, false)
    if (!Cause.isInterruptedOnly(exit.cause)) {
      const error = Cause.failureOption(exit.cause)
      return Option.isSome(error) && isTransient(error.value)
        ? this.retry(seat, retries, error.value)
        : this.finish(retries, exit, false)
    }
    return Effect.flatMap(isFiberInterrupted, (interrupted) => {
      if (!interrupted) {
        // Only shutdown and the watchdog interrupt a worker: the task's effect interrupted itself.
        const defect = new Error(
          `task ${retries.picked.id} (${describeTask(retries.picked.task)}) interrupted itself`
        )
        return this.finish(retries, Exit.die(defect), false)
      }
      const error = timeoutError(retries.picked, this.config.requestTimeoutMs)
      if (this.pool.stopping) return this.finish(retries, Exit.fail(error), true)
      // The watchdog cut the attempt: a transient timeout, decided on by a replacement worker.
      this.metrics.timedOut(retries.picked.task._tag)
      return this.handOff(seat, retries, error)
    })
  }

  /** After a transient failure: the schedule's delay, then another attempt, or the final failure. */
  readonly retry = (seat: WorkerSeat, retries: TaskRetries, error: unknown): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (this.pool.stopping) return this.finish(retries, Exit.fail(error), true)
      const driver = retries.driver
      if (driver === undefined) {
        return Effect.flatMap(Schedule.driver(this.schedule), (created) => {
          retries.driver = created
          return this.retry(seat, retries, error)
        })
      }
      // The delay is interruptible (shutdown); a schedule that is done fails with None.
      return Effect.flatMap(Effect.exit(Effect.interruptible(driver.next(error))), (decision) => {
        if (Exit.isSuccess(decision)) return this.attempt(seat, retries, error)
        if (!Cause.isInterruptedOnly(decision.cause)) return this.finish(retries, Exit.fail(error), false)
        if (this.pool.stopping) return this.finish(retries, Exit.fail(error), true)
        // A late watchdog interrupt (its attempt had just ended): carry on in a replacement.
        return this.handOff(seat, retries, error)
      })
    })

  /** Runs in an interrupted worker: a fresh fiber takes its seat and the task's next decision. */
  readonly handOff = (seat: WorkerSeat, retries: TaskRetries, error: unknown): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (this.pool.stopping) return this.finish(retries, Exit.fail(error), true)
      this.pool.replaced += 1
      return this.spawn(seat, this.retry(seat, retries, error))
    })

  /** Runs one picked task; called uninterruptibly by `takeWith`. Never fails. Its span is a child
   * of the span current where the task was enqueued, or a root without one. */
  readonly runTask = (seat: WorkerSeat) => (picked: PickedTask): Effect.Effect<void> =>
    Effect.flatMap(
      Effect.makeSpan("s3.task", {
        attributes: { type: picked.task._tag, key: subjectOf(picked.task), taskId: picked.id },
        parent: picked.parentSpan,
        root: picked.parentSpan === undefined,
        kind: "internal",
        captureStackTrace: false
      }),
      (span) => {
        this.pool.busy += 1
        return this.attempt(seat, { picked, span, attempts: 0, driver: undefined }, undefined)
      }
    )

  /** The take-run loop of the worker in `seat`; it ends once shutdown has begun interrupting. */
  readonly loop = (seat: WorkerSeat): Effect.Effect<void> => {
    const process = this.runTask(seat)
    const next: Effect.Effect<void> = Effect.suspend(() =>
      this.pool.stopping ? Effect.void : Effect.zipRight(this.queue.takeWith(process), next)
    )
    return next
  }

  /**
   * Starts a worker fiber for `seat`: first `first` (uninterruptibly: a handed-over task is always
   * completed), then the take-run loop, interruptibly. The new fiber holds the seat from the
   * moment it is forked (so the fiber it replaces knows it has been replaced) and is registered
   * both then and in its own first step, so shutdown — which sets `stopping` and snapshots the
   * workers in one step — either interrupts it or is seen by it. A worker interrupted while the
   * pool is not shutting down and still holding its seat (a late watchdog interrupt that hit it
   * while it waited for work) is replaced, so the pool keeps `workerCount` workers.
   */
  readonly spawn = (seat: WorkerSeat, first: Effect.Effect<void>): Effect.Effect<void> => {
    const body = Effect.withFiberRuntime<void>((self) => {
      this.pool.workers.add(self)
      return Effect.zipRight(Effect.uninterruptible(first), Effect.interruptible(this.loop(seat))).pipe(
        Effect.onInterrupt(
          () => (this.pool.stopping || seat.fiber !== self ? Effect.void : this.spawn(seat, Effect.void))
        ),
        Effect.ensuring(
          Effect.sync(() => {
            this.pool.workers.delete(self)
          })
        ),
        Effect.annotateLogs("s3Worker", seat.index)
      )
    })
    // A daemon owned by the pool: only `shutdown` (the layer's finalizer) and the watchdog ever
    // interrupt it (a scope's own fiber finalizers would interrupt it before the drain). Forked
    // uninterruptibly, so its first step always runs (and registers it).
    return Effect.uninterruptible(
      Effect.flatMap(Effect.forkDaemon(body), (fiber) =>
        Effect.sync(() => {
          seat.fiber = fiber
          if (fiber.unsafePoll() === null) this.pool.workers.add(fiber)
        }))
    )
  }

  /**
   * The watchdog: interrupts the workers whose attempt outlived `requestTimeoutMs`, sleeping until
   * the earliest deadline in flight, or until an attempt starts when none is in flight.
   */
  readonly watchdog: Effect.Effect<void> = Effect.fiberIdWith((watchdogId) => {
    const awaitAttempt = Effect.async<void>((resume) => {
      // An attempt that started while this round ran (it found no watchdog to wake) is seen here.
      if (this.pool.seats.some((seat) => seat.attemptActive && seat.timedOutAttempt !== seat.attempt)) {
        return resume(Effect.void)
      }
      this.pool.wakeWatchdog = () => resume(Effect.void)
      return Effect.sync(() => {
        this.pool.wakeWatchdog = undefined
      })
    })
    const round: Effect.Effect<void> = Effect.clockWith((clock) => {
      const nowMs = clock.unsafeCurrentTimeMillis()
      let earliestMs = Number.POSITIVE_INFINITY
      const expired: Array<Fiber.RuntimeFiber<unknown>> = []
      for (const seat of this.pool.seats) {
        if (!seat.attemptActive || seat.timedOutAttempt === seat.attempt) continue
        if (seat.attemptDeadlineMs <= nowMs) {
          seat.timedOutAttempt = seat.attempt
          if (seat.fiber !== undefined) expired.push(seat.fiber)
        } else {
          earliestMs = Math.min(earliestMs, seat.attemptDeadlineMs)
        }
      }
      const interrupts = Effect.forEach(expired, (fiber) => Fiber.interruptAsFork(fiber, watchdogId), { discard: true })
      const pause = earliestMs === Number.POSITIVE_INFINITY
        ? awaitAttempt
        : Effect.sleep(Duration.millis(earliestMs - nowMs))
      return Effect.zipRight(interrupts, Effect.zipRight(pause, round))
    })
    return round
  })
}
