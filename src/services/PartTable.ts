/**
 * PartTable: the local cache of fixed-size parts, with OrioleDB's part state machine, scoped part
 * leases, lazy loading from the bucket, dirty tracking and write-back.
 *
 * Replaces: OrioleDB's src/s3/headers.c (part words, `s3_header_lock_part`, mark_part_* transitions)
 * and the part write scheduling of src/btree/io.c (docs/ORIGINAL.md §4). The transitions are the pure
 * functions of src/domain/PartState.ts; here they run inside STM so that waiting for a transition is
 * an interruptible wait on a state change (never a 10 ms sleep-poll), raced against
 * `leaseTimeoutMs`.
 *
 * THE RULE: library code never holds a lease while it waits on the task queue. A lease is taken
 * only on a Loaded part; loading happens before the lease exists (the loader waits on the read task
 * holding nothing). This removes the lock-then-wait shape of the #340 hang. Concretely:
 * - `lease` on a NotLoaded part commits NotLoaded → Loading and, in the same uninterruptible step,
 *   forks the load into the table's own scope: the load fiber enqueues the ReadPart task, awaits its
 *   handle and commits Loading → Loaded (or → NotLoaded on any failure or interruption, recording
 *   the typed error). Every caller, the one that won the transition included, then waits on the
 *   part's state (STM `retry`) holding no lease, raced against `leaseTimeoutMs` and the table's
 *   closed flag. An interrupted caller therefore never leaves a part Loading forever;
 * - uploads (`scheduleUpload`, `ensureUploaded`, the evictor's sweep) never take a lease at all:
 *   they read the part file under its I/O lock;
 * - `read` and `write` take one lease at a time and release it before taking the next.
 * A caller that holds a lease and then waits on the queue itself (application code) is outside
 * the rule; the library never does it, and the tests check it (test/services/PartTable.test.ts).
 *
 * Local storage scheme: every part is its own file on the LocalDisk,
 * `parts/<encodeURIComponent(fileId)>/<part index, 10 digits>`, so evicting a part is an unlink
 * that frees its space for real (OrioleDB wrote zeros into a shared file, which frees nothing
 * unless the file system punches holes).
 *
 * fsync policy:
 * - a part downloaded from the bucket is written with `writeAtomic` (temp file, fsync, rename,
 *   fsync of the directory): a reopened directory never sees a torn download, and the SHA-256
 *   check at reopen (`install`) tells a downloaded copy from local changes;
 * - writes through a lease are not synced: the WAL is the durability of recent writes, the
 *   checkpoint's uploads their durability in the bucket. After a crash a part file may hold any
 *   mix of old and new bytes; `install` then finds its SHA-256 differs from the bucket's and marks
 *   it dirty, and WAL replay rewrites what the checkpoint does not cover;
 * - eviction unlinks without a directory fsync: a file that reappears after a crash still matches
 *   its remote object's SHA-256 (it was clean when evicted) and is installed as a clean copy.
 *
 * A failed write through a lease (a full disk fails a write after some of its bytes landed) leaves
 * the part file torn: a mix of a new page and the acknowledged one it overwrote. The part is then
 * marked damaged, not repaired: it is no longer served (leases and reads through held leases fail
 * with PartDamaged), never uploaded (so no checkpoint can commit while it is damaged, and the WAL
 * since the last one stays), never evicted (it is dirty), and left out of the clean-stop record of
 * `localPartHashes`, so the next start removes the file and rebuilds the part from the checkpoint
 * and the WAL replay, as after a crash. Keeping the previous bytes instead (a temp file and a
 * rename, or an undo copy) would cost every page write a copy or an extra read, for a fault that
 * also fails the WAL beside it; this costs the write path one flag check (8 KiB page writes on the
 * memory disk: 72-74 µs before and after, the minimum of paired runs on a loaded machine).
 *
 * The writes to one part file and the upload's read of it are serialized by a per-part lock, so
 * an upload never reads half of a concurrent write. Loads and evictions need no lock: a Loading or
 * Evicting part has no lease and no upload.
 *
 * @since 0.1.0
 */
import { Cause, Context, Effect, Either, Exit, FiberSet, Layer, Option, Schema, STM, TRef } from "effect"
import type { Scope } from "effect"
import {
  CorruptObject,
  InvalidRange,
  LocalIoError,
  type ObjectStoreError,
  PartDamaged,
  PartLeaseTimeout,
  PartLoadFailed,
  type QueueClosed,
  ShuttingDown,
  type TaskAborted
} from "../domain/Errors.js"
import { type CheckpointNumber, CheckpointNumber as CheckpointNumberSchema, FileId as FileIdSchema, type FileId, type PartIndex, PartIndex as PartIndexSchema } from "../domain/Ids.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import { type RemotePart, sha256Hex } from "../domain/Manifest.js"
import * as PartStateDomain from "../domain/PartState.js"
import type { PartState } from "../domain/PartState.js"
import { ReadPart, WritePart } from "../domain/Task.js"
import { Hasher, type HasherService } from "./Hasher.js"
import { LocalDisk, type LocalDiskService } from "./LocalDisk.js"
import { ObjectStore, type ObjectStoreService } from "./ObjectStore.js"
import { keyLayout, StorageConfig, type StorageConfigValue } from "./StorageConfig.js"
import { TaskQueue, type TaskQueueService } from "./TaskQueue.js"
import { WaitRegistry, type WaitRegistryService } from "./WaitRegistry.js"

/** Why a lease could not be taken. */
export type LeaseError = PartLoadFailed | PartLeaseTimeout | ShuttingDown | LocalIoError | InvalidRange | PartDamaged

/** Why a part's upload did not happen. */
export type UploadError = ObjectStoreError | QueueClosed | TaskAborted | LocalIoError | ShuttingDown | PartDamaged

/** A held lease on one Loaded part: reads and writes of that part go through it. */
export interface PartLease {
  readonly file: FileId
  readonly part: PartIndex
  /** Bytes [offset, offset + length) of the part (offsets within the part); zeros where never written. */
  readonly read: (offset: number, length: number) => Effect.Effect<Uint8Array, LocalIoError | InvalidRange | PartDamaged>
  /** Writes bytes at an offset within the part; the part becomes dirty when the lease is released.
   * A failed write damages the part (PartDamaged, see the module comment). */
  readonly write: (offset: number, bytes: Uint8Array) => Effect.Effect<void, InvalidRange | PartDamaged>
}

/** One part as a checkpoint sees it at its snapshot. */
export interface SnapshotEntry {
  readonly file: FileId
  readonly part: PartIndex
  /** The part's write version at the snapshot: the checkpoint needs an upload of at least this. */
  readonly version: number
  /** The uploaded version to reference when no upload is needed. */
  readonly remote: RemotePart | undefined
  /** Dirty or being written at the snapshot: the checkpoint must `ensureUploaded` it. */
  readonly needsUpload: boolean
}

