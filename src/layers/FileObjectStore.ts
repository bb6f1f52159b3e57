/**
 * FileObjectStore: a local directory used as a bucket, the embedded default (no S3 needed), through
 * @effect/platform's FileSystem and Path.
 *
 * Layout. A key is split on '/' and each segment is encoded into a safe file name, so that no key
 * can reach outside the root and every key S3 accepts is stored as itself:
 * - each segment is percent-encoded (UTF-8) except `A-Z a-z 0-9 _ - .`; a leading '.' is encoded
 *   too, so no name is `.`, `..` or hidden; the empty segment (`a//b`, `/a`, `a/`) is the name `%`;
 * - all but the last segment are directories; the last is the object file, named with a final
 *   `@` (never produced by the encoding), so a key `a` and a key `a/b` can both exist;
 * - temp files live in `<root>/.tmp/` (a name no key maps to) and are never listed.
 * Segments whose encoded name exceeds 255 bytes (a file system limit; S3 allows 1024-byte keys)
 * are rejected with `ObjectStoreRejected` code "KeyTooLong", as are keys that are not well-formed
 * UTF-16 (S3 requires valid UTF-8). Keys are case-sensitive only on a case-sensitive file system.
 *
 * Writes. `put` writes a temp file with exclusive create, fsyncs it, then publishes it: by
 * `rename` (atomic replace) or, for a conditional put, by `link` to the final name, which fails
 * with EEXIST when the key exists. `link(2)` is atomic in the kernel, so of concurrent conditional
 * puts exactly one wins, within one process and across processes, with no in-process lock (it
 * needs a file system with hard links: ext4, xfs, btrfs, tmpfs, APFS). The object's directory is
 * made only when the publish finds it missing (so a put into an existing directory costs no extra
 * system call), then fsynced (and every directory up to the root when new directories had to be
 * made). The temp file is removed on every exit path but a rename (which leaves no temp name).
 * Empty directories left by deletes stay (they are not keys).
 *
 * Listing walks the directories below the prefix, sorts the keys in S3's order (UTF-8 bytes) and
 * emits them in pages of 1000, reading sizes page by page. A missing root is `ObjectStoreRejected`
 * (code "NoSuchRoot"); `probe` says so before anything is written, or creates it with `create`.
 *
 * Read-only. With `readOnly` the store never writes: `probe` only checks that the root is a
 * readable directory (it makes no `.tmp` and asks for no write access, so a store on a read-only
 * file system, EROFS, opens), and `put` and `delete` fail with `ObjectStoreRejected` code
 * "ReadOnly" before touching the file system. The read-only commands (`verify`, `inspect`) use it.
 *
 * Replaces: OrioleDB has no embedded store (it needs S3); this plays the bucket's part for the
 * CLI's default run and the tests, under the same contract (src/services/ObjectStore.ts).
 *
 * @since 0.1.0
 */
import { FileSystem, Path } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Array as Arr, Chunk, Effect, Layer, Option, Random, type Scope, Stream } from "effect"
import { ObjectNotFound, ObjectStoreRejected, ObjectStoreUnavailable, PreconditionFailed } from "../domain/Errors.js"
import type { ObjectStoreError } from "../domain/Errors.js"
import * as NodePlatform from "../internal/NodePlatform.js"
import { type ObjectInfo, ObjectStore, type ObjectStoreService, type PutOptions } from "../services/ObjectStore.js"
import { compareKeys, listPageKeysMax } from "./MemoryObjectStore.js"

/** Options of the file store. */
export interface FileObjectStoreOptions {
  /** The directory that plays the bucket. */
  readonly root: string
  /** Create the root (and its parents) at `probe` when it is missing; otherwise that is an error. */
  readonly create?: boolean
  /** Never write (see the header): for readers of a store that may be on a read-only file system. */
  readonly readOnly?: boolean
}

const objectSuffix = "@"
const tempDirectoryName = ".tmp"
const fileNameBytesMax = 255
const keyBytesMax = 1024
const tempNameAttemptsMax = 3
const statConcurrency = 16

/** A file's modification time in ms; unknown: never old enough to collect. */
const mtimeMs = (info: FileSystem.File.Info): number =>
  Option.match(info.mtime, { onNone: () => Number.MAX_SAFE_INTEGER, onSome: (date) => date.getTime() })

