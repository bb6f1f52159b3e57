#!/usr/bin/env node
/**
 * effect-s3-tier's CLI: `run` (the default: the original's failing scenario end to end), `verify`
 * (a checkpoint's parts against their digests), `inspect` (what a bucket holds) and `restore` (the
 * bucket's state at a point in time into a directory). See docs/CLI.md.
 *
 * Process rules:
 * - errors are ONE line on stderr (`effect-s3-tier: <message>`), never a stack trace; exit codes:
 *   0 ok, 1 the run (or verify) failed its checks, 2 bad input or refused start-up, 130 stopped by
 *   a signal outside `run`;
 * - everything is validated before anything is written; the JSON report alone goes to stdout, logs
 *   and progress to stderr;
 * - the first SIGINT/SIGTERM asks `run` to stop early and shut down gracefully (report included);
 *   NodeRuntime.runMain removes its listeners after the first signal, so a second one stops the
 *   process at once.
 *
 * The command body runs in a daemon fiber, not under `uninterruptibleMask`: a fiber forked inside an
 * uninterruptible region inherits it, so the storage tier's workers would become impossible to
 * interrupt at shutdown. The main fiber only waits; when a signal interrupts it, it tells the body
 * to stop and waits for the body's report.
 *
 * Replaces: OrioleDB's test scripts around the original report (docs/ORIGINAL.md §8), and gdb.
 *
 * @since 0.1.0
 */
// Deep imports: the packages' index modules pull in much more (@effect/platform-node's index loads
// @effect/cluster, rpc and sql), and start-up time counts for a CLI.
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Deferred, Effect, Either, Exit, Fiber, HashMap, identity, Layer, Logger, LogLevel, Option } from "effect"
import { parseDurationMs, parseDurationOrZeroMs, parseSizeBytes } from "./domain/Units.js"
import { conditionalCreateDialects } from "./domain/S3Compat.js"
import * as Faults from "./workload/Faults.js"
import { type ExitCode, messageOf, oneLine, type Output, programName } from "./workload/Output.js"
import * as OutputModule from "./workload/Output.js"

const version = "0.1.0"

// ---------------------------------------------------------------------------------------------
// Output and errors
// ---------------------------------------------------------------------------------------------

const output: Output = {
  stdout: (text) => Effect.sync(() => void process.stdout.write(text)),
  stderr: (text) => Effect.sync(() => void process.stderr.write(text)),
  isTty: process.stderr.isTTY === true
}

const errorLine = (message: string) => OutputModule.errorLine(output, message)

/** The exit code the teardown uses; the command sets it. */
let exitCodeFinal: ExitCode = 0

/** Logs go to stderr, one line each (with annotations), so that `--json` stdout stays clean. */
const stderrLogger = Logger.make(({ annotations, date, logLevel, message }) => {
  const text = (Array.isArray(message) ? message : [message]).map((part) => (typeof part === "string" ? part : JSON.stringify(part))).join(" ")
  const annotationText = HashMap.toEntries(annotations).map(([key, value]) => ` ${key}=${typeof value === "string" ? value : JSON.stringify(value)}`).join("")
  process.stderr.write(`${programName}: ${date.toISOString()} ${logLevel.label} ${text}${annotationText}\n`)
})

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

const invalid = (message: string) => ValidationError.invalidValue(HelpDoc.p(message))

const durationOption = (name: string, fallback: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("duration"),
    Options.withDefault(fallback),
    Options.withDescription(`${description} (a duration: 500ms, 8s, 2m, 1000s; default ${fallback})`),
    Options.mapEffect((text) => Either.match(parseDurationMs(text), { onLeft: (problem) => Effect.fail(invalid(`--${name}: ${problem}`)), onRight: Effect.succeed }))
  )

/** A duration that may be 0, optional: absent means the configuration's (or the bucket's) value. */
const optionalDurationOption = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("duration"),
    Options.optional,
    Options.withDescription(`${description} (a duration: 0, 90s, 10m, 24h)`),
    Options.mapEffect(Option.match({
      onNone: () => Effect.succeed(Option.none<number>()),
      onSome: (text) => Either.match(parseDurationOrZeroMs(text), { onLeft: (problem) => Effect.fail(invalid(`--${name}: ${problem}`)), onRight: (value) => Effect.succeed(Option.some(value)) })
    }))
  )

