/**
 * Goal: the evictor keeps local part bytes within `localBytesMax` without ever losing a byte: like
 * the original's test_s3_data_eviction, three times the budget written locally ends at or below
 * the budget on disk and every byte reads back identical (reloaded from the bucket); a dirty part
 * is never evicted (its upload failing keeps it local); the sweep never waits on the queue holding
 * a lease; the periodic fiber starts with its scope, runs on demand, and stops.
 * Method: the PartTable harness (real queue and workers, in-memory disk and bucket) on the
 * TestClock, moving the clock by the eviction interval; one test on a real directory through
 * @effect/platform (live clock), where eviction must free the space of the files for real.
 */
import { FileSystem } from "@effect/platform"
import { NodeFileSystem, NodePath } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Scope, TestClock } from "effect"
import * as PartPath from "../../src/domain/PartPath.js"
import * as FileSystemDisk from "../../src/layers/FileSystemDisk.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as Evictor from "../../src/services/Evictor.js"
import * as Hasher from "../../src/services/Hasher.js"
import { LocalDisk } from "../../src/services/LocalDisk.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import * as PartTable from "../../src/services/PartTable.js"
import * as S3Workers from "../../src/services/S3Workers.js"
import { StorageConfig } from "../../src/services/StorageConfig.js"
import * as TaskQueue from "../../src/services/TaskQueue.js"
import * as WaitRegistry from "../../src/services/WaitRegistry.js"
import { file, type Harness, makeHarness, settle, settleUntil, testConfig } from "../support/PartTableHarness.js"

const fa = file("table/rows")

/** Part i's content: distinct per part and per byte, never all zeros. */
const contentOf = (index: number, size: number): Uint8Array =>
  Uint8Array.from({ length: size }, (_, offset) => ((index * 131 + offset * 7) % 251) + 1)

const startEvictor = (h: Harness) =>
  Evictor.make.pipe(Effect.provideService(StorageConfig, h.config), Effect.provideService(PartTable.PartTable, h.parts))

