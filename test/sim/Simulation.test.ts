/**
 * Goal: the real Storage layer keeps every liveness and safety property of the simulation
 * (test/sim/Properties.ts) on every schedule: random workloads, random faults, shutdown at a
 * random instant with faults still active, then a restart (after a crash, on some schedules) and a
 * restore from the bucket alone. Method: fast-check generates the schedules from one seed
 * (`SIM_SEED`, default fixed so that CI is reproducible; `SIM_RUNS` changes the count), each one
 * played on simulated time by test/sim/Harness.ts; a failure prints its shrunk schedule and the
 * one-line command that replays it. The CI campaign of 1,000 schedules is split over this file
 * and test/sim/Campaign.test.ts so that both cores work on it.
 *
 * Also here: the schedules that hang the original (test/sim/Scenarios.ts) pass on the real layer;
 * the profiles that search for those hangs find nothing; the stale writer is fenced; and one
 * schedule played twice gives the same run (determinism, as SlateDB's DST checks).
 */
import { assert, describe, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { checkAsync, runSchedule, simSystem } from "./Check.js"
import { realSystem } from "./RealSystem.js"
import {
  checkpointDuringReplay,
  crashAndRestart,
  crashRevertsPartFile,
  hang340,
  hang373,
  heldDaemonChangeAcrossShutdown,
  heldLoadBehindItsRetry,
  heldWriteAcrossRestart,
  lateManifestPut,
  lateRenewalDuringTakeOver,
  lateRenewalDuringTakeOverFamily,
  operationsAcrossShutdownFamily,
  staleKeepsRunning,
  staleWriter,
  stalledLoad,
  takeOverBeforeFirstArchive,
  takeOverBeforeFirstArchiveFamily
} from "./Scenarios.js"
import { scheduleText } from "./Schedule.js"

const real = simSystem(realSystem)

/** Schedules of the CI campaign (both halves together). */
const campaignRuns = Number(process.env.SIM_RUNS ?? 1_000)
/** The seed of the first half; the second half uses the next one. */
const campaignSeed = Number(process.env.SIM_SEED ?? 20_240_130)
/** Drawn schedules of the take-over-before-the-first-archive class (about 0.1 s each). */
const takeOverRuns = Number(process.env.SIM_TAKEOVER_RUNS ?? 30)
/** Drawn schedules of the late-renewal-during-a-take-over class (about 0.1 s each). */
const lateRenewalRuns = Number(process.env.SIM_LATE_RENEWAL_RUNS ?? 100)
/** Drawn schedules of the operations-on-a-slow-disk-at-the-shutdown class (about 0.1 s each). */
const slowDiskRuns = Number(process.env.SIM_SLOW_DISK_RUNS ?? 60)

const assertHolds = (label: string, schedule: Parameters<typeof runSchedule>[1]) => {
  const outcome = runSchedule(real, schedule)
  assert.deepStrictEqual(
    outcome.violations,
    [],
    `${label}:\n${scheduleText(schedule)}\n${
      outcome.violations.map((violation) => `[${violation.property}] ${violation.detail}`).join("\n")
    }`
  )
  return outcome
}

describe("the real Storage layer under simulation", () => {
  it(`keeps every property on ${Math.ceil(campaignRuns / 2)} schedules (first half of the CI campaign)`, async () => {
    const result = await checkAsync(real, {
      profile: "full",
      runs: Math.ceil(campaignRuns / 2),
      seed: campaignSeed,
      shrinkTimeLimitMs: 60_000
    })
    console.log(result.report)
    assert.isFalse(result.failed, result.report)
  }, 300_000)

  it("survives the schedule that hangs the original in the #340 shape", () => {
    const outcome = assertHolds("#340 schedule", hang340)
    assert.isDefined(outcome.record?.shutdowns[0]?.completedAtMs)
  })

  it("survives the schedule that hangs the original in the #373 shape, and reports the failed upload", () => {
    const outcome = assertHolds("#373 schedule", hang373)
    const shutdown = outcome.record?.shutdowns[0]
    assert.isDefined(shutdown?.completedAtMs)
    // Every upload of a part fails: the shutdown checkpoint cannot commit, and says so.
    assert.isUndefined(shutdown?.result?.finalCheckpoint)
    // The acknowledged insert survives in the WAL: the restart has it.
    assert.strictEqual(outcome.record?.inserts[0]?.result?.acked, true)
  })

  it("finds nothing with the profiles that find the original's hangs", async () => {
    for (const profile of ["no-faults", "failing-tasks"] as const) {
      const result = await checkAsync(real, { profile, runs: 40, seed: 5, shrinkTimeLimitMs: 30_000 })
      assert.isFalse(result.failed, result.report)
    }
  }, 300_000)

  it("keeps the committed checkpoint intact when an abandoned attempt's manifest PUT lands late", () => {
    assertHolds("late manifest PUT", lateManifestPut)
  })

  it("keeps an acknowledged insert across a crash that reverts its part file to an older sync", () => {
    assertHolds("crash reverts a part file", crashRevertsPartFile)
  })

  it("cuts a read's wait for a stalled download at the read's own deadline", () => {
    const outcome = assertHolds("stalled load", stalledLoad)
    const timedOut =
      outcome.record?.reads.filter((read) => read.result?.error?.startsWith("PartLeaseTimeout") === true) ?? []
    assert.isAbove(timedOut.length, 0, "some part was evicted and its download stalled")
    for (const read of timedOut) assert.strictEqual((read.endedAtMs ?? 0) - read.startedAtMs, 1_000)
  })

  it("a take-over holds the lock when the old writer's late renewal lands between its PUT and its read-back", () => {
    const outcome = assertHolds("late renewal during a take-over", lateRenewalDuringTakeOver)
    const taker = outcome.record?.instances.find((info) => info.tookOverFrom === "A")
    assert.isDefined(taker, "B opened")
    assert.isAbove(taker?.epoch ?? 0, 1)
    assert.deepStrictEqual(outcome.record?.failedTakeOvers, [])
  })

  it("a new owner killed before it archived keeps its log over the old writer's WAL archived after the take-over", () => {
    const outcome = assertHolds("take-over before the first archive", takeOverBeforeFirstArchive)
    const taker = outcome.record?.instances.find((info) => info.tookOverFrom === "A")
    assert.isDefined(taker, "B opened")
    assert.isTrue(
      outcome.record?.inserts.some((insert) => insert.instance === "B" && insert.result?.acked === true),
      "B acknowledged an insert"
    )
  })

  it(`keeps every property on ${takeOverRuns} drawn take-overs before the old writer's first archive`, () => {
    fc.assert(
      fc.property(takeOverBeforeFirstArchiveFamily, (schedule) => {
        assertHolds("take-over before the first archive (drawn)", schedule)
      }),
      { numRuns: takeOverRuns, seed: campaignSeed }
    )
  })

  it(`keeps every property on ${lateRenewalRuns} drawn take-overs with the old writer's lock requests landing late`, () => {
    fc.assert(
      fc.property(lateRenewalDuringTakeOverFamily, (schedule) => {
        assertHolds("late renewal during a take-over (drawn)", schedule)
      }),
      { numRuns: lateRenewalRuns, seed: campaignSeed }
    )
  })

  it(`keeps every property on ${slowDiskRuns} drawn shutdowns that come while the application's operations are on a slow disk`, () => {
    fc.assert(
      fc.property(operationsAcrossShutdownFamily, (schedule) => {
        assertHolds("operations on a slow disk across the shutdown (drawn)", schedule)
      }),
      { numRuns: slowDiskRuns, seed: campaignSeed }
    )
  })

  for (const target of ["parts", "wal"] as const) {
    it(`keeps a rewrite made after a restart over a ${target} write that outlived the shutdown before it`, () => {
      const outcome = assertHolds(`a held ${target} write across a restart`, heldWriteAcrossRestart(target))
      const record = outcome.record
      if (record === undefined) throw new Error("no record")
      // The reopen waited for the held write (refused as locked meanwhile), then opened.
      const reopened = record.trace.find((line) => line.includes("A.2 opened directory A again"))
      assert.match(reopened ?? "", /t=60\d\d\.\dms A\.2 opened directory A again after [1-9]\d* refusal/)
      // A's write was abandoned (its insert never returned); A.2 rewrote the slot and read it back.
      const [, abandoned, rewrite] = record.inserts
      assert.deepStrictEqual([abandoned?.instance, abandoned?.result], ["A", undefined])
      assert.deepStrictEqual([rewrite?.instance, rewrite?.rewrites, rewrite?.result?.acked], [
        "A.2",
        abandoned?.id,
        true
      ])
      assert.strictEqual(record.reads[0]?.instance, "A.2")
    })
  }

  for (const target of ["control", "parts"] as const) {
    it(`meets the shutdown's deadline while the disk holds a daemon's ${target} change, and reopens once it has landed`, () => {
      const outcome = assertHolds(`a held ${target} change across the shutdown`, heldDaemonChangeAcrossShutdown(target))
      const record = outcome.record
      if (record === undefined) throw new Error("no record")
      const [shutdown] = record.shutdowns
      assert.isTrue(shutdown?.result?.metDeadline, "the shutdown met its deadline")
      // The restart opened only once the held change had landed (t=6,0xx ms: held from about 100 ms).
      const restart = record.reopens.find((reopen) => reopen.kind === "restart")
      assert.isAtLeast(restart?.shutdown?.startedAtMs ?? 0, 6_050)
    })
  }

  it("keeps a rewrite made after a load whose write the disk held past the request timeout", () => {
    const outcome = assertHolds("a held load behind its retry", heldLoadBehindItsRetry)
    const record = outcome.record
    if (record === undefined) throw new Error("no record")
    // Every rewrite was acknowledged, and every read after them saw it.
    assert.deepStrictEqual(record.inserts.slice(3).map((insert) => insert.result?.acked), [true, true, true])
    assert.strictEqual(record.reads.slice(3).filter((read) => read.result?.error === undefined).length, 3)
  })

  it("fences the stale writer: its checkpoint after the take-over fails with Fenced, the bucket keeps only the new epoch", () => {
    const outcome = assertHolds("stale writer", staleWriter)
    const record = outcome.record
    if (record === undefined) throw new Error("no record")
    const [first, second] = record.instances
    assert.strictEqual(second?.tookOverFrom, "A")
    assert.isTrue((second?.epoch ?? 0) > (first?.epoch ?? 0))
    const stale = record.checkpoints.filter((attempt) => attempt.stale)
    assert.strictEqual(stale.length, 1)
    assert.strictEqual(stale[0]?.result?.error?.tag, "Fenced")
    const checkpoints = record.finalAudit?.checkpoints ?? []
    const claim = checkpoints.find((checkpoint) => checkpoint.epoch === second?.epoch)
    assert.isDefined(claim)
    for (const checkpoint of checkpoints) {
      if (checkpoint.checkpoint >= (claim?.checkpoint ?? 0)) {
        assert.isTrue(
          checkpoint.epoch >= (second?.epoch ?? 0),
          `checkpoint ${checkpoint.checkpoint} has epoch ${checkpoint.epoch}`
        )
      }
    }
    // B's own insert made it into its shutdown checkpoint.
    const ownInsert = record.inserts.find((insert) => insert.instance === "B")
    assert.strictEqual(ownInsert?.result?.acked, true)
  })

  it("kills and restarts an instance: the next incarnation reopens its directory and the ledger holds", () => {
    const outcome = assertHolds("crash and restart", crashAndRestart)
    const record = outcome.record
    if (record === undefined) throw new Error("no record")
    assert.deepStrictEqual(record.crashes.map((crash) => crash.instance), ["A", "A.2"])
    assert.deepStrictEqual(
      record.instances.map((info) => [info.label, info.instanceId === record.instances[0]?.instanceId]),
      [["A", true], ["A.2", true]]
    )
    assert.deepStrictEqual(record.inserts.map((insert) => [insert.instance, insert.result?.acked]), [
      ["A", true],
      ["A", true],
      ["A", true],
      ["A.2", true]
    ])
    assert.deepStrictEqual(record.archives.map((archive) => [archive.instance, archive.result?.error]), [[
      "A",
      undefined
    ]])
    // The final restart read every part an insert went to; nothing is missing (assertHolds).
    const restart = record.reopens.find((reopen) => reopen.kind === "restart")
    assert.strictEqual(restart?.error, undefined)
    assert.strictEqual(restart?.parts.length, 4 + 2)
  })

  it("keeps an acknowledged insert when a checkpoint runs during a start-up replay that is then killed", () => {
    const outcome = assertHolds("checkpoint during replay", checkpointDuringReplay)
    assert.deepStrictEqual(outcome.record?.crashes.map((crash) => [crash.instance, crash.during]), [["A", "running"], [
      "A.2",
      "start-up"
    ]])
  })

  it("stops acknowledging on a stale writer told it is fenced, while the new owner stops and restarts", () => {
    const outcome = assertHolds("stale writer keeps running", staleKeepsRunning)
    const staleInserts =
      outcome.record?.inserts.filter((insert) => insert.instance === "A" && insert.startedAtMs > 5) ?? []
    assert.isAbove(staleInserts.length, 0, "the stale writer went on inserting")
    for (const insert of staleInserts) assert.isFalse(insert.result?.acked, `insert ${insert.id} of the fenced writer`)
  })

  it("plays one schedule the same way twice (determinism)", () => {
    const first = runSchedule(real, staleWriter)
    const second = runSchedule(real, staleWriter)
    const summary = (outcome: typeof first) => ({
      trace: outcome.record?.trace,
      inserts: outcome.record?.inserts.map((insert) => [insert.id, insert.instance, insert.result, insert.endedAtMs]),
      checkpoints: outcome.record?.checkpoints.map((attempt) => [attempt.instance, attempt.result, attempt.endedAtMs]),
      shutdowns: outcome.record?.shutdowns.map((
        shutdown
      ) => [shutdown.instance, shutdown.completedAtMs, shutdown.result?.detail]),
      audit: outcome.record?.finalAudit?.checkpoints.map((
        checkpoint
      ) => [checkpoint.checkpoint, checkpoint.epoch, checkpoint.instanceId, checkpoint.walPosition, [
        ...checkpoint.slots.keys()
      ]]),
      simulatedMs: outcome.simulatedMs
    })
    assert.deepStrictEqual(summary(first), summary(second))
  })
})
