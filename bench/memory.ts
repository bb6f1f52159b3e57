/**
 * Scenario 4: memory under a sustained write + checkpoint run. A writer fiber rewrites 4 KiB
 * blocks of a 32-part working set (64 KiB parts) and appends a WAL record per write (a commit every
 * 100), while periodic checkpoints upload the dirty parts, over the file store and the file-system
 * disk (both in a temp directory, so the bucket's bytes do not live in this process's memory).
 * RSS and heap are sampled throughout, each sample right after a full garbage collection (so a
 * sample is what the process retains, not where V8's collection cycle happens to be: without it
 * the heap is a sawtooth whose peaks V8 lets grow over the run, and the mean of a minute depends on
 * the phase of that sawtooth more than on what is kept); flat = the mean of the last half within
 * 10% of the first half's (the full run lasts 2 minutes: the last minute against the first). The
 * queue depth is sampled against its capacity.
 */
import { Duration, Effect, Fiber, Layer } from "effect"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileId } from "../src/domain/Ids.js"
import * as FileObjectStore from "../src/layers/FileObjectStore.js"
import * as FileSystemDisk from "../src/layers/FileSystemDisk.js"
import {
  type BenchOptions,
  collectGarbage,
  mean,
  MiB,
  now,
  openStorage,
  payload,
  quiet,
  round,
  type Row,
  type ScenarioResult
} from "./common.js"

const partSizeBytes = 64 * 1024
const workingSetParts = 32
const queueCapacity = 64
const file = fileId("bench/memory")

interface MemorySample {
  readonly atMs: number
  readonly rssMiB: number
  readonly heapUsedMiB: number
  readonly queueDepth: number
  readonly loadedMiB: number
  readonly writes: number
  readonly checkpoints: number
}

const sustained = (root: string, durationMs: number, sampleEveryMs: number, checkpointIntervalMs: number) =>
  quiet(
    Effect.scoped(
      Effect.gen(function*() {
        const backends = Layer.merge(
          FileObjectStore.layerNode({ root: path.join(root, "bucket"), create: true }),
          FileSystemDisk.layerNode({ root: path.join(root, "disk") })
        )
        const storage = yield* openStorage(backends, {
          partSizeBytes,
          workerCount: 4,
          queueCapacity,
          walSegmentBytes: MiB,
          checkpointIntervalMs,
          checkpointDeadlineMs: 30_000,
          requestTimeoutMs: 10_000,
          localBytesMax: 64 * MiB,
          evictionIntervalMs: 1_000
        })
        const block = payload(3, 4096)
        const record = payload(5, 64)
        let writes = 0
        const writeOne = Effect.suspend(() => {
          writes += 1
          const offset = ((writes * 7919) % workingSetParts) * partSizeBytes + (writes % 16) * 4096
          return storage.write(file, offset, block).pipe(
            Effect.zipRight(storage.append(record)),
            Effect.zipRight(writes % 100 === 0 ? storage.commit : Effect.void)
          )
        })
        const writer = yield* Effect.fork(Effect.forever(writeOne))
        const samples: Array<MemorySample> = []
        const start = now()
        while (now() - start < durationMs) {
          yield* Effect.sleep(Duration.millis(sampleEveryMs))
          const stats = yield* storage.stats
          collectGarbage()
          const memory = process.memoryUsage()
          samples.push({
            atMs: round(now() - start, 0),
            rssMiB: round(memory.rss / MiB, 1),
            heapUsedMiB: round(memory.heapUsed / MiB, 1),
            queueDepth: stats.queue.depth,
            loadedMiB: round(stats.parts.loadedBytes / MiB, 2),
            writes,
            checkpoints: stats.checkpoints.completed
          })
          // A writer that died (a failure of the library) ends the run with that failure.
          const exit = writer.unsafePoll()
          if (exit !== null) return yield* Effect.dieMessage(`the writer stopped: ${JSON.stringify(exit)}`)
        }
        yield* Fiber.interrupt(writer)
        const stats = yield* storage.stats
        const report = yield* storage.shutdown
        return { samples, stats, shutdownMs: report.durationMs, metDeadline: report.metDeadline }
      })
    )
  )

