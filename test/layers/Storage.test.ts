/**
 * Goal: the composed Storage layer keeps its promises (checkpoint and restore, a shutdown bounded
 * whatever S3 does, start-up checks, lock and fencing, what an application sees: Storage alone, the
 * replay contract, spans and the close's log line), scenario by scenario, as analogues of OrioleDB's
 * own S3 suite (test/t/s3_test.py) and of its two shutdown hangs (#340, #373). Method: the in-memory
 * bucket behind the fault decorator and the in-memory disk, with sub-second deadlines; real time
 * (`it.live`) where a deadline is raced by stalled requests, each wall-clock bound with its margin
 * stated, and the TestClock where the claim is that nothing waits on a timer.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  Layer,
  Logger,
  LogLevel,
  Option
} from "effect"
import * as Control from "../../src/domain/Control.js"
import { type LocalIoError, RecordNotApplied, ReplayFailed } from "../../src/domain/Errors.js"
import * as Ids from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as FaultyObjectStore from "../../src/layers/FaultyObjectStore.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as Storage from "../../src/layers/Storage.js"
import * as Evictor from "../../src/services/Evictor.js"
import * as Loader from "../../src/services/Loader.js"
import type { LocalDiskService } from "../../src/services/LocalDisk.js"
import * as PartTable from "../../src/services/PartTable.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as WaitRegistry from "../../src/services/WaitRegistry.js"
import * as SpanCollector from "../support/SpanCollector.js"
import * as H from "../support/StorageHarness.js"

const fileA = Ids.fileId("db/a")
const fileB = Ids.fileId("db/b")
const partSize = H.testConfig.partSizeBytes ?? 4096
const deadlineMs = H.testConfig.shutdownDeadlineMs ?? 1500
const layout = KeyLayout.make("")

const keysUnder = (bucket: H.Bucket, prefix: string) =>
  Effect.map(bucket.inspect.keys, (keys) => keys.filter((key) => key.startsWith(prefix)))

const elapsed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const value = yield* effect
    return [value, (yield* Clock.currentTimeMillis) - start] as const
  })

/**
 * `disk` whose next change (an atomic write or a remove) that `matches`, once `holdNext` armed it,
 * waits for `release`, and its caller with it (a call the device accepted lands, interrupted or
 * not); `reached` completes when that call arrives. `assertMarkedAsSaid`, once it has landed,
 * checks that the control file is marked clean if the shutdown (its warnings captured by
 * `capturingWarnings`) said the stop was: a clean mark undone by a late write would let the next
 * start take the local part files for a clean stop's. (A mark the disk held past the shutdown may
 * land after it warned; that is safe.)
 */
const holdingDiskCalls = (
  disk: LocalDiskService,
  matches: (operation: "writeAtomic" | "remove", path: string) => boolean
) =>
  Effect.gen(function*() {
    const held = yield* Deferred.make<void>()
    const reached = yield* Deferred.make<void>()
    const landed = yield* Deferred.make<void>()
    const warnings: Array<string> = []
    let holding = false
    const hold = (operation: "writeAtomic" | "remove", path: string, call: Effect.Effect<void, LocalIoError>) => {
      if (!holding || !matches(operation, path)) return call
      holding = false
      return Effect.uninterruptible(
        Deferred.succeed(reached, undefined).pipe(
          Effect.zipRight(Deferred.await(held)),
          Effect.zipRight(call),
          Effect.ensuring(Deferred.succeed(landed, undefined))
        )
      )
    }
    const heldDisk: LocalDiskService = {
      ...disk,
      writeAtomic: (path, bytes) => hold("writeAtomic", path, disk.writeAtomic(path, bytes)),
      remove: (path) => hold("remove", path, disk.remove(path))
    }
    const capturing = Logger.make(({ logLevel, message }) => {
      if (logLevel === LogLevel.Warning) warnings.push(String(message))
    })
    const assertMarkedAsSaid = Effect.gen(function*() {
      yield* Deferred.await(landed)
      const written = Control.decodeControl("control", Option.getOrThrow(yield* disk.readAll(Loader.controlPath)))
      const saidUnclean = warnings.some((warning) => warning.includes("treats this stop as a crash"))
      if (!saidUnclean) assert.isTrue(Either.getOrThrow(written).cleanShutdown, "the shutdown said the stop was clean")
    })
    return {
      disk: heldDisk,
      reached,
      landed,
      holdNext: () => {
        holding = true
      },
      release: Deferred.succeed(held, undefined),
      capturingWarnings: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.provide(effect, Logger.replace(Logger.defaultLogger, capturing)),
      assertMarkedAsSaid
    }
  })

/** `holdingDiskCalls` for the control file's atomic writes. */
const holdingControlWrites = (disk: LocalDiskService) =>
  holdingDiskCalls(disk, (operation, path) => operation === "writeAtomic" && path === Loader.controlPath)

