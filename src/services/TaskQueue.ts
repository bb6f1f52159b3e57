/**
 * TaskQueue: the bounded queue of S3 tasks. Each enqueued task gets its own completion: waiting on
 * a task depends on that task alone (no prefix completion, no head-of-line blocking), and its
 * outcome (success, typed failure or defect) reaches every waiter.
 *
 * The model (all bookkeeping is synchronous, so no two fibers ever see it half-updated):
 * - a task is *queued* (counted against `queueCapacity`), then *running* (picked by a worker, no
 *   longer counted), then *done* (its handle holds its Exit, forever);
 * - `enqueue` publishes a task whole or not at all. When the queue is full the producer suspends
 *   (backpressure), first come first served; a freed slot is reserved for the oldest waiting
 *   producer, and a producer interrupted while waiting (or after its slot was reserved but before
 *   it published) gives the slot to the next one. So an interrupted enqueue leaves no hole;
 * - workers `take` tasks; a worker is woken by the enqueue that gives it work (no polling);
 * - deduplication by `Task.dedupKey`: a ReadPart joins the queued or running read of the same part
 *   (one download per part, docs/ORIGINAL.md §9 invariant 2); a WritePart coalesces into a queued,
 *   not yet picked write of the same part (once picked, a new write is queued: the running one may
 *   already have read the part's bytes);
 * - `closeIntake` fails later and suspended enqueues with QueueClosed; `abortAll` fails whatever is
 *   still queued or running with TaskAborted. The layer's finalizer does both, so no handle can
 *   stay pending once the layer is closed.
 *
 * Why not Effect's `Queue.bounded` plus a `Deferred` per task: three things this queue must do that
 * a Queue cannot. (1) An enqueue publishes its task whole or not at all: `Queue.offer` on a full
 * queue hands its item over when room frees (the taker moves it into the queue on the producer's
 * behalf), so an offer interrupted at that moment may still be published, with no one holding its
 * handle; here a freed slot is *reserved* for the oldest waiting producer, which publishes in its
 * own fiber, and one interrupted before it does passes the slot to the next. (2) Deduplication
 * across queued and running tasks: a read joins a queued or running read of the same part, a write
 * coalesces into a queued write until a worker picks it; a Queue's items cannot be looked up, and a
 * dedup map kept beside it would be updated a step after the take, leaving a window where a write
 * coalesces into one already picked. (3) A worker's pick and its hand-over to the task are one
 * uninterruptible step (`takeWith`). The bookkeeping is one synchronous core
 * (src/internal/taskQueue.ts), and it is cheaper too: the benchmark (bench/queue.ts: 100,000
 * no-op tasks, 8 workers, the same capacity) measured 14.8 µs per task here against 23.9 µs for a
 * bare `Queue.bounded` with a `Deferred` per task and no dedup, no metrics and no span
 * (BENCHMARKS.md, scenario 2; 0.49-0.64 of the bare path's time in loaded 2-core runs on 2026-12-07).
 *
 * Replaces: OrioleDB's src/s3/queue.c (docs/ORIGINAL.md §2): a shared-memory byte ring whose
 * completion was a prefix of queue locations (`s3_queue_wait_for_location`, no timeout, no
 * interruption), whose enqueue reserved a slot before publishing it (a producer that died while the
 * ring was full left a permanent hole), and whose in-flight reads were proxied by "the current
 * insert location" (a waiter needed a *future* task to finish: issue #340).
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Layer, Metric } from "effect"
import type { Exit, Option, Scope, Tracer } from "effect"
import type { QueueClosed, TaskAborted, TaskTimeout } from "../domain/Errors.js"
import type { TaskId } from "../domain/Ids.js"
import type { Task } from "../domain/Task.js"
import { metricLabels } from "../internal/metricLabels.js"
import { type Entry, QueueCore, type QueueMetrics } from "../internal/taskQueue.js"
import { MetricsInstance } from "./MetricsInstance.js"
import { StorageConfig } from "./StorageConfig.js"
import { WaitRegistry, type WaitRegistryService } from "./WaitRegistry.js"

/** One enqueued task's completion. @category models */
export interface TaskHandle<A, E> {
  readonly id: TaskId
  readonly task: Task
  /** Waits for this task's outcome: its success, its typed failure, or its defect. Interruptible;
   * registered in the waiter registry while it waits. Fails with TaskAborted when the queue closed
   * before the task could run to the end. Unbounded by itself: bound it (see `awaitWithin`). */
  readonly await: Effect.Effect<A, E | TaskAborted>
  /** `await` raced against a deadline (`timeoutMs` ≥ 0, on `Clock`): TaskTimeout when it passes.
   * Only the wait ends: the task itself goes on, and other waiters still get its outcome. */
  readonly awaitWithin: (timeoutMs: number) => Effect.Effect<A, E | TaskAborted | TaskTimeout>
  /** The outcome if the task has completed. */
  readonly poll: Effect.Effect<Option.Option<Exit.Exit<A, E | TaskAborted>>>
}

