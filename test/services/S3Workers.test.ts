/**
 * Goal: the worker pool runs every task to an outcome its waiters receive — success, the typed
 * failure after a bounded retry budget, a defect — never dies from a task, bounds each attempt by
 * the request timeout, and closes in order and within its deadline whatever the object store does:
 * the two hangs of OrioleDB's S3 tier (docs/ORIGINAL.md §7) are reproduced and must end:
 * - #373: a task that always fails → its waiter gets the failure after the retry budget, and
 *   closing the pool completes;
 * - #340: an object store that never answers → a waiter with a deadline gets TaskTimeout, close
 *   completes within the drain deadline, no fiber is left.
 * A property test plays random sequences of enqueue / complete / fail / interrupt / clock moves /
 * close and checks that every handle resolves exactly once, every waiter wakes, no fiber leaks and
 * the queue never exceeds its bound.
 * Method: tasks are effects the test controls (Deferreds, counters); time is the TestClock; the
 * test waits for states by yielding to other fibers or moving the clock, never by sleeping.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  Cause,
  Context,
  Deferred,
  Effect,
  Exit,
  FastCheck,
  Fiber,
  Layer,
  Metric,
  Option,
  Scope,
  TestClock,
  Tracer
} from "effect"
import {
  ObjectStoreRejected,
  ObjectStoreUnavailable,
  QueueClosed,
  TaskAborted,
  TaskTimeout
} from "../../src/domain/Errors.js"
import { checkpointNumber, fileId, partIndex } from "../../src/domain/Ids.js"
import { ReadPart, WriteObject, WritePart } from "../../src/domain/Task.js"
import * as MetricsInstance from "../../src/services/MetricsInstance.js"
import * as S3Workers from "../../src/services/S3Workers.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as TaskQueue from "../../src/services/TaskQueue.js"
import * as WaitRegistry from "../../src/services/WaitRegistry.js"
import { eventually, failureOf } from "../support/Shared.js"
import { collectingTracer } from "../support/Tracing.js"

const users = fileId("users")
const read = (part: number) => new ReadPart({ file: users, part: partIndex(part) })
const write = (part: number) => new WritePart({ file: users, part: partIndex(part), checkpoint: checkpointNumber(1) })
const object = (key: string) => new WriteObject({ key, kind: "Other" })

const baseConfig: Partial<StorageConfig.StorageConfigValue> = {
  workerCount: 2,
  queueCapacity: 8,
  requestTimeoutMs: 1_000,
  retryAttemptsMax: 3,
  retryDelayBaseMs: 10,
  retryDelayMaxMs: 40,
  retryElapsedMaxMs: 1_000,
  drainDeadlineMs: 500
}

const poolLayer = (config: Partial<StorageConfig.StorageConfigValue> = {}) =>
  S3Workers.layer.pipe(
    Layer.provideMerge(TaskQueue.layer),
    Layer.provideMerge(WaitRegistry.layer),
    Layer.provide(StorageConfig.layer({ ...baseConfig, ...config })),
    Layer.orDie
  )

const services = Effect.all({
  queue: TaskQueue.TaskQueue,
  workers: S3Workers.S3Workers,
  waits: WaitRegistry.WaitRegistry
})

const unavailable = new ObjectStoreUnavailable({
  operation: "put",
  key: "k",
  reason: "ServerError",
  detail: "HTTP 500"
})
const rejected = new ObjectStoreRejected({
  operation: "put",
  key: "k",
  status: 403,
  code: "AccessDenied",
  detail: "denied"
})

/** An error failed inside a span reaches the waiter wrapped (Effect annotates it with the span):
 * compare class and message, not identity. */
const assertSameError = (actual: unknown, expected: Error) => {
  assert.strictEqual(Object.getPrototypeOf(actual), Object.getPrototypeOf(expected))
  assert.strictEqual((actual as Error).message, expected.message)
}

/** Moves the TestClock in `stepMs` steps until `fiber` ends (at most `stepsMax` steps). */
const advanceUntilDone = <A, E>(fiber: Fiber.RuntimeFiber<A, E>, stepMs: number, stepsMax: number) =>
  Effect.gen(function*() {
    for (let step = 0; step < stepsMax && fiber.unsafePoll() === null; step++) {
      yield* TestClock.adjust(stepMs)
    }
    const exit = fiber.unsafePoll()
    return exit === null ? yield* Effect.dieMessage(`the fiber did not end within ${stepMs * stepsMax} ms`) : exit
  })

