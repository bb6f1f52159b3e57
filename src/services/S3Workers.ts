/**
 * S3Workers: the pool of worker fibers that execute the task queue's tasks against the object
 * store, and its ordered shutdown.
 *
 * Guarantees:
 * - `workerCount` worker fibers, owned by the layer's scope (its finalizer stops them), each
 *   woken by the enqueue that gives it work (no polling);
 * - every attempt of a task runs under `requestTimeoutMs`: when it passes, the attempt is
 *   interrupted (which aborts its HTTP request) and counts as a transient
 *   `ObjectStoreUnavailable` (reason Timeout). Transient errors are retried on
 *   `RequestPolicy.retrySchedule` (exponential with jitter from Effect's `Random`, at most
 *   `retryAttemptsMax` attempts, retrying for at most `retryElapsedMaxMs`); permanent errors fail
 *   the task at once;
 * - a task's success, failure or defect completes its handle with that Exit; a worker never dies
 *   from a task, so its waiters always learn the outcome (OrioleDB's #373: the worker died, was
 *   restarted and replayed the task forever, and its waiter never woke);
 * - `shutdown` (also run by the layer's finalizer) is ordered and bounded: intake stops → the queue
 *   drains for at most `drainDeadlineMs` → the workers are interrupted (a task cut mid-run
 *   completes with TaskAborted reason DrainDeadline; its HTTP request is aborted) → whatever is
 *   still queued fails with TaskAborted. It takes at most `drainDeadlineMs + interruptGraceMs`.
 *
 * How the request timeout is enforced without a fiber per attempt (a fork plus a timer per task
 * would cost more than the rest of a task's path): the attempt runs on the worker's own fiber, and
 * one watchdog fiber per pool sleeps until the earliest deadline of the attempts in flight and
 * interrupts the workers whose attempt outlived it. An interrupted fiber cannot run again, so the
 * interrupted worker hands the task (its attempt count and retry schedule) to a fresh worker fiber
 * that takes its place, and ends. Since every deadline is `requestTimeoutMs` after its attempt's
 * start, a new attempt never needs the watchdog to wake earlier than it planned.
 *
 * Observability: the metrics below (by `instance` and `taskType`; `stats` reads the same counters:
 * one set of counts), and a span "s3.task" per task, a child of the span that was current where
 * the task was enqueued (so a trace leads from a checkpoint to its uploads), with the store calls
 * of each attempt as its children (docs/METRICS.md). Note: an error that a task's effect fails
 * with inside that span reaches its waiters wrapped by Effect's span annotation (a Proxy of the
 * original): match failures by `_tag` or `instanceof`, not by identity.
 *
 * Replaces: OrioleDB's src/s3/worker.c (`s3worker_main`, orioledb-s3.md §3): bgworker processes
 * polling the queue every `bgwriter_delay`, dying on any HTTP error (FATAL) with no backoff, no
 * error classification, no request timeout, and no shutdown protocol (§7, §9).
 *
 * @since 0.1.0
 */
import { Cause, Clock, Context, Duration, Effect, Exit, Fiber, HashSet, Layer, Metric, MetricBoundaries, Option, Schedule } from "effect"
import type { Scope, Tracer } from "effect"
import { isTransient, ObjectStoreUnavailable, TaskAborted } from "../domain/Errors.js"
import { describe as describeTask, subjectOf, type TaskType, taskTypes } from "../domain/Task.js"
import { type MetricLabels, metricLabels } from "../internal/metricLabels.js"
import { MetricsInstance } from "./MetricsInstance.js"
import { retrySchedule } from "./RequestPolicy.js"
import { StorageConfig, type StorageConfigValue } from "./StorageConfig.js"
import { type PickedTask, TaskQueue, type TaskQueueService } from "./TaskQueue.js"

/** What `shutdown` did. @category models */
export interface WorkerShutdownReport {
  /** Tasks completed (successfully or not) by the workers while the queue drained. */
  readonly drainedTasks: number
  /** Tasks failed with TaskAborted by the final `abortAll` (still queued, or stuck in flight). */
  readonly abortedTasks: number
  /** Tasks interrupted mid-run when the drain deadline passed (completed with TaskAborted). */
  readonly interruptedTasks: number
  readonly durationMs: number
  /** Pool fibers (workers and their timeout watchdog) still alive after shutdown: 0 unless a
   * task's effect refused interruption for longer than `interruptGraceMs`. */
  readonly workersAlive: number
}

