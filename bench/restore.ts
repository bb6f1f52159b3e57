/**
 * Scenario 7: eager restore throughput. A bucket holds one checkpoint of N 1 MiB parts (written
 * once, untimed, by a Storage); ours opens it read-only into a fresh local disk (Restore.open,
 * untimed: the lease, the manifests) and loads every part at once (`prefetch`, timed: per part one
 * GET through the task queue and a worker, the SHA-256 content check against the manifest on a
 * Hasher thread, the write into the local disk). Baselines at the same concurrency over the same
 * keys: the bare client's pool (GetObject, the body read to bytes; or a bare `fs.promises.readFile`
 * pool on the file store), and the same pool doing the per-part work a content-checked restore
 * must do (the SHA-256 on a Hasher thread). Against s3rver, the fast endpoint and the file store, or
 * a given endpoint (`--endpoint`). Local disk: MemoryDisk.
 */
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3"
import { Chunk, Effect, Exit, Layer, Scope, Stream } from "effect"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileId } from "../src/domain/Ids.js"
import * as FileObjectStore from "../src/layers/FileObjectStore.js"
import * as MemoryDisk from "../src/layers/MemoryDisk.js"
import * as Restore from "../src/layers/Restore.js"
import * as Hasher from "../src/services/Hasher.js"
import { ObjectStore } from "../src/services/ObjectStore.js"
import * as StorageConfig from "../src/services/StorageConfig.js"
import {
  type BenchOptions,
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
  startS3ServerProcess
} from "./common.js"
import { benchSettings, pairedRatio, s3Client, type S3Connection, s3Store } from "./throughput.js"

const file = fileId("bench/restored")

interface RestoreTarget {
  readonly name: string
  readonly store: Layer.Layer<ObjectStore>
  /** Where the checkpoint is written: "" on a store of its own, a unique prefix on a given bucket. */
  readonly keyPrefix: string
  /** One bare read of a whole object; returns its bytes. */
  readonly get: (key: string) => Promise<Uint8Array>
  /** Removes everything under the prefix (untimed, at the end). */
  readonly cleanup: (prefix: string) => Promise<void>
}

const s3RestoreTarget = (name: string, info: S3Connection, client: S3Client, keyPrefix: string): RestoreTarget => ({
  name,
  keyPrefix,
  store: s3Store(info, keyPrefix),
  get: async (key) => {
    const output = await client.send(new GetObjectCommand({ Bucket: info.bucket, Key: key }))
    if (output.Body === undefined) throw new Error(`GetObject ${key}: no body`)
    return output.Body.transformToByteArray()
  },
  cleanup: (prefix) =>
    Effect.runPromise(
      deleteAll(prefix).pipe(Effect.provide(s3Store(info, "", false)))
    )
})

const fileRestoreTarget = (root: string): RestoreTarget => ({
  name: "filesystem",
  keyPrefix: "",
  store: FileObjectStore.layerNode({ root, create: true }),
  // The store's own file for the key (its layout encodes each segment of the key).
  get: async (key) => {
    const mapped = FileObjectStore.keyToSegments(key)
    if (!("segments" in mapped)) throw new Error(`${key}: ${mapped.problem}`)
    return new Uint8Array(await fsp.readFile(path.join(root, ...mapped.segments)))
  },
  cleanup: async (prefix) => fsp.rm(path.join(root, prefix), { recursive: true, force: true })
})

/** Deletes every object under `prefix` through the library's store. */
const deleteAll = (prefix: string) =>
  Effect.gen(function*() {
    const store = yield* ObjectStore
    const keys = Chunk.toReadonlyArray(yield* Stream.runCollect(store.list(prefix))).map((info) => info.key)
    yield* Effect.forEach(keys, (key) => store.delete(key), { concurrency: 8, discard: true })
  })

