/**
 * Goal: the arguments reach @effect/cli in the shape it reads: `run` when no command is named, and
 * `--log-level` (a built-in option every command's help shows, read only right after the command
 * name) moved there from wherever it was written. Method: the pure normalization, case by case.
 */
import { CliConfig, HelpDoc, Options } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Option } from "effect"
import { normalizeArgs, restoreOptions } from "../../src/cli/Options.js"

describe("normalizeArgs", () => {
  it("means run when no command is named", () => {
    assert.deepStrictEqual(normalizeArgs([]), ["run"])
    assert.deepStrictEqual(normalizeArgs(["--duration", "5s"]), ["run", "--duration", "5s"])
    assert.deepStrictEqual(normalizeArgs(["--help"]), ["--help"])
    assert.deepStrictEqual(normalizeArgs(["explode"]), ["explode"])
  })

  it("moves --log-level right after the command, from any position", () => {
    assert.deepStrictEqual(normalizeArgs(["run", "--duration", "1s", "--log-level", "debug"]), [
      "run",
      "--log-level",
      "debug",
      "--duration",
      "1s"
    ])
    assert.deepStrictEqual(normalizeArgs(["gc", "--dry-run", "--log-level=info", "--store-dir", "/b"]), [
      "gc",
      "--log-level=info",
      "--dry-run",
      "--store-dir",
      "/b"
    ])
    assert.deepStrictEqual(normalizeArgs(["--log-level", "debug", "inspect", "--store-dir", "/b"]), [
      "inspect",
      "--log-level",
      "debug",
      "--store-dir",
      "/b"
    ])
    assert.deepStrictEqual(normalizeArgs(["--log-level", "debug", "--duration", "1s"]), [
      "run",
      "--log-level",
      "debug",
      "--duration",
      "1s"
    ])
    // A trailing --log-level without a value is left for the parser to refuse.
    assert.deepStrictEqual(normalizeArgs(["verify", "--log-level"]), ["verify", "--log-level"])
  })
})

describe("restore's --checkpoint and --lsn", () => {
  const parse = (option: typeof restoreOptions.checkpoint, args: ReadonlyArray<string>) =>
    Options.processCommandLine(option, args, CliConfig.defaultConfig).pipe(
      Effect.either,
      Effect.map(Either.match({
        onLeft: (error) => `refused: ${HelpDoc.toAnsiText(error.error)}`,
        onRight: ([, , value]) => Option.match(value, { onNone: () => "none", onSome: String })
      })),
      Effect.provide(NodeContext.layer)
    )

  it.effect("take a checkpoint number from 1 and a WAL position from 0, and name the flag of a bad value", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* parse(restoreOptions.checkpoint, []), "none")
      assert.strictEqual(yield* parse(restoreOptions.checkpoint, ["--checkpoint", "1"]), "1")
      assert.include(
        yield* parse(restoreOptions.checkpoint, ["--checkpoint", "0"]),
        "--checkpoint: 0 is not a checkpoint number (1 or more)"
      )
      assert.strictEqual(yield* parse(restoreOptions.lsn, ["--lsn", "0"]), "0")
      assert.include(yield* parse(restoreOptions.lsn, ["--lsn", "-3"]), "--lsn: -3 is not a WAL position (0 or more)")
    }))
})
