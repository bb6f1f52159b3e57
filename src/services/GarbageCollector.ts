/**
 * GarbageCollector: deletes what no retained checkpoint, commit in flight, reader or restore can
 * still need, and expires checkpoints that fall out of the retention policy (Retention.ts).
 *
 * One pass (`collect`, usable without a running Storage: by the `gc` command and the simulation;
 * the service runs it every `gcIntervalMs` in the lock holder):
 *   a. a writer's pass checks its lock (the fence) first: a fenced instance writes and deletes nothing;
 *   b. lists `checkpoints/` and reads every root object: committed manifest or tombstone. A tombstone
 *      is final (nobody rewrites its key), so the numbers known expired are kept in a per-process
 *      cache (`ExpiredCache`) and not read again: a pass reads the committed roots (bounded by the
 *      retention) and the tombstones new to it;
 *   c. lists and reads the leases, and plans (Retention.plan);
 *   d. writes a tombstone over each checkpoint that expires, before any delete, and only over keys
 *      this pass read as committed manifests (the checkpoint number stays taken: RFC 0026);
 *   e. lists the leases AGAIN and plans from that second listing. A reader writes its lease, THEN
 *      reads the root manifest, and refuses a tombstone. So a lease written before the second
 *      listing is seen here and its checkpoint is pinned (from the manifest this pass read; in later
 *      passes, whose only record of it is a tombstone too small to list its files, by keeping every
 *      part and file manifest while the lease lives); a lease written after it belongs to a reader
 *      that will read the tombstone and stop. Either way no reader reads an object a pass deletes;
 *   f. reads the file manifests of every pinned checkpoint: the referenced set;
 *   g. lists `data/`, `manifests/` and `wal/` and judges each object (Retention.judge): referenced,
 *      of a checkpoint number above the latest committed (a commit in flight), younger than the
 *      minimum age, or WAL the pinned checkpoints need, it stays (what the latest does not name
 *      under its own number is a failed attempt's: Retention.mayStillBeNamed);
 *   h. checks the fence again and deletes, `gcConcurrency` at a time, interruptibly, within the
 *      caller's deadline, counting objects and bytes by kind. An expired lease is read once more
 *      just before its delete (a reader may have renewed it).
 * FAIL CLOSED: any listing, read or parse error in a-g ends the pass with GcFailed and nothing
 * deleted (tombstones already written expire only what the plan expired). A dry run writes and
 * deletes nothing and reports what a pass would do.
 *
 * Why a stale writer cannot lose data to it: a stale writer's next commit is at a number that is
 * taken (by the newer writer's claim, or a tombstone over it, never by nothing), so nothing it
 * uploads can become referenced; and everything the current writer may still commit is at a number
 * above the latest committed, or referenced by the latest (kept whatever the policy).
 *
 * Replaces: nothing in OrioleDB, whose bucket grows forever (its issue #334). The shape follows
 * SlateDB's collector (min age, dry run, bounded delete concurrency) and Neon's (generation check
 * before deleting, leases), and avoids their failures (SlateDB #604/#1044/#1622, Neon #12921).
 *
 * @since 0.2.0
 */
import { Clock, Context, Duration, Effect, Fiber, Layer, Option, Ref, type Scope } from "effect"
import type { Fenced, GcFailed } from "../domain/Errors.js"
import { ShuttingDown } from "../domain/Errors.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import type * as Manifest from "../domain/Manifest.js"
import * as Retention from "../domain/Retention.js"
import { add, emptyKinds, judgeAll, planReport, policyOf } from "../internal/gc/plan.js"
import { listAll, readLeases, readRoots, referencedKeys } from "../internal/gc/read.js"
import { deleteAll, writeTombstones } from "../internal/gc/write.js"
import * as Loader from "./Loader.js"
import { ObjectStore, type ObjectStoreService } from "./ObjectStore.js"
import { keyLayout, StorageConfig, type StorageConfigValue } from "./StorageConfig.js"

// The types the collector's signatures name, so that an application can name them too.
export type { KeyLayout } from "../domain/KeyLayout.js"
export type {
  CheckpointSummary,
  KeepReason,
  LeaseSummary,
  ObjectKind,
  RetentionPolicy,
  Verdict
} from "../domain/Retention.js"

