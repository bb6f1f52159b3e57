/**
 * Goal: the documentation names only what exists. Every repository path the docs mention is a file
 * here, every relative link resolves, and every test the table of the original's waits
 * (docs/ARCHITECTURE.md) gives as proof is a test of that name in that file: a moved file or a
 * renamed test fails here instead of leaving the docs quietly wrong.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "../..")
const read = (file: string): string => fs.readFileSync(path.join(root, file), "utf8")
const exists = (file: string): boolean => fs.existsSync(path.join(root, file))

/** The docs written for this repository (docs/ORIGINAL.md names OrioleDB's files, not ours). */
const docs = [
  "README.md",
  "BENCHMARKS.md",
  "CONTRIBUTING.md",
  "test/sim/README.md",
  ...fs.readdirSync(path.join(root, "docs")).filter((name) => name.endsWith(".md") && name !== "ORIGINAL.md").map((
    name
  ) => `docs/${name}`)
].filter(exists)

/** Paths of this repository in running text: src/…, test/…, bench/…, scripts/…, examples/… */
const repositoryPaths = (text: string): Array<string> =>
  Array.from(
    text.matchAll(/(?<![\w/.-])((?:src|test|bench|scripts|examples)\/[A-Za-z0-9_./-]+\.(?:ts|md|sh|json))\b/g),
    (match) => match[1]!
  )

/** Relative targets of Markdown links, without their #anchor. */
const relativeLinks = (text: string): Array<string> =>
  Array.from(text.matchAll(/\]\(([^)\s]+)\)/g), (match) => match[1]!)
    .filter((target) => !/^[a-z]+:/.test(target) && !target.startsWith("#"))
    .map((target) => target.split("#")[0]!)

interface Proof {
  readonly file: string
  readonly name: string
}

/** Per row of the table of waits, its proofs: `file: "test name"; "test name"` in its last column. */
const waitTableProofs = (architecture: string): Array<{ readonly wait: string; readonly proofs: Array<Proof> }> => {
  const start = architecture.indexOf("## Every wait of the original")
  assert.isAtLeast(start, 0, "docs/ARCHITECTURE.md has no table of the original's waits")
  const lines = architecture.slice(start).split("\n")
  const header = lines.findIndex((line) => line.startsWith("| Wait in"))
  const end = lines.findIndex((line, index) => index > header && !line.startsWith("|"))
  const rows = lines.slice(header + 2, end === -1 ? undefined : end)
  return rows.map((row) => {
    const cells = row.split(" | ")
    const proofCell = cells[cells.length - 1] ?? ""
    const proofs = Array.from(
      proofCell.matchAll(/(test\/[\w/.-]+\.test\.ts): ((?:"[^"]+"(?:; )?)+)/g),
      (match) => Array.from(match[2]!.matchAll(/"([^"]+)"/g), (name): Proof => ({ file: match[1]!, name: name[1]! }))
    ).flat()
    return { wait: (cells[0] ?? "").slice(2, 60), proofs }
  })
}

describe("the docs", () => {
  it("mention only repository files that exist", () => {
    const missing = docs.flatMap((doc) =>
      repositoryPaths(read(doc)).filter((file) => !exists(file)).map((file) => `${doc}: ${file}`)
    )
    assert.deepStrictEqual(missing, [])
  })

  it("link only to files that exist", () => {
    const missing = [...docs, "docs/ORIGINAL.md"].flatMap((doc) =>
      relativeLinks(read(doc))
        .filter((target) => target !== "" && !fs.existsSync(path.resolve(path.dirname(path.join(root, doc)), target)))
        .map((target) => `${doc}: ${target}`)
    )
    assert.deepStrictEqual(missing, [])
  })

  it("prove each replaced wait of the original with tests that exist under those names", () => {
    const rows = waitTableProofs(read("docs/ARCHITECTURE.md"))
    assert.isAtLeast(rows.length, 11)
    assert.deepStrictEqual(
      rows.filter((row) => row.proofs.length === 0).map((row) => row.wait),
      [],
      "rows that name no test"
    )
    const missing = rows.flatMap((row) => row.proofs).filter(({ file, name }) =>
      !exists(file) || !read(file).includes(JSON.stringify(name))
    )
    assert.deepStrictEqual(missing, [])
  })
})
