/**
 * The current waits (WaitRegistry) as a person reads them: grouped by who waits on what kind of
 * thing, with a count and the longest wait as a duration, instead of one line per fiber with its id
 * and the epoch millisecond it began. Pure: the shutdown's half-deadline warning and the CLI use it.
 *
 * Replaces: nothing in OrioleDB; its waits were seen in gdb backtraces (docs/ORIGINAL.md §7).
 *
 * @since 0.1.0
 */
import { formatDurationMs } from "../domain/Units.js"
import type { Wait } from "../services/WaitRegistry.js"

/** Waits of one kind: the same waiter on the same kind of thing. */
export interface WaitGroup {
  /** What waits, e.g. "TaskHandle.await". */
  readonly waiter: string
  /** What it waits on, its identifiers left out, e.g. "task WritePart" for "task 17 WritePart db/a#3 @2". */
  readonly on: string
  readonly count: number
  /** How long the oldest of the group has waited. */
  readonly longestMs: number
}

/** A token that names one instance (a task id, a part `db/a#3`, an LSN, a key), not a kind. */
const isIdentifier = (token: string): boolean => /[0-9/#@]/.test(token)

/** `on` without its identifiers: what kind of thing is waited on. */
export const kindOf = (on: string): string =>
  on.split(/\s+/).filter((token) => token.length > 0 && !isIdentifier(token)).join(" ")

/** The waits grouped by waiter and kind, the longest-waiting group first. */
export const groupWaits = (waits: ReadonlyArray<Wait>, nowMs: number): ReadonlyArray<WaitGroup> => {
  const groups = new Map<string, { waiter: string; on: string; count: number; longestMs: number }>()
  for (const wait of waits) {
    const on = kindOf(wait.on)
    const key = `${wait.waiter}\u0000${on}`
    const waitedMs = Math.max(0, nowMs - wait.sinceMs)
    const group = groups.get(key)
    if (group === undefined) groups.set(key, { waiter: wait.waiter, on, count: 1, longestMs: waitedMs })
    else {
      group.count += 1
      group.longestMs = Math.max(group.longestMs, waitedMs)
    }
  }
  return [...groups.values()].sort((left, right) => right.longestMs - left.longestMs || right.count - left.count)
}

/** One line per group: "3 × TaskHandle.await on task WritePart, the longest for 1.2s". */
export const describeWaits = (waits: ReadonlyArray<Wait>, nowMs: number): ReadonlyArray<string> =>
  groupWaits(waits, nowMs).map((group) =>
    `${group.count} × ${group.waiter} on ${group.on === "" ? "(unnamed)" : group.on}, ${
      group.count === 1 ? "" : "the longest "
    }for ${formatDurationMs(group.longestMs)}`
  )
