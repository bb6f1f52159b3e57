/**
 * `npm run bench [-- --quick] [-- --only queue,lease]`: runs the benchmark scenarios one after the
 * other and writes BENCHMARKS.md (tables) and bench/results.json (raw figures). `--quick` (CI's
 * smoke check, < 30 s) uses tiny sizes; the full run takes a few minutes (the memory scenario alone
 * two). `--no-write` leaves both files alone (the smoke test uses it); `--out <dir>` writes them
 * elsewhere. With `--only`, the files keep the other scenarios of the recorded run of the same mode
 * (quick or full), each marked with the date and commit it ran at. `--endpoint <url> --bucket <name>
 * [--region <r>] [--path-style]` (with `--only throughput`) runs the store scenario against that S3
 * endpoint alone, under a prefix of the run's own that it removes afterwards; the credentials come
 * from the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or a profile).
 *
 * Each scenario runs in a Node process of its own (this file again, with `--scenario-result <file>`),
 * so that no scenario inherits another's heap, JIT state or threads: run after the throughput
 * scenario in one process, the queue scenario measured 18.9-21.4 µs per task against 13.5-16 µs in a
 * fresh one (its baseline slowed alike). Each scenario measures ours against its baseline in the
 * same process and reports the ratio.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { BenchOptions, EndpointOptions, ScenarioResult } from "./common.js"
import { now } from "./common.js"
import { commit, machine, markdown, type Run } from "./report.js"

type Scenario = (options: BenchOptions) => Promise<ScenarioResult>

/** The scenarios in the order they run; each module is loaded only by the process that runs it. */
export const scenarios: ReadonlyArray<readonly [string, () => Promise<Scenario>]> = [
  ["throughput", () => import("./throughput.js").then((module) => module.run)],
  ["queue", () => import("./queue.js").then((module) => module.run)],
  ["shutdown", () => import("./shutdown.js").then((module) => module.run)],
  ["memory", () => import("./memory.js").then((module) => module.run)],
  ["lease", () => import("./lease.js").then((module) => module.run)],
  ["growth", () => import("./growth.js").then((module) => module.run)],
  ["restore", () => import("./restore.js").then((module) => module.run)]
]

export interface Arguments {
  readonly quick: boolean
  readonly only: ReadonlyArray<string> | undefined
  readonly write: boolean
  readonly outDirectory: string | undefined
  /** Internal: run the one scenario named by `--only` in this process and write its result here. */
  readonly scenarioResult: string | undefined
  /** `--endpoint <url> --bucket <name> [--region <r>] [--path-style]`: the store scenarios run there. */
  readonly endpoint: EndpointOptions | undefined
}

/** The scenarios that can run against a given endpoint. */
export const endpointScenarios: ReadonlyArray<string> = ["throughput", "restore"]

/** The arguments that carry an endpoint to a scenario's own process. */
const endpointArguments = (endpoint: EndpointOptions | undefined): ReadonlyArray<string> =>
  endpoint === undefined
    ? []
    : [
      "--endpoint",
      endpoint.url,
      "--bucket",
      endpoint.bucket,
      "--region",
      endpoint.region,
      ...(endpoint.pathStyle ? ["--path-style"] : [])
    ]

export const parseArguments = (argv: ReadonlyArray<string>): Arguments => {
  let quick = false
  let only: Array<string> | undefined
  let write = true
  let outDirectory: string | undefined
  let scenarioResult: string | undefined
  const endpoint = {
    url: undefined as string | undefined,
    bucket: undefined as string | undefined,
    region: "us-east-1",
    pathStyle: false
  }
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index]
    if (argument === "--quick") quick = true
    else if (argument === "--no-write") write = false
    else if (argument === "--path-style") endpoint.pathStyle = true
    else if (["--only", "--out", "--scenario-result", "--endpoint", "--bucket", "--region"].includes(argument ?? "")) {
      const value = argv[++index]
      if (value === undefined) throw new Error(`${argument} needs a value`)
      if (argument === "--only") only = value.split(",").map((name) => name.trim()).filter((name) => name !== "")
      else if (argument === "--out") outDirectory = value
      else if (argument === "--endpoint") endpoint.url = value
      else if (argument === "--bucket") endpoint.bucket = value
      else if (argument === "--region") endpoint.region = value
      else scenarioResult = value
    } else if (argument !== undefined && argument.startsWith("--only=")) {
      only = argument.slice("--only=".length).split(",").filter((name) => name !== "")
    } else {throw new Error(
        `unknown argument ${
          argument ?? ""
        } (use --quick, --only <names>, --no-write, --out <dir>, --endpoint <url> --bucket <name> [--region <r>] [--path-style])`
      )}
  }
  if (endpoint.url === undefined && (endpoint.bucket !== undefined || endpoint.pathStyle)) {
    throw new Error("--bucket and --path-style need --endpoint")
  }
  if (endpoint.url !== undefined) {
    if (endpoint.bucket === undefined) throw new Error("--endpoint needs --bucket <name>")
    if (!/^https?:\/\/[^/\s]+/.test(endpoint.url)) {
      throw new Error(`--endpoint must be an http(s) URL, got ${JSON.stringify(endpoint.url)}`)
    }
    if (only === undefined || only.some((name) => !endpointScenarios.includes(name))) {
      throw new Error(
        `--endpoint runs only ${endpointScenarios.join(", ")}: give --only ${endpointScenarios.join(",")}`
      )
    }
  }
  const known = scenarios.map(([name]) => name)
  for (const name of only ?? []) {
    if (!known.includes(name)) throw new Error(`unknown scenario ${name} (known: ${known.join(", ")})`)
  }
  if (scenarioResult !== undefined && only?.length !== 1) {
    throw new Error("--scenario-result needs --only with exactly one scenario")
  }
  const given = endpoint.url === undefined || endpoint.bucket === undefined
    ? undefined
    : { url: endpoint.url, bucket: endpoint.bucket, region: endpoint.region, pathStyle: endpoint.pathStyle }
  return { quick, only, write, outDirectory, scenarioResult, endpoint: given }
}

