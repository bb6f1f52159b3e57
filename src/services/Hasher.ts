/**
 * Hasher: the SHA-256 of every uploaded and every loaded part, computed off the JavaScript thread.
 * A checkpoint hashes each part it uploads (for its content-addressed key and the manifest's
 * content check), a load each part it downloads (against the manifest); on the one thread that
 * also runs every fiber, the store's I/O callbacks and the SDK, that hash was the largest single
 * cost of a checkpoint (BENCHMARKS.md, scenario 1).
 *
 * A bounded pool of worker threads (`StorageConfig.hashWorkerCount`; 0 hashes on the calling
 * thread) reads each body straight out of memory shared with the caller: `allocate` makes buffers
 * backed by a SharedArrayBuffer, and hashing a view of one sends the worker only its offset and
 * length, so nothing is copied (the part table hashes parts under 64 KiB on its own thread: a
 * round trip to a worker costs about as much). Bytes anywhere else, a pool of 0 workers, a closed
 * pool or a pool whose workers could not start or have died are hashed on the calling thread: a
 * hash always completes, with the same result, whatever the pool's state.
 *
 * Waits: `sha256Hex` waits for one worker's reply. It is interruptible (the reply, when it comes,
 * is dropped, so a buffer given back and reused meanwhile yields no wrong result) and it is
 * bounded: a worker either replies or fails, and a worker that fails (an `error` or an `exit`)
 * has its pending hashes redone on the calling thread at once. A worker is ref'd while it has work,
 * so the process does not exit under a pending hash, and unref'd when idle, so an idle pool never
 * holds the process open. The workers start on the first hash (a Storage that never checkpoints
 * starts none) and are terminated when the scope that made the pool closes.
 *
 * Hand-written on node:worker_threads rather than @effect/platform's WorkerPool, which needs
 * @effect/platform-node (a CLI-only dependency) and a runner module file in each worker, and fails
 * a request whose worker died where this pool redoes the hash on the calling thread.
 *
 * Replaces: OrioleDB hashes in its S3 worker processes (the SigV4 payload hash, requests.c:67-126;
 * a PG file's checksum, worker.c:536-583), which run in parallel with the checkpointer by being
 * processes; here the S3 workers are fibers on one thread, so the hash gets threads of its own.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, type Scope } from "effect"
import { Worker } from "node:worker_threads"
import { type Sha256Hex, Sha256Hex as Sha256HexSchema } from "../domain/Ids.js"
import { sha256Hex as sha256HexInline } from "../domain/Manifest.js"
import { StorageConfig } from "./StorageConfig.js"

/** What the pool has done, for tests and diagnostics. @category models */
export interface HasherStats {
  /** Hashes computed by a worker thread. */
  readonly offloaded: number
  /** Hashes computed on the calling thread (bytes not in shared memory, no worker, or a worker failed). */
  readonly inline: number
  /** Worker threads started and neither failed nor terminated. */
  readonly workersAlive: number
  /** Worker threads that failed (an `error` or an unexpected `exit`) or could not start. */
  readonly workersFailed: number
}

/** @category models */
export interface HasherService {
  /**
   * A zeroed buffer of `sizeBytes` that the workers can hash without a copy (backed by a
   * SharedArrayBuffer when the pool has workers; by an ordinary ArrayBuffer otherwise).
   */
  readonly allocate: (sizeBytes: number) => Uint8Array
  /**
   * The SHA-256 of `bytes`, lowercase hex. The caller must not change `bytes` until it returns.
   * Interruptible; never fails.
   */
  readonly sha256Hex: (bytes: Uint8Array) => Effect.Effect<Sha256Hex>
  readonly stats: Effect.Effect<HasherStats>
}

/** @category tags */
export class Hasher extends Context.Tag("effect-s3-tier/Hasher")<Hasher, HasherService>() {}

/**
 * The worker's whole program, evaluated as CommonJS (`eval: true`), so that it runs the same under
 * tsx, vitest and the compiled dist without a separate file to locate. A message is
 * `{ id, buffer, offset, length }`; the reply is `{ id, hex }`, or `{ id, error }` if hashing threw.
 */
const workerSource = `"use strict";
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
parentPort.on("message", (message) => {
  try {
    const hex = createHash("sha256").update(new Uint8Array(message.buffer, message.offset, message.length)).digest("hex");
    parentPort.postMessage({ id: message.id, hex });
  } catch (error) {
    parentPort.postMessage({ id: message.id, error: String(error) });
  }
});`

interface Pending {
  readonly bytes: Uint8Array
  readonly resume: (result: Effect.Effect<Sha256Hex>) => void
}

interface PoolWorker {
  readonly worker: Worker
  readonly pending: Map<number, Pending>
  alive: boolean
}

type Reply = { readonly id: number; readonly hex: string } | { readonly id: number; readonly error: string }

const isReply = (value: unknown): value is Reply =>
  typeof value === "object" && value !== null && "id" in value && typeof value.id === "number" &&
  (("hex" in value && typeof value.hex === "string") || ("error" in value && typeof value.error === "string"))

/** Whether `bytes` lie in shared memory that a worker can read without a copy. */
const isShared = (bytes: Uint8Array): boolean => bytes.buffer instanceof SharedArrayBuffer

/** Forgets a pending hash; the worker is unref'd once it has none. Whether it was pending. */
const forget = (poolWorker: PoolWorker, id: number): boolean => {
  const wasPending = poolWorker.pending.delete(id)
  if (wasPending && poolWorker.pending.size === 0) poolWorker.worker.unref()
  return wasPending
}

