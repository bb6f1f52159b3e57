/**
 * Goal: the counting decorator counts every request by operation and key kind, the bytes put and
 * got, and a listing's ListObjectsV2 pages; `diff` gives what happened between two snapshots. The
 * metered store counts every request in `object_store_requests` by operation, outcome and instance,
 * and Storage meters the store it is given.
 * Method: the decorator over the in-memory bucket, known requests, exact counts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Stream } from "effect"
import * as Ids from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as CountingObjectStore from "../../src/layers/CountingObjectStore.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as Storage from "../../src/layers/Storage.js"
import * as MetricsInstance from "../../src/services/MetricsInstance.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"

const layout = KeyLayout.make("db")
const sha = Ids.Sha256Hex.make("a".repeat(64))
const partKey = KeyLayout.partKey(layout, Ids.CheckpointNumber.make(1), Ids.fileId("f"), Ids.PartIndex.make(0), sha)

describe("CountingObjectStore", () => {
  it.effect("counts requests by operation and key kind, with the bytes put and got", () =>
    Effect.gen(function*() {
      const { store: inner } = yield* MemoryObjectStore.make()
      const counter = yield* CountingObjectStore.makeCounter
      const store = CountingObjectStore.decorate(inner, counter, layout)
      yield* store.put(partKey, new Uint8Array(100))
      yield* store.put(KeyLayout.lockKey(layout), new Uint8Array(7))
      const before = yield* counter.snapshot
      assert.strictEqual((yield* store.get(partKey)).length, 100)
      assert.strictEqual((yield* store.getRange(partKey, 90, 50)).length, 10)
      yield* store.head(KeyLayout.lockKey(layout))
      yield* store.delete(KeyLayout.walKey(layout, Ids.SegmentNumber.make(3)))
      // A failed request was still sent: counted, with no bytes got.
      const missing = yield* Effect.flip(store.get(KeyLayout.checkpointKey(layout, Ids.CheckpointNumber.make(9))))
      assert.strictEqual(missing._tag, "ObjectNotFound")
      const after = yield* counter.snapshot
      assert.deepStrictEqual(before.total, { ...CountingObjectStore.emptyCounts, put: 2, bytesPut: 107 })
      assert.deepStrictEqual(before.byKind.part, { ...CountingObjectStore.emptyCounts, put: 1, bytesPut: 100 })
      assert.deepStrictEqual(before.byKind.lock, { ...CountingObjectStore.emptyCounts, put: 1, bytesPut: 7 })
      const between = CountingObjectStore.diff(after, before)
      assert.deepStrictEqual(between.total, {
        ...CountingObjectStore.emptyCounts,
        get: 2,
        getRange: 1,
        head: 1,
        delete: 1,
        bytesGot: 110
      })
      assert.deepStrictEqual(between.byKind.part, {
        ...CountingObjectStore.emptyCounts,
        get: 1,
        getRange: 1,
        bytesGot: 110
      })
      assert.deepStrictEqual(between.byKind.lock, { ...CountingObjectStore.emptyCounts, head: 1 })
      assert.deepStrictEqual(between.byKind.wal, { ...CountingObjectStore.emptyCounts, delete: 1 })
      assert.deepStrictEqual(between.byKind.checkpoint, { ...CountingObjectStore.emptyCounts, get: 1 })
      assert.strictEqual(CountingObjectStore.requestsOf(between.total), 5)
    }))

  it.effect("counts a listing once and its pages at 1000 keys a page, as far as it was read", () =>
    Effect.gen(function*() {
      const { store: inner, bucket } = yield* MemoryObjectStore.make()
      for (let index = 0; index < 2500; index++) {
        yield* inner.put(`db/wal/${String(index).padStart(6, "0")}`, new Uint8Array(1))
      }
      yield* inner.put("db/checkpoints/0000000000000001", new Uint8Array(1))
      assert.strictEqual((yield* bucket.keys).length, 2501)
      const counter = yield* CountingObjectStore.makeCounter
      const store = CountingObjectStore.decorate(inner, counter, layout)
      assert.strictEqual(yield* Stream.runCount(store.list(KeyLayout.walPrefix(layout))), 2500)
      assert.strictEqual(yield* Stream.runCount(store.list(KeyLayout.checkpointsPrefix(layout))), 1)
      assert.strictEqual(yield* Stream.runCount(store.list("db/nothing/")), 0)
      // Read in part: only the pages reached.
      assert.strictEqual(yield* Stream.runCount(Stream.take(store.list(KeyLayout.walPrefix(layout)), 1001)), 1001)
      const counts = yield* counter.snapshot
      assert.deepStrictEqual(counts.byKind.wal, { ...CountingObjectStore.emptyCounts, list: 2, listPages: 3 + 2 })
      assert.deepStrictEqual(counts.byKind.checkpoint, { ...CountingObjectStore.emptyCounts, list: 1, listPages: 1 })
      assert.deepStrictEqual(counts.byKind.other, { ...CountingObjectStore.emptyCounts, list: 1, listPages: 1 })
      assert.strictEqual(counts.total.listPages, 7)
    }))

  it.effect("the metered store counts each request by operation and outcome under its instance", () =>
    Effect.gen(function*() {
      const { store: inner } = yield* MemoryObjectStore.make()
      const store = CountingObjectStore.metered(inner, "metered-unit")
      const count = (operation: CountingObjectStore.StoreOperation, outcome: CountingObjectStore.RequestOutcome) =>
        CountingObjectStore.requestCount(operation, outcome, "metered-unit")
      yield* store.put("a", new Uint8Array(3))
      yield* store.put("a", new Uint8Array(3), { ifNoneMatch: true }).pipe(Effect.ignore)
      yield* store.get("a")
      yield* store.get("missing").pipe(Effect.ignore)
      yield* Stream.runDrain(store.list(""))
      const counts = yield* Effect.all([
        count("put", "Success"),
        count("put", "PreconditionFailed"),
        count("get", "Success"),
        count("get", "NotFound"),
        count("list", "Success")
      ])
      assert.deepStrictEqual(counts, [1, 1, 1, 1, 1])
      assert.strictEqual(yield* CountingObjectStore.requestCount("put", "Success"), 0)
    }))

  it.scopedLive("Storage meters the store it is given, under the MetricsInstance it is provided", () =>
    Effect.gen(function*() {
      const before = yield* CountingObjectStore.requestCount("put", "Success", "metered-storage")
      yield* Layer.build(
        Storage.layer().pipe(
          Layer.provide(MemoryObjectStore.layer),
          Layer.provide(MemoryDisk.layer),
          Layer.provide(StorageConfig.layer({ checkpointIntervalMs: 0 })),
          Layer.provide(MetricsInstance.layer("metered-storage"))
        )
      )
      // Opening a fresh bucket writes at least the lock and the first checkpoint.
      assert.isAbove((yield* CountingObjectStore.requestCount("put", "Success", "metered-storage")) - before, 0)
    }))
})
