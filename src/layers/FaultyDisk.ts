/**
 * FaultyDisk: a decorator over any LocalDisk that injects the faults of a real disk on command, for
 * the tests and the deterministic simulation. It provides `LocalDisk` (the faulty view) and
 * `DiskFaults` (the switchboard), as FaultyObjectStore does for the bucket.
 *
 * Faults (each applies to the paths under `pathPrefix`, or to every path when it is omitted):
 * - `fillAfter(bytes)`: the disk is full after `bytes` more written bytes. The write that crosses
 *   the limit writes its first bytes up to the limit to the inner disk and then fails with a
 *   LocalIoError whose detail starts with "ENOSPC": a torn write, as a real full disk leaves one.
 *   Later writes fail at once with nothing written. `writeAtomic` that does not fit fails and leaves
 *   its target unchanged (its temporary file is what fills up). Every written byte counts, an
 *   overwrite as much as an append (a real disk would charge only newly allocated blocks).
 * - `failSync(count)`: the next `count` matching `sync` calls fail with "EIO" (Infinity: until
 *   healed); the bytes stay written but are not made durable.
 * - `flipByte(path)`: bit rot. XORs one byte of a file (at `offset`, or at an offset drawn from
 *   the seeded Random) with `mask` (default 0xff) in the inner disk, and syncs it, so that the rot
 *   survives a crash as rot on the medium would. Flip files at rest (between a stop or a crash and
 *   the next start): the sync also makes any unsynced bytes of that file durable.
 * - `stallReads(count)`: the next `count` matching `readAllInto` calls hang until interrupted, as
 *   a read stuck in the kernel does. An interrupted one is abandoned, not cancelled (as an fs read
 *   on the thread pool is): it lands later, copying the file's bytes of that moment into the
 *   caller's buffer, as the next `readAllInto` returns: after that read's own bytes, the worst
 *   moment for a caller that reused the buffer.
 * - `stallWrites(count, holdMs)`: the next `count` matching changes (positional `write`s,
 *   `writeAtomic`s and `remove`s) land `holdMs` late, as a system call stuck in a device's queue
 *   does, while every other call answers at once. The caller waits for its change, interrupted or
 *   not, as LocalDisk's contract says (a change returns only once nothing it started can still
 *   land), so a change of a storage that shut down meanwhile lands after the shutdown returned.
 * - `slowSyncs(latencyMs)`: every matching `sync` and `writeAtomic` (which syncs its file) first
 *   sleeps `latencyMs` (`Effect.sleep`, so the simulated clock drives it), as an fsync on a loaded
 *   disk takes hundreds of milliseconds. It widens every window between a durable step and the
 *   bookkeeping after it; until healed.
 * - `slowAll(latencyMs)`: the same for every matching operation (reads, writes, syncs, atomic
 *   writes, removes), as a disk under load answers: an operation of the application on its disk
 *   is still running when a shutdown or deadline comes. Replaces `slowSyncs`, and the other way round.
 * - crash: not modelled here. MemoryDisk already keeps each file's last synced bytes and loses the
 *   rest on `MemoryDiskControl.crash`; put FaultyDisk over a MemoryDisk to have both.
 * `heal` removes `fillAfter`, `failSync`, `stallReads`, `stallWrites`, `slowSyncs` and `slowAll`
 * (flips are done; abandoned reads and held changes still land). Nothing depends on time or on
 * unseeded randomness: the same calls with the same seed inject the same faults. `make` wraps one
 * disk; `layer` wraps the LocalDisk below it (`Layer.provideMerge` keeps MemoryDiskControl beside).
 *
 * Replaces: nothing in OrioleDB, whose tests could not make a disk fill up or rot.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer, Option, Random } from "effect"
import { LocalIoError } from "../domain/Errors.js"
import { LocalDisk, type LocalDiskService, normalizePath } from "../services/LocalDisk.js"

/** Which paths a fault applies to. @category models */
export interface DiskFaultFilter {
  /** Only paths starting with this (after normalization); every path when omitted. */
  readonly pathPrefix?: string
}

/** Where `flipByte` flips. @category models */
export interface FlipOptions {
  /** The byte to flip; drawn from the seeded Random (uniform over the file) when omitted. */
  readonly offset?: number
  /** XORed into the byte; default 0xff. Must be in 1..255, so the byte always changes. */
  readonly mask?: number
}

/** What the decorator injected so far. @category models */
export interface DiskFaultStats {
  /** Writes that ran out of space, and of those the ones that wrote a part of their bytes first. */
  readonly noSpaceWrites: number
  readonly tornWrites: number
  readonly failedSyncs: number
  readonly flippedBytes: number
  /** Reads that hung, and of those the ones abandoned by an interruption that landed later. */
  readonly stalledReads: number
  readonly lateReads: number
  /** Changes (writes, atomic writes, removes) that `stallWrites` held. */
  readonly stalledWrites: number
  /** Calls that `slowSyncs` or `slowAll` delayed. */
  readonly slowedCalls: number
}