/** Per task type counters (this pool's share of the metrics below). */
export interface TaskTypeStats {
  readonly completed: number
  readonly failed: number
  /** Attempts after the first (each retry of a transient error). */
  readonly retried: number
  /** Attempts cut by the request timeout. */
  readonly timedOut: number
  /** Tasks interrupted mid-run at shutdown. */
  readonly interrupted: number
}

/** Counters of the pool. */
export interface S3WorkersStats {
  readonly byType: Readonly<Record<TaskType, TaskTypeStats>>
  /** Worker fibers alive (normally `workerCount`; 0 after shutdown). */
  readonly workersAlive: number
  /** Workers running a task right now. */
  readonly busyWorkers: number
  /** Worker fibers started to replace one whose attempt timed out. */
  readonly workersReplaced: number
}

/** The operations of the pool. @category models */
export interface S3WorkersService {
  /**
   * The ordered close: closeIntake → wait for an idle queue at most `drainDeadlineMs` → interrupt
   * the workers (waiting at most `interruptGraceMs` for them to stop) → `abortAll` for anything
   * left. Uninterruptible and bounded; idempotent: every call returns the first call's report.
   */
  readonly shutdown: Effect.Effect<WorkerShutdownReport>
  readonly stats: Effect.Effect<S3WorkersStats>
  /** Worker fibers not yet ended. */
  readonly workersAlive: Effect.Effect<number>
}

/** The S3 worker pool. @category tags */
export class S3Workers extends Context.Tag("effect-s3-tier/S3Workers")<S3Workers, S3WorkersService>() {}

/** How long shutdown waits for interrupted workers to stop. Only a task effect that refuses
 * interruption (never an object-store call, which aborts its request) can use it up. */
export const interruptGraceMs = 1_000

// ---------------------------------------------------------------------------------------------
// Metrics (tagged with `instance` and `taskType`; read one with `counterValue`)
// ---------------------------------------------------------------------------------------------

/** Tasks completed successfully. @category metrics */
export const taskCompletions = Metric.counter("s3_task_completions", { description: "S3 tasks completed successfully", incremental: true })
/** Tasks failed (typed failure or defect, after retries). @category metrics */
export const taskFailures = Metric.counter("s3_task_failures", { description: "S3 tasks failed after their retries", incremental: true })
/** Retries of transient errors. @category metrics */
export const taskRetries = Metric.counter("s3_task_retries", { description: "S3 task attempts after the first", incremental: true })
/** Attempts cut by the request timeout. @category metrics */
export const taskTimeouts = Metric.counter("s3_task_timeouts", { description: "S3 task attempts cut by the request timeout", incremental: true })
/** Tasks interrupted mid-run at shutdown. @category metrics */
export const taskInterruptions = Metric.counter("s3_task_interruptions", { description: "S3 tasks interrupted by shutdown", incremental: true })
/** Milliseconds from enqueue to completion (queue wait + every attempt + backoff). @category metrics */
export const taskLatencyMs = Metric.histogram(
  "s3_task_latency_ms",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 17 }),
  "S3 task latency from enqueue to completion, in milliseconds"
)

/** Reads a per-type counter's current value for `instance` (for reports and benchmarks). */
export const counterValue = (counter: Metric.Metric.Counter<number>, type: TaskType, instance = "default"): Effect.Effect<number> =>
  Effect.sync(() => counter.unsafeValue(metricLabels(instance).byType[type]).count)

/** The per-type counters behind `TaskTypeStats`, field by field. */
const typeCounters: ReadonlyArray<readonly [keyof TaskTypeStats, Metric.Metric.Counter<number>]> = [
  ["completed", taskCompletions],
  ["failed", taskFailures],
  ["retried", taskRetries],
  ["timedOut", taskTimeouts],
  ["interrupted", taskInterruptions]
]

