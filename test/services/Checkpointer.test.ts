/**
 * Goal: a checkpoint whose commit is in the bucket is reported, recorded and acted on as committed
 * whatever the network did to the commit's response, and a directory behind the bucket only by its
 * own checkpoints reopens with every acknowledged record, while one behind by another history is
 * still refused. Method: the Storage layer over the in-memory bucket and disk (real time,
 * `it.live`); the root manifest's PUT is applied and its response lost with the fault decorator's
 * `lostResponse`; a SIGKILL is modelled by cutting the instance off its disk and bucket, reverting
 * the disk's unsynced writes and dropping the instance (its shutdown can then change nothing).
 * Every acknowledged record (write, append, commit) is kept in a ledger outside the instance and
 * checked after every restart. One case runs over S3 (s3rver), where the retry of the lost PUT gets
 * a real 412. `commitRootManifest` is also tested alone against a scripted bucket (409 retries).
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Either, Exit, Fiber, Layer, Option, Ref, Scope } from "effect"
import * as Control from "../../src/domain/Control.js"
import { LocalIoError, ObjectStoreUnavailable, PreconditionFailed } from "../../src/domain/Errors.js"
import * as Ids from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as Manifest from "../../src/domain/Manifest.js"
import { commitRootManifest } from "../../src/internal/RootCommit.js"
import { layerWithServices } from "../../src/internal/storageLayer.js"
import * as FaultyObjectStore from "../../src/layers/FaultyObjectStore.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as S3ObjectStore from "../../src/layers/S3ObjectStore.js"
import * as Storage from "../../src/layers/Storage.js"
import * as Checkpointer from "../../src/services/Checkpointer.js"
import * as Loader from "../../src/services/Loader.js"
import { LocalDisk, type LocalDiskService } from "../../src/services/LocalDisk.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as S3TestServer from "../support/S3TestServer.js"
import * as H from "../support/StorageHarness.js"

const fileA = Ids.fileId("db/a")
const recordBytes = 48
const checkpointsPrefix = "checkpoints/"

/** Checkpoint N's root manifest, as the bucket holds it. */
const readManifest = (bucket: H.Bucket, checkpoint: number) =>
  Effect.flatMap(
    bucket.inspect.read(KeyLayout.checkpointKey(KeyLayout.make(""), Ids.checkpointNumber(checkpoint))),
    (bytes) =>
      Option.isNone(bytes)
        ? Effect.dieMessage(`no checkpoint ${checkpoint}`)
        : Either.match(Manifest.decodeCheckpointManifest("checkpoint", bytes.value, Ids.checkpointNumber(checkpoint)), {
          onLeft: Effect.die,
          onRight: Effect.succeed
        })
  )

/** The part entries (part, checkpoint, SHA-256) that checkpoint `checkpoint` names for `file`. */
const partsNamed = (bucket: H.Bucket, checkpoint: number, file: Ids.FileId) =>
  Effect.gen(function*() {
    const root = yield* readManifest(bucket, checkpoint)
    const entry = root.files.find((each) => each.file === file)
    if (entry === undefined) return []
    const key = KeyLayout.fileManifestKey(KeyLayout.make(""), entry.manifestCheckpoint, file, entry.manifestSha256)
    const bytes = Option.getOrThrow(yield* bucket.inspect.read(key))
    const manifest = Either.getOrThrow(
      Manifest.decodeFileManifest(key, bytes, { file, sha256: entry.manifestSha256, partSizeBytes: 4096 }) // the harness's part size
    )
    return manifest.parts.map(([part, at, sha256]) => `${part}@${at}:${sha256}`)
  })

/** Acknowledged records: index → the bytes written at `index * recordBytes` of fileA. */
type Ledger = Map<number, Uint8Array>

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Apply, then log, then commit: once this returns the record is acknowledged. */
const acknowledge = (storage: Storage.StorageService, ledger: Ledger, index: number) =>
  Effect.gen(function*() {
    const bytes = H.pattern(index + 1000, recordBytes)
    yield* storage.write(fileA, index * recordBytes, bytes)
    yield* storage.append(encoder.encode(String(index)))
    yield* storage.commit
    ledger.set(index, bytes)
  })

