/**
 * The task queue's synchronous core: the entries (one per published task: at once its handle and
 * what a worker picks), the FIFO of queued tasks, the dedup map, the suspended producers and
 * workers, and the invariants that tie them together. Every method runs as one synchronous step of
 * one fiber, so no fiber ever sees the bookkeeping half-updated. The public surface (the service,
 * its Tag, its metrics and layer) is src/services/TaskQueue.ts.
 *
 * Replaces: the ring buffer and location bookkeeping of OrioleDB's src/s3/queue.c
 * (`s3_queue_put_task`, `s3_queue_get_task`, `s3_queue_erase_task`; docs/ORIGINAL.md §2).
 *
 * @internal
 * @since 0.1.0
 */
import { Cause, Duration, Effect, Exit, Option } from "effect"
import type { Tracer } from "effect"
import { QueueClosed, TaskAborted, TaskTimeout } from "../domain/Errors.js"
import type { TaskId } from "../domain/Ids.js"
import { dedupKey, describe, type Task, type TaskType } from "../domain/Task.js"
import type { PickedTask, TaskHandle, TaskQueueStats } from "../services/TaskQueue.js"
import type { WaitRegistryService } from "../services/WaitRegistry.js"
import { Fifo } from "./fifo.js"

/** Where the core reports what its metrics show (the service binds them to its instance label). */
export interface QueueMetrics {
  readonly published: (type: TaskType) => void
  readonly joined: (type: TaskType) => void
  readonly depth: (queued: number) => void
  readonly inFlight: (running: number) => void
}

/** The oldest member of an insertion-ordered set. */
const oldest = <A>(set: Set<A>): A | undefined => {
  const next = set.values().next()
  return next.done === true ? undefined : next.value
}

/** A producer suspended on a full queue. `granted`: a slot is reserved for it. */
interface ProducerWait {
  readonly task: Task
  readonly run: Effect.Effect<unknown, unknown>
  readonly parentSpan: Tracer.AnySpan | undefined
  state: "waiting" | "granted" | "done"
  readonly resume: (effect: Effect.Effect<Entry, QueueClosed>) => void
}

/** A worker suspended on an empty queue. `woken`: told there is work, not yet running again. */
interface ConsumerWait {
  state: "waiting" | "woken" | "done"
  readonly resume: (effect: Effect.Effect<void>) => void
}

/** A broken invariant is a programmer error: a defect, never a typed failure. */
export const assertInvariant = (condition: boolean, message: string): void => {
  if (!condition) throw new Error(`TaskQueue invariant violated: ${message}`)
}

/** An interruption-only cause would make a waiter look interrupted: it becomes TaskAborted. */
const normalizeExit = (entry: Entry, exit: Exit.Exit<unknown, unknown>): Exit.Exit<unknown, unknown> =>
  Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
    ? Exit.fail(new TaskAborted({ taskId: entry.id, taskType: entry.task._tag, reason: "DrainDeadline" }))
    : exit

const isAborted = (exit: Exit.Exit<unknown, unknown>): boolean =>
  Exit.isFailure(exit) &&
  Option.match(Cause.failureOption(exit.cause), {
    onNone: () => false,
    onSome: (error) => error instanceof TaskAborted
  })

/**
 * One published task. It is at once the handle given to enqueuers and the PickedTask given to a
 * worker: one allocation per task (plus the waiters' callbacks while someone waits).
 */
export class Entry implements TaskHandle<unknown, unknown>, PickedTask {
  state: "queued" | "running" | "done" = "queued"
  exit: Exit.Exit<unknown, unknown> | undefined = undefined
  /** The callbacks of the fibers suspended in `awaitExit`, until the task completes. */
  private waiters: Array<(exit: Exit.Exit<unknown, unknown>) => void> | undefined = undefined

  constructor(
    readonly core: QueueCore,
    readonly id: TaskId,
    readonly task: Task,
    readonly key: string | undefined,
    readonly run: Effect.Effect<unknown, unknown>,
    readonly enqueuedAtMs: number,
    readonly parentSpan: Tracer.AnySpan | undefined
  ) {}

  /** What the waiter registry says this task is (computed only when the registry is read). */
  label(): string {
    return `task ${this.id} ${describe(this.task)}`
  }

