import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import * as Ids from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as Retention from "../../src/domain/Retention.js"

const hour = 3_600_000
const summary = (checkpoint: number, createdAtMs: number, expired = false): Retention.CheckpointSummary => ({
  checkpoint,
  createdAtMs,
  walPosition: checkpoint * 1000,
  expired
})

describe("Retention.plan", () => {
  it("keeps the K latest, the window, and the newest checkpoint before the window", () => {
    const now = 100 * hour
    const checkpoints = [1, 2, 3, 4, 5, 6].map((n) => summary(n, (90 + n) * hour))
    // window of 3 h: starts at 97 h; checkpoints 6 (96 h)... created 91..96 h: none inside.
    const plan = Retention.plan(checkpoints, { retainCheckpointsMin: 2, retainForMs: 5 * hour }, [], now, 0)
    // window starts at 95 h: 5 (95 h) and 6 (96 h) inside, 4 (94 h) is the base.
    expect([...plan.retained.keys()].sort()).toEqual([4, 5, 6])
    expect(plan.retained.get(4)).toEqual(["window-base"])
    expect(plan.retained.get(6)).toEqual(["latest", "window"])
    expect(plan.expire).toEqual([1, 2, 3])
    expect(plan.walFloorLsn).toBe(4000)
    expect(plan.windowStartMs).toBe(95 * hour)
  })

  it("keeps only the K latest with a window of 0, and a leased checkpoint with its WAL", () => {
    const checkpoints = [1, 2, 3, 4].map((n) => summary(n, n))
    const lease = { id: "r1", checkpoint: 2, expiresAtMs: 50 }
    const plan = Retention.plan(checkpoints, { retainCheckpointsMin: 1, retainForMs: 0 }, [lease], 10, 0)
    expect([...plan.retained.entries()]).toEqual([[4, ["latest"]], [2, ["lease"]]])
    expect(plan.expire).toEqual([1, 3])
    expect(plan.walFloorLsn).toBe(2000)
    const later = Retention.plan(checkpoints, { retainCheckpointsMin: 1, retainForMs: 0 }, [lease], 60, 0)
    expect(later.expire).toEqual([1, 2, 3])
    expect(later.expiredLeases).toEqual([lease])
  })

  it("never revives an expired checkpoint, and pins a leased tombstoned one's objects", () => {
    const checkpoints = [summary(1, 1, true), summary(2, 2), summary(3, 3)]
    const plan = Retention.plan(
      checkpoints,
      { retainCheckpointsMin: 5, retainForMs: 0 },
      [{ id: "r", checkpoint: 1, expiresAtMs: 100 }],
      10,
      0
    )
    expect(plan.retained.has(1)).toBe(false)
    expect(plan.pinned.has(1)).toBe(true)
    expect(plan.expire).toEqual([])
    expect(plan.latest).toBe(3)
  })

  it("always retains the latest committed checkpoint and never expires a pinned one (property)", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(
          FastCheck.record({ createdAtMs: FastCheck.integer({ min: 0, max: 1000 }), expired: FastCheck.boolean() }),
          { maxLength: 12 }
        ),
        FastCheck.integer({ min: 1, max: 4 }),
        FastCheck.integer({ min: 0, max: 500 }),
        FastCheck.array(
          FastCheck.record({
            checkpoint: FastCheck.integer({ min: 1, max: 12 }),
            expiresAtMs: FastCheck.integer({ min: 0, max: 2000 })
          }),
          { maxLength: 3 }
        ),
        (raw, k, windowMs, rawLeases) => {
          // Creation times grow with the number, as a writer's do.
          let time = 0
          const checkpoints = raw.map((each, index) => summary(index + 1, time += each.createdAtMs, each.expired))
          const leases = rawLeases.map((each, index) => ({ id: `l${index}`, ...each }))
          const nowMs = time + 100
          const plan = Retention.plan(checkpoints, { retainCheckpointsMin: k, retainForMs: windowMs }, leases, nowMs, 0)
          const committed = checkpoints.filter((each) => !each.expired)
          const newest = committed.at(-1)
          if (newest !== undefined) expect(plan.retained.has(newest.checkpoint)).toBe(true)
          expect(Math.min(k, committed.length)).toBeLessThanOrEqual(
            [...plan.retained.values()].filter((r) => r.includes("latest")).length
          )
          for (const n of plan.expire) {
            expect(plan.pinned.has(n)).toBe(false)
            expect(checkpoints.find((each) => each.checkpoint === n)?.expired).toBe(false)
          }
          for (const lease of leases) {
            if (lease.expiresAtMs > nowMs) expect(plan.pinned.has(lease.checkpoint)).toBe(true)
          }
          for (const n of plan.pinned) {
            const pinned = checkpoints.find((each) => each.checkpoint === n)
            expect(plan.walFloorLsn).toBeLessThanOrEqual(pinned === undefined ? 0 : pinned.walPosition)
          }
        }
      )
    )
  })
})

