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
 * Replaces: OrioleDB's src/s3/worker.c (`s3worker_main`, docs/ORIGINAL.md §3): bgworker processes
 * polling the queue every `bgwriter_delay`, dying on any HTTP error (FATAL) with no backoff, no
 * error classification, no request timeout, and no shutdown protocol (§7, §9).
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Fiber, Layer, Metric, MetricBoundaries } from "effect"
import type { Scope } from "effect"
import { type TaskType, taskTypes } from "../domain/Task.js"
import { type MetricLabels, metricLabels } from "../internal/metricLabels.js"
import { PoolState, type WorkerMetrics, Workers } from "../internal/workerPool.js"
import { MetricsInstance } from "./MetricsInstance.js"
import { StorageConfig, type StorageConfigValue } from "./StorageConfig.js"
import { TaskQueue, type TaskQueueService } from "./TaskQueue.js"

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
export const taskCompletions = Metric.counter("s3_task_completions", {
  description: "S3 tasks completed successfully",
  incremental: true
})
/** Tasks failed (typed failure or defect, after retries). @category metrics */
export const taskFailures = Metric.counter("s3_task_failures", {
  description: "S3 tasks failed after their retries",
  incremental: true
})
/** Retries of transient errors. @category metrics */
export const taskRetries = Metric.counter("s3_task_retries", {
  description: "S3 task attempts after the first",
  incremental: true
})
/** Attempts cut by the request timeout. @category metrics */
export const taskTimeouts = Metric.counter("s3_task_timeouts", {
  description: "S3 task attempts cut by the request timeout",
  incremental: true
})
/** Tasks interrupted mid-run at shutdown. @category metrics */
export const taskInterruptions = Metric.counter("s3_task_interruptions", {
  description: "S3 tasks interrupted by shutdown",
  incremental: true
})
/** Milliseconds from enqueue to completion (queue wait + every attempt + backoff). @category metrics */
export const taskLatencyMs = Metric.histogram(
  "s3_task_latency_ms",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 17 }),
  "S3 task latency from enqueue to completion, in milliseconds"
)

/** Reads a per-type counter's current value for `instance` (for reports and benchmarks). */
export const counterValue = (
  counter: Metric.Metric.Counter<number>,
  type: TaskType,
  instance = "default"
): Effect.Effect<number> => Effect.sync(() => counter.unsafeValue(metricLabels(instance).byType[type]).count)

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

/** The workers' metric updates, tagged with `labels`. */
const workerMetrics = (labels: MetricLabels): WorkerMetrics => ({
  finished: (type, outcome, retries, latencyMs) => {
    const tags = labels.byType[type]
    if (retries > 0) taskRetries.unsafeUpdate(retries, tags)
    const counter = outcome === "completed" ? taskCompletions : outcome === "failed" ? taskFailures : taskInterruptions
    counter.unsafeUpdate(1, tags)
    taskLatencyMs.unsafeUpdate(latencyMs, tags)
  },
  timedOut: (type) => taskTimeouts.unsafeUpdate(1, labels.byType[type])
})

/** The pool's stats: its fields, and the counters of its instance since `atStart` (another pool
 * of the same instance running at the same time in this process would be counted too). */
const statsOf = (pool: PoolState, labels: MetricLabels, atStart: Record<TaskType, TaskTypeStats>): S3WorkersStats => {
  const now = readTypeCounters(labels)
  const byType: Partial<Record<TaskType, TaskTypeStats>> = {}
  for (const type of taskTypes) {
    const values: Partial<Record<keyof TaskTypeStats, number>> = {}
    for (const [field] of typeCounters) values[field] = now[type][field] - atStart[type][field]
    byType[type] = values as TaskTypeStats
  }
  return {
    byType: byType as Record<TaskType, TaskTypeStats>,
    workersAlive: pool.workersAlive(),
    busyWorkers: pool.busy,
    workersReplaced: pool.replaced
  }
}

/** The ordered, bounded close (see `S3WorkersService.shutdown`). */
const makeShutdown = (
  config: StorageConfigValue,
  queue: TaskQueueService,
  pool: PoolState
): Effect.Effect<WorkerShutdownReport> =>
  Effect.gen(function*() {
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
    yield* Effect.interruptible(Fiber.interruptAll(fibers)).pipe(
      Effect.timeoutOption(Duration.millis(interruptGraceMs))
    )
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
export const make: Effect.Effect<S3WorkersService, never, StorageConfig | TaskQueue | Scope.Scope> = Effect.gen(
  function*() {
    const config = yield* StorageConfig
    const queue = yield* TaskQueue
    const labels = metricLabels(yield* MetricsInstance)
    const countersAtStart = readTypeCounters(labels)
    const pool = new PoolState(config.workerCount)
    const workers = new Workers(config, queue, pool, workerMetrics(labels))
    const shutdown = yield* Effect.cached(makeShutdown(config, queue, pool))
    // The finalizer is added before the forks: should the build be interrupted after some of them,
    // closing the scope still shuts them down in order. The fibers are daemons that this finalizer
    // (through `shutdown`) stops: the pool's scope owns them.
    yield* Effect.addFinalizer(() => Effect.asVoid(shutdown))
    pool.watchdog = yield* Effect.forkDaemon(Effect.interruptible(workers.watchdog))
    for (const seat of pool.seats) yield* workers.spawn(seat, Effect.void)
    return S3Workers.of({
      shutdown,
      stats: Effect.sync(() => statsOf(pool, labels, countersAtStart)),
      workersAlive: Effect.sync(() => pool.workersAlive())
    })
  }
)

/** The worker pool as a layer. @category layers */
export const layer: Layer.Layer<S3Workers, never, StorageConfig | TaskQueue> = Layer.scoped(S3Workers, make)
