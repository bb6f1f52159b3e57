/**
 * Write-back: scheduling a dirty part's upload, the WritePart task that reads, hashes and PUTs it,
 * and the checkpoint's side of it (`snapshot`, `ensureUploaded`). None of it takes a lease: an
 * upload reads the part file under its I/O lock, so it never waits on the queue holding one.
 *
 * Observability: a span "part.upload" (file, part, checkpoint, version) around the read, hash and
 * PUT of a part, inside the S3 task that runs it.
 *
 * Replaces: OrioleDB's part write scheduling (the per-tree MRU of dirty parts, src/btree/io.c:530-586,
 * `s3_schedule_file_part_write`) and the WriteFilePart task (src/s3/worker.c:396-435): mark writing,
 * PUT, mark written or not-written (docs/ORIGINAL.md §4).
 *
 * @since 0.1.0
 */
import { Effect, Exit, Option, type Scope, STM, TRef } from "effect"
import {
  LocalIoError,
  type ObjectStoreError,
  type PartDamaged,
  type QueueClosed,
  type ShuttingDown
} from "../../domain/Errors.js"
import {
  type CheckpointNumber,
  CheckpointNumber as CheckpointNumberSchema,
  type FileId,
  type PartIndex
} from "../../domain/Ids.js"
import * as KeyLayout from "../../domain/KeyLayout.js"
import type { RemotePart } from "../../domain/Manifest.js"
import { partKey } from "../../domain/PartPath.js"
import * as PartStateDomain from "../../domain/PartState.js"
import { WritePart } from "../../domain/Task.js"
import type { SnapshotEntry, UploadError } from "../../services/PartTable.js"
import {
  applyEvent,
  failIfClosed,
  ioOf,
  partBuffer,
  type PartRow,
  partSha256,
  refuseDamaged,
  type Table
} from "./table.js"

type UploadStep =
  | { readonly _tag: "Started"; readonly version: number }
  | { readonly _tag: "Nothing"; readonly remote: RemotePart | undefined }
  | { readonly _tag: "Busy" }

const awaitNotWriting = (row: PartRow): STM.STM<void> =>
  STM.flatMap(TRef.get(row.cell), (cell) => (cell.state.writing ? STM.retry : STM.void))

const tryStartUpload = (table: Table, row: PartRow): STM.STM<UploadStep> =>
  STM.flatMap(TRef.get(row.cell), (cell): STM.STM<UploadStep> => {
    if (cell.state.writing) return STM.succeed({ _tag: "Busy" })
    if (!cell.state.scheduled) return STM.succeed({ _tag: "Nothing", remote: cell.state.remote })
    return STM.as(applyEvent(table, row, cell, PartStateDomain.PartEvent.UploadStart), {
      _tag: "Started",
      version: cell.state.version
    })
  })

/** Reads the part (under its I/O lock), hashes it (on a Hasher thread unless it is small), PUTs it
 * under its content-addressed key. */
const readAndPut = (
  table: Table,
  row: PartRow,
  checkpoint: CheckpointNumber
): Effect.Effect<RemotePart, ObjectStoreError | LocalIoError | PartDamaged> =>
  Effect.scoped(
    Effect.gen(function*() {
      const buffer = yield* partBuffer(table)
      // A damaged part is checked under the I/O lock: a write that fails sets it before releasing it.
      const count = yield* ioOf(row).withPermits(1)(
        Effect.zipRight(refuseDamaged(row), table.disk.readAllInto(row.path, buffer))
      )
      const length = Option.getOrElse(count, () => 0)
      if (length > table.config.partSizeBytes) {
        return yield* Effect.fail(
          new LocalIoError({
            operation: "upload",
            path: row.path,
            detail: `the part file is longer than a part (${table.config.partSizeBytes} bytes)`
          })
        )
      }
      const bytes = buffer.subarray(0, length)
      const sha256 = yield* partSha256(table, bytes)
      yield* table.store.put(KeyLayout.partKey(table.layout, checkpoint, row.file, row.part, sha256), bytes, {
        sha256Hex: sha256
      })
      return { checkpoint, sha256, sizeBytes: length }
    })
  )

