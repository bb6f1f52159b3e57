/**
 * The CLI's output conventions, shared by src/program.ts and the command bodies: where text goes,
 * how a failure becomes ONE line (`effect-s3-tier: <message>`), the exit codes, the one status line
 * a terminal shows (progress), and the logger, which never writes over that line. Light on
 * purpose: the program imports it before deciding which (heavier) command modules to load.
 *
 * @since 0.1.0
 */
import { Cause, Data, Effect, HashMap, Logger } from "effect"
import * as Errors from "../domain/Errors.js"

export const programName = "effect-s3-tier"

/** Exit codes: 0 ok, 1 the run (or verify) failed its checks, 2 bad input or refused start-up,
 * 130 stopped by a signal outside `run`. */
export type ExitCode = 0 | 1 | 2 | 130

/** Where output goes (the program gives stdout/stderr; tests give arrays). */
export interface Output {
  readonly stdout: (text: string) => Effect.Effect<void>
  /** Text for stderr (whole lines); on a terminal it goes above the status line, which stays. */
  readonly stderr: (text: string) => Effect.Effect<void>
  /** Whether stderr is a terminal (one progress line rewritten in place). */
  readonly isTty: boolean
  /** Shows `line` as the status line (a terminal only; without one, callers print whole lines). */
  readonly status?: (line: string) => Effect.Effect<void>
  /** Ends the status line: its last text stays, and what follows starts on a line of its own. */
  readonly endStatus?: Effect.Effect<void>
}

/** Bad input found by the program itself (exit 2). */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/** Folds any text to one line, without ANSI colours (messages of nested causes may hold newlines). */
export const oneLine = (text: string): string => text.replace(/\x1b\[[0-9;]*m/g, "").replace(/\s+/g, " ").trim()

/** The one-line form of an error. */
export const errorLine = (output: Output, message: string): Effect.Effect<void> =>
  output.stderr(`${programName}: ${oneLine(message)}\n`)

/** The readable message of any failure (a wrapper such as StartFailed gives its cause's). */
export const messageOf = Errors.messageOf

const clearLine = "\r\x1b[K"

/**
 * The process's output over two writers. On a terminal it keeps one status line at the bottom:
 * any other stderr text first clears it, is written, and the line is drawn again below it.
 * The state is this value's own (made in `main`), not the module's.
 */
export const makeOutput = (writers: {
  readonly stdout: (text: string) => void
  readonly stderr: (text: string) => void
  readonly isTty: boolean
}): Output & { readonly stderrNow: (text: string) => void } => {
  let statusLine: string | undefined
  const writeStderr = (text: string) => {
    if (statusLine === undefined || !writers.isTty) return writers.stderr(text)
    writers.stderr(`${clearLine}${text}${text.endsWith("\n") ? "" : "\n"}${statusLine}\x1b[K`)
  }
  return {
    stderrNow: writeStderr,
    stdout: (text) => Effect.sync(() => writers.stdout(text)),
    stderr: (text) => Effect.sync(() => writeStderr(text)),
    isTty: writers.isTty,
    status: (line) =>
      Effect.sync(() => {
        if (!writers.isTty) return
        statusLine = line
        writers.stderr(`\r${line}\x1b[K`)
      }),
    endStatus: Effect.sync(() => {
      if (statusLine === undefined) return
      statusLine = undefined
      writers.stderr("\n")
    })
  }
}

/** One log entry as text: `<program>: <time> <LEVEL> <message> key=value…`, further lines of a
 * multi-line message indented under it. Effect's `logfmtLogger` quotes the whole message into one
 * line (the shutdown's wait list becomes unreadable), hence this formatter. */
export const formatLog = (entry: {
  readonly annotations: HashMap.HashMap<string, unknown>
  readonly cause: Cause.Cause<unknown>
  readonly date: Date
  readonly logLevel: { readonly label: string }
  readonly message: unknown
}): string => {
  const text = (Array.isArray(entry.message) ? entry.message : [entry.message]).map((
    part
  ) => (typeof part === "string" ? part : JSON.stringify(part))).join(" ")
  const annotationText = HashMap.toEntries(entry.annotations).map(([key, value]) =>
    ` ${key}=${typeof value === "string" ? value : JSON.stringify(value)}`
  ).join("")
  const causeText = Cause.isEmpty(entry.cause)
    ? ""
    : ` cause=${oneLine(Cause.pretty(entry.cause).split("\n")[0] ?? "")}`
  const [first = "", ...rest] = text.split("\n")
  return [
    `${programName}: ${entry.date.toISOString()} ${entry.logLevel.label} ${first}${annotationText}${causeText}`,
    ...rest.map((line) => `    ${line.trim()}`)
  ].join("\n") + "\n"
}

/** Logs go to stderr (above the status line, through `makeOutput`'s `stderrNow`), so that `--json` stdout stays clean. */
export const logger = (stderrNow: (text: string) => void): Logger.Logger<unknown, void> =>
  Logger.make((entry) => stderrNow(formatLog(entry)))
