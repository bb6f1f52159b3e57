/**
 * The WAL's local log with group commit. `append` frames a record (Wal.planAppend) and keeps it in
 * memory; `commitThrough` waits until an fsync covers its position. One flusher fiber writes and
 * fsyncs at a time; a flush covers everything appended before it started, and the committers that
 * arrive while it runs are served by the next one, so many concurrent committers share one fsync. A
 * failed flush fails its committers and keeps its frames for the next flush (rewriting them is
 * idempotent). More than two segments of unflushed frames make an appender wait for a flush first,
 * so memory stays bounded.
 *
 * Replaces: PostgreSQL's XLogFlush group commit as OrioleDB used it, and the busy-wait WAL switch
 * after a checkpoint (`o_after_checkpoint_cleanup_hook`, a 100 ms `pg_usleep` with no interrupt
 * check, docs/ORIGINAL.md §5): here every wait is on a Deferred, interruptible.
 *
 * @since 0.1.0
 */
import { Clock, Deferred, Effect, Exit, Fiber, List, Queue, Ref, type Scope } from "effect"
import { type LocalIoError, ShuttingDown, WalRecordTooLarge } from "../../domain/Errors.js"
import { type Lsn, lsn as toLsn } from "../../domain/Ids.js"
import * as Wal from "../../domain/Wal.js"
import type { LocalDiskService } from "../../services/LocalDisk.js"
import type { StorageConfigValue } from "../../services/StorageConfig.js"
import type { WaitRegistryService } from "../../services/WaitRegistry.js"
import * as Counters from "./counters.js"
import { durableMarkPath, localSegmentPath } from "./segments.js"

type CommitError = LocalIoError | ShuttingDown
type FlushDone = Deferred.Deferred<void, CommitError>

/** The log's end, what waits for a flush, and who is being served. */
export interface LogState {
  readonly endLsn: number
  /** Frames appended and not yet written, newest first (a prepend is O(1)). */
  readonly pendingNewestFirst: List.List<Wal.FrameWrite>
  readonly pendingBytes: number
  readonly durableLsn: number
  /** The flush running now and what it covers. */
  readonly running: { readonly endLsn: number; readonly done: FlushDone } | undefined
  /** The flush that will run next: every committer not covered by `running` waits on it. */
  readonly next: FlushDone
  readonly closing: boolean
  /** The log's scope is closing: no flush starts any more. */
  readonly stopped: boolean
  /** Records were appended since the last time mark. */
  readonly unmarked: boolean
  /** When the last time mark was written (or the log opened). */
  readonly lastMarkMs: number
}

/** The log: its services, its state, and what to tell once a flush moved the durable end. */
export interface Log {
  readonly config: StorageConfigValue
  readonly disk: LocalDiskService
  readonly waits: WaitRegistryService
  readonly counters: Counters.Counters
  readonly state: Ref.Ref<LogState>
  readonly flushWake: Queue.Queue<void>
  readonly onDurable: (previousDurable: number, durable: number) => Effect.Effect<void>
}

const prependFrames = (
  newestFirst: List.List<Wal.FrameWrite>,
  frames: ReadonlyArray<Wal.FrameWrite>
): List.List<Wal.FrameWrite> => {
  let list = newestFirst
  for (const frame of frames) list = List.prepend(list, frame)
  return list
}

const bytesOf = (frames: ReadonlyArray<Wal.FrameWrite>): number =>
  frames.reduce((sum, frame) => sum + frame.bytes.length, 0)

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  if (parts.length === 1 && parts[0] !== undefined) return parts[0]
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0))
  let offset = 0
  for (const part of parts) {
    joined.set(part, offset)
    offset += part.length
  }
  return joined
}

