/**
 * Goal: the composed Storage layer keeps the promises of issues 4 and 5 of 8, scenario by scenario,
 * as analogues of OrioleDB's own S3 suite (test/t/s3_test.py) and of its two shutdown hangs (#340,
 * #373). Method: real time (`it.live`) over the in-memory bucket behind the fault decorator and the
 * in-memory disk, with sub-second deadlines, so every deadline assertion is about wall-clock time.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Exit, Fiber, Option } from "effect"
import * as Control from "../../src/domain/Control.js"
import * as Ids from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import type * as Storage from "../../src/layers/Storage.js"
import * as FaultyObjectStore from "../../src/layers/FaultyObjectStore.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as Loader from "../../src/services/Loader.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as H from "../support/StorageHarness.js"

const fileA = Ids.fileId("db/a")
const fileB = Ids.fileId("db/b")
const partSize = H.testConfig.partSizeBytes ?? 4096
const deadlineMs = H.testConfig.shutdownDeadlineMs ?? 1500
const layout = KeyLayout.make("")

const keysUnder = (bucket: H.Bucket, prefix: string) =>
  Effect.map(bucket.inspect.keys, (keys) => keys.filter((key) => key.startsWith(prefix)))

const elapsed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const start = yield* Clock.currentTimeMillis
    const value = yield* effect
    return [value, (yield* Clock.currentTimeMillis) - start] as const
  })

describe("Storage: checkpoints and restore", () => {
  it.live("checkpoint, then restore into a fresh directory: every byte reads back identical (test_s3_checkpoint)", () =>
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      const bytes = H.pattern(1, 3 * partSize + 100)
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function* () {
          yield* storage.write(fileA, 1000, bytes)
          yield* storage.write(fileB, 0, H.pattern(2, 10))
          const report = yield* storage.checkpoint
          assert.strictEqual(report.outcome, "completed")
          assert.strictEqual(report.checkpoint, 1)
          assert.strictEqual(report.partsUploaded, 5)
        }))
      const [plan, readA, readB] = yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.all([Effect.succeed(storage.opened.plan), storage.read(fileA, 1000, bytes.length), storage.read(fileB, 0, 10)]))
      assert.strictEqual(plan, "Restore")
      assert.deepStrictEqual(readA, bytes)
      assert.deepStrictEqual(readB, H.pattern(2, 10))
    }))

  it.live("a second checkpoint uploads only the parts that changed (test_s3_checkpoint_unchanged)", () =>
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function* () {
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
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      const encoder = new TextEncoder()
      const records = 300 // ~10 KiB of records per 100: several 16 KiB segments
      const insert = (storage: Storage.StorageService, index: number) =>
        Effect.gen(function* () {
          yield* storage.write(fileA, index * 8, H.pattern(index + 10, 8))
          yield* storage.append(encoder.encode(`${index}`.padStart(100, " ")))
        })
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function* () {
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
          Effect.gen(function* () {
            for (let index = 0; index < records; index++) {
              assert.deepStrictEqual(yield* storage.read(fileA, index * 8, 8), H.pattern(index + 10, 8), `record ${index}`)
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
      assert.strictEqual(replayed[replayed.length - 1], records - 1, "the last record (in the last, partial segment) is replayed")
    }))
})

describe("Storage: shutdown is bounded whatever S3 does", () => {
  it.live("shutdown of an idle store takes well under a second", () =>
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      const report = yield* H.withStorage(bucket, yield* H.makeDisk, (storage) => storage.shutdown)
      assert.isBelow(report.durationMs, 300)
      assert.strictEqual(report.finalCheckpoint.outcome, "completed") // the first checkpoint of a fresh bucket
      assert.strictEqual(report.leasesHeld, 0)
      assert.strictEqual(report.fibersAlive, 0)
      assert.strictEqual(report.lock, "released")
      assert.deepStrictEqual(yield* keysUnder(bucket, "lock"), [])
    }))

  it.live("shutdown with S3 stalled meets its deadline, keeps the dirty data, and the next start checkpoints it", () =>
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      const disk = yield* H.makeDisk
      const bytes = H.pattern(7, 2 * partSize)
      const [report, tookMs] = yield* H.withStorage(bucket, disk, (storage) =>
        Effect.gen(function* () {
          yield* storage.write(fileA, 0, bytes)
          yield* bucket.faults.stall()
          return yield* elapsed(storage.shutdown)
        }))
      assert.isBelow(tookMs, deadlineMs + 1000)
      assert.isTrue(report.metDeadline)
      assert.strictEqual(report.finalCheckpoint.outcome, "timed-out")
      assert.isAbove(report.dirtyPartsLeft, 0)
      assert.strictEqual(report.leasesHeld, 0)
      assert.strictEqual(report.fibersAlive, 0)
      assert.notStrictEqual(report.lock, "released")
      yield* bucket.faults.heal
      const next = yield* H.withStorage(bucket, disk, (storage) =>
        Effect.gen(function* () {
          assert.strictEqual(storage.opened.plan, "Reopen")
          return yield* storage.checkpoint
        }))
      assert.strictEqual(next.outcome, "completed")
      assert.isAtLeast(next.partsUploaded, 2)
      const restored = yield* H.withStorage(bucket, yield* H.makeDisk, (storage) => storage.read(fileA, 0, bytes.length))
      assert.deepStrictEqual(restored, bytes)
    }))

  it.live("shutdown while every part upload fails (the #373 shape) completes, with the failure in the report", () =>
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      const report = yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function* () {
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
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) => Effect.asVoid(Effect.zipRight(storage.write(fileA, 0, H.pattern(9, 100)), storage.checkpoint)))
      const report = yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function* () {
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
})

describe("Storage: crash, start-up checks, lock and fencing", () => {
  it.live("a crash between part uploads and the manifest leaves the previous checkpoint restorable", () =>
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      const first = H.pattern(11, 2 * partSize)
      // This instance's own view of the bucket, so that its faults do not touch the other machine's.
      const frozenFaults = yield* FaultyObjectStore.makeController({ seed: 2 })
      yield* Effect.scoped(
        Effect.gen(function* () {
          const { storage } = yield* H.open(bucket, yield* H.makeDisk, {}, {}, frozenFaults)
          yield* storage.write(fileA, 0, first)
          yield* storage.checkpoint
          yield* storage.write(fileA, 0, H.pattern(12, 2 * partSize))
          yield* frozenFaults.stall({ operations: ["put"], keyPrefix: "checkpoints/" })
          const checkpoint = yield* Effect.fork(storage.checkpoint)
          yield* frozenFaults.awaitStats((stats) => stats.stalledNow >= 1) // parts uploaded, manifest stuck
          // "Crash": another machine takes over while this one is frozen mid-checkpoint.
          const restored = yield* H.withStorage(bucket, yield* H.makeDisk, (other) => other.read(fileA, 0, first.length), { takeOver: true })
          assert.deepStrictEqual(restored, first)
          yield* frozenFaults.heal
          const exit = yield* Fiber.await(checkpoint)
          assert.isTrue(Exit.isFailure(exit), "the frozen instance's late commit is refused")
        })
      )
    }))

  it.live("the lock is in the bucket while open and gone after close; a second instance is refused", () =>
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function* () {
          assert.deepStrictEqual(yield* keysUnder(bucket, KeyLayout.lockKey(layout)), ["lock"])
          const refused = yield* Effect.flip(H.withStorage(bucket, yield* H.makeDisk, () => Effect.void))
          assert.strictEqual(refused._tag, "BucketLocked")
          if (refused._tag === "BucketLocked") assert.strictEqual(refused.holder, storage.instanceId)
        }))
      assert.deepStrictEqual(yield* keysUnder(bucket, "lock"), [])
    }))

  it.live("fencing: after a take-over the old instance's commit fails with Fenced and the bucket holds only the new history", () =>
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      yield* Effect.scoped(
        Effect.gen(function* () {
          const a = (yield* H.open(bucket, yield* H.makeDisk)).storage
          yield* a.write(fileA, 0, H.pattern(1, 100))
          yield* a.checkpoint
          const takeOverAt = yield* H.withStorage(
            bucket,
            yield* H.makeDisk,
            (b) =>
              Effect.gen(function* () {
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
          const numbers = yield* Effect.map(store.keys, (keys) => keys.flatMap((key) => {
            const parsed = KeyLayout.parseKey(layout, key)
            return Option.isSome(parsed) && parsed.value._tag === "Checkpoint" ? [parsed.value.checkpoint] : []
          }))
          assert.strictEqual(Math.max(...numbers), takeOverAt[1], "nothing was committed after the new instance's last checkpoint")
          const report = yield* a.shutdown
          assert.strictEqual(report.lock, "left-fenced")
        })
      )
    }))

  it.live("fencing by the lock check alone: a lock taken over before any newer checkpoint stops the commit (the check runs beside the file-manifest writes)", () =>
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      yield* Effect.scoped(
        Effect.gen(function* () {
          const a = (yield* H.open(bucket, yield* H.makeDisk)).storage
          yield* a.write(fileA, 0, H.pattern(1, 3 * partSize))
          const first = yield* a.checkpoint
          // Another instance takes the lock but has not checkpointed: checkpoint N+1 is free, so
          // only the lock check can stop A's commit.
          yield* bucket.inspect.write(
            KeyLayout.lockKey(layout),
            Control.encodeLock({ format: Control.lockFormat, instanceId: Ids.InstanceId.make("newer-instance"), epoch: Ids.epoch(a.epoch + 1), acquiredAtMs: 0 })
          )
          yield* a.write(fileA, 0, H.pattern(2, 3 * partSize))
          const exit = yield* Effect.exit(a.checkpoint)
          // One plain failure, Fenced: not a composite cause with the interruption of a concurrent write.
          assert.isTrue(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "Fenced", String(exit))
          assert.deepStrictEqual(yield* keysUnder(bucket, "checkpoints/"), [KeyLayout.checkpointKey(layout, first.checkpoint)], "nothing was committed after the take-over")
          const report = yield* a.shutdown
          assert.strictEqual(report.lock, "left-fenced")
        })
      )
    }))

  it.live("start-up refuses a directory of another instance, one ahead of the bucket, and one that is not ours", () =>
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      const diskA = yield* H.makeDisk
      yield* H.withStorage(bucket, diskA, (storage) => Effect.asVoid(Effect.zipRight(storage.write(fileA, 0, H.pattern(1, 10)), storage.checkpoint)))
      // Ahead: the bucket lost the directory's last checkpoint.
      const numbers = yield* Loader.listCheckpoints(MemoryObjectStore.storeOf(bucket.state), StorageConfig.defaults)
      const last = numbers[numbers.length - 1]
      if (last !== undefined) yield* bucket.inspect.remove(KeyLayout.checkpointKey(layout, last))
      const ahead = yield* Effect.flip(H.withStorage(bucket, diskA, () => Effect.void))
      assert.strictEqual(ahead._tag === "StartupRefused" ? ahead.reason : ahead._tag, "LocalAhead")
      // Foreign: another instance took over the bucket since.
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) => Effect.asVoid(Effect.zipRight(storage.write(fileA, 0, H.pattern(2, 10)), storage.checkpoint)), { takeOver: true })
      const foreign = yield* Effect.flip(H.withStorage(bucket, diskA, () => Effect.void))
      assert.strictEqual(foreign._tag === "StartupRefused" ? foreign.reason : foreign._tag, "ForeignInstance")
      // Its remedy holds: the directory cannot be reopened, an empty one restores the bucket's state.
      assert.match(foreign.message, /What to do: .*cannot be reopened.*open an empty data directory/)
      assert.match(ahead.message, /What to do: check that the store and prefix/)
      const restored = yield* H.withStorage(bucket, yield* H.makeDisk, (storage) => Effect.zip(Effect.succeed(storage.opened.plan), storage.read(fileA, 0, 10)))
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
