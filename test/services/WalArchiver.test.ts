/**
 * Goal: the write-ahead log keeps its promises. Group commit: many concurrent committers share far
 * fewer fsyncs than commits, and every committed record survives a crash (MemoryDisk.crash, and a
 * real directory reopened) and a restart. Archive order: uploads finishing out of order, or failing,
 * never advance `archivedThrough` past a gap. Restore = checkpoint position + replay of the archived
 * segments gives every committed and archived record, the last segment's included, with exact
 * boundaries. Shutdown archives the final partial segment within its deadline, or says what is local
 * only. Method: the archiver over MemoryDisk, MemoryObjectStore and a test-only task queue whose
 * tasks run at once or wait for the test to release (or fail) them in any order; tiny segments
 * (4 KiB) so that records cross segment boundaries often.
 */
import { FileSystem } from "@effect/platform"
import { NodeFileSystem, NodePath } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import {
  Cause,
  Context,
  Deferred,
  Effect,
  Either,
  Exit,
  FastCheck,
  Fiber,
  Layer,
  Logger,
  LogLevel,
  Option,
  Ref,
  Scope,
  TestClock,
  Tracer
} from "effect"
import * as NodeFs from "node:fs"
import * as NodePathApi from "node:path"
import { QueueClosed, TaskAborted } from "../../src/domain/Errors.js"
import * as Ids from "../../src/domain/Ids.js"
import { type Lsn, lsn, segmentNumber, TaskId } from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import type { Task } from "../../src/domain/Task.js"
import * as Wal from "../../src/domain/Wal.js"
import * as FaultyDisk from "../../src/layers/FaultyDisk.js"
import * as FileSystemDisk from "../../src/layers/FileSystemDisk.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import { LocalDisk, type LocalDiskService } from "../../src/services/LocalDisk.js"
import { ObjectStore, type ObjectStoreService } from "../../src/services/ObjectStore.js"
import * as S3Workers from "../../src/services/S3Workers.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as TaskQueueModule from "../../src/services/TaskQueue.js"
import { TaskQueue, type TaskQueueService } from "../../src/services/TaskQueue.js"
import * as WaitRegistry from "../../src/services/WaitRegistry.js"
import * as WalArchiver from "../../src/services/WalArchiver.js"
import { makeCollectingTracer } from "../support/Tracing.js"

const segmentBytes = 4096
const config = Either.getOrThrow(StorageConfig.validate({ walSegmentBytes: segmentBytes, prefix: "tier" }))

// ---------------------------------------------------------------------------------------------
// A test-only task queue: runs each task at once ("immediate") or holds it until the test releases
// or fails it ("manual"), so that completion order is the test's choice.
// ---------------------------------------------------------------------------------------------

interface HeldTask {
  readonly id: number
  readonly task: Task
  readonly run: Effect.Effect<unknown, unknown>
  readonly done: Deferred.Deferred<unknown, unknown>
}

interface TestQueue {
  readonly service: TaskQueueService
  readonly setManual: (manual: boolean) => Effect.Effect<void>
  readonly held: Effect.Effect<ReadonlyArray<HeldTask>>
  /** Runs the held task(s) of a WAL segment (the first one if several). */
  readonly release: (segment: number) => Effect.Effect<void>
  readonly fail: (segment: number) => Effect.Effect<void>
  readonly close: Effect.Effect<void>
  readonly enqueued: Effect.Effect<ReadonlyArray<Task>>
}

const makeTestQueue = Effect.gen(function*() {
  const state = yield* Ref.make({
    manual: false,
    closed: false,
    nextId: 1,
    held: [] as ReadonlyArray<HeldTask>,
    enqueued: [] as ReadonlyArray<Task>
  })
  const runHeld = (held: HeldTask) =>
    Effect.flatMap(Effect.exit(held.run), (exit) => Deferred.complete(held.done, exit))
  const takeHeld = (segment: number) =>
    Ref.modify(state, (current) => {
      const index = current.held.findIndex((held) =>
        held.task._tag === "WriteWalSegment" && held.task.segment === segment
      )
      const found = current.held[index]
      return [found, { ...current, held: current.held.filter((_, i) => i !== index) }] as const
    })
  const service: TaskQueueService = {
    enqueue: <A, E>(task: Task, run: Effect.Effect<A, E>) =>
      Effect.gen(function*() {
        const done = yield* Deferred.make<unknown, unknown>()
        const current = yield* Ref.get(state)
        if (current.closed) return yield* new QueueClosed({ taskType: task._tag })
        const held: HeldTask = { id: current.nextId, task, run, done }
        yield* Ref.update(
          state,
          (s) => ({
            ...s,
            nextId: s.nextId + 1,
            enqueued: [...s.enqueued, task],
            held: s.manual ? [...s.held, held] : s.held
          })
        )
        if (!current.manual) yield* Effect.forkDaemon(runHeld(held))
        const outcome = Deferred.await(done) as Effect.Effect<A, E | TaskAborted>
        return {
          id: TaskId.make(held.id),
          task,
          await: outcome,
          awaitWithin: (timeoutMs: number) =>
            Effect.timeoutFail(outcome, {
              duration: timeoutMs,
              onTimeout: () => new TaskAborted({ taskId: held.id, taskType: task._tag, reason: "DrainDeadline" })
            }),
          poll: Effect.flatMap(Deferred.poll(done), (completed) =>
            Option.match(completed, {
              onNone: () => Effect.succeedNone,
              onSome: (result) => Effect.map(Effect.exit(result as Effect.Effect<A, E | TaskAborted>), Option.some)
            }))
        }
      }),
    take: Effect.never,
    takeWith: () => Effect.never,
    closeIntake: Ref.update(state, (s) => ({ ...s, closed: true })),
    awaitIdle: Effect.void,
    abortAll: Effect.succeed(0),
    stats: Effect.dieMessage("the WAL does not read the queue's stats")
  }
  const queue: TestQueue = {
    service,
    setManual: (manual) => Ref.update(state, (s) => ({ ...s, manual })),
    held: Effect.map(Ref.get(state), (s) => s.held),
    release: (segment) =>
      Effect.flatMap(
        takeHeld(segment),
        (held) => (held === undefined ? Effect.dieMessage(`no held task for segment ${segment}`) : runHeld(held))
      ),
    fail: (segment) =>
      Effect.flatMap(
        takeHeld(segment),
        (held) =>
          held === undefined
            ? Effect.dieMessage(`no held task for segment ${segment}`)
            : Deferred.fail(
              held.done,
              new TaskAborted({ taskId: held.id, taskType: "WriteWalSegment", reason: "DrainDeadline" })
            )
      ),
    close: Ref.update(state, (s) => ({ ...s, closed: true })),
    enqueued: Effect.map(Ref.get(state), (s) => s.enqueued)
  }
  return queue
})

// ---------------------------------------------------------------------------------------------
// Environment: one disk, one bucket, one queue; archivers opened (and "killed") over them.
// ---------------------------------------------------------------------------------------------

interface Env {
  readonly disk: LocalDiskService
  readonly control: MemoryDisk.MemoryDiskControlService
  readonly store: ObjectStoreService
  readonly bucket: MemoryObjectStore.MemoryBucketService
  readonly queue: TestQueue
}

const makeEnv = Effect.gen(function*() {
  const { control, disk } = yield* MemoryDisk.make
  const { bucket, store } = yield* MemoryObjectStore.make("wal-test")
  const queue = yield* makeTestQueue
  return { disk, control, store, bucket, queue } satisfies Env
})

