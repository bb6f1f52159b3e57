/**
 * Goal: the real Storage layer keeps every property of the simulation under the fault classes of
 * lost acknowledged writes (test/sim/README.md, "The fault classes"): kills at random instants and
 * during start-up replay, responses lost after the bucket applied the request, take-overs whose
 * old writer keeps running, disk-full, failing fsyncs and reads that hang and land late, bit rot
 * at rest; and writes the disk holds past their instance's shutdown, met by a restart of the
 * directory and rows written again in place (`stragglers`). Method: a short campaign per class,
 * each from a fixed seed that passes (the simulation is deterministic, so it stays passing until
 * the layer regresses); `SIM_CLASS_RUNS` changes the count. A failure prints its shrunk schedule
 * and the command that replays it. The `adversarial` profile (every class at
 * once) is in test/sim/Adversarial.test.ts, so that both cores work.
 */
import { assert, describe, it } from "@effect/vitest"
import { checkAsync, simSystem } from "./Check.js"
import { realSystem } from "./RealSystem.js"
import type { Profile } from "./Schedule.js"

const runs = Number(process.env.SIM_CLASS_RUNS ?? 40)

/** Each class with a seed whose first schedules all pass. */
const classes: ReadonlyArray<readonly [Profile, number]> = [
  ["crashes", 20_261_208],
  ["lost-responses", 20_261_207],
  ["stale-writers", 20_261_207],
  ["disk-faults", 20_261_207],
  ["bit-rot", 20_261_207],
  // Writes that outlive their instance: held writes, restarts of the directory, rewrites.
  ["stragglers", 20_261_208]
]

describe("the real Storage layer under each fault class", () => {
  for (const [profile, seed] of classes) {
    it(`keeps every property on ${runs} ${profile} schedules (seed ${seed})`, async () => {
      const result = await checkAsync(simSystem(realSystem), { profile, runs, seed, shrinkTimeLimitMs: 30_000 })
      assert.isFalse(result.failed, result.report)
    }, 300_000)
  }
})
