/**
 * Loader: start-up and restore. Opens the local data directory against the bucket: refuses a
 * directory that belongs elsewhere or is out of step (StartupRefused), takes the bucket lock
 * (BucketLock), finds the highest complete checkpoint, and installs its part map in the PartTable
 * with every part NotLoaded unless a local copy is present, so parts are fetched lazily on their
 * first lease. `prefetch` loads every part eagerly, with bounded concurrency and progress.
 *
 * Nothing is written before every check has passed: a refused start changes nothing. The one
 * exception is a fresh directory's control file, written (with its new instance id) before the
 * bucket lock that names the instance can exist, and removed again if the lock is refused: a start
 * that fails with the lock's outcome unknown leaves a directory that knows the instance.
 *
 * The data directory is locked for the life of the layer (LocalDisk.lockDirectory), and so is the
 * bucket lock (the BucketLock service: renewed, sticky fence); a start-up that fails after taking
 * the bucket lock releases it (the layer's finalizer).
 *
 * Replaces: orioledb_s3_loader.py (find the highest N whose markers exist, download; docs/ORIGINAL.md
 * §5 "Read-back") and the start-up half of src/s3/control.c (`s3_check_control`).
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Either, Layer, Option, Random, type Scope } from "effect"
import * as Control from "../domain/Control.js"
import {
  type BucketLocked,
  type CorruptObject,
  type DirectoryLocked,
  type LocalIoError,
  type ObjectStoreError,
  type StartupRefused,
  WalSegmentSizeMismatch
} from "../domain/Errors.js"
import {
  CheckpointNumber as CheckpointNumberSchema,
  Epoch as EpochSchema,
  type FileId,
  InstanceId,
  Lsn
} from "../domain/Ids.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import * as Manifest from "../domain/Manifest.js"
import {
  listCheckpoints,
  type LoadedCheckpoint,
  manifestReadConcurrency,
  readBackRoot,
  readLatest,
  readRootObject
} from "../internal/checkpoints.js"
import { commitRootManifest, newCommitToken } from "../internal/RootCommit.js"
import * as BucketLock from "./BucketLock.js"
import { LocalDisk, type LocalDiskService } from "./LocalDisk.js"
import { ObjectStore, type ObjectStoreService } from "./ObjectStore.js"
import { type LeaseError, PartTable } from "./PartTable.js"
import { withRequestPolicy } from "./RequestPolicy.js"
import { keyLayout, StorageConfig, type StorageConfigValue } from "./StorageConfig.js"

// The bucket readers live in src/internal/checkpoints.ts; re-exported here for the callers that
// import them from the loader.
export {
  listCheckpoints,
  type LoadedCheckpoint,
  type LoadedFile,
  readBackRoot,
  readCheckpoint,
  readCheckpointManifest,
  readLatest,
  readRootObject
} from "../internal/checkpoints.js"

/** The control file's path in the data directory. */
export const controlPath = "control.json"

/** Why start-up failed. */
export type OpenError =
  | ObjectStoreError
  | CorruptObject
  | LocalIoError
  | StartupRefused
  | BucketLocked
  | DirectoryLocked
  | WalSegmentSizeMismatch

/** What start-up found and decided. */
export interface Opened {
  readonly plan: Control.StartupPlan["_tag"]
  readonly lock: BucketLock.HeldLock
  /** The checkpoint the directory starts from (after a take-over: the claiming checkpoint). */
  readonly base: LoadedCheckpoint | undefined
  /** WAL records at and after this position are not in `base`: replay them. */
  readonly walPosition: Lsn
  /** Parts installed from `base` (NotLoaded or present locally). */
  readonly installedParts: number
  /** Everything below it was durable in the local WAL at an earlier clean stop (Control.walDurableLsn). */
  readonly walDurableLsn?: Lsn
}

/** Progress of an eager prefetch. */
export interface PrefetchProgress {
  readonly done: number
  readonly total: number
}

