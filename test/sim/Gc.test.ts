/**
 * Goal: garbage collection never loses what a retained checkpoint, a commit in flight or a reader
 * needs, and keeps the bucket bounded: a collector with a minimum age of 0 runs beside the writers
 * (a take-over's stale writer among them), reader leases held by point-in-time restores, faults on
 * its listings, reads and deletes, and shutdowns (the `gc` profile, test/sim/README.md). Method: a
 * campaign from a fixed seed that passes (`SIM_GC_RUNS` changes the count); a failure prints its
 * shrunk schedule and the replay command. And one hand-written schedule the random ones rarely
 * arrange: a pass between an adopted commit and the next (Scenarios.adoptedAttemptBesideCollector).
 */
import { assert, describe, it } from "@effect/vitest"
import { checkAsync, runSchedule, simSystem } from "./Check.js"
import { realSystem } from "./RealSystem.js"
import { adoptedAttemptBesideCollector } from "./Scenarios.js"
import { scheduleText } from "./Schedule.js"

const runs = Number(process.env.SIM_GC_RUNS ?? 60)
const seed = 20_261_207

describe("garbage collection beside writers, leases and restores", () => {
  it(`keeps every property on ${runs} gc schedules (seed ${seed})`, async () => {
    const result = await checkAsync(simSystem(realSystem), { profile: "gc", runs, seed, shrinkTimeLimitMs: 30_000 })
    assert.isFalse(result.failed, result.report)
  }, 300_000)

  it("a collector passing between an adopted commit and the next keeps the parts the next one names", () => {
    const outcome = runSchedule(simSystem(realSystem), adoptedAttemptBesideCollector)
    assert.deepStrictEqual(
      outcome.violations.map((violation) => `[${violation.property}] ${violation.detail}`),
      [],
      scheduleText(adoptedAttemptBesideCollector)
    )
    const [first, second, third] = outcome.record?.checkpoints.map((checkpoint) => checkpoint.result) ?? []
    assert.deepInclude(first, { completed: { checkpoint: 1, walPosition: 536 } })
    assert.isDefined(second?.error, "the first attempt at checkpoint 2 gave up (its PUT landed later)")
    assert.strictEqual(third?.completed?.checkpoint, 3, "checkpoint 2 was adopted, the next commit is 3")
    assert.isAbove(outcome.record?.gcPasses?.length ?? 0, 10)
  })
})