/** Every per-type counter's value now, for the labels of one instance. */
const readTypeCounters = (labels: MetricLabels): Record<TaskType, TaskTypeStats> => {
  const byType: Partial<Record<TaskType, TaskTypeStats>> = {}
  for (const type of taskTypes) {
    const values: Partial<Record<keyof TaskTypeStats, number>> = {}
    for (const [field, counter] of typeCounters) values[field] = counter.unsafeValue(labels.byType[type]).count
    byType[type] = values as TaskTypeStats
  }
  return byType as Record<TaskType, TaskTypeStats>
}

// ---------------------------------------------------------------------------------------------
// Pool state
// ---------------------------------------------------------------------------------------------

/** One worker position: the fiber that holds it and its current attempt, for the watchdog. */
interface Slot {
  readonly index: number
  fiber: Fiber.RuntimeFiber<unknown> | undefined
  /** Increases with every attempt started in this slot. */
  attempt: number
  attemptActive: boolean
  attemptDeadlineMs: number
  /** The attempt number the watchdog interrupted last. */
  timedOutAttempt: number
}

/** A task's progress, carried from a timed-out worker to its replacement. */
interface Progress {
  readonly picked: PickedTask
  readonly span: Tracer.Span
  attempts: number
  driver: Schedule.ScheduleDriver<unknown, unknown, never> | undefined
}

/** The pool's bookkeeping; every method is synchronous (one step of one fiber). */
class PoolState {
  readonly slots: ReadonlyArray<Slot>
  readonly workers = new Set<Fiber.RuntimeFiber<unknown>>()
  /** The counters' values when the pool started: `stats` counts from there. */
  readonly countersAtStart: Readonly<Record<TaskType, TaskTypeStats>>
  watchdog: Fiber.RuntimeFiber<unknown> | undefined = undefined
  /** Set while the watchdog waits for any attempt to start. */
  wakeWatchdog: (() => void) | undefined = undefined
  /** Set once the drain deadline has passed and the workers are being interrupted: from then on no
   * attempt, retry, wait for work or replacement worker starts. */
  stopping = false
  busy = 0
  interrupted = 0
  replaced = 0

  constructor(
    workerCount: number,
    readonly labels: MetricLabels
  ) {
    this.slots = Array.from({ length: workerCount }, (_, index) => ({
      index,
      fiber: undefined,
      attempt: 0,
      attemptActive: false,
      attemptDeadlineMs: 0,
      timedOutAttempt: 0
    }))
    this.countersAtStart = readTypeCounters(labels)
  }

  workersAlive(): number {
    return this.workers.size
  }