/** The operations of the loader. @category models */
export interface LoaderService {
  readonly opened: Opened
  /** The bucket lock held for the layer's life: its sticky fence, renewal and release. */
  readonly bucketLock: BucketLock.BucketLockService
  /** Loads every NotLoaded part of the base checkpoint, `concurrency` at a time. */
  readonly prefetch: (
    concurrency: number,
    onProgress?: (progress: PrefetchProgress) => Effect.Effect<void>
  ) => Effect.Effect<number, LeaseError>
}

/** The loader. @category tags */
export class Loader extends Context.Tag("effect-s3-tier/Loader")<Loader, LoaderService>() {}

// ---------------------------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------------------------

/**
 * Rounds of the claim after a take-over. A round is lost only to a commit of the old holder landing
 * between the round's read of the latest checkpoint and its put. The old holder checks the lock
 * before each commit, so normally only the commit already past that check when the lock changed
 * hands lands after it; the bound leaves room for a few more (a holder that cannot read the lock
 * passes its check). Each round is bounded by the request policy (`requestTimeoutMs` per request,
 * retries within `retryElapsedMaxMs`, at most `retryAttemptsMax` conflict retries of the put). Past
 * the bound, start-up goes on from the latest checkpoint unclaimed; the old holder is still fenced
 * by the lock (its next renewal or lock check finds it taken at a higher epoch).
 */
export const claimRoundsMax = 5

/** Dirty part files synced at once by a clean stop: local fsyncs, independent of the bucket's bounds. */
export const syncConcurrency = 8

const readControl = (
  disk: LocalDiskService
): Effect.Effect<Control.Control | undefined, LocalIoError | CorruptObject> =>
  disk.readAll(controlPath).pipe(
    Effect.flatMap(
      Option.match({
        onNone: () => Effect.succeed(undefined),
        onSome: (bytes) =>
          Either.match(Control.decodeControl(`${disk.root}/${controlPath}`, bytes), {
            onLeft: Effect.fail,
            onRight: Effect.succeed
          })
      })
    )
  )

/** A fresh instance id: 16 random hex digits (from Effect's Random, so a seed decides it in tests). */
export const newInstanceId: Effect.Effect<InstanceId> = Effect.map(
  Effect.all(Array.from({ length: 4 }, () => Random.nextIntBetween(0, 0x10000))),
  (words) => InstanceId.make(`i${words.map((word) => word.toString(16).padStart(4, "0")).join("")}`)
)

/** One round of the claim: a copy of the latest checkpoint under the holder's epoch, committed as the
 * number after it; None when that number was taken meanwhile. */
const claimOnce = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  lock: BucketLock.HeldLock,
  nowMs: number
): Effect.Effect<Option.Option<LoadedCheckpoint>, ObjectStoreError | CorruptObject> =>
  Effect.gen(function*() {
    const latest = yield* readLatest(store, config)
    const previous = latest?.manifest.checkpoint ?? CheckpointNumberSchema.make(0)
    const checkpoint = CheckpointNumberSchema.make(previous + 1)
    const claim = Manifest.rootManifest({
      writer: lock,
      checkpoint,
      previous,
      createdAtMs: nowMs,
      walPosition: latest?.manifest.walPosition ?? Lsn.make(0),
      files: latest?.manifest.files ?? [],
      commitToken: yield* newCommitToken,
      config
    })
    const key = KeyLayout.checkpointKey(keyLayout(config), checkpoint)
    // A claim is a commit: an outcome the network left unknown is read back (src/internal/RootCommit.ts).
    const resolution = yield* commitRootManifest({
      manifest: claim,
      put: store.put(key, Manifest.encodeCheckpointManifest(claim), { ifNoneMatch: true }).pipe(
        withRequestPolicy(config, "claim checkpoint", key)
      ),
      readBack: readBackRoot(store, config, checkpoint),
      earlierTokens: new Set(),
      conflictRetriesMax: config.retryAttemptsMax,
      conflictDelayMs: config.retryDelayBaseMs
    }).pipe(Effect.catchTag("PreconditionFailed", () => Effect.succeed({ _tag: "Taken" } as const)))
    return resolution._tag === "Committed"
      ? Option.some({ manifest: claim, files: latest?.files ?? new Map() })
      : Option.none()
  })