const optionalCountOption = (name: string, max: number, description: string) =>
  Options.integer(name).pipe(
    Options.withPseudoName("n"),
    Options.optional,
    Options.withDescription(`${description} (1 to ${max})`),
    Options.mapEffect(Option.match({
      onNone: () => Effect.succeed(Option.none<number>()),
      onSome: (value) => value >= 1 && value <= max ? Effect.succeed(Option.some(value)) : Effect.fail(invalid(`--${name}: ${value} is out of range: write a whole number from 1 to ${max}`))
    }))
  )

/** Retention and garbage collection (StorageConfig's retainCheckpointsMin, retainForMs, gc*). */
const retentionOptions = {
  retainCheckpoints: optionalCountOption("retain-checkpoints", 1_000_000, "keep at least this many of the latest checkpoints (default 2)"),
  retainFor: optionalDurationOption("retain-for", "keep every checkpoint of this point-in-time window, and the newest before it; 0 = the latest ones only (default 24h)")
}

const sizeOption = (name: string, fallback: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("size"),
    Options.withDefault(fallback),
    Options.withDescription(`${description} (a size: 64MiB, 1GiB or bytes; default ${fallback})`),
    Options.mapEffect((text) => Either.match(parseSizeBytes(text), { onLeft: (problem) => Effect.fail(invalid(`--${name}: ${problem}`)), onRight: Effect.succeed }))
  )

const countOption = (name: string, fallback: number, max: number, description: string) =>
  Options.integer(name).pipe(
    Options.withPseudoName("n"),
    Options.withDefault(fallback),
    Options.withDescription(`${description} (1 to ${max}; default ${fallback})`),
    Options.mapEffect((value) =>
      value >= 1 && value <= max ? Effect.succeed(value) : Effect.fail(invalid(`--${name}: ${value} is out of range: write a whole number from 1 to ${max}`))
    )
  )

/** The bucket: a directory (the embedded filesystem store) or an S3 bucket. Same on every command. */
const storeOptions = {
  storeDir: Options.text("store-dir").pipe(
    Options.withPseudoName("directory"),
    Options.optional,
    Options.withDescription("the filesystem object store's root (when no --endpoint/--bucket is given); `run` defaults it to beside the data directory")
  ),
  endpoint: Options.text("endpoint").pipe(Options.withPseudoName("url"), Options.optional, Options.withDescription("an S3-compatible endpoint URL (e.g. http://127.0.0.1:9000); credentials from the standard AWS chain")),
  bucket: Options.text("bucket").pipe(Options.withPseudoName("name"), Options.optional, Options.withDescription("the S3 bucket (S3 is used when --bucket or --endpoint is given)")),
  prefix: Options.text("prefix").pipe(Options.withPseudoName("prefix"), Options.withDefault(""), Options.withDescription("key prefix inside the bucket (default none)")),
  region: Options.text("region").pipe(Options.withPseudoName("region"), Options.withDefault("us-east-1"), Options.withDescription("the S3 region (default us-east-1)")),
  pathStyle: Options.boolean("path-style").pipe(Options.withDescription("path-style S3 addressing (needed by most local S3 servers)")),
  conditionalCreate: Options.choice("conditional-create", conditionalCreateDialects).pipe(
    Options.withDefault("if-none-match" as const),
    Options.withDescription("how the S3 store asks for create-if-absent: if-none-match (AWS, R2, MinIO, Ceph RGW), gcs-generation-match (GCS), tigris-consistent (Tigris)")
  ),
  skipConformanceCheck: Options.boolean("skip-conformance-check").pipe(
    Options.withDescription("skip the start-up check that the S3 store lets exactly one of two racing create-if-absent PUTs win (only for a store known to honour it)")
  )
}

const json = Options.boolean("json").pipe(Options.withDescription("print one JSON object on stdout at the end (nothing else on stdout)"))
const verbose = Options.boolean("verbose").pipe(Options.withDescription("log the storage tier's info messages too (on stderr)"))