/** The switchboard of a FaultyDisk. @category models */
export interface DiskFaultsService {
  /** The disk is full after `bytes` more written bytes (replaces an earlier `fillAfter`). */
  readonly fillAfter: (bytes: number, filter?: DiskFaultFilter) => Effect.Effect<void>
  /** The next `count` matching syncs fail (default 1; Infinity until healed). */
  readonly failSync: (count?: number, filter?: DiskFaultFilter) => Effect.Effect<void>
  /** Flips a byte of a file of the inner disk (and syncs it); the offset flipped, or None when
   * the file is missing or empty. */
  readonly flipByte: (path: string, options?: FlipOptions) => Effect.Effect<Option.Option<number>, LocalIoError>
  /** The next `count` matching `readAllInto` calls hang until interrupted, and land later (default 1). */
  readonly stallReads: (count?: number, filter?: DiskFaultFilter) => Effect.Effect<void>
  /** The next `count` matching changes (write, writeAtomic, remove) land `holdMs` late, their
   * callers waiting, interrupted or not. */
  readonly stallWrites: (count: number, holdMs: number, filter?: DiskFaultFilter) => Effect.Effect<void>
  /** Every matching sync and atomic write first sleeps `latencyMs`, until healed (replaces an
   * earlier `slowSyncs`). */
  readonly slowSyncs: (latencyMs: number, filter?: DiskFaultFilter) => Effect.Effect<void>
  /** Every matching operation first sleeps `latencyMs`, until healed (replaces `slowSyncs`). */
  readonly slowAll: (latencyMs: number, filter?: DiskFaultFilter) => Effect.Effect<void>
  /** Ends `fillAfter`, `failSync`, `stallReads`, `stallWrites`, `slowSyncs` and `slowAll`. */
  readonly heal: Effect.Effect<void>
  readonly stats: Effect.Effect<DiskFaultStats>
}

/** The fault switchboard of the FaultyDisk in the context. @category tags */
export class DiskFaults extends Context.Tag("effect-s3-tier/DiskFaults")<DiskFaults, DiskFaultsService>() {}

/** Options of the decorator. */
export interface FaultyDiskOptions {
  /** Seeds the offsets `flipByte` draws; default 0. */
  readonly seed?: number
}

interface FaultState {
  space: { readonly filter: DiskFaultFilter; remainingBytes: number } | undefined
  syncFailures: { readonly filter: DiskFaultFilter; remaining: number } | undefined
  readStalls: { readonly filter: DiskFaultFilter; remaining: number } | undefined
  writeStalls: { readonly filter: DiskFaultFilter; remaining: number; readonly holdMs: number } | undefined
  /** `all`: every operation (`slowAll`), else syncs and atomic writes only (`slowSyncs`). */
  slow: { readonly filter: DiskFaultFilter; readonly latencyMs: number; readonly all: boolean } | undefined
  /** Reads abandoned by an interruption, still to land in their callers' buffers. */
  abandoned: Array<{ readonly path: string; readonly buffer: Uint8Array }>
  stats: DiskFaultStats
}

const matches = (filter: DiskFaultFilter, path: string): boolean =>
  filter.pathPrefix === undefined || path.startsWith(filter.pathPrefix)

/** Whether a fault with a count left (`failSync`, `stallReads`, `stallWrites`) hits this call on
 * `path`; if it does, one of its count is used up. */
const takesOne = (
  fault: { readonly filter: DiskFaultFilter; remaining: number } | undefined,
  operation: string,
  path: string
): boolean => {
  const valid = Option.getRight(normalizePath(operation, path))
  if (fault === undefined || fault.remaining <= 0 || Option.isNone(valid) || !matches(fault.filter, valid.value)) {
    return false
  }
  fault.remaining -= 1
  return true
}

const noSpace = (operation: string, path: string, writtenBytes: number, requestedBytes: number) =>
  new LocalIoError({
    operation,
    path,
    detail: `ENOSPC: no space left on device (fault injected; ${writtenBytes} of ${requestedBytes} bytes written)`
  })

