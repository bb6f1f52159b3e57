/**
 * Reading checkpoints back from the bucket: the committed checkpoint numbers, one root object
 * (a root manifest or the tombstone of an expired one), a commit's read-back of its key, a
 * checkpoint's file manifests (each checked against the digest its root names), and the latest
 * checkpoint whole. Shared by start-up (Loader), the commit's read-back (Checkpointer, RootCommit),
 * the garbage collector, the restore and the CLI's inspect and verify; every request goes through
 * the request policy (timeout, retries).
 *
 * Replaces: the listing and download half of orioledb_s3_loader.py (find the highest N whose
 * markers exist, then fetch what `file_checksums` names; docs/ORIGINAL.md §5 "Read-back").
 *
 * @since 0.1.0
 */
import { Chunk, Effect, Either, Option, Stream } from "effect"
import type { CorruptObject, ObjectStoreError } from "../domain/Errors.js"
import type { CheckpointNumber, FileId } from "../domain/Ids.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import * as Manifest from "../domain/Manifest.js"
import type { ObjectStoreService } from "../services/ObjectStore.js"
import { withRequestPolicy } from "../services/RequestPolicy.js"
import { keyLayout, type StorageConfigValue } from "../services/StorageConfig.js"

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

/** Most manifests read at once: the workers' count (the requests they would run at once), at most 16
 * (a checkpoint of many files need not open more connections than that to read its part maps). */
export const manifestReadConcurrency = (config: StorageConfigValue): number => Math.min(config.workerCount, 16)

/** A decode's result as an effect. */
const fromEither = <A, E>(either: Either.Either<A, E>): Effect.Effect<A, E> =>
  Either.match(either, { onLeft: Effect.fail, onRight: Effect.succeed })

/** Every complete checkpoint number in the bucket, ascending. */
export const listCheckpoints = (
  store: ObjectStoreService,
  config: StorageConfigValue
): Effect.Effect<ReadonlyArray<CheckpointNumber>, ObjectStoreError> => {
  const layout = keyLayout(config)
  return store.list(KeyLayout.checkpointsPrefix(layout)).pipe(
    Stream.filterMap((info) =>
      Option.flatMap(
        KeyLayout.parseKey(layout, info.key),
        (key) => (key._tag === "Checkpoint" ? Option.some(key.checkpoint) : Option.none())
      )
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
    Effect.flatMap((bytes) => fromEither(decode(key, bytes, checkpoint)))
  )
}

/** Reads and validates checkpoint N's root manifest (a tombstone there is a CorruptObject). */
export const readCheckpointManifest = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  checkpoint: CheckpointNumber
): Effect.Effect<Manifest.CheckpointManifest, ObjectStoreError | CorruptObject> =>
  readRootWith(store, config, checkpoint, Manifest.decodeCheckpointManifest)

/** Reads what `checkpoints/<N>` holds: a committed root manifest or the tombstone of an expired one. */
export const readRootObject = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  checkpoint: CheckpointNumber
): Effect.Effect<Manifest.RootObject, ObjectStoreError | CorruptObject> =>
  readRootWith(store, config, checkpoint, Manifest.decodeRootObject)

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
      Option.some(root._tag === "Committed" ? root.manifest : Manifest.tombstoneStandIn(root.tombstone, config))
    ),
    Effect.catchTag("ObjectNotFound", () => Effect.succeed(Option.none()))
  )

/** Reads every file manifest a root manifest names (`manifestReadConcurrency` at once), checking each digest. */
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
          fromEither(
            Manifest.decodeFileManifest(key, bytes, {
              file: entry.file,
              sha256: entry.manifestSha256,
              partSizeBytes: manifest.partSizeBytes
            })
          )
        ),
        Effect.map((fileManifest) => [entry.file, { entry, parts: fileManifest.parts }] as const)
      )
    },
    { concurrency: manifestReadConcurrency(config) }
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
        : readCheckpointManifest(store, config, latest).pipe(
          Effect.flatMap((manifest) => readCheckpoint(store, config, manifest))
        )
    })
  )
