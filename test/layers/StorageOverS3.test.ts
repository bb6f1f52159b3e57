/**
 * Goal: the composed Storage layer keeps its core promises over a real S3 protocol server, not only
 * over the in-memory bucket: a checkpoint restores byte for byte into a fresh directory, archived
 * WAL replays on top of it, the bucket lock refuses a second instance, and a take-over fences the
 * old one. Method: Storage over the S3 store (behind the fault decorator where a checkpoint must fail) (s3rver with its harness, or the external server of
 * S3_TEST_ENDPOINT, e.g. Ceph RGW from scripts/rgw.sh) and the in-memory disk, real time, one key
 * prefix per test and per run (an external bucket outlives the run). Opening runs the S3 store's
 * start-up conformance check, so every test here also passes it.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Stream } from "effect"
import * as Ids from "../../src/domain/Ids.js"
import * as FaultyObjectStore from "../../src/layers/FaultyObjectStore.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as S3ObjectStore from "../../src/layers/S3ObjectStore.js"
import * as Storage from "../../src/layers/Storage.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as S3TestServer from "../support/S3TestServer.js"
import * as H from "../support/StorageHarness.js"

let running: S3TestServer.RunningS3TestServer | undefined
beforeAll(async () => {
  running = await S3TestServer.start({ bucket: "storage-bucket" })
}, 60_000)
afterAll(() => running?.stop(), 60_000)

const server = (): S3TestServer.S3TestServerInfo => {
  if (running === undefined) throw new Error("the S3 test server is not running (beforeAll did not finish)")
  return running.info
}

const fileA = Ids.fileId("db/a")
const partSize = 4096

/** The harness's small parts and segments, with the request bounds of a real server. */
const s3Config = (prefix: string): Partial<StorageConfig.StorageConfigValue> => ({
  ...H.testConfig,
  prefix,
  requestTimeoutMs: 10_000,
  retryAttemptsMax: 5,
  retryDelayBaseMs: 50,
  retryDelayMaxMs: 500,
  retryElapsedMaxMs: 20_000,
  drainDeadlineMs: 3_000,
  shutdownCheckpointDeadlineMs: 10_000,
  shutdownDeadlineMs: 15_000,
  checkpointDeadlineMs: 30_000,
  leaseTimeoutMs: 30_000
})

const storeLayer = (prefix: string) =>
  S3ObjectStore.layer({
    bucket: server().bucket,
    endpoint: server().endpoint,
    region: server().region,
    forcePathStyle: true,
    credentials: server().credentials,
    requestTimeoutMs: 10_000,
    scratchPrefix: prefix
  })

/** Opens a Storage instance over the S3 store (behind `faults` when given) in the current scope. */
const open = (
  prefix: string,
  disk: H.Disk,
  config: Partial<StorageConfig.StorageConfigValue> = {},
  options: Storage.StorageOptions = {},
  faults?: FaultyObjectStore.FaultControllerService
) =>
  Effect.map(
    Layer.build(
      Storage.layer(options).pipe(
        Layer.provide(
          faults === undefined
            ? storeLayer(prefix)
            : FaultyObjectStore.layer(faults).pipe(Layer.provide(storeLayer(prefix)))
        ),
        Layer.provide(MemoryDisk.layerOf(disk)),
        Layer.provide(StorageConfig.layer({ ...s3Config(prefix), ...config }))
      )
    ),
    (context) => Context.get(context, Storage.Storage)
  )

const withStorage = <A, E>(
  prefix: string,
  disk: H.Disk,
  body: (storage: Storage.StorageService) => Effect.Effect<A, E>,
  config: Partial<StorageConfig.StorageConfigValue> = {},
  options: Storage.StorageOptions = {},
  faults?: FaultyObjectStore.FaultControllerService
) => Effect.scoped(Effect.flatMap(open(prefix, disk, config, options, faults), body))

let prefixCounter = 0
const freshPrefix = (label: string): string => {
  prefixCounter += 1
  return `${S3TestServer.runId}-storage-${prefixCounter}-${label}`
}

const keysUnder = (prefix: string) =>
  Effect.scoped(
    Effect.flatMap(S3ObjectStore.make({ ...storeOptions(), checkConditionalCreate: false }), (store) =>
      Effect.map(Stream.runCollect(store.list(prefix)), (infos) => Array.from(infos, (info) => info.key)))
  )

const storeOptions = (): S3ObjectStore.S3ObjectStoreOptions => ({
  bucket: server().bucket,
  endpoint: server().endpoint,
  region: server().region,
  forcePathStyle: true,
  credentials: server().credentials,
  requestTimeoutMs: 10_000
})

