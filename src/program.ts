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
 *   the program's listeners go at the first signal, so a second one stops the process at once.
 *
 * The command body runs in a daemon fiber, not under `uninterruptibleMask`: a fiber forked inside an
 * uninterruptible region inherits it, so the storage tier's workers would become impossible to
 * interrupt at shutdown. `main` only waits; at a signal it tells the body to stop, waits for the
 * body's report, and returns the body's exit code (no state outside `main`).
 *
 * Replaces: OrioleDB's test scripts around the original report (docs/ORIGINAL.md §8), and gdb.
 *
 * @since 0.1.0
 */
// Deep imports: the packages' index modules pull in much more (@effect/platform-node's index loads
// @effect/cluster, rpc and sql), and start-up time counts for a CLI.
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import {
  Cause,
  Console,
  Deferred,
  Effect,
  Exit,
  Fiber,
  FiberRef,
  identity,
  Logger,
  LogLevel,
  Option,
  Order,
  Ref
} from "effect"
import * as CliOptions from "./cli/Options.js"
import {
  errorLine,
  type ExitCode,
  logger,
  makeOutput,
  messageOf,
  oneLine,
  type Output,
  programName
} from "./cli/Output.js"

const version = "0.1.0"

// ---------------------------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------------------------

/** What a command's failure prints, and its exit code. Never a stack trace. */
const reportFailure = (output: Output, cause: Cause.Cause<unknown>): Effect.Effect<ExitCode> => {
  const line = (message: string) => errorLine(output, message)
  if (Cause.isInterruptedOnly(cause)) return Effect.succeed(130)
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (ValidationError.isValidationError(error)) {
      if (ValidationError.isHelpRequested(error)) return Effect.succeed(0)
      return Effect.as(line(validationMessage(error)), 2)
    }
    // The library's advice names its option; the CLI's is a flag.
    return Effect.as(line(messageOf(error).replace("pass takeOver only", "pass --take-over only")), 2)
  }
  const defect = Cause.dieOption(cause)
  return Effect.as(
    line(
      `internal error: ${
        Option.match(defect, { onNone: () => Cause.pretty(cause).split("\n")[0] ?? "unknown", onSome: messageOf })
      }`
    ),
    1
  )
}

const validationMessage = (error: ValidationError.ValidationError): string =>
  ValidationError.isHelpRequested(error) ? "help requested" : oneLine(HelpDoc.toAnsiText(error.error)) || error._tag

/** Runs a command body; its failure becomes one line and an exit code, recorded in `exitCode`.
 * `--verbose` lowers the log level to info (never raises a lower `--log-level`). */
const runBody = (
  args: { readonly verbose: boolean },
  exitCode: Ref.Ref<ExitCode>,
  output: Output,
  body: Effect.Effect<ExitCode, unknown, FileSystem.FileSystem | Path.Path>
) =>
  Effect.flatMap(FiberRef.get(FiberRef.currentMinimumLogLevel), (level) =>
    body.pipe(
      args.verbose ? Logger.withMinimumLogLevel(Order.min(LogLevel.Order)(level, LogLevel.Info)) : identity,
      Effect.exit,
      Effect.flatMap((exit) => (Exit.isSuccess(exit) ? Effect.succeed(exit.value) : reportFailure(output, exit.cause))),
      Effect.flatMap((code) => Ref.set(exitCode, code))
    ))

const makeCli = (stop: Deferred.Deferred<string>, exitCode: Ref.Ref<ExitCode>, output: Output) => {
  /** Races a read-only command against a stop request: a signal ends it at once (exit 130). */
  const untilStop = (body: Effect.Effect<ExitCode, unknown, FileSystem.FileSystem | Path.Path>) =>
    Effect.raceFirst(
      body,
      Deferred.await(stop).pipe(Effect.zipRight(errorLine(output, "stopped by a signal")), Effect.as(130 as ExitCode))
    )
  // The command bodies are loaded once the arguments parsed: bad input never pays for them.
  const commands = Effect.promise(() => import("./cli/Commands.js"))
  const command = <A extends { readonly verbose: boolean }>(
    body: (
      module: typeof import("./cli/Commands.js"),
      args: A
    ) => Effect.Effect<ExitCode, unknown, FileSystem.FileSystem | Path.Path>,
    readOnly: boolean
  ) =>
  (args: A) =>
    runBody(
      args,
      exitCode,
      output,
      (readOnly ? untilStop : identity)(Effect.flatMap(commands, (module) => body(module, args)))
    )
  const run = Command.make(
    "run",
    CliOptions.runOptions,
    command((module, args) => module.runCommand(args, output, stop), false)
  ).pipe(
    Command.withDescription(
      "run the insert workload, shut down under the deadline, restore and verify (the default command)"
    )
  )
  const verify = Command.make(
    "verify",
    CliOptions.verifyOptions,
    command((module, args) => module.verifyCommand(args, output), true)
  ).pipe(
    Command.withDescription(
      "restore the latest checkpoint into a fresh directory and check every part against the manifest's SHA-256"
    )
  )
  const inspect = Command.make(
    "inspect",
    CliOptions.inspectOptions,
    command((module, args) => module.inspectCommand(args, output), true)
  ).pipe(
    Command.withDescription("list the checkpoints in a bucket (number, time, parts, bytes, complete or not)")
  )
  const gc = Command.make("gc", CliOptions.gcOptions, command((module, args) => module.gcCommand(args, output), true))
    .pipe(
      Command.withDescription(
        "delete what no retained checkpoint, commit in flight or reader lease needs (safe while a writer runs)"
      )
    )
  const restore = Command.make(
    "restore",
    CliOptions.restoreOptions,
    command((module, args) => module.restoreCommand(args, output), true)
  ).pipe(
    Command.withDescription(
      "restore the bucket's state (the latest, or at --checkpoint, --lsn or --time) into a fresh directory, holding a reader lease"
    )
  )
  const root = Command.make(programName).pipe(Command.withSubcommands([run, verify, inspect, restore, gc]))
  return Command.run(root, { name: programName, version })
}

