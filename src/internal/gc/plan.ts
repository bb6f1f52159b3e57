/**
 * The judging part of a garbage-collection pass (step g of the pass described in
 * src/services/GarbageCollector.ts): the policy in force, the verdict on every listed object, and
 * the tallies of the report. Pure: no I/O.
 *
 * Replaces: nothing in OrioleDB, which deletes nothing (its issue #334).
 *
 * @internal
 * @since 0.2.0
 */
import { Option } from "effect"
import * as KeyLayout from "../../domain/KeyLayout.js"
import type * as Manifest from "../../domain/Manifest.js"
import * as Retention from "../../domain/Retention.js"
import type { KeptReason, Tally } from "../../services/GarbageCollector.js"
import type { ObjectInfo } from "../../services/ObjectStore.js"
import type { StorageConfigValue } from "../../services/StorageConfig.js"
import type { ListedLease } from "./read.js"
import type { Doomed } from "./write.js"

export const emptyKinds = (): Record<Retention.ObjectKind, Tally> => ({
  part: { objects: 0, bytes: 0 },
  "file-manifest": { objects: 0, bytes: 0 },
  wal: { objects: 0, bytes: 0 },
  lease: { objects: 0, bytes: 0 }
})

export const emptyKept = (): Record<KeptReason, Tally> => ({
  referenced: { objects: 0, bytes: 0 },
  "in-flight": { objects: 0, bytes: 0 },
  young: { objects: 0, bytes: 0 },
  "wal-needed": { objects: 0, bytes: 0 },
  "not-collected": { objects: 0, bytes: 0 },
  "lease-live": { objects: 0, bytes: 0 },
  "held-by-lease": { objects: 0, bytes: 0 }
})

export const add = (tally: Tally, bytes: number): Tally => ({ objects: tally.objects + 1, bytes: tally.bytes + bytes })

export const policyOf = (
  config: StorageConfigValue,
  given: Partial<Retention.RetentionPolicy> | undefined,
  latest: Manifest.CheckpointManifest | undefined
): Retention.RetentionPolicy => ({
  retainCheckpointsMin: given?.retainCheckpointsMin ?? latest?.retainCheckpointsMin ?? config.retainCheckpointsMin,
  retainForMs: given?.retainForMs ?? latest?.retainForMs ?? config.retainForMs
})

/** Judges every listed object; returns what to delete and the kept tallies. */
export const judgeAll = (
  layout: KeyLayout.KeyLayout,
  live: Retention.LiveSet,
  objects: ReadonlyArray<ObjectInfo>,
  leases: ReadonlyArray<ListedLease>
): { readonly doomed: ReadonlyArray<Doomed>; readonly kept: Record<KeptReason, Tally> } => {
  const kept = emptyKept()
  const doomed: Array<Doomed> = []
  const byId = new Map(leases.map((listed) => [listed.lease.id, listed.lease]))
  const judged = [...objects, ...leases.map((listed) => listed.info)]
  for (const info of judged) {
    const parsed = Option.getOrUndefined(KeyLayout.parseKey(layout, info.key))
    const verdict = Retention.judge(live, info, parsed, parsed?._tag === "Lease" ? byId.get(parsed.id) : undefined)
    if (verdict._tag === "Delete") doomed.push({ info, kind: verdict.kind })
    else kept[verdict.reason] = add(kept[verdict.reason], info.sizeBytes)
  }
  return { doomed, kept }
}

/** The plan's part of the report. */
export const planReport = (plan: Retention.RetentionPlan) => ({
  latest: plan.latest,
  windowStartMs: plan.windowStartMs ?? null,
  walFloorLsn: plan.walFloorLsn,
  retained: [...plan.retained].sort(([left], [right]) => left - right).map(([checkpoint, reasons]) => ({
    checkpoint,
    reasons
  })),
  leases: { live: plan.liveLeases, expired: plan.expiredLeases }
})