/** A task taken by a worker: its descriptor, the effect to run, and how to complete it. */
export interface PickedTask {
  readonly id: TaskId
  readonly task: Task
  readonly enqueuedAtMs: number
  /** The span current in the fiber that enqueued the task, if any: the task's span is its child. */
  readonly parentSpan: Tracer.AnySpan | undefined
  /** The effect that performs the task; idempotent, so retries and replays are harmless. */
  readonly run: Effect.Effect<unknown, unknown>
  /** Completes the task's handle (exactly once; later calls are ignored). A cause made only of
   * interruptions becomes TaskAborted (reason DrainDeadline): a handle never looks interrupted. */
  readonly complete: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>
}

/** Counters for diagnostics, tests and the CLI's progress line. */
export interface TaskQueueStats {
  /** Tasks queued and not yet picked; never more than `capacity`. */
  readonly depth: number
  /** Tasks picked by a worker and not yet completed. */
  readonly inFlight: number
  /** Tasks published (joined and coalesced enqueues not included). */
  readonly enqueued: number
  /** Enqueues that joined a read in flight or coalesced into a queued write. */
  readonly deduplicated: number
  /** Tasks completed with a success. */
  readonly completed: number
  /** Tasks completed with a failure or a defect other than TaskAborted. */
  readonly failed: number
  /** Tasks completed with TaskAborted (shutdown). */
  readonly aborted: number
  /** Producers suspended because the queue is full. */
  readonly waitingProducers: number
  readonly capacity: number
  readonly closed: boolean
}

/** The operations of the queue. @category models */
export interface TaskQueueService {
  /**
   * Enqueues a task and returns its handle. Suspends (interruptibly) while the queue holds
   * `queueCapacity` tasks; an interrupted enqueue leaves nothing behind. Fails with QueueClosed once
   * shutdown began. Deduplication (Task.dedupKey): a ReadPart whose read is queued or running joins
   * that read's handle; a WritePart whose write is queued and not yet picked is coalesced into it
   * (both are enqueued only by the PartTable, with the same result type). A join never waits for
   * room. The workers add `ObjectStoreUnavailable` (per-request timeout) to the failures of `run`.
   */
  readonly enqueue: <A, E>(task: Task, run: Effect.Effect<A, E>) => Effect.Effect<TaskHandle<A, E>, QueueClosed>
  /** Takes the next task, marking it in flight (suspends while the queue is empty). The caller must
   * `complete` what it takes. If the caller is interrupted just after the pick, the task stays in
   * flight until `abortAll`: workers use `takeWith`, which has no such gap. */
  readonly take: Effect.Effect<PickedTask>
  /**
   * For workers: waits (interruptibly, woken by the enqueue that gives it work) for a task, picks
   * it and hands it to `process` with no interruption point in between. `process` runs
   * uninterruptibly: it must `complete` the task on every path, and may make the task's `run`
   * interruptible (`Effect.interruptible`) so that shutdown can stop it. A worker interrupted while
   * waiting passes its wake-up on, so no queued task is left with every worker asleep.
   */
  readonly takeWith: <A>(process: (picked: PickedTask) => Effect.Effect<A>) => Effect.Effect<A>
  /** Stops intake: later (and suspended) enqueues fail with QueueClosed. Idempotent. */
  readonly closeIntake: Effect.Effect<void>
  /** Waits until nothing is queued or in flight. Unbounded by itself: the caller bounds it. */
  readonly awaitIdle: Effect.Effect<void>
  /** Closes intake and fails every task still queued (TaskAborted reason QueueClosed) or in flight
   * (reason DrainDeadline); returns how many. The running effects are not interrupted here: that is
   * the workers' part. Idempotent (a second call returns 0). */
  readonly abortAll: Effect.Effect<number>
  readonly stats: Effect.Effect<TaskQueueStats>
}

