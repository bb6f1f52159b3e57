/**
 * Goal: the task queue gives every task its own completion (no prefix completion, no head-of-line
 * blocking), carries each outcome (success, typed failure, defect) to its waiters, holds at most
 * `queueCapacity` tasks with interruptible backpressure that leaves no hole, deduplicates reads and
 * coalesces queued writes as specified, wakes workers on enqueue, and fails everything pending at
 * close — the defects of OrioleDB's src/s3/queue.c (docs/ORIGINAL.md §2, §7: #340, #373).
 * Method: the test plays the worker itself (`take` / `takeWith` + `complete`), on the TestClock;
 * it waits for states by yielding to the other fibers (never by sleeping).
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Option, TestClock } from "effect"
import { ObjectStoreRejected, QueueClosed, TaskAborted, TaskTimeout } from "../../src/domain/Errors.js"
import { checkpointNumber, fileId, partIndex } from "../../src/domain/Ids.js"
import { ReadPart, WriteObject, WritePart } from "../../src/domain/Task.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as TaskQueue from "../../src/services/TaskQueue.js"
import * as WaitRegistry from "../../src/services/WaitRegistry.js"
import { eventually, failureOf } from "../support/Shared.js"

const users = fileId("users")
const read = (part: number) => new ReadPart({ file: users, part: partIndex(part) })
const write = (part: number) => new WritePart({ file: users, part: partIndex(part), checkpoint: checkpointNumber(1) })
const object = (key: string) => new WriteObject({ key, kind: "Other" })

const makeQueue = (capacity: number) =>
  Effect.gen(function*() {
    const waits = yield* WaitRegistry.make
    const queue = yield* TaskQueue.makeUnscoped(capacity, waits)
    return { queue, waits }
  })

/** Sends the interruption at once (in this step), without waiting for the fiber to end. */
const interruptNow = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.flatMap(Effect.fiberId, (id) => Fiber.interruptAsFork(fiber, id))

const isSuspended = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.map(Fiber.status(fiber), (status) => status._tag === "Suspended")

