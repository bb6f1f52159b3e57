/**
 * FileSystemDisk: the local data directory on a real file system, through @effect/platform's
 * FileSystem and Path (`layer({ root })`; `layerNode({ root })` provides Node's). Paths are relative
 * to the root with '/' separators and checked by `normalizePath` (absolute paths and `..` segments
 * are refused), so nothing is read or written outside the root.
 *
 * Durability is explicit: `write` only writes (the page cache may keep it), `sync` fsyncs one file,
 * `writeAtomic` writes a temporary file in the same directory, fsyncs it, renames it over the target
 * and fsyncs the directory, so a crash leaves the old bytes or the new ones. Temporary files are
 * named `<name>.<n>.atomic-tmp`; `list` does not show them (`usedBytes` counts them: they use space).
 * `usedBytes` sums logical file sizes (`stat.size`), not allocated blocks: a sparse file counts whole.
 *
 * Directory lock (`lockDirectory`): the file `.directory.lock` names the holding process (pid, its
 * start time from /proc/<pid>/stat and the boot id), written to a temporary file and linked into
 * place, so it appears whole or not at all and a second opener's link fails (EEXIST). A lock whose
 * process is dead (no such pid, another start time: the pid was reused, or another boot) is stale:
 * it is renamed aside (one renamer wins), checked to be the stale one, and the link retried. Node
 * 20 has no flock and native addons cannot be built here, so the file is the lock; the kernel
 * releases nothing for us, which is why a dead holder is recognised by its process identity. The
 * lock files are hidden from `list`.
 *
 * A change (`write`, `writeAtomic`, `remove`) runs each of its system calls uninterruptibly: an
 * interruption takes effect between them, so a change returns only once no system call it issued
 * is still running (a call already issued lands whether or not anything waits for it). That is
 * what lets the directory guard (src/internal/directoryGuard.ts) keep the directory locked until
 * no change of a closed Storage can still land in it.
 *
 * Every PlatformError becomes a LocalIoError naming the operation, the relative path and the cause.
 *
 * Replaces: the local file I/O of OrioleDB's S3 mode (part files `<relnode>-<chkp>` written with
 * pwrite/fsync in src/btree/io.c, the control file written in place in src/s3/control.c).
 *
 * @since 0.1.0
 */
import { FileSystem, Path } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Effect, Either, Layer, Option, Ref, type Scope } from "effect"
import { DirectoryLocked, LocalIoError } from "../domain/Errors.js"
import * as NodePlatform from "../internal/NodePlatform.js"
import { LocalDisk, type LocalDiskService, normalizePath } from "../services/LocalDisk.js"

/** Options of the file-system disk. */
export interface FileSystemDiskOptions {
  /** The data directory; created (with its parents) when missing. Relative to the working directory. */
  readonly root: string
}

const temporarySuffix = ".atomic-tmp"

const isNotFound = (error: PlatformError): boolean => error._tag === "SystemError" && error.reason === "NotFound"
const isAlreadyExists = (error: PlatformError): boolean =>
  error._tag === "SystemError" && error.reason === "AlreadyExists"

/** The directory lock's file name; it and its temporary and stale copies start with it. */
export const directoryLockName = ".directory.lock"

/** Who holds a directory lock: a process, told apart from a later one with the same pid. */
interface LockOwner {
  readonly pid: number
  /** Field 22 of /proc/<pid>/stat: the process's start time in clock ticks since boot. */
  readonly startTicks: string | undefined
  readonly bootId: string | undefined
}

const describeOwner = (owner: LockOwner): string =>
  `process ${owner.pid}${owner.startTicks === undefined ? "" : ` (started at tick ${owner.startTicks})`}`

const parseOwner = (text: string): LockOwner | undefined => {
  try {
    const value: unknown = JSON.parse(text)
    if (typeof value !== "object" || value === null || !("pid" in value) || typeof value.pid !== "number") {
      return undefined
    }
    const field = (
      name: string
    ) => (name in value && typeof (value as Record<string, unknown>)[name] === "string"
      ? (value as Record<string, string>)[name]
      : undefined)
    return { pid: value.pid, startTicks: field("startTicks"), bootId: field("bootId") }
  } catch {
    return undefined
  }
}

/** The start time of a process, or undefined where /proc does not say (another OS, no such pid). */
const processStartTicks = (fs: FileSystem.FileSystem, pid: number | "self") =>
  fs.readFileString(`/proc/${pid}/stat`).pipe(
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    Effect.map((stat) => stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]),
    Effect.orElseSucceed(() => undefined)
  )

