/**
 * The ObjectStore contract suite: the guarantees of src/services/ObjectStore.ts, checked the same
 * way against every backend (memory, file system, S3 on s3rver). Each backend's test file calls
 * `suite(name, layer)`.
 *
 * Method: one store per suite (a ManagedRuntime built in `beforeAll`, disposed in `afterAll`; tests
 * run with `it.live`: the backends do real I/O), each test under its own key prefix so tests
 * cannot see each other's objects. (Not `it.layer`: @effect/vitest's `layer` reassigns the global
 * `it.effect` of the file to its own runtime, which would take the TestClock from later tests.) Checks: round
 * trips (0 B, 1 B, 16 MiB, overwrite), ranges (inside, across and past the end, empty), head,
 * missing keys (typed ObjectNotFound; delete succeeds), keys with spaces, unicode, '+' and other
 * characters S3 accepts, listing over more than 1000 keys (key order, prefix filtering, pages),
 * S3's UTF-8 key order, 10 concurrent conditional puts with exactly one winner, delete then get,
 * a get into a caller's buffer.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Chunk, Clock, Effect, Either, type Layer, ManagedRuntime, Stream } from "effect"
import type { ObjectStoreError } from "../../src/domain/Errors.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"

export interface SuiteOptions {
  /**
   * The backend stores keys with `.`, `..` or empty path segments as themselves (S3 does; s3rver,
   * which maps keys to paths, cannot, so its harness refuses them).
   */
  readonly dotSegmentKeys?: boolean
  /** Keys written for the listing test (more than 1000, S3's page size). */
  readonly listKeyCount?: number
  /**
   * How the listing test writes its 1000+ objects; default `put` (16 at a time). The s3rver suite
   * writes them into the server's store directly: 1000+ PUTs through s3rver take ~10 s on 2 cores
   * and that test is about listing (PUT is covered by the other tests).
   */
  readonly seedObjects?: (objects: ReadonlyArray<readonly [string, Uint8Array]>) => Effect.Effect<void>
  /** Put before every key (default none): a bucket that outlives the run needs one unique to it. */
  readonly keyPrefix?: string
  /** The backend reads a `get` into `GetOptions.into` when the object fits (default: it may not). */
  readonly readsInto?: boolean
}

const encoder = new TextEncoder()
const bytesOf = (text: string): Uint8Array => encoder.encode(text)

/** A deterministic pattern, so that a shifted or truncated copy cannot compare equal. */
const pattern = (sizeBytes: number, salt = 0): Uint8Array => {
  const bytes = new Uint8Array(sizeBytes)
  for (let index = 0; index < sizeBytes; index++) bytes[index] = (index * 31 + (index >>> 8) + salt) & 0xff
  return bytes
}

const assertBytes = (actual: Uint8Array, expected: Uint8Array, label: string): void => {
  assert.strictEqual(actual.length, expected.length, `${label}: length`)
  assert.strictEqual(
    Buffer.compare(
      Buffer.from(actual.buffer, actual.byteOffset, actual.length),
      Buffer.from(expected.buffer, expected.byteOffset, expected.length)
    ),
    0,
    `${label}: bytes`
  )
}

const failureTag = <A>(
  result: Either.Either<A, ObjectStoreError>
): string => (Either.isLeft(result) ? result.left._tag : "Success")

const listKeys = (prefix: string) =>
  Effect.flatMap(
    ObjectStore,
    (store) => Effect.map(Stream.runCollect(store.list(prefix)), (infos) => Chunk.toReadonlyArray(infos))
  )

let prefixCounter = 0

