/**
 * Scenario 6: bucket growth under retention. A writer rewrites 4 KiB blocks over a working set of
 * 32 parts of 64 KiB (2 MiB of live data) and logs a 256-byte WAL record per write (64 KiB
 * segments), with a checkpoint every second, so that each checkpoint uploads about the whole
 * working set again; retention keeps the 2 latest checkpoints and every one of a short
 * point-in-time window, and the garbage collector runs every few seconds. The bucket is listed
 * every `sampleEveryMs` (through the store itself, not through the counter) and each sample is
 * held to the bound
 *
 *   bucket bytes ≤ (kept checkpoints + 1) × live data + the window's WAL (+ tombstones and lock)
 *
 * with every term read from the bucket at that moment: the root manifests (and tombstones) say which
 * checkpoints exist, when each was made and where its WAL begins; `Retention.plan` says which are
 * kept; live data is the latest committed checkpoint's bytes (parts and manifests); the window's
 * WAL is the archived WAL from the oldest kept checkpoint's position on. Between two passes the
 * bucket also holds what the next pass will delete, so "kept" is what the latest completed pass
 * kept (the plan as of its start, from the collector's stats): the checkpoints of the window as it
 * was then, its base, and every checkpoint made since. The bound is checked on every sample after
 * the first pass. Tombstones (expired checkpoints' root manifests, never deleted) are added as
 * they are, and reported: they grow by one per expired checkpoint.
 *
 * Every request goes through the counting decorator (src/layers/CountingObjectStore.ts): the
 * requests per checkpoint are reported by type and by the kind of key.
 */
import { Chunk, Context, Duration, Effect, Either, Fiber, Layer, Stream } from "effect"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { CheckpointNumber, fileId } from "../src/domain/Ids.js"
import * as KeyLayout from "../src/domain/KeyLayout.js"
import * as Manifest from "../src/domain/Manifest.js"
import * as Retention from "../src/domain/Retention.js"
import * as Wal from "../src/domain/Wal.js"
import { layerWithServices } from "../src/internal/storageLayer.js"
import * as CountingObjectStore from "../src/layers/CountingObjectStore.js"
import * as FileObjectStore from "../src/layers/FileObjectStore.js"
import * as FileSystemDisk from "../src/layers/FileSystemDisk.js"
import * as S3ObjectStore from "../src/layers/S3ObjectStore.js"
import * as Storage from "../src/layers/Storage.js"
import * as GarbageCollector from "../src/services/GarbageCollector.js"
import { ObjectStore, type ObjectStoreService } from "../src/services/ObjectStore.js"
import * as StorageConfig from "../src/services/StorageConfig.js"
import {
  type BenchOptions,
  median,
  MiB,
  now,
  payload,
  quiet,
  round,
  type Row,
  type ScenarioResult,
  startS3ServerProcess
} from "./common.js"

const partSizeBytes = 64 * 1024
const workingSetParts = 32
const walSegmentBytes = 64 * 1024
const checkpointIntervalMs = 1_000
const layout = KeyLayout.make("growth")
const file = fileId("bench/growth")

/** The run's settings: retention, collection and timing. */
export interface Settings {
  readonly durationMs: number
  readonly sampleEveryMs: number
  readonly retainCheckpointsMin: number
  readonly retainForMs: number
  readonly gcIntervalMs: number
  readonly gcMinAgeMs: number
  readonly requestTimeoutMs: number
  readonly retryElapsedMaxMs: number
}

export const settingsOf = (quick: boolean, durationMs: number): Settings => ({
  durationMs,
  sampleEveryMs: 500,
  retainCheckpointsMin: 2,
  retainForMs: quick ? 5_000 : 10_000,
  gcIntervalMs: quick ? 2_000 : 3_000,
  // Above a request's worst-case lifetime here (timeout + retries: 2.5 s); see the notes.
  gcMinAgeMs: 3_000,
  requestTimeoutMs: 1_500,
  retryElapsedMaxMs: 1_000
})

