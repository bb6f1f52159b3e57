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
 * The rule is enforced in src/internal/partTable/lease.ts (`attemptOnce`, `waitAndAcquire`).
 *
 * Local storage: every part is its own file on the LocalDisk (the path scheme is
 * src/domain/PartPath.ts), so evicting a part is an unlink that frees its space for real.
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
 * also fails the WAL beside it; this costs the write path one flag check.
 *
 * The writes to one part file and the upload's read of it are serialized by a per-part lock, so
 * an upload never reads half of a concurrent write. Loads and evictions need no lock: a Loading or
 * Evicting part has no lease and no upload.
 *
 * Spans: "part.lease" (file, part) when a lease has to load or wait (a lease on a Loaded part
 * makes none), with "part.load" as its child; "part.upload" around the read, hash and PUT of a part.
 *
 * Where each part lives (src/internal/partTable/): `table.ts` the rows, cells and counters;
 * `lease.ts` leases and THE RULE; `load.ts` loads; `writeBack.ts` uploads, snapshot and
 * ensureUploaded; `install.ts` install and the clean-stop hashes; `evict.ts` the clock sweep.
 *
 * @since 0.1.0
 */
import { Context, Effect, FiberSet, Layer, STM, TRef } from "effect"
import type { Scope } from "effect"
import type {
  InvalidRange,
  LocalIoError,
  ObjectStoreError,
  PartDamaged,
  PartLeaseTimeout,
  PartLoadFailed,
  QueueClosed,
  ShuttingDown,
  TaskAborted
} from "../domain/Errors.js"
import {
  type CheckpointNumber,
  CheckpointNumber as CheckpointNumberSchema,
  type FileId,
  type PartIndex
} from "../domain/Ids.js"
import type { RemotePart } from "../domain/Manifest.js"
import type { PartState } from "../domain/PartState.js"
import { evict } from "../internal/partTable/evict.js"
import { install, localPartHashes } from "../internal/partTable/install.js"
import { lease, read, write } from "../internal/partTable/lease.js"
import { allStates, invariantProblems, type Table, zeroCounters } from "../internal/partTable/table.js"
import { ensureUploaded, scheduleUpload, snapshot } from "../internal/partTable/writeBack.js"
import { Hasher } from "./Hasher.js"
import { LocalDisk } from "./LocalDisk.js"
import { ObjectStore } from "./ObjectStore.js"
import { keyLayout, StorageConfig } from "./StorageConfig.js"
import { TaskQueue } from "./TaskQueue.js"
import { WaitRegistry } from "./WaitRegistry.js"

/** Why a lease could not be taken. */
export type LeaseError = PartLoadFailed | PartLeaseTimeout | ShuttingDown | LocalIoError | InvalidRange | PartDamaged

/** Why a part's upload did not happen. */
export type UploadError = ObjectStoreError | QueueClosed | TaskAborted | LocalIoError | ShuttingDown | PartDamaged

/** A held lease on one Loaded part: reads and writes of that part go through it. */
export interface PartLease {
  readonly file: FileId
  readonly part: PartIndex
  /** Bytes [offset, offset + length) of the part (offsets within the part); zeros where never written. */
  readonly read: (
    offset: number,
    length: number
  ) => Effect.Effect<Uint8Array, LocalIoError | InvalidRange | PartDamaged>
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
  readonly ensureUploaded: (
    entry: SnapshotEntry,
    checkpoint: CheckpointNumber
  ) => Effect.Effect<RemotePart, UploadError>
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

/** Builds an empty part table in the current scope (its loads are forked there and interrupted
 * when it closes). Call `install` once at start, before any lease, to adopt a manifest and the
 * local directory (the Loader does). @category constructors */
export const make: Effect.Effect<
  PartTableService,
  never,
  StorageConfig | LocalDisk | ObjectStore | TaskQueue | WaitRegistry | Hasher | Scope.Scope
> = Effect.gen(function*() {
  const config = yield* StorageConfig
  const table: Table = {
    config,
    layout: keyLayout(config),
    disk: yield* LocalDisk,
    store: yield* ObjectStore,
    queue: yield* TaskQueue,
    waits: yield* WaitRegistry,
    hasher: yield* Hasher,
    rows: new Map(),
    order: [],
    counters: yield* TRef.make(zeroCounters),
    closed: yield* TRef.make(false),
    openCheckpoint: yield* TRef.make(CheckpointNumberSchema.make(1)),
    loads: yield* FiberSet.make<void, never>(),
    sweepLock: yield* Effect.makeSemaphore(1),
    partBuffers: [],
    hand: 0
  }
  const close = STM.commit(TRef.set(table.closed, true))
  yield* Effect.addFinalizer(() => close)
  return PartTable.of({
    lease: lease(table),
    read: read(table),
    write: write(table),
    scheduleUpload: scheduleUpload(table),
    snapshot: snapshot(table),
    ensureUploaded: ensureUploaded(table),
    install: install(table),
    localPartHashes: localPartHashes(table),
    evict: evict(table),
    stats: Effect.map(STM.commit(TRef.get(table.counters)), (counters) => ({ parts: table.rows.size, ...counters })),
    states: allStates(table),
    close,
    invariantProblems: invariantProblems(table)
  })
})

/** The part table as a layer. @category layers */
export const layer: Layer.Layer<
  PartTable,
  never,
  StorageConfig | LocalDisk | ObjectStore | TaskQueue | WaitRegistry | Hasher
> = Layer.scoped(PartTable, make)