/** A writer's lock, as the collector checks it (BucketLock's service is one). */
export interface GcFence {
  /** Fails with the fence if set; no I/O. */
  readonly ensureNotFenced: Effect.Effect<void, Fenced>
  /** Reads the lock; one that is gone or not ours sets the fence. */
  readonly check: Effect.Effect<void, Fenced>
}

/** The checkpoints known expired (their root is a tombstone, which never changes), by number. */
export type ExpiredCache = Ref.Ref<ReadonlyMap<number, Retention.CheckpointSummary>>

export const makeExpiredCache: Effect.Effect<ExpiredCache> = Ref.make<ReadonlyMap<number, Retention.CheckpointSummary>>(
  new Map()
)

/** Options of one pass. */
export interface CollectOptions {
  /** Write and delete nothing; report what a pass would do. */
  readonly dryRun?: boolean
  /** Objects younger than this stay; default `gcMinAgeMs`. */
  readonly minAgeMs?: number
  /** The retention policy; each field not given comes from the latest root manifest (the writer's
   * policy), else from the configuration. */
  readonly policy?: Partial<Retention.RetentionPolicy>
  /** The writer's lock: checked before the tombstones and before the deletes. */
  readonly fence?: GcFence
  /** Tombstones already read (keep one per bucket per process); default a fresh one. */
  readonly expiredCache?: ExpiredCache
  /** The deletes stop after this long (the report says `complete: false`); default none. */
  readonly deleteDeadlineMs?: number
}

export type KeptReason = Extract<Retention.Verdict, { _tag: "Keep" }>["reason"]

/** Objects and bytes. */
export interface Tally {
  readonly objects: number
  readonly bytes: number
}

/** What a pass did (or, in a dry run, would do). @category models */
export interface GcReport {
  readonly dryRun: boolean
  readonly startedAtMs: number
  readonly durationMs: number
  readonly policy: Retention.RetentionPolicy
  readonly minAgeMs: number
  /** The latest committed checkpoint (0: none). */
  readonly latest: number
  /** The start of the point-in-time window, or null for none. */
  readonly windowStartMs: number | null
  /** Archived WAL from this position on is kept. */
  readonly walFloorLsn: number
  readonly retained: ReadonlyArray<
    { readonly checkpoint: number; readonly reasons: ReadonlyArray<Retention.KeepReason> }
  >
  /** Checkpoints this pass expired (a dry run: would expire). */
  readonly expiredNow: ReadonlyArray<number>
  /** Checkpoints found expired already (tombstones). */
  readonly expiredBefore: number
  readonly leases: {
    readonly live: ReadonlyArray<Retention.LeaseSummary>
    readonly expired: ReadonlyArray<Retention.LeaseSummary>
  }
  /** Deleted (a dry run: would delete), by kind. */
  readonly deleted: Readonly<Record<Retention.ObjectKind, Tally>>
  /** Deletes that failed (their objects stay; the next pass tries again). */
  readonly deleteFailures: number
  /** Objects kept, by reason. */
  readonly kept: Readonly<Record<KeptReason, Tally>>
  /** False when the deadline or an interruption cut the deletes. */
  readonly complete: boolean
}

// ---------------------------------------------------------------------------------------------
// One pass (the reads, writes and judging it is made of: src/internal/gc/)
// ---------------------------------------------------------------------------------------------

