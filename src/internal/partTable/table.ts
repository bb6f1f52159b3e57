/**
 * The part table's state: one row per known part (its STM cell, its file path, its I/O lock, its
 * damage), the table-wide counters kept in step with the cells, and the one way a row's state
 * changes (`applyEvent`, through the pure src/domain/PartState.ts transitions). Every other
 * module of src/internal/partTable/ works on these.
 *
 * Replaces: OrioleDB's per-file header of part words and its `numberOfLoadedParts` counter
 * (src/s3/headers.c, docs/ORIGINAL.md §4): here each part's word is a TRef, so waiting for a
 * transition is an STM `retry`, never a 10 ms sleep-poll.
 *
 * @since 0.1.0
 */
import { Effect, Either, Exit, type FiberSet, type Scope, STM, TRef } from "effect"
import { type PartDamaged, type PartLoadFailed, ShuttingDown } from "../../domain/Errors.js"
import type { CheckpointNumber, FileId, PartIndex, Sha256Hex } from "../../domain/Ids.js"
import type * as KeyLayout from "../../domain/KeyLayout.js"
import { sha256Hex } from "../../domain/Manifest.js"
import { partKey, partPath } from "../../domain/PartPath.js"
import * as PartStateDomain from "../../domain/PartState.js"
import type { PartState } from "../../domain/PartState.js"
import type { HasherService } from "../../services/Hasher.js"
import type { LocalDiskService } from "../../services/LocalDisk.js"
import type { ObjectStoreService } from "../../services/ObjectStore.js"
import type { PartTableStats } from "../../services/PartTable.js"
import type { StorageConfigValue } from "../../services/StorageConfig.js"
import type { TaskQueueService } from "../../services/TaskQueue.js"
import type { WaitRegistryService } from "../../services/WaitRegistry.js"

/** What the STM cell of one part holds. */
export interface Cell {
  readonly state: PartState
  /** Incremented by every BeginLoad: a waiter waits for "its" load to end. */
  readonly loadGeneration: number
  /** The failure of the last failed load, for the waiters of that load. */
  readonly loadFailure: { readonly generation: number; readonly error: PartLoadFailed } | undefined
}

/** The table's row for one part: made on first use, never removed. */
export interface PartRow {
  readonly file: FileId
  readonly part: PartIndex
  /** `file#part` (src/domain/PartPath.ts `partKey`). */
  readonly key: string
  /** The part file's local path. */
  readonly path: string
  readonly cell: TRef.TRef<Cell>
  /** Serializes the I/O of this part's file; made on first use. */
  io: Effect.Semaphore | undefined
  /** Set (once, under `io`) when a write to the file failed: the file may be torn. */
  damaged: PartDamaged | undefined
}

/** The sums over every row's state that the table keeps. */
export type Counters = Omit<PartTableStats, "parts">

export const zeroCounters: Counters = {
  loaded: 0,
  loading: 0,
  evicting: 0,
  dirty: 0,
  writing: 0,
  leasesHeld: 0,
  loadedBytes: 0
}

/** The counters with one state added (sign 1) or taken away (sign -1). */
export const addState = (counters: Counters, state: PartState, sign: 1 | -1): Counters => ({
  loaded: counters.loaded + (state.status === "Loaded" ? sign : 0),
  loading: counters.loading + (state.status === "Loading" ? sign : 0),
  evicting: counters.evicting + (state.status === "Evicting" ? sign : 0),
  dirty: counters.dirty + (state.dirty ? sign : 0),
  writing: counters.writing + (state.writing ? sign : 0),
  leasesHeld: counters.leasesHeld + sign * state.leases,
  loadedBytes: counters.loadedBytes + sign * PartStateDomain.residentBytes(state)
})

/** Everything the table's operations share. */
export interface Table {
  readonly config: StorageConfigValue
  readonly layout: KeyLayout.KeyLayout
  readonly disk: LocalDiskService
  readonly store: ObjectStoreService
  readonly queue: TaskQueueService
  readonly waits: WaitRegistryService
  readonly hasher: HasherService
  readonly rows: Map<string, PartRow>
  /** Rows in creation order: the clock hand of the eviction sweep walks it. */
  readonly order: Array<PartRow>
  readonly counters: TRef.TRef<Counters>
  readonly closed: TRef.TRef<boolean>
  readonly openCheckpoint: TRef.TRef<CheckpointNumber>
  /** The load fibers, forked into the table's scope (interrupted when it closes). */
  readonly loads: FiberSet.FiberSet<void, never>
  readonly sweepLock: Effect.Semaphore
  /** Part buffers (partSizeBytes + 1 each, in the Hasher's shared memory) free for reuse; at most
   * workerCount are kept. */
  readonly partBuffers: Array<Uint8Array>
  /** The eviction sweep's clock hand: an index into `order`. */
  hand: number
}

/**
 * A part-sized buffer in the Hasher's shared memory, for one upload's read of a part file or one
 * load's hash of a GET's body, as a scoped resource, from the table's free list (at most
 * `workerCount` kept). A buffer goes back to the list only when the work on it succeeded: after a
 * failure or an interruption an I/O may still be writing into it (interrupting an fs read on the
 * thread pool abandons it; it completes later, into this memory), so it is left to the garbage
 * collector. Not an Effect Pool: its shutdown waits for every buffer in use, so closing the table
 * would wait up to a request timeout for an upload in flight (the S3 workers stop after the
 * table), and its bound adds nothing here, as one S3 worker runs one task at a time.
 */
