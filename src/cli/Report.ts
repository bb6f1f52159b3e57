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
import { JSONSchema, Schema } from "effect"
import { formatDurationMs, formatSizeBytes } from "../domain/Units.js"
import type { ShutdownReport } from "../layers/Storage.js"
import type { Wait } from "../services/WaitRegistry.js"
import type { WorkloadCounters } from "../workload/Workload.js"

// The report is defined with Schema: its TypeScript types are derived from it, `--json` output
// decodes against it (a test checks a real run's), and docs/report.schema.json is generated from it.

const Count = Schema.Number.annotations({ description: "a whole number, 0 or more" })
const Milliseconds = Schema.Number.annotations({ description: "milliseconds" })
const Lsn = Schema.Number.annotations({ description: "a WAL position (bytes from the WAL's start)" })

/** The settings a run used. */
export const RunSettings = Schema.Struct({
  durationMs: Milliseconds,
  writers: Count,
  files: Count,
  pagesPerFile: Count,
  pageBytes: Count,
  checkpointIntervalMs: Milliseconds,
  s3Workers: Count,
  localBudgetBytes: Count,
  shutdownDeadlineMs: Milliseconds,
  walSegmentBytes: Count,
  store: Schema.String.annotations({
    description: "the bucket: file://<root> or s3://<bucket> [at <endpoint>], with its prefix"
  }),
  dataDirectory: Schema.String,
  faults: Schema.Array(Schema.String).annotations({ description: "the --fault arguments" })
}).annotations({ identifier: "RunSettings" })
export interface RunSettings extends Schema.Schema.Type<typeof RunSettings> {}

/** One wait the shutdown's deadline cut (src/services/WaitRegistry.ts's Wait). */
export const CutWait = Schema.Struct({
  id: Count,
  fiber: Schema.String.annotations({ description: "the waiting fiber, as Effect prints it (#42)" }),
  waiter: Schema.String.annotations({ description: "what waits, e.g. Checkpointer.checkpoint 7" }),
  on: Schema.String.annotations({ description: "what it waits on, e.g. task 17 WritePart users#3" }),
  sinceMs: Milliseconds.annotations({ description: "when the wait began, ms since the epoch" })
}).annotations({ identifier: "CutWait" })

/** The shutdown section: the Storage's report, or what is known when shutdown did not return. */
export const ShutdownSection = Schema.Struct({
  returned: Schema.Boolean.annotations({
    description: "false when shutdown itself did not return within its deadline plus the program's grace"
  }),
  durationMs: Milliseconds,
  deadlineMs: Milliseconds,
  metDeadline: Schema.Boolean,
  finalCheckpoint: Schema.Literal("completed", "timed-out", "failed", "none"),
  finalCheckpointNumber: Schema.NullOr(Count),
  finalCheckpointDetail: Schema.NullOr(Schema.String),
  dirtyPartsLeft: Schema.NullOr(Count),
  leasesHeld: Schema.NullOr(Count),
  fibersAlive: Schema.NullOr(Count),
  lockReleased: Schema.Boolean,
  lock: Schema.String.annotations({
    description: "released, not-ours, failed, left-fenced, or unknown (shutdown did not return)"
  }),
  tasks: Schema.NullOr(Schema.Struct({ drained: Count, interrupted: Count, aborted: Count })),
  cutWaits: Schema.Array(CutWait),
  writersInterrupted: Count.annotations({
    description: "writers still inside an insert when the workload stopped (interrupted)"
  })
}).annotations({ identifier: "ShutdownSection" })
export interface ShutdownSection extends Schema.Schema.Type<typeof ShutdownSection> {}

/** A page that does not hold what was acknowledged (src/workload/Verify.ts's PageMismatch). */
export const PageMismatch = Schema.Struct({
  file: Count,
  page: Count,
  required: Count,
  attemptedMax: Count,
  found: Schema.String.annotations({ description: "what the page holds: zeros, insert N, or invalid" }),
  problem: Schema.String
}).annotations({ identifier: "PageMismatch" })

/** The verify section. */
export const VerifySection = Schema.Struct({
  ran: Schema.Boolean,
  skipped: Schema.NullOr(Schema.String).annotations({
    description: "why it did not run (--no-verify, a signal) or could not finish"
  }),
  ok: Schema.NullOr(Schema.Boolean),
  mode: Schema.NullOr(Schema.Literal("every-acknowledged", "archived-wal")),
  requiredBelowLsn: Schema.NullOr(Lsn),
  restoredCheckpoint: Schema.NullOr(Count),
  replayedFromLsn: Schema.NullOr(Lsn),
  pagesChecked: Count,
  pagesRequired: Count,
  mismatches: Count,
  examples: Schema.Array(PageMismatch),
  durationMs: Milliseconds
}).annotations({ identifier: "VerifySection" })
export interface VerifySection extends Schema.Schema.Type<typeof VerifySection> {}