const currentOwner = (fs: FileSystem.FileSystem): Effect.Effect<LockOwner> =>
  Effect.all({
    pid: Effect.sync(() => process.pid),
    startTicks: processStartTicks(fs, "self"),
    bootId: fs.readFileString("/proc/sys/kernel/random/boot_id").pipe(
      Effect.map((id) => id.trim()),
      Effect.orElseSucceed(() => undefined)
    )
  })

/** Whether the process a lock names still runs: same boot, the pid alive, the same start time. */
const isRunning = (fs: FileSystem.FileSystem, owner: LockOwner, self: LockOwner): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    if (owner.bootId !== undefined && self.bootId !== undefined && owner.bootId !== self.bootId) return false
    const exists = yield* Effect.sync(() => {
      try {
        process.kill(owner.pid, 0)
        return true
      } catch (error) {
        return (error as { code?: unknown }).code === "EPERM" // alive, another user's
      }
    })
    if (!exists || owner.startTicks === undefined) return exists
    const startTicks = yield* processStartTicks(fs, owner.pid)
    return startTicks === undefined || startTicks === owner.startTicks
  })

/**
 * Takes the directory lock at `lockPath` for the current scope (see the module comment). Bounded:
 * three rounds of link, read, and rename-aside of a stale lock.
 */
const lockDirectoryAt = (
  fs: FileSystem.FileSystem,
  root: string,
  lockPath: string
): Effect.Effect<void, DirectoryLocked | PlatformError, Scope.Scope> =>
  Effect.gen(function*() {
    const self = yield* currentOwner(fs)
    const content = JSON.stringify(self)
    const temporary = `${lockPath}.${self.pid}.tmp`
    const aside = `${lockPath}.${self.pid}.stale`
    const readOrUndefined = (path: string) =>
      fs.readFileString(path).pipe(Effect.catchIf(isNotFound, () => Effect.succeed(undefined)))
    for (let round = 0; round < 3; round++) {
      yield* fs.writeFileString(temporary, content)
      const linked = yield* fs.link(temporary, lockPath).pipe(
        Effect.as(true),
        Effect.catchIf(isAlreadyExists, () => Effect.succeed(false)),
        Effect.ensuring(fs.remove(temporary).pipe(Effect.ignore))
      )
      if (linked) {
        yield* Effect.addFinalizer(() =>
          Effect.flatMap(readOrUndefined(lockPath), (found) => (found === content ? fs.remove(lockPath) : Effect.void))
            .pipe(Effect.ignore)
        )
        return
      }
      const observed = yield* readOrUndefined(lockPath)
      if (observed === undefined) continue
      const owner = parseOwner(observed)
      if (owner !== undefined && (yield* isRunning(fs, owner, self))) {
        return yield* Effect.fail(new DirectoryLocked({ path: root, holder: describeOwner(owner) }))
      }
      // Stale: move it aside (one renamer gets it), and put back what turns out not to be it.
      const moved = yield* fs.rename(lockPath, aside).pipe(
        Effect.as(true),
        Effect.catchIf(isNotFound, () => Effect.succeed(false))
      )
      if (!moved) continue
      const movedContent = yield* readOrUndefined(aside)
      if (movedContent !== observed) {
        yield* fs.link(aside, lockPath).pipe(Effect.ignore)
        yield* fs.remove(aside).pipe(Effect.ignore)
        return yield* Effect.fail(
          new DirectoryLocked({
            path: root,
            holder: "another process (the lock changed hands while a stale one was replaced)"
          })
        )
      }
      yield* fs.remove(aside)
      yield* Effect.logWarning(
        `data directory ${root}: replaced the stale lock of ${
          owner === undefined ? "an unreadable owner" : describeOwner(owner)
        }`
      )
    }
    return yield* Effect.fail(
      new DirectoryLocked({ path: root, holder: "another process (the lock changed hands three times)" })
    )
  })

const ioError = (operation: string, path: string) => (error: PlatformError): LocalIoError =>
  new LocalIoError({ operation, path, detail: error.message })

const assertRange = (operation: string, offset: number, length: number): Effect.Effect<void> =>
  Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0
    ? Effect.void
    : Effect.dieMessage(`${operation}: offset ${offset} and length ${length} must be non-negative integers`)

