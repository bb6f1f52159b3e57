/**
 * Test support: runs the CLI as a user does (`node --import tsx src/program.ts …`) in a child
 * process, collects its output, and lets a test act when a line appears on stderr (send a signal
 * once the run has started: waiting on output, never on a sleep).
 */
import { Deferred, Duration, Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { RunReport } from "../../src/cli/Report.js"

/** The repository root (this file is test/program/Cli.ts). */
export const repositoryRoot = path.resolve(import.meta.dirname, "..", "..")

/** What a finished CLI process left. */
export interface CliResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  readonly elapsedMs: number
}

/** A started CLI process. */
export interface CliProcess {
  readonly child: ChildProcess
  /** Completes with the first stderr line that matches, or fails when the process ends first. */
  readonly waitForStderr: (pattern: RegExp) => Effect.Effect<string, string>
  /** Completes when the process ends. */
  readonly result: Effect.Effect<CliResult>
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
}

/** Starts the CLI; the process is killed (SIGKILL) if the scope closes while it still runs. */
export const start = (
  args: ReadonlyArray<string>,
  options: { readonly env?: Record<string, string>; readonly timeoutMs?: number } = {}
) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const startedAt = performance.now()
      const finished = yield* Deferred.make<CliResult>()
      const child = spawn(process.execPath, ["--import", "tsx", "src/program.ts", ...args], {
        cwd: repositoryRoot,
        env: { ...process.env, NO_COLOR: "1", ...options.env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      const watchers: Array<{ pattern: RegExp; found: Deferred.Deferred<string, string> }> = []
      const checkWatchers = () => {
        for (const line of stderr.split("\n")) {
          for (const watcher of watchers) {
            if (watcher.pattern.test(line)) Deferred.unsafeDone(watcher.found, Effect.succeed(line))
          }
        }
      }
      child.stdout?.setEncoding("utf8").on("data", (chunk: string) => void (stdout += chunk))
      child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
        stderr += chunk
        checkWatchers()
      })
      child.on("close", (code, signal) => {
        for (const watcher of watchers) {
          Deferred.unsafeDone(
            watcher.found,
            Effect.fail(
              `the process ended (code ${code}, signal ${signal}) before a line matched ${watcher.pattern}:\n${stderr}`
            )
          )
        }
        Deferred.unsafeDone(
          finished,
          Effect.succeed({ code, signal, stdout, stderr, elapsedMs: performance.now() - startedAt })
        )
      })
      const process_: CliProcess = {
        child,
        waitForStderr: (pattern) =>
          Effect.gen(function*() {
            const found = yield* Deferred.make<string, string>()
            watchers.push({ pattern, found })
            checkWatchers()
            if (child.exitCode !== null || child.signalCode !== null) {
              yield* Deferred.fail(found, `the process already ended:\n${stderr}`)
            }
            return yield* Deferred.await(found)
          }),
        result: Deferred.await(finished).pipe(
          Effect.timeoutFail({
            duration: Duration.millis(options.timeoutMs ?? 150_000),
            onTimeout: () => new Error(`the CLI did not end within ${options.timeoutMs ?? 150_000} ms:\n${stderr}`)
          }),
          Effect.orDie
        ),
        kill: (signal) => Effect.sync(() => void child.kill(signal))
      }
      return process_
    }),
    (running) =>
      Effect.sync(() => {
        if (running.child.exitCode === null && running.child.signalCode === null) running.child.kill("SIGKILL")
      })
  )

/** Runs the CLI to its end. */
export const runCli = (
  args: ReadonlyArray<string>,
  options: { readonly env?: Record<string, string>; readonly timeoutMs?: number } = {}
) => Effect.scoped(Effect.flatMap(start(args, options), (running) => running.result))

/** A fresh temporary directory, removed when the scope closes. */
export const temporaryDirectory = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (directory) => Effect.sync(() => fs.rmSync(directory, { recursive: true, force: true }))
  )

/** The one JSON object a `--json` run printed on stdout. */
export const parseReport = <A = RunReport>(result: CliResult): A => {
  const lines = result.stdout.trim().split("\n").filter((line) => line !== "")
  if (lines.length !== 1) {
    throw new Error(`expected one line on stdout, got ${lines.length}:\n${result.stdout}\nstderr:\n${result.stderr}`)
  }
  return JSON.parse(lines[0] ?? "null") as A
}

/** Small, fast settings for a run under test (2 files of 256 pages); `quick` adds a duration and a
 * shutdown deadline, each overridable. The default deadline (10 s) leaves a loaded 2-core machine
 * time to complete the final checkpoint; the stall tests use a short one (they always use it all). */
export const quickShape = ["--writers", "4", "--files", "2", "--file-size", "2MiB", "--checkpoint-interval", "500ms"]
export const quick = (options: { readonly duration?: string; readonly deadline?: string } = {}) => [
  ...quickShape,
  "--duration",
  options.duration ?? "1500ms",
  "--shutdown-deadline",
  options.deadline ?? "10s"
]
export const quickRun = quick()
/**
 * For a fault drawn per request (`error-rate`): a run must make enough requests that none failing
 * is out of the question. `quickRun` (1.5 s, a checkpoint every 500 ms) injected 6 and 9 errors at
 * 0.3 in two runs on an idle machine, and none in one CI run on a loaded one; this run (3 s, a
 * checkpoint every 100 ms) injected 15 and 31.
 */
export const quickManyRequests = [
  ...quickShape.map((arg, index) => (quickShape[index - 1] === "--checkpoint-interval" ? "100ms" : arg)),
  "--duration",
  "3s",
  "--shutdown-deadline",
  "10s"
]
/** For runs whose shutdown is expected to use its whole deadline (stalls, failing tasks). */
export const quickStalled = quick({ deadline: "3s" })

/** Asserts that stderr holds no stack trace. */
export const hasStackTrace = (text: string): boolean =>
  /\n\s+at .+\(.+:\d+:\d+\)/.test(text) || /\n\s+at .+:\d+:\d+/.test(text)
