/**
 * Scenario 3: shutdown latency, p50/p99 over repeated runs, each case against its deadline:
 * - idle: nothing dirty, nothing queued;
 * - under write load: a writer fiber rewrites parts while periodic checkpoints upload them;
 * - S3 stalled: dirty parts, then every object-store request hangs forever;
 * - every task failing: dirty parts, then every object-store request fails (transient, so the
 *   workers retry until their budget or the deadline ends them).
 * Each run opens a fresh Storage over an in-memory bucket behind the fault decorator and an
 * in-memory disk, and times `storage.shutdown` on the wall clock (from the call to its report).
 * There is no baseline to compare with (OrioleDB's shutdown had no deadline: docs/ORIGINAL.md §7);
 * the "baseline" column is the deadline, and the ratio p99 / deadline.
 */
import { Effect, Fiber, Layer } from "effect"
import { fileId } from "../src/domain/Ids.js"
import * as FaultyObjectStore from "../src/layers/FaultyObjectStore.js"
import * as MemoryDisk from "../src/layers/MemoryDisk.js"
import * as MemoryObjectStore from "../src/layers/MemoryObjectStore.js"
import type * as StorageConfig from "../src/services/StorageConfig.js"
import {
  type BenchOptions,
  now,
  openStorage,
  payload,
  percentile,
  quiet,
  round,
  type Row,
  type ScenarioResult
} from "./common.js"

const partSizeBytes = 64 * 1024
const file = fileId("bench/shutdown")

const config: Partial<StorageConfig.StorageConfigValue> = {
  partSizeBytes,
  workerCount: 4,
  queueCapacity: 256,
  requestTimeoutMs: 200,
  retryAttemptsMax: 5,
  retryDelayBaseMs: 10,
  retryDelayMaxMs: 50,
  retryElapsedMaxMs: 1_000,
  drainDeadlineMs: 250,
  shutdownDeadlineMs: 1_000,
  shutdownCheckpointDeadlineMs: 500,
  checkpointIntervalMs: 0,
  checkpointDeadlineMs: 2_000,
  leaseTimeoutMs: 2_000,
  evictionIntervalMs: 1_000,
  localBytesMax: 256 * 1024 * 1024
}

type Case = "idle" | "write load" | "S3 stalled" | "every task failing"
const cases: ReadonlyArray<Case> = ["idle", "write load", "S3 stalled", "every task failing"]

interface Sample {
  readonly wallMs: number
  readonly reportMs: number
  readonly metDeadline: boolean
  readonly finalCheckpoint: string
  readonly fibersAlive: number
  readonly leasesHeld: number
}

const chunk = payload(7, 4096)

const once = (kind: Case) =>
  quiet(
    Effect.scoped(
      Effect.gen(function*() {
        const state = yield* MemoryObjectStore.makeBucket("bench-bucket")
        const faults = yield* FaultyObjectStore.makeController({ seed: 1 })
        const store = FaultyObjectStore.layer(faults).pipe(Layer.provide(MemoryObjectStore.layerWithBucket(state)))
        const storage = yield* openStorage(Layer.merge(store, MemoryDisk.layer), {
          ...config,
          checkpointIntervalMs: kind === "write load" ? 50 : 0
        })
        let writer: Fiber.RuntimeFiber<void> | undefined
        if (kind === "write load") {
          let counter = 0
          const writeOne = Effect.suspend(() => {
            counter += 1
            return storage.write(file, ((counter * 7919) % 64) * partSizeBytes + (counter % 16) * 4096, chunk)
          })
          // Writes until shutdown refuses them; yields between writes so checkpoints interleave.
          writer = yield* Effect.fork(Effect.forever(Effect.zipRight(writeOne, Effect.yieldNow())).pipe(Effect.ignore))
          yield* Effect.sleep("150 millis")
        } else if (kind !== "idle") {
          for (let part = 0; part < 16; part++) yield* storage.write(file, part * partSizeBytes, chunk)
          if (kind === "S3 stalled") yield* faults.stall()
          else yield* faults.errorRate(1)
        }
        const start = now()
        const report = yield* storage.shutdown
        const wallMs = now() - start
        if (writer !== undefined) yield* Fiber.interrupt(writer)
        yield* faults.heal
        const sample: Sample = {
          wallMs,
          reportMs: report.durationMs,
          metDeadline: report.metDeadline,
          finalCheckpoint: report.finalCheckpoint.outcome,
          fibersAlive: report.fibersAlive,
          leasesHeld: report.leasesHeld
        }
        return sample
      })
    )
  )