/** A task effect that never answers, counting its starts and its aborted (interrupted) runs. */
const hangingStore = () => {
  const counts = { started: 0, aborted: 0 }
  const run = Effect.suspend(() => {
    counts.started += 1
    return Effect.never
  }).pipe(Effect.onInterrupt(() => Effect.sync(() => (counts.aborted += 1))))
  return { counts, run }
}

describe("S3Workers", () => {
  it.effect("runs tasks on workers woken by enqueue (no clock movement) and completes their handles", () =>
    Effect.gen(function*() {
      const { queue, workers } = yield* services
      const completedBefore = yield* S3Workers.counterValue(S3Workers.taskCompletions, "WriteObject")
      const handles = yield* Effect.forEach(
        [1, 2, 3, 4, 5],
        (value) => queue.enqueue(object(`k${value}`), Effect.succeed(value * 10))
      )
      const values = yield* Effect.forEach(handles, (handle) => handle.await)
      assert.deepStrictEqual(values, [10, 20, 30, 40, 50])
      const stats = yield* workers.stats
      assert.strictEqual(stats.byType.WriteObject.completed, 5)
      assert.strictEqual(stats.workersAlive, 2)
      assert.strictEqual((yield* S3Workers.counterValue(S3Workers.taskCompletions, "WriteObject")) - completedBefore, 5)
    }).pipe(Effect.provide(poolLayer())))

  it.effect("#373: a task that always fails transiently gives its waiter the failure after the retry budget, and close completes", () =>
    Effect.gen(function*() {
      const { queue, workers, waits } = yield* services
      let attempts = 0
      const handle = yield* queue.enqueue(
        object("always-500"),
        Effect.suspend(() => {
          attempts += 1
          return Effect.fail(unavailable)
        })
      )
      const waiter = yield* Effect.fork(handle.await)
      const exit = yield* advanceUntilDone(waiter, 40, 100)
      assertSameError(failureOf(exit), unavailable)
      assert.strictEqual(attempts, 3)
      const stats = (yield* workers.stats).byType.WriteObject
      assert.deepStrictEqual([stats.failed, stats.retried], [1, 2])
      assert.strictEqual(yield* waits.size, 0)
      const report = yield* workers.shutdown
      assert.strictEqual(report.workersAlive, 0)
      assert.strictEqual(report.durationMs, 0)
      assert.strictEqual(yield* workers.workersAlive, 0)
    }).pipe(Effect.provide(poolLayer())))

  it.effect("a permanent error fails the task at once, without retries", () =>
    Effect.gen(function*() {
      const { queue } = yield* services
      let attempts = 0
      const handle = yield* queue.enqueue(
        object("denied"),
        Effect.suspend(() => {
          attempts += 1
          return Effect.fail(rejected)
        })
      )
      assertSameError(failureOf(yield* Effect.exit(handle.await)), rejected)
      assert.strictEqual(attempts, 1)
    }).pipe(Effect.provide(poolLayer())))

  it.effect("a transient error followed by success completes the task", () =>
    Effect.gen(function*() {
      const { queue, workers } = yield* services
      let attempts = 0
      const handle = yield* queue.enqueue(
        read(1),
        Effect.suspend(() => {
          attempts += 1
          return attempts < 3 ? Effect.fail(unavailable) : Effect.succeed("bytes")
        })
      )
      const waiter = yield* Effect.fork(handle.await)
      assert.deepStrictEqual(yield* advanceUntilDone(waiter, 10, 100), Exit.succeed("bytes"))
      assert.strictEqual((yield* workers.stats).byType.ReadPart.retried, 2)
    }).pipe(Effect.provide(poolLayer())))

  it.effect("#340: against a store that never answers, a waiter with a deadline gets TaskTimeout and close ends within the drain deadline", () =>
    Effect.gen(function*() {
      const { queue, workers, waits } = yield* services
      const store = hangingStore()
      const hung = yield* queue.enqueue(read(7), store.run)
      const behind = yield* queue.enqueue(write(7), Effect.succeed("never runs"))
      const waiter = yield* Effect.fork(hung.awaitWithin(1_000))
      const timedOut = yield* advanceUntilDone(waiter, 250, 8)
      assert.deepStrictEqual(
        failureOf(timedOut),
        new TaskTimeout({ taskId: hung.id, taskType: "ReadPart", timeoutMs: 1_000 })
      )
      // The shutdown begins with the request still hanging (its timeout is a minute away).
      const hungWaiter = yield* Effect.fork(hung.await)
      const behindWaiter = yield* Effect.fork(behind.await)
      const shutdown = yield* Effect.fork(workers.shutdown)
      const report = yield* advanceUntilDone(shutdown, 100, 20).pipe(Effect.flatMap((exit) => exit))
      assert.strictEqual(report.durationMs, 500)
      assert.deepStrictEqual([report.drainedTasks, report.interruptedTasks, report.abortedTasks, report.workersAlive], [
        0,
        1,
        1,
        0
      ])
      assert.strictEqual(store.counts.aborted, 1)
      assert.deepStrictEqual(
        failureOf(yield* Fiber.await(hungWaiter)),
        new TaskAborted({ taskId: hung.id, taskType: "ReadPart", reason: "DrainDeadline" })
      )
      assert.deepStrictEqual(
        failureOf(yield* Fiber.await(behindWaiter)),
        new TaskAborted({ taskId: behind.id, taskType: "WritePart", reason: "QueueClosed" })
      )
      assert.strictEqual(yield* waits.size, 0)
      assert.strictEqual(yield* workers.workersAlive, 0)
      assert.deepStrictEqual(
        failureOf(yield* Effect.exit(queue.enqueue(read(8), Effect.void))),
        new QueueClosed({ taskType: "ReadPart" })
      )
    }).pipe(Effect.provide(poolLayer({ workerCount: 1, requestTimeoutMs: 60_000 }))))

  it.effect("the request timeout aborts a hung attempt, retries it on a replacement worker, and ends in a Timeout failure", () =>
    Effect.gen(function*() {
      const { queue, workers } = yield* services
      const store = hangingStore()
      const handle = yield* queue.enqueue(object("slow"), store.run)
      const waiter = yield* Effect.fork(handle.await)
      const exit = yield* advanceUntilDone(waiter, 50, 100)
      const failure = failureOf(exit)
      assert.instanceOf(failure, ObjectStoreUnavailable)
      assert.strictEqual((failure as ObjectStoreUnavailable).reason, "Timeout")
      assert.deepStrictEqual(store.counts, { started: 3, aborted: 3 })
      const stats = yield* workers.stats
      assert.deepStrictEqual([
        stats.byType.WriteObject.timedOut,
        stats.byType.WriteObject.retried,
        stats.workersReplaced
      ], [3, 2, 3])
      // The pool is whole: the replacement worker takes the next task.
      assert.strictEqual(stats.workersAlive, 1)
      const next = yield* queue.enqueue(object("fast"), Effect.succeed("ok"))
      assert.strictEqual(yield* next.await, "ok")
    }).pipe(Effect.provide(poolLayer({ workerCount: 1, requestTimeoutMs: 100 }))))

  it.effect("an attempt that hangs once and then answers completes the task", () =>
    Effect.gen(function*() {
      const { queue } = yield* services
      let attempts = 0
      const handle = yield* queue.enqueue(
        read(2),
        Effect.suspend(() => {
          attempts += 1
          return attempts === 1 ? Effect.never : Effect.succeed("second try")
        })
      )
      const waiter = yield* Effect.fork(handle.await)
      assert.deepStrictEqual(yield* advanceUntilDone(waiter, 50, 100), Exit.succeed("second try"))
      assert.strictEqual(attempts, 2)
    }).pipe(Effect.provide(poolLayer({ workerCount: 1, requestTimeoutMs: 100 }))))

  it.effect("a defect or a self-interrupting task completes its handle as a defect; the workers survive", () =>
    Effect.gen(function*() {
      const { queue, workers } = yield* services
      const dying = yield* queue.enqueue(object("die"), Effect.dieMessage("bug in a task"))
      const selfInterrupting = yield* queue.enqueue(object("interrupt"), Effect.interrupt)
      const died = yield* Effect.exit(dying.await)
      assert.isTrue(Exit.isFailure(died) && Cause.isDie(died.cause))
      const interrupted = yield* Effect.exit(selfInterrupting.await)
      assert.isTrue(
        Exit.isFailure(interrupted) && Cause.isDie(interrupted.cause) && !Cause.isInterrupted(interrupted.cause)
      )
      const next = yield* queue.enqueue(object("after"), Effect.succeed("alive"))
      assert.strictEqual(yield* next.await, "alive")
      const stats = yield* workers.stats
      assert.deepStrictEqual([stats.workersAlive, stats.byType.WriteObject.failed], [2, 2])
    }).pipe(Effect.provide(poolLayer())))

  it.effect("shutdown drains the queue within the drain deadline, then refuses tasks; a second call returns the same report", () =>
    Effect.gen(function*() {
      const { queue, workers } = yield* services
      const handles = yield* Effect.forEach(
        [1, 2, 3],
        (value) => queue.enqueue(object(`slow${value}`), Effect.as(Effect.sleep(100), value))
      )
      const shutdown = yield* Effect.fork(workers.shutdown)
      const report = yield* advanceUntilDone(shutdown, 100, 10).pipe(Effect.flatMap((exit) => exit))
      assert.deepStrictEqual([report.drainedTasks, report.abortedTasks, report.interruptedTasks, report.workersAlive], [
        3,
        0,
        0,
        0
      ])
      assert.strictEqual(report.durationMs, 300)
      assert.deepStrictEqual(yield* Effect.forEach(handles, (handle) => handle.await), [1, 2, 3])
      assert.strictEqual(yield* workers.shutdown, report)
      assert.deepStrictEqual(
        failureOf(yield* Effect.exit(queue.enqueue(object("late"), Effect.void))),
        new QueueClosed({ taskType: "WriteObject" })
      )
    }).pipe(Effect.provide(poolLayer({ workerCount: 1 }))))

  it.effect("closing the layer's scope runs the ordered shutdown: pending handles fail, no worker is left", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(poolLayer({ workerCount: 1, drainDeadlineMs: 200 }), scope)
      const queue = Context.get(context, TaskQueue.TaskQueue)
      const workers = Context.get(context, S3Workers.S3Workers)
      const store = hangingStore()
      const hung = yield* queue.enqueue(object("hung"), store.run)
      const queued = yield* queue.enqueue(object("queued"), Effect.succeed(1))
      yield* eventually(Effect.map(queue.stats, (stats) => stats.inFlight === 1), "the worker runs the hung task")
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* advanceUntilDone(closing, 100, 10)
      assert.instanceOf(failureOf(yield* Effect.exit(hung.await)), TaskAborted)
      assert.instanceOf(failureOf(yield* Effect.exit(queued.await)), TaskAborted)
      assert.strictEqual(store.counts.aborted, 1)
      assert.strictEqual(yield* workers.workersAlive, 0)
      assert.isTrue((yield* queue.stats).closed)
    }))

  it.effect("each task runs under a span s3.task naming its type, key and id", () =>
    Effect.gen(function*() {
      const { queue } = yield* services
      const handle = yield* queue.enqueue(
        read(4),
        Effect.map(Effect.currentSpan, (span) => ({ name: span.name, attributes: Object.fromEntries(span.attributes) }))
      )
      const seen = yield* handle.await
      assert.strictEqual(seen.name, "s3.task")
      assert.deepStrictEqual(seen.attributes, { type: "ReadPart", key: "users#4", taskId: handle.id })
    }).pipe(Effect.provide(poolLayer())))

  it.effect("a task's span is a child of the span it was enqueued in; without one it is a root", () => {
    const spans: Array<Tracer.Span> = []
    return Effect.gen(function*() {
      const { queue } = yield* services
      const inner = yield* Effect.withSpan(
        Effect.flatMap(queue.enqueue(object("in-span"), Effect.void), (handle) => Effect.as(handle.await, handle.id)),
        "outer"
      )
      const alone = yield* queue.enqueue(object("no-span"), Effect.void)
      yield* alone.await
      const taskSpan = (id: number) =>
        spans.find((span) => span.name === "s3.task" && span.attributes.get("taskId") === id)
      const outer = spans.find((span) => span.name === "outer")
      const innerSpan = taskSpan(inner)
      const aloneSpan = taskSpan(alone.id)
      assert.isDefined(outer)
      assert.isDefined(innerSpan)
      assert.isDefined(aloneSpan)
      assert.strictEqual(Option.getOrUndefined(innerSpan.parent)?.spanId, outer.spanId)
      assert.isTrue(Option.isNone(aloneSpan.parent))
    }).pipe(
      Effect.provide(poolLayer()),
      (program) => Effect.flatMap(Effect.tracer, (base) => Effect.withTracer(program, collectingTracer(base, spans)))
    )
  })

  it.effect("metrics carry the pool's instance label: two pools in one process count apart", () =>
    Effect.gen(function*() {
      const run = (instance: string, count: number) =>
        Effect.gen(function*() {
          const { queue, workers } = yield* services
          const handles = yield* Effect.forEach(Array.from({ length: count }, (_, index) => index), (index) =>
            queue.enqueue(object(`${instance}${index}`), Effect.void))
          yield* Effect.forEach(handles, (handle) =>
            handle.await, { discard: true })
          return (yield* workers.stats).byType.WriteObject.completed
        }).pipe(Effect.provide(poolLayer()), Effect.provide(MetricsInstance.layer(instance)))
      const enqueued = (instance: string) =>
        Effect.map(
          Metric.value(
            TaskQueue.tasksEnqueued.pipe(Metric.tagged("instance", instance), Metric.tagged("taskType", "WriteObject"))
          ),
          (state) => state.count
        )
      const counts = Effect.all([
        S3Workers.counterValue(S3Workers.taskCompletions, "WriteObject", "left"),
        S3Workers.counterValue(S3Workers.taskCompletions, "WriteObject", "right"),
        enqueued("left"),
        enqueued("right")
      ])
      const before = yield* counts
      const stats = yield* Effect.all([run("left", 3), run("right", 2)])
      const after = yield* counts
      assert.deepStrictEqual(stats, [3, 2])
      assert.deepStrictEqual(after.map((count, index) => count - before[index]!), [3, 2, 3, 2])
    }))
})

