/**
 * Shared pieces of the benchmarks: the result model every scenario returns, timing and statistics
 * helpers, deterministic payloads, and a Storage opened over given backends.
 *
 * This is measurement code at the program's edge: it reads the real clock (`performance.now`) and
 * the process's memory, which library code never does.
 */
import { Context, Effect, Layer, Logger, LogLevel } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import * as Storage from "../src/layers/Storage.js"
import type { LocalDisk } from "../src/services/LocalDisk.js"
import type { ObjectStore } from "../src/services/ObjectStore.js"
import * as StorageConfig from "../src/services/StorageConfig.js"

export const MiB = 1024 * 1024

/** One line of a scenario's table. `ratio` is ours against the baseline (its meaning is in `ratioMeaning`). */
export interface Row {
  readonly case: string
  readonly ours: number
  readonly baseline?: number | undefined
  readonly unit: string
  readonly ratio?: number | undefined
  readonly goal: string
  /** undefined: no goal for this row (reported only). */
  readonly met?: boolean | undefined
  readonly note?: string | undefined
}

export interface ScenarioResult {
  readonly id: string
  readonly title: string
  /** How the figures were taken (sizes, repetitions, baseline). */
  readonly method: string
  readonly ratioMeaning: string
  readonly oursLabel: string
  readonly baselineLabel: string
  readonly rows: ReadonlyArray<Row>
  readonly notes: ReadonlyArray<string>
  /** The raw figures (every repetition), for results.json. */
  readonly raw: unknown
  readonly durationMs: number
  /** Set on a scenario kept from an earlier run when `--only` ran others: when and at which commit it ran. */
  readonly ranAt?: { readonly date: string; readonly commit: string } | undefined
}

/** An S3 endpoint given on the command line (`--endpoint`): credentials come from the AWS
 * environment (the SDK's default chain). */
export interface EndpointOptions {
  readonly url: string
  readonly bucket: string
  readonly region: string
  readonly pathStyle: boolean
}

export interface BenchOptions {
  readonly quick: boolean
  /** Scenarios that take a store (throughput) run against this endpoint only, when given. */
  readonly endpoint?: EndpointOptions
}

export const now = (): number => performance.now()

/** A full collection: V8's `gc`, made available at run time (the same as `node --expose-gc`). */
export const collectGarbage: () => void = (() => {
  setFlagsFromString("--expose-gc")
  const gc: unknown = runInNewContext("gc")
  return typeof gc === "function" ? () => void gc() : () => {}
})()

/** This process's main (JavaScript) thread's time so far, ms, from Linux's per-thread schedstat:
 * on a core (its CPU time), and runnable but waiting for a core. NaN where it cannot be read. */
export const mainThreadSchedMs = (): { readonly onCpu: number; readonly waiting: number } => {
  try {
    const [onCpu, waiting] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8").split(" ")
    return { onCpu: Number(onCpu) / 1e6, waiting: Number(waiting) / 1e6 }
  } catch {
    return { onCpu: Number.NaN, waiting: Number.NaN }
  }
}
export const nowEffect = Effect.sync(now)

/** Runs `effect` and returns its value with its wall-clock duration in ms. */
export const timed = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<readonly [A, number], E, R> =>
  Effect.gen(function*() {
    const start = now()
    const value = yield* effect
    return [value, now() - start] as const
  })

export const timedPromise = async <A>(body: () => Promise<A>): Promise<readonly [A, number]> => {
  const start = now()
  const value = await body()
  return [value, now() - start] as const
}

export const sorted = (values: ReadonlyArray<number>): Array<number> => [...values].sort((left, right) => left - right)

/** The nearest-rank percentile (p in [0, 100]). */
export const percentile = (values: ReadonlyArray<number>, p: number): number => {
  const ordered = sorted(values)
  if (ordered.length === 0) return Number.NaN
  const rank = Math.min(ordered.length - 1, Math.max(0, Math.ceil((p / 100) * ordered.length) - 1))
  return ordered[rank] ?? Number.NaN
}

