/**
 * The reader's side of the garbage collector's protocol: a scoped lease on one checkpoint.
 *
 * The collector writes its tombstones first, then lists the leases, and keeps the objects of every
 * checkpoint a live lease names (and the archived WAL from the lowest such checkpoint's position
 * on). So a reader: writes `leases/<id>` naming checkpoint N, and only then reads
 * `checkpoints/<N>`; a tombstone there means N expired before the lease could protect it, anything
 * else is protected for as long as the lease lives. The lease is renewed every third of
 * `readerLeaseMs` while the reader reads; a renewal that has not landed before the previous expiry
 * loses the lease (ReaderLeaseLost): the collector may have deleted the objects, so `guard`ed work
 * fails rather than trust them. Closing the scope stops the renewals and deletes the lease
 * (best-effort, one bounded attempt: an expired lease is removed by the next collector pass).
 *
 * `readOnlyExceptLeases` wraps a store so that its user can write nothing but lease objects: the
 * read-only commands (`restore`, `verify`) and the restore of `run` use it.
 *
 * Replaces: nothing in OrioleDB, which deletes nothing. The model is Neon's LSN leases; Litestream's
 * restores, which hold none, lose files to retention mid-restore (its #1307, #1270).
 *
 * @since 0.2.0
 */
import { Clock, Deferred, Duration, Effect, Either, Random, type Scope } from "effect"
import { type CorruptObject, type ObjectStoreError, ObjectStoreRejected, ReaderLeaseLost } from "../domain/Errors.js"
import type { CheckpointNumber } from "../domain/Ids.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import * as Lease from "../domain/Lease.js"
import type { ObjectStoreService } from "../services/ObjectStore.js"
import { withRequestPolicy, withRequestTimeout } from "../services/RequestPolicy.js"
import { keyLayout, type StorageConfigValue } from "../services/StorageConfig.js"

/** A lease held for the life of a scope. @category models */
export interface HeldReaderLease {
  readonly id: string
  readonly checkpoint: CheckpointNumber
  readonly key: string
  /** The expiry of the last renewal that landed (ms). */
  readonly expiresAtMs: Effect.Effect<number>
  /** Fails with ReaderLeaseLost once the lease was lost (see the module comment). */
  readonly check: Effect.Effect<void, ReaderLeaseLost>
  /** Runs `effect`, failing it with ReaderLeaseLost (and interrupting it) as soon as the lease is lost. */
  readonly guard: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | ReaderLeaseLost, R>
}

/** What a reader asks for. */
export interface ReaderLeaseOptions {
  readonly checkpoint: CheckpointNumber
  /** Who reads, for `inspect` (e.g. "restore pid 123"). */
  readonly holder: string
}

/** A fresh lease id: "r" and 16 random hex digits (Effect's Random, so a seed decides it in tests). */
export const newLeaseId: Effect.Effect<string> = Effect.map(
  Effect.all(Array.from({ length: 4 }, () => Random.nextIntBetween(0, 0x10000))),
  (words) => `r${words.map((word) => word.toString(16).padStart(4, "0")).join("")}`
)

/** How often a lease is renewed: a third of its life. */
export const renewIntervalMs = (config: StorageConfigValue): number => Math.max(1, Math.floor(config.readerLeaseMs / 3))

/**
 * Writes the lease and keeps it renewed for the life of the scope; deleted when the scope closes.
 * Fails when the first put fails or lands after the lease it wrote had already expired.
 */
