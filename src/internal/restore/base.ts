/**
 * A restore's base: the newest retained (not tombstoned) checkpoint at or before the target, chosen
 * from the bucket's listing (the latest state, a checkpoint N) or from every root object (an LSN, a
 * time), and the refusal of a target outside what the bucket retains, naming the window. Used by
 * Restore (src/layers/Restore.ts).
 *
 * Replaces: orioledb_s3_loader.py's choice of the highest checkpoint whose completion markers
 * answer (docs/ORIGINAL.md §5, "Read-back"), which had no point in time and no window to name.
 *
 * @since 0.2.0
 */
import { Effect } from "effect"
import { type CorruptObject, type ObjectStoreError, RestoreRefused } from "../../domain/Errors.js"
import { CheckpointNumber } from "../../domain/Ids.js"
import type * as Manifest from "../../domain/Manifest.js"
import type { RestoreTarget } from "../../layers/Restore.js"
import * as Loader from "../../services/Loader.js"
import type { ObjectStoreService } from "../../services/ObjectStore.js"
import type { StorageConfigValue } from "../../services/StorageConfig.js"
import { readRootObject } from "../checkpoints.js"

/** A checkpoint's root object as listed and read. */
export interface Root {
  readonly checkpoint: number
  readonly object: Manifest.RootObject
}

export const readRoot = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  number: number
): Effect.Effect<Root, ObjectStoreError | CorruptObject> =>
  Effect.map(readRootObject(store, config, CheckpointNumber.make(number)), (object) => ({ checkpoint: number, object }))

const createdOf = (
  root: Root
) => (root.object._tag === "Committed" ? root.object.manifest.createdAtMs : root.object.tombstone.createdAtMs)
const positionOf = (
  root: Root
) => (root.object._tag === "Committed" ? root.object.manifest.walPosition : root.object.tombstone.walPosition)

const formatWindowMs = (ms: number): string =>
  ms % 3_600_000 === 0
    ? `${ms / 3_600_000}h`
    : ms % 60_000 === 0
    ? `${ms / 60_000}m`
    : ms % 1_000 === 0
    ? `${ms / 1_000}s`
    : `${ms}ms`

/** "the bucket keeps the 2 latest checkpoints and 24h (oldest restorable: checkpoint 17, <time>, LSN 12345)" */
export const describeWindow = (policy: Manifest.CheckpointManifest | undefined, oldest: Root | undefined): string => {
  const kept = policy?.retainCheckpointsMin === undefined
    ? "the bucket's latest checkpoint names no retention policy"
    : `the bucket keeps the ${policy.retainCheckpointsMin} latest checkpoints` +
      ((policy.retainForMs ?? 0) > 0 ? ` and ${formatWindowMs(policy.retainForMs ?? 0)}` : "")
  const restorable = oldest === undefined
    ? "no checkpoint is restorable"
    : `oldest restorable: checkpoint ${oldest.checkpoint}, ${new Date(createdOf(oldest)).toISOString()}, LSN ${
      positionOf(oldest)
    }`
  return `${kept} (${restorable})`
}

/** A target in words, for messages and reports. */
export const describeTarget = (target: RestoreTarget): string => {
  switch (target._tag) {
    case "Latest":
      return "the latest state"
    case "Checkpoint":
      return `checkpoint ${target.checkpoint}`
    case "Lsn":
      return `LSN ${target.lsn}`
    case "Time":
      return `time ${new Date(target.timeMs).toISOString()}`
  }
}

/** Every root object, newest first (to choose a base by LSN or time, and to name the window). */
const readAllRoots = (store: ObjectStoreService, config: StorageConfigValue, numbers: ReadonlyArray<number>) =>
  Effect.forEach([...numbers].reverse(), (number) => readRoot(store, config, number), {
    concurrency: Math.min(config.workerCount, 16)
  })

/** The refusal of `target`, naming the window: the policy of the newest committed root manifest and
 * the oldest restorable checkpoint. */
export const refusal = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  target: RestoreTarget,
  reason: RestoreRefused["reason"],
  what: string
): Effect.Effect<never, RestoreRefused | ObjectStoreError | CorruptObject> =>
  Effect.gen(function*() {
    const roots = yield* readAllRoots(store, config, yield* Loader.listCheckpoints(store, config))
    const newest = roots.find((root) => root.object._tag === "Committed")
    const oldest = [...roots].reverse().find((root) => root.object._tag === "Committed")
    const policy = newest?.object._tag === "Committed" ? newest.object.manifest : undefined
    return yield* new RestoreRefused({
      reason,
      detail: `${describeTarget(target)} ${what}: ${describeWindow(policy, oldest)}`
    })
  })

/**
 * The base checkpoint's number for a target. For the latest state and a checkpoint only the listing
 * is read: the root manifest is read once the lease protects it. For an LSN or a time every root
 * object is read to choose (these reads are not trusted: the base's is read again under the lease).
 */
export const chooseBase = (store: ObjectStoreService, config: StorageConfigValue, target: RestoreTarget) =>
  Effect.gen(function*() {
    const numbers = yield* Loader.listCheckpoints(store, config)
    if (numbers.length === 0) {
      // No checkpoint yet: the base is the empty state (0), and the whole archived WAL is replayed.
      if (target._tag !== "Checkpoint") return 0
      return yield* new RestoreRefused({
        reason: "NoCheckpoint",
        detail: `${describeTarget(target)} does not exist: ${store.description} has no checkpoint`
      })
    }
    switch (target._tag) {
      case "Latest":
        return numbers[numbers.length - 1] ?? 0
      case "Checkpoint":
        if (numbers.some((number) => number === target.checkpoint)) return target.checkpoint
        return yield* refusal(store, config, target, "OutsideWindow", "does not exist in the bucket")
      case "Lsn":
      case "Time": {
        const roots = yield* readAllRoots(store, config, numbers)
        const fits = (
          root: Root
        ) => (target._tag === "Lsn" ? positionOf(root) <= target.lsn : createdOf(root) <= target.timeMs)
        const candidate = roots.find((root) => root.object._tag === "Committed" && fits(root))
        if (candidate === undefined) {
          return yield* refusal(store, config, target, "OutsideWindow", "is outside the retention window")
        }
        return candidate.checkpoint
      }
    }
  })
