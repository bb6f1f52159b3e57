/**
 * The CLI's command bodies (`run`, `verify`, `inspect`), behind the option parsing of
 * src/program.ts, which loads this module only once the arguments are valid: bad input is answered
 * without loading the storage tier, the AWS SDK or the platform layers.
 *
 * Each body validates everything before it writes anything (directories that are not ours, a store
 * root that is a file, configuration bounds), then builds what it needs, and returns an exit code;
 * its failures are typed and become one line in the program.
 *
 * Replaces: the shell around OrioleDB's S3 tests (docs/ORIGINAL.md §8): start a cluster on a bucket,
 * insert, stop, restore with orioledb_s3_loader.py, compare.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { type Deferred, Effect, Either, identity, Layer, Option, Scope } from "effect"
import * as v8 from "node:v8"
import type { CheckpointNumber } from "../domain/Ids.js"
import type * as Retention from "../domain/Retention.js"
import { formatSizeBytes } from "../domain/Units.js"
import * as ReaderLease from "../internal/ReaderLease.js"
import * as Restore from "../layers/Restore.js"
import * as GarbageCollector from "../services/GarbageCollector.js"
import * as Loader from "../services/Loader.js"
import { LocalDisk } from "../services/LocalDisk.js"
import { ObjectStore, type ObjectStoreService } from "../services/ObjectStore.js"
import * as StorageConfig from "../services/StorageConfig.js"
import * as Gc from "../workload/Gc.js"
import * as Inspect from "../workload/Inspect.js"
import * as Page from "../workload/Page.js"
import * as Run from "../workload/Run.js"
import * as Verify from "../workload/Verify.js"
import * as Workload from "../workload/Workload.js"
import {
  checkDataDirectory,
  checkFreshDirectory,
  checkStoreRoot,
  chooseStore,
  describeChoice,
  diskLayer,
  namedBucket,
  percentProgress,
  probedStore,
  removeQuietly,
  runStore,
  type StoreChoice,
  storeLayer
} from "./Bucket.js"
import type { GcArgs, InspectArgs, RestoreArgs, RunArgs, VerifyArgs } from "./Options.js"
import { errorLine, type ExitCode, type Output, programName, UsageError } from "./Output.js"
import * as Report from "./Report.js"

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/**
 * The storage configuration of a run; the shutdown deadline is split 2/3 checkpoint, 1/5 drain.
 * Sizes whose bookkeeping would take more than half of `heapLimitBytes` are refused here, before
 * anything is written, instead of the process dying of heap exhaustion later.
 */
const runConfig = (
  args: RunArgs,
  heapLimitBytes: number
): Either.Either<StorageConfig.StorageConfigValue, UsageError> => {
  if (args.fileSize % Page.pageBytes !== 0) {
    return Either.left(
      new UsageError({ message: `--file-size: ${args.fileSize} is not a multiple of ${Page.pageBytes} bytes` })
    )
  }
  const pagesPerFile = args.fileSize / Page.pageBytes
  const bookkeepingBytes = Workload.bookkeepingBytes({ files: args.files, pagesPerFile })
  if (bookkeepingBytes > heapLimitBytes / 2) {
    return Either.left(
      new UsageError({
        message:
          `--files/--file-size: ${args.files} files of ${formatSizeBytes(args.fileSize)} are ${
            args.files * pagesPerFile
          } pages, whose bookkeeping ` +
          `(${
            formatSizeBytes(bookkeepingBytes)
          }, ${Workload.bookkeepingBytesPerPage} bytes a page) does not fit in half the heap limit (${
            formatSizeBytes(heapLimitBytes)
          }): ` +
          `use fewer or smaller files, or raise the limit (NODE_OPTIONS=--max-old-space-size=<MiB>)`
      })
    )
  }
  if (args.writers > (args.files * args.fileSize) / Page.pageBytes) {
    return Either.left(
      new UsageError({
        message: `--writers: ${args.writers} writers for ${
          (args.files * args.fileSize) / Page.pageBytes
        } pages: each writer needs a page`
      })
    )
  }
  const deadlineMs = args.shutdownDeadline
  return Either.mapLeft(
    StorageConfig.validate({
      prefix: args.prefix,
      workerCount: args.s3Workers,
      localBytesMax: args.localBudget,
      checkpointIntervalMs: args.checkpointInterval,
      shutdownDeadlineMs: deadlineMs,
      shutdownCheckpointDeadlineMs: Math.floor((deadlineMs * 2) / 3),
      drainDeadlineMs: Math.floor(deadlineMs / 5),
      walSegmentBytes: args.walSegment,
      takeOver: args.takeOver,
      ...retentionConfig(args),
      ...Option.match(args.gcInterval, { onNone: () => ({}), onSome: (gcIntervalMs) => ({ gcIntervalMs }) }),
      ...Option.match(args.gcMinAge, { onNone: () => ({}), onSome: (gcMinAgeMs) => ({ gcMinAgeMs }) })
    }),
    (error) => new UsageError({ message: `${flagOfField[error.field] ?? error.field}: ${error.detail}` })
  )
}