/** Contiguous runs of frames within one segment: [segment, offset in it, bytes]. */
export const runsOf = (
  frames: Iterable<Wal.FrameWrite>,
  segmentBytes: number
): Array<readonly [number, number, Uint8Array]> => {
  const runs: Array<readonly [number, number, Uint8Array]> = []
  let current: { segment: number; start: number; end: number; parts: Array<Uint8Array> } | undefined
  const close = () => {
    if (current !== undefined) runs.push([current.segment, current.start % segmentBytes, concat(current.parts)])
  }
  for (const frame of frames) {
    const segment = Wal.segmentOf(frame.lsn, segmentBytes)
    if (current !== undefined && current.segment === segment && current.end === frame.lsn) {
      current.parts.push(frame.bytes)
      current.end += frame.bytes.length
    } else {
      close()
      current = { segment, start: frame.lsn, end: frame.lsn + frame.bytes.length, parts: [frame.bytes] }
    }
  }
  close()
  return runs
}

/** Opens the log at `endLsn` (durable through it) and starts its flusher in the scope; closing the
 * scope fails the committers waiting for the next flush with ShuttingDown. */
export const make = (
  services: Omit<Log, "state" | "flushWake">,
  endLsn: number
): Effect.Effect<Log, never, Scope.Scope> =>
  Effect.gen(function*() {
    const state = yield* Ref.make<LogState>({
      endLsn,
      pendingNewestFirst: List.empty(),
      pendingBytes: 0,
      durableLsn: endLsn,
      running: undefined,
      next: yield* Deferred.make<void, CommitError>(),
      closing: false,
      stopped: false,
      unmarked: false,
      lastMarkMs: yield* Clock.currentTimeMillis
    })
    const log: Log = { ...services, state, flushWake: yield* Queue.sliding<void>(1) }
    yield* Effect.acquireRelease(
      // Interruptible, although forked in the acquire's uninterruptible region.
      Effect.forkDaemon(
        Effect.interruptible(Effect.forever(Effect.zipRight(Queue.take(log.flushWake), flushOnce(log))))
      ),
      (flusher) => stopFlusher(log, flusher)
    )
    yield* Effect.addFinalizer(() =>
      Effect.flatMap(
        Ref.get(state),
        (current) => Deferred.fail(current.next, new ShuttingDown({ operation: "commit" }))
      )
    )
    return log
  })

/** Stops the flusher when the log's scope closes: no flush starts any more, and one that runs is
 * not waited for. A flush is uninterruptible, and one whose write the disk holds would hold the
 * shutdown past its deadline; it ends when its write does (the directory guard keeps the directory
 * locked until then), and its committers have been told ShuttingDown. */
const stopFlusher = (log: Log, flusher: Fiber.RuntimeFiber<never>) =>
  Effect.flatMap(
    Ref.modify(log.state, (state) => [state.running !== undefined, { ...state, stopped: true }] as const),
    (flushing) => (flushing ? Fiber.interruptFork(flusher) : Fiber.interrupt(flusher))
  )

const wakeFlusher = (log: Log) => Queue.offer(log.flushWake, undefined)

const writeFrames = (log: Log, frames: ReadonlyArray<Wal.FrameWrite>) =>
  Effect.gen(function*() {
    const runs = runsOf(frames, log.config.walSegmentBytes)
    for (const [segment, offset, bytes] of runs) yield* log.disk.write(localSegmentPath(segment), offset, bytes)
    for (const segment of new Set(runs.map(([segment]) => segment))) {
      yield* Counters.add(log.counters, "fsyncs")
      yield* log.disk.sync(localSegmentPath(segment))
    }
  })

// A time mark after the records of this flush, at most once per interval (Wal.planTimeMark).
const withTimeMark = (config: StorageConfigValue, state: LogState, nowMs: number): LogState => {
  const intervalMs = config.walTimeMarkIntervalMs
  if (!state.unmarked || intervalMs === 0 || nowMs - state.lastMarkMs < intervalMs) return state
  const plan = Wal.planTimeMark(state.endLsn, nowMs, config.walSegmentBytes)
  return {
    ...state,
    endLsn: plan.nextEndLsn,
    pendingNewestFirst: prependFrames(state.pendingNewestFirst, plan.frames),
    pendingBytes: state.pendingBytes + bytesOf(plan.frames),
    unmarked: false,
    lastMarkMs: nowMs
  }
}

