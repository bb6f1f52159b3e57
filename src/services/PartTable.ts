/**
 * PartTable: the local cache of fixed-size parts, with OrioleDB's part state machine, scoped part
 * leases, lazy loading from the bucket, dirty tracking and write-back.
 *
 * Replaces: OrioleDB's src/s3/headers.c (part words, `s3_header_lock_part`, mark_part_* transitions)
 * and the part write scheduling of src/btree/io.c (orioledb-s3.md §4). The transitions are the pure
 * functions of src/domain/PartState.ts; here they run inside STM so that waiting for a transition is
 * an interruptible wait on a state change (never a 10 ms sleep-poll), raced against
 * `leaseTimeoutMs`.
 *
 * THE RULE: library code never holds a lease while it waits on the task queue. A lease is taken
 * only on a Loaded part; loading happens before the lease exists (the loader waits on the read task
 * holding nothing). This removes the lock-then-wait shape of the #340 hang.
 *
 * IMPLEMENTATION: placeholder signatures; see issue "3 of 8".
 *
 * @since 0.1.0
 */
import { Context, type Effect, type Scope } from "effect"
import type {
  InvalidRange,
  LocalIoError,
  ObjectStoreError,
  PartLeaseTimeout,
  PartLoadFailed,
  QueueClosed,
  ShuttingDown,
  TaskAborted
} from "../domain/Errors.js"
import type { CheckpointNumber, FileId, PartIndex } from "../domain/Ids.js"
import type { RemotePart } from "../domain/Manifest.js"
import type { PartState } from "../domain/PartState.js"

/** Why a lease could not be taken. */
export type LeaseError = PartLoadFailed | PartLeaseTimeout | ShuttingDown | LocalIoError | InvalidRange

/** Why a part's upload did not happen. */
export type UploadError = ObjectStoreError | QueueClosed | TaskAborted | LocalIoError | ShuttingDown

/** A held lease on one Loaded part: reads and writes of that part go through it. */
export interface PartLease {
  readonly file: FileId
  readonly part: PartIndex
  /** Bytes [offset, offset + length) of the part (offsets within the part); zeros where never written. */
  readonly read: (offset: number, length: number) => Effect.Effect<Uint8Array, LocalIoError | InvalidRange>
  /** Writes bytes at an offset within the part; the part becomes dirty when the lease is released. */
  readonly write: (offset: number, bytes: Uint8Array) => Effect.Effect<void, LocalIoError | InvalidRange>
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
  /** Dirty parts whose write-back the sweep scheduled so that a later sweep can evict them. */
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
  /** Write-back of one part: if dirty and not scheduled, enqueues its upload. True if it scheduled one. */
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
  readonly install: (entries: Iterable<InstallEntry>, openCheckpoint: CheckpointNumber) => Effect.Effect<void, LocalIoError>
  /** One eviction sweep (clock algorithm) down to `localBytesMax`; see src/services/Evictor.ts. */
  readonly evict: Effect.Effect<EvictionReport, LocalIoError>
  readonly stats: Effect.Effect<PartTableStats>
  /** Every part's state, for invariant checks. */
  readonly states: Effect.Effect<ReadonlyArray<readonly [FileId, PartIndex, PartState]>>
  /** Shutdown: later leases and writes fail with ShuttingDown, waiting leases wake with it. Idempotent. */
  readonly close: Effect.Effect<void>
}

/** The part table. @category tags */
export class PartTable extends Context.Tag("effect-s3-tier/PartTable")<PartTable, PartTableService>() {}
