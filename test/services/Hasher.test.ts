/**
 * Goal: a hash is always the SHA-256 of the bytes asked about, whatever the pool does: computed by
 * a worker for shared memory, on the calling thread for anything else, for a pool of 0 workers, a
 * closed pool, or a pool whose workers fail to start, die or report an error; an interrupted hash's
 * late reply never reaches another hash (buffers are reused), and pending hashes end when a worker
 * dies or the pool closes instead of waiting forever (the original's waiters never heard, #373).
 * Method: real worker threads (`it.live` / `it.scopedLive`), each result checked against
 * `Manifest.sha256Hex`; workers that fail are made by replacing the workers' program.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, FastCheck, Fiber, Scope } from "effect"
import * as Ids from "../../src/domain/Ids.js"
import * as Manifest from "../../src/domain/Manifest.js"
import * as Hasher from "../../src/services/Hasher.js"
import * as H from "../support/StorageHarness.js"

/** Deterministic pseudo-random bytes (xorshift), `length` of them, into `into` at `offset`. */
const fill = (into: Uint8Array, seed: number, offset = 0, length = into.length - offset): Uint8Array => {
  let state = (seed * 2654435761) >>> 0 || 1
  for (let index = offset; index < offset + length; index++) {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    into[index] = state & 0xff
  }
  return into.subarray(offset, offset + length)
}

const MiB = 1024 * 1024

