/**
 * Verification, two kinds.
 *
 * `verifyPages` (the end of `run`): every page of the workload, read back from a store restored from
 * the bucket (latest checkpoint + archived WAL replayed), is compared with the workload's ledger. A
 * page must be zeros or a whole page of an insert attempted at that very place; and when an insert
 * is required there (acknowledged, and below the bound: every acknowledged insert after a clean run,
 * those below the archived WAL position under faults), the page must hold that insert or a later
 * attempted one.
 *
 * `verifyCheckpoint` (the `verify` command): every part of a checkpoint is fetched, written into a
 * fresh directory, and its SHA-256 compared with the file manifest's.
 *
 * Replaces: the original report's manual check after restart ("SELECT count(*)"), and
 * orioledb_s3_loader.py's download of a checkpoint (docs/ORIGINAL.md §5 "Read-back"), which trusted
 * the bytes it got.
 *
 * @since 0.1.0
 */
import { Effect, Ref } from "effect"
import type { CorruptObject, LocalIoError, ObjectStoreError } from "../domain/Errors.js"
import type { FileId } from "../domain/Ids.js"
import * as KeyLayout from "../domain/KeyLayout.js"
import * as Manifest from "../domain/Manifest.js"
import type { LoadedCheckpoint } from "../services/Loader.js"
import type { LocalDiskService } from "../services/LocalDisk.js"
import type { ObjectStoreService } from "../services/ObjectStore.js"
import { withRequestPolicy } from "../services/RequestPolicy.js"
import { keyLayout, type StorageConfigValue } from "../services/StorageConfig.js"
import * as Page from "./Page.js"
import { fileIdOf, type Ledger } from "./Workload.js"

/** One page that does not hold what the ledger requires. @category models */
export interface PageMismatch {
  readonly file: number
  readonly page: number
  readonly required: number
  readonly attemptedMax: number
  /** What the page holds: zeros, insert N, or invalid. */
  readonly found: string
  readonly problem: string
}

/** The outcome of a page verification. @category models */
export interface PageVerification {
  readonly ok: boolean
  readonly pagesChecked: number
  /** Pages that had to hold an acknowledged insert. */
  readonly pagesRequired: number
  readonly mismatches: number
  /** The first mismatches (at most `examplesMax`). */
  readonly examples: ReadonlyArray<PageMismatch>
  /** Every acknowledged insert below this LSN was required; undefined: every acknowledged insert. */
  readonly requiredBelowLsn: number | undefined
}

const examplesMax = 10

const describeCheck = (check: Page.PageCheck): string =>
  check._tag === "Zero" ? "zeros" : check._tag === "Valid" ? `insert ${check.insertId}` : `invalid: ${check.detail}`

/**
 * The problem with one page read back, or undefined when it is acceptable. Pure: `required` is the
 * insert the page must hold at least (0: none), `attemptedMax` the highest insert this run attempted
 * there (0: none). `untouchedMayHoldOlder`: the bucket had data before this run, so a page this run
 * never touched may hold any whole page of an older run.
 */
export const pageProblem = (
  check: Page.PageCheck,
  required: number,
  attemptedMax: number,
  untouchedMayHoldOlder = false
): string | undefined => {
  switch (check._tag) {
    case "Invalid":
      return check.detail
    case "Zero":
      return required > 0 ? `zeros, but insert ${required} was acknowledged` : undefined
    case "Valid":
      if (attemptedMax === 0 && untouchedMayHoldOlder) return undefined
      if (check.insertId > attemptedMax) {
        return `insert ${check.insertId}, never attempted here (highest attempted ${attemptedMax})`
      }
      if (check.insertId < required) return `insert ${check.insertId}, older than the acknowledged insert ${required}`
      return undefined
  }
}

/** Reads every page of the workload through `storage.read` and checks it against the ledger. */
export const verifyPages = (
  storage: { readonly read: (file: FileId, offset: number, length: number) => Effect.Effect<Uint8Array, unknown> },
  ledger: Ledger,
  options: {
    readonly requiredBelowLsn: number | undefined
    readonly concurrency: number
    /** The bucket held data before this run (see `pageProblem`). */
    readonly untouchedMayHoldOlder?: boolean
    /** Bytes per read (default 1 MiB: one part); pages are checked a read at a time. */
    readonly readBytes?: number
    readonly onProgress?: (checked: number, total: number) => Effect.Effect<void>
  }
): Effect.Effect<PageVerification, unknown> =>
  Effect.gen(function*() {
    const { files, pagesPerFile } = ledger.shape
    const totalPages = files * pagesPerFile
    // One read per run of pages (a part's worth by default): a lease per read, not per page.
    const pagesPerRead = Math.max(1, Math.floor((options.readBytes ?? 1024 * 1024) / Page.pageBytes))
    const chunks: Array<{ readonly file: number; readonly firstPage: number; readonly pageCount: number }> = []
    for (let file = 0; file < files; file++) {
      for (let firstPage = 0; firstPage < pagesPerFile; firstPage += pagesPerRead) {
        chunks.push({ file, firstPage, pageCount: Math.min(pagesPerRead, pagesPerFile - firstPage) })
      }
    }
    // Plain counters: each chunk's check runs synchronously inside one Effect.sync.
    const tally = { checked: 0, required: 0, mismatches: 0, examples: [] as Array<PageMismatch> }
    const checkChunk = (bytes: Uint8Array, chunk: (typeof chunks)[number]) => {
      for (let index = 0; index < chunk.pageCount; index++) {
        const page = chunk.firstPage + index
        const pageBytes = bytes.subarray(index * Page.pageBytes, (index + 1) * Page.pageBytes)
        const globalPage = ledger.globalPage(chunk.file, page)
        const requiredId = ledger.requiredOf(globalPage, options.requiredBelowLsn)
        const attemptedMax = ledger.attemptedMaxOf(globalPage)
        const check = Page.checkPage(pageBytes, chunk.file, page)
        const problem = pageProblem(check, requiredId, attemptedMax, options.untouchedMayHoldOlder ?? false)
        if (requiredId > 0) tally.required++
        if (problem !== undefined) {
          tally.mismatches++
          if (tally.examples.length < examplesMax) {
            tally.examples.push({
              file: chunk.file,
              page,
              required: requiredId,
              attemptedMax,
              found: describeCheck(check),
              problem
            })
          }
        }
        tally.checked++
      }
      return tally.checked
    }
    yield* Effect.forEach(
      chunks,
      (chunk) =>
        storage.read(fileIdOf(chunk.file), chunk.firstPage * Page.pageBytes, chunk.pageCount * Page.pageBytes).pipe(
          Effect.flatMap((bytes) => Effect.sync(() => checkChunk(bytes, chunk))),
          Effect.flatMap((
            checked
          ) => (options.onProgress === undefined ? Effect.void : options.onProgress(checked, totalPages)))
        ),
      { concurrency: Math.max(1, options.concurrency), discard: true }
    )
    return {
      ok: tally.mismatches === 0,
      pagesChecked: tally.checked,
      pagesRequired: tally.required,
      mismatches: tally.mismatches,
      examples: tally.examples,
      requiredBelowLsn: options.requiredBelowLsn
    }
  })

