/**
 * Goal: start-up opens a data directory against its bucket only when going on loses and forks
 * nothing, and says what to do when it refuses; after a take-over it claims the next checkpoint
 * number under the new epoch, re-reading when the old holder commits in between, a bounded number
 * of times. Method: the Loader layer over the in-memory bucket and disk, with the real part table
 * and queue; each case writes the bucket's checkpoints, lock and the directory's control file
 * directly, from the same constructors the tier uses, opens, and reads back what start-up wrote.
 * A store decorator plays the old holder committing between a claim's read and its put.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Fiber, Layer, Option, Ref, TestClock } from "effect"
import * as Control from "../../src/domain/Control.js"
import { type StartupRefusedReason, startupRefusedRemedy } from "../../src/domain/Errors.js"
import * as Ids from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as Manifest from "../../src/domain/Manifest.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as Hasher from "../../src/services/Hasher.js"
import * as Loader from "../../src/services/Loader.js"
import { LocalDisk } from "../../src/services/LocalDisk.js"
import { ObjectStore, type ObjectStoreService } from "../../src/services/ObjectStore.js"
import * as PartTable from "../../src/services/PartTable.js"
import * as S3Workers from "../../src/services/S3Workers.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as TaskQueue from "../../src/services/TaskQueue.js"
import * as WaitRegistry from "../../src/services/WaitRegistry.js"
import * as H from "../support/StorageHarness.js"

const testConfig: Partial<StorageConfig.StorageConfigValue> = { ...H.testConfig, hashWorkerCount: 0 }
const config = Either.getOrThrow(StorageConfig.validate(testConfig))
const layout = KeyLayout.make("")
const storeName = "memory://loader-test"
const fileA = Ids.fileId("db/a")
const old = { instanceId: Ids.InstanceId.make("i-old"), epoch: Ids.epoch(2) }

interface World {
  readonly bucket: MemoryObjectStore.MemoryBucketService
  readonly state: MemoryObjectStore.MemoryBucketState
  readonly disk: H.Disk
}

const makeWorld: Effect.Effect<World> = Effect.gen(function*() {
  const state = yield* MemoryObjectStore.makeBucket("loader-test")
  return { state, bucket: MemoryObjectStore.inspect(state), disk: yield* MemoryDisk.make }
})

/** The memory store, named as the control files of these tests name it. */
const storeOf = (world: World): ObjectStoreService => ({
  ...MemoryObjectStore.storeOf(world.state),
  description: storeName
})

/** The loader over `store` and the world's disk, as the Storage layer composes it. */
const loaderLayer = (
  world: World,
  store: ObjectStoreService,
  overrides: Partial<StorageConfig.StorageConfigValue> = {}
) => {
  const queueLayer = TaskQueue.layer.pipe(Layer.provideMerge(WaitRegistry.layer))
  const workersLayer = S3Workers.layer.pipe(Layer.provideMerge(queueLayer))
  const partsLayer = PartTable.layer.pipe(Layer.provideMerge(Hasher.layer), Layer.provideMerge(workersLayer))
  return Loader.layer.pipe(
    Layer.provideMerge(partsLayer),
    Layer.provide(Layer.succeed(ObjectStore, store)),
    Layer.provide(Layer.succeed(LocalDisk, world.disk.disk)),
    Layer.provide(StorageConfig.layer({ ...testConfig, ...overrides }))
  )
}

/** Opens the loader in the test's scope (closing it releases the directory and bucket locks). */
const open = (
  world: World,
  overrides: Partial<StorageConfig.StorageConfigValue> = {},
  store: ObjectStoreService = storeOf(world)
) =>
  Effect.map(
    Layer.build(loaderLayer(world, store, overrides)),
    (built) => ({ loader: Context.get(built, Loader.Loader), parts: Context.get(built, PartTable.PartTable) })
  )

/** Checkpoint `checkpoint` of `writer`, on `previous`, with file A's part map (two parts), as the bucket holds it. */
const commitCheckpoint = (world: World, writer: Control.ControlHolder, checkpoint: number, previous = checkpoint - 1) =>
  Effect.gen(function*() {
    const number = Ids.checkpointNumber(checkpoint)
    const parts: Array<Manifest.PartEntry> = []
    for (const [part, sizeBytes] of [[0, 4096], [1, 100]] as const) {
      const bytes = H.pattern(checkpoint * 10 + part, sizeBytes)
      const sha = Manifest.sha256Hex(bytes)
      yield* world.bucket.write(KeyLayout.partKey(layout, number, fileA, Ids.partIndex(part), sha), bytes)
      parts.push([Ids.partIndex(part), number, sha, sizeBytes])
    }
    const fileManifest: Manifest.FileManifest = {
      format: Manifest.fileManifestFormat,
      instanceId: writer.instanceId,
      checkpoint: number,
      file: fileA,
      parts
    }
    const bytes = Manifest.encodeFileManifest(fileManifest)
    const manifestSha256 = Manifest.sha256Hex(bytes)
    yield* world.bucket.write(KeyLayout.fileManifestKey(layout, number, fileA, manifestSha256), bytes)
    const root = Manifest.rootManifest({
      writer,
      checkpoint: number,
      previous: Ids.checkpointNumber(previous),
      createdAtMs: 0,
      walPosition: Ids.lsn(checkpoint * 100),
      files: [{ file: fileA, manifestCheckpoint: number, manifestSha256, partCount: 2, sizeBytes: 4196 }],
      commitToken: `token-${writer.instanceId}-${checkpoint}`,
      config
    })
    yield* world.bucket.write(KeyLayout.checkpointKey(layout, number), Manifest.encodeCheckpointManifest(root))
    return root
  })

