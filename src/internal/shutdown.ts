/**
 * The storage tier's shutdown: six named steps, each bounded, run once in order, within
 * `shutdownDeadlineMs` whatever the bucket does.
 *
 *   1. stopIntake: the garbage collector's pass stops (its deletes in flight are interrupted); new
 *      leases, reads, writes, appends, commits and checkpoints fail with ShuttingDown, and a
 *      checkpoint on demand in flight is cut (src/internal/admission.ts); the periodic checkpoint
 *      and the evictor stop;
 *   2. archiveWal: the WAL archives its final partial segment (so it is in the bucket before the
 *      manifest), with at most half of the checkpoint's share;
 *   3. finalCheckpoint: the shutdown checkpoint, with what is left of `shutdownCheckpointDeadlineMs`;
 *   4. drain: lock renewals stop, the part table closes (leases waiting on a load wake with
 *      ShuttingDown), the application's operations still running end (`operationsBoundMs`), the
 *      workers drain the queue for at most `drainDeadlineMs`, then in-flight requests are
 *      interrupted and every pending handle fails with TaskAborted;
 *   5. releaseLock: the bucket lock is deleted if it is still ours, with what is left of the deadline;
 *   6. markClean: the part files holding data no checkpoint has are synced and the stop is recorded as
 *      clean, so the next start keeps them.
 * At half the deadline the current waits are logged, grouped (src/internal/waitSummary.ts). The
 * whole is the span `storage.shutdown`, each step a child span `storage.shutdown.<step>`; the close
 * is one readable INFO line (`describeShutdown`); the report itself is `Storage.shutdown`'s value.
 *
 * Replaces: OrioleDB's shutdown, which was not a protocol at all (docs/ORIGINAL.md §7): the
 * checkpointer's shutdown checkpoint waited on queue locations with no timeout (#340, #373), and the
 * postmaster waited on the checkpointer.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Duration, Effect, Either, Exit, Fiber, Option } from "effect"
import { describeCause } from "../domain/Errors.js"
import { partPath } from "../domain/PartPath.js"
import { formatDurationMs } from "../domain/Units.js"
import type { FinalCheckpoint, ShutdownReport } from "../layers/Storage.js"
import type { BucketLockService } from "../services/BucketLock.js"
import type { CheckpointError, CheckpointerService } from "../services/Checkpointer.js"
import type { EvictorService } from "../services/Evictor.js"
import type { GarbageCollectorService } from "../services/GarbageCollector.js"
import { markCleanShutdown } from "../services/Loader.js"
import type { LocalDiskService } from "../services/LocalDisk.js"
import type { PartTableService } from "../services/PartTable.js"
import type { S3WorkersService, WorkerShutdownReport } from "../services/S3Workers.js"
import { daemonStopBoundMs, type StorageConfigValue } from "../services/StorageConfig.js"
import type { Wait, WaitRegistryService } from "../services/WaitRegistry.js"
import type { WalArchiverService, WalShutdownReport, WalStats } from "../services/WalArchiver.js"
import type { Admission } from "./admission.js"
import { bounded, remainingMs } from "./deadline.js"
import { describeWaits } from "./waitSummary.js"

/** The services the shutdown stops, and the switch that refuses new work. */
export interface ShutdownServices {
  readonly config: StorageConfigValue
  readonly disk: LocalDiskService
  readonly waits: WaitRegistryService
  readonly gc: GarbageCollectorService
  readonly checkpointer: CheckpointerService
  readonly evictor: EvictorService
  readonly wal: WalArchiverService
  readonly parts: PartTableService
  readonly workers: S3WorkersService
  readonly bucketLock: BucketLockService
  /** From now on leases, writes, appends, commits and checkpoints fail with ShuttingDown. */
  readonly refuseNewWork: Effect.Effect<void>
  /** The application's operations admitted before `refuseNewWork`: their end, and how many run. */
  readonly operations: Pick<Admission, "idle" | "inFlight">
}

// ---------------------------------------------------------------------------------------------
// Margins: each one named, with the bound it must fit inside
// ---------------------------------------------------------------------------------------------

