/**
 * The simulated bucket: one in-memory bucket (src/layers/MemoryObjectStore.ts) that every instance
 * of a run shares, seen by each instance through its own fault decorator
 * (src/layers/FaultyObjectStore.ts), and read by the auditor directly, below every fault.
 *
 * Faults of a schedule (test/sim/Schedule.ts) map onto the decorator's rules: `latency` →
 * `latency(ms)`, `transient` → `errorRate(p)` (drawn from the run's seeded `Random`), `permanent` →
 * `failPermanently`, `stall` → `stall`, `lostResponse` → `lostResponse(filter, { probability: p })`, `late` → `late(maxMs, filter, { probability: p })`; the target's operation
 * family selects `put`, `delete`, or `get`/`getRange`/`head`, or every operation; its key family a key prefix of the layout (both
 * systems use the same families: data/, manifests/, checkpoints/, wal/, lock).
 */
import { Effect, Ref } from "effect"
import * as FaultyObjectStore from "../../src/layers/FaultyObjectStore.js"
import * as MemoryObjectStore from "../../src/layers/MemoryObjectStore.js"
import type { ObjectStoreService } from "../../src/services/ObjectStore.js"
import type { Fault, FaultTarget } from "./Schedule.js"

/** What the harness does with one instance's faults. */
export interface FaultControl {
  readonly inject: (fault: Fault) => Effect.Effect<void>
  readonly heal: Effect.Effect<void>
  /** Whether a fault was injected since the last heal. */
  readonly active: Effect.Effect<boolean>
}

/** One instance's view of the bucket. */
export interface FaultyView {
  readonly store: ObjectStoreService
  readonly faults: FaultControl
  readonly controller: FaultyObjectStore.FaultControllerService
}

export interface SimBucket {
  readonly state: MemoryObjectStore.MemoryBucketState
  /** The bucket with no fault: for the auditor and for restore-time reads. */
  readonly raw: ObjectStoreService
  readonly inspect: MemoryObjectStore.MemoryBucketService
  /** A new faulty view with its own fault rules. */
  readonly view: Effect.Effect<FaultyView>
}

/** The decorator's filter for a schedule's fault target. */
export const filterOf = (target: FaultTarget): FaultyObjectStore.FaultFilter => {
  const operations: ReadonlyArray<FaultyObjectStore.Operation> | undefined = target.operation === "put"
    ? ["put"]
    : target.operation === "delete"
    ? ["delete"]
    : target.operation === "get"
    ? ["get", "getRange", "head"]
    : target.operation === "list"
    ? ["list"]
    : undefined
  const keys = target.keys === "any"
    ? {}
    : target.keys === "lock"
    ? { keyMatches: (key: string) => key === "lock" }
    : { keyPrefix: `${target.keys}/` }
  return operations === undefined ? keys : { operations, ...keys }
}

const injectInto = (controller: FaultyObjectStore.FaultControllerService, fault: Fault): Effect.Effect<unknown> => {
  const filter = filterOf(fault.target)
  switch (fault.kind) {
    case "latency":
      return controller.latency(fault.ms, filter)
    case "transient":
      return controller.errorRate(fault.ratePercent / 100, filter)
    case "permanent":
      return controller.failPermanently(filter)
    case "stall":
      return controller.stall(filter)
    case "lostResponse":
      return controller.lostResponse(filter, { probability: fault.ratePercent / 100 })
    case "late":
      return controller.late(fault.maxMs, filter, { probability: fault.ratePercent / 100 })
  }
}

const viewOver = (inner: ObjectStoreService): Effect.Effect<FaultyView> =>
  Effect.gen(function*() {
    const { controller, store } = yield* FaultyObjectStore.make(inner)
    const active = yield* Ref.make(false)
    const faults: FaultControl = {
      inject: (fault) => Effect.zipRight(injectInto(controller, fault), Ref.set(active, true)),
      heal: Effect.zipRight(controller.heal, Ref.set(active, false)),
      active: Ref.get(active)
    }
    return { store, faults, controller }
  })

/** A new, empty simulated bucket. */
export const makeSimBucket: Effect.Effect<SimBucket> = Effect.map(MemoryObjectStore.makeBucket("sim"), (state) => ({
  state,
  raw: MemoryObjectStore.storeOf(state),
  inspect: MemoryObjectStore.inspect(state),
  view: viewOver(MemoryObjectStore.storeOf(state))
}))