/** The flag that sets each configuration field, for messages. */
const flagOfField: Record<string, string> = {
  prefix: "--prefix",
  workerCount: "--s3-workers",
  localBytesMax: "--local-budget",
  checkpointIntervalMs: "--checkpoint-interval",
  shutdownDeadlineMs: "--shutdown-deadline",
  shutdownCheckpointDeadlineMs: "--shutdown-deadline",
  drainDeadlineMs: "--shutdown-deadline",
  walSegmentBytes: "--wal-segment",
  retainCheckpointsMin: "--retain-checkpoints",
  retainForMs: "--retain-for",
  gcIntervalMs: "--gc-interval",
  gcMinAgeMs: "--gc-min-age"
}

/** The retention flags given (`--retain-checkpoints`, `--retain-for`), as configuration fields. */
const retentionConfig = (
  args: { readonly retainCheckpoints: Option.Option<number>; readonly retainFor: Option.Option<number> }
): Partial<Retention.RetentionPolicy> => ({
  ...Option.match(args.retainCheckpoints, {
    onNone: () => ({}),
    onSome: (retainCheckpointsMin) => ({ retainCheckpointsMin })
  }),
  ...Option.match(args.retainFor, { onNone: () => ({}), onSome: (retainForMs) => ({ retainForMs }) })
})