const configOf = (settings: Settings): Partial<StorageConfig.StorageConfigValue> => ({
  prefix: layout.prefix,
  partSizeBytes,
  walSegmentBytes,
  workerCount: 4,
  queueCapacity: 64,
  checkpointIntervalMs,
  checkpointDeadlineMs: 10_000,
  requestTimeoutMs: settings.requestTimeoutMs,
  retryElapsedMaxMs: settings.retryElapsedMaxMs,
  localBytesMax: 64 * MiB,
  evictionIntervalMs: 1_000,
  retainCheckpointsMin: settings.retainCheckpointsMin,
  retainForMs: settings.retainForMs,
  gcIntervalMs: settings.gcIntervalMs,
  gcMinAgeMs: settings.gcMinAgeMs
})

// ---------------------------------------------------------------------------------------------
// Reading the bucket
// ---------------------------------------------------------------------------------------------

/** What one listing of the bucket found, and the bound's terms computed from it. */
export interface BucketSample {
  readonly atMs: number
  readonly bucketBytes: number
  readonly objects: number
  readonly bytesByKind: Readonly<Record<CountingObjectStore.KeyKind, number>>
  readonly objectsByKind: Readonly<Record<CountingObjectStore.KeyKind, number>>
  readonly latest: number
  /** The latest committed checkpoint's bytes: parts, file manifests and root manifest. */
  readonly liveBytes: number
  readonly livePartBytes: number
  /** Root manifests of expired checkpoints (never deleted: a number is never committed twice). */
  readonly tombstones: number
  readonly tombstoneBytes: number
  /** The lock and reader leases. */
  readonly otherBytes: number
  /** Collection passes completed before the sample, and when the latest of them started. */
  readonly passes: number
  readonly lastPassStartedAtMs: number | undefined
  /** What the latest completed pass kept, by its own account: checkpoints, and bytes by reason. */
  readonly lastPass: { readonly retained: number; readonly keptBytes: Readonly<Record<string, number>> } | undefined
  /** Checkpoints kept by the latest completed pass, plus every one made since (all of them before
   * the first pass). */
  readonly kept: number
  /** Checkpoints the retention keeps right now. */
  readonly keptNow: number
  readonly windowWalBytes: number
  readonly boundBytes: number
}

/** A root manifest as the sampler needs it; cached by key and size (a tombstone has another size). */
interface RootSummary {
  readonly summary: Retention.CheckpointSummary
  /** When a pass expired it (its tombstone says), or undefined while it is committed. */
  readonly expiredAtMs: number | undefined
  /** Its part bytes (committed) and the keys of its file manifests. */
  readonly partBytes: number
  readonly fileManifestKeys: ReadonlyArray<string>
}

const zeroByKind = (): Record<CountingObjectStore.KeyKind, number> =>
  Object.fromEntries(CountingObjectStore.keyKinds.map((kind) => [kind, 0])) as Record<
    CountingObjectStore.KeyKind,
    number
  >

const readRoot = (store: ObjectStoreService, key: string, checkpoint: number) =>
  Effect.flatMap(store.get(key), (bytes) => {
    const decoded = Manifest.decodeRootObject(key, bytes, CheckpointNumber.make(checkpoint))
    if (Either.isLeft(decoded)) return Effect.fail(decoded.left)
    const root = decoded.right
    const made = root._tag === "Committed" ? root.manifest : root.tombstone
    // A tombstone keeps no file list: an expired checkpoint's parts are not live data.
    const files = root._tag === "Committed" ? root.manifest.files : []
    return Effect.succeed<RootSummary>({
      summary: {
        checkpoint,
        createdAtMs: made.createdAtMs,
        walPosition: made.walPosition,
        expired: root._tag === "Expired"
      },
      expiredAtMs: root._tag === "Expired" ? root.tombstone.expiredAtMs : undefined,
      partBytes: files.reduce((sum, entry) => sum + entry.sizeBytes, 0),
      fileManifestKeys: files.map((entry) =>
        KeyLayout.fileManifestKey(layout, entry.manifestCheckpoint, entry.file, entry.manifestSha256)
      )
    })
  })

/** The checkpoints kept by a pass at `passAtMs`, and every one made after it. A checkpoint that a
 * later pass (one still deleting) expired counts as it was at `passAtMs`. */
