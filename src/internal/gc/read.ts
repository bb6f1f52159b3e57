/**
 * A garbage-collection pass's reads of the bucket (steps b, c and f of the pass described in
 * src/services/GarbageCollector.ts): the root objects under `checkpoints/`, the reader leases, and
 * the keys the pinned checkpoints reference. Every error ends the pass with GcFailed (fail closed).
 *
 * Replaces: nothing in OrioleDB, whose bucket grows forever (its issue #334).
 *
 * @internal
 * @since 0.2.0
 */
import { Chunk, Effect, Option, Ref, Stream } from "effect"
import { GcFailed } from "../../domain/Errors.js"
import { CheckpointNumber as CheckpointNumberSchema } from "../../domain/Ids.js"
import * as KeyLayout from "../../domain/KeyLayout.js"
import * as Lease from "../../domain/Lease.js"
import * as Manifest from "../../domain/Manifest.js"
import type * as Retention from "../../domain/Retention.js"
import type { ExpiredCache } from "../../services/GarbageCollector.js"
import * as Loader from "../../services/Loader.js"
import type { ObjectInfo, ObjectStoreService } from "../../services/ObjectStore.js"
import { withRequestPolicy } from "../../services/RequestPolicy.js"
import { keyLayout, type StorageConfigValue } from "../../services/StorageConfig.js"

/** A read or listing that failed at `stage`, as the pass reports it. */
export const failed = (stage: string) => (error: { readonly message: string }) =>
  new GcFailed({ stage, detail: error.message })

export const listAll = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  prefix: string
): Effect.Effect<ReadonlyArray<ObjectInfo>, GcFailed> =>
  Stream.runCollect(store.list(prefix)).pipe(
    withRequestPolicy(config, "gc list", prefix),
    Effect.map(Chunk.toReadonlyArray),
    Effect.mapError(failed(`listing ${prefix}`))
  )

/** What a pass read under `checkpoints/`. */
export interface Roots {
  readonly summaries: ReadonlyArray<Retention.CheckpointSummary>
  /** Root manifests read as committed, with their bytes. */
  readonly committed: ReadonlyMap<number, Manifest.CheckpointManifest>
  readonly expiredBefore: number
}

export const summaryOf = (root: Manifest.RootObject): Retention.CheckpointSummary =>
  root._tag === "Committed"
    ? {
      checkpoint: root.manifest.checkpoint,
      createdAtMs: root.manifest.createdAtMs,
      walPosition: root.manifest.walPosition,
      expired: false
    }
    : {
      checkpoint: root.tombstone.checkpoint,
      createdAtMs: root.tombstone.createdAtMs,
      walPosition: root.tombstone.walPosition,
      expired: true
    }

export const readRoot = (store: ObjectStoreService, config: StorageConfigValue, key: string, checkpoint: number) =>
  Loader.readRootObject(store, config, CheckpointNumberSchema.make(checkpoint)).pipe(
    Effect.mapError(failed(`reading ${key}`))
  )

export const readRoots = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  cache: ExpiredCache
): Effect.Effect<Roots, GcFailed> =>
  Effect.gen(function*() {
    const layout = keyLayout(config)
    const listed = yield* listAll(store, config, KeyLayout.checkpointsPrefix(layout))
    const known = yield* Ref.get(cache)
    const numbered = listed.flatMap((info) => {
      const parsed = KeyLayout.parseKey(layout, info.key)
      return Option.isSome(parsed) && parsed.value._tag === "Checkpoint"
        ? [{ key: info.key, checkpoint: parsed.value.checkpoint as number }]
        : []
    })
    const read = yield* Effect.forEach(
      numbered.filter(({ checkpoint }) => !known.has(checkpoint)),
      ({ checkpoint, key }) => readRoot(store, config, key, checkpoint),
      { concurrency: Math.min(config.workerCount, 16) }
    )
    const fresh = read.filter((root) => root._tag === "Expired").map(summaryOf)
    if (fresh.length > 0) {
      yield* Ref.update(
        cache,
        (current) => new Map([...current, ...fresh.map((summary) => [summary.checkpoint, summary] as const)])
      )
    }
    const committed = new Map(
      read.flatMap((
        root
      ) => (root._tag === "Committed" ? [[root.manifest.checkpoint as number, root.manifest] as const] : []))
    )
    const cached = numbered.flatMap(({ checkpoint }) => Option.toArray(Option.fromNullable(known.get(checkpoint))))
    return { summaries: [...read.map(summaryOf), ...cached], committed, expiredBefore: fresh.length + cached.length }
  })

