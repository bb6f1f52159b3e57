/**
 * Goal: a garbage-collection pass deletes only what nothing can still need, and deletes nothing
 * when it cannot read everything (fail closed), when its writer is fenced, or in a dry run.
 * Method: checkpoints written by hand (parts, file manifests, root manifests, as the Checkpointer
 * writes them) into an in-memory bucket on the TestClock, behind the fault decorator; `collect`
 * runs over it with a fixed policy; the bucket's keys before and after say what happened.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Exit, Option, Ref, TestClock } from "effect"
import { Fenced } from "../../src/domain/Errors.js"
import * as Ids from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as Lease from "../../src/domain/Lease.js"
import * as Manifest from "../../src/domain/Manifest.js"
import * as FaultyObjectStore from "../../src/layers/FaultyObjectStore.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as GarbageCollector from "../../src/services/GarbageCollector.js"
import type { ObjectStoreService } from "../../src/services/ObjectStore.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"

const layout = KeyLayout.make("")
const fileA = Ids.fileId("db/a")
const instanceId = Ids.InstanceId.make("i0000000000000001")
const hourMs = 3_600_000
const config = Either.getOrThrow(
  StorageConfig.validate({ partSizeBytes: 4096, walSegmentBytes: 16_384, readerLeaseSkewMs: 0 })
)
const encoder = new TextEncoder()

/** The objects of one checkpoint as the Checkpointer writes them: part 0 new at N, part 1 from 1. */
const commit = (store: ObjectStoreService, checkpoint: number, walPosition: number) =>
  Effect.gen(function*() {
    const n = Ids.CheckpointNumber.make(checkpoint)
    const parts: Array<Manifest.PartEntry> = []
    for (const [part, at] of [[0, checkpoint], [1, 1]] as const) {
      const bytes = encoder.encode(`part ${part} at ${at}`)
      const sha = Manifest.sha256Hex(bytes)
      const partAt = Ids.CheckpointNumber.make(at)
      if (at === checkpoint) {
        yield* store.put(KeyLayout.partKey(layout, partAt, fileA, Ids.PartIndex.make(part), sha), bytes)
      }
      parts.push([Ids.PartIndex.make(part), partAt, sha, bytes.length])
    }
    const fileManifest = Manifest.encodeFileManifest({
      format: Manifest.fileManifestFormat,
      instanceId,
      checkpoint: n,
      file: fileA,
      parts
    })
    const fileSha = Manifest.sha256Hex(fileManifest)
    yield* store.put(KeyLayout.fileManifestKey(layout, n, fileA, fileSha), fileManifest)
    const root: Manifest.CheckpointManifest = {
      format: Manifest.checkpointManifestFormat,
      instanceId,
      epoch: Ids.Epoch.make(1),
      checkpoint: n,
      previous: Ids.CheckpointNumber.make(checkpoint - 1),
      createdAtMs: yield* TestClock.currentTimeMillis,
      partSizeBytes: 4096,
      walSegmentBytes: 16_384,
      walPosition: Ids.Lsn.make(walPosition),
      files: [{ file: fileA, manifestCheckpoint: n, manifestSha256: fileSha, partCount: 2, sizeBytes: 20 }]
    }
    yield* store.put(KeyLayout.checkpointKey(layout, n), Manifest.encodeCheckpointManifest(root), { ifNoneMatch: true })
  })

/** A bucket with checkpoints 1..count, one hour apart, and one WAL segment per checkpoint. */
const seeded = (count: number) =>
  Effect.gen(function*() {
    const { bucket, store: inner } = yield* MemoryObjectStore.make()
    const { controller, store } = yield* FaultyObjectStore.make(inner)
    for (let checkpoint = 1; checkpoint <= count; checkpoint++) {
      yield* inner.put(
        KeyLayout.walKey(layout, Ids.SegmentNumber.make(checkpoint - 1), Ids.Epoch.make(1)),
        new Uint8Array(16)
      )
      yield* commit(inner, checkpoint, checkpoint * 16_384)
      yield* TestClock.adjust(hourMs)
    }
    return { bucket, inner, store, controller }
  })

