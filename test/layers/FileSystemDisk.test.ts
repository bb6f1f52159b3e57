/**
 * Goal: the file-system disk keeps the LocalDisk contract (shared suite) on a real directory, keeps
 * its files under its root (and only there), survives a reopen, and reports platform failures as
 * LocalIoError with the operation and path. Method: each test gets its own temporary directory
 * (removed when the test's scope closes) and inspects it with node:fs directly.
 */
import { FileSystem } from "@effect/platform"
import { NodeFileSystem, NodePath } from "@effect/platform-node"
import type { PlatformError } from "@effect/platform/Error"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber, Layer, Option, Scope } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOsPath from "node:path"
import * as FileSystemDisk from "../../src/layers/FileSystemDisk.js"
import { LocalDisk } from "../../src/services/LocalDisk.js"
import { localDiskSuite } from "./LocalDiskSuite.js"

const platform = Layer.merge(NodeFileSystem.layer, NodePath.layer)

const temporaryDirectory = Effect.flatMap(
  FileSystem.FileSystem,
  (fs) => fs.makeTempDirectoryScoped({ prefix: "fs-disk-" })
).pipe(
  Effect.provide(platform)
)

const makeDisk = Effect.flatMap(
  temporaryDirectory,
  (root) => FileSystemDisk.make({ root }).pipe(Effect.provide(platform))
)

