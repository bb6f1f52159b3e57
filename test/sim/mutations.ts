/**
 * The mutation check: breaks the real code one way at a time (each a small textual patch of one
 * source file), runs the simulation and the relevant unit tests against the broken code, and
 * confirms that the suite fails; then restores the file byte for byte. Run it with
 * `npx tsx test/sim/mutations.ts` (options: `--runs N` schedules per simulation, default 200;
 * `--only ID`). The results are summarized in test/sim/README.md.
 *
 * Safety: the original bytes are kept in memory and in a backup file under the system's temporary
 * directory; the file is restored in a `finally`, on SIGINT/SIGTERM, and checked against its
 * original SHA-256. A backup left by a killed run makes the next run refuse to start until it is
 * looked at. No git command is used.
 */
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"

interface Mutation {
  readonly id: string
  /** What the patch breaks, in the words of the issue. */
  readonly breaks: string
  readonly file: string
  readonly find: string
  readonly replace: string
  /** Unit test files that cover the same guarantee. */
  readonly tests: ReadonlyArray<string>
}

const mutations: ReadonlyArray<Mutation> = [
  {
    id: "no-failure-propagation",
    breaks: "failure propagation to waiters: a failed task never completes its handle",
    file: "src/services/S3Workers.ts",
    find: "      return picked.complete(outcome)\n",
    replace: "      return Exit.isSuccess(outcome) ? picked.complete(outcome) : Effect.void // MUTATION\n",
    tests: ["test/services/S3Workers.test.ts", "test/services/TaskQueue.test.ts"]
  },
  {
    id: "uninterruptible-task-wait",
    breaks: "interruptible waits: waiting on a task handle ignores interruption (and so every deadline)",
    file: "src/services/TaskQueue.ts",
    find: 'this.core.waits.track("TaskHandle.await", () => this.label(), this.awaitExit())',
    replace: 'this.core.waits.track("TaskHandle.await", () => this.label(), Effect.uninterruptible(this.awaitExit())) /* MUTATION */',
    tests: ["test/services/TaskQueue.test.ts"]
  },
  {
    id: "uninterruptible-lease-wait",
    breaks: "interruptible waits: a lease waiting for a part to load ignores interruption (and its timeout)",
    file: "src/services/PartTable.ts",
    find: "      STM.commit(awaitTransition(table, slot, generation)),\n",
    replace: "      Effect.uninterruptible(STM.commit(awaitTransition(table, slot, generation))), // MUTATION\n",
    tests: ["test/services/PartTable.test.ts"]
  },
  {
    id: "no-release-on-interruption",
    breaks: "release on interruption: an interrupted lease holder keeps its lease",
    file: "src/services/PartTable.ts",
    find: "  Effect.acquireRelease(attemptOnce(table, slot), releaseAttempt(table, slot))\n",
    replace: "  Effect.acquireRelease(attemptOnce(table, slot), (attempt, exit) => (Exit.isInterrupted(exit) ? Effect.void : releaseAttempt(table, slot)(attempt))) // MUTATION\n",
    tests: ["test/services/PartTable.test.ts"]
  },
  {
    id: "no-abort-at-close",
    breaks: "failure propagation at close: tasks still queued at shutdown are dropped, their handles never complete",
    file: "src/services/TaskQueue.ts",
    find: '      this.finish(entry, Exit.fail(new TaskAborted({ taskId: entry.id, taskType: entry.task._tag, reason: "QueueClosed" })))\n',
    replace: "      void entry // MUTATION\n",
    tests: ["test/services/TaskQueue.test.ts", "test/services/S3Workers.test.ts"]
  },
  {
    id: "uninterruptible-shutdown-steps",
    breaks: "interruptible waits: the shutdown's bounded steps run uninterruptibly (the bug the simulation found first)",
    file: "src/layers/Storage.ts",
    find: "  Effect.interruptible(step).pipe(Effect.timeoutOption(Duration.millis(Math.max(0, ms))))\n",
    replace: "  step.pipe(Effect.timeoutOption(Duration.millis(Math.max(0, ms)))) // MUTATION\n",
    tests: []
  }
]

const root = join(dirname(new URL(import.meta.url).pathname), "..", "..")
const backupRoot = join(tmpdir(), "effect-s3-tier-mutation-backup")
const sha256 = (bytes: Buffer | string): string => createHash("sha256").update(bytes).digest("hex")

const args = process.argv.slice(2)
const option = (name: string): string | undefined => {
  const index = args.indexOf(`--${name}`)
  return index >= 0 ? args[index + 1] : undefined
}
const runs = Number(option("runs") ?? 200)
const only = option("only")

interface Applied {
  readonly path: string
  readonly original: Buffer
  readonly mutated: Buffer
  readonly backup: string
}
let applied: Applied | undefined

const restore = (): void => {
  const current = applied
  if (current === undefined) return
  applied = undefined
  const now = readFileSync(current.path)
  if (sha256(now) !== sha256(current.mutated) && sha256(now) !== sha256(current.original)) {
    // Someone edited the file while it was mutated: do not overwrite their edit.
    throw new Error(`${current.path} changed while mutated; not restored. Its original is in ${current.backup}: remove the MUTATION line by hand`)
  }
  writeFileSync(current.path, current.original)
  if (sha256(readFileSync(current.path)) !== sha256(current.original)) throw new Error(`could not restore ${current.path}; its original is in ${current.backup}`)
  rmSync(current.backup, { force: true })
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    restore()
    process.exit(130)
  })
}

