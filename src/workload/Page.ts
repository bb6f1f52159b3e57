/**
 * The workload's pages and WAL records, as pure byte codecs.
 *
 * A page is 8 KiB: a 24-byte header (magic, insert id, file, page) and a pseudo-random fill derived
 * from the same three numbers, so that any page read back from a restored store says by itself which
 * insert wrote it, and whether it is whole. A WAL record is the 20-byte triple (magic, insert id,
 * file, page): replay regenerates the page from it, exactly as PostgreSQL's redo regenerates a page
 * from a heap-insert record.
 *
 * Replaces: the rows of the original report's insert workload (a PostgreSQL table filled by
 * `INSERT`s for ~1000 s); here the "table" is F files of 8 KiB pages, so verification needs no SQL.
 *
 * @since 0.1.0
 */
import { Either } from "effect"

/** Bytes per page, like PostgreSQL's BLCKSZ. */
export const pageBytes = 8192

/** Bytes of the page header: magic, insert id (high, low), file, page, fill seed check. */
export const pageHeaderBytes = 24

/** Bytes of one WAL record. */
export const recordBytes = 20

const pageMagic = 0x45_53_33_50 // "ES3P"
const recordMagic = 0x45_53_33_57 // "ES3W"
const insertIdLowModulus = 2 ** 32

/** Which insert wrote a page, and where. @category models */
export interface PageIdentity {
  /** Positive; at most 2^53 - 1. */
  readonly insertId: number
  readonly file: number
  readonly page: number
}

/** What a page read back holds. @category models */
export type PageCheck =
  | { readonly _tag: "Zero" }
  | { readonly _tag: "Valid"; readonly insertId: number }
  | { readonly _tag: "Invalid"; readonly detail: string }

// A 32-bit mix of the identity (murmur3's finalizer over a running combination): distinct inserts
// give unrelated fills, so a page torn between two inserts never passes as either.
const mix32 = (value: number): number => {
  let hash = value >>> 0
  hash = Math.imul(hash ^ (hash >>> 16), 0x85eb_ca6b) >>> 0
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2_ae35) >>> 0
  return (hash ^ (hash >>> 16)) >>> 0
}

const seedOf = (identity: PageIdentity): number => {
  const high = Math.floor(identity.insertId / insertIdLowModulus)
  const low = identity.insertId % insertIdLowModulus
  let seed = mix32(low ^ 0x9e37_79b9)
  seed = mix32(seed ^ high)
  seed = mix32(seed ^ identity.file)
  seed = mix32(seed ^ identity.page)
  // xorshift32 must not start at 0.
  return seed === 0 ? 0x1234_5678 : seed
}

const checkIdentity = (identity: PageIdentity): void => {
  if (!Number.isSafeInteger(identity.insertId) || identity.insertId <= 0) {
    throw new RangeError(`insert id ${identity.insertId} is not a positive safe integer`)
  }
  if (!Number.isInteger(identity.file) || identity.file < 0 || identity.file >= insertIdLowModulus) {
    throw new RangeError(`file ${identity.file} is out of range`)
  }
  if (!Number.isInteger(identity.page) || identity.page < 0 || identity.page >= insertIdLowModulus) {
    throw new RangeError(`page ${identity.page} is out of range`)
  }
}

/** Writes the fill of `identity` into `view` from the end of the header. */
const fill = (view: DataView, seed: number): void => {
  let state = seed
  for (let offset = pageHeaderBytes; offset < pageBytes; offset += 4) {
    state ^= state << 13
    state >>>= 0
    state ^= state >>> 17
    state ^= state << 5
    state >>>= 0
    view.setUint32(offset, state, true)
  }
}

/** The page that insert `identity.insertId` writes at `identity.page` of `identity.file`. */
export const encodePage = (identity: PageIdentity): Uint8Array => {
  checkIdentity(identity)
  const bytes = new Uint8Array(pageBytes)
  const view = new DataView(bytes.buffer)
  const seed = seedOf(identity)
  view.setUint32(0, pageMagic, true)
  view.setUint32(4, Math.floor(identity.insertId / insertIdLowModulus), true)
  view.setUint32(8, identity.insertId % insertIdLowModulus, true)
  view.setUint32(12, identity.file, true)
  view.setUint32(16, identity.page, true)
  view.setUint32(20, seed, true)
  fill(view, seed)
  return bytes
}

const isAllZero = (bytes: Uint8Array): boolean => {
  for (let index = 0; index < bytes.length; index++) if (bytes[index] !== 0) return false
  return true
}

/**
 * What the page read back at (`file`, `page`) holds: zeros (never written), a whole page of some
 * insert at this very place, or anything else (torn, misplaced, foreign) with the first problem.
 */
export const checkPage = (bytes: Uint8Array, file: number, page: number): PageCheck => {
  if (bytes.length !== pageBytes) {
    return { _tag: "Invalid", detail: `read ${bytes.length} bytes, expected ${pageBytes}` }
  }
  if (isAllZero(bytes)) return { _tag: "Zero" }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint32(0, true) !== pageMagic) return { _tag: "Invalid", detail: "no page magic" }
  const insertId = view.getUint32(4, true) * insertIdLowModulus + view.getUint32(8, true)
  const headerFile = view.getUint32(12, true)
  const headerPage = view.getUint32(16, true)
  if (headerFile !== file || headerPage !== page) {
    return { _tag: "Invalid", detail: `the header names file ${headerFile} page ${headerPage} (insert ${insertId})` }
  }
  if (insertId <= 0 || !Number.isSafeInteger(insertId)) return { _tag: "Invalid", detail: `bad insert id ${insertId}` }
  const seed = seedOf({ insertId, file, page })
  if (view.getUint32(20, true) !== seed) {
    return { _tag: "Invalid", detail: `insert ${insertId}: the header's seed does not match` }
  }
  const expected = new DataView(new ArrayBuffer(pageBytes))
  fill(expected, seed)
  for (let offset = pageHeaderBytes; offset < pageBytes; offset += 4) {
    if (view.getUint32(offset, true) !== expected.getUint32(offset, true)) {
      return {
        _tag: "Invalid",
        detail: `insert ${insertId}: the fill differs at byte ${offset} (torn or overwritten page)`
      }
    }
  }
  return { _tag: "Valid", insertId }
}

/** The WAL record of an insert. */
export const encodeRecord = (identity: PageIdentity): Uint8Array => {
  checkIdentity(identity)
  const bytes = new Uint8Array(recordBytes)
  const view = new DataView(bytes.buffer)
  view.setUint32(0, recordMagic, true)
  view.setUint32(4, Math.floor(identity.insertId / insertIdLowModulus), true)
  view.setUint32(8, identity.insertId % insertIdLowModulus, true)
  view.setUint32(12, identity.file, true)
  view.setUint32(16, identity.page, true)
  return bytes
}

/** Decodes a WAL record; a message for anything that is not one. */
export const decodeRecord = (bytes: Uint8Array): Either.Either<PageIdentity, string> => {
  if (bytes.length !== recordBytes) {
    return Either.left(`a workload record has ${recordBytes} bytes, not ${bytes.length}`)
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint32(0, true) !== recordMagic) return Either.left("not a workload record (bad magic)")
  const insertId = view.getUint32(4, true) * insertIdLowModulus + view.getUint32(8, true)
  if (insertId <= 0 || !Number.isSafeInteger(insertId)) return Either.left(`bad insert id ${insertId}`)
  return Either.right({ insertId, file: view.getUint32(12, true), page: view.getUint32(16, true) })
}
