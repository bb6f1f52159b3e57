/**
 * The CLI's progress output, on stderr: on a terminal, one line rewritten in place every second;
 * otherwise a plain line at the first sample and then every few seconds (logs, CI). The line says what a person watching a stuck
 * shutdown needs first: writes per second, queue depth, uploads in flight, the last checkpoint,
 * bytes uploaded, elapsed / duration; and, once the writers stop, which phase the run is in
 * (shutting down, against its deadline; closing; restoring and verifying, with pages checked), so
 * that the line never stands still while the part of the run that matters most goes on.
 *
 * Replaces: watching `top` and attaching gdb to the checkpointer (docs/ORIGINAL.md §7).
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect } from "effect"
import { formatDurationMs, formatSizeBytes } from "../domain/Units.js"

/** What the run is doing. @category models */
export type Phase =
  | { readonly _tag: "Writing" }
  | { readonly _tag: "ShuttingDown"; readonly elapsedMs: number; readonly deadlineMs: number }
  | { readonly _tag: "Closing" }
  | { readonly _tag: "Verifying"; readonly checked: number; readonly total: number }

/** One sample of the run. @category models */
export interface ProgressSample {
  /** Absent: writing. */
  readonly phase?: Phase
  readonly elapsedMs: number
  readonly durationMs: number
  readonly acknowledged: number
  readonly queueDepth: number
  readonly uploadsInFlight: number
  readonly lastCheckpoint: number
  readonly checkpointsCompleted: number
  readonly bytesUploaded: number
  readonly walArchivedThrough: number
}

/** The phase's words at the head of the line (none while writing). Pure. */
export const phaseText = (phase: Phase): string | undefined => {
  switch (phase._tag) {
    case "Writing":
      return undefined
    case "ShuttingDown":
      return `shutting down ${formatDurationMs(phase.elapsedMs)} of ${formatDurationMs(phase.deadlineMs)}`
    case "Closing":
      return "closing the storage tier"
    case "Verifying":
      return phase.total === 0
        ? "verify: restoring the bucket into a fresh directory"
        : `verify: ${phase.checked}/${phase.total} pages checked`
  }
}

/** The line for a sample; `writesPerSecond` is measured between two samples. Pure. */
export const formatLine = (sample: ProgressSample, writesPerSecond: number): string => {
  const phase = phaseText(sample.phase ?? { _tag: "Writing" })
  if (phase !== undefined) {
    return [
      phase,
      `${sample.acknowledged} acked`,
      ...(sample.phase?._tag === "Verifying"
        ? []
        : [`queue ${sample.queueDepth}`, `uploading ${sample.uploadsInFlight}`]),
      `checkpoint ${
        sample.lastCheckpoint === 0 ? "none" : `#${sample.lastCheckpoint}`
      } (${sample.checkpointsCompleted} done)`,
      `uploaded ${formatSizeBytes(sample.bytesUploaded)}`
    ].join(" | ")
  }
  return [
    `${Math.round(writesPerSecond)} writes/s`,
    `${sample.acknowledged} acked`,
    `queue ${sample.queueDepth}`,
    `uploading ${sample.uploadsInFlight}`,
    `checkpoint ${
      sample.lastCheckpoint === 0 ? "none" : `#${sample.lastCheckpoint}`
    } (${sample.checkpointsCompleted} done)`,
    `uploaded ${formatSizeBytes(sample.bytesUploaded)}`,
    `${formatDurationMs(Math.min(sample.elapsedMs, sample.durationMs))} / ${formatDurationMs(sample.durationMs)}`
  ].join(" | ")
}

/** Writes per second between two samples. Pure. */
export const rate = (
  previous: { readonly acknowledged: number; readonly atMs: number },
  current: { readonly acknowledged: number; readonly atMs: number }
): number => {
  const elapsedMs = current.atMs - previous.atMs
  return elapsedMs <= 0 ? 0 : ((current.acknowledged - previous.acknowledged) * 1000) / elapsedMs
}

/** Options of the progress reporter. */
export interface ProgressOptions {
  readonly sample: Effect.Effect<ProgressSample>
  /** A terminal: one line rewritten in place. */
  readonly isTty: boolean
  readonly write: (text: string) => Effect.Effect<void>
  /** On a terminal: shows the line as the output's status line (logs then go above it, never over
   * it); and ends it. Without them, the line is written with `write`. */
  readonly status?: (line: string) => Effect.Effect<void>
  readonly endStatus?: Effect.Effect<void>
  /** Between samples (default 1 s). */
  readonly sampleIntervalMs?: number
  /** Between plain lines when not a terminal (default 5 s). */
  readonly plainIntervalMs?: number
}

/**
 * Samples forever; fork it and interrupt it to stop. `finish` ends a terminal line so that what
 * follows starts on its own line.
 */
export const make = (options: ProgressOptions) => {
  const sampleIntervalMs = options.sampleIntervalMs ?? 1_000
  const plainIntervalMs = options.plainIntervalMs ?? 5_000
  let lineOpen = false
  const loop = Effect.gen(function*() {
    let previous = { acknowledged: 0, atMs: yield* Clock.currentTimeMillis }
    // The first sample always prints, so that a reader of the log sees the run has started.
    let lastPlainAtMs = Number.NEGATIVE_INFINITY
    // A new phase prints at once, too: a log shows when the shutdown and the verify began.
    let lastPhase: Phase["_tag"] = "Writing"
    while (true) {
      yield* Effect.sleep(Duration.millis(sampleIntervalMs))
      const sample = yield* options.sample
      const nowMs = yield* Clock.currentTimeMillis
      const current = { acknowledged: sample.acknowledged, atMs: nowMs }
      const line = formatLine(sample, rate(previous, current))
      previous = current
      if (options.isTty) {
        lineOpen = true
        yield* options.status === undefined ? options.write(`\r${line}\x1b[K`) : options.status(line)
      } else if (
        nowMs - lastPlainAtMs >= plainIntervalMs - sampleIntervalMs / 2 ||
        (sample.phase?._tag ?? "Writing") !== lastPhase
      ) {
        lastPlainAtMs = nowMs
        lastPhase = sample.phase?._tag ?? "Writing"
        yield* options.write(`${line}\n`)
      }
    }
  })
  const finish = Effect.suspend(() => {
    if (!lineOpen) return Effect.void
    lineOpen = false
    return options.endStatus ?? options.write("\n")
  })
  return { loop, finish }
}