export const run = async (options: BenchOptions): Promise<ScenarioResult> => {
  const started = now()
  const deadlineMs = config.shutdownDeadlineMs ?? 0
  const raw: Record<string, Array<Sample>> = {}
  const rows: Array<Row> = []
  for (const kind of cases) {
    const slow = kind === "S3 stalled" || kind === "every task failing"
    const repetitions = options.quick ? 3 : slow ? 10 : 30
    const samples: Array<Sample> = []
    for (let repetition = 0; repetition < repetitions; repetition++) samples.push(await Effect.runPromise(once(kind)))
    raw[kind] = samples
    const walls = samples.map((sample) => sample.wallMs)
    const p50 = percentile(walls, 50)
    const p99 = percentile(walls, 99)
    const max = Math.max(...walls)
    const allMet = max <= deadlineMs && samples.every((sample) => sample.metDeadline)
    const clean = samples.every((sample) => sample.fibersAlive === 0 && sample.leasesHeld === 0)
    const outcomes = [...new Set(samples.map((sample) => sample.finalCheckpoint))].join("/")
    rows.push({
      case: `${kind}: p50`,
      ours: round(p50, 1),
      baseline: deadlineMs,
      unit: "ms",
      ratio: round(p50 / deadlineMs, 3),
      goal: kind === "idle" ? "< 50 ms" : "reported",
      met: kind === "idle" ? p50 < 50 : undefined
    })
    rows.push({
      case: `${kind}: p99 (max ${round(max, 1)} ms, ${repetitions} runs)`,
      ours: round(p99, 1),
      baseline: deadlineMs,
      unit: "ms",
      ratio: round(p99 / deadlineMs, 3),
      goal: kind === "idle" ? "every run ≤ deadline; p99 < 50 ms" : "every run ≤ deadline",
      met: kind === "idle" ? allMet && p99 < 50 : allMet,
      note: `final checkpoint ${outcomes}${clean ? "" : "; fibers or leases left!"}`
    })
  }
  return {
    id: "shutdown",
    title: "3. Shutdown latency",
    method:
      `Fresh Storage per run (in-memory bucket behind the fault decorator, in-memory disk, 64 KiB parts, 4 workers); wall-clock time of \`storage.shutdown\`. Deadlines: shutdown ${deadlineMs} ms, of which the final checkpoint ${config.shutdownCheckpointDeadlineMs} ms and the drain ${config.drainDeadlineMs} ms; request timeout ${config.requestTimeoutMs} ms.`,
    ratioMeaning: "time / shutdown deadline (must stay ≤ 1)",
    oursLabel: "ours (ms)",
    baselineLabel: "deadline (ms)",
    rows,
    notes: [
      "No baseline: OrioleDB's shutdown had no deadline at all (it could wait forever, #340, #373); the goal is the deadline itself.",
      "\"final checkpoint\" is how the shutdown checkpoint ended in those runs: completed, none (nothing dirty), timed-out or failed. Stalled and failing stores cannot complete it: the data stays in the local WAL and dirty parts, and the report says so.",
      "The bucket and disk are in memory, so these figures are the protocol's cost, not a network's."
    ],
    raw: { deadlineMs, config, samples: raw },
    durationMs: now() - started
  }
}