/** Opens an archiver in its own scope; closing the scope is the process dying (nothing is flushed). */
const open = (
  env: Env,
  disk: LocalDiskService = env.disk,
  startup?: { readonly epoch: number; readonly replayFromLsn?: number; readonly durableLsn?: number }
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const waits = yield* WaitRegistry.make
    const withStartup = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      startup === undefined
        ? effect
        : Effect.provideService(effect, WalArchiver.WalStartup, {
          epoch: startup.epoch,
          replayFromLsn: lsn(startup.replayFromLsn ?? 0),
          ...(startup.durableLsn === undefined ? {} : { durableLsn: lsn(startup.durableLsn) })
        })
    const wal = yield* withStartup(WalArchiver.make).pipe(
      Effect.provideService(StorageConfig.StorageConfig, config),
      Effect.provideService(LocalDisk, disk),
      Effect.provideService(TaskQueue, env.queue.service),
      Effect.provideService(ObjectStore, env.store),
      Effect.provideService(WaitRegistry.WaitRegistry, waits),
      Scope.extend(scope)
    )
    return { wal, kill: Scope.close(scope, Exit.void), waits }
  })

/** The key of a segment archived by an archiver opened without a WalStartup (epoch 0). */
const bucketKey = (segment: number, epoch = 0) =>
  KeyLayout.walKey(KeyLayout.make("tier"), segmentNumber(segment), Ids.epoch(epoch))

const record = (index: number, size = 100): Uint8Array =>
  Uint8Array.from({ length: size }, (_, i) => (index * 31 + i) % 251)

const collect = <E, R>(
  replay: (from: Lsn, apply: WalArchiver.ApplyRecord<never, never>) => Effect.Effect<WalArchiver.ReplaySummary, E, R>,
  from: number
) =>
  Effect.gen(function*() {
    const seen: Array<readonly [number, Uint8Array]> = []
    const summary = yield* replay(lsn(from), (at, bytes) => Effect.sync(() => void seen.push([at, bytes])))
    return { seen, summary }
  })

/** Waits until the archiver's `archivedThrough` reaches `target` (no sleeping: on its changes). */
const archived = (wal: WalArchiver.WalArchiverService, target: number) => wal.awaitArchived(lsn(target), 60_000)