const runOptions = {
  ...storeOptions,
  duration: durationOption("duration", "15s", "how long the writers insert (the original report: 1000s)"),
  writers: countOption("writers", 8, 1024, "writer fibers"),
  files: countOption("files", 4, 4096, "data files"),
  fileSize: sizeOption("file-size", "16MiB", "size of each data file, a multiple of 8KiB"),
  checkpointInterval: durationOption("checkpoint-interval", "5s", "periodic checkpoint interval"),
  s3Workers: countOption("s3-workers", 8, 256, "S3 worker fibers"),
  localBudget: sizeOption("local-budget", "64MiB", "local bytes of loaded parts before eviction"),
  shutdownDeadline: durationOption("shutdown-deadline", "15s", "deadline of the whole shutdown"),
  walSegment: sizeOption("wal-segment", "1MiB", "WAL segment size (full segments are archived)"),
  ...retentionOptions,
  gcInterval: optionalDurationOption("gc-interval", "how often the writer runs a garbage-collection pass; 0 = never (default 10m)"),
  gcMinAge: optionalDurationOption("gc-min-age", "objects younger than this are never collected (default 1h)"),
  dir: Options.text("dir").pipe(Options.withPseudoName("directory"), Options.optional, Options.withDescription("the local data directory (a fresh temporary one when omitted)")),
  takeOver: Options.boolean("take-over").pipe(Options.withDescription("take the bucket over from an instance that holds its lock and is known to be dead (raises the fencing epoch)")),
  noVerify: Options.boolean("no-verify").pipe(Options.withDescription("skip the restore-and-verify step")),
  keep: Options.boolean("keep").pipe(Options.withDescription("keep the temporary directories this run created (they are removed by default)")),
  verbose,
  fault: Options.text("fault").pipe(
    Options.withPseudoName("fault"),
    Options.repeated,
    Options.withDescription(`inject a fault into the bucket (repeatable): ${Faults.usage}`),
    Options.mapEffect((texts) => Either.match(Faults.parseFaults(texts), { onLeft: (problem) => Effect.fail(invalid(problem)), onRight: Effect.succeed }))
  ),
  json
}

const verifyOptions = {
  ...storeOptions,
  dir: Options.text("dir").pipe(Options.withPseudoName("directory"), Options.optional, Options.withDescription("a fresh (missing or empty) directory to restore into (a temporary one, removed afterwards, when omitted)")),
  concurrency: countOption("concurrency", 8, 256, "parts fetched at a time"),
  verbose,
  json
}

const inspectOptions = { ...storeOptions, verbose, json }

const gcOptions = {
  ...storeOptions,
  dryRun: Options.boolean("dry-run").pipe(Options.withDescription("delete nothing, write nothing: print what a pass would do")),
  minAge: optionalDurationOption("min-age", "objects younger than this stay (default 1h)"),
  ...retentionOptions,
  verbose,
  json
}

/** An ISO-8601 time with its zone (2026-12-06T10:00:00Z, …+01:00), as ms since the epoch. */
const parseIsoTimeMs = (text: string): Either.Either<number, string> => {
  const iso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/
  const ms = iso.test(text) ? Date.parse(text) : Number.NaN
  return Number.isFinite(ms) ? Either.right(ms) : Either.left(`--time: ${JSON.stringify(text)} is not an ISO-8601 time with a zone (e.g. 2026-12-06T10:00:00Z)`)
}