/**
 * Between scenarios: flushes the file system's dirty pages (`sync`) and pauses a second, so that the
 * write-back of one scenario's files (the throughput scenario writes about a GiB) does not take the
 * CPU from the next one's measurements.
 */
const settle = async (): Promise<void> => {
  spawnSync("sync", { stdio: "ignore" })
  await new Promise((resolve) => setTimeout(resolve, 1_000))
}

/** The result of a scenario that did not run to the end. */
const failedResult = (name: string, message: string, durationMs: number): ScenarioResult => ({
  id: name,
  title: `${name}: FAILED`,
  method: "The scenario did not complete.",
  ratioMeaning: "none",
  oursLabel: "ours",
  baselineLabel: "baseline",
  rows: [{
    case: "scenario failed",
    ours: Number.NaN,
    unit: "",
    goal: "runs to the end",
    met: false,
    note: message.split("\n")[0]
  }],
  notes: [`Failure: ${message.split("\n")[0] ?? ""}`],
  raw: { error: message },
  durationMs
})

/** Runs one scenario in this process; a scenario that fails (a defect in the library, a broken
 * backend) is reported as failed. */
const runHere = (name: string, load: () => Promise<Scenario>, options: BenchOptions): Promise<ScenarioResult> => {
  const scenarioStart = now()
  return load().then((runScenario) => runScenario(options)).catch((error: unknown): ScenarioResult => {
    const message = error instanceof Error ? error.message : String(error)
    process.stderr.write(`bench: ${name} FAILED: ${error instanceof Error ? (error.stack ?? message) : message}\n`)
    return failedResult(name, message, now() - scenarioStart)
  })
}

// A result crosses the process boundary as JSON, which has no NaN or Infinity (figures that could
// not be measured are NaN): those travel as {"$number": "NaN"}.
const encodeNumbers = (_key: string, value: unknown): unknown =>
  typeof value === "number" && !Number.isFinite(value) ? { $number: String(value) } : value
const decodeNumbers = (_key: string, value: unknown): unknown =>
  typeof value === "object" && value !== null && "$number" in value && Object.keys(value).length === 1
    ? Number(value.$number)
    : value

/** The repository's root (tsx resolves from there). */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")

/** The most a scenario's process may take before it is killed and the scenario reported as failed. */
const scenarioTimeoutMs = (quick: boolean): number => quick ? 120_000 : 400_000

/** Runs one scenario in a Node process of its own (this file, through tsx) and reads its result. */
const runIsolated = async (
  name: string,
  quick: boolean,
  endpoint: EndpointOptions | undefined
): Promise<ScenarioResult> => {
  const scenarioStart = now()
  const directory = await fsp.mkdtemp(path.join(os.tmpdir(), "bench-scenario-"))
  const resultFile = path.join(directory, "result.json")
  try {
    const args = [
      "--import",
      "tsx",
      fileURLToPath(import.meta.url),
      "--only",
      name,
      "--no-write",
      "--scenario-result",
      resultFile
    ]
    if (quick) args.push("--quick")
    args.push(...endpointArguments(endpoint))
    const timeoutMs = scenarioTimeoutMs(quick)
    const outcome = await new Promise<string | undefined>((resolve) => {
      const child = spawn(process.execPath, args, {
        cwd: root,
        stdio: ["ignore", "inherit", "inherit"],
        timeout: timeoutMs,
        killSignal: "SIGKILL"
      })
      child.on("error", (error) => resolve(`could not start its process: ${error.message}`))
      child.on("exit", (code, signal) =>
        resolve(
          code === 0
            ? undefined
            : signal !== null
            ? `its process was killed by ${signal}${signal === "SIGKILL" ? ` (over ${timeoutMs} ms?)` : ""}`
            : `its process exited with ${code ?? "no code"}`
        ))
    })
    // A scenario that failed inside its process still wrote its (failed) result, with the error.
    const text = await fsp.readFile(resultFile, "utf8").catch(() => undefined)
    if (text === undefined) return failedResult(name, outcome ?? "its process wrote no result", now() - scenarioStart)
    // The file is ours, written by `main` below from a ScenarioResult.
    return JSON.parse(text, decodeNumbers) as ScenarioResult
  } finally {
    await fsp.rm(directory, { recursive: true, force: true })
  }
}

