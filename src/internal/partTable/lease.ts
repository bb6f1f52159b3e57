/**
 * Part leases: acquire (on a Loaded part, or by waiting for a load or an eviction to end), the
 * reads and writes through a held lease, release; and reads and writes of a file across parts.
 *
 * THE RULE: library code never holds a lease while it waits on the task queue. Enforced here: a
 * lease is taken only on a Loaded part (`tryAcquire`); `attemptOnce` forks the load and returns
 * "Wait" holding nothing, and `waitAndAcquire` waits on the part's state holding nothing. `read`
 * and `write` take one lease at a time and release it before taking the next.
 *
 * Observability: a lease that has to load or wait runs in a span "part.lease" (file, part), with
 * the load's "part.load" as its child; a lease on a Loaded part makes no span (the hot path).
 *
 * Replaces: OrioleDB's `s3_header_lock_part` / `s3_header_unlock_part` (src/s3/headers.c:670-835),
 * whose NotLoaded branch waited on the queue and whose Loading/Evicting branch sleep-polled every
 * 10 ms with no interrupt check (docs/ORIGINAL.md §4, #340).
 *
 * @since 0.1.0
 */
import { Clock, Effect, Either, type Exit, FiberSet, type Scope, STM, type Tracer, TRef } from "effect"
import {
  InvalidRange,
  type LocalIoError,
  PartDamaged,
  PartLeaseTimeout,
  type PartLoadFailed,
  type ShuttingDown
} from "../../domain/Errors.js"
import type { FileId, PartIndex } from "../../domain/Ids.js"
import type { RemotePart } from "../../domain/Manifest.js"
import { partSlices } from "../../domain/PartPath.js"
import * as PartStateDomain from "../../domain/PartState.js"
import type { LeaseError, PartLease } from "../../services/PartTable.js"
import { loadPart } from "./load.js"
import {
  applyEvent,
  applyEventNow,
  failIfClosed,
  ioOf,
  type PartRow,
  refuseDamaged,
  rowOf,
  setCell,
  type Table
} from "./table.js"

/** The mutable record of one held lease: what its release must tell the state machine. */
interface Held {
  wrote: boolean
  writtenEndBytes: number
  released: boolean
}

/** What one attempt got: a lease, or a generation of the part's state to wait out (and the span
 * of the lease's slow path, made when the attempt started a load). */
type Attempt =
  | { readonly _tag: "Acquired"; readonly held: Held }
  | { readonly _tag: "Wait"; readonly generation: number; readonly span: Tracer.Span | undefined }

type TryAttempt =
  | { readonly _tag: "Acquired"; readonly held: Held }
  | { readonly _tag: "Wait"; readonly generation: number }
  | { readonly _tag: "Load"; readonly generation: number; readonly remote: RemotePart }

const checkRange = (
  table: Table,
  operation: string,
  offset: number,
  length: number
): Effect.Effect<void, InvalidRange> =>
  Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 &&
    offset + length <= table.config.partSizeBytes
    ? Effect.void
    : Effect.fail(
      new InvalidRange({
        detail:
          `${operation} of ${length} bytes at offset ${offset} does not fit in a part of ${table.config.partSizeBytes} bytes`
      })
    )

/** Marks the part damaged by a failed write (the first damage stays) and gives the error. */
const markDamaged = (row: PartRow, offset: number, length: number, error: LocalIoError): PartDamaged => {
  const damaged = new PartDamaged({
    file: row.file,
    part: row.part,
    detail:
      `a write of ${length} bytes at offset ${offset} failed and may have torn the part file (${error.message}); the next start rebuilds it from the checkpoint and the WAL`
  })
  row.damaged ??= damaged
  return damaged
}

/** The disk write of a lease, uninterruptible (short and local: an interrupted write would leave the
 * file as unknown as a failed one); a failure damages the part. Runs under the part's I/O lock. */
const writePartFile = (
  table: Table,
  row: PartRow,
  offset: number,
  bytes: Uint8Array
): Effect.Effect<void, PartDamaged> =>
  Effect.uninterruptible(
    Effect.catchAll(table.disk.write(row.path, offset, bytes), (error) =>
      Effect.suspend(() => {
        const damaged = markDamaged(row, offset, bytes.length, error)
        return Effect.zipRight(Effect.logWarning(`part ${row.key}: ${damaged.message}`), Effect.fail(damaged))
      }))
  )

