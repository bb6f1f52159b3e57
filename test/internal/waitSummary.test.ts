/**
 * Goal: the wait list a person reads at a slow close says what waits on what kind of thing, how
 * many and for how long, without fiber ids or epoch milliseconds.
 */
import { assert, describe, it } from "@effect/vitest"
import { describeWaits, groupWaits, kindOf } from "../../src/internal/waitSummary.js"
import type { Wait } from "../../src/services/WaitRegistry.js"

const wait = (id: number, waiter: string, on: string, sinceMs: number): Wait => ({
  id,
  fiber: `#${id + 100}`,
  waiter,
  on,
  sinceMs
})

describe("waitSummary", () => {
  it("a kind leaves out task ids, parts, keys and positions", () => {
    assert.strictEqual(kindOf("task 17 WritePart db/a#3 @2"), "task WritePart")
    assert.strictEqual(kindOf("part db/a#0 to load or finish evicting"), "part to load or finish evicting")
    assert.strictEqual(kindOf("archive through LSN 123456"), "archive through LSN")
  })

  it("groups by waiter and kind, counts them, and puts the longest wait first", () => {
    const nowMs = 1_765_000_010_000
    const waits = [
      wait(1, "TaskHandle.await", "task 17 WritePart db/a#3 @2", nowMs - 300),
      wait(2, "TaskHandle.await", "task 18 WritePart db/b#0 @2", nowMs - 1_200),
      wait(3, "Checkpointer.checkpoint (shutdown)", "uploads and manifest", nowMs - 400),
      wait(4, "TaskHandle.await", "task 19 WriteWalSegment 4 (partial)", nowMs - 50)
    ]
    assert.deepStrictEqual(groupWaits(waits, nowMs), [
      { waiter: "TaskHandle.await", on: "task WritePart", count: 2, longestMs: 1_200 },
      { waiter: "Checkpointer.checkpoint (shutdown)", on: "uploads and manifest", count: 1, longestMs: 400 },
      { waiter: "TaskHandle.await", on: "task WriteWalSegment (partial)", count: 1, longestMs: 50 }
    ])
    assert.deepStrictEqual(describeWaits(waits, nowMs), [
      "2 × TaskHandle.await on task WritePart, the longest for 1.2s",
      "1 × Checkpointer.checkpoint (shutdown) on uploads and manifest, for 400ms",
      "1 × TaskHandle.await on task WriteWalSegment (partial), for 50ms"
    ])
  })
})