const policy = { retainCheckpointsMin: 2, retainForMs: 0 }

const rootOf = (bucket: MemoryObjectStore.MemoryBucketService, checkpoint: number) =>
  Effect.map(
    bucket.read(KeyLayout.checkpointKey(layout, Ids.CheckpointNumber.make(checkpoint))),
    (bytes) =>
      Option.map(bytes, (value) =>
        Either.getOrThrow(Manifest.decodeRootObject("root", value, Ids.CheckpointNumber.make(checkpoint)))._tag)
  )

/** Every object checkpoint N needs is in the bucket (its root manifest as read now, or as given:
 * an expired checkpoint's tombstone no longer lists them). */
const assertRestorable = (
  bucket: MemoryObjectStore.MemoryBucketService,
  store: ObjectStoreService,
  checkpoint: number,
  rootBytes?: Uint8Array
) =>
  Effect.gen(function*() {
    const keys = new Set(yield* bucket.keys)
    const bytes = rootBytes ??
      (yield* store.get(KeyLayout.checkpointKey(layout, Ids.CheckpointNumber.make(checkpoint))))
    const root = Either.getOrThrow(
      Manifest.decodeCheckpointManifest("root", bytes, Ids.CheckpointNumber.make(checkpoint))
    )
    for (const entry of root.files) {
      const key = KeyLayout.fileManifestKey(layout, entry.manifestCheckpoint, entry.file, entry.manifestSha256)
      const manifest = Either.getOrThrow(
        Manifest.decodeFileManifest(key, yield* store.get(key), {
          file: entry.file,
          sha256: entry.manifestSha256,
          partSizeBytes: 4096
        })
      )
      for (const [part, at, sha] of manifest.parts) {
        assert.isTrue(
          keys.has(KeyLayout.partKey(layout, at, entry.file, part, sha)),
          `checkpoint ${checkpoint} lacks part ${part}@${at}`
        )
      }
    }
  })

const writeLease = (store: ObjectStoreService, id: string, checkpoint: number, expiresAtMs: number) =>
  store.put(
    KeyLayout.leaseKey(layout, id),
    Lease.encode({
      format: Lease.leaseFormat,
      id,
      checkpoint: Ids.CheckpointNumber.make(checkpoint),
      holder: "test",
      createdAtMs: 0,
      expiresAtMs
    })
  )

