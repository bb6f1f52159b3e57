/**
 * Scenario 1: checkpoint upload throughput. N dirty 1 MiB parts in a Storage (workerCount = the
 * concurrency) are uploaded by one `storage.checkpoint` (through the task queue and the S3 workers),
 * against the same bytes sent at the same concurrency by the bare SDK (a worker pool of PutObject
 * calls: the limit) and by what a user would write (Promise.all over chunks of `concurrency`).
 * Against s3rver (test/support/S3TestServer.ts) and against the file store, whose baseline is bare
 * `fs.promises` writes with the same durability (temp file, fsync, rename).
 *
 * The local disk is MemoryDisk, so the figures measure the queue/worker path and the store, not the
 * local disk. Ours also writes the checkpoint's manifests (a few small objects) within its time.
 */
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3"
import { Effect, Layer } from "effect"
import { fileId } from "../src/domain/Ids.js"
import * as FileObjectStore from "../src/layers/FileObjectStore.js"
import * as MemoryDisk from "../src/layers/MemoryDisk.js"
import * as S3ObjectStore from "../src/layers/S3ObjectStore.js"
import type { ObjectStore } from "../src/services/ObjectStore.js"
import * as S3TestServer from "../test/support/S3TestServer.js"
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

type Method = "ours" | "bare" | "user"

interface Target {
  readonly name: string
  readonly store: Layer.Layer<ObjectStore>
  /** One bare write of `bytes` under `key`. */
  readonly put: (key: string, bytes: Uint8Array) => Promise<void>
  /** Before a bare run (directories), untimed. */
  readonly prepare: (prefix: string) => Promise<void>
}

const runTarget = async (target: Target, parts: ReadonlyArray<Uint8Array>, concurrency: number, repetitions: number) => {
  const figures: Record<Method, Array<number>> = { ours: [], bare: [], user: [] }
  const methods: ReadonlyArray<Method> = ["ours", "bare", "user"]
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
        const pool = method === "bare" ? promisePool : chunkedPromiseAll
        // `parts[index]` exists: index < parts.length.
        const [, ms] = await timedPromise(() => pool(parts.length, concurrency, (index) => target.put(`${prefix}/${index}`, parts[index] as Uint8Array)))
        figures[method].push(totalMiB / (ms / 1000))
      }
    }
  }
  return figures
}

const s3Target = (info: S3TestServer.S3TestServerInfo, client: S3Client): Target => ({
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
  prepare: async () => {}
})

const fileTarget = (root: string): Target => ({
  name: "filesystem",
  store: FileObjectStore.layerNode({ root, create: true }),
  // The same durability as the file store: exclusive temp file, write, fsync, rename.
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
  },
  prepare: async (prefix) => {
    await fsp.mkdir(path.join(root, prefix), { recursive: true })
  }
})

export const run = async (options: BenchOptions): Promise<ScenarioResult> => {
  const started = now()
  const partCount = options.quick ? 8 : 64
  const concurrency = 8
  const repetitions = options.quick ? 1 : 5
  const parts = Array.from({ length: partCount }, (_, index) => payload(index + 1, MiB))
  const rows: Array<Row> = []
  const raw: Record<string, Record<Method, Array<number>>> = {}

  const server = await S3TestServer.start({ bucket: "bench-bucket" })
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
      const baselineName = target.name === "s3rver" ? "bare SDK PutObject pool" : "bare fs writeFile+fsync+rename pool"
      rows.push({
        case: `${target.name}: ours vs ${baselineName} (the limit)`,
        ours: round(ours, 1),
        baseline: round(bare, 1),
        unit: "MiB/s",
        ratio: round(ours / bare, 3),
        goal: "ratio ≥ 0.9",
        met: ours / bare >= 0.9
      })
      rows.push({
        case: `${target.name}: ours vs Promise.all over chunks of ${concurrency} (what a user writes)`,
        ours: round(ours, 1),
        baseline: round(user, 1),
        unit: "MiB/s",
        ratio: round(ours / user, 3),
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
    method: `${partCount} dirty 1 MiB parts, concurrency ${concurrency} (workerCount = pool size), median of ${repetitions} repetition(s) after a warm-up, order rotated per repetition. Local disk: MemoryDisk.`,
    ratioMeaning: "ours / baseline (higher is better)",
    oursLabel: "ours (MiB/s)",
    baselineLabel: "baseline (MiB/s)",
    rows,
    notes: [
      "Ours is timed from `storage.checkpoint` to its report: it also writes the checkpoint's manifests (a few small objects), which the baselines do not.",
      "@aws-sdk/lib-storage is not a dependency of the project, so it is not measured; its `Upload` is a multipart uploader for one large body and would not apply to 1 MiB objects anyway.",
      "s3rver writes every object to its own temp directory and is single-threaded JavaScript on the same machine: it, not the client, is usually the bottleneck."
    ],
    raw: { partCount, concurrency, repetitions, mibPerSecond: raw },
    durationMs: now() - started
  }
}
