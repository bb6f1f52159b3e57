/**
 * The insert workload of the CLI's `run`, and its own record of what was acknowledged.
 *
 * W writer fibers perform inserts until told to stop. An insert of page p of file f:
 *   1. takes the next insert id and records it as attempted for (f, p);
 *   2. writes the 8 KiB page (src/workload/Page.ts) through `storage.write` (part leases);
 *   3. appends its 20-byte WAL record (`storage.append`) — "apply, then log": the checkpointer reads
 *      the WAL position before its snapshot and relies on every record below it being applied;
 *   4. commits (`storage.commit`, group commit): now the insert is acknowledged, and the ledger
 *      records its id and LSN for (f, p).
 * Writer w owns the pages whose global index (f · pagesPerFile + p) is w modulo W, so per page the
 * WAL order is the write order and acknowledged ids increase.
 *
 * The ledger keeps, per page, the highest attempted id and the acknowledged (id, LSN) pairs that a
 * verification may still need: given a bound B, the page must hold at least the last insert
 * acknowledged with an LSN below B. Pairs below a known lower bound of B (the archived WAL position
 * seen during the run) are pruned to the last one, so memory stays bounded on long runs.
 *
 * Replaces: the original report's ~1000 s of `INSERT`s into a PostgreSQL table (docs/ORIGINAL.md §8).
 *
 * @since 0.1.0
 */
import { Duration, Effect, Fiber, Random, Ref } from "effect"
import type { FileId, Lsn } from "../domain/Ids.js"
import { fileId } from "../domain/Ids.js"
import type { StorageService } from "../layers/Storage.js"
import * as Page from "./Page.js"

/** The shape of the workload. @category models */
export interface WorkloadShape {
  readonly writers: number
  readonly files: number
  readonly pagesPerFile: number
}

/** What the workload needs of the storage tier. */
export type WorkloadStorage = Pick<StorageService, "write" | "append" | "commit">

/**
 * Heap bytes the run's bookkeeping takes per page: the ledger's attempted id and its array of
 * acknowledged (id, LSN) pairs, a few pairs deep before pruning, and a share of the part table
 * (measured: 40 bytes a page with no pair, 209 with three).
 */
export const bookkeepingBytesPerPage = 200

/** Heap bytes a run of this shape needs for its bookkeeping (see `bookkeepingBytesPerPage`). */
export const bookkeepingBytes = (shape: Pick<WorkloadShape, "files" | "pagesPerFile">): number =>
  shape.files * shape.pagesPerFile * bookkeepingBytesPerPage

/** The file names of the workload, in the bucket and the data directory. */
export const fileIdOf = (file: number): FileId => fileId(`workload/file-${file}`)

/** The workload's index of a file, from its FileId; undefined for any other file. */
export const fileIndexOf = (file: string): number | undefined => {
  const match = /^workload\/file-([0-9]+)$/.exec(file)
  return match?.[1] === undefined ? undefined : Number(match[1])
}

/** Counters of the workload, for progress lines and the report. */
export interface WorkloadCounters {
  readonly attempted: number
  readonly acknowledged: number
  readonly failed: number
  /** Failures by error tag (e.g. ShuttingDown, PartLeaseTimeout). */
  readonly failures: Readonly<Record<string, number>>
  readonly bytesWritten: number
}

/**
 * The workload's record of inserts: per page, the highest attempted id and the acknowledged
 * (id, LSN) pairs still needed. Single-threaded JavaScript: each method runs inside `Effect.sync`.
 */
export class Ledger {
  readonly totalPages: number
  private readonly attemptedMax: Float64Array
  /** Per page: [id0, lsn0, id1, lsn1, …], ascending. */
  private readonly acknowledgedPairs: Array<Array<number>>
  private insertIdNext: number
  private attemptedCount = 0
  private acknowledgedCount = 0
  private failedCount = 0
  private readonly failuresByTag = new Map<string, number>()
  private bytesWrittenCount = 0
  private prunedBelowLsn = 0

