/**
 * The CLI's option definitions, one record per command; the commands' argument types are derived
 * from them (`Args<typeof runOptions>`), never restated. Light on purpose: src/program.ts parses
 * with these before it loads the command bodies, so bad input never pays for the storage tier.
 *
 * Replaces: the arguments of OrioleDB's test scripts and of orioledb_s3_loader.py (docs/ORIGINAL.md §8).
 *
 * @since 0.1.0
 */
import type * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import { Effect, Either, Option } from "effect"
import { conditionalCreateDialects } from "../domain/S3Compat.js"
import { parseDurationMs, parseDurationOrZeroMs, parseSizeBytes } from "../domain/Units.js"
import * as Faults from "../workload/Faults.js"

/** The parsed arguments of a command whose options are `A`. */
export type Args<A extends Command.Command.Config> = Command.Command.ParseConfig<A>

const invalid = (message: string) => ValidationError.invalidValue(HelpDoc.p(message))

// Durations and sizes are parsed by domain/Units.ts, not Duration.decode: Effect's reads "5 seconds" but not the
// "5s"/"500ms" this CLI documents, and has no size units; @effect/cli has no duration or size option.
const durationOption = (name: string, fallback: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("duration"),
    Options.withDefault(fallback),
    Options.withDescription(`${description} (a duration: 500ms, 8s, 2m, 1000s; default ${fallback})`),
    Options.mapEffect((text) =>
      Either.match(parseDurationMs(text), {
        onLeft: (problem) => Effect.fail(invalid(`--${name}: ${problem}`)),
        onRight: Effect.succeed
      })
    )
  )

/** A duration that may be 0, optional: absent means the configuration's (or the bucket's) value. */
const optionalDurationOption = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("duration"),
    Options.optional,
    Options.withDescription(`${description} (a duration: 0, 90s, 10m, 24h)`),
    Options.mapEffect(Option.match({
      onNone: () => Effect.succeed(Option.none<number>()),
      onSome: (text) =>
        Either.match(parseDurationOrZeroMs(text), {
          onLeft: (problem) => Effect.fail(invalid(`--${name}: ${problem}`)),
          onRight: (value) => Effect.succeed(Option.some(value))
        })
    }))
  )

const optionalCountOption = (name: string, max: number, description: string) =>
  Options.integer(name).pipe(
    Options.withPseudoName("n"),
    Options.optional,
    Options.withDescription(`${description} (1 to ${max})`),
    Options.mapEffect(Option.match({
      onNone: () => Effect.succeed(Option.none<number>()),
      onSome: (value) =>
        value >= 1 && value <= max
          ? Effect.succeed(Option.some(value))
          : Effect.fail(invalid(`--${name}: ${value} is out of range: write a whole number from 1 to ${max}`))
    }))
  )

/** Retention and garbage collection (StorageConfig's retainCheckpointsMin, retainForMs, gc*). */
export const retentionOptions = {
  retainCheckpoints: optionalCountOption(
    "retain-checkpoints",
    1_000_000,
    "keep at least this many of the latest checkpoints (default 2)"
  ),
  retainFor: optionalDurationOption(
    "retain-for",
    "keep every checkpoint of this point-in-time window, and the newest before it; 0 = the latest ones only (default 24h)"
  )
}

const sizeOption = (name: string, fallback: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("size"),
    Options.withDefault(fallback),
    Options.withDescription(`${description} (a size: 64MiB, 1GiB or bytes; default ${fallback})`),
    Options.mapEffect((text) =>
      Either.match(parseSizeBytes(text), {
        onLeft: (problem) => Effect.fail(invalid(`--${name}: ${problem}`)),
        onRight: Effect.succeed
      })
    )
  )

const countOption = (name: string, fallback: number, max: number, description: string) =>
  Options.integer(name).pipe(
    Options.withPseudoName("n"),
    Options.withDefault(fallback),
    Options.withDescription(`${description} (1 to ${max}; default ${fallback})`),
    Options.mapEffect((value) =>
      value >= 1 && value <= max
        ? Effect.succeed(value)
        : Effect.fail(invalid(`--${name}: ${value} is out of range: write a whole number from 1 to ${max}`))
    )
  )

