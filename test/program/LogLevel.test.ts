/**
 * Goal: `--log-level`, shown in every command's help, works wherever it is written: after other
 * options of `run` it lowers the level (the storage tier's debug lines appear), and on a read-only
 * command it is accepted, not refused as an unknown argument. Method: the CLI spawned as a user runs it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { hasStackTrace, quick, runCli, temporaryDirectory } from "./Cli.js"

describe.concurrent("CLI --log-level", () => {
  it.live("after run's other options, it shows the debug lines", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["run", ...quick({ duration: "500ms" }), "--no-verify", "--log-level", "debug"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.match(result.stderr, /^effect-s3-tier: \S+ DEBUG /m)
      assert.isFalse(hasStackTrace(result.stderr))
    }), 120_000)

  it.scopedLive("on inspect and gc, in any position, it is accepted", () =>
    Effect.gen(function*() {
      const store = yield* temporaryDirectory("es3t-loglevel-")
      for (
        const args of [["inspect", "--store-dir", store, "--log-level", "debug"], [
          "gc",
          "--dry-run",
          "--log-level=info",
          "--store-dir",
          store
        ], ["--log-level", "error", "inspect", "--store-dir", store]]
      ) {
        const result = yield* runCli(args)
        assert.strictEqual(result.code, 0, `${args.join(" ")}: ${result.stderr}`)
        assert.notInclude(result.stderr, "unknown argument")
      }
    }), 120_000)
})
