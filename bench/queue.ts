/**
 * Scenario 2: task-queue overhead. M no-op tasks go through TaskQueue + S3Workers (W worker fibers,
 * each task with its own handle, metrics, span and waiter bookkeeping) against a bare Effect
 * `Queue.bounded` of the same capacity drained by W fibers, each task completing a Deferred that the
 * producer awaits (the least a queue with per-task outcomes must do). One producer enqueues every
 * task, then awaits every outcome.
 */
import { Deferred, Effect, Fiber, Layer, Queue } from "effect"
import { WriteObject } from "../src/domain/Task.js"
import * as S3Workers from "../src/services/S3Workers.js"
import * as StorageConfig from "../src/services/StorageConfig.js"
import * as TaskQueue from "../src/services/TaskQueue.js"
import * as WaitRegistry from "../src/services/WaitRegistry.js"
import { type BenchOptions, median, now, quiet, round, type ScenarioResult } from "./common.js"

const capacity = 1024
const workerCount = 8

const poolLayer = S3Workers.layer.pipe(
  Layer.provideMerge(TaskQueue.layer.pipe(Layer.provideMerge(WaitRegistry.layer))),
  Layer.provide(
    StorageConfig.layer({ workerCount, queueCapacity: capacity, drainDeadlineMs: 1_000, shutdownDeadlineMs: 15_000 })
  )
)

/** Ours: ms for `count` no-op tasks through the queue and the workers. */
const oursOnce = (count: number) =>
  quiet(
    Effect.scoped(
      Effect.gen(function*() {
        const context = yield* Layer.build(poolLayer)
        const queue = yield* Effect.provide(TaskQueue.TaskQueue, context)
        const tasks = Array.from({ length: count }, (_, index) =>
          new WriteObject({ key: `bench/${index}`, kind: "Other" }))
        const start = now()
        const handles = yield* Effect.forEach(tasks, (task) =>
          queue.enqueue(task, Effect.void))
        yield* Effect.forEach(handles, (handle) => handle.await, { discard: true })
        return now() - start
      })
    )
  )

interface BareTask {
  readonly run: Effect.Effect<void>
  readonly done: Deferred.Deferred<void>
}

/** Baseline: ms for `count` no-op tasks through a bare bounded Queue and `workerCount` fibers. */
const bareOnce = (count: number) =>
  Effect.gen(function*() {
    const queue = yield* Queue.bounded<BareTask>(capacity)
    const worker = Effect.forever(
      Effect.flatMap(Queue.take(queue), (task) =>
        Effect.flatMap(Effect.exit(task.run), (exit) => Deferred.done(task.done, exit)))
    )
    const fibers = yield* Effect.forEach(Array.from({ length: workerCount }), () =>
      Effect.fork(worker))
    const start = now()
    const deferreds = yield* Effect.forEach(Array.from({ length: count }), () =>
      Effect.flatMap(Deferred.make<void>(), (done) =>
        Effect.as(Queue.offer(queue, { run: Effect.void, done }), done)))
    yield* Effect.forEach(deferreds, (done) =>
      Deferred.await(done), { discard: true })
    const ms = now() - start
    yield* Fiber.interruptAll(fibers)
    yield* Queue.shutdown(queue)
    return ms
  })

export const run = async (options: BenchOptions): Promise<ScenarioResult> => {
  const started = now()
  const count = options.quick ? 10_000 : 100_000
  const repetitions = options.quick ? 1 : 3
  // Warm-up, not counted.
  await Effect.runPromise(oursOnce(Math.min(count, 10_000)))
  await Effect.runPromise(bareOnce(Math.min(count, 10_000)))
  const ours: Array<number> = []
  const bare: Array<number> = []
  for (let repetition = 0; repetition < repetitions; repetition++) {
    const first = repetition % 2 === 0
    if (first) ours.push(await Effect.runPromise(oursOnce(count)))
    bare.push(await Effect.runPromise(bareOnce(count)))
    if (!first) ours.push(await Effect.runPromise(oursOnce(count)))
  }
  const oursMs = median(ours)
  const bareMs = median(bare)
  const oursUs = (oursMs * 1000) / count
  const bareUs = (bareMs * 1000) / count
  return {
    id: "queue",
    title: "2. Queue overhead",
    method:
      `${count} no-op tasks, one producer, ${workerCount} worker fibers, capacity ${capacity}; median of ${repetitions} repetition(s) after a warm-up.`,
    ratioMeaning: "ours / baseline µs per task (the overhead factor; lower is better)",
    oursLabel: "ours",
    baselineLabel: "bare Effect Queue",
    rows: [
      {
        case: "µs per task",
        ours: round(oursUs, 2),
        baseline: round(bareUs, 2),
        unit: "µs/task",
        ratio: round(oursUs / bareUs, 2),
        goal: "ours < 20 µs/task",
        met: oursUs < 20
      },
      {
        case: "tasks per second",
        ours: Math.round((count / oursMs) * 1000),
        baseline: Math.round((count / bareMs) * 1000),
        unit: "tasks/s",
        ratio: round(bareUs / oursUs, 3),
        goal: "reported",
        met: undefined
      }
    ],
    notes: [
      "Ours includes what every real task pays: a handle with its own completion, dedup-key lookup, metrics, the waiter registry entry of `await`, the request-timeout watchdog bookkeeping and a tracing span per task.",
      "The tasks-per-second ratio is ours / baseline (higher is better)."
    ],
    raw: { count, workerCount, capacity, repetitions, oursMs: ours, bareMs: bare },
    durationMs: now() - started
  }
}