/** Swallows @effect/cli's own printing of parse errors: the program prints one line instead. */
const quietErrors = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Console.consoleWith((current) => Console.withConsole(effect, { ...current, error: () => Effect.void }))

/**
 * The name of the first SIGINT or SIGTERM. The listeners go at the first signal (a second one gets
 * Node's default: stop at once) or when the wait is interrupted.
 */
const firstSignal: Effect.Effect<string> = Effect.async<string>((resume) => {
  const remove = () => {
    process.removeListener("SIGINT", onSigint)
    process.removeListener("SIGTERM", onSigterm)
  }
  const received = (name: string) => {
    remove()
    resume(Effect.succeed(name))
  }
  const onSigint = () => received("SIGINT")
  const onSigterm = () => received("SIGTERM")
  process.on("SIGINT", onSigint)
  process.on("SIGTERM", onSigterm)
  return Effect.sync(remove)
})

/** Process warnings become one line each (Node prints them over several). The AWS SDK's notice that
 * its releases after January 2027 need Node 22 is off unless asked for: it is not about this run. */
const oneLineWarnings = (output: Output & { readonly stderrNow: (text: string) => void }) =>
  Effect.sync(() => {
    process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true"
    process.removeAllListeners("warning")
    process.on("warning", (warning) =>
      output.stderrNow(`${programName}: warning: ${oneLine(`${warning.name}: ${warning.message}`)}\n`))
  })

/**
 * The program: parses `argv`, runs the command in a daemon fiber, and returns its exit code. A
 * signal does not interrupt it: the first one becomes the stop request (`run` shuts down and still
 * reports; the read-only commands end with 130), and the exit code is still the command's.
 */
const main = (argv: ReadonlyArray<string>): Effect.Effect<ExitCode> =>
  Effect.gen(function*() {
    const output = makeOutput({
      stdout: (text) => void process.stdout.write(text),
      stderr: (text) => void process.stderr.write(text),
      isTty: process.stderr.isTTY === true
    })
    yield* oneLineWarnings(output)
    const stop = yield* Deferred.make<string>()
    const exitCode = yield* Ref.make<ExitCode>(0)
    const cli = makeCli(stop, exitCode, output)
    const body = quietErrors(cli([...argv.slice(0, 2), ...CliOptions.normalizeArgs(argv.slice(2))])).pipe(
      Effect.catchAll((error) =>
        Effect.flatMap(reportFailure(output, Cause.fail(error)), (code) => Ref.set(exitCode, code))
      ),
      Effect.provide(NodeContext.layer),
      Effect.provide(Logger.replace(Logger.defaultLogger, logger(output.stderrNow))),
      Logger.withMinimumLogLevel(LogLevel.Warning)
    )
    const fiber = yield* Effect.forkDaemon(body)
    const signal = yield* Effect.raceFirst(
      Effect.as(Fiber.await(fiber), Option.none<string>()),
      Effect.map(firstSignal, Option.some)
    )
    if (Option.isSome(signal)) {
      yield* Deferred.succeed(stop, signal.value)
      yield* output.stderr(`${programName}: ${signal.value} received: stopping (a second signal stops at once)\n`)
    }
    const exit = yield* Fiber.await(fiber)
    const code = yield* Ref.get(exitCode)
    return Exit.isFailure(exit) && code === 0 ? 130 : code
  })

// The one place the program is run. Effect.never keeps the process alive while `main` waits only on
// fibers (NodeRuntime.runMain's timer does the same; runMain itself is not used because its signal
// handler interrupts `main`, which would lose the exit code of a `run` stopped by a signal).
Effect.runFork(Effect.race(main(process.argv), Effect.never)).addObserver((exit) => {
  // Exit even when a library left a handle open (an HTTP agent's keep-alive socket): the report
  // is written, and stdout/stderr writes are synchronous for files and pipes on Linux.
  process.exit(Exit.isSuccess(exit) ? exit.value : 1)
})
