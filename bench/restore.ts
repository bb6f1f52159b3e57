/**
 * Scenario 7: eager restore throughput. A bucket holds one checkpoint of N 1 MiB parts (written
 * once, untimed, by a Storage); ours opens it read-only into a fresh local disk (Restore.open,
 * untimed: the lease, the manifests) and loads every part at once (`prefetch`, timed: per part one
 * GET through the task queue and a worker, the SHA-256 content check against the manifest on a
 * Hasher thread, the write into the local disk). Baselines at the same concurrency over the same
 * keys: the bare client's pool (GetObject, the body read to bytes; or a bare `fs.promises.readFile`
 * pool on the file store), and the same pool doing the per-part work a content-checked restore
 * must do (the body read into a buffer in shared memory, its SHA-256 on a Hasher thread there, and
 * the write into a fresh MemoryDisk, as ours). Against
 * s3rver, the fast endpoint and the file store, or a given endpoint (`--endpoint`). Local disk:
 * MemoryDisk.
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
  /** One bare read of a whole object into `buffer` (at most its length); returns the view read. */
  readonly getInto: (key: string, buffer: Uint8Array) => Promise<Uint8Array>
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
  getInto: async (key, buffer) => {
    const output = await client.send(new GetObjectCommand({ Bucket: info.bucket, Key: key }))
    if (output.Body === undefined) throw new Error(`GetObject ${key}: no body`)
    let length = 0
    for await (const chunk of output.Body as AsyncIterable<Uint8Array>) {
      if (length + chunk.length > buffer.length) throw new Error(`GetObject ${key}: longer than the buffer`)
      buffer.set(chunk, length)
      length += chunk.length
    }
    return buffer.subarray(0, length)
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
  getInto: async (key, buffer) => {
    const mapped = FileObjectStore.keyToSegments(key)
    if (!("segments" in mapped)) throw new Error(`${key}: ${mapped.problem}`)
    const handle = await fsp.open(path.join(root, ...mapped.segments), "r")
    try {
      let length = 0
      for (;;) {
        const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length)
        if (bytesRead === 0) return buffer.subarray(0, length)
        length += bytesRead
      }
    } finally {
      await handle.close()
    }
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
          // A fresh local disk per run, as ours restores into one.
          const disk = Effect.runSync(MemoryDisk.make).disk
          const start = now()
          await promisePool(keys.length, concurrency, async (index) => {
            const key = keys[index] as string
            if (method === "bare") return target.get(key)
            // A content-checked restore reads the body into shared memory, hashes it there (on the
            // Hasher's thread, as ours) and keeps it in the local disk.
            const buffer = buffers.pop() ?? hasher.allocate(MiB + 1)
            try {
              const bytes = await target.getInto(key, buffer)
              await Effect.runPromise(hasher.sha256Hex(bytes))
              await Effect.runPromise(disk.writeAtomic(`parts/${index}`, bytes))
            } finally {
              buffers.push(buffer)
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
          "eager restore vs the same pool doing a restore's per-part work (SHA-256 on a Hasher thread, the write into a MemoryDisk)",
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
      "Ours loads each part through a lease: one GET through the task queue and a worker, the body read by the store into a part buffer in shared memory (the file store reads it to fresh bytes, copied there: reading the file into the buffer instead measured no faster, 427-436 against 401-439 MiB/s in two process pairs), its SHA-256 checked there against the manifest on a Hasher worker thread, the part written into the local disk and its state made Loaded. The bare pools GET (or read) the same objects and drop the bytes; the same-work pool reads each body into a buffer in shared memory, hashes it there on a Hasher thread and writes it into a fresh MemoryDisk, as a restore that checks and keeps content must.",
      "Goal (the issue's): ours ≥ 0.9 of the bare pool, against every target. Not reachable on this 2-core machine by any restore that checks and keeps what it reads: the same-work pool, which has no queue, leases or part states, reaches only the ratio its row shows against the bare pool (1 MiB parts: the hash is 0.6 ms of CPU per part, and each kept part is a fresh 1 MiB allocation the bare pool never makes).",
      "Where ours' time went (CPU profile, `node --cpu-prof`, 16 restores of 256 x 1 MiB from the fast endpoint, before this issue's cuts): about 5.9 ms of main-thread time per part, against 1.4 ms for the bare pool. Of it: garbage collection 1.1 ms; the Effect runtime 1.2 ms (fibers, STM, spans, timeouts, spread thin: no function above 0.1 ms); the SDK and sockets 1.5 ms (what the bare pool spends too); the SHA-256 0.6 ms; the MemoryDisk's two copies of each part 0.4 ms. Removing every Effect-level extra together (the spans, the lease's timeout and wait registration, the store's timeout and request counting, task validation) changed ours by less than 10% at this part size: at 1 MiB the bound is memory (each part's buffers outlive the runtime's frequent minor collections and are freed only by full ones), not the fiber machinery; at 8 KiB parts the same removal cut ours' per-part time by 40%.",
      "Cuts, each measured in pairs in one run: MemoryDisk shares a file's durable bytes until its next write (writeAtomic + sync of 1 MiB files 3.6x faster); a load's hash moved to the Hasher thread (ours vs bare 0.29-0.35 inline against 0.36-0.37 offloaded, three pairs); a GetObject and its body read as one request (1.10-1.14x faster per get, 1.12-1.15x less CPU); a lease no longer builds a TransitionRejected to learn that a part is not Loaded (206 ms of main-thread time over 4096 loads); an S3 request is bounded by a deadline signal on the calling fiber instead of Effect.timeout's race of two fibers, in which a 1 MiB body outlived the race (a 1 MiB GET 1.27x faster, 1.42x less CPU; ours vs the same-work pool on the fast endpoint 0.64 before, 0.71 after, one run each); a GET's body read by the store straight into the part buffer the hash reads (one 1 MiB allocation and one copy fewer per part; ours vs a same-work pool that still allocated: fast endpoint 0.627-0.647 before, 0.656-0.691 after, s3rver 0.758-0.874 before, 0.802-0.954 after, three process pairs). The same-work pool reads into shared memory too since that cut, so it stays the per-part work ours could reach.",
      "Where the gap to the same-work pool comes from, measured in one process over the memory store (no network; `prefetch(8)` of 256 parts, medians of 6-8 alternating runs, 2026-12-07): at 1 MiB parts ours used 3.0-3.5 ms of CPU per part against the same-work pool's 1.8-1.9 (wall 1.8-2.0 against 1.0-1.1 ms per part), so the gap the fast endpoint shows is ours' own path, not the network. At 4 KiB ours still used 0.4-1.0 ms per part against the same-work pool's 0.1-0.16, the spread from run to run being the garbage the previous restore left: the per-part cost is the lease and load protocol in the Effect runtime (a profile of 8 restores of 1024 parts: fibers 140 µs, FiberRefs joins and context patches about 60 µs, STM 30 µs, garbage collection 47 µs per part), with three fibers per part (the prefetch's, the load's and the worker's run) and a lease's acquire, wait, second acquire and release. Tried, no effect beyond the runs' spread: one S3 client built before the runs and reused (ours vs the bare pool 0.362 and 0.392, against 0.386 and 0.363 with a client per restore); a 300 ms pause after open, so that the Hasher thread has started before the timed prefetch; the lease wait without its timeout (418, 442, 383 µs per 4 KiB part with it, 451, 406, 381 without). The Hasher starts its thread at the first hash, so a restore's timed prefetch includes the thread's start: 25-30 ms of wall time and 28-42 ms of CPU under tsx (four fresh Hashers, first 1 MiB hash against 1.1-1.3 ms for the second), about 3% of a restore of 256 MiB here. Ours used 0.9 ms of CPU per part more than the same-work pool at 4 KiB parts, 1.1 at 64 KiB and 1.4-1.5 at 256 KiB and 1 MiB (one run each): about 0.9 ms per part is the fixed cost of ours' path (the lease, the load, the queue and the worker), and the rest, which grows with the part's size, is the garbage collector's. Per thread, for one restore of 256 parts of 1 MiB in that setting (CPU ms from /proc's per-thread counters, 10 ms resolution, two runs): ours' JavaScript thread 340-380, V8's four helper threads (the collector's parallel and concurrent work) 300-360, the Hasher thread 190-200 (its start included); the same-work loop 130, 180 and 160. Every part kept in the MemoryDisk is a fresh 1 MiB allocation, which makes V8 collect often, and each collection goes over ours' larger live heap: with the MemoryDisk keeping the given bytes instead of a copy (a trial only, unsafe with reused buffers) the helper threads used 100-120 ms for ours and about 10 for the same-work loop. A prefetch that loads each part without the lease protocol (the part's Loading transition, its ReadPart task and its outcome, with no lease span, second acquire or release) was tried: it cut ours' CPU per 4 KiB part from 768 and 639 µs to 611 and 545 (two pairs), but at 1 MiB it changed nothing beyond the runs' spread (ours' wall time per part over the same-work pool's: 1.71, 1.83, 1.87 with leases, 1.65, 1.64, 1.87 without, three pairs), so it was not landed."
    ],
    raw: { partCount, concurrency, repetitions, mibPerSecond: raw },
    durationMs: now() - started
  }
}
