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
 * Replaces: orioledb_s3_loader.py (find the highest N whose markers exist, download; orioledb-s3.md
 * §5 "Read-back") and the start-up half of src/s3/control.c (`s3_check_control`).
 *
 * @since 0.1.0
 */
import { Chunk, Context, Effect, Either, Layer, Option, Random, type Scope, Stream } from "effect"
import * as Control from "../domain/Control.js"
import { type BucketLocked, type CorruptObject, type DirectoryLocked, type LocalIoError, type ObjectStoreError, type StartupRefused, WalSegmentSizeMismatch } from "../domain/Errors.js"
import { type CheckpointNumber, CheckpointNumber as CheckpointNumberSchema, Epoch as EpochSchema, type FileId, InstanceId, Lsn } from "../domain/Ids.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import * as Manifest from "../domain/Manifest.js"
import { commitRootManifest, newCommitToken } from "../internal/RootCommit.js"
import * as BucketLock from "./BucketLock.js"
import { LocalDisk, type LocalDiskService } from "./LocalDisk.js"
import { ObjectStore, type ObjectStoreService } from "./ObjectStore.js"
import { PartTable } from "./PartTable.js"
import { withRequestPolicy } from "./RequestPolicy.js"
import { keyLayout, StorageConfig, type StorageConfigValue } from "./StorageConfig.js"

/** The control file's path in the data directory. */
export const controlPath = "control.json"

/** Why start-up failed. */
export type OpenError = ObjectStoreError | CorruptObject | LocalIoError | StartupRefused | BucketLocked | DirectoryLocked | WalSegmentSizeMismatch

/** One file of a checkpoint, with its part map. */
export interface LoadedFile {
  readonly entry: Manifest.FileEntry
  readonly parts: ReadonlyArray<Manifest.PartEntry>
}

/** A checkpoint read back from the bucket: its root manifest and every file's part map. */
export interface LoadedCheckpoint {
  readonly manifest: Manifest.CheckpointManifest
  readonly files: ReadonlyMap<FileId, LoadedFile>
}

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
  ) => Effect.Effect<number, unknown>
}

/** The loader. @category tags */
export class Loader extends Context.Tag("effect-s3-tier/Loader")<Loader, LoaderService>() {}

// ---------------------------------------------------------------------------------------------
// Reading the bucket (also used by the Checkpointer and the CLI's inspect/verify)
// ---------------------------------------------------------------------------------------------

/** Every complete checkpoint number in the bucket, ascending. */
export const listCheckpoints = (store: ObjectStoreService, config: StorageConfigValue): Effect.Effect<ReadonlyArray<CheckpointNumber>, ObjectStoreError> => {
  const layout = keyLayout(config)
  return store.list(KeyLayout.checkpointsPrefix(layout)).pipe(
    Stream.filterMap((info) =>
      Option.flatMap(KeyLayout.parseKey(layout, info.key), (key) => (key._tag === "Checkpoint" ? Option.some(key.checkpoint) : Option.none()))
    ),
    Stream.runCollect,
    Effect.map((numbers) => Chunk.toReadonlyArray(numbers).slice().sort((a, b) => a - b)),
    withRequestPolicy(config, "list checkpoints", KeyLayout.checkpointsPrefix(layout))
  )
}

/** Reads `checkpoints/<N>` and decodes it with `decode`. */
const readRootWith = <A>(
  store: ObjectStoreService,
  config: StorageConfigValue,
  checkpoint: CheckpointNumber,
  decode: (key: string, bytes: Uint8Array, checkpoint: CheckpointNumber) => Either.Either<A, CorruptObject>
): Effect.Effect<A, ObjectStoreError | CorruptObject> => {
  const key = KeyLayout.checkpointKey(keyLayout(config), checkpoint)
  return store.get(key).pipe(
    withRequestPolicy(config, "read checkpoint manifest", key),
    Effect.flatMap((bytes) => decode(key, bytes, checkpoint))
  )
}