describe("WalArchiver", () => {
  it.effect("appends get increasing LSNs; commit makes them durable; they survive a crash and a reopen", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const first = yield* open(env)
      const lsns: Array<number> = []
      for (let i = 0; i < 10; i++) lsns.push(yield* first.wal.append(record(i)))
      assert.deepStrictEqual(lsns, lsns.map((_, i) => i * (Wal.headerBytes + 100)))
      assert.strictEqual(yield* first.wal.durableLsn, 0)
      yield* first.wal.commit
      assert.strictEqual(yield* first.wal.durableLsn, yield* first.wal.position)
      const uncommitted = yield* first.wal.appendWithEnd(record(99))
      yield* first.kill
      yield* env.control.crash
      const second = yield* open(env)
      // The uncommitted record is gone and its position is reused by the next record.
      assert.strictEqual(yield* second.wal.position, uncommitted.lsn)
      const { seen } = yield* collect(second.wal.replayLocal, 0)
      assert.deepStrictEqual(seen.map(([at]) => at), lsns)
      assert.deepStrictEqual(seen.map(([, bytes]) => Array.from(bytes)), lsns.map((_, i) => Array.from(record(i))))
      assert.strictEqual(yield* second.wal.append(record(10)), uncommitted.lsn)
      yield* second.kill
    }))

  it.effect("group commit: 200 concurrent committers share far fewer fsyncs, and all survive a crash", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { kill, wal } = yield* open(env)
      const syncsBefore = (yield* env.control.stats).syncs
      const committed = yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => i),
        (i) =>
          Effect.flatMap(
            wal.appendWithEnd(record(i, 40 + (i % 50))),
            (appended) => Effect.as(wal.commitThrough(appended.endLsn), appended.lsn)
          ),
        { concurrency: "unbounded" }
      )
      const stats = yield* wal.stats
      const syncs = (yield* env.control.stats).syncs - syncsBefore
      assert.strictEqual(stats.commits, 200)
      assert.isAtMost(stats.fsyncs, 20, `fsyncs ${stats.fsyncs} for 200 commits`)
      assert.strictEqual(syncs, stats.fsyncs)
      assert.isAtLeast(stats.flushes, 1)
      yield* kill
      yield* env.control.crash
      const reopened = yield* open(env)
      const { seen } = yield* collect(reopened.wal.replayLocal, 0)
      const byLsn = new Map(seen.map(([at, bytes]) => [at as number, bytes]))
      committed.forEach((at, i) =>
        assert.deepStrictEqual(Array.from(byLsn.get(at) ?? []), Array.from(record(i, 40 + (i % 50))))
      )
      assert.strictEqual(seen.length, 200)
      yield* reopened.kill
    }))

  it.effect("a failed fsync fails its committers; the frames are written by the next flush", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { kill, wal } = yield* open(env)
      yield* wal.append(record(1))
      yield* env.control.failNext({ operation: "sync" })
      const failed = yield* Effect.either(wal.commit)
      assert.isTrue(Either.isLeft(failed) && failed.left._tag === "LocalIoError")
      assert.strictEqual(yield* wal.durableLsn, 0)
      yield* wal.commit
      assert.strictEqual(yield* wal.durableLsn, Wal.headerBytes + 100)
      assert.strictEqual((yield* wal.stats).flushFailures, 1)
      yield* kill
      yield* env.control.crash
      const reopened = yield* open(env)
      assert.strictEqual((yield* collect(reopened.wal.replayLocal, 0)).seen.length, 1)
    }))

  it.effect("an appender waits for a flush once two segments are unflushed; if it fails, nothing is appended", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { wal } = yield* open(env)
      for (let i = 0; i < 100; i++) yield* env.control.failNext({ operation: "sync" })
      let failure: Either.Either<Lsn, WalArchiver.AppendError> | undefined
      let before = 0
      for (let i = 0; i < 200 && failure === undefined; i++) {
        before = yield* wal.position
        const result = yield* Effect.either(wal.append(record(i, 500)))
        if (Either.isLeft(result)) failure = result
      }
      assert.isTrue(failure !== undefined && Either.isLeft(failure) && failure.left._tag === "LocalIoError")
      assert.strictEqual(yield* wal.position, before, "the refused record took no position")
      assert.isAtLeast(before, 2 * segmentBytes)
      assert.isBelow(before, 3 * segmentBytes, "memory is bounded by about two segments")
      assert.strictEqual(yield* wal.durableLsn, 0)
    }))

  it.effect("a record larger than a segment is refused with a typed error; the largest one fits", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { wal } = yield* open(env)
      const tooLarge = yield* Effect.either(wal.append(new Uint8Array(segmentBytes)))
      assert.isTrue(Either.isLeft(tooLarge) && tooLarge.left._tag === "WalRecordTooLarge")
      yield* wal.append(record(0, 10))
      const largest = yield* wal.append(new Uint8Array(Wal.payloadBytesMax(segmentBytes)))
      assert.strictEqual(largest, segmentBytes, "it does not fit after the first record: it opens segment 1")
      yield* wal.commit
      const { seen } = yield* collect(wal.replayLocal, 0)
      assert.deepStrictEqual(seen.map(([at]) => at), [0, segmentBytes])
    }))

  it.effect("recovery cuts a torn tail: garbage after the last valid frame is dropped and overwritten", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const first = yield* open(env)
      for (let i = 0; i < 3; i++) yield* first.wal.append(record(i))
      yield* first.wal.commit
      const end = yield* first.wal.position
      yield* first.kill
      // A torn write: half a frame header and junk after the valid end, synced.
      yield* env.disk.write(WalArchiver.localSegmentPath(0), end, Uint8Array.from([1, 1, 0, 0, 9, 9, 9]))
      yield* env.disk.sync(WalArchiver.localSegmentPath(0))
      const second = yield* open(env)
      assert.strictEqual(yield* second.wal.position, end)
      assert.strictEqual(Option.getOrThrow(yield* env.disk.size(WalArchiver.localSegmentPath(0))), end)
      yield* second.wal.append(record(3, 1))
      yield* second.wal.commit
      const { seen } = yield* collect(second.wal.replayLocal, 0)
      assert.strictEqual(seen.length, 4)
    }))

  it.effect("full segments are archived as they fill; the bucket holds the local bytes", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { wal } = yield* open(env)
      for (let i = 0; i < 100; i++) yield* wal.append(record(i))
      yield* wal.commit
      const end = yield* wal.position
      const fullSegments = Wal.segmentOf(end, segmentBytes)
      assert.isAtLeast(fullSegments, 2)
      yield* archived(wal, Wal.segmentStart(fullSegments, segmentBytes))
      for (let segment = 0; segment < fullSegments; segment++) {
        const inBucket = Option.getOrThrow(yield* env.bucket.read(bucketKey(segment)))
        assert.deepStrictEqual(
          inBucket,
          Option.getOrThrow(yield* env.disk.readAll(WalArchiver.localSegmentPath(segment)))
        )
      }
      const tasks = yield* env.queue.enqueued
      assert.isTrue(tasks.every((task) => task._tag === "WriteWalSegment" && !task.partial))
      assert.strictEqual(yield* wal.archivedThrough, Wal.segmentStart(fullSegments, segmentBytes))
      assert.strictEqual((yield* wal.stats).segmentsArchived, fullSegments)
    }))

  it.effect("uploads finishing out of order never advance archivedThrough past a gap", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      yield* env.queue.setManual(true)
      const { wal } = yield* open(env)
      while ((yield* wal.position) < 3 * segmentBytes) yield* wal.append(record(1, 500))
      yield* wal.commit
      const heldSegments = () =>
        Effect.map(env.queue.held, (held) =>
          held.map((h) => (h.task._tag === "WriteWalSegment" ? h.task.segment : -1)).sort())
      assert.deepStrictEqual(yield* heldSegments(), [0, 1, 2])
      yield* env.queue.release(2)
      yield* env.queue.release(1)
      // A deadline on the gap: TestClock moves, the wait fails with the position reached.
      const waiting = yield* Effect.fork(wal.awaitArchived(lsn(segmentBytes), 1_000))
      yield* TestClock.adjust(1_000)
      const timedOut = yield* Fiber.join(waiting).pipe(Effect.either)
      assert.isTrue(
        Either.isLeft(timedOut) && timedOut.left._tag === "WalArchiveTimeout" && timedOut.left.archivedThrough === 0
      )
      // Both later uploads were recorded, and still nothing is archived: segment 0 is the gap.
      assert.strictEqual((yield* wal.stats).segmentsArchived, 2)
      assert.strictEqual(yield* wal.archivedThrough, 0)
      yield* env.queue.release(0)
      yield* archived(wal, 3 * segmentBytes)
      assert.strictEqual(yield* wal.archivedThrough, 3 * segmentBytes)
    }))

  it.effect("a failed upload holds archivedThrough at the gap until a retry succeeds; it is never skipped", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      yield* env.queue.setManual(true)
      const { wal } = yield* open(env)
      while ((yield* wal.position) < 3 * segmentBytes) yield* wal.append(record(2, 700))
      yield* wal.commit
      yield* env.queue.release(0)
      yield* env.queue.fail(1)
      yield* env.queue.release(2)
      yield* archived(wal, segmentBytes)
      yield* Effect.yieldNow()
      assert.strictEqual(yield* wal.archivedThrough, segmentBytes)
      assert.strictEqual((yield* wal.stats).uploadFailures, 1)
      assert.strictEqual((yield* wal.stats).segmentsArchived, 2)
      yield* wal.archivePending
      yield* Effect.yieldNow()
      assert.deepStrictEqual((yield* env.queue.held).map((h) => h.task), [(yield* env.queue.enqueued)[3]])
      yield* env.queue.release(1)
      yield* archived(wal, 3 * segmentBytes)
    }))

  it.effect("a local segment is removed only when it is archived and covered by a completed checkpoint", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      yield* env.queue.setManual(true)
      const { wal } = yield* open(env)
      while ((yield* wal.position) < 2 * segmentBytes + 100) yield* wal.append(record(3, 300))
      yield* wal.commit
      const localSegments = () => env.disk.list("wal")
      // Covered but not archived: kept.
      yield* wal.checkpointCovered(yield* wal.position)
      yield* Effect.yieldNow()
      assert.strictEqual((yield* localSegments()).length, 3)
      // Segment 0 archived: removed; segment 1 still uploading: kept; the current one: kept.
      yield* env.queue.release(0)
      yield* archived(wal, segmentBytes)
      yield* Effect.yieldNow()
      assert.deepStrictEqual(yield* localSegments(), [WalArchiver.localSegmentPath(1), WalArchiver.localSegmentPath(2)])
      // Segment 1 archived too (and already covered): removed; the current segment stays.
      yield* env.queue.release(1)
      yield* archived(wal, 2 * segmentBytes)
      yield* Effect.yieldNow()
      assert.deepStrictEqual(yield* localSegments(), [WalArchiver.localSegmentPath(2)])
      assert.strictEqual((yield* wal.stats).segmentsRemoved, 2)
    }))

  it.effect("during replay, position is the end of the last applied record: a checkpoint then removes no unreplayed segment", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const first = yield* open(env)
      while ((yield* first.wal.position) < 3 * segmentBytes + 100) yield* first.wal.append(record(5, 300))
      yield* first.wal.commit
      yield* archived(first.wal, 3 * segmentBytes)
      const end = yield* first.wal.position
      yield* first.kill
      const second = yield* open(env)
      assert.strictEqual(yield* second.wal.position, end, "no replay running: the log's end")
      // Replay stops inside segment 1, as a slow replay function would.
      const blockAt = segmentBytes + 2 * (Wal.headerBytes + 300)
      const reached = yield* Deferred.make<number>()
      const proceed = yield* Deferred.make<void>()
      const replaying = yield* Effect.fork(
        second.wal.replay(
          lsn(0),
          (at) => at < blockAt ? Effect.void : Effect.zipRight(Deferred.succeed(reached, at), Deferred.await(proceed))
        )
      )
      const blockedAt = yield* Deferred.await(reached)
      const position = yield* second.wal.position
      assert.isAtMost(position, blockedAt, "the record being applied is not covered")
      assert.isAtLeast(position, blockedAt - (Wal.headerBytes + 300) - segmentBytes)
      // A checkpoint taken now covers `position`: the segments replay has not finished stay.
      yield* second.wal.checkpointCovered(position)
      yield* Effect.yieldNow()
      const kept = [...(yield* env.disk.list("wal"))]
      assert.includeMembers(kept, [1, 2, 3].map(WalArchiver.localSegmentPath))
      yield* Deferred.succeed(proceed, undefined)
      yield* Fiber.join(replaying)
      assert.strictEqual(yield* second.wal.position, end, "replay over: the log's end again")
    }))

  it.effect("archived segments stay local until a checkpoint covers them", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { wal } = yield* open(env)
      while ((yield* wal.position) < 2 * segmentBytes) yield* wal.append(record(4, 300))
      yield* wal.commit
      yield* archived(wal, 2 * segmentBytes)
      // The last record opened segment 2: three files, two of them archived.
      assert.strictEqual((yield* env.disk.list("wal")).length, 3)
      yield* wal.checkpointCovered(lsn(segmentBytes))
      yield* Effect.yieldNow()
      assert.deepStrictEqual(yield* env.disk.list("wal"), [
        WalArchiver.localSegmentPath(1),
        WalArchiver.localSegmentPath(2)
      ])
    }))

  it.effect("archivePartial uploads the durable prefix of the current segment; the full upload replaces it", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { wal } = yield* open(env)
      for (let i = 0; i < 5; i++) yield* wal.append(record(i))
      const target = yield* wal.archivePartial
      assert.strictEqual(target, 5 * (Wal.headerBytes + 100))
      yield* archived(wal, target)
      const partialCopy = Option.getOrThrow(yield* env.bucket.read(bucketKey(0)))
      assert.strictEqual(partialCopy.length, target)
      const tasks = yield* env.queue.enqueued
      assert.isTrue(tasks.length === 1 && tasks[0]?._tag === "WriteWalSegment" && tasks[0].partial)
      while ((yield* wal.position) < segmentBytes) yield* wal.append(record(7))
      yield* wal.commit
      yield* archived(wal, segmentBytes)
      const fullCopy = Option.getOrThrow(yield* env.bucket.read(bucketKey(0)))
      assert.deepStrictEqual(fullCopy.slice(0, target), partialCopy)
      assert.strictEqual(Wal.scanSegment(fullCopy, 0, segmentBytes).stop, "Sealed")
    }))

  it.effect("restore: a new directory over the bucket replays every archived record, the last segment's included", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const first = yield* open(env)
      const written: Array<readonly [number, Uint8Array]> = []
      for (let i = 0, lastLsn = 0; lastLsn < 3 * segmentBytes; i++) {
        const bytes = record(i, 150 + (i % 7) * 40)
        lastLsn = yield* first.wal.append(bytes)
        written.push([lastLsn, bytes])
      }
      const target = yield* first.wal.archivePartial
      yield* archived(first.wal, target)
      yield* first.kill
      // The local directory is lost: a fresh disk, the same bucket.
      const fresh = yield* MemoryDisk.make
      const restored = yield* open(env, fresh.disk)
      assert.strictEqual(yield* restored.wal.position, target, "the log continues after the bucket's end")
      const check = (from: number) =>
        Effect.gen(function*() {
          const { seen, summary } = yield* collect(restored.wal.replayArchived, from)
          const expected = written.filter(([at]) => at >= from)
          assert.deepStrictEqual(seen.map(([at]) => at), expected.map(([at]) => at), `from ${from}`)
          assert.deepStrictEqual(seen.map(([, b]) => Array.from(b)), expected.map(([, b]) => Array.from(b)))
          assert.strictEqual(summary.endLsn, target)
        })
      const lastSegment = Wal.segmentOf(target, segmentBytes)
      const lastFirst = written.find(([at]) => at >= Wal.segmentStart(lastSegment, segmentBytes))
      assert.isDefined(lastFirst)
      yield* check(0)
      yield* check(segmentBytes) // a segment boundary
      yield* check(Wal.segmentStart(lastSegment, segmentBytes)) // the last segment's start
      yield* check(lastFirst?.[0] ?? 0) // exactly the first record of the last segment: included
      yield* check((lastFirst?.[0] ?? 0) + 1) // just after it: excluded
      const lastRecord = written[written.length - 1]
      yield* check(lastRecord?.[0] ?? 0) // only the very last record
      yield* check(target) // nothing after the end
      // Appending after the restore keeps the archived records of the partial last segment.
      yield* restored.wal.append(record(1000))
      while ((yield* restored.wal.position) < Wal.segmentEnd(lastSegment, segmentBytes)) {
        yield* restored.wal.append(record(1001))
      }
      yield* restored.wal.commit
      yield* archived(restored.wal, Wal.segmentEnd(lastSegment, segmentBytes))
      const again = yield* collect(restored.wal.replayArchived, 0)
      assert.deepStrictEqual(again.seen.slice(0, written.length).map(([at]) => at), written.map(([at]) => at))
    }))

  it.effect("replay merges local segments with the bucket's for those removed locally", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const first = yield* open(env)
      const lsns: Array<number> = []
      while ((yield* first.wal.position) < 2 * segmentBytes + 500) {
        lsns.push(yield* first.wal.append(record(lsns.length, 300)))
      }
      yield* first.wal.commit
      yield* archived(first.wal, 2 * segmentBytes)
      yield* first.wal.checkpointCovered(lsn(2 * segmentBytes))
      yield* Effect.yieldNow()
      assert.deepStrictEqual(yield* env.disk.list("wal"), [WalArchiver.localSegmentPath(2)])
      yield* first.kill
      const second = yield* open(env)
      // An older checkpoint (position 0): segments 0 and 1 come from the bucket, 2 from the disk
      // (where its unarchived records are).
      const { seen } = yield* collect(second.wal.replay, 0)
      assert.deepStrictEqual(seen.map(([at]) => at), lsns)
      const local = yield* collect(second.wal.replayLocal, 2 * segmentBytes)
      assert.deepStrictEqual(local.seen.map(([at]) => at), lsns.filter((at) => at >= 2 * segmentBytes))
    }))

  it.effect("a missing archived segment in the middle of the range is a WalGap, not a silent skip", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { wal } = yield* open(env)
      while ((yield* wal.position) < 3 * segmentBytes) yield* wal.append(record(5, 400))
      yield* wal.commit
      yield* archived(wal, 3 * segmentBytes)
      yield* env.bucket.remove(bucketKey(1))
      const result = yield* Effect.either(collect(wal.replayArchived, 0))
      assert.isTrue(Either.isLeft(result) && result.left._tag === "WalGap")
      // From after the gap it is fine.
      const after = yield* collect(wal.replayArchived, 2 * segmentBytes)
      assert.isAbove(after.seen.length, 0)
    }))

  it.effect("replay from a position past the log's end pads the log: later records go after it", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { wal } = yield* open(env)
      yield* wal.append(record(0))
      yield* wal.commit
      const floor = 2 * segmentBytes + 1000
      const { seen } = yield* collect(wal.replay, floor)
      assert.strictEqual(seen.length, 0)
      const next = yield* wal.append(record(1))
      assert.isAtLeast(next, floor)
      yield* wal.commit
      const all = yield* collect(wal.replayLocal, 0)
      assert.deepStrictEqual(all.seen.map(([at]) => at), [0, next])
    }))

  it.effect("shutdown archives the final partial segment, refuses appends and reports nothing local-only", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { wal } = yield* open(env)
      for (let i = 0; i < 50; i++) yield* wal.append(record(i))
      const report = yield* wal.shutdown(5_000)
      assert.strictEqual(report.endLsn, yield* wal.position)
      assert.strictEqual(report.archivedThrough, report.endLsn)
      assert.isUndefined(report.localOnly)
      const refused = yield* Effect.either(wal.append(record(0)))
      assert.isTrue(Either.isLeft(refused) && refused.left._tag === "ShuttingDown")
      assert.deepStrictEqual(yield* wal.shutdown(5_000), report, "a second shutdown gives the same report")
      const fresh = yield* MemoryDisk.make
      const restored = yield* open(env, fresh.disk)
      assert.strictEqual((yield* collect(restored.wal.replayArchived, 0)).seen.length, 50)
    }))

  it.effect("shutdown ends at its deadline when uploads hang, and says which positions are local only", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { wal, waits } = yield* open(env)
      yield* env.queue.setManual(true)
      while ((yield* wal.position) < segmentBytes + 300) yield* wal.append(record(6, 200))
      const closing = yield* Effect.fork(wal.shutdown(2_000))
      yield* TestClock.adjust(1_000)
      assert.isTrue((yield* waits.current).some((wait) => wait.waiter === "WalArchiver.shutdown"))
      assert.isTrue(Option.isNone(yield* Fiber.poll(closing)))
      yield* TestClock.adjust(1_000)
      const report = yield* Fiber.join(closing)
      assert.strictEqual(report.archivedThrough, 0)
      assert.strictEqual(report.durableLsn, report.endLsn)
      assert.deepStrictEqual(report.localOnly, { fromLsn: 0, toLsn: report.endLsn })
      assert.strictEqual((yield* waits.current).length, 0)
    }))

  it.effect("shutdown tells a waiter of awaitArchived at once that its position will not be archived", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { wal, waits } = yield* open(env)
      yield* env.queue.setManual(true)
      while ((yield* wal.position) < segmentBytes + 300) yield* wal.append(record(9, 200))
      const target = yield* wal.archivePartial
      const waiting = yield* Effect.fork(wal.awaitArchived(target, 60_000))
      const closing = yield* Effect.fork(wal.shutdown(1_000))
      yield* TestClock.adjust(1_000)
      const report = yield* Fiber.join(closing)
      assert.strictEqual(report.archivedThrough, 0)
      // No more time passes: the waiter has its answer as the shutdown returns, not at its deadline.
      const outcome = yield* Fiber.poll(waiting)
      assert.isTrue(Option.isSome(outcome), "the waiter is still waiting after the archiver shut down")
      const failure = Option.flatMap(
        outcome,
        (exit) => Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
      )
      assert.strictEqual(Option.getOrUndefined(failure)?._tag, "ShuttingDown")
      assert.strictEqual((yield* waits.current).length, 0)
      // A late wait is told at once too; a position already archived still succeeds.
      const late = yield* Effect.either(wal.awaitArchived(target, 60_000))
      assert.isTrue(Either.isLeft(late) && late.left._tag === "ShuttingDown")
      yield* wal.awaitArchived(lsn(0), 60_000)
      // Nothing more is uploaded once the archive is closed.
      const enqueued = (yield* env.queue.enqueued).length
      yield* wal.archivePending
      yield* Effect.yieldNow()
      assert.strictEqual((yield* env.queue.enqueued).length, enqueued)
    }))

  it.effect("shutdown tells a committer whose flush hangs that it will not be made durable", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const hang = yield* Ref.make(false)
      const disk: LocalDiskService = {
        ...env.disk,
        sync: (path) => Effect.flatMap(Ref.get(hang), (hung) => (hung ? Effect.never : env.disk.sync(path)))
      }
      const { wal, waits } = yield* open(env, disk)
      yield* wal.append(record(10))
      yield* Ref.set(hang, true)
      const committing = yield* Effect.fork(wal.commit)
      yield* Effect.yieldNow()
      const closing = yield* Effect.fork(wal.shutdown(1_000))
      yield* TestClock.adjust(1_000)
      const report = yield* Fiber.join(closing)
      assert.strictEqual(report.durableLsn, 0)
      const outcome = yield* Fiber.poll(committing)
      assert.isTrue(Option.isSome(outcome), "the committer is still waiting after the archiver shut down")
      const failure = Option.flatMap(
        outcome,
        (exit) => Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
      )
      assert.strictEqual(Option.getOrUndefined(failure)?._tag, "ShuttingDown")
      assert.strictEqual((yield* waits.current).length, 0)
    }))

  it.effect("closing the archiver's scope does not wait for a flush whose write the disk holds; the write lands later", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      // The next write of a WAL segment lands 1 s late (a write stuck in the device).
      const { disk, faults } = yield* FaultyDisk.make(env.disk)
      yield* faults.stallWrites(1, 1_000, { pathPrefix: "wal/0" })
      const { kill, wal } = yield* open(env, disk)
      yield* wal.append(record(10))
      const committing = yield* Effect.fork(wal.commit)
      for (let turn = 0; turn < 100 && (yield* faults.stats).stalledWrites === 0; turn++) yield* Effect.yieldNow()
      assert.strictEqual((yield* faults.stats).stalledWrites, 1, "the flush's write is held")
      const closing = yield* Effect.fork(kill)
      // The close needs no time: let every runnable fiber run, then look (the clock has not moved).
      for (let turn = 0; turn < 10; turn++) yield* Effect.yieldNow()
      assert.isTrue(Option.isSome(yield* Fiber.poll(closing)), "the scope closed while the flush's write was held")
      const told = yield* Fiber.join(committing).pipe(Effect.flip)
      assert.strictEqual(told._tag, "ShuttingDown")
      assert.isTrue(Option.isNone(yield* env.disk.size("wal/0000000000000000")), "the held write has not landed")
      yield* TestClock.adjust(1_000)
      yield* env.control.crash // the flush's fsync ran after its write: the record survives
      assert.isTrue(Option.isSome(yield* env.disk.readAll("wal/0000000000000000")), "the held write landed")
    }))

  it.effect("a closed task queue leaves the segment pending; shutdown reports it local-only", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { wal } = yield* open(env)
      yield* env.queue.close
      while ((yield* wal.position) < segmentBytes) yield* wal.append(record(8, 500))
      const closing = yield* Effect.fork(wal.shutdown(1_000))
      yield* TestClock.adjust(1_000)
      const report = yield* Fiber.join(closing)
      assert.deepStrictEqual(report.localOnly, { fromLsn: 0, toLsn: report.endLsn })
      assert.isAtLeast((yield* wal.stats).uploadFailures, 1)
    }))
})

