/**
 * Runs the properties over many generated schedules with fast-check, and reports a failure as the
 * shrunk schedule, what it violated, the run's trace, and a one-line command that replays exactly
 * that schedule (`npm run sim -- … --seed S --path P`: fast-check's seed and counterexample path).
 *
 * One schedule = one synchronous simulated run (test/sim/SimRuntime.ts): the properties run in the
 * fast-check predicate itself, so fast-check shrinks a failing schedule by re-running smaller ones.
 */
import { type Effect, FastCheck as fc } from "effect"
import type { RunRecord, SystemUnderTest } from "./Harness.js"
import { simulate } from "./Harness.js"
import { judge, type Violation } from "./Properties.js"
import type { GeneratorBounds, Profile, SimSchedule } from "./Schedule.js"
import { defaultBounds, scheduleArb, scheduleText } from "./Schedule.js"
import { runSimulated, type SimStop } from "./SimRuntime.js"

/** A system under test, whatever its world type. */
export interface SimSystem {
  readonly name: string
  readonly play: (schedule: SimSchedule) => Effect.Effect<RunRecord>
}

export const simSystem = <W>(system: SystemUnderTest<W>): SimSystem => ({
  name: system.name,
  play: (schedule) => simulate(system, schedule)
})

/** The outcome of one schedule. */
export interface ScheduleOutcome {
  readonly record: RunRecord | undefined
  readonly violations: ReadonlyArray<Violation>
  readonly stop: SimStop
  readonly simulatedMs: number
  readonly logs: ReadonlyArray<string>
}

/** Simulated time after which a run is abandoned (the harness ends long before, by its own bounds). */
const timeLimitMs = 30 * 60_000

/** Plays one schedule on simulated time and judges it. */
export const runSchedule = (system: SimSystem, schedule: SimSchedule): ScheduleOutcome => {
  const run = runSimulated(system.play(schedule), { seed: schedule.randomSeed, timeLimitMs })
  if (run.exit === undefined || run.exit._tag === "Failure") {
    const detail = run.exit === undefined
      ? `the harness itself did not finish (${run.stop} at t=${run.endMs}ms)`
      : `the harness died: ${String(run.exit.cause)}`
    return {
      record: undefined,
      violations: [{ property: "harness", detail }],
      stop: run.stop,
      simulatedMs: run.endMs,
      logs: run.logs
    }
  }
  return {
    record: run.exit.value,
    violations: judge(run.exit.value),
    stop: run.stop,
    simulatedMs: run.endMs,
    logs: run.logs
  }
}

export interface CheckOptions {
  readonly profile: Profile
  readonly runs: number
  readonly seed: number
  /** fast-check's counterexample path: replays one schedule (and its shrinking) directly. */
  readonly path?: string
  readonly bounds?: GeneratorBounds
  /** Whether a run counts as failed; default: any violation of a property not in `ignore`. */
  readonly failsOn?: (violations: ReadonlyArray<Violation>) => boolean
  /** Properties whose violations do not fail a run (to hunt past a known bug). */
  readonly ignore?: ReadonlyArray<string>
  /** Wall-clock budget of shrinking a counterexample: once spent, the report shows the
   * counterexample shrunk so far (its `--path` replays it; a check with that path and no budget
   * goes on shrinking). The search itself is never cut. */
  readonly shrinkTimeLimitMs?: number
}

export interface CheckResult {
  readonly failed: boolean
  readonly runs: number
  readonly shrinks: number
  readonly seed: number
  readonly path: string | undefined
  readonly schedule: SimSchedule | undefined
  readonly outcome: ScheduleOutcome | undefined
  readonly replay: string
  readonly wallMs: number
  /** The whole report (success: one line; failure: everything needed to understand and replay). */
  readonly report: string
}

/** The command that replays a check (or, with a path, its counterexample). */
export const replayCommand = (systemName: string, options: CheckOptions, path?: string): string => {
  const bounds = options.bounds ?? defaultBounds
  const extra = (bounds.stepsMax === defaultBounds.stepsMax ? "" : ` --steps ${bounds.stepsMax}`) +
    (bounds.horizonMs === defaultBounds.horizonMs ? "" : ` --horizon ${bounds.horizonMs}`)
  const target = path === undefined ? ` --runs ${options.runs}` : ` --path ${path}`
  const ignore = options.ignore === undefined || options.ignore.length === 0
    ? ""
    : ` --ignore ${options.ignore.join(",")}`
  return `npm run sim -- --system ${systemName} --profile ${options.profile} --seed ${options.seed}${target}${extra}${ignore}`
}

/** The search: every run, stopping at the first failure when shrinking is budgeted separately. */
const searchParametersOf = (options: CheckOptions) => ({
  numRuns: options.runs,
  seed: options.seed,
  // A path replays exactly that counterexample (no further shrinking).
  ...(options.path === undefined ? {} : { path: options.path, endOnFailure: true }),
  ...(options.path === undefined && options.shrinkTimeLimitMs !== undefined ? { endOnFailure: true } : {})
})

