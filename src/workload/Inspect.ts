/**
 * The `inspect` command: what a bucket holds, read-only. Every checkpoint number found in the bucket
 * (root manifests, and part uploads of checkpoints that never committed), with its time, parts,
 * bytes and whether it is complete (its root manifest and every file manifest it names read back
 * and check), or that it has expired (its root manifest is a tombstone); the lock object; the
 * archived WAL segments; and the retention state, from a dry-run garbage-collection pass: the
 * policy and window, which checkpoints are kept and why, the leases, the WAL kept, and the bytes a
 * pass would reclaim.
 *
 * Replaces: listing the bucket by hand and reading `file_checksums` to see which checkpoint
 * orioledb_s3_loader.py would restore (docs/ORIGINAL.md §5-6).
 *
 * @since 0.1.0
 */
import { Chunk, Effect, Option, Stream } from "effect"
import * as Control from "../domain/Control.js"
import type { CorruptObject, ObjectStoreError } from "../domain/Errors.js"
import type { CheckpointNumber } from "../domain/Ids.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import type * as Manifest from "../domain/Manifest.js"
import { formatSizeBytes } from "../domain/Units.js"
import * as GarbageCollector from "../services/GarbageCollector.js"
import type { GcReport } from "../services/GarbageCollector.js"
import * as Loader from "../services/Loader.js"
import type { ObjectStoreService } from "../services/ObjectStore.js"
import { withRequestPolicy } from "../services/RequestPolicy.js"
import { keyLayout, type StorageConfigValue } from "../services/StorageConfig.js"
import * as Gc from "./Gc.js"

/** One checkpoint as `inspect` shows it. @category models */
export interface CheckpointRow {
  readonly checkpoint: number
  /** ISO time of the root manifest; null when there is none. */
  readonly createdAt: string | null
  readonly instanceId: string | null
  readonly epoch: number | null
  readonly files: number
  readonly parts: number
  readonly bytes: number
  readonly walPosition: number | null
  readonly complete: boolean
  /** Why it is not complete. */
  readonly detail: string | null
  /** Its root manifest is a tombstone: the garbage collector expired it (absent: not expired). */
  readonly expired?: boolean
}

/** What `inspect` reports. @category models */
export interface InspectReport {
  readonly command: "inspect"
  readonly store: string
  readonly prefix: string
  readonly lock: { readonly instanceId: string; readonly epoch: number; readonly acquiredAt: string } | {
    readonly unreadable: string
  } | null
  readonly checkpoints: ReadonlyArray<CheckpointRow>
  readonly walSegments: number
  readonly walBytes: number
  /** What a garbage-collection pass would do now (a dry run), or why that could not be told. */
  readonly retention: GcReport | { readonly unavailable: string }
}

const isoTime = (ms: number): string => new Date(ms).toISOString()

const readLock = (
  store: ObjectStoreService,
  config: StorageConfigValue
): Effect.Effect<InspectReport["lock"], ObjectStoreError> => {
  const key = KeyLayout.lockKey(keyLayout(config))
  return store.get(key).pipe(
    withRequestPolicy(config, "read lock", key),
    Effect.flatMap((bytes) => Control.decodeLock(key, bytes)),
    Effect.map((lock): InspectReport["lock"] => ({
      instanceId: lock.instanceId,
      epoch: lock.epoch,
      acquiredAt: isoTime(lock.acquiredAtMs)
    })),
    Effect.catchTag("ObjectNotFound", () => Effect.succeed(null)),
    Effect.catchTag("CorruptObject", (error) => Effect.succeed({ unreadable: error.message }))
  )
}

const describeCheckpoint = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  checkpoint: CheckpointNumber
): Effect.Effect<CheckpointRow, ObjectStoreError> =>
  Loader.readRootObject(store, config, checkpoint).pipe(
    Effect.flatMap((root) => (root._tag === "Expired"
      ? Effect.succeed(expiredRow(root.tombstone))
      : describeCommitted(store, config, root.manifest))
    ),
    Effect.catchTag("CorruptObject", (error: CorruptObject) =>
      Effect.succeed<CheckpointRow>({
        checkpoint,
        createdAt: null,
        instanceId: null,
        epoch: null,
        files: 0,
        parts: 0,
        bytes: 0,
        walPosition: null,
        complete: false,
        detail: `the root manifest is unreadable: ${error.message}`
      }))
  )

const expiredRow = (tombstone: Manifest.ExpiredCheckpoint): CheckpointRow => ({
  checkpoint: tombstone.checkpoint,
  createdAt: isoTime(tombstone.createdAtMs),
  instanceId: tombstone.instanceId,
  epoch: tombstone.epoch,
  files: 0,
  parts: 0,
  bytes: 0,
  walPosition: tombstone.walPosition,
  complete: false,
  detail: `expired at ${isoTime(tombstone.expiredAtMs)} (retention)`,
  expired: true
})