/** Step 4's bound on the application's operations still in flight (reads and writes on the disk,
 * holding their leases): a lease's wait at most, and a tenth of the deadline. */
export const operationsBoundMs = (config: StorageConfigValue): number =>
  Math.min(config.leaseTimeoutMs, config.shutdownDeadlineMs / 10)

/**
 * Steps 2 and 3 bound themselves (the WAL's flush its `deadlineMs`, the checkpoint its own); each is
 * also cut from outside this much later, so that its own bound fires first and it reports what it
 * could not do. The outer bound catches only a step whose own bound failed. The WAL's margin fits in
 * the checkpoint's share (the WAL gets half of it); the checkpoint's spills into the drain's slack,
 * and steps 5 and 6 take only what is left of the whole deadline.
 */
export const walOuterMarginMs = 100
export const checkpointOuterMarginMs = 50

/**
 * Kept back from step 5 (the lock's release) for step 6 and the report: a tenth of the deadline, at
 * most 300 ms. Wide enough for a starved event loop: on 2 busy cores a timer fires tens of ms late,
 * and a cut step ends after it.
 */
export const reserveAfterLockMs = (config: StorageConfigValue): number =>
  Math.min(300, Math.ceil(config.shutdownDeadlineMs * 0.1))

/** Kept back from step 6 (marking the stop clean) for the report: a twentieth of the deadline, at most 150 ms. */
export const reserveAfterMarkCleanMs = (config: StorageConfigValue): number =>
  Math.min(150, Math.ceil(config.shutdownDeadlineMs * 0.05))

/** The lock's DELETE never gets a request timeout below StorageConfig's floor for `requestTimeoutMs`. */
const requestTimeoutFloorMs = 10

// ---------------------------------------------------------------------------------------------
// The six steps
// ---------------------------------------------------------------------------------------------

const stopIntake = (services: ShutdownServices) =>
  Effect.gen(function*() {
    // First: a pass in flight stops deleting (its deletes are interruptible requests).
    yield* bounded(services.gc.stop, daemonStopBoundMs(services.config))
    yield* services.refuseNewWork
    // Each bounds its own wait by daemonStopBoundMs, and its close does not wait again: a periodic
    // checkpoint whose commit is in runs its control-file rewrite to its end, and an eviction its
    // unlink, which a stalled disk can hold; the shutdown goes on without them (the final
    // checkpoint waits for the periodic one's end within its own share).
    yield* services.checkpointer.stopPeriodic
    yield* services.evictor.stop
  })

/** The WAL's positions when its own shutdown step overran its bound. */
const walFromStats = (stats: WalStats): WalShutdownReport => ({
  archivedThrough: stats.archivedThrough,
  durableLsn: stats.durableLsn,
  endLsn: stats.endLsn,
  localOnly: stats.archivedThrough < stats.endLsn ? { fromLsn: stats.archivedThrough, toLsn: stats.endLsn } : undefined
})

/** At most half of what is left of the checkpoint's share, so a stalled archive leaves the
 * checkpoint time to try (and to report what it could not do). */
const archiveWal = (services: ShutdownServices, checkpointDeadlineAtMs: number) =>
  Effect.gen(function*() {
    const walBudgetMs = Math.floor((yield* remainingMs(checkpointDeadlineAtMs)) / 2)
    const flushed = yield* bounded(services.wal.shutdown(walBudgetMs), walBudgetMs + walOuterMarginMs)
    return yield* Option.match(flushed, {
      onSome: Effect.succeed,
      onNone: () => Effect.map(services.wal.stats, walFromStats)
    })
  })

/** The checkpoint's failure as the report says it: the first failure names the cause (concurrent
 * uploads may add more of the same kind). */
const failedCheckpoint = (cause: Cause.Cause<CheckpointError>): FinalCheckpoint => {
  const failure = Option.getOrUndefined(Cause.failureOption(cause))
  if (failure?._tag === "CheckpointFailed" && failure.reason === "TimedOut") {
    return { outcome: "timed-out", detail: failure.message }
  }
  return { outcome: "failed", detail: failure?.message ?? describeCause(cause) }
}