/** `run`: see src/workload/Run.ts. */
// eslint-disable-next-line max-lines-per-function -- the run command's checks and set-up in their order, read top to bottom
export const runCommand = (args: RunArgs, output: Output, stop: Deferred.Deferred<string>) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const pathApi = yield* Path.Path
    const config = yield* runConfig(args, v8.getHeapStatistics().heap_size_limit)
    // Where things go; nothing is created until every check passed.
    const givenDir = Option.map(args.dir, (dir) => pathApi.resolve(dir))
    if (Option.isSome(givenDir)) yield* checkDataDirectory(givenDir.value)
    const defaultStoreRoot = Option.match(givenDir, {
      onNone: () => undefined,
      onSome: (dir) => pathApi.join(pathApi.dirname(dir), `${pathApi.basename(dir)}-bucket`)
    })
    // Without --dir the default store root lives in the temporary directory made below.
    const provisional = yield* chooseStore(args, defaultStoreRoot ?? "(temporary)", pathApi)
    yield* checkStoreRoot(provisional)
    const existed = (path: string) => fs.exists(path).pipe(Effect.orElseSucceed(() => true))
    const dataExisted = Option.isSome(givenDir) ? yield* existed(givenDir.value) : true
    // The temporary directory is made when first needed: at once without --dir (it holds the data
    // and the default bucket), otherwise only for the restore (a run killed before it leaves none).
    // It is removed (or, with --keep, named) when the run's scope closes.
    const runScope = yield* Effect.scope
    const temporary = yield* Effect.cached(
      fs.makeTempDirectory({ prefix: `${programName}-` }).pipe(
        Effect.mapError((error) => new UsageError({ message: `cannot make a temporary directory: ${error.message}` })),
        Effect.tap((directory) =>
          Scope.addFinalizer(
            runScope,
            args.keep
              ? output.stderr(`${programName}: kept ${directory}\n`)
              : fs.remove(directory, { recursive: true }).pipe(Effect.ignore)
          )
        )
      )
    )
    return yield* Effect.gen(function*() {
      const dataDirectory = Option.isSome(givenDir) ? givenDir.value : pathApi.join(yield* temporary, "data")
      const choice = yield* chooseStore(args, defaultStoreRoot ?? pathApi.join(yield* temporary, "bucket"), pathApi)
      const storeExisted = choice._tag === "File" ? yield* existed(choice.root) : true
      const store = yield* runStore(choice, args.fault, args.prefix)
      const report = yield* Run.run(
        {
          durationMs: args.duration,
          writers: args.writers,
          files: args.files,
          fileBytes: args.fileSize,
          config,
          faults: args.fault,
          verify: !args.noVerify,
          json: args.json,
          dataDirectory,
          restoreDirectory: Effect.map(temporary, (directory) => pathApi.join(directory, "restore"))
        },
        store,
        diskLayer,
        output,
        stop
      ).pipe(
        // A refused start leaves nothing behind: the directories it created (and only those) go.
        Effect.tapError(() =>
          Effect.forEach(
            [
              ...(dataExisted ? [] : [dataDirectory]),
              ...(choice._tag === "File" && !storeExisted ? [choice.root] : [])
            ],
            removeQuietly,
            { discard: true }
          )
        )
      )
      if (args.json) yield* output.stdout(`${JSON.stringify(report)}\n`)
      else {yield* output.stdout(
          `${Report.summary(report, { dataDirectoryRemoved: Option.isNone(givenDir) && !args.keep })}\n`
        )}
      if (!report.ok) yield* errorLine(output, `run failed its checks: ${report.problems.join("; ")}`)
      return report.exitCode as ExitCode
    })
  }).pipe(Effect.scoped)

/** `verify`: the latest checkpoint's parts against their digests. */
export const verifyCommand = (args: VerifyArgs, output: Output) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const pathApi = yield* Path.Path
    const { choice, config } = yield* namedBucket(args)
    const givenDir = Option.map(args.dir, (dir) => pathApi.resolve(dir))
    if (Option.isSome(givenDir)) yield* checkFreshDirectory(givenDir.value)
    const directory = Option.isSome(givenDir)
      ? givenDir.value
      : yield* fs.makeTempDirectory({ prefix: `${programName}-verify-` }).pipe(
        Effect.mapError((error) => new UsageError({ message: `cannot make a temporary directory: ${error.message}` }))
      )
    const body = Effect.gen(function*() {
      const store = ReaderLease.readOnlyExceptLeases(yield* probedStore, config)
      const disk = yield* LocalDisk
      const numbers = yield* Loader.listCheckpoints(store, config)
      const latestNumber = numbers[numbers.length - 1]
      if (latestNumber === undefined) {
        yield* errorLine(output, `${store.description} has no complete checkpoint to verify`)
        return 1 as ExitCode
      }
      // The lease first, then the root manifest: the collector keeps what a live lease names.
      const lease = yield* verifyLease(store, config, latestNumber, output)
      const guard = lease?.guard ?? identity
      const latest = yield* guard(
        Effect.flatMap(Loader.readCheckpointManifest(store, config, latestNumber), (manifest) =>
          Loader.readCheckpoint(store, config, manifest))
      )
      const result = yield* guard(
        Verify.verifyCheckpoint(store, config, disk, latest, {
          concurrency: args.concurrency,
          onProgress: percentProgress("verify", output)
        })
      )
      const report = {
        command: "verify" as const,
        store: store.description,
        prefix: config.prefix,
        directory,
        ...result
      }
      if (args.json) {
        yield* output.stdout(`${JSON.stringify(report)}\n`)
      } else {
        yield* output.stdout(
          `verify: checkpoint ${result.checkpoint} of ${store.description}: ${result.partsChecked} parts in ${result.files} files, ` +
            `${result.bytesChecked} bytes, ${result.mismatches} mismatches: ${result.ok ? "ok" : "FAILED"}\n` +
            result.examples.map((example) =>
              `  ${example.file} part ${example.part}: ${example.detail}\n`
            ).join("")
        )
      }
      if (!result.ok) {
        yield* errorLine(
          output,
          `verify found ${result.mismatches} part(s) that do not match checkpoint ${result.checkpoint}'s manifest`
        )
      }
      return (result.ok ? 0 : 1) as ExitCode
    })
    return yield* body.pipe(
      Effect.scoped,
      Effect.provide(Layer.merge(storeLayer(choice, false, true, true), diskLayer(directory))),
      Effect.ensuring(Option.isSome(givenDir) ? Effect.void : removeQuietly(directory))
    )
  })

