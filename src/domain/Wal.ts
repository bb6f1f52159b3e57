/**
 * The write-ahead log's pure rules: record framing, segment arithmetic, where the next record goes,
 * how a segment is scanned back (the contiguous prefix of archived segments is in WalArchive.ts).
 *
 * The log is a stream of bytes; an LSN is a position in it. Segment s holds the LSNs
 * [s·segmentBytes, (s+1)·segmentBytes) and is stored as the file `wal/<s: 16 hex digits>` locally and
 * as the object `<prefix>/wal/<s>-<epoch>` in the bucket (KeyLayout.walKey), one copy per writer's
 * epoch; `archivedLineage` picks the copies that make up a history. A frame never spans segments.
 *
 * Frame (little-endian, `headerBytes` = 12):
 * ```
 * u8  kind      1 = record, 2 = padding, 3 = time mark (0 = nothing written: the end of the log)
 * u8  version   1
 * u16 reserved  0
 * u32 length    record: payload bytes; padding: bytes skipped after the header; time mark: 8
 * u32 crc32     over the frame's LSN (u64), kind, version, reserved, length and, for a record or a
 *               time mark, payload
 * ```
 * A time mark's payload is the writer's clock (ms since the epoch, u64) when it was written: every
 * record before the mark was appended at or before that time. The group commit writes one at most
 * once per `walTimeMarkIntervalMs`; a restore to a time replays the records before the last mark at
 * or before it. Marks are frames like any other (checksummed, torn like any other), but they are not
 * records: a scan lists them apart, and replay never sees them.
 * The checksum is CRC-32 (IEEE, as zlib's), table-driven here: node:zlib's `crc32` costs a few
 * microseconds a call in argument checks, which dominated the cost of small records.
 * The LSN in the checksum makes a frame valid only where it was written, so stale bytes from an
 * earlier life of a position can never pass for a record. A padding frame's skipped bytes need not
 * exist (the file may end before them). A segment is *sealed* (complete) when a scan reaches its
 * end: through a padding frame, or when fewer than `headerBytes` remain. The writer never leaves the
 * log's end in such a tail (it moves to the next segment at once), so every position it returns is
 * either a segment start or has room for a header.
 *
 * Replaces: PostgreSQL's WAL segments as OrioleDB archived them (archive_library = 'orioledb',
 * src/s3/archive.c: one segment file per `wal/<name>` object), and the loader's WAL range
 * (orioledb_s3_loader.py), which missed the last segment of a range (docs/ORIGINAL.md §5): here a
 * range is always "from the segment holding the position through the last one there is".
 *
 * @since 0.1.0
 */

/** Bytes of a frame header. */
export const headerBytes = 12
/** The frame format version. */
export const frameVersion = 1

/** Frame kind: an application record. */
export const kindRecord = 1
/** Frame kind: padding to the end of a segment (records never span segments). */
export const kindPadding = 2
/** Frame kind: a time mark, the writer's clock in ms (8 bytes), for restores to a time. */
export const kindTimeMark = 3
/** Bytes of a time mark's payload: the time in ms (u64 LE). */
export const timeMarkPayloadBytes = 8

// ---------------------------------------------------------------------------------------------
// Segment arithmetic
// ---------------------------------------------------------------------------------------------

/** The segment holding an LSN. */
export const segmentOf = (lsn: number, segmentBytes: number): number => Math.floor(lsn / segmentBytes)
/** The first LSN of a segment. */
export const segmentStart = (segment: number, segmentBytes: number): number => segment * segmentBytes
/** The LSN after a segment's last byte (the next segment's start). */
export const segmentEnd = (segment: number, segmentBytes: number): number => (segment + 1) * segmentBytes
/** The largest payload a record can have: a record never spans segments. */
export const payloadBytesMax = (segmentBytes: number): number => segmentBytes - headerBytes

/** Where the log's end goes after a frame ending at `endLsn`: the next segment when the rest of this
 * one could not hold even a header. */