const keptSince = (roots: ReadonlyArray<RootSummary>, settings: Settings, passAtMs: number) => {
  const policy = { retainCheckpointsMin: settings.retainCheckpointsMin, retainForMs: settings.retainForMs }
  const summaries = roots.map((root) => ({
    ...root.summary,
    expired: root.expiredAtMs !== undefined && root.expiredAtMs <= passAtMs
  }))
  const seen = summaries.filter((summary) => summary.createdAtMs <= passAtMs)
  const plan = Retention.plan(seen, policy, [], passAtMs, 0)
  const kept = new Set([
    ...plan.retained.keys(),
    ...summaries.filter((summary) => summary.createdAtMs > passAtMs && !summary.expired).map((summary) =>
      summary.checkpoint
    )
  ])
  return { kept, walFloorLsn: plan.retained.size === 0 ? 0 : plan.walFloorLsn }
}

/** Lists the bucket and computes the bound's terms. */
const sampleBucket = (
  store: ObjectStoreService,
  settings: Settings,
  cache: Map<string, RootSummary>,
  atMs: number,
  nowMs: number,
  gc: GarbageCollector.GcStats
) =>
  Effect.gen(function*() {
    const lastPassStartedAtMs = gc.lastReport?.startedAtMs
    const infos = Chunk.toReadonlyArray(yield* Stream.runCollect(store.list(KeyLayout.rootPrefix(layout))))
    const bytesByKind = zeroByKind()
    const objectsByKind = zeroByKind()
    const roots: Array<RootSummary> = []
    const sizes = new Map(infos.map((info) => [info.key, info.sizeBytes]))
    let tombstoneBytes = 0
    const walCopies: Array<{ readonly segment: number; readonly sizeBytes: number }> = []
    for (const info of infos) {
      const kind = CountingObjectStore.kindOfKey(layout, info.key)
      bytesByKind[kind] += info.sizeBytes
      objectsByKind[kind] += 1
      const parsed = KeyLayout.parseKey(layout, info.key)
      if (parsed._tag === "None") continue
      if (parsed.value._tag === "Wal") walCopies.push({ segment: parsed.value.segment, sizeBytes: info.sizeBytes })
      if (parsed.value._tag !== "Checkpoint") continue
      const cacheKey = `${info.key}@${info.sizeBytes}`
      const cached = cache.get(cacheKey)
      // A root that vanished between the listing and the read is skipped (it was deleted).
      const root = cached ??
        (yield* Effect.orElseSucceed(readRoot(store, info.key, parsed.value.checkpoint), () => undefined))
      if (root === undefined) continue
      cache.set(cacheKey, root)
      roots.push(root)
      if (root.summary.expired) tombstoneBytes += info.sizeBytes
    }
    const committed = roots.filter((root) => !root.summary.expired).sort((left, right) =>
      left.summary.checkpoint - right.summary.checkpoint
    )
    const latest = committed[committed.length - 1]
    // A checkpoint's bytes: its parts, its file manifests and its root manifest.
    const manifestBytes = latest === undefined
      ? 0
      : (sizes.get(KeyLayout.checkpointKey(layout, CheckpointNumber.make(latest.summary.checkpoint))) ?? 0) +
        latest.fileManifestKeys.reduce((sum, key) => sum + (sizes.get(key) ?? 0), 0)
    const liveBytes = (latest?.partBytes ?? 0) + manifestBytes
    // Before the first pass every checkpoint is kept.
    const { kept, walFloorLsn } = keptSince(roots, settings, lastPassStartedAtMs ?? 0)
    const keptNow = keptSince(roots, settings, nowMs).kept.size
    const windowWalBytes = walCopies.filter((copy) => Wal.segmentEnd(copy.segment, walSegmentBytes) > walFloorLsn)
      .reduce((sum, copy) => sum + copy.sizeBytes, 0)
    const bucketBytes = infos.reduce((sum, info) => sum + info.sizeBytes, 0)
    const otherBytes = bytesByKind.lock + bytesByKind.lease + bytesByKind.other
    return {
      atMs,
      bucketBytes,
      objects: infos.length,
      bytesByKind,
      objectsByKind,
      latest: latest?.summary.checkpoint ?? 0,
      liveBytes,
      livePartBytes: latest?.partBytes ?? 0,
      tombstones: roots.filter((root) => root.summary.expired).length,
      tombstoneBytes,
      otherBytes,
      passes: gc.passes,
      lastPassStartedAtMs,
      lastPass: gc.lastReport === undefined
        ? undefined
        : {
          retained: gc.lastReport.retained.length,
          keptBytes: Object.fromEntries(
            Object.entries(gc.lastReport.kept).map(([reason, tally]) => [reason, tally.bytes])
          )
        },
      kept: kept.size,
      keptNow,
      windowWalBytes,
      boundBytes: (kept.size + 1) * liveBytes + windowWalBytes + tombstoneBytes + otherBytes
    } satisfies BucketSample
  })

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