const run = (command: string, commandArgs: ReadonlyArray<string>, timeoutMs: number) => {
  const result = spawnSync(command, commandArgs, { cwd: root, encoding: "utf8", timeout: timeoutMs, env: { ...process.env, FORCE_COLOR: "0" } })
  return { status: result.status, output: `${result.stdout ?? ""}${result.stderr ?? ""}`, timedOut: result.error !== undefined }
}

interface Row {
  readonly mutation: Mutation
  readonly applicable: boolean
  readonly simulation: string
  readonly unitTests: string
  readonly caught: boolean
}

const simulate = (seed: number) =>
  run("npx", ["tsx", "test/sim/cli.ts", "--system", "real", "--profile", "full", "--runs", String(runs), "--seed", String(seed), "--shrink-limit", "20"], 600_000)

/**
 * A seed whose schedules all pass on the unmutated code, so that a failure under a mutation is the
 * mutation's doing (a bug of the real code that the simulation already finds would otherwise be
 * blamed on every mutation).
 */
const cleanSeed = (): number | undefined => {
  for (let seed = 1; seed <= 12; seed++) {
    const baseline = simulate(seed)
    process.stderr.write(`baseline seed ${seed}: ${baseline.status === 0 ? `passes ${runs} schedules` : "fails"}\n`)
    if (baseline.status === 0) return seed
  }
  return undefined
}

const check = (mutation: Mutation, seed: number): Row => {
  const path = join(root, mutation.file)
  const original = readFileSync(path)
  const text = original.toString("utf8")
  const occurrences = text.split(mutation.find).length - 1
  if (occurrences !== 1) return { mutation, applicable: false, simulation: "-", unitTests: "-", caught: false }
  const backup = join(backupRoot, mutation.file)
  mkdirSync(dirname(backup), { recursive: true })
  writeFileSync(backup, original)
  const mutated = Buffer.from(text.replace(mutation.find, mutation.replace), "utf8")
  applied = { path, original, mutated, backup }
  try {
    writeFileSync(path, mutated)
    const sim = simulate(seed)
    const violated = [...new Set([...sim.output.matchAll(/^\s+\[([a-z-]+)\]/gm)].map((match) => match[1]))]
    const failedAt = /schedule (\d+) failed/.exec(sim.output)?.[1]
    const simulation =
      sim.timedOut ? "timed out (counts as caught: the run hung)" : sim.status === 1 ? `fails at schedule ${failedAt ?? "?"}: ${violated.join(", ")}` : sim.status === 0 ? `passes ${runs} schedules` : `exit ${sim.status}`
    let unitTests = "-"
    let unitFailed = false
    if (mutation.tests.length > 0) {
      const unit = run("npx", ["vitest", "run", ...mutation.tests], 600_000)
      const summary = /Tests\s+(.*)/.exec(unit.output)?.[1]?.trim() ?? (unit.timedOut ? "timed out" : `exit ${unit.status}`)
      unitFailed = unit.status !== 0
      unitTests = `${unitFailed ? "fail" : "pass"} (${summary})`
    }
    const simFailed = sim.timedOut || sim.status === 1
    return { mutation, applicable: true, simulation, unitTests, caught: simFailed || unitFailed }
  } finally {
    restore()
  }
}

const main = (): number => {
  if (existsSync(backupRoot)) {
    process.stderr.write(`a previous mutation run left backups in ${backupRoot}: compare them with the source files, restore if needed, then remove that directory\n`)
    return 2
  }
  const seed = cleanSeed()
  if (seed === undefined) {
    process.stderr.write("no seed in 1..12 passes on the unmutated code: fix what the simulation finds first\n")
    return 2
  }
  const rows: Array<Row> = []
  for (const mutation of mutations) {
    if (only !== undefined && mutation.id !== only) continue
    process.stderr.write(`mutation ${mutation.id} (${mutation.file}) ...\n`)
    const row = check(mutation, seed)
    rows.push(row)
    process.stderr.write(`  simulation: ${row.simulation}; unit tests: ${row.unitTests}\n`)
  }
  rmSync(backupRoot, { recursive: true, force: true })
  process.stdout.write(`| mutation | breaks | simulation (real, full profile, ${runs} schedules, seed ${seed}) | unit tests | caught |\n|---|---|---|---|---|\n`)
  for (const row of rows) {
    process.stdout.write(
      `| \`${row.mutation.id}\` (${row.mutation.file}) | ${row.mutation.breaks} | ${row.applicable ? row.simulation : "not applicable: the patched text is no longer in the file"} | ${row.unitTests} | ${row.applicable ? (row.caught ? "yes" : "**no**") : "-"} |\n`
    )
  }
  return rows.every((row) => row.caught) ? 0 : 1
}

let status = 1
try {
  status = main()
} finally {
  restore()
}
process.exit(status)