/** A part to install from a manifest (restore, reopen). */
export interface InstallEntry {
  readonly file: FileId
  readonly part: PartIndex
  readonly remote: RemotePart
}

/** What one eviction sweep did. */
export interface EvictionReport {
  readonly evictedParts: number
  readonly evictedBytes: number
  readonly loadedBytesBefore: number
  readonly loadedBytesAfter: number
  /** Dirty parts whose write-back the sweep scheduled so that a later sweep can evict them (owed
   * uploads it re-enqueued, after a failed upload, are not counted). */
  readonly scheduledUploads: number
}

/** Counters for diagnostics, reports and invariant checks. */
export interface PartTableStats {
  readonly parts: number
  readonly loaded: number
  readonly loading: number
  readonly evicting: number
  readonly dirty: number
  readonly writing: number
  readonly leasesHeld: number
  readonly loadedBytes: number
}

/** How `install` treats local part files that differ from the manifest. */
export interface InstallOptions {
  /**
   * true (default, after a clean shutdown): a differing local file holds newer data, kept dirty.
   * false (after a crash): writes through leases are not synced, so a local file may be older than
   * the checkpoint; only files that match the manifest are kept, the rest are removed and rebuilt
   * from the checkpoint and the WAL replay (the "apply, then log" rule makes that complete).
   */
  readonly trustLocal?: boolean
  /**
   * With `trustLocal`: the SHA-256 of each local part file recorded at the clean stop, by path
   * (`localPartHashes`). A file that differs from the manifest is then kept as newer data only if
   * it still has its recorded hash; any other (bit rot, a part a failed write damaged, a file the
   * record does not name) is removed with a warning and rebuilt from the checkpoint and the WAL
   * replay, as after a crash. Without it, `trustLocal` keeps every differing file.
   */
  readonly recordedHashes?: ReadonlyMap<string, string>
}

/** The operations of the part table. @category models */
export interface PartTableService {
  /**
   * A lease on a part, as a scoped resource: NotLoaded → the caller that wins the Loading
   * transition enqueues the read and every other caller joins that same load; Loading/Evicting →
   * an interruptible wait for the transition, bounded by `leaseTimeoutMs`; Loaded → leases + 1.
   * A failed load returns the part to NotLoaded and fails every joined waiter with PartLoadFailed.
   * Released when the scope closes, whatever happened; interruption leaves every count exact.
   */
  readonly lease: (file: FileId, part: PartIndex) => Effect.Effect<PartLease, LeaseError, Scope.Scope>
  /** Reads bytes of a file across parts, leasing one part at a time. */
  readonly read: (file: FileId, offset: number, length: number) => Effect.Effect<Uint8Array, LeaseError>
  /** Writes bytes of a file across parts, leasing one part at a time. */
  readonly write: (file: FileId, offset: number, bytes: Uint8Array) => Effect.Effect<void, LeaseError>
  /** Write-back of one part: if dirty and not scheduled, enqueues its upload; if its upload is
   * owed (scheduled, e.g. after a failed upload) enqueues it again (the queue coalesces it with a
   * queued one). True if it enqueued; false when the part is clean or an upload is in flight. */
  readonly scheduleUpload: (file: FileId, part: PartIndex) => Effect.Effect<boolean, QueueClosed>
  /**
   * Starts a checkpoint: atomically records every known part's version and whether it needs an
   * upload, and makes later write-back uploads target `checkpoint + 1`.
   */
  readonly snapshot: (checkpoint: CheckpointNumber) => Effect.Effect<ReadonlyArray<SnapshotEntry>, ShuttingDown>
  /**
   * Makes sure an upload of at least `entry.version` of the part exists and returns where it is:
   * waits (holding no lease) for an upload in flight, joins a queued one, or enqueues one under
   * `checkpoint`. Bounded by the caller's deadline (interrupt it).
   */
  readonly ensureUploaded: (entry: SnapshotEntry, checkpoint: CheckpointNumber) => Effect.Effect<RemotePart, UploadError>
  /** Installs parts from a manifest: NotLoaded (fetched on first lease) unless a local copy is present. */
  readonly install: (
    entries: Iterable<InstallEntry>,
    openCheckpoint: CheckpointNumber,
    options?: InstallOptions
  ) => Effect.Effect<void, LocalIoError>
  /**
   * The SHA-256 of every local part file the table vouches for, as [path, hash], for the record a
   * clean stop writes (Loader.markCleanShutdown) and the next start checks (`recordedHashes`). A
   * clean part's is its remote object's (its file holds exactly those bytes); any other's is
   * computed from its file. A damaged part is left out, so the next start rebuilds it.
   */
  readonly localPartHashes: Effect.Effect<ReadonlyArray<readonly [string, string]>, LocalIoError>
  /** One eviction sweep (clock algorithm) down to `localBytesMax`; see src/services/Evictor.ts. */
  readonly evict: Effect.Effect<EvictionReport, LocalIoError>
  readonly stats: Effect.Effect<PartTableStats>
  /** Every part's state, for invariant checks. */
  readonly states: Effect.Effect<ReadonlyArray<readonly [FileId, PartIndex, PartState]>>
  /** Shutdown: later leases and writes fail with ShuttingDown, waiting leases wake with it. Idempotent. */
  readonly close: Effect.Effect<void>
  /**
   * Every current part-state invariant problem (src/domain/PartState.ts `invariantProblem`, per
   * part, plus the table's counters against the sum of the parts), each prefixed by `file#part`.
   * Empty when all hold. For tests and the simulation, after every step.
   */
  readonly invariantProblems: Effect.Effect<ReadonlyArray<string>>
}

/** The part table. @category tags */
export class PartTable extends Context.Tag("effect-s3-tier/PartTable")<PartTable, PartTableService>() {}

// ---------------------------------------------------------------------------------------------
// Local paths
// ---------------------------------------------------------------------------------------------

/** The directory of every part file. */
export const partsDirectory = "parts"

const partDigits = 10

/** The local path of a part's file: `parts/<encodeURIComponent(file)>/<part:10>`. */
export const partPath = (file: FileId, part: PartIndex): string =>
  `${partsDirectory}/${encodeURIComponent(file)}/${part.toString().padStart(partDigits, "0")}`

/** The (file, part) a local path names, or None for anything else (temp files, foreign files). */
export const parsePartPath = (path: string): Option.Option<readonly [FileId, PartIndex]> => {
  const segments = path.split("/")
  if (segments.length !== 3 || segments[0] !== partsDirectory) return Option.none()
  const [, encoded = "", leaf = ""] = segments
  if (leaf.length !== partDigits || !/^[0-9]+$/.test(leaf)) return Option.none()
  let decoded: string
  try {
    decoded = decodeURIComponent(encoded)
  } catch {
    return Option.none()
  }
  if (encodeURIComponent(decoded) !== encoded) return Option.none()
  const file = Either.getRight(FileIdSchemaDecode(decoded))
  const part = Either.getRight(PartIndexSchemaDecode(Number(leaf)))
  return Option.zipWith(file, part, (fileId, partIndex) => [fileId, partIndex] as const)
}