  /** Suspends until the task completes, then gives its outcome. */
  private awaitExit(): Effect.Effect<unknown, unknown> {
    return Effect.async((resume) => {
      if (this.exit !== undefined) return resume(this.exit)
      const waiter = (exit: Exit.Exit<unknown, unknown>) => resume(exit)
      if (this.waiters === undefined) this.waiters = []
      this.waiters.push(waiter)
      return Effect.sync(() => {
        // Interrupted: forget this waiter (a handle may have many waiters, one per fiber).
        const index = this.waiters?.indexOf(waiter) ?? -1
        if (index >= 0) this.waiters?.splice(index, 1)
      })
    })
  }

  get await(): Effect.Effect<unknown, unknown> {
    return Effect.suspend(() =>
      this.exit !== undefined
        ? this.exit
        : this.core.waits.track("TaskHandle.await", () => this.label(), this.awaitExit())
    )
  }

  awaitWithin(timeoutMs: number): Effect.Effect<unknown, unknown> {
    return Effect.suspend(() =>
      this.exit !== undefined
        ? this.exit
        : this.core.waits.track(
          "TaskHandle.awaitWithin",
          () => `${this.label()} (deadline ${timeoutMs} ms)`,
          Effect.timeoutFail(this.awaitExit(), {
            duration: Duration.millis(Math.max(0, timeoutMs)),
            onTimeout: () => new TaskTimeout({ taskId: this.id, taskType: this.task._tag, timeoutMs })
          })
        )
    )
  }

  get poll(): Effect.Effect<Option.Option<Exit.Exit<unknown, unknown>>> {
    return Effect.sync(() => Option.fromNullable(this.exit))
  }

  complete(exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> {
    return Effect.sync(() => {
      this.core.finish(this, exit)
    })
  }

  /** Sets the outcome (once) and wakes every waiter. */
  settle(exit: Exit.Exit<unknown, unknown>): void {
    this.exit = exit
    const waiters = this.waiters
    this.waiters = undefined
    if (waiters !== undefined) { for (const waiter of waiters) waiter(exit) }
  }
}

/** The queue's bookkeeping. Every method is synchronous: it runs as one step of one fiber. */
export class QueueCore {
  readonly queued = new Fifo<Entry>()
  readonly running = new Set<Entry>()
  /** Joinable tasks by dedup key: reads while queued or running, writes while queued. */
  readonly dedup = new Map<string, Entry>()
  readonly producers = new Set<ProducerWait>()
  readonly consumers = new Set<ConsumerWait>()
  readonly idleWaiters = new Set<() => void>()
  /** Slots promised to woken producers that have not published yet. */
  reservedSlots = 0
  closed = false
  lastId = 0
  enqueued = 0
  deduplicated = 0
  completed = 0
  failed = 0
  aborted = 0

  constructor(
    readonly capacity: number,
    readonly waits: WaitRegistryService,
    readonly metrics: QueueMetrics
  ) {
    assertInvariant(Number.isInteger(capacity) && capacity >= 1, `capacity must be a positive integer, got ${capacity}`)
  }

  /**
   * The enqueue of `task` at `nowMs` by a fiber whose current span is `parentSpan`: joins a task
   * it deduplicates into, publishes it if there is room, else suspends the producer (interruptibly:
   * an interrupted wait gives any slot reserved for it to the next producer).
   */
  enqueue(
    task: Task,
    run: Effect.Effect<unknown, unknown>,
    nowMs: number,
    parentSpan: Tracer.AnySpan | undefined
  ): Effect.Effect<Entry, QueueClosed> {
    if (this.closed) return Effect.fail(new QueueClosed({ taskType: task._tag }))
    const key = dedupKey(task)
    const existing = this.joinable(key)
    if (existing !== undefined) return Effect.succeed(this.join(existing, task))
    if (this.hasRoom()) return Effect.succeed(this.publish(task, key, run, nowMs, parentSpan))
    return Effect.async<Entry, QueueClosed>((resume) => {
      const wait: ProducerWait = { task, run, parentSpan, state: "waiting", resume }
      this.producers.add(wait)
      return Effect.sync(() => this.cancelProducer(wait))
    })
  }

