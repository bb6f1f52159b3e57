/**
 * Scenario 1: checkpoint upload throughput. N dirty 1 MiB parts in a Storage (workerCount = the
 * concurrency) are uploaded by one `storage.checkpoint` (through the task queue and the S3 workers),
 * against the same bytes sent at the same concurrency by the bare SDK (a worker pool of PutObject
 * calls: the limit) and by what a user would write (Promise.all over chunks of `concurrency`).
 * Against s3rver (test/support/S3TestServer.ts, in its own process: bench/s3-server-process.ts) and
 * against the file store, whose baseline is bare `fs.promises` writes with the same durability
 * (temp file, fsync, rename, fsync of the directory). For the file store a third baseline,
 * "hashed", is the bare pool plus the SHA-256 of each part that the manifest requires: the limit for
 * any content-verified checkpoint. (Against S3 the bare SDK pool hashes each body already, to sign
 * it; ours hashes once too and hands the hash to the SDK, so there the bare pool is that limit.)
 *
 * The local disk is MemoryDisk, so the figures measure the queue/worker path and the store, not the
 * local disk. Ours also writes the checkpoint's manifests (a few small objects) within its time.
 */
import { createHash } from "node:crypto"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3"
import { Effect, Layer } from "effect"
import { fileId } from "../src/domain/Ids.js"
import * as FileObjectStore from "../src/layers/FileObjectStore.js"
import * as MemoryDisk from "../src/layers/MemoryDisk.js"
import * as S3ObjectStore from "../src/layers/S3ObjectStore.js"
import type { ObjectStore } from "../src/services/ObjectStore.js"
import {
  type BenchOptions,
  chunkedPromiseAll,
  median,
  MiB,
  now,
  openStorage,
  payload,
  promisePool,
  quiet,
  type S3ServerProcessInfo,
  startS3ServerProcess,
  round,
  type Row,
  type ScenarioResult,
  timedPromise
} from "./common.js"

const file = fileId("bench/table")

/** Ours: N dirty parts, then one timed checkpoint. Returns ms and bytes uploaded. */
const oursOnce = (store: Layer.Layer<ObjectStore>, prefix: string, parts: ReadonlyArray<Uint8Array>, concurrency: number) =>
  quiet(
    Effect.scoped(
      Effect.gen(function* () {
        const storage = yield* openStorage(Layer.merge(store, MemoryDisk.layer), {
          prefix,
          partSizeBytes: MiB,
          workerCount: concurrency,
          queueCapacity: 1024,
          requestTimeoutMs: 60_000,
          checkpointIntervalMs: 0,
          checkpointDeadlineMs: 300_000,
          localBytesMax: 4 * 1024 * MiB,
          evictionIntervalMs: 3_600_000
        })
        for (const [index, bytes] of parts.entries()) yield* storage.write(file, index * MiB, bytes)
        const start = now()
        const report = yield* storage.checkpoint
        const ms = now() - start
        if (report.partsUploaded !== parts.length) {
          return yield* Effect.dieMessage(`checkpoint uploaded ${report.partsUploaded} parts, expected ${parts.length}`)
        }
        return { ms, bytes: report.bytesUploaded }
      })
    )
  )

type Method = "ours" | "bare" | "user" | "hashed"

interface Target {
  readonly name: string
  readonly store: Layer.Layer<ObjectStore>
  /** One bare write of `bytes` under `key`. */
  readonly put: (key: string, bytes: Uint8Array) => Promise<void>
  /** Before a bare run (directories), untimed. */
  readonly prepare: (prefix: string) => Promise<void>
  /** Whether a bare put hashes its body already (the SDK's SigV4 signing does). */
  readonly hashesBody: boolean
  /** After every run, untimed: removes what it wrote, so the store does not grow over the scenario. */
  readonly cleanup: (prefix: string) => Promise<void>
}

