/**
 * A PartTable over the real TaskQueue, S3Workers and WaitRegistry, an in-memory disk and an
 * in-memory bucket seen through a controllable store: tests count GETs and PUTs (per part, with
 * how many ran at once), fail the next ones with a permanent error, hold GETs or PUTs at a gate
 * (an interruptible wait on a Deferred, never a sleep) and add scheduler yields to every request
 * so that concurrent schedules interleave. Everything runs on the TestClock.
 */
import { Deferred, Effect, Either, Fiber, Option, TestClock } from "effect"
import type { Scope } from "effect"
import { ObjectStoreRejected } from "../../src/domain/Errors.js"
import { type FileId, fileId, type PartIndex, partIndex } from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as Hasher from "../../src/services/Hasher.js"
import { LocalDisk, type LocalDiskService } from "../../src/services/LocalDisk.js"
import { ObjectStore, type ObjectStoreService } from "../../src/services/ObjectStore.js"
import * as PartTable from "../../src/services/PartTable.js"
import * as S3Workers from "../../src/services/S3Workers.js"
import { StorageConfig, type StorageConfigValue, validate } from "../../src/services/StorageConfig.js"
import * as TaskQueue from "../../src/services/TaskQueue.js"
import * as WaitRegistry from "../../src/services/WaitRegistry.js"

/** Small bounds: 4 KiB parts, a 4-part budget. */
export const testConfig = (overrides: Partial<StorageConfigValue> = {}): StorageConfigValue =>
  Either.getOrThrow(
    validate({
      partSizeBytes: 4096,
      localBytesMax: 4 * 4096,
      workerCount: 2,
      queueCapacity: 64,
      leaseTimeoutMs: 5_000,
      evictionIntervalMs: 100,
      drainDeadlineMs: 1_000,
      ...overrides
    })
  )

/** What the controllable store saw and what it is told to do. Mutable: tests are single-threaded. */
export interface StoreControl {
  gets: number
  puts: number
  getsByPart: Map<string, number>
  /** The most GETs (PUTs) of one part that ran at the same time, over all parts. */
  maxConcurrentGetsPerPart: number
  maxConcurrentPutsPerPart: number
  /** The next n GETs (PUTs) of parts fail with ObjectStoreRejected. */
  failGets: number
  failPuts: number
  /** While set, GETs (PUTs) of parts wait for it (interruptibly). */
  getGate: Deferred.Deferred<void> | undefined
  putGate: Deferred.Deferred<void> | undefined
  /** Scheduler yields before every request reaches the bucket. */
  yieldsPerRequest: number
  /** The content hash each part PUT passed in its options (PutOptions.sha256Hex), by key. */
  putSha256ByKey: Map<string, string | undefined>
  /** Part GETs that came back in the buffer they were given (GetOptions.into). */
  getsIntoBuffer: number
}

const partOf = (layout: KeyLayout.KeyLayout, key: string): string | undefined => {
  const parsed = KeyLayout.parseKey(layout, key)
  return Option.isSome(parsed) && parsed.value._tag === "Part" ? `${parsed.value.file}#${parsed.value.part}` : undefined
}

/** Wraps a store with the control above (only part keys are counted, failed and gated). */
export const controlledStore = (inner: ObjectStoreService, layout: KeyLayout.KeyLayout) => {
  const control: StoreControl = {
    gets: 0,
    puts: 0,
    getsByPart: new Map(),
    maxConcurrentGetsPerPart: 0,
    maxConcurrentPutsPerPart: 0,
    failGets: 0,
    failPuts: 0,
    getGate: undefined,
    putGate: undefined,
    yieldsPerRequest: 0,
    putSha256ByKey: new Map(),
    getsIntoBuffer: 0
  }
  const runningGets = new Map<string, number>()
  const runningPuts = new Map<string, number>()
  const yields = Effect.suspend(() => Effect.repeatN(Effect.yieldNow(), Math.max(0, control.yieldsPerRequest - 1)))
  const tracked = <A, E>(
    operation: "get" | "put",
    key: string,
    effect: Effect.Effect<A, E>
  ): Effect.Effect<A, E | ObjectStoreRejected> =>
    Effect.suspend(() => {
      const part = partOf(layout, key)
      if (part === undefined) return effect
      const running = operation === "get" ? runningGets : runningPuts
      const now = (running.get(part) ?? 0) + 1
      running.set(part, now)
      if (operation === "get") {
        control.gets += 1
        control.getsByPart.set(part, (control.getsByPart.get(part) ?? 0) + 1)
        control.maxConcurrentGetsPerPart = Math.max(control.maxConcurrentGetsPerPart, now)
      } else {
        control.puts += 1
        control.maxConcurrentPutsPerPart = Math.max(control.maxConcurrentPutsPerPart, now)
      }
      const gate = operation === "get" ? control.getGate : control.putGate
      const body = Effect.gen(function*() {
        if (control.yieldsPerRequest > 0) yield* yields
        if (gate !== undefined) yield* Deferred.await(gate)
        if (operation === "get" && control.failGets > 0) {
          control.failGets -= 1
          return yield* Effect.fail(
            new ObjectStoreRejected({ operation, key, code: "Injected", detail: "injected GET failure" })
          )
        }
        if (operation === "put" && control.failPuts > 0) {
          control.failPuts -= 1
          return yield* Effect.fail(
            new ObjectStoreRejected({ operation, key, code: "Injected", detail: "injected PUT failure" })
          )
        }
        return yield* effect
      })
      return Effect.ensuring(body, Effect.sync(() => running.set(part, (running.get(part) ?? 1) - 1)))
    })
  const store: ObjectStoreService = {
    ...inner,
    get: (key, options) =>
      Effect.tap(tracked("get", key, Effect.suspend(() => inner.get(key, options))), (bytes) =>
        Effect.sync(() => {
          if (partOf(layout, key) !== undefined && bytes.buffer === options?.into?.buffer) control.getsIntoBuffer += 1
        })),
    put: (key, bytes, options) =>
      Effect.zipRight(
        Effect.sync(() => partOf(layout, key) !== undefined && control.putSha256ByKey.set(key, options?.sha256Hex)),
        // Suspended: the bytes are read when the request reaches the bucket (after the yields and
        // the gate), as a real store reads them during the request, not when the call is made.
        tracked("put", key, Effect.suspend(() => inner.put(key, bytes, options)))
      )
  }
  return { store, control }
}

