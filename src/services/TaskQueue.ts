/**
 * TaskQueue: the bounded queue of S3 tasks. Each enqueued task gets its own completion: waiting on
 * a task depends on that task alone (no prefix completion, no head-of-line blocking), and its
 * outcome (success, typed failure or defect) reaches every waiter.
 *
 * Replaces: OrioleDB's src/s3/queue.c (orioledb-s3.md §2): a shared-memory byte ring whose
 * completion was a prefix of queue locations (`s3_queue_wait_for_location`, no timeout, no
 * interruption), whose enqueue reserved a slot before publishing it (a producer that died while the
 * ring was full left a permanent hole), and whose in-flight reads were proxied by "the current
 * insert location" (a waiter needed a *future* task to finish: issue #340).
 *
 * IMPLEMENTATION: placeholder signatures; see issue "2 of 8".
 *
 * @since 0.1.0
 */
import { Context, type Effect, type Exit, type Option } from "effect"
import type { QueueClosed, TaskAborted, TaskTimeout } from "../domain/Errors.js"
import type { TaskId } from "../domain/Ids.js"
import type { Task } from "../domain/Task.js"

/** One enqueued task's completion. @category models */
export interface TaskHandle<A, E> {
  readonly id: TaskId
  readonly task: Task
  /** Waits for this task's outcome. Interruptible; registered in the waiter registry while it waits.
   * Fails with TaskAborted when the queue closed before the task could run to the end. */
  readonly await: Effect.Effect<A, E | TaskAborted>
  /** `await` raced against a deadline: TaskTimeout when it passes (the task itself goes on). */
  readonly awaitWithin: (timeoutMs: number) => Effect.Effect<A, E | TaskAborted | TaskTimeout>
  /** The outcome if the task has completed. */
  readonly poll: Effect.Effect<Option.Option<Exit.Exit<A, E | TaskAborted>>>
}

/** A task taken by a worker: its descriptor, the effect to run, and how to complete it. */
export interface PickedTask {
  readonly id: TaskId
  readonly task: Task
  readonly enqueuedAtMs: number
  /** The effect that performs the task; idempotent, so retries and replays are harmless. */
  readonly run: Effect.Effect<unknown, unknown>
  /** Completes the task's handle (exactly once; later calls are ignored). */
  readonly complete: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>
}

/** Counters for diagnostics, tests and the CLI's progress line. */
export interface TaskQueueStats {
  readonly depth: number
  readonly inFlight: number
  readonly enqueued: number
  readonly completed: number
  readonly failed: number
  readonly aborted: number
  readonly closed: boolean
}

/** The operations of the queue. @category models */
export interface TaskQueueService {
  /**
   * Enqueues a task and returns its handle. Suspends (interruptibly) while the queue holds
   * `queueCapacity` tasks; an interrupted enqueue leaves nothing behind. Fails with QueueClosed once
   * shutdown began. Deduplication (Task.dedupKey): a ReadPart whose read is queued or running joins
   * that read's handle; a WritePart whose write is queued and not yet picked is coalesced into it
   * (both are enqueued only by the PartTable, with the same result type).
   */
  readonly enqueue: <A, E>(task: Task, run: Effect.Effect<A, E>) => Effect.Effect<TaskHandle<A, E>, QueueClosed>
  /** For workers: takes the next task, marking it in flight (suspends while the queue is empty). */
  readonly take: Effect.Effect<PickedTask>
  /** Stops intake: later (and suspended) enqueues fail with QueueClosed. Idempotent. */
  readonly closeIntake: Effect.Effect<void>
  /** Waits until nothing is queued or in flight. */
  readonly awaitIdle: Effect.Effect<void>
  /** Fails every task still queued or in flight with TaskAborted; returns how many. */
  readonly abortAll: Effect.Effect<number>
  readonly stats: Effect.Effect<TaskQueueStats>
}

/** The S3 task queue. @category tags */
export class TaskQueue extends Context.Tag("effect-s3-tier/TaskQueue")<TaskQueue, TaskQueueService>() {}