const FileIdSchemaDecode = Schema.decodeUnknownEither(FileIdSchema)
const PartIndexSchemaDecode = Schema.decodeUnknownEither(PartIndexSchema)

/** The key of a part in the table: `file#part`. */
export const partKey = (file: FileId, part: number): string => `${file}#${part}`

// ---------------------------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------------------------

/** What the table's STM cell of one part holds. */
interface Cell {
  readonly state: PartState
  /** Incremented by every BeginLoad: a waiter waits for "its" load to end. */
  readonly loadGeneration: number
  /** The failure of the last failed load, for the waiters of that load. */
  readonly loadFailure: { readonly generation: number; readonly error: PartLoadFailed } | undefined
}

interface Slot {
  readonly file: FileId
  readonly part: PartIndex
  readonly key: string
  readonly path: string
  readonly cell: TRef.TRef<Cell>
  /** Serializes the I/O of this part's file; made on first use. */
  io: Effect.Semaphore | undefined
  /** Set (once, under `io`) when a write to the file failed: the file may be torn. */
  damaged: PartDamaged | undefined
}

type Counters = Omit<PartTableStats, "parts">

const zeroCounters: Counters = { loaded: 0, loading: 0, evicting: 0, dirty: 0, writing: 0, leasesHeld: 0, loadedBytes: 0 }

const addState = (counters: Counters, state: PartState, sign: 1 | -1): Counters => ({
  loaded: counters.loaded + (state.status === "Loaded" ? sign : 0),
  loading: counters.loading + (state.status === "Loading" ? sign : 0),
  evicting: counters.evicting + (state.status === "Evicting" ? sign : 0),
  dirty: counters.dirty + (state.dirty ? sign : 0),
  writing: counters.writing + (state.writing ? sign : 0),
  leasesHeld: counters.leasesHeld + sign * state.leases,
  loadedBytes: counters.loadedBytes + sign * PartStateDomain.residentBytes(state)
})

/** Everything the table's operations share. */
interface Table {
  readonly config: StorageConfigValue
  readonly layout: KeyLayout.KeyLayout
  readonly disk: LocalDiskService
  readonly store: ObjectStoreService
  readonly queue: TaskQueueService
  readonly waits: WaitRegistryService
  readonly slots: Map<string, Slot>
  /** Slots in creation order: the clock hand of the eviction sweep walks it. */
  readonly order: Array<Slot>
  readonly counters: TRef.TRef<Counters>
  readonly closed: TRef.TRef<boolean>
  readonly openCheckpoint: TRef.TRef<CheckpointNumber>
  readonly loads: FiberSet.FiberSet<void, never>
  readonly sweepLock: Effect.Semaphore
  /** Upload read buffers (partSizeBytes + 1 each) free for reuse; at most workerCount are kept. */
  readonly uploadBuffers: Array<Uint8Array>
  readonly hasher: HasherService
  hand: number
}

const ioOf = (slot: Slot): Effect.Semaphore => {
  if (slot.io === undefined) slot.io = Effect.unsafeMakeSemaphore(1)
  return slot.io
}

/** The slot of a part, made on first use. The Map insert is synchronous, so two fibers that meet
 * a new part at once end with the same slot. */
const slotOf = (table: Table, file: FileId, part: PartIndex): Effect.Effect<Slot> =>
  Effect.suspend(() => {
    const key = partKey(file, part)
    const existing = table.slots.get(key)
    if (existing !== undefined) return Effect.succeed(existing)
    return Effect.map(TRef.make<Cell>({ state: PartStateDomain.empty, loadGeneration: 0, loadFailure: undefined }), (cell) => {
      const raced = table.slots.get(key)
      if (raced !== undefined) return raced
      const slot: Slot = { file, part, key, path: partPath(file, part), cell, io: undefined, damaged: undefined }
      table.slots.set(key, slot)
      table.order.push(slot)
      return slot
    })
  })

/** Commits a new state of a slot (and the counters, in the same transaction). */
const setCell = (table: Table, slot: Slot, before: Cell, after: Cell): STM.STM<void> =>
  STM.zipRight(
    TRef.set(slot.cell, after),
    before.state === after.state
      ? STM.void
      : TRef.update(table.counters, (counters) => addState(addState(counters, before.state, -1), after.state, 1))
  )

/** Applies an event the caller checked to be allowed; a rejection here is a bug, hence a defect. */
const applyEvent = (table: Table, slot: Slot, cell: Cell, event: PartStateDomain.PartEvent, extra?: Partial<Omit<Cell, "state">>): STM.STM<PartState> =>
  Either.match(PartStateDomain.transition(cell.state, event), {
    onLeft: (rejected) => STM.dieMessage(`${slot.key}: ${rejected.message}`),
    onRight: (state) => STM.as(setCell(table, slot, cell, { ...cell, ...extra, state }), state)
  })

const failIfClosed = (table: Table, operation: string): STM.STM<void, ShuttingDown> =>
  STM.flatMap(TRef.get(table.closed), (closed) => (closed ? STM.fail(new ShuttingDown({ operation })) : STM.void))

// ---------------------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------------------

/** The mutable record of one held lease: what its release must tell the state machine. */
interface Held {
  wrote: boolean
  writtenEndBytes: number
  released: boolean
}

type Attempt =
  | { readonly _tag: "Acquired"; readonly held: Held }
  | { readonly _tag: "Wait"; readonly generation: number }

type TryAttempt = Attempt | { readonly _tag: "Load"; readonly generation: number; readonly remote: RemotePart }

const checkRange = (table: Table, operation: string, offset: number, length: number): Effect.Effect<void, InvalidRange> =>
  Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= table.config.partSizeBytes
    ? Effect.void
    : Effect.fail(new InvalidRange({ detail: `${operation} of ${length} bytes at offset ${offset} does not fit in a part of ${table.config.partSizeBytes} bytes` }))

/** Fails with the part's damage, if a failed write damaged it. */
const refuseDamaged = (slot: Slot): Effect.Effect<void, PartDamaged> => (slot.damaged === undefined ? Effect.void : Effect.fail(slot.damaged))

/** Marks the part damaged by a failed write (the first damage stays) and gives the error. */
const markDamaged = (slot: Slot, offset: number, length: number, error: LocalIoError): PartDamaged => {
  const damaged = new PartDamaged({
    file: slot.file,
    part: slot.part,
    detail: `a write of ${length} bytes at offset ${offset} failed and may have torn the part file (${error.message}); the next start rebuilds it from the checkpoint and the WAL`
  })
  slot.damaged ??= damaged
  return damaged
}