/**
 * The WritePart task's effect. Waits (interruptibly) until no other upload of the part is in
 * flight, then, if the part is still scheduled, UploadStart (dirty clears as the read begins) →
 * read → PUT → UploadSucceeded, or UploadFailed (dirty + scheduled again) on any failure or
 * interruption. A part no longer scheduled (an earlier task uploaded it) is a success with its
 * current remote. Safe to retry and to replay.
 */
const uploadRun = (
  table: Table,
  row: PartRow,
  checkpoint: CheckpointNumber
): Effect.Effect<RemotePart | undefined, ObjectStoreError | LocalIoError | PartDamaged> =>
  Effect.uninterruptibleMask((restore) => {
    const upload = (version: number) =>
      restore(readAndPut(table, row, checkpoint)).pipe(
        Effect.withSpan("part.upload", {
          attributes: { file: row.file, part: row.part, checkpoint, version },
          kind: "internal",
          captureStackTrace: false
        }),
        Effect.onExit((exit) =>
          STM.commit(
            STM.flatMap(TRef.get(row.cell), (cell) =>
              applyEvent(
                table,
                row,
                cell,
                Exit.isSuccess(exit)
                  ? PartStateDomain.PartEvent.UploadSucceeded(version, exit.value)
                  : PartStateDomain.PartEvent.UploadFailed
              ))
          )
        )
      )
    const attempt: Effect.Effect<RemotePart | undefined, ObjectStoreError | LocalIoError | PartDamaged> = Effect
      .zipRight(
        restore(STM.commit(awaitNotWriting(row))),
        Effect.flatMap(STM.commit(tryStartUpload(table, row)), (step) => {
          switch (step._tag) {
            case "Busy":
              return attempt
            case "Nothing":
              return Effect.succeed(step.remote)
            case "Started":
              return upload(step.version)
          }
        })
      )
    return attempt
  })

const enqueueUpload = (table: Table, row: PartRow, checkpoint: CheckpointNumber) =>
  table.queue.enqueue(new WritePart({ file: row.file, part: row.part, checkpoint }), uploadRun(table, row, checkpoint))

type ScheduleStep = { readonly _tag: "Enqueue"; readonly checkpoint: CheckpointNumber; readonly fresh: boolean } | {
  readonly _tag: "None"
}

/** Dirty and idle → Schedule; already scheduled and idle → enqueue again (the queue coalesces it
 * with a queued write of the part; after a failed upload nothing is queued, so this re-enqueues). */
const scheduleStep = (table: Table, row: PartRow): STM.STM<ScheduleStep> =>
  STM.flatMap(TRef.get(row.cell), (cell): STM.STM<ScheduleStep> => {
    const state = cell.state
    // A damaged part is never uploaded (readAndPut refuses it): scheduling it would only fail again.
    if (state.writing || !state.dirty || row.damaged !== undefined) return STM.succeed({ _tag: "None" })
    return STM.flatMap(TRef.get(table.openCheckpoint), (checkpoint): STM.STM<ScheduleStep> =>
      state.scheduled
        ? STM.succeed({ _tag: "Enqueue", checkpoint, fresh: false })
        : STM.as(applyEvent(table, row, cell, PartStateDomain.PartEvent.Schedule), {
          _tag: "Enqueue",
          checkpoint,
          fresh: true
        }))
  })

/** Schedules (or re-enqueues) a part's upload: "fresh" when this call scheduled it, "requeued"
 * when it was already owed, "none" when there is nothing to upload or one is in flight. */
export const scheduleRow = (table: Table, row: PartRow): Effect.Effect<"fresh" | "requeued" | "none", QueueClosed> =>
  Effect.flatMap(
    STM.commit(scheduleStep(table, row)),
    (step) =>
      step._tag === "None"
        ? Effect.succeed("none" as const)
        : Effect.as(enqueueUpload(table, row, step.checkpoint), step.fresh ? "fresh" as const : "requeued" as const)
  )

