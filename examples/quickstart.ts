/**
 * Quick start: Storage over a directory playing the bucket, as an Effect app.
 *
 *   npx tsx examples/quickstart.ts            # run it twice: the second run reads the first's count
 *   EXAMPLE_DIR=/tmp/mine npx tsx examples/quickstart.ts
 *
 * It opens the store with `Storage.layerNode`, bumps a run counter kept in a page (write through
 * the store, log the change in the WAL, commit: acknowledged), checkpoints to the bucket, and then
 * serves until Ctrl-C. NodeRuntime.runMain turns SIGINT (or SIGTERM) into interrupting the program;
 * closing the layer's scope runs the bounded shutdown (final WAL segment archived, a shutdown
 * checkpoint, the bucket lock released), whose report `onShutdown` prints.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { Ids, Storage } from "effect-s3-tier"

const baseDir = process.env["EXAMPLE_DIR"] ?? "/tmp/effect-s3-tier-quickstart"
const counter = Ids.fileId("app/counter")

/** The app's WAL record: the counter's new value (8 bytes, big-endian). */
const encodeCount = (count: number): Uint8Array => {
  const bytes = new Uint8Array(8)
  new DataView(bytes.buffer).setBigUint64(0, BigInt(count))
  return bytes
}
const decodeCount = (bytes: Uint8Array): number =>
  Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0))

/** Start-up replay: records after the last checkpoint are applied again (idempotent: a set). */
const replay = (record: Storage.ReplayRecord, storage: Storage.StorageService) =>
  storage.write(counter, 0, record.bytes)

const program = Effect.gen(function*() {
  const storage = yield* Storage.Storage
  const runs = decodeCount(yield* storage.read(counter, 0, 8)) + 1
  // Apply, then log, then commit: the order the checkpointer relies on.
  yield* storage.write(counter, 0, encodeCount(runs))
  yield* storage.append(encodeCount(runs))
  yield* storage.commit
  const checkpoint = yield* storage.checkpoint
  yield* Console.log(`run ${runs}: checkpoint ${checkpoint.checkpoint} (${checkpoint.partsUploaded} parts uploaded)`)
  yield* Console.log("ready: serving until Ctrl-C")
  return yield* Effect.never
})

const storage = Storage.layerNode({
  dataDir: `${baseDir}/data`,
  storeDir: `${baseDir}/bucket`,
  config: { checkpointIntervalMs: 30_000 },
  replay,
  onShutdown: (report) =>
    Console.log(
      `shutdown in ${report.durationMs} ms (deadline ${report.deadlineMs} ms): final checkpoint ${report.finalCheckpoint.outcome}, ` +
        `leases held ${report.leasesHeld}, lock ${report.lock}`
    )
})

program.pipe(Effect.provide(storage), NodeRuntime.runMain)