/** What the fault decorator injected during the run. */
export const FaultsSection = Schema.Struct({
  asked: Schema.Array(Schema.String),
  injected: Schema.Record({ key: Schema.String, value: Count }).annotations({
    description: "injected faults by kind: latency, error, permanent, stall"
  }),
  stalledAtEnd: Count.annotations({ description: "requests stalled when the report was made" })
}).annotations({ identifier: "FaultsSection" })
export interface FaultsSection extends Schema.Schema.Type<typeof FaultsSection> {}

/** The whole report of a run (`run --json`). @category models */
export const RunReport = Schema.Struct({
  command: Schema.Literal("run"),
  ok: Schema.Boolean,
  exitCode: Schema.Literal(0, 1),
  problems: Schema.Array(Schema.String),
  interruptedBy: Schema.NullOr(Schema.String).annotations({
    description: "the signal that ended the workload early, if any"
  }),
  settings: RunSettings,
  elapsedMs: Milliseconds,
  writes: Count.annotations({ description: "pages written by the workload (one per insert that reached its write)" }),
  inserts: Schema.Struct({
    attempted: Count,
    acknowledged: Count,
    failed: Count,
    failures: Schema.Record({ key: Schema.String, value: Count }).annotations({
      description: "failed inserts by error tag"
    })
  }),
  wal: Schema.Struct({
    archivedThrough: Lsn,
    endLsn: Schema.NullOr(Lsn),
    localOnly: Schema.NullOr(Schema.Struct({ fromLsn: Lsn, toLsn: Lsn })).annotations({
      description: "acknowledged WAL that is only in the local data directory, not in the bucket"
    })
  }),
  checkpoints: Schema.Struct({
    completed: Count,
    failed: Count,
    last: Count.annotations({ description: "the last completed checkpoint's number (0: none)" })
  }),
  bytesUploaded: Count,
  faults: Schema.NullOr(FaultsSection).annotations({
    description: "what the fault decorator did (null without --fault)"
  }),
  shutdown: ShutdownSection,
  verify: VerifySection
}).annotations({ identifier: "RunReport", title: "effect-s3-tier run --json report" })
export interface RunReport extends Schema.Schema.Type<typeof RunReport> {}

/** The JSON Schema of `run --json` (docs/report.schema.json is this, written out). */
export const runReportJsonSchema = (): JSONSchema.JsonSchema7Root => JSONSchema.make(RunReport)

