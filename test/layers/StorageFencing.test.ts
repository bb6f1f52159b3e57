/**
 * Goal: one writer per bucket and per data directory, whatever the operator does: a take-over while
 * the old writer runs (and the new owner then shuts down cleanly), a second open of a running
 * directory, a run on a copy of it, a restart after a crash, lost responses to the lock's requests,
 * a start-up that fails after taking the lock. A fenced writer acknowledges nothing and its shutdown
 * report names what only it holds. Method: the composed Storage layer over the in-memory bucket and
 * disks (test/support/StorageHarness.ts, 50 ms lock renewals, 400 ms lease), real time.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Option } from "effect"
import * as Control from "../../src/domain/Control.js"
import * as Ids from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as FaultyObjectStore from "../../src/layers/FaultyObjectStore.js"
import type * as Storage from "../../src/layers/Storage.js"
import * as Loader from "../../src/services/Loader.js"
import * as H from "../support/StorageHarness.js"

const fileA = Ids.fileId("db/a")
const layout = KeyLayout.make("")
const lockKey = KeyLayout.lockKey(layout)
const encoder = new TextEncoder()

const lockIn = (bucket: H.Bucket) =>
  Effect.flatMap(
    bucket.inspect.read(lockKey),
    (bytes) => (Option.isNone(bytes) ? Effect.succeed(undefined) : Control.decodeLock(lockKey, bytes.value))
  )

const insert = (storage: Storage.StorageService, text: string) =>
  Effect.zipRight(storage.append(encoder.encode(text.padStart(64, "."))), storage.commit)

/** A copy of a data directory, as `cp -r` or a restored VM snapshot makes it. */
const copyOf = (from: H.Disk) =>
  Effect.gen(function*() {
    const to = yield* H.makeDisk
    for (const path of yield* from.disk.list("")) {
      const bytes = yield* from.disk.readAll(path)
      if (Option.isSome(bytes)) yield* to.disk.writeAtomic(path, bytes.value)
    }
    return to
  })

describe("Storage: a writer taken over while it runs", () => {
  it.live("stays fenced after the new owner shut down and deleted the lock: its WAL does not overwrite the new owner's, and its report names what is only local", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* Effect.scoped(
        Effect.gen(function*() {
          // No renewal during the test: only the archive's own check can see the take-over.
          const a =
            (yield* H.open(bucket, yield* H.makeDisk, { lockRenewIntervalMs: 60_000, lockLeaseMs: 180_000 })).storage
          for (let index = 0; index < 5; index++) yield* insert(a, `a${index}`)
          const ownersEpoch = yield* H.withStorage(
            bucket,
            yield* H.makeDisk,
            (b) => Effect.as(insert(b, "b0"), b.epoch),
            { takeOver: true }
          )
          assert.isUndefined(yield* lockIn(bucket), "the new owner shut down cleanly")
          const walKey0 = KeyLayout.walKey(layout, Ids.segmentNumber(0), Ids.epoch(ownersEpoch))
          const ownersWal = yield* bucket.inspect.read(walKey0)
          assert.isTrue(Option.isSome(ownersWal))
          const report = yield* a.shutdown
          assert.deepStrictEqual(
            yield* bucket.inspect.read(walKey0),
            ownersWal,
            "the stale writer's segment did not replace the new owner's"
          )
          assert.strictEqual(report.lock, "left-fenced")
          assert.isDefined(report.wal.localOnly, "the records only the stale writer holds are reported")
          assert.strictEqual(report.wal.localOnly?.toLsn, report.wal.endLsn)
        })
      )
    }))

  it.live("stops acknowledging within the renewal bound: a writer that keeps committing fails with Fenced", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* Effect.scoped(
        Effect.gen(function*() {
          const a = (yield* H.open(bucket, yield* H.makeDisk)).storage
          yield* insert(a, "before")
          yield* H.open(bucket, yield* H.makeDisk, { takeOver: true }) // B stays open
          let acknowledged = 0
          const writer = Effect.forever(
            Effect.zipRight(insert(a, `after${acknowledged}`), Effect.sync(() => void acknowledged++))
          )
          const stopped = yield* Effect.flip(writer).pipe(Effect.timeout(Duration.seconds(3)), Effect.option)
          assert.isTrue(
            Option.isSome(stopped),
            `the stale writer was never told: ${acknowledged} commits acknowledged after the take-over`
          )
          if (Option.isSome(stopped)) assert.strictEqual(stopped.value._tag, "Fenced")
          assert.strictEqual((yield* Effect.flip(a.commit))._tag, "Fenced", "and it stays fenced")
          assert.strictEqual((yield* Effect.flip(a.append(encoder.encode("late"))))._tag, "Fenced")
        })
      )
    }))
})