describe("Storage: checkpoints and restore", () => {
  it.live("checkpoint, then restore into a fresh directory: every byte reads back identical (test_s3_checkpoint)", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const bytes = H.pattern(1, 3 * partSize + 100)
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function*() {
          yield* storage.write(fileA, 1000, bytes)
          yield* storage.write(fileB, 0, H.pattern(2, 10))
          const report = yield* storage.checkpoint
          assert.strictEqual(report.outcome, "completed")
          assert.strictEqual(report.checkpoint, 1)
          assert.strictEqual(report.partsUploaded, 5)
        }))
      const [plan, readA, readB] = yield* H.withStorage(
        bucket,
        yield* H.makeDisk,
        (storage) =>
          Effect.all([
            Effect.succeed(storage.opened.plan),
            storage.read(fileA, 1000, bytes.length),
            storage.read(fileB, 0, 10)
          ])
      )
      assert.strictEqual(plan, "Restore")
      assert.deepStrictEqual(readA, bytes)
      assert.deepStrictEqual(readB, H.pattern(2, 10))
    }))

  it.live("a second checkpoint uploads only the parts that changed (test_s3_checkpoint_unchanged)", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function*() {
          yield* storage.write(fileA, 0, H.pattern(1, 4 * partSize))
          yield* storage.write(fileB, 0, H.pattern(2, 2 * partSize))
          const first = yield* storage.checkpoint
          assert.strictEqual(first.partsUploaded, 6)
          assert.strictEqual(first.filesWritten, 2)
          const partsBefore = (yield* keysUnder(bucket, "data/")).length
          yield* storage.write(fileA, 2 * partSize + 10, H.pattern(3, 20))
          const second = yield* storage.checkpoint
          assert.strictEqual(second.checkpoint, 2)
          assert.strictEqual(second.partsUploaded, 1)
          assert.strictEqual(second.filesWritten, 1, "only fileA's manifest is rewritten")
          assert.strictEqual((yield* keysUnder(bucket, "data/")).length, partsBefore + 1)
          const third = yield* storage.checkpoint
          assert.strictEqual(third.outcome, "nothing-to-do")
        }))
    }))

  it.live("restore = checkpoint + archived WAL replay: every committed record, including the last segment's", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const encoder = new TextEncoder()
      const records = 300 // ~10 KiB of records per 100: several 16 KiB segments
      const insert = (storage: Storage.StorageService, index: number) =>
        Effect.gen(function*() {
          yield* storage.write(fileA, index * 8, H.pattern(index + 10, 8))
          yield* storage.append(encoder.encode(`${index}`.padStart(100, " ")))
        })
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function*() {
          for (let index = 0; index < 100; index++) yield* insert(storage, index)
          yield* storage.commit
          yield* storage.checkpoint
          for (let index = 100; index < records; index++) yield* insert(storage, index)
          yield* storage.commit
          // The shutdown checkpoint cannot commit: the records after checkpoint 1 survive only in the WAL.
          yield* bucket.faults.failPermanently({ operations: ["put"], keyPrefix: "checkpoints/" })
          const report = yield* storage.shutdown
          assert.strictEqual(report.finalCheckpoint.outcome, "failed")
          assert.isUndefined(report.wal.localOnly, "every record reached the archive")
        }))
      yield* bucket.faults.heal
      const replayed: Array<number> = []
      const decoder = new TextDecoder()
      yield* H.withStorage(
        bucket,
        yield* H.makeDisk,
        (storage) =>
          Effect.gen(function*() {
            for (let index = 0; index < records; index++) {
              assert.deepStrictEqual(
                yield* storage.read(fileA, index * 8, 8),
                H.pattern(index + 10, 8),
                `record ${index}`
              )
            }
          }),
        {},
        {
          replay: (record, storage) => {
            const index = Number(decoder.decode(record.bytes).trim())
            replayed.push(index)
            return storage.write(fileA, index * 8, H.pattern(index + 10, 8))
          }
        }
      )
      assert.isAtLeast(replayed.length, records - 100)
      assert.strictEqual(
        replayed[replayed.length - 1],
        records - 1,
        "the last record (in the last, partial segment) is replayed"
      )
    }))
})

