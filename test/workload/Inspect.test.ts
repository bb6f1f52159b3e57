/**
 * Goal: `inspect` tells complete checkpoints from incomplete ones (uploads without a root manifest,
 * a root manifest whose file manifest does not check), and `verifyCheckpoint` finds every part
 * whose bytes differ from the manifest's digest or are missing. Method: a real storage tier over an
 * in-memory bucket and disk writes and checkpoints through the workload's own codecs; then the
 * bucket is damaged directly, object by object.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import { checkpointNumber, partIndex, Sha256Hex } from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import * as Storage from "../../src/layers/Storage.js"
import * as GarbageCollector from "../../src/services/GarbageCollector.js"
import * as Loader from "../../src/services/Loader.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as Inspect from "../../src/workload/Inspect.js"
import * as Page from "../../src/workload/Page.js"
import * as Verify from "../../src/workload/Verify.js"
import * as Workload from "../../src/workload/Workload.js"

const config = StorageConfig.validate({ checkpointIntervalMs: 0, partSizeBytes: 64 * 1024 })
const configValue = config._tag === "Right" ? config.right : StorageConfig.defaults

/** Writes `pages` pages of two files and checkpoints twice; returns the bucket and its store. */
const filledBucket = Effect.gen(function*() {
  const state = yield* MemoryObjectStore.makeBucket("inspect")
  const layer = Storage.layer().pipe(
    Layer.provide(
      Layer.mergeAll(StorageConfig.layer(configValue), MemoryObjectStore.layerWithBucket(state), MemoryDisk.layer)
    )
  )
  yield* Effect.scoped(
    Effect.gen(function*() {
      const context = yield* Layer.build(layer)
      const storage = Context.get(context, Storage.Storage)
      for (let round = 0; round < 2; round++) {
        for (let page = 0; page < 16; page++) {
          for (const file of [0, 1]) {
            const identity = { insertId: round * 100 + page + 1, file, page: page * 3 }
            yield* storage.write(Workload.fileIdOf(file), identity.page * Page.pageBytes, Page.encodePage(identity))
            yield* storage.append(Page.encodeRecord(identity))
          }
        }
        yield* storage.commit
        yield* storage.checkpoint
      }
      yield* storage.shutdown
    })
  )
  return { bucket: MemoryObjectStore.inspect(state), store: MemoryObjectStore.storeOf(state) }
})

describe("Inspect and verifyCheckpoint", () => {
  it.scopedLive("tell complete from incomplete checkpoints and find damaged parts", () =>
    Effect.gen(function*() {
      const { bucket, store } = yield* filledBucket
      const clean = yield* Inspect.inspect(store, configValue)
      assert.strictEqual(clean.lock, null)
      const complete = clean.checkpoints.filter((row) => row.complete)
      assert.isAtLeast(complete.length, 2)
      const last = complete.at(-1)
      assert.isDefined(last)
      assert.strictEqual(last?.files, 2)
      assert.isAbove(last?.parts ?? 0, 0)
      assert.include(Inspect.formatTable(clean), "complete")

      // Uploads of a checkpoint that never committed.
      const layout = StorageConfig.keyLayout(configValue)
      const strayCheckpoint = (last?.checkpoint ?? 0) + 1
      const sha = Sha256Hex.make("0".repeat(64))
      yield* bucket.write(
        KeyLayout.partKey(layout, checkpointNumber(strayCheckpoint), Workload.fileIdOf(0), partIndex(0), sha),
        new Uint8Array(10)
      )
      const withStray = yield* Inspect.inspect(store, configValue)
      const stray = withStray.checkpoints.find((row) => row.checkpoint === strayCheckpoint)
      assert.isFalse(stray?.complete)
      assert.include(stray?.detail ?? "", "no root manifest")

      // verifyCheckpoint: every part of the latest checkpoint checks, written to a fresh disk.
      const latest = yield* Loader.readLatest(store, configValue)
      assert.isDefined(latest)
      const disk = yield* MemoryDisk.make
      const verified = yield* Verify.verifyCheckpoint(store, configValue, disk.disk, latest, { concurrency: 4 })
      assert.isTrue(verified.ok)
      assert.strictEqual(verified.partsChecked, last?.parts)
      assert.strictEqual((yield* disk.disk.list("")).length, verified.partsChecked)

      // Damage one part object and remove another: two mismatches, each named.
      const partKeys: Array<string> = []
      for (const [file, loaded] of latest.files) {
        for (const [part, checkpoint, sha256] of loaded.parts) {
          partKeys.push(KeyLayout.partKey(layout, checkpoint, file, part, sha256))
        }
      }
      const [damaged, removed] = partKeys
      assert.isDefined(damaged)
      assert.isDefined(removed)
      const original = Option.getOrThrow(yield* bucket.read(damaged))
      original[0] = (original[0] ?? 0) ^ 1
      yield* bucket.write(damaged, original)
      yield* bucket.remove(removed)
      const broken = yield* Verify.verifyCheckpoint(store, configValue, (yield* MemoryDisk.make).disk, latest, {
        concurrency: 4
      })
      assert.isFalse(broken.ok)
      assert.strictEqual(broken.mismatches, 2)
      assert.sameMembers(broken.examples.map((example) => example.key), [damaged, removed])

      // A file manifest that no longer matches its root manifest's digest: incomplete, with the reason.
      const fileEntry = latest.files.get(Workload.fileIdOf(0))?.entry
      assert.isDefined(fileEntry)
      const manifestKey = fileEntry === undefined
        ? ""
        : KeyLayout.fileManifestKey(
          layout,
          fileEntry.manifestCheckpoint,
          Workload.fileIdOf(0),
          fileEntry.manifestSha256
        )
      yield* bucket.write(manifestKey, new TextEncoder().encode("{}"))
      const corrupt = yield* Inspect.inspect(store, configValue)
      const corruptRow = corrupt.checkpoints.find((row) => row.checkpoint === latest.manifest.checkpoint)
      assert.isFalse(corruptRow?.complete)
      assert.include(corruptRow?.detail ?? "", "file manifest")
    }))

  it.scopedLive("shows the retention state, what a pass would reclaim, and expired checkpoints as expired", () =>
    Effect.gen(function*() {
      const { store } = yield* filledBucket
      const policyConfig = { ...configValue, retainCheckpointsMin: 1, retainForMs: 0, gcMinAgeMs: 0 }
      const before = yield* Inspect.inspect(store, policyConfig)
      assert.isFalse("unavailable" in before.retention)
      if ("unavailable" in before.retention) return
      // The writer's policy is in its root manifests (2 latest, 24 h): the bucket's, not the reader's.
      assert.strictEqual(before.retention.policy.retainCheckpointsMin, 2)
      assert.deepStrictEqual(before.retention.expiredNow, [])
      yield* GarbageCollector.collect(store, policyConfig, { policy: { retainCheckpointsMin: 1, retainForMs: 0 } })
      const after = yield* Inspect.inspect(store, policyConfig)
      const first = after.checkpoints.find((row) => row.checkpoint === 1)
      assert.strictEqual(first?.expired, true)
      assert.include(first?.detail ?? "", "expired at")
      assert.include(Inspect.formatTable(after), "retained: 2 (latest")
      assert.include(Inspect.formatTable(after), "1 earlier")
    }))
})