/**
 * After a take-over: claims the next checkpoint number with a copy of the latest checkpoint under the
 * new epoch, so that the old holder's next commit finds it taken. Re-reads and retries when the old
 * holder committed in between, at most `claimRoundsMax` rounds.
 */
const claimAfterTakeOver = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  lock: BucketLock.HeldLock,
  nowMs: number
): Effect.Effect<LoadedCheckpoint | undefined, ObjectStoreError | CorruptObject> =>
  Effect.gen(function*() {
    for (let round = 0; round < claimRoundsMax; round++) {
      const claimed = yield* claimOnce(store, config, lock, nowMs)
      if (Option.isSome(claimed)) return claimed.value
    }
    return yield* readLatest(store, config)
  })

const hasOtherFiles = (disk: LocalDiskService): Effect.Effect<boolean, LocalIoError> =>
  disk.list("").pipe(Effect.map((paths) => paths.some((path) => path !== controlPath)))

/** What the directory and the bucket hold before anything is written, and the plan they give. */
interface Survey {
  readonly control: Control.Control | undefined
  readonly latest: LoadedCheckpoint | undefined
  readonly plan: Control.StartupPlan
}

/** Reads the control file and the bucket's latest checkpoint and decides (`Control.planStartup`);
 * refuses a directory or a bucket that going on with would lose or fork data. Writes nothing. */
const survey = (
  store: ObjectStoreService,
  disk: LocalDiskService,
  config: StorageConfigValue
): Effect.Effect<Survey, ObjectStoreError | CorruptObject | LocalIoError | StartupRefused | WalSegmentSizeMismatch> =>
  Effect.gen(function*() {
    const control = yield* readControl(disk)
    const otherFiles = yield* hasOtherFiles(disk)
    const latest = yield* readLatest(store, config)
    const bucket: Control.BucketState = {
      store: store.description,
      prefix: config.prefix,
      latest: latest === undefined ? undefined : latest.manifest,
      ...(yield* readNewer(store, config, control, latest))
    }
    const plan = yield* Either.match(Control.planStartup(control, otherFiles, bucket, config), {
      onLeft: Effect.fail,
      onRight: Effect.succeed
    })
    // The bucket's WAL is archived in segments of the size its checkpoints record: no other size can read it.
    if (latest !== undefined && latest.manifest.walSegmentBytes !== config.walSegmentBytes) {
      return yield* new WalSegmentSizeMismatch({
        bucketSegmentBytes: latest.manifest.walSegmentBytes,
        configuredSegmentBytes: config.walSegmentBytes,
        detail:
          `checkpoint ${latest.manifest.checkpoint} was written with ${latest.manifest.walSegmentBytes}-byte WAL segments; start with that walSegmentBytes`
      })
    }
    return { control, latest, plan }
  })

/**
 * Takes the bucket lock for `instanceId` and holds it for the scope (renewed; released by the
 * scope's finalizer, which runs after the Storage's own shutdown released it, and then does nothing,
 * or when start-up failed after taking it). A fresh directory learns its instance id (its control
 * file) before any lock can name it, and forgets it again when the lock is refused.
 */
const takeLock = (
  store: ObjectStoreService,
  disk: LocalDiskService,
  config: StorageConfigValue,
  surveyed: Survey,
  instanceId: InstanceId
): Effect.Effect<
  BucketLock.BucketLockService,
  ObjectStoreError | CorruptObject | LocalIoError | BucketLocked,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const fresh = surveyed.plan._tag === "Fresh"
    if (fresh) {
      yield* writeControl(
        disk,
        Control.forCheckpoint({
          holder: { instanceId, epoch: EpochSchema.make(0) },
          store: store.description,
          config,
          base: undefined
        })
      )
    }
    const seenEpoch = Math.max(surveyed.latest?.manifest.epoch ?? 0, surveyed.control?.epoch ?? 0)
    const control = surveyed.control
    const stoppedGeneration = control?.cleanShutdown === true ? control.stoppedLockGeneration : undefined
    const generation = yield* BucketLock.newGeneration
    const lock = yield* BucketLock.acquire(store, config, instanceId, seenEpoch, generation, stoppedGeneration).pipe(
      Effect.tapErrorTag("BucketLocked", () => (fresh ? disk.remove(controlPath).pipe(Effect.ignore) : Effect.void))
    )
    const bucketLock = yield* BucketLock.make(store, config, lock)
    yield* Effect.addFinalizer(() => Effect.asVoid(bucketLock.release(config)))
    return bucketLock
  })