/** The disk write of a lease, uninterruptible (short and local: an interrupted write would leave the
 * file as unknown as a failed one); a failure damages the part. Runs under the part's I/O lock. */
const writePartFile = (table: Table, slot: Slot, offset: number, bytes: Uint8Array): Effect.Effect<void, PartDamaged> =>
  Effect.uninterruptible(
    Effect.catchAll(table.disk.write(slot.path, offset, bytes), (error) =>
      Effect.suspend(() => {
        const damaged = markDamaged(slot, offset, bytes.length, error)
        return Effect.zipRight(Effect.logWarning(`part ${slot.key}: ${damaged.message}`), Effect.fail(damaged))
      })
    )
  )

const makeLease = (table: Table, slot: Slot, held: Held): PartLease => {
  const io = ioOf(slot)
  const whileHeld = <A, E>(operation: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E | PartDamaged> =>
    held.released ? Effect.dieMessage(`${operation} of part ${slot.key} through a lease that was released`) : Effect.zipRight(refuseDamaged(slot), effect)
  return {
    file: slot.file,
    part: slot.part,
    // Reads take no lock: two reads never conflict, and a read racing a write through another
    // lease of the same part is the application's to order (as pread against pwrite).
    read: (offset, length) =>
      Effect.suspend(() => whileHeld("read", Effect.zipRight(checkRange(table, "read", offset, length), table.disk.read(slot.path, offset, length)))),
    write: (offset, bytes) =>
      Effect.suspend(() =>
        whileHeld(
          "write",
          Effect.zipRight(
            checkRange(table, "write", offset, bytes.length),
            io.withPermits(1)(
              Effect.suspend(() => {
                if (slot.damaged !== undefined) return Effect.fail(slot.damaged)
                // Marked before the bytes move: a failed write may have changed the file.
                held.wrote = true
                held.writtenEndBytes = Math.max(held.writtenEndBytes, offset + bytes.length)
                return writePartFile(table, slot, offset, bytes)
              })
            )
          )
        )
      )
  }
}

const releaseLease = (table: Table, slot: Slot, held: Held): Effect.Effect<void> =>
  Effect.suspend(() => {
    held.released = true
    return STM.commit(
      STM.flatMap(TRef.get(slot.cell), (cell) => applyEvent(table, slot, cell, PartStateDomain.PartEvent.Release(held.wrote, held.writtenEndBytes)))
    )
  })

/** One non-waiting attempt: acquire a Loaded (or brand-new) part, or win NotLoaded → Loading, or
 * report what to wait for. */
const tryAcquire = (table: Table, slot: Slot): STM.STM<TryAttempt, ShuttingDown> =>
  STM.zipRight(
    failIfClosed(table, "lease"),
    STM.flatMap(TRef.get(slot.cell), (cell): STM.STM<TryAttempt> => {
      const acquired = PartStateDomain.transition(cell.state, PartStateDomain.PartEvent.Acquire)
      if (Either.isRight(acquired)) {
        return STM.as(setCell(table, slot, cell, { ...cell, state: acquired.right }), {
          _tag: "Acquired",
          held: { wrote: false, writtenEndBytes: 0, released: false }
        })
      }
      const remote = cell.state.remote
      if (cell.state.status === "NotLoaded" && remote !== undefined) {
        const generation = cell.loadGeneration + 1
        return STM.as(applyEvent(table, slot, cell, PartStateDomain.PartEvent.BeginLoad, { loadGeneration: generation }), {
          _tag: "Load",
          generation,
          remote
        })
      }
      return STM.succeed({ _tag: "Wait", generation: cell.loadGeneration })
    })
  )

/** One attempt. Run uninterruptibly (as the acquire of a resource): the winner of a load forks it
 * in the same step that won the transition, so a part never stays Loading. */
const attemptOnce = (table: Table, slot: Slot): Effect.Effect<Attempt, ShuttingDown> =>
  Effect.flatMap(STM.commit(tryAcquire(table, slot)), (attempt): Effect.Effect<Attempt> =>
    attempt._tag === "Load"
      ? Effect.as(FiberSet.run(table.loads, Effect.interruptible(loadPart(table, slot, attempt.generation, attempt.remote))), {
          _tag: "Wait",
          generation: attempt.generation
        })
      : Effect.succeed(attempt)
  )

const releaseAttempt = (table: Table, slot: Slot) => (attempt: Attempt): Effect.Effect<void> =>
  attempt._tag === "Acquired" ? releaseLease(table, slot, attempt.held) : Effect.void

/** One attempt as a scoped resource: released (if acquired) when the caller's scope closes. */
const acquireOnce = (table: Table, slot: Slot): Effect.Effect<Attempt, ShuttingDown, Scope.Scope> =>
  Effect.acquireRelease(attemptOnce(table, slot), releaseAttempt(table, slot))

/** Waits (STM retry) until the part leaves Loading-of-`generation` and Evicting; fails with the
 * load's error if that load failed, with ShuttingDown if the table closes. */
const awaitTransition = (table: Table, slot: Slot, generation: number): STM.STM<void, ShuttingDown | PartLoadFailed> =>
  STM.zipRight(
    failIfClosed(table, "lease"),
    STM.flatMap(TRef.get(slot.cell), (cell) => {
      const status = cell.state.status
      if ((status === "Loading" && cell.loadGeneration === generation) || status === "Evicting") return STM.retry
      if (cell.loadFailure !== undefined && cell.loadFailure.generation === generation) return STM.fail(cell.loadFailure.error)
      return STM.void
    })
  )

const lease = (table: Table) => (file: FileId, part: PartIndex): Effect.Effect<PartLease, LeaseError, Scope.Scope> =>
  Effect.flatMap(slotOf(table, file, part), (slot) =>
    Effect.flatMap(Effect.zipRight(refuseDamaged(slot), acquireOnce(table, slot)), (first) =>
      first._tag === "Acquired" ? Effect.succeed(makeLease(table, slot, first.held)) : waitAndAcquire(table, slot, first.generation)
    )
  )

/**
 * `use` with a lease held, released when `use` ends. The same protocol as `lease`; on a Loaded
 * part it costs one transaction each way and no Scope (a Scope costs several times more).
 */
const withLease = <A, E>(table: Table, file: FileId, part: PartIndex, use: (lease: PartLease) => Effect.Effect<A, E>): Effect.Effect<A, E | LeaseError> =>
  Effect.flatMap(slotOf(table, file, part), (slot) =>
    Effect.acquireUseRelease(
      Effect.zipRight(refuseDamaged(slot), attemptOnce(table, slot)),
      (first): Effect.Effect<A, E | LeaseError> =>
        first._tag === "Acquired"
          ? use(makeLease(table, slot, first.held))
          : Effect.scoped(Effect.flatMap(waitAndAcquire(table, slot, first.generation), use)),
      releaseAttempt(table, slot)
    )
  )

/** The slow path: wait for the part's transition, then try again, all under `leaseTimeoutMs`. */
const waitAndAcquire = (table: Table, slot: Slot, firstGeneration: number): Effect.Effect<PartLease, LeaseError, Scope.Scope> => {
  const loop = (generation: number): Effect.Effect<PartLease, ShuttingDown | PartLoadFailed, Scope.Scope> =>
    Effect.zipRight(
      STM.commit(awaitTransition(table, slot, generation)),
      Effect.flatMap(acquireOnce(table, slot), (attempt) =>
        attempt._tag === "Acquired" ? Effect.succeed(makeLease(table, slot, attempt.held)) : loop(attempt.generation)
      )
    )
  return table.waits.track("PartTable.lease", `part ${slot.key} to load or finish evicting`, loop(firstGeneration)).pipe(
    Effect.timeoutFail({
      duration: table.config.leaseTimeoutMs,
      onTimeout: () => new PartLeaseTimeout({ file: slot.file, part: slot.part, timeoutMs: table.config.leaseTimeoutMs })
    })
  )
}

// ---------------------------------------------------------------------------------------------
// Loads
// ---------------------------------------------------------------------------------------------

/** The ReadPart task's effect: GET the object, check its SHA-256 and size, write the part file
 * atomically. Idempotent: a retry or a replay writes the same bytes again. */
const readRun = (table: Table, slot: Slot, remote: RemotePart): Effect.Effect<number, ObjectStoreError | CorruptObject | LocalIoError> =>
  Effect.gen(function* () {
    const key = KeyLayout.partKey(table.layout, remote.checkpoint, slot.file, slot.part, remote.sha256)
    const bytes = yield* table.store.get(key)
    const actual = sha256Hex(bytes)
    if (actual !== remote.sha256 || bytes.length !== remote.sizeBytes) {
      return yield* Effect.fail(
        new CorruptObject({ key, detail: `${bytes.length} bytes with SHA-256 ${actual}; the manifest says ${remote.sizeBytes} bytes with ${remote.sha256}` })
      )
    }
    yield* table.disk.writeAtomic(slot.path, bytes)
    return bytes.length
  })

const describeCause = (cause: Cause.Cause<unknown>): string => {
  if (Cause.isInterruptedOnly(cause)) return "the load was interrupted (the part table is closing)"
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    return typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error)
  }
  return Cause.pretty(cause)
}