  /** `insertIdFirst`: the first insert id of this run (ids of a bucket's successive runs must grow). */
  constructor(readonly shape: WorkloadShape, insertIdFirst = 1) {
    if (!Number.isSafeInteger(insertIdFirst) || insertIdFirst <= 0) {
      throw new RangeError(`insertIdFirst must be a positive safe integer, got ${insertIdFirst}`)
    }
    this.insertIdNext = insertIdFirst
    if (!Number.isInteger(shape.files) || shape.files <= 0) {
      throw new RangeError(`files must be a positive integer, got ${shape.files}`)
    }
    if (!Number.isInteger(shape.pagesPerFile) || shape.pagesPerFile <= 0) {
      throw new RangeError(`pagesPerFile must be positive, got ${shape.pagesPerFile}`)
    }
    this.totalPages = shape.files * shape.pagesPerFile
    this.attemptedMax = new Float64Array(this.totalPages)
    this.acknowledgedPairs = Array.from({ length: this.totalPages }, () => [])
  }

  /** The global index of page `page` of file `file`. */
  globalPage(file: number, page: number): number {
    return file * this.shape.pagesPerFile + page
  }

  /** Takes the next insert id for a global page and records it as attempted. */
  attempt(globalPage: number): number {
    const insertId = this.insertIdNext++
    this.attemptedMax[globalPage] = insertId
    this.attemptedCount++
    return insertId
  }

  /** Records a written page's bytes. */
  written(bytes: number): void {
    this.bytesWrittenCount += bytes
  }

  /** Records an acknowledged insert (committed). Ids and LSNs increase per page. */
  acknowledge(globalPage: number, insertId: number, lsn: number): void {
    const pairs = this.acknowledgedPairs[globalPage]
    if (pairs === undefined) throw new RangeError(`page ${globalPage} is out of range`)
    const lastId = pairs[pairs.length - 2]
    if (lastId !== undefined && lastId >= insertId) {
      throw new Error(`page ${globalPage}: acknowledged insert ${insertId} after ${lastId}`)
    }
    pairs.push(insertId, lsn)
    this.acknowledgedCount++
  }

  /** Records a failed insert by its error tag. */
  fail(tag: string): void {
    this.failedCount++
    this.failuresByTag.set(tag, (this.failuresByTag.get(tag) ?? 0) + 1)
  }

  /** The highest insert id attempted on a page (0: never attempted). */
  attemptedMaxOf(globalPage: number): number {
    return this.attemptedMax[globalPage] ?? 0
  }

  /** The last acknowledged insert of a page (0: none). */
  acknowledgedLastOf(globalPage: number): number {
    const pairs = this.acknowledgedPairs[globalPage] ?? []
    return pairs[pairs.length - 2] ?? 0
  }

  /**
   * The insert a verification requires on a page: the last one acknowledged with an LSN below
   * `belowLsn` (every acknowledged one when `belowLsn` is undefined); 0 when none is required.
   * `belowLsn` must not be below a bound given to `prune`.
   */
  requiredOf(globalPage: number, belowLsn: number | undefined): number {
    const pairs = this.acknowledgedPairs[globalPage] ?? []
    if (belowLsn === undefined) return pairs[pairs.length - 2] ?? 0
    if (belowLsn < this.prunedBelowLsn) {
      throw new RangeError(`the ledger was pruned below ${this.prunedBelowLsn}, cannot answer for ${belowLsn}`)
    }
    for (let index = pairs.length - 2; index >= 0; index -= 2) {
      const lsn = pairs[index + 1]
      if (lsn !== undefined && lsn < belowLsn) return pairs[index] ?? 0
    }
    return 0
  }

  /**
   * Forgets, per page, the acknowledged pairs below `lsn` but the last of them: `lsn` is a lower
   * bound of every later verification bound (a WAL position already archived).
   */
  prune(lsn: number): void {
    if (lsn <= this.prunedBelowLsn) return
    this.prunedBelowLsn = lsn
    for (const pairs of this.acknowledgedPairs) {
      let lastBelow = -1
      for (let index = 0; index < pairs.length; index += 2) {
        const pairLsn = pairs[index + 1]
        if (pairLsn !== undefined && pairLsn < lsn) lastBelow = index
        else break
      }
      if (lastBelow > 0) pairs.splice(0, lastBelow)
    }
  }