const lockOf = (holder: Control.ControlHolder) =>
  Control.encodeLock({
    format: Control.lockFormat,
    instanceId: holder.instanceId,
    epoch: holder.epoch,
    acquiredAtMs: 0,
    generation: "g-old",
    renewedAtMs: 0,
    leaseMs: config.lockLeaseMs
  })

/** The directory's control file at `checkpoint` (with the bucket's latest as its base when given). */
const writeControl = (
  world: World,
  holder: Control.ControlHolder,
  base: Control.ControlBase | undefined,
  extra: Partial<Control.Control> = {}
) =>
  Loader.writeControl(world.disk.disk, {
    ...Control.forCheckpoint({ holder, store: storeName, config, base }),
    ...extra
  })

/** The directory's control file as start-up left it; undefined when there is none. */
const readControl = (world: World) =>
  Effect.flatMap(
    world.disk.disk.readAll(Loader.controlPath),
    Option.match({
      onNone: () => Effect.succeed(undefined),
      onSome: (bytes) =>
        Either.match(Control.decodeControl(Loader.controlPath, bytes), { onLeft: Effect.die, onRight: Effect.succeed })
    })
  )

/** What a refused start leaves: the bucket's keys and the control file's bytes. */
const footprint = (world: World) =>
  Effect.all({
    keys: world.bucket.keys,
    control: Effect.map(world.disk.disk.readAll(Loader.controlPath), Option.getOrUndefined)
  })

describe("Loader: the start-up plan", () => {
  it.scoped("a fresh directory over an empty bucket starts Fresh: a new instance id, the lock at epoch 1, a control file naming both", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const { loader } = yield* open(world)
      const opened = loader.opened
      assert.strictEqual(opened.plan, "Fresh")
      assert.isUndefined(opened.base)
      assert.strictEqual(opened.lock.epoch, 1)
      assert.isFalse(opened.lock.tookOver)
      const control = yield* readControl(world)
      assert.strictEqual(control?.instanceId, opened.lock.instanceId)
      assert.strictEqual(control?.epoch, 1)
      assert.strictEqual(control?.lastCheckpoint, 0)
      assert.strictEqual(control?.store, storeName)
      assert.deepStrictEqual(yield* world.bucket.keys, [KeyLayout.lockKey(layout)])
    }))

  it.scoped("an empty directory over a bucket with checkpoints restores the latest: its parts installed, its writer's commit token kept as the base", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      yield* commitCheckpoint(world, old, 1)
      const latest = yield* commitCheckpoint(world, old, 2)
      const { loader } = yield* open(world)
      const opened = loader.opened
      assert.strictEqual(opened.plan, "Restore")
      assert.strictEqual(opened.base?.manifest.checkpoint, 2)
      assert.strictEqual(opened.installedParts, 2)
      assert.strictEqual(opened.walPosition, latest.walPosition)
      assert.notStrictEqual(opened.lock.instanceId, old.instanceId, "a restore is a new instance")
      assert.strictEqual(opened.lock.epoch, old.epoch + 1, "one above every epoch the bucket shows")
      const control = yield* readControl(world)
      assert.strictEqual(control?.lastCheckpoint, 2)
      assert.strictEqual(
        control?.baseCommitToken,
        latest.commitToken,
        "until it commits its own, the restored checkpoint is its base"
      )
    }))

  it.scoped("a directory in step reopens at a new epoch and keeps the WAL's durable end it recorded", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const latest = yield* commitCheckpoint(world, old, 1)
      yield* writeControl(world, old, latest, { walDurableLsn: Ids.lsn(4242), cleanShutdown: true })
      const { loader } = yield* open(world)
      assert.strictEqual(loader.opened.plan, "Reopen")
      assert.strictEqual(loader.opened.lock.instanceId, old.instanceId)
      assert.strictEqual(loader.opened.walDurableLsn, 4242)
      const control = yield* readControl(world)
      assert.strictEqual(control?.epoch, loader.opened.lock.epoch)
      assert.strictEqual(control?.walDurableLsn, 4242)
      assert.isFalse(control?.cleanShutdown, "a running directory is not cleanly stopped")
      assert.isUndefined(control?.baseCommitToken, "its base is its own checkpoint")
    }))

  it.scoped("a clean stop records its lock's generation; the next start takes that lock at once, and drops the record", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const latest = yield* commitCheckpoint(world, old, 1)
      yield* writeControl(world, old, latest)
      yield* Loader.markCleanShutdown(world.disk.disk, [], [], undefined, "g-old")
      assert.strictEqual((yield* readControl(world))?.stoppedLockGeneration, "g-old")
      // The stopped open's lock is in the bucket: left by a failed release, or its late renewal.
      yield* world.bucket.write(KeyLayout.lockKey(layout), lockOf(old))
      const opening = yield* Effect.fork(open(world))
      yield* TestClock.adjust(1)
      assert.isTrue(Option.isSome(yield* opening.poll), "the start waited for the stopped open's lease")
      const { loader } = yield* Fiber.join(opening)
      assert.strictEqual(loader.opened.lock.epoch, old.epoch + 1, "above the stopped open's epoch")
      const control = yield* readControl(world)
      assert.isUndefined(control?.stoppedLockGeneration, "a running directory has no stopped generation")
    }))

  it.scoped("a directory behind the bucket only by its own checkpoints reopens from the bucket's latest", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const first = yield* commitCheckpoint(world, old, 1)
      yield* commitCheckpoint(world, old, 2)
      const latest = yield* commitCheckpoint(world, old, 3)
      yield* writeControl(world, old, first)
      const { loader } = yield* open(world)
      assert.strictEqual(loader.opened.plan, "Reopen")
      assert.strictEqual(loader.opened.base?.manifest.checkpoint, 3)
      assert.strictEqual(loader.opened.walPosition, latest.walPosition, "the WAL replays from the bucket's latest")
      assert.strictEqual((yield* readControl(world))?.lastCheckpoint, 3)
    }))
})