describe("Storage: shutdown is bounded whatever S3 does", () => {
  it.effect("shutdown of an idle store waits on no timer: on the TestClock it takes 0 ms", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const report = yield* H.withStorage(bucket, yield* H.makeDisk, (storage) => storage.shutdown)
      assert.strictEqual(report.durationMs, 0, "no step waited for a deadline or a sleep")
      assert.strictEqual(report.finalCheckpoint.outcome, "completed") // the first checkpoint of a fresh bucket
      assert.strictEqual(report.leasesHeld, 0)
      assert.strictEqual(report.fibersAlive, 0)
      assert.strictEqual(report.lock, "released")
      assert.deepStrictEqual(yield* keysUnder(bucket, "lock"), [])
    }))

  it.live("shutdown with S3 stalled meets its deadline, keeps the dirty data, and the next start checkpoints it", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const disk = yield* H.makeDisk
      const bytes = H.pattern(7, 2 * partSize)
      const [report, tookMs] = yield* H.withStorage(bucket, disk, (storage) =>
        Effect.gen(function*() {
          yield* storage.write(fileA, 0, bytes)
          yield* bucket.faults.stall()
          return yield* elapsed(storage.shutdown)
        }))
      // The report's own clock says whether the deadline was met; measured from outside, the close
      // may end later by a starved timer's lateness (tens of ms on 2 busy cores): a second of margin.
      assert.isBelow(tookMs, deadlineMs + 1000)
      assert.isTrue(report.metDeadline)
      assert.strictEqual(report.finalCheckpoint.outcome, "timed-out")
      assert.isAbove(report.dirtyPartsLeft, 0)
      assert.strictEqual(report.leasesHeld, 0)
      assert.strictEqual(report.fibersAlive, 0)
      assert.notStrictEqual(report.lock, "released")
      yield* bucket.faults.heal
      const next = yield* H.withStorage(bucket, disk, (storage) =>
        Effect.gen(function*() {
          assert.strictEqual(storage.opened.plan, "Reopen")
          return yield* storage.checkpoint
        }))
      assert.strictEqual(next.outcome, "completed")
      assert.isAtLeast(next.partsUploaded, 2)
      const restored = yield* H.withStorage(
        bucket,
        yield* H.makeDisk,
        (storage) => storage.read(fileA, 0, bytes.length)
      )
      assert.deepStrictEqual(restored, bytes)
    }))

  it.live("shutdown while every part upload fails (the #373 shape) completes, with the failure in the report", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const report = yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function*() {
          yield* storage.write(fileA, 0, H.pattern(5, 3 * partSize))
          yield* bucket.faults.failPermanently({ operations: ["put"], keyPrefix: "data/" })
          return yield* storage.shutdown
        }))
      assert.isTrue(report.metDeadline)
      assert.strictEqual(report.finalCheckpoint.outcome, "failed")
      if (report.finalCheckpoint.outcome === "failed") assert.include(report.finalCheckpoint.detail, "rejected")
      assert.strictEqual(report.fibersAlive, 0)
      assert.strictEqual(report.leasesHeld, 0)
    }))

  it.live("shutdown while a lease waits on a load (the #340 shape) completes, and the waiter learns why", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* H.withStorage(
        bucket,
        yield* H.makeDisk,
        (storage) => Effect.asVoid(Effect.zipRight(storage.write(fileA, 0, H.pattern(9, 100)), storage.checkpoint))
      )
      const report = yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function*() {
          yield* bucket.faults.stall({ operations: ["get"], keyPrefix: "data/" })
          const reader = yield* Effect.fork(storage.read(fileA, 0, 100))
          yield* bucket.faults.awaitStats((stats) => stats.stalledNow >= 1)
          const shutdownReport = yield* storage.shutdown
          const readExit = yield* Fiber.await(reader)
          assert.isTrue(Exit.isFailure(readExit), "the waiting read fails instead of hanging")
          return shutdownReport
        }))
      assert.isTrue(report.metDeadline)
      assert.strictEqual(report.leasesHeld, 0)
      assert.strictEqual(report.fibersAlive, 0)
    }))

  it.live("shutdown cuts a checkpoint on demand in flight: it fails with ShuttingDown, and the shutdown's own checkpoint runs and commits", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const report = yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function*() {
          yield* storage.write(fileA, 0, H.pattern(22, 100))
          const stall = yield* bucket.faults.stall({ operations: ["put"], keyPrefix: "checkpoints/" })
          const onDemand = yield* Effect.fork(storage.checkpoint)
          yield* bucket.faults.awaitStats((stats) => stats.stalledNow >= 1) // its commit hangs
          const shutdown = yield* Effect.fork(storage.shutdown)
          // Cut at once, not at its own deadline (2 s here); only then does the bucket answer again.
          const exit = yield* Fiber.await(onDemand)
          assert.isTrue(
            Exit.isFailure(exit) && Option.exists(Cause.failureOption(exit.cause), (e) => e._tag === "ShuttingDown"),
            `the checkpoint on demand fails with ShuttingDown: ${String(exit)}`
          )
          yield* bucket.faults.remove(stall)
          return yield* Fiber.join(shutdown)
        }), { checkpointDeadlineMs: 2_000, shutdownCheckpointDeadlineMs: 800 })
      assert.deepStrictEqual(report.finalCheckpoint, { outcome: "completed", checkpoint: Ids.checkpointNumber(1) })
      assert.isTrue(report.metDeadline)
      assert.strictEqual(report.fibersAlive, 0)
    }))

  it.live("shutdown waits for a read in flight on a slow disk: the read returns first, and no lease is held", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      const entered = yield* Deferred.make<void>()
      const slowMs = 200
      // Reads of part files take `slowMs` (a disk under load); the first tells the test it began.
      const disk: LocalDiskService = {
        ...memory.disk,
        read: (path, offset, length) =>
          path.startsWith("parts/")
            ? Effect.zipRight(
              Effect.zipRight(Deferred.succeed(entered, undefined), Effect.sleep(slowMs)),
              memory.disk.read(path, offset, length)
            )
            : memory.disk.read(path, offset, length)
      }
      const bytes = H.pattern(21, 100)
      const { report, reader } = yield* Effect.scoped(Effect.gen(function*() {
        // The bound on operations in flight is a tenth of the deadline: 300 ms, above the read's 200.
        const { storage } = yield* H.open(bucket, { ...memory, disk }, { shutdownDeadlineMs: 3_000 })
        yield* storage.write(fileA, 0, bytes)
        const reader = yield* Effect.fork(storage.read(fileA, 0, 100))
        yield* Deferred.await(entered)
        const report = yield* storage.shutdown
        return { report, reader: yield* Fiber.poll(reader) }
      }))
      assert.isTrue(Option.isSome(reader), "the read had returned when the shutdown did")
      if (Option.isSome(reader)) assert.deepStrictEqual(Exit.getOrElse(reader.value, () => undefined), bytes)
      assert.strictEqual(report.leasesHeld, 0)
      assert.isTrue(report.metDeadline)
    }))

  it.live("a write that outlives the shutdown keeps the directory locked: no second open until it has landed", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      const entered = yield* Deferred.make<void>()
      const stalled = yield* Deferred.make<void>()
      let stalling = false
      // Once `stalling`, a write to a part file hangs until `stalled` opens: a disk that stops
      // answering for longer than the shutdown waits for the operations in flight (300 ms here).
      const disk: LocalDiskService = {
        ...memory.disk,
        write: (path, offset, bytes) =>
          stalling && path.startsWith("parts/")
            ? Deferred.succeed(entered, undefined).pipe(
              Effect.zipRight(Deferred.await(stalled)),
              Effect.zipRight(memory.disk.write(path, offset, bytes))
            )
            : memory.disk.write(path, offset, bytes)
      }
      const openOver = (over: LocalDiskService) =>
        Effect.map(H.open(bucket, { ...memory, disk: over }, { shutdownDeadlineMs: 3_000 }), ({ storage }) => storage)
      const late = H.pattern(31, 100)
      const own = H.pattern(32, 100)
      const straggler = yield* Effect.scoped(Effect.gen(function*() {
        const storage = yield* openOver(disk)
        yield* storage.write(fileA, 0, H.pattern(30, 100))
        stalling = true
        const writer = yield* Effect.forkDaemon(storage.write(fileA, 0, late))
        yield* Deferred.await(entered)
        const report = yield* storage.shutdown
        assert.isTrue(report.metDeadline, "the shutdown keeps its deadline whatever the disk does")
        return writer
      }))
      // The same process opens the directory again while the first instance's write still hangs.
      const reopened = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
        const storage = yield* openOver(memory.disk)
        yield* storage.write(fileA, 0, own)
        yield* Deferred.succeed(stalled, undefined)
        yield* Fiber.await(straggler)
        return yield* storage.read(fileA, 0, 100)
      })))
      yield* Deferred.succeed(stalled, undefined)
      // Opened, it would have had its own write overwritten by the late one, and its next checkpoint
      // would have uploaded that as the part.
      if (Exit.isSuccess(reopened)) {
        assert.deepStrictEqual(reopened.value, own, "the reopened instance reads its own write")
      }
      const refusal = Exit.isFailure(reopened) ? Cause.failureOption(reopened.cause) : Option.none()
      assert.strictEqual(
        Option.match(refusal, { onNone: () => "opened", onSome: (error) => error._tag }),
        "DirectoryLocked"
      )
      // Once the late write has landed, the lock is released: the directory opens again.
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(straggler)), "the late write's caller is told it succeeded")
      const again = yield* Effect.scoped(Effect.gen(function*() {
        const storage = yield* openOver(memory.disk)
        return (yield* storage.shutdown).metDeadline
      }))
      assert.isTrue(again)
    }))
})

