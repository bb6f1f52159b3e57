/**
 * The report of a `run`: one JSON object (`--json`, on stdout) or a short human summary, and the
 * decision of the exit code. Pure: the program gathers the facts, this module shapes and judges them.
 *
 * Exit code 0 only when shutdown returned within its deadline with no lease held and no fiber
 * alive, and verify (when it ran) found every required page; otherwise 1, with the reasons.
 *
 * Replaces: the original report's evidence (process listings, gdb backtraces, "the cluster never
 * stopped"), as one record that says exactly what happened.
 *
 * @since 0.1.0
 */
import type { ShutdownReport } from "../layers/Storage.js"
import type { Wait } from "../services/WaitRegistry.js"
import { formatDurationMs, formatSizeBytes } from "../domain/Units.js"
import type { PageMismatch } from "../workload/Verify.js"
import type { WorkloadCounters } from "../workload/Workload.js"

/** The settings a run used. */
export interface RunSettings {
  readonly durationMs: number
  readonly writers: number
  readonly files: number
  readonly pagesPerFile: number
  readonly pageBytes: number
  readonly checkpointIntervalMs: number
  readonly s3Workers: number
  readonly localBudgetBytes: number
  readonly shutdownDeadlineMs: number
  readonly walSegmentBytes: number
  readonly store: string
  readonly dataDirectory: string
  readonly faults: ReadonlyArray<string>
}

/** The shutdown section: the Storage's report, or what is known when shutdown did not return. */
export interface ShutdownSection {
  /** False when `shutdown` itself did not return within its deadline plus the program's grace. */
  readonly returned: boolean
  readonly durationMs: number
  readonly deadlineMs: number
  readonly metDeadline: boolean
  readonly finalCheckpoint: "completed" | "timed-out" | "failed" | "none"
  readonly finalCheckpointNumber: number | null
  readonly finalCheckpointDetail: string | null
  readonly dirtyPartsLeft: number | null
  readonly leasesHeld: number | null
  readonly fibersAlive: number | null
  readonly lockReleased: boolean
  readonly lock: string
  readonly tasks: { readonly drained: number; readonly interrupted: number; readonly aborted: number } | null
  readonly cutWaits: ReadonlyArray<Wait>
  /** Writers still inside an insert when the workload stopped (interrupted). */
  readonly writersInterrupted: number
}

/** The verify section. */
export interface VerifySection {
  readonly ran: boolean
  /** Why it did not run (`--no-verify`, a signal) or could not finish. */
  readonly skipped: string | null
  readonly ok: boolean | null
  readonly mode: "every-acknowledged" | "archived-wal" | null
  readonly requiredBelowLsn: number | null
  readonly restoredCheckpoint: number | null
  readonly replayedFromLsn: number | null
  readonly pagesChecked: number
  readonly pagesRequired: number
  readonly mismatches: number
  readonly examples: ReadonlyArray<PageMismatch>
  readonly durationMs: number
}

/** The whole report of a run. @category models */
export interface RunReport {
  readonly command: "run"
  readonly ok: boolean
  readonly exitCode: 0 | 1
  readonly problems: ReadonlyArray<string>
  /** The signal that ended the workload early, if any. */
  readonly interruptedBy: string | null
  readonly settings: RunSettings
  readonly elapsedMs: number
  /** Pages written by the workload (one per insert that reached its write). */
  readonly writes: number
  readonly inserts: {
    readonly attempted: number
    readonly acknowledged: number
    readonly failed: number
    readonly failures: Readonly<Record<string, number>>
  }
  readonly wal: {
    readonly archivedThrough: number
    readonly endLsn: number | null
    readonly localOnly: { readonly fromLsn: number; readonly toLsn: number } | null
  }
  readonly checkpoints: {
    readonly completed: number
    readonly failed: number
    /** The last completed checkpoint's number (0: none). */
    readonly last: number
  }
  readonly bytesUploaded: number
  /** What the fault decorator did (null without `--fault`). */
  readonly faults: FaultsSection | null
  readonly shutdown: ShutdownSection
  readonly verify: VerifySection
}

/** What the fault decorator injected during the run. */
export interface FaultsSection {
  readonly asked: ReadonlyArray<string>
  /** Injected faults by kind: latency, error, permanent, stall. */
  readonly injected: Readonly<Record<string, number>>
  /** Requests stalled when the report was made (interrupted by the shutdown or still waiting). */
  readonly stalledAtEnd: number
}

/** The shutdown section from the Storage's report. */
export const shutdownSection = (report: ShutdownReport, writersInterrupted: number): ShutdownSection => ({
  returned: true,
  durationMs: report.durationMs,
  deadlineMs: report.deadlineMs,
  metDeadline: report.metDeadline,
  finalCheckpoint: report.finalCheckpoint.outcome,
  finalCheckpointNumber: report.finalCheckpoint.outcome === "completed" ? report.finalCheckpoint.checkpoint : null,
  finalCheckpointDetail: report.finalCheckpoint.outcome === "timed-out" || report.finalCheckpoint.outcome === "failed" ? report.finalCheckpoint.detail : null,
  dirtyPartsLeft: report.dirtyPartsLeft,
  leasesHeld: report.leasesHeld,
  fibersAlive: report.fibersAlive,
  lockReleased: report.lock === "released",
  lock: report.lock,
  tasks: report.tasks,
  cutWaits: report.cutWaits,
  writersInterrupted
})