/** PartTableService.scheduleUpload: true if it enqueued an upload of a known part. */
export const scheduleUpload = (table: Table) => (file: FileId, part: PartIndex): Effect.Effect<boolean, QueueClosed> =>
  Effect.suspend(() => {
    const row = table.rows.get(partKey(file, part))
    return row === undefined
      ? Effect.succeed(false)
      : Effect.map(scheduleRow(table, row), (outcome) => outcome !== "none")
  })

type EnsureStep =
  | { readonly _tag: "Done"; readonly remote: RemotePart }
  | { readonly _tag: "WaitWriting" }
  | { readonly _tag: "Upload" }

const ensureStep = (table: Table, row: PartRow, version: number): STM.STM<EnsureStep> =>
  STM.flatMap(TRef.get(row.cell), (cell): STM.STM<EnsureStep> => {
    const state = cell.state
    if (state.uploadedVersion >= version && state.remote !== undefined) {
      return STM.succeed({ _tag: "Done", remote: state.remote })
    }
    if (state.writing) return STM.succeed({ _tag: "WaitWriting" })
    if (state.scheduled) return STM.succeed({ _tag: "Upload" })
    if (state.dirty) return STM.as(applyEvent(table, row, cell, PartStateDomain.PartEvent.Schedule), { _tag: "Upload" })
    return STM.dieMessage(
      `${row.key}: clean, idle and still not uploaded at version ${version}: ${PartStateDomain.describeState(state)}`
    )
  })

/** PartTableService.ensureUploaded: waits (holding no lease) for an upload in flight, joins a
 * queued one, or enqueues one under `checkpoint`, until an upload of `entry.version` exists. */
export const ensureUploaded =
  (table: Table) => (entry: SnapshotEntry, checkpoint: CheckpointNumber): Effect.Effect<RemotePart, UploadError> =>
    Effect.suspend(() => {
      const row = table.rows.get(partKey(entry.file, entry.part))
      if (row === undefined) {
        return Effect.dieMessage(`ensureUploaded: part ${partKey(entry.file, entry.part)} is not in the table`)
      }
      const loop: Effect.Effect<RemotePart, UploadError> = Effect.flatMap(
        STM.commit(ensureStep(table, row, entry.version)),
        (step) => {
          switch (step._tag) {
            case "Done":
              return Effect.succeed(step.remote)
            case "WaitWriting":
              return Effect.zipRight(
                table.waits.track(
                  "PartTable.ensureUploaded",
                  `upload of part ${row.key} in flight`,
                  STM.commit(awaitNotWriting(row))
                ),
                loop
              )
            case "Upload":
              return enqueueUpload(table, row, checkpoint).pipe(
                Effect.flatMap((handle) => handle.await),
                Effect.zipRight(loop)
              )
          }
        }
      )
      return loop
    })

/** PartTableService.snapshot: every known part's version and whether it needs an upload, in one
 * transaction that also makes later write-back target `checkpoint + 1`. */
export const snapshot =
  (table: Table) => (checkpoint: CheckpointNumber): Effect.Effect<ReadonlyArray<SnapshotEntry>, ShuttingDown> =>
    Effect.suspend(() => {
      const rows = Array.from(table.order)
      return STM.commit(
        STM.gen(function*() {
          yield* failIfClosed(table, "snapshot")
          yield* TRef.set(table.openCheckpoint, CheckpointNumberSchema.make(checkpoint + 1))
          const cells = yield* STM.forEach(rows, (row) => TRef.get(row.cell))
          const entries: Array<SnapshotEntry> = []
          cells.forEach((cell, index) => {
            const row = rows[index]
            const state = cell.state
            const needsUpload = PartStateDomain.needsUpload(state)
            if (row !== undefined && (needsUpload || state.remote !== undefined)) {
              entries.push({
                file: row.file,
                part: row.part,
                version: state.version,
                remote: state.remote,
                needsUpload
              })
            }
          })
          return entries
        })
      )
    })