describe("FileSystemDisk", () => {
  describe("LocalDisk contract", () => {
    localDiskSuite(makeDisk)
  })

  it.scopedLive("keeps its files under the root, creates the root, and a reopened disk sees them", () =>
    Effect.gen(function*() {
      const base = yield* temporaryDirectory
      const root = NodeOsPath.join(base, "data", "dir")
      const disk = yield* FileSystemDisk.make({ root }).pipe(Effect.provide(platform))
      assert.strictEqual(disk.root, root)
      yield* disk.write("wal/0000000000000000", 0, Uint8Array.from([1, 2, 3]))
      yield* disk.sync("wal/0000000000000000")
      yield* disk.writeAtomic("control", Uint8Array.from([4]))
      assert.deepStrictEqual(Array.from(NodeFs.readFileSync(NodeOsPath.join(root, "wal", "0000000000000000"))), [
        1,
        2,
        3
      ])
      assert.deepStrictEqual(NodeFs.readdirSync(root).sort(), ["control", "wal"])
      // A second disk over the same directory (a restart) through the layer.
      const reopened = yield* Effect.flatMap(LocalDisk, (again) => again.list("")).pipe(
        Effect.provide(FileSystemDisk.layerNode({ root }))
      )
      assert.deepStrictEqual(reopened, ["control", "wal/0000000000000000"])
    }))

  it.scopedLive("does not list a temporary file left by an interrupted atomic write, but counts its bytes", () =>
    Effect.gen(function*() {
      const root = yield* temporaryDirectory
      const disk = yield* FileSystemDisk.make({ root }).pipe(Effect.provide(platform))
      yield* disk.writeAtomic("control", Uint8Array.from([1]))
      NodeFs.writeFileSync(NodeOsPath.join(root, "control.7.atomic-tmp"), Uint8Array.from([1, 2]))
      assert.deepStrictEqual(yield* disk.list(""), ["control"])
      assert.strictEqual(yield* disk.usedBytes(""), 3)
    }))

  it.scopedLive("reports platform failures as LocalIoError with the operation and the relative path", () =>
    Effect.gen(function*() {
      const root = yield* temporaryDirectory
      const disk = yield* FileSystemDisk.make({ root }).pipe(Effect.provide(platform))
      NodeFs.mkdirSync(NodeOsPath.join(root, "a-directory"))
      const result = yield* Effect.either(disk.readAll("a-directory"))
      assert.isTrue(Either.isLeft(result))
      if (Either.isLeft(result)) {
        assert.strictEqual(result.left._tag, "LocalIoError")
        assert.strictEqual(result.left.operation, "readAll")
        assert.strictEqual(result.left.path, "a-directory")
        assert.include(result.left.message, "readAll \"a-directory\" failed")
      }
      assert.isTrue(Option.isSome(yield* disk.size("a-directory")))
    }))

  it.scopedLive("the directory lock: a second opener is refused with DirectoryLocked until the first scope closes; the lock file is not listed", () =>
    Effect.gen(function*() {
      const root = yield* temporaryDirectory
      const first = yield* FileSystemDisk.make({ root }).pipe(Effect.provide(platform))
      const second = yield* FileSystemDisk.make({ root }).pipe(Effect.provide(platform))
      const scope = yield* Scope.make()
      yield* Scope.extend(first.lockDirectory, scope)
      assert.isTrue(NodeFs.existsSync(NodeOsPath.join(root, FileSystemDisk.directoryLockName)))
      assert.deepStrictEqual(yield* first.list(""), [])
      const refused = yield* Effect.flip(Effect.scoped(second.lockDirectory))
      assert.strictEqual(refused._tag, "DirectoryLocked")
      assert.include(refused.message, `process ${process.pid}`)
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(NodeFs.existsSync(NodeOsPath.join(root, FileSystemDisk.directoryLockName)))
      yield* Effect.scoped(second.lockDirectory)
    }))

  it.scopedLive("the directory lock: a lock left by a dead process, or by an earlier process with this pid, is replaced", () =>
    Effect.gen(function*() {
      const root = yield* temporaryDirectory
      const disk = yield* FileSystemDisk.make({ root }).pipe(Effect.provide(platform))
      const lockPath = NodeOsPath.join(root, FileSystemDisk.directoryLockName)
      const ownStart = NodeFs.readFileSync("/proc/self/stat", "utf8").split(") ")[1]?.split(" ")[19]
      const stale = [
        { pid: 2 ** 22 + 7, startTicks: "1", bootId: undefined }, // no such pid (above pid_max)
        { pid: process.pid, startTicks: `${Number(ownStart) - 1}`, bootId: undefined } // pid reused
      ]
      for (const owner of stale) {
        NodeFs.writeFileSync(lockPath, JSON.stringify(owner))
        yield* Effect.scoped(
          Effect.zipRight(
            disk.lockDirectory,
            Effect.sync(() => assert.include(NodeFs.readFileSync(lockPath, "utf8"), `"pid":${process.pid}`))
          )
        )
      }
      assert.deepStrictEqual(NodeFs.readdirSync(root), [], "no lock file nor stale copy left")
    }))

  it.scopedLive("a root that is a file fails the layer with LocalIoError", () =>
    Effect.gen(function*() {
      const base = yield* temporaryDirectory
      const file = NodeOsPath.join(base, "file")
      NodeFs.writeFileSync(file, "x")
      const result = yield* Effect.either(FileSystemDisk.make({ root: file }).pipe(Effect.provide(platform)))
      assert.isTrue(Either.isLeft(result) && result.left._tag === "LocalIoError")
    }))
  it.scopedLive("an interrupted change returns only once its system call has landed: a rename and an unlink the device holds", () =>
    Effect.gen(function*() {
      const root = yield* temporaryDirectory
      const real = yield* FileSystem.FileSystem.pipe(Effect.provide(platform))
      const events: Array<string> = []
      let gate = { reached: yield* Deferred.make<void>(), released: yield* Deferred.make<void>() }
      // A system call the device holds: issued, it lands once released, whether or not its caller
      // still waits (a fiber of its own; an interruption only ends the caller's wait).
      const heldCall = (name: string, call: Effect.Effect<void, PlatformError>) => {
        const { reached, released } = gate
        return Effect.flatMap(
          Effect.forkDaemon(
            Deferred.succeed(reached, undefined).pipe(
              Effect.zipRight(Deferred.await(released)),
              Effect.zipRight(call),
              Effect.zipRight(Effect.sync(() => events.push(`${name} landed`)))
            )
          ),
          Fiber.join
        )
      }
      const held: FileSystem.FileSystem = {
        ...real,
        rename: (from, to) => heldCall("rename", real.rename(from, to)),
        remove: (path, options) => heldCall("unlink", real.remove(path, options))
      }
      const disk = yield* FileSystemDisk.make({ root }).pipe(
        Effect.provide(Layer.merge(Layer.succeed(FileSystem.FileSystem, held), NodePath.layer))
      )
      const changes = [
        ["rename", disk.writeAtomic("control", Uint8Array.from([7]))],
        ["unlink", disk.remove("control")]
      ] as const
      for (const [name, change] of changes) {
        gate = { reached: yield* Deferred.make<void>(), released: yield* Deferred.make<void>() }
        const running = yield* Effect.fork(change)
        yield* Deferred.await(gate.reached)
        const interrupting = yield* Effect.fork(
          Effect.zipRight(Fiber.interrupt(running), Effect.sync(() => events.push(`${name} caller returned`)))
        )
        for (let turn = 0; turn < 20; turn++) yield* Effect.yieldNow()
        yield* Deferred.succeed(gate.released, undefined)
        yield* Fiber.join(interrupting)
        assert.deepStrictEqual(events.splice(0), [`${name} landed`, `${name} caller returned`])
      }
      assert.isFalse(NodeFs.existsSync(NodeOsPath.join(root, "control")), "the unlink landed after the rename")
    }))
})
