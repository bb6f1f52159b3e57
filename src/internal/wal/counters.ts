/**
 * The WAL's counters, one Ref per log: the group commit and the archiver add to them, `stats` reads
 * them. A Ref, not a Metric: metrics live in a process-wide registry, and two logs in one process
 * would add to the same ones.
 *
 * Replaces: nothing in OrioleDB (its archiver kept no counts).
 *
 * @since 0.1.0
 */
import { Effect, Ref } from "effect"

/** What the log has done since it opened. */
export interface WalCounters {
  readonly appendedRecords: number
  /** Payload bytes appended (frames add `Wal.headerBytes` each). */
  readonly appendedBytes: number
  readonly commits: number
  /** Group-commit cycles that wrote and synced (each one at least one fsync). */
  readonly flushes: number
  /** `LocalDisk.sync` calls made by the log. */
  readonly fsyncs: number
  readonly flushFailures: number
  /** Successful uploads of segments, full or partial. */
  readonly segmentsArchived: number
  /** Bytes those uploads sent. */
  readonly archivedBytes: number
  readonly uploadFailures: number
  readonly segmentsRemoved: number
}

export type Counters = Ref.Ref<WalCounters>

/** Counters from zero, with the fsyncs recovery made. */
export const make = (fsyncsAtOpen: number): Effect.Effect<Counters> =>
  Ref.make<WalCounters>({
    appendedRecords: 0,
    appendedBytes: 0,
    commits: 0,
    flushes: 0,
    fsyncs: fsyncsAtOpen,
    flushFailures: 0,
    segmentsArchived: 0,
    archivedBytes: 0,
    uploadFailures: 0,
    segmentsRemoved: 0
  })

/** Adds `by` (1 unless given) to one counter. */
export const add = (counters: Counters, name: keyof WalCounters, by = 1): Effect.Effect<void> =>
  Ref.update(counters, (current) => ({ ...current, [name]: current[name] + by }))