describe(
  S3TestServer.external === undefined
    ? "Storage over S3 (s3rver)"
    : `Storage over S3 (${S3TestServer.external.endpoint})`,
  () => {
    it.live(
      "checkpoint, then restore into a fresh directory: every byte reads back identical",
      () =>
        Effect.gen(function*() {
          const prefix = freshPrefix("restore")
          const bytes = H.pattern(1, 3 * partSize + 100)
          yield* withStorage(prefix, yield* H.makeDisk, (storage) =>
            Effect.gen(function*() {
              yield* storage.write(fileA, 1000, bytes)
              const report = yield* storage.checkpoint
              assert.strictEqual(report.outcome, "completed")
              assert.strictEqual(report.partsUploaded, 4)
            }))
          const [plan, read] = yield* withStorage(
            prefix,
            yield* H.makeDisk,
            (storage) => Effect.all([Effect.succeed(storage.opened.plan), storage.read(fileA, 1000, bytes.length)])
          )
          assert.strictEqual(plan, "Restore")
          assert.deepStrictEqual(read, bytes)
          assert.deepStrictEqual(yield* keysUnder(`${prefix}/conformance/`), [], "no scratch key is left behind")
        }),
      120_000
    )

    it.live("restore = checkpoint + archived WAL replay, up to the last record", () =>
      Effect.gen(function*() {
        const prefix = freshPrefix("wal")
        const encoder = new TextEncoder()
        const records = 300 // ~10 KiB of records per 100: several 16 KiB segments
        const faults = yield* FaultyObjectStore.makeController({ seed: 1 })
        yield* withStorage(
          prefix,
          yield* H.makeDisk,
          (storage) =>
            Effect.gen(function*() {
              for (let index = 0; index < records; index++) {
                yield* storage.write(fileA, index * 8, H.pattern(index + 10, 8))
                yield* storage.append(encoder.encode(`${index}`.padStart(100, " ")))
                if (index === 99) {
                  yield* storage.commit
                  yield* storage.checkpoint
                }
              }
              yield* storage.commit
              // The shutdown checkpoint cannot commit: the records after checkpoint 1 survive only in the WAL.
              yield* faults.failPermanently({ operations: ["put"], keyPrefix: `${prefix}/checkpoints/` })
              const report = yield* storage.shutdown
              assert.strictEqual(report.finalCheckpoint.outcome, "failed")
              assert.isUndefined(report.wal.localOnly, "every record reached the archive")
            }),
          {},
          {},
          faults
        )
        const decoder = new TextDecoder()
        yield* withStorage(
          prefix,
          yield* H.makeDisk,
          (storage) =>
            Effect.forEach(
              Array.from({ length: records }, (_, index) => index),
              (index) =>
                Effect.map(
                  storage.read(fileA, index * 8, 8),
                  (read) => assert.deepStrictEqual(read, H.pattern(index + 10, 8), `record ${index}`)
                )
            ),
          {},
          {
            replay: (record, storage) => {
              const index = Number(decoder.decode(record.bytes).trim())
              return storage.write(fileA, index * 8, H.pattern(index + 10, 8))
            }
          }
        )
      }), 120_000)

    it.live(
      "the lock is in the bucket while open and gone after close; a second instance is refused",
      () =>
        Effect.gen(function*() {
          const prefix = freshPrefix("lock")
          yield* withStorage(prefix, yield* H.makeDisk, (storage) =>
            Effect.gen(function*() {
              assert.deepStrictEqual(yield* keysUnder(`${prefix}/lock`), [`${prefix}/lock`])
              const refused = yield* Effect.flip(withStorage(prefix, yield* H.makeDisk, () => Effect.void))
              assert.strictEqual(refused._tag, "BucketLocked")
              if (refused._tag === "BucketLocked") {
                assert.strictEqual(refused.holder, storage.instanceId)
              }
            }))
          assert.deepStrictEqual(yield* keysUnder(`${prefix}/lock`), [])
        }),
      120_000
    )

    it.live("after a take-over the old instance's checkpoint fails with Fenced", () =>
      Effect.gen(function*() {
        const prefix = freshPrefix("fence")
        yield* Effect.scoped(
          Effect.gen(function*() {
            const a = yield* open(prefix, yield* H.makeDisk)
            yield* a.write(fileA, 0, H.pattern(1, 100))
            yield* a.checkpoint
            yield* withStorage(prefix, yield* H.makeDisk, (b) =>
              Effect.gen(function*() {
                assert.isAbove(b.epoch, a.epoch)
                yield* b.write(fileA, 0, H.pattern(2, 100))
                yield* b.checkpoint
              }), { takeOver: true })
            yield* a.write(fileA, 0, H.pattern(3, 100))
            const fenced = yield* Effect.flip(a.checkpoint)
            assert.strictEqual(fenced._tag, "Fenced")
          })
        )
        const restored = yield* withStorage(prefix, yield* H.makeDisk, (storage) => storage.read(fileA, 0, 100))
        assert.deepStrictEqual(restored, H.pattern(2, 100), "the bucket holds the new owner's history")
      }), 120_000)
  }
)