export interface GrowthRun {
  readonly store: string
  readonly settings: Settings
  readonly samples: ReadonlyArray<BucketSample>
  readonly checkpoints: number
  /** The collector's counters at the end of the run. */
  readonly gc: Omit<GarbageCollector.GcStats, "lastReport">
  readonly writes: number
  readonly requests: CountingObjectStore.RequestSnapshot
  readonly shutdownMetDeadline: boolean
}

const sustained = (
  storeName: string,
  innerLayer: Layer.Layer<ObjectStore, unknown>,
  diskRoot: string,
  settings: Settings
) =>
  quiet(
    Effect.scoped(
      Effect.gen(function*() {
        const inner = yield* Effect.map(Layer.build(innerLayer), (context) => Context.get(context, ObjectStore))
        const counter = yield* CountingObjectStore.makeCounter
        const backends = Layer.merge(
          Layer.succeed(ObjectStore, CountingObjectStore.decorate(inner, counter, layout)),
          FileSystemDisk.layerNode({ root: diskRoot })
        )
        const context = yield* Layer.build(
          layerWithServices().pipe(Layer.provide(backends), Layer.provide(StorageConfig.layer(configOf(settings))))
        )
        const storage = Context.get(context, Storage.Storage)
        const gc = Context.get(context, GarbageCollector.GarbageCollector)
        // The working set, written whole and checkpointed first: from then on every checkpoint has
        // the same live data, as the bound assumes (a growing working set makes the checkpoint in
        // flight bigger than the latest committed one).
        yield* storage.write(file, 0, payload(1, workingSetParts * partSizeBytes))
        yield* storage.checkpoint
        const checkpointsBefore = (yield* storage.stats).checkpoints.completed
        const afterFirstCheckpoint = yield* counter.snapshot
        const block = payload(3, 4096)
        const record = payload(5, 256)
        let writes = 0
        // Four writes and a commit, then a short pause: every part changes between two checkpoints.
        const writeSome = Effect.suspend(() =>
          Effect.forEach(Array.from({ length: 4 }), () => {
            writes += 1
            // Part after part, one 4 KiB block of each per round, a different block every round.
            const offset = (writes % workingSetParts) * partSizeBytes +
              (Math.floor(writes / workingSetParts) % (partSizeBytes / 4096)) * 4096
            return storage.write(file, offset, block).pipe(Effect.zipRight(storage.append(record)))
          }).pipe(Effect.zipRight(storage.commit), Effect.zipRight(Effect.sleep(Duration.millis(10))))
        )
        const writer = yield* Effect.fork(Effect.forever(writeSome))
        const cache = new Map<string, RootSummary>()
        const samples: Array<BucketSample> = []
        const start = now()
        while (now() - start < settings.durationMs) {
          yield* Effect.sleep(Duration.millis(settings.sampleEveryMs))
          // Root manifests carry the wall-clock time of their commit (the library's Clock).
          const gcStats = yield* gc.stats
          samples.push(yield* sampleBucket(inner, settings, cache, round(now() - start, 0), Date.now(), gcStats))
          const exit = writer.unsafePoll()
          if (exit !== null) return yield* Effect.dieMessage(`the writer stopped: ${JSON.stringify(exit)}`)
        }
        yield* Fiber.interrupt(writer)
        const requests = CountingObjectStore.diff(yield* counter.snapshot, afterFirstCheckpoint)
        const stats = yield* storage.stats
        const { lastReport: _, ...gcCounts } = yield* gc.stats
        const report = yield* storage.shutdown
        return {
          store: storeName,
          settings,
          samples,
          checkpoints: stats.checkpoints.completed - checkpointsBefore,
          gc: gcCounts,
          writes,
          requests,
          shutdownMetDeadline: report.metDeadline
        } satisfies GrowthRun
      })
    )
  )

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

