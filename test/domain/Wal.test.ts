/**
 * Goal: the WAL's pure rules hold. Records appended with `planAppend` scan back exactly, with their
 * LSNs, from segments that are each sealed except the last; no frame spans a segment; a corrupt,
 * torn or misplaced frame ends the valid log there and never passes for a record; `planAdvance`
 * keeps segments contiguous; and `markArchived` advances only over a contiguous prefix, whatever
 * order uploads finish in. Method: property tests over random record sizes on tiny segments (so
 * that records cross boundaries often), plus hand-picked boundaries.
 */
import { assert, describe, it } from "@effect/vitest"
import { FastCheck } from "effect"
import * as Zlib from "node:zlib"
import * as Wal from "../../src/domain/Wal.js"
import * as WalArchive from "../../src/domain/WalArchive.js"

const segmentBytes = 256

/** Appends payloads into a map of segment → bytes, as the log writes them. */
const buildLog = (payloads: ReadonlyArray<Uint8Array>, startLsn = 0) => {
  const segments = new Map<number, Uint8Array>()
  const lengths = new Map<number, number>()
  const lsns: Array<number> = []
  let end = startLsn
  const put = (frame: Wal.FrameWrite) => {
    const segment = Wal.segmentOf(frame.lsn, segmentBytes)
    const offset = frame.lsn - Wal.segmentStart(segment, segmentBytes)
    assert.isAtMost(offset + frame.bytes.length, segmentBytes, "a frame never spans segments")
    const bytes = segments.get(segment) ?? new Uint8Array(segmentBytes)
    bytes.set(frame.bytes, offset)
    segments.set(segment, bytes)
    lengths.set(segment, Math.max(lengths.get(segment) ?? 0, offset + frame.bytes.length))
  }
  for (const payload of payloads) {
    const planned = Wal.planAppend(end, payload, segmentBytes)
    if (planned._tag === "Left") throw new Error("unexpected: too large")
    planned.plan.frames.forEach(put)
    lsns.push(planned.plan.lsn)
    assert.strictEqual(planned.plan.endLsn, planned.plan.lsn + Wal.headerBytes + payload.length)
    assert.isAtLeast(
      Wal.segmentEnd(Wal.segmentOf(planned.plan.nextEndLsn, segmentBytes), segmentBytes) - planned.plan.nextEndLsn,
      Wal.headerBytes
    )
    end = planned.plan.nextEndLsn
  }
  const files = new Map(
    Array.from(segments, ([segment, bytes]) => [segment, bytes.slice(0, lengths.get(segment) ?? 0)] as const)
  )
  return { files, lsns, end }
}

const payloadArb = FastCheck.uint8Array({ minLength: 0, maxLength: Wal.payloadBytesMax(segmentBytes) })