/** What is left of the checkpoint's share; the waits a deadline cut are kept for the report. */
const finalCheckpoint = (services: ShutdownServices, checkpointDeadlineAtMs: number) =>
  Effect.gen(function*() {
    const none: ReadonlyArray<Wait> = []
    if (Option.isSome(yield* services.bucketLock.fenced)) {
      return {
        finalCheckpoint: {
          outcome: "failed",
          detail: "fenced: a newer instance took over the bucket"
        } satisfies FinalCheckpoint,
        cutWaits: none
      }
    }
    const budgetMs = yield* remainingMs(checkpointDeadlineAtMs)
    // A daemon, and its interruption awaited for one margin only: once committed, a checkpoint's
    // bookkeeping runs to its end (the control file's rewrite), and a disk that holds that write
    // must not hold the shutdown past its deadline (nor the end of the fiber that forked it).
    const fiber = yield* Effect.forkDaemon(
      Effect.interruptible(services.checkpointer.checkpoint({ deadlineMs: Math.max(1, budgetMs), reason: "shutdown" }))
    )
    const exit = yield* bounded(Fiber.await(fiber), budgetMs + checkpointOuterMarginMs)
    if (Option.isNone(exit)) {
      const cutWaits = yield* services.waits.current
      yield* bounded(Fiber.interrupt(fiber), checkpointOuterMarginMs)
      return {
        finalCheckpoint: {
          outcome: "timed-out",
          detail: `not committed within ${budgetMs} ms`
        } satisfies FinalCheckpoint,
        cutWaits
      }
    }
    const outcome = Exit.match(exit.value, {
      onSuccess: (report): FinalCheckpoint => (report.outcome === "completed"
        ? { outcome: "completed", checkpoint: report.checkpoint }
        : { outcome: "none" }),
      onFailure: failedCheckpoint
    })
    return {
      finalCheckpoint: outcome,
      cutWaits: outcome.outcome === "timed-out" ? yield* services.waits.current : none
    }
  })

/** Nothing more goes to the bucket but the lock's DELETE: a renewal in flight ends during the drain
 * instead of delaying the release. The workers bound their own drain (`drainDeadlineMs`). */
const drain = (services: ShutdownServices): Effect.Effect<WorkerShutdownReport> =>
  Effect.gen(function*() {
    yield* services.bucketLock.stopRenewals
    yield* services.parts.close
    // The application's operations admitted before step 1: those waiting for a part woke with
    // ShuttingDown at the close; a read or write on a slow disk ends here, so that it holds no lease
    // in the report and its disk write lands before the stop is marked clean (step 6).
    const boundMs = operationsBoundMs(services.config)
    if (Option.isNone(yield* bounded(services.operations.idle, boundMs))) {
      const running = yield* services.operations.inFlight
      yield* Effect.logWarning(
        `shutdown: ${running} operation(s) of the application still running after ${boundMs} ms; going on`
      )
    }
    return yield* Effect.interruptible(services.workers.shutdown)
  })

/** What is left of the deadline less `reserveAfterLockMs`, so that a stalled bucket cannot push the
 * close past its deadline; out of time, the release is cut at once (and marked failed, so no later
 * one runs). A fenced instance leaves the lock to the one that took over. */
const releaseLock = (services: ShutdownServices, deadlineAtMs: number) =>
  Effect.gen(function*() {
    const { bucketLock, config } = services
    if (Option.isSome(yield* bucketLock.fenced)) return "left-fenced" as const
    const lockBudgetMs = Math.min(
      (yield* remainingMs(deadlineAtMs)) - reserveAfterLockMs(config),
      config.requestTimeoutMs
    )
    const releaseConfig = {
      ...config,
      requestTimeoutMs: Math.max(requestTimeoutFloorMs, lockBudgetMs),
      retryAttemptsMax: 1
    }
    return Option.getOrElse(yield* bounded(bucketLock.release(releaseConfig), Math.max(0, lockBudgetMs)), () =>
      "failed" as const)
  })

/** Syncs the part files that hold data no checkpoint has, then marks the shutdown clean, so the next
 * start keeps them (after a crash it rebuilds them from the checkpoint and the WAL). True if marked. */