describe("Storage: one record of the fence", () => {
  it.live("a fence seen by a lock renewal alone is the checkpointer's too: its stats say fenced and its checkpoint fails with Fenced, sending nothing", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* Effect.scoped(
        Effect.gen(function*() {
          const a = (yield* H.open(bucket, yield* H.makeDisk)).storage
          yield* H.open(bucket, yield* H.makeDisk, { takeOver: true }) // B stays open
          // Only A's renewals read the lock (every 50 ms): wait until one of them saw the take-over.
          const fenced = yield* Effect.flip(
            a.commit.pipe(Effect.zipRight(Effect.sleep(Duration.millis(10))), Effect.forever)
          ).pipe(Effect.timeout(Duration.seconds(3)))
          assert.strictEqual(fenced._tag, "Fenced")
          assert.isTrue((yield* a.stats).checkpoints.fenced, "the checkpointer reads the same fence")
          const keysBefore = yield* bucket.inspect.keys
          assert.strictEqual((yield* Effect.flip(a.checkpoint))._tag, "Fenced")
          assert.deepStrictEqual(yield* bucket.inspect.keys, keysBefore, "the fenced checkpoint wrote nothing")
        })
      )
    }))
})

describe("Storage: one open per data directory, one generation per bucket", () => {
  it.live("a second open of a running data directory is refused with DirectoryLocked, and admitted once the first closed", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const disk = yield* H.makeDisk
      yield* H.withStorage(bucket, disk, () =>
        Effect.gen(function*() {
          const second = yield* Effect.flip(H.withStorage(bucket, disk, () => Effect.void))
          assert.strictEqual(second._tag, "DirectoryLocked")
        }))
      yield* H.withStorage(bucket, disk, () => Effect.void)
    }))

  it.live("a run on a copy of a live data directory is refused while the original renews; a restart after a crash comes up without takeOver once the lease ran out", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const disk = yield* H.makeDisk
      const originalFaults = yield* FaultyObjectStore.makeController({ seed: 3 })
      yield* Effect.scoped(
        Effect.gen(function*() {
          const original = (yield* H.open(bucket, disk, {}, {}, originalFaults)).storage
          yield* original.write(fileA, 0, H.pattern(1, 100))
          yield* original.checkpoint
          const copy = yield* copyOf(disk)
          const refused = yield* Effect.flip(H.withStorage(bucket, copy, () => Effect.void))
          assert.strictEqual(refused._tag, "BucketLocked", String(refused))
          // The original "crashes": it no longer reaches the bucket, and its process is gone.
          yield* originalFaults.stall()
          yield* disk.control.crash
          const [epoch, plan, bytes] = yield* H.withStorage(
            bucket,
            disk,
            (restarted) =>
              Effect.all([
                Effect.succeed(restarted.epoch),
                Effect.succeed(restarted.opened.plan),
                restarted.read(fileA, 0, 100)
              ])
          )
          assert.isAbove(epoch, original.epoch)
          assert.strictEqual(plan, "Reopen")
          assert.deepStrictEqual(bytes, H.pattern(1, 100))
        })
      )
    }))
})

