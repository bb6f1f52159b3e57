/**
 * S3: Storage configured entirely from the environment with `Storage.layerConfig`, as an Effect app.
 *
 *   S3_TIER_S3_BUCKET=my-bucket S3_TIER_S3_REGION=eu-west-1 S3_TIER_DATA_DIR=/var/lib/app/tier \
 *     npx tsx examples/s3.ts
 *
 * Any S3-compatible store: add `S3_TIER_S3_ENDPOINT=http://127.0.0.1:9000` and
 * `S3_TIER_S3_FORCE_PATH_STYLE=true`; credentials from `S3_TIER_S3_ACCESS_KEY_ID` and
 * `S3_TIER_S3_SECRET_ACCESS_KEY` (read as `Redacted`), else the AWS default chain. Every
 * `S3_TIER_*` key of StorageConfig applies too (`S3_TIER_PREFIX=app/`, `S3_TIER_WORKER_COUNT=16`,
 * `S3_TIER_CHECKPOINT_INTERVAL_MS="30 seconds"`). A missing or bad key fails start-up with one
 * InvalidConfig naming it.
 *
 * The program writes a page, logs it and commits, checkpoints into the bucket, reads the page back
 * and ends; ending closes the layer's scope, which is the bounded shutdown (Ctrl-C also ends it).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { Ids, Storage } from "effect-s3-tier"

const greeting = Ids.fileId("app/greeting")
const encoder = new TextEncoder()

const program = Effect.gen(function*() {
  const storage = yield* Storage.Storage
  const message = encoder.encode(`hello from instance ${storage.instanceId} at epoch ${storage.epoch}`)
  yield* storage.write(greeting, 0, message)
  yield* storage.append(message)
  yield* storage.commit
  const report = yield* storage.checkpoint
  const back = yield* storage.read(greeting, 0, message.length)
  yield* Console.log(
    `checkpoint ${report.checkpoint} in the bucket: ${report.partsUploaded} parts, ${report.bytesUploaded} bytes`
  )
  yield* Console.log(`read back: ${new TextDecoder().decode(back)}`)
})

const storage = Storage.layerConfig({
  // The app's WAL records are the page's new text: replaying one writes it again.
  replay: (record, storage) => storage.write(greeting, 0, record.bytes),
  onShutdown: (report) =>
    Console.log(`shutdown: ${report.metDeadline ? "met its deadline" : "cut at its deadline"}, lock ${report.lock}`)
})

program.pipe(Effect.provide(storage), NodeRuntime.runMain)
