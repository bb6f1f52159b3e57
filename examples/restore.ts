/**
 * Point-in-time restore: write, checkpoint, write more, then restore the bucket's state at a
 * checkpoint, at a WAL position and at the latest, each into a fresh directory.
 *
 *   npx tsx examples/restore.ts        # EXAMPLE_DIR=/tmp/mine to choose where
 *
 * The writer is `Storage.layerNode`; each restore is `Restore.open` (scoped: read in place, then
 * the reader lease is deleted), read-only on the bucket. The base is the newest checkpoint at or
 * before the target, and the archived WAL is replayed up to the target through the app's own
 * replay function, the same one start-up uses.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect, Layer } from "effect"
import { FileObjectStore, FileSystemDisk, Ids, Restore, Storage, StorageConfig } from "effect-s3-tier"

const baseDir = process.env["EXAMPLE_DIR"] ?? "/tmp/effect-s3-tier-restore"
const storeDir = `${baseDir}/bucket`
const balance = Ids.fileId("ledger/balance")
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** The app's WAL record: the balance's new text, 16 bytes. */
const record = (value: string) => encoder.encode(value.padEnd(16))

/** Writes each value (apply, log, commit) and returns the LSN of each record. */
const writeAll = (storage: Storage.StorageService, values: ReadonlyArray<string>) =>
  Effect.forEach(values, (value) =>
    Effect.gen(function*() {
      yield* storage.write(balance, 0, record(value))
      const lsn = yield* storage.append(record(value))
      yield* storage.commit
      return lsn
    }))

const writer = Effect.gen(function*() {
  const storage = yield* Storage.Storage
  yield* writeAll(storage, ["balance 100"])
  const first = yield* storage.checkpoint
  const [, lsnOf300] = yield* writeAll(storage, ["balance 200", "balance 300"])
  return { checkpoint: first.checkpoint, beforeThird: lsnOf300! }
}).pipe(
  Effect.provide(Storage.layerNode({ dataDir: `${baseDir}/data`, storeDir, config: { checkpointIntervalMs: 0 } }))
)

/** The balance at `target`, restored into `${baseDir}/<name>`. */
const balanceAt = (name: string, target: Restore.RestoreTarget) =>
  Effect.scoped(
    Effect.gen(function*() {
      const restored = yield* Restore.open({
        target,
        holder: `example restore ${name}`,
        replay: (walRecord, data) => data.write(balance, 0, walRecord.bytes)
      })
      const text = decoder.decode(yield* restored.read(balance, 0, 16)).trim()
      yield* Console.log(
        `${restored.summary.target}: "${text}" (checkpoint ${restored.summary.checkpoint} + ${restored.summary.records} WAL records)`
      )
      return text
    })
  ).pipe(
    Effect.provide(Layer.mergeAll(
      StorageConfig.layer({}),
      FileObjectStore.layerNode({ root: storeDir }), // a restore writes only its reader lease
      FileSystemDisk.layerNode({ root: `${baseDir}/restored-${name}` })
    ))
  )

const program = Effect.gen(function*() {
  // The writer closes (and archives its WAL) before the restores read the bucket.
  const written = yield* writer
  yield* balanceAt("checkpoint", Restore.checkpoint(written.checkpoint))
  yield* balanceAt("lsn", Restore.lsn(written.beforeThird))
  yield* balanceAt("latest", Restore.latest)
})

program.pipe(NodeRuntime.runMain)
