/**
 * Goal: the request budget of the write path. Once a Storage is open, writes, WAL appends and
 * commits, checkpoints, eviction and reloads never LIST the bucket, and a checkpoint sends exactly:
 * one PUT per part that changed since the last checkpoint, one PUT per file whose part map changed
 * (its file manifest), one PUT of the root manifest (the commit), and one GET of the lock (the
 * fencing check that runs beside the file-manifest PUTs); nothing else (no HEAD, no read-back of
 * manifests, no listing). A reload is one GET of the part. A full WAL segment is one PUT after one
 * GET of the lock (the archiver's fencing check). Start-up
 * (lock, listing of root manifests and WAL) is outside the budget: it runs once per open.
 * Method: real time (`it.live`) over the in-memory bucket behind the counting decorator; lock
 * renewal, periodic checkpoints, the periodic evictor and the collector are set far apart or off so
 * that only the requests of what the test does are counted; every checkpoint's requests are
 * compared, by key kind and operation, with the exact expected counts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as Ids from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import { layerWithServices } from "../../src/internal/storageLayer.js"
import * as CountingObjectStore from "../../src/layers/CountingObjectStore.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as Storage from "../../src/layers/Storage.js"
import * as Evictor from "../../src/services/Evictor.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as WalArchiver from "../../src/services/WalArchiver.js"
import * as H from "../support/StorageHarness.js"

const fileA = Ids.fileId("db/a")
const fileB = Ids.fileId("db/b")
const partSize = 4096
const segmentBytes = 16 * 1024
const layout = KeyLayout.make("tier")

const config: Partial<StorageConfig.StorageConfigValue> = {
  ...H.testConfig,
  prefix: layout.prefix,
  partSizeBytes: partSize,
  walSegmentBytes: segmentBytes,
  // Only what the test does: no renewal, no periodic checkpoint, sweep or collection in its time.
  lockRenewIntervalMs: 600_000,
  lockLeaseMs: 1_800_000,
  checkpointIntervalMs: 0,
  evictionIntervalMs: 3_600_000,
  localBytesMax: 4096,
  gcIntervalMs: 0
}

/** Requests by kind and operation, bytes left out; kinds with no request left out. */
type Budget = Partial<
  Record<
    CountingObjectStore.KeyKind,
    Partial<Record<Exclude<keyof CountingObjectStore.RequestCounts, "bytesPut" | "bytesGot">, number>>
  >
>

const requestsByKind = (snapshot: CountingObjectStore.RequestSnapshot): Budget => {
  const budget: Record<string, Record<string, number>> = {}
  for (const kind of CountingObjectStore.keyKinds) {
    for (const [field, value] of Object.entries(snapshot.byKind[kind])) {
      if (field === "bytesPut" || field === "bytesGot" || value === 0) continue
      ;(budget[kind] ??= {})[field] = value
    }
  }
  return budget
}

/** What one checkpoint may send. */
const checkpointBudget = (parts: number, files: number): Budget => ({
  ...(parts > 0 ? { part: { put: parts } } : {}),
  ...(files > 0 ? { "file-manifest": { put: files } } : {}),
  checkpoint: { put: 1 },
  lock: { get: 1 }
})

const open = (
  bucket: MemoryObjectStore.MemoryBucketState,
  disk: H.Disk,
  counter: CountingObjectStore.RequestCounterService
) =>
  Effect.map(
    Layer.build(
      layerWithServices().pipe(
        Layer.provide(
          CountingObjectStore.layer(counter, layout).pipe(Layer.provide(MemoryObjectStore.layerWithBucket(bucket)))
        ),
        Layer.provide(MemoryDisk.layerOf(disk)),
        Layer.provide(StorageConfig.layer(config))
      )
    ),
    (context) => ({
      storage: Context.get(context, Storage.Storage),
      evictor: Context.get(context, Evictor.Evictor),
      wal: Context.get(context, WalArchiver.WalArchiver)
    })
  )

/** The requests `effect` sent, by kind (bytes left out), with its value. */
const counted = <A, E>(counter: CountingObjectStore.RequestCounterService, effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const before = yield* counter.snapshot
    const value = yield* effect
    const sent = CountingObjectStore.diff(yield* counter.snapshot, before)
    return [value, requestsByKind(sent), sent] as const
  })