/** Reads and validates checkpoint N's root manifest (a tombstone there is a CorruptObject). */
export const readCheckpointManifest = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  checkpoint: CheckpointNumber
): Effect.Effect<Manifest.CheckpointManifest, ObjectStoreError | CorruptObject> => readRootWith(store, config, checkpoint, Manifest.decodeCheckpointManifest)

/** Reads what `checkpoints/<N>` holds: a committed root manifest or the tombstone of an expired one. */
export const readRootObject = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  checkpoint: CheckpointNumber
): Effect.Effect<Manifest.RootObject, ObjectStoreError | CorruptObject> => readRootWith(store, config, checkpoint, Manifest.decodeRootObject)

/**
 * A commit's read-back of `checkpoints/<N>` (src/internal/RootCommit.ts): the manifest there, None
 * when there is none. A tombstone there stands for the manifest it replaced (its instance, epoch and
 * number; no commit token, no files): the number was committed by someone else, whose epoch says
 * whether the committing writer is fenced.
 */
export const readBackRoot = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  checkpoint: CheckpointNumber
): Effect.Effect<Option.Option<Manifest.CheckpointManifest>, ObjectStoreError | CorruptObject> =>
  readRootObject(store, config, checkpoint).pipe(
    Effect.map((root) =>
      Option.some(root._tag === "Committed" ? root.manifest : {
        format: Manifest.checkpointManifestFormat,
        instanceId: root.tombstone.instanceId,
        epoch: root.tombstone.epoch,
        checkpoint: root.tombstone.checkpoint,
        previous: CheckpointNumberSchema.make(Math.max(0, root.tombstone.checkpoint - 1)),
        createdAtMs: root.tombstone.createdAtMs,
        partSizeBytes: config.partSizeBytes,
        walSegmentBytes: config.walSegmentBytes,
        walPosition: root.tombstone.walPosition,
        files: []
      })
    ),
    Effect.catchTag("ObjectNotFound", () => Effect.succeed(Option.none()))
  )

/** Reads every file manifest a root manifest names (bounded concurrency), checking each digest. */
export const readCheckpoint = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  manifest: Manifest.CheckpointManifest
): Effect.Effect<LoadedCheckpoint, ObjectStoreError | CorruptObject> => {
  const layout = keyLayout(config)
  return Effect.forEach(
    manifest.files,
    (entry) => {
      const key = KeyLayout.fileManifestKey(layout, entry.manifestCheckpoint, entry.file, entry.manifestSha256)
      return store.get(key).pipe(
        withRequestPolicy(config, "read file manifest", key),
        Effect.flatMap((bytes) =>
          Manifest.decodeFileManifest(key, bytes, { file: entry.file, sha256: entry.manifestSha256, partSizeBytes: manifest.partSizeBytes })
        ),
        Effect.map((fileManifest) => [entry.file, { entry, parts: fileManifest.parts }] as const)
      )
    },
    { concurrency: Math.min(config.workerCount, 16) }
  ).pipe(Effect.map((files) => ({ manifest, files: new Map(files) })))
}

/** The highest complete checkpoint, read back whole; undefined for a bucket without one. */
export const readLatest = (
  store: ObjectStoreService,
  config: StorageConfigValue
): Effect.Effect<LoadedCheckpoint | undefined, ObjectStoreError | CorruptObject> =>
  listCheckpoints(store, config).pipe(
    Effect.flatMap((numbers) => {
      const latest = numbers[numbers.length - 1]
      return latest === undefined
        ? Effect.succeed(undefined)
        : readCheckpointManifest(store, config, latest).pipe(Effect.flatMap((manifest) => readCheckpoint(store, config, manifest)))
    })
  )

// ---------------------------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------------------------

const readControl = (disk: LocalDiskService): Effect.Effect<Control.Control | undefined, LocalIoError | CorruptObject> =>
  disk.readAll(controlPath).pipe(
    Effect.flatMap(
      Option.match({
        onNone: () => Effect.succeed(undefined),
        onSome: (bytes) => Control.decodeControl(`${disk.root}/${controlPath}`, bytes)
      })
    )
  )