export const partBuffer = (table: Table): Effect.Effect<Uint8Array, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => table.partBuffers.pop() ?? table.hasher.allocate(table.config.partSizeBytes + 1)),
    (buffer, exit) =>
      Effect.sync(() => {
        if (Exit.isSuccess(exit) && table.partBuffers.length < table.config.workerCount) {
          table.partBuffers.push(buffer)
        }
      })
  )

/** Parts below this are hashed where they are: a round trip to a Hasher thread costs about what
 * hashing 64 KiB does on this thread (some tens of microseconds). */
export const offloadedHashBytesMin = 64 * 1024

/** The SHA-256 of a part's bytes (an upload's read, a load's body): on a Hasher thread when they
 * are in shared memory and at least `offloadedHashBytesMin` long, else where they are. */
export const partSha256 = (table: Table, bytes: Uint8Array): Effect.Effect<Sha256Hex> =>
  bytes.length < offloadedHashBytesMin ? Effect.sync(() => sha256Hex(bytes)) : table.hasher.sha256Hex(bytes)

/** The lock that serializes a part file's writes and the upload's read of it. */
export const ioOf = (row: PartRow): Effect.Semaphore => {
  if (row.io === undefined) row.io = Effect.unsafeMakeSemaphore(1)
  return row.io
}

/** The row of a part, made on first use. The Map insert is synchronous, so two fibers that meet
 * a new part at once end with the same row. */
export const rowOf = (table: Table, file: FileId, part: PartIndex): Effect.Effect<PartRow> =>
  Effect.suspend(() => {
    const key = partKey(file, part)
    const existing = table.rows.get(key)
    if (existing !== undefined) return Effect.succeed(existing)
    return Effect.map(
      TRef.make<Cell>({ state: PartStateDomain.empty, loadGeneration: 0, loadFailure: undefined }),
      (cell) => {
        const raced = table.rows.get(key)
        if (raced !== undefined) return raced
        const row: PartRow = { file, part, key, path: partPath(file, part), cell, io: undefined, damaged: undefined }
        table.rows.set(key, row)
        table.order.push(row)
        return row
      }
    )
  })

/** Commits a new state of a row (and the counters, in the same transaction). */
export const setCell = (table: Table, row: PartRow, before: Cell, after: Cell): STM.STM<void> =>
  STM.zipRight(
    TRef.set(row.cell, after),
    before.state === after.state
      ? STM.void
      : TRef.update(table.counters, (counters) => addState(addState(counters, before.state, -1), after.state, 1))
  )

/** Applies an event the caller checked to be allowed; a rejection here is a bug, hence a defect. */
export const applyEvent = (
  table: Table,
  row: PartRow,
  cell: Cell,
  event: PartStateDomain.PartEvent,
  extra?: Partial<Omit<Cell, "state">>
): STM.STM<PartState> =>
  Either.match(PartStateDomain.transition(cell.state, event), {
    onLeft: (rejected) => STM.dieMessage(`${row.key}: ${rejected.message}`),
    onRight: (state) => STM.as(setCell(table, row, cell, { ...cell, ...extra, state }), state)
  })

/** Applies an event to the row's current cell, in one transaction. */
export const applyEventNow = (table: Table, row: PartRow, event: PartStateDomain.PartEvent): Effect.Effect<PartState> =>
  STM.commit(STM.flatMap(TRef.get(row.cell), (cell) => applyEvent(table, row, cell, event)))

export const failIfClosed = (table: Table, operation: string): STM.STM<void, ShuttingDown> =>
  STM.flatMap(TRef.get(table.closed), (closed) => (closed ? STM.fail(new ShuttingDown({ operation })) : STM.void))

/** Fails with the part's damage, if a failed write damaged it. */
export const refuseDamaged = (
  row: PartRow
): Effect.Effect<void, PartDamaged> => (row.damaged === undefined ? Effect.void : Effect.fail(row.damaged))

/** Every row's state, in creation order, read in one transaction. */
export const allStates = (table: Table): Effect.Effect<ReadonlyArray<readonly [FileId, PartIndex, PartState]>> =>
  Effect.suspend(() => {
    const rows = Array.from(table.order)
    return Effect.map(
      STM.commit(STM.forEach(rows, (row) => TRef.get(row.cell))),
      (cells) =>
        cells.flatMap((cell, index) => {
          const row = rows[index]
          return row === undefined ? [] : [[row.file, row.part, cell.state] as const]
        })
    )
  })

/** Every part-state invariant problem, per part, plus the counters against the sum of the parts. */
export const invariantProblems = (table: Table): Effect.Effect<ReadonlyArray<string>> =>
  Effect.suspend(() => {
    const rows = Array.from(table.order)
    return Effect.map(
      STM.commit(STM.zip(STM.forEach(rows, (row) => TRef.get(row.cell)), TRef.get(table.counters))),
      ([cells, counters]) => {
        const problems: Array<string> = []
        let sum = zeroCounters
        cells.forEach((cell, index) => {
          const problem = PartStateDomain.invariantProblem(cell.state)
          if (problem !== undefined) {
            problems.push(`${rows[index]?.key ?? index}: ${problem} (${PartStateDomain.describeState(cell.state)})`)
          }
          sum = addState(sum, cell.state, 1)
        })
        for (const name of Object.keys(zeroCounters) as Array<keyof Counters>) {
          if (sum[name] !== counters[name]) {
            problems.push(`table: counter ${name} is ${counters[name]}, the parts sum to ${sum[name]}`)
          }
        }
        return problems
      }
    )
  })