describe("Retention.judge", () => {
  const layout = KeyLayout.make("")
  const sha = Ids.Sha256Hex.make("a".repeat(64))
  const file = Ids.FileId.make("f")
  const plan = Retention.plan(
    [summary(1, 0, true), summary(2, 0), summary(3, 0)],
    { retainCheckpointsMin: 1, retainForMs: 0 },
    [],
    10_000,
    0
  )
  const live: Retention.LiveSet = {
    plan,
    referenced: new Set([KeyLayout.partKey(layout, Ids.checkpointNumber(2), file, Ids.partIndex(0), sha)]),
    walSegmentBytes: 1000,
    minAgeMs: 100,
    nowMs: 10_000
  }
  const judge = (key: string, lastModifiedMs = 0) =>
    Retention.judge(
      live,
      { key, lastModifiedMs },
      KeyLayout.parseKey(layout, key).pipe((o) => (o._tag === "Some" ? o.value : undefined))
    )

  it("keeps referenced, in-flight, young and needed objects; deletes the rest", () => {
    expect(judge(KeyLayout.partKey(layout, Ids.checkpointNumber(2), file, Ids.partIndex(0), sha))._tag).toBe("Keep")
    expect(judge(KeyLayout.partKey(layout, Ids.checkpointNumber(2), file, Ids.partIndex(1), sha))).toEqual({
      _tag: "Delete",
      kind: "part"
    })
    expect(judge(KeyLayout.partKey(layout, Ids.checkpointNumber(4), file, Ids.partIndex(1), sha))).toEqual({
      _tag: "Keep",
      reason: "in-flight"
    })
    expect(judge(KeyLayout.partKey(layout, Ids.checkpointNumber(1), file, Ids.partIndex(1), sha), 9_950)).toEqual({
      _tag: "Keep",
      reason: "young"
    })
    expect(judge(KeyLayout.fileManifestKey(layout, Ids.checkpointNumber(1), file, sha))).toEqual({
      _tag: "Delete",
      kind: "file-manifest"
    })
    // Checkpoint 3 (latest) has walPosition 3000: segment 2 ends at 3000, segment 3 is needed.
    expect(judge(KeyLayout.walKey(layout, Ids.segmentNumber(2), Ids.epoch(1)))).toEqual({ _tag: "Delete", kind: "wal" })
    expect(judge(KeyLayout.walKey(layout, Ids.segmentNumber(3), Ids.epoch(1)))).toEqual({
      _tag: "Keep",
      reason: "wal-needed"
    })
    expect(judge(KeyLayout.checkpointKey(layout, Ids.checkpointNumber(1)))).toEqual({
      _tag: "Keep",
      reason: "not-collected"
    })
    expect(judge(KeyLayout.lockKey(layout))).toEqual({ _tag: "Keep", reason: "not-collected" })
    expect(judge("elsewhere/object")).toEqual({ _tag: "Keep", reason: "not-collected" })
  })

  it("at the latest number, what its root does not name is a failed attempt's and goes; above it, it stays", () => {
    // Checkpoint 3 is the latest: no other attempt at 3 can commit, and no later checkpoint names
    // what they uploaded under 3 (an attempt that an earlier one may overtake uploads under 4).
    expect(judge(KeyLayout.fileManifestKey(layout, Ids.checkpointNumber(3), file, sha))).toEqual({
      _tag: "Delete",
      kind: "file-manifest"
    })
    expect(judge(KeyLayout.partKey(layout, Ids.checkpointNumber(3), file, Ids.partIndex(1), sha))).toEqual({
      _tag: "Delete",
      kind: "part"
    })
    expect(judge(KeyLayout.fileManifestKey(layout, Ids.checkpointNumber(4), file, sha))).toEqual({
      _tag: "Keep",
      reason: "in-flight"
    })
    expect(judge(KeyLayout.fileManifestKey(layout, Ids.checkpointNumber(3), file, sha), 9_950)).toEqual({
      _tag: "Keep",
      reason: "young"
    })
  })
})
