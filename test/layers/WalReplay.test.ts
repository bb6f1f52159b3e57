/**
 * Goal: start-up replay and the WAL's history survive what happens around them. A checkpoint that
 * runs while replay is still applying records (asked for by the replay function itself, or the
 * periodic one) covers only what replay has applied, so a crash after it and a restart still find
 * every record; archived WAL keys carry the writer's epoch, so a stale writer cannot overwrite the
 * new owner's segments and a restore never replays its records. Method: the real Storage layer
 * over the in-memory bucket (behind the fault decorator) and the in-memory disk, whose `crash`
 * drops every unsynced write; real time (`it.live`) with sub-second deadlines.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as Ids from "../../src/domain/Ids.js"
import type * as Storage from "../../src/layers/Storage.js"
import * as H from "../support/StorageHarness.js"

const fileA = Ids.fileId("db/a")
const pageBytes = 64
const recordCount = 600
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Record i: "page i holds pattern(i)" (apply, then log). */
const recordOf = (index: number): Uint8Array => encoder.encode(`${index}`.padStart(100, " "))
const indexOf = (bytes: Uint8Array): number => Number(decoder.decode(bytes).trim())
const applyRecord = (storage: Storage.StorageService, index: number) => storage.write(fileA, index * pageBytes, H.pattern(index + 1, pageBytes))

const readAll = (storage: Storage.StorageService) =>
  Effect.gen(function* () {
    const wrong: Array<number> = []
    for (let index = 0; index < recordCount; index++) {
      const bytes = yield* storage.read(fileA, index * pageBytes, pageBytes)
      if (!H.pattern(index + 1, pageBytes).every((byte, at) => bytes[at] === byte)) wrong.push(index)
    }
    return wrong
  })

/**
 * A writer that checkpoints once (records 0-99), then logs the rest with every checkpoint failing
 * (a bucket that refuses them, e.g. full), and stops uncleanly: its part files revert to what a
 * checkpoint holds, so only the WAL has records 100 and after.
 */
const writeThenCrash = (bucket: H.Bucket, disk: H.Disk) =>
  H.withStorage(bucket, disk, (storage) =>
    Effect.gen(function* () {
      for (let index = 0; index < recordCount; index++) {
        yield* applyRecord(storage, index)
        yield* storage.append(recordOf(index))
        if (index === 99) {
          yield* storage.commit
          yield* storage.checkpoint
          yield* bucket.faults.failPermanently({ operations: ["put"], keyPrefix: "checkpoints/" })
        }
      }
      yield* storage.commit
      // The stop is not clean: the control file is not marked, so the next start trusts no part file.
      yield* disk.control.failNext({ operation: "writeAtomic", pathPrefix: "control.json" })
    })).pipe(Effect.zipRight(disk.control.crash), Effect.zipRight(bucket.faults.heal))

describe("Storage: a checkpoint during start-up replay", () => {
  it.live("covers only the records replay has applied: after a crash mid-replay and a restart, every record is there", () =>
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      const disk = yield* H.makeDisk
      yield* writeThenCrash(bucket, disk)
      // Restart: replay asks for a checkpoint after 150 records, then the process dies at 300.
      let replayed = 0
      const crashed = yield* Effect.exit(
        H.withStorage(bucket, disk, () => Effect.void, {}, {
          replay: (record, storage) =>
            Effect.gen(function* () {
              yield* applyRecord(storage, indexOf(record.bytes))
              replayed++
              if (replayed === 150) {
                const report = yield* storage.checkpoint
                assert.strictEqual(report.outcome, "completed")
              }
              if (replayed === 300) return yield* Effect.fail(new Error("killed during replay"))
            })
        })
      )
      assert.isTrue(Exit.isFailure(crashed), "the start-up dies in replay")
      yield* disk.control.crash
      // The next start replays from the mid-replay checkpoint's position: every record is back.
      const wrong = yield* H.withStorage(bucket, disk, readAll, {}, {
        replay: (record, storage) => applyRecord(storage, indexOf(record.bytes))
      })
      assert.strictEqual(wrong.length, 0, `records lost: ${wrong.length}, the first ${wrong.slice(0, 3).join(", ")}`)
    }))

  it.live("a periodic checkpoint during a slow replay does the same", () =>
    Effect.gen(function* () {
      const bucket = yield* H.makeBucket
      const disk = yield* H.makeDisk
      yield* writeThenCrash(bucket, disk)
      let replayed = 0
      let checkpointsSeen = 0
      const crashed = yield* Effect.exit(
        H.withStorage(bucket, disk, () => Effect.void, { checkpointIntervalMs: 20 }, {
          replay: (record, storage) =>
            Effect.gen(function* () {
              yield* applyRecord(storage, indexOf(record.bytes))
              replayed++
              if (replayed === 150) {
                // Slow replay: wait until a periodic checkpoint has committed while replay runs.
                for (;;) {
                  const stats = yield* storage.stats
                  if (stats.checkpoints.completed > 0) break
                  yield* Effect.yieldNow()
                  yield* Effect.sleep(5)
                }
                checkpointsSeen++
              }
              if (replayed === 300) return yield* Effect.fail(new Error("killed during replay"))
            })
        })
      )
      assert.isTrue(Exit.isFailure(crashed))
      assert.strictEqual(checkpointsSeen, 1, "a periodic checkpoint committed during replay")
      yield* disk.control.crash
      const wrong = yield* H.withStorage(bucket, disk, readAll, {}, {
        replay: (record, storage) => applyRecord(storage, indexOf(record.bytes))
      })
      assert.strictEqual(wrong.length, 0, `records lost: ${wrong.length}, the first ${wrong.slice(0, 3).join(", ")}`)
    }))
})
