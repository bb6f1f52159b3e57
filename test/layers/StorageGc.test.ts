/**
 * Goal: the garbage collector inside a running Storage keeps the bucket bounded while every
 * retained checkpoint stays restorable; a writer restarts after collection (even one whose control
 * file names a checkpoint that has since expired); shutdown stops a pass stuck on its deletes first,
 * within the deadline. Method: real time (`it.live`) over the in-memory bucket behind the fault
 * decorator and the in-memory disk (test/support/StorageHarness.ts); passes run on demand through
 * the service, except where the periodic pass is the subject.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Option } from "effect"
import * as Control from "../../src/domain/Control.js"
import * as Ids from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as Manifest from "../../src/domain/Manifest.js"
import { commitRootManifest } from "../../src/internal/RootCommit.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as GarbageCollector from "../../src/services/GarbageCollector.js"
import * as Loader from "../../src/services/Loader.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as H from "../support/StorageHarness.js"

const fileA = Ids.fileId("db/a")
const partSize = H.testConfig.partSizeBytes ?? 4096
const parts = 4
const encoder = new TextEncoder()
const collecting = { retainCheckpointsMin: 2, retainForMs: 0, gcMinAgeMs: 0, gcIntervalMs: 0 }

const countUnder = (bucket: H.Bucket, prefix: string) =>
  Effect.map(bucket.inspect.keys, (keys) => keys.filter((key) => key.startsWith(prefix)).length)

describe("Storage with the garbage collector", () => {
  it.live(
    "many checkpoints with a pass after each keep the bucket bounded; the writer restarts and a restore reads back everything",
    () =>
      Effect.gen(function*() {
        const bucket = yield* H.makeBucket
        const disk = yield* H.makeDisk
        const rounds = 12
        yield* Effect.scoped(
          Effect.gen(function*() {
            const { context, storage } = yield* H.open(bucket, disk, collecting)
            const gc = Context.get(context, GarbageCollector.GarbageCollector)
            for (let round = 1; round <= rounds; round++) {
              yield* storage.write(fileA, 0, H.pattern(round, parts * partSize))
              for (let record = 0; record < 40; record++) {
                yield* storage.append(encoder.encode(`${round}:${record}`.padEnd(200, ".")))
              }
              yield* storage.commit
              const report = yield* storage.checkpoint
              assert.strictEqual(report.outcome, "completed")
              const pass = yield* gc.collect()
              if (round > 2) assert.deepStrictEqual(pass.expiredNow, [round - 2], `round ${round}`)
              // Two checkpoints of 4 parts each, whatever the history: the bucket stays bounded.
              assert.isAtMost(yield* countUnder(bucket, "data/"), 2 * parts, `round ${round}`)
              assert.isAtMost(yield* countUnder(bucket, "manifests/"), 2, `round ${round}`)
            }
            assert.isAtMost(yield* countUnder(bucket, "wal/"), 3, "the WAL kept is the retained checkpoints'")
            assert.strictEqual(
              yield* countUnder(bucket, "checkpoints/"),
              rounds,
              "every root stays, as a manifest or a tombstone"
            )
          })
        )
        // The writer restarts on its own directory, and a fresh directory restores the latest.
        for (const [label, onDisk] of [["restart", disk], ["restore", yield* H.makeDisk]] as const) {
          const read = yield* H.withStorage(bucket, onDisk, (storage) =>
            Effect.all([Effect.succeed(storage.opened.plan), storage.read(fileA, 0, parts * partSize)]), collecting)
          assert.strictEqual(read[0], label === "restart" ? "Reopen" : "Restore")
          assert.deepStrictEqual(read[1], H.pattern(rounds, parts * partSize), label)
        }
      }),
    30_000
  )

  it.live("a restart whose control file names a checkpoint that has since expired opens", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const disk = yield* H.makeDisk
      yield* H.withStorage(bucket, disk, (storage) =>
        Effect.gen(function*() {
          for (let round = 1; round <= 5; round++) {
            yield* storage.write(fileA, 0, H.pattern(round, partSize))
            yield* storage.checkpoint
          }
        }), collecting)
      // The control file as a crash right after checkpoint 2's commit would have left it.
      const controlBytes = Option.getOrThrow(yield* disk.disk.readAll(Loader.controlPath))
      const control = Either.getOrThrow(Control.decodeControl("control", controlBytes))
      assert.strictEqual(control.lastCheckpoint, 5)
      const config = Either.getOrThrow(StorageConfig.validate({ ...H.testConfig, ...collecting }))
      const pass = yield* GarbageCollector.collect(MemoryObjectStore.storeOf(bucket.state), config, {
        policy: { retainCheckpointsMin: 1, retainForMs: 0 }
      })
      assert.deepStrictEqual(pass.expiredNow, [1, 2, 3, 4])
      yield* disk.disk.writeAtomic(
        Loader.controlPath,
        Control.encodeControl({ ...control, lastCheckpoint: Ids.CheckpointNumber.make(2), cleanShutdown: false })
      )
      const read = yield* H.withStorage(bucket, disk, (storage) =>
        Effect.all([Effect.succeed(storage.opened.plan), storage.read(fileA, 0, partSize)]), collecting)
      assert.strictEqual(read[0], "Reopen")
      assert.deepStrictEqual(read[1], H.pattern(5, partSize))
    }), 30_000)

  it.live(
    "shutdown stops a periodic pass stuck on its deletes first, and meets its deadline",
    () =>
      Effect.gen(function*() {
        const bucket = yield* H.makeBucket
        yield* bucket.faults.stall({ operations: ["delete"], keyPrefix: "data/" })
        const report = yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
          Effect.gen(function*() {
            for (let round = 1; round <= 4; round++) {
              yield* storage.write(fileA, 0, H.pattern(round, partSize))
              yield* storage.checkpoint
            }
            yield* bucket.faults.awaitStats((stats) => stats.stalledNow > 0)
            return yield* storage.shutdown
          }), { ...collecting, gcIntervalMs: 20 })
        assert.isTrue(report.metDeadline, `${report.durationMs} ms`)
        assert.strictEqual(report.fibersAlive, 0)
        assert.strictEqual(
          report.finalCheckpoint.outcome === "completed" || report.finalCheckpoint.outcome === "none",
          true,
          JSON.stringify(report.finalCheckpoint)
        )
      }),
    30_000
  )

  it.live(
    "a periodic pass that fails closed deletes nothing, and the next interval tries again",
    () =>
      Effect.gen(function*() {
        const bucket = yield* H.makeBucket
        const failing = yield* bucket.faults.failPermanently({ operations: ["list"], keyPrefix: "data/" })
        yield* H.withStorage(bucket, yield* H.makeDisk, (storage) =>
          Effect.gen(function*() {
            for (let round = 1; round <= 4; round++) {
              yield* storage.write(fileA, 0, H.pattern(round, partSize))
              yield* storage.checkpoint
            }
            // Passes fail at their listing of data/, again and again, and delete nothing.
            yield* bucket.faults.awaitStats((stats) => stats.injected.permanent >= 3)
            assert.strictEqual((yield* bucket.faults.stats).operations.delete.started, 0)
            yield* bucket.faults.remove(failing)
            yield* bucket.faults.awaitStats((stats) => stats.operations.delete.finished > 0)
          }), { ...collecting, gcIntervalMs: 20 })
      }),
    30_000
  )

  it.effect("a commit that finds a tombstone at its number reads it as taken, by its epoch: a newer one fences", () =>
    Effect.gen(function*() {
      const { store } = yield* MemoryObjectStore.make()
      const config = Either.getOrThrow(StorageConfig.validate({ ...H.testConfig }))
      const checkpoint = Ids.CheckpointNumber.make(7)
      const theirs: Manifest.CheckpointManifest = {
        format: Manifest.checkpointManifestFormat,
        instanceId: Ids.InstanceId.make("i00000000000000bb"),
        epoch: Ids.Epoch.make(3),
        checkpoint,
        previous: Ids.CheckpointNumber.make(6),
        createdAtMs: 0,
        partSizeBytes: partSize,
        walSegmentBytes: 16 * 1024,
        walPosition: Ids.Lsn.make(0),
        files: []
      }
      const key = KeyLayout.checkpointKey(KeyLayout.make(""), checkpoint)
      yield* store.put(key, Manifest.encodeExpiredCheckpoint(Manifest.expiredCheckpointOf(theirs, 1)))
      const mine = {
        ...theirs,
        instanceId: Ids.InstanceId.make("i00000000000000aa"),
        epoch: Ids.Epoch.make(2),
        commitToken: "t"
      }
      const resolution = yield* commitRootManifest({
        manifest: mine,
        put: store.put(key, Manifest.encodeCheckpointManifest(mine), { ifNoneMatch: true }),
        readBack: Loader.readBackRoot(store, config, checkpoint),
        earlierTokens: new Set(),
        conflictRetriesMax: 1,
        conflictDelayMs: 1
      })
      assert.strictEqual(resolution._tag, "Taken")
      if (resolution._tag === "Taken") assert.strictEqual(resolution.owner, "newer-epoch")
    }))
})
