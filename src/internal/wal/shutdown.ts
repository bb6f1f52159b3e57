/**
 * The WAL's shutdown, run once: refuse appends, flush, archive the final partial segment and every
 * pending one, wait for them, all within one deadline, and report what is only local. However it
 * ends, the archive is closed afterwards: no upload starts any more, and the waits still short of
 * their position (archive waits, committers of a flush that will not come) end with ShuttingDown.
 *
 * Replaces: OrioleDB's shutdown of the archiver, which had none: `archive_file_cb` (src/s3/archive.c)
 * waited for each PUT with no timeout, so a stalled bucket held the server's stop forever.
 *
 * @since 0.1.0
 */
import { Clock, Deferred, Duration, Effect, Either, Ref } from "effect"
import type { WalShutdownReport } from "../../services/WalArchiver.js"
import * as Archiver from "./archiver.js"
import * as GroupCommit from "./groupCommit.js"

/** Where the log stands: every record below `archivedThrough` is in the bucket, the rest is local. */
export const report = (log: GroupCommit.Log, archiver: Archiver.Archiver): Effect.Effect<WalShutdownReport> =>
  Effect.gen(function*() {
    const state = yield* Ref.get(log.state)
    const through = yield* Archiver.archivedThrough(archiver)
    return {
      archivedThrough: through,
      durableLsn: state.durableLsn,
      endLsn: state.endLsn,
      localOnly: through < state.endLsn ? { fromLsn: through, toLsn: state.endLsn } : undefined
    }
  })

const runShutdown = (log: GroupCommit.Log, archiver: Archiver.Archiver, deadlineMs: number) =>
  Effect.gen(function*() {
    const deadlineAtMs = (yield* Clock.currentTimeMillis) + Math.max(0, deadlineMs)
    const remaining = Effect.map(Clock.currentTimeMillis, (now) => Duration.millis(Math.max(0, deadlineAtMs - now)))
    yield* GroupCommit.close(log)
    const flushed = yield* GroupCommit.commit(log).pipe(Effect.timeout(yield* remaining), Effect.either)
    if (Either.isLeft(flushed)) {
      yield* Effect.logWarning(`WAL: the final flush did not complete: ${String(flushed.left)}`)
    }
    // Whatever is durable goes to the bucket: the final partial segment and every pending one.
    const target = (yield* Ref.get(log.state)).durableLsn
    yield* Archiver.archivePartial(archiver, target)
    yield* Archiver.awaitArchivedWithin(archiver, target, yield* remaining)
    const result = yield* report(log, archiver)
    if (result.localOnly !== undefined) {
      yield* Effect.logWarning(
        `WAL: at shutdown, positions ${result.localOnly.fromLsn} to ${result.localOnly.toLsn} are not archived`
      )
    }
    yield* Effect.annotateCurrentSpan({ archivedThrough: result.archivedThrough, endLsn: result.endLsn })
    return result
  }).pipe(Effect.withSpan("wal.shutdown", { attributes: { deadlineMs } }))

/** Nothing more is archived: the archive's waits and the committers still waiting end with ShuttingDown. */
export const closeAll = (log: GroupCommit.Log, archiver: Archiver.Archiver): Effect.Effect<void> =>
  Effect.zipRight(Archiver.close(archiver), GroupCommit.failWaiters(log))

/** The shutdown as the service gives it: the first call's deadline counts, and every call gets the
 * first call's report (Effect.cached). */
export const make = (
  log: GroupCommit.Log,
  archiver: Archiver.Archiver
): Effect.Effect<(deadlineMs: number) => Effect.Effect<WalShutdownReport>> =>
  Effect.gen(function*() {
    const deadline = yield* Deferred.make<number>()
    const once = yield* Effect.cached(
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Deferred.await(deadline), (deadlineMs) =>
          restore(runShutdown(log, archiver, deadlineMs)).pipe(
            Effect.catchAllCause(() => report(log, archiver)),
            Effect.ensuring(closeAll(log, archiver))
          ))
      )
    )
    return (deadlineMs: number) => Effect.zipRight(Deferred.succeed(deadline, deadlineMs), once)
  })