  /** The counters of this instance since the pool started (another pool of the same instance
   * running at the same time in this process would be counted too). */
  stats(): S3WorkersStats {
    const now = readTypeCounters(this.labels)
    const byType: Partial<Record<TaskType, TaskTypeStats>> = {}
    for (const type of taskTypes) {
      const values: Partial<Record<keyof TaskTypeStats, number>> = {}
      for (const [field] of typeCounters) values[field] = now[type][field] - this.countersAtStart[type][field]
      byType[type] = values as TaskTypeStats
    }
    return {
      byType: byType as Record<TaskType, TaskTypeStats>,
      workersAlive: this.workersAlive(),
      busyWorkers: this.busy,
      workersReplaced: this.replaced
    }
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

const makeWorkers = (config: StorageConfigValue, queue: TaskQueueService, pool: PoolState) => {
  const schedule = retrySchedule(config)

  /** Completes the task with its final Exit (TaskAborted when `cut` by shutdown), records it and
   * ends its span. Every path of a task ends here exactly once. Never fails. */
  const finish = (progress: Progress, exit: Exit.Exit<unknown, unknown>, cut: boolean): Effect.Effect<void> =>
    Effect.clockWith((clock) => {
      const { picked } = progress
      const labels = pool.labels.byType[picked.task._tag]
      const retries = Math.max(0, progress.attempts - 1)
      pool.busy -= 1
      if (retries > 0) taskRetries.unsafeUpdate(retries, labels)
      let outcome = exit
      if (cut) {
        // Shutdown cut the task mid-run: its waiters learn that it was aborted.
        pool.interrupted += 1
        taskInterruptions.unsafeUpdate(1, labels)
        outcome = Exit.fail(new TaskAborted({ taskId: picked.id, taskType: picked.task._tag, reason: "DrainDeadline" }))
      } else if (Exit.isSuccess(exit)) {
        taskCompletions.unsafeUpdate(1, labels)
      } else {
        taskFailures.unsafeUpdate(1, labels)
      }
      taskLatencyMs.unsafeUpdate(Math.max(0, clock.unsafeCurrentTimeMillis() - picked.enqueuedAtMs), labels)
      progress.span.end(clock.unsafeCurrentTimeNanos(), outcome)
      return picked.complete(outcome)
    })

  /** One attempt on the current fiber (which holds `slot`), then what follows from its Exit. */
  const attempt = (slot: Slot, progress: Progress, lastError: unknown): Effect.Effect<void> =>
    Effect.clockWith((clock) => {
      // Past the drain deadline no attempt starts (a fiber that missed shutdown's interrupt).
      if (pool.stopping) return finish(progress, Exit.fail(lastError), true)
      progress.attempts += 1
      slot.attempt += 1
      slot.attemptDeadlineMs = clock.unsafeCurrentTimeMillis() + config.requestTimeoutMs
      slot.attemptActive = true
      const wake = pool.wakeWatchdog
      if (wake !== undefined) {
        pool.wakeWatchdog = undefined
        wake()
      }
      const run = Effect.withParentSpan(progress.picked.run, progress.span)
      return Effect.flatMap(Effect.exit(Effect.interruptible(run)), (exit) => {
        slot.attemptActive = false
        return afterAttempt(slot, progress, exit)
      })
    })

  const afterAttempt = (slot: Slot, progress: Progress, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> => {
    if (Exit.isSuccess(exit)) return finish(progress, exit, false)
    if (!Cause.isInterruptedOnly(exit.cause)) {
      const error = Cause.failureOption(exit.cause)
      return Option.isSome(error) && isTransient(error.value) ? retry(slot, progress, error.value) : finish(progress, exit, false)
    }
    return Effect.flatMap(isFiberInterrupted, (interrupted) => {
      if (!interrupted) {
        // Only shutdown and the watchdog interrupt a worker: the task's effect interrupted itself.
        const defect = new Error(`task ${progress.picked.id} (${describeTask(progress.picked.task)}) interrupted itself`)
        return finish(progress, Exit.die(defect), false)
      }
      const error = timeoutError(progress.picked, config.requestTimeoutMs)
      if (pool.stopping) return finish(progress, Exit.fail(error), true)
      // The watchdog cut the attempt: a transient timeout, decided on by a replacement worker.
      taskTimeouts.unsafeUpdate(1, pool.labels.byType[progress.picked.task._tag])
      return handOff(slot, progress, error)
    })
  }

  /** After a transient failure: the schedule's delay, then another attempt, or the final failure. */
  const retry = (slot: Slot, progress: Progress, error: unknown): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (pool.stopping) return finish(progress, Exit.fail(error), true)
      const driver = progress.driver
      if (driver === undefined) {
        return Effect.flatMap(Schedule.driver(schedule), (created) => {
          progress.driver = created
          return retry(slot, progress, error)
        })
      }
      // The delay is interruptible (shutdown); a schedule that is done fails with None.
      return Effect.flatMap(Effect.exit(Effect.interruptible(driver.next(error))), (decision) => {
        if (Exit.isSuccess(decision)) return attempt(slot, progress, error)
        if (!Cause.isInterruptedOnly(decision.cause)) return finish(progress, Exit.fail(error), false)
        if (pool.stopping) return finish(progress, Exit.fail(error), true)
        // A late watchdog interrupt (its attempt had just ended): carry on in a replacement.
        return handOff(slot, progress, error)
      })
    })

  /** Runs in an interrupted worker: a fresh fiber takes its slot and the task's next decision. */
  const handOff = (slot: Slot, progress: Progress, error: unknown): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (pool.stopping) return finish(progress, Exit.fail(error), true)
      pool.replaced += 1
      return spawn(slot, retry(slot, progress, error))
    })

  /** Runs one picked task; called uninterruptibly by `takeWith`. Never fails. Its span is a child
   * of the span current where the task was enqueued, or a root without one. */
  const runTask = (slot: Slot) => (picked: PickedTask): Effect.Effect<void> =>
    Effect.flatMap(
      Effect.makeSpan("s3.task", {
        attributes: { type: picked.task._tag, key: subjectOf(picked.task), taskId: picked.id },
        parent: picked.parentSpan,
        root: picked.parentSpan === undefined,
        kind: "internal",
        captureStackTrace: false
      }),
      (span) => {
        pool.busy += 1
        return attempt(slot, { picked, span, attempts: 0, driver: undefined }, undefined)
      }
    )

  /** The take-run loop of the worker in `slot`; it ends once shutdown has begun interrupting. */
  const loop = (slot: Slot): Effect.Effect<void> => {
    const process = runTask(slot)
    const next: Effect.Effect<void> = Effect.suspend(() =>
      pool.stopping ? Effect.void : Effect.zipRight(queue.takeWith(process), next)
    )
    return next
  }

  /**
   * Starts a worker fiber for `slot`: first `first` (uninterruptibly: a handed-over task is always
   * completed), then the take-run loop, interruptibly. The new fiber holds the slot from the
   * moment it is forked (so the fiber it replaces knows it has been replaced) and is registered
   * both then and in its own first step, so shutdown — which sets `stopping` and snapshots the
   * workers in one step — either interrupts it or is seen by it. A worker interrupted while the
   * pool is not shutting down and still holding its slot (a late watchdog interrupt that hit it
   * while it waited for work) is replaced, so the pool keeps `workerCount` workers.
   */
  const spawn = (slot: Slot, first: Effect.Effect<void>): Effect.Effect<void> => {
    const body = Effect.withFiberRuntime<void>((self) => {
      pool.workers.add(self)
      return Effect.zipRight(Effect.uninterruptible(first), Effect.interruptible(loop(slot))).pipe(
        Effect.onInterrupt(() => (pool.stopping || slot.fiber !== self ? Effect.void : spawn(slot, Effect.void))),
        Effect.ensuring(
          Effect.sync(() => {
            pool.workers.delete(self)
          })
        ),
        Effect.annotateLogs("s3Worker", slot.index)
      )
    })
    // A daemon owned by the pool: only `shutdown` (the layer's finalizer) and the watchdog ever
    // interrupt it (a scope's own fiber finalizers would interrupt it before the drain). Forked
    // uninterruptibly, so its first step always runs (and registers it).
    return Effect.uninterruptible(
      Effect.flatMap(Effect.forkDaemon(body), (fiber) =>
        Effect.sync(() => {
          slot.fiber = fiber
          if (fiber.unsafePoll() === null) pool.workers.add(fiber)
        })
      )
    )
  }

  /**
   * The watchdog: interrupts the workers whose attempt outlived `requestTimeoutMs`, sleeping until
   * the earliest deadline in flight, or until an attempt starts when none is in flight.
   */
  const watchdog: Effect.Effect<void> = Effect.fiberIdWith((watchdogId) => {
    const awaitAttempt = Effect.async<void>((resume) => {
      // An attempt that started while this round ran (it found no watchdog to wake) is seen here.
      if (pool.slots.some((slot) => slot.attemptActive && slot.timedOutAttempt !== slot.attempt)) return resume(Effect.void)
      pool.wakeWatchdog = () => resume(Effect.void)
      return Effect.sync(() => {
        pool.wakeWatchdog = undefined
      })
    })
    const round: Effect.Effect<void> = Effect.clockWith((clock) => {
      const nowMs = clock.unsafeCurrentTimeMillis()
      let earliestMs = Number.POSITIVE_INFINITY
      const expired: Array<Fiber.RuntimeFiber<unknown>> = []
      for (const slot of pool.slots) {
        if (!slot.attemptActive || slot.timedOutAttempt === slot.attempt) continue
        if (slot.attemptDeadlineMs <= nowMs) {
          slot.timedOutAttempt = slot.attempt
          if (slot.fiber !== undefined) expired.push(slot.fiber)
        } else {
          earliestMs = Math.min(earliestMs, slot.attemptDeadlineMs)
        }
      }
      const interrupts = Effect.forEach(expired, (fiber) => Fiber.interruptAsFork(fiber, watchdogId), { discard: true })
      const pause = earliestMs === Number.POSITIVE_INFINITY ? awaitAttempt : Effect.sleep(Duration.millis(earliestMs - nowMs))
      return Effect.zipRight(interrupts, Effect.zipRight(pause, round))
    })
    return round
  })

  return { spawn, watchdog }
}