const replay: Storage.StorageOptions = {
  replay: (record, storage) => {
    const index = Number(decoder.decode(record.bytes))
    return storage.write(fileA, index * recordBytes, H.pattern(index + 1000, recordBytes))
  }
}

const assertLedger = (storage: Storage.StorageService, ledger: Ledger) =>
  Effect.forEach(
    ledger,
    ([index, bytes]) =>
      Effect.map(storage.read(fileA, index * recordBytes, recordBytes), (read) =>
        assert.deepStrictEqual(read, bytes, `acknowledged record ${index}`)),
    { discard: true }
  )

const readControl = (disk: H.Disk) =>
  Effect.flatMap(
    disk.disk.readAll(Loader.controlPath),
    (bytes) =>
      Option.isNone(bytes)
        ? Effect.dieMessage("no control file")
        : Either.getOrThrow(Either.map(Control.decodeControl("control.json", bytes.value), Effect.succeed))
  )

/** An instance that can be SIGKILLed: its own view of the bucket and of the disk, both cut at the kill. */
const openKillable = (
  bucket: H.Bucket,
  memory: H.Disk,
  config: Partial<StorageConfig.StorageConfigValue> = {},
  beforeControlWrite: Effect.Effect<void> = Effect.void
) =>
  Effect.gen(function*() {
    let killed = false
    const guard = <A>(operation: string, path: string, effect: Effect.Effect<A, LocalIoError>) =>
      Effect.suspend(
        () => (killed ? Effect.fail(new LocalIoError({ operation, path, detail: "the process was killed" })) : effect)
      )
    const inner = memory.disk
    const disk: LocalDiskService = {
      root: inner.root,
      read: (path, offset, length) => guard("read", path, inner.read(path, offset, length)),
      readAll: (path) => guard("readAll", path, inner.readAll(path)),
      readAllInto: (path, buffer) => guard("readAllInto", path, inner.readAllInto(path, buffer)),
      write: (path, offset, bytes) => guard("write", path, inner.write(path, offset, bytes)),
      writeAtomic: (path, bytes) =>
        guard(
          "writeAtomic",
          path,
          path === Loader.controlPath
            ? Effect.zipRight(beforeControlWrite, inner.writeAtomic(path, bytes))
            : inner.writeAtomic(path, bytes)
        ),
      sync: (path) => guard("sync", path, inner.sync(path)),
      remove: (path) => guard("remove", path, inner.remove(path)),
      size: (path) => guard("size", path, inner.size(path)),
      list: (directory) => guard("list", directory, inner.list(directory)),
      usedBytes: (directory) => guard("usedBytes", directory, inner.usedBytes(directory)),
      lockDirectory: inner.lockDirectory
    }
    const faults = yield* FaultyObjectStore.makeController({ seed: 7 })
    const layer = layerWithServices(replay).pipe(
      Layer.provide(
        FaultyObjectStore.layer(faults).pipe(Layer.provide(MemoryObjectStore.layerWithBucket(bucket.state)))
      ),
      Layer.provide(Layer.succeed(LocalDisk, disk)),
      Layer.provide(StorageConfig.layer({ ...H.testConfig, ...config }))
    )
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(layer, scope)
    const kill = Effect.gen(function*() {
      killed = true
      yield* faults.failPermanently()
      yield* memory.control.crash
      yield* Scope.close(scope, Exit.void)
    })
    return { storage: Context.get(context, Storage.Storage), context, faults, kill }
  })

