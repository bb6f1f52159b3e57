/**
 * Goal: the PartTable keeps the original's part invariants (docs/ORIGINAL.md §9: 1 eviction only of
 * unleased, cold, clean, idle parts; 2 exactly one downloader per part; 3 one pending upload per
 * dirty epoch, dirty cleared as the upload reads, re-dirtied by concurrent writes, restored on
 * failure; 7 replayable tasks and a reopen that resets Loading/Evicting), and removes its hangs:
 * every wait is interruptible, bounded, woken by shutdown, and never made holding a lease (#340).
 * Method: a table over the real TaskQueue, S3Workers and WaitRegistry, an in-memory disk and an
 * in-memory bucket behind a controllable store (test/support/PartTableHarness.ts), on the
 * TestClock. Waits are observed through gates (Deferreds) and scheduler turns, never sleeps.
 * The last test is a property over random concurrent schedules of lease / write / schedule
 * upload / upload success or failure / evict / interrupt, checking the invariants after every step
 * and the content at the end (after reopening the directory, and after restoring from the bucket).
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, FastCheck, Fiber, Option, Scope, TestClock, Tracer } from "effect"
import { type CheckpointNumber, checkpointNumber, type FileId, type PartIndex } from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import { type RemotePart, sha256Hex } from "../../src/domain/Manifest.js"
import { parsePartPath, partPath } from "../../src/domain/PartPath.js"
import type { PartState } from "../../src/domain/PartState.js"
import * as FaultyDisk from "../../src/layers/FaultyDisk.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as Hasher from "../../src/services/Hasher.js"
import { type InstallEntry, type PartTableService } from "../../src/services/PartTable.js"
import {
  file,
  filled,
  type Harness,
  makeHarness,
  makeWorld,
  part,
  settle,
  settleUntil,
  type World
} from "../support/PartTableHarness.js"
import { makeCollectingTracer } from "../support/Tracing.js"

const cp = checkpointNumber
const fa = file("data/a")
const p0 = part(0)
const p1 = part(1)

/** Puts bytes in the bucket under their content key, as an earlier checkpoint would have. */
const seed = (
  h: Harness,
  target: FileId,
  index: PartIndex,
  bytes: Uint8Array,
  checkpoint: CheckpointNumber = cp(1)
): Effect.Effect<RemotePart> =>
  Effect.gen(function*() {
    const sha256 = sha256Hex(bytes)
    yield* Effect.orDie(
      h.store.put(KeyLayout.partKey(KeyLayout.make(h.config.prefix), checkpoint, target, index, sha256), bytes)
    )
    return { checkpoint, sha256, sizeBytes: bytes.length }
  })

const stateOf = (parts: PartTableService, target: FileId, index: PartIndex): Effect.Effect<PartState | undefined> =>
  Effect.map(parts.states, (states) => states.find(([f, p]) => f === target && p === index)?.[2])

const mustState = (parts: PartTableService, target: FileId, index: PartIndex): Effect.Effect<PartState> =>
  Effect.flatMap(
    stateOf(parts, target, index),
    (state) => (state === undefined ? Effect.dieMessage(`no state for ${target}#${index}`) : Effect.succeed(state))
  )

const assertHealthy = (h: Harness) =>
  Effect.gen(function*() {
    assert.deepStrictEqual(yield* h.parts.invariantProblems, [])
  })

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

const leaseRead = (parts: PartTableService, target: FileId, index: PartIndex, length: number) =>
  Effect.scoped(Effect.flatMap(parts.lease(target, index), (lease) => lease.read(0, length)))

/** A world whose disk is a FaultyDisk over its MemoryDisk (torn writes, bit flips). */
const faultyWorld = Effect.gen(function*() {
  const world = yield* makeWorld
  const faulty = yield* FaultyDisk.make(world.disk.disk, { seed: 3 })
  return {
    world: { ...world, disk: { disk: faulty.disk, control: world.disk.control } } satisfies World,
    faults: faulty.faults
  }
})

const isDone = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isSome)