/** The shutdown section when `shutdown` did not return in time (the program gave up waiting). */
export const shutdownNotReturned = (waitedMs: number, deadlineMs: number, cutWaits: ReadonlyArray<Wait>, writersInterrupted: number): ShutdownSection => ({
  returned: false,
  durationMs: waitedMs,
  deadlineMs,
  metDeadline: false,
  finalCheckpoint: "timed-out",
  finalCheckpointNumber: null,
  finalCheckpointDetail: `shutdown did not return within ${waitedMs} ms`,
  dirtyPartsLeft: null,
  leasesHeld: null,
  fibersAlive: null,
  lockReleased: false,
  lock: "unknown",
  tasks: null,
  cutWaits,
  writersInterrupted
})

/** A verify section for a verification that did not run. */
export const verifySkipped = (reason: string): VerifySection => ({
  ran: false,
  skipped: reason,
  ok: null,
  mode: null,
  requiredBelowLsn: null,
  restoredCheckpoint: null,
  replayedFromLsn: null,
  pagesChecked: 0,
  pagesRequired: 0,
  mismatches: 0,
  examples: [],
  durationMs: 0
})

/** Why a run fails its checks: empty when it passes. Pure. */
export const problemsOf = (shutdown: ShutdownSection, verify: VerifySection): ReadonlyArray<string> => {
  const problems: Array<string> = []
  if (!shutdown.returned) problems.push(`shutdown did not return within ${shutdown.durationMs} ms (deadline ${shutdown.deadlineMs} ms)`)
  else if (!shutdown.metDeadline) problems.push(`shutdown took ${shutdown.durationMs} ms, over its deadline of ${shutdown.deadlineMs} ms`)
  if (shutdown.leasesHeld !== null && shutdown.leasesHeld > 0) problems.push(`${shutdown.leasesHeld} part lease(s) still held after shutdown`)
  if (shutdown.fibersAlive !== null && shutdown.fibersAlive > 0) problems.push(`${shutdown.fibersAlive} fiber(s) still alive after shutdown`)
  if (verify.ran && verify.ok === false) {
    const first = verify.examples[0]
    const example = first === undefined ? "" : ` (first: file ${first.file} page ${first.page}: ${first.problem})`
    problems.push(`verify found ${verify.mismatches} page(s) that do not hold what was acknowledged${example}`)
  }
  if (!verify.ran && verify.ok === false) problems.push(`verify could not run: ${verify.skipped ?? "unknown reason"}`)
  return problems
}

/** Builds the report and judges it. */
export const make = (facts: {
  readonly interruptedBy: string | null
  readonly settings: RunSettings
  readonly elapsedMs: number
  readonly counters: WorkloadCounters
  readonly pageBytes: number
  readonly wal: RunReport["wal"]
  readonly checkpoints: RunReport["checkpoints"]
  readonly bytesUploaded: number
  readonly faults: FaultsSection | null
  readonly shutdown: ShutdownSection
  readonly verify: VerifySection
}): RunReport => {
  const problems = problemsOf(facts.shutdown, facts.verify)
  return {
    command: "run",
    ok: problems.length === 0,
    exitCode: problems.length === 0 ? 0 : 1,
    problems,
    interruptedBy: facts.interruptedBy,
    settings: facts.settings,
    elapsedMs: facts.elapsedMs,
    writes: Math.floor(facts.counters.bytesWritten / facts.pageBytes),
    inserts: {
      attempted: facts.counters.attempted,
      acknowledged: facts.counters.acknowledged,
      failed: facts.counters.failed,
      failures: facts.counters.failures
    },
    wal: facts.wal,
    checkpoints: facts.checkpoints,
    bytesUploaded: facts.bytesUploaded,
    faults: facts.faults,
    shutdown: facts.shutdown,
    verify: facts.verify
  }
}

/** A short human summary of a report (several lines, no trailing newline). */
export const summary = (report: RunReport): string => {
  const shutdown = report.shutdown
  const verify = report.verify
  const lines = [
    `run: ${report.inserts.acknowledged} inserts acknowledged (${report.inserts.attempted} attempted, ${report.inserts.failed} failed) in ${formatDurationMs(report.elapsedMs)}` +
      (report.interruptedBy === null ? "" : `, stopped early by ${report.interruptedBy}`),
    `store: ${report.settings.store}; data: ${report.settings.dataDirectory}` + (report.settings.faults.length === 0 ? "" : `; faults: ${report.settings.faults.join(", ")}`),
    `checkpoints: ${report.checkpoints.completed} completed (last #${report.checkpoints.last}), ${report.checkpoints.failed} failed; uploaded ${formatSizeBytes(report.bytesUploaded)}; WAL archived through ${report.wal.archivedThrough}`,
    ...(report.faults === null
      ? []
      : [`faults injected: ${Object.entries(report.faults.injected).map(([kind, count]) => `${kind} ${count}`).join(", ")}`]),
    `shutdown: ${shutdown.returned ? `${formatDurationMs(shutdown.durationMs)} of ${formatDurationMs(shutdown.deadlineMs)}` : "did not return"}` +
      `, final checkpoint ${shutdown.finalCheckpoint}${shutdown.finalCheckpointDetail === null ? "" : ` (${shutdown.finalCheckpointDetail})`}` +
      `, dirty parts left ${shutdown.dirtyPartsLeft ?? "?"}, leases ${shutdown.leasesHeld ?? "?"}, fibers ${shutdown.fibersAlive ?? "?"}, lock ${shutdown.lock}` +
      (shutdown.cutWaits.length === 0 ? "" : `, ${shutdown.cutWaits.length} wait(s) cut`),
    verify.ran
      ? `verify: ${verify.ok === true ? "ok" : "FAILED"}, ${verify.pagesChecked} pages checked, ${verify.pagesRequired} required (${verify.mode}), ${verify.mismatches} mismatches`
      : `verify: skipped (${verify.skipped ?? "?"})`,
    report.ok ? "result: ok" : `result: FAILED: ${report.problems.join("; ")}`
  ]
  return lines.join("\n")
}
