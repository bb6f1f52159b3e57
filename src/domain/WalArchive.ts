/**
 * The WAL archive's bookkeeping as a pure state machine: which sealed segments are still to upload,
 * which uploads are in flight, which failed and wait for a retry, how far a partial upload of the
 * current segment must reach, and which local segments may go. The archiver
 * (src/internal/wal/archiver.ts) keeps one `ArchiveState` in a Ref and moves it only through the
 * transitions below; the I/O (reading a segment, the PUT, removing a file) stays there.
 *
 * Rules kept by every transition (`invariantProblem`):
 * - at most one upload of a segment is in flight (so a partial PUT never lands after a full one);
 *   a full upload covers its whole segment, a partial one a non-empty prefix of it;
 * - a segment whose full upload failed is not in flight: it waits for `retryFailed` or the next flush;
 * - `progress.through` is the contiguous archived prefix (markArchived): no segment it passes
 *   keeps an entry in `progress.done`;
 * - a local segment is removed only once archived: every segment below `localLowest` lies below
 *   `progress.through`.
 *
 * Replaces: OrioleDB's archive bookkeeping, which was none: `archive_file_cb` (src/s3/archive.c)
 * waited for each PUT with no timeout and always reported success, so nothing tracked what was in
 * the bucket; here an upload is retried until it lands, and the archived prefix never skips a gap.
 *
 * @since 0.3.0
 */
import * as Wal from "./Wal.js"

/**
 * What is in the bucket: `through` is the highest LSN such that every record below it is archived;
 * `done` holds, for segments at or after the gap, the LSN up to which each one's archived copy
 * reaches (its end for a full segment, less for a partial one). @category models
 */
export interface ArchiveProgress {
  readonly through: number
  readonly done: ReadonlyMap<number, number>
}

/** The progress of an archive whose contiguous archived prefix ends at `through`. */
export const initialProgress = (through: number): ArchiveProgress => ({ through, done: new Map() })

/**
 * Records that the archived copy of `segment` reaches `coveredLsn`, then advances `through` over
 * every contiguous archived segment, whatever order the uploads finished in: a segment after a gap
 * waits in `done` until the gap is filled.
 */
export const markArchived = (
  progress: ArchiveProgress,
  segment: number,
  coveredLsn: number,
  segmentBytes: number
): ArchiveProgress => {
  const done = new Map(progress.done)
  done.set(segment, Math.max(done.get(segment) ?? 0, coveredLsn))
  let through = progress.through
  for (;;) {
    const current = Wal.segmentOf(through, segmentBytes)
    const reached = done.get(current)
    if (reached === undefined || reached <= through) break
    through = reached
    if (reached < Wal.segmentEnd(current, segmentBytes)) break
  }
  for (const key of Array.from(done.keys())) {
    if (Wal.segmentEnd(key, segmentBytes) <= through) done.delete(key)
  }
  return { through, done }
}

/** One upload of a segment, full or partial, and the LSN its copy reaches. @category models */
export interface Upload {
  readonly segment: number
  readonly partial: boolean
  readonly coveredLsn: number
}

/** What is archived, what is to upload, what is in flight. @category models */
export interface ArchiveState {
  readonly progress: ArchiveProgress
  /** Sealed, durable segments whose full copy is still to upload. */
  readonly pendingFull: ReadonlySet<number>
  /** Segments whose last full upload failed: retried on the next flush or `retryFailed`. */
  readonly failedFull: ReadonlySet<number>
  readonly inFlight: ReadonlyMap<number, Upload>
  /** The LSN a partial upload of the current segment must reach. */
  readonly partialWantedLsn: number
  readonly partialFailed: boolean
  /** A completed checkpoint covers every record below it. */
  readonly coveredLsn: number
  /** Every local segment below this one was removed. */
  readonly localLowest: number
}

/** The state after opening: what recovery found archived and still to upload. @category constructors */
export const initial = (opened: {
  readonly progress: ArchiveProgress
  readonly pendingFull: Iterable<number>
  readonly localLowest: number
}): ArchiveState => ({
  progress: opened.progress,
  pendingFull: new Set(opened.pendingFull),
  failedFull: new Set(),
  inFlight: new Map(),
  partialWantedLsn: 0,
  partialFailed: false,
  coveredLsn: 0,
  localLowest: opened.localLowest
})

const withAdded = <A>(set: ReadonlySet<A>, values: Iterable<A>): ReadonlySet<A> => {
  const next = new Set(set)
  for (const value of values) next.add(value)
  return next
}

/** Every failed upload is to do again (full segments, and the partial one). */
export const retryFailed = (state: ArchiveState): ArchiveState => ({
  ...state,
  pendingFull: withAdded(state.pendingFull, state.failedFull),
  failedFull: new Set<number>(),
  partialFailed: false
})

/** A flush made the log durable from `previousDurable` to `durable`: the segments it sealed are to
 * upload, and failed uploads are retried. */
export const onFlushed = (
  state: ArchiveState,
  previousDurable: number,
  durable: number,
  segmentBytes: number
): ArchiveState => {
  const sealed: Array<number> = []
  for (
    let segment = Wal.segmentOf(previousDurable, segmentBytes);
    segment < Wal.segmentOf(durable, segmentBytes);
    segment++
  ) {
    sealed.push(segment)
  }
  return retryFailed({ ...state, pendingFull: withAdded(state.pendingFull, sealed) })
}