/** The load fiber (forked into the table's scope): enqueue the read, await it holding no lease,
 * then Loading → Loaded, or → NotLoaded with the error recorded for every waiter of this load. */
const loadPart = (table: Table, slot: Slot, generation: number, remote: RemotePart): Effect.Effect<void> =>
  table.queue.enqueue(new ReadPart({ file: slot.file, part: slot.part }), readRun(table, slot, remote)).pipe(
    Effect.flatMap((handle) => handle.await),
    Effect.onExit((exit) =>
      STM.commit(
        STM.flatMap(TRef.get(slot.cell), (cell) => {
          if (cell.state.status !== "Loading" || cell.loadGeneration !== generation) return STM.void
          if (Exit.isSuccess(exit)) return STM.asVoid(applyEvent(table, slot, cell, PartStateDomain.PartEvent.LoadSucceeded(exit.value)))
          const error = new PartLoadFailed({ file: slot.file, part: slot.part, detail: describeCause(exit.cause) })
          return STM.asVoid(applyEvent(table, slot, cell, PartStateDomain.PartEvent.LoadFailed, { loadFailure: { generation, error } }))
        })
      )
    ),
    Effect.ignore
  )

// ---------------------------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------------------------

type UploadStep =
  | { readonly _tag: "Started"; readonly version: number }
  | { readonly _tag: "Nothing"; readonly remote: RemotePart | undefined }
  | { readonly _tag: "Busy" }

const awaitNotWriting = (slot: Slot): STM.STM<void> =>
  STM.flatMap(TRef.get(slot.cell), (cell) => (cell.state.writing ? STM.retry : STM.void))

const tryStartUpload = (table: Table, slot: Slot): STM.STM<UploadStep> =>
  STM.flatMap(TRef.get(slot.cell), (cell): STM.STM<UploadStep> => {
    if (cell.state.writing) return STM.succeed({ _tag: "Busy" })
    if (!cell.state.scheduled) return STM.succeed({ _tag: "Nothing", remote: cell.state.remote })
    return STM.as(applyEvent(table, slot, cell, PartStateDomain.PartEvent.UploadStart), { _tag: "Started", version: cell.state.version })
  })

/**
 * A part-sized read buffer for one upload, as a scoped resource: taken from the table's free list
 * (or made when it is empty) and given back when the upload's scope closes, keeping at most
 * `workerCount` (the most uploads that run at once). Reusing them spares a 1 MiB allocation per
 * upload, whose garbage collection cost more than the copy itself (BENCHMARKS.md, scenario 1). The
 * Hasher allocates them (in shared memory when it has workers, so they hash a part without a copy). A
 * buffer is given back only after its hash and the store's put returned, failed or were
 * interrupted (an interrupted hash's late reply is dropped, so reusing the buffer is safe); the stores
 * do not keep the bytes past that (memory copies them, files are written before the rename, S3
 * aborts the request, and the declared SHA-256 makes S3 refuse any body that does not match).
 */
const uploadBuffer = (table: Table): Effect.Effect<Uint8Array, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => table.uploadBuffers.pop() ?? table.hasher.allocate(table.config.partSizeBytes + 1)),
    (buffer) =>
      Effect.sync(() => {
        if (table.uploadBuffers.length < table.config.workerCount) table.uploadBuffers.push(buffer)
      })
  )

/** Reads the part (under its I/O lock), hashes it (on a Hasher thread), PUTs it under its content-addressed key. */
const readAndPut = (table: Table, slot: Slot, checkpoint: CheckpointNumber): Effect.Effect<RemotePart, ObjectStoreError | LocalIoError | PartDamaged> =>
  Effect.scoped(
    Effect.gen(function* () {
      const buffer = yield* uploadBuffer(table)
      // A damaged part is checked under the I/O lock: a write that fails sets it before releasing it.
      const count = yield* ioOf(slot).withPermits(1)(Effect.zipRight(refuseDamaged(slot), table.disk.readAllInto(slot.path, buffer)))
      const length = Option.getOrElse(count, () => 0)
      if (length > table.config.partSizeBytes) {
        return yield* Effect.fail(
          new LocalIoError({ operation: "upload", path: slot.path, detail: `the part file is longer than a part (${table.config.partSizeBytes} bytes)` })
        )
      }
      const bytes = buffer.subarray(0, length)
      const sha256 = yield* table.hasher.sha256Hex(bytes)
      yield* table.store.put(KeyLayout.partKey(table.layout, checkpoint, slot.file, slot.part, sha256), bytes, { sha256Hex: sha256 })
      return { checkpoint, sha256, sizeBytes: length }
    })
  )

