/**
 * Goal: the workload performs inserts as "apply, then log, then commit", keeps per page the
 * acknowledged inserts a verification may require (also after pruning), partitions pages among
 * writers, and stops within its grace whatever the storage does. Method: an in-memory fake of the
 * three storage calls it uses, whose commit completes a Deferred after N inserts (no sleeps), and
 * verifyPages over that fake.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { ShuttingDown } from "../../src/domain/Errors.js"
import { lsn as makeLsn } from "../../src/domain/Ids.js"
import * as Page from "../../src/workload/Page.js"
import * as Verify from "../../src/workload/Verify.js"
import * as Workload from "../../src/workload/Workload.js"

const shape = { writers: 3, files: 2, pagesPerFile: 8 }

/** An in-memory storage: files as byte maps, a WAL as a list of records, an order log. */
const fakeStorage = (options: { readonly commitsUntilSignal: number; readonly reached: Deferred.Deferred<void> }) => {
  const files = new Map<string, Uint8Array>()
  const wal: Array<Uint8Array> = []
  const order: Array<string> = []
  let commits = 0
  const storage: Workload.WorkloadStorage & Pick<import("../../src/layers/Storage.js").StorageService, "read"> = {
    write: (file, offset, bytes) =>
      Effect.sync(() => {
        const existing = files.get(file) ?? new Uint8Array(shape.pagesPerFile * Page.pageBytes)
        existing.set(bytes, offset)
        files.set(file, existing)
        order.push(`write ${file}@${offset}`)
      }),
    append: (record) =>
      Effect.sync(() => {
        wal.push(record)
        order.push("append")
        return makeLsn(wal.length * 100)
      }),
    commit: Effect.suspend(() => {
      order.push("commit")
      commits++
      return commits === options.commitsUntilSignal ? Deferred.succeed(options.reached, undefined) : Effect.void
    }).pipe(Effect.asVoid),
    read: (file, offset, length) =>
      Effect.sync(() =>
        (files.get(file) ?? new Uint8Array(shape.pagesPerFile * Page.pageBytes)).slice(offset, offset + length)
      )
  }
  return { storage, files, wal, order }
}

