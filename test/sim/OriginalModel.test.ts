/**
 * Goal: show that the simulation's properties have teeth. Run on the model of OrioleDB's original
 * protocol (test/sim/OriginalModel.ts), the very properties that the real Storage layer passes
 * must find the two shutdown hangs the original had, and name them by their wait-for graphs:
 * - #340: the checkpointer waits for a queue location no task will ever hold (the "already
 *   Loading ⇒ wait for the current insert location" proxy), once the backends are gone;
 * - #373: the checkpointer waits for a task whose worker died on an HTTP error and is not
 *   restarted during shutdown.
 * Method: first the hand-written schedules of test/sim/Scenarios.ts (deterministic, fast); then a
 * search from scratch with fast-check (the `no-faults` profile for #340, `failing-tasks` for
 * #373), whose shrunk counterexample is printed with its replay line; and a control: with no
 * fault and no race window the model passes every property, so what the search finds is the hang
 * and not a modelling error.
 */
import { assert, describe, it } from "@effect/vitest"
import { check, checkAsync, runSchedule, simSystem } from "./Check.js"
import { coverage, defaultOriginalSettings, originalSystem } from "./OriginalModel.js"
import { isLiveness } from "./Properties.js"
import { hang340, hang373 } from "./Scenarios.js"

const model = simSystem(originalSystem())
/** The race window narrowed to one context switch: two same-instant operations always interleave
 * the same way, so a hand-written schedule hits the race every time. */
const narrowWindow = simSystem(originalSystem({ ...defaultOriginalSettings, preemptionMsMax: 0 }))

const shapeOf = (detail: string): string | undefined => /\[shape ([^\]]+)\]/.exec(detail)?.[1]

describe("the model of the original protocol", () => {
  it("hangs on the hand-written #340 schedule: the checkpointer waits for the insert location", () => {
    const outcome = runSchedule(narrowWindow, hang340)
    const hang = outcome.violations.find((violation) => violation.property === "shutdown-within-deadline")
    assert.isDefined(hang)
    assert.strictEqual(shapeOf(hang?.detail ?? ""), "#340")
    assert.include(hang?.detail ?? "", "checkpointer: s3_queue_wait_for_location")
    assert.include(hang?.detail ?? "", "[proxy: part f0#0 was already Loading")
    assert.include(hang?.detail ?? "", "permanent hang")
  })

  it("hangs on the hand-written #373 schedule: the failed upload's worker is not restarted", () => {
    const outcome = runSchedule(model, hang373)
    const hang = outcome.violations.find((violation) => violation.property === "shutdown-within-deadline")
    assert.isDefined(hang)
    assert.strictEqual(shapeOf(hang?.detail ?? ""), "#373")
    assert.include(hang?.detail ?? "", "worker dead, not restarted (shutdown)")
  })

  it("the properties find a #340-shaped hang from scratch, and shrink it", async () => {
    const before = coverage.checkpointerProxyWaits
    const result = await checkAsync(model, { profile: "no-faults", runs: 300, seed: 100, shrinkTimeLimitMs: 10_000 })
    console.log(`#340 search on the model of the original:\n${result.report}`)
    assert.isTrue(result.failed)
    const violations = result.outcome?.violations ?? []
    assert.isTrue(violations.length > 0 && violations.every(isLiveness), "only liveness is violated")
    assert.isTrue(violations.some((violation) => shapeOf(violation.detail) === "#340"), "the hang has the #340 shape")
    assert.isTrue(coverage.checkpointerProxyWaits > before, "the checkpointer took the insert-location proxy")
    assert.match(result.replay, /^npm run sim -- --system original --profile no-faults --seed 100 --path [0-9:]+$/)
    // The printed replay line replays exactly that schedule.
    const replayed = check(model, {
      profile: "no-faults",
      runs: 1,
      seed: 100,
      ...(result.path === undefined ? {} : { path: result.path })
    })
    assert.deepStrictEqual(replayed.schedule, result.schedule)
  }, 120_000)

  it("the properties find a #373-shaped hang from scratch, and shrink it", async () => {
    const result = await checkAsync(model, { profile: "failing-tasks", runs: 300, seed: 5, shrinkTimeLimitMs: 6_000 })
    console.log(`#373 search on the model of the original:\n${result.report}`)
    assert.isTrue(result.failed)
    const violations = result.outcome?.violations ?? []
    assert.isTrue(violations.length > 0 && violations.every(isLiveness), "only liveness is violated")
    assert.isTrue(violations.some((violation) => shapeOf(violation.detail) === "#373"), "the hang has the #373 shape")
  }, 120_000)

  it("is otherwise sound: without faults, and with the race window narrowed, it passes every property", async () => {
    const result = await checkAsync(narrowWindow, { profile: "no-faults", runs: 60, seed: 11 })
    assert.isFalse(result.failed, result.report)
  }, 120_000)
})
