/**
 * Goal: the progress line carries every field the issue names, a terminal gets one line rewritten
 * in place, and a log gets a plain line at the first sample and then every plain interval. Method:
 * the TestClock drives the sampler; the output is collected.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, TestClock } from "effect"
import * as Progress from "../../src/cli/Progress.js"

const sample: Progress.ProgressSample = {
  elapsedMs: 3_000,
  durationMs: 15_000,
  acknowledged: 1_200,
  queueDepth: 4,
  uploadsInFlight: 2,
  lastCheckpoint: 3,
  checkpointsCompleted: 2,
  bytesUploaded: 3 * 1024 * 1024,
  walArchivedThrough: 0
}

describe("Progress", () => {
  it("formats every field", () => {
    const line = Progress.formatLine(sample, 400)
    for (const part of ["400 writes/s", "queue 4", "uploading 2", "checkpoint #3", "uploaded 3.0MiB", "3s / 15s"]) {
      assert.include(line, part)
    }
    assert.strictEqual(Progress.rate({ acknowledged: 0, atMs: 0 }, { acknowledged: 500, atMs: 2_000 }), 250)
    assert.strictEqual(Progress.rate({ acknowledged: 0, atMs: 5 }, { acknowledged: 500, atMs: 5 }), 0)
  })

  it.effect("rewrites one line on a terminal", () =>
    Effect.gen(function*() {
      const output: Array<string> = []
      const progress = Progress.make({
        sample: Effect.succeed(sample),
        isTty: true,
        write: (text) => Effect.sync(() => output.push(text))
      })
      const fiber = yield* Effect.fork(progress.loop)
      yield* TestClock.adjust("3 seconds")
      yield* Fiber.interrupt(fiber)
      yield* progress.finish
      assert.strictEqual(output.length, 4)
      assert.isTrue(output.slice(0, 3).every((text) => text.startsWith("\r") && !text.includes("\n")))
      assert.strictEqual(output[3], "\n")
    }))

  it.effect("prints plain lines at the first sample and then every 5 s", () =>
    Effect.gen(function*() {
      const output: Array<string> = []
      const progress = Progress.make({
        sample: Effect.succeed(sample),
        isTty: false,
        write: (text) => Effect.sync(() => output.push(text))
      })
      const fiber = yield* Effect.fork(progress.loop)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(output.length, 1)
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.interrupt(fiber)
      yield* progress.finish
      assert.strictEqual(output.length, 3)
      assert.isTrue(output.every((text) => text.endsWith("\n") && !text.includes("\r")))
    }))

  it("names the shutdown and verify phases, so the line moves while they run", () => {
    const shutting = Progress.formatLine({
      ...sample,
      phase: { _tag: "ShuttingDown", elapsedMs: 2_500, deadlineMs: 15_000 }
    }, 0)
    assert.match(shutting, /^shutting down 2\.5s of 15s \| 1200 acked \| queue 4 \| uploading 2 \|/)
    assert.notInclude(shutting, "writes/s")
    assert.match(Progress.formatLine({ ...sample, phase: { _tag: "Closing" } }, 0), /^closing the storage tier \|/)
    assert.match(
      Progress.formatLine({ ...sample, phase: { _tag: "Verifying", checked: 0, total: 0 } }, 0),
      /^verify: restoring the bucket/
    )
    assert.match(
      Progress.formatLine({ ...sample, phase: { _tag: "Verifying", checked: 96, total: 512 } }, 0),
      /^verify: 96\/512 pages checked \|/
    )
  })

  it.effect("prints a plain line at once when the phase changes", () =>
    Effect.gen(function*() {
      const output: Array<string> = []
      let phase: Progress.Phase = { _tag: "Writing" }
      const progress = Progress.make({
        sample: Effect.sync(() => ({ ...sample, phase })),
        isTty: false,
        write: (text) => Effect.sync(() => output.push(text))
      })
      const fiber = yield* Effect.fork(progress.loop)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(output.length, 1)
      phase = { _tag: "ShuttingDown", elapsedMs: 0, deadlineMs: 15_000 }
      yield* TestClock.adjust("1 second")
      phase = { _tag: "Verifying", checked: 0, total: 0 }
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(output.length, 3, output.join(""))
      assert.match(output[1] ?? "", /^shutting down/)
      assert.match(output[2] ?? "", /^verify: restoring/)
    }))

  it.effect("on a terminal, shows the line as the output's status line", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      let ended = 0
      const progress = Progress.make({
        sample: Effect.succeed(sample),
        isTty: true,
        write: () => Effect.die("not through write"),
        status: (line) => Effect.sync(() => lines.push(line)),
        endStatus: Effect.sync(() => void ended++)
      })
      const fiber = yield* Effect.fork(progress.loop)
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.interrupt(fiber)
      yield* progress.finish
      assert.strictEqual(lines.length, 2)
      assert.include(lines[0] ?? "", "writes/s")
      assert.strictEqual(ended, 1)
    }))
})
