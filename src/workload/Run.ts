/**
 * The `run` command's body: the original's failing scenario end to end. Start the storage tier over
 * the (possibly faulty) bucket, run the insert workload for a duration (or until a signal), shut the
 * tier down under its deadline, then restore the bucket into a fresh directory and verify every page
 * against the workload's ledger; report.
 *
 * Every step that can wait is bounded here too, independently of the library: the shutdown runs in
 * its own fiber and the program stops waiting for it at its deadline plus a grace, so a library bug
 * shows up as `shutdown.returned: false` in the report and a non-zero exit, never as a hang.
 *
 * Replaces: the original report's scenario (docs/ORIGINAL.md §7-8): ~1000 s of inserts, stop, shut the
 * cluster down — which never stopped.
 *
 * @since 0.1.0
 */
import {
  Clock,
  Context,
  Data,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  Layer,
  Logger,
  LogLevel,
  Option,
  Ref,
  Scope
} from "effect"
import { messageOf, type Output, type UsageError } from "../cli/Output.js"
import * as Progress from "../cli/Progress.js"
import * as Report from "../cli/Report.js"
import type { LocalIoError } from "../domain/Errors.js"
import type { FileId } from "../domain/Ids.js"
import { layerWithServices, type StorageServices } from "../internal/storageLayer.js"
import type { FaultStats } from "../layers/FaultyObjectStore.js"
import * as Restore from "../layers/Restore.js"
import * as Storage from "../layers/Storage.js"
import type { LocalDisk } from "../services/LocalDisk.js"
import type { ObjectStore } from "../services/ObjectStore.js"
import * as StorageConfig from "../services/StorageConfig.js"
import * as WaitRegistry from "../services/WaitRegistry.js"
import * as Faults from "./Faults.js"
import * as Page from "./Page.js"
import * as Verify from "./Verify.js"
import * as Workload from "./Workload.js"

/** The bucket as the run sees it, and its fault switches. */
export interface RunStore {
  /** The store with the fault decorator (when faults were asked for). */
  readonly layer: Layer.Layer<ObjectStore>
  /** The same bucket without faults, for the restore. */
  readonly plainLayer: Layer.Layer<ObjectStore>
  /** Turns the asked faults on (after start-up: the faults model a bucket that degrades during the
   * run; a bucket failing at start-up is refused start-up, tested on its own). */
  readonly arm: Effect.Effect<void>
  /** Makes the bucket stop answering now (`--fault stall-at-shutdown`). */
  readonly stallNow: Effect.Effect<void>
  /** The fault decorator's counters (undefined without faults). */
  readonly faultStats: Effect.Effect<FaultStats | undefined>
  /** `ObjectStore.description` of the bucket, for reports. */
  readonly description: string
}

/** The settings of one run, validated. */
export interface RunOptions {
  readonly durationMs: number
  readonly writers: number
  readonly files: number
  readonly fileBytes: number
  readonly config: StorageConfig.StorageConfigValue
  readonly faults: Faults.FaultPlan
  readonly verify: boolean
  readonly json: boolean
  readonly dataDirectory: string
  /** A fresh directory for the restore, made on demand (removed by the caller). */
  readonly restoreDirectory: Effect.Effect<string, UsageError>
}

/** Grace beyond the shutdown deadline before the program stops waiting for `shutdown`. */
export const shutdownGraceMs = 2_000
/** How long stopped writers may finish their current insert before they are interrupted. */
export const writerGraceMs = 1_000
/** How long closing the rest of the layers (after shutdown) may take before the program moves on. */
export const closeGraceMs = 3_000

/** Runs `effect` in a daemon fiber and waits at most `timeoutMs` for it: None when it did not end.
 * The wait is interruptible whatever the caller's region; the fiber is left to the process's exit. */
