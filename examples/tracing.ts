/**
 * Tracing: the tier's spans under the app's own, printed to the console as they end.
 *
 *   npx tsx examples/tracing.ts        # EXAMPLE_DIR=/tmp/mine to choose where
 *
 * The library traces with Effect's own spans (`Effect.withSpan`, `Effect.makeSpan`), so any tracer
 * the app installs sees them, nested under the app's spans. Here the tracer is a small console
 * tracer over Effect's Tracer API (it wraps the built-in tracer and prints each span when it ends:
 * its depth, name, duration, outcome and attributes), which needs no other package. To export to
 * an OpenTelemetry backend instead, provide @effect/opentelemetry's layer in place of
 * `consoleTracer`, e.g. `NodeSdk.layer(() => ({ resource: { serviceName: "app" }, spanProcessor:
 * new BatchSpanProcessor(new ConsoleSpanExporter()) }))` (with @opentelemetry/sdk-trace-base).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect, Exit, Layer, Option, Tracer } from "effect"
import { Ids, Storage } from "effect-s3-tier"

const baseDir = process.env["EXAMPLE_DIR"] ?? "/tmp/effect-s3-tier-tracing"

const depthOf = (span: Tracer.AnySpan): number =>
  span._tag === "Span" ? Option.match(span.parent, { onNone: () => 0, onSome: (parent) => 1 + depthOf(parent) }) : 0

const printEnded = (span: Tracer.Span, endTime: bigint, exit: Exit.Exit<unknown, unknown>): void => {
  if (span.status._tag !== "Started" && span.status._tag !== "Ended") return
  const took = `${(Number(endTime - span.status.startTime) / 1e6).toFixed(1)} ms`
  const attributes = [...span.attributes].map(([key, value]) => `${key}=${String(value)}`).join(" ")
  const outcome = Exit.isSuccess(exit) ? "ok" : "failed"
  console.log(`${"  ".repeat(depthOf(span))}span ${span.name} ${took} ${outcome}${attributes === "" ? "" : ` ${attributes}`}`)
}

/** Wraps one span of the built-in tracer so that its end is printed. */
const printing = (span: Tracer.Span): Tracer.Span => ({
  _tag: "Span",
  name: span.name,
  spanId: span.spanId,
  traceId: span.traceId,
  parent: span.parent,
  context: span.context,
  get status() { return span.status },
  get attributes() { return span.attributes },
  get links() { return span.links },
  sampled: span.sampled,
  kind: span.kind,
  end: (endTime, exit) => {
    span.end(endTime, exit)
    printEnded(span, endTime, exit)
  },
  attribute: (key, value) => span.attribute(key, value),
  event: (name, startTime, attributes) => span.event(name, startTime, attributes),
  addLinks: (links) => span.addLinks(links)
})

/** A tracer that prints every span as it ends, over the runtime's own tracer. */
const consoleTracer = Layer.unwrapEffect(
  Effect.map(Effect.tracer, (builtIn) =>
    Layer.setTracer(Tracer.make({
      span: (name, parent, context, links, startTime, kind, options) =>
        printing(builtIn.span(name, parent, context, links, startTime, kind, options)),
      context: (f, fiber) => builtIn.context(f, fiber)
    })))
)

const accounts = Ids.fileId("bank/accounts")

const deposit = (storage: Storage.StorageService, amount: number) =>
  Effect.gen(function* () {
    const bytes = new TextEncoder().encode(`deposit ${amount}`.padEnd(32))
    yield* storage.write(accounts, 0, bytes)
    yield* storage.append(bytes)
    yield* storage.commit
  }).pipe(Effect.withSpan("app.deposit", { attributes: { amount } }))

const program = Effect.gen(function* () {
  const storage = yield* Storage.Storage
  yield* deposit(storage, 100)
  yield* deposit(storage, 250)
  const report = yield* storage.checkpoint.pipe(Effect.withSpan("app.checkpoint"))
  yield* Console.log(`checkpoint ${report.checkpoint}: ${report.partsUploaded} parts uploaded`)
}).pipe(Effect.withSpan("app.run"))

const storage = Storage.layerNode({ dataDir: `${baseDir}/data`, storeDir: `${baseDir}/bucket`, config: { checkpointIntervalMs: 0 } })

// The tracer is provided outside the Storage layer, so its start, its fibers and its shutdown are
// traced too.
program.pipe(Effect.provide(storage), Effect.provide(consoleTracer), NodeRuntime.runMain)
