/**
 * Goal: the one-call opens give an app a working Storage, and only Storage, in one line each.
 * Method: `layerNode` over two temp directories (open, write, append, commit, checkpoint, close,
 * reopen and read back, the records after the checkpoint replayed); `layerConfig` from a
 * ConfigProvider against the test S3 server, and its data-directory key; `layerMemory` under
 * `it.layer`, the way an app's own tests would use it.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Exit, Fiber, Layer, Logger } from "effect"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as Ids from "../../src/domain/Ids.js"
import * as Storage from "../../src/layers/Storage.js"
import * as S3TestServer from "../support/S3TestServer.js"

const text = (value: string) => new TextEncoder().encode(value)
const decoded = (bytes: Uint8Array) => new TextDecoder().decode(bytes)
const file = Ids.fileId("app/users")

const tempDir = (name: string) =>
  Effect.acquireRelease(
    Effect.promise(() => fsp.mkdtemp(path.join(os.tmpdir(), `s3-tier-open-${name}-`))),
    (dir) => Effect.promise(() => fsp.rm(dir, { recursive: true, force: true }))
  )

/** Writes at 0 and 16, logging each after applying it, with a checkpoint between the two. */
const writeTwo = Effect.gen(function*() {
  const storage = yield* Storage.Storage
  yield* storage.write(file, 0, text("hello"))
  yield* storage.append(text("0:hello"))
  yield* storage.commit
  const report = yield* storage.checkpoint
  yield* storage.write(file, 16, text("world"))
  yield* storage.append(text("16:world"))
  yield* storage.commit
  return report
})

/** Applies a record written by `writeTwo`: "<offset>:<text>". */
const replay = (record: Storage.ReplayRecord, storage: Storage.StorageService) => {
  const [offset, value] = decoded(record.bytes).split(":") as [string, string]
  return storage.write(file, Number(offset), text(value))
}

const serviceKeys = <R>(layer: Layer.Layer<R, unknown>) =>
  Effect.map(Layer.build(layer), (context) => [...context.unsafeMap.keys()])

describe("Storage.layerNode", () => {
  it.scopedLive("opens, writes, checkpoints, closes, and a reopen reads everything back", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("data")
      const storeDir = yield* tempDir("bucket")
      const shutdowns: Array<Storage.ShutdownReport> = []
      const options = {
        dataDir,
        storeDir,
        config: { checkpointIntervalMs: 0 },
        replay,
        onShutdown: (report: Storage.ShutdownReport) =>
          Effect.sync(() => {
            shutdowns.push(report)
          })
      }
      const report = yield* Effect.provide(writeTwo, Storage.layerNode(options))
      assert.strictEqual(report.checkpoint, 1)
      assert.strictEqual(shutdowns.length, 1)
      assert.strictEqual(shutdowns[0]?.leasesHeld, 0)
      assert.strictEqual(shutdowns[0]?.fibersAlive, 0)
      assert.isTrue(shutdowns[0]?.metDeadline)
      const readBack = yield* Effect.provide(
        Effect.flatMap(Storage.Storage, (storage) => Effect.all([storage.read(file, 0, 5), storage.read(file, 16, 5)])),
        Storage.layerNode(options)
      )
      assert.deepStrictEqual(readBack.map(decoded), ["hello", "world"])
      assert.strictEqual(shutdowns.length, 2)
    }))

  it.scopedLive("puts Storage alone into the app's context", () =>
    Effect.gen(function*() {
      const keys = yield* serviceKeys(
        Storage.layerNode({ dataDir: yield* tempDir("data"), storeDir: yield* tempDir("bucket") })
      )
      assert.deepStrictEqual(keys, [Storage.Storage.key])
    }))

  it.scopedLive("a bad configuration field fails the open with InvalidConfig naming it", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Layer.build(
          Storage.layerNode({
            dataDir: yield* tempDir("data"),
            storeDir: yield* tempDir("bucket"),
            config: { workerCount: 0 }
          })
        )
      )
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.toJSON() : undefined
      assert.include(JSON.stringify(error), "workerCount")
    }))
})

