/**
 * LocalDisk: the local data directory, as named byte files (paths relative to its root, with '/'
 * separators). Part files, WAL segments and the control file all live here. Two backends:
 * `FileSystemDisk.layer({ root })` over @effect/platform's FileSystem (the real thing; `layerNode`
 * provides Node's), and `MemoryDisk.layer` (tests and the deterministic simulation), which also
 * models a crash: writes that were not synced are lost by `MemoryDiskControl.crash`.
 * Every backend checks its paths with `normalizePath`: a path that is absolute or has a `..`
 * segment is refused with LocalIoError, so nothing can escape the root.
 *
 * The fsync policy is explicit at every call site: nothing is synced unless the caller calls `sync`
 * or uses `writeAtomic` (temp file, fsync, rename, fsync of the directory).
 *
 * A change (`write`, `writeAtomic`, `remove`) returns, interrupted or not, only once nothing it
 * started can still land: an interruption takes effect between its system calls, never abandons
 * one. A caller that must not wait for a stalled disk bounds its wait without awaiting the change
 * (the change runs on, and the directory guard keeps the directory locked until it has ended).
 *
 * Replaces: the local side of OrioleDB's data files (`<relnode>-<chkp>` with a 8 KiB header of part
 * words, docs/ORIGINAL.md §4). Here every part is its own file, so evicting a part is an unlink and
 * frees its disk space for real (OrioleDB wrote zeros, which frees nothing on most file systems).
 *
 * @since 0.1.0
 */
import { Context, type Effect, Either, type Option, type Scope } from "effect"
import { type DirectoryLocked, LocalIoError } from "../domain/Errors.js"

/** The operations of the local data directory. @category models */
export interface LocalDiskService {
  /** The root, for messages (an absolute directory, or `memory:`). */
  readonly root: string
  /** Bytes [offset, offset + length) of a file, zero-filled past its end; a missing file reads as zeros. */
  readonly read: (path: string, offset: number, length: number) => Effect.Effect<Uint8Array, LocalIoError>
  /** The whole file, or None when it does not exist. */
  readonly readAll: (path: string) => Effect.Effect<Option.Option<Uint8Array>, LocalIoError>
  /**
   * Reads the file from its start into `buffer` (at most `buffer.length` bytes, so a caller that
   * wants to know the file fits passes one byte more than it expects); the number of bytes read, or
   * None when the file does not exist. For callers that reuse one buffer across reads of many files
   * (part uploads), so that reading a part allocates nothing.
   */
  readonly readAllInto: (path: string, buffer: Uint8Array) => Effect.Effect<Option.Option<number>, LocalIoError>
  /** Writes bytes at an offset, creating the file and its directories; not synced. */
  readonly write: (path: string, offset: number, bytes: Uint8Array) => Effect.Effect<void, LocalIoError>
  /** Replaces a file atomically and durably: temp file, fsync, rename, fsync of the directory. */
  readonly writeAtomic: (path: string, bytes: Uint8Array) => Effect.Effect<void, LocalIoError>
  /** fsync of one file (a missing file is an error). */
  readonly sync: (path: string) => Effect.Effect<void, LocalIoError>
  /** Removes a file; a missing file is fine. Frees its space. */
  readonly remove: (path: string) => Effect.Effect<void, LocalIoError>
  /** The size of a file, or None when it does not exist. */
  readonly size: (path: string) => Effect.Effect<Option.Option<number>, LocalIoError>
  /** Every file below a directory (recursive), as paths relative to the root, sorted. */
  readonly list: (directory: string) => Effect.Effect<ReadonlyArray<string>, LocalIoError>
  /** Bytes of all files below a directory (what they occupy on disk, as far as the backend knows). */
  readonly usedBytes: (directory: string) => Effect.Effect<number, LocalIoError>
  /** Holds the directory exclusively for the current scope: another opener, in this process or
   * another, fails with DirectoryLocked until the scope closes (or the holding process dies). */
  readonly lockDirectory: Effect.Effect<void, DirectoryLocked | LocalIoError, Scope.Scope>
}

/** The local data directory. @category tags */
export class LocalDisk extends Context.Tag("effect-s3-tier/LocalDisk")<LocalDisk, LocalDiskService>() {}

/**
 * Checks and normalizes a path relative to the root: '/' separators, empty and `.` segments
 * dropped; refused when absolute (`/x`), with a `..` segment, a backslash or a NUL. The root
 * itself ("") is allowed only where `allowRoot` says so (the directory of `list`, `usedBytes`).
 */
export const normalizePath = (
  operation: string,
  path: string,
  options?: { readonly allowRoot?: boolean }
): Either.Either<string, LocalIoError> => {
  const refuse = (detail: string) => Either.left(new LocalIoError({ operation, path, detail }))
  if (path.startsWith("/")) return refuse("the path must be relative to the data directory")
  if (path.includes("\\") || path.includes("\u0000")) return refuse("the path must not contain a backslash or a NUL")
  const segments = path.split("/").filter((segment) => segment !== "" && segment !== ".")
  if (segments.includes("..")) return refuse("the path must not contain a '..' segment")
  if (segments.length === 0 && options?.allowRoot !== true) return refuse("the path names no file")
  return Either.right(segments.join("/"))
}