/** The start-up sequence; see the module comment. The directory lock and the bucket lock are held
 * for the life of the scope. */
export const open: Effect.Effect<
  Opened & { readonly bucketLock: BucketLock.BucketLockService },
  OpenError,
  StorageConfig | ObjectStore | LocalDisk | PartTable | Scope.Scope
> = Effect.gen(function*() {
  const config = yield* StorageConfig
  const store = yield* ObjectStore
  const disk = yield* LocalDisk
  const parts = yield* PartTable
  yield* disk.lockDirectory
  yield* store.probe.pipe(withRequestPolicy(config, "probe"))
  const surveyed = yield* survey(store, disk, config)
  const { plan } = surveyed
  const instanceId = surveyed.control?.instanceId ?? (yield* newInstanceId)
  const bucketLock = yield* takeLock(store, disk, config, surveyed, instanceId)
  const lock = bucketLock.lock
  const nowMs = yield* Clock.currentTimeMillis
  const base = lock.tookOver ? yield* claimAfterTakeOver(store, config, lock, nowMs) : surveyed.latest
  // Local part files are trusted only after a clean shutdown, and only with the hash it recorded
  // for each (see PartTable.InstallOptions); a clean stop that recorded none counts as a crash.
  const recordedHashes = plan._tag === "Reopen" && plan.control.cleanShutdown && plan.control.localParts !== undefined
    ? new Map(Object.entries(plan.control.localParts))
    : undefined
  const installed = yield* install(parts, base, recordedHashes)
  const walPosition = base?.manifest.walPosition ?? Lsn.make(0)
  // Kept until the WAL has opened past it: an open that refused damage below it refuses again.
  const walDurableLsn = plan._tag === "Reopen" ? plan.control.walDurableLsn : undefined
  yield* writeControl(
    disk,
    Control.forCheckpoint({ holder: lock, store: store.description, config, base: base?.manifest, walDurableLsn })
  )
  return {
    plan: plan._tag,
    lock,
    base,
    walPosition,
    installedParts: installed,
    bucketLock,
    ...(walDurableLsn === undefined ? {} : { walDurableLsn })
  }
})

/**
 * For a directory behind the bucket whose latest checkpoint is of its instance and epoch: the root
 * manifests after the directory's checkpoint, ascending (what `Control.foreignHistory` checks).
 */
const readNewer = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  control: Control.Control | undefined,
  latest: LoadedCheckpoint | undefined
): Effect.Effect<{ readonly newer?: ReadonlyArray<Control.CheckpointSummary> }, ObjectStoreError | CorruptObject> => {
  if (control === undefined || latest === undefined) return Effect.succeed({})
  const top = latest.manifest
  if (
    top.checkpoint <= control.lastCheckpoint + 1 || top.instanceId !== control.instanceId || top.epoch !== control.epoch
  ) return Effect.succeed({})
  return listCheckpoints(store, config).pipe(
    Effect.flatMap((numbers) =>
      Effect.forEach(
        numbers.filter((number) => number > control.lastCheckpoint && number < top.checkpoint),
        // A checkpoint the garbage collector expired since keeps its writer in its tombstone.
        (number) =>
          Effect.map(readRootObject(store, config, number), (root): Control.CheckpointSummary =>
            root._tag === "Committed"
              ? root.manifest
              : {
                checkpoint: root.tombstone.checkpoint,
                instanceId: root.tombstone.instanceId,
                epoch: root.tombstone.epoch
              }),
        { concurrency: manifestReadConcurrency(config) }
      )
    ),
    Effect.map((manifests) => ({ newer: [...manifests, top] }))
  )
}