describe("Hasher", () => {
  it.scopedLive("hashes shared memory on a worker, and anything else on the calling thread, with the same result", () =>
    Effect.gen(function*() {
      const hasher = yield* Hasher.makeWith(2)
      assert.strictEqual((yield* hasher.stats).workersAlive, 0) // workers start on the first shared hash
      const plain = fill(new Uint8Array(5000), 1)
      assert.strictEqual(yield* hasher.sha256Hex(plain), Manifest.sha256Hex(plain))
      assert.deepStrictEqual(yield* hasher.stats, { offloaded: 0, inline: 1, workersAlive: 0, workersFailed: 0 })
      const shared = hasher.allocate(MiB)
      assert.instanceOf(shared.buffer, SharedArrayBuffer)
      // A view at an offset inside the shared buffer: the worker must hash exactly that range.
      const view = fill(shared, 2, 17, 300_001)
      assert.strictEqual(yield* hasher.sha256Hex(view), Manifest.sha256Hex(view))
      const empty = shared.subarray(5, 5)
      assert.strictEqual(yield* hasher.sha256Hex(empty), Manifest.sha256Hex(new Uint8Array(0)))
      assert.deepStrictEqual(yield* hasher.stats, { offloaded: 2, inline: 1, workersAlive: 2, workersFailed: 0 })
    }))

  it.scopedLive("a pool of 0 workers allocates ordinary memory and hashes everything on the calling thread", () =>
    Effect.gen(function*() {
      const hasher = yield* Hasher.makeWith(0)
      const buffer = hasher.allocate(4096)
      assert.notInstanceOf(buffer.buffer, SharedArrayBuffer)
      const shared = fill(new Uint8Array(new SharedArrayBuffer(4096)), 3)
      assert.strictEqual(yield* hasher.sha256Hex(shared), Manifest.sha256Hex(shared))
      assert.deepStrictEqual(yield* hasher.stats, { offloaded: 0, inline: 1, workersAlive: 0, workersFailed: 0 })
    }))

  it.scopedLive("an interrupted hash's late reply is dropped: the buffer, refilled and hashed again, gets its new hash", () =>
    Effect.gen(function*() {
      const hasher = yield* Hasher.makeWith(1)
      const buffer = hasher.allocate(32 * MiB)
      yield* hasher.sha256Hex(fill(buffer, 4, 0, 1024)) // starts the worker
      const first = fill(buffer, 5)
      const interrupted = yield* Effect.fork(hasher.sha256Hex(first))
      yield* Effect.yieldNow()
      const exit = yield* Fiber.interrupt(interrupted)
      // The worker is still hashing (32 MiB takes it tens of ms); the buffer is reused at once.
      const second = fill(buffer, 6)
      const hex = yield* hasher.sha256Hex(second)
      assert.isTrue(Exit.isInterrupted(exit) || Exit.isSuccess(exit))
      assert.strictEqual(hex, Manifest.sha256Hex(second))
      if (Exit.isInterrupted(exit)) {
        // One worker answers in order: the dropped reply came first and was counted nowhere.
        assert.strictEqual((yield* hasher.stats).offloaded, 2)
      }
    }))

  it.live.prop(
    "concurrent hashes of random views, some interrupted: every completed hash is the view's SHA-256",
    [
      FastCheck.array(
        FastCheck.record({
          length: FastCheck.integer({ min: 0, max: 200_000 }),
          offset: FastCheck.integer({ min: 0, max: 64 }),
          interrupt: FastCheck.boolean()
        }),
        { minLength: 1, maxLength: 24 }
      ),
      FastCheck.integer({ min: 1, max: 3 })
    ],
    ([requests, workerCount]) =>
      Effect.scoped(
        Effect.gen(function*() {
          const hasher = yield* Hasher.makeWith(workerCount)
          const views = requests.map(({ length, offset }, index) =>
            fill(hasher.allocate(offset + length), index + 1, offset, length)
          )
          const fibers = yield* Effect.forEach(views, (view) => Effect.fork(hasher.sha256Hex(view)))
          yield* Effect.forEach(
            fibers,
            (fiber, index) => (requests[index]?.interrupt === true ? Fiber.interrupt(fiber) : Effect.void),
            { discard: true }
          )
          const exits = yield* Effect.forEach(fibers, Fiber.await)
          let completed = 0
          for (const [index, exit] of exits.entries()) {
            // `views[index]` exists: one fiber per view.
            const view = views[index] as Uint8Array
            if (requests[index]?.interrupt !== true) {
              assert.isTrue(Exit.isSuccess(exit), "a hash nobody interrupted completes")
            }
            if (Exit.isSuccess(exit)) {
              completed++
              assert.strictEqual(exit.value, Manifest.sha256Hex(view))
            }
          }
          const stats = yield* hasher.stats
          assert.strictEqual(stats.inline, 0)
          assert.isAtLeast(stats.offloaded, completed)
          assert.isAtMost(stats.offloaded, requests.length)
        })
      ),
    { fastCheck: { numRuns: 30 } }
  )

  const failingWorkers = [
    ["exits on its first message", `require("node:worker_threads").parentPort.on("message", () => process.exit(3))`],
    [
      "throws on its first message",
      `require("node:worker_threads").parentPort.on("message", () => { throw new Error("boom") })`
    ],
    ["does not even parse", `this is not JavaScript (`]
  ] as const
  for (const [what, workerSource] of failingWorkers) {
    it.scopedLive(`a worker that ${what}: its pending hash is redone on the calling thread, and later ones run there`, () =>
      Effect.gen(function*() {
        const hasher = yield* Hasher.makeWith(1, { workerSource })
        const view = fill(hasher.allocate(MiB), 7)
        assert.strictEqual(yield* hasher.sha256Hex(view), Manifest.sha256Hex(view))
        const stats = yield* hasher.stats
        assert.deepStrictEqual(stats, { offloaded: 0, inline: 1, workersAlive: 0, workersFailed: 1 })
        const next = fill(hasher.allocate(4096), 8)
        assert.strictEqual(yield* hasher.sha256Hex(next), Manifest.sha256Hex(next))
        assert.strictEqual((yield* hasher.stats).inline, 2)
      }))
  }

  it.scopedLive("a worker that reports an error for a hash: that hash is redone on the calling thread, the worker stays", () =>
    Effect.gen(function*() {
      const workerSource = `const { parentPort } = require("node:worker_threads");
parentPort.on("message", (m) => parentPort.postMessage({ id: m.id, error: "refused" }))`
      const hasher = yield* Hasher.makeWith(1, { workerSource })
      const view = fill(hasher.allocate(4096), 9)
      assert.strictEqual(yield* hasher.sha256Hex(view), Manifest.sha256Hex(view))
      assert.deepStrictEqual(yield* hasher.stats, { offloaded: 0, inline: 1, workersAlive: 1, workersFailed: 0 })
    }))

  it.live("closing the pool ends a pending hash (on the calling thread) and terminates the workers; later hashes run inline", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const hasher = yield* Hasher.makeWith(1).pipe(Scope.extend(scope))
      const view = fill(hasher.allocate(32 * MiB), 10)
      const pending = yield* Effect.fork(hasher.sha256Hex(view))
      yield* Effect.yieldNow()
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* Fiber.join(pending), Manifest.sha256Hex(view))
      assert.strictEqual((yield* hasher.stats).workersAlive, 0)
      assert.strictEqual((yield* hasher.stats).workersFailed, 0) // a terminated worker did not fail
      assert.strictEqual(yield* hasher.sha256Hex(view), Manifest.sha256Hex(view))
    }))

  it.live("a Storage checkpoint hashes its parts on the pool's worker, and its part keys carry those hashes", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      // Parts of 64 KiB: smaller ones are hashed on the calling thread (a round trip costs as much).
      const partSize = 64 * 1024
      const bytes = fill(new Uint8Array(3 * partSize), 11)
      const file = Ids.fileId("db/hashed")
      yield* Effect.scoped(
        Effect.gen(function*() {
          const { context, storage } = yield* H.open(bucket, yield* H.makeDisk, {
            hashWorkerCount: 1,
            partSizeBytes: partSize,
            localBytesMax: 16 * partSize
          })
          yield* storage.write(file, 0, bytes)
          const report = yield* storage.checkpoint
          assert.strictEqual(report.partsUploaded, 3)
          assert.strictEqual((yield* Context.get(context, Hasher.Hasher).stats).offloaded, 3)
        })
      )
      const keys = (yield* bucket.inspect.keys).filter((key) => key.includes("/data/") || key.startsWith("data/"))
      for (let part = 0; part < 3; part++) {
        const hex = Manifest.sha256Hex(bytes.subarray(part * partSize, (part + 1) * partSize))
        assert.isTrue(keys.some((key) => key.endsWith(`-${hex}`)), `part ${part}'s key carries its SHA-256`)
      }
    }))
})