/** Writes one checkpoint of `parts` into the store (untimed); returns the part objects' keys. */
const writeBucket = (target: RestoreTarget, prefix: string, parts: ReadonlyArray<Uint8Array>, concurrency: number) =>
  quiet(Effect.scoped(
    Effect.gen(function*() {
      const storage = yield* openStorage(
        Layer.merge(target.store, MemoryDisk.layer),
        benchSettings(prefix, concurrency)
      )
      for (const [index, bytes] of parts.entries()) yield* storage.write(file, index * MiB, bytes)
      yield* storage.checkpoint
      const store = yield* ObjectStore
      return Chunk.toReadonlyArray(yield* Stream.runCollect(store.list(`${prefix}/data/`))).map((info) => info.key)
    }).pipe(Effect.provide(target.store))
  ))

/** One timed eager restore into a fresh local disk: ms from `prefetch` to its end. */
const oursOnce = (target: RestoreTarget, prefix: string, concurrency: number, partCount: number) =>
  quiet(Effect.scoped(
    Effect.gen(function*() {
      const restored = yield* Restore.open({ holder: "bench" })
      const start = now()
      const loaded = yield* restored.prefetch(concurrency)
      const ms = now() - start
      if (loaded !== partCount) return yield* Effect.dieMessage(`restore loaded ${loaded} parts, expected ${partCount}`)
      return ms
    }).pipe(
      Effect.provide(
        Layer.mergeAll(target.store, MemoryDisk.layer, StorageConfig.layer(benchSettings(prefix, concurrency)))
      )
    )
  ))

type Method = "ours" | "bare" | "sameWork"

const runTarget = async (
  target: RestoreTarget,
  parts: ReadonlyArray<Uint8Array>,
  concurrency: number,
  repetitions: number
) => {
  const prefix = `${target.keyPrefix}restore`
  const keys = await Effect.runPromise(writeBucket(target, prefix, parts, concurrency))
  if (keys.length !== parts.length) {
    throw new Error(`the bucket holds ${keys.length} part objects, expected ${parts.length}`)
  }
  const figures: Record<Method, Array<number>> = { ours: [], bare: [], sameWork: [] }
  const hasherScope = Effect.runSync(Scope.make())
  try {
    const hasher = Effect.runSync(Scope.extend(Hasher.makeWith(1), hasherScope))
    // Warm-up (connections, JIT), not counted.
    await Effect.runPromise(oursOnce(target, prefix, concurrency, parts.length))
    await promisePool(keys.length, concurrency, (index) => target.get(keys[index] as string))
    // The same-work pool's buffers in shared memory, one per concurrent read (as ours keeps).
    const buffers = Array.from({ length: concurrency }, () => hasher.allocate(MiB + 1))
    const methods: ReadonlyArray<Method> = ["ours", "bare", "sameWork"]
    for (let repetition = 0; repetition < repetitions; repetition++) {
      for (let turn = 0; turn < methods.length; turn++) {
        const method = methods[(repetition + turn) % methods.length] as Method
        let ms: number
        if (method === "ours") ms = await Effect.runPromise(oursOnce(target, prefix, concurrency, parts.length))
        else {
          const start = now()
          await promisePool(keys.length, concurrency, async (index) => {
            const bytes = await target.get(keys[index] as string)
            // A content-checked restore hashes what it read (on the Hasher's thread, as ours).
            if (method === "sameWork") {
              const buffer = buffers.pop() ?? hasher.allocate(MiB + 1)
              try {
                buffer.set(bytes)
                await Effect.runPromise(hasher.sha256Hex(buffer.subarray(0, bytes.length)))
              } finally {
                buffers.push(buffer)
              }
            }
          })
          ms = now() - start
        }
        figures[method].push(parts.length / (ms / 1000))
      }
    }
  } finally {
    await Effect.runPromise(Scope.close(hasherScope, Exit.void))
    await target.cleanup(target.keyPrefix === "" ? prefix : target.keyPrefix.replace(/\/$/, ""))
  }
  return figures
}