// ---------------------------------------------------------------------------------------------
// Key encoding (pure)
// ---------------------------------------------------------------------------------------------

const hex = (character: string): string => `%${character.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`

/** The file name of one key segment; `undefined` when the segment is not well-formed UTF-16. */
export const encodeSegment = (segment: string): string | undefined => {
  if (segment === "") return "%"
  let encoded: string
  try {
    encoded = encodeURIComponent(segment)
  } catch {
    return undefined
  }
  // encodeURIComponent keeps `! ~ * ' ( )`; they are encoded here so the alphabet is [A-Za-z0-9_.-%].
  encoded = encoded.replace(/[!~*'()]/g, hex)
  return encoded.startsWith(".") ? `%2E${encoded.slice(1)}` : encoded
}

/** The key segment of a file name; `undefined` for a name no key maps to. */
export const decodeSegment = (name: string): string | undefined => {
  if (name === "%") return ""
  if (name === "" || name.startsWith(".") || !/^[A-Za-z0-9_.%-]+$/.test(name)) return undefined
  try {
    return decodeURIComponent(name)
  } catch {
    return undefined
  }
}

/** The path segments (relative to the root) of a key's object file, or why the key cannot be stored. */
export const keyToSegments = (
  key: string
): { readonly segments: ReadonlyArray<string> } | { readonly problem: string; readonly code: string } => {
  if (key === "") return { code: "InvalidKey", problem: "an object key cannot be empty" }
  const segments: Array<string> = []
  const parts = key.split("/")
  for (let index = 0; index < parts.length; index++) {
    const part = parts[index] ?? ""
    const encoded = encodeSegment(part)
    if (encoded === undefined) return { code: "InvalidKey", problem: "the key is not valid UTF-8 (a lone surrogate)" }
    const name = index === parts.length - 1 ? encoded + objectSuffix : encoded
    if (name.length > fileNameBytesMax) {
      return {
        code: "KeyTooLong",
        problem: `segment ${
          JSON.stringify(part)
        } encodes to ${name.length} bytes; the file store allows ${fileNameBytesMax}`
      }
    }
    segments.push(name)
  }
  if (new TextEncoder().encode(key).length > keyBytesMax) {
    return { code: "KeyTooLong", problem: `keys are at most ${keyBytesMax} bytes of UTF-8` }
  }
  return { segments }
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

const isNotFound = (error: PlatformError): boolean => error._tag === "SystemError" && error.reason === "NotFound"
const isAlreadyExists = (error: PlatformError): boolean =>
  error._tag === "SystemError" && error.reason === "AlreadyExists"

/** A file-system failure as a store failure: refusals are permanent, the rest transient. */
const classifyIoError = (
  operation: string,
  key: string | undefined,
  error: PlatformError
): ObjectStoreRejected | ObjectStoreUnavailable => {
  const detail = error.message
  if (error._tag === "BadArgument") return new ObjectStoreRejected({ operation, key, code: "BadArgument", detail })
  switch (error.reason) {
    case "PermissionDenied":
    case "BadResource":
    case "NotFound":
    case "AlreadyExists":
      return new ObjectStoreRejected({ operation, key, code: error.reason, detail })
    case "TimedOut":
      return new ObjectStoreUnavailable({ operation, key, reason: "Timeout", detail })
    default:
      return new ObjectStoreUnavailable({ operation, key, reason: "ServerError", detail })
  }
}

/** The store over a root directory. @category constructors */
/* eslint-disable max-lines-per-function -- a service's constructor: its operations are small functions sharing one closure, each under a screen */
export const make = (
  options: FileObjectStoreOptions
): Effect.Effect<ObjectStoreService, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    /* eslint-enable max-lines-per-function */
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const root = path.resolve(options.root)
    const tempDirectory = path.join(root, tempDirectoryName)

    const missingRoot = (operation: string, key: string | undefined) =>
      new ObjectStoreRejected({
        operation,
        key,
        code: "NoSuchRoot",
        detail: `the object store directory ${root} does not exist; create it first (or ask for it to be created)`
      })
    const io = (operation: string, key: string | undefined) => (error: PlatformError) =>
      classifyIoError(operation, key, error)

    /** After a NotFound: the root itself is missing (Rejected), or only the object (None). */
    const checkRoot = (
      operation: string,
      key: string | undefined
    ): Effect.Effect<void, ObjectStoreRejected | ObjectStoreUnavailable> =>
      Effect.flatMap(Effect.mapError(fs.exists(root), io(operation, key)), (exists) =>
        exists ? Effect.void : Effect.fail(missingRoot(operation, key)))

    const objectPath = (operation: string, key: string): Effect.Effect<string, ObjectStoreRejected> => {
      const mapped = keyToSegments(key)
      if ("problem" in mapped) {
        return Effect.fail(new ObjectStoreRejected({ operation, key, code: mapped.code, detail: mapped.problem }))
      }
      const target = path.join(root, ...mapped.segments)
      // Defense in depth: the encoding leaves no '.', '..' or empty segment, so this always holds.
      return target.startsWith(root + path.sep)
        ? Effect.succeed(target)
        : Effect.dieMessage(`key ${JSON.stringify(key)} maps outside ${root}`)
    }

    const syncDirectory = (directory: string) =>
      Effect.scoped(Effect.flatMap(fs.open(directory, { flag: "r" }), (file) =>
        file.sync))

    /**
     * Opens a new temp file (exclusive create), making `.tmp` once if it is missing. The temp file
     * is removed when the scope closes unless `renamed` was set (a rename leaves no temp name behind,
     * so removing it would only cost a system call; after a link it is a second name and goes).
     */
    const openTemp = (key: string) => {
      const attempt = (
        remaining: number,
        madeDirectory: boolean
      ): Effect.Effect<
        { readonly file: FileSystem.File; readonly tempPath: string; readonly published: { renamed: boolean } },
        ObjectStoreError,
        Scope.Scope
      > =>
        Effect.gen(function*() {
          const tempPath = path.join(
            tempDirectory,
            `${(yield* Random.nextInt).toString(36)}-${(yield* Random.nextInt).toString(36)}`
          )
          const published = { renamed: false }
          // Opened and scheduled for removal in one uninterruptible step, so no temp file outlives
          // an interrupted put.
          const opened = yield* Effect.either(
            Effect.uninterruptible(
              Effect.tap(fs.open(tempPath, { flag: "wx" }), () =>
                Effect.addFinalizer(() => (published.renamed ? Effect.void : Effect.ignore(fs.remove(tempPath)))))
            )
          )
          if (opened._tag === "Right") {
            return { file: opened.right, tempPath, published }
          }
          if (isAlreadyExists(opened.left) && remaining > 1) {
            return yield* attempt(remaining - 1, madeDirectory)
          }
          if (!isNotFound(opened.left) || madeDirectory) {
            return yield* Effect.fail(classifyIoError("put", key, opened.left))
          }
          yield* Effect.catchIf(fs.makeDirectory(tempDirectory), isAlreadyExists, () =>
            Effect.void).pipe(
              Effect.catchIf(isNotFound, () => Effect.fail(missingRoot("put", key))),
              Effect.mapError((
                error
              ) => (error._tag === "ObjectStoreRejected" ? error : classifyIoError("put", key, error)))
            )
          return yield* attempt(remaining, true)
        })
      return attempt(tempNameAttemptsMax, false)
    }

    const syncUpTo = (directory: string, all: boolean): Effect.Effect<void, PlatformError> =>
      Effect.gen(function*() {
        yield* syncDirectory(directory)
        if (all && directory !== root && directory.startsWith(root)) yield* syncUpTo(path.dirname(directory), true)
      })

    /**
     * Publishes the temp file under `target` (rename, or link for a conditional put). The object's
     * directory is made only when the first attempt finds it missing, so a put into an existing
     * directory costs no extra system call; returns whether directories were made.
     */
    const publish = (
      key: string,
      tempPath: string,
      target: string,
      conditional: boolean
    ): Effect.Effect<boolean, ObjectStoreError> => {
      const once = conditional ? fs.link(tempPath, target) : fs.rename(tempPath, target)
      const classified = (error: PlatformError): Effect.Effect<never, ObjectStoreError> =>
        Effect.fail(
          isAlreadyExists(error)
            ? new PreconditionFailed({ operation: "put", key })
            : classifyIoError("put", key, error)
        )
      return once.pipe(
        Effect.as(false),
        Effect.catchAll((error) =>
          isNotFound(error)
            ? fs.makeDirectory(path.dirname(target), { recursive: true }).pipe(
              Effect.mapError(io("put", key)),
              Effect.zipRight(Effect.catchAll(once, classified)),
              Effect.as(true)
            )
            : classified(error)
        )
      )
    }

    const put = (key: string, bytes: Uint8Array, putOptions?: PutOptions): Effect.Effect<void, ObjectStoreError> =>
      Effect.gen(function*() {
        const target = yield* objectPath("put", key)
        yield* Effect.scoped(
          Effect.gen(function*() {
            const { file, tempPath, published } = yield* openTemp(key)
            // writeAll reports a 0-byte write as WriteZero: an empty object needs no write at all.
            const write = bytes.length === 0 ? file.sync : Effect.zipRight(file.writeAll(bytes), file.sync)
            yield* Effect.mapError(write, io("put", key))
            const conditional = putOptions?.ifNoneMatch === true
            const madeDirectories = yield* Effect.uninterruptible(
              Effect.tap(publish(key, tempPath, target, conditional), () =>
                Effect.sync(() => {
                  published.renamed = !conditional
                }))
            )
            yield* Effect.mapError(syncUpTo(path.dirname(target), madeDirectories), io("put", key))
          })
        )
      })

    const readNotFound = (operation: string, key: string) => (error: PlatformError) =>
      isNotFound(error)
        ? Effect.zipRight(checkRoot(operation, key), Effect.fail(new ObjectNotFound({ operation, key })))
        : Effect.fail(classifyIoError(operation, key, error))

    const get = (key: string): Effect.Effect<Uint8Array, ObjectStoreError> =>
      Effect.flatMap(objectPath("get", key), (target) => Effect.catchAll(fs.readFile(target), readNotFound("get", key)))

    const readRange = (target: string, offset: number, length: number) =>
      Effect.scoped(
        Effect.gen(function*() {
          const file = yield* fs.open(target, { flag: "r" })
          const sizeBytes = Number((yield* file.stat).size)
          const end = Math.min(sizeBytes, offset + length)
          if (offset >= end) return new Uint8Array(0)
          const buffer = new Uint8Array(end - offset)
          yield* file.seek(offset, "start")
          let filled = 0
          while (filled < buffer.length) {
            const read = Number(yield* file.read(buffer.subarray(filled)))
            if (read === 0) break
            filled += read
          }
          return filled === buffer.length ? buffer : buffer.slice(0, filled)
        })
      )

    const getRange = (key: string, offset: number, length: number): Effect.Effect<Uint8Array, ObjectStoreError> =>
      Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0
        ? Effect.flatMap(
          objectPath("getRange", key),
          (target) => Effect.catchAll(readRange(target, offset, length), readNotFound("getRange", key))
        )
        : Effect.dieMessage(`getRange: offset ${offset} and length ${length} must be non-negative integers`)

    const head = (key: string): Effect.Effect<ObjectInfo, ObjectStoreError> =>
      Effect.flatMap(objectPath("head", key), (target) =>
        fs.stat(target).pipe(
          Effect.catchAll(readNotFound("head", key)),
          Effect.flatMap((info) =>
            info.type === "File"
              ? Effect.succeed({ key, sizeBytes: Number(info.size), lastModifiedMs: mtimeMs(info) })
              : Effect.fail(new ObjectNotFound({ operation: "head", key }))
          )
        ))

    const remove = (key: string): Effect.Effect<void, Exclude<ObjectStoreError, ObjectNotFound>> =>
      Effect.flatMap(objectPath("delete", key), (target) =>
        Effect.catchAll(fs.remove(target), (error) =>
          isNotFound(error) ? checkRoot("delete", key) : Effect.fail(classifyIoError("delete", key, error))))

    /** Every (key, path) of the objects below `directory`, whose keys start with `keyPrefix`. */
    const walk = (
      directory: string,
      keyPrefix: string
    ): Effect.Effect<Array<readonly [string, string]>, PlatformError> =>
      Effect.gen(function*() {
        const names = yield* Effect.catchIf(
          fs.readDirectory(directory),
          (error) =>
            isNotFound(error) || (error._tag === "SystemError" && error.reason === "BadResource"),
          () =>
            Effect.succeed([])
        )
        const found: Array<readonly [string, string]> = []
        for (const name of names) {
          const isObject = name.endsWith(objectSuffix)
          const segment = decodeSegment(isObject ? name.slice(0, -objectSuffix.length) : name)
          if (segment === undefined) {
            continue
          }
          const child = path.join(directory, name)
          if (isObject) {
            found.push([keyPrefix + segment, child])
          } else found.push(...(yield* walk(child, `${keyPrefix}${segment}/`)))
        }
        return found
      })

    const listAll = (prefix: string): Effect.Effect<Array<readonly [string, string]>, ObjectStoreError> =>
      Effect.gen(function*() {
        yield* checkRoot("list", prefix)
        // Start at the deepest directory the prefix names completely ("a/b/c" → a/b).
        const directorySegments = prefix.split("/").slice(0, -1)
        const encoded = directorySegments.map(encodeSegment)
        if (
          encoded.some((name) =>
            name === undefined
          )
        ) return []
        const start = path.join(root, ...encoded.filter((name): name is string => name !== undefined))
        const keyPrefix = directorySegments.map((segment) => `${segment}/`).join("")
        const found = yield* Effect.mapError(walk(start, keyPrefix), io("list", prefix))
        return found.filter(([key]) => key.startsWith(prefix)).sort(([left], [right]) => compareKeys(left, right))
      })

    const sizeOf = (entry: readonly [string, string]) =>
      fs.stat(entry[1]).pipe(
        Effect.map((info) =>
          info.type === "File"
            ? Option.some<ObjectInfo>({ key: entry[0], sizeBytes: Number(info.size), lastModifiedMs: mtimeMs(info) })
            : Option.none()
        ),
        // Deleted since the directory was read: not listed, as S3 would not list it either.
        Effect.catchIf(isNotFound, () => Effect.succeed(Option.none<ObjectInfo>())),
        Effect.mapError(io("list", entry[0]))
      )

    const list = (prefix: string): Stream.Stream<ObjectInfo, ObjectStoreError> =>
      Stream.unwrap(
        Effect.map(listAll(prefix), (entries) =>
          Stream.fromIterable(Chunk.chunksOf(Chunk.unsafeFromArray(entries), listPageKeysMax)).pipe(
            Stream.mapEffect((pageEntries) => Effect.forEach(pageEntries, sizeOf, { concurrency: statConcurrency })),
            Stream.flatMap((infos) =>
              Stream.fromIterable(Arr.getSomes(infos))
            )
          ))
      )

    const readOnly = options.readOnly === true
    const refuseWrite = (operation: string, key: string) =>
      Effect.fail(
        new ObjectStoreRejected({
          operation,
          key,
          code: "ReadOnly",
          detail: `the object store ${root} was opened read-only`
        })
      )

    const probe: Effect.Effect<void, ObjectStoreError> = Effect.gen(function*() {
      if (options.create === true && !readOnly) {
        yield* Effect.mapError(fs.makeDirectory(root, { recursive: true }), io("probe", undefined))
      }
      const info = yield* fs.stat(root).pipe(
        Effect.catchIf(isNotFound, () => Effect.fail(missingRoot("probe", undefined))),
        Effect.mapError((error) =>
          error._tag === "ObjectStoreRejected" ? error : classifyIoError("probe", undefined, error)
        )
      )
      if (info.type !== "Directory") {
        return yield* new ObjectStoreRejected({
          operation: "probe",
          code: "NotADirectory",
          detail: `the object store root ${root} exists and is not a directory`
        })
      }
      if (readOnly) return yield* Effect.mapError(fs.access(root, { readable: true }), io("probe", undefined))
      yield* fs.makeDirectory(tempDirectory).pipe(
        Effect.catchIf(isAlreadyExists, () => Effect.void),
        Effect.mapError(io("probe", undefined))
      )
      yield* Effect.mapError(fs.access(root, { writable: true }), io("probe", undefined))
    })

    return {
      description: `file://${root}`,
      probe,
      put: readOnly ? (key) => refuseWrite("put", key) : put,
      get,
      getRange,
      head,
      delete: readOnly ? (key) => refuseWrite("delete", key) : remove,
      list
    }
  })

/** The file store, over the FileSystem and Path in the context. @category layers */
export const layer = (
  options: FileObjectStoreOptions
): Layer.Layer<ObjectStore, never, FileSystem.FileSystem | Path.Path> => Layer.effect(ObjectStore, make(options))

/** The file store over Node's file system. @category layers */
export const layerNode = (options: FileObjectStoreOptions): Layer.Layer<ObjectStore> =>
  layer(options).pipe(Layer.provide(NodePlatform.layer))