/** A LocalDisk over a directory of the given FileSystem. @category constructors */
/* eslint-disable max-lines-per-function -- a service's constructor: its operations are small functions sharing one closure, each under a screen */
export const make = (
  options: FileSystemDiskOptions
): Effect.Effect<LocalDiskService, LocalIoError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    /* eslint-enable max-lines-per-function */
    const fs = yield* FileSystem.FileSystem
    const pathApi = yield* Path.Path
    const root = pathApi.resolve(options.root)
    yield* fs.makeDirectory(root, { recursive: true }).pipe(Effect.mapError(ioError("open data directory", root)))
    const temporaryCounter = yield* Ref.make(0)

    // Checks a relative path and gives it with its absolute form.
    const resolve = (operation: string, path: string, allowRoot = false) =>
      Either.match(normalizePath(operation, path, { allowRoot }), {
        onLeft: (error) => Effect.fail(error),
        onRight: (relative) =>
          Effect.succeed({ relative, absolute: relative === "" ? root : pathApi.join(root, ...relative.split("/")) })
      })

    // Reads up to `buffer.length` bytes at `offset`; stops early at the end of the file.
    const readInto = (file: FileSystem.File, offset: number, buffer: Uint8Array) =>
      Effect.gen(function*() {
        yield* file.seek(offset, "start")
        let filled = 0
        while (filled < buffer.length) {
          const count = Number(yield* file.read(buffer.subarray(filled)))
          if (count === 0) break
          filled += count
        }
        return filled
      })

    const syncPath = (absolute: string) =>
      Effect.scoped(Effect.flatMap(fs.open(absolute, { flag: "r" }), (file) => file.sync))

    // Every regular file below `absolute`, as [relative path, size]; a missing directory is empty.
    const walk = (relative: string, absolute: string): Effect.Effect<Array<readonly [string, number]>, PlatformError> =>
      Effect.gen(function*() {
        const names = yield* fs.readDirectory(absolute).pipe(
          Effect.catchIf(isNotFound, () => Effect.succeed<Array<string>>([]))
        )
        const found: Array<readonly [string, number]> = []
        for (const name of names) {
          const childRelative = relative === "" ? name : `${relative}/${name}`
          const childAbsolute = pathApi.join(absolute, name)
          const info = yield* fs.stat(childAbsolute).pipe(Effect.option)
          if (Option.isNone(info)) continue // removed while listing
          if (info.value.type === "Directory") found.push(...(yield* walk(childRelative, childAbsolute)))
          else if (info.value.type === "File") found.push([childRelative, Number(info.value.size)])
        }
        return found
      })

    const read: LocalDiskService["read"] = (path, offset, length) =>
      Effect.gen(function*() {
        yield* assertRange("read", offset, length)
        const { absolute, relative } = yield* resolve("read", path)
        const buffer = new Uint8Array(length)
        yield* Effect.scoped(Effect.flatMap(fs.open(absolute, { flag: "r" }), (file) => readInto(file, offset, buffer)))
          .pipe(
            Effect.catchIf(isNotFound, () => Effect.void),
            Effect.mapError(ioError("read", relative))
          )
        return buffer
      })

    const readAllInto: LocalDiskService["readAllInto"] = (path, buffer) =>
      Effect.flatMap(resolve("readAllInto", path), ({ absolute, relative }) =>
        Effect.scoped(Effect.flatMap(fs.open(absolute, { flag: "r" }), (file) =>
          readInto(file, 0, buffer))).pipe(
            Effect.map(Option.some),
            Effect.catchIf(isNotFound, () => Effect.succeed(Option.none<number>())),
            Effect.mapError(ioError("readAllInto", relative))
          ))

    const readAll: LocalDiskService["readAll"] = (path) =>
      Effect.flatMap(resolve("readAll", path), ({ absolute, relative }) =>
        fs.readFile(absolute).pipe(
          Effect.map((bytes) =>
            Option.some(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
          ),
          Effect.catchIf(isNotFound, () => Effect.succeed(Option.none<Uint8Array>())),
          Effect.mapError(ioError("readAll", relative))
        ))

    const write: LocalDiskService["write"] = (path, offset, bytes) =>
      Effect.gen(function*() {
        yield* assertRange("write", offset, bytes.length)
        const { absolute, relative } = yield* resolve("write", path)
        const writeAt = Effect.scoped(
          Effect.flatMap(fs.open(absolute, { flag: "r+" }), (file) =>
            // An empty write creates the file and changes nothing else (writeAll refuses 0 bytes).
            bytes.length === 0 ? Effect.void : Effect.zipRight(file.seek(offset, "start"), file.writeAll(bytes)))
        )
        // Creating the file: parent directories, then an empty file ("a" never truncates one that a
        // concurrent writer created meanwhile), then the positioned write.
        const create = fs.makeDirectory(pathApi.dirname(absolute), { recursive: true }).pipe(
          Effect.zipRight(fs.writeFile(absolute, new Uint8Array(0), { flag: "a" })),
          Effect.zipRight(writeAt)
        )
        // Open, write and close: short, and uninterruptible as one (see the module comment).
        yield* writeAt.pipe(
          Effect.catchIf(isNotFound, () => create),
          Effect.mapError(ioError("write", relative)),
          Effect.uninterruptible
        )
      })

    const writeAtomic: LocalDiskService["writeAtomic"] = (path, bytes) =>
      Effect.gen(function*() {
        const { absolute, relative } = yield* resolve("writeAtomic", path)
        const directory = pathApi.dirname(absolute)
        const temporary = `${absolute}.${yield* Ref.getAndUpdate(temporaryCounter, (n) => n + 1)}${temporarySuffix}`
        // Each system call uninterruptible, interruptible between them: interrupted before the
        // rename, the target keeps its old bytes (the temporary file is left behind).
        const replace = Effect.gen(function*() {
          yield* Effect.uninterruptible(fs.makeDirectory(directory, { recursive: true }))
          yield* Effect.scoped(
            Effect.flatMap(
              fs.open(temporary, { flag: "w" }),
              (file) =>
                Effect.zipRight(
                  bytes.length === 0 ? Effect.void : Effect.uninterruptible(file.writeAll(bytes)),
                  Effect.uninterruptible(file.sync)
                )
            )
          )
          yield* Effect.uninterruptible(fs.rename(temporary, absolute))
          yield* Effect.uninterruptible(syncPath(directory))
        })
        yield* replace.pipe(
          Effect.tapError(() => fs.remove(temporary).pipe(Effect.ignore)),
          Effect.mapError(ioError("writeAtomic", relative))
        )
      })

    const sync: LocalDiskService["sync"] = (path) =>
      Effect.flatMap(resolve("sync", path), ({ absolute, relative }) =>
        syncPath(absolute).pipe(Effect.mapError(ioError("sync", relative))))

    const remove: LocalDiskService["remove"] = (path) =>
      Effect.flatMap(resolve("remove", path), ({ absolute, relative }) =>
        fs.remove(absolute).pipe(
          Effect.catchIf(isNotFound, () =>
            Effect.void),
          Effect.mapError(ioError("remove", relative)),
          Effect.uninterruptible
        ))

    const size: LocalDiskService["size"] = (path) =>
      Effect.flatMap(resolve("size", path), ({ absolute, relative }) =>
        fs.stat(absolute).pipe(
          Effect.map((info) => Option.some(Number(info.size))),
          Effect.catchIf(isNotFound, () => Effect.succeed(Option.none<number>())),
          Effect.mapError(ioError("size", relative))
        ))

    const list: LocalDiskService["list"] = (directory) =>
      Effect.flatMap(resolve("list", directory, true), ({ absolute, relative }) =>
        walk(relative, absolute).pipe(
          Effect.map((files) =>
            files.map(([path]) => path).filter((path) =>
              !path.endsWith(temporarySuffix) && !path.startsWith(directoryLockName)
            ).sort()
          ),
          Effect.mapError(ioError("list", relative))
        ))

    const usedBytes: LocalDiskService["usedBytes"] = (directory) =>
      Effect.flatMap(resolve("usedBytes", directory, true), ({ absolute, relative }) =>
        walk(relative, absolute).pipe(
          Effect.map((files) => files.reduce((total, [, bytes]) => total + bytes, 0)),
          Effect.mapError(ioError("usedBytes", relative))
        ))

    const lockDirectory: LocalDiskService["lockDirectory"] = lockDirectoryAt(
      fs,
      root,
      pathApi.join(root, directoryLockName)
    ).pipe(
      Effect.catchTag("SystemError", "BadArgument", (error) =>
        Effect.fail(ioError("lock data directory", directoryLockName)(error)))
    )

    return { root, read, readAll, readAllInto, write, writeAtomic, sync, remove, size, list, usedBytes, lockDirectory }
  })

/** LocalDisk over a directory of the FileSystem in context. @category layers */
export const layer = (
  options: FileSystemDiskOptions
): Layer.Layer<LocalDisk, LocalIoError, FileSystem.FileSystem | Path.Path> => Layer.effect(LocalDisk, make(options))

/** LocalDisk over a directory of Node's file system. @category layers */
export const layerNode = (options: FileSystemDiskOptions): Layer.Layer<LocalDisk, LocalIoError> =>
  layer(options).pipe(Layer.provide(NodePlatform.layer))
