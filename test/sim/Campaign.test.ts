/**
 * Goal: the second half of the CI campaign of test/sim/Simulation.test.ts (same properties, next
 * seed), in a file of its own so that the test runner runs both halves on both cores at once.
 */
import { assert, describe, it } from "@effect/vitest"
import { checkAsync, simSystem } from "./Check.js"
import { realSystem } from "./RealSystem.js"

const campaignRuns = Number(process.env.SIM_RUNS ?? 1_000)
const campaignSeed = Number(process.env.SIM_SEED ?? 20_240_130)

describe("the real Storage layer under simulation", () => {
  it(`keeps every property on ${Math.floor(campaignRuns / 2)} schedules (second half of the CI campaign)`, async () => {
    const result = await checkAsync(simSystem(realSystem), {
      profile: "full",
      runs: Math.floor(campaignRuns / 2),
      seed: campaignSeed + 1,
      shrinkTimeLimitMs: 60_000
    })
    console.log(result.report)
    assert.isFalse(result.failed, result.report)
  }, 300_000)
})