const mib = (bytes: number): number => round(bytes / MiB, 2)

/** The bound's check: the samples taken after the first collection pass, and the worst of them. */
export const boundCheck = (run: GrowthRun) => {
  const checked = run.samples.filter((sample) => sample.passes > 0 && sample.liveBytes > 0)
  const ratios = checked.map((sample) => sample.bucketBytes / sample.boundBytes)
  const worstIndex = ratios.reduce((best, ratio, index) => (ratio > (ratios[best] ?? -1) ? index : best), 0)
  return {
    checked,
    worst: checked[worstIndex],
    worstRatio: ratios.length === 0 ? Number.NaN : (ratios[worstIndex] ?? Number.NaN)
  }
}

const perCheckpoint = (run: GrowthRun, pick: (counts: CountingObjectStore.RequestCounts) => number) => {
  const checkpoints = Math.max(1, run.checkpoints)
  const byKind = CountingObjectStore.keyKinds
    .map((kind) => [kind, pick(run.requests.byKind[kind]) / checkpoints] as const)
    .filter(([, value]) => value > 0)
    .map(([kind, value]) => `${kind} ${round(value, 2)}`)
  return {
    value: round(pick(run.requests.total) / checkpoints, 2),
    byKind: byKind.length === 0 ? "none" : byKind.join(", ")
  }
}

/** A run for results.json: the bound's terms per sample, the whole sample only at the end. */
const rawOf = (run: GrowthRun) => ({
  ...run,
  samples: run.samples.map((sample) => ({
    atMs: sample.atMs,
    passes: sample.passes,
    bucketBytes: sample.bucketBytes,
    objects: sample.objects,
    kept: sample.kept,
    liveBytes: sample.liveBytes,
    windowWalBytes: sample.windowWalBytes,
    tombstoneBytes: sample.tombstoneBytes + sample.otherBytes,
    boundBytes: sample.boundBytes
  })),
  lastSample: run.samples[run.samples.length - 1]
})

