/**
 * Goal: on a terminal, nothing written to stderr lands on the progress line: a log or a message
 * clears the line, is written on its own line, and the progress line is drawn again below it; a
 * multi-line log (the shutdown's wait list) keeps its lines, indented; a wrapped failure's message
 * is its cause's. Method: the output over collected writers; the formatter on a fixed entry.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, HashMap, LogLevel } from "effect"
import * as Output from "../../src/cli/Output.js"
import { ObjectStoreRejected } from "../../src/domain/Errors.js"
import { StartFailed } from "../../src/workload/Run.js"

const collected = (isTty: boolean) => {
  const stderr: Array<string> = []
  const output = Output.makeOutput({ stdout: () => {}, stderr: (text) => void stderr.push(text), isTty })
  return { output, stderr, screen: () => stderr.join("") }
}

/** What a terminal shows: `\r` returns to the line's start, `\x1b[K` erases to its end. */
const render = (text: string): ReadonlyArray<string> => {
  const lines: Array<string> = [""]
  for (const piece of text.split(/(\r|\n|\x1b\[K)/)) {
    if (piece === "\r" || piece === "\x1b[K") {
      lines[lines.length - 1] = piece === "\r"
        ? "\u0000"
        : (lines.at(-1) ?? "").split("\u0000")[0] ?? ""
    } else if (piece === "\n") lines.push("")
    else lines[lines.length - 1] = ((lines.at(-1) ?? "").includes("\u0000") ? "" : lines.at(-1) ?? "") + piece
  }
  return lines.map((line) => line.replace("\u0000", ""))
}

describe("Output", () => {
  it.effect("a log written while the progress line shows goes above it, and the line is drawn again", () =>
    Effect.gen(function*() {
      const { output, screen } = collected(true)
      yield* output.status!("12 writes/s | queue 3")
      output.stderrNow("effect-s3-tier: WARN something\n")
      yield* output.stderr("effect-s3-tier: a message\n")
      yield* output.status!("14 writes/s | queue 1")
      yield* output.endStatus!
      assert.deepStrictEqual(render(screen()), [
        "effect-s3-tier: WARN something",
        "effect-s3-tier: a message",
        "14 writes/s | queue 1",
        ""
      ])
    }))

  it.effect("without a terminal, the status line is not drawn and text is written as it comes", () =>
    Effect.gen(function*() {
      const { output, stderr } = collected(false)
      yield* output.status!("12 writes/s")
      yield* output.stderr("a line\n")
      yield* output.endStatus!
      assert.deepStrictEqual(stderr, ["a line\n"])
    }))

  it("formats a multi-line log with its further lines indented under the first", () => {
    const text = Output.formatLog({
      annotations: HashMap.make(["step", "checkpoint"]),
      cause: Cause.empty,
      date: new Date("2026-12-07T00:00:00.000Z"),
      logLevel: LogLevel.Warning,
      message:
        "shutdown not finished at half its deadline; waiting:\n  Checkpointer.checkpoint 3 on task 7\n  PartTable.lease on part 2"
    })
    assert.strictEqual(
      text,
      "effect-s3-tier: 2026-12-07T00:00:00.000Z WARN shutdown not finished at half its deadline; waiting: step=checkpoint\n" +
        "    Checkpointer.checkpoint 3 on task 7\n    PartTable.lease on part 2\n"
    )
  })

  it("gives a StartFailed's cause's message, and a usage error's own", () => {
    const cause = new ObjectStoreRejected({ operation: "probe", code: "NoSuchBucket", detail: "the bucket is gone" })
    assert.strictEqual(Output.messageOf(new StartFailed({ cause })), cause.message)
    assert.strictEqual(Output.messageOf(new Output.UsageError({ message: "--dir is empty" })), "--dir is empty")
    assert.strictEqual(Output.messageOf({ _tag: "Bare" }), "Bare")
  })
})
