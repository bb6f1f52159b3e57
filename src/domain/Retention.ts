/**
 * Retention and the garbage collector's live-set rule, as pure functions of what a pass read from
 * the bucket: which committed checkpoints are kept and why, which expire, how far back the archived
 * WAL is needed, and, per listed object, whether it may be deleted.
 *
 * Replaces: nothing. OrioleDB keeps the bucket's history forever (its issue #334); this is the rule
 * its S3 tier never had. The rule follows what kept its peers' collectors safe and where they failed
 * (SlateDB #604/#1044/#1622 and RFC 0026, Neon #12921, Litestream #1307):
 * - only committed root manifests, and checkpoints named by live reader leases, make objects live;
 * - every part and file manifest of a checkpoint number above the latest committed one is an upload
 *   that a commit in flight may still name, and is kept whatever its age. One at the latest number
 *   that its root does not name is a failed attempt's, which no later checkpoint names
 *   (`mayStillBeNamed`);
 * - every object younger than the minimum age is kept (a request still in flight may write it);
 * - an expired checkpoint's root manifest is replaced by a tombstone, never deleted, so that its
 *   number can never be committed again by a create-if-absent put (RFC 0026).
 * A pass that cannot read everything it needs deletes nothing; that is the caller's part.
 *
 * @since 0.2.0
 */
import type { BucketKey } from "./KeyLayout.js"
import * as Wal from "./Wal.js"

/** How much history a bucket keeps. @category models */
export interface RetentionPolicy {
  /** Keep at least this many of the latest committed checkpoints (≥ 1). */
  readonly retainCheckpointsMin: number
  /** Keep every checkpoint created inside this window, and the newest one before it; 0 = none. */
  readonly retainForMs: number
}

/** A checkpoint as a pass sees it: from its root manifest, or from the tombstone that replaced it. */
export interface CheckpointSummary {
  readonly checkpoint: number
  readonly createdAtMs: number
  /** Every WAL record below this position is in the checkpoint's parts. */
  readonly walPosition: number
  /** True when its root manifest is a tombstone: the checkpoint has expired and cannot be restored. */
  readonly expired: boolean
}

/** A reader's lease on one checkpoint (leases/<id>). */
export interface LeaseSummary {
  readonly id: string
  readonly checkpoint: number
  readonly expiresAtMs: number
}

/** Why a checkpoint is pinned: among the latest, created in the window, the newest before it, or named by a live reader lease. */
export type KeepReason = "latest" | "window" | "window-base" | "lease"

/** What a pass decides about checkpoints. @category models */
export interface RetentionPlan {
  /** The latest committed checkpoint (0 when the bucket has none). */
  readonly latest: number
  /** Committed, not expired checkpoints that stay restorable, with why. */
  readonly retained: ReadonlyMap<number, ReadonlyArray<KeepReason>>
  /** Committed checkpoints to expire now (their root manifest becomes a tombstone). */
  readonly expire: ReadonlyArray<number>
  /** Checkpoints whose objects stay: the retained ones and every one a live lease names. */
  readonly pinned: ReadonlySet<number>
  /** Archived WAL below this position is no longer needed by any pinned checkpoint. */
  readonly walFloorLsn: number
  /** The start of the point-in-time window (`nowMs - retainForMs`), or undefined for none. */
  readonly windowStartMs: number | undefined
  /** Leases still live at `nowMs` (with `leaseSkewMs` of grace). */
  readonly liveLeases: ReadonlyArray<LeaseSummary>
  /** Leases whose expiry has passed: their objects may be removed. */
  readonly expiredLeases: ReadonlyArray<LeaseSummary>
}

/** True while a lease protects its checkpoint: until its expiry plus the allowed clock skew. */
export const leaseLive = (lease: LeaseSummary, nowMs: number, leaseSkewMs: number): boolean =>
  lease.expiresAtMs + leaseSkewMs > nowMs

