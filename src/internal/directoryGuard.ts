/**
 * The data directory's guard: one Storage's view of its LocalDisk, which keeps the directory
 * locked until no write of that Storage can still land in it. Every call that changes the
 * directory (`write`, `writeAtomic`, `remove`) is counted while it runs, and the directory lock's
 * release closes the guard (later changes fail with LocalIoError) and releases the lock at once if
 * none runs, else when the last one ends.
 *
 * Why: the shutdown waits for the application's operations only for a bound (operationsBoundMs),
 * so a write on a disk that stalls longer runs on after it. Released at once, the lock let the
 * directory be opened again while such a write was pending; it then landed over the new
 * instance's own writes, which that instance's next checkpoint would upload as the part's content.
 * Held, a second open in this process fails with DirectoryLocked until the write ends (the lock of
 * a process that died is stale anyway). Reads are not counted: a late read changes nothing.
 *
 * A call is counted until it returns, which a change does only once nothing it started can still
 * land, interrupted or not (the LocalDisk contract: FileSystemDisk runs each system call
 * uninterruptibly), so every change is counted to its real end, with no fiber of its own.
 *
 * Replaces: nothing in OrioleDB, whose backends and their writes end with the postmaster.
 *
 * @since 0.1.0
 */
import { Effect, Exit, Layer, Scope } from "effect"
import { LocalIoError } from "../domain/Errors.js"
import { LocalDisk, type LocalDiskService } from "../services/LocalDisk.js"

interface GuardState {
  closed: boolean
  inFlight: number
  /** Set by a release that found changes running: the last of them to end releases the lock. */
  unlock: Effect.Effect<void> | undefined
}

const closedError = (operation: string, path: string) =>
  new LocalIoError({
    operation,
    path,
    detail: "the storage has shut down: its data directory takes no more changes from it"
  })

/** The guarded view of `disk`. */
export const make = (disk: LocalDiskService): LocalDiskService => {
  const state: GuardState = { closed: false, inFlight: 0, unlock: undefined }
  const leave = Effect.suspend(() => {
    state.inFlight--
    const unlock = state.inFlight === 0 ? state.unlock : undefined
    if (unlock === undefined) return Effect.void
    state.unlock = undefined
    return unlock
  })
  // Counted and uncounted in one uninterruptible region: an interruption between the two would
  // leave the count up, and the directory locked for good.
  const tracked = <A>(operation: string, path: string, call: Effect.Effect<A, LocalIoError>) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        if (state.closed) return Effect.fail(closedError(operation, path))
        state.inFlight++
        return Effect.ensuring(restore(call), leave)
      })
    )
  /** Closes the guard, then releases the lock (held in `lockScope`) now, or when the last change
   * still running ends. */
  const release = (lockScope: Scope.CloseableScope) =>
    Effect.suspend(() => {
      state.closed = true
      const unlock = Scope.close(lockScope, Exit.void)
      if (state.inFlight === 0) return unlock
      state.unlock = unlock
      return Effect.logWarning(
        `data directory ${JSON.stringify(disk.root)}: ${state.inFlight} write(s) of the closed storage ` +
          "still running; the directory stays locked until they end"
      )
    })
  return {
    ...disk,
    write: (path, offset, bytes) => tracked("write", path, disk.write(path, offset, bytes)),
    writeAtomic: (path, bytes) => tracked("writeAtomic", path, disk.writeAtomic(path, bytes)),
    remove: (path) => tracked("remove", path, disk.remove(path)),
    lockDirectory: Effect.flatMap(
      Effect.acquireRelease(Scope.make(), release),
      (lockScope) => Scope.extend(disk.lockDirectory, lockScope)
    )
  }
}

/** The guarded LocalDisk over the given one; a new layer per call, so that each Storage has its own. */
export const layer = (): Layer.Layer<LocalDisk, never, LocalDisk> =>
  Layer.effect(LocalDisk, Effect.map(LocalDisk, make))