/** One group-commit cycle: takes every pending frame, writes and fsyncs it, then completes the
 * committers it covers (or fails them and keeps the frames for the next cycle). */
const flushOnce = (log: Log) =>
  Effect.gen(function*() {
    const fresh = yield* Deferred.make<void, CommitError>()
    const nowMs = yield* Clock.currentTimeMillis
    const taken = yield* Ref.modify(log.state, (current) => {
      if (current.stopped) return [undefined, current] as const
      const state = withTimeMark(log.config, current, nowMs)
      const running = { endLsn: state.endLsn, done: state.next }
      return [
        {
          framesNewestFirst: state.pendingNewestFirst,
          pendingBytes: state.pendingBytes,
          running,
          previousDurable: state.durableLsn
        },
        { ...state, pendingNewestFirst: List.empty<Wal.FrameWrite>(), pendingBytes: 0, running, next: fresh }
      ] as const
    })
    if (taken === undefined) return
    const frames = List.toArray(List.reverse(taken.framesNewestFirst))
    const exit = yield* Effect.exit(frames.length === 0 ? Effect.void : writeFrames(log, frames))
    if (Exit.isSuccess(exit)) {
      // After the fsync: the mark never claims a byte that is not durable (a failed write keeps the old one).
      if (frames.length > 0) {
        yield* log.disk.write(
          durableMarkPath,
          0,
          Wal.encodeDurableMark(Math.max(taken.previousDurable, taken.running.endLsn))
        ).pipe(Effect.ignore)
      }
      yield* Ref.update(
        log.state,
        (state) => ({ ...state, durableLsn: Math.max(state.durableLsn, taken.running.endLsn), running: undefined })
      )
      if (frames.length > 0) yield* Counters.add(log.counters, "flushes")
      yield* Deferred.succeed(taken.running.done, undefined)
      if (taken.running.endLsn > taken.previousDurable) {
        yield* log.onDurable(taken.previousDurable, taken.running.endLsn)
      }
      return
    }
    // Keep the frames for the next flush (rewriting them is idempotent) and fail this flush's waiters.
    yield* Ref.update(log.state, (state) => ({
      ...state,
      pendingNewestFirst: List.appendAll(state.pendingNewestFirst, taken.framesNewestFirst),
      pendingBytes: state.pendingBytes + taken.pendingBytes,
      running: undefined
    }))
    yield* Counters.add(log.counters, "flushFailures")
    yield* Deferred.failCause(taken.running.done, exit.cause)
  }).pipe(Effect.uninterruptible)

/** Waits until a flush covers `target`: the running one if it does, else the next one. */
export const awaitDurable = (log: Log, target: number): Effect.Effect<void, CommitError> => {
  const loop: Effect.Effect<void, CommitError> = Effect.flatten(
    Ref.modify(log.state, (state): readonly [Effect.Effect<void, CommitError>, LogState] => {
      const wanted = Math.min(target, state.endLsn)
      if (state.durableLsn >= wanted) return [Effect.void, state]
      if (state.running !== undefined && state.running.endLsn >= wanted) {
        return [Effect.zipRight(Deferred.await(state.running.done), loop), state]
      }
      return [Effect.zipRight(Effect.zipRight(wakeFlusher(log), Deferred.await(state.next)), loop), state]
    })
  )
  return log.waits.track("WalArchiver.commit", `fsync through LSN ${target}`, loop)
}

/** Makes everything below `target` durable locally. */
export const commitThrough = (log: Log, target: Lsn): Effect.Effect<void, CommitError> =>
  Effect.zipRight(Counters.add(log.counters, "commits"), awaitDurable(log, target))

/** Makes everything appended so far durable locally. */
export const commit = (log: Log): Effect.Effect<void, CommitError> =>
  Effect.flatMap(Ref.get(log.state), (state) => commitThrough(log, toLsn(state.endLsn)))

// More than two segments of unflushed frames make an appender wait for a flush before it appends,
// so memory stays bounded and a failed wait means the record was not appended.
const backpressure = (log: Log) =>
  Effect.flatMap(
    Ref.get(log.state),
    (state) =>
      state.pendingBytes >= 2 * log.config.walSegmentBytes
        ? Effect.zipRight(wakeFlusher(log), awaitDurable(log, state.endLsn))
        : Effect.void
  )