describe("WalArchiver: epochs in archived keys, damage in the local log", () => {
  it.effect("a stale writer cannot overwrite the new epoch's segments, and a restore never replays its records", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      // A (epoch 1) writes into segment 1 and archives it partially.
      const a = yield* open(env, env.disk, { epoch: 1 })
      yield* a.wal.advanceTo(lsn(0)) // start-up over: nothing to replay
      for (let i = 0; i < 12; i++) yield* a.wal.append(record(i, 400))
      yield* archived(a.wal, yield* a.wal.archivePartial)
      // B (epoch 2) takes over on another disk: it continues from the bucket's end.
      const diskB = (yield* MemoryDisk.make).disk
      const b = yield* open(env, diskB, { epoch: 2 })
      assert.strictEqual(yield* b.wal.position, 0, "start-up replay has not run: nothing is applied yet")
      const fromA = yield* collect(b.wal.replay, 0)
      assert.strictEqual(fromA.seen.length, 12)
      const bStart = yield* b.wal.position
      assert.strictEqual(bStart, yield* a.wal.position)
      assert.isTrue(
        Option.isSome(yield* env.bucket.read(bucketKey(Wal.segmentOf(bStart, segmentBytes), 2))),
        "B recorded where its epoch starts"
      )
      for (let i = 0; i < 5; i++) yield* b.wal.append(record(100 + i, 400))
      yield* archived(b.wal, yield* b.wal.archivePartial)
      const bCopy = Option.getOrThrow(yield* env.bucket.read(bucketKey(1, 2)))
      // A, stale, goes on: fills segments 1 and 2 and archives them, under its own epoch.
      for (let i = 12; i < 40; i++) yield* a.wal.append(record(i, 400))
      yield* archived(a.wal, yield* a.wal.archivePartial)
      assert.deepStrictEqual(Option.getOrThrow(yield* env.bucket.read(bucketKey(1, 2))), bCopy, "B's copy is untouched")
      assert.isTrue(Option.isSome(yield* env.bucket.read(bucketKey(2, 1))))
      // A restore (epoch 3) reads B's history: A's first 12 records, then B's 5, nothing of A's later ones.
      const c = yield* open(env, (yield* MemoryDisk.make).disk, { epoch: 3 })
      const restored = yield* collect(c.wal.replay, 0)
      const expected = [
        ...Array.from({ length: 12 }, (_, i) => record(i, 400)),
        ...Array.from({ length: 5 }, (_, i) => record(100 + i, 400))
      ]
      assert.deepStrictEqual(restored.seen.map(([, bytes]) => bytes), expected)
      assert.strictEqual(
        yield* c.wal.position,
        yield* b.wal.position,
        "the restored log continues after B's last record"
      )
    }))

  it.effect("a take-over before its predecessor archived anything still records its history's start; a restart keeps its log over the predecessor's late archive", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      // A (epoch 1) writes two records, durable locally; nothing is archived yet.
      const a = yield* open(env, env.disk, { epoch: 1 })
      yield* a.wal.advanceTo(lsn(0))
      for (let i = 0; i < 2; i++) yield* a.wal.append(record(i, 400))
      yield* a.wal.commit
      // B (epoch 2) takes over into an empty directory: the bucket has no log, so B's begins at 0.
      const diskB = (yield* MemoryDisk.make).disk
      const b = yield* open(env, diskB, { epoch: 2 })
      yield* b.wal.advanceTo(lsn(0))
      assert.isTrue(
        Option.isSome(yield* env.bucket.read(bucketKey(0, 2))),
        "B recorded where its epoch starts, though the bucket held no log of its predecessor"
      )
      const acknowledged = Array.from({ length: 3 }, (_, i) => record(100 + i, 300))
      for (const bytes of acknowledged) yield* b.wal.append(bytes)
      yield* b.wal.commit
      // B dies before archiving; A, stale, writes on past B's end and archives its records there.
      yield* b.kill
      for (let i = 2; i < 6; i++) yield* a.wal.append(record(i, 400))
      yield* archived(a.wal, yield* a.wal.archivePartial)
      assert.isTrue(Option.isSome(yield* env.bucket.read(bucketKey(0, 1))))
      // B's restart (epoch 3) continues its own log, not A's fork of it.
      const again = yield* open(env, diskB, { epoch: 3 })
      const replayed = yield* collect(again.wal.replay, 0)
      assert.deepStrictEqual(replayed.seen.map(([, bytes]) => bytes), acknowledged)
      // And so does a restore into a new directory.
      const restore = yield* open(env, (yield* MemoryDisk.make).disk, { epoch: 4 })
      const restored = yield* collect(restore.wal.replay, 0)
      assert.deepStrictEqual(restored.seen.map(([, bytes]) => bytes), acknowledged)
    }))

  it.effect("segments archived under the older key form (no epoch) are still read back", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const first = yield* open(env)
      while ((yield* first.wal.position) < 2 * segmentBytes + 100) yield* first.wal.append(record(6, 300))
      yield* archived(first.wal, yield* first.wal.archivePartial)
      const before = yield* collect(first.wal.replayArchived, 0)
      // Rename every archived copy to the older form, as an older version of the tier wrote them.
      for (const key of yield* env.bucket.keys) {
        const parsed = KeyLayout.parseKey(KeyLayout.make("tier"), key)
        if (Option.isNone(parsed) || parsed.value._tag !== "Wal") continue
        yield* env.bucket.write(
          KeyLayout.walKey(KeyLayout.make("tier"), parsed.value.segment),
          Option.getOrThrow(yield* env.bucket.read(key))
        )
        yield* env.bucket.remove(key)
      }
      const restored = yield* open(env, (yield* MemoryDisk.make).disk, { epoch: 4 })
      const after = yield* collect(restored.wal.replayArchived, 0)
      assert.strictEqual(after.seen.length, before.seen.length)
      assert.deepStrictEqual(after.seen, before.seen)
    }))

  /** A log of three segments (two sealed and archived), killed; the byte at `offset` of segment 1 flipped. */
  const damagedLog = (env: Env, archive: "archived" | "not archived") =>
    Effect.gen(function*() {
      if (archive === "not archived") yield* env.queue.setManual(true)
      const first = yield* open(env)
      while ((yield* first.wal.position) < 2 * segmentBytes + 500) yield* first.wal.append(record(7, 300))
      yield* first.wal.commit
      if (archive === "archived") yield* archived(first.wal, 2 * segmentBytes)
      const before = yield* collect(first.wal.replayLocal, 0)
      yield* first.kill
      const path = WalArchiver.localSegmentPath(1)
      const bytes = Option.getOrThrow(yield* env.disk.readAll(path))
      const offset = 3 * (Wal.headerBytes + 300) + Wal.headerBytes + 20
      bytes[offset] = (bytes[offset] ?? 0) ^ 0x40
      yield* env.disk.writeAtomic(path, bytes)
      return { before, lsn: segmentBytes + 3 * (Wal.headerBytes + 300) }
    })

  it.effect("one flipped byte in the middle of the local log is refused at start-up, naming segment and position; nothing is cut or removed", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { lsn: damagedAt } = yield* damagedLog(env, "not archived")
      const files = yield* env.disk.list("wal")
      const sizes = yield* Effect.forEach(files, (file) => env.disk.size(file))
      const refused = yield* Effect.flip(open(env))
      assert.strictEqual(refused._tag, "WalCorrupt")
      if (refused._tag === "WalCorrupt") {
        assert.strictEqual(refused.segment, 1)
        assert.strictEqual(refused.lsn, damagedAt)
      }
      assert.deepStrictEqual(yield* env.disk.list("wal"), files, "every segment is still there")
      assert.deepStrictEqual(yield* Effect.forEach(files, (file) => env.disk.size(file)), sizes, "nothing is cut")
    }))

  it.effect("one flipped byte in the middle of the local log is repaired from the bucket's intact copy", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { before } = yield* damagedLog(env, "archived")
      const reopened = yield* open(env)
      const after = yield* collect(reopened.wal.replayLocal, 0)
      assert.deepStrictEqual(after.seen, before.seen, "every record, the ones after the damage included")
    }))

  /** A committed log ending in segment 1, stopped (its durable end noted for a clean stop's record),
   * after a power loss (unsynced bytes lost) or a process crash; then the byte at the middle of its
   * last record flipped. */
  const damagedLastRecord = (
    env: Env,
    archive: "archived" | "not archived",
    stop: "power loss" | "process crash" = "power loss"
  ) =>
    Effect.gen(function*() {
      if (archive === "not archived") yield* env.queue.setManual(true)
      const first = yield* open(env)
      const lsns: Array<number> = []
      while ((yield* first.wal.position) < segmentBytes + 700) {
        lsns.push(yield* first.wal.append(record(lsns.length, 300)))
      }
      yield* first.wal.commit
      if (archive === "archived") yield* archived(first.wal, yield* first.wal.archivePartial)
      const durableLsn = yield* first.wal.durableLsn
      const before = yield* collect(first.wal.replayLocal, 0)
      yield* first.kill
      if (stop === "power loss") yield* env.control.crash
      const lastLsn = lsns[lsns.length - 1] ?? 0
      const path = WalArchiver.localSegmentPath(Wal.segmentOf(lastLsn, segmentBytes))
      const bytes = Option.getOrThrow(yield* env.disk.readAll(path))
      const offset = lastLsn - Wal.segmentStart(Wal.segmentOf(lastLsn, segmentBytes), segmentBytes) + Wal.headerBytes +
        150
      bytes[offset] = (bytes[offset] ?? 0) ^ 0x40
      yield* env.disk.writeAtomic(path, bytes)
      return { before, durableLsn, lastLsn, path, sizeBytes: bytes.length }
    })

  it.effect("a flipped byte in the last record after a clean stop is refused, not cut as a torn tail, when the bucket has no copy", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const damaged = yield* damagedLastRecord(env, "not archived")
      const opened = yield* Effect.either(
        Effect.flatMap(
          open(env, env.disk, { epoch: 2, durableLsn: damaged.durableLsn }),
          (o) => Effect.as(o.kill, "opened")
        )
      )
      assert.isTrue(Either.isLeft(opened), `the open must refuse; it ${Either.isRight(opened) ? "opened" : "failed"}`)
      const refused = Either.flip(opened).pipe(Either.getOrThrow)
      assert.strictEqual(refused._tag, "WalCorrupt")
      if (refused._tag === "WalCorrupt") {
        assert.strictEqual(refused.segment, Wal.segmentOf(damaged.lastLsn, segmentBytes))
        assert.strictEqual(refused.lsn, damaged.lastLsn)
      }
      assert.deepStrictEqual(yield* env.disk.size(damaged.path), Option.some(damaged.sizeBytes), "nothing is cut")
    }))

  it.effect("a flipped byte in the last record after a clean stop is repaired from the bucket's copy of the final partial segment", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const damaged = yield* damagedLastRecord(env, "archived")
      const reopened = yield* open(env, env.disk, { epoch: 2, durableLsn: damaged.durableLsn })
      assert.strictEqual((yield* reopened.wal.stats).endLsn, damaged.durableLsn)
      const after = yield* collect(reopened.wal.replayLocal, 0)
      assert.deepStrictEqual(after.seen, damaged.before.seen, "every acknowledged record, the last one included")
    }))

  it.effect("a log advanced inside a segment (a restore continuing after a checkpoint) reopens at the advanced end", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      // Nothing archived, a checkpoint at 536: the log's end moves there by padding inside segment 0.
      const first = yield* open(env, env.disk, { epoch: 2, replayFromLsn: 536 })
      yield* first.wal.advanceTo(lsn(536))
      assert.strictEqual(yield* first.wal.position, 536)
      yield* first.kill // the flush mark (536) stays, as after a process crash
      const second = yield* open(env, env.disk, { epoch: 2, replayFromLsn: 536 })
      yield* collect(second.wal.replay, 536)
      yield* second.wal.advanceTo(lsn(536))
      const appended = yield* second.wal.append(record(1))
      yield* second.wal.commit
      assert.strictEqual(appended, 536, "the next record goes where the log ends")
      yield* second.kill
      const third = yield* open(env, env.disk, { epoch: 2, replayFromLsn: 536 })
      const replayed = yield* collect(third.wal.replay, 536)
      assert.deepStrictEqual(replayed.seen, [[536, record(1)]])
      yield* third.kill
    }))

  it.effect("after a process crash the durable-end mark it left makes the same damage refused, not cut", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const damaged = yield* damagedLastRecord(env, "not archived", "process crash")
      const opened = yield* Effect.either(
        Effect.flatMap(open(env, env.disk, { epoch: 2 }), (o) => Effect.as(o.kill, "opened"))
      )
      assert.isTrue(Either.isLeft(opened), "the open must refuse")
      const refused = Either.flip(opened).pipe(Either.getOrThrow)
      assert.strictEqual(refused._tag, "WalCorrupt")
      if (refused._tag === "WalCorrupt") assert.strictEqual(refused.lsn, damaged.lastLsn)
    }))

  it.effect("after a power loss (no durable end recorded, the unsynced mark lost) the same damage is a torn tail and is cut", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const damaged = yield* damagedLastRecord(env, "not archived")
      assert.isTrue(Option.isNone(yield* env.disk.readAll(WalArchiver.durableMarkPath)), "the mark was never synced")
      const reopened = yield* open(env, env.disk, { epoch: 2 })
      assert.strictEqual((yield* reopened.wal.stats).endLsn, damaged.lastLsn)
      const after = yield* collect(reopened.wal.replayLocal, 0)
      assert.deepStrictEqual(after.seen, damaged.before.seen.slice(0, -1))
    }))
})

