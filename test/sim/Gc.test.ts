/**
 * Goal: garbage collection never loses what a retained checkpoint, a commit in flight or a reader
 * needs, and keeps the bucket bounded: a collector with a minimum age of 0 runs beside the writers
 * (a take-over's stale writer among them), reader leases held by point-in-time restores, faults on
 * its listings, reads and deletes, and shutdowns (the `gc` profile, test/sim/README.md). Method: a
 * campaign from a fixed seed that passes (`SIM_GC_RUNS` changes the count); a failure prints its
 * shrunk schedule and the replay command.
 */
import { assert, describe, it } from "@effect/vitest"
import { checkAsync, simSystem } from "./Check.js"
import { realSystem } from "./RealSystem.js"

const runs = Number(process.env.SIM_GC_RUNS ?? 60)
const seed = 20_261_207

describe("garbage collection beside writers, leases and restores", () => {
  it(`keeps every property on ${runs} gc schedules (seed ${seed})`, async () => {
    const result = await checkAsync(simSystem(realSystem), { profile: "gc", runs, seed, shrinkTimeLimitMs: 30_000 })
    assert.isFalse(result.failed, result.report)
  }, 300_000)
})