/** One garbage-collection pass over the bucket; see the module comment. */
/* eslint-disable max-lines-per-function -- the pass's steps in their order (fence, roots, plan, tombstones, leases again, deletes); each step's work is in src/internal/gc */
export const collect = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  options: CollectOptions = {}
): Effect.Effect<GcReport, GcFailed | Fenced> =>
  Effect.gen(function*() {
    /* eslint-enable max-lines-per-function */
    const layout = keyLayout(config)
    const dryRun = options.dryRun === true
    const minAgeMs = options.minAgeMs ?? config.gcMinAgeMs
    const cache = options.expiredCache ?? (yield* makeExpiredCache)
    const startedAtMs = yield* Clock.currentTimeMillis
    if (options.fence !== undefined && !dryRun) yield* options.fence.check
    const roots = yield* readRoots(store, config, cache)
    const latestManifest = [...roots.committed.values()].reduce<Manifest.CheckpointManifest | undefined>(
      (top, manifest) => (top === undefined || manifest.checkpoint > top.checkpoint ? manifest : top),
      undefined
    )
    const policy = policyOf(config, options.policy, latestManifest)
    const first = Retention.plan(
      roots.summaries,
      policy,
      (yield* readLeases(store, config)).map((listed) => listed.lease),
      startedAtMs,
      config.readerLeaseSkewMs
    )
    const expiring = first.expire.flatMap((checkpoint) =>
      Option.toArray(Option.fromNullable(roots.committed.get(checkpoint)))
    )
    if (!dryRun && expiring.length > 0) {
      yield* options.fence?.check ?? Effect.void
      yield* writeTombstones(store, config, expiring, startedAtMs, cache)
    }
    // The second lease listing decides what stays (see the module comment, step e).
    const leases = yield* readLeases(store, config)
    const expiredNow = new Set(first.expire)
    const summaries = dryRun
      ? roots.summaries
      : roots.summaries.map((summary) => (expiredNow.has(summary.checkpoint) ? { ...summary, expired: true } : summary))
    const plan = Retention.plan(
      summaries,
      policy,
      leases.map((listed) => listed.lease),
      startedAtMs,
      config.readerLeaseSkewMs
    )
    const { heldByExpiredLease, referenced } = yield* referencedKeys(store, config, plan.pinned, roots, cache)
    const objects = (yield* Effect.forEach([
      KeyLayout.dataPrefix(layout),
      KeyLayout.manifestsPrefix(layout),
      KeyLayout.walPrefix(layout)
    ], (prefix) => listAll(store, config, prefix))).flat()
    const walSegmentBytes = latestManifest?.walSegmentBytes ?? config.walSegmentBytes
    const { doomed, kept } = judgeAll(
      layout,
      { plan, referenced, walSegmentBytes, minAgeMs, nowMs: startedAtMs, heldByExpiredLease },
      objects,
      leases
    )
    let outcome: {
      readonly deleted: Record<Retention.ObjectKind, Tally>
      readonly failures: number
      readonly complete: boolean
    }
    if (dryRun) {
      const wouldDelete = emptyKinds()
      for (const item of doomed) wouldDelete[item.kind] = add(wouldDelete[item.kind], item.info.sizeBytes)
      outcome = { deleted: wouldDelete, failures: 0, complete: true }
    } else {
      if (doomed.length > 0) yield* options.fence?.check ?? Effect.void
      outcome = yield* deleteAll(store, config, doomed, options.fence, startedAtMs, options.deleteDeadlineMs)
    }
    return {
      dryRun,
      startedAtMs,
      durationMs: (yield* Clock.currentTimeMillis) - startedAtMs,
      policy,
      minAgeMs,
      ...planReport(plan),
      expiredNow: first.expire,
      expiredBefore: roots.expiredBefore,
      deleted: outcome.deleted,
      deleteFailures: outcome.failures,
      kept,
      complete: outcome.complete
    }
  })

// ---------------------------------------------------------------------------------------------
// The service: the lock holder's periodic pass
// ---------------------------------------------------------------------------------------------

/** Counters of the periodic and on-demand passes. */
export interface GcStats {
  readonly passes: number
  readonly failures: number
  readonly deletedObjects: number
  readonly deletedBytes: number
  readonly lastReport: GcReport | undefined
}

/** The collector of a running Storage. @category models */
export interface GarbageCollectorService {
  /** Runs one pass now, with the writer's policy and fence (passes never overlap). */
  readonly collect: (
    options?: { readonly dryRun?: boolean; readonly minAgeMs?: number }
  ) => Effect.Effect<GcReport, GcFailed | Fenced | ShuttingDown>
  readonly stats: Effect.Effect<GcStats>
  /** Refuses new passes (ShuttingDown) and interrupts the periodic one, with any pass in flight. */
  readonly stop: Effect.Effect<void>
  readonly periodicAlive: Effect.Effect<boolean>
}

/** The garbage collector. @category tags */
export class GarbageCollector
  extends Context.Tag("effect-s3-tier/GarbageCollector")<GarbageCollector, GarbageCollectorService>()
{}