/** The shutdown section from the Storage's report. */
export const shutdownSection = (report: ShutdownReport, writersInterrupted: number): ShutdownSection => ({
  returned: true,
  durationMs: report.durationMs,
  deadlineMs: report.deadlineMs,
  metDeadline: report.metDeadline,
  finalCheckpoint: report.finalCheckpoint.outcome,
  finalCheckpointNumber: report.finalCheckpoint.outcome === "completed" ? report.finalCheckpoint.checkpoint : null,
  finalCheckpointDetail: report.finalCheckpoint.outcome === "timed-out" || report.finalCheckpoint.outcome === "failed"
    ? report.finalCheckpoint.detail
    : null,
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
export const shutdownNotReturned = (
  waitedMs: number,
  deadlineMs: number,
  cutWaits: ReadonlyArray<Wait>,
  writersInterrupted: number
): ShutdownSection => ({
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
  if (!shutdown.returned) {
    problems.push(`shutdown did not return within ${shutdown.durationMs} ms (deadline ${shutdown.deadlineMs} ms)`)
  } else if (!shutdown.metDeadline) {
    problems.push(`shutdown took ${shutdown.durationMs} ms, over its deadline of ${shutdown.deadlineMs} ms`)
  }
  if (shutdown.leasesHeld !== null && shutdown.leasesHeld > 0) {
    problems.push(`${shutdown.leasesHeld} part lease(s) still held after shutdown`)
  }
  if (shutdown.fibersAlive !== null && shutdown.fibersAlive > 0) {
    problems.push(`${shutdown.fibersAlive} fiber(s) still alive after shutdown`)
  }
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

/** The cut waits for people: grouped by who waits on what kind of thing (numbers folded), most first. Pure. */
export const groupWaits = (waits: ReadonlyArray<Wait>): ReadonlyArray<string> => {
  const fold = (text: string) => text.replace(/#?\d+/g, "N")
  const groups = new Map<string, number>()
  for (const wait of waits) {
    const key = `${fold(wait.waiter)} on ${fold(wait.on)}`
    groups.set(key, (groups.get(key) ?? 0) + 1)
  }
  return [...groups.entries()].sort(([, left], [, right]) => right - left).map(([key, count]) => `${count} × ${key}`)
}

/** What the summary knows beyond the report. */
export interface SummaryOptions {
  /** The data directory was a temporary one that the program removes at exit (no --dir, no --keep). */
  readonly dataDirectoryRemoved?: boolean
}

/** What the report means for the data and what to do next, in words (empty for a clean run). Pure. */
export const nextSteps = (report: RunReport, run: SummaryOptions = {}): ReadonlyArray<string> => {
  const steps: Array<string> = []
  const localOnly = report.wal.localOnly
  if (localOnly !== null) {
    const where = `acknowledged inserts are only in the local WAL (LSN ${localOnly.fromLsn} to ${localOnly.toLsn}, ${
      formatSizeBytes(localOnly.toLsn - localOnly.fromLsn)
    }), not in the bucket`
    steps.push(
      run.dataDirectoryRemoved === true
        ? `${where}, and the data directory was a temporary one, removed at exit: they are lost; give --dir <directory> (or --keep) to keep them next time`
        : `${where}: keep ${report.settings.dataDirectory} and start from it again (--dir) to archive them; a restore from the bucket alone does not have them`
    )
  }
  if (!report.shutdown.lockReleased) {
    steps.push(
      `the bucket's lock was left behind (${report.shutdown.lock}): the next run on this bucket is refused until it expires, ` +
        "or pass --take-over (this process has exited, so taking over is safe)"
    )
  }
  if (report.shutdown.dirtyPartsLeft !== null && report.shutdown.dirtyPartsLeft > 0) {
    steps.push(
      `${report.shutdown.dirtyPartsLeft} part(s) changed since the last checkpoint stay in the data directory; the next start from it uploads them`
    )
  }
  return steps
}

/** A short human summary of a report (several lines, no trailing newline). */
export const summary = (report: RunReport, run: SummaryOptions = {}): string => {
  const shutdown = report.shutdown
  const verify = report.verify
  const steps = nextSteps(report, run)
  const waits = groupWaits(shutdown.cutWaits)
  const lines = [
    `run: ${report.inserts.acknowledged} inserts acknowledged (${report.inserts.attempted} attempted, ${report.inserts.failed} failed) in ${
      formatDurationMs(report.elapsedMs)
    }` +
    (report.interruptedBy === null ? "" : `, stopped early by ${report.interruptedBy}`),
    `store: ${report.settings.store}; data: ${report.settings.dataDirectory}` +
    (report.settings.faults.length === 0 ? "" : `; faults: ${report.settings.faults.join(", ")}`),
    `checkpoints: ${report.checkpoints.completed} completed (last #${report.checkpoints.last}), ${report.checkpoints.failed} failed; uploaded ${
      formatSizeBytes(report.bytesUploaded)
    }; WAL archived through ${report.wal.archivedThrough}`,
    ...(report.faults === null
      ? []
      : [
        `faults injected: ${
          Object.entries(report.faults.injected).map(([kind, count]) => `${kind} ${count}`).join(", ")
        }`
      ]),
    `shutdown: ${
      shutdown.returned
        ? `${formatDurationMs(shutdown.durationMs)} of ${formatDurationMs(shutdown.deadlineMs)}`
        : "did not return"
    }` +
    `, final checkpoint ${shutdown.finalCheckpoint}${
      shutdown.finalCheckpointDetail === null ? "" : ` (${shutdown.finalCheckpointDetail})`
    }` +
    `, dirty parts left ${shutdown.dirtyPartsLeft ?? "?"}, leases ${shutdown.leasesHeld ?? "?"}, fibers ${
      shutdown.fibersAlive ?? "?"
    }, lock ${shutdown.lock}` +
    (waits.length === 0 ? "" : `, ${shutdown.cutWaits.length} wait(s) cut:`),
    ...waits.map((line) => `  ${line}`),
    verify.ran
      ? `verify: ${
        verify.ok === true ? "ok" : "FAILED"
      }, ${verify.pagesChecked} pages checked, ${verify.pagesRequired} required (${verify.mode}), ${verify.mismatches} mismatches`
      : `verify: skipped (${verify.skipped ?? "?"})`,
    !report.ok
      ? `result: FAILED: ${report.problems.join("; ")}`
      : steps.length === 0
      ? `result: ok: shut down within its deadline${
        verify.ran ? ", and every acknowledged insert was found in the bucket" : ""
      }`
      : `result: ok (shut down within its deadline, nothing leaked), with what to do next:`,
    ...steps.map((step) => `  - ${step}`)
  ]
  return lines.join("\n")
}
