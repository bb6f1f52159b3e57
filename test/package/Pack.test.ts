/**
 * Goal: the published package works for an app that installs it with only its peers. Method: `npm
 * pack` (which builds dist/ first), install the tarball into a fresh directory with effect,
 * @effect/platform and @effect/platform-node (not the CLI's @effect/cli), check that every source
 * map points at a file the package ships, compile a consumer with tsc against the installed types
 * (both entry points), and run it: write, commit, checkpoint, close, reopen and read back on
 * `Storage.layerNode`. The install uses npm's cache first (`--prefer-offline`) and the registry for
 * what the cache lacks. Each phase's time is printed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

const repositoryRoot = path.resolve(import.meta.dirname, "..", "..")
const npm = process.platform === "win32" ? "npm.cmd" : "npm"

const run = (command: string, args: ReadonlyArray<string>, cwd: string) =>
  Effect.async<string, Error>((resume) => {
    const child = execFile(command, [...args], {
      cwd,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, NO_COLOR: "1" }
    }, (error, stdout, stderr) => {
      resume(
        error === null
          ? Effect.succeed(stdout)
          : Effect.fail(new Error(`${command} ${args.join(" ")} failed: ${error.message}\n${stdout}\n${stderr}`))
      )
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** Runs `step` and prints how long it took. */
const timed = <A, E>(name: string, step: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const startedAt = performance.now()
    const result = yield* step
    console.log(`package test: ${name} took ${((performance.now() - startedAt) / 1000).toFixed(1)} s`)
    return result
  })

const consumerSource = `
import { Effect } from "effect"
import { Ids, Storage } from "effect-s3-tier"
import { FaultyObjectStore, MemoryDisk } from "effect-s3-tier/testing"

const [dataDir, storeDir] = process.argv.slice(2) as [string, string]
const file = Ids.fileId("consumer/page")
const open = Storage.layerNode({ dataDir, storeDir, config: { checkpointIntervalMs: 0 } })

const write = Effect.gen(function* () {
  const storage = yield* Storage.Storage
  yield* storage.write(file, 0, new TextEncoder().encode("packed"))
  yield* storage.append(new TextEncoder().encode("packed"))
  yield* storage.commit
  return yield* storage.checkpoint
}).pipe(Effect.provide(open))

const read = Effect.flatMap(Storage.Storage, (storage) => storage.read(file, 0, 6)).pipe(Effect.provide(open))

const program = Effect.gen(function* () {
  const report = yield* write
  const bytes = yield* read
  console.log(JSON.stringify({
    checkpoint: report.checkpoint,
    readBack: new TextDecoder().decode(bytes),
    testing: [typeof MemoryDisk.layer, typeof FaultyObjectStore.layer]
  }))
})

Effect.runPromise(program).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
`

const consumerTsconfig = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    exactOptionalPropertyTypes: true,
    skipLibCheck: true,
    types: ["node"],
    typeRoots: [path.join(repositoryRoot, "node_modules", "@types")],
    outDir: "out"
  },
  files: ["consumer.ts"]
}

/** The `sources` of every source map under `dir` that do not exist. */
const danglingSources = (dir: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(async () => {
    const entries = await fs.readdir(dir, { recursive: true })
    const missing: Array<string> = []
    for (const entry of entries.filter((name) => name.endsWith(".map"))) {
      const mapPath = path.join(dir, entry)
      const map = JSON.parse(await fs.readFile(mapPath, "utf8")) as { readonly sources: ReadonlyArray<string> }
      for (const source of map.sources) {
        const resolved = path.resolve(path.dirname(mapPath), source)
        if (!(await fs.stat(resolved).then(() => true, () => false))) missing.push(`${entry} -> ${source}`)
      }
    }
    return missing
  })

describe("the packed package", () => {
  it.scopedLive("installs with only its peers, and a consumer compiles and runs on it", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "s3-tier-pack-"))),
        (created) => Effect.promise(() => fs.rm(created, { recursive: true, force: true }))
      )
      const packed = yield* timed(
        "npm pack (with the build)",
        run(npm, ["pack", "--json", "--pack-destination", dir], repositoryRoot)
      )
      const tarball = path.join(
        dir,
        (JSON.parse(packed.slice(packed.indexOf("["))) as ReadonlyArray<{ readonly filename: string }>)[0]!.filename
      )
      const consumer = path.join(dir, "consumer")
      yield* Effect.promise(async () => {
        await fs.mkdir(consumer)
        await fs.writeFile(
          path.join(consumer, "package.json"),
          JSON.stringify({ name: "consumer", private: true, type: "module" })
        )
        await fs.writeFile(path.join(consumer, "consumer.ts"), consumerSource)
        await fs.writeFile(path.join(consumer, "tsconfig.json"), JSON.stringify(consumerTsconfig))
      })
      const peers = ["effect@3.22.4", "@effect/platform@0.97.2", "@effect/platform-node@0.108.2"]
      yield* timed(
        "npm install",
        run(npm, ["install", "--prefer-offline", "--no-audit", "--no-fund", tarball, ...peers], consumer)
      )
      const installed = path.join(consumer, "node_modules", "effect-s3-tier")
      const files = yield* Effect.promise(() => fs.readdir(installed))
      assert.includeMembers(files, ["dist", "src", "docs", "examples", "README.md", "package.json"])
      assert.isFalse(
        yield* Effect.promise(() =>
          fs.stat(path.join(consumer, "node_modules", "@effect", "cli")).then(() => true, () => false)
        ),
        "@effect/cli is not installed"
      )
      assert.deepStrictEqual(yield* danglingSources(path.join(installed, "dist")), [])
      yield* timed(
        "tsc",
        run(
          process.execPath,
          [path.join(repositoryRoot, "node_modules", "typescript", "bin", "tsc"), "-p", "."],
          consumer
        )
      )
      const output = yield* timed(
        "the consumer",
        run(process.execPath, ["out/consumer.js", path.join(dir, "data"), path.join(dir, "bucket")], consumer)
      )
      const line = output.split("\n").find((text) => text.startsWith("{"))
      assert.deepStrictEqual(JSON.parse(line ?? "null"), {
        checkpoint: 1,
        readBack: "packed",
        testing: ["object", "function"]
      }, output)
    }), 300_000)
})
