/**
 * The project's lint rules catch what they exist to catch: a floating Effect, the wall clock, a raw
 * timer. The src/ rules apply to the fixtures too; the project's lint run ignores them.
 */
import { assert, describe, it } from "@effect/vitest"
import { ESLint } from "eslint"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

const fixture = fileURLToPath(new URL("./fixtures/floating.ts", import.meta.url))

describe("lint rules", () => {
  it("report a floating Effect, Date.now and setTimeout in src/, and nothing else", async () => {
    const eslint = new ESLint({ ignore: false })
    const [result] = await eslint.lintText(readFileSync(fixture, "utf8"), { filePath: fixture })
    const found = (result?.messages ?? []).filter((m) => m.ruleId !== "@effect/dprint").map((m) =>
      `${m.line} ${m.ruleId}`
    )
    assert.deepStrictEqual(found, [
      "6 local/no-floating-effect",
      "12 no-restricted-properties",
      "14 no-restricted-globals"
    ])
  }, 120_000)
})