/** A fresh instance id: 16 random hex digits (from Effect's Random, so a seed decides it in tests). */
export const newInstanceId: Effect.Effect<InstanceId> = Effect.map(
  Effect.all(Array.from({ length: 4 }, () => Random.nextIntBetween(0, 0x10000))),
  (words) => InstanceId.make(`i${words.map((word) => word.toString(16).padStart(4, "0")).join("")}`)
)

/**
 * After a take-over: claims the next checkpoint number with a copy of the latest checkpoint under the
 * new epoch, so that the old holder's next commit finds it taken. Re-reads and retries (at most five
 * rounds) when the old holder committed in between.
 */
const claimAfterTakeOver = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  lock: BucketLock.HeldLock,
  now: number
): Effect.Effect<LoadedCheckpoint | undefined, ObjectStoreError | CorruptObject> =>
  Effect.gen(function* () {
    for (let round = 0; round < 5; round++) {
      const latest = yield* readLatest(store, config)
      const previous = latest?.manifest.checkpoint ?? CheckpointNumberSchema.make(0)
      const checkpoint = CheckpointNumberSchema.make(previous + 1)
      const claim: Manifest.CheckpointManifest & { readonly commitToken: string } = {
        format: Manifest.checkpointManifestFormat,
        instanceId: lock.instanceId,
        epoch: lock.epoch,
        checkpoint,
        previous,
        createdAtMs: now,
        partSizeBytes: config.partSizeBytes,
        walSegmentBytes: config.walSegmentBytes,
        walPosition: latest?.manifest.walPosition ?? Lsn.make(0),
        files: latest?.manifest.files ?? [],
        commitToken: yield* newCommitToken,
        retainCheckpointsMin: config.retainCheckpointsMin,
        retainForMs: config.retainForMs
      }
      const key = KeyLayout.checkpointKey(keyLayout(config), checkpoint)
      // A claim is a commit: an outcome the network left unknown is read back (src/internal/RootCommit.ts).
      const resolution = yield* commitRootManifest({
        manifest: claim,
        put: store.put(key, Manifest.encodeCheckpointManifest(claim), { ifNoneMatch: true }).pipe(withRequestPolicy(config, "claim checkpoint", key)),
        readBack: readBackRoot(store, config, checkpoint),
        earlierTokens: new Set(),
        conflictRetriesMax: config.retryAttemptsMax,
        conflictDelayMs: config.retryDelayBaseMs
      }).pipe(Effect.catchTag("PreconditionFailed", () => Effect.succeed({ _tag: "Taken" } as const)))
      const claimed = resolution._tag === "Committed"
      if (claimed) return { manifest: claim, files: latest?.files ?? new Map() }
    }
    return yield* readLatest(store, config)
  })

const hasOtherFiles = (disk: LocalDiskService): Effect.Effect<boolean, LocalIoError> =>
  disk.list("").pipe(Effect.map((paths) => paths.some((path) => path !== controlPath)))

/** The start-up sequence; see the module comment. The directory lock and the bucket lock are held
 * for the life of the scope. */
