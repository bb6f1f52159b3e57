/**
 * Goal: what the local data directory's own faults can do to acknowledged data, end to end through
 * the Storage layer. A page write torn by a full disk must never reach the bucket nor be served
 * (the acknowledged page it half overwrote comes back); a part file that rots after a clean stop
 * must not be taken for newer data (served, checkpointed), but rebuilt from the checkpoint and the
 * WAL. Method: the Storage layer over the in-memory bucket and an in-memory disk behind FaultyDisk
 * (torn writes, bit flips), restarted on the same directory and restored into a fresh one; the
 * application's replay function re-applies its records, as the "apply, then log" rule asks.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Exit, Option } from "effect"
import * as Ids from "../../src/domain/Ids.js"
import * as PartPath from "../../src/domain/PartPath.js"
import * as FaultyDisk from "../../src/layers/FaultyDisk.js"
import type * as Storage from "../../src/layers/Storage.js"
import * as WalArchiver from "../../src/services/WalArchiver.js"
import * as H from "../support/StorageHarness.js"

const fileA = Ids.fileId("db/a")
const partSizeBytes = 16 * 1024
const pageBytes = 8192
const config = { partSizeBytes }

/** A page write as the application logs it: "<page index> <pattern seed>". */
const encoder = new TextEncoder()
const decoder = new TextDecoder()
const pageOf = (seed: number) => H.pattern(seed, pageBytes)
const insert = (storage: Storage.StorageService, page: number, seed: number) =>
  Effect.gen(function*() {
    yield* storage.write(fileA, page * pageBytes, pageOf(seed))
    yield* storage.append(encoder.encode(`${page} ${seed}`))
    yield* storage.commit
  })
const replay: Storage.StorageOptions["replay"] = (record, storage) => {
  const [page = 0, seed = 0] = decoder.decode(record.bytes).split(" ").map(Number)
  return storage.write(fileA, page * pageBytes, pageOf(seed))
}

const faultyDisk = Effect.gen(function*() {
  const memory = yield* H.makeDisk
  const faulty = yield* FaultyDisk.make(memory.disk, { seed: 5 })
  return { disk: { disk: faulty.disk, control: memory.control } satisfies H.Disk, faults: faulty.faults }
})

const readPage = (storage: Storage.StorageService, page: number) => storage.read(fileA, page * pageBytes, pageBytes)