describe("Checkpointer: a commit whose response the network lost", () => {
  it.live("is resolved by reading the manifest back: completed, control file rewritten, WAL told, and a crash after it loses nothing", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      const ledger: Ledger = new Map()
      const { faults, kill, storage } = yield* openKillable(bucket, memory)
      for (let index = 0; index < 10; index++) yield* acknowledge(storage, ledger, index)
      assert.strictEqual((yield* storage.checkpoint).checkpoint, 1)
      for (let round = 0; round < 2; round++) {
        for (let index = 10 + round * 10; index < 20 + round * 10; index++) yield* acknowledge(storage, ledger, index)
        // The PUT is applied; its response is lost; the retry gets 412.
        yield* faults.lostResponse({ operations: ["put"], keyPrefix: checkpointsPrefix }, { times: 1 })
        const report = yield* storage.checkpoint
        assert.strictEqual(report.outcome, "completed")
        assert.strictEqual(report.checkpoint, 2 + round)
        const control = yield* readControl(memory)
        assert.strictEqual(control.lastCheckpoint, report.checkpoint, "the control file names the checkpoint")
        assert.strictEqual(control.walPosition, report.walPosition)
        assert.strictEqual(
          (yield* storage.stats).wal.coveredLsn,
          report.walPosition,
          "the WAL was told what the checkpoint covers"
        )
      }
      assert.strictEqual((yield* faults.stats).injected.lostResponse, 2)
      for (let index = 30; index < 40; index++) yield* acknowledge(storage, ledger, index)
      yield* kill
      yield* H.withStorage(
        bucket,
        memory,
        (restarted) =>
          Effect.gen(function*() {
            assert.strictEqual(restarted.opened.plan, "Reopen")
            // The killed open's lease expired: the restart takes the lock with a higher epoch and
            // claims checkpoint 4, a copy of 3 (so the killed generation could never commit again).
            assert.strictEqual(restarted.opened.base?.manifest.checkpoint, 4)
            assert.strictEqual(
              restarted.opened.base?.manifest.walPosition,
              (yield* readManifest(bucket, 3)).walPosition
            )
            yield* assertLedger(restarted, ledger)
          }),
        {},
        replay
      )
    }))

  it.live("every response lost, retries exhausted: the checkpoint still reports completed", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      yield* H.withStorage(bucket, memory, (storage) =>
        Effect.gen(function*() {
          yield* storage.write(fileA, 0, H.pattern(1, 100))
          yield* bucket.faults.lostResponse({ operations: ["put"], keyPrefix: checkpointsPrefix })
          const report = yield* storage.checkpoint
          assert.strictEqual(report.outcome, "completed")
          assert.strictEqual((yield* readControl(memory)).lastCheckpoint, 1)
          assert.isAtLeast(
            (yield* bucket.faults.stats).injected.lostResponse,
            2,
            "the retries lost their responses too"
          )
          yield* bucket.faults.heal
        }))
    }))

  it.live("at shutdown: the final checkpoint reports completed, and the next start is in step", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      const report = yield* H.withStorage(bucket, memory, (storage) =>
        Effect.gen(function*() {
          yield* storage.write(fileA, 0, H.pattern(2, 100))
          yield* bucket.faults.lostResponse({ operations: ["put"], keyPrefix: checkpointsPrefix }, { times: 1 })
          return yield* storage.shutdown
        }))
      assert.deepStrictEqual(report.finalCheckpoint, { outcome: "completed", checkpoint: Ids.checkpointNumber(1) })
      assert.strictEqual((yield* readControl(memory)).lastCheckpoint, 1)
      yield* H.withStorage(bucket, memory, (storage) =>
        Effect.gen(function*() {
          assert.strictEqual(storage.opened.plan, "Reopen")
          assert.deepStrictEqual(yield* storage.read(fileA, 0, 100), H.pattern(2, 100))
        }))
    }))

  it.live("an earlier attempt cut at its deadline that lands later is adopted: its steps run, then the next checkpoint commits", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      yield* Effect.scoped(Effect.gen(function*() {
        // A request timeout longer than the deadline: the cut attempt's PUT is still in flight after it.
        const { context, storage } = yield* H.open(bucket, memory, { requestTimeoutMs: 2_000 })
        const checkpointer = Context.get(context, Checkpointer.Checkpointer)
        yield* storage.write(fileA, 0, H.pattern(3, 100))
        assert.strictEqual((yield* storage.checkpoint).checkpoint, 1)
        yield* storage.write(fileA, 0, H.pattern(4, 100))
        yield* bucket.faults.stall({ operations: ["put"], keyPrefix: checkpointsPrefix })
        const cut = yield* Effect.flip(checkpointer.checkpoint({ deadlineMs: 500 }))
        assert.isTrue(cut._tag === "CheckpointFailed" && cut.reason === "TimedOut", String(cut))
        assert.strictEqual((yield* bucket.faults.stats).stalledNow, 1, "the cut attempt's commit is in flight")
        // It proceeds and lands after the deadline.
        yield* bucket.faults.heal
        yield* bucket.faults.awaitStats((stats) => stats.operations.put.started === stats.operations.put.finished)
        assert.isTrue(
          Option.isSome(
            yield* bucket.inspect.read(KeyLayout.checkpointKey(KeyLayout.make(""), Ids.checkpointNumber(2)))
          ),
          "the cut attempt's manifest landed"
        )
        assert.strictEqual((yield* readControl(memory)).lastCheckpoint, 1)
        yield* storage.write(fileA, 0, H.pattern(5, 100))
        const report = yield* storage.checkpoint
        assert.strictEqual(report.outcome, "completed")
        assert.strictEqual(report.checkpoint, 3, "checkpoint 2 was adopted, this one is 3")
        assert.strictEqual((yield* readControl(memory)).lastCheckpoint, 3)
        assert.strictEqual((yield* checkpointer.stats).lastCheckpoint, 3)
        // The attempt that lost number 2 to the earlier one uploaded its part under 3, not 2:
        // checkpoint 3 names nothing under 2 that 2 does not, so once 2 is the latest committed,
        // the collector may delete what 2 does not name (Retention.mayStillBeNamed).
        const namedBy2 = yield* partsNamed(bucket, 2, fileA)
        const namedBy3 = yield* partsNamed(bucket, 3, fileA)
        assert.deepStrictEqual(
          namedBy3.filter((entry) => !entry.includes("@3:")),
          namedBy2.filter((entry) => namedBy3.includes(entry)),
          `checkpoint 2 names ${namedBy2.join(", ")}; 3 names ${namedBy3.join(", ")}`
        )
        assert.isTrue(namedBy3.some((entry) => entry.startsWith("0@3:")), "the losing attempt's part is under 3")
      }))
    }))
})