/** An optional whole number of at least `min`; below it, "--name: v is not <what> (min or more)". */
const optionalIntegerFrom = (name: string, pseudoName: string, min: number, what: string, description: string) =>
  Options.integer(name).pipe(
    Options.withPseudoName(pseudoName),
    Options.optional,
    Options.withDescription(description),
    Options.mapEffect((value) =>
      Option.isSome(value) && value.value < min
        ? Effect.fail(invalid(`--${name}: ${value.value} is not ${what} (${min} or more)`))
        : Effect.succeed(value)
    )
  )

/** The bucket: a directory (the embedded filesystem store) or an S3 bucket. Same on every command. */
export const storeOptions = {
  storeDir: Options.text("store-dir").pipe(
    Options.withPseudoName("directory"),
    Options.optional,
    Options.withDescription(
      "the filesystem object store's root (when no --endpoint/--bucket is given); `run` defaults it to beside the data directory"
    )
  ),
  endpoint: Options.text("endpoint").pipe(
    Options.withPseudoName("url"),
    Options.optional,
    Options.withDescription(
      "an S3-compatible endpoint URL (e.g. http://127.0.0.1:9000); credentials from the standard AWS chain"
    )
  ),
  bucket: Options.text("bucket").pipe(
    Options.withPseudoName("name"),
    Options.optional,
    Options.withDescription("the S3 bucket (S3 is used when --bucket or --endpoint is given)")
  ),
  prefix: Options.text("prefix").pipe(
    Options.withPseudoName("prefix"),
    Options.withDefault(""),
    Options.withDescription("key prefix inside the bucket (default none)")
  ),
  region: Options.text("region").pipe(
    Options.withPseudoName("region"),
    Options.withDefault("us-east-1"),
    Options.withDescription("the S3 region (default us-east-1)")
  ),
  pathStyle: Options.boolean("path-style").pipe(
    Options.withDescription("path-style S3 addressing (needed by most local S3 servers)")
  ),
  conditionalCreate: Options.choice("conditional-create", conditionalCreateDialects).pipe(
    Options.withDefault("if-none-match" as const),
    Options.withDescription(
      "how the S3 store asks for create-if-absent: if-none-match (AWS, R2, MinIO, Ceph RGW), gcs-generation-match (GCS), tigris-consistent (Tigris)"
    )
  ),
  skipConformanceCheck: Options.boolean("skip-conformance-check").pipe(
    Options.withDescription(
      "skip the start-up check that the S3 store lets exactly one of two racing create-if-absent PUTs win (only for a store known to honour it)"
    )
  )
}

const json = Options.boolean("json").pipe(
  Options.withDescription("print one JSON object on stdout at the end (nothing else on stdout)")
)
const verbose = Options.boolean("verbose").pipe(
  Options.withDescription("log the storage tier's info messages too (on stderr)")
)

export const runOptions = {
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
  gcInterval: optionalDurationOption(
    "gc-interval",
    "how often the writer runs a garbage-collection pass; 0 = never (default 10m)"
  ),
  gcMinAge: optionalDurationOption("gc-min-age", "objects younger than this are never collected (default 1h)"),
  dir: Options.text("dir").pipe(
    Options.withPseudoName("directory"),
    Options.optional,
    Options.withDescription("the local data directory (a fresh temporary one when omitted)")
  ),
  takeOver: Options.boolean("take-over").pipe(
    Options.withDescription(
      "take the bucket over from an instance that holds its lock and is known to be dead (raises the fencing epoch)"
    )
  ),
  noVerify: Options.boolean("no-verify").pipe(Options.withDescription("skip the restore-and-verify step")),
  keep: Options.boolean("keep").pipe(
    Options.withDescription("keep the temporary directories this run created (they are removed by default)")
  ),
  verbose,
  fault: Options.text("fault").pipe(
    Options.withPseudoName("fault"),
    Options.repeated,
    Options.withDescription(`inject a fault into the bucket (repeatable): ${Faults.usage}`),
    Options.mapEffect((texts) =>
      Either.match(Faults.parseFaults(texts), {
        onLeft: (problem) => Effect.fail(invalid(problem)),
        onRight: Effect.succeed
      })
    )
  ),
  json
}

