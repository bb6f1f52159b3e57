/**
 * A trace connects a checkpoint to its work: the uploads of its parts (S3 tasks run by the workers,
 * enqueued inside the checkpoint's span), its manifests and its commit are all descendants of the
 * `checkpoint` span, so a slow checkpoint can be read in one trace.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, type Tracer } from "effect"
import { fileId } from "../../src/domain/Ids.js"
import * as Storage from "../../src/layers/Storage.js"
import { ancestorNames, recordingSpans } from "../support/Tracing.js"

const file = fileId("traced/table")

describe("Storage: spans", () => {
  it.live("every upload, manifest and the commit of a checkpoint are descendants of its span", () =>
    Effect.gen(function*() {
      const spans: Array<Tracer.Span> = []
      const report = yield* recordingSpans(
        Effect.scoped(Effect.gen(function*() {
          const context = yield* Layer.build(
            Storage.layerMemory({ config: { partSizeBytes: 8192, checkpointIntervalMs: 0 } })
          )
          const storage = Context.get(context, Storage.Storage)
          for (let part = 0; part < 3; part++) {
            yield* storage.write(file, part * 8192, new Uint8Array(8192).fill(part + 1))
          }
          return yield* storage.checkpoint
        })),
        spans
      )
      assert.strictEqual(report.outcome, "completed")
      const checkpoint = spans.find((span) =>
        span.name === "checkpoint" && span.attributes.get("checkpoint.reason") === "on demand"
      )
      assert.isDefined(checkpoint)
      const under = (span: Tracer.Span) => ancestorNames(span, spans).includes("checkpoint")
      const uploads = spans.filter((span) => span.name === "s3.task" && span.attributes.get("type") === "WritePart")
      assert.strictEqual(uploads.length, 3)
      for (const upload of uploads) {
        assert.isTrue(
          under(upload),
          `upload ${String(upload.attributes.get("key"))} under ${ancestorNames(upload, spans).join(" < ")}`
        )
      }
      const commit = spans.find((span) => span.name === "checkpoint.commit")
      assert.isDefined(commit)
      assert.isTrue(under(commit))
    }))
})