/**
 * The WritePart task's effect. Waits (interruptibly) until no other upload of the part is in
 * flight, then, if the part is still scheduled, UploadStart (dirty clears as the read begins) →
 * read → PUT → UploadSucceeded, or UploadFailed (dirty + scheduled again) on any failure or
 * interruption. A part no longer scheduled (an earlier task uploaded it) is a success with its
 * current remote. Safe to retry and to replay.
 */
const uploadRun = (table: Table, slot: Slot, checkpoint: CheckpointNumber): Effect.Effect<RemotePart | undefined, ObjectStoreError | LocalIoError | PartDamaged> =>
  Effect.uninterruptibleMask((restore) => {
    const attempt: Effect.Effect<RemotePart | undefined, ObjectStoreError | LocalIoError | PartDamaged> = Effect.zipRight(
      restore(STM.commit(awaitNotWriting(slot))),
      Effect.flatMap(STM.commit(tryStartUpload(table, slot)), (step) => {
        switch (step._tag) {
          case "Busy":
            return attempt
          case "Nothing":
            return Effect.succeed(step.remote)
          case "Started":
            return restore(readAndPut(table, slot, checkpoint)).pipe(
              Effect.onExit((exit) =>
                STM.commit(
                  STM.flatMap(TRef.get(slot.cell), (cell) =>
                    applyEvent(
                      table,
                      slot,
                      cell,
                      Exit.isSuccess(exit) ? PartStateDomain.PartEvent.UploadSucceeded(step.version, exit.value) : PartStateDomain.PartEvent.UploadFailed
                    )
                  )
                )
              )
            )
        }
      })
    )
    return attempt
  })

const enqueueUpload = (table: Table, slot: Slot, checkpoint: CheckpointNumber) =>
  table.queue.enqueue(new WritePart({ file: slot.file, part: slot.part, checkpoint }), uploadRun(table, slot, checkpoint))

type ScheduleStep = { readonly _tag: "Enqueue"; readonly checkpoint: CheckpointNumber; readonly fresh: boolean } | { readonly _tag: "None" }

/** Dirty and idle → Schedule; already scheduled and idle → enqueue again (the queue coalesces it
 * with a queued write of the part; after a failed upload nothing is queued, so this re-enqueues). */
const scheduleStep = (table: Table, slot: Slot): STM.STM<ScheduleStep> =>
  STM.flatMap(TRef.get(slot.cell), (cell): STM.STM<ScheduleStep> => {
    const state = cell.state
    // A damaged part is never uploaded (readAndPut refuses it): scheduling it would only fail again.
    if (state.writing || !state.dirty || slot.damaged !== undefined) return STM.succeed({ _tag: "None" })
    return STM.flatMap(TRef.get(table.openCheckpoint), (checkpoint): STM.STM<ScheduleStep> =>
      state.scheduled
        ? STM.succeed({ _tag: "Enqueue", checkpoint, fresh: false })
        : STM.as(applyEvent(table, slot, cell, PartStateDomain.PartEvent.Schedule), { _tag: "Enqueue", checkpoint, fresh: true })
    )
  })

/** Schedules (or re-enqueues) a part's upload: "fresh" when this call scheduled it, "requeued"
 * when it was already owed, "none" when there is nothing to upload or one is in flight. */
const scheduleSlot = (table: Table, slot: Slot): Effect.Effect<"fresh" | "requeued" | "none", QueueClosed> =>
  Effect.flatMap(STM.commit(scheduleStep(table, slot)), (step) =>
    step._tag === "None" ? Effect.succeed("none" as const) : Effect.as(enqueueUpload(table, slot, step.checkpoint), step.fresh ? "fresh" as const : "requeued" as const)
  )

type EnsureStep =
  | { readonly _tag: "Done"; readonly remote: RemotePart }
  | { readonly _tag: "WaitWriting" }
  | { readonly _tag: "Upload" }

const ensureStep = (table: Table, slot: Slot, version: number): STM.STM<EnsureStep> =>
  STM.flatMap(TRef.get(slot.cell), (cell): STM.STM<EnsureStep> => {
    const state = cell.state
    if (state.uploadedVersion >= version && state.remote !== undefined) return STM.succeed({ _tag: "Done", remote: state.remote })
    if (state.writing) return STM.succeed({ _tag: "WaitWriting" })
    if (state.scheduled) return STM.succeed({ _tag: "Upload" })
    if (state.dirty) return STM.as(applyEvent(table, slot, cell, PartStateDomain.PartEvent.Schedule), { _tag: "Upload" })
    return STM.dieMessage(`${slot.key}: clean, idle and still not uploaded at version ${version}: ${PartStateDomain.describeState(state)}`)
  })

const ensureUploaded = (table: Table) => (entry: SnapshotEntry, checkpoint: CheckpointNumber): Effect.Effect<RemotePart, UploadError> =>
  Effect.suspend(() => {
    const slot = table.slots.get(partKey(entry.file, entry.part))
    if (slot === undefined) return Effect.dieMessage(`ensureUploaded: part ${partKey(entry.file, entry.part)} is not in the table`)
    const loop: Effect.Effect<RemotePart, UploadError> = Effect.flatMap(STM.commit(ensureStep(table, slot, entry.version)), (step) => {
      switch (step._tag) {
        case "Done":
          return Effect.succeed(step.remote)
        case "WaitWriting":
          return Effect.zipRight(table.waits.track("PartTable.ensureUploaded", `upload of part ${slot.key} in flight`, STM.commit(awaitNotWriting(slot))), loop)
        case "Upload":
          return enqueueUpload(table, slot, checkpoint).pipe(
            Effect.flatMap((handle) => handle.await),
            Effect.zipRight(loop)
          )
      }
    })
    return loop
  })

// ---------------------------------------------------------------------------------------------
// Snapshot, install, eviction, stats
// ---------------------------------------------------------------------------------------------

const snapshot = (table: Table) => (checkpoint: CheckpointNumber): Effect.Effect<ReadonlyArray<SnapshotEntry>, ShuttingDown> =>
  Effect.suspend(() => {
    const slots = Array.from(table.order)
    return STM.commit(
      STM.gen(function* () {
        yield* failIfClosed(table, "snapshot")
        yield* TRef.set(table.openCheckpoint, CheckpointNumberSchema.make(checkpoint + 1))
        const cells = yield* STM.forEach(slots, (slot) => TRef.get(slot.cell))
        const entries: Array<SnapshotEntry> = []
        cells.forEach((cell, index) => {
          const slot = slots[index]
          const state = cell.state
          const needsUpload = PartStateDomain.needsUpload(state)
          if (slot !== undefined && (needsUpload || state.remote !== undefined)) {
            entries.push({ file: slot.file, part: slot.part, version: state.version, remote: state.remote, needsUpload })
          }
        })
        return entries
      })
    )
  })