const runTarget = async (target: Target, parts: ReadonlyArray<Uint8Array>, concurrency: number, repetitions: number) => {
  const figures: Record<Method, Array<number>> = { ours: [], bare: [], user: [], hashed: [] }
  const methods: ReadonlyArray<Method> = target.hashesBody ? ["ours", "bare", "user"] : ["ours", "bare", "user", "hashed"]
  const totalMiB = parts.length
  // Warm-up (connections, JIT), not counted.
  const warm = parts.slice(0, Math.min(4, parts.length))
  await Effect.runPromise(oursOnce(target.store, "warm-ours", warm, concurrency))
  await target.prepare("warm-bare")
  await promisePool(warm.length, concurrency, (index) => target.put(`warm-bare/${index}`, warm[index] as Uint8Array))
  for (let repetition = 0; repetition < repetitions; repetition++) {
    // Rotate the order, so no method always runs first (or last) on a warming or cooling machine.
    for (let turn = 0; turn < methods.length; turn++) {
      const method = methods[(repetition + turn) % methods.length] as Method
      const prefix = `${method}-${repetition}`
      if (method === "ours") {
        const result = await Effect.runPromise(oursOnce(target.store, prefix, parts, concurrency))
        figures.ours.push(totalMiB / (result.ms / 1000))
      } else {
        await target.prepare(prefix)
        const pool = method === "user" ? chunkedPromiseAll : promisePool
        const [, ms] = await timedPromise(() =>
          pool(parts.length, concurrency, (index) => {
            // `parts[index]` exists: index < parts.length.
            const bytes = parts[index] as Uint8Array
            if (method === "hashed") createHash("sha256").update(bytes).digest("hex")
            return target.put(`${prefix}/${index}`, bytes)
          }))
        figures[method].push(totalMiB / (ms / 1000))
      }
      await target.cleanup(prefix)
    }
  }
  return figures
}

/** The median over repetitions of ours / baseline within the same repetition (paired, so that slow
 * phases of the machine, which hit both members of a pair, cancel out). */
const pairedRatio = (ours: ReadonlyArray<number>, baseline: ReadonlyArray<number>): number =>
  median(ours.map((value, index) => value / (baseline[index] ?? Number.NaN)))

const s3Target = (info: S3ServerProcessInfo, client: S3Client): Target => ({
  name: "s3rver",
  store: S3ObjectStore.layer({
    bucket: info.bucket,
    endpoint: info.endpoint,
    region: info.region,
    forcePathStyle: true,
    credentials: info.credentials,
    requestTimeoutMs: 60_000
  }),
  put: async (key, bytes) => {
    await client.send(new PutObjectCommand({ Bucket: info.bucket, Key: key, Body: bytes }))
  },
  prepare: async () => {},
  hashesBody: true,
  cleanup: async (prefix) => {
    let token: string | undefined
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: info.bucket, Prefix: `${prefix}/`, ContinuationToken: token }))
      const keys = (page.Contents ?? []).flatMap((object) => (object.Key === undefined ? [] : [object.Key]))
      await promisePool(keys.length, 8, (index) => client.send(new DeleteObjectCommand({ Bucket: info.bucket, Key: keys[index] })))
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined
    } while (token !== undefined)
  }
})