/** The world a table lives in: a disk and a bucket that outlive one table ("restarts"). */
export interface World {
  readonly disk: { readonly disk: LocalDiskService; readonly control: MemoryDisk.MemoryDiskControlService }
  readonly bucket: MemoryObjectStore.MemoryBucketState
}

export const makeWorld: Effect.Effect<World> = Effect.all({
  disk: MemoryDisk.make,
  bucket: MemoryObjectStore.makeBucket()
})

export interface Harness {
  readonly config: StorageConfigValue
  readonly world: World
  readonly disk: LocalDiskService
  readonly store: ObjectStoreService
  readonly control: StoreControl
  readonly queue: TaskQueue.TaskQueueService
  readonly workers: S3Workers.S3WorkersService
  readonly waits: WaitRegistry.WaitRegistryService
  readonly parts: PartTable.PartTableService
  /** Shuts the workers down on the TestClock (moves it past the drain deadline). */
  readonly shutdownWorkers: Effect.Effect<S3Workers.WorkerShutdownReport>
}

/**
 * Builds a table in the current scope. The scope's close runs the table's close, then the workers'
 * shutdown (which waits up to the drain deadline on the clock): call `settle` or `shutdownWorkers`
 * before the test ends if tasks may still be pending.
 */
export const makeHarness = (
  options: {
    readonly config?: Partial<StorageConfigValue>
    readonly world?: World
    /** The table's Hasher (default: none of its own threads; see below). */
    readonly hasher?: Hasher.HasherService
  } = {}
): Effect.Effect<Harness, never, Scope.Scope> =>
  Effect.gen(function*() {
    const config = testConfig(options.config)
    const world = options.world ?? (yield* makeWorld)
    const { control, store } = controlledStore(MemoryObjectStore.storeOf(world.bucket), KeyLayout.make(config.prefix))
    const waits = yield* WaitRegistry.make
    const queue = yield* TaskQueue.make.pipe(
      Effect.provideService(StorageConfig, config),
      Effect.provideService(WaitRegistry.WaitRegistry, waits)
    )
    const workers = yield* S3Workers.make.pipe(
      Effect.provideService(StorageConfig, config),
      Effect.provideService(TaskQueue.TaskQueue, queue)
    )
    const parts = yield* PartTable.make.pipe(
      Effect.provideService(StorageConfig, config),
      Effect.provideService(LocalDisk, world.disk.disk),
      Effect.provideService(ObjectStore, store),
      Effect.provideService(TaskQueue.TaskQueue, queue),
      Effect.provideService(WaitRegistry.WaitRegistry, waits),
      // Hashes on the test's own thread: the harness runs on the TestClock and settles by yielding,
      // so no step may wait on a real thread (test/services/Hasher.test.ts covers the workers).
      Effect.provideService(Hasher.Hasher, options.hasher ?? (yield* Hasher.makeWith(0)))
    )
    const shutdownWorkers = Effect.gen(function*() {
      const fiber = yield* Effect.fork(workers.shutdown)
      yield* TestClock.adjust(config.drainDeadlineMs + S3Workers.interruptGraceMs + 1)
      return yield* Fiber.join(fiber)
    })
    return { config, world, disk: world.disk.disk, store, control, queue, workers, waits, parts, shutdownWorkers }
  })

/** Lets every runnable fiber run until `done` holds, at most `yieldsMax` scheduler turns. */
export const settleUntil = (done: Effect.Effect<boolean>, yieldsMax = 20_000): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    for (let turn = 0; turn < yieldsMax; turn++) {
      if (yield* done) return true
      yield* Effect.yieldNow()
    }
    return yield* done
  })

/** Lets the queue run empty (no task queued or in flight). */
export const settle = (harness: Harness): Effect.Effect<boolean> =>
  settleUntil(Effect.map(harness.queue.stats, (stats) => stats.depth === 0 && stats.inFlight === 0))

export const file = (name: string): FileId => fileId(name)
export const part = (index: number): PartIndex => partIndex(index)

/** Bytes of a given length, all `value`. */
export const filled = (length: number, value: number): Uint8Array => new Uint8Array(length).fill(value)