export const awaitBounded = <A, E>(
  effect: Effect.Effect<A, E>,
  timeoutMs: number
): Effect.Effect<Option.Option<Exit.Exit<A, E>>> =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkDaemon(Effect.interruptible(effect))
    return yield* Fiber.await(fiber).pipe(
      Effect.interruptible,
      Effect.timeout(Duration.millis(timeoutMs)),
      Effect.option
    )
  })

/** The storage layer over a store and a directory, with the workload's replay. */
export const storageLayer = (
  config: StorageConfig.StorageConfigValue,
  store: Layer.Layer<ObjectStore>,
  disk: Layer.Layer<LocalDisk, LocalIoError>
): Layer.Layer<StorageServices, StartError> =>
  layerWithServices({ replay: replayRecord }).pipe(
    Layer.provide(Layer.mergeAll(StorageConfig.layer(config), store, disk))
  )

/** Applies one WAL record at start-up: regenerates the page the insert wrote. */
export const replayRecord = <E>(
  record: Storage.ReplayRecord,
  storage: { readonly write: (file: FileId, offset: number, bytes: Uint8Array) => Effect.Effect<void, E> }
): Effect.Effect<void, E | Storage.RecordNotApplied> =>
  Either.match(Page.decodeRecord(record.bytes), {
    onLeft: (problem) =>
      Effect.fail(
        new Storage.RecordNotApplied({ detail: `WAL record at ${record.lsn} is not the workload's: ${problem}` })
      ),
    onRight: (identity) =>
      storage.write(Workload.fileIdOf(identity.file), identity.page * Page.pageBytes, Page.encodePage(identity))
  })

/** Builds a layer into a fresh scope; on failure the scope is closed (bounded) and the error returned. */
const buildScoped = <A, E>(layer: Layer.Layer<A, E>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const built = yield* Layer.buildWithScope(layer, scope).pipe(Effect.interruptible, Effect.exit)
    if (Exit.isFailure(built)) {
      yield* awaitBounded(Scope.close(scope, built), closeGraceMs)
      return yield* Effect.failCause(built.cause)
    }
    return { scope, context: built.value }
  })

const closeBounded = (scope: Scope.CloseableScope) => awaitBounded(Scope.close(scope, Exit.void), closeGraceMs)

/** Why the storage tier could not start: the library's refusal, or the data directory's I/O. */
export type StartError = Storage.StorageOpenError | LocalIoError

/** Start-up failed: its message is the cause's (the program maps it to exit code 2). */
export class StartFailed extends Data.TaggedError("StartFailed")<{ readonly cause: StartError }> {
  override get message(): string {
    return messageOf(this.cause)
  }
}

/** The run's phase as the sampler reads it (the shutdown's elapsed time is taken per sample). */
type RunPhase =
  | Exclude<Progress.Phase, { readonly _tag: "ShuttingDown" }>
  | { readonly _tag: "ShuttingDown"; readonly startedAtMs: number; readonly deadlineMs: number }

/** How long a progress sample waits for the tier's figures before it shows the last ones. */
const sampleStatsTimeoutMs = 500

/**
 * The progress line's sample. While the tier is open its figures are read (bounded: a stuck tier
 * must not stop the line); once it is closed, the last ones read stay on the line.
 */