/** Wraps `inner`: the faulty disk and its switchboard. @category constructors */
/* eslint-disable max-lines-per-function -- a service's constructor: its operations are small functions sharing one closure, each under a screen */
export const make = (
  inner: LocalDiskService,
  options: FaultyDiskOptions = {}
): Effect.Effect<{ readonly disk: LocalDiskService; readonly faults: DiskFaultsService }> =>
  Effect.sync(() => {
    /* eslint-enable max-lines-per-function */
    const state: FaultState = {
      space: undefined,
      syncFailures: undefined,
      readStalls: undefined,
      writeStalls: undefined,
      slow: undefined,
      abandoned: [],
      stats: {
        noSpaceWrites: 0,
        tornWrites: 0,
        failedSyncs: 0,
        flippedBytes: 0,
        stalledReads: 0,
        lateReads: 0,
        stalledWrites: 0,
        slowedCalls: 0
      }
    }
    const random = Random.make(options.seed ?? 0)
    const count = (field: keyof DiskFaultStats) => {
      state.stats = { ...state.stats, [field]: state.stats[field] + 1 }
    }
    // The space left for a write to `path`, if a `fillAfter` applies to it (an invalid path is left
    // to the inner disk, which refuses it).
    const spaceFor = (operation: string, path: string) => {
      const space = state.space
      const valid = Option.getRight(normalizePath(operation, path))
      return space !== undefined && Option.isSome(valid) && matches(space.filter, valid.value) ? space : undefined
    }
    // Sleeps first when a `slowSyncs` (a sync) or a `slowAll` (any operation) applies to `path`.
    const slowed = <A, E>(operation: string, path: string, effect: Effect.Effect<A, E>, isSync = true) =>
      Effect.suspend(() => {
        const slow = state.slow
        const valid = Option.getRight(normalizePath(operation, path))
        if (
          slow === undefined || (!isSync && !slow.all) || Option.isNone(valid) || !matches(slow.filter, valid.value)
        ) return effect
        count("slowedCalls")
        return Effect.zipRight(Effect.sleep(Duration.millis(slow.latencyMs)), effect)
      })

    // Holds the change when a `stallWrites` applies to `path`: it lands `holdMs` late, its caller
    // waiting, interrupted or not.
    const held = <A>(operation: string, path: string, call: Effect.Effect<A, LocalIoError>) =>
      Effect.suspend(() => {
        const stalls = state.writeStalls
        if (stalls === undefined || !takesOne(stalls, operation, path)) return call
        count("stalledWrites")
        return Effect.uninterruptible(Effect.zipRight(Effect.sleep(Duration.millis(stalls.holdMs)), call))
      })

    const writeNow: LocalDiskService["write"] = (path, offset, bytes) =>
      Effect.suspend(() => {
        const space = spaceFor("write", path)
        if (space === undefined) return inner.write(path, offset, bytes)
        if (bytes.length <= space.remainingBytes) {
          space.remainingBytes -= bytes.length
          return inner.write(path, offset, bytes)
        }
        const fitting = space.remainingBytes
        space.remainingBytes = 0
        count("noSpaceWrites")
        if (fitting === 0) return Effect.fail(noSpace("write", path, 0, bytes.length))
        count("tornWrites")
        return Effect.zipRight(
          inner.write(path, offset, bytes.subarray(0, fitting)),
          Effect.fail(noSpace("write", path, fitting, bytes.length))
        )
      })

    const writeAtomic: LocalDiskService["writeAtomic"] = (path, bytes) =>
      slowed("writeAtomic", path, held("writeAtomic", path, writeAtomicNow(path, bytes)))

    const writeAtomicNow: LocalDiskService["writeAtomic"] = (path, bytes) =>
      Effect.suspend(() => {
        const space = spaceFor("writeAtomic", path)
        if (space === undefined) return inner.writeAtomic(path, bytes)
        if (bytes.length > space.remainingBytes) {
          space.remainingBytes = 0
          count("noSpaceWrites")
          return Effect.fail(noSpace("writeAtomic", path, 0, bytes.length))
        }
        space.remainingBytes -= bytes.length
        return inner.writeAtomic(path, bytes)
      })

    const sync: LocalDiskService["sync"] = (path) => slowed("sync", path, syncNow(path))

    const syncNow: LocalDiskService["sync"] = (path) =>
      Effect.suspend(() => {
        if (!takesOne(state.syncFailures, "sync", path)) return inner.sync(path)
        count("failedSyncs")
        return Effect.fail(new LocalIoError({ operation: "sync", path, detail: "EIO: i/o error (fault injected)" }))
      })

    // The abandoned reads land: each copies its file's bytes of now into its caller's buffer.
    const land = (read: { readonly path: string; readonly buffer: Uint8Array }) =>
      Effect.zipRight(Effect.sync(() => count("lateReads")), Effect.ignore(inner.readAllInto(read.path, read.buffer)))
    const landAbandoned = Effect.suspend(() => {
      const landing = state.abandoned
      state.abandoned = []
      return Effect.forEach(landing, land, { discard: true })
    })

    const readAllInto: LocalDiskService["readAllInto"] = (path, buffer) =>
      Effect.suspend(() => {
        if (!takesOne(state.readStalls, "readAllInto", path)) {
          return Effect.tap(inner.readAllInto(path, buffer), () => landAbandoned)
        }
        count("stalledReads")
        // Never resumed: only an interruption ends it, and its canceler leaves the read to land later.
        return Effect.async<Option.Option<number>>(() =>
          Effect.sync(() => {
            state.abandoned.push({ path, buffer })
          })
        )
      })

    const flipByte: DiskFaultsService["flipByte"] = (path, flip = {}) =>
      Effect.gen(function*() {
        const mask = flip.mask ?? 0xff
        if (!Number.isInteger(mask) || mask < 1 || mask > 255) {
          return yield* Effect.dieMessage(`flipByte: mask ${mask} must be in 1..255`)
        }
        const size = Option.getOrElse(yield* inner.size(path), () => 0)
        if (size === 0) return Option.none<number>()
        const offset = flip.offset ?? (yield* random.nextIntBetween(0, size))
        if (!Number.isSafeInteger(offset) || offset < 0 || offset >= size) {
          return yield* Effect.dieMessage(`flipByte: offset ${offset} is outside the file's ${size} bytes`)
        }
        const [byte = 0] = yield* inner.read(path, offset, 1)
        yield* inner.write(path, offset, Uint8Array.of(byte ^ mask))
        yield* inner.sync(path)
        count("flippedBytes")
        return Option.some(offset)
      })

    const faults: DiskFaultsService = {
      fillAfter: (bytes, filter = {}) =>
        Number.isSafeInteger(bytes) && bytes >= 0
          ? Effect.sync(() => void (state.space = { filter, remainingBytes: bytes }))
          : Effect.dieMessage(`fillAfter: ${bytes} bytes must be a non-negative integer`),
      failSync: (times = 1, filter = {}) =>
        times >= 0
          ? Effect.sync(() => void (state.syncFailures = { filter, remaining: times }))
          : Effect.dieMessage(`failSync: ${times} must be >= 0`),
      stallReads: (times = 1, filter = {}) =>
        times >= 0
          ? Effect.sync(() => void (state.readStalls = { filter, remaining: times }))
          : Effect.dieMessage(`stallReads: ${times} must be >= 0`),
      stallWrites: (times, holdMs, filter = {}) =>
        times >= 0 && Number.isFinite(holdMs) && holdMs >= 0
          ? Effect.sync(() => void (state.writeStalls = { filter, remaining: times, holdMs }))
          : Effect.dieMessage(`stallWrites: ${times} and ${holdMs} ms must be >= 0`),
      slowSyncs: (latencyMs, filter = {}) =>
        Number.isFinite(latencyMs) && latencyMs >= 0
          ? Effect.sync(() => void (state.slow = { filter, latencyMs, all: false }))
          : Effect.dieMessage(`slowSyncs: ${latencyMs} ms must be >= 0`),
      slowAll: (latencyMs, filter = {}) =>
        Number.isFinite(latencyMs) && latencyMs >= 0
          ? Effect.sync(() => void (state.slow = { filter, latencyMs, all: true }))
          : Effect.dieMessage(`slowAll: ${latencyMs} ms must be >= 0`),
      flipByte,
      heal: Effect.sync(() => {
        state.space = undefined
        state.syncFailures = undefined
        state.readStalls = undefined
        state.writeStalls = undefined
        state.slow = undefined
      }),
      stats: Effect.sync(() => state.stats)
    }
    const disk: LocalDiskService = {
      ...inner,
      read: (path, offset, length) => slowed("read", path, inner.read(path, offset, length), false),
      readAll: (path) => slowed("readAll", path, inner.readAll(path), false),
      readAllInto: (path, buffer) => slowed("readAllInto", path, readAllInto(path, buffer), false),
      write: (path, offset, bytes) => slowed("write", path, held("write", path, writeNow(path, offset, bytes)), false),
      writeAtomic,
      sync,
      remove: (path) => slowed("remove", path, held("remove", path, inner.remove(path)), false)
    }
    return { disk, faults }
  })

/** The faulty view of the LocalDisk below it, and its switchboard. @category layers */
export const layer = (options: FaultyDiskOptions = {}): Layer.Layer<LocalDisk | DiskFaults, never, LocalDisk> =>
  Layer.effectContext(
    Effect.map(
      Effect.flatMap(LocalDisk, (inner) => make(inner, options)),
      ({ disk, faults }) => Context.make(LocalDisk, disk).pipe(Context.add(DiskFaults, faults))
    )
  )