describe("Loader: prefetch", () => {
  it.scoped("loads every part of the base through leases, reporting progress up to the total", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      yield* commitCheckpoint(world, old, 1)
      const { loader, parts } = yield* open(world)
      assert.strictEqual((yield* parts.stats).loaded, 0, "a restore fetches nothing before the first lease")
      const progress: Array<string> = []
      const loaded = yield* loader.prefetch(
        2,
        ({ done, total }) => Effect.sync(() => progress.push(`${done}/${total}`))
      )
      assert.strictEqual(loaded, 2)
      assert.deepStrictEqual(progress, ["1/2", "2/2"])
      assert.strictEqual((yield* parts.stats).loaded, 2)
      assert.deepStrictEqual(yield* parts.read(fileA, 4096, 100), H.pattern(11, 100))
    }))
})

describe("Loader: refusals", () => {
  const other = { instanceId: Ids.InstanceId.make("i-other"), epoch: Ids.epoch(3) }
  /** Each case: the world it builds, and the reason it must be refused for. */
  const cases: ReadonlyArray<
    readonly [StartupRefusedReason, string, (world: World) => Effect.Effect<unknown, unknown>]
  > = [
    [
      "LocalBehind",
      "behind the bucket by another history (a copy of it ran on at another epoch)",
      (world) =>
        Effect.gen(function*() {
          const first = yield* commitCheckpoint(world, old, 1)
          yield* commitCheckpoint(world, { ...old, epoch: Ids.epoch(3) }, 2)
          yield* commitCheckpoint(world, { ...old, epoch: Ids.epoch(3) }, 3)
          yield* writeControl(world, old, first)
        })
    ],
    ["LocalAhead", "ahead of the bucket", (world) =>
      Effect.gen(function*() {
        yield* commitCheckpoint(world, old, 1)
        yield* writeControl(world, old, { checkpoint: Ids.checkpointNumber(3), walPosition: Ids.lsn(300) })
      })],
    ["ForeignInstance", "superseded: the bucket's latest is another instance's", (world) =>
      Effect.gen(function*() {
        const first = yield* commitCheckpoint(world, old, 1)
        yield* commitCheckpoint(world, other, 2)
        yield* writeControl(world, old, first)
      })],
    ["ForeignBucket", "made for another store", (world) =>
      Effect.gen(function*() {
        const first = yield* commitCheckpoint(world, old, 1)
        yield* writeControl(world, old, first, { store: "memory://elsewhere" })
      })],
    [
      "NotOurDirectory",
      "not empty and without a control file",
      (world) => world.disk.disk.writeAtomic("notes.txt", new Uint8Array([1]))
    ]
  ]

  for (const [reason, what, build] of cases) {
    it.scoped(`a directory ${what} is refused (${reason}), the message ends with the remedy, and nothing is written`, () =>
      Effect.gen(function*() {
        const world = yield* makeWorld
        yield* build(world)
        const before = yield* footprint(world)
        const error = yield* Effect.flip(open(world))
        assert(error._tag === "StartupRefused", `refused with ${error._tag}`)
        assert.strictEqual(error.reason, reason)
        assert.isTrue(error.message.endsWith(`What to do: ${startupRefusedRemedy[reason]}`), error.message)
        assert.deepStrictEqual(yield* footprint(world), before, "a refused start changes nothing")
      }))
  }

  it.scoped("a bucket locked by a live instance refuses a fresh directory (BucketLocked), which forgets the instance id it wrote", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      yield* world.bucket.write(KeyLayout.lockKey(layout), lockOf(other))
      const before = yield* footprint(world)
      const error = yield* Effect.flip(open(world))
      assert.strictEqual(error._tag, "BucketLocked")
      assert.deepStrictEqual(
        yield* footprint(world),
        before,
        "the holder's lock stands, and the control file written before the lock was removed"
      )
    }))
})