const progressSampler = (
  storage: Storage.StorageService,
  ledger: Workload.Ledger,
  phase: Ref.Ref<RunPhase>,
  run: { readonly startedAtMs: number; readonly durationMs: number }
) =>
  Effect.map(Ref.make<Storage.StorageStats | undefined>(undefined), (lastStats) =>
    Effect.gen(function*() {
      const current = yield* Ref.get(phase)
      if (current._tag === "Writing" || current._tag === "ShuttingDown") {
        const fresh = yield* storage.stats.pipe(Effect.timeout(Duration.millis(sampleStatsTimeoutMs)), Effect.option)
        if (Option.isSome(fresh)) {
          yield* Ref.set(lastStats, fresh.value)
          yield* Effect.sync(() => ledger.prune(fresh.value.wal.archivedThrough))
        }
      }
      const stats = yield* Ref.get(lastStats)
      const nowMs = yield* Clock.currentTimeMillis
      const counters = yield* Effect.sync(() => ledger.counters())
      return {
        phase: current._tag === "ShuttingDown"
          ? { _tag: "ShuttingDown", elapsedMs: nowMs - current.startedAtMs, deadlineMs: current.deadlineMs }
          : current,
        elapsedMs: nowMs - run.startedAtMs,
        durationMs: run.durationMs,
        acknowledged: counters.acknowledged,
        queueDepth: stats?.queue.depth ?? 0,
        uploadsInFlight: stats?.queue.inFlight ?? 0,
        lastCheckpoint: stats?.checkpoints.lastCheckpoint ?? 0,
        checkpointsCompleted: stats?.checkpoints.completed ?? 0,
        bytesUploaded: stats === undefined ? 0 : stats.checkpoints.bytesUploaded + stats.wal.archivedBytes,
        walArchivedThrough: stats?.wal.archivedThrough ?? 0
      } satisfies Progress.ProgressSample
    }))

/** The output's status line, for the progress line on a terminal (absent in tests' outputs). */
const statusOf = (output: Output): Pick<Progress.ProgressOptions, "status" | "endStatus"> => ({
  ...(output.status === undefined ? {} : { status: output.status }),
  ...(output.endStatus === undefined ? {} : { endStatus: output.endStatus })
})

/** The run's settings, for the report. */
const settingsOf = (options: RunOptions, store: RunStore): Report.RunSettings => ({
  durationMs: options.durationMs,
  writers: options.writers,
  files: options.files,
  pagesPerFile: Math.floor(options.fileBytes / Page.pageBytes),
  pageBytes: Page.pageBytes,
  checkpointIntervalMs: options.config.checkpointIntervalMs,
  s3Workers: options.config.workerCount,
  localBudgetBytes: options.config.localBytesMax,
  shutdownDeadlineMs: options.config.shutdownDeadlineMs,
  walSegmentBytes: options.config.walSegmentBytes,
  store: store.description,
  dataDirectory: options.dataDirectory,
  faults: Faults.describe(options.faults)
})

/** The tier's figures for the report: from the shutdown's report where it returned, else the last stats. */
const tierFigures = (stats: Storage.StorageStats | undefined, shutdownReport: Storage.ShutdownReport | undefined) => {
  const archivedThrough = shutdownReport?.wal.archivedThrough ?? stats?.wal.archivedThrough ?? 0
  return {
    archivedThrough,
    wal: {
      archivedThrough,
      endLsn: shutdownReport?.wal.endLsn ?? null,
      localOnly: shutdownReport?.wal.localOnly ?? null
    },
    checkpoints: {
      completed: stats?.checkpoints.completed ?? 0,
      failed: stats?.checkpoints.failed ?? 0,
      last: stats?.checkpoints.lastCheckpoint ?? 0
    },
    bytesUploaded: stats === undefined ? 0 : stats.checkpoints.bytesUploaded + stats.wal.archivedBytes
  }
}

/**
 * The whole run. `stop` completes (with the signal's name) when the user asks to stop early.
 * Returns the report; fails with StartFailed when the storage tier could not start.
 */
