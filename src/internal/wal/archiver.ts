/**
 * The WAL's archiver: one fiber that turns the archive's bookkeeping (src/domain/WalArchive.ts) into
 * uploads. Each cycle it starts the uploads the state plans (every sealed, durable segment not yet
 * archived, and the durable prefix of the current segment when one was asked for) as
 * `WriteWalSegment` tasks keyed by the writer's epoch, records each outcome (a failure is retried on
 * the next flush or `archivePending`, never skipped), and removes local segments that are archived
 * and covered by a completed checkpoint. `archivedThrough` advances only over the contiguous
 * archived prefix, whatever order uploads finish in.
 *
 * Replaces: OrioleDB's WAL archiving (src/s3/archive.c: `archive_preload_file_cb` enqueued a PUT of a
 * finished segment and `archive_file_cb` waited for it with no timeout and always returned true).
 *
 * @since 0.1.0
 */
import {
  Duration,
  Effect,
  Either,
  Exit,
  FiberSet,
  Option,
  Queue,
  Ref,
  type Scope,
  Stream,
  SubscriptionRef
} from "effect"
import { type Fenced, LocalIoError, ShuttingDown, WalArchiveTimeout } from "../../domain/Errors.js"
import { type Lsn, segmentNumber } from "../../domain/Ids.js"
import { WriteWalSegment } from "../../domain/Task.js"
import * as Wal from "../../domain/Wal.js"
import * as WalArchive from "../../domain/WalArchive.js"
import type { LocalDiskService } from "../../services/LocalDisk.js"
import type { ObjectStoreService } from "../../services/ObjectStore.js"
import type { StorageConfigValue } from "../../services/StorageConfig.js"
import type { TaskQueueService } from "../../services/TaskQueue.js"
import type { WaitRegistryService } from "../../services/WaitRegistry.js"
import * as Counters from "./counters.js"
import { localSegmentPath } from "./segments.js"

/** What `awaitArchived` watches: the archived prefix, and whether the archive is closed (nothing
 * more is archived: a waiter still short of its position is told at once). */
export interface ArchivedView {
  readonly through: number
  readonly closed: boolean
}

/** The archiver's services and state. */
export interface Archiver {
  readonly config: StorageConfigValue
  readonly disk: LocalDiskService
  readonly store: ObjectStoreService
  readonly queue: TaskQueueService
  readonly waits: WaitRegistryService
  readonly counters: Counters.Counters
  readonly fence: Effect.Effect<void, Fenced> | undefined
  /** The bucket key of a segment's copy (this writer's epoch). */
  readonly bucketKey: (segment: number) => string
  readonly state: Ref.Ref<WalArchive.ArchiveState>
  readonly archived: SubscriptionRef.SubscriptionRef<ArchivedView>
  readonly wake: Queue.Queue<void>
  readonly watchers: FiberSet.FiberSet
}

/** The archiver's state after opening; its fiber starts with `start`. */
export const make = (
  services: Omit<Archiver, "state" | "archived" | "wake" | "watchers">,
  opened: Parameters<typeof WalArchive.initial>[0]
): Effect.Effect<Archiver, never, Scope.Scope> =>
  Effect.gen(function*() {
    const state = yield* Ref.make(WalArchive.initial(opened))
    const archived = yield* SubscriptionRef.make<ArchivedView>({ through: opened.progress.through, closed: false })
    const wake = yield* Queue.sliding<void>(1)
    const watchers = yield* FiberSet.make()
    return { ...services, state, archived, wake, watchers }
  })

const wakeUp = (archiver: Archiver) => Queue.offer(archiver.wake, undefined)