describe("Storage: crash, start-up checks, lock and fencing", () => {
  it.live("a crash between part uploads and the manifest leaves the previous checkpoint restorable", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const first = H.pattern(11, 2 * partSize)
      // This instance's own view of the bucket, so that its faults do not touch the other machine's.
      const frozenFaults = yield* FaultyObjectStore.makeController({ seed: 2 })
      yield* Effect.scoped(
        Effect.gen(function*() {
          const { storage } = yield* H.open(bucket, yield* H.makeDisk, {}, {}, frozenFaults)
          yield* storage.write(fileA, 0, first)
          yield* storage.checkpoint
          yield* storage.write(fileA, 0, H.pattern(12, 2 * partSize))
          yield* frozenFaults.stall({ operations: ["put"], keyPrefix: "checkpoints/" })
          const checkpoint = yield* Effect.fork(storage.checkpoint)
          yield* frozenFaults.awaitStats((stats) => stats.stalledNow >= 1) // parts uploaded, manifest stuck
          // "Crash": another machine takes over while this one is frozen mid-checkpoint.
          const restored = yield* H.withStorage(
            bucket,
            yield* H.makeDisk,
            (other) => other.read(fileA, 0, first.length),
            { takeOver: true }
          )
          assert.deepStrictEqual(restored, first)
          yield* frozenFaults.heal
          const exit = yield* Fiber.await(checkpoint)
          assert.isTrue(Exit.isFailure(exit), "the frozen instance's late commit is refused")
        })
      )
    }))

  it.live("the lock is in the bucket while open and gone after close; a second instance is refused", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function*() {
          assert.deepStrictEqual(yield* keysUnder(bucket, KeyLayout.lockKey(layout)), ["lock"])
          const refused = yield* Effect.flip(H.withStorage(bucket, yield* H.makeDisk, () => Effect.void))
          assert.strictEqual(refused._tag, "BucketLocked")
          if (refused._tag === "BucketLocked") assert.strictEqual(refused.holder, storage.instanceId)
        }))
      assert.deepStrictEqual(yield* keysUnder(bucket, "lock"), [])
    }))

  it.live("fencing: after a take-over the old instance's commit fails with Fenced and the bucket holds only the new history", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* Effect.scoped(
        Effect.gen(function*() {
          const a = (yield* H.open(bucket, yield* H.makeDisk)).storage
          yield* a.write(fileA, 0, H.pattern(1, 100))
          yield* a.checkpoint
          const takeOverAt = yield* H.withStorage(
            bucket,
            yield* H.makeDisk,
            (b) =>
              Effect.gen(function*() {
                assert.isAbove(b.epoch, a.epoch)
                yield* b.write(fileA, 0, H.pattern(2, 100))
                const report = yield* b.checkpoint
                return [b.instanceId, report.checkpoint] as const
              }),
            { takeOver: true }
          )
          yield* a.write(fileA, 0, H.pattern(3, 100))
          const fenced = yield* Effect.flip(a.checkpoint)
          assert.strictEqual(fenced._tag, "Fenced")
          const store = bucket.inspect
          const numbers = yield* Effect.map(store.keys, (keys) =>
            keys.flatMap((key) => {
              const parsed = KeyLayout.parseKey(layout, key)
              return Option.isSome(parsed) && parsed.value._tag === "Checkpoint" ? [parsed.value.checkpoint] : []
            }))
          assert.strictEqual(
            Math.max(...numbers),
            takeOverAt[1],
            "nothing was committed after the new instance's last checkpoint"
          )
          const report = yield* a.shutdown
          assert.strictEqual(report.lock, "left-fenced")
        })
      )
    }))

  it.live("fencing by the lock check alone: a lock taken over before any newer checkpoint stops the commit (the check runs beside the file-manifest writes)", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* Effect.scoped(
        Effect.gen(function*() {
          const a = (yield* H.open(bucket, yield* H.makeDisk)).storage
          yield* a.write(fileA, 0, H.pattern(1, 3 * partSize))
          const first = yield* a.checkpoint
          // Another instance takes the lock but has not checkpointed: checkpoint N+1 is free, so
          // only the lock check can stop A's commit.
          yield* bucket.inspect.write(
            KeyLayout.lockKey(layout),
            Control.encodeLock({
              format: Control.lockFormat,
              instanceId: Ids.InstanceId.make("newer-instance"),
              epoch: Ids.epoch(a.epoch + 1),
              acquiredAtMs: 0
            })
          )
          yield* a.write(fileA, 0, H.pattern(2, 3 * partSize))
          const exit = yield* Effect.exit(a.checkpoint)
          // One plain failure, Fenced: not a composite cause with the interruption of a concurrent write.
          assert.isTrue(
            Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "Fenced",
            String(exit)
          )
          assert.deepStrictEqual(yield* keysUnder(bucket, "checkpoints/"), [
            KeyLayout.checkpointKey(layout, first.checkpoint)
          ], "nothing was committed after the take-over")
          const report = yield* a.shutdown
          assert.strictEqual(report.lock, "left-fenced")
        })
      )
    }))

  it.live("start-up refuses a directory of another instance, one ahead of the bucket, and one that is not ours", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const diskA = yield* H.makeDisk
      yield* H.withStorage(
        bucket,
        diskA,
        (storage) => Effect.asVoid(Effect.zipRight(storage.write(fileA, 0, H.pattern(1, 10)), storage.checkpoint))
      )
      // Ahead: the bucket lost the directory's last checkpoint.
      const numbers = yield* Loader.listCheckpoints(MemoryObjectStore.storeOf(bucket.state), StorageConfig.defaults)
      const last = numbers[numbers.length - 1]
      if (last !== undefined) yield* bucket.inspect.remove(KeyLayout.checkpointKey(layout, last))
      const ahead = yield* Effect.flip(H.withStorage(bucket, diskA, () => Effect.void))
      assert.strictEqual(ahead._tag === "StartupRefused" ? ahead.reason : ahead._tag, "LocalAhead")
      // Foreign: another instance took over the bucket since.
      yield* H.withStorage(
        bucket,
        yield* H.makeDisk,
        (storage) => Effect.asVoid(Effect.zipRight(storage.write(fileA, 0, H.pattern(2, 10)), storage.checkpoint)),
        { takeOver: true }
      )
      const foreign = yield* Effect.flip(H.withStorage(bucket, diskA, () => Effect.void))
      assert.strictEqual(foreign._tag === "StartupRefused" ? foreign.reason : foreign._tag, "ForeignInstance")
      // Its remedy holds: the directory cannot be reopened, an empty one restores the bucket's state.
      assert.match(foreign.message, /What to do: .*cannot be reopened.*open an empty data directory/)
      assert.match(ahead.message, /What to do: check that the store and prefix/)
      const restored = yield* H.withStorage(
        bucket,
        yield* H.makeDisk,
        (storage) => Effect.zip(Effect.succeed(storage.opened.plan), storage.read(fileA, 0, 10))
      )
      assert.deepStrictEqual(restored, ["Restore", H.pattern(2, 10)])
      // Not ours: a non-empty directory without control.json; nothing is written to it or the bucket.
      const stranger = yield* H.makeDisk
      yield* stranger.disk.write("notes.txt", 0, new TextEncoder().encode("mine"))
      const keysBefore = yield* bucket.inspect.keys
      const notOurs = yield* Effect.flip(H.withStorage(bucket, stranger, () => Effect.void))
      assert.strictEqual(notOurs._tag === "StartupRefused" ? notOurs.reason : notOurs._tag, "NotOurDirectory")
      assert.deepStrictEqual(yield* stranger.disk.list(""), ["notes.txt"])
      assert.deepStrictEqual(yield* bucket.inspect.keys, keysBefore)
    }))
})