const makeLease = (table: Table, row: PartRow, held: Held): PartLease => {
  const io = ioOf(row)
  const whileHeld = <A, E>(operation: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E | PartDamaged> =>
    held.released
      ? Effect.dieMessage(`${operation} of part ${row.key} through a lease that was released`)
      : Effect.zipRight(refuseDamaged(row), effect)
  return {
    file: row.file,
    part: row.part,
    // Reads take no lock: two reads never conflict, and a read racing a write through another
    // lease of the same part is the application's to order (as pread against pwrite).
    read: (offset, length) =>
      Effect.suspend(() =>
        whileHeld(
          "read",
          Effect.zipRight(checkRange(table, "read", offset, length), table.disk.read(row.path, offset, length))
        )
      ),
    write: (offset, bytes) =>
      Effect.suspend(() =>
        whileHeld(
          "write",
          Effect.zipRight(
            checkRange(table, "write", offset, bytes.length),
            io.withPermits(1)(
              Effect.suspend(() => {
                if (row.damaged !== undefined) return Effect.fail(row.damaged)
                // Marked before the bytes move: a failed write may have changed the file.
                held.wrote = true
                held.writtenEndBytes = Math.max(held.writtenEndBytes, offset + bytes.length)
                return writePartFile(table, row, offset, bytes)
              })
            )
          )
        )
      )
  }
}

const releaseLease = (table: Table, row: PartRow, held: Held): Effect.Effect<void> =>
  Effect.suspend(() => {
    held.released = true
    return applyEventNow(table, row, PartStateDomain.PartEvent.Release(held.wrote, held.writtenEndBytes))
  })

/** One non-waiting attempt: acquire a Loaded (or brand-new) part, or win NotLoaded → Loading, or
 * report what to wait for. */
const tryAcquire = (table: Table, row: PartRow): STM.STM<TryAttempt, ShuttingDown> =>
  STM.zipRight(
    failIfClosed(table, "lease"),
    STM.flatMap(TRef.get(row.cell), (cell): STM.STM<TryAttempt> => {
      const acquired = PartStateDomain.isAcquirable(cell.state)
        ? PartStateDomain.transition(cell.state, PartStateDomain.PartEvent.Acquire)
        : undefined
      if (acquired !== undefined && Either.isRight(acquired)) {
        return STM.as(setCell(table, row, cell, { ...cell, state: acquired.right }), {
          _tag: "Acquired",
          held: { wrote: false, writtenEndBytes: 0, released: false }
        })
      }
      const remote = cell.state.remote
      if (cell.state.status === "NotLoaded" && remote !== undefined) {
        const generation = cell.loadGeneration + 1
        return STM.as(
          applyEvent(table, row, cell, PartStateDomain.PartEvent.BeginLoad, { loadGeneration: generation }),
          {
            _tag: "Load",
            generation,
            remote
          }
        )
      }
      return STM.succeed({ _tag: "Wait", generation: cell.loadGeneration })
    })
  )

/** The span of a lease's slow path. */
const makeLeaseSpan = (row: PartRow): Effect.Effect<Tracer.Span> =>
  Effect.makeSpan("part.lease", {
    attributes: { file: row.file, part: row.part },
    kind: "internal",
    captureStackTrace: false
  })

/** Ends a span unless it has ended already. */
const endSpan = (span: Tracer.Span, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> =>
  Clock.clockWith((clock) =>
    Effect.sync(() => {
      if (span.status._tag === "Started") span.end(clock.unsafeCurrentTimeNanos(), exit)
    })
  )

/** Runs `effect` as the body of `span` and ends the span with its exit. */
const withinSpan = <A, E, R>(span: Tracer.Span, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withParentSpan(effect, span).pipe(Effect.onExit((exit) => endSpan(span, exit)))

/** One attempt. Run uninterruptibly (as the acquire of a resource): the winner of a load forks it
 * in the same step that won the transition, so a part never stays Loading. The load runs as a
 * child of `span` (made here for the first attempt of a lease). */
const attemptOnce = (table: Table, row: PartRow, span?: Tracer.Span): Effect.Effect<Attempt, ShuttingDown> =>
  Effect.flatMap(STM.commit(tryAcquire(table, row)), (attempt): Effect.Effect<Attempt> => {
    if (attempt._tag === "Acquired") return Effect.succeed(attempt)
    if (attempt._tag === "Wait") return Effect.succeed({ _tag: "Wait", generation: attempt.generation, span })
    return Effect.flatMap(
      span === undefined ? makeLeaseSpan(row) : Effect.succeed(span),
      (leaseSpan) =>
        Effect.as(
          FiberSet.run(
            table.loads,
            Effect.withParentSpan(
              Effect.interruptible(loadPart(table, row, attempt.generation, attempt.remote)),
              leaseSpan
            )
          ),
          {
            _tag: "Wait",
            generation: attempt.generation,
            span: leaseSpan
          }
        )
    )
  })

/** Releases what an attempt took: its lease, or (when the caller was interrupted before its wait
 * began) the span it started. */
const releaseAttempt =
  (table: Table, row: PartRow) => (attempt: Attempt, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> =>
    attempt._tag === "Acquired"
      ? releaseLease(table, row, attempt.held)
      : attempt.span === undefined
      ? Effect.void
      : endSpan(attempt.span, exit)

/** One attempt as a scoped resource: released (if acquired) when the caller's scope closes. */
const acquireOnce = (
  table: Table,
  row: PartRow,
  span?: Tracer.Span
): Effect.Effect<Attempt, ShuttingDown, Scope.Scope> =>
  Effect.acquireRelease(attemptOnce(table, row, span), releaseAttempt(table, row))

/** Waits (STM retry) until the part leaves Loading-of-`generation` and Evicting; fails with the
 * load's error if that load failed, with ShuttingDown if the table closes. */
const awaitTransition = (
  table: Table,
  row: PartRow,
  generation: number
): STM.STM<void, ShuttingDown | PartLoadFailed> =>
  STM.zipRight(
    failIfClosed(table, "lease"),
    STM.flatMap(TRef.get(row.cell), (cell) => {
      const status = cell.state.status
      if ((status === "Loading" && cell.loadGeneration === generation) || status === "Evicting") return STM.retry
      if (cell.loadFailure !== undefined && cell.loadFailure.generation === generation) {
        return STM.fail(cell.loadFailure.error)
      }
      return STM.void
    })
  )

/** The slow path: wait for the part's transition, then try again, all under `leaseTimeoutMs`,
 * holding no lease while it waits (THE RULE). */
const waitAndAcquire = (
  table: Table,
  row: PartRow,
  first: Extract<Attempt, { readonly _tag: "Wait" }>
): Effect.Effect<PartLease, LeaseError, Scope.Scope> =>
  Effect.flatMap(first.span === undefined ? makeLeaseSpan(row) : Effect.succeed(first.span), (span) => {
    const loop = (generation: number): Effect.Effect<PartLease, ShuttingDown | PartLoadFailed, Scope.Scope> =>
      Effect.zipRight(
        STM.commit(awaitTransition(table, row, generation)),
        Effect.flatMap(
          acquireOnce(table, row, span),
          (attempt) =>
            attempt._tag === "Acquired" ? Effect.succeed(makeLease(table, row, attempt.held)) : loop(attempt.generation)
        )
      )
    const bounded = table.waits.track(
      "PartTable.lease",
      `part ${row.key} to load or finish evicting`,
      loop(first.generation)
    ).pipe(
      Effect.timeoutFail({
        duration: table.config.leaseTimeoutMs,
        onTimeout: () =>
          new PartLeaseTimeout({ file: row.file, part: row.part, timeoutMs: table.config.leaseTimeoutMs })
      })
    )
    return withinSpan(span, bounded)
  })

/** A lease as a scoped resource (PartTableService.lease). */
export const lease =
  (table: Table) => (file: FileId, part: PartIndex): Effect.Effect<PartLease, LeaseError, Scope.Scope> =>
    Effect.flatMap(
      rowOf(table, file, part),
      (row) =>
        Effect.flatMap(
          Effect.zipRight(refuseDamaged(row), acquireOnce(table, row)),
          (first) =>
            first._tag === "Acquired"
              ? Effect.succeed(makeLease(table, row, first.held))
              : waitAndAcquire(table, row, first)
        )
    )

/**
 * `use` with a lease held, released when `use` ends. The same protocol as `lease`; on a Loaded
 * part it costs one transaction each way and no Scope (a Scope costs several times more).
 */
const withLease = <A, E>(
  table: Table,
  file: FileId,
  part: PartIndex,
  use: (lease: PartLease) => Effect.Effect<A, E>
): Effect.Effect<A, E | LeaseError> =>
  Effect.flatMap(rowOf(table, file, part), (row) =>
    Effect.acquireUseRelease(
      Effect.zipRight(refuseDamaged(row), attemptOnce(table, row)),
      (first): Effect.Effect<A, E | LeaseError> =>
        first._tag === "Acquired"
          ? use(makeLease(table, row, first.held))
          : Effect.scoped(Effect.flatMap(waitAndAcquire(table, row, first), use)),
      releaseAttempt(table, row)
    ))

/** Reads bytes of a file across parts, one lease at a time (PartTableService.read). */
export const read =
  (table: Table) => (file: FileId, offset: number, length: number): Effect.Effect<Uint8Array, LeaseError> =>
    Effect.suspend(() =>
      Either.match(partSlices(table.config.partSizeBytes, offset, length), {
        onLeft: Effect.fail,
        onRight: (slices) => {
          const out = new Uint8Array(length)
          return Effect.as(
            Effect.forEach(
              slices,
              (slice) =>
                withLease(table, file, slice.part, (held) => held.read(slice.offsetInPart, slice.length)).pipe(
                  Effect.map((bytes) => out.set(bytes, slice.offsetInRange))
                ),
              { discard: true }
            ),
            out
          )
        }
      })
    )

/** Writes bytes of a file across parts, one lease at a time (PartTableService.write). */
export const write =
  (table: Table) => (file: FileId, offset: number, bytes: Uint8Array): Effect.Effect<void, LeaseError> =>
    Effect.suspend(() =>
      Either.match(partSlices(table.config.partSizeBytes, offset, bytes.length), {
        onLeft: Effect.fail,
        onRight: (slices) =>
          Effect.forEach(
            slices,
            (slice) =>
              withLease(
                table,
                file,
                slice.part,
                (held) =>
                  held.write(
                    slice.offsetInPart,
                    bytes.subarray(slice.offsetInRange, slice.offsetInRange + slice.length)
                  )
              ),
            { discard: true }
          )
      })
    )