  /** The task already queued (or, for a read, running) that `key` joins, if any. */
  joinable(key: string | undefined): Entry | undefined {
    return key === undefined ? undefined : this.dedup.get(key)
  }

  hasRoom(): boolean {
    return this.queued.size + this.reservedSlots < this.capacity && this.producers.size === 0
  }

  /** Publishes a new task; the caller checked room (or holds a reserved slot it just released). */
  publish(
    task: Task,
    key: string | undefined,
    run: Effect.Effect<unknown, unknown>,
    nowMs: number,
    parentSpan: Tracer.AnySpan | undefined
  ): Entry {
    this.lastId += 1
    // A TaskId is a positive integer; lastId starts at 1 and only grows.
    const entry = new Entry(this, this.lastId as TaskId, task, key, run, nowMs, parentSpan)
    this.queued.push(entry)
    assertInvariant(this.queued.size + this.reservedSlots <= this.capacity, "queue depth above capacity")
    if (key !== undefined) this.dedup.set(key, entry)
    this.enqueued += 1
    this.metrics.published(task._tag)
    this.metrics.depth(this.queued.size)
    this.wakeConsumer()
    return entry
  }

  /** A counted join of an existing task. */
  join(entry: Entry, task: Task): Entry {
    this.deduplicated += 1
    this.metrics.joined(task._tag)
    return entry
  }

  /** Gives free slots to the oldest waiting producers, one slot each. */
  grantRoom(): void {
    while (this.queued.size + this.reservedSlots < this.capacity) {
      const wait = oldest(this.producers)
      if (wait === undefined) return
      this.producers.delete(wait)
      wait.state = "granted"
      this.reservedSlots += 1
      wait.resume(
        Effect.clockWith((clock) => Effect.suspend(() => this.publishReserved(wait, clock.unsafeCurrentTimeMillis())))
      )
    }
  }

  /** Runs in the woken producer's fiber: publishes with its reserved slot (or joins, or fails). */
  publishReserved(wait: ProducerWait, nowMs: number): Effect.Effect<Entry, QueueClosed> {
    assertInvariant(wait.state === "granted", "a producer published without a reserved slot")
    wait.state = "done"
    this.reservedSlots -= 1
    const key = dedupKey(wait.task)
    const existing = this.joinable(key)
    if (this.closed) return Effect.fail(new QueueClosed({ taskType: wait.task._tag }))
    if (existing !== undefined) {
      // The reserved slot is not used: it goes to the next waiting producer.
      this.grantRoom()
      return Effect.succeed(this.join(existing, wait.task))
    }
    return Effect.succeed(this.publish(wait.task, key, wait.run, nowMs, wait.parentSpan))
  }

  /** The canceler of a producer's wait: runs when the waiting enqueue is interrupted. */
  cancelProducer(wait: ProducerWait): void {
    if (wait.state === "waiting") {
      this.producers.delete(wait)
    } else if (wait.state === "granted") {
      // Interrupted after its slot was reserved, before it published: the slot goes to the next.
      wait.state = "done"
      this.reservedSlots -= 1
      this.grantRoom()
    }
    wait.state = "done"
  }

  /** Takes the oldest queued task, marking it running. */
  pick(): Entry | undefined {
    const entry = this.queued.shift()
    if (entry === undefined) return undefined
    entry.state = "running"
    this.running.add(entry)
    // A picked write may already be reading the part: later writes must not coalesce into it.
    if (entry.task._tag === "WritePart" && entry.key !== undefined && this.dedup.get(entry.key) === entry) {
      this.dedup.delete(entry.key)
    }
    this.metrics.depth(this.queued.size)
    this.metrics.inFlight(this.running.size)
    this.grantRoom()
    return entry
  }

  /** Wakes the oldest waiting worker, if any, to take the task just published. */
  wakeConsumer(): void {
    const wait = oldest(this.consumers)
    if (wait === undefined) return
    this.consumers.delete(wait)
    wait.state = "woken"
    wait.resume(
      Effect.sync(() => {
        wait.state = "done"
      })
    )
  }