describe("Storage: what an application sees", () => {
  it.live("Storage.layer provides Storage alone: the internal services stay inside", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const disk = yield* H.makeDisk
      const layer = Storage.layer().pipe(
        Layer.provide(MemoryObjectStore.layerWithBucket(bucket.state)),
        Layer.provide(MemoryDisk.layerOf(disk)),
        Layer.provide(StorageConfig.layer(H.testConfig))
      )
      const context = yield* Effect.scoped(Layer.build(layer))
      assert.isTrue(Option.isSome(Context.getOption(context, Storage.Storage)))
      assert.isTrue(Option.isNone(Context.getOption(context, PartTable.PartTable)))
      assert.isTrue(Option.isNone(Context.getOption(context, WaitRegistry.WaitRegistry)))
    }))

  it.live("a replay that fails with RecordNotApplied stops start-up with ReplayFailed at that record; the next start replays it again", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const disk = yield* H.makeDisk
      const encoder = new TextEncoder()
      const appended = yield* H.withStorage(bucket, disk, (storage) =>
        Effect.gen(function*() {
          const lsns = [
            yield* storage.append(encoder.encode("r0")),
            yield* storage.append(encoder.encode("r1")),
            yield* storage.append(encoder.encode("r2"))
          ]
          yield* storage.commit
          // No checkpoint covers them: the next start replays all three.
          yield* bucket.faults.failPermanently({ operations: ["put"], keyPrefix: "checkpoints/" })
          return lsns
        }))
      yield* bucket.faults.heal
      const refusal = new RecordNotApplied({ detail: "r1 names a table this application does not know" })
      const failed = yield* Effect.flip(H.withStorage(bucket, disk, () => Effect.void, {}, {
        replay: (record) => (record.lsn === appended[1] ? Effect.fail(refusal) : Effect.void)
      }))
      assert.instanceOf(failed, ReplayFailed)
      if (!(failed instanceof ReplayFailed)) return
      assert.strictEqual(failed.lsn, appended[1])
      assert.strictEqual(failed.cause, refusal, "the application's own error is kept")
      assert.include(failed.message, "does not know")
      const replayed: Array<number> = []
      yield* H.withStorage(bucket, disk, () => Effect.void, {}, {
        replay: (record) => Effect.sync(() => replayed.push(record.lsn))
      })
      assert.deepStrictEqual(
        replayed,
        appended,
        "every record again, in LSN order, the ones applied before the failure included"
      )
    }))

  it.live("a checkpoint and a shutdown are spans: the checkpoint's manifests and commit inside it, the six steps inside the shutdown", () =>
    Effect.gen(function*() {
      const { spans, tracer } = SpanCollector.make()
      const bucket = yield* H.makeBucket
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function*() {
          yield* storage.write(fileA, 0, H.pattern(1, partSize))
          yield* storage.checkpoint
          yield* storage.write(fileA, 0, H.pattern(2, partSize))
          yield* storage.shutdown
        })).pipe(Effect.withTracer(tracer))
      const named = (name: string) => spans.filter((span) => span.name === name)
      const [onDemand, atShutdown] = named("checkpoint")
      assert.isDefined(onDemand)
      assert.isDefined(atShutdown)
      assert.strictEqual(onDemand.attributes.get("checkpoint.number"), 1)
      assert.strictEqual(onDemand.attributes.get("checkpoint.reason"), "on demand")
      assert.strictEqual(atShutdown.attributes.get("checkpoint.number"), 2)
      assert.strictEqual(atShutdown.attributes.get("checkpoint.reason"), "shutdown")
      const inside = (parent: SpanCollector.CollectedSpan) =>
        spans.filter((span) => SpanCollector.parentOf(span) === parent).map((span) => span.name)
      assert.includeMembers(inside(onDemand), ["checkpoint.manifest", "checkpoint.commit"])
      const [shutdown] = named("storage.shutdown")
      assert.isDefined(shutdown)
      const steps = ["stopIntake", "archiveWal", "finalCheckpoint", "drain", "releaseLock", "markClean"].map((step) =>
        `storage.shutdown.${step}`
      )
      assert.deepStrictEqual(inside(shutdown), steps, "the six steps, in order")
      assert.strictEqual(
        SpanCollector.parentOf(atShutdown)?.spanId,
        named("storage.shutdown.finalCheckpoint")[0]?.spanId
      )
      assert.isTrue(
        spans.filter((span) => span.name.startsWith("storage.shutdown") || span.name.startsWith("checkpoint")).every((
          span
        ) => span.ended)
      )
    }))

  it.live("the close is one readable INFO line, not an escaped JSON blob", () =>
    Effect.gen(function*() {
      const lines: Array<readonly [LogLevel.LogLevel, string]> = []
      const capturing = Logger.make(({ logLevel, message }) => {
        lines.push([logLevel, (Array.isArray(message) ? message : [message]).map(String).join(" ")])
      })
      const bucket = yield* H.makeBucket
      const report = yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.zipRight(storage.write(fileA, 0, H.pattern(1, 100)), storage.shutdown)).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, capturing))
        )
      const closes = lines.filter(([, text]) =>
        text.startsWith("storage closed")
      )
      assert.strictEqual(closes.length, 1)
      const [level, text] = closes[0] ?? [LogLevel.None, ""]
      assert.strictEqual(level, LogLevel.Info)
      assert.match(
        text,
        /^storage closed in \d+(ms|\.\ds|s): final checkpoint 1 completed, WAL archived through \d+, lock released$/
      )
      assert.strictEqual(report.finalCheckpoint.outcome, "completed", "the report itself is still the shutdown's value")
    }))
})