/** The durable prefix of the current segment, through `lsn`, is to be uploaded too. */
export const wantPartial = (state: ArchiveState, lsn: number): ArchiveState => ({
  ...state,
  partialWantedLsn: Math.max(state.partialWantedLsn, lsn)
})

/** A completed checkpoint covers every record below `lsn`. */
export const onCovered = (state: ArchiveState, lsn: number): ArchiveState => ({
  ...state,
  coveredLsn: Math.max(state.coveredLsn, lsn)
})

/** The uploads to start now (every pending full segment not in flight, then the partial one, when the
 * log is durable through `durable`), and the state with them in flight. */
export const planUploads = (
  state: ArchiveState,
  durable: number,
  segmentBytes: number
): readonly [ReadonlyArray<Upload>, ArchiveState] => {
  const starts: Array<Upload> = []
  for (const segment of Array.from(state.pendingFull).sort((left, right) => left - right)) {
    if (!state.inFlight.has(segment)) {
      starts.push({ segment, partial: false, coveredLsn: Wal.segmentEnd(segment, segmentBytes) })
    }
  }
  const target = Math.min(state.partialWantedLsn, durable)
  const current = Wal.segmentOf(target, segmentBytes)
  const reached = Math.max(state.progress.through, state.progress.done.get(current) ?? 0)
  if (
    !state.partialFailed && target > Wal.segmentStart(current, segmentBytes) &&
    current === Wal.segmentOf(durable, segmentBytes) &&
    !state.inFlight.has(current) && reached < target
  ) {
    starts.push({ segment: current, partial: true, coveredLsn: target })
  }
  const inFlight = new Map(state.inFlight)
  const pendingFull = new Set(state.pendingFull)
  for (const item of starts) {
    inFlight.set(item.segment, item)
    if (!item.partial) pendingFull.delete(item.segment)
  }
  return [starts, { ...state, inFlight, pendingFull }]
}

const withoutInFlight = (state: ArchiveState, segment: number): Map<number, Upload> => {
  const inFlight = new Map(state.inFlight)
  inFlight.delete(segment)
  return inFlight
}

/** An upload landed: its copy reaches `item.coveredLsn`; the archived prefix advances over it when
 * it is contiguous (markArchived). */
export const onUploadDone = (state: ArchiveState, item: Upload, segmentBytes: number): ArchiveState => ({
  ...state,
  inFlight: withoutInFlight(state, item.segment),
  progress: markArchived(state.progress, item.segment, item.coveredLsn, segmentBytes)
})

/** An upload failed: it is retried on the next flush or `retryFailed`, never skipped. */
export const onUploadFailed = (state: ArchiveState, item: Upload): ArchiveState => {
  const inFlight = withoutInFlight(state, item.segment)
  return item.partial
    ? { ...state, inFlight, partialFailed: true }
    : { ...state, inFlight, failedFull: withAdded(state.failedFull, [item.segment]) }
}

/** The lowest local segment, when it may be removed now: archived, entirely below the latest
 * checkpoint's position, and not the segment the log is being written in (durable through `durable`). */
export const removable = (state: ArchiveState, durable: number, segmentBytes: number): number | undefined => {
  const limit = Math.min(state.coveredLsn, state.progress.through)
  const segment = state.localLowest
  return Wal.segmentEnd(segment, segmentBytes) > limit || segment >= Wal.segmentOf(durable, segmentBytes)
    ? undefined
    : segment
}

/** The local file of `segment` was removed. */
export const onRemoved = (state: ArchiveState, segment: number): ArchiveState => ({
  ...state,
  localLowest: Math.max(state.localLowest, segment + 1)
})

/** The first broken rule of a state (see the module comment), or undefined. */
export const invariantProblem = (state: ArchiveState, segmentBytes: number): string | undefined => {
  for (const [segment, item] of state.inFlight) {
    if (item.segment !== segment) return `the upload in flight for segment ${segment} is of segment ${item.segment}`
    if (!item.partial && item.coveredLsn !== Wal.segmentEnd(segment, segmentBytes)) {
      return `the full upload of segment ${segment} does not cover it`
    }
    if (
      item.partial &&
      (item.coveredLsn <= Wal.segmentStart(segment, segmentBytes) ||
        item.coveredLsn > Wal.segmentEnd(segment, segmentBytes))
    ) {
      return `the partial upload of segment ${segment} covers ${item.coveredLsn}, outside the segment`
    }
  }
  for (const segment of state.failedFull) {
    if (state.inFlight.has(segment)) return `segment ${segment} failed and is in flight`
  }
  for (const [segment, reached] of state.progress.done) {
    if (Wal.segmentEnd(segment, segmentBytes) <= state.progress.through) {
      return `segment ${segment} is below the archived prefix but still tracked`
    }
    if (segment === Wal.segmentOf(state.progress.through, segmentBytes) && reached > state.progress.through) {
      return `the archived prefix stops at ${state.progress.through} though segment ${segment} reaches ${reached}`
    }
  }
  if (Wal.segmentStart(state.localLowest, segmentBytes) > state.progress.through) {
    return `local segments below ${state.localLowest} are gone but only ${state.progress.through} is archived`
  }
  return undefined
}
