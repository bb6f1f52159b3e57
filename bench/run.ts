/**
 * `npm run bench [-- --quick] [-- --only queue,lease]`: runs the benchmark scenarios one after the
 * other and writes BENCHMARKS.md (tables) and bench/results.json (raw figures). `--quick` (CI's
 * smoke check, < 30 s) uses tiny sizes; the full run takes a few minutes (the memory scenario alone
 * two). `--no-write` leaves both files alone (the smoke test uses it); `--out <dir>` writes them
 * elsewhere.
 *
 * Each scenario measures ours against its baseline in the same run and reports the ratio.
 */
import { spawnSync } from "node:child_process"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { BenchOptions, ScenarioResult } from "./common.js"
import { collectGarbage, now } from "./common.js"
import * as Lease from "./lease.js"
import * as Memory from "./memory.js"
import * as QueueBench from "./queue.js"
import { commit, machine, markdown, type Run } from "./report.js"
import * as Shutdown from "./shutdown.js"
import * as Throughput from "./throughput.js"

export const scenarios: ReadonlyArray<readonly [string, (options: BenchOptions) => Promise<ScenarioResult>]> = [
  ["throughput", Throughput.run],
  ["queue", QueueBench.run],
  ["shutdown", Shutdown.run],
  ["memory", Memory.run],
  ["lease", Lease.run]
]

export interface Arguments {
  readonly quick: boolean
  readonly only: ReadonlyArray<string> | undefined
  readonly write: boolean
  readonly outDirectory: string | undefined
}

export const parseArguments = (argv: ReadonlyArray<string>): Arguments => {
  let quick = false
  let only: Array<string> | undefined
  let write = true
  let outDirectory: string | undefined
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index]
    if (argument === "--quick") quick = true
    else if (argument === "--no-write") write = false
    else if (argument === "--only" || argument === "--out") {
      const value = argv[++index]
      if (value === undefined) throw new Error(`${argument} needs a value`)
      if (argument === "--only") only = value.split(",").map((name) => name.trim()).filter((name) => name !== "")
      else outDirectory = value
    } else if (argument !== undefined && argument.startsWith("--only=")) {
      only = argument.slice("--only=".length).split(",").filter((name) => name !== "")
    } else throw new Error(`unknown argument ${argument ?? ""} (use --quick, --only <names>, --no-write, --out <dir>)`)
  }
  const known = scenarios.map(([name]) => name)
  for (const name of only ?? []) if (!known.includes(name)) throw new Error(`unknown scenario ${name} (known: ${known.join(", ")})`)
  return { quick, only, write, outDirectory }
}

/**
 * Between scenarios: flushes the file system's dirty pages (`sync`), pauses a second, then runs a
 * full garbage collection, so that neither the write-back of one scenario's files (the throughput
 * scenario writes about a GiB) nor the collection of its heap (its parts, buffers and clients) takes
 * the CPU from the next one's measurements.
 */
const settle = async (): Promise<void> => {
  spawnSync("sync", { stdio: "ignore" })
  await new Promise((resolve) => setTimeout(resolve, 1_000))
  collectGarbage()
}

/** Runs the selected scenarios; returns the run (and writes the files unless told not to). */
export const main = async (argv: ReadonlyArray<string>): Promise<Run> => {
  const args = parseArguments(argv)
  const started = now()
  const startMachine = machine()
  const results: Array<ScenarioResult> = []
  for (const [name, runScenario] of scenarios) {
    if (args.only !== undefined && !args.only.includes(name)) continue
    if (results.length > 0 && !args.quick) await settle()
    process.stderr.write(`bench: ${name}${args.quick ? " (quick)" : ""}…\n`)
    const scenarioStart = now()
    // A scenario that fails (a defect in the library, a broken backend) is reported as failed; the
    // others still run.
    const result = await runScenario({ quick: args.quick }).catch((error: unknown): ScenarioResult => {
      const message = error instanceof Error ? error.message : String(error)
      process.stderr.write(`bench: ${name} FAILED: ${error instanceof Error ? (error.stack ?? message) : message}\n`)
      return {
        id: name,
        title: `${name}: FAILED`,
        method: "The scenario did not complete.",
        ratioMeaning: "none",
        oursLabel: "ours",
        baselineLabel: "baseline",
        rows: [{ case: "scenario failed", ours: Number.NaN, unit: "", goal: "runs to the end", met: false, note: message.split("\n")[0] }],
        notes: [`Failure: ${message.split("\n")[0] ?? ""}`],
        raw: { error: message },
        durationMs: now() - scenarioStart
      }
    })
    process.stderr.write(`bench: ${name} done in ${(result.durationMs / 1000).toFixed(1)} s\n`)
    for (const row of result.rows) {
      process.stderr.write(`  ${row.case}: ours ${row.ours} ${row.unit}, baseline ${row.baseline ?? "–"}, ratio ${row.ratio ?? "–"}, goal ${row.goal}: ${row.met === undefined ? "–" : row.met ? "met" : "NOT met"}\n`)
    }
    results.push(result)
  }
  const failed = results.filter((result) => result.rows.some((row) => row.case === "scenario failed")).map((result) => result.id)
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
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
    const directory = args.outDirectory === undefined ? root : path.resolve(args.outDirectory)
    const benchDirectory = args.outDirectory === undefined ? path.join(root, "bench") : directory
    await fsp.mkdir(benchDirectory, { recursive: true })
    await fsp.writeFile(path.join(benchDirectory, "results.json"), JSON.stringify(run, null, 2) + "\n")
    await fsp.writeFile(path.join(directory, "BENCHMARKS.md"), markdown(run))
    process.stderr.write(`bench: wrote ${path.join(directory, "BENCHMARKS.md")} and ${path.join(benchDirectory, "results.json")}\n`)
  }
  return run
}

const invokedDirectly = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)
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