/** Decides which checkpoints stay. `checkpoints` in any order; tombstoned ones are never revived. */
export const plan = (
  checkpoints: ReadonlyArray<CheckpointSummary>,
  policy: RetentionPolicy,
  leases: ReadonlyArray<LeaseSummary>,
  nowMs: number,
  leaseSkewMs: number
): RetentionPlan => {
  const sorted = [...checkpoints].sort((a, b) => a.checkpoint - b.checkpoint)
  const committed = sorted.filter((summary) => !summary.expired)
  const latest = sorted.length === 0 ? 0 : sorted[sorted.length - 1]!.checkpoint
  const reasons = new Map<number, Array<KeepReason>>()
  const keep = (checkpoint: number, reason: KeepReason) => {
    const list = reasons.get(checkpoint)
    if (list === undefined) reasons.set(checkpoint, [reason])
    else if (!list.includes(reason)) list.push(reason)
  }
  for (const summary of committed.slice(-Math.max(1, policy.retainCheckpointsMin))) keep(summary.checkpoint, "latest")
  const windowStartMs = policy.retainForMs > 0 ? nowMs - policy.retainForMs : undefined
  if (windowStartMs !== undefined) {
    let base: CheckpointSummary | undefined
    for (const summary of committed) {
      if (summary.createdAtMs >= windowStartMs) keep(summary.checkpoint, "window")
      else base = summary
    }
    if (base !== undefined) keep(base.checkpoint, "window-base")
  }
  const liveLeases = leases.filter((lease) => leaseLive(lease, nowMs, leaseSkewMs))
  const expiredLeases = leases.filter((lease) => !leaseLive(lease, nowMs, leaseSkewMs))
  const byNumber = new Map(sorted.map((summary) => [summary.checkpoint, summary]))
  for (const lease of liveLeases) {
    const summary = byNumber.get(lease.checkpoint)
    if (summary !== undefined && !summary.expired) keep(lease.checkpoint, "lease")
  }
  const pinned = new Set<number>([...reasons.keys(), ...liveLeases.map((lease) => lease.checkpoint)])
  let walFloorLsn = Number.MAX_SAFE_INTEGER
  for (const checkpoint of pinned) {
    const summary = byNumber.get(checkpoint)
    // A lease on a number the pass did not see pins the whole WAL: nothing below it is known safe.
    walFloorLsn = Math.min(walFloorLsn, summary === undefined ? 0 : summary.walPosition)
  }
  if (pinned.size === 0) walFloorLsn = 0
  return {
    latest,
    retained: reasons,
    expire: committed.filter((summary) => !reasons.has(summary.checkpoint)).map((summary) => summary.checkpoint),
    pinned,
    walFloorLsn,
    windowStartMs,
    liveLeases,
    expiredLeases
  }
}

/** What a pass knows when it judges one listed object. */
export interface LiveSet {
  readonly plan: RetentionPlan
  /** Keys of every file manifest and part named by a pinned checkpoint. */
  readonly referenced: ReadonlySet<string>
  readonly walSegmentBytes: number
  readonly minAgeMs: number
  readonly nowMs: number
  /** A live lease names an expired checkpoint, whose file list the tombstone does not keep: every
   * part and file manifest stays until that lease lapses (its reader may be reading any of them). */
  readonly heldByExpiredLease?: boolean
}

/** The kinds of object the collector may delete (root manifests, tombstones and the lock never). */
export type ObjectKind = "part" | "file-manifest" | "wal" | "lease"

/** The live-set rule's answer for one listed object: kept (and why) or deleted. */
export type Verdict =
  | {
    readonly _tag: "Keep"
    readonly reason:
      | "referenced"
      | "in-flight"
      | "young"
      | "wal-needed"
      | "not-collected"
      | "lease-live"
      | "held-by-lease"
  }
  | { readonly _tag: "Delete"; readonly kind: ObjectKind }

/**
 * Whether a part or file manifest of checkpoint `checkpoint` that no pinned checkpoint names may
 * still be named by a commit, with `latest` the latest committed number: only above it. Once
 * `latest` is committed no other attempt at it can commit, and no later checkpoint names what its
 * attempts uploaded under it and its root does not: a checkpoint writes the file manifests of the
 * files it changed under its own number and takes the others from its previous root, and an attempt
 * that an earlier attempt at the same number may still overtake uploads its parts under the next
 * number (Checkpointer), as write-back does once a checkpoint has begun.
 */
export const mayStillBeNamed = (checkpoint: number, latest: number): boolean => checkpoint > latest

const keepAs = (reason: Extract<Verdict, { _tag: "Keep" }>["reason"]): Verdict => ({ _tag: "Keep", reason })

/**
 * Judges one listed object. `key` is its parsed key (undefined: not this layout's, never deleted);
 * `lease` the decoded lease when the key is a lease object. Root manifests (and their tombstones)
 * and the lock are never deleted here.
 */
export const judge = (
  live: LiveSet,
  object: { readonly key: string; readonly lastModifiedMs: number },
  parsed: BucketKey | undefined,
  lease?: LeaseSummary
): Verdict => {
  if (parsed === undefined) return keepAs("not-collected")
  switch (parsed._tag) {
    case "Checkpoint":
    case "Lock":
      return keepAs("not-collected")
    case "Lease":
      if (lease === undefined) return keepAs("not-collected")
      return live.plan.liveLeases.some((each) => each.id === lease.id)
        ? keepAs("lease-live")
        : { _tag: "Delete", kind: "lease" }
    case "Part":
    case "FileManifest": {
      if (live.referenced.has(object.key)) return keepAs("referenced")
      if (mayStillBeNamed(parsed.checkpoint, live.plan.latest)) return keepAs("in-flight")
      if (live.nowMs - object.lastModifiedMs < live.minAgeMs) return keepAs("young")
      if (live.heldByExpiredLease === true) return keepAs("held-by-lease")
      return { _tag: "Delete", kind: parsed._tag === "Part" ? "part" : "file-manifest" }
    }
    case "Wal": {
      if (Wal.segmentEnd(parsed.segment, live.walSegmentBytes) > live.plan.walFloorLsn) return keepAs("wal-needed")
      if (live.nowMs - object.lastModifiedMs < live.minAgeMs) return keepAs("young")
      return { _tag: "Delete", kind: "wal" }
    }
  }
}