// ---------------------------------------------------------------------------------------------
// The `verify` command: a checkpoint's parts against their manifest digests
// ---------------------------------------------------------------------------------------------

/** One part whose bytes do not match the manifest. */
export interface PartMismatch {
  readonly file: FileId
  readonly part: number
  readonly key: string
  readonly detail: string
}

/** The outcome of a checkpoint verification. @category models */
export interface CheckpointVerification {
  readonly ok: boolean
  readonly checkpoint: number
  readonly files: number
  readonly partsChecked: number
  readonly bytesChecked: number
  readonly mismatches: number
  readonly examples: ReadonlyArray<PartMismatch>
}

/** The local path a verified part is written to: `<file>/<part>` under the fresh directory. */
const localPartPath = (file: FileId, part: number): string =>
  `${encodeURIComponent(file)}/${part.toString().padStart(10, "0")}`

/**
 * Fetches every part of `checkpoint` (bounded concurrency), writes it to `disk` and compares its
 * SHA-256 and size with the manifest. A missing object is a mismatch, not a failure; an unreachable
 * bucket is a failure.
 */
export const verifyCheckpoint = (
  store: ObjectStoreService,
  config: StorageConfigValue,
  disk: LocalDiskService,
  checkpoint: LoadedCheckpoint,
  options: {
    readonly concurrency: number
    readonly onProgress?: (checked: number, total: number) => Effect.Effect<void>
  }
): Effect.Effect<CheckpointVerification, ObjectStoreError | CorruptObject | LocalIoError> =>
  Effect.gen(function*() {
    const layout = keyLayout(config)
    const targets: Array<{ readonly file: FileId; readonly entry: Manifest.PartEntry }> = []
    for (const [file, loaded] of checkpoint.files) for (const entry of loaded.parts) targets.push({ file, entry })
    const checked = yield* Ref.make(0)
    const bytes = yield* Ref.make(0)
    const mismatches = yield* Ref.make<ReadonlyArray<PartMismatch>>([])
    const mismatchCount = yield* Ref.make(0)
    const mismatch = (value: PartMismatch) =>
      Ref.update(mismatchCount, (count) => count + 1).pipe(
        Effect.zipRight(Ref.update(mismatches, (list) => (list.length >= examplesMax ? list : [...list, value])))
      )
    yield* Effect.forEach(
      targets,
      ({ file, entry }) =>
        Effect.gen(function*() {
          const [part, partCheckpoint, sha256, sizeBytes] = entry
          const key = KeyLayout.partKey(layout, partCheckpoint, file, part, sha256)
          const fetched = yield* store.get(key).pipe(
            withRequestPolicy(config, "verify part", key),
            Effect.map((value) => ({ _tag: "Found" as const, value })),
            Effect.catchTag("ObjectNotFound", () => Effect.succeed({ _tag: "Missing" as const }))
          )
          if (fetched._tag === "Missing") {
            yield* mismatch({ file, part, key, detail: "the object is missing" })
          } else {
            yield* disk.write(localPartPath(file, part), 0, fetched.value)
            const actual = Manifest.sha256Hex(fetched.value)
            if (actual !== sha256) {
              yield* mismatch({ file, part, key, detail: `SHA-256 ${actual}, the manifest says ${sha256}` })
            } else if (fetched.value.length !== sizeBytes) {
              yield* mismatch({
                file,
                part,
                key,
                detail: `${fetched.value.length} bytes, the manifest says ${sizeBytes}`
              })
            }
            yield* Ref.update(bytes, (total) => total + fetched.value.length)
          }
          const done = yield* Ref.updateAndGet(checked, (count) => count + 1)
          if (options.onProgress !== undefined) {
            yield* options.onProgress(done, targets.length)
          }
        }),
      { concurrency: Math.max(1, options.concurrency), discard: true }
    )
    const count = yield* Ref.get(mismatchCount)
    return {
      ok: count === 0,
      checkpoint: checkpoint.manifest.checkpoint,
      files: checkpoint.files.size,
      partsChecked: yield* Ref.get(checked),
      bytesChecked: yield* Ref.get(bytes),
      mismatches: count,
      examples: yield* Ref.get(mismatches)
    }
  })