describe("Checkpointer over S3 (s3rver): a commit whose response was lost", () => {
  it.live(
    "gets 412 on its retry, reads its own manifest back and completes; the next start is in step",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* S3TestServer.make()
        const faults = yield* FaultyObjectStore.makeController({ seed: 9 })
        const memory = yield* H.makeDisk
        const config: Partial<StorageConfig.StorageConfigValue> = {
          requestTimeoutMs: 5_000,
          retryElapsedMaxMs: 10_000,
          checkpointDeadlineMs: 20_000,
          shutdownDeadlineMs: 20_000,
          shutdownCheckpointDeadlineMs: 15_000,
          drainDeadlineMs: 2_000
        }
        const s3 = S3ObjectStore.layer({
          bucket: server.bucket,
          endpoint: server.endpoint,
          region: server.region,
          forcePathStyle: true,
          credentials: server.credentials,
          requestTimeoutMs: 5_000
        })
        const layer = Storage.layer().pipe(
          Layer.provide(FaultyObjectStore.layer(faults).pipe(Layer.provide(s3))),
          Layer.provide(MemoryDisk.layerOf(memory)),
          Layer.provide(StorageConfig.layer({ ...H.testConfig, ...config }))
        )
        const report = yield* Effect.scoped(Effect.gen(function*() {
          const storage = Context.get(yield* Layer.build(layer), Storage.Storage)
          yield* storage.write(fileA, 0, H.pattern(8, 3000))
          yield* faults.lostResponse({ operations: ["put"], keyPrefix: checkpointsPrefix }, { times: 1 })
          const checkpoint = yield* storage.checkpoint
          assert.strictEqual((yield* faults.stats).injected.lostResponse, 1)
          assert.strictEqual((yield* readControl(memory)).lastCheckpoint, 1)
          return checkpoint
        }))
        assert.strictEqual(report.outcome, "completed")
        yield* Effect.scoped(Effect.gen(function*() {
          const storage = Context.get(yield* Layer.build(layer), Storage.Storage)
          assert.strictEqual(storage.opened.plan, "Reopen")
          assert.deepStrictEqual(yield* storage.read(fileA, 0, 3000), H.pattern(8, 3000))
        }))
      })),
    120_000
  )
})

