/**
 * FaultyObjectStore: a decorator over an inner ObjectStore that injects faults on command, for the
 * tests, the deterministic simulation and the CLI's `--fault` flags. It provides `ObjectStore` (the
 * faulty view) and `FaultController` (the switchboard).
 *
 * A fault is a rule: a kind plus a filter on the operation (put/get/getRange/head/delete/list/probe)
 * and on the key (a prefix or a predicate; for `list` the key is the listed prefix, `probe` has no
 * key, so a rule with a key filter never applies to it). Kinds:
 * - `latency(ms)`: the operation first sleeps (`Effect.sleep`, so the TestClock or the simulated
 *   clock drives it); latencies of several matching rules add up;
 * - `errorRate(p)`: with probability p the operation fails with a transient
 *   `ObjectStoreUnavailable` (reason "Injected") instead of reaching the inner store; the draw comes
 *   from Effect's `Random` (the caller's, or one seeded by the `seed` option), so a seed decides;
 * - `failPermanently`: the operation fails with `ObjectStoreRejected` (code "InjectedFailure");
 * - `stall`: the operation never answers until it is interrupted or the faults are healed;
 * - `stallAfter(ms)`: `stall` for every operation that starts `ms` or more after the rule was added;
 * - `lostResponse({ times?, probability? })`: the operation reaches the inner store and runs to its
 *   end (a put is applied, a delete deletes, a 412 is decided), then its response is lost: the caller
 *   gets a transient `ObjectStoreUnavailable` (reason "Network") whatever the store answered, as when
 *   a connection drops after the server applied the request. With `probability`, each matching
 *   operation loses its response with that probability (drawn like the error rate); with `times`,
 *   only the next `times` lost responses are lost and the rule then removes itself.
 * - `late(latencyMaxMs, { probability? })`: a request already on the wire: with `probability`
 *   (default 1) the operation reaches the inner store after a delay drawn in [1, latencyMaxMs] ms,
 *   and it does even if its caller stops waiting (a timeout, a shutdown): the caller's interruption
 *   ends its wait, not the request, which lands later. Independent draws reorder requests: a write
 *   sent first can land after one sent later. The delayed request runs in a fiber of its own,
 *   outside the caller's supervisor (it belongs to the network, not to the process): a kill switch
 *   above this decorator (the simulation's) stops what a dead process sends, not what it sent.
 * Order of evaluation: stall, then latency, then permanent failure, then error rate, then the late
 * delay, then the inner store. `heal` removes every rule; operations stalled at that moment then
 * PROCEED: each re-reads the rules (a fault added after the heal applies to it) and goes on to the
 * inner store. Stalls wait on a Deferred, so they are interruptible and cost no CPU.
 *
 * Counters (for reports and tests): faults injected per kind, operations started and finished per
 * operation, and operations stalled right now; `awaitStats` waits for a condition on them without
 * polling (a SubscriptionRef).
 *
 * Replaces: nothing in OrioleDB, which could not inject faults; its shutdown hangs (#340, #373) were
 * found in production. Anchor: SlateDB's `FailingObjectStore` toxics (slatedb/slatedb@e0161973,
 * slatedb-dst/src/failing_object_store.rs).
 *
 * @since 0.1.0
 */
import {
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberRef,
  Layer,
  Option,
  Random,
  Ref,
  Stream,
  SubscriptionRef,
  Supervisor
} from "effect"
import { ObjectStoreRejected, ObjectStoreUnavailable } from "../domain/Errors.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import type { TaskType } from "../domain/Task.js"
import { ObjectStore, type ObjectStoreService } from "../services/ObjectStore.js"

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/** The operations of an ObjectStore, as fault filters name them. @category models */
export type Operation = "put" | "get" | "getRange" | "head" | "delete" | "list" | "probe"

/** Every operation. */
export const operations: ReadonlyArray<Operation> = ["put", "get", "getRange", "head", "delete", "list", "probe"]

/** Which operations a fault applies to. Omitted fields do not filter. @category models */
export interface FaultFilter {
  readonly operations?: ReadonlyArray<Operation>
  readonly keyPrefix?: string
  readonly keyMatches?: (key: string) => boolean
}