describe("WalArchiver: owners, take-overs, crashes and stale writers on one bucket (property)", () => {
  type Op =
    | { readonly _tag: "OwnerAppends"; readonly count: number }
    | { readonly _tag: "OwnerArchives" }
    | { readonly _tag: "TakeOver" }
    | { readonly _tag: "OwnerCrashes" }
    | { readonly _tag: "StaleAppends"; readonly count: number }
    | { readonly _tag: "StaleArchives" }
  const opArbitrary: FastCheck.Arbitrary<Op> = FastCheck.oneof(
    {
      weight: 4,
      arbitrary: FastCheck.record({
        _tag: FastCheck.constant("OwnerAppends" as const),
        count: FastCheck.integer({ min: 1, max: 8 })
      })
    },
    { weight: 2, arbitrary: FastCheck.record({ _tag: FastCheck.constant("OwnerArchives" as const) }) },
    { weight: 2, arbitrary: FastCheck.record({ _tag: FastCheck.constant("TakeOver" as const) }) },
    { weight: 2, arbitrary: FastCheck.record({ _tag: FastCheck.constant("OwnerCrashes" as const) }) },
    {
      weight: 3,
      arbitrary: FastCheck.record({
        _tag: FastCheck.constant("StaleAppends" as const),
        count: FastCheck.integer({ min: 1, max: 12 })
      })
    },
    { weight: 2, arbitrary: FastCheck.record({ _tag: FastCheck.constant("StaleArchives" as const) }) }
  )
  interface Writer {
    readonly wal: WalArchiver.WalArchiverService
    readonly kill: Effect.Effect<void>
    readonly disk: LocalDiskService
    /** The records this writer's log holds, as it acknowledged them (committed), in order. */
    readonly committed: Array<Uint8Array>
  }
  const payloads = (seen: ReadonlyArray<readonly [number, Uint8Array]>) => seen.map(([, bytes]) => bytes)

  /**
   * One owner at a time, each take-over into an empty directory at the next epoch; the writers it
   * replaced keep appending and archiving, stale. An owner's crash (its scope closed, nothing
   * flushed) and restart at the next epoch must find exactly the records it acknowledged; a take-over
   * must find a prefix of its predecessor's; a restore at the end, the last owner's whole log.
   */
  const runOps = (ops: ReadonlyArray<Op>) =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      let epoch = 1
      let next = 0
      const first = yield* open(env, env.disk, { epoch })
      yield* first.wal.advanceTo(lsn(0))
      let owner: Writer = { ...first, disk: env.disk, committed: [] }
      const stale: Array<Writer> = []
      const appendTo = (writer: Writer, count: number) =>
        Effect.gen(function*() {
          for (let i = 0; i < count; i++) {
            const bytes = record(next++, 300)
            yield* writer.wal.append(bytes)
            writer.committed.push(bytes)
          }
          yield* writer.wal.commit
        })
      for (const op of ops) {
        switch (op._tag) {
          case "OwnerAppends":
            yield* appendTo(owner, op.count)
            break
          case "OwnerArchives":
            yield* archived(owner.wal, yield* owner.wal.archivePartial)
            break
          case "StaleAppends":
            if (stale.length > 0) yield* appendTo(stale[stale.length - 1] as Writer, op.count)
            break
          case "StaleArchives":
            for (const writer of stale) yield* archived(writer.wal, yield* writer.wal.archivePartial)
            break
          case "TakeOver": {
            const disk = (yield* MemoryDisk.make).disk
            const taker = yield* open(env, disk, { epoch: ++epoch })
            const { seen } = yield* collect(taker.wal.replay, 0)
            const history = payloads(seen)
            assert.deepStrictEqual(history, owner.committed.slice(0, history.length), "a take-over adopts a prefix")
            stale.push(owner)
            owner = { ...taker, disk, committed: history }
            break
          }
          case "OwnerCrashes": {
            yield* owner.kill
            const again = yield* open(env, owner.disk, { epoch: ++epoch })
            const { seen } = yield* collect(again.wal.replay, 0)
            assert.deepStrictEqual(payloads(seen), owner.committed, "a restart holds what its log acknowledged")
            owner = { ...again, disk: owner.disk, committed: owner.committed }
            break
          }
        }
      }
      yield* archived(owner.wal, yield* owner.wal.archivePartial)
      for (const writer of stale) yield* archived(writer.wal, yield* writer.wal.archivePartial)
      const restore = yield* open(env, (yield* MemoryDisk.make).disk, { epoch: ++epoch })
      const { seen } = yield* collect(restore.wal.replay, 0)
      assert.deepStrictEqual(payloads(seen), owner.committed, "a restore reads the last owner's log")
    })

  it.effect.prop(
    "every owner's restart holds what it acknowledged, whatever its predecessors archive after it took over",
    [FastCheck.array(opArbitrary, { minLength: 1, maxLength: 24 })],
    ([ops]) => runOps(ops),
    { fastCheck: { numRuns: 150 } }
  )
})