const markClean = (services: ShutdownServices, deadlineAtMs: number) =>
  Effect.gen(function*() {
    const { parts, wal } = services
    // Every part written through a lease since it was loaded (version > 0): an uploaded part's file
    // may still hold unsynced bytes, and a crash after this "clean" stop must not revert it.
    const dirtyPaths = (yield* parts.states).filter(([, , state]) => state.status === "Loaded" && state.version > 0)
      .map(([file, part]) => partPath(file, part))
    const cleanBudgetMs = (yield* remainingMs(deadlineAtMs)) - reserveAfterMarkCleanMs(services.config)
    // Sealed: no checkpoint's rewrite of the control file lands after the mark (one the disk holds
    // makes the mark wait, within its budget, instead of undoing it later).
    const mark = Effect.flatMap(Effect.zip(parts.localPartHashes, wal.durableLsn), ([hashes, walDurable]) =>
      services.checkpointer.sealControl(
        markCleanShutdown(services.disk, dirtyPaths, hashes, walDurable, services.bucketLock.lock.generation)
      ))
    // Disconnected: a mark whose write the disk holds runs on past the budget (a change returns only
    // once it has landed) without holding the shutdown; the guard keeps the directory locked meanwhile.
    const marked = cleanBudgetMs > 0
      ? yield* bounded(Effect.disconnect(Effect.either(mark)), cleanBudgetMs)
      : Option.none()
    const markedClean = Option.isSome(marked) && Either.isRight(marked.value)
    if (!markedClean) {
      yield* Effect.logWarning(
        "shutdown: the stop was not marked clean in time (the local part files were not all synced); " +
          "the next start treats this stop as a crash, unless a mark still being written lands"
      )
    }
    return markedClean
  })

/** Half-way diagnostics: who waits on what, grouped, instead of a debugger. Interrupted at step 6. */
const logWaitsAtHalfDeadline = (services: ShutdownServices) => {
  const halfMs = services.config.shutdownDeadlineMs / 2
  return Effect.sleep(Duration.millis(halfMs)).pipe(
    Effect.zipRight(Effect.zip(services.waits.current, Clock.currentTimeMillis)),
    Effect.flatMap(([current, nowMs]) =>
      Effect.logWarning(
        `shutdown not finished at half its deadline (${formatDurationMs(halfMs)}); ` +
          (current.length === 0
            ? "no wait is registered"
            : `${current.length} waiting:\n${describeWaits(current, nowMs).map((line) => `  ${line}`).join("\n")}`)
      )
    ),
    Effect.interruptible
  )
}

// ---------------------------------------------------------------------------------------------
// The sequence
// ---------------------------------------------------------------------------------------------

const step = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>) =>
  Effect.withSpan(effect, `storage.shutdown.${name}`)

/** Runs the six steps in order, uninterruptibly (it is a finalizer: a caller's interruption must
 * not cut it in half; each waiting step has an interruptible region and a bound of its own). */
export const run = (services: ShutdownServices): Effect.Effect<ShutdownReport> =>
  Effect.gen(function*() {
    const { config } = services
    const startMs = yield* Clock.currentTimeMillis
    const deadlineAtMs = startMs + config.shutdownDeadlineMs
    const checkpointDeadlineAtMs = startMs + config.shutdownCheckpointDeadlineMs
    yield* step("stopIntake", stopIntake(services))
    const diagnostics = yield* Effect.forkDaemon(logWaitsAtHalfDeadline(services))
    const walReport = yield* step("archiveWal", archiveWal(services, checkpointDeadlineAtMs))
    const { cutWaits, finalCheckpoint: checkpoint } = yield* step(
      "finalCheckpoint",
      finalCheckpoint(services, checkpointDeadlineAtMs)
    )
    const workerReport = yield* step("drain", drain(services))
    const lock = yield* step("releaseLock", releaseLock(services, deadlineAtMs))
    yield* Fiber.interrupt(diagnostics)
    yield* step("markClean", markClean(services, deadlineAtMs))
    const report = yield* toReport(services, {
      startMs,
      deadlineAtMs,
      finalCheckpoint: checkpoint,
      cutWaits,
      workerReport,
      walReport,
      lock
    })
    yield* Effect.logInfo(describeShutdown(report))
    return report
  }).pipe(Effect.withSpan("storage.shutdown"), Effect.uninterruptible)

