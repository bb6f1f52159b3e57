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
import { Effect, Exit, Logger, LogLevel } from "effect"
import { RecordNotApplied } from "../../src/domain/Errors.js"
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
const applyRecord = (storage: Storage.StorageService, index: number) =>
  storage.write(fileA, index * pageBytes, H.pattern(index + 1, pageBytes))

const readAll = (storage: Storage.StorageService) =>
  Effect.gen(function*() {
    const wrong: Array<number> = []
    for (let index = 0; index < recordCount; index++) {
      const bytes = yield* storage.read(fileA, index * pageBytes, pageBytes)
      if (!H.pattern(index + 1, pageBytes).every((byte, at) => bytes[at] === byte)) wrong.push(index)
    }
    return wrong
  })

/**
 * A writer that checkpoints once (records 0-99), then logs the rest with every checkpoint failing
 * (a bucket that refuses them; `full`: one that refuses every write, WAL uploads included, as a
 * full disk does), and stops uncleanly: its part files revert to what a checkpoint holds, so only
 * the WAL has records 100 and after. The bucket is healed (freed) before the restart.
 */
const writeThenCrash = (bucket: H.Bucket, disk: H.Disk, full = false) =>
  H.withStorage(bucket, disk, (storage) =>
    Effect.gen(function*() {
      for (let index = 0; index < recordCount; index++) {
        yield* applyRecord(storage, index)
        yield* storage.append(recordOf(index))
        if (index === 99) {
          yield* storage.commit
          yield* storage.checkpoint
          yield* bucket.faults.failPermanently(
            full ? { operations: ["put"] } : { operations: ["put"], keyPrefix: "checkpoints/" }
          )
        }
      }
      yield* storage.commit
      // The stop is not clean: the control file is not marked, so the next start trusts no part file.
      yield* disk.control.failNext({ operation: "writeAtomic", pathPrefix: "control.json" })
    })).pipe(Effect.zipRight(disk.control.crash), Effect.zipRight(bucket.faults.heal))

