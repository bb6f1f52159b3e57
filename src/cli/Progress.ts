/**
 * The CLI's progress output, on stderr: on a terminal, one line rewritten in place every second;
 * otherwise a plain line at the first sample and then every few seconds (logs, CI). The line says what a person watching a stuck
 * shutdown needs first: writes per second, queue depth, uploads in flight, the last checkpoint,
 * bytes uploaded, elapsed / duration.
 *
 * Replaces: watching `top` and attaching gdb to the checkpointer (orioledb-s3.md §7).
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect } from "effect"
import { formatDurationMs, formatSizeBytes } from "../domain/Units.js"

/** One sample of the run. @category models */
export interface ProgressSample {
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

/** The line for a sample; `writesPerSecond` is measured between two samples. Pure. */
export const formatLine = (sample: ProgressSample, writesPerSecond: number): string =>
  [
    `${Math.round(writesPerSecond)} writes/s`,
    `${sample.acknowledged} acked`,
    `queue ${sample.queueDepth}`,
    `uploading ${sample.uploadsInFlight}`,
    `checkpoint ${sample.lastCheckpoint === 0 ? "none" : `#${sample.lastCheckpoint}`} (${sample.checkpointsCompleted} done)`,
    `uploaded ${formatSizeBytes(sample.bytesUploaded)}`,
    `${formatDurationMs(Math.min(sample.elapsedMs, sample.durationMs))} / ${formatDurationMs(sample.durationMs)}`
  ].join(" | ")

/** Writes per second between two samples. Pure. */
export const rate = (previous: { readonly acknowledged: number; readonly atMs: number }, current: { readonly acknowledged: number; readonly atMs: number }): number => {
  const elapsedMs = current.atMs - previous.atMs
  return elapsedMs <= 0 ? 0 : ((current.acknowledged - previous.acknowledged) * 1000) / elapsedMs
}

/** Options of the progress reporter. */
export interface ProgressOptions {
  readonly sample: Effect.Effect<ProgressSample>
  /** A terminal: one line rewritten in place. */
  readonly isTty: boolean
  readonly write: (text: string) => Effect.Effect<void>
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
  const loop = Effect.gen(function* () {
    let previous = { acknowledged: 0, atMs: yield* Clock.currentTimeMillis }
    // The first sample always prints, so that a reader of the log sees the run has started.
    let lastPlainAtMs = Number.NEGATIVE_INFINITY
    while (true) {
      yield* Effect.sleep(Duration.millis(sampleIntervalMs))
      const sample = yield* options.sample
      const nowMs = yield* Clock.currentTimeMillis
      const current = { acknowledged: sample.acknowledged, atMs: nowMs }
      const line = formatLine(sample, rate(previous, current))
      previous = current
      if (options.isTty) {
        lineOpen = true
        yield* options.write(`\r${line}\x1b[K`)
      } else if (nowMs - lastPlainAtMs >= plainIntervalMs - sampleIntervalMs / 2) {
        lastPlainAtMs = nowMs
        yield* options.write(`${line}\n`)
      }
    }
  })
  const finish = Effect.suspend(() => {
    if (!lineOpen) return Effect.void
    lineOpen = false
    return options.write("\n")
  })
  return { loop, finish }
}