const toReport = (
  services: ShutdownServices,
  done: {
    readonly startMs: number
    readonly deadlineAtMs: number
    readonly finalCheckpoint: FinalCheckpoint
    readonly cutWaits: ReadonlyArray<Wait>
    readonly workerReport: WorkerShutdownReport
    readonly walReport: WalShutdownReport
    readonly lock: ShutdownReport["lock"]
  }
) =>
  Effect.gen(function*() {
    const partStats = yield* services.parts.stats
    const endMs = yield* Clock.currentTimeMillis
    const { workerReport } = done
    const daemonsAlive =
      [yield* services.evictor.alive, yield* services.checkpointer.periodicAlive, yield* services.gc.periodicAlive]
        .filter(Boolean).length
    const report: ShutdownReport = {
      durationMs: endMs - done.startMs,
      deadlineMs: services.config.shutdownDeadlineMs,
      metDeadline: endMs <= done.deadlineAtMs,
      finalCheckpoint: done.finalCheckpoint,
      dirtyPartsLeft: partStats.dirty + partStats.writing,
      tasks: {
        drained: workerReport.drainedTasks,
        interrupted: workerReport.interruptedTasks,
        aborted: workerReport.abortedTasks
      },
      leasesHeld: partStats.leasesHeld,
      fibersAlive: workerReport.workersAlive + daemonsAlive,
      wal: done.walReport,
      lock: done.lock,
      cutWaits: done.cutWaits
    }
    return report
  })

// ---------------------------------------------------------------------------------------------
// The close, in one line
// ---------------------------------------------------------------------------------------------

const describeFinalCheckpoint = (checkpoint: FinalCheckpoint): string => {
  switch (checkpoint.outcome) {
    case "completed":
      return `final checkpoint ${checkpoint.checkpoint} completed`
    case "none":
      return "no final checkpoint needed"
    case "timed-out":
      return `final checkpoint timed out (${checkpoint.detail})`
    case "failed":
      return `final checkpoint failed (${checkpoint.detail})`
  }
}

const describeLock = (lock: ShutdownReport["lock"]): string => {
  switch (lock) {
    case "released":
      return "lock released"
    case "left-fenced":
      return "lock left to the instance that took over"
    case "not-ours":
      return "lock not ours (left alone)"
    case "failed":
      return "lock not released (it expires after its lease)"
  }
}

/**
 * The shutdown report as one line, e.g. "storage closed in 812ms: final checkpoint 41 completed,
 * WAL archived through 123456, lock released". What went wrong, if anything, follows.
 */
export const describeShutdown = (report: ShutdownReport): string => {
  const { wal } = report
  const parts = [
    describeFinalCheckpoint(report.finalCheckpoint),
    `WAL archived through ${wal.archivedThrough}` +
    (wal.localOnly === undefined ? "" : ` (${wal.localOnly.fromLsn} to ${wal.localOnly.toLsn} only in the local WAL)`),
    describeLock(report.lock),
    ...(report.dirtyPartsLeft > 0 ? [`${report.dirtyPartsLeft} dirty part(s) left for the next start`] : []),
    ...(report.tasks.aborted + report.tasks.interrupted > 0
      ? [`${report.tasks.interrupted} request(s) interrupted, ${report.tasks.aborted} task(s) aborted`]
      : []),
    ...(report.leasesHeld > 0 ? [`${report.leasesHeld} lease(s) still held`] : []),
    ...(report.fibersAlive > 0 ? [`${report.fibersAlive} fiber(s) still alive`] : [])
  ]
  const deadline = report.metDeadline ? "" : ` (past its ${formatDurationMs(report.deadlineMs)} deadline)`
  return `storage closed in ${formatDurationMs(report.durationMs)}${deadline}: ${parts.join(", ")}`
}
