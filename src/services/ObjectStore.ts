/**
 * ObjectStore: the bucket, as the rest of the tier sees it. Backends live in src/layers
 * (FileObjectStore, S3ObjectStore, MemoryObjectStore) and wrappers over an inner store
 * (FaultyObjectStore) provide this same tag.
 *
 * Guarantees every backend keeps (checked by one contract suite, test/layers/ObjectStoreSuite.ts):
 * - every operation is interruptible; interrupting one aborts its HTTP request and releases its
 *   socket; response bodies are consumed or destroyed on every exit path;
 * - `put` is atomic: a reader sees the old object or the new one, never a part of it; with
 *   `ifNoneMatch: true` it fails with PreconditionFailed when the key exists, and of concurrent
 *   conditional puts on one key exactly one wins;
 * - `delete` of a missing key succeeds (idempotent, like S3);
 * - `list` streams every key under a prefix in ascending key order, paging through any number.
 * Failures are typed: ObjectNotFound, ObjectStoreUnavailable (transient, retried by the
 * workers), ObjectStoreRejected (permanent), PreconditionFailed. Backends never retry.
 *
 * Replaces: OrioleDB's src/s3/requests.c (libcurl PUT/GET/DELETE, no timeouts, FATAL on error).
 *
 * @since 0.1.0
 */
import { Context, type Effect, type Stream } from "effect"
import type { ObjectNotFound, ObjectStoreError } from "../domain/Errors.js"

/** Options of `put`. */
export interface PutOptions {
  /** Write only if the key does not exist yet (`If-None-Match: *`). */
  readonly ifNoneMatch?: boolean
  /**
   * The SHA-256 of `bytes` as 64 lowercase hex digits, when the caller has it already (part uploads
   * do: the manifest records it). The S3 store sends it as `x-amz-content-sha256`, so the SDK does
   * not hash the body a second time to sign it, and S3 rejects a body that does not match it. Other
   * stores ignore it. A wrong value is the caller's bug: S3 refuses the put (permanent).
   */
  readonly sha256Hex?: string
}

/** Options of `get`. */
export interface GetOptions {
  /**
   * A buffer the store may read the object into, to spare an allocation and a copy (a part load
   * passes a part buffer in shared memory, which its hash then reads in place). When the store
   * uses it, the result is a view of `into` from its start; when it does not (a store that ignores
   * it, an object longer than `into`), the result is fresh bytes, told apart by its `buffer`. The
   * caller must not reuse `into` unless the get succeeded: an interrupted store may still write
   * into it (an abandoned fs read lands later).
   */
  readonly into?: Uint8Array
}

/** What `head` and `list` say of an object. */
export interface ObjectInfo {
  readonly key: string
  readonly sizeBytes: number
  /** When the object was last written, in ms since the epoch, by the store's clock (S3's
   * LastModified, a file's mtime); the garbage collector's minimum age is measured against it.
   * A store that cannot say gives Number.MAX_SAFE_INTEGER: never old enough to collect. */
  readonly lastModifiedMs: number
}

/** The operations of a bucket. @category models */
export interface ObjectStoreService {
  /** A human-readable name of the bucket, for messages (`s3://bucket/prefix`, `file:///dir`). */
  readonly description: string
  /** Checks that the bucket is reachable and ours to use: a missing bucket, bad credentials or an
   * unreachable endpoint fail here with a clear typed error, before anything is written. */
  readonly probe: Effect.Effect<void, ObjectStoreError>
  readonly put: (key: string, bytes: Uint8Array, options?: PutOptions) => Effect.Effect<void, ObjectStoreError>
  readonly get: (key: string, options?: GetOptions) => Effect.Effect<Uint8Array, ObjectStoreError>
  /** Bytes [offset, offset + length) of an object; shorter at the object's end. */
  readonly getRange: (key: string, offset: number, length: number) => Effect.Effect<Uint8Array, ObjectStoreError>
  readonly head: (key: string) => Effect.Effect<ObjectInfo, ObjectStoreError>
  readonly delete: (key: string) => Effect.Effect<void, Exclude<ObjectStoreError, ObjectNotFound>>
  readonly list: (prefix: string) => Stream.Stream<ObjectInfo, ObjectStoreError>
}

/** The bucket. @category tags */
export class ObjectStore extends Context.Tag("effect-s3-tier/ObjectStore")<ObjectStore, ObjectStoreService>() {}