export const run = async (options: BenchOptions): Promise<ScenarioResult> => {
  const started = now()
  const durationMs = options.quick ? 4_000 : 120_000
  const sampleEveryMs = options.quick ? 200 : 1_000
  const checkpointIntervalMs = options.quick ? 500 : 2_000
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), "bench-memory-"))
  try {
    const result = await Effect.runPromise(sustained(root, durationMs, sampleEveryMs, checkpointIntervalMs))
    const samples = result.samples
    const half = Math.floor(samples.length / 2)
    const first = samples.slice(0, half)
    const last = samples.slice(samples.length - half)
    const rssRatio = mean(last.map((sample) => sample.rssMiB)) / mean(first.map((sample) => sample.rssMiB))
    const heapRatio = mean(last.map((sample) => sample.heapUsedMiB)) / mean(first.map((sample) => sample.heapUsedMiB))
    const maxDepth = Math.max(...samples.map((sample) => sample.queueDepth))
    const writes = samples[samples.length - 1]?.writes ?? 0
    const label = options.quick ? "quick: first vs last 2 s" : "first vs last minute"
    const rows: Array<Row> = [
      {
        case: `RSS after a full collection, mean of ${label}`,
        ours: round(mean(last.map((sample) => sample.rssMiB)), 1),
        baseline: round(mean(first.map((sample) => sample.rssMiB)), 1),
        unit: "MiB",
        ratio: round(rssRatio, 3),
        goal: "ratio ≤ 1.10",
        met: rssRatio <= 1.1
      },
      {
        case: `heap used after a full collection, mean of ${label}`,
        ours: round(mean(last.map((sample) => sample.heapUsedMiB)), 1),
        baseline: round(mean(first.map((sample) => sample.heapUsedMiB)), 1),
        unit: "MiB",
        ratio: round(heapRatio, 3),
        goal: "ratio ≤ 1.10",
        met: heapRatio <= 1.1
      },
      {
        case: "queue depth, max sampled (baseline column: capacity)",
        ours: maxDepth,
        baseline: queueCapacity,
        unit: "tasks",
        ratio: round(maxDepth / queueCapacity, 3),
        goal: "≤ capacity",
        met: maxDepth <= queueCapacity
      },
      {
        case: "writes (4 KiB + one WAL record each) / checkpoints completed",
        ours: writes,
        baseline: result.stats.checkpoints.completed,
        unit: "count",
        goal: "reported",
        met: undefined,
        note: `${round(writes / (durationMs / 1000), 0)} writes/s`
      }
    ]
    return {
      id: "memory",
      title: options.quick ? "4. Memory (quick: 4 s instead of 2 minutes)" : "4. Memory (2 minutes)",
      method: `Sustained writes over ${workingSetParts} parts of ${
        partSizeBytes / 1024
      } KiB with a checkpoint every ${checkpointIntervalMs} ms, file store + file-system disk in a temp directory, sampled every ${sampleEveryMs} ms for ${
        durationMs / 1000
      } s.`,
      ratioMeaning: "last half / first half (≤ 1.10 is flat); for the queue, max depth / capacity",
      oursLabel: "last half",
      baselineLabel: "first half",
      rows,
      notes: [
        "Each sample follows a full collection (V8's gc, enabled at run time), about one per second: it costs the writer a few ms per sample and makes the figures what the process retains. Without it, the heap used is a sawtooth between collections whose peaks V8 lets grow as the run goes on (in one 2-minute run, from about 110 to 220 MiB while the floor stayed at 70 to 80 MiB), so a mean over a minute measures the phase of that sawtooth, not a leak.",
        "RSS is the whole process's (this scenario runs in a process of its own, as every scenario does): the Node runtime, the loaded modules and V8's heap reservation besides the run's own data; what this scenario measures is its growth over the run, the ratio.",
        ...(options.quick ? ["A 4-second run says nothing about leaks; it only checks that the scenario runs."] : [])
      ],
      raw: {
        durationMs,
        sampleEveryMs,
        checkpointIntervalMs,
        samples,
        shutdownMs: result.shutdownMs,
        shutdownMetDeadline: result.metDeadline
      },
      durationMs: now() - started
    }
  } finally {
    await fsp.rm(root, { recursive: true, force: true })
  }
}
