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
 *   (one download per part, orioledb-s3.md §9 invariant 2); a WritePart coalesces into a queued,
 *   not yet picked write of the same part (once picked, a new write is queued: the running one may
 *   already have read the part's bytes);
 * - `closeIntake` fails later and suspended enqueues with QueueClosed; `abortAll` fails whatever is
 *   still queued or running with TaskAborted. The layer's finalizer does both, so no handle can
 *   stay pending once the layer is closed.
 *
 * Replaces: OrioleDB's src/s3/queue.c (orioledb-s3.md §2): a shared-memory byte ring whose
 * completion was a prefix of queue locations (`s3_queue_wait_for_location`, no timeout, no
 * interruption), whose enqueue reserved a slot before publishing it (a producer that died while the
 * ring was full left a permanent hole), and whose in-flight reads were proxied by "the current
 * insert location" (a waiter needed a *future* task to finish: issue #340).
 *
 * @since 0.1.0
 */
import { Cause, Context, Duration, Effect, Exit, Layer, Metric, MetricLabel, Option } from "effect"
import type { Scope } from "effect"
import { QueueClosed, TaskAborted, TaskTimeout } from "../domain/Errors.js"
import type { TaskId } from "../domain/Ids.js"
import { dedupKey, describe, type Task, type TaskType } from "../domain/Task.js"
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
// Metrics
// ---------------------------------------------------------------------------------------------

/** The `taskType` label of each task type, built once (stable arrays keep metric lookups cached). */
export const taskTypeLabels: Readonly<Record<TaskType, ReadonlyArray<MetricLabel.MetricLabel>>> = {
  WritePart: [MetricLabel.make("taskType", "WritePart")],
  ReadPart: [MetricLabel.make("taskType", "ReadPart")],
  WriteObject: [MetricLabel.make("taskType", "WriteObject")],
  WriteWalSegment: [MetricLabel.make("taskType", "WriteWalSegment")],
  DeleteObject: [MetricLabel.make("taskType", "DeleteObject")]
}

/** Tasks queued, not yet picked. @category metrics */
export const queueDepth = Metric.gauge("s3_queue_depth", { description: "S3 tasks queued and not yet picked by a worker" })
/** Tasks picked by a worker, not yet completed. @category metrics */
export const tasksInFlight = Metric.gauge("s3_tasks_in_flight", { description: "S3 tasks running on a worker" })
/** Tasks published, by `taskType`. @category metrics */
export const tasksEnqueued = Metric.counter("s3_tasks_enqueued", { description: "S3 tasks published to the queue", incremental: true })
/** Enqueues joined to a read in flight or coalesced into a queued write, by `taskType`. @category metrics */
export const tasksDeduplicated = Metric.counter("s3_tasks_deduplicated", {
  description: "S3 enqueues that joined a read in flight or coalesced into a queued write",
  incremental: true
})

// ---------------------------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------------------------

/** A first-in first-out list with O(1) push and shift (an array with a moving head). */
class Fifo<A> {
  private items: Array<A | undefined> = []
  private head = 0

  get size(): number {
    return this.items.length - this.head
  }

  push(item: A): void {
    this.items.push(item)
  }

  shift(): A | undefined {
    if (this.head === this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head] = undefined
    this.head += 1
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      // Reclaim the consumed prefix once it is most of the array: amortised O(1).
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }

  /** Removes and returns every item, oldest first. */
  drain(): Array<A> {
    const items: Array<A> = []
    for (let item = this.shift(); item !== undefined; item = this.shift()) items.push(item)
    return items
  }
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
  state: "waiting" | "granted" | "done"
  readonly resume: (effect: Effect.Effect<Entry, QueueClosed>) => void
}

/** A worker suspended on an empty queue. `woken`: told there is work, not yet running again. */
interface ConsumerWait {
  state: "waiting" | "woken" | "done"
  readonly resume: (effect: Effect.Effect<void>) => void
}

const assertInvariant = (condition: boolean, message: string): void => {
  // A broken invariant is a programmer error: a defect, never a typed failure.
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
class Entry implements TaskHandle<unknown, unknown>, PickedTask {
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
    readonly enqueuedAtMs: number
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
      this.exit !== undefined ? this.exit : this.core.waits.track("TaskHandle.await", () => this.label(), this.awaitExit())
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
    if (waiters !== undefined) for (const waiter of waiters) waiter(exit)
  }
}

/** The queue's bookkeeping. Every method is synchronous: it runs as one step of one fiber. */
class QueueCore {
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

  constructor(readonly capacity: number, readonly waits: WaitRegistryService) {}

  /** The task already queued (or, for a read, running) that `key` joins, if any. */
  joinable(key: string | undefined): Entry | undefined {
    return key === undefined ? undefined : this.dedup.get(key)
  }

  hasRoom(): boolean {
    return this.queued.size + this.reservedSlots < this.capacity && this.producers.size === 0
  }

  /** Publishes a new task; the caller checked room (or holds a reserved slot it just released). */
  publish(task: Task, key: string | undefined, run: Effect.Effect<unknown, unknown>, nowMs: number): Entry {
    this.lastId += 1
    // A TaskId is a positive integer; lastId starts at 1 and only grows.
    const entry = new Entry(this, this.lastId as TaskId, task, key, run, nowMs)
    this.queued.push(entry)
    assertInvariant(this.queued.size + this.reservedSlots <= this.capacity, "queue depth above capacity")
    if (key !== undefined) this.dedup.set(key, entry)
    this.enqueued += 1
    tasksEnqueued.unsafeUpdate(1, taskTypeLabels[task._tag])
    queueDepth.unsafeUpdate(this.queued.size, [])
    this.wakeConsumer()
    return entry
  }

  /** A counted join of an existing task. */
  join(entry: Entry, task: Task): Entry {
    this.deduplicated += 1
    tasksDeduplicated.unsafeUpdate(1, taskTypeLabels[task._tag])
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
      wait.resume(Effect.clockWith((clock) => Effect.suspend(() => this.publishReserved(wait, clock.unsafeCurrentTimeMillis()))))
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
    return Effect.succeed(this.publish(wait.task, key, wait.run, nowMs))
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
    queueDepth.unsafeUpdate(this.queued.size, [])
    tasksInFlight.unsafeUpdate(this.running.size, [])
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
    tasksInFlight.unsafeUpdate(this.running.size, [])
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
      this.finish(entry, Exit.fail(new TaskAborted({ taskId: entry.id, taskType: entry.task._tag, reason: "QueueClosed" })))
      count += 1
    }
    for (const entry of Array.from(this.running)) {
      this.finish(entry, Exit.fail(new TaskAborted({ taskId: entry.id, taskType: entry.task._tag, reason: "DrainDeadline" })))
      count += 1
    }
    queueDepth.unsafeUpdate(0, [])
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

// ---------------------------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------------------------

/**
 * Builds a queue of `capacity` tasks (≥ 1) whose handles register their waits in `waits`.
 * Without a finalizer: `make` (and the layer) add one. @category constructors
 */
export const makeUnscoped = (capacity: number, waits: WaitRegistryService): Effect.Effect<TaskQueueService> =>
  Effect.sync(() => {
    assertInvariant(Number.isInteger(capacity) && capacity >= 1, `capacity must be a positive integer, got ${capacity}`)
    const core = new QueueCore(capacity, waits)

    const enqueue = <A, E>(task: Task, run: Effect.Effect<A, E>): Effect.Effect<TaskHandle<A, E>, QueueClosed> =>
      Effect.clockWith((clock): Effect.Effect<Entry, QueueClosed> => {
        if (core.closed) return Effect.fail(new QueueClosed({ taskType: task._tag }))
        const key = dedupKey(task)
        const existing = core.joinable(key)
        if (existing !== undefined) return Effect.succeed(core.join(existing, task))
        if (core.hasRoom()) return Effect.succeed(core.publish(task, key, run, clock.unsafeCurrentTimeMillis()))
        return Effect.async<Entry, QueueClosed>((resume) => {
          const wait: ProducerWait = { task, run, state: "waiting", resume }
          core.producers.add(wait)
          return Effect.sync(() => core.cancelProducer(wait))
        })
      }) as Effect.Effect<TaskHandle<A, E>, QueueClosed>
    // The cast above: an entry's outcome is exactly what `run` (its own, or the joined task's)
    // produces. A joined task has another enqueuer's `run`; only the PartTable enqueues part tasks,
    // with one result type per task type, so the types agree.

    return TaskQueue.of({
      enqueue,
      take: core.takeWith(Effect.succeed),
      takeWith: (process) => core.takeWith(process),
      closeIntake: Effect.sync(() => core.closeIntake()),
      awaitIdle: Effect.suspend(() =>
        core.isIdle()
          ? Effect.void
          : Effect.async<void>((resume) => {
              const wake = () => resume(Effect.void)
              core.idleWaiters.add(wake)
              return Effect.sync(() => {
                core.idleWaiters.delete(wake)
              })
            })
      ),
      abortAll: Effect.sync(() => core.abortAll()),
      stats: Effect.sync(() => core.stats())
    })
  })

/**
 * The queue, sized by `StorageConfig.queueCapacity`. When the surrounding scope closes, intake
 * stops and every task still pending fails with TaskAborted (the workers' ordered shutdown has
 * normally done this already; this is the backstop). @category constructors
 */
export const make: Effect.Effect<TaskQueueService, never, StorageConfig | WaitRegistry | Scope.Scope> =
  Effect.gen(function* () {
    const config = yield* StorageConfig
    const waits = yield* WaitRegistry
    const queue = yield* makeUnscoped(config.queueCapacity, waits)
    yield* Effect.addFinalizer(() => Effect.asVoid(queue.abortAll))
    return queue
  })

/** The queue as a layer. @category layers */
export const layer: Layer.Layer<TaskQueue, never, StorageConfig | WaitRegistry> = Layer.scoped(TaskQueue, make)