/**
 * `verify`'s lease on the checkpoint it reads. A store that refuses the lease's put (a read-only
 * mount or credentials) is verified without one, with a warning: a collector running meanwhile may
 * delete what verify reads, which then shows as missing parts, never as a pass.
 */
const verifyLease = (
  store: ObjectStoreService,
  config: StorageConfig.StorageConfigValue,
  checkpoint: CheckpointNumber,
  output: Output
) =>
  ReaderLease.acquire(store, config, { checkpoint, holder: `verify pid ${process.pid}` }).pipe(
    Effect.map((lease): ReaderLease.HeldReaderLease | undefined => lease),
    Effect.catchTag("ObjectStoreRejected", (error) =>
      Effect.as(
        output.stderr(
          `${programName}: warning: verify holds no reader lease (${error.message}): a garbage collector running meanwhile may remove what it reads\n`
        ),
        undefined
      ))
  )

/** `inspect`: what the bucket holds. */
export const inspectCommand = (args: InspectArgs, output: Output) =>
  Effect.gen(function*() {
    const { choice, config } = yield* namedBucket(args)
    const report = yield* Effect.flatMap(ObjectStore, (store) => Inspect.inspect(store, config)).pipe(
      Effect.provide(storeLayer(choice, false, true))
    )
    yield* output.stdout(args.json ? `${JSON.stringify(report)}\n` : `${Inspect.formatTable(report)}\n`)
    return 0 as ExitCode
  })

/**
 * `gc`: one garbage-collection pass (GarbageCollector.collect) with the writer's retention policy
 * (from the latest root manifest) unless overridden. It holds no lock: the pass is safe while a
 * writer runs. A pass that fails closed exits 1 having deleted nothing.
 */
export const gcCommand = (args: GcArgs, output: Output) =>
  Effect.gen(function*() {
    const minAge = Option.match(args.minAge, { onNone: () => ({}), onSome: (gcMinAgeMs) => ({ gcMinAgeMs }) })
    const { choice, config } = yield* namedBucket(
      args,
      minAge,
      (field) => (field === "gcMinAgeMs" ? "--min-age" : field)
    )
    // A dry run opens the store read-only; a pass needs no create-if-absent check (it writes none).
    const gcChoice: StoreChoice = choice._tag === "S3" ? { ...choice, checkConditionalCreate: false } : choice
    const pass = Effect.gen(function*() {
      const store = yield* probedStore
      return yield* Effect.either(
        GarbageCollector.collect(store, config, { dryRun: args.dryRun, policy: retentionConfig(args) })
      )
    })
    const result = yield* pass.pipe(Effect.provide(storeLayer(gcChoice, false, args.dryRun)))
    if (Either.isLeft(result)) {
      yield* errorLine(output, result.left.message)
      return 1 as ExitCode
    }
    const report = {
      command: "gc" as const,
      store: describeChoice(choice, config.prefix),
      prefix: config.prefix,
      ...result.right
    }
    yield* output.stdout(args.json ? `${JSON.stringify(report)}\n` : `${Gc.formatReport(report)}\n`)
    return 0 as ExitCode
  })

