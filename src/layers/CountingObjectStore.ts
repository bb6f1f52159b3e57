/**
 * CountingObjectStore: a decorator over an inner ObjectStore that counts the requests sent through
 * it, by operation and by the kind of key (part, file manifest, root manifest, WAL segment, lock,
 * lease), and the bytes put and got. It provides `ObjectStore` (the counted view) and keeps its
 * counts in a `RequestCounter`, whose `snapshot` a caller takes before and after something and
 * subtracts with `diff`: the requests a checkpoint costs, what a garbage collection pass lists and
 * deletes, a request budget in a test, a metrics exporter's feed.
 *
 * What is counted, and when:
 * - `put`, `get`, `getRange`, `head`, `delete`, `probe`: one request per call, counted when the call
 *   starts (a request that fails or is interrupted was still sent); `bytesPut` when a put starts,
 *   `bytesGot` when a get or ranged get returns;
 * - `list`: `list` counts calls (one per listing), `listPages` the ListObjectsV2 requests that
 *   listing costs on S3, at 1000 keys a page: one when the listing starts and one more for each
 *   further 1000 keys read from it (a listing read only in part counts only the pages it reached).
 * The kind of a key is its first segment under the layout's prefix (`data/` parts, `manifests/`
 * file manifests, `checkpoints/` root manifests, `wal/`, `lock`, `leases/`); for a listing, the
 * kind of its prefix. Anything else, and the listing of the whole prefix, is "other".
 *
 * `metered` is the process-wide view of the same: every request of a store, counted in the metric
 * `object_store_requests` by `operation` (put, get, …), `outcome` (Success, NotFound, Timeout, …)
 * and `instance` (MetricsInstance) when it ends, over every store (memory, file, S3); Storage
 * applies it to the store it is given. S3ObjectStore also counts the HTTP requests it sends in
 * `s3_requests` (a listing is one request per page there). Every metric: docs/METRICS.md.
 *
 * Replaces: nothing in OrioleDB, which did not count its requests (its S3 cost was unknown until
 * the bill); the decorator shape follows FaultyObjectStore.
 *
 * @since 0.2.0
 */
import { Cause, Context, Effect, Exit, Layer, Metric, MetricLabel, Option, Ref, Stream } from "effect"
import type { ObjectStoreError, ObjectStoreUnavailable } from "../domain/Errors.js"
import type { KeyLayout } from "../domain/KeyLayout.js"
import { MetricsInstance } from "../services/MetricsInstance.js"
import { ObjectStore, type ObjectStoreService } from "../services/ObjectStore.js"

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/** What kind of object a request addressed. @category models */
export type KeyKind = "part" | "file-manifest" | "checkpoint" | "wal" | "lock" | "lease" | "other"

/** Every key kind, in the order reports print them. */
export const keyKinds: ReadonlyArray<KeyKind> = ["part", "file-manifest", "checkpoint", "wal", "lock", "lease", "other"]

/** Requests and bytes. @category models */
export interface RequestCounts {
  readonly put: number
  readonly get: number
  readonly getRange: number
  readonly head: number
  readonly delete: number
  /** Listings (calls of `list`). */
  readonly list: number
  /** The ListObjectsV2 requests the listings cost (1000 keys a page). */
  readonly listPages: number
  readonly probe: number
  readonly bytesPut: number
  readonly bytesGot: number
}

/** All counts so far, in total and by key kind. @category models */
export interface RequestSnapshot {
  readonly total: RequestCounts
  readonly byKind: Readonly<Record<KeyKind, RequestCounts>>
}

/** Keys per ListObjectsV2 page (S3's maximum, which S3ObjectStore asks for). */
export const listPageKeys = 1000

/** Counts of zero. */
export const emptyCounts: RequestCounts = {
  put: 0,
  get: 0,
  getRange: 0,
  head: 0,
  delete: 0,
  list: 0,
  listPages: 0,
  probe: 0,
  bytesPut: 0,
  bytesGot: 0
}

const countFields = Object.keys(emptyCounts) as ReadonlyArray<keyof RequestCounts>

const byKindOf = (each: (kind: KeyKind) => RequestCounts): Record<KeyKind, RequestCounts> =>
  Object.fromEntries(keyKinds.map((kind) => [kind, each(kind)])) as Record<KeyKind, RequestCounts>

/** A snapshot of zero counts, overall and by key kind. */
export const emptySnapshot: RequestSnapshot = { total: emptyCounts, byKind: byKindOf(() => emptyCounts) }

