/**
 * Goal: a point-in-time restore gives exactly the records below its target, from the right base,
 * and reads the bucket under a lease, writing nothing else. Targets: the latest state, a
 * checkpoint, an LSN between checkpoints and past the last one, a time between two marks; targets
 * outside what the bucket keeps (an expired checkpoint, an LSN or a time before the oldest kept
 * checkpoint, an LSN past the archived WAL) are refused with one line naming the window. The lease
 * is written before the base's root manifest is read and deleted at the end; a checkpoint
 * tombstoned under the reader is refused. Method: a real Storage writes records (record i writes
 * page i, apply then log) over three phases with a checkpoint after each of the first two, into an
 * in-memory bucket; restores run into fresh in-memory disks over a recording view of the bucket.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Exit, Layer, Ref, Stream } from "effect"
import * as Ids from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as Manifest from "../../src/domain/Manifest.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as Restore from "../../src/layers/Restore.js"
import type * as Storage from "../../src/layers/Storage.js"
import { ObjectStore, type ObjectStoreService } from "../../src/services/ObjectStore.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as H from "../support/StorageHarness.js"

const fileA = Ids.fileId("db/a")
const pageBytes = 64
const pages = 60
const encoder = new TextEncoder()
const decoder = new TextDecoder()
const layout = KeyLayout.make("")

const recordOf = (index: number): Uint8Array => encoder.encode(`${index}`.padStart(40, " "))
const indexOf = (bytes: Uint8Array): number => Number(decoder.decode(bytes).trim())
const writePage = (write: Restore.RestoredData["write"], index: number) =>
  write(fileA, index * pageBytes, H.pattern(index + 1, pageBytes))

/** What the bucket was built with: per record, its LSN and the time read after its commit. */
interface Built {
  readonly lsns: ReadonlyArray<number>
  readonly committedAtMs: ReadonlyArray<number>
  readonly checkpoints: ReadonlyArray<number>
}

/**
 * Records 0-19, checkpoint 1; records 20-39 (2 ms apart, a time mark after each), checkpoint 2;
 * records 40-59; then a clean shutdown (its checkpoint 3 covers the rest).
 */
const build = (bucket: H.Bucket) =>
  Effect.gen(function*() {
    const disk = yield* H.makeDisk
    const lsns: Array<number> = []
    const committedAtMs: Array<number> = []
    const checkpoints: Array<number> = []
    yield* H.withStorage(bucket, disk, (storage: Storage.StorageService) =>
      Effect.gen(function*() {
        for (let index = 0; index < pages; index++) {
          yield* writePage(storage.write, index)
          lsns.push(yield* storage.append(recordOf(index)))
          yield* storage.commit
          committedAtMs.push(yield* Clock.currentTimeMillis)
          if (index >= 19 && index < 40) yield* Effect.sleep(2) // time passes between marks
          if (index === 19 || index === 39) {
            const report = yield* storage.checkpoint
            if (report.outcome === "completed") checkpoints.push(report.checkpoint)
          }
        }
      }), { walTimeMarkIntervalMs: 1 })
    return { lsns, committedAtMs, checkpoints } satisfies Built
  })

type Operation = readonly [operation: "get" | "put" | "delete" | "list" | "head" | "getRange", key: string]

/** The bucket as a reader sees it, recording every operation in order. */
const recording = (
  bucket: H.Bucket,
  log: Ref.Ref<ReadonlyArray<Operation>>,
  afterLeasePut: Effect.Effect<void> = Effect.void
): ObjectStoreService => {
  const store = MemoryObjectStore.storeOf(bucket.state)
  const note = (operation: Operation[0], key: string) => Ref.update(log, (list) => [...list, [operation, key] as const])
  return {
    ...store,
    get: (key) => Effect.zipRight(note("get", key), store.get(key)),
    getRange: (key, offset, length) => Effect.zipRight(note("getRange", key), store.getRange(key, offset, length)),
    head: (key) => Effect.zipRight(note("head", key), store.head(key)),
    put: (key, bytes, options) =>
      Effect.zipRight(note("put", key), store.put(key, bytes, options)).pipe(
        Effect.zipLeft(key.startsWith("leases/") ? afterLeasePut : Effect.void)
      ),
    delete: (key) => Effect.zipRight(note("delete", key), store.delete(key)),
    list: (prefix) => Stream.unwrap(Effect.as(note("list", prefix), store.list(prefix)))
  }
}