const installState = (table: Table, slot: Slot, state: PartState): Effect.Effect<void> =>
  STM.commit(
    STM.flatMap(TRef.get(slot.cell), (cell) =>
      setCell(table, slot, cell, { state, loadGeneration: cell.loadGeneration + 1, loadFailure: undefined })
    )
  )

/** What `install` makes of a local part file: its state, or None when it is to be rebuilt. */
const adoptLocal = (
  table: Table,
  path: string,
  remote: RemotePart | undefined,
  options: InstallOptions
): Effect.Effect<Option.Option<PartState>, LocalIoError> =>
  Effect.flatMap(table.disk.readAll(path), (content) => {
    if (Option.isNone(content)) return Effect.succeed(Option.none())
    const bytes = content.value
    const sha256 = sha256Hex(bytes)
    const matchesRemote = remote !== undefined && bytes.length === remote.sizeBytes && sha256 === remote.sha256
    const state = PartStateDomain.localCopy({ sizeBytes: bytes.length, remote, matchesRemote })
    if (matchesRemote) return Effect.succeed(Option.some(state))
    // Differs from the bucket: newer data after a clean stop, if the clean stop vouched for it.
    const recorded = options.recordedHashes?.get(path)
    const trusted = (options.trustLocal ?? true) && (options.recordedHashes === undefined || recorded === sha256)
    if (trusted) return Effect.succeed(Option.some(state))
    const warn = options.trustLocal === false
      ? Effect.void // after a crash every differing file is rebuilt; nothing to warn of
      : Effect.logWarning(
        `part file ${path} ${recorded === undefined ? "is not in the record of the clean stop" : "does not have the SHA-256 recorded at the clean stop (bit rot?)"}: removed, rebuilt from the checkpoint and the WAL`
      )
    return Effect.zipRight(warn, Effect.as(table.disk.remove(path), Option.none()))
  })

const install = (table: Table) => (entries: Iterable<InstallEntry>, openCheckpoint: CheckpointNumber, options: InstallOptions = {}): Effect.Effect<void, LocalIoError> =>
  Effect.gen(function* () {
    yield* STM.commit(TRef.set(table.openCheckpoint, openCheckpoint))
    const localPaths = new Set(yield* table.disk.list(partsDirectory))
    for (const entry of entries) {
      const slot = yield* slotOf(table, entry.file, entry.part)
      const local = localPaths.delete(slot.path) ? yield* adoptLocal(table, slot.path, entry.remote, options) : Option.none()
      yield* installState(table, slot, Option.getOrElse(local, () => PartStateDomain.remoteOnly(entry.remote)))
    }
    // Part files no manifest names were written after the last checkpoint: kept, dirty, when the
    // clean stop vouches for them; otherwise the WAL replay rebuilds them.
    for (const path of localPaths) {
      const parsed = parsePartPath(path)
      if (Option.isNone(parsed)) continue
      if (options.trustLocal === false) {
        yield* table.disk.remove(path)
        continue
      }
      const local = yield* adoptLocal(table, path, undefined, options)
      if (Option.isSome(local)) yield* installState(table, yield* slotOf(table, parsed.value[0], parsed.value[1]), local.value)
    }
  })

const localPartHashes = (table: Table): Effect.Effect<ReadonlyArray<readonly [string, string]>, LocalIoError> =>
  Effect.gen(function* () {
    const hashes: Array<readonly [string, string]> = []
    for (const slot of Array.from(table.order)) {
      if (slot.damaged !== undefined) continue
      const state = (yield* STM.commit(TRef.get(slot.cell))).state
      if (state.status !== "Loaded") continue
      const clean = !state.dirty && !state.writing && state.leases === 0 && state.remote !== undefined
      if (clean && state.remote !== undefined) {
        hashes.push([slot.path, state.remote.sha256])
        continue
      }
      const content = yield* ioOf(slot).withPermits(1)(table.disk.readAll(slot.path))
      if (Option.isSome(content) && slot.damaged === undefined) hashes.push([slot.path, sha256Hex(content.value)])
    }
    return hashes
  })

type SweepStep =
  | { readonly _tag: "Evict"; readonly sizeBytes: number }
  | { readonly _tag: "Schedule" }
  | { readonly _tag: "Keep" }

/** The clock hand on one part: evict it if the rule allows, else halve its usage. */
const sweepStep = (table: Table, slot: Slot): STM.STM<SweepStep> =>
  STM.flatMap(TRef.get(slot.cell), (cell): STM.STM<SweepStep> => {
    const state = cell.state
    if (state.status !== "Loaded") return STM.succeed({ _tag: "Keep" })
    if (PartStateDomain.isEvictable(state)) {
      return STM.as(applyEvent(table, slot, cell, PartStateDomain.PartEvent.BeginEvict), { _tag: "Evict", sizeBytes: state.sizeBytes })
    }
    const swept = applyEvent(table, slot, cell, PartStateDomain.PartEvent.Sweep)
    // Dirty and idle: schedule it, or re-enqueue an owed upload (after a failure nothing is queued).
    return state.dirty && !state.writing ? STM.as(swept, { _tag: "Schedule" }) : STM.as(swept, { _tag: "Keep" })
  })

/** Evicting → unlink → NotLoaded, as one uninterruptible step (an unlink is short and local); a
 * failed unlink leaves the file, so the part returns to Loaded. */
const evictSlot = (table: Table, slot: Slot): Effect.Effect<void, LocalIoError> =>
  Effect.uninterruptible(
    table.disk.remove(slot.path).pipe(
      Effect.onExit((exit) =>
        STM.commit(
          STM.flatMap(TRef.get(slot.cell), (cell) =>
            applyEvent(table, slot, cell, Exit.isSuccess(exit) ? PartStateDomain.PartEvent.EvictDone : PartStateDomain.PartEvent.EvictAborted)
          )
        )
      )
    )
  )

