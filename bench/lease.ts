/**
 * Scenario 5: the lease fast path: `storage.lease` on parts already Loaded (no load, no wait),
 * acquired and released in a scope, from one fiber and from 8 concurrent fibers. The baseline is
 * the least a scoped lease can cost in Effect: `Effect.scoped` over an `acquireRelease` that bumps
 * and drops a counter in a `Ref`.
 */
import { Effect, Layer, Ref } from "effect"
import { fileId, partIndex } from "../src/domain/Ids.js"
import * as MemoryDisk from "../src/layers/MemoryDisk.js"
import * as MemoryObjectStore from "../src/layers/MemoryObjectStore.js"
import {
  type BenchOptions,
  median,
  now,
  openStorage,
  payload,
  quiet,
  round,
  type Row,
  type ScenarioResult
} from "./common.js"

const partSizeBytes = 64 * 1024
const partCount = 16
const file = fileId("bench/lease")
const parts = Array.from({ length: partCount }, (_, index) => partIndex(index))

const measure = (count: number, fibers: number, leaseOne: (index: number) => Effect.Effect<void, unknown>) =>
  Effect.gen(function*() {
    const perFiber = Math.floor(count / fibers)
    const start = now()
    yield* Effect.forEach(
      Array.from({ length: fibers }, (_, fiber) => fiber),
      (fiber) =>
        Effect.gen(function*() {
          for (let index = 0; index < perFiber; index++) yield* leaseOne(fiber * perFiber + index)
        }),
      { concurrency: fibers, discard: true }
    )
    return ((perFiber * fibers) / (now() - start)) * 1000
  })

const once = (count: number, repetitions: number) =>
  quiet(
    Effect.scoped(
      Effect.gen(function*() {
        const storage = yield* openStorage(Layer.merge(MemoryObjectStore.layer, MemoryDisk.layer), {
          partSizeBytes,
          checkpointIntervalMs: 0,
          evictionIntervalMs: 3_600_000,
          localBytesMax: 1024 * 1024 * 1024
        })
        // Loads every part (a write leases it; a part never uploaded is created Loaded).
        for (const part of parts) yield* storage.write(file, part * partSizeBytes, payload(part + 1, 4096))
        const ours = (index: number) => Effect.scoped(storage.lease(file, parts[index % partCount] ?? partIndex(0)))
        const counter = yield* Ref.make(0)
        const bare = (_index: number) =>
          Effect.scoped(
            Effect.acquireRelease(
              Ref.update(counter, (held) => held + 1),
              () => Ref.update(counter, (held) => held - 1)
            )
          )
        // Warm-up.
        yield* measure(Math.min(count, 2_000), 1, ours)
        yield* measure(Math.min(count, 2_000), 1, bare)
        const figures: Record<string, { ours: Array<number>; bare: Array<number> }> = {
          "1": { ours: [], bare: [] },
          "8": { ours: [], bare: [] }
        }
        for (let repetition = 0; repetition < repetitions; repetition++) {
          for (const fibers of [1, 8]) {
            const entry = figures[String(fibers)]
            if (entry === undefined) continue
            entry.ours.push(yield* measure(count, fibers, ours))
            entry.bare.push(yield* measure(count, fibers, bare))
          }
        }
        const stats = yield* storage.stats
        if (stats.parts.leasesHeld !== 0) {
          return yield* Effect.dieMessage(`${stats.parts.leasesHeld} leases still held after the run`)
        }
        return figures
      })
    )
  )

export const run = async (options: BenchOptions): Promise<ScenarioResult> => {
  const started = now()
  const count = options.quick ? 4_000 : 20_000
  const repetitions = options.quick ? 1 : 3
  const figures = await Effect.runPromise(once(count, repetitions))
  const rows: Array<Row> = []
  for (const fibers of ["1", "8"]) {
    const entry = figures[fibers]
    if (entry === undefined) continue
    const ours = median(entry.ours)
    const bare = median(entry.bare)
    rows.push({
      case: `${fibers} fiber${fibers === "1" ? "" : "s"}, ${partCount} loaded parts`,
      ours: Math.round(ours),
      baseline: Math.round(bare),
      unit: "leases/s",
      ratio: round(ours / bare, 3),
      goal: "reported",
      met: undefined,
      note: `${round(1e6 / ours, 2)} µs per lease`
    })
  }
  return {
    id: "lease",
    title: "5. Lease fast path",
    method:
      `${count} lease-and-release cycles per measurement on Loaded parts (in-memory bucket and disk), median of ${repetitions} repetition(s) after a warm-up.`,
    ratioMeaning: "ours / bare scoped resource leases per second (higher is better)",
    oursLabel: "ours (leases/s)",
    baselineLabel: "bare acquireRelease (leases/s)",
    rows,
    notes: [
      "The issue sets no goal for this scenario: the figures are reported. Ours checks shutdown, finds the part, checks its state and counts the lease (and releases it) on every cycle.",
      "With 8 fibers on one Node thread, leases interleave rather than run in parallel: the figure shows contention costs, not parallel speed-up."
    ],
    raw: { count, repetitions, partCount, leasesPerSecond: figures },
    durationMs: now() - started
  }
}