/** The S3 task queue. @category tags */
export class TaskQueue extends Context.Tag("effect-s3-tier/TaskQueue")<TaskQueue, TaskQueueService>() {}

// ---------------------------------------------------------------------------------------------
// Metrics (each tagged with `instance`; see docs/METRICS.md)
// ---------------------------------------------------------------------------------------------

/** Tasks queued, not yet picked. @category metrics */
export const queueDepth = Metric.gauge("s3_queue_depth", {
  description: "S3 tasks queued and not yet picked by a worker"
})
/** Tasks picked by a worker, not yet completed. @category metrics */
export const tasksInFlight = Metric.gauge("s3_tasks_in_flight", { description: "S3 tasks running on a worker" })
/** Tasks published, by `taskType`. @category metrics */
export const tasksEnqueued = Metric.counter("s3_tasks_enqueued", {
  description: "S3 tasks published to the queue",
  incremental: true
})
/** Enqueues joined to a read in flight or coalesced into a queued write, by `taskType`. @category metrics */
export const tasksDeduplicated = Metric.counter("s3_tasks_deduplicated", {
  description: "S3 enqueues that joined a read in flight or coalesced into a queued write",
  incremental: true
})

/** The core's metric updates, tagged with `instance`. */
const queueMetrics = (instance: string): QueueMetrics => {
  const labels = metricLabels(instance)
  return {
    published: (type) => tasksEnqueued.unsafeUpdate(1, labels.byType[type]),
    joined: (type) => tasksDeduplicated.unsafeUpdate(1, labels.byType[type]),
    depth: (queued) => queueDepth.unsafeUpdate(queued, labels.instance),
    inFlight: (running) => tasksInFlight.unsafeUpdate(running, labels.instance)
  }
}

// ---------------------------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------------------------

/**
 * Builds a queue of `capacity` tasks (≥ 1) whose handles register their waits in `waits`, and
 * whose metrics carry the label `instance` (default "default"). Without a finalizer: `make` (and
 * the layer) add one. @category constructors
 */
export const makeUnscoped = (
  capacity: number,
  waits: WaitRegistryService,
  instance = "default"
): Effect.Effect<TaskQueueService> =>
  Effect.sync(() => {
    const core = new QueueCore(capacity, waits, queueMetrics(instance))
    const enqueue = <A, E>(task: Task, run: Effect.Effect<A, E>): Effect.Effect<TaskHandle<A, E>, QueueClosed> =>
      // The submitter's span goes with the task: the worker runs it as a child of that span.
      Effect.withFiberRuntime<Entry, QueueClosed>((fiber) =>
        core.enqueue(
          task,
          run,
          Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis(),
          fiber.currentSpan
        )
      ) as Effect.Effect<TaskHandle<A, E>, QueueClosed>
    // The cast above: an entry's outcome is exactly what `run` (its own, or the joined task's)
    // produces. A joined task has another enqueuer's `run`; only the PartTable enqueues part tasks,
    // with one result type per task type, so the types agree.

    return TaskQueue.of({
      enqueue,
      take: core.takeWith(Effect.succeed),
      takeWith: (process) => core.takeWith(process),
      closeIntake: Effect.sync(() => core.closeIntake()),
      awaitIdle: core.awaitIdle,
      abortAll: Effect.sync(() => core.abortAll()),
      stats: Effect.sync(() => core.stats())
    })
  })

/**
 * The queue, sized by `StorageConfig.queueCapacity`. When the surrounding scope closes, intake
 * stops and every task still pending fails with TaskAborted (the workers' ordered shutdown has
 * normally done this already; this is the backstop). @category constructors
 */
export const make: Effect.Effect<TaskQueueService, never, StorageConfig | WaitRegistry | Scope.Scope> = Effect.gen(
  function*() {
    const config = yield* StorageConfig
    const waits = yield* WaitRegistry
    const queue = yield* makeUnscoped(config.queueCapacity, waits, yield* MetricsInstance)
    yield* Effect.addFinalizer(() => Effect.asVoid(queue.abortAll))
    return queue
  }
)

/** The queue as a layer. @category layers */
export const layer: Layer.Layer<TaskQueue, never, StorageConfig | WaitRegistry> = Layer.scoped(TaskQueue, make)
