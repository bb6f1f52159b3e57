/**
 * Install: adopting a manifest and the local directory at start (reopen, restore), and the record
 * of local part hashes a clean stop leaves for the next start to check.
 *
 * The trust rule: a local part file that matches the manifest's SHA-256 is a clean copy. One that
 * differs holds newer data only after a clean stop, and only if it still has the hash the clean
 * stop recorded; after a crash (writes through leases are not synced) or when the hash differs
 * (bit rot, a part a failed write damaged), it is removed and rebuilt from the checkpoint and the
 * WAL replay.
 *
 * Replaces: OrioleDB's header initialization of a data file at open (all parts NotLoaded when the
 * file lives in S3, Loaded + dirty when newer, src/s3/headers.c:220-235), which trusted local
 * files without a check.
 *
 * @since 0.1.0
 */
import { Effect, Option, STM, TRef } from "effect"
import type { LocalIoError } from "../../domain/Errors.js"
import type { CheckpointNumber } from "../../domain/Ids.js"
import { type RemotePart, sha256Hex } from "../../domain/Manifest.js"
import { parsePartPath, partsDirectory } from "../../domain/PartPath.js"
import * as PartStateDomain from "../../domain/PartState.js"
import type { PartState } from "../../domain/PartState.js"
import type { InstallEntry, InstallOptions } from "../../services/PartTable.js"
import { ioOf, type PartRow, rowOf, setCell, type Table } from "./table.js"

/** Sets a row's state outright (no transition: install runs before any lease), ending any load. */
const installState = (table: Table, row: PartRow, state: PartState): Effect.Effect<void> =>
  STM.commit(
    STM.flatMap(TRef.get(row.cell), (cell) =>
      setCell(table, row, cell, { state, loadGeneration: cell.loadGeneration + 1, loadFailure: undefined }))
  )

/** What `install` makes of a local part file: its state, or None when it is to be rebuilt. */
const adoptLocal = (
  table: Table,
  path: string,
  remote: RemotePart | undefined,
  options: InstallOptions
): Effect.Effect<Option.Option<PartState>, LocalIoError> =>
  Effect.flatMap(table.disk.readAll(path), (content) => {
    if (Option.isNone(content)) return Effect.succeed(Option.none())
    const bytes = content.value
    const sha256 = sha256Hex(bytes)
    const matchesRemote = remote !== undefined && bytes.length === remote.sizeBytes && sha256 === remote.sha256
    const state = PartStateDomain.localCopy({ sizeBytes: bytes.length, remote, matchesRemote })
    if (matchesRemote) return Effect.succeed(Option.some(state))
    // Differs from the bucket: newer data after a clean stop, if the clean stop vouched for it.
    const recorded = options.recordedHashes?.get(path)
    const trusted = (options.trustLocal ?? true) && (options.recordedHashes === undefined || recorded === sha256)
    if (trusted) return Effect.succeed(Option.some(state))
    const warn = options.trustLocal === false
      ? Effect.void // after a crash every differing file is rebuilt; nothing to warn of
      : Effect.logWarning(
        `part file ${path} ${
          recorded === undefined
            ? "is not in the record of the clean stop"
            : "does not have the SHA-256 recorded at the clean stop (bit rot?)"
        }: removed, rebuilt from the checkpoint and the WAL`
      )
    return Effect.zipRight(warn, Effect.as(table.disk.remove(path), Option.none()))
  })

/** PartTableService.install. */
export const install = (table: Table) =>
(
  entries: Iterable<InstallEntry>,
  openCheckpoint: CheckpointNumber,
  options: InstallOptions = {}
): Effect.Effect<void, LocalIoError> =>
  Effect.gen(function*() {
    yield* STM.commit(TRef.set(table.openCheckpoint, openCheckpoint))
    const localPaths = new Set(yield* table.disk.list(partsDirectory))
    for (const entry of entries) {
      const row = yield* rowOf(table, entry.file, entry.part)
      const local = localPaths.delete(row.path)
        ? yield* adoptLocal(table, row.path, entry.remote, options)
        : Option.none()
      yield* installState(table, row, Option.getOrElse(local, () => PartStateDomain.remoteOnly(entry.remote)))
    }
    // Part files no manifest names were written after the last checkpoint: kept, dirty, when the
    // clean stop vouches for them; otherwise the WAL replay rebuilds them.
    for (const path of localPaths) {
      const parsed = parsePartPath(path)
      if (Option.isNone(parsed)) continue
      if (options.trustLocal === false) {
        yield* table.disk.remove(path)
        continue
      }
      const local = yield* adoptLocal(table, path, undefined, options)
      if (Option.isSome(local)) {
        yield* installState(table, yield* rowOf(table, parsed.value[0], parsed.value[1]), local.value)
      }
    }
  })

/** PartTableService.localPartHashes: a clean part's hash is its remote object's; any other's is
 * computed from its file (under its I/O lock); a damaged part is left out. */
export const localPartHashes = (table: Table): Effect.Effect<ReadonlyArray<readonly [string, string]>, LocalIoError> =>
  Effect.gen(function*() {
    const hashes: Array<readonly [string, string]> = []
    for (const row of Array.from(table.order)) {
      if (row.damaged !== undefined) continue
      const state = (yield* STM.commit(TRef.get(row.cell))).state
      if (state.status !== "Loaded") continue
      const clean = !state.dirty && !state.writing && state.leases === 0 && state.remote !== undefined
      if (clean && state.remote !== undefined) {
        hashes.push([row.path, state.remote.sha256])
        continue
      }
      const content = yield* ioOf(row).withPermits(1)(table.disk.readAll(row.path))
      if (Option.isSome(content) && row.damaged === undefined) hashes.push([row.path, sha256Hex(content.value)])
    }
    return hashes
  })