export const run = async (options: BenchOptions): Promise<ScenarioResult> => {
  const started = now()
  const partCount = options.quick ? 8 : 256
  const concurrency = 8
  const repetitions = options.quick ? 1 : 7
  const parts = Array.from({ length: partCount }, (_, index) => payload(index + 7, MiB))
  const given = options.endpoint
  const servers = given === undefined
    ? [await startS3ServerProcess("bench-bucket", "s3rver"), await startS3ServerProcess("bench-bucket", "fast")]
    : []
  const connections: ReadonlyArray<readonly [string, S3Connection]> = given === undefined
    ? servers.map((server, index) =>
      [index === 0 ? "s3rver" : "fast endpoint", { ...server.info, forcePathStyle: true }] as const
    )
    : [[given.url, {
      endpoint: given.url,
      bucket: given.bucket,
      region: given.region,
      forcePathStyle: given.pathStyle
    }]]
  const clients = connections.map(([, info]) => s3Client(info))
  const runPrefix = given === undefined ? "" : `effect-s3-tier-bench-${new Date().toISOString().replace(/[:.]/g, "-")}/`
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), "bench-restore-"))
  const targets: ReadonlyArray<RestoreTarget> = [
    ...connections.map(([name, info], index) => s3RestoreTarget(name, info, clients[index] as S3Client, runPrefix)),
    ...(given === undefined ? [fileRestoreTarget(root)] : [])
  ]
  const rows: Array<Row> = []
  const raw: Record<string, Record<Method, Array<number>>> = {}
  try {
    for (const target of targets) {
      const figures = await runTarget(target, parts, concurrency, repetitions)
      raw[target.name] = figures
      const bare = target.name === "filesystem" ? "bare fs readFile pool" : "bare SDK GetObject pool"
      const row = (method: Exclude<Method, "ours">, name: string, goal: boolean): Row => {
        const ratio = pairedRatio(figures.ours, figures[method])
        return {
          case: `${target.name}: ${name}`,
          ours: round(median(figures.ours), 1),
          baseline: round(median(figures[method]), 1),
          unit: "MiB/s",
          ratio: round(ratio, 3),
          goal: goal ? "ratio ≥ 0.9" : "reported",
          met: goal ? ratio >= 0.9 : undefined
        }
      }
      rows.push(
        row("bare", `eager restore vs ${bare} (the limit)`, true),
        row(
          "sameWork",
          "eager restore vs the same pool with a restore's content check (SHA-256 on a Hasher thread)",
          false
        )
      )
    }
  } finally {
    for (const client of clients) client.destroy()
    for (const server of servers) await server.stop()
    await fsp.rm(root, { recursive: true, force: true })
  }
  return {
    id: "restore",
    title: "7. Eager restore throughput",
    method:
      `${partCount} parts of 1 MiB in one checkpoint, concurrency ${concurrency} (workerCount = pool size), median of ${repetitions} repetition(s) after a warm-up, order rotated per repetition; the ratio is the median of the per-repetition ratios. Ours: Restore.open (untimed) into a fresh MemoryDisk, then prefetch (timed).`,
    ratioMeaning: "ours / baseline (higher is better)",
    oursLabel: "ours (MiB/s)",
    baselineLabel: "baseline (MiB/s)",
    rows,
    notes: [
      "Ours loads each part through a lease: one GET through the task queue and a worker, the SHA-256 of the body checked against the manifest (on a Hasher worker thread), the part written into the local disk and its state made Loaded. The bare pools GET (or read) the same objects and keep the bytes; the same-work pool also hashes each on a Hasher thread, as a restore that checks content must.",
      "Goal: ours ≥ 0.9 of the bare pool, against every target."
    ],
    raw: { partCount, concurrency, repetitions, mibPerSecond: raw },
    durationMs: now() - started
  }
}
