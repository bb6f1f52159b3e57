/**
 * The crash test's data model, shared by the writer process (test/crash/child.ts) and the checker
 * (test/crash/Campaign.ts): pages, their WAL records, and the ledger of acknowledgements.
 *
 * Every insert has a sequence number `seq`, never reused, and writes one page at a place of its own
 * (file `seq % fileCount`, page `floor(seq / fileCount)`), so every byte read back belongs to one
 * insert or to none. A page's bytes are a function of `seq` (its first 8 bytes are `seq`, the rest a
 * pseudo-random stream seeded by it); the ledger keeps their SHA-256. The WAL record of an insert is
 * physical redo: a 16-byte header (seq, file index, offset) followed by the page's bytes, which the
 * replay function writes back as they are.
 *
 * The ledger is a text file outside the data directory, appended and fsynced by the writer:
 *   `reserve <seqEnd> <owner>`   sequence numbers below seqEnd may be in use (written before use)
 *   `ack <seq> <fileIndex> <offset> <lsn> <sha256> <owner>`   acknowledged (after `commit` returned)
 *   `fenced <owner>`             this owner's commit failed with Fenced for the first time
 * A line without its final newline (the writer was killed in the middle of it) does not count.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"

export const pageBytes = 512
export const fileCount = 4
export const recordHeaderBytes = 16

export const fileName = (fileIndex: number): string => `crash/f${fileIndex}`

/** Where an insert's page goes. */
export const placeOf = (seq: number): { readonly fileIndex: number; readonly offset: number } => ({
  fileIndex: seq % fileCount,
  offset: Math.floor(seq / fileCount) * pageBytes
})

/** The page an insert writes. */
export const pageOf = (seq: number): Uint8Array => {
  const bytes = new Uint8Array(pageBytes)
  const view = new DataView(bytes.buffer)
  view.setBigUint64(0, BigInt(seq), true)
  let state = (seq * 2654435761 + 0x9e3779b9) >>> 0 || 1
  for (let index = 8; index < pageBytes; index++) {
    state ^= state << 13
    state >>>= 0
    state ^= state >>> 17
    state ^= state << 5
    state >>>= 0
    bytes[index] = state & 0xff
  }
  return bytes
}

export const sha256Hex = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

export const zeroPageSha = sha256Hex(new Uint8Array(pageBytes))

/** The WAL record of an insert. */
export const encodeRecord = (seq: number): Uint8Array => {
  const { fileIndex, offset } = placeOf(seq)
  const record = new Uint8Array(recordHeaderBytes + pageBytes)
  const view = new DataView(record.buffer)
  view.setBigUint64(0, BigInt(seq), true)
  view.setUint32(8, fileIndex, true)
  view.setUint32(12, offset, true)
  record.set(pageOf(seq), recordHeaderBytes)
  return record
}

export const decodeRecord = (
  record: Uint8Array
): { readonly seq: number; readonly fileIndex: number; readonly offset: number; readonly page: Uint8Array } => {
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength)
  if (record.length !== recordHeaderBytes + pageBytes) {
    throw new Error(`a WAL record of ${record.length} bytes; expected ${recordHeaderBytes + pageBytes}`)
  }
  return {
    seq: Number(view.getBigUint64(0, true)),
    fileIndex: view.getUint32(8, true),
    offset: view.getUint32(12, true),
    page: record.subarray(recordHeaderBytes)
  }
}

/** One acknowledged insert, as the ledger says. */
export interface Ack {
  readonly seq: number
  readonly fileIndex: number
  readonly offset: number
  readonly lsn: number
  readonly sha256: string
  readonly owner: string
  /** Its line number in the ledger (acknowledgement order). */
  readonly line: number
}

/** What the ledger holds. */
export interface Ledger {
  readonly acks: ReadonlyArray<Ack>
  /** The first sequence number not reserved by anyone. */
  readonly seqEnd: number
  /** For each owner that saw Fenced, the ledger line where it did. */
  readonly fencedAtLine: ReadonlyMap<string, number>
  /** Complete lines in the ledger. */
  readonly lineCount: number
}

export const readLedger = (path: string): Ledger => {
  const text = fs.existsSync(path) ? fs.readFileSync(path, "utf8") : ""
  const lines = text.split("\n")
  lines.pop() // the text after the last newline: empty, or a torn line
  const acks: Array<Ack> = []
  const fencedAtLine = new Map<string, number>()
  let seqEnd = 0
  lines.forEach((line, index) => {
    const fields = line.split(" ")
    if (fields[0] === "reserve") seqEnd = Math.max(seqEnd, Number(fields[1]))
    else if (fields[0] === "fenced" && !fencedAtLine.has(fields[1] ?? "")) fencedAtLine.set(fields[1] ?? "", index)
    else if (fields[0] === "ack") {
      acks.push({
        seq: Number(fields[1]),
        fileIndex: Number(fields[2]),
        offset: Number(fields[3]),
        lsn: Number(fields[4]),
        sha256: fields[5] ?? "",
        owner: fields[6] ?? "",
        line: index
      })
      seqEnd = Math.max(seqEnd, Number(fields[1]) + 1)
    }
  })
  return { acks, seqEnd, fencedAtLine, lineCount: lines.length }
}

/** Appends one line and fsyncs the ledger before returning. */
export const appendLedgerLine = (fd: number, line: string): void => {
  fs.writeSync(fd, `${line}\n`)
  fs.fsyncSync(fd)
}