/** Reads the segment's bytes the upload covers and puts them in the bucket: the `wal.archive` span. */
const upload = (archiver: Archiver, item: WalArchive.Upload) =>
  Effect.gen(function*() {
    const path = localSegmentPath(item.segment)
    const bytes = item.partial
      ? yield* archiver.disk.read(
        path,
        0,
        item.coveredLsn - Wal.segmentStart(item.segment, archiver.config.walSegmentBytes)
      )
      : yield* Effect.flatMap(archiver.disk.readAll(path), (found) =>
        Option.match(found, {
          onNone: () =>
            Effect.fail(new LocalIoError({ operation: "archive", path, detail: "the segment file is missing" })),
          onSome: Effect.succeed
        }))
    yield* Effect.annotateCurrentSpan("bytes", bytes.length)
    if (archiver.fence !== undefined) yield* archiver.fence
    yield* archiver.store.put(archiver.bucketKey(item.segment), bytes)
    return bytes.length
  }).pipe(Effect.withSpan("wal.archive", { attributes: { segment: item.segment, partial: item.partial } }))

const completeUpload = (archiver: Archiver, item: WalArchive.Upload, exit: Exit.Exit<unknown, unknown>) =>
  Effect.gen(function*() {
    const segmentBytes = archiver.config.walSegmentBytes
    if (Exit.isSuccess(exit)) {
      const through = yield* Ref.modify(archiver.state, (state) => {
        const next = WalArchive.onUploadDone(state, item, segmentBytes)
        return [next.progress.through, next] as const
      })
      const sentBytes = typeof exit.value === "number" ? exit.value : 0
      yield* Ref.update(
        archiver.counters,
        (c) => ({ ...c, segmentsArchived: c.segmentsArchived + 1, archivedBytes: c.archivedBytes + sentBytes })
      )
      yield* SubscriptionRef.update(
        archiver.archived,
        (current) => ({ ...current, through: Math.max(current.through, through) })
      )
      yield* wakeUp(archiver)
      return
    }
    yield* Ref.update(archiver.state, (state) => WalArchive.onUploadFailed(state, item))
    yield* Counters.add(archiver.counters, "uploadFailures")
    yield* Effect.logWarning(
      `WAL: upload of segment ${item.segment}${item.partial ? " (partial)" : ""} failed; it will be retried`,
      exit.cause
    )
  })

const startUpload = (archiver: Archiver, item: WalArchive.Upload) =>
  Effect.gen(function*() {
    const task = new WriteWalSegment({ segment: segmentNumber(item.segment), partial: item.partial })
    const enqueued = yield* Effect.either(archiver.queue.enqueue(task, upload(archiver, item)))
    if (Either.isLeft(enqueued)) return yield* completeUpload(archiver, item, Exit.fail(enqueued.left))
    yield* FiberSet.run(
      archiver.watchers,
      Effect.flatMap(Effect.exit(enqueued.right.await), (exit) => completeUpload(archiver, item, exit))
    )
  })

// Removes local segments that are archived and below the latest completed checkpoint's position.
const removeCovered = (archiver: Archiver, durable: number) =>
  Effect.gen(function*() {
    for (;;) {
      const segment = WalArchive.removable(yield* Ref.get(archiver.state), durable, archiver.config.walSegmentBytes)
      if (segment === undefined) return
      yield* archiver.disk.remove(localSegmentPath(segment))
      yield* Ref.update(archiver.state, (current) => WalArchive.onRemoved(current, segment))
      yield* Counters.add(archiver.counters, "segmentsRemoved")
    }
  })

const archiveOnce = (archiver: Archiver, durableLsn: Effect.Effect<number>) =>
  Effect.gen(function*() {
    const durable = yield* durableLsn
    if (!(yield* SubscriptionRef.get(archiver.archived)).closed) {
      const starts = yield* Ref.modify(archiver.state, (state) =>
        WalArchive.planUploads(state, durable, archiver.config.walSegmentBytes))
      for (const item of starts) {
        yield* startUpload(archiver, item)
      }
    }
    yield* removeCovered(archiver, durable).pipe(
      Effect.catchAll((error) =>
        Effect.logWarning(`WAL: removing an archived segment failed; retried later: ${error.message}`)
      )
    )
  }).pipe(Effect.catchAllCause((cause) =>
    Effect.logError("WAL: archive cycle failed", cause)
  ))

