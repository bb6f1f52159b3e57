/**
 * Goal: configuration is validated once, with one clear InvalidConfig naming the field, and can be
 * read from the environment.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
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
    assert.strictEqual(field({ shutdownDeadlineMs: 1000, shutdownCheckpointDeadlineMs: 900, drainDeadlineMs: 200 }), "shutdownDeadlineMs")
  })

  it("rejects unknown fields", () => {
    const result = StorageConfig.validate({ workers: 3 } as unknown as Partial<StorageConfig.StorageConfigValue>)
    assert.isTrue(Either.isLeft(result))
  })

  it.effect("reads S3_TIER_* variables from the environment, and validates them", () =>
    Effect.gen(function* () {
      const saved = { ...process.env }
      yield* Effect.addFinalizer(() => Effect.sync(() => { process.env = saved }))
      process.env.S3_TIER_WORKER_COUNT = "16"
      process.env.S3_TIER_PREFIX = "tenant/a"
      const value = yield* StorageConfig.fromEnv
      assert.strictEqual(value.workerCount, 16)
      assert.strictEqual(value.prefix, "tenant/a")
      assert.strictEqual(value.partSizeBytes, StorageConfig.defaults.partSizeBytes)
      process.env.S3_TIER_WORKER_COUNT = "0"
      const invalid = yield* Effect.flip(StorageConfig.fromEnv)
      assert.strictEqual(invalid.field, "workerCount")
    }).pipe(Effect.scoped))
})
