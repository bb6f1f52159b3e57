/**
 * Goal: a page says by itself which insert wrote it and whether it is whole, and a WAL record
 * regenerates exactly that page. Method: round trips, and corruptions (a flipped byte anywhere, a
 * misplaced page, a page torn between two inserts) that must be detected.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck } from "effect"
import * as Page from "../../src/workload/Page.js"

const identity = FastCheck.record({
  insertId: FastCheck.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  file: FastCheck.integer({ min: 0, max: 1000 }),
  page: FastCheck.integer({ min: 0, max: 100_000 })
})

describe("Page", () => {
  it("round-trips a page and a record", () => {
    FastCheck.assert(
      FastCheck.property(identity, (id) => {
        const page = Page.encodePage(id)
        assert.strictEqual(page.length, Page.pageBytes)
        assert.deepStrictEqual(Page.checkPage(page, id.file, id.page), { _tag: "Valid", insertId: id.insertId })
        const record = Page.encodeRecord(id)
        assert.strictEqual(record.length, Page.recordBytes)
        assert.deepStrictEqual(Either.getOrThrow(Page.decodeRecord(record)), id)
      }),
      { numRuns: 200 }
    )
  })

  it("detects a flipped byte anywhere in the page", () => {
    FastCheck.assert(
      FastCheck.property(
        identity,
        FastCheck.integer({ min: 0, max: Page.pageBytes - 1 }),
        FastCheck.integer({ min: 1, max: 255 }),
        (id, offset, flip) => {
          const page = Page.encodePage(id)
          page[offset] = (page[offset] ?? 0) ^ flip
          assert.strictEqual(Page.checkPage(page, id.file, id.page)._tag, "Invalid")
        }
      ),
      { numRuns: 300 }
    )
  })

  it("reads zeros as never written, and refuses a misplaced or torn page", () => {
    assert.deepStrictEqual(Page.checkPage(new Uint8Array(Page.pageBytes), 0, 0), { _tag: "Zero" })
    const page = Page.encodePage({ insertId: 7, file: 1, page: 2 })
    assert.strictEqual(Page.checkPage(page, 1, 3)._tag, "Invalid")
    assert.strictEqual(Page.checkPage(page, 0, 2)._tag, "Invalid")
    const newer = Page.encodePage({ insertId: 8, file: 1, page: 2 })
    const torn = new Uint8Array(page)
    torn.set(newer.subarray(0, 4096), 0)
    const check = Page.checkPage(torn, 1, 2)
    assert.strictEqual(check._tag, "Invalid")
    assert.strictEqual(Page.checkPage(page.subarray(0, 100), 1, 2)._tag, "Invalid")
  })

  it("refuses records that are not the workload's", () => {
    assert.isTrue(Either.isLeft(Page.decodeRecord(new Uint8Array(Page.recordBytes))))
    assert.isTrue(Either.isLeft(Page.decodeRecord(new Uint8Array(3))))
    assert.throws(() => Page.encodePage({ insertId: 0, file: 0, page: 0 }))
  })
})