// ---------------------------------------------------------------------------------------------
// restore
// ---------------------------------------------------------------------------------------------

/** The one target the options name (at most one may be given). */
const restoreTarget = (args: RestoreArgs): Either.Either<Restore.RestoreTarget, UsageError> => {
  const given = [
    Option.map(args.checkpoint, Restore.checkpoint),
    Option.map(args.lsn, Restore.lsn),
    Option.map(args.time, Restore.time)
  ].filter(Option.isSome)
  if (given.length > 1) {
    return Either.left(
      new UsageError({
        message: "restore takes one target: --checkpoint <n>, --lsn <lsn> or --time <ISO-8601>, not several"
      })
    )
  }
  return Either.right(given[0]?.value ?? Restore.latest)
}

/** The report of a restore (the JSON of `--json`). */
const restoreReport = (summary: Restore.RestoreSummary, store: string, prefix: string, directory: string) => ({
  command: "restore" as const,
  store,
  prefix,
  directory,
  ...summary,
  checkpointCreatedAt: summary.checkpoint === 0 ? null : new Date(summary.checkpointCreatedAtMs).toISOString()
})

/**
 * `restore`: the bucket's state at a target (the latest one by default) into a fresh directory,
 * through the workload's replay, holding a reader lease and writing nothing else to the bucket.
 */
export const restoreCommand = (args: RestoreArgs, output: Output) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const pathApi = yield* Path.Path
    const target = yield* restoreTarget(args)
    const { choice, config } = yield* namedBucket(args)
    const directory = pathApi.resolve(args.dir)
    yield* checkFreshDirectory(directory, "restore")
    const existed = yield* fs.exists(directory).pipe(Effect.orElseSucceed(() => true))
    // A restore that fails leaves the directory as it found it: missing, or empty.
    const undo = existed
      ? Effect.flatMap(fs.readDirectory(directory), (entries) =>
        Effect.forEach(entries, (entry) => removeQuietly(pathApi.join(directory, entry)), { discard: true })).pipe(
          Effect.ignore
        )
      : removeQuietly(directory)
    const body = Effect.gen(function*() {
      const store = yield* probedStore
      const summary = yield* Restore.restore({
        target,
        holder: `restore pid ${process.pid}`,
        replay: Run.replayRecord,
        concurrency: args.concurrency,
        onProgress: percentProgress("restore", output)
      })
      const report = restoreReport(summary, store.description, config.prefix, directory)
      yield* output.stdout(args.json ? `${JSON.stringify(report)}\n` : `${formatRestore(report)}\n`)
      return 0 as ExitCode
    })
    return yield* body.pipe(
      Effect.provide(
        Layer.mergeAll(StorageConfig.layer(config), storeLayer(choice, false, true, true), diskLayer(directory))
      ),
      Effect.onExit((exit) => (exit._tag === "Success" ? Effect.void : undo))
    )
  })

const formatRestore = (report: ReturnType<typeof restoreReport>): string =>
  `restore: ${report.target} of ${report.store} into ${report.directory}: ` +
  (report.checkpoint === 0
    ? "no checkpoint"
    : `checkpoint ${report.checkpoint} (${report.checkpointCreatedAt}), ${report.parts} parts in ${report.files} files (${report.partBytes} bytes)`) +
  ` + WAL from LSN ${report.walFromLsn} to ${report.walToLsn}: ${report.records} records (${report.recordBytes} bytes) from ${report.segments} segments`