describe("PartTable", () => {
  describe("leases and loads", () => {
    it.scoped("a never-written part is leased at once with no download, reads as zeros, and a write makes it dirty", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness()
        yield* Effect.scoped(
          Effect.gen(function*() {
            const lease = yield* h.parts.lease(fa, p0)
            assert.deepStrictEqual(yield* lease.read(0, 8), filled(8, 0))
            assert.strictEqual((yield* h.parts.stats).leasesHeld, 1)
            yield* lease.write(4, filled(4, 9))
            // Dirty only once the lease is released.
            assert.isFalse((yield* mustState(h.parts, fa, p0)).dirty)
          })
        )
        const state = yield* mustState(h.parts, fa, p0)
        assert.deepInclude(state, { status: "Loaded", leases: 0, dirty: true, version: 1, sizeBytes: 8 })
        assert.strictEqual(h.control.gets, 0)
        assert.deepStrictEqual(yield* h.parts.read(fa, 0, 10), Uint8Array.from([0, 0, 0, 0, 9, 9, 9, 9, 0, 0]))
        assert.deepInclude(yield* h.parts.stats, { parts: 1, loaded: 1, dirty: 1, leasesHeld: 0, loadedBytes: 8 })
        yield* assertHealthy(h)
      }))

    it.scoped("concurrent leases of a NotLoaded part share one download (invariant 2) and wait holding no lease", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness()
        const content = filled(300, 7)
        const remote = yield* seed(h, fa, p0, content)
        yield* h.parts.install([{ file: fa, part: p0, remote }], cp(2))
        h.control.getGate = yield* Deferred.make<void>()
        const fibers = yield* Effect.forEach([1, 2, 3, 4, 5], () => Effect.fork(leaseRead(h.parts, fa, p0, 300)))
        assert.isTrue(yield* settleUntil(Effect.sync(() => h.control.gets === 1)))
        yield* settleUntil(
          Effect.map(h.waits.current, (waits) => waits.filter((wait) => wait.waiter === "PartTable.lease").length === 5)
        )
        // THE RULE: everyone waits on the load, nobody holds a lease meanwhile.
        assert.deepInclude(yield* h.parts.stats, { loading: 1, leasesHeld: 0 })
        assert.strictEqual((yield* h.waits.current).filter((wait) => wait.waiter === "PartTable.lease").length, 5)
        yield* Deferred.succeed(h.control.getGate, undefined)
        for (const fiber of fibers) assert.deepStrictEqual(yield* Fiber.join(fiber), content)
        assert.strictEqual(h.control.gets, 1)
        assert.strictEqual(h.control.maxConcurrentGetsPerPart, 1)
        assert.deepInclude(yield* mustState(h.parts, fa, p0), {
          status: "Loaded",
          dirty: false,
          leases: 0,
          sizeBytes: 300
        })
        // The download was written atomically (temp + fsync + rename), so a reopen never sees it torn.
        assert.strictEqual((yield* h.world.disk.control.stats).atomicWrites, 1)
        yield* assertHealthy(h)
      }))

    it.scoped("a failed download returns the part to NotLoaded and fails every joined waiter with PartLoadFailed", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness()
        const remote = yield* seed(h, fa, p0, filled(10, 3))
        yield* h.parts.install([{ file: fa, part: p0, remote }], cp(2))
        h.control.getGate = yield* Deferred.make<void>()
        h.control.failGets = 1
        const fibers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(leaseRead(h.parts, fa, p0, 10)))
        yield* settleUntil(Effect.sync(() => h.control.gets === 1))
        yield* Deferred.succeed(h.control.getGate, undefined)
        for (const fiber of fibers) {
          const error = failureOf(yield* Fiber.await(fiber))
          assert.strictEqual(error?._tag, "PartLoadFailed")
          assert.include(error?.message ?? "", "injected GET failure")
        }
        assert.deepInclude(yield* mustState(h.parts, fa, p0), { status: "NotLoaded", leases: 0 })
        // The next lease starts a new download, which succeeds.
        assert.deepStrictEqual(yield* leaseRead(h.parts, fa, p0, 10), filled(10, 3))
        assert.strictEqual(h.control.gets, 2)
        yield* assertHealthy(h)
      }))

    it.scoped("an object whose SHA-256 differs from the manifest's fails the load with PartLoadFailed", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness()
        const remote = yield* seed(h, fa, p0, filled(10, 3))
        // The key names the good digest, the bytes are other bytes.
        yield* Effect.orDie(
          h.store.put(KeyLayout.partKey(KeyLayout.make(""), remote.checkpoint, fa, p0, remote.sha256), filled(10, 4))
        )
        yield* h.parts.install([{ file: fa, part: p0, remote }], cp(2))
        const error = failureOf(yield* Effect.exit(leaseRead(h.parts, fa, p0, 10)))
        assert.strictEqual(error?._tag, "PartLoadFailed")
        assert.include(error?.message ?? "", "SHA-256")
        assert.isTrue(Option.isNone(yield* h.disk.readAll(partPath(fa, p0))))
        yield* assertHealthy(h)
      }))

    it.scopedLive("a load reads the body into shared memory and checks its SHA-256 there on a Hasher thread, and still refuses other bytes", () =>
      Effect.gen(function*() {
        const hasher = yield* Hasher.makeWith(1)
        const h = yield* makeHarness({ hasher, config: { partSizeBytes: 256 * 1024 } })
        const size = 100 * 1024 // above the size hashed inline
        const good = yield* seed(h, fa, p0, filled(size, 5))
        const bad = yield* seed(h, fa, p1, filled(size, 3))
        const small = yield* seed(h, fa, part(2), filled(10, 6))
        // The key names the good digest, the bytes are other bytes.
        yield* Effect.orDie(
          h.store.put(KeyLayout.partKey(KeyLayout.make(""), bad.checkpoint, fa, p1, bad.sha256), filled(size, 4))
        )
        yield* h.parts.install([
          { file: fa, part: p0, remote: good },
          { file: fa, part: p1, remote: bad },
          { file: fa, part: part(2), remote: small }
        ], cp(2))
        assert.deepStrictEqual(yield* leaseRead(h.parts, fa, p0, 4), filled(4, 5))
        assert.strictEqual(h.control.getsIntoBuffer, 1, "the store read the body into the part buffer")
        const error = failureOf(yield* Effect.exit(leaseRead(h.parts, fa, p1, 10)))
        assert.strictEqual(error?._tag, "PartLoadFailed")
        assert.include(error?.message ?? "", "SHA-256")
        // A small body is hashed on this thread (a thread's round trip would cost more).
        assert.deepStrictEqual(yield* leaseRead(h.parts, fa, part(2), 10), filled(10, 6))
        assert.deepStrictEqual(yield* hasher.stats, { offloaded: 2, inline: 0, workersAlive: 1, workersFailed: 0 })
      }))

    it.scoped("interrupting the winner and the joiners of a load leaves the counts exact and the load completes", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness()
        const remote = yield* seed(h, fa, p0, filled(64, 5))
        yield* h.parts.install([{ file: fa, part: p0, remote }], cp(2))
        h.control.getGate = yield* Deferred.make<void>()
        const winner = yield* Effect.fork(leaseRead(h.parts, fa, p0, 64))
        yield* settleUntil(Effect.sync(() => h.control.gets === 1))
        const joiner = yield* Effect.fork(leaseRead(h.parts, fa, p0, 64))
        yield* settleUntil(
          Effect.map(h.waits.current, (waits) => waits.filter((wait) => wait.waiter === "PartTable.lease").length === 2)
        )
        yield* Fiber.interrupt(winner)
        yield* Fiber.interrupt(joiner)
        assert.deepInclude(yield* h.parts.stats, { loading: 1, leasesHeld: 0 })
        assert.deepStrictEqual(
          yield* h.waits.current.pipe(Effect.map((waits) => waits.filter((wait) => wait.waiter === "PartTable.lease"))),
          []
        )
        yield* Deferred.succeed(h.control.getGate, undefined)
        assert.isTrue(yield* settleUntil(Effect.map(h.parts.stats, (stats) => stats.loaded === 1)))
        assert.deepInclude(yield* mustState(h.parts, fa, p0), { status: "Loaded", leases: 0 })
        assert.deepStrictEqual(yield* leaseRead(h.parts, fa, p0, 64), filled(64, 5))
        assert.strictEqual(h.control.gets, 1)
        yield* assertHealthy(h)
      }))

    it.scoped("#340 shape: a lease waiting on a read whose worker pool then closes fails promptly with a typed error", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness()
        const remote = yield* seed(h, fa, p0, filled(10, 1))
        yield* h.parts.install([{ file: fa, part: p0, remote }], cp(2))
        h.control.getGate = yield* Deferred.make<void>() // the download never answers
        const waiter = yield* Effect.fork(leaseRead(h.parts, fa, p0, 10))
        yield* settleUntil(Effect.sync(() => h.control.gets === 1))
        const startMs = yield* TestClock.currentTimeMillis
        const report = yield* h.shutdownWorkers
        assert.strictEqual(report.interruptedTasks, 1)
        assert.isTrue(yield* settleUntil(isDone(waiter)))
        const error = failureOf(yield* Fiber.await(waiter))
        assert.strictEqual(error?._tag, "PartLoadFailed")
        assert.include(error?.message ?? "", "aborted")
        // Promptly: within the pool's drain deadline and grace, long before the lease deadline.
        assert.isBelow((yield* TestClock.currentTimeMillis) - startMs, h.config.leaseTimeoutMs)
        assert.deepInclude(yield* h.parts.stats, { loading: 0, leasesHeld: 0 })
        // With the queue closed, a new load fails at once with the same typed error.
        const again = failureOf(yield* Effect.exit(leaseRead(h.parts, fa, p0, 10)))
        assert.strictEqual(again?._tag, "PartLoadFailed")
        assert.include(again?.message ?? "", "closed")
        yield* assertHealthy(h)
      }))

    it.scoped("a lease that waits longer than leaseTimeoutMs fails with PartLeaseTimeout; the load goes on", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness()
        const remote = yield* seed(h, fa, p0, filled(10, 1))
        yield* h.parts.install([{ file: fa, part: p0, remote }], cp(2))
        h.control.getGate = yield* Deferred.make<void>()
        const waiter = yield* Effect.fork(leaseRead(h.parts, fa, p0, 10))
        yield* settleUntil(Effect.sync(() => h.control.gets === 1))
        yield* TestClock.adjust(h.config.leaseTimeoutMs - 1)
        assert.isFalse(yield* isDone(waiter))
        yield* TestClock.adjust(1)
        assert.strictEqual(failureOf(yield* Fiber.await(waiter))?._tag, "PartLeaseTimeout")
        assert.deepInclude(yield* h.parts.stats, { loading: 1, leasesHeld: 0 })
        yield* Deferred.succeed(h.control.getGate, undefined)
        assert.isTrue(yield* settleUntil(Effect.map(h.parts.stats, (stats) => stats.loaded === 1)))
        assert.deepStrictEqual(yield* leaseRead(h.parts, fa, p0, 10), filled(10, 1))
        assert.strictEqual(h.control.gets, 1)
        yield* assertHealthy(h)
      }))

    it.scoped("close: waiting leases wake with ShuttingDown, new leases are refused, held leases are still released", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness()
        const remote = yield* seed(h, fa, p1, filled(10, 1))
        yield* h.parts.install([{ file: fa, part: p1, remote }], cp(2))
        const heldScope = yield* Scope.make()
        const held = yield* h.parts.lease(fa, p0).pipe(Scope.extend(heldScope))
        h.control.getGate = yield* Deferred.make<void>()
        const waiter = yield* Effect.fork(leaseRead(h.parts, fa, p1, 10))
        yield* settleUntil(Effect.sync(() => h.control.gets === 1))
        yield* h.parts.close
        assert.isTrue(yield* settleUntil(isDone(waiter)))
        assert.strictEqual(failureOf(yield* Fiber.await(waiter))?._tag, "ShuttingDown")
        assert.strictEqual(failureOf(yield* Effect.exit(leaseRead(h.parts, fa, p0, 1)))?._tag, "ShuttingDown")
        assert.strictEqual(failureOf(yield* Effect.exit(h.parts.snapshot(cp(1))))?._tag, "ShuttingDown")
        // The held lease still works and is released normally.
        yield* held.write(0, filled(4, 2))
        assert.strictEqual((yield* h.parts.stats).leasesHeld, 1)
        yield* Scope.close(heldScope, Exit.void)
        assert.deepInclude(yield* h.parts.stats, { leasesHeld: 0, dirty: 1 })
        yield* h.parts.close // idempotent
        yield* Deferred.succeed(h.control.getGate, undefined)
        yield* settle(h)
        yield* assertHealthy(h)
      }))

    it.scoped("reads and writes span parts, one lease at a time; ranges outside a part are InvalidRange", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness()
        const size = h.config.partSizeBytes
        const bytes = Uint8Array.from({ length: 20 }, (_, index) => index + 1)
        yield* h.parts.write(fa, size - 10, bytes)
        assert.deepStrictEqual(yield* h.parts.read(fa, size - 10, 20), bytes)
        assert.deepInclude(yield* mustState(h.parts, fa, p0), { dirty: true, sizeBytes: size })
        assert.deepInclude(yield* mustState(h.parts, fa, p1), { dirty: true, sizeBytes: 10 })
        assert.strictEqual(failureOf(yield* Effect.exit(h.parts.read(fa, -1, 2)))?._tag, "InvalidRange")
        assert.strictEqual(failureOf(yield* Effect.exit(h.parts.write(fa, 1.5, bytes)))?._tag, "InvalidRange")
        const outside = yield* Effect.scoped(
          Effect.flatMap(
            h.parts.lease(fa, p0),
            (lease) => Effect.all([Effect.exit(lease.read(size - 1, 2)), Effect.exit(lease.write(-1, bytes))])
          )
        )
        assert.deepStrictEqual([failureOf(outside[0])?._tag, failureOf(outside[1])?._tag], [
          "InvalidRange",
          "InvalidRange"
        ])
        assert.strictEqual((yield* h.parts.stats).leasesHeld, 0)
        yield* assertHealthy(h)
      }))
  })

  describe("write-back", () => {
    it.scoped("dirty clears when the upload starts reading, a write during the upload re-dirties, a failed upload restores dirty + scheduled", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness()
        yield* h.parts.write(fa, 0, filled(100, 1))
        h.control.putGate = yield* Deferred.make<void>()
        assert.isTrue(yield* h.parts.scheduleUpload(fa, p0))
        assert.isTrue((yield* mustState(h.parts, fa, p0)).scheduled)
        assert.isTrue(yield* settleUntil(Effect.sync(() => h.control.puts === 1)))
        assert.deepInclude(yield* mustState(h.parts, fa, p0), { writing: true, dirty: false, scheduled: false })
        // The upload holds no lease: a write to the same part proceeds at once (no lock-then-wait).
        yield* h.parts.write(fa, 50, filled(10, 2))
        assert.deepInclude(yield* mustState(h.parts, fa, p0), { writing: true, dirty: true, version: 2 })
        assert.isFalse(yield* h.parts.scheduleUpload(fa, p0)) // not while an upload is in flight
        yield* Deferred.succeed(h.control.putGate, undefined)
        h.control.putGate = undefined
        yield* settle(h)
        const afterFirst = yield* mustState(h.parts, fa, p0)
        assert.deepInclude(afterFirst, { writing: false, dirty: true, version: 2, uploadedVersion: 1 })
        assert.strictEqual(afterFirst.remote?.sha256, sha256Hex(filled(100, 1)))
        // A failed upload: dirty and scheduled again, nothing lost.
        h.control.failPuts = 1
        assert.isTrue(yield* h.parts.scheduleUpload(fa, p0))
        yield* settle(h)
        assert.deepInclude(yield* mustState(h.parts, fa, p0), {
          writing: false,
          dirty: true,
          scheduled: true,
          uploadedVersion: 1
        })
        // Scheduling again re-enqueues the owed upload, which now succeeds with the latest bytes.
        assert.isTrue(yield* h.parts.scheduleUpload(fa, p0))
        yield* settle(h)
        const final = yield* mustState(h.parts, fa, p0)
        assert.deepInclude(final, { dirty: false, scheduled: false, writing: false, version: 2, uploadedVersion: 2 })
        const expected = filled(100, 1)
        expected.fill(2, 50, 60)
        assert.strictEqual(final.remote?.sha256, sha256Hex(expected))
        assert.strictEqual(h.control.maxConcurrentPutsPerPart, 1)
        yield* assertHealthy(h)
      }))

    it.scoped("snapshot + ensureUploaded: uploads what changed under the given checkpoint, reuses what did not, and moves write-back to the next checkpoint", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness()
        const layout = KeyLayout.make("")
        yield* h.parts.write(fa, 0, filled(10, 1))
        yield* h.parts.write(fa, h.config.partSizeBytes, filled(10, 2))
        const first = yield* h.parts.snapshot(cp(1))
        assert.deepStrictEqual(first.map((entry) => [entry.part, entry.version, entry.needsUpload]), [[0, 1, true], [
          1,
          1,
          true
        ]])
        const remotes = yield* Effect.forEach(first, (entry) => h.parts.ensureUploaded(entry, cp(1)))
        for (const [index, remote] of remotes.entries()) {
          assert.strictEqual(remote.checkpoint, 1)
          const key = KeyLayout.partKey(layout, cp(1), fa, part(index), remote.sha256)
          const stored = yield* Effect.orDie(h.store.get(key))
          assert.deepStrictEqual(stored, filled(10, index + 1))
          // The upload hands the store the hash it computed, so S3 does not hash the part again.
          assert.strictEqual(h.control.putSha256ByKey.get(key), sha256Hex(stored))
        }
        // Only part 0 changes: the next snapshot reuses part 1's object.
        yield* h.parts.write(fa, 0, filled(5, 9))
        const second = yield* h.parts.snapshot(cp(2))
        assert.deepStrictEqual(second.map((entry) => [entry.part, entry.needsUpload]), [[0, true], [1, false]])
        assert.deepStrictEqual(second[1]?.remote, remotes[1])
        const putsBefore = h.control.puts
        const second0 = second[0]
        if (second0 === undefined) return yield* Effect.dieMessage("no entry")
        assert.strictEqual((yield* h.parts.ensureUploaded(second0, cp(2))).checkpoint, 2)
        assert.strictEqual(h.control.puts, putsBefore + 1)
        // Write-back after snapshot(2) targets checkpoint 3.
        yield* h.parts.write(fa, h.config.partSizeBytes, filled(3, 7))
        yield* h.parts.scheduleUpload(fa, p1)
        yield* settle(h)
        assert.strictEqual((yield* mustState(h.parts, fa, p1)).remote?.checkpoint, 3)
        yield* assertHealthy(h)
      }))

    it.scoped("concurrent uploads that reuse read buffers each store their own part's bytes", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness({ config: { workerCount: 3 } })
        const layout = KeyLayout.make("")
        const partCount = 12
        for (let index = 0; index < partCount; index++) {
          // Different lengths too: a reused buffer must not leak a longer part's tail into a shorter one.
          yield* h.parts.write(fa, index * h.config.partSizeBytes, filled(100 + ((index * 37) % 60), index + 1))
        }
        h.control.yieldsPerRequest = 3
        for (const round of [1, 2]) {
          const entries = yield* h.parts.snapshot(cp(round))
          const remotes = yield* Effect.forEach(entries, (entry) => h.parts.ensureUploaded(entry, cp(round)), {
            concurrency: "unbounded"
          })
          for (const [index, remote] of remotes.entries()) {
            const stored = yield* Effect.orDie(
              h.store.get(KeyLayout.partKey(layout, remote.checkpoint, fa, part(index), remote.sha256))
            )
            assert.deepStrictEqual(
              stored,
              filled(100 + ((index * 37) % 60), index + 1),
              `round ${round}, part ${index}`
            )
            assert.strictEqual(remote.sha256, sha256Hex(stored))
          }
          // Every part changes for the second round.
          for (let index = 0; index < partCount; index++) {
            yield* h.parts.write(fa, index * h.config.partSizeBytes, filled(100 + ((index * 37) % 60), index + 1))
          }
        }
        yield* assertHealthy(h)
      }))

    it.scopedLive("an upload hashes a large part on a Hasher thread and a small one where it is", () =>
      Effect.gen(function*() {
        const hasher = yield* Hasher.makeWith(1)
        const h = yield* makeHarness({ hasher, config: { partSizeBytes: 256 * 1024 } })
        const large = filled(100 * 1024, 7) // above the size hashed inline
        const small = filled(10, 8)
        yield* h.parts.write(fa, 0, large)
        yield* h.parts.write(fa, h.config.partSizeBytes, small)
        const entries = yield* h.parts.snapshot(cp(1))
        const remotes = yield* Effect.forEach(entries, (entry) => h.parts.ensureUploaded(entry, cp(1)))
        assert.deepStrictEqual(remotes.map((remote) => remote.sha256), [sha256Hex(large), sha256Hex(small)])
        // A thread's round trip costs about what hashing 64 KiB does: the 10 bytes stay here.
        assert.deepInclude(yield* hasher.stats, { offloaded: 1, workersFailed: 0 })
      }))

    it.scoped("a read buffer whose disk read was abandoned by a timeout is never reused: the late read lands in no other upload", () =>
      Effect.gen(function*() {
        // Part 0's read hangs in the "kernel": the watchdog's interruption abandons it, and it lands
        // (FaultyDisk.stallReads) as the next read returns: part 1's, between its read and its hash.
        const { faults, world } = yield* faultyWorld
        const h = yield* makeHarness({
          world,
          config: { workerCount: 2, requestTimeoutMs: 1_000, retryDelayBaseMs: 60_000, retryDelayMaxMs: 60_000 }
        })
        yield* h.parts.write(fa, 0, filled(200, 1))
        yield* h.parts.write(fa, h.config.partSizeBytes, filled(200, 2))
        const entries = yield* h.parts.snapshot(cp(1))
        const entryOf = (index: number) => entries.find((entry) => entry.part === part(index))
        const first = entryOf(0)
        const second = entryOf(1)
        if (first === undefined || second === undefined) return assert.fail("both parts are owed")
        yield* faults.stallReads(1, { pathPrefix: partPath(fa, p0) })
        const upload0 = yield* Effect.fork(h.parts.ensureUploaded(first, cp(1)))
        yield* settleUntil(Effect.map(faults.stats, (stats) => stats.stalledReads === 1))
        // The watchdog cuts the attempt (its retry waits a minute); part 1's upload starts then.
        yield* TestClock.adjust(h.config.requestTimeoutMs + 1)
        const remote = yield* h.parts.ensureUploaded(second, cp(1))
        const stored = yield* Effect.orDie(
          h.store.get(KeyLayout.partKey(KeyLayout.make(h.config.prefix), remote.checkpoint, fa, p1, remote.sha256))
        )
        const landed = (yield* faults.stats).lateReads === 1
        // Part 0's retry waits a minute: stop it, and the workers, before asserting.
        yield* Fiber.interrupt(upload0)
        yield* h.shutdownWorkers
        assert.isTrue(landed, "the abandoned read landed during part 1's upload")
        assert.deepStrictEqual(stored, filled(200, 2), "part 1's object holds part 1's bytes")
      }))

    it.scoped("ensureUploaded waits (holding no lease) for an upload in flight and fails with the upload's error, leaving the part owed", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness()
        yield* h.parts.write(fa, 0, filled(10, 1))
        h.control.putGate = yield* Deferred.make<void>()
        yield* h.parts.scheduleUpload(fa, p0)
        yield* settleUntil(Effect.sync(() => h.control.puts === 1))
        const [entry] = yield* h.parts.snapshot(cp(1))
        if (entry === undefined) return yield* Effect.dieMessage("no entry")
        assert.isTrue(entry.needsUpload)
        const ensure = yield* Effect.fork(h.parts.ensureUploaded(entry, cp(1)))
        yield* settleUntil(
          Effect.map(h.waits.current, (waits) => waits.some((wait) => wait.waiter === "PartTable.ensureUploaded"))
        )
        assert.isFalse(yield* isDone(ensure))
        assert.strictEqual((yield* h.parts.stats).leasesHeld, 0)
        yield* Deferred.succeed(h.control.putGate, undefined)
        h.control.putGate = undefined
        const remote = yield* Fiber.join(ensure)
        // The upload in flight carried the snapshot's version: no second upload.
        assert.strictEqual(h.control.puts, 1)
        assert.strictEqual(remote.sha256, sha256Hex(filled(10, 1)))
        // A failing upload: the checkpoint learns the error, the part stays dirty + scheduled.
        yield* h.parts.write(fa, 0, filled(10, 2))
        const [next] = yield* h.parts.snapshot(cp(2))
        if (next === undefined) return yield* Effect.dieMessage("no entry")
        h.control.failPuts = 1
        const error = failureOf(yield* Effect.exit(h.parts.ensureUploaded(next, cp(2))))
        assert.strictEqual(error?._tag, "ObjectStoreRejected")
        assert.deepInclude(yield* mustState(h.parts, fa, p0), { dirty: true, scheduled: true, writing: false })
        assert.strictEqual((yield* h.parts.ensureUploaded(next, cp(2))).sha256, sha256Hex(filled(10, 2)))
        yield* assertHealthy(h)
      }))
  })

  describe("spans", () => {
    const collectingTracer = makeCollectingTracer
    const named = (spans: ReadonlyArray<Tracer.Span>, name: string) => spans.filter((span) => span.name === name)

    it.scoped("a lease that loads runs in part.lease with part.load as its child; a lease on a Loaded part makes no span; an upload makes part.upload", () =>
      Effect.gen(function*() {
        const { spans, tracer } = yield* collectingTracer
        yield* Effect.withTracer(
          Effect.gen(function*() {
            const h = yield* makeHarness()
            const remote = yield* seed(h, fa, p0, filled(10, 3))
            yield* h.parts.install([{ file: fa, part: p0, remote }], cp(2))
            assert.deepStrictEqual(yield* leaseRead(h.parts, fa, p0, 10), filled(10, 3))
            const [lease, ...moreLeases] = named(spans, "part.lease")
            const [load, ...moreLoads] = named(spans, "part.load")
            assert.deepStrictEqual([moreLeases.length, moreLoads.length], [0, 0])
            assert.isTrue(lease !== undefined && load !== undefined)
            if (lease === undefined || load === undefined) return
            assert.deepStrictEqual([lease.attributes.get("file"), lease.attributes.get("part")], [fa, p0])
            assert.deepStrictEqual([load.attributes.get("file"), load.attributes.get("part")], [fa, p0])
            assert.strictEqual(Option.getOrUndefined(load.parent)?.spanId, lease.spanId)
            assert.deepStrictEqual([lease.status._tag, load.status._tag], ["Ended", "Ended"])
            // The part is Loaded now: the fast path makes no span.
            yield* leaseRead(h.parts, fa, p0, 10)
            yield* h.parts.read(fa, 0, 10)
            assert.strictEqual(named(spans, "part.lease").length, 1)
            yield* h.parts.write(fa, 0, filled(10, 4))
            assert.isTrue(yield* h.parts.scheduleUpload(fa, p0))
            yield* settle(h)
            const uploads = named(spans, "part.upload")
            assert.strictEqual(uploads.length, 1)
            assert.deepStrictEqual([
              uploads[0]?.attributes.get("file"),
              uploads[0]?.attributes.get("part"),
              uploads[0]?.status._tag
            ], [fa, p0, "Ended"])
          }),
          tracer
        )
      }))

    it.scoped("an interrupted lease ends its part.lease span; the load it started goes on and ends its part.load", () =>
      Effect.gen(function*() {
        const { spans, tracer } = yield* collectingTracer
        yield* Effect.withTracer(
          Effect.gen(function*() {
            const h = yield* makeHarness()
            const remote = yield* seed(h, fa, p0, filled(10, 3))
            yield* h.parts.install([{ file: fa, part: p0, remote }], cp(2))
            h.control.getGate = yield* Deferred.make<void>()
            const fiber = yield* Effect.fork(leaseRead(h.parts, fa, p0, 10))
            assert.isTrue(yield* settleUntil(Effect.sync(() => h.control.gets === 1)))
            yield* Fiber.interrupt(fiber)
            const leaseStatus = named(spans, "part.lease")[0]?.status
            const loadStatus = named(spans, "part.load")[0]?.status._tag
            // Let the load finish before asserting, so that a failed assertion does not leave the
            // harness waiting on the gate.
            yield* Deferred.succeed(h.control.getGate, undefined)
            // The load's span ends before it commits Loaded.
            assert.isTrue(
              yield* settleUntil(Effect.map(mustState(h.parts, fa, p0), (state) => state.status === "Loaded"))
            )
            assert.strictEqual(leaseStatus?._tag, "Ended")
            assert.isTrue(leaseStatus?._tag === "Ended" && Exit.isInterrupted(leaseStatus.exit))
            assert.strictEqual(loadStatus, "Started")
            assert.strictEqual(named(spans, "part.load")[0]?.status._tag, "Ended")
            assert.deepInclude(yield* mustState(h.parts, fa, p0), { leases: 0 })
          }),
          tracer
        )
      }))
  })

  describe("a failed write", () => {
    it.scoped("a write torn by a full disk damages the part: PartDamaged, neither served nor uploaded nor vouched for", () =>
      Effect.gen(function*() {
        const world = yield* faultyWorld
        const h = yield* makeHarness({ world: world.world, config: { partSizeBytes: 16384 } })
        const acknowledged = filled(8192, 1)
        yield* h.parts.write(fa, 0, acknowledged)
        yield* h.parts.write(fa, 16384, filled(10, 5)) // another part, untouched by the fault
        const [first] = yield* h.parts.snapshot(cp(1))
        if (first === undefined) return yield* Effect.dieMessage("no entry")
        yield* h.parts.ensureUploaded(first, cp(1))
        yield* world.faults.fillAfter(4096, { pathPrefix: "parts/" })
        const torn = yield* Effect.exit(h.parts.write(fa, 0, filled(8192, 2)))
        yield* world.faults.heal
        assert.strictEqual((yield* world.faults.stats).tornWrites, 1)
        assert.isTrue(Exit.isFailure(torn))
        // Never uploaded: the next checkpoint cannot take the torn bytes, and write-back skips them.
        const putsBefore = h.control.puts
        const second = (yield* h.parts.snapshot(cp(2))).find((entry) => entry.part === p0)
        if (second === undefined) return yield* Effect.dieMessage("no entry")
        assert.isTrue(second.needsUpload)
        const upload = yield* Effect.exit(h.parts.ensureUploaded(second, cp(2)))
        assert.strictEqual(failureOf(upload)?._tag, "PartDamaged", String(upload))
        assert.isFalse(yield* h.parts.scheduleUpload(fa, p0))
        yield* settle(h)
        assert.strictEqual(h.control.puts, putsBefore, "no PUT of the torn part")
        // The failed write and every later use of the part say why.
        assert.strictEqual(failureOf(torn)?._tag, "PartDamaged")
        assert.strictEqual(failureOf(yield* Effect.exit(leaseRead(h.parts, fa, p0, 8192)))?._tag, "PartDamaged")
        assert.strictEqual(failureOf(yield* Effect.exit(h.parts.write(fa, 100, filled(1, 3))))?._tag, "PartDamaged")
        // Not vouched for at a clean stop (the next start rebuilds it); the other part is.
        const hashes = new Map(yield* h.parts.localPartHashes)
        assert.deepStrictEqual(Array.from(hashes.keys()), [partPath(fa, p1)])
        assert.strictEqual(hashes.get(partPath(fa, p1)), sha256Hex(filled(10, 5)))
        assert.deepStrictEqual(yield* h.parts.read(fa, 16384, 10), filled(10, 5))
        yield* assertHealthy(h)
      }))
  })

  describe("eviction", () => {
    it.scoped("a sweep evicts only unleased, cold, clean parts, halves usage, schedules dirty parts, and stops at the budget", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness({ config: { localBytesMax: 2 * 4096 } })
        const size = h.config.partSizeBytes
        for (let index = 0; index < 4; index++) yield* h.parts.write(fa, index * size, filled(size, index + 1))
        const heldScope = yield* Scope.make()
        yield* h.parts.lease(fa, p0).pipe(Scope.extend(heldScope))
        // Sweep 1: everything is dirty: nothing evicted, every dirty part scheduled, usage halved.
        const first = yield* h.parts.evict
        assert.deepInclude(first, { evictedParts: 0, scheduledUploads: 4, loadedBytesBefore: 4 * size })
        yield* settle(h)
        assert.strictEqual((yield* h.parts.stats).dirty, 0)
        // Sweep 2: part 0 is leased (kept), parts 1 and 2 go, then the budget holds and the hand stops.
        const second = yield* h.parts.evict
        assert.deepInclude(second, { evictedParts: 2, evictedBytes: 2 * size, loadedBytesAfter: 2 * size })
        const states = yield* h.parts.states
        assert.deepStrictEqual(states.map(([, , state]) => state.status), [
          "Loaded",
          "NotLoaded",
          "NotLoaded",
          "Loaded"
        ])
        assert.deepStrictEqual(yield* h.disk.list("parts"), [partPath(fa, part(0)), partPath(fa, part(3))])
        assert.strictEqual(yield* h.disk.usedBytes("parts"), 2 * size)
        yield* Scope.close(heldScope, Exit.void)
        // Under budget: a sweep does nothing.
        assert.deepInclude(yield* h.parts.evict, { evictedParts: 0, scheduledUploads: 0 })
        // Evicted parts come back from the bucket, byte for byte.
        for (let index = 0; index < 4; index++) {
          assert.deepStrictEqual(yield* h.parts.read(fa, index * size, size), filled(size, index + 1))
        }
        assert.strictEqual(h.control.gets, 2)
        yield* assertHealthy(h)
      }))

    it.scoped("a failed unlink leaves the part Loaded and reports the error", () =>
      Effect.gen(function*() {
        const h = yield* makeHarness({ config: { localBytesMax: 4096 } })
        for (let index = 0; index < 2; index++) yield* h.parts.write(fa, index * 4096, filled(4096, 1))
        yield* h.parts.evict
        yield* settle(h)
        yield* h.world.disk.control.failNext({ operation: "remove" })
        const error = failureOf(yield* Effect.exit(h.parts.evict))
        assert.strictEqual(error?._tag, "LocalIoError")
        assert.deepStrictEqual((yield* h.parts.states).map(([, , state]) => state.status), ["Loaded", "Loaded"])
        assert.strictEqual((yield* h.parts.evict).evictedParts, 1)
        yield* assertHealthy(h)
      }))
  })

  describe("reopen", () => {
    it.effect("a reopened directory keeps what is on disk, resets Loading to NotLoaded, and marks changed or unknown parts dirty", () =>
      Effect.gen(function*() {
        const world = yield* makeWorld
        const fb = file("data/b")
        const fc = file("data/c")
        // First life: two parts uploaded, one rewritten afterwards, one never uploaded, one Loading at the stop.
        const manifest = yield* Effect.scoped(
          Effect.gen(function*() {
            const h = yield* makeHarness({ world })
            const remote = yield* seed(h, fc, p0, filled(20, 8))
            yield* h.parts.install([{ file: fc, part: p0, remote }], cp(2))
            yield* h.parts.write(fa, 0, filled(30, 1))
            yield* h.parts.write(fa, 4096, filled(30, 2))
            const entries = yield* h.parts.snapshot(cp(2))
            const uploaded: Array<InstallEntry> = [{ file: fc, part: p0, remote }]
            for (const entry of entries.filter((candidate) => candidate.needsUpload)) {
              uploaded.push({ file: entry.file, part: entry.part, remote: yield* h.parts.ensureUploaded(entry, cp(2)) })
            }
            yield* h.parts.write(fa, 4096, filled(5, 3)) // after the checkpoint
            yield* h.parts.write(fb, 0, filled(7, 4)) // never uploaded
            h.control.getGate = yield* Deferred.make<void>()
            yield* Effect.fork(leaseRead(h.parts, fc, p0, 20))
            yield* settleUntil(Effect.sync(() => h.control.gets === 1))
            assert.strictEqual((yield* h.parts.stats).loading, 1)
            yield* h.shutdownWorkers
            return uploaded
          })
        )
        // Second life over the same directory and bucket.
        yield* Effect.scoped(
          Effect.gen(function*() {
            const h = yield* makeHarness({ world })
            yield* h.parts.install(manifest, cp(3))
            const byKey = new Map((yield* h.parts.states).map(([f, p, state]) => [`${f}#${p}`, state]))
            assert.deepInclude(byKey.get(`${fa}#0`), { status: "Loaded", dirty: false, sizeBytes: 30 })
            assert.deepInclude(byKey.get(`${fa}#1`), { status: "Loaded", dirty: true, version: 1 })
            assert.deepInclude(byKey.get(`${fb}#0`), { status: "Loaded", dirty: true, remote: undefined })
            assert.deepInclude(byKey.get(`${fc}#0`), { status: "NotLoaded", sizeBytes: 0 })
            assert.deepInclude(yield* h.parts.stats, { loading: 0, evicting: 0, leasesHeld: 0 })
            const expected1 = filled(30, 2)
            expected1.fill(3, 0, 5)
            assert.deepStrictEqual(yield* h.parts.read(fa, 4096, 30), expected1)
            assert.deepStrictEqual(yield* h.parts.read(fb, 0, 7), filled(7, 4))
            assert.deepStrictEqual(yield* h.parts.read(fc, 0, 20), filled(20, 8))
            yield* assertHealthy(h)
          })
        )
      }))

    it.effect("after a crash a downloaded part is intact (fsync'd), and unsynced local writes are never taken for the bucket's bytes", () =>
      Effect.gen(function*() {
        const world = yield* makeWorld
        const original = filled(50, 6)
        const manifest = yield* Effect.scoped(
          Effect.gen(function*() {
            const h = yield* makeHarness({ world })
            const remote = yield* seed(h, fa, p0, original)
            const other = yield* seed(h, fa, p1, filled(50, 7))
            yield* h.parts.install([{ file: fa, part: p0, remote }, { file: fa, part: p1, remote: other }], cp(2))
            assert.deepStrictEqual(yield* h.parts.read(fa, 0, 50), original) // downloaded
            assert.deepStrictEqual(yield* h.parts.read(fa, 4096, 50), filled(50, 7)) // downloaded
            yield* h.parts.write(fa, 4096, filled(10, 1)) // a local change, never synced
            return [{ file: fa, part: p0, remote }, { file: fa, part: p1, remote: other }]
          })
        )
        yield* world.disk.control.crash
        yield* Effect.scoped(
          Effect.gen(function*() {
            const h = yield* makeHarness({ world })
            yield* h.parts.install(manifest, cp(3))
            // Both downloads survived whole; the unsynced change was lost with the crash (the WAL
            // replays it), so part 1 is again exactly the bucket's object: clean, not torn.
            assert.deepInclude(yield* mustState(h.parts, fa, p0), { status: "Loaded", dirty: false })
            assert.deepInclude(yield* mustState(h.parts, fa, p1), { status: "Loaded", dirty: false })
            assert.deepStrictEqual(yield* h.parts.read(fa, 0, 50), original)
            assert.deepStrictEqual(yield* h.parts.read(fa, 4096, 50), filled(50, 7))
            assert.strictEqual(h.control.gets, 0)
            yield* assertHealthy(h)
          })
        )
      }))

    it.effect("after a clean stop a local part file is kept only with the SHA-256 recorded for it; a rotted one is rebuilt", () =>
      Effect.gen(function*() {
        const world = yield* faultyWorld
        const fb = file("data/b")
        const newer = filled(40, 3)
        // First life: part 0 uploaded and clean, part 1 uploaded then rewritten (newer data, dirty),
        // part fb#0 never uploaded; the clean stop records every file's hash.
        const [manifest, hashes] = yield* Effect.scoped(
          Effect.gen(function*() {
            const h = yield* makeHarness({ world: world.world })
            yield* h.parts.write(fa, 0, filled(40, 1))
            yield* h.parts.write(fa, 4096, filled(40, 2))
            const uploaded: Array<InstallEntry> = []
            for (const entry of yield* h.parts.snapshot(cp(1))) {
              uploaded.push({ file: entry.file, part: entry.part, remote: yield* h.parts.ensureUploaded(entry, cp(1)) })
            }
            yield* h.parts.write(fa, 4096, newer)
            yield* h.parts.write(fb, 0, filled(40, 4))
            return [uploaded, new Map(yield* h.parts.localPartHashes)] as const
          })
        )
        assert.strictEqual(hashes.size, 3)
        const reopen = (recordedHashes: ReadonlyMap<string, string>) =>
          Effect.gen(function*() {
            const h = yield* makeHarness({ world: world.world })
            yield* h.parts.install(manifest, cp(2), { trustLocal: true, recordedHashes })
            return h
          })
        // Intact files: part 1 and fb#0 are kept as newer data, part 0 as a clean copy.
        yield* Effect.scoped(
          Effect.gen(function*() {
            const h = yield* reopen(hashes)
            assert.deepInclude(yield* mustState(h.parts, fa, p0), { status: "Loaded", dirty: false })
            assert.deepInclude(yield* mustState(h.parts, fa, p1), { status: "Loaded", dirty: true })
            assert.deepStrictEqual(yield* h.parts.read(fa, 4096, 40), newer)
            assert.deepStrictEqual(yield* h.parts.read(fb, 0, 40), filled(40, 4))
          })
        )
        // One flipped byte in each file: none is taken for newer data. Parts 0 and 1 fall back to
        // the bucket's objects (the WAL replay redoes part 1's newer write), fb#0 is gone.
        for (const path of [partPath(fa, p0), partPath(fa, p1), partPath(fb, p0)]) {
          yield* world.faults.flipByte(path, { offset: 7 })
        }
        yield* Effect.scoped(
          Effect.gen(function*() {
            const h = yield* reopen(hashes)
            assert.deepInclude(yield* mustState(h.parts, fa, p0), { status: "NotLoaded", dirty: false })
            assert.deepInclude(yield* mustState(h.parts, fa, p1), { status: "NotLoaded", dirty: false })
            assert.isUndefined(yield* stateOf(h.parts, fb, p0))
            assert.deepStrictEqual(yield* h.world.disk.disk.list("parts"), [])
            assert.deepStrictEqual(yield* h.parts.read(fa, 0, 40), filled(40, 1))
            assert.deepStrictEqual(yield* h.parts.read(fa, 4096, 40), filled(40, 2))
            yield* assertHealthy(h)
            yield* settle(h)
          })
        )
      }))

    it("part paths round-trip and foreign names are ignored", () => {
      const odd = file("dir/with space/ü")
      assert.deepStrictEqual(Option.getOrUndefined(parsePartPath(partPath(odd, part(12)))), [odd, part(12)])
      assert.strictEqual(partPath(fa, part(7)), "parts/data%2Fa/0000000007")
      for (
        const foreign of [
          "parts/x/12",
          "parts/x/0000000001.1.atomic-tmp",
          "other/x/0000000001",
          "parts/%E0%A4%A/0000000001",
          "parts/..%2F/0000000001"
        ]
      ) {
        assert.isTrue(Option.isNone(parsePartPath(foreign)), foreign)
      }
    })
  })

  // -------------------------------------------------------------------------------------------
  // The property: random concurrent schedules
  // -------------------------------------------------------------------------------------------

  type Op =
    | { readonly _tag: "Write"; readonly part: number }
    | { readonly _tag: "Hold"; readonly part: number; readonly write: boolean }
    | { readonly _tag: "Release" }
    | { readonly _tag: "Read"; readonly part: number }
    | { readonly _tag: "Schedule"; readonly part: number }
    | { readonly _tag: "Ensure"; readonly part: number }
    | { readonly _tag: "Evict"; readonly sweeps: number }
    | { readonly _tag: "FailPuts"; readonly count: number }
    | { readonly _tag: "FailGets"; readonly count: number }
    | { readonly _tag: "Interrupt"; readonly pick: number }
    | { readonly _tag: "Gate"; readonly operation: "get" | "put" }

  const partCount = 4
  const slotBytes = 16
  const anyPart = FastCheck.nat(partCount - 1)
  const opArbitrary: FastCheck.Arbitrary<Op> = FastCheck.oneof(
    { weight: 6, arbitrary: anyPart.map((index): Op => ({ _tag: "Write", part: index })) },
    {
      weight: 2,
      arbitrary: FastCheck.tuple(anyPart, FastCheck.boolean()).map(([index, write]): Op => ({
        _tag: "Hold",
        part: index,
        write
      }))
    },
    { weight: 2, arbitrary: FastCheck.constant<Op>({ _tag: "Release" }) },
    { weight: 2, arbitrary: anyPart.map((index): Op => ({ _tag: "Read", part: index })) },
    { weight: 3, arbitrary: anyPart.map((index): Op => ({ _tag: "Schedule", part: index })) },
    { weight: 2, arbitrary: anyPart.map((index): Op => ({ _tag: "Ensure", part: index })) },
    { weight: 4, arbitrary: FastCheck.integer({ min: 1, max: 3 }).map((sweeps): Op => ({ _tag: "Evict", sweeps })) },
    { weight: 1, arbitrary: FastCheck.integer({ min: 1, max: 2 }).map((count): Op => ({ _tag: "FailPuts", count })) },
    { weight: 1, arbitrary: FastCheck.integer({ min: 1, max: 2 }).map((count): Op => ({ _tag: "FailGets", count })) },
    { weight: 2, arbitrary: FastCheck.nat(1000).map((pick): Op => ({ _tag: "Interrupt", pick })) },
    {
      weight: 3,
      arbitrary: FastCheck.constantFrom("get" as const, "put" as const).map((operation): Op => ({
        _tag: "Gate",
        operation
      }))
    }
  )

  // Parts are spread over two files; each write goes to its own slot, so the final content of
  // every slot is known whatever the interleaving: the bytes of the one write that succeeded there.
  const target = (
    index: number
  ): readonly [FileId, PartIndex] => [index % 2 === 0 ? fa : file("data/b"), part(Math.floor(index / 2))]
  const slotOffset = (opIndex: number): number => ((opIndex * 37) % 256) * slotBytes
  const valueOf = (opIndex: number): Uint8Array => filled(slotBytes, (opIndex % 250) + 1)
  const initial = (index: number): Uint8Array =>
    Uint8Array.from({ length: 4096 }, (_, offset) => (offset * 7 + index * 31) % 251)

  const allowedFailures = new Set(["PartLoadFailed", "ObjectStoreRejected"])

  const runSchedule = (steps: ReadonlyArray<readonly [Op, number]>, yieldsPerRequest: number) =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const expected = new Map<number, Map<number, Uint8Array>>() // part → slot offset → bytes
      const record = (index: number, offset: number, bytes: Uint8Array) =>
        Effect.sync(() => {
          const slots = expected.get(index) ?? new Map<number, Uint8Array>()
          slots.set(offset, bytes)
          expected.set(index, slots)
        })

      const firstLife = Effect.gen(function*() {
        const h = yield* makeHarness({ world, config: { localBytesMax: 4096, queueCapacity: 8 } })
        // Every part starts in the bucket only (as after a restore): first leases download it.
        const installed: Array<InstallEntry> = []
        for (let index = 0; index < partCount; index++) {
          const [f, p] = target(index)
          installed.push({ file: f, part: p, remote: yield* seed(h, f, p, initial(index)) })
        }
        yield* h.parts.install(installed, cp(1))
        h.control.yieldsPerRequest = yieldsPerRequest
        const fibers: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
        const holds: Array<Deferred.Deferred<void>> = []
        let checkpoint = 0
        const problems: Array<string> = []

        const leaseAndWrite = (index: number, opIndex: number, hold: Deferred.Deferred<void> | undefined) => {
          const [f, p] = target(index)
          const offset = slotOffset(opIndex)
          const bytes = valueOf(opIndex)
          return Effect.scoped(
            Effect.gen(function*() {
              const lease = yield* h.parts.lease(f, p)
              // The write and its record are one step: an interruption lands before or after both.
              yield* Effect.uninterruptible(Effect.zipRight(lease.write(offset, bytes), record(index, offset, bytes)))
              if (hold !== undefined) yield* Deferred.await(hold)
            })
          )
        }

        const ops = steps.map(([op]) => op)
        for (const [opIndex, [op, turns]] of steps.entries()) {
          switch (op._tag) {
            case "Write":
              fibers.push(yield* Effect.fork(leaseAndWrite(op.part, opIndex, undefined)))
              break
            case "Hold": {
              const hold = yield* Deferred.make<void>()
              holds.push(hold)
              const [f, p] = target(op.part)
              fibers.push(
                yield* Effect.fork(
                  op.write
                    ? leaseAndWrite(op.part, opIndex, hold)
                    : Effect.scoped(Effect.zipRight(h.parts.lease(f, p), Deferred.await(hold)))
                )
              )
              break
            }
            case "Release": {
              const hold = holds.shift()
              if (hold !== undefined) yield* Deferred.succeed(hold, undefined)
              break
            }
            case "Read": {
              const [f, p] = target(op.part)
              fibers.push(yield* Effect.fork(leaseRead(h.parts, f, p, 64)))
              break
            }
            case "Schedule": {
              const [f, p] = target(op.part)
              fibers.push(yield* Effect.fork(h.parts.scheduleUpload(f, p)))
              break
            }
            case "Ensure": {
              checkpoint += 1
              if (checkpoint === 1) checkpoint = 2 // checkpoint 1 is the seeded one
              const [f, p] = target(op.part)
              const entries = yield* h.parts.snapshot(cp(checkpoint))
              const entry = entries.find((candidate) =>
                candidate.file === f && candidate.part === p && candidate.needsUpload
              )
              if (entry !== undefined) fibers.push(yield* Effect.fork(h.parts.ensureUploaded(entry, cp(checkpoint))))
              break
            }
            case "Evict":
              // A burst of sweeps: a part read just now needs two to cool down before the third evicts it.
              fibers.push(
                yield* Effect.fork(
                  Effect.reduce(
                    Array.from({ length: op.sweeps }),
                    0,
                    (evicted) => Effect.map(h.parts.evict, (report) => evicted + report.evictedParts)
                  )
                )
              )
              break
            case "FailPuts":
              h.control.failPuts += op.count
              break
            case "FailGets":
              h.control.failGets += op.count
              break
            case "Interrupt": {
              // One of the operations still running, wherever it is (waiting, loading, uploading).
              const running: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
              for (const fiber of fibers) if (!(yield* isDone(fiber))) running.push(fiber)
              const fiber = running[op.pick % Math.max(1, running.length)]
              if (fiber !== undefined) yield* Effect.fork(Fiber.interrupt(fiber))
              break
            }
            case "Gate": {
              // Closes the gate of GETs (PUTs), or opens it: requests pile up behind it meanwhile.
              const gate = op.operation === "get" ? h.control.getGate : h.control.putGate
              if (gate !== undefined) yield* Deferred.succeed(gate, undefined)
              const next = gate === undefined ? yield* Deferred.make<void>() : undefined
              if (op.operation === "get") h.control.getGate = next
              else h.control.putGate = next
              break
            }
          }
          // Let the forked operations, the workers and the loads advance a random number of turns.
          yield* Effect.repeatN(Effect.yieldNow(), turns)
          for (const problem of yield* h.parts.invariantProblems) {
            problems.push(`after op ${opIndex} ${op._tag}: ${problem}`)
          }
        }
        for (const hold of holds) yield* Deferred.succeed(hold, undefined)
        for (const gate of [h.control.getGate, h.control.putGate]) {
          if (gate !== undefined) yield* Deferred.succeed(gate, undefined)
        }
        h.control.getGate = undefined
        h.control.putGate = undefined
        // Everything ends by itself: no wait depends on time, so a fiber still running is a hang.
        const allDone = Effect.map(Effect.forEach(fibers, isDone), (done) => done.every(Boolean))
        const ended = yield* settleUntil(allDone, 50_000)
        assert.isTrue(ended, `hung fibers after schedule ${JSON.stringify(ops)}`)
        for (const fiber of fibers) {
          const exit = yield* Fiber.await(fiber)
          if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) {
            const error = failureOf(exit) as { readonly _tag?: string } | undefined
            assert.isTrue(
              error !== undefined && allowedFailures.has(error._tag ?? ""),
              `unexpected outcome ${Cause.pretty(exit.cause)}`
            )
          }
        }
        // Loads and uploads end by themselves too (a load fiber commits its transition a turn after
        // its task completes).
        const quiet = Effect.zipWith(
          h.queue.stats,
          h.parts.stats,
          (queue, parts) => queue.depth + queue.inFlight + parts.loading + parts.evicting === 0
        )
        assert.isTrue(yield* settleUntil(quiet, 50_000), "loads or uploads never ended")
        assert.deepStrictEqual(problems, [])
        assert.deepInclude(yield* h.parts.stats, { leasesHeld: 0, loading: 0, evicting: 0 })
        // Invariant 2: never two downloads of a part at once; invariant 3: never two uploads.
        assert.isAtMost(h.control.maxConcurrentGetsPerPart, 1)
        assert.isAtMost(h.control.maxConcurrentPutsPerPart, 1)
        // Heal and checkpoint everything: then every part is clean and its remote is its content.
        h.control.failPuts = 0
        h.control.failGets = 0
        const entries = yield* h.parts.snapshot(cp(checkpoint + 2))
        const manifest: Array<InstallEntry> = []
        for (const entry of entries) {
          const remote = entry.needsUpload ? yield* h.parts.ensureUploaded(entry, cp(checkpoint + 2)) : entry.remote
          if (remote !== undefined) manifest.push({ file: entry.file, part: entry.part, remote })
        }
        assert.strictEqual((yield* h.parts.stats).dirty, 0)
        yield* assertContent(h.parts)
        yield* h.shutdownWorkers
        return manifest
      })

      const assertContent = (parts: PartTableService) =>
        Effect.forEach(
          Array.from({ length: partCount }, (_, index) => index),
          (index) =>
            Effect.gen(function*() {
              const [f, p] = target(index)
              const actual = yield* parts.read(f, p * 4096, 4096)
              const wanted = initial(index)
              for (const [offset, bytes] of expected.get(index) ?? []) wanted.set(bytes, offset)
              assert.deepStrictEqual(actual, wanted, `content of part ${index}`)
            }),
          { discard: true }
        )

      const manifest = yield* Effect.scoped(firstLife)
      // Invariant 7: reopen the same directory; then restore from the bucket alone.
      const reopenedWorld: World = world
      const restoredWorld: World = { disk: yield* MemoryDisk.make, bucket: world.bucket }
      for (const each of [reopenedWorld, restoredWorld]) {
        yield* Effect.scoped(
          Effect.gen(function*() {
            const h = yield* makeHarness({ world: each })
            yield* h.parts.install(manifest, cp(1000))
            assert.deepInclude(yield* h.parts.stats, { loading: 0, evicting: 0, dirty: 0 })
            yield* assertContent(h.parts)
            yield* assertHealthy(h)
          })
        )
      }
    })

  it.effect.prop(
    "random concurrent schedules keep invariants 1-3 and 7 and lose no byte",
    [
      FastCheck.array(FastCheck.tuple(opArbitrary, FastCheck.nat(40)), { minLength: 10, maxLength: 60 }),
      FastCheck.integer({ min: 1, max: 8 })
    ],
    ([steps, yieldsPerRequest]) => runSchedule(steps, yieldsPerRequest),
    { fastCheck: { numRuns: 50 } }
  )
})