/** Registers the contract tests for one backend. */
export const suite = <E>(name: string, storeLayer: Layer.Layer<ObjectStore, E>, options: SuiteOptions = {}): void => {
  /** A key prefix no other test of this run uses. */
  const freshPrefix = (label: string): string => {
    prefixCounter += 1
    return `${options.keyPrefix ?? ""}suite-${prefixCounter}-${label}/`
  }
  describe(`${name} (ObjectStore contract)`, () => {
    const runtime = ManagedRuntime.make(storeLayer)
    beforeAll(() => runtime.runtime(), 60_000)
    afterAll(() => runtime.dispose(), 60_000)
    const test = (title: string, body: () => Effect.Effect<void, unknown, ObjectStore>, timeoutMs?: number) =>
      it.live(
        title,
        () => Effect.flatMap(runtime.runtimeEffect, (context) => Effect.provide(body(), context)),
        timeoutMs
      )

    test("probe succeeds on a usable store", () => Effect.flatMap(ObjectStore, (store) => store.probe))

    test("round-trips 0 bytes, 1 byte and 16 MiB, and an overwrite replaces the object", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const prefix = freshPrefix("roundtrip")
        const big = pattern(16 * 1024 * 1024)
        for (
          const [key, bytes] of [[`${prefix}empty`, new Uint8Array(0)], [`${prefix}one`, new Uint8Array([0xab])], [
            `${prefix}big`,
            big
          ]] as const
        ) {
          yield* store.put(key, bytes)
          assertBytes(yield* store.get(key), bytes, key)
          assert.strictEqual((yield* store.head(key)).sizeBytes, bytes.length)
        }
        yield* store.put(`${prefix}one`, bytesOf("second version"))
        assertBytes(yield* store.get(`${prefix}one`), bytesOf("second version"), "overwrite")
      }))

    test("get into a buffer: an object that fits comes back whole (in the buffer, from its start, when the store reads into it); a longer one as fresh bytes", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const prefix = freshPrefix("into")
        const fits = pattern(200 * 1024, 3)
        const longer = pattern(300 * 1024, 5)
        yield* store.put(`${prefix}fits`, fits)
        yield* store.put(`${prefix}longer`, longer)
        yield* store.put(`${prefix}empty`, new Uint8Array(0))
        const into = new Uint8Array(256 * 1024).fill(0xee)
        const got = yield* store.get(`${prefix}fits`, { into })
        assertBytes(got, fits, "fits")
        if (got.buffer === into.buffer) assert.strictEqual(got.byteOffset, into.byteOffset, "a view from the start")
        if (options.readsInto === true) {
          // Compared as a boolean: a failed strictEqual of two large buffers takes minutes to print.
          assert.isTrue(got.buffer === into.buffer, "read into the buffer")
          assert.isTrue(into.subarray(fits.length).every((byte) => byte === 0xee), "nothing written past the object")
        }
        const whole = yield* store.get(`${prefix}longer`, { into })
        assertBytes(whole, longer, "longer than the buffer")
        assert.isTrue(whole.buffer !== into.buffer, "fresh bytes")
        assertBytes(yield* store.get(`${prefix}empty`, { into }), new Uint8Array(0), "empty")
      }))

    test("head and list give each object's last-modified time, by the store's clock", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const prefix = freshPrefix("modified")
        // Stores keep whole seconds (S3's LastModified, some file systems): allow one either side.
        const beforeMs = (yield* Clock.currentTimeMillis) - 1_000
        yield* store.put(`${prefix}a`, bytesOf("a"))
        const afterMs = (yield* Clock.currentTimeMillis) + 1_000
        const headed = yield* store.head(`${prefix}a`)
        assert.isTrue(
          headed.lastModifiedMs >= beforeMs && headed.lastModifiedMs <= afterMs,
          `head: ${headed.lastModifiedMs} not in [${beforeMs}, ${afterMs}]`
        )
        const listed = yield* listKeys(prefix)
        assert.strictEqual(listed.length, 1)
        assert.isTrue(Math.abs(listed[0]!.lastModifiedMs - headed.lastModifiedMs) <= 1_000, "list and head agree")
      }))

    test("getRange returns [offset, offset + length), shorter at the end, empty past it", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const prefix = freshPrefix("range")
        const bytes = pattern(100, 7)
        yield* store.put(`${prefix}object`, bytes)
        yield* store.put(`${prefix}empty`, new Uint8Array(0))
        assertBytes(yield* store.getRange(`${prefix}object`, 10, 20), bytes.slice(10, 30), "inside")
        assertBytes(yield* store.getRange(`${prefix}object`, 0, 100), bytes, "whole")
        assertBytes(yield* store.getRange(`${prefix}object`, 90, 20), bytes.slice(90), "across the end")
        assertBytes(yield* store.getRange(`${prefix}object`, 99, 1), bytes.slice(99), "last byte")
        assert.strictEqual((yield* store.getRange(`${prefix}object`, 100, 5)).length, 0, "at the end")
        assert.strictEqual((yield* store.getRange(`${prefix}object`, 150, 5)).length, 0, "past the end")
        assert.strictEqual((yield* store.getRange(`${prefix}object`, 10, 0)).length, 0, "empty range")
        assert.strictEqual((yield* store.getRange(`${prefix}empty`, 0, 10)).length, 0, "empty object")
      }))

    test("a missing key is ObjectNotFound for get, getRange and head; its delete succeeds", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const key = `${freshPrefix("missing")}nothing`
        const attempts: ReadonlyArray<Effect.Effect<unknown, ObjectStoreError>> = [
          store.get(key),
          store.getRange(key, 0, 10),
          store.getRange(key, 0, 0),
          store.head(key)
        ]
        for (const attempt of attempts) {
          const result = yield* Effect.either(attempt)
          assert.strictEqual(failureTag(result), "ObjectNotFound")
          if (Either.isLeft(result) && result.left._tag === "ObjectNotFound") assert.strictEqual(result.left.key, key)
        }
        yield* store.delete(key)
        yield* store.delete(key)
      }))

    test("stores keys with spaces, unicode, '+' and other characters S3 accepts as themselves", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const prefix = freshPrefix("names")
        const names = [
          "with space",
          "unicode-ü-日本語-😀",
          "plus+sign",
          "a..b",
          "percent%20literal",
          "punctuation!~*'()&$@=;:,?#[]",
          "ends-with-slash/",
          "nested/deeper/leaf",
          "nested",
          ".hidden-looking",
          "@at"
        ].concat(options.dotSegmentKeys === true ? ["dots/../escape", "./here", "double//slash", "..", "."] : [])
        const keys = names.map((name) => prefix + name)
        yield* Effect.forEach(keys, (key, index) => store.put(key, bytesOf(`value ${index}`)), { concurrency: 4 })
        for (const [index, key] of keys.entries()) {
          assertBytes(yield* store.get(key), bytesOf(`value ${index}`), key)
          assert.strictEqual((yield* store.head(key)).key, key)
        }
        const listed = (yield* listKeys(prefix)).map((info) => info.key)
        assert.deepStrictEqual([...listed].sort(), [...keys].sort())
      }))

    test("lists keys in S3's order: by UTF-8 bytes, not by UTF-16 units or directory walk", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const prefix = freshPrefix("order")
        // '-' (2D) < '.' (2E) < '/' (2F); U+E000 (EE 80 80) < U+1F600 (F0 9F 98 80) in UTF-8,
        // although U+1F600's first UTF-16 unit (D83D) sorts before U+E000.
        const expected = ["a", "a-c", "a.A", "a/b", "a/b/c", "aA", "a\u00e9", "a\ue000", "a\u{1F600}", "b"].map((
          name
        ) => prefix + name)
        yield* Effect.forEach([...expected].reverse(), (key) => store.put(key, bytesOf(key)), { concurrency: 4 })
        const listed = (yield* listKeys(prefix)).map((info) => info.key)
        assert.deepStrictEqual(listed, expected)
      }))

    test("lists more than 1000 keys in key order across pages, filtered by prefix", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const prefix = freshPrefix("list")
        const count = options.listKeyCount ?? 1050
        const keys = Array.from({ length: count }, (_, index) => `${prefix}items/${index.toString().padStart(5, "0")}`)
        const objects = keys.map((key, index) => [key, new Uint8Array(index % 3)] as const)
        yield* options.seedObjects === undefined
          ? Effect.forEach(objects, ([key, bytes]) => store.put(key, bytes), { concurrency: 16, discard: true })
          : options.seedObjects(objects)
        // Neighbours that share a string prefix but are outside the listed prefix.
        yield* Effect.forEach([`${prefix}items`, `${prefix}itemsx/0`, `${prefix}item/0`, `${prefix}other/0`], (key) =>
          store.put(key, bytesOf("x")), { concurrency: 4 })
        const listed = yield* listKeys(`${prefix}items/`)
        assert.strictEqual(listed.length, count)
        assert.deepStrictEqual(
          listed.map((info) =>
            info.key
          ),
          keys
        )
        assert.deepStrictEqual(listed.map((info) => info.sizeBytes), keys.map((_, index) => index % 3))
        const narrowed = yield* listKeys(`${prefix}items/0010`)
        assert.deepStrictEqual(narrowed.map((info) => info.key), keys.slice(100, Math.min(110, count)))
        assert.strictEqual((yield* listKeys(`${prefix}nothing-here/`)).length, 0)
        const everything = yield* listKeys(prefix)
        assert.strictEqual(everything.length, count + 4)
      }), 60_000)

    test("of 10 concurrent conditional puts on one key exactly one wins", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const key = `${freshPrefix("conditional")}marker`
        const results = yield* Effect.forEach(
          Array.from({ length: 10 }, (_, index) => index),
          (index) => Effect.either(store.put(key, bytesOf(`writer ${index}`), { ifNoneMatch: true })),
          { concurrency: "unbounded" }
        )
        const winners = results.flatMap((result, index) => (Either.isRight(result) ? [index] : []))
        assert.strictEqual(winners.length, 1)
        assert.deepStrictEqual(
          results.filter(Either.isLeft).map((result) => result.left._tag),
          Array(9).fill("PreconditionFailed")
        )
        assertBytes(yield* store.get(key), bytesOf(`writer ${winners[0]}`), "winner's bytes")
        // An unconditional put still overwrites; a conditional one on a deleted key wins again.
        yield* store.put(key, bytesOf("plain"))
        assertBytes(yield* store.get(key), bytesOf("plain"), "plain overwrite")
        yield* store.delete(key)
        yield* store.put(key, bytesOf("again"), { ifNoneMatch: true })
        assertBytes(yield* store.get(key), bytesOf("again"), "after delete")
      }))

    test("delete removes the object: get and head fail, list no longer shows it", () =>
      Effect.gen(function*() {
        const store = yield* ObjectStore
        const prefix = freshPrefix("delete")
        yield* store.put(`${prefix}gone`, bytesOf("x"))
        yield* store.put(`${prefix}kept`, bytesOf("y"))
        yield* store.delete(`${prefix}gone`)
        assert.strictEqual(failureTag(yield* Effect.either(store.get(`${prefix}gone`))), "ObjectNotFound")
        assert.strictEqual(failureTag(yield* Effect.either(store.head(`${prefix}gone`))), "ObjectNotFound")
        assert.deepStrictEqual((yield* listKeys(prefix)).map((info) => info.key), [`${prefix}kept`])
      }))
  })
}