describe("WalArchiver over the real task queue and workers", () => {
  it.scoped("archives every segment and the final partial one through S3Workers; shutdown leaves nothing local-only", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const base = Layer.mergeAll(
        Layer.succeed(StorageConfig.StorageConfig, config),
        Layer.succeed(LocalDisk, env.disk),
        Layer.succeed(ObjectStore, env.store)
      )
      const queueLayer = TaskQueueModule.layer.pipe(Layer.provideMerge(WaitRegistry.layer), Layer.provideMerge(base))
      const stack = WalArchiver.layer.pipe(Layer.provideMerge(S3Workers.layer.pipe(Layer.provideMerge(queueLayer))))
      const context = yield* Layer.build(stack)
      const wal = Context.get(context, WalArchiver.WalArchiver)
      const lsns: Array<number> = []
      while ((yield* wal.position) < 3 * segmentBytes + 200) lsns.push(yield* wal.append(record(lsns.length, 250)))
      const report = yield* wal.shutdown(5_000)
      assert.isUndefined(report.localOnly)
      assert.strictEqual(report.archivedThrough, report.endLsn)
      const fresh = yield* MemoryDisk.make
      const restored = yield* open(env, fresh.disk)
      const { seen } = yield* collect(restored.wal.replayArchived, 0)
      assert.deepStrictEqual(seen.map(([at]) => at), lsns)
      yield* Context.get(context, S3Workers.S3Workers).shutdown
    }))
})

