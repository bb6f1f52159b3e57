/**
 * Goal: the run's body, in process (fast, no spawned CLI): a clean run verifies every acknowledged
 * insert; a stop request ends the workload early and skips verify, saying so; a bucket that stalls
 * at shutdown still gives a report within the deadline, verified up to the archived WAL; a start-up
 * refusal is a StartFailed naming the reason. Method: Run.run over an in-memory bucket (with the
 * fault decorator) and in-memory disks, with a real clock and short durations.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Exit, Layer, Option, Ref, Schema } from "effect"
import type { Output } from "../../src/cli/Output.js"
import * as Report from "../../src/cli/Report.js"
import { ObjectStoreRejected } from "../../src/domain/Errors.js"
import * as FaultyObjectStore from "../../src/layers/FaultyObjectStore.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import { ObjectStore, type ObjectStoreService } from "../../src/services/ObjectStore.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as Faults from "../../src/workload/Faults.js"
import * as Run from "../../src/workload/Run.js"

const configOf = (deadlineMs: number): StorageConfig.StorageConfigValue => {
  const validated = StorageConfig.validate({
    checkpointIntervalMs: 300,
    partSizeBytes: 64 * 1024,
    walSegmentBytes: 64 * 1024,
    shutdownDeadlineMs: deadlineMs,
    shutdownCheckpointDeadlineMs: Math.floor((deadlineMs * 2) / 3),
    drainDeadlineMs: Math.floor(deadlineMs / 5),
    requestTimeoutMs: 500
  })
  if (validated._tag === "Left") throw new Error(validated.left.message)
  return validated.right
}

const silent: Output = { stdout: () => Effect.void, stderr: () => Effect.void, isTty: false }

/** A store over one in-memory bucket, with the fault decorator when a plan is given. */
const memoryStore = (plan: Faults.FaultPlan) =>
  Effect.gen(function*() {
    const state = yield* MemoryObjectStore.makeBucket("run")
    const plain: Layer.Layer<ObjectStore> = Layer.effect(ObjectStore, Effect.succeed(MemoryObjectStore.storeOf(state)))
    const controller = yield* FaultyObjectStore.makeController()
    const store: Run.RunStore = {
      layer: Faults.isEmpty(plan) ? plain : FaultyObjectStore.layer(controller).pipe(Layer.provide(plain)),
      plainLayer: plain,
      arm: plan.stallAfterMs === undefined ? Effect.void : Effect.asVoid(controller.stallAfter(plan.stallAfterMs)),
      stallNow: Effect.asVoid(controller.stall()),
      faultStats: Faults.isEmpty(plan) ? Effect.succeed(undefined) : controller.stats,
      description: "memory://run"
    }
    return store
  })

const options = (deadlineMs: number, faults: Faults.FaultPlan): Run.RunOptions => ({
  durationMs: 700,
  writers: 3,
  files: 2,
  fileBytes: 256 * 1024,
  config: configOf(deadlineMs),
  faults,
  verify: true,
  json: true,
  dataDirectory: "memory:data",
  restoreDirectory: Effect.succeed("memory:restore")
})

const memoryDisk = () => MemoryDisk.layer