/** A listed lease and what it says. */
export interface ListedLease {
  readonly info: ObjectInfo
  readonly lease: Retention.LeaseSummary
}

export const readLease = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  key: string
): Effect.Effect<Option.Option<Lease.ReaderLease>, GcFailed> =>
  store.get(key).pipe(
    withRequestPolicy(config, "gc read lease", key),
    Effect.flatMap((bytes) => Lease.decode(key, bytes)),
    Effect.map(Option.some),
    // Gone since the listing: its reader is done.
    Effect.catchTag("ObjectNotFound", () => Effect.succeed(Option.none())),
    Effect.mapError(failed(`reading ${key}`))
  )

export const readLeases = (
  store: ObjectStoreService,
  config: StorageConfigValue
): Effect.Effect<ReadonlyArray<ListedLease>, GcFailed> =>
  Effect.gen(function*() {
    const layout = keyLayout(config)
    const listed = yield* listAll(store, config, KeyLayout.leasesPrefix(layout))
    const leases = yield* Effect.forEach(
      listed,
      (info) => {
        const parsed = KeyLayout.parseKey(layout, info.key)
        if (Option.isNone(parsed) || parsed.value._tag !== "Lease") return Effect.succeed([])
        const id = parsed.value.id
        return Effect.map(readLease(store, config, info.key), (lease) =>
          Option.match(lease, {
            onNone: () => [],
            onSome: (value) => [{ info, lease: { id, checkpoint: value.checkpoint, expiresAtMs: value.expiresAtMs } }]
          }))
      },
      { concurrency: Math.min(config.workerCount, 16) }
    )
    return leases.flat()
  })

/** Every key a pinned checkpoint names: its file manifests and their parts; and whether a live
 * lease names an expired checkpoint (its tombstone keeps no file list: every part stays). */
export const referencedKeys = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  pinned: ReadonlySet<number>,
  roots: Roots,
  cache: ExpiredCache
): Effect.Effect<{ readonly referenced: ReadonlySet<string>; readonly heldByExpiredLease: boolean }, GcFailed> =>
  Effect.gen(function*() {
    const layout = keyLayout(config)
    const expired = yield* Ref.get(cache)
    const named: Array<{ readonly files: ReadonlyArray<Manifest.FileEntry>; readonly partSizeBytes: number }> = []
    let heldByExpiredLease = false
    for (const checkpoint of pinned) {
      const manifest = roots.committed.get(checkpoint)
      if (manifest !== undefined) named.push(manifest)
      // A live lease on a checkpoint expired by an earlier pass: its reader wrote the lease before
      // that pass's second listing and may be reading any object the checkpoint named.
      else if (expired.has(checkpoint)) heldByExpiredLease = true
      // Else a lease names a number this pass did not list: its reader finds no root manifest, or
      // one committed after the listing, whose objects are above the latest or named by the
      // checkpoint of their own number (Retention.mayStillBeNamed).
    }
    const referenced = new Set<string>()
    const fileManifests = new Map<string, { readonly entry: Manifest.FileEntry; readonly partSizeBytes: number }>()
    for (const { files, partSizeBytes } of named) {
      for (const entry of files) {
        fileManifests.set(
          KeyLayout.fileManifestKey(layout, entry.manifestCheckpoint, entry.file, entry.manifestSha256),
          { entry, partSizeBytes }
        )
      }
    }
    yield* Effect.forEach(
      fileManifests,
      ([key, { entry, partSizeBytes }]) =>
        store.get(key).pipe(
          withRequestPolicy(config, "gc read file manifest", key),
          Effect.flatMap((bytes) =>
            Manifest.decodeFileManifest(key, bytes, { file: entry.file, sha256: entry.manifestSha256, partSizeBytes })
          ),
          Effect.mapError(failed(`reading ${key}`)),
          Effect.map((manifest) => {
            referenced.add(key)
            for (const [part, checkpoint, sha256] of manifest.parts) {
              referenced.add(KeyLayout.partKey(layout, checkpoint, entry.file, part, sha256))
            }
          })
        ),
      { concurrency: Math.min(config.workerCount, 16), discard: true }
    )
    return { referenced, heldByExpiredLease }
  })