const rowsOf = (run: GrowthRun): Array<Row> => {
  const { checked, worst, worstRatio } = boundCheck(run)
  const last = run.samples[run.samples.length - 1]
  const written = run.requests.total.bytesPut - run.requests.byKind.lock.bytesPut
  const objectsWritten = run.requests.total.put - run.requests.byKind.lock.put
  const requestRow = (
    label: string,
    pick: (counts: CountingObjectStore.RequestCounts) => number,
    goal: string,
    note?: string
  ): Row => {
    const { value, byKind } = perCheckpoint(run, pick)
    return {
      case: `${run.store}: ${label} per checkpoint`,
      ours: value,
      unit: "requests",
      goal,
      met: undefined,
      note: `by key: ${byKind}${note === undefined ? "" : `; ${note}`}`
    }
  }
  return [
    {
      case: `${run.store}: bucket bytes / bound, worst sample after the first collection pass`,
      ours: round(worstRatio, 5),
      unit: "ratio",
      goal: "≤ 1",
      met: Number.isFinite(worstRatio) && worstRatio <= 1,
      note: worst === undefined
        ? "no sample after the first collection pass"
        : `${checked.length} samples after the first pass (${run.gc.passes} passes, ${run.gc.failures} failed), median ${
          round(median(checked.map((sample) => sample.bucketBytes / sample.boundBytes)), 3)
        }; worst at ${round(worst.atMs / 1000, 1)} s: ${
          mib(worst.bucketBytes)
        } MiB against (${worst.kept} kept + 1) × ${mib(worst.liveBytes)} MiB live + ${
          mib(worst.windowWalBytes)
        } MiB WAL + ${round((worst.tombstoneBytes + worst.otherBytes) / 1024, 1)} KiB of tombstones and lock = ${
          mib(worst.boundBytes)
        } MiB`
    },
    {
      case: `${run.store}: bucket bytes at the end vs bytes written (what a bucket without collection holds)`,
      ours: mib(last?.bucketBytes ?? Number.NaN),
      baseline: mib(written),
      unit: "MiB",
      ratio: round((last?.bucketBytes ?? Number.NaN) / written, 3),
      goal: "reported",
      met: undefined,
      note: `${last?.objects ?? 0} objects against ${objectsWritten} written`
    },
    {
      case: `${run.store}: checkpoints kept at the end vs committed`,
      ours: last?.keptNow ?? Number.NaN,
      baseline: last?.latest ?? Number.NaN,
      unit: "checkpoints",
      goal: "reported",
      met: undefined,
      note: `live data ${mib(last?.liveBytes ?? 0)} MiB, the window's WAL ${mib(last?.windowWalBytes ?? 0)} MiB; ${
        round(run.writes / (run.settings.durationMs / 1000), 0)
      } writes/s`
    },
    requestRow("PUT", (counts) => counts.put, "reported"),
    requestRow("GET (ranged included)", (counts) => counts.get + counts.getRange, "reported"),
    requestRow("HEAD", (counts) => counts.head, "reported"),
    requestRow(
      "LIST (ListObjectsV2 pages)",
      (counts) => counts.listPages,
      "reported",
      `all the collector's: ${
        round(run.requests.total.listPages / Math.max(1, run.gc.passes + run.gc.failures), 1)
      } per pass`
    ),
    requestRow(
      "DELETE",
      (counts) => counts.delete,
      "reported",
      `all the collector's: ${round(run.requests.total.delete / Math.max(1, run.gc.passes), 1)} per pass`
    ),
    {
      case: `${run.store}: tombstones at the end (baseline column: their bytes)`,
      ours: last?.tombstones ?? 0,
      baseline: last?.tombstoneBytes ?? 0,
      unit: "objects / bytes",
      goal: "reported",
      met: undefined,
      note: last === undefined || last.tombstones === 0
        ? "none yet"
        : `${round(last.tombstoneBytes / last.tombstones, 0)} bytes each; a day at one checkpoint a second adds ${
          round((86_400 * last.tombstoneBytes) / last.tombstones / MiB, 1)
        } MiB of them`
    }
  ]
}

const fileTarget = async (
  root: string
): Promise<{ readonly layer: Layer.Layer<ObjectStore, unknown>; readonly stop: () => Promise<void> }> => ({
  layer: FileObjectStore.layerNode({ root: path.join(root, "bucket"), create: true }),
  stop: async () => {}
})

const s3Target = async (
  settings: Settings
): Promise<{ readonly layer: Layer.Layer<ObjectStore, unknown>; readonly stop: () => Promise<void> }> => {
  const server = await startS3ServerProcess("growth-bucket")
  return {
    layer: S3ObjectStore.layer({
      bucket: server.info.bucket,
      endpoint: server.info.endpoint,
      region: server.info.region,
      forcePathStyle: true,
      credentials: server.info.credentials,
      requestTimeoutMs: settings.requestTimeoutMs
    }),
    stop: server.stop
  }
}

/** One run against one store (the file store in a temp directory, or s3rver in its own process). */
export const measure = async (store: "filesystem" | "s3rver", settings: Settings): Promise<GrowthRun> => {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), "bench-growth-"))
  const target = store === "s3rver" ? await s3Target(settings) : await fileTarget(root)
  try {
    return await Effect.runPromise(sustained(store, target.layer, path.join(root, "disk"), settings))
  } finally {
    await target.stop()
    await fsp.rm(root, { recursive: true, force: true })
  }
}

