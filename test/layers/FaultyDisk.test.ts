/**
 * Goal: the fault-injecting disk keeps the LocalDisk contract when no fault is set (shared suite),
 * and each fault does exactly what a real disk does: a full disk tears the write that crosses the
 * limit (its first bytes land, the rest do not) and refuses the later ones; an atomic write that
 * does not fit leaves its target as it was; a failed sync leaves the bytes unsynced (a crash of the
 * MemoryDisk below loses them); a flipped byte survives a crash; the seed decides the offset; a
 * stalled read hangs until interrupted and then lands late, in the buffer it was given; a stalled
 * write lands its hold late, its caller waiting whether interrupted or not, and nothing else waits; a slow
 * sync or atomic write takes its latency of simulated time, and nothing else is slowed; under
 * `slowAll` every operation does.
 * Method: FaultyDisk over a MemoryDisk, inspected through the MemoryDisk's control handle.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Fiber, Layer, Option, TestClock } from "effect"
import * as FaultyDisk from "../../src/layers/FaultyDisk.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import { LocalDisk } from "../../src/services/LocalDisk.js"
import { localDiskSuite } from "./LocalDiskSuite.js"

const filled = (length: number, value: number): Uint8Array => new Uint8Array(length).fill(value)

const makeFaulty = (seed = 0) =>
  Effect.flatMap(
    MemoryDisk.make,
    (memory) => Effect.map(FaultyDisk.make(memory.disk, { seed }), (faulty) => ({ ...faulty, memory: memory.control }))
  )

describe("FaultyDisk", () => {
  describe("LocalDisk contract (no fault set)", () => {
    localDiskSuite(Effect.map(makeFaulty(), ({ disk }) => disk))
  })

  it.effect("fillAfter: the write that crosses the limit is torn, later ones write nothing, other paths are not hit", () =>
    Effect.gen(function*() {
      const { disk, faults } = yield* makeFaulty()
      yield* disk.write("parts/a", 0, filled(8192, 1))
      yield* faults.fillAfter(4096 + 100, { pathPrefix: "parts/" })
      yield* disk.write("parts/a", 8192, filled(100, 2)) // fits
      const torn = yield* Effect.either(disk.write("parts/a", 0, filled(8192, 3)))
      assert.isTrue(Either.isLeft(torn) && torn.left._tag === "LocalIoError" && torn.left.detail.startsWith("ENOSPC"))
      const after = Option.getOrThrow(yield* disk.readAll("parts/a"))
      assert.deepStrictEqual(after.subarray(0, 4096), filled(4096, 3)) // the first 4 KiB landed
      assert.deepStrictEqual(after.subarray(4096, 8192), filled(4096, 1)) // the rest did not
      const nothing = yield* Effect.either(disk.write("parts/a", 0, filled(1, 4)))
      assert.isTrue(Either.isLeft(nothing))
      assert.strictEqual(Option.getOrThrow(yield* disk.readAll("parts/a"))[0], 3)
      yield* disk.write("wal/1", 0, filled(10, 5)) // not under parts/
      assert.deepStrictEqual(yield* faults.stats, {
        noSpaceWrites: 2,
        tornWrites: 1,
        failedSyncs: 0,
        flippedBytes: 0,
        stalledReads: 0,
        lateReads: 0,
        stalledWrites: 0,
        slowedCalls: 0
      })
      yield* faults.heal
      yield* disk.write("parts/a", 0, filled(1, 6))
    }))

  it.effect("fillAfter: an atomic write that does not fit leaves its target unchanged", () =>
    Effect.gen(function*() {
      const { disk, faults } = yield* makeFaulty()
      yield* disk.writeAtomic("control.json", filled(10, 1))
      yield* faults.fillAfter(5)
      assert.isTrue(Either.isLeft(yield* Effect.either(disk.writeAtomic("control.json", filled(10, 2)))))
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("control.json")), filled(10, 1))
    }))

  it.effect("failSync: the next n syncs fail, the bytes stay unsynced and a crash below loses them", () =>
    Effect.gen(function*() {
      const { disk, faults, memory } = yield* makeFaulty()
      yield* disk.write("wal/1", 0, filled(4, 1))
      yield* disk.sync("wal/1")
      yield* disk.write("wal/1", 4, filled(4, 2))
      yield* faults.failSync(2, { pathPrefix: "wal/" })
      yield* disk.write("other", 0, filled(1, 1))
      yield* disk.sync("other") // not hit
      const failed = yield* Effect.either(disk.sync("wal/1"))
      assert.isTrue(Either.isLeft(failed) && failed.left.detail.startsWith("EIO"))
      assert.isTrue(Either.isLeft(yield* Effect.either(disk.sync("wal/1"))))
      yield* memory.crash
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("wal/1")), filled(4, 1))
      yield* disk.write("wal/1", 4, filled(4, 2))
      yield* disk.sync("wal/1") // the third one passes
      assert.strictEqual((yield* faults.stats).failedSyncs, 2)
    }))

  it.effect("stallReads: a matching read hangs until interrupted, then lands in its buffer as the next read returns", () =>
    Effect.gen(function*() {
      const { disk, faults } = yield* makeFaulty()
      yield* disk.write("parts/a", 0, filled(8, 1))
      yield* disk.write("parts/b", 0, filled(8, 2))
      yield* faults.stallReads(1, { pathPrefix: "parts/a" })
      const abandoned = new Uint8Array(8)
      const stalled = yield* Effect.fork(disk.readAllInto("parts/a", abandoned))
      yield* Effect.yieldNow()
      assert.isNull(stalled.unsafePoll(), "the stalled read hangs")
      yield* Fiber.interrupt(stalled)
      yield* disk.write("parts/a", 0, filled(8, 3))
      assert.deepStrictEqual(abandoned, new Uint8Array(8), "nothing lands before the next read returns")
      const other = new Uint8Array(8)
      assert.deepStrictEqual(yield* disk.readAllInto("parts/b", other), Option.some(8), "other reads pass")
      assert.deepStrictEqual(other, filled(8, 2))
      assert.deepStrictEqual(abandoned, filled(8, 3), "the abandoned read landed: the file's bytes of then")
      yield* faults.stallReads(1)
      yield* faults.heal
      assert.deepStrictEqual(yield* disk.readAllInto("parts/a", other), Option.some(8), "heal ends the stalls")
      const stats = yield* faults.stats
      assert.deepStrictEqual([stats.stalledReads, stats.lateReads], [1, 1])
    }))

  it.effect("stallWrites: a matching write lands its hold late, even when its caller is interrupted; others do not wait", () =>
    Effect.gen(function*() {
      const { disk, faults } = yield* makeFaulty()
      yield* faults.stallWrites(2, 1_000, { pathPrefix: "parts/" })
      const held = yield* Effect.fork(disk.write("parts/a", 0, filled(8, 1)))
      yield* disk.write("wal/1", 0, filled(8, 2)) // not under parts/: at once
      yield* disk.write("parts/b", 0, filled(8, 3)).pipe(Effect.fork) // the second held write
      yield* TestClock.adjust(999)
      assert.isTrue(Option.isNone(yield* disk.readAll("parts/a")), "not landed at 999 ms")
      const interrupting = yield* Effect.fork(Fiber.interrupt(held))
      yield* TestClock.adjust(1)
      yield* Fiber.join(interrupting)
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("parts/a")), filled(8, 1), "landed at 1000 ms")
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("parts/b")), filled(8, 3))
      yield* disk.write("parts/c", 0, filled(8, 4)) // the count is spent: at once
      yield* faults.stallWrites(1, 1_000)
      yield* faults.heal
      yield* disk.write("parts/c", 0, filled(8, 5)) // healed: at once
      assert.strictEqual((yield* faults.stats).stalledWrites, 2)
    }))

  it.effect("stallWrites holds atomic writes and removes too, their callers waiting even when interrupted", () =>
    Effect.gen(function*() {
      const { disk, faults } = yield* makeFaulty()
      yield* disk.write("parts/r", 0, filled(8, 9))
      yield* faults.stallWrites(2, 1_000)
      const atomic = yield* Effect.fork(disk.writeAtomic("control.json", filled(4, 1)))
      const removal = yield* Effect.fork(disk.remove("parts/r"))
      yield* TestClock.adjust(500)
      const interrupting = yield* Effect.fork(Effect.zip(Fiber.interrupt(atomic), Fiber.interrupt(removal)))
      yield* TestClock.adjust(499)
      assert.isTrue(Option.isNone(yield* Fiber.poll(interrupting)), "the callers wait for their changes")
      assert.isTrue(Option.isNone(yield* disk.readAll("control.json")), "not landed at 999 ms")
      assert.isTrue(Option.isSome(yield* disk.readAll("parts/r")), "not removed at 999 ms")
      yield* TestClock.adjust(1)
      yield* Fiber.join(interrupting)
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("control.json")), filled(4, 1), "landed at 1000 ms")
      assert.isTrue(Option.isNone(yield* disk.readAll("parts/r")), "removed at 1000 ms")
      assert.strictEqual((yield* faults.stats).stalledWrites, 2)
    }))

  it.effect("slowSyncs: a matching sync or atomic write waits its latency, then does its work; others and healed ones do not wait", () =>
    Effect.gen(function*() {
      const { disk, faults, memory } = yield* makeFaulty()
      yield* disk.write("wal/1", 0, filled(10, 1))
      yield* faults.slowSyncs(300, { pathPrefix: "wal/" })
      const syncing = yield* Effect.fork(disk.sync("wal/1"))
      yield* TestClock.adjust(299)
      assert.isTrue(Option.isNone(yield* Fiber.poll(syncing)), "the sync still waits at 299 ms")
      yield* memory.crash
      assert.isTrue(Option.isNone(yield* disk.readAll("wal/1")), "not synced before its latency passed")
      yield* disk.write("wal/1", 0, filled(10, 1))
      const writing = yield* Effect.fork(disk.writeAtomic("wal/mark", filled(4, 2)))
      yield* TestClock.adjust(1)
      yield* Fiber.join(syncing)
      assert.isTrue(Option.isNone(yield* Fiber.poll(writing)))
      yield* TestClock.adjust(300)
      yield* Fiber.join(writing)
      yield* memory.crash
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("wal/1")), filled(10, 1))
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("wal/mark")), filled(4, 2))
      yield* disk.writeAtomic("control.json", filled(4, 3)) // not under wal/: at once
      assert.strictEqual((yield* faults.stats).slowedCalls, 2)
      yield* faults.heal
      yield* disk.sync("wal/1") // healed: at once
      assert.strictEqual((yield* faults.stats).slowedCalls, 2)
    }))

  it.effect("slowAll: reads and writes wait their latency too; under slowSyncs they do not", () =>
    Effect.gen(function*() {
      const { disk, faults } = yield* makeFaulty()
      yield* disk.write("parts/a", 0, filled(8, 1))
      yield* faults.slowSyncs(200)
      yield* disk.read("parts/a", 0, 8) // not a sync: at once
      yield* faults.slowAll(200, { pathPrefix: "parts/" })
      const reading = yield* Effect.fork(disk.read("parts/a", 0, 8))
      yield* TestClock.adjust(199)
      assert.isTrue(Option.isNone(yield* Fiber.poll(reading)), "the read still waits at 199 ms")
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(yield* Fiber.join(reading), filled(8, 1))
      const writing = yield* Effect.fork(disk.write("parts/a", 0, filled(8, 2)))
      yield* TestClock.adjust(199)
      assert.isTrue(Option.isNone(yield* Fiber.poll(writing)), "the write still waits at 199 ms")
      yield* TestClock.adjust(1)
      yield* Fiber.join(writing)
      yield* disk.write("wal/1", 0, filled(1, 3)) // not under parts/: at once
      assert.strictEqual((yield* faults.stats).slowedCalls, 2)
      yield* faults.heal
      assert.deepStrictEqual(yield* disk.read("parts/a", 0, 8), filled(8, 2))
    }))

  it.effect("flipByte: flips one byte durably, at a seeded offset unless given one", () =>
    Effect.gen(function*() {
      const first = yield* makeFaulty(7)
      const second = yield* makeFaulty(7)
      for (const { disk } of [first, second]) yield* disk.writeAtomic("parts/p", filled(1000, 0x0f))
      const offset = Option.getOrThrow(yield* first.faults.flipByte("parts/p"))
      assert.strictEqual(Option.getOrThrow(yield* second.faults.flipByte("parts/p")), offset)
      yield* first.memory.crash
      const bytes = Option.getOrThrow(yield* first.disk.readAll("parts/p"))
      assert.strictEqual(bytes[offset], 0xf0)
      assert.strictEqual(bytes.filter((byte) => byte !== 0x0f).length, 1)
      yield* first.faults.flipByte("parts/p", { offset: 3, mask: 0x01 })
      assert.strictEqual(Option.getOrThrow(yield* first.disk.readAll("parts/p"))[3], 0x0e)
      assert.isTrue(Option.isNone(yield* first.faults.flipByte("missing")))
      assert.strictEqual((yield* first.faults.stats).flippedBytes, 2)
    }))

  it.effect("layer decorates the LocalDisk below it and keeps MemoryDiskControl beside it", () =>
    Effect.gen(function*() {
      const faults = yield* FaultyDisk.DiskFaults
      const disk = yield* LocalDisk
      const control = yield* MemoryDisk.MemoryDiskControl
      yield* faults.fillAfter(0)
      assert.isTrue(Either.isLeft(yield* Effect.either(disk.write("x", 0, filled(1, 1)))))
      assert.strictEqual((yield* control.stats).files, 0)
    }).pipe(Effect.provide(FaultyDisk.layer().pipe(Layer.provideMerge(MemoryDisk.layer)))))
})