describe("Checkpointer: the deadline of a committed checkpoint", () => {
  it.live("the steps after the commit run to their end past the deadline, and the checkpoint reports completed", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      const gate = yield* Ref.make<
        Option.Option<{ readonly entered: Deferred.Deferred<void>; readonly release: Deferred.Deferred<void> }>
      >(Option.none())
      // While armed, the control file's rewrite waits for `release` (a slow disk).
      const beforeControlWrite = Effect.flatMap(
        Ref.get(gate),
        Option.match({
          onNone: () => Effect.void,
          onSome: ({ entered, release }) =>
            Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(release))
        })
      )
      const ledger: Ledger = new Map()
      const { context, kill, storage } = yield* openKillable(bucket, memory, {}, beforeControlWrite)
      const checkpointer = Context.get(context, Checkpointer.Checkpointer)
      for (let index = 0; index < 10; index++) yield* acknowledge(storage, ledger, index)
      yield* storage.checkpoint // warms the hasher up: the next one commits well within its deadline
      for (let index = 10; index < 20; index++) yield* acknowledge(storage, ledger, index)
      const entered = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      yield* Ref.set(gate, Option.some({ entered, release }))
      const deadlineMs = 300
      const running = yield* Effect.fork(checkpointer.checkpoint({ deadlineMs }))
      const first = yield* Effect.raceFirst(
        Effect.as(Deferred.await(entered), "committed"),
        Effect.as(Fiber.await(running), "ended")
      )
      assert.strictEqual(first, "committed", "the checkpoint reached the control file's rewrite")
      // Committed, rewriting the control file: let the deadline pass, then let the disk answer.
      yield* Effect.sleep(deadlineMs + 100)
      yield* Deferred.succeed(release, undefined)
      const report = yield* Fiber.join(running)
      assert.strictEqual(report.outcome, "completed")
      assert.strictEqual((yield* readControl(memory)).lastCheckpoint, 2, "the control file was rewritten")
      assert.strictEqual((yield* storage.stats).wal.coveredLsn, report.walPosition)
      yield* Ref.set(gate, Option.none())
      yield* kill
      yield* H.withStorage(bucket, memory, (restarted) => assertLedger(restarted, ledger), {}, replay)
    }))
  it.live("a checkpoint interrupted once its commit is in (a periodic one stopped at shutdown) is counted in the stats", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      const entered = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const armed = yield* Ref.make(false)
      // While armed, the control file's rewrite (after the commit) waits for `release`.
      const beforeControlWrite = Effect.flatMap(
        Ref.get(armed),
        (isArmed) =>
          isArmed ? Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(release)) : Effect.void
      )
      const ledger: Ledger = new Map()
      const { context, kill, storage } = yield* openKillable(bucket, memory, {}, beforeControlWrite)
      const checkpointer = Context.get(context, Checkpointer.Checkpointer)
      for (let index = 0; index < 10; index++) yield* acknowledge(storage, ledger, index)
      yield* storage.checkpoint
      for (let index = 10; index < 20; index++) yield* acknowledge(storage, ledger, index)
      yield* Ref.set(armed, true)
      const running = yield* Effect.fork(checkpointer.checkpoint({ reason: "periodic" }))
      yield* Deferred.await(entered)
      // Committed and rewriting the control file: the interruption waits for the bookkeeping, then lands.
      const interrupting = yield* Effect.fork(Fiber.interrupt(running))
      yield* Deferred.succeed(release, undefined)
      const exit = yield* Fiber.join(interrupting)
      assert.isTrue(Exit.isInterrupted(exit), "the checkpoint was interrupted")
      assert.strictEqual(yield* checkpointer.latest, 2, "the writer knows checkpoint 2 committed")
      const stats = yield* checkpointer.stats
      assert.strictEqual(stats.lastCheckpoint, 2, "the stats count the interrupted checkpoint's commit")
      assert.strictEqual(stats.completed, 2)
      assert.isAbove(stats.bytesUploaded, 0)
      yield* readManifest(bucket, 2)
      // The next checkpoint (the shutdown's final one) has nothing new, and the stats still say 2.
      assert.strictEqual((yield* checkpointer.checkpoint({ reason: "shutdown" })).outcome, "nothing-to-do")
      assert.strictEqual((yield* checkpointer.stats).lastCheckpoint, 2)
      yield* Ref.set(armed, false)
      yield* kill
      yield* H.withStorage(bucket, memory, (restarted) => assertLedger(restarted, ledger), {}, replay)
    }))

  it.live("once the clean stop's mark has sealed the control file, a checkpoint that commits leaves it as the mark left it", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      const ledger: Ledger = new Map()
      const { context, kill, storage } = yield* openKillable(bucket, memory)
      const checkpointer = Context.get(context, Checkpointer.Checkpointer)
      for (let index = 0; index < 5; index++) yield* acknowledge(storage, ledger, index)
      yield* storage.checkpoint
      const marked = { ...(yield* readControl(memory)), cleanShutdown: true }
      yield* checkpointer.sealControl(Loader.writeControl(memory.disk, marked))
      for (let index = 5; index < 10; index++) yield* acknowledge(storage, ledger, index)
      // A checkpoint past the mark (one a shutdown cut, whose commit lands late) commits, and the
      // mark stays the control file's last word.
      assert.strictEqual((yield* checkpointer.checkpoint({ reason: "periodic" })).outcome, "completed")
      assert.strictEqual(yield* checkpointer.latest, 2)
      assert.deepStrictEqual(yield* readControl(memory), marked)
      yield* kill
      yield* H.withStorage(bucket, memory, (restarted) => assertLedger(restarted, ledger), {}, replay)
    }))
})

