/**
 * A trial, not a scenario of `npm run bench`: how close to the file store's bare write pool (the
 * limit of scenario 1) a pool can stay when it does, per part, only the work a content-checked
 * checkpoint adds to the write. Run it with `npx tsx bench/file-ceiling.ts [parts] [repetitions]`
 * (default 128 parts of 1 MiB, 9 repetitions, concurrency 8); it prints, per method, the median
 * throughput, the median of the per-repetition ratios to the bare pool and the CPU time per run.
 *
 * Methods, each the bare pool (exclusive temp file, write, fsync, rename, fsync of the directory)
 * plus: `copy` the copy out of the local disk into a reused buffer; `sha256` that copy and its
 * SHA-256 on the pool's own thread; `sha256-worker` the SHA-256 on the library's Hasher (one worker
 * thread, the buffer in shared memory, as ours); `crc32` a CRC-32 (node:zlib) in the SHA-256's place.
 * BENCHMARKS.md cites its figures where the same-work pool of scenario 1 misses the goal.
 *
 * Replaces: nothing in OrioleDB; it bounds what any implementation of the checkpoint can reach here.
 */
import { Effect, Exit, Scope } from "effect"
import { createHash } from "node:crypto"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as zlib from "node:zlib"
import * as Hasher from "../src/services/Hasher.js"
import { median, MiB, payload, promisePool, round } from "./common.js"
import { fileTarget, pairedRatio } from "./throughput.js"

const methods = ["bare", "copy", "sha256", "sha256-worker", "crc32"] as const
type Method = (typeof methods)[number]

const positiveInteger = (text: string | undefined, fallback: number, name: string): number => {
  if (text === undefined) return fallback
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new Error(`${name} must be a positive integer, got ${JSON.stringify(text)}`)
  }
  return value
}

const main = async () => {
  const partCount = positiveInteger(process.argv[2], 128, "parts")
  const repetitions = positiveInteger(process.argv[3], 9, "repetitions")
  const concurrency = 8
  const parts = Array.from({ length: partCount }, (_, index) => payload(index + 1, MiB))
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), "bench-ceiling-"))
  const target = fileTarget(root)
  const hasherScope = Effect.runSync(Scope.make())
  const figures: Record<Method, Array<number>> = { bare: [], copy: [], sha256: [], "sha256-worker": [], crc32: [] }
  const cpuMs: Record<Method, Array<number>> = { bare: [], copy: [], sha256: [], "sha256-worker": [], crc32: [] }
  try {
    // Inside the try, so that the temp directory is removed if the Hasher cannot start.
    const hasher = Effect.runSync(Scope.extend(Hasher.makeWith(1), hasherScope))
    // Repetition -1 is the warm-up, not counted; the order rotates per repetition.
    for (let repetition = -1; repetition < repetitions; repetition++) {
      for (let turn = 0; turn < methods.length; turn++) {
        const method = methods[(repetition + 1 + turn) % methods.length] as Method
        const prefix = `${method}-${repetition + 1}`
        const keys = parts.map((_, index) =>
          `${prefix}/data/0000000000000001/bench%2Ftable/${String(index).padStart(10, "0")}`
        )
        const buffers = Array.from({ length: concurrency }, () => hasher.allocate(MiB + 1))
        const cpuStart = process.cpuUsage()
        const start = performance.now()
        await target.prepare(keys)
        await promisePool(partCount, concurrency, async (index) => {
          // `parts[index]` and `keys[index]` exist: index < partCount.
          const bytes = parts[index] as Uint8Array
          const key = keys[index] as string
          if (method === "bare") return target.put(key, bytes)
          const buffer = buffers.pop() ?? hasher.allocate(MiB + 1)
          try {
            buffer.set(bytes)
            const body = buffer.subarray(0, bytes.length)
            const check = method === "sha256"
              ? createHash("sha256").update(body).digest("hex")
              : method === "sha256-worker"
              ? await Effect.runPromise(hasher.sha256Hex(body))
              : method === "crc32"
              ? zlib.crc32(body).toString(16)
              : ""
            await target.put(`${key}-${check}`, body)
          } finally {
            buffers.push(buffer)
          }
        })
        const ms = performance.now() - start
        const used = process.cpuUsage(cpuStart)
        if (repetition >= 0) {
          figures[method].push(partCount / (ms / 1000))
          cpuMs[method].push((used.user + used.system) / 1000)
        }
        await target.cleanup(prefix)
      }
    }
  } finally {
    await Effect.runPromise(Scope.close(hasherScope, Exit.void))
    await fsp.rm(root, { recursive: true, force: true })
  }
  console.log(
    `${partCount} parts of 1 MiB, concurrency ${concurrency}, ${repetitions} repetitions, ${os.availableParallelism()} cores`
  )
  for (const method of methods) {
    console.log(
      `${method.padEnd(14)} ${String(round(median(figures[method]), 0)).padStart(6)} MiB/s  ratio ${
        round(pairedRatio(figures[method], figures.bare), 3).toFixed(3)
      }  CPU ${round(median(cpuMs[method]), 0)} ms/run`
    )
  }
}

// The program's edge: the only place this trial runs its promise.
main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error))
  process.exitCode = 1
})