const evict = (table: Table): Effect.Effect<EvictionReport, LocalIoError> =>
  table.sweepLock.withPermits(1)(
    Effect.gen(function* () {
      const loadedBytesBefore = (yield* STM.commit(TRef.get(table.counters))).loadedBytes
      let loadedBytes = loadedBytesBefore
      let evictedParts = 0
      let evictedBytes = 0
      let scheduledUploads = 0
      const total = table.order.length
      for (let visited = 0; visited < total && loadedBytes > table.config.localBytesMax; visited++) {
        table.hand = table.hand % table.order.length
        const slot = table.order[table.hand]
        table.hand += 1
        if (slot === undefined) continue
        const step = yield* STM.commit(sweepStep(table, slot))
        if (step._tag === "Evict") {
          yield* evictSlot(table, slot)
          evictedParts += 1
          evictedBytes += step.sizeBytes
          loadedBytes -= step.sizeBytes
        } else if (step._tag === "Schedule") {
          // Holding no lease; a closed queue only means shutdown is under way.
          const scheduled = yield* scheduleSlot(table, slot).pipe(Effect.catchTag("QueueClosed", () => Effect.succeed("none" as const)))
          if (scheduled === "fresh") scheduledUploads += 1
        }
      }
      const loadedBytesAfter = (yield* STM.commit(TRef.get(table.counters))).loadedBytes
      return { evictedParts, evictedBytes, loadedBytesBefore, loadedBytesAfter, scheduledUploads }
    })
  )

const allStates = (table: Table): Effect.Effect<ReadonlyArray<readonly [FileId, PartIndex, PartState]>> =>
  Effect.suspend(() => {
    const slots = Array.from(table.order)
    return Effect.map(STM.commit(STM.forEach(slots, (slot) => TRef.get(slot.cell))), (cells) =>
      cells.flatMap((cell, index) => {
        const slot = slots[index]
        return slot === undefined ? [] : [[slot.file, slot.part, cell.state] as const]
      })
    )
  })

const invariantProblems = (table: Table): Effect.Effect<ReadonlyArray<string>> =>
  Effect.suspend(() => {
    const slots = Array.from(table.order)
    return Effect.map(
      STM.commit(STM.zip(STM.forEach(slots, (slot) => TRef.get(slot.cell)), TRef.get(table.counters))),
      ([cells, counters]) => {
        const problems: Array<string> = []
        let sum = zeroCounters
        cells.forEach((cell, index) => {
          const problem = PartStateDomain.invariantProblem(cell.state)
          if (problem !== undefined) problems.push(`${slots[index]?.key ?? index}: ${problem} (${PartStateDomain.describeState(cell.state)})`)
          sum = addState(sum, cell.state, 1)
        })
        for (const name of Object.keys(zeroCounters) as Array<keyof Counters>) {
          if (sum[name] !== counters[name]) problems.push(`table: counter ${name} is ${counters[name]}, the parts sum to ${sum[name]}`)
        }
        return problems
      }
    )
  })

// ---------------------------------------------------------------------------------------------
// Read and write across parts
// ---------------------------------------------------------------------------------------------

/** The parts a byte range covers: [part, offset within the part, length, offset within the range]. */
const spans = (partSizeBytes: number, offset: number, length: number): Either.Either<Array<readonly [PartIndex, number, number, number]>, InvalidRange> => {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    return Either.left(new InvalidRange({ detail: `offset ${offset} and length ${length} must be non-negative integers` }))
  }
  const end = offset + length
  if (length > 0 && Math.floor((end - 1) / partSizeBytes) > 2 ** 31 - 1) {
    return Either.left(new InvalidRange({ detail: `bytes up to ${end} lie beyond the last part index` }))
  }
  const result: Array<readonly [PartIndex, number, number, number]> = []
  for (let position = offset; position < end;) {
    const part = Math.floor(position / partSizeBytes)
    const within = position - part * partSizeBytes
    const count = Math.min(partSizeBytes - within, end - position)
    result.push([PartIndexSchema.make(part), within, count, position - offset] as const)
    position += count
  }
  return Either.right(result)
}

const read = (table: Table) => (file: FileId, offset: number, length: number): Effect.Effect<Uint8Array, LeaseError> =>
  Effect.suspend(() =>
    Either.match(spans(table.config.partSizeBytes, offset, length), {
      onLeft: Effect.fail,
      onRight: (parts) => {
        const out = new Uint8Array(length)
        return Effect.as(
          Effect.forEach(
            parts,
            ([part, within, count, at]) =>
              withLease(table, file, part, (held) => held.read(within, count)).pipe(Effect.map((bytes) => out.set(bytes, at))),
            { discard: true }
          ),
          out
        )
      }
    })
  )

const write = (table: Table) => (file: FileId, offset: number, bytes: Uint8Array): Effect.Effect<void, LeaseError> =>
  Effect.suspend(() =>
    Either.match(spans(table.config.partSizeBytes, offset, bytes.length), {
      onLeft: Effect.fail,
      onRight: (parts) =>
        Effect.forEach(
          parts,
          ([part, within, count, at]) =>
            withLease(table, file, part, (held) => held.write(within, bytes.subarray(at, at + count))),
          { discard: true }
        )
    })
  )

// ---------------------------------------------------------------------------------------------
// Construction
// ---------------------------------------------------------------------------------------------

/** Builds an empty part table in the current scope (its loads are forked there and interrupted
 * when it closes). Call `install` once at start, before any lease, to adopt a manifest and the
 * local directory (the Loader does). @category constructors */
export const make: Effect.Effect<PartTableService, never, StorageConfig | LocalDisk | ObjectStore | TaskQueue | WaitRegistry | Hasher | Scope.Scope> =
  Effect.gen(function* () {
    const config = yield* StorageConfig
    const table: Table = {
      config,
      layout: keyLayout(config),
      disk: yield* LocalDisk,
      store: yield* ObjectStore,
      queue: yield* TaskQueue,
      waits: yield* WaitRegistry,
      slots: new Map(),
      order: [],
      counters: yield* TRef.make(zeroCounters),
      closed: yield* TRef.make(false),
      openCheckpoint: yield* TRef.make(CheckpointNumberSchema.make(1)),
      loads: yield* FiberSet.make<void, never>(),
      sweepLock: yield* Effect.makeSemaphore(1),
      uploadBuffers: [],
      hasher: yield* Hasher,
      hand: 0
    }
    const close = STM.commit(TRef.set(table.closed, true))
    yield* Effect.addFinalizer(() => close)
    return PartTable.of({
      lease: lease(table),
      read: read(table),
      write: write(table),
      scheduleUpload: (file, part) =>
        Effect.suspend(() => {
          const slot = table.slots.get(partKey(file, part))
          return slot === undefined ? Effect.succeed(false) : Effect.map(scheduleSlot(table, slot), (outcome) => outcome !== "none")
        }),
      snapshot: snapshot(table),
      ensureUploaded: ensureUploaded(table),
      install: install(table),
      localPartHashes: localPartHashes(table),
      evict: evict(table),
      stats: Effect.map(STM.commit(TRef.get(table.counters)), (counters) => ({ parts: table.slots.size, ...counters })),
      states: allStates(table),
      close,
      invariantProblems: invariantProblems(table)
    })
  })

/** The part table as a layer. @category layers */
export const layer: Layer.Layer<PartTable, never, StorageConfig | LocalDisk | ObjectStore | TaskQueue | WaitRegistry | Hasher> = Layer.scoped(PartTable, make)
