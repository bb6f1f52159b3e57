/**
 * Goal: the data directory's guard keeps the directory locked while a write of its Storage may
 * still land: the lock's release waits for every write, writeAtomic and remove still running (an
 * uninterruptible one, as a write through a lease is, to its end; an interrupted one no longer
 * counts), later changes are refused without reaching the disk, and with nothing running the lock
 * is released at once.
 * Method: the guard over a MemoryDisk whose calls can be held on Deferreds, and once over a real
 * directory (FileSystemDisk, whose lock is a file naming this process); whether the lock is held
 * is read by taking it again on a disk over the same directory (DirectoryLocked while held).
 */
import { FileSystem } from "@effect/platform"
import { NodeFileSystem, NodePath } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, Option, Scope } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOsPath from "node:path"
import * as DirectoryGuard from "../../src/internal/directoryGuard.js"
import * as FileSystemDisk from "../../src/layers/FileSystemDisk.js"
import * as MemoryDisk from "../../src/layers/MemoryDisk.js"
import type { LocalDiskService } from "../../src/services/LocalDisk.js"

const failureTag = <A, E>(exit: Exit.Exit<A, E>): string | undefined =>
  Exit.isFailure(exit)
    ? Option.getOrUndefined(Option.map(Cause.failureOption(exit.cause), (error) => (error as { _tag?: string })._tag))
    : undefined

/** Whether the directory is free: taking its lock again on the disk under the guard succeeds. */
const lockIsFree = (disk: LocalDiskService) =>
  Effect.map(Effect.exit(Effect.scoped(disk.lockDirectory)), Exit.isSuccess)

/** A disk call that says it began, waits for `release`, then runs `call` and says it landed. */
const heldCall = <A, E>(
  gate: {
    readonly begun: Deferred.Deferred<void>
    readonly release: Deferred.Deferred<void>
    readonly landed: Deferred.Deferred<void>
  },
  call: Effect.Effect<A, E>
) =>
  Deferred.succeed(gate.begun, undefined).pipe(
    Effect.zipRight(Deferred.await(gate.release)),
    Effect.zipRight(call),
    Effect.zipLeft(Deferred.succeed(gate.landed, undefined))
  )

const makeGate = Effect.all({
  begun: Deferred.make<void>(),
  release: Deferred.make<void>(),
  landed: Deferred.make<void>()
})

/** The guard over `inner`, whose writes are held on `gate` (opened when the test's scope closes),
 * its lock taken in `scope`. */
const lockedWithHeldWrites = (inner: LocalDiskService) =>
  Effect.gen(function*() {
    const gate = yield* makeGate
    // A failing test must not wait forever on an uninterruptible write held on the gate.
    yield* Effect.addFinalizer(() => Deferred.succeed(gate.release, undefined))
    const guarded = DirectoryGuard.make({
      ...inner,
      write: (path, offset, bytes) => heldCall(gate, inner.write(path, offset, bytes))
    })
    const scope = yield* Scope.make()
    yield* Scope.extend(guarded.lockDirectory, scope)
    return { gate, guarded, inner, scope }
  })

/** The same over a new MemoryDisk. */
const memoryWithHeldWrites = Effect.flatMap(MemoryDisk.make, ({ disk }) => lockedWithHeldWrites(disk))

