/**
 * The CLI's output conventions, shared by src/program.ts and the command bodies: where text goes,
 * how a failure becomes ONE line (`effect-s3-tier: <message>`), and the exit codes. Light on
 * purpose: the program imports it before deciding which (heavier) command modules to load.
 *
 * @since 0.1.0
 */
import type { Effect } from "effect"

export const programName = "effect-s3-tier"

/** Exit codes: 0 ok, 1 the run (or verify) failed its checks, 2 bad input or refused start-up,
 * 130 stopped by a signal outside `run`. */
export type ExitCode = 0 | 1 | 2 | 130

/** Where output goes (the program gives stdout/stderr; tests give arrays). */
export interface Output {
  readonly stdout: (text: string) => Effect.Effect<void>
  readonly stderr: (text: string) => Effect.Effect<void>
  /** Whether stderr is a terminal (one progress line rewritten in place). */
  readonly isTty: boolean
}

/** Bad input found by the program itself (exit 2). */
export class UsageError {
  readonly _tag = "UsageError"
  constructor(readonly message: string) {}
}

/** Folds any text to one line, without ANSI colours (messages of nested causes may hold newlines). */
export const oneLine = (text: string): string => text.replace(/\x1b\[[0-9;]*m/g, "").replace(/\s+/g, " ").trim()

/** The one-line form of an error. */
export const errorLine = (output: Output, message: string): Effect.Effect<void> => output.stderr(`${programName}: ${oneLine(message)}\n`)

/** The readable message of any failure (typed errors have a `message`; wrappers a `cause`). */
export const messageOf = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "_tag" in error && error._tag === "StartFailed" && "cause" in error) return messageOf(error.cause)
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string" && error.message !== "") return error.message
  if (typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string") return error._tag
  return String(error)
}