  /** The canceler of a worker's wait. A woken worker interrupted before it ran passes the wake on. */
  cancelConsumer(wait: ConsumerWait): void {
    if (wait.state === "waiting") this.consumers.delete(wait)
    else if (wait.state === "woken") this.passWake()
    wait.state = "done"
  }

  /** A worker that stops (or was woken and cannot pick) hands the wake-up to another one. */
  passWake(): void {
    if (this.queued.size > 0) this.wakeConsumer()
  }

  /** Suspends until an enqueue wakes this worker. */
  readonly awaitWork: Effect.Effect<void> = Effect.async<void>((resume) => {
    const wait: ConsumerWait = { state: "waiting", resume }
    this.consumers.add(wait)
    return Effect.sync(() => this.cancelConsumer(wait))
  })

  takeWith<A>(process: (picked: PickedTask) => Effect.Effect<A>): Effect.Effect<A> {
    return Effect.uninterruptibleMask((restore) => {
      // The pick and the hand-over to `process` are one uninterruptible step; only the wait for
      // work can be interrupted, and a worker interrupted there (even just after it was woken)
      // passes any pending wake-up on.
      const wait = Effect.onInterrupt(restore(this.awaitWork), () => Effect.sync(() => this.passWake()))
      const loop: Effect.Effect<A> = Effect.suspend(() => {
        const entry = this.pick()
        return entry !== undefined ? process(entry) : Effect.zipRight(wait, loop)
      })
      return loop
    })
  }

  /** Completes a task's handle, once; later calls are ignored. */
  finish(entry: Entry, exit: Exit.Exit<unknown, unknown>): void {
    if (entry.state === "done") return
    // Queued entries are only finished by `abortAll`, which has already emptied the queue.
    if (entry.state === "running") this.running.delete(entry)
    entry.state = "done"
    if (entry.key !== undefined && this.dedup.get(entry.key) === entry) this.dedup.delete(entry.key)
    const outcome = normalizeExit(entry, exit)
    entry.settle(outcome)
    if (Exit.isSuccess(outcome)) this.completed += 1
    else if (isAborted(outcome)) this.aborted += 1
    else this.failed += 1
    this.metrics.inFlight(this.running.size)
    this.checkIdle()
  }

  isIdle(): boolean {
    return this.queued.size === 0 && this.running.size === 0
  }

  checkIdle(): void {
    if (!this.isIdle() || this.idleWaiters.size === 0) return
    const waiters = Array.from(this.idleWaiters)
    this.idleWaiters.clear()
    for (const wake of waiters) wake()
  }

  /** Suspends until nothing is queued or running. */
  readonly awaitIdle: Effect.Effect<void> = Effect.suspend(() =>
    this.isIdle()
      ? Effect.void
      : Effect.async<void>((resume) => {
        const wake = () => resume(Effect.void)
        this.idleWaiters.add(wake)
        return Effect.sync(() => {
          this.idleWaiters.delete(wake)
        })
      })
  )

  closeIntake(): void {
    if (this.closed) return
    this.closed = true
    const waiting = Array.from(this.producers)
    this.producers.clear()
    for (const wait of waiting) {
      wait.state = "done"
      wait.resume(Effect.fail(new QueueClosed({ taskType: wait.task._tag })))
    }
  }

  abortAll(): number {
    this.closeIntake()
    let count = 0
    for (const entry of this.queued.drain()) {
      this.finish(
        entry,
        Exit.fail(new TaskAborted({ taskId: entry.id, taskType: entry.task._tag, reason: "QueueClosed" }))
      )
      count += 1
    }
    for (const entry of Array.from(this.running)) {
      this.finish(
        entry,
        Exit.fail(new TaskAborted({ taskId: entry.id, taskType: entry.task._tag, reason: "DrainDeadline" }))
      )
      count += 1
    }
    this.metrics.depth(0)
    assertInvariant(this.isIdle(), "tasks left after abortAll")
    return count
  }

  stats(): TaskQueueStats {
    return {
      depth: this.queued.size,
      inFlight: this.running.size,
      enqueued: this.enqueued,
      deduplicated: this.deduplicated,
      completed: this.completed,
      failed: this.failed,
      aborted: this.aborted,
      waitingProducers: this.producers.size,
      capacity: this.capacity,
      closed: this.closed
    }
  }
}