/** A store on which the old holder commits checkpoint N just before each of the first `races` claim puts of N. */
const racingStore = (world: World, races: number) =>
  Effect.gen(function*() {
    const claims = yield* Ref.make(0)
    const inner = storeOf(world)
    const store: ObjectStoreService = {
      ...inner,
      put: (key, bytes, options) =>
        Effect.gen(function*() {
          const parsed = KeyLayout.parseKey(layout, key)
          if (Option.isSome(parsed) && parsed.value._tag === "Checkpoint") {
            const count = yield* Ref.updateAndGet(claims, (n) => n + 1)
            if (count <= races) yield* commitCheckpoint(world, old, parsed.value.checkpoint)
          }
          return yield* inner.put(key, bytes, options)
        })
    }
    return { store, claims: Ref.get(claims) }
  })

describe("Loader: the claim after a take-over", () => {
  it.scoped("claims the next number with a copy of the latest checkpoint under the new epoch", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const latest = yield* commitCheckpoint(world, old, 1)
      yield* world.bucket.write(KeyLayout.lockKey(layout), lockOf(old))
      const { loader } = yield* open(world, { takeOver: true })
      const { base, lock } = loader.opened
      assert.isTrue(lock.tookOver)
      assert.strictEqual(lock.epoch, old.epoch + 1)
      assert.strictEqual(base?.manifest.checkpoint, 2)
      assert.strictEqual(base?.manifest.previous, 1)
      assert.strictEqual(base?.manifest.instanceId, lock.instanceId)
      assert.strictEqual(base?.manifest.epoch, lock.epoch)
      assert.deepStrictEqual(base?.manifest.files, latest.files)
      assert.strictEqual(base?.files.size, 1)
      const inBucket = yield* world.bucket.read(KeyLayout.checkpointKey(layout, Ids.checkpointNumber(2)))
      assert.isTrue(Option.isSome(inBucket))
      const control = yield* readControl(world)
      assert.strictEqual(control?.lastCheckpoint, 2)
      assert.isUndefined(control?.baseCommitToken, "the claim is this instance's own checkpoint")
    }))

  it.scoped("re-reads and claims the number after a commit the old holder landed in between", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      yield* commitCheckpoint(world, old, 1)
      yield* world.bucket.write(KeyLayout.lockKey(layout), lockOf(old))
      const { claims, store } = yield* racingStore(world, 1)
      const { loader } = yield* open(world, { takeOver: true }, store)
      assert.strictEqual(yield* claims, 2)
      assert.strictEqual(loader.opened.base?.manifest.checkpoint, 3)
      assert.strictEqual(loader.opened.base?.manifest.previous, 2, "built on the old holder's late commit")
      assert.strictEqual(loader.opened.base?.manifest.instanceId, loader.opened.lock.instanceId)
    }))

  it.scoped(`gives up after ${Loader.claimRoundsMax} rounds and goes on from the latest checkpoint, unclaimed`, () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      yield* commitCheckpoint(world, old, 1)
      yield* world.bucket.write(KeyLayout.lockKey(layout), lockOf(old))
      const { claims, store } = yield* racingStore(world, Number.MAX_SAFE_INTEGER)
      const { loader } = yield* open(world, { takeOver: true }, store)
      assert.strictEqual(yield* claims, Loader.claimRoundsMax)
      assert.strictEqual(loader.opened.base?.manifest.checkpoint, 1 + Loader.claimRoundsMax)
      assert.strictEqual(loader.opened.base?.manifest.instanceId, old.instanceId)
      assert.strictEqual((yield* readControl(world))?.lastCheckpoint, 1 + Loader.claimRoundsMax)
    }))
})
