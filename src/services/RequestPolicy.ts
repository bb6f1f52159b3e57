/**
 * RequestPolicy: the per-request timeout and the retry schedule of every object-store call, in one
 * place. The S3 workers run every task under it; start-up and shutdown (which run outside the queue:
 * the lock object, reading manifests) use it for their few direct calls.
 *
 * Replaces: OrioleDB's "retry = the worker dies, is restarted at once and replays its task", with no
 * backoff, no error classification and no curl timeout (docs/ORIGINAL.md §3, §9).
 *
 * @since 0.1.0
 */
import { Duration, Effect, Schedule } from "effect"
import { isTransient, ObjectStoreUnavailable } from "../domain/Errors.js"
import type { StorageConfigValue } from "./StorageConfig.js"

/** Exponential backoff with jitter, bounded in attempts and in total time, for transient errors only. */
export const retrySchedule = (config: StorageConfigValue): Schedule.Schedule<unknown, unknown> =>
  Schedule.exponential(Duration.millis(config.retryDelayBaseMs)).pipe(
    Schedule.jittered,
    Schedule.modifyDelay((delay) => Duration.min(delay, Duration.millis(config.retryDelayMaxMs))),
    Schedule.intersect(Schedule.recurs(Math.max(0, config.retryAttemptsMax - 1))),
    Schedule.upTo(Duration.millis(config.retryElapsedMaxMs)),
    Schedule.whileInput(isTransient)
  )

/** One attempt bounded by `requestTimeoutMs`; the timeout interrupts the attempt (aborting its HTTP
 * request) and is itself transient. */
export const withRequestTimeout =
  (config: StorageConfigValue, operation: string, key?: string) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | ObjectStoreUnavailable, R> =>
    effect.pipe(
      Effect.timeoutFail({
        duration: Duration.millis(config.requestTimeoutMs),
        onTimeout: () =>
          new ObjectStoreUnavailable({
            operation,
            ...(key === undefined ? {} : { key }),
            reason: "Timeout",
            detail: `no answer within ${config.requestTimeoutMs} ms`
          })
      })
    )

/** Timeout per attempt + bounded retries of transient errors. */
export const withRequestPolicy =
  (config: StorageConfigValue, operation: string, key?: string) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | ObjectStoreUnavailable, R> =>
    effect.pipe(withRequestTimeout(config, operation, key), Effect.retry(retrySchedule(config)))