export const verifyOptions = {
  ...storeOptions,
  dir: Options.text("dir").pipe(
    Options.withPseudoName("directory"),
    Options.optional,
    Options.withDescription(
      "a fresh (missing or empty) directory to restore into (a temporary one, removed afterwards, when omitted)"
    )
  ),
  concurrency: countOption("concurrency", 8, 256, "parts fetched at a time"),
  verbose,
  json
}

export const inspectOptions = { ...storeOptions, verbose, json }

export const gcOptions = {
  ...storeOptions,
  dryRun: Options.boolean("dry-run").pipe(
    Options.withDescription("delete nothing, write nothing: print what a pass would do")
  ),
  minAge: optionalDurationOption("min-age", "objects younger than this stay (default 1h)"),
  ...retentionOptions,
  verbose,
  json
}

/** An ISO-8601 time with its zone (2026-12-06T10:00:00Z, …+01:00), as ms since the epoch. Not
 * Options.date: it takes a time without a zone, which would then depend on the machine's zone. */
const parseIsoTimeMs = (text: string): Either.Either<number, string> => {
  const iso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/
  const ms = iso.test(text) ? Date.parse(text) : Number.NaN
  return Number.isFinite(ms)
    ? Either.right(ms)
    : Either.left(`--time: ${JSON.stringify(text)} is not an ISO-8601 time with a zone (e.g. 2026-12-06T10:00:00Z)`)
}

export const restoreOptions = {
  ...storeOptions,
  dir: Options.text("dir").pipe(
    Options.withPseudoName("directory"),
    Options.withDescription("a fresh (missing or empty) directory to restore into")
  ),
  checkpoint: optionalIntegerFrom(
    "checkpoint",
    "n",
    1,
    "a checkpoint number",
    "restore this checkpoint (no WAL after it)"
  ),
  lsn: optionalIntegerFrom("lsn", "lsn", 0, "a WAL position", "restore every record below this WAL position"),
  time: Options.text("time").pipe(
    Options.withPseudoName("ISO-8601"),
    Options.optional,
    Options.withDescription(
      "restore the records appended at or before this time (to the WAL's time marks, 1 s apart by default)"
    ),
    Options.mapEffect((value) =>
      Option.match(value, {
        onNone: () => Effect.succeed(Option.none<number>()),
        onSome: (text) =>
          Either.match(parseIsoTimeMs(text), {
            onLeft: (problem) => Effect.fail(invalid(problem)),
            onRight: (ms) => Effect.succeed(Option.some(ms))
          })
      })
    )
  ),
  concurrency: countOption("concurrency", 8, 256, "parts fetched at a time"),
  verbose,
  json
}

/** The parsed arguments of each command. */
export type StoreArgs = Args<typeof storeOptions>
export type RunArgs = Args<typeof runOptions>
export type VerifyArgs = Args<typeof verifyOptions>
export type InspectArgs = Args<typeof inspectOptions>
export type GcArgs = Args<typeof gcOptions>
export type RestoreArgs = Args<typeof restoreOptions>

const commandNames = ["run", "verify", "inspect", "restore", "gc"]
const builtInFlags = ["--help", "-h", "--version", "--wizard", "--completions"]

/**
 * The arguments as @effect/cli reads them. With no command, `run` is meant (`npm start -- --duration
 * 5s` runs the workload). `--log-level` (one of @effect/cli's built-in options, shown in every
 * command's help) is read only right after the command name: it is moved there from wherever it
 * was written, so that it works in any position. Pure.
 */
export const normalizeArgs = (args: ReadonlyArray<string>): ReadonlyArray<string> => {
  const logLevel: Array<string> = []
  const rest: Array<string> = []
  for (let index = 0; index < args.length; index++) {
    const arg = args[index] ?? ""
    if (arg.startsWith("--log-level=")) logLevel.push(arg)
    else if (arg === "--log-level" && index + 1 < args.length) logLevel.push(arg, args[++index] ?? "")
    else rest.push(arg)
  }
  const first = rest[0]
  const withCommand = first === undefined || (first.startsWith("-") && !builtInFlags.includes(first))
    ? ["run", ...rest]
    : rest
  const command = withCommand[0] ?? "run"
  return commandNames.includes(command)
    ? [command, ...logLevel, ...withCommand.slice(1)]
    : [...withCommand, ...logLevel]
}