describe("Wal", () => {
  it("crc32 is zlib's CRC-32, also when continued over several pieces (property)", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.uint8Array({ maxLength: 300 }),
        FastCheck.uint8Array({ maxLength: 50 }),
        (first, second) => {
          assert.strictEqual(Wal.crc32(first), Zlib.crc32(first))
          assert.strictEqual(Wal.crc32(second, Wal.crc32(first)), Zlib.crc32(second, Zlib.crc32(first)))
        }
      ),
      { numRuns: 200 }
    )
    assert.strictEqual(Wal.crc32(new TextEncoder().encode("123456789")), 0xcbf43926)
  })

  it("scans back every appended record with its LSN; every segment but the last is sealed", () => {
    FastCheck.assert(
      FastCheck.property(FastCheck.array(payloadArb, { minLength: 1, maxLength: 40 }), (payloads) => {
        const { end, files, lsns } = buildLog(payloads)
        const ordered = Array.from(files.keys()).sort((a, b) => a - b)
        const scanned: Array<Wal.WalRecord> = []
        ordered.forEach((segment, index) => {
          const scan = Wal.scanSegment(files.get(segment) ?? new Uint8Array(0), segment, segmentBytes)
          scanned.push(...scan.records)
          if (index < ordered.length - 1) assert.strictEqual(scan.stop, "Sealed")
          else assert.strictEqual(Wal.scanEndLsn(scan, segmentBytes), end)
        })
        assert.deepStrictEqual(scanned.map((record) => record.lsn), lsns)
        assert.deepStrictEqual(
          scanned.map((record) => Array.from(record.payload)),
          payloads.map((payload) => Array.from(payload))
        )
        assert.deepStrictEqual(ordered, Array.from({ length: ordered.length }, (_, i) => i), "segments are contiguous")
      }),
      { numRuns: 200 }
    )
  })

  it("rejects a record larger than a segment holds; the largest fits alone, in a new segment if needed", () => {
    const max = Wal.payloadBytesMax(segmentBytes)
    const tooLarge = Wal.planAppend(0, new Uint8Array(max + 1), segmentBytes)
    assert.deepStrictEqual(tooLarge, { _tag: "Left", payloadBytesMax: max })
    const alone = Wal.planAppend(0, new Uint8Array(max), segmentBytes)
    assert.isTrue(alone._tag === "Right" && alone.plan.lsn === 0 && alone.plan.nextEndLsn === segmentBytes)
    const afterOne = Wal.planAppend(20, new Uint8Array(max), segmentBytes)
    assert.isTrue(afterOne._tag === "Right" && afterOne.plan.frames.length === 2 && afterOne.plan.lsn === segmentBytes)
  })

  it("moves the end to the next segment when the rest could not hold a header", () => {
    // A record ending 5 bytes before the segment end leaves no room for another frame header.
    const payload = new Uint8Array(segmentBytes - Wal.headerBytes - 5)
    const planned = Wal.planAppend(0, payload, segmentBytes)
    assert.isTrue(
      planned._tag === "Right" && planned.plan.endLsn === segmentBytes - 5 && planned.plan.nextEndLsn === segmentBytes
    )
    const { files } = buildLog([payload])
    assert.strictEqual(Wal.scanSegment(files.get(0) ?? new Uint8Array(0), 0, segmentBytes).stop, "Sealed")
    assert.strictEqual(Wal.normalizeEnd(segmentBytes, segmentBytes), segmentBytes)
    assert.strictEqual(Wal.normalizeEnd(segmentBytes - Wal.headerBytes, segmentBytes), segmentBytes - Wal.headerBytes)
    assert.strictEqual(Wal.normalizeEnd(segmentBytes - Wal.headerBytes + 1, segmentBytes), segmentBytes)
  })

  it("stops at a corrupt or torn frame and keeps the records before it (property)", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(FastCheck.uint8Array({ minLength: 1, maxLength: 30 }), { minLength: 2, maxLength: 6 }),
        FastCheck.nat(),
        FastCheck.integer({ min: 1, max: 255 }),
        (payloads, where, xor) => {
          const { files, lsns } = buildLog(payloads)
          const bytes = (files.get(0) ?? new Uint8Array(0)).slice()
          const inFirst = lsns.filter((lsn) => lsn < segmentBytes)
          const position = where % bytes.length
          bytes[position] = (bytes[position] ?? 0) ^ xor
          const scan = Wal.scanSegment(bytes, 0, segmentBytes)
          // The frame holding the flipped byte and everything after it are not records any more.
          const hit = inFirst.filter((lsn) => lsn <= position).pop() ?? 0
          assert.deepStrictEqual(scan.records.map((record) => record.lsn), inFirst.filter((lsn) => lsn < hit))
          assert.strictEqual(scan.stop, "Invalid")
          assert.strictEqual(scan.validBytes, hit)
        }
      ),
      { numRuns: 300 }
    )
  })

  it("a torn tail is Invalid, a zero tail is End, and a frame moved elsewhere is not a record", () => {
    const { files } = buildLog([Uint8Array.from([1, 2, 3]), Uint8Array.from([4, 5])])
    const bytes = files.get(0) ?? new Uint8Array(0)
    const torn = Wal.scanSegment(bytes.slice(0, bytes.length - 1), 0, segmentBytes)
    assert.strictEqual(torn.stop, "Invalid")
    assert.strictEqual(torn.records.length, 1)
    const zeros = new Uint8Array(100)
    zeros.set(bytes)
    const ended = Wal.scanSegment(zeros, 0, segmentBytes)
    assert.strictEqual(ended.stop, "End")
    assert.strictEqual(ended.validBytes, bytes.length)
    // The same valid frame placed in another segment (or at another offset) fails its checksum.
    assert.strictEqual(Wal.scanSegment(bytes, 1, segmentBytes).stop, "Invalid")
    const shifted = new Uint8Array(bytes.length + 8)
    const first = Wal.encodeRecord(0, Uint8Array.from([9]))
    shifted.set(first)
    shifted.set(Wal.encodeRecord(0, Uint8Array.from([7])), first.length)
    const misplaced = Wal.scanSegment(shifted, 0, segmentBytes)
    assert.strictEqual(misplaced.records.length, 1)
    assert.strictEqual(misplaced.stop, "Invalid")
    assert.strictEqual(Wal.scanSegment(new Uint8Array(0), 3, segmentBytes).stop, "End")
  })

  it("planAdvance pads through every segment to at least the target, keeping them contiguous (property)", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(payloadArb, { maxLength: 5 }),
        FastCheck.integer({ min: 0, max: 5 * segmentBytes }),
        (payloads, gap) => {
          const { end, files } = buildLog(payloads)
          const advance = Wal.planAdvance(end, end + gap, segmentBytes)
          assert.isAtLeast(advance.nextEndLsn, end + gap)
          assert.strictEqual(Wal.normalizeEnd(advance.nextEndLsn, segmentBytes), advance.nextEndLsn)
          for (const frame of advance.frames) {
            const segment = Wal.segmentOf(frame.lsn, segmentBytes)
            const bytes = new Uint8Array(segmentBytes)
            bytes.set(files.get(segment) ?? new Uint8Array(0))
            bytes.set(frame.bytes, frame.lsn - Wal.segmentStart(segment, segmentBytes))
            files.set(segment, bytes)
          }
          const ordered = Array.from(files.keys()).sort((a, b) => a - b)
          assert.deepStrictEqual(ordered, Array.from({ length: ordered.length }, (_, i) => i))
          ordered.forEach((segment, index) => {
            const scan = Wal.scanSegment(files.get(segment) ?? new Uint8Array(0), segment, segmentBytes)
            assert.notStrictEqual(scan.stop, "Invalid")
            if (index < ordered.length - 1) assert.strictEqual(scan.stop, "Sealed")
          })
          // A record appended after the advance goes at or after the target.
          const next = Wal.planAppend(advance.nextEndLsn, Uint8Array.from([1]), segmentBytes)
          assert.isTrue(next._tag === "Right" && next.plan.lsn >= end + gap)
        }
      ),
      { numRuns: 200 }
    )
  })

  it("markArchived never advances past a gap, whatever the completion order (property)", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.shuffledSubarray(Array.from({ length: 8 }, (_, i) => i), { minLength: 0, maxLength: 8 }),
        (order) => {
          let progress = WalArchive.initialProgress(0)
          const done = new Set<number>()
          for (const segment of order) {
            progress = WalArchive.markArchived(progress, segment, Wal.segmentEnd(segment, segmentBytes), segmentBytes)
            done.add(segment)
            let prefix = 0
            while (done.has(prefix)) prefix++
            assert.strictEqual(progress.through, prefix * segmentBytes)
            for (const key of progress.done.keys()) assert.isAbove(key, prefix - 1)
          }
        }
      ),
      { numRuns: 300 }
    )
  })

  it("a partial copy advances to its end only; the full copy later completes the segment", () => {
    let progress = WalArchive.initialProgress(segmentBytes) // segment 0 archived and gone
    progress = WalArchive.markArchived(progress, 2, Wal.segmentEnd(2, segmentBytes), segmentBytes)
    progress = WalArchive.markArchived(progress, 1, segmentBytes + 100, segmentBytes) // partial of 1
    assert.strictEqual(progress.through, segmentBytes + 100)
    progress = WalArchive.markArchived(progress, 1, segmentBytes + 50, segmentBytes) // an older partial: no regression
    assert.strictEqual(progress.through, segmentBytes + 100)
    progress = WalArchive.markArchived(progress, 1, Wal.segmentEnd(1, segmentBytes), segmentBytes)
    assert.strictEqual(progress.through, Wal.segmentEnd(2, segmentBytes))
    assert.strictEqual(progress.done.size, 0)
  })

  it("validFrameAfter finds the next valid frame after damage, and nothing after a torn tail (property)", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(payloadArb, { minLength: 2, maxLength: 12 }),
        FastCheck.nat(),
        (payloads, pick) => {
          const { files, lsns } = buildLog(payloads)
          const first = files.get(0)
          if (first === undefined) return
          const inFirst = lsns.filter((at) => at < segmentBytes)
          if (inFirst.length < 2) return
          // Damage the payload or header of a record that has another one after it in segment 0.
          const victim = pick % (inFirst.length - 1)
          const damagedAt = inFirst[victim] ?? 0
          const bytes = first.slice()
          bytes[damagedAt + 9] = (bytes[damagedAt + 9] ?? 0) ^ 0x01 // a checksum byte
          const scan = Wal.scanSegment(bytes, 0, segmentBytes)
          assert.strictEqual(scan.stop, "Invalid")
          assert.strictEqual(scan.validBytes, damagedAt)
          assert.strictEqual(Wal.validFrameAfter(bytes, 0, segmentBytes, scan.validBytes + 1), inFirst[victim + 1])
          // A torn tail: cut inside the last record of segment 0; nothing valid follows.
          const lastAt = inFirst[inFirst.length - 1] ?? 0
          const torn = first.slice(0, lastAt + Wal.headerBytes - 1)
          const tornScan = Wal.scanSegment(torn, 0, segmentBytes)
          assert.strictEqual(Wal.validFrameAfter(torn, 0, segmentBytes, tornScan.validBytes + 1), undefined)
          // A frame is valid only where it was written: segment 0's bytes read as segment 1 hold none.
          assert.strictEqual(Wal.validFrameAfter(first, 1, segmentBytes, 0), undefined)
        }
      ),
      { numRuns: 200 }
    )
  })

  it("archivedLineage: the newest copy per segment, never an older epoch after a newer one, never one above the reader's", () => {
    const copy = (segment: number, epoch: number) => ({ segment, epoch, key: `${segment}-${epoch}`, sizeBytes: 1 })
    const lineage = (copies: ReadonlyArray<ReturnType<typeof copy>>, epochMax: number) =>
      Array.from(Wal.archivedLineage(copies, epochMax).values()).map((chosen) => chosen.key)
    // A (1) archived 0-3; B (2) began in segment 2; A, stale, went on into 3 and 4.
    const copies = [copy(0, 1), copy(1, 1), copy(2, 1), copy(2, 2), copy(3, 1), copy(4, 1)]
    assert.deepStrictEqual(lineage(copies, 2), ["0-1", "1-1", "2-2"])
    assert.deepStrictEqual(lineage([...copies, copy(3, 2)], 2), ["0-1", "1-1", "2-2", "3-2"])
    // The reader of epoch 1 (A itself) reads its own history; copies of a newer epoch are not in it.
    assert.deepStrictEqual(lineage(copies, 1), ["0-1", "1-1", "2-1", "3-1", "4-1"])
    // Keys without an epoch are older than every epoch.
    assert.deepStrictEqual(
      lineage([copy(0, Wal.epochUnknown), copy(1, Wal.epochUnknown), copy(1, 3), copy(2, Wal.epochUnknown)], 5),
      ["0--1", "1-3"]
    )
    // Along the chosen copies, epochs never decrease (property).
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(
          FastCheck.record({
            segment: FastCheck.integer({ min: 0, max: 8 }),
            epoch: FastCheck.integer({ min: -1, max: 5 })
          }),
          { maxLength: 30 }
        ),
        FastCheck.integer({ min: 0, max: 5 }),
        (raw, epochMax) => {
          const chosen = Array.from(Wal.archivedLineage(raw.map((r) => copy(r.segment, r.epoch)), epochMax).values())
          for (let index = 1; index < chosen.length; index++) {
            assert.isAtLeast(chosen[index]?.epoch ?? 0, chosen[index - 1]?.epoch ?? 0)
            assert.isAbove(chosen[index]?.segment ?? 0, chosen[index - 1]?.segment ?? 0)
          }
          for (const picked of chosen) assert.isAtMost(picked.epoch, epochMax)
        }
      ),
      { numRuns: 200 }
    )
  })
  describe("time marks", () => {
    const encoder = new TextEncoder()
    /** Record, mark, record: the frames as the group commit writes them. */
    const withMark = (startLsn: number, timeMs: number) => {
      const first = Wal.planAppend(startLsn, encoder.encode("first"), segmentBytes)
      if (first._tag === "Left") throw new Error("too large")
      const mark = Wal.planTimeMark(first.plan.nextEndLsn, timeMs, segmentBytes)
      const second = Wal.planAppend(mark.nextEndLsn, encoder.encode("second"), segmentBytes)
      if (second._tag === "Left") throw new Error("too large")
      const frames = [...first.plan.frames, ...mark.frames, ...second.plan.frames]
      return { frames, first: first.plan, mark, second: second.plan }
    }
    const segmentsOf = (frames: ReadonlyArray<Wal.FrameWrite>) => {
      const files = new Map<number, Uint8Array>()
      const lengths = new Map<number, number>()
      for (const frame of frames) {
        const segment = Wal.segmentOf(frame.lsn, segmentBytes)
        const offset = frame.lsn - Wal.segmentStart(segment, segmentBytes)
        const bytes = files.get(segment) ?? new Uint8Array(segmentBytes)
        bytes.set(frame.bytes, offset)
        files.set(segment, bytes)
        lengths.set(segment, Math.max(lengths.get(segment) ?? 0, offset + frame.bytes.length))
      }
      return new Map(
        Array.from(files, ([segment, bytes]) => [segment, bytes.slice(0, lengths.get(segment) ?? 0)] as const)
      )
    }

    it("a mark is listed apart from the records, with its time; replay's records skip it", () => {
      const { frames, first, mark, second } = withMark(0, 1_765_000_000_123)
      const scan = Wal.scanSegment(segmentsOf(frames).get(0) ?? new Uint8Array(0), 0, segmentBytes)
      assert.strictEqual(scan.stop, "End")
      assert.deepStrictEqual(scan.records.map((record) => record.lsn), [first.lsn, second.lsn])
      assert.deepStrictEqual(scan.marks, [{ lsn: mark.lsn, timeMs: 1_765_000_000_123 }])
      assert.strictEqual(Wal.scanEndLsn(scan, segmentBytes), second.nextEndLsn)
    })

    it("a torn or damaged mark ends the valid log there, like any frame, and is found again as a valid frame", () => {
      const { frames, mark } = withMark(0, 42)
      const bytes = segmentsOf(frames).get(0) ?? new Uint8Array(0)
      const markOffset = mark.lsn
      const torn = Wal.scanSegment(bytes.slice(0, markOffset + Wal.headerBytes + 3), 0, segmentBytes)
      assert.strictEqual(torn.stop, "Invalid")
      assert.strictEqual(torn.validBytes, markOffset)
      assert.deepStrictEqual(torn.marks, [])
      const flipped = bytes.slice()
      flipped[markOffset + Wal.headerBytes] = (flipped[markOffset + Wal.headerBytes] ?? 0) ^ 0xff
      const damaged = Wal.scanSegment(flipped, 0, segmentBytes)
      assert.strictEqual(damaged.stop, "Invalid")
      assert.strictEqual(damaged.validBytes, markOffset)
      assert.strictEqual(Wal.validFrameAfter(bytes, 0, segmentBytes, markOffset), markOffset)
      assert.strictEqual(
        Wal.validFrameAfter(flipped, 0, segmentBytes, markOffset),
        markOffset + Wal.headerBytes + Wal.timeMarkPayloadBytes
      )
    })

    it("a mark that does not fit at a segment's end opens the next segment after a padding; one that fills it seals it", () => {
      // A record leaves 16 bytes in segment 0: the mark needs 20, so a padding, then segment 1.
      const filler = (length: number) => {
        const planned = Wal.planAppend(0, new Uint8Array(length).fill(1), segmentBytes)
        if (planned._tag === "Left") throw new Error("too large")
        return planned.plan
      }
      const before = filler(segmentBytes - 16 - Wal.headerBytes)
      const moved = Wal.planTimeMark(before.nextEndLsn, 7, segmentBytes)
      assert.strictEqual(moved.frames.length, 2)
      assert.strictEqual(moved.lsn, segmentBytes)
      const files = segmentsOf([...before.frames, ...moved.frames])
      assert.strictEqual(Wal.scanSegment(files.get(0) ?? new Uint8Array(0), 0, segmentBytes).stop, "Sealed")
      assert.deepStrictEqual(Wal.scanSegment(files.get(1) ?? new Uint8Array(0), 1, segmentBytes).marks, [{
        lsn: segmentBytes,
        timeMs: 7
      }])
      // Exactly 20 bytes left: the mark fills the segment, which is then sealed with the mark as its last frame.
      const exactBefore = filler(segmentBytes - 20 - Wal.headerBytes)
      const exact = Wal.planTimeMark(exactBefore.nextEndLsn, 8, segmentBytes)
      assert.strictEqual(exact.frames.length, 1)
      assert.strictEqual(exact.nextEndLsn, segmentBytes)
      const sealed = Wal.scanSegment(
        segmentsOf([...exactBefore.frames, ...exact.frames]).get(0) ?? new Uint8Array(0),
        0,
        segmentBytes
      )
      assert.strictEqual(sealed.stop, "Sealed")
      assert.deepStrictEqual(sealed.marks, [{ lsn: segmentBytes - 20, timeMs: 8 }])
    })
  })
})
