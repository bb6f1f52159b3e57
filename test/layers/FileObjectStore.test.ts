/**
 * Goal: a local directory keeps the ObjectStore contract (the shared suite), and no key can reach
 * outside the root, temp files are never listed, a missing or wrong root is refused with a clear
 * typed error, and failed writes leave nothing behind.
 * Method: real files in temp directories (`it.live` / `it.scopedLive`), the key encoding checked by
 * properties (round trip, a safe alphabet), and escape attempts checked by walking the parent of
 * the root afterwards.
 */
import { FileSystem, Path } from "@effect/platform"
import { NodeFileSystem, NodePath } from "@effect/platform-node"
import { SystemError } from "@effect/platform/Error"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Either, FastCheck, Layer, Stream } from "effect"
import * as FileObjectStore from "../../src/layers/FileObjectStore.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { codePoint } from "../support/Shared.js"
import { suite } from "./ObjectStoreSuite.js"

const platform = Layer.merge(NodeFileSystem.layer, NodePath.layer)

suite(
  "FileObjectStore",
  Layer.unwrapScoped(
    Effect.map(
      Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeTempDirectoryScoped({ prefix: "file-store-" })),
      (root) => FileObjectStore.layer({ root })
    )
  ).pipe(Layer.provide(platform)),
  { dotSegmentKeys: true }
)

/** A store over `<temp>/bucket`, with the temp directory (the root's parent) for inspection. */
const scratch = (options: { readonly create?: boolean; readonly makeRoot?: boolean } = {}) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const parent = yield* fs.makeTempDirectoryScoped({ prefix: "file-store-" })
    const root = path.join(parent, "bucket")
    if (options.makeRoot !== false) yield* fs.makeDirectory(root)
    const store = yield* FileObjectStore.make({
      root,
      ...(options.create === undefined ? {} : { create: options.create })
    })
    return { fs, path, parent, root, store }
  })

/** Every file below a directory, as paths relative to it. */
const filesBelow = (fs: FileSystem.FileSystem, directory: string) =>
  Effect.map(fs.readDirectory(directory, { recursive: true }), (entries) => [...entries].sort())

const listAll = (
  store: { readonly list: (prefix: string) => Stream.Stream<{ readonly key: string }, unknown> },
  prefix = ""
) => Effect.map(Stream.runCollect(store.list(prefix)), (infos) => Chunk.toReadonlyArray(infos).map((info) => info.key))

describe("FileObjectStore key encoding", () => {
  it("round-trips every well-formed segment into a safe file name", () => {
    FastCheck.assert(
      FastCheck.property(FastCheck.string({ unit: codePoint, maxLength: 12 }), (segment) => {
        const name = FileObjectStore.encodeSegment(segment)
        if (name === undefined) return false
        return /^[A-Za-z0-9_.%-]+$/.test(name) && !name.startsWith(".") &&
          FileObjectStore.decodeSegment(name) === segment
      }),
      { numRuns: 1000 }
    )
  })

  it("maps '.', '..', empty and absolute-looking segments to names that stay inside the root", () => {
    assert.deepStrictEqual(FileObjectStore.keyToSegments("../x"), { segments: ["%2E.", "x@"] })
    assert.deepStrictEqual(FileObjectStore.keyToSegments("/etc/passwd"), { segments: ["%", "etc", "passwd@"] })
    assert.deepStrictEqual(FileObjectStore.keyToSegments("a/./b/"), { segments: ["a", "%2E", "b", "%@"] })
    assert.deepStrictEqual(FileObjectStore.keyToSegments("back\\slash"), { segments: ["back%5Cslash@"] })
    assert.strictEqual(FileObjectStore.encodeSegment("\ud800"), undefined)
  })

  it("refuses what a file system cannot hold, with a reason", () => {
    assert.deepStrictEqual(FileObjectStore.keyToSegments(""), {
      code: "InvalidKey",
      problem: "an object key cannot be empty"
    })
    const long = FileObjectStore.keyToSegments("x".repeat(300))
    assert.isTrue("code" in long && long.code === "KeyTooLong")
    const lone = FileObjectStore.keyToSegments("a/\udc00")
    assert.isTrue("code" in lone && lone.code === "InvalidKey")
  })
})