export const normalizeEnd = (endLsn: number, segmentBytes: number): number => {
  const rest = segmentBytes - (endLsn % segmentBytes)
  return rest < headerBytes && rest !== segmentBytes ? endLsn + rest : endLsn
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

const crcTable: Uint32Array = (() => {
  const table = new Uint32Array(256)
  for (let index = 0; index < 256; index++) {
    let value = index
    for (let bit = 0; bit < 8; bit++) value = value & 1 ? 0xedb88320 ^ (value >>> 1) : value >>> 1
    table[index] = value >>> 0
  }
  return table
})()

/** CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`) of `bytes`, continuing from `previous`. */
export const crc32 = (bytes: Uint8Array, previous = 0): number => {
  let value = ~previous >>> 0
  for (let index = 0; index < bytes.length; index++) {
    // Both indexes are in range: a byte XOR the low byte of value is below 256.
    value = (crcTable[(value ^ (bytes[index] as number)) & 0xff] as number) ^ (value >>> 8)
  }
  return ~value >>> 0
}

const checksum = (lsn: number, header: Uint8Array, payload: Uint8Array | undefined): number => {
  const prefix = new Uint8Array(16)
  const view = new DataView(prefix.buffer)
  view.setUint32(0, lsn % 2 ** 32, true)
  view.setUint32(4, Math.floor(lsn / 2 ** 32), true)
  prefix.set(header.subarray(0, 8), 8)
  const value = crc32(prefix)
  return payload === undefined ? value : crc32(payload, value)
}

const encodeFrame = (lsn: number, kind: number, length: number, payload: Uint8Array | undefined): Uint8Array => {
  const frame = new Uint8Array(headerBytes + (payload?.length ?? 0))
  const view = new DataView(frame.buffer)
  view.setUint8(0, kind)
  view.setUint8(1, frameVersion)
  view.setUint32(4, length, true)
  view.setUint32(8, checksum(lsn, frame, payload), true)
  if (payload !== undefined) frame.set(payload, headerBytes)
  return frame
}

/** The frame of a record written at `lsn`. */
export const encodeRecord = (lsn: number, payload: Uint8Array): Uint8Array =>
  encodeFrame(lsn, kindRecord, payload.length, payload)

/** The frame of a time mark written at `lsn`, holding `timeMs`. */
export const encodeTimeMark = (lsn: number, timeMs: number): Uint8Array => {
  const payload = new Uint8Array(timeMarkPayloadBytes)
  const view = new DataView(payload.buffer)
  view.setUint32(0, timeMs % 2 ** 32, true)
  view.setUint32(4, Math.floor(timeMs / 2 ** 32), true)
  return encodeFrame(lsn, kindTimeMark, payload.length, payload)
}

const decodeTimeMs = (payload: Uint8Array): number => {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
  return view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32
}

/** A padding frame at `lsn` that skips `skipBytes` after its header (the skipped bytes are not part of it). */
export const encodePadding = (lsn: number, skipBytes: number): Uint8Array =>
  encodeFrame(lsn, kindPadding, skipBytes, undefined)

/** One frame to write: its LSN and bytes. */
export interface FrameWrite {
  readonly lsn: number
  readonly bytes: Uint8Array
}

/** Where a record goes: the padding written before it (if it did not fit where the log ends), its
 * LSN, its end, and the log's next end. */
export interface AppendPlan {
  readonly frames: ReadonlyArray<FrameWrite>
  readonly lsn: number
  readonly endLsn: number
  readonly nextEndLsn: number
}

/** Plans the append of a record at the log's end; Left with the largest payload when it is too large. */
export const planAppend = (
  endLsn: number,
  payload: Uint8Array,
  segmentBytes: number
): { readonly _tag: "Right"; readonly plan: AppendPlan } | {
  readonly _tag: "Left"
  readonly payloadBytesMax: number
} => {
  if (payload.length > payloadBytesMax(segmentBytes)) {
    return { _tag: "Left", payloadBytesMax: payloadBytesMax(segmentBytes) }
  }
  return { _tag: "Right", plan: planFrame(endLsn, payload.length, (lsn) => encodeRecord(lsn, payload), segmentBytes) }
}

/** Plans a time mark at the log's end (see the module comment). */
export const planTimeMark = (endLsn: number, timeMs: number, segmentBytes: number): AppendPlan =>
  planFrame(endLsn, timeMarkPayloadBytes, (lsn) => encodeTimeMark(lsn, timeMs), segmentBytes)

const planFrame = (
  endLsn: number,
  payloadBytes: number,
  encode: (lsn: number) => Uint8Array,
  segmentBytes: number
): AppendPlan => {
  const frames: Array<FrameWrite> = []
  const rest = segmentBytes - (endLsn % segmentBytes)
  let lsn = endLsn
  if (headerBytes + payloadBytes > rest) {
    // The rest of the segment is padding; the frame opens the next segment.
    frames.push({ lsn: endLsn, bytes: encodePadding(endLsn, rest - headerBytes) })
    lsn = endLsn + rest
  }
  frames.push({ lsn, bytes: encode(lsn) })
  const frameEnd = lsn + headerBytes + payloadBytes
  return { frames, lsn, endLsn: frameEnd, nextEndLsn: normalizeEnd(frameEnd, segmentBytes) }
}

/**
 * Plans padding that moves the log's end from `endLsn` to at least `targetLsn` (used when a restored
 * log must continue after a checkpoint's position that its archived records do not reach). Every
 * segment in between gets a padding frame, so the segments stay contiguous.
 */
export const planAdvance = (
  endLsn: number,
  targetLsn: number,
  segmentBytes: number
): { readonly frames: ReadonlyArray<FrameWrite>; readonly nextEndLsn: number } => {
  const frames: Array<FrameWrite> = []
  let position = endLsn
  while (position < targetLsn) {
    const end = segmentEnd(segmentOf(position, segmentBytes), segmentBytes)
    const stop = Math.min(end, Math.max(targetLsn, position + headerBytes))
    // A padding that would leave a tail too short for a header covers the tail too.
    const skipTo = normalizeEnd(stop, segmentBytes)
    const padding = encodePadding(position, skipTo - position - headerBytes)
    // Ending inside its segment, the padding carries its skipped bytes (zeros): the segment's file
    // then reaches the log's end, which a reopen reads from the file's length.
    const bytes = skipTo < end ? new Uint8Array(skipTo - position) : padding
    if (skipTo < end) bytes.set(padding)
    frames.push({ lsn: position, bytes })
    position = skipTo
  }
  return { frames, nextEndLsn: position }
}

// ---------------------------------------------------------------------------------------------
// Scanning a segment
// ---------------------------------------------------------------------------------------------

/** One record read back. */
export interface WalRecord {
  readonly lsn: number
  readonly payload: Uint8Array
}

/** A time mark read back: every record below `lsn` was appended at or before `timeMs`. */
export interface TimeMark {
  readonly lsn: number
  readonly timeMs: number
}

/** How a scan of a segment ended. */
export type ScanStop =
  /** The segment is complete: a padding frame or a tail too short for a header reached its end. */
  | "Sealed"
  /** The bytes ended (or only zeros follow) at a frame boundary: the end of a partial segment. */
  | "End"
  /** A frame is torn or corrupt (short, bad kind, bad length, bad checksum): nothing after it counts. */
  | "Invalid"

/** What a scan found. @category models */
export interface SegmentScan {
  readonly segment: number
  readonly records: ReadonlyArray<WalRecord>
  /** The time marks among the frames, in order (never in `records`). */
  readonly marks: ReadonlyArray<TimeMark>
  /** Bytes of the segment that hold valid frames (padding skips included when sealed). */
  readonly validBytes: number
  readonly stop: ScanStop
  /** For `Invalid`, what was wrong. */
  readonly problem: string | undefined
}

const allZero = (bytes: Uint8Array, from: number): boolean => {
  for (let index = from; index < bytes.length; index++) if (bytes[index] !== 0) return false
  return true
}

const isKnownKind = (kind: number): boolean => kind === kindRecord || kind === kindPadding || kind === kindTimeMark

/** Scans the bytes of segment `segment` (a file or an object: at most `segmentBytes`) frame by frame. */
export const scanSegment = (bytes: Uint8Array, segment: number, segmentBytes: number): SegmentScan => {
  const base = segmentStart(segment, segmentBytes)
  const records: Array<WalRecord> = []
  const marks: Array<TimeMark> = []
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const done = (offset: number, stop: ScanStop, problem?: string): SegmentScan => ({
    segment,
    records,
    marks,
    validBytes: offset,
    stop,
    problem
  })
  let offset = 0
  for (;;) {
    if (segmentBytes - offset < headerBytes) return done(offset, "Sealed")
    if (offset >= bytes.length || allZero(bytes.subarray(offset, offset + headerBytes), 0)) {
      return allZero(bytes, offset)
        ? done(offset, "End")
        : done(offset, "Invalid", `a zero header at offset ${offset} with data after it`)
    }
    if (offset + headerBytes > bytes.length) return done(offset, "Invalid", `a torn header at offset ${offset}`)
    const kind = view.getUint8(offset)
    const version = view.getUint8(offset + 1)
    const length = view.getUint32(offset + 4, true)
    const stored = view.getUint32(offset + 8, true)
    if (!isKnownKind(kind) || version !== frameVersion || view.getUint16(offset + 2, true) !== 0) {
      return done(offset, "Invalid", `an unknown frame kind ${kind} (version ${version}) at offset ${offset}`)
    }
    const frameEnd = offset + headerBytes + length
    if (frameEnd > segmentBytes) return done(offset, "Invalid", `a frame at offset ${offset} runs past the segment end`)
    const lsn = base + offset
    const header = bytes.subarray(offset, offset + headerBytes)
    if (kind === kindRecord || kind === kindTimeMark) {
      if (kind === kindTimeMark && length !== timeMarkPayloadBytes) {
        return done(offset, "Invalid", `a time mark of ${length} bytes at offset ${offset}`)
      }
      if (frameEnd > bytes.length) return done(offset, "Invalid", `a torn frame at offset ${offset}`)
      const payload = bytes.subarray(offset + headerBytes, frameEnd)
      if (checksum(lsn, header, payload) !== stored) {
        return done(offset, "Invalid", `a bad checksum at offset ${offset}`)
      }
      if (kind === kindRecord) records.push({ lsn, payload: payload.slice() })
      else marks.push({ lsn, timeMs: decodeTimeMs(payload) })
    } else if (checksum(lsn, header, undefined) !== stored) {
      return done(offset, "Invalid", `a bad padding checksum at offset ${offset}`)
    }
    offset = frameEnd
  }
}

/** The log position right after a scanned segment's valid frames (a sealed one ends at its end). */
export const scanEndLsn = (scan: SegmentScan, segmentBytes: number): number =>
  scan.stop === "Sealed"
    ? segmentEnd(scan.segment, segmentBytes)
    : segmentStart(scan.segment, segmentBytes) + scan.validBytes

// ---------------------------------------------------------------------------------------------
// Damage: a torn tail or a corrupt middle
// ---------------------------------------------------------------------------------------------

/**
 * The offset of the first valid frame at or after `fromOffset` (a header of a known kind and version
 * whose checksum holds for the position it is at; a record's payload must be there), or undefined.
 * After a bad frame this tells a torn tail (nothing valid follows: a crash cut the last write) from
 * corruption in the middle of the log (valid frames follow it). The checksum covers the frame's LSN,
 * so a frame found here was written at exactly this position.
 */
export const validFrameAfter = (
  bytes: Uint8Array,
  segment: number,
  segmentBytes: number,
  fromOffset: number
): number | undefined => {
  const base = segmentStart(segment, segmentBytes)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const limit = Math.min(bytes.length, segmentBytes) - headerBytes
  for (let offset = Math.max(0, fromOffset); offset <= limit; offset++) {
    const kind = bytes[offset]
    if (
      kind === undefined || !isKnownKind(kind) || bytes[offset + 1] !== frameVersion || bytes[offset + 2] !== 0 ||
      bytes[offset + 3] !== 0
    ) continue
    const length = view.getUint32(offset + 4, true)
    const frameEnd = offset + headerBytes + length
    const hasPayload = kind !== kindPadding
    if (frameEnd > segmentBytes || (hasPayload && frameEnd > bytes.length)) continue
    const header = bytes.subarray(offset, offset + headerBytes)
    const payload = hasPayload ? bytes.subarray(offset + headerBytes, frameEnd) : undefined
    if (checksum(base + offset, header, payload) === view.getUint32(offset + 8, true)) return offset
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Archived copies: which epoch's copy of each segment is the log's history
// ---------------------------------------------------------------------------------------------

/** The epoch given to an archived key without one (written before epochs were in the key): older
 * than every epoch. */
export const epochUnknown = -1

/** One archived copy of a segment, uploaded by the writer of `epoch`. */
export interface ArchivedCopy {
  readonly segment: number
  readonly epoch: number
  readonly key: string
  readonly sizeBytes: number
}

/**
 * The copies that make up the log's history as the writer of `epochMax` has it, one per segment.
 * A writer's history is its predecessor's up to where it started, then its own; the writer uploads
 * the segment where it starts before any other (Wal's open), so along the log the epochs of the
 * history never go back. Hence, segment by segment in order, the history takes the newest copy
 * whose epoch is at least the one reached so far and at most `epochMax`: a stale writer's copies
 * past the point where a newer epoch began are never taken, nor are copies of a newer epoch than
 * `epochMax`. A segment without such a copy is absent (a gap if later ones exist).
 */
export const archivedLineage = <C extends ArchivedCopy>(copies: Iterable<C>, epochMax: number): Map<number, C> => {
  const bySegment = new Map<number, Array<C>>()
  for (const copy of copies) {
    if (copy.epoch > epochMax) continue
    const list = bySegment.get(copy.segment)
    if (list === undefined) bySegment.set(copy.segment, [copy])
    else list.push(copy)
  }
  const lineage = new Map<number, C>()
  let reached = epochUnknown
  for (const segment of Array.from(bySegment.keys()).sort((left, right) => left - right)) {
    let chosen: C | undefined
    for (const copy of bySegment.get(segment) ?? []) {
      if (copy.epoch >= reached && (chosen === undefined || copy.epoch > chosen.epoch)) chosen = copy
    }
    if (chosen === undefined) continue
    lineage.set(segment, chosen)
    reached = chosen.epoch
  }
  return lineage
}

/** Bytes of a durable-end mark: the LSN (u64 LE) and a CRC-32 over the tag "WALD" and it. */
export const durableMarkBytes = 12

const durableMarkCrc = (lsnBytes: Uint8Array): number =>
  crc32(lsnBytes, crc32(Uint8Array.from([0x57, 0x41, 0x4c, 0x44])))

/** A mark saying that every byte of the log below `lsn` was fsynced (written only after the fsync). */
export const encodeDurableMark = (lsn: number): Uint8Array => {
  const mark = new Uint8Array(durableMarkBytes)
  const view = new DataView(mark.buffer)
  view.setUint32(0, lsn % 2 ** 32, true)
  view.setUint32(4, Math.floor(lsn / 2 ** 32), true)
  view.setUint32(8, durableMarkCrc(mark.subarray(0, 8)), true)
  return mark
}

/** The LSN of a durable-end mark, or undefined for a missing, short or damaged (torn) one. */
export const decodeDurableMark = (bytes: Uint8Array): number | undefined => {
  if (bytes.length < durableMarkBytes) return undefined
  const view = new DataView(bytes.buffer, bytes.byteOffset, durableMarkBytes)
  if (view.getUint32(8, true) !== durableMarkCrc(bytes.subarray(0, 8))) return undefined
  return view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32
}