describe("Storage: a checkpoint during start-up replay", () => {
  it.live("covers only the records replay has applied: after a crash mid-replay and a restart, every record is there", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const disk = yield* H.makeDisk
      yield* writeThenCrash(bucket, disk)
      // Restart: replay asks for a checkpoint after 150 records, then the process dies at 300.
      let replayed = 0
      const crashed = yield* Effect.exit(
        H.withStorage(bucket, disk, () => Effect.void, {}, {
          replay: (record, storage) =>
            Effect.gen(function*() {
              yield* applyRecord(storage, indexOf(record.bytes))
              replayed++
              if (replayed === 150) {
                const report = yield* storage.checkpoint
                assert.strictEqual(report.outcome, "completed")
              }
              if (replayed === 300) return yield* Effect.fail(new RecordNotApplied({ detail: "killed during replay" }))
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

  it.live("a periodic checkpoint during a slow replay does the same, after a bucket that was full and is freed", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const disk = yield* H.makeDisk
      yield* writeThenCrash(bucket, disk, true)
      let replayed = 0
      let checkpointsSeen = 0
      const crashed = yield* Effect.exit(
        H.withStorage(bucket, disk, () => Effect.void, { checkpointIntervalMs: 20 }, {
          replay: (record, storage) =>
            Effect.gen(function*() {
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
              if (replayed === 300) return yield* Effect.fail(new RecordNotApplied({ detail: "killed during replay" }))
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

/** Record "<writer>:<page>": page <page> holds the writer's pattern for it. */
const writerSeed = { a: 1, b: 1000, c: 2000 } as const
type Writer = keyof typeof writerSeed
const taggedRecord = (writer: Writer, page: number): Uint8Array =>
  encoder.encode(`${writer}:${page}`.padStart(100, " "))
const applyTagged = (storage: Storage.StorageService, bytes: Uint8Array) => {
  const [writer, page] = decoder.decode(bytes).trim().split(":")
  const index = Number(page)
  return storage.write(fileA, index * pageBytes, H.pattern(writerSeed[writer as Writer] + index, pageBytes))
}
const insert = (storage: Storage.StorageService, writer: Writer, page: number) =>
  Effect.zipRight(
    storage.write(fileA, page * pageBytes, H.pattern(writerSeed[writer] + page, pageBytes)),
    storage.append(taggedRecord(writer, page))
  )

describe("Storage: archived WAL after a take-over", () => {
  it.live("a stale writer's WAL uploads after the new owner's clean shutdown never reach a restore", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const pages = 50
      yield* Effect.scoped(
        Effect.gen(function*() {
          const a = (yield* H.open(bucket, yield* H.makeDisk)).storage
          for (let page = 0; page < pages; page++) yield* insert(a, "a", page)
          yield* a.commit
          yield* a.checkpoint
          // B takes over while A still runs, rewrites every page, and shuts down cleanly (the lock goes).
          yield* H.withStorage(
            bucket,
            yield* H.makeDisk,
            (b) =>
              Effect.gen(function*() {
                for (let page = 0; page < pages; page++) yield* insert(b, "b", page)
                yield* b.commit
              }),
            { takeOver: true },
            { replay: (record, storage) => applyTagged(storage, record.bytes) }
          )
          // A goes on (if it is let): records over several segments, then its WAL archives what it has.
          yield* Effect.either(
            Effect.gen(function*() {
              for (let round = 0; round < 8; round++) {
                for (let page = 0; page < pages; page++) yield* insert(a, "c", page)
              }
              yield* a.commit
            })
          )
          yield* a.shutdown
        })
      )
      // A restore from the bucket alone has B's pages.
      const wrong = yield* H.withStorage(
        bucket,
        yield* H.makeDisk,
        (storage) =>
          Effect.gen(function*() {
            const found: Array<number> = []
            for (let page = 0; page < pages; page++) {
              const bytes = yield* storage.read(fileA, page * pageBytes, pageBytes)
              if (!H.pattern(writerSeed.b + page, pageBytes).every((byte, at) => bytes[at] === byte)) found.push(page)
            }
            return found
          }),
        {},
        { replay: (record, storage) => applyTagged(storage, record.bytes) }
      )
      assert.strictEqual(wrong.length, 0, `pages not as the new owner left them: ${wrong.length} of ${pages}`)
    }))
})

describe("Storage: a restore with another WAL segment size", () => {
  it.live("fails with WalSegmentSizeMismatch naming both sizes, before anything is written", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function*() {
          for (let index = 0; index < 300; index++) {
            yield* applyRecord(storage, index % 100)
            yield* storage.append(recordOf(index % 100))
          }
          yield* storage.commit
          yield* storage.checkpoint
        }))
      const segmentBytes = H.testConfig.walSegmentBytes ?? 16 * 1024
      const keysBefore = yield* bucket.inspect.keys
      const disk = yield* H.makeDisk
      const refused = yield* Effect.flip(
        H.withStorage(bucket, disk, () => Effect.void, { walSegmentBytes: segmentBytes / 2 })
      )
      assert.strictEqual(refused._tag, "WalSegmentSizeMismatch", refused.message)
      if (refused._tag === "WalSegmentSizeMismatch") {
        assert.strictEqual(refused.bucketSegmentBytes, segmentBytes)
        assert.strictEqual(refused.configuredSegmentBytes, segmentBytes / 2)
        assert.include(refused.message, String(segmentBytes))
        assert.include(refused.message, String(segmentBytes / 2))
      }
      assert.deepStrictEqual(yield* bucket.inspect.keys, keysBefore, "nothing was written to the bucket")
      assert.deepStrictEqual(yield* disk.disk.list(""), [], "nor to the directory")
    }))
})

/** Runs `effect` with its log lines (and those of every fiber it starts) collected instead of printed. */
const capturingLogs = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const lines: Array<{ readonly level: LogLevel.LogLevel; readonly message: string }> = []
    const capture = Logger.make(({ logLevel, message }) =>
      void lines.push({ level: logLevel, message: String(message) })
    )
    const result = yield* effect.pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, capture)),
      Logger.withMinimumLogLevel(LogLevel.Debug)
    )
    return { result, lines }
  })

describe("Storage: a restore on a new machine", () => {
  it.live("opening an empty directory over a bucket that has the log reads it back and warns of nothing", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
        Effect.gen(function*() {
          for (let index = 0; index < 50; index++) {
            yield* applyRecord(storage, index)
            yield* storage.append(recordOf(index))
          }
          yield* storage.commit
        }))
      const { lines, result } = yield* capturingLogs(
        H.withStorage(
          bucket,
          yield* H.makeDisk,
          (storage) =>
            Effect.forEach(
              Array.from({ length: 50 }, (_, index) => index),
              (index) =>
                Effect.map(storage.read(fileA, index * pageBytes, pageBytes), (bytes) =>
                  H.pattern(index + 1, pageBytes).every((byte, at) => bytes[at] === byte))
            )
        )
      )
      assert.isTrue(result.every((intact) => intact), "every page written before is read back")
      const warnings = lines.filter((line) => LogLevel.greaterThanEqual(line.level, LogLevel.Warning))
      assert.deepStrictEqual(warnings.map((line) => line.message), [])
      assert.isTrue(
        lines.some((line) => line.message.includes("the local log is empty")),
        lines.map((line) => line.message).join("\n")
      )
    }))
})