/** A fault, as data. @category models */
export type Fault =
  | { readonly _tag: "Latency"; readonly latencyMs: number }
  | { readonly _tag: "ErrorRate"; readonly probability: number }
  | { readonly _tag: "FailPermanently" }
  | { readonly _tag: "Stall" }
  | { readonly _tag: "StallAfter"; readonly afterMs: number }
  | { readonly _tag: "LostResponse"; readonly times?: number; readonly probability?: number }
  | { readonly _tag: "Late"; readonly latencyMaxMs: number; readonly probability?: number }

/** How often a `lostResponse` rule loses an answer. */
export interface LostResponseOptions {
  readonly times?: number
  readonly probability?: number
}

/** The kinds of injected faults, as counted. */
export type FaultKind = "latency" | "error" | "permanent" | "stall" | "lostResponse" | "late"

/** Identifies an added rule, to remove it alone. */
export type FaultId = number

/** Started and finished (in any way: success, failure, interruption) operations of one kind. */
export interface OperationCounts {
  readonly started: number
  readonly finished: number
}

/** The counters of a FaultyObjectStore. @category models */
export interface FaultStats {
  readonly operations: Readonly<Record<Operation, OperationCounts>>
  readonly injected: Readonly<Record<FaultKind, number>>
  /** Operations waiting in a stall right now. */
  readonly stalledNow: number
}

/** The switchboard of a FaultyObjectStore. @category models */
export interface FaultControllerService {
  /** Decorates a store with this controller's faults and counters. */
  readonly wrap: (inner: ObjectStoreService) => ObjectStoreService
  /** Adds a rule; `StallAfter` counts from now (the current Clock). */
  readonly add: (fault: Fault, filter?: FaultFilter) => Effect.Effect<FaultId>
  readonly latency: (latencyMs: number, filter?: FaultFilter) => Effect.Effect<FaultId>
  /** `probability` in [0, 1]. */
  readonly errorRate: (probability: number, filter?: FaultFilter) => Effect.Effect<FaultId>
  readonly failPermanently: (filter?: FaultFilter) => Effect.Effect<FaultId>
  readonly stall: (filter?: FaultFilter) => Effect.Effect<FaultId>
  readonly stallAfter: (afterMs: number, filter?: FaultFilter) => Effect.Effect<FaultId>
  /** The store applies the request, the caller gets a transient error; `times` bounds how often,
   * `probability` (default 1) how likely each matching operation is to lose its answer. */
  readonly lostResponse: (filter?: FaultFilter, options?: LostResponseOptions) => Effect.Effect<FaultId>
  /** Matching requests (each with `probability`, default 1) reach the store up to `latencyMaxMs`
   * late, whether or not their caller still waits. */
  readonly late: (
    latencyMaxMs: number,
    filter?: FaultFilter,
    options?: { readonly probability?: number }
  ) => Effect.Effect<FaultId>
  /** Removes one rule (an unknown id is ignored). Stalled operations are not released by this. */
  readonly remove: (id: FaultId) => Effect.Effect<void>
  /** Removes every rule and releases every stalled operation (they proceed). */
  readonly heal: Effect.Effect<void>
  readonly stats: Effect.Effect<FaultStats>
  /** Waits until the counters satisfy `predicate` (returns at once if they already do). */
  readonly awaitStats: (predicate: (stats: FaultStats) => boolean) => Effect.Effect<FaultStats>
}

/** The fault switchboard of the FaultyObjectStore in the context. @category tags */
export class FaultController
  extends Context.Tag("effect-s3-tier/FaultController")<FaultController, FaultControllerService>()
{}

/** Options of the decorator. */
export interface FaultyObjectStoreOptions {
  /** Seeds the error-rate draws; without it they come from the calling fiber's `Random`. */
  readonly seed?: number
}

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

const applies = (filter: FaultFilter, operation: Operation, key: string | undefined): boolean => {
  if (filter.operations !== undefined && !filter.operations.includes(operation)) return false
  if (filter.keyPrefix === undefined && filter.keyMatches === undefined) return true
  if (key === undefined) return false
  if (filter.keyPrefix !== undefined && !key.startsWith(filter.keyPrefix)) return false
  return filter.keyMatches === undefined || filter.keyMatches(key)
}