describe("FileObjectStore", () => {
  it.scopedLive("no key escapes the root: '../x', absolute-looking keys, '..' chains", () =>
    Effect.gen(function*() {
      const { fs, parent, store } = yield* scratch()
      const keys = ["../x", "../../etc/passwd", "/abs/x", "a/../../outside", "..", ".", "./.tmp/x", ".tmp", "\\..\\win"]
      for (const [index, key] of keys.entries()) yield* store.put(key, new Uint8Array([index]))
      const files = yield* filesBelow(fs, parent)
      assert.isTrue(
        files.every((file) => file === "bucket" || file.startsWith("bucket/")),
        `files outside the root: ${files.join(", ")}`
      )
      for (const [index, key] of keys.entries()) assert.deepStrictEqual(Array.from(yield* store.get(key)), [index], key)
      assert.deepStrictEqual([...(yield* listAll(store))].sort(), [...keys].sort())
    }).pipe(Effect.provide(platform)))

  it.scopedLive("temp files and foreign names are never listed", () =>
    Effect.gen(function*() {
      const { fs, path, root, store } = yield* scratch()
      yield* store.put("real", new Uint8Array([1]))
      yield* fs.writeFileString(path.join(root, ".tmp", "leftover-from-a-crash"), "partial")
      yield* fs.writeFileString(path.join(root, ".hidden"), "not a key")
      yield* fs.writeFileString(path.join(root, "no-suffix"), "not a key either")
      assert.deepStrictEqual(yield* listAll(store), ["real"])
    }).pipe(Effect.provide(platform)))

  it.scopedLive("put leaves no temp file behind, also when a conditional put loses", () =>
    Effect.gen(function*() {
      const { fs, path, root, store } = yield* scratch()
      yield* store.put("k", new Uint8Array([1]), { ifNoneMatch: true })
      const lost = yield* Effect.either(store.put("k", new Uint8Array([2]), { ifNoneMatch: true }))
      assert.isTrue(Either.isLeft(lost) && lost.left._tag === "PreconditionFailed")
      yield* store.put("k", new Uint8Array([3]))
      assert.deepStrictEqual(yield* fs.readDirectory(path.join(root, ".tmp")), [])
      assert.deepStrictEqual(Array.from(yield* store.get("k")), [3])
    }).pipe(Effect.provide(platform)))

  it.scopedLive("a missing root is ObjectStoreRejected with the path in the message, for probe and for every operation", () =>
    Effect.gen(function*() {
      const { root, store } = yield* scratch({ makeRoot: false })
      const probe = yield* Effect.either(store.probe)
      assert.isTrue(
        Either.isLeft(probe) && probe.left._tag === "ObjectStoreRejected" && probe.left.code === "NoSuchRoot"
      )
      if (Either.isLeft(probe)) assert.include(probe.left.message, root)
      for (
        const attempt of [
          store.put("k", new Uint8Array(1)),
          store.get("k"),
          store.head("k"),
          store.delete("k"),
          Stream.runDrain(store.list(""))
        ]
      ) {
        const result = yield* Effect.either(attempt)
        assert.isTrue(Either.isLeft(result) && result.left._tag === "ObjectStoreRejected", JSON.stringify(result))
      }
    }).pipe(Effect.provide(platform)))

  it.scopedLive("create: true makes the root at probe; a root that is a file is refused", () =>
    Effect.gen(function*() {
      const created = yield* scratch({ makeRoot: false, create: true })
      yield* created.store.probe
      assert.strictEqual((yield* created.fs.stat(created.root)).type, "Directory")
      yield* created.store.put("k", new Uint8Array([1]))

      const { fs, root, store } = yield* scratch({ makeRoot: false })
      yield* fs.writeFileString(root, "I am a file")
      const probe = yield* Effect.either(store.probe)
      assert.isTrue(
        Either.isLeft(probe) && probe.left._tag === "ObjectStoreRejected" && probe.left.code === "NotADirectory"
      )
    }).pipe(Effect.provide(platform)))

  it.scopedLive("a key the file system cannot hold is refused as KeyTooLong, not written", () =>
    Effect.gen(function*() {
      const { store } = yield* scratch()
      const result = yield* Effect.either(store.put(`a/${"é".repeat(100)}`, new Uint8Array(1)))
      assert.isTrue(
        Either.isLeft(result) && result.left._tag === "ObjectStoreRejected" && result.left.code === "KeyTooLong"
      )
      assert.deepStrictEqual(yield* listAll(store), [])
    }).pipe(Effect.provide(platform)))

  it.scopedLive("readOnly: opens a store on a read-only file system (EROFS) and attempts no write", () =>
    Effect.gen(function*() {
      // The bucket is written normally, then read through a FileSystem on which every call that
      // would write fails as a read-only mount does (EROFS), counting the attempts: a chmod cannot
      // stop root, which runs these tests.
      const { root, store: writer } = yield* scratch()
      yield* writer.put("wal/0001", new Uint8Array([1, 2, 3]))
      yield* FileSystem.FileSystem.pipe(Effect.flatMap((fs) => fs.remove(`${root}/.tmp`, { recursive: true })))
      const node = yield* FileSystem.FileSystem
      const writes: Array<string> = []
      const erofs = (method: string, target: unknown) => {
        writes.push(`${method} ${String(target)}`)
        return Effect.fail(
          new SystemError({
            reason: "Unknown",
            module: "FileSystem",
            method,
            pathOrDescriptor: String(target),
            description: "EROFS: read-only file system"
          })
        )
      }
      const readOnlyFs: FileSystem.FileSystem = {
        ...node,
        access: (
          target,
          options
        ) => (options?.writable === true ? erofs("access", target) : node.access(target, options)),
        makeDirectory: (target) => erofs("makeDirectory", target),
        writeFile: (target) => erofs("writeFile", target),
        remove: (target) => erofs("remove", target),
        rename: (from) => erofs("rename", from),
        link: (from) => erofs("link", from),
        open: (
          target,
          options
        ) => (options?.flag === undefined || options.flag === "r" ? node.open(target, options) : erofs("open", target))
      }
      const mounted = (readOnly: boolean) =>
        FileObjectStore.make({ root, readOnly }).pipe(Effect.provideService(FileSystem.FileSystem, readOnlyFs))
      // A writable open of this mount fails at the probe, as the CLI's read-only commands did.
      const writable = yield* mounted(false)
      const refused = yield* Effect.either(writable.probe)
      assert.isTrue(Either.isLeft(refused), "the seam must reproduce the read-only mount")
      writes.length = 0
      const store = yield* mounted(true)
      yield* store.probe
      assert.deepStrictEqual(Array.from(yield* store.get("wal/0001")), [1, 2, 3])
      assert.strictEqual((yield* store.head("wal/0001")).sizeBytes, 3)
      assert.deepStrictEqual(yield* listAll(store), ["wal/0001"])
      const put = yield* Effect.either(store.put("wal/0002", new Uint8Array([4])))
      assert.isTrue(Either.isLeft(put) && put.left._tag === "ObjectStoreRejected" && put.left.code === "ReadOnly")
      const removed = yield* Effect.either(store.delete("wal/0001"))
      assert.isTrue(
        Either.isLeft(removed) && removed.left._tag === "ObjectStoreRejected" && removed.left.code === "ReadOnly"
      )
      assert.deepStrictEqual(writes, [])
    }).pipe(Effect.provide(platform)))

  it.scopedLive("layerNode provides the store over Node's file system", () =>
    Effect.gen(function*() {
      const { root } = yield* scratch()
      const description = yield* Effect.map(ObjectStore, (store) => store.description).pipe(
        Effect.provide(FileObjectStore.layerNode({ root }))
      )
      assert.strictEqual(description, `file://${root}`)
    }).pipe(Effect.provide(platform)))
})