/** The budgeted shrinking of a counterexample found at `path`. */
const shrinkParametersOf = (options: CheckOptions, path: string, timeLimitMs: number) => ({
  numRuns: options.runs,
  seed: options.seed,
  path,
  skipAllAfterTimeLimit: timeLimitMs
})

/** Whether a search result calls for a budgeted shrinking phase, and from where. */
const shrinkFrom = (
  options: CheckOptions,
  details: fc.RunDetails<[SimSchedule]>
): { readonly path: string; readonly timeLimitMs: number } | undefined =>
  options.path === undefined && options.shrinkTimeLimitMs !== undefined && details.failed &&
    details.counterexamplePath !== null
    ? { path: details.counterexamplePath, timeLimitMs: options.shrinkTimeLimitMs }
    : undefined

/** The shrinking phase's details, keeping the search's run count. */
const merge = (
  search: fc.RunDetails<[SimSchedule]>,
  shrunk: fc.RunDetails<[SimSchedule]>
): fc.RunDetails<[SimSchedule]> =>
  shrunk.failed && shrunk.counterexample !== null ? { ...shrunk, numRuns: search.numRuns } : search

const failsOnOf = (options: CheckOptions) =>
  options.failsOn ??
    ((violations: ReadonlyArray<Violation>) =>
      violations.some((violation) => !(options.ignore ?? []).includes(violation.property)))

const summarize = (
  system: SimSystem,
  options: CheckOptions,
  details: fc.RunDetails<[SimSchedule]>,
  wallMs: number
): CheckResult => {
  if (!details.failed || details.counterexample === null) {
    const error = details.failed
      ? ` (fast-check: ${String(details.errorInstance ?? "failed without a counterexample")})`
      : ""
    return {
      failed: details.failed,
      runs: details.numRuns,
      shrinks: 0,
      seed: options.seed,
      path: undefined,
      schedule: undefined,
      outcome: undefined,
      replay: replayCommand(system.name, options),
      wallMs,
      report: `${system.name}/${options.profile}: ${details.numRuns} schedules, seed ${options.seed}: ${
        details.failed ? `FAILED${error}` : "all properties hold"
      } (${(wallMs / 1000).toFixed(1)} s)`
    }
  }
  const [schedule] = details.counterexample
  const path = details.counterexamplePath ?? undefined
  const outcome = runSchedule(system, schedule)
  const replay = replayCommand(system.name, options, path)
  return {
    failed: true,
    runs: details.numRuns,
    shrinks: details.numShrinks,
    seed: options.seed,
    path,
    schedule,
    outcome,
    replay,
    wallMs,
    report: failureReport(system.name, options, details.numRuns, details.numShrinks, schedule, outcome, replay)
  }
}

/** Runs the properties over `runs` schedules (or the one at `path`) and shrinks a failure. */
export const check = (system: SimSystem, options: CheckOptions): CheckResult => {
  const failsOn = failsOnOf(options)
  const startedMs = performance.now()
  const property = fc.property(
    scheduleArb(options.profile, options.bounds),
    (schedule) => !failsOn(runSchedule(system, schedule).violations)
  )
  const search = fc.check(property, searchParametersOf(options))
  const from = shrinkFrom(options, search)
  const details = from === undefined
    ? search
    : merge(search, fc.check(property, shrinkParametersOf(options, from.path, from.timeLimitMs)))
  return summarize(system, options, details, performance.now() - startedMs)
}

/** Gives the event loop a turn (a test runner's messages, timers of the host). */
const yieldToHost = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/**
 * `check`, yielding to the event loop between schedules: for test runners, whose workers must
 * answer their parent while a long check runs (a check that never yields starves them).
 */
export const checkAsync = async (system: SimSystem, options: CheckOptions): Promise<CheckResult> => {
  const failsOn = failsOnOf(options)
  const startedMs = performance.now()
  const property = fc.asyncProperty(scheduleArb(options.profile, options.bounds), async (schedule) => {
    await yieldToHost()
    return !failsOn(runSchedule(system, schedule).violations)
  })
  const search = await fc.check(property, searchParametersOf(options))
  const from = shrinkFrom(options, search)
  const details = from === undefined
    ? search
    : merge(search, await fc.check(property, shrinkParametersOf(options, from.path, from.timeLimitMs)))
  return summarize(system, options, details, performance.now() - startedMs)
}

const failureReport = (
  systemName: string,
  options: CheckOptions,
  runs: number,
  shrinks: number,
  schedule: SimSchedule,
  outcome: ScheduleOutcome,
  replay: string
): string => {
  const lines = [
    `SIMULATION FAILED: system ${systemName}, profile ${options.profile}, seed ${options.seed}: schedule ${runs} failed (shrunk ${shrinks} times).`,
    "Violated:",
    ...outcome.violations.map((violation) => `  [${violation.property}] ${violation.detail}`),
    "Schedule (shrunk):",
    scheduleText(schedule),
    `  random seed ${schedule.randomSeed}`,
    "Trace:",
    ...(outcome.record?.trace ?? []).map((line) => `  ${line}`),
    ...(outcome.logs.length === 0 ? [] : ["Last log lines:", ...outcome.logs.slice(-20).map((line) => `  ${line}`)]),
    `Replay: ${replay}`
  ]
  return lines.join("\n")
}
