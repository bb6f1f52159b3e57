/**
 * Scenario 6: bucket growth under retention. A writer rewrites 4 KiB blocks over a working set of
 * 32 parts of 64 KiB (2 MiB of live data) and logs a 256-byte WAL record per write (64 KiB
 * segments), with a checkpoint every second, so that each checkpoint uploads about the whole
 * working set again; retention keeps the 2 latest checkpoints and every one of a short
 * point-in-time window, and the garbage collector runs every few seconds. The bucket is listed every `sampleEveryMs` (through the store itself, not
 * through the counter) and each sample is held to the bound
 *
 *   bucket bytes ≤ (kept checkpoints + 1) × live data + the window's WAL
 *
 * with every term read from the bucket at that moment: the root manifests (and tombstones) say which
 * checkpoints exist, when each was made and where its WAL begins; `Retention.plan` says which are
 * kept; live data is the latest committed checkpoint's part bytes; the window's WAL is the archived
 * WAL from the oldest kept checkpoint's position on. Between two passes the bucket also holds what
 * the next pass will delete, so "kept" is what a pass at most one `gcIntervalMs` ago kept: the
 * checkpoints of the window as it was then, its base, and every checkpoint made since. The bound is
 * checked from the time the first pass that has something to delete is due.
 *
 * Every request goes through the counting decorator (src/layers/CountingObjectStore.ts): the
 * requests per checkpoint are reported by type and by the kind of key.
 */
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { Chunk, Context, Duration, Effect, Either, Fiber, Layer, Stream } from "effect"
import { CheckpointNumber, fileId } from "../src/domain/Ids.js"
import * as KeyLayout from "../src/domain/KeyLayout.js"
import * as Manifest from "../src/domain/Manifest.js"
import * as Retention from "../src/domain/Retention.js"
import * as Wal from "../src/domain/Wal.js"
import * as CountingObjectStore from "../src/layers/CountingObjectStore.js"
import * as FileObjectStore from "../src/layers/FileObjectStore.js"
import * as FileSystemDisk from "../src/layers/FileSystemDisk.js"
import * as S3ObjectStore from "../src/layers/S3ObjectStore.js"
import { ObjectStore, type ObjectStoreService } from "../src/services/ObjectStore.js"
import type * as StorageConfig from "../src/services/StorageConfig.js"
import { type BenchOptions, MiB, now, openStorage, payload, quiet, round, type Row, type ScenarioResult, startS3ServerProcess } from "./common.js"

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
  readonly liveBytes: number
  /** Checkpoints kept as of a pass one `gcIntervalMs` ago, plus every one made since. */
  readonly kept: number
  /** Checkpoints the retention keeps right now. */
  readonly keptNow: number
  readonly windowWalBytes: number
  readonly boundBytes: number
}

/** A root manifest as the sampler needs it; cached by key and size (a tombstone has another size). */
interface RootSummary {
  readonly summary: Retention.CheckpointSummary
  readonly liveBytes: number
}

const zeroByKind = (): Record<CountingObjectStore.KeyKind, number> =>
  Object.fromEntries(CountingObjectStore.keyKinds.map((kind) => [kind, 0])) as Record<CountingObjectStore.KeyKind, number>

const readRoot = (store: ObjectStoreService, key: string, checkpoint: number) =>
  Effect.flatMap(store.get(key), (bytes) => {
    const decoded = Manifest.decodeRootObject(key, bytes, CheckpointNumber.make(checkpoint))
    if (Either.isLeft(decoded)) return Effect.fail(decoded.left)
    const root = decoded.right
    return Effect.succeed<RootSummary>(
      root._tag === "Committed"
        ? {
          summary: { checkpoint, createdAtMs: root.manifest.createdAtMs, walPosition: root.manifest.walPosition, expired: false },
          liveBytes: root.manifest.files.reduce((sum, entry) => sum + entry.sizeBytes, 0)
        }
        : { summary: { checkpoint, createdAtMs: root.tombstone.createdAtMs, walPosition: root.tombstone.walPosition, expired: true }, liveBytes: 0 }
    )
  })