/** A committed checkpoint: complete when every file manifest it names reads back and checks. */
const describeCommitted = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  manifest: Manifest.CheckpointManifest
): Effect.Effect<CheckpointRow, ObjectStoreError> => {
  const known = {
    checkpoint: manifest.checkpoint,
    createdAt: isoTime(manifest.createdAtMs),
    instanceId: manifest.instanceId,
    epoch: manifest.epoch,
    files: manifest.files.length,
    walPosition: manifest.walPosition
  }
  return Loader.readCheckpoint(store, config, manifest).pipe(
    Effect.map((loaded): CheckpointRow => {
      let parts = 0
      let bytes = 0
      for (const file of loaded.files.values()) {
        for (const entry of file.parts) {
          parts++
          bytes += entry[3]
        }
      }
      return { ...known, parts, bytes, complete: true, detail: null }
    }),
    Effect.catchTag("CorruptObject", (error: CorruptObject) =>
      Effect.succeed<CheckpointRow>({
        ...known,
        parts: manifest.files.reduce((sum, file) => sum + file.partCount, 0),
        bytes: manifest.files.reduce((sum, file) => sum + file.sizeBytes, 0),
        complete: false,
        detail: `a file manifest is unreadable: ${error.message}`
      }))
  )
}

/** Reads the bucket and describes it. Read-only. */
export const inspect = (
  store: ObjectStoreService,
  config: StorageConfigValue
): Effect.Effect<InspectReport, ObjectStoreError> =>
  Effect.gen(function*() {
    const layout = keyLayout(config)
    yield* store.probe.pipe(withRequestPolicy(config, "probe"))
    const committed = yield* Loader.listCheckpoints(store, config)
    // Uploads of checkpoints that never committed: part objects under data/<N>/ without checkpoints/<N>.
    const uploads = new Map<number, { parts: number; bytes: number }>()
    let walSegments = 0
    let walBytes = 0
    const keys = yield* Stream.runCollect(store.list(KeyLayout.rootPrefix(layout)))
    for (const info of Chunk.toReadonlyArray(keys)) {
      const parsed = KeyLayout.parseKey(layout, info.key)
      if (Option.isNone(parsed)) continue
      const key = parsed.value
      if (key._tag === "Part") {
        const current = uploads.get(key.checkpoint) ?? { parts: 0, bytes: 0 }
        uploads.set(key.checkpoint, { parts: current.parts + 1, bytes: current.bytes + info.sizeBytes })
      } else if (key._tag === "Wal") {
        walSegments++
        walBytes += info.sizeBytes
      }
    }
    const rows = yield* Effect.forEach(committed, (checkpoint) => describeCheckpoint(store, config, checkpoint), {
      concurrency: 8
    })
    const committedSet = new Set<number>(committed)
    const pending: Array<CheckpointRow> = [...uploads]
      .filter(([checkpoint]) => !committedSet.has(checkpoint))
      .map(([checkpoint, upload]) => ({
        checkpoint,
        createdAt: null,
        instanceId: null,
        epoch: null,
        files: 0,
        parts: upload.parts,
        bytes: upload.bytes,
        walPosition: null,
        complete: false,
        detail: "no root manifest: uploads of a checkpoint that has not committed"
      }))
    // What a pass would do now: a dry run reads, and writes nothing.
    const retention = yield* GarbageCollector.collect(store, config, { dryRun: true }).pipe(
      Effect.catchAll((error) => Effect.succeed({ unavailable: error.message }))
    )
    return {
      command: "inspect",
      store: store.description,
      prefix: config.prefix,
      lock: yield* readLock(store, config),
      checkpoints: [...rows, ...pending].sort((left, right) => left.checkpoint - right.checkpoint),
      walSegments,
      walBytes,
      retention
    }
  })

const pad = (
  text: string,
  width: number
): string => (text.length >= width ? text : text + " ".repeat(width - text.length))

/** The report as a table for people. */
export const formatTable = (report: InspectReport): string => {
  const lines: Array<string> = [`bucket: ${report.store}${report.prefix === "" ? "" : ` prefix ${report.prefix}`}`]
  const lock = report.lock
  lines.push(
    lock === null
      ? "lock: none (no instance holds the bucket)"
      : "unreadable" in lock
      ? `lock: unreadable (${lock.unreadable})`
      : `lock: held by ${lock.instanceId} (epoch ${lock.epoch}) since ${lock.acquiredAt}`
  )
  lines.push(`WAL: ${report.walSegments} archived segment(s), ${formatSizeBytes(report.walBytes)}`)
  lines.push(
    ...("unavailable" in report.retention
      ? [`retention: cannot tell (${report.retention.unavailable})`]
      : Gc.retentionLines(report.retention))
  )
  if (report.checkpoints.length === 0) {
    lines.push("checkpoints: none")
    return lines.join("\n")
  }
  const header = [pad("checkpoint", 10), pad("created", 24), pad("parts", 7), pad("bytes", 10), "state"].join("  ")
  lines.push(header)
  for (const row of report.checkpoints) {
    lines.push(
      [
        pad(String(row.checkpoint), 10),
        pad(row.createdAt ?? "-", 24),
        pad(String(row.parts), 7),
        pad(formatSizeBytes(row.bytes), 10),
        row.complete ? "complete" : row.expired === true ? (row.detail ?? "expired") : `incomplete: ${row.detail ?? ""}`
      ].join("  ")
    )
  }
  return lines.join("\n")
}
