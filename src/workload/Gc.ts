/**
 * The `gc` command's report for people, and the retention lines `inspect` shows (both from a
 * GarbageCollector report: a pass's, or a dry run's).
 *
 * Replaces: nothing in OrioleDB, which deletes nothing from its bucket.
 *
 * @since 0.2.0
 */
import type * as Retention from "../domain/Retention.js"
import { formatSizeBytes } from "../domain/Units.js"
import type { GcReport, Tally } from "../services/GarbageCollector.js"

const formatMs = (ms: number): string => {
  if (ms === 0) return "0"
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms % 1_000 === 0) return `${ms / 1_000}s`
  return `${ms}ms`
}

const kinds: ReadonlyArray<readonly [Retention.ObjectKind, string]> = [
  ["part", "parts"],
  ["file-manifest", "file manifests"],
  ["wal", "WAL segments"],
  ["lease", "leases"]
]

const tallyText = (label: string, tally: Tally): string => `${label} ${tally.objects} (${formatSizeBytes(tally.bytes)})`

/** The retention state: policy, window, kept checkpoints and why, leases, WAL kept, reclaimable bytes. */
export const retentionLines = (report: GcReport): ReadonlyArray<string> => {
  const { policy } = report
  const window = report.windowStartMs === null
    ? "no point-in-time window"
    : `a window of ${formatMs(policy.retainForMs)} (since ${new Date(report.windowStartMs).toISOString()})`
  const retained = report.retained.map((row) => `${row.checkpoint} (${row.reasons.join(", ")})`).join(", ") || "none"
  const reclaim = kinds.map(([kind, label]) => tallyText(label, report.deleted[kind])).join(", ")
  const reclaimBytes = kinds.reduce((sum, [kind]) => sum + report.deleted[kind].bytes, 0)
  return [
    `retention: keep the ${policy.retainCheckpointsMin} latest checkpoint(s) and ${window}; objects younger than ${
      formatMs(report.minAgeMs)
    } stay`,
    `retained: ${retained}`,
    `expired: ${
      report.expiredNow.length === 0
        ? "none now"
        : `${report.expiredNow.join(", ")} ${report.dryRun ? "would expire" : "now"}`
    }; ${report.expiredBefore} earlier`,
    `WAL kept from position ${report.walFloorLsn}`,
    `leases: ${report.leases.live.length} live${
      report.leases.live.map((lease) => ` ${lease.id}→${lease.checkpoint}`).join("")
    }, ${report.leases.expired.length} expired`,
    `${report.dryRun ? "a pass would delete" : "deleted"}: ${reclaim}; ${formatSizeBytes(reclaimBytes)} in all`
  ]
}

/** The `gc` report as text. */
export const formatReport = (report: GcReport & { readonly store: string }): string => {
  const kept =
    Object.entries(report.kept).filter(([, tally]) => tally.objects > 0).map(([reason, tally]) =>
      `${reason} ${tally.objects}`
    ).join(", ") || "nothing"
  return [
    `gc${
      report.dryRun ? " (dry run: nothing written or deleted)" : ""
    }: ${report.store}, latest checkpoint ${report.latest}`,
    ...retentionLines(report),
    `kept: ${kept}`,
    ...(report.deleteFailures > 0 ? [`${report.deleteFailures} delete(s) failed; the next pass tries again`] : []),
    ...(report.complete ? [] : ["the deletes were cut short; the next pass goes on"])
  ].join("\n")
}
