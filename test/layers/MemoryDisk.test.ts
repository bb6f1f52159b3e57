/**
 * Goal: the in-memory disk keeps the LocalDisk contract (shared suite) and models what tests need
 * of a real disk: a crash loses exactly the writes not synced (files never synced vanish, synced
 * files revert to their synced bytes, `writeAtomic` survives), syncs are counted, and an injected
 * failure hits exactly the next matching operation. Method: the contract suite, then direct checks
 * through the control handle.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Option } from "effect"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import { LocalDisk } from "../../src/services/LocalDisk.js"
import { localDiskSuite } from "./LocalDiskSuite.js"

const bytesOf = (...values: Array<number>): Uint8Array => Uint8Array.from(values)

describe("MemoryDisk", () => {
  describe("LocalDisk contract", () => {
    localDiskSuite(Effect.map(MemoryDisk.make, ({ disk }) => disk))
  })

  it.effect("a crash keeps synced and atomically written bytes and loses the rest", () =>
    Effect.gen(function*() {
      const { control, disk } = yield* MemoryDisk.make
      yield* disk.write("synced", 0, bytesOf(1, 2, 3))
      yield* disk.sync("synced")
      yield* disk.write("synced", 3, bytesOf(4, 5)) // appended after the sync: lost
      yield* disk.write("synced", 0, bytesOf(9)) // overwritten after the sync: reverted
      yield* disk.write("never-synced", 0, bytesOf(7))
      yield* disk.writeAtomic("atomic", bytesOf(8, 8))
      yield* disk.write("atomic", 2, bytesOf(6)) // after the atomic write: lost
      assert.deepStrictEqual(Option.getOrThrow(yield* control.peekDurable("synced")), bytesOf(1, 2, 3))
      yield* control.crash
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("synced")), bytesOf(1, 2, 3))
      assert.isTrue(Option.isNone(yield* disk.readAll("never-synced")))
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("atomic")), bytesOf(8, 8))
      assert.deepStrictEqual(yield* disk.list(""), ["atomic", "synced"])
      // After the crash the disk works as before, and a second crash changes nothing more.
      yield* disk.write("synced", 3, bytesOf(4))
      yield* disk.sync("synced")
      yield* control.crash
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("synced")), bytesOf(1, 2, 3, 4))
    }))

  it.effect("in-place writes after a writeAtomic, a sync or a crash leave the durable bytes alone", () =>
    Effect.gen(function*() {
      // The durable bytes share the file's buffer until its next write (copy on write): each
      // overwrite below fits in the buffer, so only that copy keeps the durable bytes intact.
      const { control, disk } = yield* MemoryDisk.make
      const given = bytesOf(1, 1, 1)
      yield* disk.writeAtomic("atomic", given)
      given[0] = 7 // the caller's buffer is not the file's
      yield* disk.write("atomic", 0, bytesOf(2))
      yield* disk.write("synced", 0, bytesOf(3, 3, 3))
      yield* disk.sync("synced")
      yield* disk.write("synced", 1, bytesOf(4))
      assert.deepStrictEqual(Option.getOrThrow(yield* control.peekDurable("atomic")), bytesOf(1, 1, 1))
      assert.deepStrictEqual(Option.getOrThrow(yield* control.peekDurable("synced")), bytesOf(3, 3, 3))
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("atomic")), bytesOf(2, 1, 1))
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("synced")), bytesOf(3, 4, 3))
      yield* control.crash
      // After a crash the file is its durable bytes again; a write then a second crash reverts it.
      yield* disk.write("atomic", 2, bytesOf(5))
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("atomic")), bytesOf(1, 1, 5))
      yield* control.crash
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("atomic")), bytesOf(1, 1, 1))
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("synced")), bytesOf(3, 3, 3))
    }))

  it.effect("a removed file does not come back after a crash", () =>
    Effect.gen(function*() {
      const { control, disk } = yield* MemoryDisk.make
      yield* disk.writeAtomic("gone", bytesOf(1))
      yield* disk.remove("gone")
      yield* control.crash
      assert.isTrue(Option.isNone(yield* disk.readAll("gone")))
    }))

  it.effect("counts syncs, in total and per path", () =>
    Effect.gen(function*() {
      const { control, disk } = yield* MemoryDisk.make
      yield* disk.write("a", 0, bytesOf(1))
      yield* disk.write("b", 0, bytesOf(1))
      yield* disk.sync("a")
      yield* disk.sync("a")
      yield* disk.sync("b")
      yield* disk.writeAtomic("c", bytesOf(1))
      yield* Effect.either(disk.sync("missing")) // a failed sync is counted, and not per path
      const stats = yield* control.stats
      assert.strictEqual(stats.syncs, 4)
      assert.strictEqual(stats.atomicWrites, 1)
      assert.strictEqual(stats.writes, 2)
      assert.strictEqual(stats.files, 3)
      assert.strictEqual(stats.bytes, 3)
      assert.deepStrictEqual(Array.from((yield* control.syncsByPath).entries()).sort(), [["a", 2], ["b", 1]])
    }))

  it.effect("an injected failure hits the next matching operation once, and leaves the file unchanged", () =>
    Effect.gen(function*() {
      const { control, disk } = yield* MemoryDisk.make
      yield* disk.write("wal/1", 0, bytesOf(1))
      yield* control.failNext({ operation: "sync", pathPrefix: "wal/", detail: "disk on fire" })
      yield* disk.sync("other-path-is-not-hit").pipe(Effect.either) // missing file: its own error
      yield* disk.write("x", 0, bytesOf(1))
      yield* disk.sync("x") // not under wal/: not hit
      const failed = yield* Effect.either(disk.sync("wal/1"))
      assert.isTrue(Either.isLeft(failed))
      if (Either.isLeft(failed)) {
        assert.strictEqual(failed.left._tag, "LocalIoError")
        assert.include(failed.left.message, "disk on fire")
      }
      yield* disk.sync("wal/1") // once only
      yield* control.failNext()
      assert.isTrue(Either.isLeft(yield* Effect.either(disk.write("wal/1", 0, bytesOf(2)))))
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("wal/1")), bytesOf(1))
    }))

  it.effect("layerOf shares one disk between layers (a restart over the same files)", () =>
    Effect.gen(function*() {
      const made = yield* MemoryDisk.make
      const layer = MemoryDisk.layerOf(made)
      yield* Effect.flatMap(LocalDisk, (disk) => disk.writeAtomic("control", bytesOf(3))).pipe(Effect.provide(layer))
      const read = yield* Effect.flatMap(LocalDisk, (disk) => disk.readAll("control")).pipe(Effect.provide(layer))
      assert.deepStrictEqual(Option.getOrThrow(read), bytesOf(3))
      assert.strictEqual((yield* made.control.stats).atomicWrites, 1)
    }))
})
