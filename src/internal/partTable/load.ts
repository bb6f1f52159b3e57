/**
 * Loads: the fiber that brings a NotLoaded part in from the bucket. It runs in the table's scope,
 * forked by the lease that won NotLoaded → Loading; it enqueues the ReadPart task, waits for it
 * holding no lease, and commits Loading → Loaded, or → NotLoaded with the typed error recorded for
 * every waiter of this load (on any failure or interruption, so a part never stays Loading).
 *
 * Observability: a span "part.load" (file, part, checkpoint) around the GET and its check, a child
 * of the "part.lease" that started it.
 *
 * Replaces: OrioleDB's `s3_load_file_part` and the ReadFilePart task (src/s3/worker.c:350-395,
 * 902-911): GET the part, write it into the local file, mark it Loaded.
 *
 * @since 0.1.0
 */
import { Cause, Effect, Exit, STM, TRef } from "effect"
import { CorruptObject, type LocalIoError, type ObjectStoreError, PartLoadFailed } from "../../domain/Errors.js"
import * as Errors from "../../domain/Errors.js"
import type { Sha256Hex } from "../../domain/Ids.js"
import * as KeyLayout from "../../domain/KeyLayout.js"
import type { RemotePart } from "../../domain/Manifest.js"
import * as PartStateDomain from "../../domain/PartState.js"
import { ReadPart } from "../../domain/Task.js"
import { applyEvent, offloadedHashBytesMin, partBuffer, type PartRow, partSha256, type Table } from "./table.js"

/** The SHA-256 of a GET's body (see `partSha256`): the store read it into `buffer`, a part buffer,
 * or it is copied there when the buffer is in shared memory and the body large enough to be
 * hashed on a Hasher thread (a memory copy is a fraction of a hash's cost, and it frees the
 * JavaScript thread for the other loads' I/O). */
const hashOf = (table: Table, bytes: Uint8Array, buffer: Uint8Array): Effect.Effect<Sha256Hex> => {
  const copy = bytes.buffer !== buffer.buffer && bytes.length >= offloadedHashBytesMin &&
    bytes.length <= buffer.length && buffer.buffer instanceof SharedArrayBuffer
  if (!copy) return partSha256(table, bytes)
  buffer.set(bytes)
  return partSha256(table, buffer.subarray(0, bytes.length))
}

/** The ReadPart task's effect: GET the object (into a part buffer, when the store can), check its
 * SHA-256 and size, write the part file atomically. Idempotent: a retry or a replay writes the
 * same bytes again. */
const readRun = (
  table: Table,
  row: PartRow,
  remote: RemotePart
): Effect.Effect<number, ObjectStoreError | CorruptObject | LocalIoError> =>
  Effect.scoped(Effect.gen(function*() {
    const key = KeyLayout.partKey(table.layout, remote.checkpoint, row.file, row.part, remote.sha256)
    const buffer = yield* partBuffer(table)
    const bytes = yield* table.store.get(key, { into: buffer })
    const actual = yield* hashOf(table, bytes, buffer)
    if (actual !== remote.sha256 || bytes.length !== remote.sizeBytes) {
      return yield* Effect.fail(
        new CorruptObject({
          key,
          detail:
            `${bytes.length} bytes with SHA-256 ${actual}; the manifest says ${remote.sizeBytes} bytes with ${remote.sha256}`
        })
      )
    }
    yield* table.disk.writeAtomic(row.path, bytes)
    return bytes.length
  }))

const describeCause = (cause: Cause.Cause<unknown>): string =>
  Cause.isInterruptedOnly(cause) ? "the load was interrupted (the part table is closing)" : Errors.describeCause(cause)

/** The load fiber of one generation of a part's Loading state. Never fails. */
export const loadPart = (table: Table, row: PartRow, generation: number, remote: RemotePart): Effect.Effect<void> =>
  table.queue.enqueue(new ReadPart({ file: row.file, part: row.part }), readRun(table, row, remote)).pipe(
    Effect.flatMap((handle) => handle.await),
    Effect.withSpan("part.load", {
      attributes: { file: row.file, part: row.part, checkpoint: remote.checkpoint },
      kind: "internal",
      captureStackTrace: false
    }),
    Effect.onExit((exit) =>
      STM.commit(
        STM.flatMap(TRef.get(row.cell), (cell) => {
          if (cell.state.status !== "Loading" || cell.loadGeneration !== generation) return STM.void
          if (Exit.isSuccess(exit)) {
            return STM.asVoid(applyEvent(table, row, cell, PartStateDomain.PartEvent.LoadSucceeded(exit.value)))
          }
          const error = new PartLoadFailed({ file: row.file, part: row.part, detail: describeCause(exit.cause) })
          return STM.asVoid(
            applyEvent(table, row, cell, PartStateDomain.PartEvent.LoadFailed, { loadFailure: { generation, error } })
          )
        })
      )
    ),
    Effect.ignore
  )