describe("DirectoryGuard", () => {
  it.scoped("the lock outlives the close while an uninterruptible write runs, and is released when it ends", () =>
    Effect.gen(function*() {
      const { gate, guarded, inner, scope } = yield* memoryWithHeldWrites
      // As a write through a lease: uninterruptible, so a caller that gives up does not cut it.
      const caller = yield* Effect.fork(Effect.uninterruptible(guarded.write("a", 0, new Uint8Array([7]))))
      yield* Deferred.await(gate.begun)
      const givingUp = yield* Effect.fork(Fiber.interrupt(caller))
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(yield* lockIsFree(inner), "locked while the write still runs")
      yield* Deferred.succeed(gate.release, undefined)
      yield* Deferred.await(gate.landed)
      yield* Fiber.join(givingUp)
      assert.deepStrictEqual(Option.getOrUndefined(yield* inner.readAll("a")), new Uint8Array([7]))
      assert.isTrue(yield* lockIsFree(inner), "released once the write ended")
    }))

  it.scoped("an interrupted write no longer holds the lock", () =>
    Effect.gen(function*() {
      const { gate, guarded, inner, scope } = yield* memoryWithHeldWrites
      const caller = yield* Effect.fork(guarded.write("a", 0, new Uint8Array([7])))
      yield* Deferred.await(gate.begun)
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(yield* lockIsFree(inner))
      yield* Fiber.interrupt(caller)
      assert.isTrue(yield* lockIsFree(inner), "released when the last call ended, interrupted")
    }))

  it.effect("after the close, changes are refused and never reach the disk; reads still work", () =>
    Effect.gen(function*() {
      const { disk } = yield* MemoryDisk.make
      const guarded = DirectoryGuard.make(disk)
      yield* disk.write("kept", 0, new Uint8Array([1]))
      yield* Effect.scoped(guarded.lockDirectory)
      assert.isTrue(yield* lockIsFree(disk), "nothing ran: the lock was released at once")
      assert.strictEqual(failureTag(yield* Effect.exit(guarded.write("late", 0, new Uint8Array([1])))), "LocalIoError")
      assert.strictEqual(
        failureTag(yield* Effect.exit(guarded.writeAtomic("late", new Uint8Array([1])))),
        "LocalIoError"
      )
      assert.strictEqual(failureTag(yield* Effect.exit(guarded.remove("kept"))), "LocalIoError")
      assert.isTrue(Option.isNone(yield* disk.readAll("late")))
      assert.deepStrictEqual(Option.getOrUndefined(yield* guarded.readAll("kept")), new Uint8Array([1]))
    }))

  it.effect("a writeAtomic and a remove in flight hold the lock too, until the last one ends", () =>
    Effect.gen(function*() {
      const { disk } = yield* MemoryDisk.make
      const atomicGate = yield* makeGate
      const removeGate = yield* makeGate
      const guarded = DirectoryGuard.make({
        ...disk,
        writeAtomic: (path, bytes) => heldCall(atomicGate, disk.writeAtomic(path, bytes)),
        remove: (path) => heldCall(removeGate, disk.remove(path))
      })
      const scope = yield* Scope.make()
      yield* Scope.extend(guarded.lockDirectory, scope)
      const atomic = yield* Effect.fork(guarded.writeAtomic("a", new Uint8Array([1])))
      const removal = yield* Effect.fork(guarded.remove("b"))
      yield* Deferred.await(atomicGate.begun)
      yield* Deferred.await(removeGate.begun)
      yield* Scope.close(scope, Exit.void)
      yield* Deferred.succeed(atomicGate.release, undefined)
      yield* Fiber.join(atomic)
      assert.isFalse(yield* lockIsFree(disk), "the remove still runs")
      yield* Deferred.succeed(removeGate.release, undefined)
      yield* Fiber.join(removal)
      assert.isTrue(yield* lockIsFree(disk))
    }))

  it.scopedLive("on a real directory the lock file stays until the write lands: a second open is DirectoryLocked", () =>
    Effect.gen(function*() {
      const platform = Layer.merge(NodeFileSystem.layer, NodePath.layer)
      const root = yield* Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeTempDirectoryScoped()).pipe(
        Effect.provide(platform)
      )
      const disk = yield* FileSystemDisk.make({ root }).pipe(Effect.provide(platform))
      const { gate, guarded, scope } = yield* lockedWithHeldWrites(disk)
      const writer = yield* Effect.fork(Effect.uninterruptible(guarded.write("parts/a", 0, new Uint8Array([9]))))
      yield* Deferred.await(gate.begun)
      yield* Scope.close(scope, Exit.void)
      // A second disk over the directory, as a second open in this process makes.
      const second = yield* FileSystemDisk.make({ root }).pipe(Effect.provide(platform))
      assert.strictEqual(failureTag(yield* Effect.exit(Effect.scoped(second.lockDirectory))), "DirectoryLocked")
      yield* Deferred.succeed(gate.release, undefined)
      yield* Fiber.join(writer)
      assert.deepStrictEqual(Array.from(NodeFs.readFileSync(NodeOsPath.join(root, "parts", "a"))), [9])
      assert.isTrue(yield* lockIsFree(second), "the lock file went with the write")
    }))
})
