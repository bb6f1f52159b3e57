/**
 * Goal: the programs in examples/ run as written. Method: each is started as a user starts it
 * (`node --import tsx examples/<name>.ts`, the single-process form of `npx tsx`, so that a signal
 * reaches the program itself), in a fresh temp directory; the quick start is stopped with SIGINT
 * once it says it is ready (never after a sleep) and must end in its bounded shutdown; the S3
 * example runs against the test S3 server through `Storage.layerConfig`; the tracing example must
 * export, through OpenTelemetry, the app's spans and the tier's (a checkpoint, its uploads and its
 * commit) in one trace.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as S3TestServer from "../support/S3TestServer.js"

const repositoryRoot = path.resolve(import.meta.dirname, "..", "..")

interface Finished {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

interface Started {
  readonly child: ChildProcess
  /** Completes when stdout has a line matching `pattern`; fails when the process ends first. */
  readonly waitForStdout: (pattern: RegExp) => Effect.Effect<void, string>
  readonly finished: Effect.Effect<Finished>
}

/** Starts an example; SIGKILLed if the scope closes while it still runs. */
const start = (name: string, env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const finished = yield* Deferred.make<Finished>()
      const child = spawn(process.execPath, ["--import", "tsx", `examples/${name}.ts`], {
        cwd: repositoryRoot,
        env: { ...process.env, NO_COLOR: "1", ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      child.stdout?.setEncoding("utf8").on("data", (chunk: string) => void (stdout += chunk))
      child.stderr?.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
      child.on("close", (code) => Deferred.unsafeDone(finished, Effect.succeed({ code, stdout, stderr })))
      const waitForStdout = (pattern: RegExp): Effect.Effect<void, string> =>
        Effect.async<void, string>((resume) => {
          const check = () => {
            if (pattern.test(stdout)) resume(Effect.void)
          }
          child.stdout?.on("data", check)
          child.on("close", () => resume(Effect.fail(`${name} ended before ${pattern}:\n${stdout}\n${stderr}`)))
          check()
          return Effect.sync(() => child.stdout?.off("data", check))
        })
      return { child, waitForStdout, finished: Deferred.await(finished) } satisfies Started
    }),
    ({ child }) =>
      Effect.sync(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      })
  )

const run = (name: string, env: Record<string, string>) =>
  Effect.flatMap(start(name, env), (started) => started.finished)

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fsp.mkdtemp(path.join(os.tmpdir(), "s3-tier-example-"))),
  (dir) => Effect.promise(() => fsp.rm(dir, { recursive: true, force: true }))
)

const explain = (result: Finished) => `exit ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`

describe("examples", () => {
  it.scopedLive(
    "quickstart: serves until SIGINT, which is the bounded shutdown; a second run reads the first's count",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        for (const runNumber of [1, 2]) {
          const started = yield* start("quickstart", { EXAMPLE_DIR: dir })
          yield* started.waitForStdout(/ready: serving until Ctrl-C/)
          started.child.kill("SIGINT")
          const result = yield* started.finished
          assert.strictEqual(result.code, 0, explain(result))
          assert.include(result.stdout, `run ${runNumber}: checkpoint`, explain(result))
          assert.match(
            result.stdout,
            /shutdown in \d+ ms \(deadline 15000 ms\): final checkpoint \w+, leases held 0, lock released/,
            explain(result)
          )
        }
      }),
    60_000
  )

  it.scopedLive(
    "s3: configured from the environment, writes, checkpoints into the bucket and reads back",
    () =>
      Effect.gen(function*() {
        const server = yield* S3TestServer.make()
        const result = yield* run("s3", {
          S3_TIER_DATA_DIR: yield* tempDir,
          S3_TIER_PREFIX: `${S3TestServer.runId}/example-s3`,
          S3_TIER_S3_BUCKET: server.bucket,
          S3_TIER_S3_ENDPOINT: server.endpoint,
          S3_TIER_S3_REGION: server.region,
          S3_TIER_S3_FORCE_PATH_STYLE: "true",
          S3_TIER_S3_ACCESS_KEY_ID: server.credentials.accessKeyId,
          S3_TIER_S3_SECRET_ACCESS_KEY: server.credentials.secretAccessKey
        })
        assert.strictEqual(result.code, 0, explain(result))
        assert.match(result.stdout, /checkpoint 1 in the bucket: 1 parts/, explain(result))
        assert.match(result.stdout, /read back: hello from instance \S+ at epoch 1/, explain(result))
        assert.include(result.stdout, "shutdown: met its deadline, lock released", explain(result))
      }),
    60_000
  )

  it.scopedLive("restore: the state at a checkpoint, at an LSN and at the latest", () =>
    Effect.gen(function*() {
      const result = yield* run("restore", { EXAMPLE_DIR: yield* tempDir })
      assert.strictEqual(result.code, 0, explain(result))
      const lines = result.stdout.split("\n").filter((line) => /^\S.*: "/.test(line))
      assert.deepStrictEqual(lines.map((line) => line.slice(0, line.indexOf(" ("))), [
        "checkpoint 1: \"balance 100\"",
        "LSN 56: \"balance 200\"",
        "the latest state: \"balance 300\""
      ], explain(result))
    }), 60_000)

  it.scopedLive(
    "tracing: OpenTelemetry's console exporter prints the app's spans and the tier's in one trace",
    () =>
      Effect.gen(function*() {
        const result = yield* run("tracing", { EXAMPLE_DIR: yield* tempDir })
        assert.strictEqual(result.code, 0, explain(result))
        // ConsoleSpanExporter prints one object per span: its traceId, then (later) its name.
        const spans = [...result.stdout.matchAll(/traceId: '([0-9a-f]+)'[\s\S]*?name: '([^']+)'/g)].map((match) => ({
          traceId: match[1],
          name: match[2]
        }))
        const run_ = spans.find((span) => span.name === "app.run")
        assert.isDefined(run_, explain(result))
        const inTrace = new Set(spans.filter((span) => span.traceId === run_.traceId).map((span) => span.name))
        for (const name of ["app.deposit", "app.checkpoint", "checkpoint", "s3.task", "checkpoint.commit"]) {
          assert.isTrue(inTrace.has(name), `${name} in the app's trace\n${explain(result)}`)
        }
      }),
    60_000
  )
})