describe("Loader: a directory behind the bucket", () => {
  it.live("behind only by its own checkpoints (control file not rewritten after two of them): reopens and replays its WAL", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const memory = yield* H.makeDisk
      const ledger: Ledger = new Map()
      const { kill, storage } = yield* openKillable(bucket, memory)
      for (let index = 0; index < 10; index++) yield* acknowledge(storage, ledger, index)
      yield* storage.checkpoint
      for (let round = 0; round < 2; round++) {
        for (let index = 10 + round * 10; index < 20 + round * 10; index++) yield* acknowledge(storage, ledger, index)
        yield* memory.control.failNext({ operation: "writeAtomic", pathPrefix: Loader.controlPath })
        assert.strictEqual((yield* storage.checkpoint).outcome, "completed")
      }
      assert.strictEqual((yield* readControl(memory)).lastCheckpoint, 1, "the control file stayed at checkpoint 1")
      for (let index = 30; index < 40; index++) yield* acknowledge(storage, ledger, index)
      yield* kill
      yield* H.withStorage(
        bucket,
        memory,
        (restarted) =>
          Effect.gen(function*() {
            assert.strictEqual(restarted.opened.plan, "Reopen")
            // Checkpoint 4 is the restart's claim of the expired lease: a copy of 3 in a higher epoch.
            assert.strictEqual(restarted.opened.base?.manifest.checkpoint, 4, "opened from the bucket's latest")
            assert.strictEqual(
              restarted.opened.base?.manifest.walPosition,
              (yield* readManifest(bucket, 3)).walPosition,
              "checkpoint 3's WAL position"
            )
            assert.strictEqual(
              restarted.opened.walPosition,
              restarted.opened.base?.manifest.walPosition,
              "replayed from its WAL position"
            )
            assert.strictEqual((yield* readControl(memory)).lastCheckpoint, 4, "in step with the bucket again")
            yield* assertLedger(restarted, ledger)
          }),
        {},
        replay
      )
    }))

  it.live("behind by the checkpoints of a copy of it that ran on: refused, naming the remedy", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const original = yield* H.makeDisk
      yield* H.withStorage(
        bucket,
        original,
        (storage) => Effect.asVoid(Effect.zipRight(storage.write(fileA, 0, H.pattern(5, 100)), storage.checkpoint))
      )
      // A copy of the stopped directory (cp -r) runs on and checkpoints twice.
      const copy = yield* H.makeDisk
      for (const path of yield* original.disk.list("")) {
        const bytes = yield* original.disk.readAll(path)
        if (Option.isSome(bytes)) yield* copy.disk.writeAtomic(path, bytes.value)
      }
      yield* H.withStorage(bucket, copy, (storage) =>
        Effect.gen(function*() {
          for (let round = 0; round < 2; round++) {
            yield* storage.write(fileA, 0, H.pattern(6 + round, 100))
            yield* storage.checkpoint
          }
        }))
      const refused = yield* Effect.flip(H.withStorage(bucket, original, () => Effect.void))
      assert.strictEqual(refused._tag === "StartupRefused" ? refused.reason : refused._tag, "LocalBehind")
      assert.match(refused.message, /another history.*empty data directory/)
    }))
})