describe("Run.run", () => {
  it.live("a clean run verifies every acknowledged insert", () =>
    Effect.gen(function*() {
      const stop = yield* Deferred.make<string>()
      const report = yield* Run.run(
        options(5_000, Faults.none),
        yield* memoryStore(Faults.none),
        memoryDisk,
        silent,
        stop
      )
      assert.isTrue(report.ok, report.problems.join("; "))
      assert.deepStrictEqual(Schema.decodeUnknownSync(Report.RunReport)(JSON.parse(JSON.stringify(report))), report)
      assert.isAbove(report.inserts.acknowledged, 0)
      // "none": a periodic checkpoint that ran after the writers stopped already covered everything.
      assert.include(["completed", "none"], report.shutdown.finalCheckpoint)
      assert.isAtLeast(report.checkpoints.last, 1)
      assert.isTrue(report.shutdown.lockReleased)
      assert.strictEqual(report.verify.mode, "every-acknowledged")
      assert.isTrue(report.verify.ok)
      assert.strictEqual(report.verify.pagesChecked, 2 * 32)
      assert.isAbove(report.verify.pagesRequired, 0)
      assert.strictEqual(report.faults, null)
    }))

  it.live("a stop request ends the workload early and skips verify, saying why", () =>
    Effect.gen(function*() {
      const stop = yield* Deferred.make<string>()
      yield* Deferred.succeed(stop, "SIGTERM")
      const report = yield* Run.run(
        { ...options(5_000, Faults.none), durationMs: 60_000 },
        yield* memoryStore(Faults.none),
        memoryDisk,
        silent,
        stop
      )
      assert.strictEqual(report.interruptedBy, "SIGTERM")
      assert.isBelow(report.elapsedMs, 5_000)
      assert.isFalse(report.verify.ran)
      assert.include(report.verify.skipped ?? "", "SIGTERM")
      assert.isTrue(report.shutdown.metDeadline)
    }))

  it.live("a bucket that stalls at shutdown still gives a bounded report, verified up to the archived WAL", () =>
    Effect.gen(function*() {
      const plan: Faults.FaultPlan = { ...Faults.none, stallAtShutdown: true }
      const stop = yield* Deferred.make<string>()
      const stderr: Array<string> = []
      const collecting: Output = { ...silent, stderr: (text) => Effect.sync(() => void stderr.push(text)) }
      const report = yield* Run.run(options(1_500, plan), yield* memoryStore(plan), memoryDisk, collecting, stop)
      // The progress line goes on through the stalled shutdown, naming it against its deadline.
      assert.isTrue(stderr.some((text) => /^shutting down \S+ of 1\.5s \|/.test(text)), stderr.join(""))
      assert.isTrue(report.shutdown.returned)
      assert.isAtMost(report.shutdown.durationMs, report.shutdown.deadlineMs + Run.shutdownGraceMs)
      assert.notStrictEqual(report.shutdown.finalCheckpoint, "completed")
      assert.isAbove(report.faults?.injected["stall"] ?? 0, 0)
      assert.strictEqual(report.verify.mode, "archived-wal")
      assert.isTrue(report.verify.ok, JSON.stringify(report.verify))
    }))

  it.live("a refused start-up is a StartFailed that names the reason", () =>
    Effect.gen(function*() {
      const stop = yield* Deferred.make<string>()
      const store = yield* memoryStore(Faults.none)
      const plain = yield* Layer.build(store.plainLayer).pipe(
        Effect.map((context) => Context.get(context, ObjectStore)),
        Effect.scoped
      )
      const gone = new ObjectStoreRejected({ operation: "probe", code: "NoSuchBucket", detail: "the bucket is gone" })
      const failing: Run.RunStore = {
        ...store,
        layer: Layer.succeed(ObjectStore, { ...plain, probe: Effect.fail(gone) })
      }
      const exit = yield* Effect.exit(Run.run(options(5_000, Faults.none), failing, memoryDisk, silent, stop))
      // A failure, not a defect: a Die here would be a crash the program reports as an internal error.
      assert(Exit.isFailure(exit), "the run started")
      const failure = Cause.failureOption(exit.cause)
      assert(Option.isSome(failure), `not a typed failure: ${Cause.pretty(exit.cause)}`)
      assert.instanceOf(failure.value, Run.StartFailed)
      assert.include(failure.value.message, "the bucket is gone")
    }))

  it.live("the restore-and-verify step writes nothing to the bucket but its reader lease, after a clean run and after a stalled one", () =>
    Effect.gen(function*() {
      for (
        const plan of [Faults.none, { ...Faults.none, stallAtShutdown: true }] satisfies ReadonlyArray<Faults.FaultPlan>
      ) {
        const stop = yield* Deferred.make<string>()
        const store = yield* memoryStore(plan)
        // The verify step's own view of the bucket, recording every write it makes.
        const writes = yield* Ref.make<ReadonlyArray<string>>([])
        const plain = yield* Layer.build(store.plainLayer).pipe(
          Effect.map((context) => Context.get(context, ObjectStore)),
          Effect.scoped
        )
        const recorded: ObjectStoreService = {
          ...plain,
          put: (key, bytes, putOptions) =>
            Effect.zipRight(Ref.update(writes, (list) => [...list, `put ${key}`]), plain.put(key, bytes, putOptions)),
          delete: (key) => Effect.zipRight(Ref.update(writes, (list) => [...list, `delete ${key}`]), plain.delete(key))
        }
        const report = yield* Run.run(
          options(1_500, plan),
          { ...store, plainLayer: Layer.succeed(ObjectStore, recorded) },
          memoryDisk,
          silent,
          stop
        )
        assert.isTrue(report.verify.ran, JSON.stringify(report.verify))
        assert.isTrue(report.verify.ok, JSON.stringify(report.verify))
        const written = yield* Ref.get(writes)
        assert.isTrue(
          written.length > 0 && written.every((entry) => /^(put|delete) leases\//.test(entry)),
          JSON.stringify(written)
        )
        assert.strictEqual(written.filter((entry) => entry.startsWith("delete")).length, 1)
      }
    }))
})