/** The ordered, bounded close (see `S3WorkersService.shutdown`). */
const makeShutdown = (config: StorageConfigValue, queue: TaskQueueService, pool: PoolState): Effect.Effect<WorkerShutdownReport> =>
  Effect.gen(function* () {
    const startMs = yield* Clock.currentTimeMillis
    yield* queue.closeIntake
    const before = yield* queue.stats
    // `interruptible`: shutdown runs uninterruptibly, and a timeout can only cut an interruptible wait.
    yield* Effect.interruptible(queue.awaitIdle).pipe(Effect.timeoutOption(Duration.millis(config.drainDeadlineMs)))
    const after = yield* queue.stats
    const drainedTasks = after.completed + after.failed - (before.completed + before.failed)
    const interruptedBefore = pool.interrupted
    // One step: from here no worker starts an attempt or a wait, and every live one is interrupted.
    const fibers = yield* Effect.sync(() => {
      pool.stopping = true
      const live: Array<Fiber.RuntimeFiber<unknown>> = Array.from(pool.workers)
      if (pool.watchdog !== undefined) live.push(pool.watchdog)
      return live
    })
    yield* Effect.interruptible(Fiber.interruptAll(fibers)).pipe(Effect.timeoutOption(Duration.millis(interruptGraceMs)))
    const interruptedTasks = pool.interrupted - interruptedBefore
    const abortedTasks = yield* queue.abortAll
    const endMs = yield* Clock.currentTimeMillis
    const watchdogAlive = pool.watchdog !== undefined && pool.watchdog.unsafePoll() === null ? 1 : 0
    const report: WorkerShutdownReport = {
      drainedTasks,
      abortedTasks,
      interruptedTasks,
      durationMs: endMs - startMs,
      workersAlive: pool.workersAlive() + watchdogAlive
    }
    yield* Effect.logDebug("S3 workers shut down").pipe(Effect.annotateLogs({ report: JSON.stringify(report) }))
    return report
  }).pipe(Effect.uninterruptible)