describe("Evictor", () => {
  it.scoped("test_s3_data_eviction: 3× the budget written, local bytes fall to the budget, every byte reads back identical", () =>
    Effect.gen(function*() {
      const h = yield* makeHarness({ config: { localBytesMax: 8 * 4096, evictionIntervalMs: 100 } })
      const evictor = yield* startEvictor(h)
      const size = h.config.partSizeBytes
      const partCount = 24 // three times the 8-part budget
      for (let index = 0; index < partCount; index++) yield* h.parts.write(fa, index * size, contentOf(index, size))
      assert.strictEqual(yield* h.disk.usedBytes(PartPath.partsDirectory), partCount * size)
      // The periodic fiber: each interval sweeps (scheduling write-back of dirty parts, then
      // evicting the clean, cold ones) until the budget holds.
      let intervals = 0
      for (; intervals < 20; intervals++) {
        if ((yield* h.parts.stats).loadedBytes <= h.config.localBytesMax) break
        yield* TestClock.adjust(h.config.evictionIntervalMs)
        yield* settle(h)
      }
      assert.isAtMost(intervals, 5)
      assert.isAtMost((yield* h.parts.stats).loadedBytes, h.config.localBytesMax)
      assert.isAtMost(yield* h.disk.usedBytes(PartPath.partsDirectory), h.config.localBytesMax)
      const stats = yield* evictor.stats
      assert.isAtLeast(stats.evictedParts, partCount - 8)
      assert.strictEqual(stats.scheduledUploads, partCount)
      // Every byte is still readable, the evicted parts reloaded from the bucket.
      for (let index = 0; index < partCount; index++) {
        assert.deepStrictEqual(yield* h.parts.read(fa, index * size, size), contentOf(index, size))
      }
      assert.isAtLeast(h.control.gets, partCount - 8)
      assert.deepStrictEqual(yield* h.parts.invariantProblems, [])
    }))

  it.scoped("a dirty part is never evicted: with every upload failing, nothing leaves the disk", () =>
    Effect.gen(function*() {
      const h = yield* makeHarness({ config: { localBytesMax: 2 * 4096 } })
      const evictor = yield* startEvictor(h)
      const size = h.config.partSizeBytes
      for (let index = 0; index < 6; index++) yield* h.parts.write(fa, index * size, contentOf(index, size))
      h.control.failPuts = 1_000
      for (let sweep = 0; sweep < 5; sweep++) {
        const report = yield* evictor.runNow
        assert.strictEqual(report.evictedParts, 0)
        yield* settle(h)
      }
      assert.deepInclude(yield* h.parts.stats, { dirty: 6, loaded: 6, loadedBytes: 6 * size })
      assert.strictEqual(yield* h.disk.usedBytes(PartPath.partsDirectory), 6 * size)
      assert.isAtLeast(h.control.puts, 6)
      // The store heals: the owed uploads go out on the next sweeps, and eviction proceeds.
      h.control.failPuts = 0
      for (let sweep = 0; sweep < 4; sweep++) {
        yield* evictor.runNow
        yield* settle(h)
      }
      assert.isAtMost((yield* h.parts.stats).loadedBytes, h.config.localBytesMax)
      for (let index = 0; index < 6; index++) {
        assert.deepStrictEqual(yield* h.parts.read(fa, index * size, size), contentOf(index, size))
      }
      assert.deepStrictEqual(yield* h.parts.invariantProblems, [])
    }))

  it.scoped("a sweep blocked on a full queue holds no lease and is interruptible; stop ends the periodic fiber", () =>
    Effect.gen(function*() {
      // One worker stuck in an upload, a one-task queue: the sweep's third enqueue waits for room.
      const h = yield* makeHarness({ config: { localBytesMax: 4096, queueCapacity: 1, workerCount: 1 } })
      const evictor = yield* startEvictor(h)
      assert.isTrue(yield* evictor.alive)
      const size = h.config.partSizeBytes
      for (let index = 0; index < 4; index++) yield* h.parts.write(fa, index * size, contentOf(index, size))
      h.control.putGate = yield* Deferred.make<void>()
      const sweep = yield* Effect.fork(evictor.runNow)
      assert.isTrue(yield* settleUntil(Effect.map(h.queue.stats, (stats) => stats.waitingProducers === 1)))
      // Blocked on the queue, and holding nothing: a lease of any part is granted at once.
      assert.strictEqual((yield* h.parts.stats).leasesHeld, 0)
      assert.deepStrictEqual(yield* h.parts.read(fa, 3 * size, 4), contentOf(3, size).subarray(0, 4))
      // The periodic fiber stops on demand; an on-demand sweep blocked on the queue is interruptible.
      yield* evictor.stop
      assert.isFalse(yield* evictor.alive)
      yield* Fiber.interrupt(sweep)
      assert.strictEqual((yield* h.queue.stats).waitingProducers, 0)
      yield* Deferred.succeed(h.control.putGate, undefined)
      h.control.putGate = undefined
      yield* settle(h)
      // The interrupted sweep left the part it was scheduling owed: a later sweep re-enqueues it.
      for (let sweep = 0; sweep < 4; sweep++) {
        yield* evictor.runNow
        yield* settle(h)
      }
      assert.deepInclude(yield* h.parts.stats, { dirty: 0, leasesHeld: 0 })
      assert.isAtMost((yield* h.parts.stats).loadedBytes, h.config.localBytesMax)
      assert.deepStrictEqual(yield* h.parts.invariantProblems, [])
    }))

  it.scoped("the periodic fiber sweeps only above the budget and dies with its scope", () =>
    Effect.gen(function*() {
      const h = yield* makeHarness({ config: { localBytesMax: 4 * 4096, evictionIntervalMs: 50 } })
      const scope = yield* Scope.make()
      const evictor = yield* startEvictor(h).pipe(Scope.extend(scope))
      yield* h.parts.write(fa, 0, contentOf(0, 4096))
      yield* TestClock.adjust(500)
      assert.strictEqual((yield* evictor.stats).sweeps, 0) // under budget: no sweep at all
      for (let index = 1; index < 6; index++) yield* h.parts.write(fa, index * 4096, contentOf(index, 4096))
      yield* TestClock.adjust(50)
      assert.strictEqual((yield* evictor.stats).sweeps, 1)
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(yield* evictor.alive)
      yield* settle(h)
    }))

  it.scopedLive("on a real directory, eviction unlinks part files and frees their space", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const root = yield* fs.makeTempDirectoryScoped({ prefix: "evictor-" })
      const config = testConfig({ localBytesMax: 4 * 4096, workerCount: 2 })
      const services = Layer.mergeAll(
        Layer.succeed(StorageConfig, config),
        FileSystemDisk.layerNode({ root }),
        Layer.effect(ObjectStore, Effect.map(MemoryObjectStore.make(), ({ store }) => store)),
        WaitRegistry.layer,
        Hasher.layer.pipe(Layer.provide(Layer.succeed(StorageConfig, config)))
      )
      const stack = Layer.provideMerge(
        Layer.provideMerge(
          PartTable.layer,
          Layer.provideMerge(S3Workers.layer, Layer.provideMerge(TaskQueue.layer, services))
        ),
        services
      )
      yield* Effect.gen(function*() {
        const parts = yield* PartTable.PartTable
        const queue = yield* TaskQueue.TaskQueue
        const disk = yield* LocalDisk
        const size = config.partSizeBytes
        for (let index = 0; index < 12; index++) yield* parts.write(fa, index * size, contentOf(index, size))
        const files = (yield* fs.readDirectory(`${root}/parts/${encodeURIComponent(fa)}`)).length
        assert.strictEqual(files, 12)
        for (let sweep = 0; sweep < 4 && (yield* parts.stats).loadedBytes > config.localBytesMax; sweep++) {
          yield* parts.evict
          yield* queue.awaitIdle
        }
        // The file system itself says so: the evicted files are gone, their bytes with them.
        const left = yield* fs.readDirectory(`${root}/parts/${encodeURIComponent(fa)}`)
        assert.strictEqual(left.length, 4)
        let bytesOnDisk = 0
        for (const name of left) {
          bytesOnDisk += Number((yield* fs.stat(`${root}/parts/${encodeURIComponent(fa)}/${name}`)).size)
        }
        assert.isAtMost(bytesOnDisk, config.localBytesMax)
        assert.strictEqual(yield* disk.usedBytes(PartPath.partsDirectory), bytesOnDisk)
        for (let index = 0; index < 12; index++) {
          assert.deepStrictEqual(yield* parts.read(fa, index * size, size), contentOf(index, size))
        }
        assert.deepStrictEqual(yield* parts.invariantProblems, [])
      }).pipe(Effect.provide(stack))
    }).pipe(Effect.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer))))
})
