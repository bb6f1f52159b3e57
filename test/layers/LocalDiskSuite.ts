/**
 * The LocalDisk contract suite: every backend (MemoryDisk, FileSystemDisk) runs it, so that the part
 * table, the WAL and the control file behave the same on both. Goal: reads past the end and of
 * missing files are zeros, writes create directories, `writeAtomic` replaces whole files, `list` and
 * `usedBytes` see every file below a directory, paths that could escape the root are refused, and a
 * random sequence of writes reads back like a plain byte-array model.
 */
import { assert, it } from "@effect/vitest"
import { Effect, Either, Exit, FastCheck, Option, type Scope } from "effect"
import type { LocalDiskService } from "../../src/services/LocalDisk.js"

const bytesOf = (...values: Array<number>): Uint8Array => Uint8Array.from(values)
const text = (value: string): Uint8Array => new TextEncoder().encode(value)

const failsWithLocalIoError = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.either(effect), (result) => {
    assert.isTrue(Either.isLeft(result), "expected a failure")
    if (Either.isLeft(result)) assert.strictEqual((result.left as { _tag?: string })._tag, "LocalIoError")
  })

/** Registers the contract tests for a backend; `makeDisk` gives a fresh, empty disk per test. */
export const localDiskSuite = (makeDisk: Effect.Effect<LocalDiskService, unknown, Scope.Scope>): void => {
  it.scopedLive("a missing file reads as zeros, and reads past the end are zero-filled", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      assert.deepStrictEqual(yield* disk.read("nothing/here", 3, 4), new Uint8Array(4))
      assert.isTrue(Option.isNone(yield* disk.readAll("nothing/here")))
      assert.isTrue(Option.isNone(yield* disk.size("nothing/here")))
      yield* disk.write("a/b/c.bin", 0, bytesOf(1, 2, 3))
      assert.deepStrictEqual(yield* disk.read("a/b/c.bin", 1, 5), bytesOf(2, 3, 0, 0, 0))
      assert.deepStrictEqual(yield* disk.read("a/b/c.bin", 10, 2), bytesOf(0, 0))
      assert.deepStrictEqual(yield* disk.read("a/b/c.bin", 0, 0), new Uint8Array(0))
    }))

  it.scopedLive("write creates parent directories and keeps the bytes around the written range", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      yield* disk.write("deep/er/file", 4, bytesOf(9, 9))
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("deep/er/file")), bytesOf(0, 0, 0, 0, 9, 9))
      yield* disk.write("deep/er/file", 1, bytesOf(7))
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("deep/er/file")), bytesOf(0, 7, 0, 0, 9, 9))
      assert.strictEqual(Option.getOrThrow(yield* disk.size("deep/er/file")), 6)
      // An empty write creates a missing file and does not extend an existing one.
      yield* disk.write("deep/er/file", 100, new Uint8Array(0))
      yield* disk.write("deep/empty", 100, new Uint8Array(0))
      assert.strictEqual(Option.getOrThrow(yield* disk.size("deep/er/file")), 6)
      assert.strictEqual(Option.getOrThrow(yield* disk.size("deep/empty")), 0)
      yield* disk.writeAtomic("deep/empty-atomic", new Uint8Array(0))
      assert.strictEqual(Option.getOrThrow(yield* disk.size("deep/empty-atomic")), 0)
    }))

  it.scopedLive("readAllInto reads a file from its start into a given buffer and says how much it read", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      const buffer = new Uint8Array(8).fill(0xee)
      assert.isTrue(Option.isNone(yield* disk.readAllInto("nothing/here", buffer)))
      yield* disk.write("parts/p0", 0, bytesOf(1, 2, 3, 4, 5))
      assert.strictEqual(Option.getOrThrow(yield* disk.readAllInto("parts/p0", buffer)), 5)
      assert.deepStrictEqual(buffer, bytesOf(1, 2, 3, 4, 5, 0xee, 0xee, 0xee))
      // A file longer than the buffer fills it: the caller sees count = buffer.length.
      yield* disk.write("parts/long", 0, bytesOf(9, 8, 7, 6, 5, 4, 3, 2, 1, 0))
      assert.strictEqual(Option.getOrThrow(yield* disk.readAllInto("parts/long", buffer)), 8)
      assert.deepStrictEqual(buffer, bytesOf(9, 8, 7, 6, 5, 4, 3, 2))
      // The same buffer again, for a shorter file: only its bytes are written.
      yield* disk.write("parts/short", 0, bytesOf(6, 6))
      assert.strictEqual(Option.getOrThrow(yield* disk.readAllInto("parts/short", buffer)), 2)
      assert.deepStrictEqual(buffer.subarray(0, 2), bytesOf(6, 6))
      yield* disk.write("parts/empty", 0, new Uint8Array(0))
      assert.strictEqual(Option.getOrThrow(yield* disk.readAllInto("parts/empty", buffer)), 0)
    }))

  it.scopedLive("writeAtomic replaces the whole file, shorter or longer, and leaves no temporary file", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      yield* disk.write("control", 0, text("0123456789"))
      yield* disk.writeAtomic("control", text("abc"))
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("control")), text("abc"))
      yield* disk.writeAtomic("dir/new", text("fresh"))
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("dir/new")), text("fresh"))
      assert.deepStrictEqual(yield* disk.list(""), ["control", "dir/new"])
      assert.strictEqual(yield* disk.usedBytes(""), 3 + 5)
    }))

  it.scopedLive("sync of a missing file fails; of a present one succeeds", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      yield* failsWithLocalIoError(disk.sync("missing"))
      yield* disk.write("present", 0, bytesOf(1))
      yield* disk.sync("present")
    }))

  it.scopedLive("remove frees the file and is fine on a missing one", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      yield* disk.write("parts/x/1", 0, new Uint8Array(100))
      yield* disk.write("parts/x/2", 0, new Uint8Array(50))
      assert.strictEqual(yield* disk.usedBytes("parts"), 150)
      yield* disk.remove("parts/x/1")
      yield* disk.remove("parts/x/1")
      yield* disk.remove("never/was")
      assert.strictEqual(yield* disk.usedBytes("parts"), 50)
      assert.isTrue(Option.isNone(yield* disk.readAll("parts/x/1")))
    }))

  it.scopedLive("list gives every file below a directory, recursively, sorted, relative to the root", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      for (
        const path of [
          "wal/0000000000000002",
          "wal/0000000000000001",
          "parts/b/0",
          "parts/a/1",
          "parts/a/0",
          "walrus",
          "control"
        ]
      ) {
        yield* disk.write(path, 0, bytesOf(1, 2))
      }
      assert.deepStrictEqual(yield* disk.list("wal"), ["wal/0000000000000001", "wal/0000000000000002"])
      assert.deepStrictEqual(yield* disk.list("parts/"), ["parts/a/0", "parts/a/1", "parts/b/0"])
      assert.deepStrictEqual(yield* disk.list(""), [
        "control",
        "parts/a/0",
        "parts/a/1",
        "parts/b/0",
        "wal/0000000000000001",
        "wal/0000000000000002",
        "walrus"
      ])
      assert.deepStrictEqual(yield* disk.list("missing"), [])
      assert.strictEqual(yield* disk.usedBytes("wal"), 4)
      assert.strictEqual(yield* disk.usedBytes("missing"), 0)
      assert.strictEqual(yield* disk.usedBytes(""), 14)
    }))

  it.scopedLive("refuses absolute paths and '..' segments in every operation; normalizes '.' and '//'", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      for (const bad of ["/etc/passwd", "../outside", "a/../../b", "a/..", "..", "a\\b"]) {
        yield* failsWithLocalIoError(disk.read(bad, 0, 1))
        yield* failsWithLocalIoError(disk.readAll(bad))
        yield* failsWithLocalIoError(disk.write(bad, 0, bytesOf(1)))
        yield* failsWithLocalIoError(disk.writeAtomic(bad, bytesOf(1)))
        yield* failsWithLocalIoError(disk.sync(bad))
        yield* failsWithLocalIoError(disk.remove(bad))
        yield* failsWithLocalIoError(disk.size(bad))
        yield* failsWithLocalIoError(disk.list(bad))
        yield* failsWithLocalIoError(disk.usedBytes(bad))
      }
      yield* failsWithLocalIoError(disk.write("", 0, bytesOf(1)))
      yield* disk.write("./x//y", 0, bytesOf(5))
      assert.deepStrictEqual(yield* disk.list(""), ["x/y"])
      assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll("x/y")), bytesOf(5))
    }))

  it.scopedLive("a file cannot be written below another file", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      yield* disk.write("plain", 0, bytesOf(1))
      yield* failsWithLocalIoError(disk.write("plain/child", 0, bytesOf(1)))
      yield* failsWithLocalIoError(disk.writeAtomic("plain/child", bytesOf(1)))
    }))

  it.scopedLive("random writes read back like a byte-array model (property)", () =>
    Effect.gen(function*() {
      const writeArb = FastCheck.record({
        file: FastCheck.constantFrom("f/one", "f/two"),
        offset: FastCheck.integer({ min: 0, max: 200 }),
        bytes: FastCheck.uint8Array({ minLength: 0, maxLength: 40 }),
        atomic: FastCheck.boolean()
      })
      const samples = FastCheck.sample(FastCheck.array(writeArb, { minLength: 1, maxLength: 25 }), {
        numRuns: 15,
        seed: 42
      })
      for (const writes of samples) {
        const disk = yield* makeDisk
        const model = new Map<string, Uint8Array>()
        for (const { atomic, bytes, file, offset } of writes) {
          if (atomic) {
            yield* disk.writeAtomic(file, bytes)
            model.set(file, bytes.slice())
          } else {
            yield* disk.write(file, offset, bytes)
            const before = model.get(file) ?? new Uint8Array(0)
            const after = new Uint8Array(
              bytes.length === 0 ? before.length : Math.max(before.length, offset + bytes.length)
            )
            after.set(before)
            if (bytes.length > 0) after.set(bytes, offset)
            model.set(file, after)
          }
        }
        for (const [file, expected] of model) {
          assert.deepStrictEqual(Option.getOrThrow(yield* disk.readAll(file)), expected)
          assert.deepStrictEqual(
            yield* disk.read(file, 10, 30),
            Uint8Array.from({ length: 30 }, (_, i) => expected[10 + i] ?? 0)
          )
        }
        assert.strictEqual(
          yield* disk.usedBytes("f"),
          Array.from(model.values()).reduce((sum, bytes) => sum + bytes.length, 0)
        )
      }
    }))

  it.scopedLive("rejects negative offsets as a defect, not a typed failure", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      const exit = yield* Effect.exit(disk.read("x", -1, 1))
      assert.isTrue(Exit.isFailure(exit) && exit.cause._tag === "Die")
    }))
}