const install = (
  parts: PartTable["Type"],
  base: LoadedCheckpoint | undefined,
  recordedHashes: ReadonlyMap<string, string> | undefined
): Effect.Effect<number, LocalIoError> => {
  const entries: Array<{ file: FileId; part: Manifest.PartEntry[0]; remote: Manifest.RemotePart }> = []
  for (const [file, loaded] of base?.files ?? []) {
    for (const [part, checkpoint, sha256, sizeBytes] of loaded.parts) {
      entries.push({ file, part, remote: { checkpoint, sha256, sizeBytes } })
    }
  }
  const openCheckpoint = CheckpointNumberSchema.make((base?.manifest.checkpoint ?? 0) + 1)
  const options = recordedHashes === undefined ? { trustLocal: false } : { trustLocal: true, recordedHashes }
  return parts.install(entries, openCheckpoint, options).pipe(Effect.as(entries.length))
}

/**
 * Marks a clean shutdown: syncs the given dirty part files, then rewrites the control file with
 * `cleanShutdown: true` and the SHA-256 of each local part file (PartTable.localPartHashes), so the
 * next start trusts the local part files that still have their recorded hash; and with the WAL's
 * durable end, below which the next open treats a bad frame as damage, not as a torn tail; and with
 * the generation of the bucket lock this open held, which the next start then takes at once
 * (BucketLock.acquire): a renewal of it can only land late.
 */
export const markCleanShutdown = (
  disk: LocalDiskService,
  dirtyPaths: ReadonlyArray<string>,
  localPartHashes: ReadonlyArray<readonly [string, string]>,
  walDurableLsn?: Lsn,
  lockGeneration?: string
): Effect.Effect<void, LocalIoError | CorruptObject> =>
  Effect.gen(function*() {
    yield* Effect.forEach(dirtyPaths, (path) => disk.sync(path), { concurrency: syncConcurrency, discard: true })
    const control = yield* readControl(disk)
    if (control !== undefined) {
      const durable = walDurableLsn === undefined
        ? {}
        : { walDurableLsn: Lsn.make(Math.max(walDurableLsn, control.walDurableLsn ?? 0)) }
      yield* writeControl(disk, {
        ...control,
        cleanShutdown: true,
        localParts: Object.fromEntries(localPartHashes),
        ...durable,
        ...(lockGeneration === undefined ? {} : { stoppedLockGeneration: lockGeneration })
      })
    }
  })

/** Writes the control file atomically and durably. */
export const writeControl = (disk: LocalDiskService, control: Control.Control): Effect.Effect<void, LocalIoError> =>
  disk.writeAtomic(controlPath, Control.encodeControl(control))

/** Loads every part of the base checkpoint through leases (each load is one ReadPart task). */
const prefetch =
  (opened: Opened) => (concurrency: number, onProgress?: (progress: PrefetchProgress) => Effect.Effect<void>) =>
    Effect.gen(function*() {
      const parts = yield* PartTable
      const targets: Array<readonly [FileId, Manifest.PartEntry[0]]> = []
      for (const [file, loaded] of opened.base?.files ?? []) {
        for (const entry of loaded.parts) targets.push([file, entry[0]])
      }
      let done = 0
      yield* Effect.forEach(
        targets,
        ([file, part]) =>
          Effect.scoped(parts.lease(file, part)).pipe(
            Effect.zipRight(Effect.sync(() => ++done)),
            Effect.flatMap((
              count
            ) => (onProgress === undefined ? Effect.void : onProgress({ done: count, total: targets.length })))
          ),
        { concurrency: Math.max(1, concurrency), discard: true }
      )
      return done
    })

/** The loader as a layer: start-up runs when the layer is built. @category layers */
export const layer: Layer.Layer<Loader, OpenError, StorageConfig | ObjectStore | LocalDisk | PartTable> = Layer.scoped(
  Loader,
  Effect.gen(function*() {
    const { bucketLock, ...opened } = yield* open
    const parts = yield* PartTable
    return Loader.of({
      opened,
      bucketLock,
      prefetch: (concurrency, onProgress) =>
        prefetch(opened)(concurrency, onProgress).pipe(Effect.provideService(PartTable, parts))
    })
  })
)
