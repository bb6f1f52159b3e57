/**
 * Goal: the real Storage layer keeps every property of the simulation with every fault class at
 * once (the `adversarial` profile: kills, lost responses and late requests, stale writers that
 * keep running, disk faults, bit rot, and garbage collection with restores in one schedule). Method: a campaign from a fixed seed that passes
 * (`SIM_ADVERSARIAL_RUNS` changes the count); the classes one at a time are in
 * test/sim/FaultClasses.test.ts. A failure prints its shrunk schedule and the replay command.
 */
import { assert, describe, it } from "@effect/vitest"
import { checkAsync, simSystem } from "./Check.js"
import { realSystem } from "./RealSystem.js"

const runs = Number(process.env.SIM_ADVERSARIAL_RUNS ?? 80)
const seed = 20_261_207

describe("the real Storage layer under every fault class at once", () => {
  it(`keeps every property on ${runs} adversarial schedules (seed ${seed})`, async () => {
    const result = await checkAsync(simSystem(realSystem), {
      profile: "adversarial",
      runs,
      seed,
      shrinkTimeLimitMs: 30_000
    })
    assert.isFalse(result.failed, result.report)
  }, 300_000)
})
