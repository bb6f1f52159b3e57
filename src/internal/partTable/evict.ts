/**
 * Eviction: one clock sweep of the part table down to `localBytesMax`. The hand walks the rows in
 * creation order; a part is evicted (its file unlinked) only if it is Loaded, unleased, has usage
 * 0, is clean and is not being written; every other loaded part it passes has its usage halved,
 * and a dirty idle one gets its write-back scheduled so that a later sweep can evict it. The sweep
 * never takes a lease. src/services/Evictor.ts runs it.
 *
 * Replaces: OrioleDB's `s3_headers_try_eviction_cycle` (src/s3/headers.c:1231-1335), which wrote
 * zeros over an evicted part (freeing nothing on most file systems) and walked every file.
 *
 * @since 0.1.0
 */
import { Effect, Exit, STM, TRef } from "effect"
import type { LocalIoError } from "../../domain/Errors.js"
import * as PartStateDomain from "../../domain/PartState.js"
import type { EvictionReport } from "../../services/PartTable.js"
import { applyEvent, applyEventNow, type PartRow, type Table } from "./table.js"
import { scheduleRow } from "./writeBack.js"

type SweepStep =
  | { readonly _tag: "Evict"; readonly sizeBytes: number }
  | { readonly _tag: "Schedule" }
  | { readonly _tag: "Keep" }

/** The clock hand on one part: evict it if the rule allows, else halve its usage. */
const sweepStep = (table: Table, row: PartRow): STM.STM<SweepStep> =>
  STM.flatMap(TRef.get(row.cell), (cell): STM.STM<SweepStep> => {
    const state = cell.state
    if (state.status !== "Loaded") return STM.succeed({ _tag: "Keep" })
    if (PartStateDomain.isEvictable(state)) {
      return STM.as(applyEvent(table, row, cell, PartStateDomain.PartEvent.BeginEvict), {
        _tag: "Evict",
        sizeBytes: state.sizeBytes
      })
    }
    const swept = applyEvent(table, row, cell, PartStateDomain.PartEvent.Sweep)
    // Dirty and idle: schedule it, or re-enqueue an owed upload (after a failure nothing is queued).
    return state.dirty && !state.writing ? STM.as(swept, { _tag: "Schedule" }) : STM.as(swept, { _tag: "Keep" })
  })

/** Evicting → unlink → NotLoaded, as one uninterruptible step (an unlink is short and local); a
 * failed unlink leaves the file, so the part returns to Loaded. */
const evictRow = (table: Table, row: PartRow): Effect.Effect<void, LocalIoError> =>
  Effect.uninterruptible(
    table.disk.remove(row.path).pipe(
      Effect.onExit((exit) =>
        applyEventNow(
          table,
          row,
          Exit.isSuccess(exit) ? PartStateDomain.PartEvent.EvictDone : PartStateDomain.PartEvent.EvictAborted
        )
      )
    )
  )

/** PartTableService.evict: one sweep, one at a time. */
export const evict = (table: Table): Effect.Effect<EvictionReport, LocalIoError> =>
  table.sweepLock.withPermits(1)(
    Effect.gen(function*() {
      const loadedBytesBefore = (yield* STM.commit(TRef.get(table.counters))).loadedBytes
      let loadedBytes = loadedBytesBefore
      let evictedParts = 0
      let evictedBytes = 0
      let scheduledUploads = 0
      const total = table.order.length
      for (let visited = 0; visited < total && loadedBytes > table.config.localBytesMax; visited++) {
        table.hand = table.hand % table.order.length
        const row = table.order[table.hand]
        table.hand += 1
        if (row === undefined) continue
        const step = yield* STM.commit(sweepStep(table, row))
        if (step._tag === "Evict") {
          yield* evictRow(table, row)
          evictedParts += 1
          evictedBytes += step.sizeBytes
          loadedBytes -= step.sizeBytes
        } else if (step._tag === "Schedule") {
          // Holding no lease; a closed queue only means shutdown is under way.
          const scheduled = yield* scheduleRow(table, row).pipe(
            Effect.catchTag("QueueClosed", () => Effect.succeed("none" as const))
          )
          if (scheduled === "fresh") scheduledUploads += 1
        }
      }
      const loadedBytesAfter = (yield* STM.commit(TRef.get(table.counters))).loadedBytes
      return { evictedParts, evictedBytes, loadedBytesBefore, loadedBytesAfter, scheduledUploads }
    })
  )