/** The checkpoints kept by a pass at `passAtMs`, and every one made after it. */
const keptSince = (summaries: ReadonlyArray<Retention.CheckpointSummary>, settings: Settings, passAtMs: number) => {
  const policy = { retainCheckpointsMin: settings.retainCheckpointsMin, retainForMs: settings.retainForMs }
  const seen = summaries.filter((summary) => summary.createdAtMs <= passAtMs)
  const plan = Retention.plan(seen, policy, [], passAtMs, 0)
  const kept = new Set([...plan.retained.keys(), ...summaries.filter((summary) => summary.createdAtMs > passAtMs && !summary.expired).map((summary) => summary.checkpoint)])
  return { kept, walFloorLsn: plan.retained.size === 0 ? 0 : plan.walFloorLsn }
}

/** Lists the bucket and computes the bound's terms. */
const sampleBucket = (store: ObjectStoreService, settings: Settings, cache: Map<string, RootSummary>, atMs: number, nowMs: number) =>
  Effect.gen(function* () {
    const infos = Chunk.toReadonlyArray(yield* Stream.runCollect(store.list(KeyLayout.rootPrefix(layout))))
    const bytesByKind = zeroByKind()
    const objectsByKind = zeroByKind()
    const roots: Array<RootSummary> = []
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
      const root = cached ?? (yield* Effect.orElseSucceed(readRoot(store, info.key, parsed.value.checkpoint), () => undefined))
      if (root === undefined) continue
      cache.set(cacheKey, root)
      roots.push(root)
    }
    const summaries = roots.map((root) => root.summary)
    const committed = roots.filter((root) => !root.summary.expired).sort((left, right) => left.summary.checkpoint - right.summary.checkpoint)
    const latest = committed[committed.length - 1]
    const liveBytes = latest?.liveBytes ?? 0
    const { kept, walFloorLsn } = keptSince(summaries, settings, nowMs - settings.gcIntervalMs)
    const keptNow = keptSince(summaries, settings, nowMs).kept.size
    const windowWalBytes = walCopies.filter((copy) => Wal.segmentEnd(copy.segment, walSegmentBytes) > walFloorLsn).reduce((sum, copy) => sum + copy.sizeBytes, 0)
    const bucketBytes = infos.reduce((sum, info) => sum + info.sizeBytes, 0)
    return {
      atMs,
      bucketBytes,
      objects: infos.length,
      bytesByKind,
      objectsByKind,
      latest: latest?.summary.checkpoint ?? 0,
      liveBytes,
      kept: kept.size,
      keptNow,
      windowWalBytes,
      boundBytes: (kept.size + 1) * liveBytes + windowWalBytes
    } satisfies BucketSample
  })

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

export interface GrowthRun {
  readonly store: string
  readonly settings: Settings
  readonly samples: ReadonlyArray<BucketSample>
  /** When the first pass that has something to delete is due (ms after the start). */
  readonly firstPassDueMs: number
  readonly checkpoints: number
  readonly writes: number
  readonly requests: CountingObjectStore.RequestSnapshot
  readonly shutdownMetDeadline: boolean
}