describe("Storage: local disk faults", () => {
  it.live("a page write torn by a full disk is neither checkpointed nor served; the acknowledged page comes back", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const { disk, faults } = yield* faultyDisk
      yield* H.withStorage(bucket, disk, (storage) =>
        Effect.gen(function*() {
          yield* insert(storage, 1, 100) // acknowledged
          assert.strictEqual((yield* storage.checkpoint).outcome, "completed")
          yield* faults.fillAfter(4096, { pathPrefix: "parts/" })
          const torn = yield* Effect.exit(storage.write(fileA, pageBytes, pageOf(200)))
          yield* faults.heal
          assert.isTrue(Exit.isFailure(torn), "the write that ran out of space fails")
          assert.strictEqual((yield* faults.stats).tornWrites, 1)
          const served = yield* Effect.exit(readPage(storage, 1))
          assert.isFalse(Exit.isSuccess(served) && !sameBytes(served.value, pageOf(100)), "a torn page is never served")
          yield* storage.shutdown
        }), config)
      // Restart on the same directory: the part is rebuilt from the checkpoint and the WAL.
      yield* H.withStorage(
        bucket,
        disk,
        (storage) =>
          Effect.gen(function*() {
            assert.deepStrictEqual(yield* readPage(storage, 1), pageOf(100))
            yield* insert(storage, 0, 300)
            assert.strictEqual((yield* storage.checkpoint).outcome, "completed")
          }),
        config,
        { replay }
      )
      // The bucket alone: never a torn page.
      yield* H.withStorage(
        bucket,
        yield* H.makeDisk,
        (storage) =>
          Effect.gen(function*() {
            assert.deepStrictEqual(yield* readPage(storage, 1), pageOf(100))
            assert.deepStrictEqual(yield* readPage(storage, 0), pageOf(300))
          }),
        config,
        { replay }
      )
    }))

  it.live("a part file that rots after a clean stop is rebuilt from the checkpoint and the WAL, never checkpointed", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const { disk, faults } = yield* faultyDisk
      yield* H.withStorage(
        bucket,
        disk,
        (storage) =>
          Effect.gen(function*() {
            yield* insert(storage, 0, 1) // part 0, checkpointed
            assert.strictEqual((yield* storage.checkpoint).outcome, "completed")
            yield* insert(storage, 2, 2) // part 1, only in the WAL: the shutdown checkpoint cannot commit
            yield* bucket.faults.failPermanently({ operations: ["put"], keyPrefix: "checkpoints/" })
            const report = yield* storage.shutdown
            assert.strictEqual(report.finalCheckpoint.outcome, "failed")
          }),
        config,
        { replay }
      )
      yield* bucket.faults.heal
      // Bit rot in both part files while the store is stopped.
      for (const index of [0, 1]) {
        assert.isTrue(
          (yield* faults.flipByte(PartPath.partPath(fileA, Ids.partIndex(index)), { offset: 100 }))._tag === "Some"
        )
      }
      yield* H.withStorage(
        bucket,
        disk,
        (storage) =>
          Effect.gen(function*() {
            assert.deepStrictEqual(
              yield* readPage(storage, 0),
              pageOf(1),
              "the checkpointed part comes back from the bucket"
            )
            assert.deepStrictEqual(yield* readPage(storage, 2), pageOf(2), "the part only in the WAL is replayed")
            assert.strictEqual((yield* storage.checkpoint).outcome, "completed")
          }),
        config,
        { replay }
      )
      yield* H.withStorage(
        bucket,
        yield* H.makeDisk,
        (storage) =>
          Effect.gen(function*() {
            assert.deepStrictEqual(yield* readPage(storage, 0), pageOf(1))
            assert.deepStrictEqual(yield* readPage(storage, 2), pageOf(2))
          }),
        config,
        { replay }
      )
    }))

  it.live("a flipped byte in the last acknowledged WAL record after a clean stop is refused at every open, never cut", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const { disk, faults } = yield* faultyDisk
      const stopped = yield* H.withStorage(
        bucket,
        disk,
        (storage) =>
          Effect.gen(function*() {
            yield* insert(storage, 0, 1) // acknowledged, only in the local WAL: nothing reaches the bucket
            yield* bucket.faults.failPermanently({ operations: ["put"], keyPrefix: "wal/" })
            yield* bucket.faults.failPermanently({ operations: ["put"], keyPrefix: "checkpoints/" })
            return yield* storage.shutdown
          }),
        config,
        { replay }
      )
      assert.isDefined(stopped.wal.localOnly, "the record is only local")
      yield* bucket.faults.heal
      yield* disk.control.crash // a power loss after the clean stop: only synced bytes (the control file's record) remain
      const walPath = WalArchiver.localSegmentPath(0)
      const sizeBytes = Option.getOrThrow(yield* disk.disk.size(walPath))
      assert.isTrue(Option.isSome(yield* faults.flipByte(walPath, { offset: sizeBytes - 2 })))
      for (const attempt of [1, 2]) {
        const reopened = yield* Effect.either(H.withStorage(bucket, disk, () => Effect.void, config, { replay }))
        assert.isTrue(Either.isLeft(reopened), `open ${attempt} must refuse`)
        if (Either.isLeft(reopened)) assert.strictEqual(reopened.left._tag, "WalCorrupt", `open ${attempt}`)
      }
      assert.deepStrictEqual(yield* disk.disk.size(walPath), Option.some(sizeBytes), "nothing is cut")
    }))
})

const sameBytes = (left: Uint8Array, right: Uint8Array): boolean =>
  left.length === right.length && left.every((byte, index) => byte === right[index])