// ---------------------------------------------------------------------------------------------
// Property: random sequences of enqueue / complete / fail / interrupt / clock moves / close
// ---------------------------------------------------------------------------------------------

type Command =
  | { readonly _tag: "Enqueue"; readonly kind: "read" | "write" | "object"; readonly part: number }
  | { readonly _tag: "Await"; readonly producer: number; readonly deadlineMs: number | undefined }
  | {
    readonly _tag: "Settle"
    readonly attempt: number
    readonly outcome: "succeed" | "permanent" | "transient" | "defect"
  }
  | { readonly _tag: "InterruptProducer"; readonly producer: number }
  | { readonly _tag: "InterruptWaiter"; readonly waiter: number }
  | { readonly _tag: "Advance"; readonly ms: number }
  | { readonly _tag: "Close" }

const commandArbitrary: FastCheck.Arbitrary<Command> = FastCheck.oneof(
  {
    weight: 7,
    arbitrary: FastCheck.record({
      _tag: FastCheck.constant("Enqueue" as const),
      kind: FastCheck.constantFrom("read" as const, "write" as const, "object" as const),
      part: FastCheck.integer({ min: 0, max: 3 })
    })
  },
  {
    weight: 3,
    arbitrary: FastCheck.record({
      _tag: FastCheck.constant("Await" as const),
      producer: FastCheck.nat(),
      deadlineMs: FastCheck.option(FastCheck.integer({ min: 1, max: 2_000 }), { nil: undefined })
    })
  },
  {
    weight: 5,
    arbitrary: FastCheck.record({
      _tag: FastCheck.constant("Settle" as const),
      attempt: FastCheck.nat(),
      outcome: FastCheck.constantFrom("succeed" as const, "permanent" as const, "transient" as const, "defect" as const)
    })
  },
  {
    weight: 1,
    arbitrary: FastCheck.record({ _tag: FastCheck.constant("InterruptProducer" as const), producer: FastCheck.nat() })
  },
  {
    weight: 1,
    arbitrary: FastCheck.record({ _tag: FastCheck.constant("InterruptWaiter" as const), waiter: FastCheck.nat() })
  },
  {
    weight: 2,
    arbitrary: FastCheck.record({
      _tag: FastCheck.constant("Advance" as const),
      ms: FastCheck.integer({ min: 1, max: 1_500 })
    })
  },
  { weight: 1, arbitrary: FastCheck.constant({ _tag: "Close" as const }) }
)

