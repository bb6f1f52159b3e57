/**
 * MemoryObjectStore: a bucket held in memory, with S3's semantics, for tests and the deterministic
 * simulation. Its state is one sorted map (a red-black tree ordered like S3 lists keys) in a `Ref`,
 * changed synchronously: no real time, no randomness, no Promise, so the simulation can run it on
 * its own scheduler and clock.
 *
 * Inspection: besides `ObjectStore`, the layer provides `MemoryBucket`, a handle that lets a test
 * read, seed and remove objects directly (below any fault decorator) and see every key. `make`
 * returns both; `makeBucket` + `layerWithBucket` let several stores (a "restarted" instance in the
 * simulation) share one bucket.
 *
 * Replaces: nothing in OrioleDB, whose S3 tests needed a real S3 (or MinIO) server; here the
 * contract suite (test/layers/ObjectStoreSuite.ts) holds this store to the same guarantees.
 *
 * @since 0.1.0
 */
import { Chunk, Clock, Context, Effect, Layer, Option, type Order, RedBlackTree, Ref, Stream } from "effect"
import { ObjectNotFound, PreconditionFailed } from "../domain/Errors.js"
import { type ObjectInfo, ObjectStore, type ObjectStoreService, type PutOptions } from "../services/ObjectStore.js"

// ---------------------------------------------------------------------------------------------
// Key order
// ---------------------------------------------------------------------------------------------

/** Maps a UTF-16 code unit so that comparing mapped units orders strings by code point. */
const codePointRank = (unit: number): number => {
  if (unit >= 0xe000) return unit - 0x800
  if (unit >= 0xd800) return unit + 0x2000
  return unit
}

/**
 * S3's key order: by the UTF-8 bytes of the keys, which is code point order. JavaScript's `<`
 * compares UTF-16 code units, which differs for characters above U+E000 against surrogate pairs.
 */
export const compareKeys = (left: string, right: string): -1 | 0 | 1 => {
  const length = Math.min(left.length, right.length)
  for (let index = 0; index < length; index++) {
    const leftUnit = left.charCodeAt(index)
    const rightUnit = right.charCodeAt(index)
    if (leftUnit !== rightUnit) return codePointRank(leftUnit) < codePointRank(rightUnit) ? -1 : 1
  }
  if (left.length === right.length) return 0
  return left.length < right.length ? -1 : 1
}

/** `compareKeys` as an `Order`. */
export const keyOrder: Order.Order<string> = compareKeys

/** Keys per page of `list`, as S3's ListObjectsV2 maximum. */
export const listPageKeysMax = 1000

// ---------------------------------------------------------------------------------------------
// The bucket
// ---------------------------------------------------------------------------------------------

/** An object's bytes and when it was written (by the Clock of the fiber that wrote it: the
 * simulation's clock in the simulation). */
interface StoredObject {
  readonly bytes: Uint8Array
  readonly lastModifiedMs: number
}

type Objects = RedBlackTree.RedBlackTree<string, StoredObject>

/** The state of one in-memory bucket; share it between stores to model a restart. @category models */
export interface MemoryBucketState {
  readonly name: string
  readonly objects: Ref.Ref<Objects>
}

/** Direct access to an in-memory bucket, for tests. @category models */
export interface MemoryBucketService {
  readonly name: string
  /** Every key, in key order. */
  readonly keys: Effect.Effect<ReadonlyArray<string>>
  /** A copy of an object's bytes, or None. */
  readonly read: (key: string) => Effect.Effect<Option.Option<Uint8Array>>
  /** Writes an object directly (no fault, no condition). */
  readonly write: (key: string, bytes: Uint8Array) => Effect.Effect<void>
  /** Removes an object directly; true when it existed. */
  readonly remove: (key: string) => Effect.Effect<boolean>
  /** Every object, in key order (copies). */
  readonly snapshot: Effect.Effect<ReadonlyArray<readonly [string, Uint8Array]>>
}

/** The inspection handle of the in-memory bucket a layer provides. @category tags */
export class MemoryBucket extends Context.Tag("effect-s3-tier/MemoryBucket")<MemoryBucket, MemoryBucketService>() {}

const setObject = (objects: Objects, key: string, stored: StoredObject): Objects =>
  RedBlackTree.insert(RedBlackTree.has(objects, key) ? RedBlackTree.removeFirst(objects, key) : objects, key, stored)

/** A new, empty bucket. */
export const makeBucket = (name = "memory"): Effect.Effect<MemoryBucketState> =>
  Effect.map(Ref.make(RedBlackTree.empty<string, StoredObject>(keyOrder)), (objects) => ({ name, objects }))