const restoreConfig = StorageConfig.layer({ ...H.testConfig, readerLeaseMs: 1_000 })

/** Restores `target` into a fresh disk; returns which pages hold their record, and the operations. */
const restoreTo = (bucket: H.Bucket, target: Restore.RestoreTarget, afterLeasePut?: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const log = yield* Ref.make<ReadonlyArray<Operation>>([])
    const store = recording(bucket, log, afterLeasePut)
    const result = yield* Effect.scoped(
      Effect.gen(function*() {
        const restored = yield* Restore.open({
          target,
          holder: "test",
          replay: (record, data) => writePage(data.write, indexOf(record.bytes))
        })
        const present: Array<number> = []
        for (let index = 0; index < pages; index++) {
          const bytes = yield* restored.read(fileA, index * pageBytes, pageBytes)
          const expected = H.pattern(index + 1, pageBytes)
          if (expected.every((byte, at) => bytes[at] === byte)) present.push(index)
          else assert.isTrue(bytes.every((byte) => byte === 0), `page ${index} holds neither its record nor zeros`)
        }
        return { present, summary: restored.summary }
      })
    ).pipe(
      Effect.provide(Layer.mergeAll(restoreConfig, Layer.succeed(ObjectStore, store), MemoryDisk.layer))
    )
    return { ...result, operations: yield* Ref.get(log) }
  })

/** What the collector writes over checkpoint N's root manifest when it expires it. */
const tombstone = (bucket: H.Bucket, checkpoint: number) =>
  Effect.gen(function*() {
    const number = Ids.CheckpointNumber.make(checkpoint)
    const key = KeyLayout.checkpointKey(layout, number)
    const root = yield* Effect.flatMap(MemoryObjectStore.storeOf(bucket.state).get(key), (bytes) =>
      Manifest.decodeCheckpointManifest(key, bytes, number))
    yield* bucket.inspect.write(key, Manifest.encodeExpiredCheckpoint(Manifest.expiredCheckpointOf(root, 0)))
    return root
  }).pipe(Effect.orDie)

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, index) => from + index)
const refusalOf = (exit: Exit.Exit<unknown, unknown>) => {
  assert.isTrue(Exit.isFailure(exit), "the restore was refused")
  const error = Exit.isFailure(exit) && exit.cause._tag === "Fail"
    ? (exit.cause.error as { _tag?: string; reason?: string; message?: string })
    : undefined
  assert.strictEqual(error?._tag, "RestoreRefused", String(exit))
  return { reason: error?.reason, message: error?.message ?? "" }
}