const restoreOptions = {
  ...storeOptions,
  dir: Options.text("dir").pipe(Options.withPseudoName("directory"), Options.withDescription("a fresh (missing or empty) directory to restore into")),
  checkpoint: Options.integer("checkpoint").pipe(
    Options.withPseudoName("n"),
    Options.optional,
    Options.withDescription("restore this checkpoint (no WAL after it)"),
    Options.mapEffect((value) => Option.isSome(value) && value.value < 1 ? Effect.fail(invalid(`--checkpoint: ${value.value} is not a checkpoint number (1 or more)`)) : Effect.succeed(value))
  ),
  lsn: Options.integer("lsn").pipe(
    Options.withPseudoName("lsn"),
    Options.optional,
    Options.withDescription("restore every record below this WAL position"),
    Options.mapEffect((value) => Option.isSome(value) && value.value < 0 ? Effect.fail(invalid(`--lsn: ${value.value} is not a WAL position (0 or more)`)) : Effect.succeed(value))
  ),
  time: Options.text("time").pipe(
    Options.withPseudoName("ISO-8601"),
    Options.optional,
    Options.withDescription("restore the records appended at or before this time (to the WAL's time marks, 1 s apart by default)"),
    Options.mapEffect((value) =>
      Option.match(value, {
        onNone: () => Effect.succeed(Option.none<number>()),
        onSome: (text) => Either.match(parseIsoTimeMs(text), { onLeft: (problem) => Effect.fail(invalid(problem)), onRight: (ms) => Effect.succeed(Option.some(ms)) })
      })
    )
  ),
  concurrency: countOption("concurrency", 8, 256, "parts fetched at a time"),
  verbose,
  json
}

// ---------------------------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------------------------

/** What a command's failure prints, and its exit code. Never a stack trace. */
const reportFailure = (cause: Cause.Cause<unknown>): Effect.Effect<ExitCode> => {
  if (Cause.isInterruptedOnly(cause)) return Effect.succeed(130)
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (ValidationError.isValidationError(error)) {
      if (ValidationError.isHelpRequested(error)) return Effect.succeed(0)
      return Effect.as(errorLine(validationMessage(error)), 2)
    }
    // The library's advice names its option; the CLI's is a flag.
    return Effect.as(errorLine(messageOf(error).replace("pass takeOver only", "pass --take-over only")), 2)
  }
  const defect = Cause.dieOption(cause)
  return Effect.as(errorLine(`internal error: ${Option.match(defect, { onNone: () => Cause.pretty(cause).split("\n")[0] ?? "unknown", onSome: messageOf })}`), 1)
}

const validationMessage = (error: ValidationError.ValidationError): string =>
  ValidationError.isHelpRequested(error) ? "help requested" : oneLine(HelpDoc.toAnsiText(error.error)) || error._tag

/** Runs a command body; its failure becomes one line and an exit code. */
const runBody = (args: { readonly verbose: boolean }, body: Effect.Effect<ExitCode, unknown, FileSystem.FileSystem | Path.Path>) =>
  body.pipe(
    args.verbose ? Logger.withMinimumLogLevel(LogLevel.Info) : identity,
    Effect.exit,
    Effect.flatMap((exit) => (Exit.isSuccess(exit) ? Effect.succeed(exit.value) : reportFailure(exit.cause))),
    Effect.tap((code) => Effect.sync(() => (exitCodeFinal = code)))
  )

const makeCli = (stop: Deferred.Deferred<string>) => {
  /** Races a read-only command against a stop request: a signal ends it at once (exit 130). */
  const untilStop = (body: Effect.Effect<ExitCode, unknown, FileSystem.FileSystem | Path.Path>) =>
    Effect.raceFirst(body, Deferred.await(stop).pipe(Effect.zipRight(errorLine("stopped by a signal")), Effect.as(130 as ExitCode)))
  // The command bodies are loaded once the arguments parsed: bad input never pays for them.
  const commands = Effect.promise(() => import("./workload/Commands.js"))
  const run = Command.make("run", runOptions, (args) => runBody(args, Effect.flatMap(commands, (module) => module.runCommand(args, output, stop)))).pipe(
    Command.withDescription("run the insert workload, shut down under the deadline, restore and verify (the default command)")
  )
  const verify = Command.make("verify", verifyOptions, (args) => runBody(args, untilStop(Effect.flatMap(commands, (module) => module.verifyCommand(args, output))))).pipe(
    Command.withDescription("restore the latest checkpoint into a fresh directory and check every part against the manifest's SHA-256")
  )
  const inspect = Command.make("inspect", inspectOptions, (args) => runBody(args, untilStop(Effect.flatMap(commands, (module) => module.inspectCommand(args, output))))).pipe(
    Command.withDescription("list the checkpoints in a bucket (number, time, parts, bytes, complete or not)")
  )
  const gc = Command.make("gc", gcOptions, (args) => runBody(args, untilStop(Effect.flatMap(commands, (module) => module.gcCommand(args, output))))).pipe(
    Command.withDescription("delete what no retained checkpoint, commit in flight or reader lease needs (safe while a writer runs)")
  )
  const restore = Command.make("restore", restoreOptions, (args) => runBody(args, untilStop(Effect.flatMap(commands, (module) => module.restoreCommand(args, output))))).pipe(
    Command.withDescription("restore the bucket's state (the latest, or at --checkpoint, --lsn or --time) into a fresh directory, holding a reader lease")
  )
  const root = Command.make(programName).pipe(Command.withSubcommands([run, verify, inspect, restore, gc]))
  return Command.run(root, { name: programName, version })
}