/** How `makeWith` builds its workers. */
export interface HasherOptions {
  /** The workers' program (CommonJS). Tests replace it to make workers that fail; the default
   * is the hashing program above. @internal */
  readonly workerSource?: string
}

/** The mutable state of one pool, shared by the functions below. */
interface PoolState {
  readonly workerCount: number
  readonly workerSource: string
  readonly workers: Array<PoolWorker>
  readonly counters: { offloaded: number; inline: number; failed: number }
  closed: boolean
  started: boolean
  nextId: number
}

const inline = (pool: PoolState, bytes: Uint8Array): Sha256Hex => {
  pool.counters.inline++
  return sha256HexInline(bytes)
}

/** A worker is done for: its pending hashes are redone on the calling thread. */
const retire = (pool: PoolState, poolWorker: PoolWorker, failed: boolean) => {
  if (!poolWorker.alive) return
  poolWorker.alive = false
  if (failed) pool.counters.failed++
  const pending = [...poolWorker.pending.values()]
  poolWorker.pending.clear()
  for (const entry of pending) entry.resume(Effect.sync(() => inline(pool, entry.bytes)))
}

const spawn = (pool: PoolState): PoolWorker | undefined => {
  try {
    const worker = new Worker(pool.workerSource, { eval: true })
    worker.unref()
    const poolWorker: PoolWorker = { worker, pending: new Map(), alive: true }
    worker.on("message", (message: unknown) => {
      if (!isReply(message)) return
      const entry = poolWorker.pending.get(message.id)
      if (entry === undefined) return // interrupted meanwhile: the reply is dropped
      forget(poolWorker, message.id)
      if ("hex" in message) {
        pool.counters.offloaded++
        entry.resume(Effect.succeed(Sha256HexSchema.make(message.hex)))
      } else entry.resume(Effect.sync(() => inline(pool, entry.bytes)))
    })
    worker.on("error", () => retire(pool, poolWorker, true))
    worker.on("exit", () => retire(pool, poolWorker, !pool.closed))
    return poolWorker
  } catch {
    pool.counters.failed++
    return undefined
  }
}

/** The live worker with the least pending work; starts the pool on first use. */
const pick = (pool: PoolState): PoolWorker | undefined => {
  if (pool.closed || pool.workerCount === 0) return undefined
  if (!pool.started) {
    pool.started = true
    for (let index = 0; index < pool.workerCount; index++) {
      const poolWorker = spawn(pool)
      if (poolWorker !== undefined) pool.workers.push(poolWorker)
    }
  }
  let best: PoolWorker | undefined
  for (const poolWorker of pool.workers) {
    if (poolWorker.alive && (best === undefined || poolWorker.pending.size < best.pending.size)) best = poolWorker
  }
  return best
}

const offload = (pool: PoolState, poolWorker: PoolWorker, bytes: Uint8Array): Effect.Effect<Sha256Hex> =>
  Effect.async<Sha256Hex>((resume) => {
    const id = pool.nextId++
    poolWorker.pending.set(id, { bytes, resume })
    if (poolWorker.pending.size === 1) poolWorker.worker.ref()
    try {
      poolWorker.worker.postMessage({ id, buffer: bytes.buffer, offset: bytes.byteOffset, length: bytes.byteLength })
    } catch {
      forget(poolWorker, id)
      resume(Effect.sync(() => inline(pool, bytes)))
      return
    }
    return Effect.sync(() => forget(poolWorker, id))
  })

const close = (pool: PoolState): Effect.Effect<void> =>
  Effect.sync(() => {
    pool.closed = true
    for (const poolWorker of pool.workers) {
      // Nothing waits on a hash once the pool's scope closes (its users close first); any
      // pending hash is still completed, on this thread, by `retire`.
      retire(pool, poolWorker, false)
      // Node's boundary: terminate() stops the thread at once and its promise only reports the
      // exit code, which nothing needs, so it is not awaited (an idle worker is unref'd anyway).
      void poolWorker.worker.terminate()
    }
  })

/**
 * A pool of `workerCount` hash workers in the current scope (0: every hash on the calling thread).
 * @category constructors
 */
export const makeWith = (
  workerCount: number,
  options: HasherOptions = {}
): Effect.Effect<HasherService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const pool: PoolState = {
      workerCount,
      workerSource: options.workerSource ?? workerSource,
      workers: [],
      counters: { offloaded: 0, inline: 0, failed: 0 },
      closed: false,
      started: false,
      nextId: 0
    }
    yield* Effect.addFinalizer(() => close(pool))
    return Hasher.of({
      allocate: (sizeBytes) =>
        workerCount > 0 ? new Uint8Array(new SharedArrayBuffer(sizeBytes)) : new Uint8Array(sizeBytes),
      sha256Hex: (bytes) =>
        Effect.suspend(() => {
          const poolWorker = isShared(bytes) ? pick(pool) : undefined
          return poolWorker === undefined ? Effect.sync(() => inline(pool, bytes)) : offload(pool, poolWorker, bytes)
        }),
      stats: Effect.sync(() => ({
        offloaded: pool.counters.offloaded,
        inline: pool.counters.inline,
        workersAlive: pool.workers.filter((poolWorker) => poolWorker.alive).length,
        workersFailed: pool.counters.failed
      }))
    })
  })

/** A pool of `StorageConfig.hashWorkerCount` workers in the current scope. @category constructors */
export const make: Effect.Effect<HasherService, never, StorageConfig | Scope.Scope> = Effect.flatMap(
  StorageConfig,
  (config) => makeWith(config.hashWorkerCount)
)

/** The pool as a layer. @category layers */
export const layer: Layer.Layer<Hasher, never, StorageConfig> = Layer.scoped(Hasher, make)