/**
 * The requests of one task type, as a filter (for `--fault fail-task=<type>`):
 * WritePart = puts under `<prefix>/data/`; ReadPart = gets, range gets and heads under
 * `<prefix>/data/`; WriteObject = puts under `<prefix>/manifests/`, `<prefix>/checkpoints/` and of
 * `<prefix>/lock`; WriteWalSegment = puts under `<prefix>/wal/`; DeleteObject = every delete under
 * the layout's root.
 */
export const failTaskFilter = (taskType: TaskType, layout: KeyLayout.KeyLayout): FaultFilter => {
  const root = KeyLayout.rootPrefix(layout)
  switch (taskType) {
    case "WritePart":
      return { operations: ["put"], keyPrefix: KeyLayout.dataPrefix(layout) }
    case "ReadPart":
      return { operations: ["get", "getRange", "head"], keyPrefix: KeyLayout.dataPrefix(layout) }
    case "WriteObject": {
      const manifests = `${root}manifests/`
      const checkpoints = KeyLayout.checkpointsPrefix(layout)
      const lock = KeyLayout.lockKey(layout)
      return {
        operations: ["put"],
        keyPrefix: root,
        keyMatches: (key) => key.startsWith(manifests) || key.startsWith(checkpoints) || key === lock
      }
    }
    case "WriteWalSegment":
      return { operations: ["put"], keyPrefix: KeyLayout.walPrefix(layout) }
    case "DeleteObject":
      return { operations: ["delete"], keyPrefix: root }
  }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

type ActiveFault =
  | { readonly _tag: "Latency"; readonly latencyMs: number }
  | { readonly _tag: "ErrorRate"; readonly probability: number }
  | { readonly _tag: "FailPermanently" }
  | { readonly _tag: "StallFrom"; readonly fromMs: number }
  | { readonly _tag: "LostResponse"; readonly remaining: number; readonly probability: number }
  | { readonly _tag: "Late"; readonly latencyMaxMs: number; readonly probability: number }

interface Rule {
  readonly id: FaultId
  readonly fault: ActiveFault
  readonly filter: FaultFilter
}

interface Rules {
  readonly rules: ReadonlyArray<Rule>
  readonly nextId: FaultId
  /** Completed by the next `heal`; every stalled operation waits on it. */
  readonly healed: Deferred.Deferred<void>
}

const emptyStats: FaultStats = {
  operations: {
    put: { started: 0, finished: 0 },
    get: { started: 0, finished: 0 },
    getRange: { started: 0, finished: 0 },
    head: { started: 0, finished: 0 },
    delete: { started: 0, finished: 0 },
    list: { started: 0, finished: 0 },
    probe: { started: 0, finished: 0 }
  },
  injected: { latency: 0, error: 0, permanent: 0, stall: 0, lostResponse: 0, late: 0 },
  stalledNow: 0
}

const countOperation = (stats: FaultStats, operation: Operation, field: keyof OperationCounts): FaultStats => ({
  ...stats,
  operations: {
    ...stats.operations,
    [operation]: { ...stats.operations[operation], [field]: stats.operations[operation][field] + 1 }
  }
})

const countInjected = (stats: FaultStats, kind: FaultKind): FaultStats => ({
  ...stats,
  injected: { ...stats.injected, [kind]: stats.injected[kind] + 1 }
})

const validateFault = (fault: Fault): Effect.Effect<void> => {
  switch (fault._tag) {
    case "Latency":
      return fault.latencyMs >= 0 && Number.isFinite(fault.latencyMs)
        ? Effect.void
        : Effect.dieMessage(`latency ${fault.latencyMs} ms must be >= 0`)
    case "ErrorRate":
      return fault.probability >= 0 && fault.probability <= 1
        ? Effect.void
        : Effect.dieMessage(`error rate ${fault.probability} must be in [0, 1]`)
    case "StallAfter":
      return fault.afterMs >= 0 && Number.isFinite(fault.afterMs)
        ? Effect.void
        : Effect.dieMessage(`stall-after ${fault.afterMs} ms must be >= 0`)
    case "LostResponse":
      if (fault.probability !== undefined && !(fault.probability >= 0 && fault.probability <= 1)) {
        return Effect.dieMessage(`lost-response probability ${fault.probability} must be in [0, 1]`)
      }
      return fault.times === undefined || (Number.isInteger(fault.times) && fault.times > 0)
        ? Effect.void
        : Effect.dieMessage(`lost-response times ${fault.times} must be a positive integer`)
    case "Late":
      if (fault.probability !== undefined && !(fault.probability >= 0 && fault.probability <= 1)) {
        return Effect.dieMessage(`late probability ${fault.probability} must be in [0, 1]`)
      }
      return Number.isInteger(fault.latencyMaxMs) && fault.latencyMaxMs >= 1
        ? Effect.void
        : Effect.dieMessage(`late latency ${fault.latencyMaxMs} ms must be an integer >= 1`)
    default:
      return Effect.void
  }
}

// ---------------------------------------------------------------------------------------------
// The decorator
// ---------------------------------------------------------------------------------------------

/**
 * A controller with no rule yet. Create it first when something must flip faults before the store
 * exists (the CLI's stall-at-shutdown); `wrap` then decorates any number of stores, which share its
 * rules and counters. @category constructors
 */
/* eslint-disable max-lines-per-function -- a service's constructor: its operations are small functions sharing one closure, each under a screen */
export const makeController = (options: FaultyObjectStoreOptions = {}): Effect.Effect<FaultControllerService> =>
  Effect.gen(function*() {
    /* eslint-enable max-lines-per-function */
    const rulesRef = yield* Ref.make<Rules>({ rules: [], nextId: 1, healed: yield* Deferred.make<void>() })
    const statsRef = yield* SubscriptionRef.make(emptyStats)
    const seeded = options.seed === undefined ? Option.none<Random.Random>() : Option.some(Random.make(options.seed))
    const draw = Option.match(seeded, { onNone: () => Random.next, onSome: (random) => random.next })
    const count = (kind: FaultKind) => SubscriptionRef.update(statsRef, (stats) => countInjected(stats, kind))

    const stallUntilHealed = (healed: Deferred.Deferred<void>) =>
      Effect.acquireUseRelease(
        SubscriptionRef.update(statsRef, (stats) =>
          countInjected({ ...stats, stalledNow: stats.stalledNow + 1 }, "stall")),
        () =>
          Deferred.await(healed),
        () => SubscriptionRef.update(statsRef, (stats) => ({ ...stats, stalledNow: stats.stalledNow - 1 }))
      )

    const inject = (
      operation: Operation,
      key: string | undefined
    ): Effect.Effect<void, ObjectStoreUnavailable | ObjectStoreRejected> =>
      Effect.gen(function*() {
        const nowMs = yield* Clock.currentTimeMillis
        const { healed, rules } = yield* Ref.get(rulesRef)
        const matching = rules.filter((rule) => applies(rule.filter, operation, key))
        if (matching.some((rule) => rule.fault._tag === "StallFrom" && nowMs >= rule.fault.fromMs)) {
          yield* stallUntilHealed(healed)
          // Healed: the rules are read again, so a fault added after the heal applies.
          return yield* inject(operation, key)
        }
        const latencyMs = matching.reduce(
          (sum, rule) => (rule.fault._tag === "Latency" ? sum + rule.fault.latencyMs : sum),
          0
        )
        if (matching.some((rule) => rule.fault._tag === "Latency")) {
          yield* count("latency")
          yield* Effect.sleep(Duration.millis(latencyMs))
        }
        if (matching.some((rule) => rule.fault._tag === "FailPermanently")) {
          yield* count("permanent")
          return yield* new ObjectStoreRejected({
            operation,
            key,
            code: "InjectedFailure",
            detail: "fault injected: the request fails permanently"
          })
        }
        for (const rule of matching) {
          if (rule.fault._tag !== "ErrorRate") continue
          const sample = yield* draw
          if (sample < rule.fault.probability) {
            yield* count("error")
            return yield* new ObjectStoreUnavailable({
              operation,
              key,
              reason: "Injected",
              detail: `fault injected: error rate ${rule.fault.probability}`
            })
          }
        }
      })

    /** Uses up one loss of the rule (removed when none is left). */
    const useLostResponse = (id: FaultId) =>
      Ref.update(rulesRef, (state): Rules => {
        const rule = state.rules.find((candidate) => candidate.id === id)
        if (rule === undefined || rule.fault._tag !== "LostResponse") return state
        const fault = { ...rule.fault, remaining: rule.fault.remaining - 1 }
        const rules = fault.remaining > 0
          ? state.rules.map((candidate) => (candidate.id === id ? { ...candidate, fault } : candidate))
          : state.rules.filter((candidate) => candidate.id !== id)
        return { ...state, rules }
      })

    /** Whether this finished operation loses its response, per the first matching rule. */
    const takeLostResponse = (operation: Operation, key: string | undefined) =>
      Effect.gen(function*() {
        const { rules } = yield* Ref.get(rulesRef)
        const rule = rules.find((candidate) =>
          candidate.fault._tag === "LostResponse" && applies(candidate.filter, operation, key)
        )
        if (rule === undefined || rule.fault._tag !== "LostResponse") return false
        if (rule.fault.probability < 1 && (yield* draw) >= rule.fault.probability) return false
        yield* useLostResponse(rule.id)
        return true
      })

    const loseResponse = <A, E>(
      operation: Operation,
      key: string | undefined,
      effect: Effect.Effect<A, E>
    ): Effect.Effect<A, E | ObjectStoreUnavailable> =>
      Effect.flatMap(
        Effect.exit(effect),
        (exit): Effect.Effect<A, E | ObjectStoreUnavailable> =>
          Exit.isInterrupted(exit)
            ? exit
            : Effect.flatMap(takeLostResponse(operation, key), (lost): Effect.Effect<A, E | ObjectStoreUnavailable> =>
              lost
                ? Effect.zipRight(
                  count("lostResponse"),
                  Effect.fail(
                    new ObjectStoreUnavailable({
                      operation,
                      ...(key === undefined ? {} : { key }),
                      reason: "Network",
                      detail: "fault injected: the response was lost after the store handled the request"
                    })
                  )
                )
                : exit)
      )

    /** The delay of this request if a `Late` rule delays it (the first matching rule decides). */
    const lateDelayMs = (operation: Operation, key: string | undefined) =>
      Effect.gen(function*() {
        const { rules } = yield* Ref.get(rulesRef)
        const rule = rules.find((candidate) =>
          candidate.fault._tag === "Late" && applies(candidate.filter, operation, key)
        )
        if (rule === undefined || rule.fault._tag !== "Late") return Option.none<number>()
        if (rule.fault.probability < 1 && (yield* draw) >= rule.fault.probability) return Option.none<number>()
        yield* count("late")
        return Option.some(1 + Math.floor((yield* draw) * rule.fault.latencyMaxMs))
      })

    /** Runs `effect` now, or, if a `Late` rule delays it, in a fiber of the network's that the
     * caller's interruption does not reach: the caller waits for its exit or gives up. */
    const lateOrNow = <A, E>(
      operation: Operation,
      key: string | undefined,
      effect: Effect.Effect<A, E>
    ): Effect.Effect<A, E> =>
      Effect.flatMap(lateDelayMs(operation, key), (delay) =>
        Option.match(delay, {
          onNone: () => effect,
          onSome: (delayMs) =>
            Effect.forkDaemon(Effect.zipRight(Effect.sleep(Duration.millis(delayMs)), effect)).pipe(
              Effect.locally(FiberRef.currentSupervisor, Supervisor.none),
              Effect.flatMap(Fiber.join)
            )
        }))

    const countStarted = (operation: Operation) =>
      SubscriptionRef.update(statsRef, (stats) => countOperation(stats, operation, "started"))
    const countFinished = (operation: Operation) =>
      SubscriptionRef.update(statsRef, (stats) => countOperation(stats, operation, "finished"))
    const tracked = <A, E>(operation: Operation, key: string | undefined, effect: Effect.Effect<A, E>) =>
      countStarted(operation).pipe(
        Effect.zipRight(inject(operation, key)),
        Effect.zipRight(loseResponse(operation, key, lateOrNow(operation, key, effect))),
        Effect.ensuring(countFinished(operation))
      )

    const wrap = (inner: ObjectStoreService): ObjectStoreService => ({
      description: inner.description,
      probe: tracked("probe", undefined, inner.probe),
      put: (key, bytes, putOptions) => tracked("put", key, inner.put(key, bytes, putOptions)),
      get: (key, getOptions) => tracked("get", key, inner.get(key, getOptions)),
      getRange: (key, offset, length) => tracked("getRange", key, inner.getRange(key, offset, length)),
      head: (key) => tracked("head", key, inner.head(key)),
      delete: (key) => tracked("delete", key, inner.delete(key)),
      list: (prefix) =>
        Stream.unwrapScoped(
          Effect.acquireRelease(countStarted("list"), () => countFinished("list")).pipe(
            Effect.zipRight(inject("list", prefix)),
            Effect.as(inner.list(prefix))
          )
        )
    })

    const add = (fault: Fault, filter: FaultFilter = {}): Effect.Effect<FaultId> =>
      Effect.gen(function*() {
        yield* validateFault(fault)
        const nowMs = yield* Clock.currentTimeMillis
        const active: ActiveFault = fault._tag === "Stall"
          ? { _tag: "StallFrom", fromMs: Number.NEGATIVE_INFINITY }
          : fault._tag === "StallAfter"
          ? { _tag: "StallFrom", fromMs: nowMs + fault.afterMs }
          : fault._tag === "Late"
          ? { _tag: "Late", latencyMaxMs: fault.latencyMaxMs, probability: fault.probability ?? 1 }
          : fault._tag === "LostResponse"
          ? {
            _tag: "LostResponse",
            remaining: fault.times ?? Number.POSITIVE_INFINITY,
            probability: fault.probability ?? 1
          }
          : fault
        return yield* Ref.modify(rulesRef, (state) => [
          state.nextId,
          { ...state, rules: [...state.rules, { id: state.nextId, fault: active, filter }], nextId: state.nextId + 1 }
        ])
      })

    const heal = Effect.gen(function*() {
      const fresh = yield* Deferred.make<void>()
      const previous = yield* Ref.modify(rulesRef, (state) => [state.healed, { ...state, rules: [], healed: fresh }])
      yield* Deferred.succeed(previous, undefined)
    })

    return {
      wrap,
      add,
      latency: (latencyMs, filter) => add({ _tag: "Latency", latencyMs }, filter),
      errorRate: (probability, filter) => add({ _tag: "ErrorRate", probability }, filter),
      failPermanently: (filter) => add({ _tag: "FailPermanently" }, filter),
      stall: (filter) => add({ _tag: "Stall" }, filter),
      stallAfter: (afterMs, filter) => add({ _tag: "StallAfter", afterMs }, filter),
      lostResponse: (filter, options = {}) => add({ _tag: "LostResponse", ...options }, filter),
      late: (latencyMaxMs, filter, options = {}) => add({ _tag: "Late", latencyMaxMs, ...options }, filter),
      remove: (id) =>
        Ref.update(rulesRef, (state) => ({ ...state, rules: state.rules.filter((rule) => rule.id !== id) })),
      heal,
      stats: SubscriptionRef.get(statsRef),
      awaitStats: (predicate) =>
        Effect.map(Stream.runHead(Stream.filter(statsRef.changes, predicate)), (found) =>
          // `changes` starts with the current value and never ends, so runHead only returns a value.
          Option.getOrElse(found, () => emptyStats))
    }
  })

/** Wraps `inner`: the faulty store and a new controller. @category constructors */
export const make = (
  inner: ObjectStoreService,
  options: FaultyObjectStoreOptions = {}
): Effect.Effect<{ readonly store: ObjectStoreService; readonly controller: FaultControllerService }> =>
  Effect.map(makeController(options), (controller) => ({ store: controller.wrap(inner), controller }))

const isController = (from: FaultyObjectStoreOptions | FaultControllerService): from is FaultControllerService =>
  "wrap" in from

/**
 * The faulty view of the ObjectStore below it, and its controller: a new controller (from options)
 * or a given one (made earlier with `makeController`). @category layers
 */
export const layer = (
  from: FaultyObjectStoreOptions | FaultControllerService = {}
): Layer.Layer<ObjectStore | FaultController, never, ObjectStore> =>
  Layer.effectContext(
    Effect.gen(function*() {
      const inner = yield* ObjectStore
      const controller = isController(from) ? from : yield* makeController(from)
      return Context.make(ObjectStore, controller.wrap(inner)).pipe(Context.add(FaultController, controller))
    })
  )