const combine = (left: RequestCounts, right: RequestCounts, sign: 1 | -1): RequestCounts =>
  Object.fromEntries(countFields.map((field) => [field, left[field] + sign * right[field]])) as unknown as RequestCounts

/** What happened between two snapshots: `later - earlier`, field by field. */
export const diff = (later: RequestSnapshot, earlier: RequestSnapshot): RequestSnapshot => ({
  total: combine(later.total, earlier.total, -1),
  byKind: byKindOf((kind) => combine(later.byKind[kind], earlier.byKind[kind], -1))
})

/** The requests of a count (every operation; bytes excluded; listings counted by page). */
export const requestsOf = (counts: RequestCounts): number =>
  counts.put + counts.get + counts.getRange + counts.head + counts.delete + counts.listPages + counts.probe

const kindBySegment: ReadonlyArray<readonly [string, KeyKind]> = [
  ["data/", "part"],
  ["manifests/", "file-manifest"],
  ["checkpoints/", "checkpoint"],
  ["wal/", "wal"],
  ["leases/", "lease"]
]

/** The kind of a key (or of a listed prefix) under `layout`. */
export const kindOfKey = (layout: KeyLayout, key: string): KeyKind => {
  const root = layout.prefix === "" ? "" : `${layout.prefix}/`
  if (!key.startsWith(root)) return "other"
  const rest = key.slice(root.length)
  if (rest === "lock") return "lock"
  for (const [segment, kind] of kindBySegment) if (rest.startsWith(segment)) return kind
  return "other"
}

// ---------------------------------------------------------------------------------------------
// The counter
// ---------------------------------------------------------------------------------------------

/** The counts of a counted store. @category models */
export interface RequestCounterService {
  /** Every count since the counter was made. */
  readonly snapshot: Effect.Effect<RequestSnapshot>
  /** Adds to the counts of one kind (and to the total). */
  readonly record: (kind: KeyKind, counts: Partial<RequestCounts>) => Effect.Effect<void>
}

/** The counts of the counted store. @category tags */
export class RequestCounter
  extends Context.Tag("effect-s3-tier/RequestCounter")<RequestCounter, RequestCounterService>()
{}

/** A new counter, all zero. @category constructors */
export const makeCounter: Effect.Effect<RequestCounterService> = Effect.map(Ref.make(emptySnapshot), (ref) => ({
  snapshot: Ref.get(ref),
  record: (kind, counts) =>
    Ref.update(ref, (current) => {
      const added = { ...emptyCounts, ...counts }
      return {
        total: combine(current.total, added, 1),
        byKind: { ...current.byKind, [kind]: combine(current.byKind[kind], added, 1) }
      }
    })
}))

// ---------------------------------------------------------------------------------------------
// The decorator
// ---------------------------------------------------------------------------------------------

/** `inner`, with every request counted in `counter`; key kinds under `layout`. */
export const decorate = (
  inner: ObjectStoreService,
  counter: RequestCounterService,
  layout: KeyLayout
): ObjectStoreService => {
  const sent = (key: string, counts: Partial<RequestCounts>) => counter.record(kindOfKey(layout, key), counts)
  const got = (key: string) => (bytes: Uint8Array) => sent(key, { bytesGot: bytes.length })
  return {
    description: inner.description,
    probe: Effect.zipRight(counter.record("other", { probe: 1 }), inner.probe),
    put: (key, bytes, options) =>
      Effect.zipRight(sent(key, { put: 1, bytesPut: bytes.length }), inner.put(key, bytes, options)),
    get: (key, options) => Effect.zipRight(sent(key, { get: 1 }), Effect.tap(inner.get(key, options), got(key))),
    getRange: (key, offset, length) =>
      Effect.zipRight(sent(key, { getRange: 1 }), Effect.tap(inner.getRange(key, offset, length), got(key))),
    head: (key) => Effect.zipRight(sent(key, { head: 1 }), inner.head(key)),
    delete: (key) => Effect.zipRight(sent(key, { delete: 1 }), inner.delete(key)),
    list: (prefix) =>
      Stream.unwrap(
        Effect.as(sent(prefix, { list: 1, listPages: 1 }), Stream.zipWithIndex(inner.list(prefix))).pipe(
          Effect.map((listed) =>
            Stream.mapEffect(listed, ([info, index]) =>
              index > 0 && index % listPageKeys === 0
                ? Effect.as(sent(prefix, { listPages: 1 }), info)
                : Effect.succeed(info))
          )
        )
      )
  }
}