/**
 * Starts `workerCount` workers and their watchdog in the current scope; closing the scope runs
 * `shutdown`. @category constructors
 */
export const make: Effect.Effect<S3WorkersService, never, StorageConfig | TaskQueue | Scope.Scope> = Effect.gen(function* () {
  const config = yield* StorageConfig
  const queue = yield* TaskQueue
  const pool = new PoolState(config.workerCount, metricLabels(yield* MetricsInstance))
  const workers = makeWorkers(config, queue, pool)
  const shutdown = yield* Effect.cached(makeShutdown(config, queue, pool))
  // The finalizer is added before the forks: should the build be interrupted after some of them,
  // closing the scope still shuts them down in order. The fibers are daemons that this finalizer
  // (through `shutdown`) stops: the pool's scope owns them.
  yield* Effect.addFinalizer(() => Effect.asVoid(shutdown))
  pool.watchdog = yield* Effect.forkDaemon(Effect.interruptible(workers.watchdog))
  for (const slot of pool.slots) yield* workers.spawn(slot, Effect.void)
  return S3Workers.of({
    shutdown,
    stats: Effect.sync(() => pool.stats()),
    workersAlive: Effect.sync(() => pool.workersAlive())
  })
})

/** The worker pool as a layer. @category layers */
export const layer: Layer.Layer<S3Workers, never, StorageConfig | TaskQueue> = Layer.scoped(S3Workers, make)