describe("WalArchiver on a real directory", () => {
  const platform = Layer.merge(NodeFileSystem.layer, NodePath.layer)

  it.scopedLive("committed records survive the process going away and the directory being reopened", () =>
    Effect.gen(function*() {
      const root = yield* Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeTempDirectoryScoped({ prefix: "wal-" }))
        .pipe(Effect.provide(platform))
      const env = yield* makeEnv
      const disk = yield* FileSystemDisk.make({ root }).pipe(Effect.provide(platform))
      const first = yield* open(env, disk)
      const lsns = yield* Effect.forEach(
        Array.from({ length: 120 }, (_, i) => i),
        (i) =>
          Effect.flatMap(
            first.wal.appendWithEnd(record(i, 90)),
            (appended) => Effect.as(first.wal.commitThrough(appended.endLsn), appended.lsn)
          ),
        { concurrency: 16 }
      )
      assert.isBelow((yield* first.wal.stats).fsyncs, 120)
      const end = yield* first.wal.position
      yield* first.kill
      // Junk after the end, as a torn write would leave.
      const lastPath = NodePathApi.join(
        root,
        "wal",
        WalArchiver.localSegmentPath(Wal.segmentOf(end, segmentBytes)).slice(4)
      )
      NodeFs.appendFileSync(lastPath, Uint8Array.from([1, 1, 0, 0, 200, 0, 0, 0, 1, 2, 3]))
      const reopenedDisk = yield* FileSystemDisk.make({ root }).pipe(Effect.provide(platform))
      const second = yield* open(env, reopenedDisk)
      assert.strictEqual(yield* second.wal.position, end)
      const { seen } = yield* collect(second.wal.replayLocal, 0)
      assert.deepStrictEqual(seen.map(([at]) => at).sort((a, b) => a - b), [...lsns].sort((a, b) => a - b))
      yield* second.kill
    }))
  it.effect("the group commit writes a time mark at most once per interval, after the records it flushes; replay never sees one", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const { wal, kill } = yield* open(env)
      const at: Array<number> = []
      const appendCommit = (index: number) =>
        Effect.zipLeft(Effect.tap(wal.append(record(index)), (lsn) => Effect.sync(() => void at.push(lsn))), wal.commit)
      yield* appendCommit(0) // t = 0: the interval since the open has not passed
      yield* TestClock.adjust(1_000)
      yield* appendCommit(1) // t = 1000: a mark after record 1
      yield* appendCommit(2) // within the interval of that mark: none
      yield* TestClock.adjust(500)
      yield* appendCommit(3)
      yield* TestClock.adjust(500)
      yield* appendCommit(4) // t = 2000: a mark after record 4
      yield* TestClock.adjust(5_000)
      yield* wal.commit // nothing appended since: no mark
      const bytes = Option.getOrThrow(yield* env.disk.readAll(WalArchiver.localSegmentPath(0)))
      const scan = Wal.scanSegment(bytes, 0, segmentBytes)
      const endOf = (index: number) => (at[index] ?? 0) + Wal.headerBytes + 100
      assert.deepStrictEqual(scan.marks, [{ lsn: endOf(1), timeMs: 1_000 }, { lsn: endOf(4), timeMs: 2_000 }])
      assert.deepStrictEqual(scan.records.map((found) => found.lsn), at)
      const { seen } = yield* collect(wal.replayLocal, 0)
      assert.deepStrictEqual(seen.map(([lsn]) => lsn), at)
      yield* kill
    }))
})