/* eslint-disable max-lines-per-function -- the run's steps in their order (start, write, shut down, close, verify, report), read top to bottom */
export const run = (
  options: RunOptions,
  store: RunStore,
  disk: (root: string) => Layer.Layer<LocalDisk, LocalIoError>,
  output: Output,
  stop: Deferred.Deferred<string>
): Effect.Effect<Report.RunReport, StartFailed> =>
  Effect.gen(function*() {
    /* eslint-enable max-lines-per-function */
    const pagesPerFile = Math.floor(options.fileBytes / Page.pageBytes)
    const built = yield* buildScoped(storageLayer(options.config, store.layer, disk(options.dataDirectory))).pipe(
      Effect.mapError((cause) => new StartFailed({ cause }))
    )
    const storage = Context.get(built.context, Storage.Storage)
    const waits = Context.get(built.context, WaitRegistry.WaitRegistry)
    yield* store.arm
    const startedAtMs = yield* Clock.currentTimeMillis
    // Insert ids grow across runs on one bucket (ms · 1000 + n), so that a page written by an older
    // run never passes as one of this run's.
    const ledger = new Workload.Ledger(
      { writers: options.writers, files: options.files, pagesPerFile },
      startedAtMs * 1000 + 1
    )
    yield* output.stderr(
      `effect-s3-tier: run: ${options.writers} writers, ${options.files} files of ${pagesPerFile} pages, for ${options.durationMs} ms; ` +
        `store ${store.description}; data ${options.dataDirectory}` +
        (Faults.isEmpty(options.faults) ? "" : `; faults ${Faults.describe(options.faults).join(", ")}`) +
        "\n"
    )
    const phase = yield* Ref.make<RunPhase>({ _tag: "Writing" })
    const sample = yield* progressSampler(storage, ledger, phase, { startedAtMs, durationMs: options.durationMs })
    const progress = Progress.make({ sample, isTty: output.isTty, write: output.stderr, ...statusOf(output) })
    const progressFiber = yield* Effect.forkDaemon(Effect.interruptible(progress.loop))
    const workload = yield* Workload.start(storage, ledger)

    // The run: the duration, or a signal, whichever comes first.
    const ended = yield* Effect.raceFirst(
      Effect.sleep(Duration.millis(options.durationMs)).pipe(Effect.as(Option.none<string>())),
      Deferred.await(stop).pipe(Effect.map(Option.some))
    ).pipe(Effect.interruptible)
    const interruptedBy = Option.getOrNull(ended)
    const elapsedMs = (yield* Clock.currentTimeMillis) - startedAtMs

    // Shutdown, as the original's operator did it: stop the inserts, then close.
    const deadlineMs = options.config.shutdownDeadlineMs
    const shutdownStartMs = yield* Clock.currentTimeMillis
    yield* Ref.set(phase, { _tag: "ShuttingDown", startedAtMs: shutdownStartMs, deadlineMs })
    if (options.faults.stallAtShutdown) yield* store.stallNow
    const writersInterrupted = yield* workload.stop(writerGraceMs)
    const shutdownExit = yield* awaitBounded(storage.shutdown, deadlineMs + shutdownGraceMs)
    const shutdown = Option.isSome(shutdownExit) && Exit.isSuccess(shutdownExit.value)
      ? Report.shutdownSection(shutdownExit.value.value, writersInterrupted)
      : Report.shutdownNotReturned(
        (yield* Clock.currentTimeMillis) - shutdownStartMs,
        deadlineMs,
        yield* waits.current,
        writersInterrupted
      )
    const finalStats = yield* awaitBounded(storage.stats, 1_000)
    const faultStats = yield* store.faultStats
    yield* Ref.set(phase, { _tag: "Closing" })
    yield* closeBounded(built.scope)

    const { archivedThrough, bytesUploaded, checkpoints, wal } = tierFigures(
      Option.isSome(finalStats) && Exit.isSuccess(finalStats.value) ? finalStats.value.value : undefined,
      Option.isSome(shutdownExit) && Exit.isSuccess(shutdownExit.value) ? shutdownExit.value.value : undefined
    )

    const verify = !options.verify
      ? Report.verifySkipped("--no-verify")
      : interruptedBy !== null
      ? Report.verifySkipped(`stopped by ${interruptedBy}`)
      : yield* verifyRun(
        options,
        store,
        disk,
        ledger,
        {
          lockReleased: shutdown.lockReleased,
          archivedThrough,
          freshBucket: storage.opened.plan === "Fresh"
        },
        output,
        stop,
        (checked, total) => Ref.set(phase, { _tag: "Verifying", checked, total })
      )
    yield* Fiber.interrupt(progressFiber)
    yield* progress.finish
    return Report.make({
      interruptedBy,
      settings: settingsOf(options, store),
      elapsedMs,
      counters: ledger.counters(),
      pageBytes: Page.pageBytes,
      wal,
      checkpoints,
      bytesUploaded,
      faults: faultStats === undefined
        ? null
        : {
          asked: Faults.describe(options.faults),
          injected: faultStats.injected,
          stalledAtEnd: faultStats.stalledNow
        },
      shutdown,
      verify
    })
  })