const commandNames = ["run", "verify", "inspect", "restore", "gc"]
const builtInFlags = ["--help", "-h", "--version", "--wizard", "--completions"]

/** With no command, `run` is meant: `npm start` and `npm start -- --duration 5s` run the workload. */
const withDefaultCommand = (args: ReadonlyArray<string>): ReadonlyArray<string> => {
  const first = args[0]
  if (first === undefined) return ["run"]
  if (commandNames.includes(first) || builtInFlags.includes(first)) return args
  if (first.startsWith("-")) return ["run", ...args]
  return args
}

/** Swallows @effect/cli's own printing of parse errors: the program prints one line instead. */
const quietErrors = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Console.consoleWith((current) => Console.withConsole(effect, { ...current, error: () => Effect.void }))

const main = Effect.gen(function* () {
  const stop = yield* Deferred.make<string>()
  const argv = process.argv.slice(0, 2).concat(withDefaultCommand(process.argv.slice(2)))
  const cli = makeCli(stop)
  const body = quietErrors(cli(argv)).pipe(
    Effect.catchAll((error) => reportFailure(Cause.fail(error)).pipe(Effect.tap((code) => Effect.sync(() => (exitCodeFinal = code))))),
    Effect.provide(NodeContext.layer)
  )
  const fiber = yield* Effect.forkDaemon(body)
  yield* Fiber.await(fiber).pipe(
    Effect.onInterrupt(() =>
      Deferred.succeed(stop, lastSignal).pipe(
        Effect.zipRight(output.stderr(`${programName}: ${lastSignal} received: stopping (a second signal stops at once)\n`)),
        Effect.zipRight(Fiber.await(fiber)),
        Effect.tap((exit) => Effect.sync(() => {
          if (Exit.isFailure(exit) && exitCodeFinal === 0) exitCodeFinal = 130
        }))
      )
    )
  )
})

// Process warnings become one line each (Node prints them over several). The AWS SDK's notice that
// its releases after January 2027 need Node 22 is off unless asked for: it is not about this run.
process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true"
process.removeAllListeners("warning")
process.on("warning", (warning) => void process.stderr.write(`${programName}: warning: ${oneLine(`${warning.name}: ${warning.message}`)}\n`))

// The name of the first signal, for messages and the report. These listeners remove themselves at
// the first signal (as runMain's do), so that a second signal gets Node's default: stop at once.
let lastSignal = "signal"
const onSigint = () => recordSignal("SIGINT")
const onSigterm = () => recordSignal("SIGTERM")
const recordSignal = (name: string) => {
  lastSignal = name
  process.removeListener("SIGINT", onSigint)
  process.removeListener("SIGTERM", onSigterm)
}
process.on("SIGINT", onSigint)
process.on("SIGTERM", onSigterm)

NodeRuntime.runMain(
  main.pipe(
    Effect.provide(Layer.merge(Logger.replace(Logger.defaultLogger, stderrLogger), Logger.minimumLogLevel(LogLevel.Warning)))
  ),
  {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    teardown: (_exit, onExit) => {
      onExit(exitCodeFinal)
      // Exit even when a library left a handle open (an HTTP agent's keep-alive socket): the
      // report is written, and stdout/stderr writes are synchronous for files and pipes on Linux.
      process.exit(exitCodeFinal)
    }
  }
)