describe("Restore", () => {
  it.live("restores exactly the records below each target: latest, a checkpoint, an LSN, a time", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const built = yield* build(bucket)
      assert.deepStrictEqual(built.checkpoints, [1, 2])
      const lsnOf = (index: number) => built.lsns[index] ?? 0

      const latest = yield* restoreTo(bucket, Restore.latest)
      assert.deepStrictEqual(latest.present, range(0, 60))

      const second = yield* restoreTo(bucket, Restore.checkpoint(2))
      assert.deepStrictEqual(second.present, range(0, 40))
      assert.strictEqual(second.summary.checkpoint, 2)
      assert.strictEqual(second.summary.records, 0)

      // Between checkpoints 1 and 2: base 1, records 20-29 replayed.
      const between = yield* restoreTo(bucket, Restore.lsn(lsnOf(30)))
      assert.deepStrictEqual(between.present, range(0, 30))
      assert.strictEqual(between.summary.checkpoint, 1)
      assert.strictEqual(between.summary.records, 10)
      assert.strictEqual(between.summary.walToLsn, lsnOf(30))

      // After checkpoint 2, with 40-44 replayed from the WAL.
      const after = yield* restoreTo(bucket, Restore.lsn(lsnOf(45)))
      assert.deepStrictEqual(after.present, range(0, 45))
      assert.strictEqual(after.summary.checkpoint, 2)

      // A time: the mark written with record 29's commit is the last at or before it.
      const atTime = yield* restoreTo(bucket, Restore.time(built.committedAtMs[29] ?? 0))
      assert.deepStrictEqual(atTime.present, range(0, 30))
      assert.strictEqual(atTime.summary.checkpoint, 1)
    }))

  it.live("writes the lease before it reads the base's root manifest, reads nothing unprotected after, and deletes it", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* build(bucket)
      for (const target of [Restore.latest, Restore.checkpoint(2)]) {
        const { operations } = yield* restoreTo(bucket, target)
        const leasePut = operations.findIndex(([operation, key]) => operation === "put" && key.startsWith("leases/"))
        assert.isAtLeast(leasePut, 0, JSON.stringify(operations))
        const rootKey = KeyLayout.checkpointKey(layout, Ids.CheckpointNumber.make(target._tag === "Latest" ? 3 : 2))
        const rootRead = operations.findIndex(([operation, key]) => operation === "get" && key === rootKey)
        assert.isAbove(rootRead, leasePut, "the root manifest is read after the lease is written")
        const firstDataRead = operations.findIndex(([operation, key]) =>
          operation === "get" && (key.startsWith("manifests/") || key.startsWith("data/") || key.startsWith("wal/"))
        )
        assert.isAbove(firstDataRead, leasePut)
        // Nothing is written but the lease, and the lease is deleted at the end.
        const writes = operations.filter(([operation]) => operation === "put" || operation === "delete")
        assert.isTrue(writes.every(([, key]) => key === operations[leasePut]?.[1]), JSON.stringify(writes))
        assert.deepStrictEqual(writes.at(-1), ["delete", operations[leasePut]?.[1] ?? ""])
      }
      assert.deepStrictEqual((yield* bucket.inspect.keys).filter((key) => key.startsWith("leases/")), [])
    }))

  it.live("refuses targets outside what the bucket keeps, with one line naming the window", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const built = yield* build(bucket)
      // The collector expired checkpoint 1: its root manifest is now a tombstone.
      yield* tombstone(bucket, 1)
      const two = yield* Effect.flatMap(
        MemoryObjectStore.storeOf(bucket.state).get(KeyLayout.checkpointKey(layout, Ids.CheckpointNumber.make(2))),
        (bytes) => Manifest.decodeCheckpointManifest("two", bytes, Ids.CheckpointNumber.make(2))
      )
      const window = `(oldest restorable: checkpoint 2, ${
        new Date(two.createdAtMs).toISOString()
      }, LSN ${two.walPosition})`

      const expired = refusalOf(yield* Effect.exit(restoreTo(bucket, Restore.checkpoint(1))))
      assert.strictEqual(expired.reason, "Expired")
      assert.include(expired.message, "checkpoint 1 is outside the retention window")
      assert.include(expired.message, window)
      assert.notInclude(expired.message, "\n")

      const missing = refusalOf(yield* Effect.exit(restoreTo(bucket, Restore.checkpoint(9))))
      assert.strictEqual(missing.reason, "OutsideWindow")

      const early = refusalOf(yield* Effect.exit(restoreTo(bucket, Restore.lsn(built.lsns[30] ?? 0))))
      assert.strictEqual(early.reason, "OutsideWindow")
      assert.include(early.message, window)

      const before = refusalOf(yield* Effect.exit(restoreTo(bucket, Restore.time(built.committedAtMs[25] ?? 0))))
      assert.strictEqual(before.reason, "OutsideWindow")

      const beyond = refusalOf(yield* Effect.exit(restoreTo(bucket, Restore.lsn(10_000_000))))
      assert.strictEqual(beyond.reason, "BeyondArchive")
      assert.include(beyond.message, "beyond the archived WAL's end")
      // Every refusal deleted its lease, if it wrote one.
      assert.deepStrictEqual((yield* bucket.inspect.keys).filter((found) => found.startsWith("leases/")), [])
    }))

  it.live("a checkpoint the collector expires between the choice and the lease is refused, not read", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* build(bucket)
      const exit = yield* Effect.exit(restoreTo(bucket, Restore.checkpoint(2), Effect.asVoid(tombstone(bucket, 2))))
      const refusal = refusalOf(exit)
      assert.strictEqual(refusal.reason, "Expired")
      assert.include(refusal.message, "checkpoint 2 is outside the retention window (it has expired)")
      assert.deepStrictEqual((yield* bucket.inspect.keys).filter((key) => key.startsWith("leases/")), [])
    }))

  it("names the window from the writer's policy: the latest checkpoints kept, the time window, the oldest restorable", () => {
    const manifest = (
      checkpoint: number,
      createdAtMs: number,
      walPosition: number,
      policy: { retainCheckpointsMin?: number; retainForMs?: number } = {}
    ): Manifest.CheckpointManifest => ({
      format: Manifest.checkpointManifestFormat,
      instanceId: Ids.InstanceId.make("i0000000000000001"),
      epoch: Ids.Epoch.make(1),
      checkpoint: Ids.CheckpointNumber.make(checkpoint),
      previous: Ids.CheckpointNumber.make(checkpoint - 1),
      createdAtMs,
      partSizeBytes: 4096,
      walSegmentBytes: 16384,
      walPosition: Ids.Lsn.make(walPosition),
      files: [],
      ...policy
    })
    const oldest = {
      checkpoint: 17,
      object: { _tag: "Committed" as const, manifest: manifest(17, Date.parse("2026-12-06T10:00:00Z"), 12345) }
    }
    assert.strictEqual(
      Restore.describeWindow(manifest(20, 0, 0, { retainCheckpointsMin: 2, retainForMs: 86_400_000 }), oldest),
      "the bucket keeps the 2 latest checkpoints and 24h (oldest restorable: checkpoint 17, 2026-12-06T10:00:00.000Z, LSN 12345)"
    )
    assert.strictEqual(
      Restore.describeWindow(manifest(20, 0, 0, { retainCheckpointsMin: 3, retainForMs: 0 }), oldest),
      "the bucket keeps the 3 latest checkpoints (oldest restorable: checkpoint 17, 2026-12-06T10:00:00.000Z, LSN 12345)"
    )
    assert.include(
      Restore.describeWindow(manifest(20, 0, 0), undefined),
      "names no retention policy (no checkpoint is restorable)"
    )
  })

  it.live("once its lease is lost, the restored state refuses every read", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* build(bucket)
      const store = bucket.faults.wrap(MemoryObjectStore.storeOf(bucket.state))
      const exit = yield* Effect.scoped(
        Effect.gen(function*() {
          const restored = yield* Restore.open({
            holder: "test",
            replay: (record, data) => writePage(data.write, indexOf(record.bytes))
          })
          yield* restored.read(fileA, 0, pageBytes)
          // The bucket stops taking the lease's renewals: within its 1 s life, the lease is lost.
          yield* bucket.faults.failPermanently({ operations: ["put"], keyPrefix: "leases/" })
          yield* Effect.exit(restored.readerLease.guard(Effect.never))
          return yield* Effect.exit(restored.read(fileA, 0, pageBytes))
        })
      ).pipe(Effect.provide(Layer.mergeAll(restoreConfig, Layer.succeed(ObjectStore, store), MemoryDisk.layer)))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
      assert.strictEqual((error as { _tag?: string } | undefined)?._tag, "ReaderLeaseLost", String(exit))
    }))
})