describe("Storage: a slow close says what it waits on", () => {
  it.live("the half-deadline warning groups the waits by what they wait on, with counts and durations", () =>
    Effect.gen(function*() {
      const warnings: Array<string> = []
      const capturing = Logger.make(({ logLevel, message }) => {
        if (logLevel === LogLevel.Warning) {
          warnings.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
        }
      })
      const bucket = yield* H.makeBucket
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function*() {
          yield* storage.write(fileA, 0, H.pattern(3, 3 * partSize))
          yield* bucket.faults.stall()
          return yield* storage.shutdown
          // The uploads hang past the half-deadline (750 ms): requests are not cut before 2 s, and the
          // checkpoint's share runs to 1.2 s.
        }), { requestTimeoutMs: 2_000, shutdownCheckpointDeadlineMs: 1_200 }).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, capturing))
        )
      const warning = warnings.find((text) => text.startsWith("shutdown not finished at half its deadline"))
      assert.isDefined(warning)
      const lines = warning.split("\n").slice(1)
      assert.isAbove(lines.length, 0)
      for (const line of lines) assert.match(line, /^ {2}\d+ × .+ on .+, (the longest )?for \d+(ms|\.\ds|s)$/)
      assert.isTrue(
        lines.some((line) => /^ {2}3 × TaskHandle\.await on task WritePart, the longest for /.test(line)),
        warning
      )
      assert.notMatch(warning, /#\d+|\d{13}/, "no fiber ids, no epoch milliseconds")
    }))

  it.live("a control-file write the disk holds after the shutdown checkpoint's commit holds neither the shutdown past its deadline nor a clean mark it would undo", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      const control = yield* holdingControlWrites(memory.disk)
      const stopped = yield* Effect.scoped(Effect.gen(function*() {
        const { storage } = yield* H.open(bucket, { ...memory, disk: control.disk }, { shutdownDeadlineMs: 3_000 })
        yield* storage.write(fileA, 0, H.pattern(40, 100))
        control.holdNext()
        const report = yield* storage.shutdown
        return { report, lastCheckpoint: (yield* storage.stats).checkpoints.lastCheckpoint }
      })).pipe(control.capturingWarnings, Effect.disconnect, Effect.timeoutOption(Duration.seconds(10)))
      yield* control.release
      if (Option.isNone(stopped)) return assert.fail("the shutdown waited for the held control-file write")
      assert.isTrue(stopped.value.report.metDeadline, "the shutdown keeps its deadline")
      // The commit is in the bucket: the figures count it, whatever became of the write after it.
      assert.strictEqual(stopped.value.lastCheckpoint, 1)
      yield* control.assertMarkedAsSaid
    }))

  it.live("a clean-stop mark whose write the disk holds does not hold the shutdown past its deadline; it lands later, the directory locked until then", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      const control = yield* holdingControlWrites(memory.disk)
      const config = { shutdownDeadlineMs: 3_000 }
      const stopped = yield* Effect.scoped(Effect.gen(function*() {
        const { storage } = yield* H.open(bucket, { ...memory, disk: control.disk }, config)
        yield* storage.write(fileA, 0, H.pattern(43, 100))
        yield* storage.checkpoint
        // Nothing left for the final checkpoint: the next control write is the mark's.
        control.holdNext()
        return yield* storage.shutdown
      })).pipe(control.capturingWarnings, Effect.disconnect, Effect.timeoutOption(Duration.seconds(10)))
      yield* Deferred.await(control.reached)
      const refused = yield* Effect.exit(Effect.scoped(H.open(bucket, memory, config)))
      yield* control.release
      if (Option.isNone(stopped)) return assert.fail("the shutdown waited for the held mark")
      assert.isTrue(stopped.value.metDeadline, `the shutdown keeps its deadline (${stopped.value.durationMs} ms)`)
      assert.isTrue(
        Exit.isFailure(refused) && Cause.pretty(refused.cause).includes("DirectoryLocked"),
        "no second open while the mark is held"
      )
      yield* control.assertMarkedAsSaid
      const reread = yield* H.withStorage(bucket, memory, (storage) => storage.read(fileA, 0, 100))
      assert.deepStrictEqual(reread, H.pattern(43, 100))
    }))

  it.live("an eviction whose unlink the disk holds does not hold the shutdown past its deadline; the directory stays locked until it lands", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      const removal = yield* holdingDiskCalls(memory.disk, (operation) => operation === "remove")
      const config = { shutdownDeadlineMs: 3_000, localBytesMax: 4096, evictionIntervalMs: 20 }
      const stopped = yield* Effect.scoped(Effect.gen(function*() {
        const { storage } = yield* H.open(bucket, { ...memory, disk: removal.disk }, config)
        for (let part = 0; part < 4; part++) {
          yield* storage.write(fileA, part * partSize, H.pattern(50 + part, partSize))
        }
        removal.holdNext()
        yield* storage.checkpoint
        // The evictor sweeps the parts the checkpoint made clean, and waits for its unlink.
        yield* Deferred.await(removal.reached)
        return yield* storage.shutdown
      })).pipe(Effect.disconnect, Effect.timeoutOption(Duration.seconds(10)))
      const refused = yield* Effect.exit(Effect.scoped(H.open(bucket, memory, config)))
      yield* removal.release
      yield* Deferred.await(removal.landed)
      if (Option.isNone(stopped)) return assert.fail("the shutdown waited for the held unlink")
      assert.isTrue(stopped.value.metDeadline, `the shutdown keeps its deadline (${stopped.value.durationMs} ms)`)
      assert.isTrue(
        Exit.isFailure(refused) && Cause.pretty(refused.cause).includes("DirectoryLocked"),
        "no second open while the unlink is held"
      )
      const reread = yield* H.withStorage(
        bucket,
        memory,
        (storage) => Effect.forEach([0, 1, 2, 3], (part) => storage.read(fileA, part * partSize, partSize))
      )
      assert.deepStrictEqual(reread, [0, 1, 2, 3].map((part) => H.pattern(50 + part, partSize)))
    }))

  it.live("a control-file write the disk holds after a periodic checkpoint's commit holds neither the shutdown past its deadline nor a clean mark it would undo", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      const control = yield* holdingControlWrites(memory.disk)
      const config = { shutdownDeadlineMs: 3_000, checkpointIntervalMs: 50 }
      const stopped = yield* Effect.scoped(Effect.gen(function*() {
        const { storage } = yield* H.open(bucket, { ...memory, disk: control.disk }, config)
        yield* storage.write(fileA, 0, H.pattern(41, 100))
        control.holdNext()
        // The periodic checkpoint has committed and waits for its control-file write.
        yield* Deferred.await(control.reached)
        const report = yield* storage.shutdown
        return { report, stats: yield* storage.stats }
      })).pipe(control.capturingWarnings, Effect.disconnect, Effect.timeoutOption(Duration.seconds(10)))
      yield* control.release
      if (Option.isNone(stopped)) return assert.fail("the shutdown waited for the held control-file write")
      const { report, stats } = stopped.value
      assert.isTrue(report.metDeadline, `the shutdown keeps its deadline (${report.durationMs} ms)`)
      // Checkpoints run one at a time, to the end of their control-file write: the shutdown's waited
      // for the periodic one's and was cut, so no later control write raced the held one.
      assert.strictEqual(report.finalCheckpoint.outcome, "timed-out")
      assert.strictEqual(stats.checkpoints.lastCheckpoint, 1)
      yield* control.assertMarkedAsSaid
      // Once the write has landed, the directory opens again and holds what was written.
      const reread = yield* H.withStorage(bucket, memory, (storage) => storage.read(fileA, 0, 100))
      assert.deepStrictEqual(reread, H.pattern(41, 100))
    }))
})