/** The run recorded in a results.json, if there is one that parses. */
const readRun = (file: string): Promise<Run | undefined> =>
  // The file is ours, written below from a Run.
  fsp.readFile(file, "utf8").then((text) => JSON.parse(text, decodeNumbers) as Run, () => undefined)

/**
 * `latest` (a run of some scenarios) over `earlier` (a recorded run of the same mode): the
 * scenarios of `latest`, and the others of `earlier`, each marked with the run it comes from.
 */
export const mergeRuns = (earlier: Run | undefined, latest: Run): Run => {
  if (earlier === undefined || earlier.quick !== latest.quick) return latest
  const fresh = new Set(latest.scenarios.map((scenario) => scenario.id))
  const carried = earlier.scenarios
    .filter((scenario) => !fresh.has(scenario.id))
    .map((scenario) => ({ ...scenario, ranAt: scenario.ranAt ?? { date: earlier.date, commit: earlier.commit } }))
  const order = scenarios.map(([name]) => name)
  const merged = [...latest.scenarios, ...carried].sort((left, right) =>
    order.indexOf(left.id) - order.indexOf(right.id)
  )
  const failed = [...latest.failed, ...earlier.failed.filter((id) => !fresh.has(id))]
  return {
    ...latest,
    scenarios: merged,
    failed: merged.map((scenario) => scenario.id).filter((id) => failed.includes(id))
  }
}

/** Runs the selected scenarios; returns the run (and writes the files unless told not to). */
export const main = async (argv: ReadonlyArray<string>): Promise<Run> => {
  const args = parseArguments(argv)
  const started = now()
  const startMachine = machine()
  const results: Array<ScenarioResult> = []
  for (const [name, load] of scenarios) {
    if (args.only !== undefined && !args.only.includes(name)) continue
    if (args.scenarioResult !== undefined) {
      // The process of one scenario: run it here and hand its result to the parent.
      const result = await runHere(name, load, {
        quick: args.quick,
        ...(args.endpoint === undefined ? {} : { endpoint: args.endpoint })
      })
      await fsp.writeFile(args.scenarioResult, JSON.stringify(result, encodeNumbers))
      results.push(result)
      continue
    }
    if (results.length > 0 && !args.quick) await settle()
    process.stderr.write(`bench: ${name}${args.quick ? " (quick)" : ""}…\n`)
    // A scenario that fails (a defect in the library, a broken backend, a process that dies) is
    // reported as failed; the others still run.
    const result = await runIsolated(name, args.quick, args.endpoint)
    process.stderr.write(`bench: ${name} done in ${(result.durationMs / 1000).toFixed(1)} s\n`)
    for (const row of result.rows) {
      process.stderr.write(
        `  ${row.case}: ours ${row.ours} ${row.unit}, baseline ${row.baseline ?? "–"}, ratio ${
          row.ratio ?? "–"
        }, goal ${row.goal}: ${row.met === undefined ? "–" : row.met ? "met" : "NOT met"}\n`
      )
    }
    results.push(result)
  }
  const failed = results.filter((result) => result.rows.some((row) => row.case === "scenario failed")).map((result) =>
    result.id
  )
  const run: Run = {
    failed,
    quick: args.quick,
    date: new Date().toISOString(),
    commit: commit(),
    machine: startMachine,
    loadAverageAfter: os.loadavg().map((value) => Math.round(value * 100) / 100),
    durationMs: now() - started,
    scenarios: results
  }
  if (args.write) {
    const directory = args.outDirectory === undefined ? root : path.resolve(args.outDirectory)
    const benchDirectory = args.outDirectory === undefined ? path.join(root, "bench") : directory
    await fsp.mkdir(benchDirectory, { recursive: true })
    const resultsFile = path.join(benchDirectory, "results.json")
    // `--only` replaces its scenarios' sections and keeps the others of an earlier run of the same mode.
    const written = args.only === undefined ? run : mergeRuns(await readRun(resultsFile), run)
    await fsp.writeFile(resultsFile, JSON.stringify(written, null, 2) + "\n")
    await fsp.writeFile(
      path.join(directory, "BENCHMARKS.md"),
      markdown(written, path.relative(directory, resultsFile).split(path.sep).join("/"))
    )
    process.stderr.write(
      `bench: wrote ${path.join(directory, "BENCHMARKS.md")} and ${path.join(benchDirectory, "results.json")}\n`
    )
  }
  return run
}

const invokedDirectly = process.argv[1] !== undefined &&
  path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    // A scenario that did not run to the end fails the command (CI's smoke check); a missed goal does not.
    (run) => process.exit(run.failed.length > 0 ? 1 : 0),
    (error: unknown) => {
      process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
      process.exit(1)
    }
  )
}