/**
 * Restores the bucket into the fresh restore directory (latest checkpoint + archived WAL replayed,
 * without faults) and checks every page. Read-only on the bucket: a restore (Restore.ts) takes no
 * lock and commits nothing; it writes only its reader lease.
 */
const verifyRun = (
  options: RunOptions,
  store: RunStore,
  disk: (root: string) => Layer.Layer<LocalDisk, LocalIoError>,
  ledger: Workload.Ledger,
  run: { readonly lockReleased: boolean; readonly archivedThrough: number; readonly freshBucket: boolean },
  output: Output,
  stop: Deferred.Deferred<string>,
  onProgress: (checked: number, total: number) => Effect.Effect<void>
): Effect.Effect<Report.VerifySection> =>
  Effect.gen(function*() {
    const startMs = yield* Clock.currentTimeMillis
    yield* onProgress(0, 0)
    const restore = Effect.gen(function*() {
      const restored = yield* Restore.open({ holder: "run verify", replay: replayRecord })
      const summary = restored.summary
      const requiredBelowLsn = Faults.isEmpty(options.faults)
        ? undefined
        : Math.max(run.archivedThrough, summary.walFromLsn)
      yield* output.stderr(
        `effect-s3-tier: verify: restored checkpoint ${
          summary.checkpoint === 0 ? "none" : summary.checkpoint
        } + WAL from ${summary.walFromLsn}; checking ${ledger.totalPages} pages\n`
      )
      const result = yield* restored.readerLease.guard(Verify.verifyPages(restored, ledger, {
        requiredBelowLsn,
        concurrency: Math.max(2, Math.min(8, options.config.workerCount)),
        untouchedMayHoldOlder: !run.freshBucket,
        readBytes: options.config.partSizeBytes,
        onProgress
      }))
      return { result, summary }
    }).pipe(
      Effect.scoped,
      Effect.provide(
        Layer.mergeAll(
          StorageConfig.layer(options.config),
          store.plainLayer,
          Layer.unwrapEffect(Effect.map(options.restoreDirectory, disk))
        )
      )
    )
    const outcome = yield* Effect.raceFirst(
      // The restore is the program's own check: its warnings (a WAL taken from the bucket, its own
      // shutdown's diagnostics) are expected noise; a failure is in the report.
      restore.pipe(Logger.withMinimumLogLevel(LogLevel.Error), Effect.either, Effect.map(Option.some)),
      Deferred.await(stop).pipe(Effect.as(Option.none()))
    ).pipe(Effect.interruptible)
    const durationMs = (yield* Clock.currentTimeMillis) - startMs
    if (Option.isNone(outcome)) return { ...Report.verifySkipped("stopped by a signal during verify"), durationMs }
    if (Either.isLeft(outcome.value)) {
      return { ...Report.verifySkipped(`restore failed: ${messageOf(outcome.value.left)}`), ok: false, durationMs }
    }
    const { result, summary } = outcome.value.right
    return {
      ran: true,
      skipped: null,
      ok: result.ok,
      mode: result.requiredBelowLsn === undefined ? "every-acknowledged" : "archived-wal",
      requiredBelowLsn: result.requiredBelowLsn ?? null,
      restoredCheckpoint: summary.checkpoint === 0 ? null : summary.checkpoint,
      replayedFromLsn: summary.walFromLsn,
      pagesChecked: result.pagesChecked,
      pagesRequired: result.pagesRequired,
      mismatches: result.mismatches,
      examples: result.examples,
      durationMs
    } satisfies Report.VerifySection
  })