// eslint-disable-next-line max-lines-per-function -- the lease's first write, its renewal fiber and its release, read together
export const acquire = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  options: ReaderLeaseOptions
): Effect.Effect<HeldReaderLease, ObjectStoreError | ReaderLeaseLost, Scope.Scope> =>
  // eslint-disable-next-line max-lines-per-function -- the lease's first write, its renewal fiber and its release, read together
  Effect.gen(function*() {
    const id = yield* newLeaseId
    const key = KeyLayout.leaseKey(keyLayout(config), id)
    const createdAtMs = yield* Clock.currentTimeMillis
    const lost = yield* Deferred.make<never, ReaderLeaseLost>()
    const lostWith = (detail: string) => new ReaderLeaseLost({ id, checkpoint: options.checkpoint, detail })
    // One write of the lease; the expiry it carries is counted from before the request.
    const write = (
      bound: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E | ObjectStoreError | ReaderLeaseLost>
    ) =>
      Effect.gen(function*() {
        const startMs = yield* Clock.currentTimeMillis
        const body: Lease.ReaderLease = {
          format: Lease.leaseFormat,
          id,
          checkpoint: options.checkpoint,
          holder: options.holder,
          createdAtMs,
          expiresAtMs: startMs + config.readerLeaseMs
        }
        yield* bound(store.put(key, Lease.encode(body)))
        return body.expiresAtMs
      })
    const release = store.delete(key).pipe(
      withRequestTimeout(config, "delete reader lease", key),
      Effect.catchAll((error) =>
        Effect.logWarning(`reader lease ${key} not deleted (the collector removes it once expired): ${error.message}`)
      )
    )
    const first = yield* Effect.acquireRelease(write(withRequestPolicy(config, "put reader lease", key)), () => release)
    if ((yield* Clock.currentTimeMillis) >= first) {
      return yield* lostWith(`its first write took longer than its ${config.readerLeaseMs} ms life`)
    }
    let expiresAtMs = first
    const intervalMs = renewIntervalMs(config)
    const renewOnce = Effect.gen(function*() {
      yield* Effect.sleep(Duration.millis(intervalMs))
      const left = expiresAtMs - (yield* Clock.currentTimeMillis)
      // Each renewal is bounded by what is left of the lease: one landing later protects nothing.
      const renewed = yield* write((effect) =>
        effect.pipe(
          withRequestPolicy(config, "renew reader lease", key),
          Effect.timeoutFail({
            duration: Duration.millis(Math.max(1, left)),
            onTimeout: () => lostWith(`no renewal landed before its expiry`)
          })
        )
      ).pipe(Effect.either)
      const nowMs = yield* Clock.currentTimeMillis
      if (Either.isRight(renewed) && nowMs < expiresAtMs) {
        expiresAtMs = renewed.right
        return
      }
      if (nowMs >= expiresAtMs) {
        const why = Either.isLeft(renewed) ? renewed.left.message : "the renewal landed after the expiry"
        return yield* lostWith(`it expired at ${new Date(expiresAtMs).toISOString()}: ${why}`)
      }
      yield* Effect.logWarning(
        `reader lease ${key}: a renewal failed, retrying before its expiry: ${
          Either.isLeft(renewed) ? renewed.left.message : ""
        }`
      )
    })
    // Forked after the release was registered: closing the scope stops the renewals before the delete.
    yield* Effect.forkScoped(
      Effect.forever(renewOnce).pipe(Effect.catchAll((error) => Deferred.fail(lost, error)), Effect.interruptible)
    )
    const check = Effect.flatMap(Deferred.isDone(lost), (done) => (done ? Deferred.await(lost) : Effect.void))
    return {
      id,
      checkpoint: options.checkpoint,
      key,
      expiresAtMs: Effect.sync(() => expiresAtMs),
      check,
      guard: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.raceFirst(effect, Deferred.await(lost)).pipe(Effect.zipLeft(check))
    } satisfies HeldReaderLease
  })

/** Reads one lease object (for tests and `inspect`-like tools); an undecodable one is a CorruptObject. */
export const readLease = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  id: string
): Effect.Effect<Lease.ReaderLease, ObjectStoreError | CorruptObject> => {
  const key = KeyLayout.leaseKey(keyLayout(config), id)
  return store.get(key).pipe(
    withRequestPolicy(config, "read reader lease", key),
    Effect.flatMap((bytes) => Either.match(Lease.decode(key, bytes), { onLeft: Effect.fail, onRight: Effect.succeed }))
  )
}

/**
 * The store as a reader may use it: every read passes; a put or delete of anything but a lease
 * object is refused (ObjectStoreRejected "ReadOnly") without reaching the store.
 */
export const readOnlyExceptLeases = (store: ObjectStoreService, config: StorageConfigValue): ObjectStoreService => {
  const layout = keyLayout(config)
  const isLease = (key: string) => key.startsWith(KeyLayout.leasesPrefix(layout))
  const refuse = (operation: string, key: string) =>
    new ObjectStoreRejected({
      operation,
      key,
      code: "ReadOnly",
      detail: "a reader writes nothing to the bucket but its lease"
    })
  return {
    ...store,
    put: (key, bytes, options) => (isLease(key) ? store.put(key, bytes, options) : Effect.fail(refuse("put", key))),
    delete: (key) => (isLease(key) ? store.delete(key) : Effect.fail(refuse("delete", key)))
  }
}
