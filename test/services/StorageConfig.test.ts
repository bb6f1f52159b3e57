/**
 * Goal: configuration is validated once, with one clear InvalidConfig naming the field, and can be
 * read from the environment.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Either, Layer, Logger } from "effect"
import * as StorageConfig from "../../src/services/StorageConfig.js"

const field = (input: Partial<StorageConfig.StorageConfigValue>): string | undefined => {
  const result = StorageConfig.validate(input)
  return Either.isLeft(result) ? result.left.field : undefined
}

describe("StorageConfig", () => {
  it("accepts the defaults", () => {
    assert.isTrue(Either.isRight(StorageConfig.validate({})))
  })

  it("names the field of every out-of-bounds value", () => {
    assert.strictEqual(field({ workerCount: 0 }), "workerCount")
    assert.strictEqual(field({ queueCapacity: -1 }), "queueCapacity")
    assert.strictEqual(field({ partSizeBytes: 100 }), "partSizeBytes")
    assert.strictEqual(field({ requestTimeoutMs: 1.5 }), "requestTimeoutMs")
    assert.strictEqual(field({ prefix: "/abs" }), "prefix")
    assert.strictEqual(field({ retryDelayBaseMs: 500, retryDelayMaxMs: 100 }), "retryDelayMaxMs")
    assert.strictEqual(
      field({ shutdownDeadlineMs: 1000, shutdownCheckpointDeadlineMs: 900, drainDeadlineMs: 200 }),
      "shutdownDeadlineMs"
    )
  })

  it("rejects unknown fields", () => {
    const result = StorageConfig.validate({ workers: 3 } as unknown as Partial<StorageConfig.StorageConfigValue>)
    assert.isTrue(Either.isLeft(result))
  })

  it.effect("reads S3_TIER_* variables from the environment, and validates them", () =>
    Effect.gen(function*() {
      const saved = { ...process.env }
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          process.env = saved
        })
      )
      process.env.S3_TIER_WORKER_COUNT = "16"
      process.env.S3_TIER_PREFIX = "tenant/a"
      const value = yield* StorageConfig.fromEnv
      assert.strictEqual(value.workerCount, 16)
      assert.strictEqual(value.prefix, "tenant/a")
      assert.strictEqual(value.partSizeBytes, StorageConfig.defaults.partSizeBytes)
      process.env.S3_TIER_WORKER_COUNT = "0"
      const invalid = yield* Effect.flip(StorageConfig.fromEnv)
      assert.strictEqual(invalid.field, "S3_TIER_WORKER_COUNT")
    }).pipe(Effect.scoped))
})

describe("StorageConfig.layerConfig", () => {
  const withEnv = (vars: Record<string, string>) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const saved = { ...process.env }
        Object.assign(process.env, vars)
        return saved
      }),
      (saved) =>
        Effect.sync(() => {
          process.env = saved
        })
    )
  const fromMap = (entries: Record<string, string>) => ConfigProvider.fromMap(new Map(Object.entries(entries)))
  const built = Effect.map(Layer.build(StorageConfig.layerConfig), Context.get(StorageConfig.StorageConfig))

  it.scoped("reads the app's ConfigProvider, not the process environment", () =>
    Effect.gen(function*() {
      yield* withEnv({ S3_TIER_WORKER_COUNT: "16" })
      const json = yield* built.pipe(
        Effect.withConfigProvider(ConfigProvider.fromJson({ S3_TIER_WORKER_COUNT: 3, S3_TIER_PREFIX: "tenant/b" }))
      )
      assert.strictEqual(json.workerCount, 3)
      assert.strictEqual(json.prefix, "tenant/b")
      const map = yield* built.pipe(Effect.withConfigProvider(fromMap({ S3_TIER_QUEUE_CAPACITY: "7" })))
      assert.strictEqual(map.queueCapacity, 7)
      assert.strictEqual(map.workerCount, StorageConfig.defaults.workerCount)
      const env = yield* built
      assert.strictEqual(env.workerCount, 16)
      const viaLayer = yield* Layer.build(
        Layer.provide(StorageConfig.layerFromEnv, Layer.setConfigProvider(fromMap({ S3_TIER_WORKER_COUNT: "5" })))
      )
      assert.strictEqual(Context.get(viaLayer, StorageConfig.StorageConfig).workerCount, 5)
    }))

  it.scoped("names the key the user set in a bad value's error", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(built.pipe(Effect.withConfigProvider(fromMap({ S3_TIER_WORKER_COUNT: "0" }))))
      assert.strictEqual(error.field, "S3_TIER_WORKER_COUNT")
      assert.strictEqual(error.message, "invalid configuration S3_TIER_WORKER_COUNT: must be between 1 and 256")
      const relation = yield* Effect.flip(
        built.pipe(
          Effect.withConfigProvider(fromMap({ S3_TIER_RETRY_DELAY_BASE_MS: "500", S3_TIER_RETRY_DELAY_MAX_MS: "100" }))
        )
      )
      assert.strictEqual(relation.field, "S3_TIER_RETRY_DELAY_MAX_MS")
    }))

  it.scoped("refuses malformed numbers, naming the key", () =>
    Effect.gen(function*() {
      for (const text of ["0x10", " 16 ", "1e3", "16abc", "16.0", ""]) {
        const result = yield* Effect.either(
          built.pipe(Effect.withConfigProvider(fromMap({ S3_TIER_WORKER_COUNT: text })))
        )
        assert.isTrue(Either.isLeft(result), `${JSON.stringify(text)} was accepted`)
        if (Either.isLeft(result)) assert.strictEqual(result.left.field, "S3_TIER_WORKER_COUNT")
      }
    }))

  it.scoped("takes Duration strings and integers of ms for every ...Ms key", () =>
    Effect.gen(function*() {
      const value = yield* built.pipe(Effect.withConfigProvider(fromMap({
        S3_TIER_REQUEST_TIMEOUT_MS: "1500 millis",
        S3_TIER_LEASE_TIMEOUT_MS: "10 seconds",
        S3_TIER_EVICTION_INTERVAL_MS: "2500"
      })))
      assert.strictEqual(value.requestTimeoutMs, 1500)
      assert.strictEqual(value.leaseTimeoutMs, 10_000)
      assert.strictEqual(value.evictionIntervalMs, 2500)
      const sizeAsDuration = yield* Effect.flip(
        built.pipe(Effect.withConfigProvider(fromMap({ S3_TIER_PART_SIZE_BYTES: "10 seconds" })))
      )
      assert.strictEqual(sizeAsDuration.field, "S3_TIER_PART_SIZE_BYTES")
      const garbage = yield* Effect.flip(
        built.pipe(Effect.withConfigProvider(fromMap({ S3_TIER_LEASE_TIMEOUT_MS: "10 parsecs" })))
      )
      assert.strictEqual(garbage.field, "S3_TIER_LEASE_TIMEOUT_MS")
    }))

  it.scoped("warns once about an unknown S3_TIER_* name, with the likely intended key", () =>
    Effect.gen(function*() {
      yield* withEnv({ S3_TIER_WORKERS: "3", S3_TIER_PREFIX: "tenant/c" })
      const logs: Array<string> = []
      const capture = Logger.make(({ logLevel, message }) => {
        logs.push(`${logLevel.label} ${String(message)}`)
      })
      const value = yield* built.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
      assert.strictEqual(value.workerCount, StorageConfig.defaults.workerCount)
      const warnings = logs.filter((line) => line.includes("S3_TIER_WORKERS"))
      assert.deepStrictEqual(warnings, [
        "WARN unknown configuration key S3_TIER_WORKERS (did you mean S3_TIER_WORKER_COUNT?); it is ignored"
      ])
      assert.isFalse(logs.some((line) => line.includes("S3_TIER_PREFIX")))
    }))

  it.scoped("warns once about an unknown S3_TIER_* name that the app's own provider holds", () =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const capture = Logger.make(({ logLevel, message }) => {
        logs.push(`${logLevel.label} ${String(message)}`)
      })
      for (
        const provider of [
          fromMap({ S3_TIER_WORKERS: "3", S3_TIER_PREFIX: "tenant/d" }),
          ConfigProvider.fromJson({ S3_TIER_WORKERS: 3, S3_TIER_PREFIX: "tenant/d" })
        ]
      ) {
        logs.length = 0
        const value = yield* built.pipe(
          Effect.withConfigProvider(provider),
          Effect.provide(Logger.replace(Logger.defaultLogger, capture))
        )
        assert.strictEqual(value.prefix, "tenant/d")
        assert.deepStrictEqual(logs.filter((line) => line.includes("S3_TIER_")), [
          "WARN unknown configuration key S3_TIER_WORKERS (did you mean S3_TIER_WORKER_COUNT?); it is ignored"
        ])
      }
    }))
})