describe("TaskQueue", () => {
  it.effect("a handle gets its own task's value; poll shows it once completed", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(4)
      const handle = yield* queue.enqueue(object("a"), Effect.succeed(7))
      assert.deepStrictEqual(yield* handle.poll, Option.none())
      const picked = yield* queue.take
      assert.strictEqual(picked.id, handle.id)
      assert.strictEqual(picked.task, handle.task)
      yield* picked.complete(yield* Effect.exit(picked.run))
      assert.strictEqual(yield* handle.await, 7)
      assert.deepStrictEqual(yield* handle.poll, Option.some(Exit.succeed(7)))
      const stats = yield* queue.stats
      assert.deepStrictEqual([stats.enqueued, stats.completed, stats.depth, stats.inFlight], [1, 1, 0, 0])
    }))

  it.effect("waiting on a later task does not depend on an earlier, stuck one (no head-of-line blocking)", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(4)
      const first = yield* queue.enqueue(object("stuck"), Effect.never)
      const second = yield* queue.enqueue(object("quick"), Effect.succeed("quick"))
      const firstPicked = yield* queue.take
      const secondPicked = yield* queue.take
      assert.strictEqual(firstPicked.id, first.id)
      yield* secondPicked.complete(Exit.succeed("quick"))
      assert.strictEqual(yield* second.await, "quick")
      assert.deepStrictEqual(yield* first.poll, Option.none())
    }))

  it.effect("a typed failure, a defect and an interruption reach the waiters as such", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(4)
      const rejected = new ObjectStoreRejected({ operation: "put", key: "k", code: "AccessDenied", detail: "403" })
      const failing = yield* queue.enqueue(object("f"), Effect.fail(rejected))
      const dying = yield* queue.enqueue(object("d"), Effect.dieMessage("bug"))
      const cut = yield* queue.enqueue(object("i"), Effect.never)
      yield* (yield* queue.take).complete(Exit.fail(rejected))
      yield* (yield* queue.take).complete(Exit.die(new Error("bug")))
      yield* (yield* queue.take).complete(Exit.interrupt(Fiber.id(yield* Effect.fork(Effect.void))))
      assert.strictEqual(failureOf(yield* Effect.exit(failing.await)), rejected)
      const died = yield* Effect.exit(dying.await)
      assert.isTrue(Exit.isFailure(died) && Cause.isDie(died.cause))
      // An interruption-only exit would make the waiter look interrupted: it becomes TaskAborted.
      const aborted = failureOf(yield* Effect.exit(cut.await))
      assert.instanceOf(aborted, TaskAborted)
      const stats = yield* queue.stats
      assert.deepStrictEqual([stats.failed, stats.aborted], [2, 1])
    }))

  it.effect("completing twice keeps the first outcome", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(1)
      const handle = yield* queue.enqueue(object("a"), Effect.succeed(1))
      const picked = yield* queue.take
      yield* picked.complete(Exit.succeed(1))
      yield* picked.complete(Exit.succeed(2))
      assert.strictEqual(yield* handle.await, 1)
      assert.strictEqual((yield* queue.stats).completed, 1)
    }))

  it.effect("awaitWithin fails with TaskTimeout at its deadline while the task goes on", () =>
    Effect.gen(function*() {
      const { queue, waits } = yield* makeQueue(2)
      const handle = yield* queue.enqueue(object("slow"), Effect.succeed("late"))
      const waiter = yield* Effect.fork(handle.awaitWithin(500))
      yield* eventually(Effect.map(waits.size, (size) => size === 1), "the waiter is registered")
      const [wait] = yield* waits.current
      assert.strictEqual(wait?.on, `task ${handle.id} WriteObject Other slow (deadline 500 ms)`)
      yield* TestClock.adjust(499)
      assert.isNull(waiter.unsafePoll())
      yield* TestClock.adjust(1)
      const timedOut = failureOf(yield* Fiber.await(waiter))
      assert.instanceOf(timedOut, TaskTimeout)
      assert.deepStrictEqual(timedOut, new TaskTimeout({ taskId: handle.id, taskType: "WriteObject", timeoutMs: 500 }))
      assert.strictEqual(yield* waits.size, 0)
      // The task itself was not touched: it still runs and its outcome still arrives.
      yield* (yield* queue.take).complete(Exit.succeed("late"))
      assert.strictEqual(yield* handle.awaitWithin(1), "late")
    }))

  it.effect("await is listed in the waiter registry while it waits, and only then", () =>
    Effect.gen(function*() {
      const { queue, waits } = yield* makeQueue(2)
      const handle = yield* queue.enqueue(read(3), Effect.succeed("bytes"))
      const waiter = yield* Effect.fork(handle.await)
      yield* eventually(Effect.map(waits.size, (size) => size === 1), "the waiter is registered")
      const [wait] = yield* waits.current
      assert.strictEqual(wait?.waiter, "TaskHandle.await")
      assert.strictEqual(wait?.on, `task ${handle.id} ReadPart users#3`)
      yield* (yield* queue.take).complete(Exit.succeed("bytes"))
      assert.strictEqual(yield* Fiber.join(waiter), "bytes")
      assert.strictEqual(yield* waits.size, 0)
    }))

  it.effect("a full queue suspends the producer until a worker takes a task", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(2)
      yield* queue.enqueue(object("1"), Effect.void)
      yield* queue.enqueue(object("2"), Effect.void)
      const producer = yield* Effect.fork(queue.enqueue(object("3"), Effect.void))
      yield* eventually(isSuspended(producer), "the producer suspends")
      assert.deepStrictEqual([(yield* queue.stats).depth, (yield* queue.stats).waitingProducers], [2, 1])
      const picked = yield* queue.take
      const third = yield* Fiber.join(producer)
      assert.strictEqual(third.task._tag, "WriteObject")
      const stats = yield* queue.stats
      assert.deepStrictEqual([stats.depth, stats.inFlight, stats.waitingProducers, stats.enqueued], [2, 1, 0, 3])
      yield* picked.complete(Exit.void)
    }))

  it.effect("a picked task carries the span its producer enqueued it in, also after waiting for room", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(1)
      yield* Effect.withSpan(queue.enqueue(object("first"), Effect.void), "first-producer")
      const producer = yield* Effect.fork(
        Effect.withSpan(queue.enqueue(object("second"), Effect.void), "second-producer")
      )
      yield* eventually(isSuspended(producer), "the producer suspends")
      const first = yield* queue.take
      yield* Fiber.join(producer)
      const second = yield* queue.take
      const untraced = yield* queue.enqueue(object("third"), Effect.void)
      const third = yield* queue.take
      const nameOf = (
        picked: TaskQueue.PickedTask
      ) => (picked.parentSpan?._tag === "Span" ? picked.parentSpan.name : picked.parentSpan?._tag)
      assert.deepStrictEqual([nameOf(first), nameOf(second), nameOf(third)], [
        "first-producer",
        "second-producer",
        undefined
      ])
      assert.strictEqual(third.id, untraced.id)
    }))

  it.effect("an interrupted producer leaves no task, no hole and no reserved slot behind", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(1)
      yield* queue.enqueue(object("1"), Effect.void)
      const interrupted = yield* Effect.fork(queue.enqueue(object("never"), Effect.void))
      const next = yield* Effect.fork(queue.enqueue(object("2"), Effect.void))
      yield* eventually(Effect.map(queue.stats, (stats) => stats.waitingProducers === 2), "both producers suspend")
      yield* Fiber.interrupt(interrupted)
      assert.strictEqual((yield* queue.stats).waitingProducers, 1)
      const first = yield* queue.take
      assert.strictEqual(first.task._tag === "WriteObject" && first.task.key, "1")
      const second = yield* Fiber.join(next)
      const picked = yield* queue.take
      assert.strictEqual(picked.id, second.id)
      // The queue still works at full capacity: one enqueue fits, the next one waits again.
      yield* queue.enqueue(object("3"), Effect.void)
      const stats = yield* queue.stats
      assert.deepStrictEqual([stats.enqueued, stats.depth, stats.waitingProducers], [3, 1, 0])
      const blocked = yield* Effect.fork(queue.enqueue(object("4"), Effect.void))
      yield* eventually(isSuspended(blocked), "the producer suspends again")
      yield* Fiber.interrupt(blocked)
    }))

  it.effect("a producer interrupted after its slot was granted, before it published, passes the slot on", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(1)
      yield* queue.enqueue(object("1"), Effect.void)
      const granted = yield* Effect.fork(queue.enqueue(object("granted"), Effect.void))
      const next = yield* Effect.fork(queue.enqueue(object("next"), Effect.void))
      yield* eventually(Effect.map(queue.stats, (stats) => stats.waitingProducers === 2), "both producers suspend")
      // One step: the take grants the freed slot to the oldest producer (its wake-up is queued),
      // and the interruption reaches it before it runs.
      yield* Effect.zipRight(queue.take, interruptNow(granted))
      const exit = yield* Fiber.await(granted)
      assert.isTrue(Exit.isInterrupted(exit))
      const published = yield* Fiber.join(next)
      assert.strictEqual(published.task._tag === "WriteObject" && published.task.key, "next")
      const stats = yield* queue.stats
      assert.deepStrictEqual([stats.enqueued, stats.depth, stats.waitingProducers], [2, 1, 0])
    }))

  it.effect("workers are woken by enqueue, and a woken worker interrupted before it ran passes the wake-up on", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(4)
      const workerA = yield* Effect.fork(queue.take)
      const workerB = yield* Effect.fork(queue.take)
      yield* eventually(
        Effect.zipWith(isSuspended(workerA), isSuspended(workerB), (a, b) => a && b),
        "the workers wait"
      )
      const handle = yield* Effect.zipLeft(queue.enqueue(object("x"), Effect.void), interruptNow(workerA))
      const picked = yield* Fiber.join(workerB)
      assert.strictEqual(picked.id, handle.id)
      assert.isTrue(Exit.isInterrupted(yield* Fiber.await(workerA)))
      // takeWith hands the pick to its process with no interruption point in between.
      const processed = yield* Effect.fork(
        queue.takeWith((task) => Effect.as(task.complete(Exit.succeed("done")), task.id))
      )
      const later = yield* queue.enqueue(object("y"), Effect.succeed("done"))
      assert.strictEqual(yield* Fiber.join(processed), later.id)
      assert.strictEqual(yield* later.await, "done")
    }))

  it.effect("a read joins the queued or running read of the same part; a new read follows a completed one", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(4)
      const first = yield* queue.enqueue(read(1), Effect.succeed("first"))
      const joinedQueued = yield* queue.enqueue(read(1), Effect.succeed("second"))
      const other = yield* queue.enqueue(read(2), Effect.succeed("other"))
      assert.strictEqual(joinedQueued, first)
      assert.notStrictEqual(other.id, first.id)
      const picked = yield* queue.take
      const joinedRunning = yield* queue.enqueue(read(1), Effect.succeed("third"))
      assert.strictEqual(joinedRunning.id, first.id)
      yield* picked.complete(yield* Effect.exit(picked.run))
      assert.strictEqual(yield* joinedRunning.await, "first")
      const fresh = yield* queue.enqueue(read(1), Effect.succeed("fresh"))
      assert.notStrictEqual(fresh.id, first.id)
      assert.strictEqual((yield* queue.stats).deduplicated, 2)
    }))

  it.effect("a write coalesces into a queued write of the same part, never into a picked one", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(4)
      const first = yield* queue.enqueue(write(5), Effect.succeed("v1"))
      const coalesced = yield* queue.enqueue(write(5), Effect.succeed("v2"))
      assert.strictEqual(coalesced.id, first.id)
      const picked = yield* queue.take
      assert.strictEqual(picked.id, first.id)
      const afterPick = yield* queue.enqueue(write(5), Effect.succeed("v3"))
      assert.notStrictEqual(afterPick.id, first.id)
      const again = yield* queue.enqueue(write(5), Effect.succeed("v4"))
      assert.strictEqual(again.id, afterPick.id)
      // Reads and writes of one part are never merged with each other.
      const readHandle = yield* queue.enqueue(read(5), Effect.succeed("r"))
      assert.notStrictEqual(readHandle.id, afterPick.id)
      const stats = yield* queue.stats
      assert.deepStrictEqual([stats.enqueued, stats.deduplicated], [3, 2])
    }))

  it.effect("a join never waits for room in a full queue", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(1)
      const queuedRead = yield* queue.enqueue(read(9), Effect.succeed("r"))
      const joined = yield* queue.enqueue(read(9), Effect.succeed("r"))
      assert.strictEqual(joined.id, queuedRead.id)
    }))

  it.effect("closeIntake fails suspended and later enqueues with QueueClosed; queued tasks stay", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(1)
      const queued = yield* queue.enqueue(object("1"), Effect.succeed(1))
      const suspended = yield* Effect.fork(queue.enqueue(object("2"), Effect.void))
      yield* eventually(isSuspended(suspended), "the producer suspends")
      yield* queue.closeIntake
      yield* queue.closeIntake
      assert.deepStrictEqual(failureOf(yield* Fiber.await(suspended)), new QueueClosed({ taskType: "WriteObject" }))
      assert.deepStrictEqual(
        failureOf(yield* Effect.exit(queue.enqueue(read(1), Effect.void))),
        new QueueClosed({ taskType: "ReadPart" })
      )
      const picked = yield* queue.take
      yield* picked.complete(Exit.succeed(1))
      assert.strictEqual(yield* queued.await, 1)
      assert.isTrue((yield* queue.stats).closed)
    }))

  it.effect("abortAll fails queued tasks (QueueClosed) and running ones (DrainDeadline) and wakes every waiter", () =>
    Effect.gen(function*() {
      const { queue, waits } = yield* makeQueue(4)
      const running = yield* queue.enqueue(object("running"), Effect.never)
      const queued = yield* queue.enqueue(read(1), Effect.never)
      const picked = yield* queue.take
      const waiters = yield* Effect.forEach([running, queued, running], (handle) => Effect.fork(handle.await))
      yield* eventually(Effect.map(waits.size, (size) => size === 3), "the waiters are registered")
      const idle = yield* Effect.fork(queue.awaitIdle)
      assert.strictEqual(yield* queue.abortAll, 2)
      assert.strictEqual(yield* queue.abortAll, 0)
      const reasons = yield* Effect.forEach(
        waiters,
        (waiter) => Effect.map(Fiber.await(waiter), (exit) => (failureOf(exit) as TaskAborted | undefined)?.reason)
      )
      assert.deepStrictEqual(reasons, ["DrainDeadline", "QueueClosed", "DrainDeadline"])
      yield* Fiber.join(idle)
      assert.strictEqual(yield* waits.size, 0)
      // The worker's late completion is ignored: the handle keeps TaskAborted.
      yield* picked.complete(Exit.succeed("late"))
      assert.instanceOf(failureOf(yield* Effect.exit(running.await)), TaskAborted)
      const stats = yield* queue.stats
      assert.deepStrictEqual([stats.aborted, stats.depth, stats.inFlight, stats.closed], [2, 0, 0, true])
    }))

  it.effect("awaitIdle waits for queued and in-flight tasks", () =>
    Effect.gen(function*() {
      const { queue } = yield* makeQueue(4)
      yield* queue.awaitIdle
      yield* queue.enqueue(object("a"), Effect.void)
      const idle = yield* Effect.fork(queue.awaitIdle)
      const picked = yield* queue.take
      yield* eventually(isSuspended(idle), "awaitIdle waits for the running task")
      assert.isNull(idle.unsafePoll())
      yield* picked.complete(Exit.void)
      yield* Fiber.join(idle)
    }))

  it.effect("the layer reads its capacity from StorageConfig and aborts pending tasks when closed", () =>
    Effect.gen(function*() {
      // Providing the layer to one effect closes it (and its finalizer runs) when that effect ends.
      const handle = yield* Effect.gen(function*() {
        const queue = yield* TaskQueue.TaskQueue
        assert.strictEqual((yield* queue.stats).capacity, 3)
        return yield* queue.enqueue(object("left"), Effect.void)
      }).pipe(
        Effect.provide(TaskQueue.layer),
        Effect.provide(WaitRegistry.layer),
        Effect.provide(StorageConfig.layer({ queueCapacity: 3 }))
      )
      const aborted = failureOf(yield* Effect.exit(handle.await))
      assert.deepStrictEqual(
        aborted,
        new TaskAborted({ taskId: handle.id, taskType: "WriteObject", reason: "QueueClosed" })
      )
    }))
})