describe("commitRootManifest", () => {
  const manifest = (commitToken: string): Manifest.CheckpointManifest & { readonly commitToken: string } => ({
    format: "effect-s3-tier/checkpoint@1",
    instanceId: Ids.InstanceId.make("i1"),
    epoch: Ids.epoch(1),
    checkpoint: Ids.checkpointNumber(4),
    previous: Ids.checkpointNumber(3),
    createdAtMs: 0,
    partSizeBytes: 4096,
    walSegmentBytes: 16384,
    walPosition: Ids.lsn(0),
    files: [],
    commitToken
  })
  /** A key of a scripted bucket: each put answers from `answers` in turn ("ok", "lost", "conflict"). */
  const scripted = (answers: ReadonlyArray<"ok" | "lost" | "conflict" | "taken">, mine = manifest("mine")) =>
    Effect.gen(function*() {
      const held = yield* Ref.make(Option.none<Manifest.CheckpointManifest>())
      const puts = yield* Ref.make(0)
      const put = Effect.flatMap(
        Effect.all([Ref.getAndUpdate(puts, (count) => count + 1), Ref.get(held)]),
        ([count, present]): Effect.Effect<void, ObjectStoreUnavailable | PreconditionFailed> => {
          const answer = answers[Math.min(count, answers.length - 1)]
          if (Option.isSome(present)) return Effect.fail(new PreconditionFailed({ operation: "put", key: "k" }))
          switch (answer) {
            case "ok":
              return Ref.set(held, Option.some<Manifest.CheckpointManifest>(mine))
            case "lost":
              return Effect.zipRight(
                Ref.set(held, Option.some<Manifest.CheckpointManifest>(mine)),
                Effect.fail(new ObjectStoreUnavailable({ operation: "put", reason: "Network", detail: "lost" }))
              )
            case "taken":
              return Effect.zipRight(
                Ref.set(held, Option.some<Manifest.CheckpointManifest>(manifest("theirs"))),
                Effect.fail(new PreconditionFailed({ operation: "put", key: "k" }))
              )
            default:
              // 409 ConditionalRequestConflict: another conditional write in progress; nothing applied.
              return Effect.fail(new PreconditionFailed({ operation: "put", key: "k" }))
          }
        }
      )
      const attempt = {
        manifest: mine,
        put,
        readBack: Ref.get(held),
        earlierTokens: new Set<string>(),
        conflictRetriesMax: 3,
        conflictDelayMs: 1
      }
      return { attempt, puts }
    })

  it.live("a lost response is resolved by the read-back; a 409 is retried, bounded; another token is Taken", () =>
    Effect.gen(function*() {
      const lost = yield* scripted(["lost"])
      assert.deepStrictEqual(yield* commitRootManifest(lost.attempt), { _tag: "Committed", resolvedBy: "read-back" })
      const conflict = yield* scripted(["conflict", "conflict", "ok"])
      assert.deepStrictEqual(yield* commitRootManifest(conflict.attempt), { _tag: "Committed", resolvedBy: "response" })
      assert.strictEqual(yield* Ref.get(conflict.puts), 3)
      const stuck = yield* scripted(["conflict"])
      const failed = yield* Effect.flip(commitRootManifest(stuck.attempt))
      assert.strictEqual(failed._tag, "PreconditionFailed")
      assert.strictEqual(yield* Ref.get(stuck.puts), 4, "the first put and three retries")
      const taken = yield* scripted(["taken"])
      const resolution = yield* commitRootManifest(taken.attempt)
      assert.isTrue(
        resolution._tag === "Taken" && resolution.owner === "other-writer" && resolution.found.commitToken === "theirs"
      )
    }))
})
