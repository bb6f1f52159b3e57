/**
 * Tracing with OpenTelemetry: the tier's spans under the app's own, exported to the console.
 *
 *   npx tsx examples/tracing.ts        # EXAMPLE_DIR=/tmp/mine to choose where
 *
 * The library traces with Effect's own spans (`Effect.withSpan`), so the tracer an app installs sees
 * them, nested under the app's spans: here @effect/opentelemetry's `NodeSdk.layer` with
 * OpenTelemetry's `ConsoleSpanExporter` (each span printed as it ends, with its trace id, parent and
 * attributes). In one trace: the app's `app.checkpoint`, the tier's `checkpoint` under it, each part
 * upload (`s3.task`, WritePart) under that, the manifests and the commit. For a collector, put an
 * OTLP exporter (e.g. @opentelemetry/exporter-trace-otlp-http) in the span processor instead.
 */
import { NodeSdk } from "@effect/opentelemetry"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { ConsoleSpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Console, Effect } from "effect"
import { Ids, Storage } from "effect-s3-tier"

const baseDir = process.env["EXAMPLE_DIR"] ?? "/tmp/effect-s3-tier-tracing"

const tracing = NodeSdk.layer(() => ({
  resource: { serviceName: "effect-s3-tier-example" },
  spanProcessor: new SimpleSpanProcessor(new ConsoleSpanExporter())
}))

const accounts = Ids.fileId("bank/accounts")

const deposit = (storage: Storage.StorageService, amount: number) =>
  Effect.gen(function*() {
    const bytes = new TextEncoder().encode(`deposit ${amount}`.padEnd(32))
    yield* storage.write(accounts, 0, bytes)
    yield* storage.append(bytes)
    yield* storage.commit
  }).pipe(Effect.withSpan("app.deposit", { attributes: { amount } }))

const program = Effect.gen(function*() {
  const storage = yield* Storage.Storage
  yield* deposit(storage, 100)
  yield* deposit(storage, 250)
  const report = yield* storage.checkpoint.pipe(Effect.withSpan("app.checkpoint"))
  yield* Console.log(`checkpoint ${report.checkpoint}: ${report.partsUploaded} parts uploaded`)
}).pipe(Effect.withSpan("app.run"))

const storage = Storage.layerNode({
  dataDir: `${baseDir}/data`,
  storeDir: `${baseDir}/bucket`,
  config: { checkpointIntervalMs: 0 }
})

// The tracer is provided outside the Storage layer, so its start, its fibers and its shutdown are
// traced too.
program.pipe(Effect.provide(storage), Effect.provide(tracing), NodeRuntime.runMain)