  counters(): WorkloadCounters {
    return {
      attempted: this.attemptedCount,
      acknowledged: this.acknowledgedCount,
      failed: this.failedCount,
      failures: Object.fromEntries(this.failuresByTag),
      bytesWritten: this.bytesWrittenCount
    }
  }
}

/** The global pages that writer `writer` of `writers` owns: writer + k · writers. */
export const ownedPageCount = (totalPages: number, writers: number, writer: number): number =>
  writer >= totalPages ? 0 : Math.ceil((totalPages - writer) / writers)

const errorTag = (error: unknown): string =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string"
    ? error._tag
    : "Unknown"

/** One insert of writer `writer`; fails with the storage's error (the ledger records it). */
export const insertOnce = (storage: WorkloadStorage, ledger: Ledger, writer: number): Effect.Effect<void, unknown> =>
  Effect.gen(function*() {
    const { pagesPerFile, writers } = ledger.shape
    const owned = ownedPageCount(ledger.totalPages, writers, writer)
    const slot = yield* Random.nextIntBetween(0, owned)
    const globalPage = writer + slot * writers
    const file = Math.floor(globalPage / pagesPerFile)
    const page = globalPage % pagesPerFile
    const insertId = yield* Effect.sync(() => ledger.attempt(globalPage))
    const identity = { insertId, file, page }
    yield* storage.write(fileIdOf(file), page * Page.pageBytes, Page.encodePage(identity))
    yield* Effect.sync(() => ledger.written(Page.pageBytes))
    const lsn: Lsn = yield* storage.append(Page.encodeRecord(identity))
    yield* storage.commit
    yield* Effect.sync(() => ledger.acknowledge(globalPage, insertId, lsn))
  })

/** A running workload. */
export interface RunningWorkload {
  /** Asks the writers to stop after their current insert, waits up to `graceMs` for them, then
   * interrupts the rest. Returns how many had to be interrupted. */
  readonly stop: (graceMs: number) => Effect.Effect<number>
  /** Completes when every writer ended (stopped, or gave up after ShuttingDown). */
  readonly done: Effect.Effect<void>
}

/** Pause after a failed insert, so that a persistent failure does not spin a core. */
const failurePauseMs = 20

/**
 * Starts W writers (daemon fibers; `stop` ends them). A failed insert is counted and the writer goes
 * on, except on ShuttingDown, which ends the writer.
 */
export const start = (storage: WorkloadStorage, ledger: Ledger): Effect.Effect<RunningWorkload> =>
  Effect.gen(function*() {
    const stopping = yield* Ref.make(false)
    const writer = (index: number) =>
      Effect.gen(function*() {
        while (!(yield* Ref.get(stopping))) {
          const failure = yield* insertOnce(storage, ledger, index).pipe(Effect.flip, Effect.option)
          if (failure._tag === "Some") {
            const tag = errorTag(failure.value)
            yield* Effect.sync(() => ledger.fail(tag))
            if (tag === "ShuttingDown") return
            yield* Effect.sleep(Duration.millis(failurePauseMs))
          }
        }
      })
    const fibers = yield* Effect.forEach(
      Array.from({ length: ledger.shape.writers }, (_, index) => index),
      (index) => Effect.forkDaemon(Effect.interruptible(writer(index))),
      { concurrency: "unbounded" }
    )
    const done = Effect.asVoid(Fiber.awaitAll(fibers))
    const stop = (graceMs: number) =>
      Effect.gen(function*() {
        yield* Ref.set(stopping, true)
        const ended = yield* done.pipe(Effect.interruptible, Effect.timeout(Duration.millis(graceMs)), Effect.option)
        if (ended._tag === "Some") return 0
        let interrupted = 0
        for (const fiber of fibers) {
          const poll = yield* Fiber.poll(fiber)
          if (poll._tag === "None") interrupted++
        }
        yield* Fiber.interruptAll(fibers)
        return interrupted
      })
    return { stop, done }
  })