describe("Storage: the request budget of the write path", () => {
  it.live("after start-up: writes, commits, checkpoints, eviction and reloads send no LIST; a checkpoint sends one PUT per changed part and file manifest, one root PUT and one lock GET", () =>
    Effect.scoped(Effect.gen(function*() {
      const bucket = yield* MemoryObjectStore.makeBucket("requests")
      const counter = yield* CountingObjectStore.makeCounter
      const { storage, evictor, wal } = yield* open(bucket, yield* MemoryDisk.make, counter)
      const afterOpen = yield* counter.snapshot

      // Checkpoint 1: three parts of A and one of B are new; both files get a manifest.
      yield* storage.write(fileA, 0, H.pattern(1, 3 * partSize))
      yield* storage.write(fileB, 100, H.pattern(2, 200))
      yield* storage.append(H.pattern(3, 64))
      yield* storage.commit
      const [first, firstRequests, firstSent] = yield* counted(counter, storage.checkpoint)
      assert.strictEqual(first.partsUploaded, 4)
      assert.deepStrictEqual(firstRequests, checkpointBudget(4, 2))
      // A part is stored up to its file's end: B's one part holds 300 bytes.
      assert.strictEqual(firstSent.byKind.part.bytesPut, 3 * partSize + 300)
      assert.strictEqual(firstSent.byKind.part.bytesPut, first.bytesUploaded)

      // Checkpoint 2: one part of A changed: one part, A's manifest only (B keeps checkpoint 1's).
      yield* storage.write(fileA, partSize + 10, H.pattern(4, 10))
      yield* storage.append(H.pattern(5, 64))
      yield* storage.commit
      const [, secondRequests] = yield* counted(counter, storage.checkpoint)
      assert.deepStrictEqual(secondRequests, checkpointBudget(1, 1))

      // Checkpoint 3: only the WAL moved: no part, no file manifest, the root alone.
      yield* storage.append(H.pattern(6, 64))
      yield* storage.commit
      const [third, thirdRequests] = yield* counted(counter, storage.checkpoint)
      assert.strictEqual(third.outcome, "completed")
      assert.deepStrictEqual(thirdRequests, checkpointBudget(0, 0))

      // Eviction of clean parts sends nothing; a reload is one GET of the part.
      const [evicted, evictRequests] = yield* counted(
        counter,
        Effect.map(
          Effect.replicateEffect(evictor.runNow, 4),
          (reports) => reports.reduce((sum, report) => sum + report.evictedParts, 0)
        )
      )
      assert.deepStrictEqual(evictRequests, {})
      assert.isAbove(evicted, 1)
      const [, reloadRequests] = yield* counted(
        counter,
        Effect.all([storage.read(fileA, 0, 3 * partSize), storage.read(fileB, 0, partSize)])
      )
      assert.deepStrictEqual(reloadRequests, { part: { get: evicted } })

      // Checkpoint 4, after the reload: one part of B changed.
      yield* storage.write(fileB, 0, H.pattern(7, 10))
      const [, fourthRequests] = yield* counted(counter, storage.checkpoint)
      assert.deepStrictEqual(fourthRequests, checkpointBudget(1, 1))

      // A WAL segment that fills is one PUT, after a GET of the lock (the archiver's fencing check),
      // with no listing; beside it the checkpoint's own budget.
      const [, walRequests] = yield* counted(
        counter,
        Effect.gen(function*() {
          for (let record = 0; record < segmentBytes / 512 + 4; record++) {
            yield* storage.append(H.pattern(8 + record, 500))
          }
          yield* storage.commit
          yield* wal.awaitArchived(Ids.lsn(segmentBytes), 5_000)
          yield* storage.checkpoint
        })
      )
      assert.deepStrictEqual(walRequests, { ...checkpointBudget(0, 0), lock: { get: 2 }, wal: { put: 1 } })

      // The whole run after start-up: no listing at all, and no HEAD.
      const total = CountingObjectStore.diff(yield* counter.snapshot, afterOpen).total
      assert.strictEqual(total.list, 0)
      assert.strictEqual(total.listPages, 0)
      assert.strictEqual(total.head, 0)
      assert.strictEqual(total.delete, 0)
    })))
})
