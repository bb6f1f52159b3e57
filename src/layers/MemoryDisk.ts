/**
 * MemoryDisk: the local data directory held in memory, for tests and the deterministic simulation.
 * Every operation is one synchronous step (no real time, no randomness, no Promise), so it is atomic
 * with respect to other fibers and runs on any scheduler and clock.
 *
 * Crash model (`MemoryDiskControl.crash`): each file keeps two versions, its current bytes and its
 * bytes as of its last `sync` or `writeAtomic`. A crash reverts every file to the latter; a file
 * never synced vanishes. `remove` is durable at once (a removed file never comes back), which is
 * kinder than a real file system, where an unlink is durable only after an fsync of its directory.
 *
 * `lockDirectory` is an in-process open flag (a second open fails with DirectoryLocked); a crash
 * clears it, as the death of the process holding a directory lock releases it.
 *
 * Inspection and faults: besides `LocalDisk`, the layer provides `MemoryDiskControl`, a handle with
 * `crash`, counters (`stats`: syncs, atomic writes, writes, reads) and `failNext`, which makes the
 * next matching operation fail with a LocalIoError. `make` returns both handles; `layerOf` provides
 * a disk made earlier, so a "restarted" instance can reopen the same files after a crash.
 *
 * Replaces: nothing in OrioleDB, whose tests ran on real disks and could not model lost writes.
 *
 * @since 0.1.0
 */
import { Context, Effect, Either, Layer, Option } from "effect"
import { DirectoryLocked, LocalIoError } from "../domain/Errors.js"
import { LocalDisk, type LocalDiskService, normalizePath } from "../services/LocalDisk.js"

/** The operations of a LocalDisk, as names (for `failNext`). */
export type LocalDiskOperation =
  | "read"
  | "readAll"
  | "write"
  | "writeAtomic"
  | "sync"
  | "remove"
  | "size"
  | "list"
  | "usedBytes"

/** Counters of the operations a disk served (failed ones included). @category models */
export interface MemoryDiskStats {
  /** Calls of `sync` (each one an fsync on a real disk). */
  readonly syncs: number
  /** Calls of `writeAtomic` (each one two fsyncs on a real disk: the file and its directory). */
  readonly atomicWrites: number
  readonly writes: number
  readonly reads: number
  /** Files present now, and the sum of their sizes. */
  readonly files: number
  readonly bytes: number
}

/** Which operation an injected failure hits: the first one matching every given field. */
export interface FailureInjection {
  readonly operation?: LocalDiskOperation
  /** Hits only paths starting with this (after normalization). */
  readonly pathPrefix?: string
  /** The LocalIoError's detail; default "injected failure". */
  readonly detail?: string
}

/** Control of an in-memory disk, for tests. @category models */
export interface MemoryDiskControlService {
  /** Loses every write not synced: each file reverts to its last synced bytes, or vanishes; the
   * directory lock is released (its process died). */
  readonly crash: Effect.Effect<void>
  readonly stats: Effect.Effect<MemoryDiskStats>
  /** Calls of `sync` so far, per path (paths never synced are absent). */
  readonly syncsByPath: Effect.Effect<ReadonlyMap<string, number>>
  /** The next operation matching `injection` fails with a LocalIoError, once. Injections queue up. */
  readonly failNext: (injection?: FailureInjection) => Effect.Effect<void>
  /** The current bytes of a file (a copy), or None. */
  readonly peek: (path: string) => Effect.Effect<Option.Option<Uint8Array>>
  /** The bytes a crash would leave of a file (a copy), or None. */
  readonly peekDurable: (path: string) => Effect.Effect<Option.Option<Uint8Array>>
}

/** The control handle of the in-memory disk a layer provides. @category tags */
export class MemoryDiskControl extends Context.Tag("effect-s3-tier/MemoryDiskControl")<
  MemoryDiskControl,
  MemoryDiskControlService
>() {}

/** One file: a growable buffer (`data` holds at least `size` bytes) and its last synced bytes.
 * `durable` may share memory with `data` (after a `writeAtomic`, a `sync` or a crash): the first
 * write after that copies `data` (copy on write), so a sync costs no copy of the file. */
interface MemoryFile {
  data: Uint8Array
  size: number
  durable: Uint8Array | undefined
}

/** Gives `file` a buffer of its own before an in-place write, if its durable bytes share it. */
const ownData = (file: MemoryFile): void => {
  if (file.durable !== undefined && file.durable.buffer === file.data.buffer) file.data = file.data.slice()
}

