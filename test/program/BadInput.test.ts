/**
 * Goal: bad input is refused as the issue says — one clear error line on stderr, a non-zero exit
 * (2), no stack trace, and nothing written or deleted. Method: the CLI spawned as a user runs it;
 * for the directory cases, the directory's listing (and its would-be bucket sibling) before and
 * after. The S3 cases (unreachable endpoint, missing bucket, wrong credentials) are in S3.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { hasStackTrace, runCli, temporaryDirectory } from "./Cli.js"

/** Asserts the shape of a refusal: exit 2, one line, naming `fragment`, nothing on stdout. */
const assertRefused = (result: { code: number | null; stdout: string; stderr: string }, fragment: string | RegExp) => {
  assert.strictEqual(result.code, 2, result.stderr)
  const lines = result.stderr.trim().split("\n")
  assert.strictEqual(lines.length, 1, result.stderr)
  assert.match(lines[0] ?? "", /^effect-s3-tier: /)
  if (typeof fragment === "string") assert.include(lines[0] ?? "", fragment)
  else assert.match(lines[0] ?? "", fragment)
  assert.isFalse(hasStackTrace(result.stderr))
  assert.strictEqual(result.stdout, "")
}

const listing = (
  directory: string
): ReadonlyArray<
  string
> => (fs.existsSync(directory) ? fs.readdirSync(directory, { recursive: true }).map(String).sort() : [])

describe.concurrent("CLI bad input", () => {
  const cases: ReadonlyArray<[string, ReadonlyArray<string>, string | RegExp]> = [
    ["an unknown flag", ["run", "--bogus"], "--bogus"],
    ["an unknown flag without a command", ["--bogus"], "--bogus"],
    ["an unknown command", ["explode"], "run"],
    ["a zero duration", ["run", "--duration", "0s"], "--duration"],
    ["a negative duration", ["run", "--duration", "-5s"], "--duration"],
    ["a duration without a unit", ["run", "--checkpoint-interval", "250"], "--checkpoint-interval"],
    ["zero writers", ["run", "--writers", "0"], "--writers"],
    ["a zero local budget", ["run", "--local-budget", "0"], "--local-budget"],
    ["a zero shutdown deadline", ["run", "--shutdown-deadline", "0ms"], "--shutdown-deadline"],
    [
      "a shutdown deadline below the configuration's bound",
      ["run", "--shutdown-deadline", "5ms"],
      "--shutdown-deadline"
    ],
    ["an unknown fault", ["run", "--fault", "meteor"], "meteor"],
    ["an impossible error rate", ["run", "--fault", "error-rate=1.5"], "error-rate"],
    ["an unknown task type", ["run", "--fault", "fail-task=Upload"], "fail-task"],
    ["a bad prefix", ["run", "--prefix", "a//b"], "--prefix"],
    ["a file size that is not whole pages", ["run", "--file-size", "10000"], "--file-size"],
    ["sizes whose bookkeeping cannot fit in memory", ["run", "--files", "4096", "--file-size", "1GiB"], "--file-size"],
    ["S3 options without a bucket", ["run", "--endpoint", "http://127.0.0.1:9"], "--bucket"],
    ["both stores at once", ["inspect", "--store-dir", "/tmp/x", "--bucket", "b"], "--store-dir"],
    ["inspect without a bucket", ["inspect"], "--store-dir"]
  ]
  for (const [name, args, fragment] of cases) {
    it.live(`refuses ${name}`, () => Effect.map(runCli(args), (result) => assertRefused(result, fragment)))
  }

  it.scopedLive("refuses a data directory that is not ours, writing and deleting nothing", () =>
    Effect.gen(function*() {
      const parent = yield* temporaryDirectory("es3t-foreign-")
      const foreign = path.join(parent, "pgdata")
      fs.mkdirSync(foreign)
      fs.writeFileSync(path.join(foreign, "PG_VERSION"), "16\n")
      fs.mkdirSync(path.join(foreign, "base"))
      fs.writeFileSync(path.join(foreign, "base", "1"), "data")
      const before = listing(parent)
      const result = yield* runCli(["run", "--dir", foreign, "--duration", "1s"])
      assertRefused(result, "NotOurDirectory")
      assert.deepStrictEqual(listing(parent), before)
      assert.isFalse(fs.existsSync(`${foreign}-bucket`))
    }))

  it.scopedLive("refuses a data directory that is a file", () =>
    Effect.gen(function*() {
      const parent = yield* temporaryDirectory("es3t-file-")
      const file = path.join(parent, "data")
      fs.writeFileSync(file, "x")
      const result = yield* runCli(["run", "--dir", file])
      assertRefused(result, "not a directory")
      assert.deepStrictEqual(listing(parent), ["data"])
    }))

  it.scopedLive("refuses to inspect or verify a store directory that does not exist, creating nothing", () =>
    Effect.gen(function*() {
      const parent = yield* temporaryDirectory("es3t-missing-")
      const missing = path.join(parent, "nowhere")
      for (const command of ["inspect", "verify"]) {
        const result = yield* runCli([command, "--store-dir", missing])
        assert.strictEqual(result.code, 2, result.stderr)
        assert.strictEqual(result.stderr.trim().split("\n").length, 1, result.stderr)
        assert.isFalse(hasStackTrace(result.stderr))
        assert.isFalse(fs.existsSync(missing))
      }
    }))

  it.scopedLive("refuses sizes whose bookkeeping exceeds the heap limit before writing anything", () =>
    Effect.gen(function*() {
      // 256 files of 64 MiB are 2,097,152 pages: with a 64 MiB heap, the run's bookkeeping alone
      // would exhaust it (V8 then aborts with exit 134 and a native stack trace).
      const parent = yield* temporaryDirectory("es3t-heap-")
      const result = yield* runCli([
        "run",
        "--dir",
        path.join(parent, "data"),
        "--files",
        "256",
        "--file-size",
        "64MiB",
        "--duration",
        "1s"
      ], {
        env: { NODE_OPTIONS: "--max-old-space-size=64" }
      })
      assertRefused(
        result,
        /--file-size: 256 files of 64\.0MiB are 2097152 pages, whose bookkeeping .* does not fit in half the heap limit/
      )
      assert.deepStrictEqual(listing(parent), [])
    }))

  it.live("prints help on stdout and exits 0", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["run", "--help"])
      assert.strictEqual(result.code, 0)
      assert.include(result.stdout, "--shutdown-deadline")
      assert.include(result.stdout, "--fault")
    }))
})