describe("Storage: a load whose write the disk holds", () => {
  it.live("is not retried ahead of that write when the watchdog cuts it: the lease write after the load is not undone", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      const loads = yield* holdingDiskCalls(
        memory.disk,
        (operation, path) => operation === "writeAtomic" && path.startsWith("parts/")
      )
      const config = { requestTimeoutMs: 200, localBytesMax: 4096, evictionIntervalMs: 3_600_000 }
      yield* Effect.scoped(Effect.gen(function*() {
        const { context, storage } = yield* H.open(bucket, { ...memory, disk: loads.disk }, config)
        for (let part = 0; part < 3; part++) {
          yield* storage.write(fileA, part * partSize, H.pattern(60 + part, partSize))
        }
        yield* storage.checkpoint
        const evictor = Context.get(context, Evictor.Evictor)
        // The first sweep marks the clean parts, the second evicts the two over the budget.
        const evicted = yield* Effect.zipRight(evictor.runNow, evictor.runNow)
        assert.strictEqual(evicted.evictedParts, 2)
        loads.holdNext()
        // The write loads its evicted part first; the load's atomic write is held past the request
        // timeout, so the watchdog cuts that attempt. A retry that overtook it would load, let the
        // write through, and the held write would then land over the written bytes.
        const writing = yield* Effect.fork(storage.write(fileA, 0, H.pattern(70, partSize)))
        yield* Deferred.await(loads.reached)
        const early = yield* Fiber.await(writing).pipe(Effect.timeoutOption(Duration.seconds(1)))
        assert.isTrue(Option.isNone(early), "the write waits for its part's load, whose write the disk holds")
        yield* loads.release
        yield* Deferred.await(loads.landed)
        yield* Fiber.join(writing)
        assert.deepStrictEqual(yield* storage.read(fileA, 0, partSize), H.pattern(70, partSize))
      }))
    }))
})
