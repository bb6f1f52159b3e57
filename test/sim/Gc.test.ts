/**
 * Goal: garbage collection never loses what a retained checkpoint, a commit in flight or a reader
 * needs, and keeps the bucket bounded: a collector with a minimum age of 0 runs beside the writers
 * (a take-over's stale writer among them), reader leases held by point-in-time restores, faults on
 * its listings, reads and deletes, and shutdowns (the `gc` profile, test/sim/README.md). Method: a
 * campaign from a fixed seed that passes (`SIM_GC_RUNS` changes the count); a failure prints its
 * shrunk schedule and the replay command. And a class the random profiles do not arrange: a pass
 * between an adopted commit and the next (Scenarios.adoptedAttemptBesideCollector, one schedule,
 * and adoptedAttemptFamily, drawn variations of it).
 */
import { assert, describe, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { checkAsync, runSchedule, simSystem } from "./Check.js"
import { realSystem } from "./RealSystem.js"
import { adoptedAttemptBesideCollector, adoptedAttemptFamily } from "./Scenarios.js"
import { scheduleText } from "./Schedule.js"

const runs = Number(process.env.SIM_GC_RUNS ?? 60)
const seed = 20_261_207
/** Drawn schedules of the adopted-commit class (`SIM_ADOPTED_RUNS`), about 1 s each. */
const familyRuns = Number(process.env.SIM_ADOPTED_RUNS ?? 12)

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

  it(`keeps every property on ${familyRuns} drawn schedules of the adopted-commit class`, () => {
    fc.assert(
      fc.property(adoptedAttemptFamily, (schedule) => {
        const violations = runSchedule(simSystem(realSystem), schedule).violations
        assert.deepStrictEqual(
          violations.map((violation) => `[${violation.property}] ${violation.detail}`),
          [],
          scheduleText(schedule)
        )
      }),
      { numRuns: familyRuns, seed: seed }
    )
  }, 300_000)
})