const tallyTotal = (deleted: Readonly<Record<Retention.ObjectKind, Tally>>): Tally =>
  Object.values(deleted).reduce(
    (sum, tally) => ({ objects: sum.objects + tally.objects, bytes: sum.bytes + tally.bytes }),
    { objects: 0, bytes: 0 }
  )

/** Builds the collector; with `gcIntervalMs` > 0 it runs a pass every interval until stopped. */
/* eslint-disable max-lines-per-function -- a service's constructor: its operations are small functions sharing one closure, each under a screen */
export const make = (
  options: { readonly fence?: GcFence } = {}
): Effect.Effect<GarbageCollectorService, never, StorageConfig | ObjectStore | Scope.Scope> =>
  Effect.gen(function*() {
    /* eslint-enable max-lines-per-function */
    const config = yield* StorageConfig
    const store = yield* ObjectStore
    const cache = yield* makeExpiredCache
    const closing = yield* Ref.make(false)
    const statsRef = yield* Ref.make<GcStats>({
      passes: 0,
      failures: 0,
      deletedObjects: 0,
      deletedBytes: 0,
      lastReport: undefined
    })
    const oneAtATime = yield* Effect.makeSemaphore(1)
    const policy = { retainCheckpointsMin: config.retainCheckpointsMin, retainForMs: config.retainForMs }
    const runPass = (
      passOptions: { readonly dryRun?: boolean; readonly minAgeMs?: number } = {}
    ): Effect.Effect<GcReport, GcFailed | Fenced | ShuttingDown> =>
      Effect.flatMap(Ref.get(closing), (isClosing): Effect.Effect<GcReport, GcFailed | Fenced | ShuttingDown> =>
        isClosing
          ? Effect.fail(new ShuttingDown({ operation: "gc" }))
          : collect(store, config, {
            ...passOptions,
            policy,
            expiredCache: cache,
            ...(options.fence === undefined ? {} : { fence: options.fence })
          }).pipe(
            Effect.tap((report) =>
              Ref.update(statsRef, (stats) => {
                const total = tallyTotal(report.deleted)
                return report.dryRun
                  ? { ...stats, lastReport: report }
                  : {
                    ...stats,
                    passes: stats.passes + 1,
                    deletedObjects: stats.deletedObjects + total.objects,
                    deletedBytes: stats.deletedBytes + total.bytes,
                    lastReport: report
                  }
              })
            ),
            Effect.tapError(() => Ref.update(statsRef, (stats) => ({ ...stats, failures: stats.failures + 1 }))),
            oneAtATime.withPermits(1)
          ))
    const periodic = Effect.forever(
      Effect.sleep(Duration.millis(config.gcIntervalMs)).pipe(
        Effect.zipRight(runPass({})),
        Effect.tap((report) => {
          const total = tallyTotal(report.deleted)
          return total.objects === 0
            ? Effect.void
            : Effect.logInfo(
              `gc: deleted ${total.objects} object(s), ${total.bytes} bytes; expired checkpoint(s) ${
                report.expiredNow.join(", ") || "none"
              }`
            )
        }),
        // A failed pass deletes nothing; the next interval tries again. A fenced writer stops.
        Effect.catchTag("GcFailed", (error) => Effect.logWarning(`gc: ${error.message}`))
      )
    ).pipe(Effect.catchAll((error) => Effect.logInfo(`gc: periodic pass stopped: ${error.message}`)))
    const fiber = config.gcIntervalMs > 0 ? Option.some(yield* Effect.forkScoped(periodic)) : Option.none()
    const stop = Effect.zipRight(
      Ref.set(closing, true),
      Option.match(fiber, { onNone: () => Effect.void, onSome: (running) => Fiber.interrupt(running) })
    ).pipe(Effect.asVoid)
    return GarbageCollector.of({
      collect: runPass,
      stats: Ref.get(statsRef),
      stop,
      periodicAlive: Option.match(fiber, {
        onNone: () => Effect.succeed(false),
        onSome: (running) => Effect.map(running.poll, Option.isNone)
      })
    })
  })

/** The collector of the lock holder: fenced by its bucket lock. @category layers */
export const layer: Layer.Layer<GarbageCollector, never, StorageConfig | ObjectStore | Loader.Loader> = Layer.scoped(
  GarbageCollector,
  Effect.flatMap(Loader.Loader, (loader) => make({ fence: loader.bucketLock }))
)
