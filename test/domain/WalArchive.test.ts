/**
 * Goal: the WAL archive's bookkeeping never claims more than the bucket holds and never forgets a
 * segment. Safety: `progress.through` only grows and never passes the contiguous prefix of the
 * uploads that landed; at most one upload of a segment is in flight; a local segment is removed only
 * once archived, covered by a checkpoint and sealed; `invariantProblem` stays empty. Liveness: once
 * uploads stop failing, retrying and planning until nothing is left archives everything durable.
 * Method: a few example transitions, then a property over random sequences of flushes, partial
 * requests, plans, upload outcomes in any order, retries, checkpoints and removals, checked against
 * a plain model of what landed.
 */
import { assert, describe, it } from "@effect/vitest"
import { FastCheck } from "effect"
import * as Wal from "../../src/domain/Wal.js"
import * as WalArchive from "../../src/domain/WalArchive.js"

const segmentBytes = 100

const fresh = (lowest = 0) =>
  WalArchive.initial({
    progress: WalArchive.initialProgress(Wal.segmentStart(lowest, segmentBytes)),
    pendingFull: [],
    localLowest: lowest
  })

describe("WalArchive", () => {
  it("a flush that seals segments plans their full uploads, in order, once", () => {
    const flushed = WalArchive.onFlushed(fresh(), 0, 250, segmentBytes)
    const [starts, planned] = WalArchive.planUploads(flushed, 250, segmentBytes)
    assert.deepStrictEqual(starts, [
      { segment: 0, partial: false, coveredLsn: 100 },
      { segment: 1, partial: false, coveredLsn: 200 }
    ])
    assert.deepStrictEqual(WalArchive.planUploads(planned, 250, segmentBytes)[0], [])
    assert.isUndefined(WalArchive.invariantProblem(planned, segmentBytes))
  })

  it("an upload finishing after a gap waits for it; a failed one is retried, not skipped", () => {
    const [, planned] = WalArchive.planUploads(WalArchive.onFlushed(fresh(), 0, 250, segmentBytes), 250, segmentBytes)
    const second = WalArchive.onUploadDone(planned, { segment: 1, partial: false, coveredLsn: 200 }, segmentBytes)
    assert.strictEqual(second.progress.through, 0)
    const failed = WalArchive.onUploadFailed(second, { segment: 0, partial: false, coveredLsn: 100 })
    assert.deepStrictEqual(WalArchive.planUploads(failed, 250, segmentBytes)[0], [])
    const [retried] = WalArchive.planUploads(WalArchive.retryFailed(failed), 250, segmentBytes)
    assert.deepStrictEqual(retried, [{ segment: 0, partial: false, coveredLsn: 100 }])
    assert.strictEqual(
      WalArchive.onUploadDone(failed, { segment: 0, partial: false, coveredLsn: 100 }, segmentBytes).progress.through,
      200
    )
  })

  it("a segment is removable only once archived, covered by a checkpoint and no longer written", () => {
    const [, planned] = WalArchive.planUploads(WalArchive.onFlushed(fresh(), 0, 250, segmentBytes), 250, segmentBytes)
    const archived = WalArchive.onUploadDone(planned, { segment: 0, partial: false, coveredLsn: 100 }, segmentBytes)
    assert.isUndefined(WalArchive.removable(archived, 250, segmentBytes))
    const covered = WalArchive.onCovered(archived, 150)
    assert.strictEqual(WalArchive.removable(covered, 250, segmentBytes), 0)
    assert.isUndefined(WalArchive.removable(WalArchive.onRemoved(covered, 0), 250, segmentBytes))
  })

  it("invariantProblem names a broken rule", () => {
    const base = fresh()
    const cases: ReadonlyArray<readonly [WalArchive.ArchiveState, string]> = [
      [{ ...base, inFlight: new Map([[1, { segment: 2, partial: false, coveredLsn: 300 }]]) }, "is of segment 2"],
      [{ ...base, inFlight: new Map([[1, { segment: 1, partial: false, coveredLsn: 150 }]]) }, "does not cover it"],
      [{ ...base, inFlight: new Map([[1, { segment: 1, partial: true, coveredLsn: 100 }]]) }, "outside the segment"],
      [
        { ...base, failedFull: new Set([1]), inFlight: new Map([[1, { segment: 1, partial: true, coveredLsn: 150 }]]) },
        "failed and is in flight"
      ],
      [{ ...base, progress: { through: 200, done: new Map([[1, 200]]) } }, "still tracked"],
      [{ ...base, progress: { through: 100, done: new Map([[1, 150]]) } }, "archived prefix stops"],
      [{ ...base, localLowest: 3 }, "are gone"]
    ]
    for (const [state, expected] of cases) {
      assert.include(WalArchive.invariantProblem(state, segmentBytes) ?? "(none)", expected)
    }
  })

  // Property: random sequences against a model of what landed in the bucket.
  type Command =
    | { readonly _tag: "Flush"; readonly bytes: number }
    | { readonly _tag: "WantPartial" }
    | { readonly _tag: "Plan" }
    | { readonly _tag: "Complete"; readonly pick: number; readonly ok: boolean }
    | { readonly _tag: "Retry" }
    | { readonly _tag: "Cover"; readonly back: number }
    | { readonly _tag: "Remove" }

  const command: FastCheck.Arbitrary<Command> = FastCheck.oneof(
    {
      arbitrary: FastCheck.integer({ min: 1, max: 260 }).map((bytes): Command => ({ _tag: "Flush", bytes })),
      weight: 3
    },
    FastCheck.constant<Command>({ _tag: "WantPartial" }),
    { arbitrary: FastCheck.constant<Command>({ _tag: "Plan" }), weight: 3 },
    {
      arbitrary: FastCheck.tuple(FastCheck.nat(8), FastCheck.boolean()).map(([pick, ok]): Command => ({
        _tag: "Complete",
        pick,
        ok
      })),
      weight: 2
    },
    FastCheck.constant<Command>({ _tag: "Retry" }),
    FastCheck.nat(300).map((back): Command => ({ _tag: "Cover", back })),
    FastCheck.constant<Command>({ _tag: "Remove" })
  )

  /** The contiguous prefix of what landed, from `start` (the model's own reading of the bucket). */
  const landedPrefix = (start: number, landed: ReadonlyMap<number, number>): number => {
    let through = start
    for (;;) {
      const reached = landed.get(Wal.segmentOf(through, segmentBytes)) ?? 0
      if (reached <= through) return through
      through = reached
      if (reached % segmentBytes !== 0) return through
    }
  }

  const run = (lowest: number, commands: ReadonlyArray<Command>) => {
    let state = fresh(lowest)
    const start = state.progress.through
    let durable = start
    const inFlight: Array<WalArchive.Upload> = []
    const landed = new Map<number, number>()
    const check = (previousThrough: number, step: string) => {
      const problem = WalArchive.invariantProblem(state, segmentBytes)
      if (problem !== undefined) throw new Error(`after ${step}: ${problem}`)
      if (state.progress.through < previousThrough) throw new Error(`after ${step}: the archived prefix went back`)
      if (state.progress.through > landedPrefix(start, landed)) {
        throw new Error(`after ${step}: archived through ${state.progress.through}, more than landed`)
      }
      if (state.progress.through > durable) throw new Error(`after ${step}: archived past the durable end`)
    }
    const step = (cmd: Command) => {
      switch (cmd._tag) {
        case "Flush":
          state = WalArchive.onFlushed(state, durable, durable + cmd.bytes, segmentBytes)
          durable += cmd.bytes
          return
        case "WantPartial":
          state = WalArchive.wantPartial(state, durable)
          return
        case "Plan": {
          const [starts, next] = WalArchive.planUploads(state, durable, segmentBytes)
          for (const item of starts) {
            if (inFlight.some((other) => other.segment === item.segment)) {
              throw new Error(`a second upload of segment ${item.segment} started`)
            }
            if (item.coveredLsn > durable) {
              throw new Error(`an upload of segment ${item.segment} covers past the durable end`)
            }
            inFlight.push(item)
          }
          state = next
          return
        }
        case "Complete": {
          if (inFlight.length === 0) return
          const [item] = inFlight.splice(cmd.pick % inFlight.length, 1)
          if (item === undefined) return
          if (cmd.ok) {
            landed.set(item.segment, Math.max(landed.get(item.segment) ?? 0, item.coveredLsn))
            state = WalArchive.onUploadDone(state, item, segmentBytes)
          } else {
            state = WalArchive.onUploadFailed(state, item)
          }
          return
        }
        case "Retry":
          state = WalArchive.retryFailed(state)
          return
        case "Cover":
          state = WalArchive.onCovered(state, Math.max(0, durable - cmd.back))
          return
        case "Remove": {
          const segment = WalArchive.removable(state, durable, segmentBytes)
          if (segment === undefined) return
          const end = Wal.segmentEnd(segment, segmentBytes)
          if (
            end > state.coveredLsn || end > landedPrefix(start, landed) ||
            segment >= Wal.segmentOf(durable, segmentBytes)
          ) {
            throw new Error(`segment ${segment} removed before it was archived, covered and sealed`)
          }
          state = WalArchive.onRemoved(state, segment)
        }
      }
    }
    for (const cmd of commands) {
      const before = state.progress.through
      step(cmd)
      check(before, cmd._tag)
    }
    // Uploads stop failing: retrying and planning until nothing is in flight archives everything durable.
    state = WalArchive.wantPartial(state, durable)
    for (let round = 0; round < 100 && (round === 0 || inFlight.length > 0); round++) {
      while (inFlight.length > 0) step({ _tag: "Complete", pick: 0, ok: true })
      state = WalArchive.retryFailed(state)
      step({ _tag: "Plan" })
      check(0, "the final drain")
    }
    if (state.progress.through < durable) {
      throw new Error(`after the final drain: archived through ${state.progress.through}, durable through ${durable}`)
    }
  }

  it("random sequences keep the invariants and the model, and archive everything once uploads succeed (property)", () => {
    FastCheck.assert(
      FastCheck.property(FastCheck.nat(3), FastCheck.array(command, { maxLength: 60 }), (lowest, commands) => {
        run(lowest, commands)
      }),
      { numRuns: 2000 }
    )
  })
})