// ---------------------------------------------------------------------------------------------
// Observability: spans and log levels
// ---------------------------------------------------------------------------------------------

const collectingTracer = makeCollectingTracer

const attributesOf = (span: Tracer.Span) => Object.fromEntries(span.attributes)

/** Runs `effect` with its log lines (and those of every fiber it starts) collected instead of printed. */
const capturingLogs = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const lines: Array<{ readonly level: LogLevel.LogLevel; readonly message: string }> = []
    const capture = Logger.make(({ logLevel, message }) =>
      void lines.push({ level: logLevel, message: String(message) })
    )
    const result = yield* effect.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
    return { result, lines }
  })

describe("WalArchiver: observability", () => {
  it.effect("spans: wal.recover at the open, wal.archive per upload, wal.replay around every apply, wal.shutdown", () =>
    Effect.gen(function*() {
      const { spans, tracer } = yield* collectingTracer
      const seen = yield* Effect.gen(function*() {
        const env = yield* makeEnv
        const { kill, wal } = yield* open(env)
        for (let i = 0; i < 50; i++) yield* wal.append(record(i)) // 50 frames of 112 bytes: segment 0 is sealed
        yield* wal.commit
        yield* archived(wal, segmentBytes)
        const partial = yield* wal.archivePartial
        yield* archived(wal, partial)
        const inReplay: Array<string> = []
        const summary = yield* wal.replay(
          lsn(0),
          () =>
            Effect.map(Effect.option(Effect.currentSpan), (span) =>
              void inReplay.push(Option.match(span, {
                onNone: () => "(none)",
                onSome: (found) => found.name
              })))
        )
        yield* wal.shutdown(1_000)
        yield* kill
        return { partial, summary, inReplay }
      }).pipe(Effect.withTracer(tracer))
      const named = (name: string) => spans.filter((span) => span.name === name)
      assert.strictEqual(named("wal.recover").length, 1)
      assert.deepInclude(attributesOf(named("wal.recover")[0]!), { endLsn: 0, archivedThrough: 0 })
      const archives = named("wal.archive").map(attributesOf)
      assert.isTrue(
        archives.some((found) =>
          found.segment === 0 && found.partial === false && typeof found.bytes === "number" && found.bytes > 0
        ),
        JSON.stringify(archives)
      )
      assert.deepInclude(archives, { segment: 1, partial: true, bytes: seen.partial - segmentBytes })
      assert.strictEqual(named("wal.replay").length, 1)
      assert.deepInclude(attributesOf(named("wal.replay")[0]!), { fromLsn: 0, toLsn: seen.summary.endLsn, records: 50 })
      assert.deepStrictEqual(
        seen.inReplay,
        Array.from({ length: 50 }, () => "wal.replay"),
        "every apply runs inside the replay's span"
      )
      assert.strictEqual(named("wal.shutdown").length, 1)
      assert.deepInclude(attributesOf(named("wal.shutdown")[0]!), { deadlineMs: 1_000 })
      for (const span of spans.filter((span) => span.name.startsWith("wal."))) {
        assert.strictEqual(span.status._tag, "Ended", span.name)
      }
    }))

  it.effect("an empty local log continuing from the bucket is logged at INFO; a local log that fell behind it, at WARN", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv
      const first = yield* open(env)
      const ends: Array<number> = []
      for (let i = 0; i < 20; i++) ends.push((yield* first.wal.appendWithEnd(record(i))).endLsn)
      yield* archived(first.wal, yield* first.wal.archivePartial)
      yield* first.kill
      const adoption = (line: { readonly message: string }) => line.message.includes("continuing from the bucket's end")
      // A new machine: nothing local.
      const { disk: emptyDisk } = yield* MemoryDisk.make
      const onEmpty = yield* capturingLogs(Effect.flatMap(open(env, emptyDisk), ({ kill }) => kill))
      assert.deepStrictEqual(onEmpty.lines.filter(adoption).map((line) => line.level.label), ["INFO"])
      // A directory that lost the end of its log (its durable-end mark gone with it): the bucket is ahead.
      const bytes = Option.getOrThrow(yield* env.disk.readAll(WalArchiver.localSegmentPath(0)))
      yield* env.disk.writeAtomic(WalArchiver.localSegmentPath(0), bytes.slice(0, ends[9]))
      yield* env.disk.remove(WalArchiver.durableMarkPath)
      const onBehind = yield* capturingLogs(
        Effect.flatMap(open(env), ({ kill, wal }) => Effect.zipLeft(wal.position, kill))
      )
      assert.deepStrictEqual(onBehind.lines.filter(adoption).map((line) => line.level.label), ["WARN"])
      assert.strictEqual(onBehind.result, ends[19], "the log continues from the bucket's end")
    }))
})