const propertyConfig: Partial<StorageConfig.StorageConfigValue> = {
  workerCount: 2,
  queueCapacity: 2,
  requestTimeoutMs: 1_000,
  retryAttemptsMax: 3,
  retryDelayBaseMs: 10,
  retryDelayMaxMs: 40,
  retryElapsedMaxMs: 500,
  drainDeadlineMs: 200
}

/** Lets every runnable fiber go on until it suspends (a bounded number of scheduler turns). */
const quiesce = Effect.repeatN(Effect.yieldNow(), 40)

interface AttemptRecord {
  readonly run: number
  readonly gate: Deferred.Deferred<string, unknown>
  ended: boolean
  settled: boolean
}

const playCommands = (commands: ReadonlyArray<Command>) =>
  Effect.gen(function*() {
    const { queue, workers, waits } = yield* services
    const attempts: Array<AttemptRecord> = []
    const succeededRuns = new Set<number>()
    const producers: Array<
      {
        readonly run: number
        readonly fiber: Fiber.RuntimeFiber<TaskQueue.TaskHandle<string, unknown>, QueueClosed>
        interrupted: boolean
      }
    > = []
    const waiters: Array<
      {
        readonly fiber: Fiber.RuntimeFiber<string, unknown>
        readonly handle: TaskQueue.TaskHandle<string, unknown>
        interrupted: boolean
      }
    > = []
    let shutdown: Fiber.RuntimeFiber<S3Workers.WorkerShutdownReport> | undefined
    let depthMax = 0

    const runOf = (run: number): Effect.Effect<string, unknown> =>
      Effect.flatMap(Deferred.make<string, unknown>(), (gate) => {
        const record: AttemptRecord = { run, gate, ended: false, settled: false }
        attempts.push(record)
        return Effect.ensuring(
          Deferred.await(gate),
          Effect.sync(() => {
            record.ended = true
          })
        )
      })

    for (const command of commands) {
      switch (command._tag) {
        case "Enqueue": {
          const run = producers.length
          const task = command.kind === "read"
            ? read(command.part)
            : command.kind === "write"
            ? write(command.part)
            : object(`o${run}`)
          producers.push({ run, fiber: yield* Effect.fork(queue.enqueue(task, runOf(run))), interrupted: false })
          break
        }
        case "Await": {
          const producer = producers[command.producer % Math.max(1, producers.length)]
          const exit = producer?.fiber.unsafePoll()
          if (exit !== undefined && exit !== null && Exit.isSuccess(exit)) {
            const handle = exit.value
            const wait = command.deadlineMs === undefined ? handle.await : handle.awaitWithin(command.deadlineMs)
            waiters.push({ fiber: yield* Effect.fork(wait), handle, interrupted: false })
          }
          break
        }
        case "Settle": {
          const live = attempts.filter((attempt) => !attempt.ended && !attempt.settled)
          const attempt = live[command.attempt % Math.max(1, live.length)]
          if (attempt !== undefined) {
            attempt.settled = true
            if (command.outcome === "succeed") succeededRuns.add(attempt.run)
            yield* command.outcome === "succeed"
              ? Deferred.succeed(attempt.gate, `v${attempt.run}`)
              : command.outcome === "permanent"
              ? Deferred.fail(attempt.gate, rejected)
              : command.outcome === "transient"
              ? Deferred.fail(attempt.gate, unavailable)
              : Deferred.die(attempt.gate, new Error("defect in a task"))
          }
          break
        }
        case "InterruptProducer": {
          const producer = producers[command.producer % Math.max(1, producers.length)]
          if (producer !== undefined) {
            producer.interrupted = true
            yield* Fiber.interrupt(producer.fiber)
          }
          break
        }
        case "InterruptWaiter": {
          const waiter = waiters[command.waiter % Math.max(1, waiters.length)]
          if (waiter !== undefined) {
            waiter.interrupted = true
            yield* Fiber.interrupt(waiter.fiber)
          }
          break
        }
        case "Advance":
          yield* TestClock.adjust(command.ms)
          break
        case "Close":
          if (shutdown === undefined) shutdown = yield* Effect.fork(workers.shutdown)
          break
      }
      yield* quiesce
      const stats = yield* queue.stats
      depthMax = Math.max(depthMax, stats.depth)
      // Backpressure without holes: once every fiber has run, a producer waits only on a full queue.
      if (stats.waitingProducers > 0) {
        assert.strictEqual(stats.depth, stats.capacity, "a producer waits while the queue has room")
      }
    }

    // Close (if the sequence did not) and let the clock run until the shutdown ends.
    if (shutdown === undefined) {
      shutdown = yield* Effect.fork(workers.shutdown)
    }
    const report = yield* advanceUntilDone(shutdown, 100, 40).pipe(Effect.flatMap((exit) => exit))
    yield* quiesce

    // No fiber left: no worker, no attempt still running, every producer and waiter ended.
    assert.strictEqual(report.workersAlive, 0)
    assert.strictEqual(yield* workers.workersAlive, 0)
    assert.isTrue(attempts.every((attempt) => attempt.ended), "an attempt outlived the shutdown")
    assert.isAtMost(depthMax, propertyConfig.queueCapacity ?? 0)

    // Every producer ended with a handle, QueueClosed, or the interruption the test sent.
    const handles = new Map<number, TaskQueue.TaskHandle<string, unknown>>()
    for (const producer of producers) {
      const exit = producer.fiber.unsafePoll()
      assert.isNotNull(exit, `producer ${producer.run} is still suspended`)
      if (exit === null) continue
      if (Exit.isSuccess(exit)) handles.set(exit.value.id, exit.value)
      else if (!producer.interrupted || !Exit.isInterrupted(exit)) assert.instanceOf(failureOf(exit), QueueClosed)
    }

    // Every handle resolved; a success carries the value of an attempt that was told to succeed.
    const outcomes = new Map<number, Exit.Exit<string, unknown>>()
    for (const [id, handle] of handles) {
      const outcome = yield* handle.poll
      assert.isTrue(Option.isSome(outcome), `task ${id} never resolved`)
      if (Option.isNone(outcome)) continue
      outcomes.set(id, outcome.value)
      if (Exit.isSuccess(outcome.value)) assert.isTrue(succeededRuns.has(Number(outcome.value.value.slice(1))))
    }

    // Every waiter woke, with its handle's outcome, its own deadline, or its own interruption.
    for (const waiter of waiters) {
      const exit = waiter.fiber.unsafePoll()
      assert.isNotNull(exit, "a waiter never woke")
      if (exit === null || (waiter.interrupted && Exit.isInterrupted(exit))) continue
      if (failureOf(exit) instanceof TaskTimeout) continue
      const outcome = outcomes.get(waiter.handle.id)
      assert.isDefined(outcome)
      if (outcome === undefined) continue
      assert.strictEqual(Exit.isSuccess(exit), Exit.isSuccess(outcome))
      if (Exit.isSuccess(exit) && Exit.isSuccess(outcome)) assert.strictEqual(exit.value, outcome.value)
      if (Exit.isFailure(exit) && Exit.isFailure(outcome)) {
        assert.strictEqual(Cause.isDie(exit.cause), Cause.isDie(outcome.cause))
      }
    }
    assert.strictEqual(yield* waits.size, 0)

    // The queue is empty, closed, and counted every task once.
    const stats = yield* queue.stats
    assert.deepStrictEqual([stats.depth, stats.inFlight, stats.waitingProducers, stats.closed], [0, 0, 0, true])
    assert.strictEqual(stats.enqueued, stats.completed + stats.failed + stats.aborted)
    assert.strictEqual(stats.enqueued, handles.size)

    // Resolved exactly once: settling what is left changes no outcome.
    for (const attempt of attempts) {
      yield* Deferred.succeed(attempt.gate, "late")
    }
    yield* quiesce
    for (const [id, handle] of handles) {
      const again = yield* handle.poll
      assert.isTrue(Option.isSome(again) && again.value === outcomes.get(id))
    }
    assert.instanceOf(failureOf(yield* Effect.exit(queue.enqueue(read(0), Effect.succeed("late")))), QueueClosed)
  })

describe("S3Workers (property)", () => {
  it.effect.prop(
    "every handle resolves exactly once, every waiter wakes, no fiber leaks, the queue stays within its bound",
    [FastCheck.array(commandArbitrary, { minLength: 1, maxLength: 30 })],
    ([commands]) => playCommands(commands).pipe(Effect.provide(poolLayer(propertyConfig))),
    { fastCheck: { numRuns: 60 } }
  )
})