describe("GarbageCollector.collect", () => {
  it.effect("keeps every object a retained checkpoint names, expires the rest and deletes their objects", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* seeded(5)
      const report = yield* GarbageCollector.collect(store, config, { policy, minAgeMs: 0 })
      assert.deepStrictEqual(report.retained.map((row) => row.checkpoint), [4, 5])
      assert.deepStrictEqual(report.expiredNow, [1, 2, 3])
      // Parts 0 of 1..3 and their file manifests go; part 1 (written at 1) stays: 4 and 5 name it.
      assert.deepStrictEqual(report.deleted.part.objects, 3)
      assert.deepStrictEqual(report.deleted["file-manifest"].objects, 3)
      // WAL below checkpoint 4's position (4 segments of 16 KiB) goes, but for the one ending there.
      assert.strictEqual(report.walFloorLsn, 4 * 16_384)
      assert.strictEqual(report.deleted.wal.objects, 4)
      for (const checkpoint of [4, 5]) yield* assertRestorable(bucket, store, checkpoint)
      for (const checkpoint of [1, 2, 3]) {
        assert.deepStrictEqual(yield* rootOf(bucket, checkpoint), Option.some("Expired"))
      }
      // A second pass finds nothing more to do.
      const again = yield* GarbageCollector.collect(store, config, { policy, minAgeMs: 0 })
      assert.strictEqual(
        again.deleted.part.objects + again.deleted["file-manifest"].objects + again.deleted.wal.objects,
        0
      )
      assert.strictEqual(again.expiredBefore, 3)
    }))

  it.effect("an expired checkpoint's number can never be committed again", () =>
    Effect.gen(function*() {
      const { store } = yield* seeded(4)
      yield* GarbageCollector.collect(store, config, { policy, minAgeMs: 0 })
      const again = yield* Effect.exit(commit(store, 1, 0))
      assert.isTrue(Exit.isFailure(again))
      assert.include(JSON.stringify(again), "PreconditionFailed")
    }))

  it.effect("objects above the latest committed number survive: a commit in flight", () =>
    Effect.gen(function*() {
      const { bucket, store, inner } = yield* seeded(4)
      const upload = KeyLayout.partKey(
        layout,
        Ids.CheckpointNumber.make(5),
        fileA,
        Ids.PartIndex.make(0),
        Manifest.sha256Hex(encoder.encode("y"))
      )
      const pendingManifest = KeyLayout.fileManifestKey(
        layout,
        Ids.CheckpointNumber.make(5),
        fileA,
        Manifest.sha256Hex(encoder.encode("m5"))
      )
      yield* inner.put(upload, encoder.encode("y"))
      yield* inner.put(pendingManifest, encoder.encode("m5"))
      yield* TestClock.adjust(10 * hourMs)
      const report = yield* GarbageCollector.collect(store, config, { policy, minAgeMs: 0 })
      const keys = yield* bucket.keys
      assert.include(keys, upload)
      assert.include(keys, pendingManifest)
      assert.isAtLeast(report.kept["in-flight"].objects, 2)
    }))

  it.effect("what failed attempts at the latest checkpoint number uploaded and its root does not name goes", () =>
    Effect.gen(function*() {
      const { bucket, store, inner } = yield* seeded(4)
      const failedAttempts = [
        ...["m4a", "m4b", "m4c"].map((content) =>
          KeyLayout.fileManifestKey(
            layout,
            Ids.CheckpointNumber.make(4),
            fileA,
            Manifest.sha256Hex(encoder.encode(content))
          )
        ),
        KeyLayout.partKey(
          layout,
          Ids.CheckpointNumber.make(4),
          fileA,
          Ids.PartIndex.make(7),
          Manifest.sha256Hex(encoder.encode("x"))
        )
      ]
      for (const key of failedAttempts) yield* inner.put(key, encoder.encode(key))
      yield* TestClock.adjust(10 * hourMs)
      const report = yield* GarbageCollector.collect(store, config, { policy, minAgeMs: 0 })
      const keys = yield* bucket.keys
      for (const key of failedAttempts) assert.notInclude(keys, key)
      assert.isAtLeast(report.deleted["file-manifest"].objects, 3)
      assert.isAtLeast(report.deleted.part.objects, 1)
      yield* assertRestorable(bucket, store, 4)
      yield* assertRestorable(bucket, store, 3)
    }))

  it.effect("objects younger than the minimum age survive, and go once they are old enough", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* seeded(4)
      const before = (yield* bucket.keys).length
      // The objects of checkpoint 1 are 4 h old, of 2: 3 h, of 3: 2 h.
      const young = yield* GarbageCollector.collect(store, config, { policy, minAgeMs: 3 * hourMs + 1 })
      assert.strictEqual(young.deleted.part.objects, 1, "only checkpoint 1's part is old enough")
      assert.strictEqual(young.kept.young.objects > 0, true)
      assert.strictEqual((yield* bucket.keys).length, before - 1 - 1 - young.deleted.wal.objects)
      yield* TestClock.adjust(2 * hourMs)
      const old = yield* GarbageCollector.collect(store, config, { policy, minAgeMs: 3 * hourMs + 1 })
      assert.strictEqual(old.deleted.part.objects, 1, "checkpoint 2's part is old enough now")
    }))

  it.effect("a dry run writes and deletes nothing, and says what a pass would delete", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* seeded(5)
      yield* writeLease(store, "gone", 1, 0)
      const before = yield* bucket.snapshot
      const dry = yield* GarbageCollector.collect(store, config, { policy, minAgeMs: 0, dryRun: true })
      assert.deepStrictEqual(yield* bucket.snapshot, before)
      assert.deepStrictEqual(dry.expiredNow, [1, 2, 3])
      const real = yield* GarbageCollector.collect(store, config, { policy, minAgeMs: 0 })
      assert.deepStrictEqual(real.deleted, dry.deleted)
      assert.strictEqual(dry.deleted.lease.objects, 1)
    }))

  it.effect("a live lease keeps its checkpoint; once it expires, the checkpoint and the lease go", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* seeded(5)
      const now = yield* TestClock.currentTimeMillis
      yield* writeLease(store, "reader-1", 2, now + 60_000)
      const held = yield* GarbageCollector.collect(store, config, { policy, minAgeMs: 0 })
      assert.deepStrictEqual(held.expiredNow, [1, 3])
      assert.deepStrictEqual(held.retained.find((row) => row.checkpoint === 2)?.reasons, ["lease"])
      assert.strictEqual(held.walFloorLsn, 2 * 16_384, "the WAL from the leased checkpoint on stays")
      yield* assertRestorable(bucket, store, 2)
      yield* TestClock.adjust(61_000)
      const released = yield* GarbageCollector.collect(store, config, { policy, minAgeMs: 0 })
      assert.deepStrictEqual(released.expiredNow, [2])
      assert.strictEqual(released.deleted.lease.objects, 1)
      assert.notInclude(yield* bucket.keys, KeyLayout.leaseKey(layout, "reader-1"))
      assert.deepStrictEqual(yield* rootOf(bucket, 2), Option.some("Expired"))
    }))

  it.effect("a lease written while the pass writes its tombstones keeps the checkpoint, in that pass and the next", () =>
    Effect.gen(function*() {
      const { bucket, store, inner } = yield* seeded(5)
      const now = yield* TestClock.currentTimeMillis
      const rootOfTwo = yield* store.get(KeyLayout.checkpointKey(layout, Ids.CheckpointNumber.make(2)))
      // A reader writes its lease on 2 (and reads its root manifest) right as the pass expires 2.
      const racing: ObjectStoreService = {
        ...store,
        put: (key, bytes, options) =>
          key === KeyLayout.checkpointKey(layout, Ids.CheckpointNumber.make(2))
            ? Effect.zipRight(writeLease(inner, "racer", 2, now + 60_000), store.put(key, bytes, options))
            : store.put(key, bytes, options)
      }
      const first = yield* GarbageCollector.collect(racing, config, { policy, minAgeMs: 0 })
      assert.deepStrictEqual(first.expiredNow, [1, 2, 3])
      assert.deepStrictEqual(yield* rootOf(bucket, 2), Option.some("Expired"))
      const tombstone = Either.getOrThrow(
        Manifest.decodeRootObject(
          "root",
          Option.getOrThrow(yield* bucket.read(KeyLayout.checkpointKey(layout, Ids.CheckpointNumber.make(2)))),
          Ids.CheckpointNumber.make(2)
        )
      )
      assert.strictEqual(tombstone._tag, "Expired")
      assert.isBelow(
        Option.getOrThrow(yield* bucket.read(KeyLayout.checkpointKey(layout, Ids.CheckpointNumber.make(2)))).length,
        400,
        "a tombstone stays small whatever the checkpoint named"
      )
      assert.strictEqual(first.deleted.part.objects, 2, "checkpoint 2's part stays")
      const cache = yield* GarbageCollector.makeExpiredCache
      const second = yield* GarbageCollector.collect(store, config, { policy, minAgeMs: 0, expiredCache: cache })
      assert.strictEqual(second.deleted.part.objects, 0, "the next pass keeps it too, while the lease lives")
      assert.strictEqual(second.deleted["file-manifest"].objects, 0)
      assert.isAbove(second.kept["held-by-lease"].objects, 0)
      yield* assertRestorable(bucket, store, 2, rootOfTwo)
      yield* TestClock.adjust(61_000 + config.readerLeaseSkewMs)
      const lapsed = yield* GarbageCollector.collect(store, config, { policy, minAgeMs: 0, expiredCache: cache })
      assert.isAbove(lapsed.deleted.part.objects, 0, "once the lease lapses, checkpoint 2's objects go")
    }))
})

