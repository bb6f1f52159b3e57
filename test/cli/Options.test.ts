/**
 * Goal: the arguments reach @effect/cli in the shape it reads: `run` when no command is named, and
 * `--log-level` (a built-in option every command's help shows, read only right after the command
 * name) moved there from wherever it was written. Method: the pure normalization, case by case.
 */
import { assert, describe, it } from "@effect/vitest"
import { normalizeArgs } from "../../src/cli/Options.js"

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