const sustained = (storeName: string, innerLayer: Layer.Layer<ObjectStore, unknown>, diskRoot: string, settings: Settings) =>
  quiet(
    Effect.scoped(
      Effect.gen(function* () {
        const inner = yield* Effect.map(Layer.build(innerLayer), (context) => Context.get(context, ObjectStore))
        const counter = yield* CountingObjectStore.makeCounter
        const backends = Layer.merge(Layer.succeed(ObjectStore, CountingObjectStore.decorate(inner, counter, layout)), FileSystemDisk.layerNode({ root: diskRoot }))
        const storage = yield* openStorage(backends, configOf(settings))
        const afterOpen = yield* counter.snapshot
        const block = payload(3, 4096)
        const record = payload(5, 256)
        let writes = 0
        // Four writes and a commit, then a short pause: every part changes between two checkpoints.
        const writeSome = Effect.suspend(() =>
          Effect.forEach(Array.from({ length: 4 }), () => {
            writes += 1
            // Part after part, one 4 KiB block of each per round, a different block every round.
            const offset = (writes % workingSetParts) * partSizeBytes + (Math.floor(writes / workingSetParts) % (partSizeBytes / 4096)) * 4096
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
          samples.push(yield* sampleBucket(inner, settings, cache, round(now() - start, 0), Date.now()))
          const exit = writer.unsafePoll()
          if (exit !== null) return yield* Effect.dieMessage(`the writer stopped: ${JSON.stringify(exit)}`)
        }
        yield* Fiber.interrupt(writer)
        const requests = CountingObjectStore.diff(yield* counter.snapshot, afterOpen)
        const stats = yield* storage.stats
        const report = yield* storage.shutdown
        // The first checkpoint leaves the retention when the window has passed it and a newer one
        // is the window's base; its objects are then older than the minimum age; a pass follows
        // within one interval.
        const firstPassDueMs = checkpointIntervalMs * 2 + settings.retainForMs + Math.max(0, settings.gcMinAgeMs - settings.retainForMs) + settings.gcIntervalMs + 1_000
        return {
          store: storeName,
          settings,
          samples,
          firstPassDueMs,
          checkpoints: stats.checkpoints.completed,
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

/** The bound's check: the samples taken once the first pass was due, and the worst of them. */
export const boundCheck = (run: GrowthRun) => {
  const checked = run.samples.filter((sample) => sample.atMs >= run.firstPassDueMs && sample.liveBytes > 0)
  const ratios = checked.map((sample) => sample.bucketBytes / sample.boundBytes)
  const worstIndex = ratios.reduce((best, ratio, index) => (ratio > (ratios[best] ?? -1) ? index : best), 0)
  return { checked, worst: checked[worstIndex], worstRatio: ratios.length === 0 ? Number.NaN : (ratios[worstIndex] ?? Number.NaN) }
}

const perCheckpoint = (run: GrowthRun, pick: (counts: CountingObjectStore.RequestCounts) => number) => {
  const checkpoints = Math.max(1, run.checkpoints)
  const byKind = CountingObjectStore.keyKinds
    .map((kind) => [kind, pick(run.requests.byKind[kind]) / checkpoints] as const)
    .filter(([, value]) => value > 0)
    .map(([kind, value]) => `${kind} ${round(value, 2)}`)
  return { value: round(pick(run.requests.total) / checkpoints, 2), byKind: byKind.length === 0 ? "none" : byKind.join(", ") }
}

const rowsOf = (run: GrowthRun): Array<Row> => {
  const { checked, worst, worstRatio } = boundCheck(run)
  const last = run.samples[run.samples.length - 1]
  const written = run.requests.total.bytesPut - run.requests.byKind.lock.bytesPut
  const objectsWritten = run.requests.total.put - run.requests.byKind.lock.put
  const requestRow = (label: string, pick: (counts: CountingObjectStore.RequestCounts) => number, goal: string, note?: string): Row => {
    const { value, byKind } = perCheckpoint(run, pick)
    return { case: `${run.store}: ${label} per checkpoint`, ours: value, unit: "requests", goal, met: undefined, note: `by key: ${byKind}${note === undefined ? "" : `; ${note}`}` }
  }
  return [
    {
      case: `${run.store}: bucket bytes / bound, worst sample once the first collection was due`,
      ours: round(worstRatio, 3),
      unit: "ratio",
      goal: "≤ 1",
      met: Number.isFinite(worstRatio) && worstRatio <= 1,
      note: worst === undefined
        ? "no sample after the first collection was due"
        : `${checked.length} samples from ${run.firstPassDueMs / 1000} s; worst at ${round(worst.atMs / 1000, 1)} s: ${mib(worst.bucketBytes)} MiB against (${worst.kept} kept + 1) × ${mib(worst.liveBytes)} MiB live + ${mib(worst.windowWalBytes)} MiB WAL = ${mib(worst.boundBytes)} MiB`
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
      note: `live data ${mib(last?.liveBytes ?? 0)} MiB, the window's WAL ${mib(last?.windowWalBytes ?? 0)} MiB; ${round(run.writes / (run.settings.durationMs / 1000), 0)} writes/s`
    },
    requestRow("PUT", (counts) => counts.put, "reported"),
    requestRow("GET (ranged included)", (counts) => counts.get + counts.getRange, "reported"),
    requestRow("HEAD", (counts) => counts.head, "reported"),
    requestRow("LIST (ListObjectsV2 pages)", (counts) => counts.listPages, "reported", "the collector's passes; the write path sends none"),
    requestRow("DELETE", (counts) => counts.delete, "reported")
  ]
}

const fileTarget = async (root: string): Promise<{ readonly layer: Layer.Layer<ObjectStore, unknown>; readonly stop: () => Promise<void> }> => ({
  layer: FileObjectStore.layerNode({ root: path.join(root, "bucket"), create: true }),
  stop: async () => {}
})

const s3Target = async (settings: Settings): Promise<{ readonly layer: Layer.Layer<ObjectStore, unknown>; readonly stop: () => Promise<void> }> => {
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
  const plans: ReadonlyArray<readonly ["filesystem" | "s3rver", number]> = options.quick ? [["filesystem", 24_000]] : [["filesystem", 150_000], ["s3rver", 60_000]]
  const runs: Array<GrowthRun> = []
  for (const [store, durationMs] of plans) runs.push(await measure(store, settingsOf(options.quick, durationMs)))
  const first = runs[0]?.settings ?? settingsOf(options.quick, 0)
  return {
    id: "growth",
    title: options.quick ? "6. Bucket growth under retention (quick: 24 s, file store only)" : "6. Bucket growth under retention",
    method: `A writer rewrites 4 KiB blocks over ${workingSetParts} parts of ${partSizeBytes / 1024} KiB (${mib(workingSetParts * partSizeBytes)} MiB of live data) with a 256-byte WAL record per write (${walSegmentBytes / 1024} KiB segments), four writes and a commit then a 10 ms pause, a checkpoint every ${checkpointIntervalMs / 1000} s (each uploads about every part again); retention keeps the ${first.retainCheckpointsMin} latest checkpoints and a ${first.retainForMs / 1000} s window; the collector runs every ${first.gcIntervalMs / 1000} s with a minimum age of ${first.gcMinAgeMs / 1000} s. ${runs.map((each) => `${each.store}: ${each.settings.durationMs / 1000} s`).join(", ")}; the bucket is listed every ${first.sampleEveryMs} ms. Bound: bucket bytes ≤ (kept checkpoints + 1) × live data + the window's WAL, every term read from the bucket at the sample.`,
    ratioMeaning: "bucket bytes / bound (≤ 1 holds the bound); bucket bytes at the end / bytes written",
    oursLabel: "ours",
    baselineLabel: "without collection",
    rows: runs.flatMap(rowsOf),
    notes: [
      "Terms of the bound, per sample: live data = the latest committed checkpoint's part bytes (its root manifest's file sizes); kept = the checkpoints `Retention.plan` keeps as of one collection interval before the sample (the latest pass may be that old, and what expired since waits for the next one), plus every checkpoint made since; the window's WAL = the archived WAL segments that end above the oldest kept checkpoint's WAL position. The + 1 is the checkpoint being uploaded; root manifests of expired checkpoints stay as small tombstones and count in the bucket's bytes. Samples before the first collection was due (the first checkpoint out of the window, its objects past the minimum age, plus one interval) are reported in results.json but not held to the bound.",
      `The minimum age (${first.gcMinAgeMs / 1000} s) is far below its default (an hour) on purpose, and safe here: it guards objects that a request still in flight may write after a pass listed the bucket, and every request of this run ends within ${first.requestTimeoutMs / 1000} s (its timeout) plus ${first.retryElapsedMaxMs / 1000} s of retries; the only writer is this one instance, and the objects of every checkpoint number above the latest committed one are kept whatever their age.`,
      "Requests: every request of the run after start-up (start-up's listings and lock acquisition excluded), divided by the checkpoints committed; by key kind in the notes of each row. The write path sends no LIST and no HEAD (test/layers/StorageRequests.test.ts holds it to an exact budget: per checkpoint one PUT per changed part and file manifest, one root PUT, one GET of the lock); listings and deletes here are the collector's, and the lock's PUTs and GETs include its renewals (every 2 s).",
      ...(options.quick ? ["A quick run: a few collection passes; it checks that the scenario runs and that the bound holds at all."] : [])
    ],
    raw: { runs },
    durationMs: now() - started
  }
}
