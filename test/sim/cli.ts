/**
 * The simulation's command line: `npm run sim -- [options]`.
 *
 *   --system real|original      the real Storage layer (default) or the model of the original
 *   --profile full|no-faults|failing-tasks|crashes|lost-responses|stale-writers|disk-faults|bit-rot|adversarial|gc
 *                               the schedule generator (default full; the last seven add the
 *                               fault classes of test/sim/Schedule.ts to `full`)
 *   --runs N                    schedules to check (default 1000)
 *   --seed S                    fast-check's seed (default: a random one, printed)
 *   --path P                    replay one counterexample (printed by a failure) instead
 *   --steps N, --horizon MS     generator bounds (default 24 steps over 3000 ms)
 *   --campaign K                K checks of --runs schedules each, with seeds S, S+1, ...
 *   --shrink-limit S            shrink a counterexample for at most S seconds (the report then
 *                               shows it shrunk so far; its --path replays it)
 *   --ignore P1,P2              violations of these properties do not fail a schedule (to hunt
 *                               past a bug already known)
 *
 * A failure prints the shrunk schedule, the violated properties, the run's trace and the one-line
 * command that replays it; the exit code is then 1. Long campaigns: a large --runs, or --campaign.
 */
import { randomInt } from "node:crypto"
import { check, type SimSystem, simSystem } from "./Check.js"
import { defaultOriginalSettings, originalSystem } from "./OriginalModel.js"
import { realSystem } from "./RealSystem.js"
import { defaultBounds, type Profile, profiles } from "./Schedule.js"

interface Arguments {
  readonly system: "real" | "original"
  readonly profile: Profile
  readonly runs: number
  readonly seed: number
  readonly path: string | undefined
  readonly stepsMax: number
  readonly horizonMs: number
  readonly campaign: number
  readonly shrinkLimitS: number | undefined
  readonly ignore: ReadonlyArray<string>
}

const usage =
  "usage: npm run sim -- [--system real|original] [--profile full|no-faults|failing-tasks|crashes|lost-responses|stale-writers|disk-faults|bit-rot|adversarial|gc|stragglers] [--runs N] [--seed S] [--path P] [--steps N] [--horizon MS] [--campaign K] [--shrink-limit S] [--ignore P1,P2]"

const fail = (message: string): never => {
  process.stderr.write(`${message}\n${usage}\n`)
  process.exit(2)
}

const integer = (name: string, text: string | undefined, min: number): number => {
  const value = Number(text)
  if (text === undefined || !Number.isSafeInteger(value) || value < min) {
    return fail(`${name} needs an integer >= ${min}, got ${JSON.stringify(text)}`)
  }
  return value
}

const parse = (argv: ReadonlyArray<string>): Arguments => {
  const options = new Map<string, string>()
  for (let index = 0; index < argv.length; index++) {
    const name = argv[index]
    if (name === undefined) continue
    if (name === "--help" || name === "-h") {
      process.stdout.write(`${usage}\n`)
      process.exit(0)
    }
    if (!name.startsWith("--")) fail(`unexpected argument ${JSON.stringify(name)}`)
    const value = argv[index + 1]
    if (value === undefined) fail(`${name} needs a value`)
    options.set(name.slice(2), value ?? "")
    index++
  }
  for (const name of options.keys()) {
    if (
      !["system", "profile", "runs", "seed", "path", "steps", "horizon", "campaign", "shrink-limit", "ignore"].includes(
        name
      )
    ) fail(`unknown option --${name}`)
  }
  const system = options.get("system") ?? "real"
  if (system !== "real" && system !== "original") fail(`--system is real or original, got ${JSON.stringify(system)}`)
  const profile = options.get("profile") ?? "full"
  if (!profiles.includes(profile as Profile)) {
    fail(`--profile is one of ${profiles.join(", ")}, got ${JSON.stringify(profile)}`)
  }
  return {
    system: system as Arguments["system"],
    profile: profile as Profile,
    runs: options.has("runs") ? integer("--runs", options.get("runs"), 1) : 1000,
    seed: options.has("seed") ? integer("--seed", options.get("seed"), 0) : randomInt(0, 2 ** 31 - 1),
    path: options.get("path"),
    stepsMax: options.has("steps") ? integer("--steps", options.get("steps"), 0) : defaultBounds.stepsMax,
    horizonMs: options.has("horizon") ? integer("--horizon", options.get("horizon"), 1) : defaultBounds.horizonMs,
    campaign: options.has("campaign") ? integer("--campaign", options.get("campaign"), 1) : 1,
    shrinkLimitS: options.has("shrink-limit") ? integer("--shrink-limit", options.get("shrink-limit"), 1) : undefined,
    ignore: (options.get("ignore") ?? "").split(",").filter((name) => name !== "")
  }
}

const main = (): number => {
  const args = parse(process.argv.slice(2))
  const system: SimSystem = args.system === "real"
    ? simSystem(realSystem)
    : simSystem(originalSystem(defaultOriginalSettings))
  const bounds = { stepsMax: args.stepsMax, horizonMs: args.horizonMs }
  const checks = args.path === undefined ? args.campaign : 1
  let schedules = 0
  const startedMs = performance.now()
  for (let round = 0; round < checks; round++) {
    const seed = args.seed + round
    const result = check(system, {
      profile: args.profile,
      runs: args.runs,
      seed,
      ...(args.path === undefined ? {} : { path: args.path }),
      ...(args.shrinkLimitS === undefined ? {} : { shrinkTimeLimitMs: args.shrinkLimitS * 1000 }),
      ignore: args.ignore,
      bounds
    })
    schedules += result.runs
    process.stdout.write(`${result.report}\n`)
    if (result.failed) return 1
  }
  if (checks > 1) {
    process.stdout.write(
      `campaign: ${checks} checks, ${schedules} schedules, seeds ${args.seed}..${
        args.seed + checks - 1
      }, all properties hold (${((performance.now() - startedMs) / 1000).toFixed(1)} s)\n`
    )
  }
  return 0
}

// Fibers of a hung system are abandoned, not ended (some wait forever by design): exit explicitly.
process.exit(main())