describe("GarbageCollector.collect fails closed", () => {
  const failsAndDeletesNothing = (
    damage: (context: Effect.Effect.Success<ReturnType<typeof seeded>>) => Effect.Effect<unknown, unknown>,
    stage: string
  ) =>
    Effect.gen(function*() {
      const context = yield* seeded(5)
      yield* damage(context)
      const before = new Set(yield* context.bucket.keys)
      const result = yield* Effect.either(GarbageCollector.collect(context.store, config, { policy, minAgeMs: 0 }))
      assert.isTrue(Either.isLeft(result), "the pass fails")
      if (Either.isLeft(result)) {
        assert.strictEqual(result.left._tag, "GcFailed")
        assert.include(result.left.message, stage)
      }
      const after = new Set(yield* context.bucket.keys)
      for (const key of before) assert.isTrue(after.has(key), `${key} was deleted`)
    })

  it.effect("a failed listing of data/ deletes nothing", () =>
    failsAndDeletesNothing(
      ({ controller }) => controller.failPermanently({ operations: ["list"], keyPrefix: "data/" }),
      "data/"
    ))

  it.effect("a corrupt root manifest deletes nothing", () =>
    failsAndDeletesNothing(
      ({ inner }) =>
        inner.put(KeyLayout.checkpointKey(layout, Ids.CheckpointNumber.make(3)), encoder.encode("{not json")),
      "checkpoints/"
    ))

  it.effect("an undecodable lease deletes nothing", () =>
    failsAndDeletesNothing(
      ({ inner }) => inner.put(KeyLayout.leaseKey(layout, "broken"), encoder.encode("{}")),
      "leases/broken"
    ))

  it.effect("a missing file manifest of a retained checkpoint deletes nothing", () =>
    failsAndDeletesNothing(
      ({ bucket }) =>
        Effect.flatMap(bucket.keys, (keys) =>
          bucket.remove(
            keys.find((key) => key.startsWith("manifests/0000000000000005/"))!
          )),
      "manifests/"
    ))

  it.effect("a failed read of a file manifest deletes nothing", () =>
    failsAndDeletesNothing(
      ({ controller }) => controller.failPermanently({ operations: ["get"], keyPrefix: "manifests/" }),
      "manifests/"
    ))
})

