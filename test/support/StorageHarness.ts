/**
 * A Storage instance over an in-memory bucket (behind the fault decorator) and an in-memory disk,
 * both of which outlive the instance, so a test can shut down, crash, restart and restore.
 */
import { Context, Effect, Layer, type Scope } from "effect"
import { layerWithServices } from "../../src/internal/storageLayer.js"
import * as FaultyObjectStore from "../../src/layers/FaultyObjectStore.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as Storage from "../../src/layers/Storage.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"

/** Small bounds: 4 KiB parts, 16 KiB WAL segments, sub-second deadlines. */
export const testConfig: Partial<StorageConfig.StorageConfigValue> = {
  partSizeBytes: 4096,
  walSegmentBytes: 16 * 1024,
  workerCount: 4,
  queueCapacity: 64,
  requestTimeoutMs: 200,
  retryAttemptsMax: 3,
  retryDelayBaseMs: 5,
  retryDelayMaxMs: 20,
  retryElapsedMaxMs: 500,
  drainDeadlineMs: 200,
  shutdownDeadlineMs: 1_500,
  shutdownCheckpointDeadlineMs: 800,
  checkpointIntervalMs: 0,
  checkpointDeadlineMs: 2_000,
  leaseTimeoutMs: 2_000,
  evictionIntervalMs: 50,
  localBytesMax: 1024 * 1024,
  lockRenewIntervalMs: 50,
  lockLeaseMs: 400
}

/** A bucket plus its fault switchboard. */
export interface Bucket {
  readonly state: MemoryObjectStore.MemoryBucketState
  readonly inspect: MemoryObjectStore.MemoryBucketService
  readonly faults: FaultyObjectStore.FaultControllerService
}

export const makeBucket: Effect.Effect<Bucket> = Effect.gen(function*() {
  const state = yield* MemoryObjectStore.makeBucket("test-bucket")
  const faults = yield* FaultyObjectStore.makeController({ seed: 1 })
  return { state, inspect: MemoryObjectStore.inspect(state), faults }
})

export type Disk = Effect.Effect.Success<typeof MemoryDisk.make>
export const makeDisk: Effect.Effect<Disk> = MemoryDisk.make

/** The Storage layer (with its internal services) over a bucket and a disk. */
export const layer = (
  bucket: Bucket,
  disk: Disk,
  config: Partial<StorageConfig.StorageConfigValue> = {},
  options: Storage.StorageOptions = {},
  faults: FaultyObjectStore.FaultControllerService = bucket.faults
) =>
  layerWithServices(options).pipe(
    Layer.provide(FaultyObjectStore.layer(faults).pipe(Layer.provide(MemoryObjectStore.layerWithBucket(bucket.state)))),
    Layer.provide(MemoryDisk.layerOf(disk)),
    Layer.provide(StorageConfig.layer({ ...testConfig, ...config }))
  )

/** Opens a Storage instance in the current scope and returns its services. `faults` defaults to
 * the bucket's switchboard; give another one to fault this instance's view of the bucket alone. */
export const open = (
  bucket: Bucket,
  disk: Disk,
  config: Partial<StorageConfig.StorageConfigValue> = {},
  options: Storage.StorageOptions = {},
  faults: FaultyObjectStore.FaultControllerService = bucket.faults
) =>
  Effect.map(
    Layer.build(layer(bucket, disk, config, options, faults)),
    (context) => ({ context, storage: Context.get(context, Storage.Storage) })
  )

/** Runs `body` against a Storage instance that is opened and closed around it. */
export const withStorage = <A, E>(
  bucket: Bucket,
  disk: Disk,
  body: (storage: Storage.StorageService) => Effect.Effect<A, E>,
  config: Partial<StorageConfig.StorageConfigValue> = {},
  options: Storage.StorageOptions = {}
) => Effect.scoped(Effect.flatMap(open(bucket, disk, config, options), ({ storage }) => body(storage)))

/** Deterministic bytes for a (file, offset, version): what a test writes and later expects. */
export const pattern = (seed: number, length: number): Uint8Array => {
  const bytes = new Uint8Array(length)
  let state = (seed * 2654435761) >>> 0 || 1
  for (let index = 0; index < length; index++) {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    bytes[index] = state & 0xff
  }
  return bytes
}

export type { Scope }