type Planned = Wal.AppendPlan & { readonly sealed: boolean; readonly pendingBytes: number }

const planAppend = (log: Log, record: Uint8Array) =>
  Effect.flatten(
    Ref.modify(log.state, (state): readonly [Effect.Effect<Planned, WalRecordTooLarge | ShuttingDown>, LogState] => {
      const segmentBytes = log.config.walSegmentBytes
      if (state.closing) return [Effect.fail(new ShuttingDown({ operation: "WalArchiver.append" })), state]
      const plan = Wal.planAppend(state.endLsn, record, segmentBytes)
      if (plan._tag === "Left") {
        return [
          Effect.fail(new WalRecordTooLarge({ recordBytes: record.length, recordBytesMax: plan.payloadBytesMax })),
          state
        ]
      }
      const next: LogState = {
        ...state,
        endLsn: plan.plan.nextEndLsn,
        pendingNewestFirst: prependFrames(state.pendingNewestFirst, plan.plan.frames),
        pendingBytes: state.pendingBytes + bytesOf(plan.plan.frames),
        unmarked: true
      }
      const sealed = Wal.segmentOf(next.endLsn, segmentBytes) > Wal.segmentOf(state.endLsn, segmentBytes)
      return [Effect.succeed({ ...plan.plan, sealed, pendingBytes: next.pendingBytes }), next]
    })
  )

/** Appends a record at the log's end: its LSN and end. */
export const appendWithEnd = (log: Log, record: Uint8Array) =>
  Effect.gen(function*() {
    yield* backpressure(log)
    const planned = yield* planAppend(log, record)
    yield* Ref.update(
      log.counters,
      (c) => ({ ...c, appendedRecords: c.appendedRecords + 1, appendedBytes: c.appendedBytes + record.length })
    )
    // A full segment is flushed (and then archived) without waiting for a commit.
    if (planned.sealed || planned.pendingBytes >= log.config.walSegmentBytes) yield* wakeFlusher(log)
    return { lsn: toLsn(planned.lsn), endLsn: toLsn(planned.endLsn) }
  })

/** Pads the log so that the next record goes at or after `target`, and makes the padding durable. */
export const advanceTo = (log: Log, target: Lsn) =>
  Effect.gen(function*() {
    const end = yield* Effect.flatten(
      Ref.modify(log.state, (state): readonly [Effect.Effect<number, ShuttingDown>, LogState] => {
        if (state.closing) return [Effect.fail(new ShuttingDown({ operation: "WalArchiver.advanceTo" })), state]
        if (state.endLsn >= target) return [Effect.succeed(state.endLsn), state]
        const plan = Wal.planAdvance(state.endLsn, target, log.config.walSegmentBytes)
        const pendingNewestFirst = prependFrames(state.pendingNewestFirst, plan.frames)
        return [Effect.succeed(plan.nextEndLsn), {
          ...state,
          endLsn: plan.nextEndLsn,
          pendingNewestFirst,
          pendingBytes: state.pendingBytes + bytesOf(plan.frames)
        }]
      })
    )
    yield* Effect.logDebug(`WAL: log end advanced to ${end} (asked ${target})`)
    yield* awaitDurable(log, end)
  })

/** Refuses appends from now on. */
export const close = (log: Log) => Ref.update(log.state, (state) => ({ ...state, closing: true }))

/** Fails every committer still waiting (the running flush's and the next one's) with ShuttingDown. A
 * flush still running may yet complete: its committers were told it would not, which withholds no
 * durability. */
export const failWaiters = (log: Log) =>
  Effect.gen(function*() {
    const state = yield* Ref.get(log.state)
    const closed = new ShuttingDown({ operation: "WalArchiver.commit" })
    if (state.running !== undefined) yield* Deferred.fail(state.running.done, closed)
    yield* Deferred.fail(state.next, closed)
  })