/** The inspection handle over a bucket's state. */
export const inspect = (state: MemoryBucketState): MemoryBucketService => ({
  name: state.name,
  keys: Effect.map(Ref.get(state.objects), (objects) => Array.from(RedBlackTree.keys(objects))),
  read: (key) =>
    Effect.map(
      Ref.get(state.objects),
      (objects) => Option.map(RedBlackTree.findFirst(objects, key), (stored) => stored.bytes.slice())
    ),
  write: (key, bytes) =>
    Effect.flatMap(
      Clock.currentTimeMillis,
      (lastModifiedMs) =>
        Ref.update(state.objects, (objects) => setObject(objects, key, { bytes: bytes.slice(), lastModifiedMs }))
    ),
  remove: (key) =>
    Ref.modify(
      state.objects,
      (objects) => RedBlackTree.has(objects, key) ? [true, RedBlackTree.removeFirst(objects, key)] : [false, objects]
    ),
  snapshot: Effect.map(
    Ref.get(state.objects),
    (objects) => Array.from(objects, ([key, stored]) => [key, stored.bytes.slice()] as const)
  )
})

/** One page of keys under `prefix` strictly after `after` (or from the start). */
const page = (objects: Objects, prefix: string, after: Option.Option<string>): Array<ObjectInfo> => {
  const infos: Array<ObjectInfo> = []
  const entries = Option.isSome(after)
    ? RedBlackTree.greaterThan(objects, after.value)
    : RedBlackTree.greaterThanEqual(objects, prefix)
  for (const [key, stored] of entries) {
    if (!key.startsWith(prefix)) break
    infos.push({ key, sizeBytes: stored.bytes.length, lastModifiedMs: stored.lastModifiedMs })
    if (infos.length === listPageKeysMax) break
  }
  return infos
}

const assertRange = (offset: number, length: number): Effect.Effect<void> =>
  Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0
    ? Effect.void
    : Effect.dieMessage(`getRange: offset ${offset} and length ${length} must be non-negative integers`)

/** An ObjectStore over a bucket's state. */
export const storeOf = (state: MemoryBucketState): ObjectStoreService => {
  const find = (operation: string, key: string): Effect.Effect<StoredObject, ObjectNotFound> =>
    Effect.flatMap(Ref.get(state.objects), (objects) =>
      Option.match(RedBlackTree.findFirst(objects, key), {
        onNone: () => Effect.fail(new ObjectNotFound({ operation, key })),
        onSome: Effect.succeed
      }))
  const put = (key: string, bytes: Uint8Array, options?: PutOptions): Effect.Effect<void, PreconditionFailed> => {
    // The copy is taken before the state changes: the caller may reuse its buffer afterwards.
    const copy = bytes.slice()
    return Effect.flatMap(Clock.currentTimeMillis, (lastModifiedMs) =>
      Effect.flatten(
        Ref.modify(state.objects, (objects): readonly [Effect.Effect<void, PreconditionFailed>, Objects] =>
          options?.ifNoneMatch === true && RedBlackTree.has(objects, key)
            ? [Effect.fail(new PreconditionFailed({ operation: "put", key })), objects]
            : [Effect.void, setObject(objects, key, { bytes: copy, lastModifiedMs })])
      ))
  }
  return {
    description: `memory://${state.name}`,
    probe: Effect.void,
    put,
    get: (key, options) =>
      Effect.map(find("get", key), (stored) => {
        const into = options?.into
        if (into === undefined || stored.bytes.length > into.length) return stored.bytes.slice()
        into.set(stored.bytes)
        return into.subarray(0, stored.bytes.length)
      }),
    getRange: (key, offset, length) =>
      Effect.zipRight(
        assertRange(offset, length),
        Effect.map(find("getRange", key), (stored) => stored.bytes.slice(offset, offset + length))
      ),
    head: (key) =>
      Effect.map(
        find("head", key),
        (stored) => ({ key, sizeBytes: stored.bytes.length, lastModifiedMs: stored.lastModifiedMs })
      ),
    delete: (key) =>
      Ref.update(
        state.objects,
        (objects) => RedBlackTree.has(objects, key) ? RedBlackTree.removeFirst(objects, key) : objects
      ),
    // Pages are read one at a time from the current state, as S3 does: a key written behind the
    // cursor is not seen, one written ahead of it is.
    list: (prefix) =>
      Stream.paginateChunkEffect(Option.none<string>(), (after) =>
        Effect.map(Ref.get(state.objects), (objects) => {
          const infos = page(objects, prefix, after)
          const last = infos[infos.length - 1]
          const next = infos.length === listPageKeysMax && last !== undefined
            ? Option.some(Option.some(last.key))
            : Option.none()
          return [Chunk.unsafeFromArray(infos), next] as const
        }))
  }
}

/** A new, empty in-memory bucket: the store and its inspection handle. @category constructors */
export const make = (
  name = "memory"
): Effect.Effect<{ readonly store: ObjectStoreService; readonly bucket: MemoryBucketService }> =>
  Effect.map(makeBucket(name), (state) => ({ store: storeOf(state), bucket: inspect(state) }))

/** ObjectStore and MemoryBucket over a shared bucket state. @category layers */
export const layerWithBucket = (state: MemoryBucketState): Layer.Layer<ObjectStore | MemoryBucket> =>
  Layer.merge(Layer.succeed(ObjectStore, storeOf(state)), Layer.succeed(MemoryBucket, inspect(state)))

/** ObjectStore and MemoryBucket over a new, empty bucket. @category layers */
export const layer: Layer.Layer<ObjectStore | MemoryBucket> = Layer.unwrapEffect(
  Effect.map(makeBucket(), layerWithBucket)
)