describe("Storage: a new owner of a bucket another instance wrote", () => {
  it.live("restarts on its base even when it never committed a checkpoint of its own", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* H.withStorage(bucket, yield* H.makeDisk, (a) =>
        Effect.asVoid(Effect.zipRight(a.write(fileA, 0, H.pattern(7, 100)), a.checkpoint)))
      assert.isUndefined(yield* lockIn(bucket), "the first owner released the bucket")
      // A new directory opens the released bucket (no take-over needed) and logs a record; its own
      // checkpoints then fail, so what it committed is only in its WAL.
      const disk = yield* H.makeDisk
      const faults = yield* FaultyObjectStore.makeController({ seed: 5 })
      const instance = yield* Effect.scoped(
        Effect.gen(function*() {
          const c = (yield* H.open(bucket, disk, {}, {}, faults)).storage
          yield* insert(c, "c0")
          yield* faults.failPermanently({ operations: ["put"], keyPrefix: "checkpoints/" })
          return c.instanceId
        })
      )
      yield* faults.heal
      const [plan, base] = yield* H.withStorage(bucket, disk, (restarted) =>
        Effect.succeed([restarted.opened.plan, restarted.opened.base?.manifest] as const))
      assert.strictEqual(plan, "Reopen")
      assert.strictEqual(base?.checkpoint, 1, "opened from the checkpoint it was restored from")
      assert.notStrictEqual(base?.instanceId, instance, "written by the first owner")
    }))

  it.live("a take-over whose claim's responses are all lost reads the claim back: it starts, with exactly one claim", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* Effect.scoped(
        Effect.gen(function*() {
          const a = (yield* H.open(bucket, yield* H.makeDisk)).storage
          yield* a.write(fileA, 0, H.pattern(8, 100))
          assert.strictEqual((yield* a.checkpoint).checkpoint, 1)
          const faults = yield* FaultyObjectStore.makeController({ seed: 6 })
          yield* faults.lostResponse({ operations: ["put"], keyPrefix: "checkpoints/" })
          const b = (yield* H.open(bucket, yield* H.makeDisk, { takeOver: true }, {}, faults)).storage
          assert.strictEqual(b.opened.base?.manifest.checkpoint, 2, "the claim is checkpoint 2")
          assert.isTrue(
            Option.isNone(yield* bucket.inspect.read(KeyLayout.checkpointKey(layout, Ids.checkpointNumber(3)))),
            "one claim, not one per lost answer"
          )
        })
      )
    }))
})

describe("Storage: the lock's unknown outcomes and failed start-ups", () => {
  it.live("a fresh start whose lock PUT responses are all lost comes up; one that fails leaves its instance id in the directory, so the next start is not refused", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      yield* bucket.faults.lostResponse({ operations: ["put"], keyPrefix: lockKey })
      const instanceId = yield* H.withStorage(
        bucket,
        yield* H.makeDisk,
        (storage) => Effect.succeed(storage.instanceId)
      )
      assert.isString(instanceId)
      yield* bucket.faults.heal
      // The same, with the lock unreadable as well: the start fails, its lock may exist.
      const other = yield* H.makeBucket
      yield* other.faults.lostResponse({ operations: ["put"], keyPrefix: lockKey })
      yield* other.faults.failPermanently({ operations: ["get"], keyPrefix: lockKey })
      const disk = yield* H.makeDisk
      yield* Effect.flip(H.withStorage(other, disk, () => Effect.void))
      yield* other.faults.heal
      const left = yield* lockIn(other)
      assert.isDefined(left, "the lock landed")
      const control = yield* Effect.flatMap(
        disk.disk.readAll(Loader.controlPath),
        (bytes) =>
          Option.isNone(bytes) ? Effect.succeed(undefined) : Control.decodeControl(Loader.controlPath, bytes.value)
      )
      assert.strictEqual(control?.instanceId, left?.instanceId, "the directory knows the instance the lock names")
      const reopened = yield* H.withStorage(other, disk, (storage) => Effect.succeed(storage.instanceId))
      assert.strictEqual(reopened, left?.instanceId)
    }))

  it.live("a lost response to the lock's DELETE at shutdown is reported released, the lock being gone", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const report = yield* H.withStorage(
        bucket,
        yield* H.makeDisk,
        (storage) =>
          Effect.zipRight(bucket.faults.lostResponse({ operations: ["delete"], keyPrefix: lockKey }), storage.shutdown)
      )
      assert.strictEqual(report.lock, "released")
      assert.isUndefined(yield* lockIn(bucket))
    }))

  it.live("a start-up that fails after taking the lock releases it, and the directory", () =>
    Effect.gen(function*() {
      const bucket = yield* H.makeBucket
      const disk = yield* H.makeDisk
      yield* H.withStorage(bucket, disk, (storage) => insert(storage, "one"))
      // The WAL cannot be read: start-up fails after the Loader took the lock.
      yield* disk.control.failNext({ operation: "list", pathPrefix: "wal" })
      const exit = yield* Effect.exit(Effect.scoped(H.open(bucket, disk)))
      assert.isTrue(Exit.isFailure(exit))
      assert.isUndefined(yield* lockIn(bucket), "the lock was released")
      const wal = yield* H.withStorage(bucket, disk, () => Effect.void).pipe(
        Effect.zipRight(Effect.succeed("reopened"))
      )
      assert.strictEqual(wal, "reopened")
    }))
})