const fileTarget = (root: string): Target => ({
  name: "filesystem",
  store: FileObjectStore.layerNode({ root, create: true }),
  // The same durability as the file store: exclusive temp file, write, fsync, rename, fsync of the
  // directory (without it a crash may forget the rename).
  put: async (key, bytes) => {
    const target = path.join(root, key)
    const temp = `${target}.tmp`
    const handle = await fsp.open(temp, "wx")
    try {
      await handle.writeFile(bytes)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await fsp.rename(temp, target)
    const directory = await fsp.open(path.dirname(target), "r")
    try {
      await directory.sync()
    } finally {
      await directory.close()
    }
  },
  prepare: async (prefix) => {
    await fsp.mkdir(path.join(root, prefix), { recursive: true })
  },
  hashesBody: false,
  cleanup: async (prefix) => {
    await fsp.rm(path.join(root, prefix), { recursive: true, force: true })
  }
})

export const run = async (options: BenchOptions): Promise<ScenarioResult> => {
  const started = now()
  const partCount = options.quick ? 8 : 64
  const concurrency = 8
  const repetitions = options.quick ? 1 : 7
  const parts = Array.from({ length: partCount }, (_, index) => payload(index + 1, MiB))
  const rows: Array<Row> = []
  const raw: Record<string, Record<Method, Array<number>>> = {}

  const server = await startS3ServerProcess("bench-bucket")
  const client = new S3Client({
    endpoint: server.info.endpoint,
    region: server.info.region,
    forcePathStyle: true,
    credentials: { ...server.info.credentials },
    maxAttempts: 1,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED"
  })
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), "bench-files-"))
  try {
    for (const target of [s3Target(server.info, client), fileTarget(root)]) {
      const figures = await runTarget(target, parts, concurrency, repetitions)
      raw[target.name] = figures
      const ours = median(figures.ours)
      const bare = median(figures.bare)
      const user = median(figures.user)
      const hashed = median(figures.hashed)
      const baselineName = target.name === "s3rver" ? "bare SDK PutObject pool" : "bare fs write+fsync+rename+fsync(dir) pool"
      rows.push({
        case: `${target.name}: ours vs ${baselineName} (the limit)`,
        ours: round(ours, 1),
        baseline: round(bare, 1),
        unit: "MiB/s",
        ratio: round(pairedRatio(figures.ours, figures.bare), 3),
        goal: "ratio ≥ 0.9",
        met: pairedRatio(figures.ours, figures.bare) >= 0.9
      })
      if (!target.hashesBody) {
        rows.push({
          case: `${target.name}: ours vs the bare pool that also hashes each part (the limit with the manifest's SHA-256)`,
          ours: round(ours, 1),
          baseline: round(hashed, 1),
          unit: "MiB/s",
          ratio: round(pairedRatio(figures.ours, figures.hashed), 3),
          goal: "reported",
          met: undefined
        })
      }
      rows.push({
        case: `${target.name}: ours vs Promise.all over chunks of ${concurrency} (what a user writes)`,
        ours: round(ours, 1),
        baseline: round(user, 1),
        unit: "MiB/s",
        ratio: round(pairedRatio(figures.ours, figures.user), 3),
        goal: "reported",
        met: undefined
      })
    }
  } finally {
    client.destroy()
    await server.stop()
    await fsp.rm(root, { recursive: true, force: true })
  }
  return {
    id: "throughput",
    title: "1. Checkpoint upload throughput",
    method: `${partCount} dirty 1 MiB parts, concurrency ${concurrency} (workerCount = pool size), median of ${repetitions} repetition(s) after a warm-up, order rotated per repetition; the ratio is the median of the per-repetition ratios; every run's objects are deleted (untimed) before the next. Local disk: MemoryDisk.`,
    ratioMeaning: "ours / baseline (higher is better)",
    oursLabel: "ours (MiB/s)",
    baselineLabel: "baseline (MiB/s)",
    rows,
    notes: [
      "Ours is timed from `storage.checkpoint` to its report. Per part it also reads the part from the local disk and computes its SHA-256 (the manifest's content check), and it writes the checkpoint's manifests (a few small objects) and checks the bucket lock; the bare baselines do none of this (but the bare SDK hashes each body to sign it, which ours lets the SDK skip by sending its own hash). The file store's \"hashed\" row shows how much of its gap the SHA-256 alone explains: with the bucket on a local disk whose writes land in the page cache, hashing 1 MiB costs about as much as storing it, so 0.9 of the bare file pool is out of reach for any checkpoint that records a content hash.",
      "Where the rest of the gap goes (CPU profiles of the timed checkpoint): allocating a fresh 1 MiB buffer per part read cost more in garbage collection than the copy itself (about 15% of the s3rver throughput), so uploads now read parts into reused buffers (PartTable, at most workerCount kept); the task handles, part-state transactions, the extra read of each part and the manifests cost the rest.",
      "@aws-sdk/lib-storage is not a dependency of the project, so it is not measured; its `Upload` is a multipart uploader for one large body and would not apply to 1 MiB objects anyway.",
      "s3rver runs in its own process (as a real endpoint never shares the client's event loop), but on the same 2 cores: it writes every object to its own temp directory and is single-threaded JavaScript, so it, not the client, is usually the bottleneck.",
      "The file store's baseline has the same durability as the store: temp file, fsync, rename, fsync of the directory. On this machine's disk the absolute figures swing by 2× between runs; the order of the methods is rotated per repetition so that the swings fall on all of them."
    ],
    raw: { partCount, concurrency, repetitions, mibPerSecond: raw },
    durationMs: now() - started
  }
}