describe("Storage.layerConfig", () => {
  const fromEntries = (entries: Record<string, string>) =>
    ConfigProvider.fromMap(new Map(Object.entries(entries)), { pathDelim: "_" })

  it.scopedLive("reads the store, the configuration and the data directory from the ConfigProvider", () =>
    Effect.gen(function*() {
      const server = yield* S3TestServer.make()
      const entries = {
        S3_TIER_DATA_DIR: yield* tempDir("data"),
        S3_TIER_PREFIX: `${S3TestServer.runId}/layer-config`,
        S3_TIER_CHECKPOINT_INTERVAL_MS: "0",
        S3_TIER_S3_BUCKET: server.bucket,
        S3_TIER_S3_ENDPOINT: server.endpoint,
        S3_TIER_S3_REGION: server.region,
        S3_TIER_S3_FORCE_PATH_STYLE: "true",
        S3_TIER_S3_ACCESS_KEY_ID: server.credentials.accessKeyId,
        S3_TIER_S3_SECRET_ACCESS_KEY: server.credentials.secretAccessKey
      }
      const logs: Array<string> = []
      const capture = Logger.make(({ logLevel, message }) => {
        logs.push(`${logLevel.label} ${String(message)}`)
      })
      const open = (program: Effect.Effect<unknown, unknown, Storage.Storage>) =>
        Effect.provide(program, Storage.layerConfig({ replay })).pipe(
          Effect.withConfigProvider(fromEntries(entries)),
          Effect.provide(Logger.replace(Logger.defaultLogger, capture))
        )
      yield* open(writeTwo)
      const readBack = yield* open(Effect.flatMap(Storage.Storage, (storage) => storage.read(file, 16, 5)))
      assert.strictEqual(decoded(readBack as Uint8Array), "world")
      assert.deepStrictEqual(logs.filter((line) => line.includes("unknown configuration key")), [])
    }))

  it.scopedLive("without a data directory, fails with InvalidConfig naming S3_TIER_DATA_DIR", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(Storage.layerConfig()).pipe(
          Effect.withConfigProvider(fromEntries({ S3_TIER_S3_BUCKET: "some-bucket" }))
        )
      )
      assert.strictEqual(error._tag, "InvalidConfig")
      assert.strictEqual(error._tag === "InvalidConfig" ? error.field : undefined, "S3_TIER_DATA_DIR")
    }))
})

layer(Storage.layerMemory({ replay }))("Storage.layerMemory under it.layer", (it) => {
  it.effect("writes, commits, checkpoints and reads back in memory", () =>
    Effect.gen(function*() {
      const report = yield* writeTwo
      assert.strictEqual(report.checkpoint, 1)
      const storage = yield* Storage.Storage
      assert.strictEqual(decoded(yield* storage.read(file, 0, 5)), "hello")
      assert.strictEqual(decoded(yield* storage.read(file, 16, 5)), "world")
    }))

  it.effect("the layer is shared by the block's tests: the next checkpoint is the second", () =>
    Effect.gen(function*() {
      const storage = yield* Storage.Storage
      const report = yield* storage.checkpoint
      assert.strictEqual(report.checkpoint, 2)
    }))
})

describe("Storage.layerMemory", () => {
  it.scoped("puts Storage alone into the app's context", () =>
    Effect.map(serviceKeys(Storage.layerMemory()), (keys) => assert.deepStrictEqual(keys, [Storage.Storage.key])))

  it.scoped("each build is a fresh bucket", () =>
    Effect.gen(function*() {
      const read = Effect.flatMap(Storage.Storage, (storage) => storage.read(file, 0, 5))
      yield* Effect.provide(writeTwo, Storage.layerMemory())
      const fresh = yield* Effect.provide(read, Storage.layerMemory())
      assert.deepStrictEqual(Array.from(fresh), [0, 0, 0, 0, 0])
    }))
})

describe("Storage: interrupting the program that uses it", () => {
  it.live("runs the whole bounded shutdown, as closing the scope does (SIGINT under NodeRuntime.runMain)", () =>
    Effect.gen(function*() {
      const shutdowns: Array<Storage.ShutdownReport> = []
      const ready = yield* Deferred.make<void>()
      const app = Effect.gen(function*() {
        const storage = yield* Storage.Storage
        yield* storage.write(file, 0, text("hello"))
        yield* storage.append(text("0:hello"))
        yield* storage.commit
        yield* Deferred.succeed(ready, undefined)
        return yield* Effect.never
      })
      const layer = Storage.layerMemory({
        onShutdown: (report) =>
          Effect.sync(() => {
            shutdowns.push(report)
          })
      })
      const fiber = yield* Effect.fork(Effect.provide(app, layer))
      yield* Deferred.await(ready)
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(shutdowns.length, 1)
      assert.deepStrictEqual(shutdowns[0]?.finalCheckpoint, { outcome: "completed", checkpoint: 1 })
      assert.strictEqual(shutdowns[0]?.lock, "released")
      assert.strictEqual(shutdowns[0]?.leasesHeld, 0)
    }))
})
