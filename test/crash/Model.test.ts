/**
 * Goal: the crash test's checker can be trusted: a torn last ledger line (the writer killed in the
 * middle of it) does not count as an acknowledgement, reservations and acknowledgements both move
 * the next sequence number, every insert has a place and bytes of its own, and a WAL record carries
 * the page exactly. Method: the pure functions of test/crash/Model.ts on small inputs.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Model from "./Model.js"

describe("crash test model", () => {
  it("reads the ledger's complete lines only", () => {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), "crash-model-"))
    try {
      const ledger = path.join(directory, "ledger")
      fs.writeFileSync(
        ledger,
        [
          "reserve 64 w1",
          `ack 3 3 0 1200 ${"a".repeat(64)} w1`,
          "fenced w1",
          `ack 70 2 8704 5000 ${"b".repeat(64)} w1`,
          `ack 9 1 1024 6000 ${"c".repeat(10)}` // torn: no newline, no owner
        ].join("\n")
      )
      const read = Model.readLedger(ledger)
      assert.deepStrictEqual(read.acks.map((ack) => [ack.seq, ack.lsn, ack.owner, ack.line]), [[3, 1200, "w1", 1], [
        70,
        5000,
        "w1",
        3
      ]])
      assert.strictEqual(read.seqEnd, 71)
      assert.strictEqual(read.fencedAtLine.get("w1"), 2)
      assert.strictEqual(read.lineCount, 4)
      assert.strictEqual(Model.readLedger(path.join(directory, "missing")).acks.length, 0)
    } finally {
      fs.rmSync(directory, { recursive: true, force: true })
    }
  })

  it("gives every insert a place and bytes of its own, and carries them in its WAL record", () => {
    const places = new Set<string>()
    const digests = new Set<string>()
    for (let seq = 0; seq < 2000; seq++) {
      const { fileIndex, offset } = Model.placeOf(seq)
      places.add(`${fileIndex}:${offset}`)
      digests.add(Model.sha256Hex(Model.pageOf(seq)))
      const decoded = Model.decodeRecord(Model.encodeRecord(seq))
      assert.deepStrictEqual([decoded.seq, decoded.fileIndex, decoded.offset], [seq, fileIndex, offset])
      assert.deepStrictEqual(decoded.page, Model.pageOf(seq))
    }
    assert.strictEqual(places.size, 2000)
    assert.strictEqual(digests.size, 2000)
    assert.isFalse(digests.has(Model.zeroPageSha))
  })
})