/** ObjectStore, counted in `counter`, over the ObjectStore it is given. @category layers */
export const layer = (
  counter: RequestCounterService,
  layout: KeyLayout
): Layer.Layer<ObjectStore, never, ObjectStore> =>
  Layer.effect(ObjectStore, Effect.map(ObjectStore, (inner) => decorate(inner, counter, layout)))

/** ObjectStore (counted) and RequestCounter over the ObjectStore it is given. @category layers */
export const layerWithCounter = (layout: KeyLayout): Layer.Layer<ObjectStore | RequestCounter, never, ObjectStore> =>
  Layer.unwrapEffect(
    Effect.map(makeCounter, (counter) => Layer.merge(layer(counter, layout), Layer.succeed(RequestCounter, counter)))
  )

// ---------------------------------------------------------------------------------------------
// The metered store: `object_store_requests` by operation, outcome and instance
// ---------------------------------------------------------------------------------------------

/** A store operation, as `object_store_requests` labels it. */
export type StoreOperation = "put" | "get" | "getRange" | "head" | "delete" | "list" | "probe"

/** How a request ended: "Success", "Interrupted", "Defect", or the failure's kind. */
export type RequestOutcome =
  | "Success"
  | "Interrupted"
  | "Defect"
  | "NotFound"
  | "PreconditionFailed"
  | "Rejected"
  | ObjectStoreUnavailable["reason"]

/** The outcome of a request that ended with `exit`. */
export const requestOutcome = (exit: Exit.Exit<unknown, ObjectStoreError>): RequestOutcome => {
  if (Exit.isSuccess(exit)) return "Success"
  const found = Cause.failureOption(exit.cause)
  if (Option.isNone(found)) return Cause.isInterruptedOnly(exit.cause) ? "Interrupted" : "Defect"
  const failure = found.value
  switch (failure._tag) {
    case "ObjectNotFound":
      return "NotFound"
    case "PreconditionFailed":
      return "PreconditionFailed"
    case "ObjectStoreRejected":
      return "Rejected"
    case "ObjectStoreUnavailable":
      return failure.reason
  }
}

/** Requests of every store, tagged `instance`, `operation` and `outcome`. @category metrics */
export const objectStoreRequests = Metric.counter("object_store_requests", {
  description: "object-store requests by operation and outcome (a listing is one request)",
  incremental: true
})

/** The labels of one instance's requests, built once per operation and outcome. */
const requestLabels = (instance: string) => {
  const instanceLabel = MetricLabel.make("instance", instance)
  const cache = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
  return (operation: StoreOperation, outcome: RequestOutcome): ReadonlyArray<MetricLabel.MetricLabel> => {
    const key = `${operation} ${outcome}`
    let labels = cache.get(key)
    if (labels === undefined) {
      labels = [instanceLabel, MetricLabel.make("operation", operation), MetricLabel.make("outcome", outcome)]
      cache.set(key, labels)
    }
    return labels
  }
}

/** The count of one operation and outcome so far, for `instance`. */
export const requestCount = (
  operation: StoreOperation,
  outcome: RequestOutcome,
  instance = "default"
): Effect.Effect<number> =>
  Effect.sync(() => objectStoreRequests.unsafeValue(requestLabels(instance)(operation, outcome)).count)

/** `inner`, with every request counted in `object_store_requests` under `instance` when it ends. */
export const metered = (inner: ObjectStoreService, instance: string): ObjectStoreService => {
  const labels = requestLabels(instance)
  const record = (operation: StoreOperation) => (exit: Exit.Exit<unknown, ObjectStoreError>) =>
    Effect.sync(() => objectStoreRequests.unsafeUpdate(1, labels(operation, requestOutcome(exit))))
  const counted = <A, E extends ObjectStoreError>(
    operation: StoreOperation,
    effect: Effect.Effect<A, E>
  ): Effect.Effect<A, E> => Effect.onExit(effect, record(operation))
  return {
    description: inner.description,
    probe: counted("probe", inner.probe),
    put: (key, bytes, options) => counted("put", inner.put(key, bytes, options)),
    get: (key, options) => counted("get", inner.get(key, options)),
    getRange: (key, offset, length) => counted("getRange", inner.getRange(key, offset, length)),
    head: (key) => counted("head", inner.head(key)),
    delete: (key) => counted("delete", inner.delete(key)),
    list: (prefix) => Stream.ensuringWith(inner.list(prefix), record("list"))
  }
}

/** ObjectStore, metered under the MetricsInstance of its context, over the ObjectStore it is
 * given. @category layers */
export const layerMetered: Layer.Layer<ObjectStore, never, ObjectStore> = Layer.effect(
  ObjectStore,
  Effect.zipWith(ObjectStore, MetricsInstance, metered)
)
