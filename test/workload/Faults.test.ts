/**
 * Goal: every documented `--fault` form parses into the plan it names, and anything else gives one
 * message that names the bad value.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as Faults from "../../src/workload/Faults.js"

describe("Faults", () => {
  it("parses every documented form", () => {
    const plan = Either.getOrThrow(
      Faults.parseFaults([
        "stall-at-shutdown",
        "stall-after=8s",
        "error-rate=0.25",
        "latency=50ms",
        "fail-task=WritePart",
        "fail-task=WriteWalSegment"
      ])
    )
    assert.deepStrictEqual(plan, {
      stallAtShutdown: true,
      stallAfterMs: 8_000,
      errorRate: 0.25,
      latencyMs: 50,
      failTasks: ["WritePart", "WriteWalSegment"]
    })
    assert.deepStrictEqual(Faults.describe(plan), [
      "stall-at-shutdown",
      "stall-after=8s",
      "error-rate=0.25",
      "latency=50ms",
      "fail-task=WritePart",
      "fail-task=WriteWalSegment"
    ])
    assert.isTrue(Faults.isEmpty(Either.getOrThrow(Faults.parseFaults([]))))
    assert.isFalse(Faults.isEmpty(plan))
    assert.strictEqual(Either.getOrThrow(Faults.parseFaults(["error-rate=1"])).errorRate, 1)
  })

  it("refuses bad values with a message naming them", () => {
    const cases: Array<[ReadonlyArray<string>, string]> = [
      [["stall"], "unknown --fault"],
      [["stall-after"], "needs a value"],
      [["stall-after=0s"], "stall-after"],
      [["latency=-5ms"], "latency"],
      [["error-rate=0"], "0 < p <= 1"],
      [["error-rate=1.5"], "0 < p <= 1"],
      [["error-rate=abc"], "0 < p <= 1"],
      [["fail-task=Upload"], "unknown task type"],
      [["stall-at-shutdown=yes"], "takes no value"],
      [["latency=1s", "latency=2s"], "given twice"]
    ]
    for (const [texts, fragment] of cases) {
      const result = Faults.parseFaults(texts)
      assert.isTrue(Either.isLeft(result), texts.join(" "))
      if (Either.isLeft(result)) assert.include(result.left, fragment, texts.join(" "))
    }
  })
})