export const median = (values: ReadonlyArray<number>): number => percentile(values, 50)
export const mean = (values: ReadonlyArray<number>): number =>
  values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length)

export const round = (value: number, digits = 2): number => {
  const factor = 10 ** digits
  return Math.round(value * factor) / factor
}

/** Deterministic, incompressible-looking bytes (xorshift). */
export const payload = (seed: number, length: number): Uint8Array => {
  const bytes = new Uint8Array(length)
  let state = (seed * 2654435761) >>> 0 || 1
  for (let index = 0; index < length; index += 4) {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    bytes[index] = state & 0xff
    bytes[index + 1] = (state >>> 8) & 0xff
    bytes[index + 2] = (state >>> 16) & 0xff
    bytes[index + 3] = (state >>> 24) & 0xff
  }
  return bytes
}

/** Runs a promise-returning job for each index with at most `concurrency` in flight (a worker pool). */
export const promisePool = async (
  count: number,
  concurrency: number,
  job: (index: number) => Promise<unknown>
): Promise<void> => {
  let next = 0
  const worker = async () => {
    while (next < count) {
      const index = next++
      await job(index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
}

/** What a user would write without a pool: Promise.all over consecutive chunks of `concurrency`. */
export const chunkedPromiseAll = async (
  count: number,
  concurrency: number,
  job: (index: number) => Promise<unknown>
): Promise<void> => {
  for (let start = 0; start < count; start += concurrency) {
    await Promise.all(Array.from({ length: Math.min(concurrency, count - start) }, (_, offset) => job(start + offset)))
  }
}

/** Opens a Storage over the given backends in the current scope. */
export const openStorage = <E>(
  backends: Layer.Layer<ObjectStore | LocalDisk, E>,
  config: Partial<StorageConfig.StorageConfigValue>
): Effect.Effect<Storage.StorageService, Storage.StorageOpenError | E, Scope.Scope> =>
  Effect.map(
    Layer.build(Storage.layer().pipe(Layer.provide(backends), Layer.provide(StorageConfig.layer(config)))),
    (context) => Context.get(context, Storage.Storage)
  )

/** Keeps the library's info logs (one per shutdown) out of the benchmark's output. */
export const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  effect.pipe(Logger.withMinimumLogLevel(LogLevel.Error))

/** Connection info of the S3 server process (bench/s3-server-process.ts). */
export interface S3ServerProcessInfo {
  readonly endpoint: string
  readonly port: number
  readonly bucket: string
  readonly region: string
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string }
}

/**
 * Starts the test S3 server in a child process (so that it does not share the client's event loop,
 * as a real endpoint never does) and resolves with its connection info and a `stop`.
 */
export const startS3ServerProcess = (
  bucket: string,
  server: "s3rver" | "fast" = "s3rver"
): Promise<{ readonly info: S3ServerProcessInfo; readonly stop: () => Promise<void> }> =>
  new Promise((resolve, reject) => {
    const script = fileURLToPath(
      new URL(server === "s3rver" ? "./s3-server-process.ts" : "./fast-s3-server-process.ts", import.meta.url)
    )
    const child = spawn(process.execPath, ["--import", "tsx", script, bucket], { stdio: ["pipe", "pipe", "inherit"] })
    let output = ""
    const exited = new Promise<void>((done) => child.once("exit", () => done()))
    const stop = async () => {
      child.stdin?.end()
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000)
      await exited
      clearTimeout(timer)
    }
    child.once("error", reject)
    child.once(
      "exit",
      (code) => reject(new Error(`the S3 server process exited (code ${code}) before it was ready: ${output}`))
    )
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8")
      const newline = output.indexOf("\n")
      if (newline < 0) return
      try {
        resolve({ info: JSON.parse(output.slice(0, newline)) as S3ServerProcessInfo, stop })
      } catch (error) {
        reject(error)
      }
    })
  })