export const run = async (options: BenchOptions): Promise<ScenarioResult> => {
  const started = now()
  const plans: ReadonlyArray<readonly ["filesystem" | "s3rver", number]> = options.quick
    ? [["filesystem", 24_000]]
    : [["filesystem", 150_000], ["s3rver", 60_000]]
  const runs: Array<GrowthRun> = []
  for (const [store, durationMs] of plans) runs.push(await measure(store, settingsOf(options.quick, durationMs)))
  const first = runs[0]?.settings ?? settingsOf(options.quick, 0)
  return {
    id: "growth",
    title: options.quick
      ? "6. Bucket growth under retention (quick: 24 s, file store only)"
      : "6. Bucket growth under retention",
    method:
      `The working set is written whole and checkpointed, then a writer rewrites 4 KiB blocks over ${workingSetParts} parts of ${
        partSizeBytes / 1024
      } KiB (${mib(workingSetParts * partSizeBytes)} MiB of live data) with a 256-byte WAL record per write (${
        walSegmentBytes / 1024
      } KiB segments), four writes and a commit then a 10 ms pause, a checkpoint every ${
        checkpointIntervalMs / 1000
      } s (each uploads about every part again); retention keeps the ${first.retainCheckpointsMin} latest checkpoints and a ${
        first.retainForMs / 1000
      } s window; the collector runs every ${first.gcIntervalMs / 1000} s with a minimum age of ${
        first.gcMinAgeMs / 1000
      } s. ${
        runs.map((each) => `${each.store}: ${each.settings.durationMs / 1000} s`).join(", ")
      }; the bucket is listed every ${first.sampleEveryMs} ms. Bound: bucket bytes ≤ (kept checkpoints + 1) × live data + the window's WAL (+ the tombstones and the lock, as they are), every term read from the bucket at the sample.`,
    ratioMeaning: "bucket bytes / bound (≤ 1 holds the bound); bucket bytes at the end / bytes written",
    oursLabel: "ours",
    baselineLabel: "without collection",
    rows: runs.flatMap(rowsOf),
    notes: [
      "Terms of the bound, per sample, all read from the bucket: live data = the latest committed checkpoint's bytes (its parts, by its root manifest's file sizes, plus its file manifests and its root manifest); kept = the checkpoints `Retention.plan` keeps as of the start of the latest completed collection pass (from the collector's stats; what expired since waits for the next pass), plus every checkpoint made since, a checkpoint a pass still deleting has just expired counting as it was at that start; the window's WAL = the archived WAL segments that end above the oldest kept checkpoint's WAL position; + 1 = the checkpoint being uploaded. The bucket also holds the lock and the tombstones (below), which are added to the bound as they are. Samples before the first pass are in results.json (each sample's terms; `tombstoneBytes` there includes the lock), not held to the bound. The bound is met with equality at times, by design: when the checkpoint being uploaded has all its parts in the bucket and the latest pass left exactly the kept checkpoints, the bucket holds (kept + 1) × live data and the window's WAL, byte for byte.",
      "Tombstones: the collector replaces an expired checkpoint's root manifest with a tombstone and never deletes it, so that its number can never be committed again (a create-if-absent put succeeds again once its key is gone). A tombstone holds the checkpoint's instance, epoch, number, time and WAL position, whatever the number of files, but their number grows by one per expired checkpoint without bound, and every pass lists them all: the row gives the bytes per tombstone and what a day of one checkpoint a second adds.",
      `The minimum age (${
        first.gcMinAgeMs / 1000
      } s) is far below its default (an hour) on purpose, and safe here: it guards objects that a request still in flight may write after a pass listed the bucket, and every request of this run ends within ${
        first.requestTimeoutMs / 1000
      } s (its timeout) plus ${
        first.retryElapsedMaxMs / 1000
      } s of retries; the only writer is this one instance, and the objects of every checkpoint number at or above the latest committed one are kept whatever their age.`,
      "Requests: every request of the run after start-up and the first checkpoint of the whole working set (start-up's listings and lock acquisition excluded, and shutdown's), divided by the checkpoints committed in that time, by key kind in each row's note. The write path sends no LIST, HEAD or DELETE (test/layers/StorageRequests.test.ts holds it to an exact budget: per checkpoint one PUT per changed part and file manifest, one root PUT and one GET of the lock; a full WAL segment one PUT and one GET of the lock); every LIST and DELETE here is the collector's, as are the GETs of file manifests (a pass reads those of every kept checkpoint) and of root manifests, and the PUTs of tombstones (root manifests written over). The lock's PUTs and GETs include its renewals (every 2 s).",
      ...(options.quick
        ? ["A quick run: a few collection passes; it checks that the scenario runs and that the bound holds at all."]
        : [])
    ],
    raw: { runs: runs.map(rawOf) },
    durationMs: now() - started
  }
}
