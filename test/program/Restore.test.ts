/**
 * Goal: `restore` as a user runs it against the embedded filesystem store. It restores the latest
 * state, a checkpoint, an LSN and a time of a bucket a `run` left into a fresh directory, prints
 * what it restored (and the same as one JSON object with --json), holds a reader lease while it
 * reads and leaves every object of the bucket as it was; bad input (no --dir, two targets, a
 * malformed value, a directory that is not empty, a target the bucket does not have) is one line
 * on stderr, exit 2, and writes nothing: no directory, no object. Method: one short run builds the
 * bucket; each restore is a spawned CLI.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { hasStackTrace, parseReport, quick, runCli, temporaryDirectory } from "./Cli.js"

interface RestoreJson {
  readonly command: string
  readonly target: string
  readonly checkpoint: number
  readonly walFromLsn: number
  readonly walToLsn: number
  readonly records: number
  readonly parts: number
  readonly partBytes: number
  readonly leaseId: string
  readonly directory: string
}

/** Every object file of a filesystem store (its `.tmp` aside), with size and modification time. */
const objects = (root: string): ReadonlyArray<string> =>
  fs.readdirSync(root, { recursive: true }).map(String).filter((name) =>
    !name.startsWith(".tmp") && fs.statSync(path.join(root, name)).isFile()
  ).sort().map((name) => {
    const info = fs.statSync(path.join(root, name))
    return `${name} ${info.size} ${info.mtimeMs}`
  })

const assertRefused = (result: { code: number | null; stdout: string; stderr: string }, fragment: string) => {
  assert.strictEqual(result.code, 2, result.stderr)
  const lines = result.stderr.trim().split("\n")
  assert.strictEqual(lines.length, 1, result.stderr)
  assert.include(lines[0] ?? "", fragment)
  assert.isFalse(hasStackTrace(result.stderr))
  assert.strictEqual(result.stdout, "")
}

describe("CLI restore (filesystem store)", () => {
  it.scopedLive(
    "restores the latest state, a checkpoint, an LSN and a time; refuses bad input writing nothing",
    () =>
      Effect.gen(function*() {
        const parent = yield* temporaryDirectory("es3t-restore-")
        const dataDirectory = path.join(parent, "data")
        const store = `${dataDirectory}-bucket`
        const ran = yield* runCli([
          "run",
          ...quick({ duration: "2500ms" }),
          "--wal-segment",
          "64KiB",
          "--dir",
          dataDirectory,
          "--json"
        ])
        assert.strictEqual(ran.code, 0, ran.stderr)
        const run = parseReport(ran)
        const endLsn = run.wal.endLsn ?? 0
        assert.isAtLeast(run.checkpoints.last, 2)
        const before = objects(store)
        const restore = (name: string, extra: ReadonlyArray<string>) =>
          runCli(["restore", "--store-dir", store, "--dir", path.join(parent, name), ...extra])

        const latest = yield* restore("latest", ["--json"])
        assert.strictEqual(latest.code, 0, latest.stderr)
        const latestReport = parseReport<RestoreJson>(latest)
        assert.strictEqual(latestReport.command, "restore")
        assert.strictEqual(latestReport.checkpoint, run.checkpoints.last)
        assert.strictEqual(latestReport.walToLsn, run.wal.endLsn)
        assert.strictEqual(latestReport.parts, 4) // 2 files of 2 MiB, 1 MiB parts
        // Every part of the checkpoint is in the directory, whole.
        const partFiles = fs.readdirSync(path.join(parent, "latest", "parts"), { recursive: true }).map(String).filter((
          name
        ) => fs.statSync(path.join(parent, "latest", "parts", name)).isFile())
        assert.strictEqual(partFiles.length, 4)
        assert.strictEqual(
          partFiles.reduce((sum, name) => sum + fs.statSync(path.join(parent, "latest", "parts", name)).size, 0),
          latestReport.partBytes
        )

        const first = yield* restore("first", [])
        assert.strictEqual(first.code, 0, first.stderr)
        assert.match(
          first.stdout,
          /^restore: the latest state of file:\/\/.* checkpoint \d+ \(.*\), 4 parts in 2 files .* \+ WAL from LSN \d+ to \d+: \d+ records/
        )

        const checkpoint = parseReport<RestoreJson>(yield* restore("checkpoint", ["--checkpoint", "1", "--json"]))
        assert.deepStrictEqual([checkpoint.checkpoint, checkpoint.records], [1, 0])
        const middle = Math.floor(endLsn / 2)
        const atLsn = parseReport<RestoreJson>(yield* restore("lsn", ["--lsn", String(middle), "--json"]))
        assert.isAtMost(atLsn.walToLsn, middle)
        assert.isAtMost(atLsn.walFromLsn, middle)
        const atTime = parseReport<RestoreJson>(yield* restore("time", ["--time", new Date().toISOString(), "--json"]))
        assert.strictEqual(atTime.checkpoint, run.checkpoints.last)
        // The bucket is as it was: every object, and no lease left behind.
        assert.deepStrictEqual(objects(store), before)

        const refusals: ReadonlyArray<readonly [string, ReadonlyArray<string>, string]> = [
          ["two-targets", ["--checkpoint", "1", "--lsn", "5"], "one target"],
          ["bad-time", ["--time", "yesterday"], "--time"],
          ["local-time", ["--time", "2026-12-06T10:00:00"], "--time"],
          ["zero-checkpoint", ["--checkpoint", "0"], "--checkpoint"],
          ["bad-lsn", ["--lsn", "-3"], "--lsn"],
          ["missing-checkpoint", ["--checkpoint", "999"], "checkpoint 999 does not exist"],
          ["too-early", ["--time", "2001-01-01T00:00:00Z"], "is outside the retention window"],
          ["beyond", ["--lsn", String(endLsn + 1_000_000)], "beyond the archived WAL's end"]
        ]
        yield* Effect.forEach(refusals, ([name, extra, fragment]) =>
          Effect.map(restore(name, extra), (result) => {
            assertRefused(result, fragment)
            assert.isFalse(fs.existsSync(path.join(parent, name)), `${name}: nothing written`)
          }), { concurrency: 3, discard: true })
        assertRefused(yield* restore("latest", []), "is not empty")
        assertRefused(yield* runCli(["restore", "--store-dir", store]), "--dir")
        assert.deepStrictEqual(objects(store), before)
      }),
    { timeout: 240_000 }
  )
})
