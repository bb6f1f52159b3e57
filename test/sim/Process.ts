/**
 * A process of the simulation that can be killed (SIGKILL): every instance of the real layer runs
 * its disk and its view of the bucket through one `ProcessGate`. Killing the gate is the instant of
 * death: from then on nothing the instance does reaches its disk or the bucket (each call fails at
 * once, so its fibers wind down fast), and the harness drops the disk's unsynced writes
 * (MemoryDisk's `crash`). What the disk and the bucket hold is then exactly what they held at that
 * instant, whatever the dead instance's fibers were doing: an upload not yet answered either landed
 * before (the memory bucket applies a request in one step) or never does.
 *
 * The gate sits above the fault decorator: what the process sends after its death is refused at
 * once, but a request it sent before (delayed, stalled or late on the network) may still land, as
 * a request already on the wire does when its process is killed.
 */
import { Effect, Stream } from "effect"
import { LocalIoError, ObjectStoreRejected } from "../../src/domain/Errors.js"
import type { LocalDiskService } from "../../src/services/LocalDisk.js"
import type { ObjectStoreService } from "../../src/services/ObjectStore.js"

/** Whether the process is dead; set once, never cleared. */
export interface ProcessGate {
  dead: boolean
}

export const makeGate = (): ProcessGate => ({ dead: false })

const killedDetail = "the process was killed"

const storeCall = <A, E>(
  gate: ProcessGate,
  operation: string,
  key: string | undefined,
  call: () => Effect.Effect<A, E>
): Effect.Effect<A, E | ObjectStoreRejected> =>
  Effect.suspend((): Effect.Effect<A, E | ObjectStoreRejected> =>
    gate.dead
      ? Effect.fail(
        new ObjectStoreRejected({
          operation,
          ...(key === undefined ? {} : { key }),
          code: "ProcessKilled",
          detail: killedDetail
        })
      )
      : call()
  )

/** The bucket as a process sees it: unreachable once the process is dead. */
export const gatedStore = (inner: ObjectStoreService, gate: ProcessGate): ObjectStoreService => ({
  description: inner.description,
  probe: storeCall(gate, "probe", undefined, () => inner.probe),
  put: (key, bytes, options) => storeCall(gate, "put", key, () => inner.put(key, bytes, options)),
  get: (key) => storeCall(gate, "get", key, () => inner.get(key)),
  getRange: (key, offset, length) => storeCall(gate, "getRange", key, () => inner.getRange(key, offset, length)),
  head: (key) => storeCall(gate, "head", key, () => inner.head(key)),
  delete: (key) => storeCall(gate, "delete", key, () => inner.delete(key)),
  list: (prefix) => Stream.unwrap(storeCall(gate, "list", prefix, () => Effect.succeed(inner.list(prefix))))
})

const diskCall = <A>(
  gate: ProcessGate,
  operation: string,
  path: string,
  call: () => Effect.Effect<A, LocalIoError>
): Effect.Effect<A, LocalIoError> =>
  Effect.suspend((): Effect.Effect<
    A,
    LocalIoError
  > => (gate.dead ? Effect.fail(new LocalIoError({ operation, path, detail: killedDetail })) : call()))

/** The local disk as a process sees it: nothing reaches it once the process is dead. */
export const gatedDisk = (inner: LocalDiskService, gate: ProcessGate): LocalDiskService => ({
  root: inner.root,
  read: (path, offset, length) => diskCall(gate, "read", path, () => inner.read(path, offset, length)),
  readAll: (path) => diskCall(gate, "readAll", path, () => inner.readAll(path)),
  readAllInto: (path, buffer) => diskCall(gate, "readAll", path, () => inner.readAllInto(path, buffer)),
  write: (path, offset, bytes) => diskCall(gate, "write", path, () => inner.write(path, offset, bytes)),
  writeAtomic: (path, bytes) => diskCall(gate, "writeAtomic", path, () => inner.writeAtomic(path, bytes)),
  sync: (path) => diskCall(gate, "sync", path, () => inner.sync(path)),
  remove: (path) => diskCall(gate, "remove", path, () => inner.remove(path)),
  size: (path) => diskCall(gate, "size", path, () => inner.size(path)),
  list: (directory) => diskCall(gate, "list", directory, () => inner.list(directory)),
  usedBytes: (directory) => diskCall(gate, "usedBytes", directory, () => inner.usedBytes(directory)),
  // The directory lock dies with the process (MemoryDisk's crash releases it).
  lockDirectory: Effect.suspend(
    () => (gate.dead
      ? Effect.fail(new LocalIoError({ operation: "lockDirectory", path: "", detail: killedDetail }))
      : inner.lockDirectory)
  )
})
