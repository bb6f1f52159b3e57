/**
 * Evictor: keeps the local bytes of loaded parts within `localBytesMax`. A scoped fiber checks the
 * budget every `evictionIntervalMs`; when it is exceeded it runs one clock sweep of the part table
 * (`PartTable.evict`): a part is evicted (its file unlinked) only if it is Loaded, unleased, has
 * usage 0, is clean and is not being written; every other loaded part it passes has its usage
 * halved, and a dirty one gets its write-back scheduled so that a later sweep can evict it once its
 * upload made it clean. A dirty part is never evicted. `runNow` runs a sweep on demand; `stop`
 * (shutdown) and closing the layer's scope end the fiber. The sweep never takes a lease, so it
 * never waits on the queue holding one.
 *
 * Replaces: OrioleDB's `s3_headers_try_eviction_cycle` run by the bgwriter when
 * `numberOfLoadedParts ≥ s3_desired_size` (src/s3/headers.c:1231-1335, docs/ORIGINAL.md §4), which
 * wrote zeros over evicted parts (freeing nothing on most file systems) and walked every file.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Fiber, Layer, Option, Ref, Schedule } from "effect"
import type { Scope } from "effect"
import type { LocalIoError } from "../domain/Errors.js"
import { forkStoppableDaemon } from "../internal/deadline.js"
import { type EvictionReport, PartTable } from "./PartTable.js"
import { daemonStopBoundMs, StorageConfig } from "./StorageConfig.js"

/** Counters of the evictor. @category models */
export interface EvictorStats {
  readonly sweeps: number
  readonly failedSweeps: number
  readonly evictedParts: number
  readonly evictedBytes: number
  readonly scheduledUploads: number
  readonly lastReport: EvictionReport | undefined
}

/** The operations of the evictor. @category models */
export interface EvictorService {
  /** One sweep now (whatever the budget says; a sweep under budget does nothing). */
  readonly runNow: Effect.Effect<EvictionReport, LocalIoError>
  /** Stops the periodic fiber (shutdown does this first): interrupts it and waits for its end, which
   * an eviction reaches only once its unlink has landed, for `daemonStopBoundMs` at most.
   * Idempotent; `runNow` still works. */
  readonly stop: Effect.Effect<void>
  /** Whether the periodic fiber is still running. */
  readonly alive: Effect.Effect<boolean>
  readonly stats: Effect.Effect<EvictorStats>
}

/** The evictor. @category tags */
export class Evictor extends Context.Tag("effect-s3-tier/Evictor")<Evictor, EvictorService>() {}

/** Starts the evictor's fiber in the current scope. @category constructors */
export const make: Effect.Effect<EvictorService, never, PartTable | StorageConfig | Scope.Scope> = Effect.gen(
  function*() {
    const config = yield* StorageConfig
    const parts = yield* PartTable
    const statsRef = yield* Ref.make<EvictorStats>({
      sweeps: 0,
      failedSweeps: 0,
      evictedParts: 0,
      evictedBytes: 0,
      scheduledUploads: 0,
      lastReport: undefined
    })

    const runNow: Effect.Effect<EvictionReport, LocalIoError> = parts.evict.pipe(
      Effect.tap((report) =>
        Ref.update(statsRef, (stats) => ({
          ...stats,
          sweeps: stats.sweeps + 1,
          evictedParts: stats.evictedParts + report.evictedParts,
          evictedBytes: stats.evictedBytes + report.evictedBytes,
          scheduledUploads: stats.scheduledUploads + report.scheduledUploads,
          lastReport: report
        }))
      ),
      Effect.tapError(() =>
        Ref.update(statsRef, (stats) => ({ ...stats, sweeps: stats.sweeps + 1, failedSweeps: stats.failedSweeps + 1 }))
      )
    )

    const tick = Effect.gen(function*() {
      const stats = yield* parts.stats
      if (stats.loadedBytes <= config.localBytesMax) return
      yield* runNow.pipe(Effect.catchAll((error) => Effect.logWarning(`eviction sweep failed: ${error.message}`)))
    })

    // A daemon whose stop waits for its end for `daemonStopBoundMs` at most: an eviction's unlink runs
    // to its end (PartTable), and one a stalled disk holds must not hold the shutdown or the close
    // (the directory guard keeps the directory locked until it lands).
    const { fiber, stop } = yield* forkStoppableDaemon(
      Effect.repeat(tick, Schedule.spaced(Duration.millis(config.evictionIntervalMs))).pipe(
        Effect.delay(Duration.millis(config.evictionIntervalMs))
      ),
      daemonStopBoundMs(config)
    )

    return Evictor.of({
      runNow,
      stop,
      alive: Effect.map(Fiber.poll(fiber), Option.isNone),
      stats: Ref.get(statsRef)
    })
  }
)

/** The evictor as a layer: its fiber is interrupted when the layer's scope closes. @category layers */
export const layer: Layer.Layer<Evictor, never, PartTable | StorageConfig> = Layer.scoped(Evictor, make)