describe("Workload", () => {
  it.live("performs acknowledged inserts that verify, in apply-log-commit order", () =>
    Effect.gen(function*() {
      const reached = yield* Deferred.make<void>()
      const fake = fakeStorage({ commitsUntilSignal: 300, reached })
      const ledger = new Workload.Ledger(shape)
      const running = yield* Workload.start(fake.storage, ledger)
      yield* Deferred.await(reached)
      assert.strictEqual(yield* running.stop(1_000), 0)
      const counters = ledger.counters()
      assert.isAtLeast(counters.acknowledged, 300)
      assert.strictEqual(counters.failed, 0)
      assert.strictEqual(counters.bytesWritten, counters.attempted * Page.pageBytes)
      assert.strictEqual(fake.order[0]?.startsWith("write"), true)
      assert.strictEqual(fake.order[1], "append")
      assert.strictEqual(fake.order[2], "commit")
      // Every record decodes to a page its writer owns.
      for (const record of fake.wal) {
        const id = Page.decodeRecord(record)
        assert.strictEqual(id._tag, "Right")
      }
      const result = yield* Verify.verifyPages(fake.storage, ledger, { requiredBelowLsn: undefined, concurrency: 2 })
      assert.isTrue(result.ok, JSON.stringify(result.examples))
      assert.strictEqual(result.pagesChecked, shape.files * shape.pagesPerFile)
      assert.isAbove(result.pagesRequired, 0)
    }))

  it.live("verification catches a lost acknowledged write", () =>
    Effect.gen(function*() {
      const reached = yield* Deferred.make<void>()
      const fake = fakeStorage({ commitsUntilSignal: 100, reached })
      const ledger = new Workload.Ledger(shape)
      const running = yield* Workload.start(fake.storage, ledger)
      yield* Deferred.await(reached)
      yield* running.stop(1_000)
      // Lose one acknowledged page: zero it, as a checkpoint that forgot it would.
      let lost: { file: number; page: number } | undefined
      for (let globalPage = 0; globalPage < ledger.totalPages && lost === undefined; globalPage++) {
        if (ledger.acknowledgedLastOf(globalPage) > 0) {
          lost = { file: Math.floor(globalPage / shape.pagesPerFile), page: globalPage % shape.pagesPerFile }
        }
      }
      assert.isDefined(lost)
      fake.files.get(Workload.fileIdOf(lost.file))?.fill(
        0,
        lost.page * Page.pageBytes,
        (lost.page + 1) * Page.pageBytes
      )
      const result = yield* Verify.verifyPages(fake.storage, ledger, { requiredBelowLsn: undefined, concurrency: 1 })
      assert.isFalse(result.ok)
      assert.strictEqual(result.mismatches, 1)
      assert.deepStrictEqual([result.examples[0]?.file, result.examples[0]?.page], [lost.file, lost.page])
      // Under a bound below every LSN, nothing is required and zeros are fine.
      const bounded = yield* Verify.verifyPages(fake.storage, ledger, { requiredBelowLsn: 0, concurrency: 1 })
      assert.isTrue(bounded.ok)
      assert.strictEqual(bounded.pagesRequired, 0)
    }))

  it.live("stops writers stuck in the storage by interrupting them after the grace", () =>
    Effect.gen(function*() {
      const ledger = new Workload.Ledger(shape)
      const stuck: Workload.WorkloadStorage = {
        write: () => Effect.never,
        append: () => Effect.never,
        commit: Effect.never
      }
      const running = yield* Workload.start(stuck, ledger)
      const interrupted = yield* running.stop(20)
      assert.strictEqual(interrupted, shape.writers)
      yield* running.done
      assert.strictEqual(ledger.counters().acknowledged, 0)
      assert.strictEqual(ledger.counters().attempted, shape.writers)
    }))

  it.live("counts failures and ends a writer on ShuttingDown", () =>
    Effect.gen(function*() {
      const ledger = new Workload.Ledger({ ...shape, writers: 2 })
      const closing: Workload.WorkloadStorage = {
        write: () => Effect.fail(new ShuttingDown({ operation: "write" })),
        append: () => Effect.die("unreachable"),
        commit: Effect.void
      }
      const running = yield* Workload.start(closing, ledger)
      const ended = yield* running.done.pipe(Effect.timeout("2 seconds"), Effect.option)
      assert.strictEqual(ended._tag, "Some")
      assert.deepStrictEqual(ledger.counters().failures, { ShuttingDown: 2 })
      yield* running.stop(10)
    }))

  it("requires the last insert below a bound, also after pruning", () => {
    const ledger = new Workload.Ledger({ writers: 1, files: 1, pagesPerFile: 2 })
    const ids = [ledger.attempt(0), ledger.attempt(0), ledger.attempt(0), ledger.attempt(0)]
    ids.forEach((id, index) => ledger.acknowledge(0, id, (index + 1) * 100))
    assert.strictEqual(ledger.requiredOf(0, undefined), ids[3])
    assert.strictEqual(ledger.requiredOf(0, 100), 0)
    assert.strictEqual(ledger.requiredOf(0, 101), ids[0])
    assert.strictEqual(ledger.requiredOf(0, 350), ids[2])
    ledger.prune(250)
    assert.strictEqual(ledger.requiredOf(0, 250), ids[1])
    assert.strictEqual(ledger.requiredOf(0, 301), ids[2])
    assert.strictEqual(ledger.requiredOf(0, 10_000), ids[3])
    assert.throws(() => ledger.requiredOf(0, 100))
    assert.strictEqual(ledger.requiredOf(1, undefined), 0)
    assert.throws(() => ledger.acknowledge(0, ids[1] ?? 0, 999))
  })

  it("partitions pages among writers without overlap", () => {
    for (const [total, writers] of [[16, 3], [8, 8], [5, 2], [1, 1]] as const) {
      let sum = 0
      for (let writer = 0; writer < writers; writer++) sum += Workload.ownedPageCount(total, writers, writer)
      assert.strictEqual(sum, total)
    }
    assert.strictEqual(Workload.fileIndexOf(Workload.fileIdOf(3)), 3)
    assert.isUndefined(Workload.fileIndexOf("other"))
  })

  it.effect("a writer fiber is interruptible even when started from an uninterruptible region", () =>
    Effect.gen(function*() {
      const ledger = new Workload.Ledger(shape)
      const stuck: Workload.WorkloadStorage = {
        write: () => Effect.never,
        append: () => Effect.never,
        commit: Effect.never
      }
      const running = yield* Effect.uninterruptible(Workload.start(stuck, ledger))
      const fiber = yield* Effect.fork(running.stop(0))
      yield* Effect.yieldNow()
      const interrupted = yield* Fiber.join(fiber)
      assert.strictEqual(interrupted, shape.writers)
    }))
})