export const open: Effect.Effect<Opened & { readonly bucketLock: BucketLock.BucketLockService }, OpenError, StorageConfig | ObjectStore | LocalDisk | PartTable | Scope.Scope> = Effect.gen(function* () {
  const config = yield* StorageConfig
  const store = yield* ObjectStore
  const disk = yield* LocalDisk
  const parts = yield* PartTable
  yield* disk.lockDirectory
  yield* store.probe.pipe(withRequestPolicy(config, "probe"))
  const control = yield* readControl(disk)
  const otherFiles = yield* hasOtherFiles(disk)
  const latest = yield* readLatest(store, config)
  const bucket: Control.BucketState = {
    store: store.description,
    prefix: config.prefix,
    latest: latest === undefined ? undefined : latest.manifest,
    ...(yield* readNewer(store, config, control, latest))
  }
  const plan = yield* planStartupEffect(control, otherFiles, bucket, config)
  // The bucket's WAL is archived in segments of the size its checkpoints record: no other size can read it.
  if (latest !== undefined && latest.manifest.walSegmentBytes !== config.walSegmentBytes) {
    return yield* new WalSegmentSizeMismatch({
      bucketSegmentBytes: latest.manifest.walSegmentBytes,
      configuredSegmentBytes: config.walSegmentBytes,
      detail: `checkpoint ${latest.manifest.checkpoint} was written with ${latest.manifest.walSegmentBytes}-byte WAL segments; start with that walSegmentBytes`
    })
  }
  const instanceId = control?.instanceId ?? (yield* newInstanceId)
  const walDurableLsn = plan._tag === "Reopen" ? plan.control.walDurableLsn : undefined
  const controlOf = (epoch: number, base: LoadedCheckpoint | undefined): Control.Control => ({
    format: Control.controlFormat,
    instanceId,
    epoch: EpochSchema.make(epoch),
    store: store.description,
    prefix: config.prefix,
    lastCheckpoint: base?.manifest.checkpoint ?? CheckpointNumberSchema.make(0),
    walPosition: base?.manifest.walPosition ?? Lsn.make(0),
    partSizeBytes: config.partSizeBytes,
    walSegmentBytes: config.walSegmentBytes,
    cleanShutdown: false,
    ...(base?.manifest.commitToken === undefined || base.manifest.instanceId === instanceId ? {} : { baseCommitToken: base.manifest.commitToken }),
    // Kept until the WAL has opened past it: an open that refused damage below it refuses again.
    ...(walDurableLsn === undefined ? {} : { walDurableLsn })
  })
  // A fresh directory learns its instance id before any lock can name it.
  if (plan._tag === "Fresh") yield* writeControl(disk, controlOf(0, undefined))
  const seenEpoch = Math.max(latest?.manifest.epoch ?? 0, control?.epoch ?? 0)
  const lock = yield* BucketLock.acquire(store, config, instanceId, seenEpoch, yield* BucketLock.newGeneration).pipe(
    Effect.tapErrorTag("BucketLocked", () => (plan._tag === "Fresh" ? disk.remove(controlPath).pipe(Effect.ignore) : Effect.void))
  )
  const bucketLock = yield* BucketLock.make(store, config, lock)
  // Runs after the Storage's own shutdown released the lock (then it does nothing), or when
  // start-up failed after taking it.
  yield* Effect.addFinalizer(() => Effect.asVoid(bucketLock.release(config)))
  const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
  const base = lock.tookOver ? yield* claimAfterTakeOver(store, config, lock, now) : latest
  // Local part files are trusted only after a clean shutdown, and only with the hash it recorded
  // for each (see PartTable.InstallOptions); a clean stop that recorded none counts as a crash.
  const recordedHashes = plan._tag === "Reopen" && plan.control.cleanShutdown && plan.control.localParts !== undefined
    ? new Map(Object.entries(plan.control.localParts))
    : undefined
  const installed = yield* install(parts, base, recordedHashes)
  const walPosition = base?.manifest.walPosition ?? Lsn.make(0)
  yield* writeControl(disk, controlOf(lock.epoch, base))
  return { plan: plan._tag, lock, base, walPosition, installedParts: installed, bucketLock, ...(walDurableLsn === undefined ? {} : { walDurableLsn }) }
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
  if (top.checkpoint <= control.lastCheckpoint + 1 || top.instanceId !== control.instanceId || top.epoch !== control.epoch) return Effect.succeed({})
  return listCheckpoints(store, config).pipe(
    Effect.flatMap((numbers) =>
      Effect.forEach(
        numbers.filter((number) => number > control.lastCheckpoint && number < top.checkpoint),
        // A checkpoint the garbage collector expired since keeps its writer in its tombstone.
        (number) =>
          Effect.map(readRootObject(store, config, number), (root): Control.CheckpointSummary =>
            root._tag === "Committed" ? root.manifest : { checkpoint: root.tombstone.checkpoint, instanceId: root.tombstone.instanceId, epoch: root.tombstone.epoch }),
        { concurrency: Math.min(config.workerCount, 16) }
      )
    ),
    Effect.map((manifests) => ({ newer: [...manifests, top] }))
  )
}

const planStartupEffect = (
  control: Control.Control | undefined,
  otherFiles: boolean,
  bucket: Control.BucketState,
  config: StorageConfigValue
): Effect.Effect<Control.StartupPlan, StartupRefused> =>
  Either.match(Control.planStartup(control, otherFiles, bucket, config), { onLeft: Effect.fail, onRight: Effect.succeed })

const install = (
  parts: PartTable["Type"],
  base: LoadedCheckpoint | undefined,
  recordedHashes: ReadonlyMap<string, string> | undefined
): Effect.Effect<number, LocalIoError> => {
  const entries: Array<{ file: FileId; part: Manifest.PartEntry[0]; remote: Manifest.RemotePart }> = []
  for (const [file, loaded] of base?.files ?? []) {
    for (const [part, checkpoint, sha256, sizeBytes] of loaded.parts) entries.push({ file, part, remote: { checkpoint, sha256, sizeBytes } })
  }
  const openCheckpoint = CheckpointNumberSchema.make((base?.manifest.checkpoint ?? 0) + 1)
  const options = recordedHashes === undefined ? { trustLocal: false } : { trustLocal: true, recordedHashes }
  return parts.install(entries, openCheckpoint, options).pipe(Effect.as(entries.length))
}

/**
 * Marks a clean shutdown: syncs the given dirty part files, then rewrites the control file with
 * `cleanShutdown: true` and the SHA-256 of each local part file (PartTable.localPartHashes), so the
 * next start trusts the local part files that still have their recorded hash; and with the WAL's
 * durable end, below which the next open treats a bad frame as damage, not as a torn tail.
 */
export const markCleanShutdown = (
  disk: LocalDiskService,
  dirtyPaths: ReadonlyArray<string>,
  localPartHashes: ReadonlyArray<readonly [string, string]>,
  walDurableLsn?: Lsn
): Effect.Effect<void, LocalIoError | CorruptObject> =>
  Effect.gen(function* () {
    yield* Effect.forEach(dirtyPaths, (path) => disk.sync(path), { concurrency: 8, discard: true })
    const control = yield* readControl(disk)
    if (control !== undefined) {
      const durable = walDurableLsn === undefined ? {} : { walDurableLsn: Lsn.make(Math.max(walDurableLsn, control.walDurableLsn ?? 0)) }
      yield* writeControl(disk, { ...control, cleanShutdown: true, localParts: Object.fromEntries(localPartHashes), ...durable })
    }
  })

/** Writes the control file atomically and durably. */
export const writeControl = (disk: LocalDiskService, control: Control.Control): Effect.Effect<void, LocalIoError> =>
  disk.writeAtomic(controlPath, Control.encodeControl(control))

/** Loads every part of the base checkpoint through leases (each load is one ReadPart task). */
const prefetch = (opened: Opened) =>
  (concurrency: number, onProgress?: (progress: PrefetchProgress) => Effect.Effect<void>) =>
    Effect.gen(function* () {
      const parts = yield* PartTable
      const targets: Array<readonly [FileId, Manifest.PartEntry[0]]> = []
      for (const [file, loaded] of opened.base?.files ?? []) for (const entry of loaded.parts) targets.push([file, entry[0]])
      let done = 0
      yield* Effect.forEach(
        targets,
        ([file, part]) =>
          Effect.scoped(parts.lease(file, part)).pipe(
            Effect.zipRight(Effect.sync(() => ++done)),
            Effect.flatMap((count) => (onProgress === undefined ? Effect.void : onProgress({ done: count, total: targets.length })))
          ),
        { concurrency: Math.max(1, concurrency), discard: true }
      )
      return done
    })

/** The loader as a layer: start-up runs when the layer is built. @category layers */
export const layer: Layer.Layer<Loader, OpenError, StorageConfig | ObjectStore | LocalDisk | PartTable> = Layer.scoped(
  Loader,
  Effect.gen(function* () {
    const { bucketLock, ...opened } = yield* open
    const parts = yield* PartTable
    return Loader.of({
      opened,
      bucketLock,
      prefetch: (concurrency, onProgress) => prefetch(opened)(concurrency, onProgress).pipe(Effect.provideService(PartTable, parts))
    })
  })
)