const contentOf = (file: MemoryFile): Uint8Array => file.data.slice(0, file.size)

const growTo = (file: MemoryFile, size: number): void => {
  if (size <= file.data.length) return
  const grown = new Uint8Array(Math.max(size, file.data.length * 2, 64))
  grown.set(file.data.subarray(0, file.size))
  file.data = grown
}

const assertRange = (operation: string, offset: number, length: number): Effect.Effect<void> =>
  Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0
    ? Effect.void
    : Effect.dieMessage(`${operation}: offset ${offset} and length ${length} must be non-negative integers`)

const isBelow = (path: string, directory: string): boolean => directory === "" || path.startsWith(`${directory}/`)

/** A new, empty in-memory disk: the LocalDisk and its control handle. @category constructors */
export const make: Effect.Effect<{ readonly disk: LocalDiskService; readonly control: MemoryDiskControlService }> =
  // eslint-disable-next-line max-lines-per-function -- a service's constructor: its operations are small functions sharing one closure, each under a screen
  Effect.sync(() => {
    const files = new Map<string, MemoryFile>()
    const injections: Array<FailureInjection> = []
    const syncsByPath = new Map<string, number>()
    const counters = { syncs: 0, atomicWrites: 0, writes: 0, reads: 0 }
    // The open that holds the directory (a number per open, so a crash's clearing is not undone by
    // the crashed open's late release).
    const directoryLock = { heldBy: 0, opens: 0 }

    // Runs one operation as a single synchronous step, after path checks and injected failures.
    const operate = <A>(
      operation: LocalDiskOperation,
      rawPath: string,
      allowRoot: boolean,
      body: (path: string) => Either.Either<A, LocalIoError>
    ): Effect.Effect<A, LocalIoError> =>
      Effect.suspend(() => {
        const checked = normalizePath(operation, rawPath, { allowRoot })
        if (Either.isLeft(checked)) return Effect.fail(checked.left)
        const path = checked.right
        const index = injections.findIndex(
          (injection) =>
            (injection.operation === undefined || injection.operation === operation) &&
            (injection.pathPrefix === undefined || path.startsWith(injection.pathPrefix))
        )
        const injection = injections[index]
        if (injection !== undefined) {
          injections.splice(index, 1)
          return Effect.fail(new LocalIoError({ operation, path, detail: injection.detail ?? "injected failure" }))
        }
        return body(path)
      })

    // A file cannot be created where a directory is (a file has that path as its prefix) nor below a
    // file, as on a real file system. Checked at creation only, which is rare next to writes.
    const creationProblem = (path: string): string | undefined => {
      const segments = path.split("/")
      for (let count = 1; count < segments.length; count++) {
        if (files.has(segments.slice(0, count).join("/"))) {
          return `${segments.slice(0, count).join("/")} is a file, not a directory`
        }
      }
      for (const existing of files.keys()) if (existing.startsWith(`${path}/`)) return "the path is a directory"
      return undefined
    }

    const writeAt = (
      operation: LocalDiskOperation,
      path: string,
      offset: number,
      bytes: Uint8Array
    ): Either.Either<void, LocalIoError> => {
      let file = files.get(path)
      if (file === undefined) {
        const problem = creationProblem(path)
        if (problem !== undefined) return Either.left(new LocalIoError({ operation, path, detail: problem }))
        file = { data: new Uint8Array(0), size: 0, durable: undefined }
        files.set(path, file)
      }
      // An empty write creates the file and changes nothing else, as a 0-byte pwrite.
      if (bytes.length === 0) return Either.right(undefined)
      growTo(file, offset + bytes.length)
      ownData(file)
      file.data.set(bytes, offset)
      file.size = Math.max(file.size, offset + bytes.length)
      return Either.right(undefined)
    }

    const disk: LocalDiskService = {
      root: "memory:",
      read: (path, offset, length) =>
        Effect.zipRight(
          assertRange("read", offset, length),
          operate("read", path, false, (valid) => {
            counters.reads++
            const result = new Uint8Array(length)
            const file = files.get(valid)
            if (file !== undefined && offset < file.size) {
              result.set(file.data.subarray(offset, Math.min(file.size, offset + length)))
            }
            return Either.right(result)
          })
        ),
      readAll: (path) =>
        operate("readAll", path, false, (valid) => {
          counters.reads++
          return Either.right(Option.map(Option.fromNullable(files.get(valid)), contentOf))
        }),
      readAllInto: (path, buffer) =>
        // The same operation as readAll for fault injection: a rule on "readAll" fails both.
        operate("readAll", path, false, (valid) => {
          counters.reads++
          const file = files.get(valid)
          if (file === undefined) return Either.right(Option.none())
          const count = Math.min(file.size, buffer.length)
          buffer.set(file.data.subarray(0, count))
          return Either.right(Option.some(count))
        }),
      write: (path, offset, bytes) =>
        Effect.zipRight(
          assertRange("write", offset, bytes.length),
          operate("write", path, false, (valid) => {
            counters.writes++
            return writeAt("write", valid, offset, bytes)
          })
        ),
      writeAtomic: (path, bytes) =>
        operate("writeAtomic", path, false, (valid) => {
          counters.atomicWrites++
          if (!files.has(valid)) {
            const problem = creationProblem(valid)
            if (problem !== undefined) {
              return Either.left(new LocalIoError({ operation: "writeAtomic", path: valid, detail: problem }))
            }
          }
          const copy = bytes.slice()
          files.set(valid, { data: copy, size: copy.length, durable: copy })
          return Either.right(undefined)
        }),
      sync: (path) =>
        operate("sync", path, false, (valid) => {
          counters.syncs++
          const file = files.get(valid)
          if (file === undefined) {
            return Either.left(new LocalIoError({ operation: "sync", path: valid, detail: "no such file" }))
          }
          file.durable = file.data.subarray(0, file.size)
          syncsByPath.set(valid, (syncsByPath.get(valid) ?? 0) + 1)
          return Either.right(undefined)
        }),
      remove: (path) =>
        operate("remove", path, false, (valid) => {
          files.delete(valid)
          return Either.right(undefined)
        }),
      size: (path) =>
        operate(
          "size",
          path,
          false,
          (valid) => Either.right(Option.map(Option.fromNullable(files.get(valid)), (file) => file.size))
        ),
      list: (directory) =>
        operate(
          "list",
          directory,
          true,
          (valid) => Either.right(Array.from(files.keys()).filter((path) => isBelow(path, valid)).sort())
        ),
      usedBytes: (directory) =>
        operate("usedBytes", directory, true, (valid) => {
          let total = 0
          for (const [path, file] of files) if (isBelow(path, valid)) total += file.size
          return Either.right(total)
        }),
      lockDirectory: Effect.acquireRelease(
        Effect.suspend(() => {
          if (directoryLock.heldBy !== 0) {
            return Effect.fail(
              new DirectoryLocked({ path: "memory:", holder: `open ${directoryLock.heldBy} of this in-memory disk` })
            )
          }
          directoryLock.heldBy = ++directoryLock.opens
          return Effect.succeed(directoryLock.heldBy)
        }),
        (open) => Effect.sync(() => void (directoryLock.heldBy === open && (directoryLock.heldBy = 0)))
      ).pipe(Effect.asVoid)
    }

    const control: MemoryDiskControlService = {
      crash: Effect.sync(() => {
        directoryLock.heldBy = 0
        for (const [path, file] of Array.from(files)) {
          if (file.durable === undefined) files.delete(path)
          else files.set(path, { data: file.durable, size: file.durable.length, durable: file.durable })
        }
      }),
      stats: Effect.sync(() => {
        let bytes = 0
        for (const file of files.values()) bytes += file.size
        return { ...counters, files: files.size, bytes }
      }),
      syncsByPath: Effect.sync(() => new Map(syncsByPath)),
      failNext: (injection = {}) => Effect.sync(() => void injections.push(injection)),
      peek: (path) => Effect.sync(() => Option.map(Option.fromNullable(files.get(path)), contentOf)),
      peekDurable: (path) =>
        Effect.sync(() => Option.map(Option.fromNullable(files.get(path)?.durable), (durable) => durable.slice()))
    }
    return { disk, control }
  })

/** LocalDisk and MemoryDiskControl over a disk made earlier (shared across "restarts"). @category layers */
export const layerOf = (
  made: { readonly disk: LocalDiskService; readonly control: MemoryDiskControlService }
): Layer.Layer<LocalDisk | MemoryDiskControl> =>
  Layer.merge(Layer.succeed(LocalDisk, made.disk), Layer.succeed(MemoryDiskControl, made.control))

/** LocalDisk and MemoryDiskControl over a new, empty in-memory disk. @category layers */
export const layer: Layer.Layer<LocalDisk | MemoryDiskControl> = Layer.unwrapEffect(Effect.map(make, layerOf))