describe("GarbageCollector.collect under a fence", () => {
  const fenceAfter = (checksAllowed: number) =>
    Effect.map(Ref.make(0), (count): GarbageCollector.GcFence => {
      const check = Effect.flatMap(
        Ref.getAndUpdate(count, (n) => n + 1),
        (n) => (n < checksAllowed ? Effect.void : Effect.fail(new Fenced({ epoch: 1, detail: "taken over" })))
      )
      return {
        check,
        ensureNotFenced: Effect.flatMap(
          Ref.get(count),
          (n) => (n <= checksAllowed ? Effect.void : Effect.fail(new Fenced({ epoch: 1, detail: "taken over" })))
        )
      }
    })

  it.effect("a fenced writer writes and deletes nothing", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* seeded(5)
      const before = yield* bucket.snapshot
      const result = yield* Effect.either(
        GarbageCollector.collect(store, config, { policy, minAgeMs: 0, fence: yield* fenceAfter(0) })
      )
      assert.isTrue(Either.isLeft(result) && result.left._tag === "Fenced")
      assert.deepStrictEqual(yield* bucket.snapshot, before)
    }))

  it.effect("a writer fenced after its tombstones deletes nothing: the lock is checked again before the deletes", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* seeded(5)
      const before = new Set(yield* bucket.keys)
      const result = yield* Effect.either(
        GarbageCollector.collect(store, config, { policy, minAgeMs: 0, fence: yield* fenceAfter(2) })
      )
      assert.isTrue(Either.isLeft(result) && result.left._tag === "Fenced")
      assert.deepStrictEqual(new Set(yield* bucket.keys), before)
    }))
})