/** Starts the archiver's fiber in the scope, and its first cycle. */
export const start = (archiver: Archiver, durableLsn: Effect.Effect<number>): Effect.Effect<void, never, Scope.Scope> =>
  Effect.zipRight(
    Effect.forkScoped(Effect.forever(Effect.zipRight(Queue.take(archiver.wake), archiveOnce(archiver, durableLsn)))),
    wakeUp(archiver)
  )

/** A flush made the log durable from `previousDurable` to `durable`: archive what it sealed. */
export const onFlushed = (archiver: Archiver) => (previousDurable: number, durable: number): Effect.Effect<void> =>
  Effect.zipRight(
    Ref.update(
      archiver.state,
      (state) => WalArchive.onFlushed(state, previousDurable, durable, archiver.config.walSegmentBytes)
    ),
    wakeUp(archiver)
  )

/** Re-enqueues every segment whose upload failed or is still to do. */
export const archivePending = (archiver: Archiver): Effect.Effect<void> =>
  Effect.zipRight(Ref.update(archiver.state, WalArchive.retryFailed), wakeUp(archiver))

/** Asks for the current segment's durable prefix through `lsn` to be uploaded, with every pending segment. */
export const archivePartial = (archiver: Archiver, lsn: number): Effect.Effect<void> =>
  Effect.zipRight(Ref.update(archiver.state, (state) => WalArchive.wantPartial(state, lsn)), archivePending(archiver))

/** A completed checkpoint covers every record below `lsn`. */
export const checkpointCovered = (archiver: Archiver, lsn: number): Effect.Effect<void> =>
  Effect.zipRight(Ref.update(archiver.state, (state) => WalArchive.onCovered(state, lsn)), wakeUp(archiver))

export const archivedThrough = (archiver: Archiver): Effect.Effect<number> =>
  Effect.map(SubscriptionRef.get(archiver.archived), (view) => view.through)

/** Waits until every record below `target` is archived; WalArchiveTimeout after `timeoutMs`,
 * ShuttingDown as soon as the archive closes short of it. */
export const awaitArchived = (archiver: Archiver, target: Lsn, timeoutMs: number) =>
  archiver.waits.track(
    "WalArchiver.awaitArchived",
    `archive through LSN ${target}`,
    archiver.archived.changes.pipe(
      Stream.filter((view) => view.through >= target || view.closed),
      Stream.runHead,
      Effect.flatMap((view) =>
        Option.isSome(view) && view.value.through < target
          ? Effect.fail(new ShuttingDown({ operation: "WalArchiver.awaitArchived" }))
          : Effect.void
      ),
      Effect.timeoutFail({
        duration: Duration.millis(Math.max(0, timeoutMs)),
        onTimeout: () => new WalArchiveTimeout({ lsn: target, archivedThrough: -1, timeoutMs })
      }),
      Effect.catchTag("WalArchiveTimeout", (error) =>
        Effect.flatMap(archivedThrough(archiver), (through) =>
          Effect.fail(new WalArchiveTimeout({ lsn: error.lsn, archivedThrough: through, timeoutMs }))))
    )
  )

/** Waits, at most `timeout`, until every record below `target` is archived (shutdown's wait). */
export const awaitArchivedWithin = (
  archiver: Archiver,
  target: number,
  timeout: Duration.Duration
): Effect.Effect<void> =>
  archiver.waits.track(
    "WalArchiver.shutdown",
    `archive through LSN ${target}`,
    archiver.archived.changes.pipe(
      Stream.filter((view) => view.through >= target),
      Stream.runHead,
      Effect.timeout(timeout),
      Effect.ignore
    )
  )

/** Nothing more is archived: no upload starts any more, and every wait for the archive still short
 * of its position ends now with ShuttingDown instead of running out its deadline. */
export const close = (archiver: Archiver): Effect.Effect<void> =>
  SubscriptionRef.update(archiver.archived, (view) => ({ ...view, closed: true }))
