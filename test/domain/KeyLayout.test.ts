/**
 * Goal: every key the tier writes parses back to what built it (key → parts → key), with and
 * without a prefix, and nothing foreign parses as ours. Method: property tests over generated ids,
 * plus hand-picked boundaries.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck, Option, Schema } from "effect"
import * as Ids from "../../src/domain/Ids.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"

const segment = FastCheck.stringMatching(/^[A-Za-z0-9 _+é\u4e2d.-]{1,12}$/).filter((s) => s !== "." && s !== "..")
const fileIdArb = FastCheck.array(segment, { minLength: 1, maxLength: 4 }).map((segments) => segments.join("/"))
  .filter((s) => Either.isRight(Schema.decodeUnknownEither(Ids.FileId)(s)))
  .map((s) => Ids.fileId(s))
const checkpointArb = FastCheck.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }).map(Ids.checkpointNumber)
const partArb = FastCheck.integer({ min: 0, max: 2 ** 31 - 1 }).map(Ids.partIndex)
const shaArb = FastCheck.stringMatching(/^[0-9a-f]{64}$/).map((s) => Ids.Sha256Hex.make(s))
const segmentArb = FastCheck.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }).map(Ids.segmentNumber)
const epochArb = FastCheck.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }).map(Ids.epoch)
const prefixArb = FastCheck.constantFrom("", "tier", "a/b/c", "tenants/é 1")

const keyArb: FastCheck.Arbitrary<KeyLayout.BucketKey> = FastCheck.oneof(
  FastCheck.record({ checkpoint: checkpointArb, file: fileIdArb, part: partArb, sha256: shaArb }).map((k) => ({
    _tag: "Part" as const,
    ...k
  })),
  FastCheck.record({ checkpoint: checkpointArb, file: fileIdArb, sha256: shaArb }).map((k) => ({
    _tag: "FileManifest" as const,
    ...k
  })),
  checkpointArb.map((checkpoint) => ({ _tag: "Checkpoint" as const, checkpoint })),
  segmentArb.map((segment) => ({ _tag: "Wal" as const, segment })),
  FastCheck.record({ segment: segmentArb, epoch: epochArb }).map((k) => ({ _tag: "Wal" as const, ...k })),
  FastCheck.constant({ _tag: "Lock" as const }),
  FastCheck.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/).map((id) => ({ _tag: "Lease" as const, id }))
)

describe("KeyLayout", () => {
  it("round-trips every kind of key, with and without a prefix", () => {
    FastCheck.assert(
      FastCheck.property(prefixArb, keyArb, (prefix, key) => {
        const layout = KeyLayout.make(prefix)
        const text = KeyLayout.keyOf(layout, key)
        const parsed = KeyLayout.parseKey(layout, text)
        assert.deepStrictEqual(Option.getOrUndefined(parsed), key)
        assert.strictEqual(KeyLayout.keyOf(layout, Option.getOrThrow(parsed)), text)
      }),
      { numRuns: 500 }
    )
  })

  it("orders checkpoint keys numerically when listed", () => {
    const layout = KeyLayout.make("p")
    const keys = [9, 10, 100, 2].map((n) => KeyLayout.checkpointKey(layout, Ids.checkpointNumber(n)))
    assert.deepStrictEqual(
      [...keys].sort(),
      [2, 9, 10, 100].map((n) => KeyLayout.checkpointKey(layout, Ids.checkpointNumber(n)))
    )
  })

  it("builds the documented shapes", () => {
    const layout = KeyLayout.make("tier")
    const sha = Ids.Sha256Hex.make("a".repeat(64))
    assert.strictEqual(
      KeyLayout.partKey(layout, Ids.checkpointNumber(5), Ids.fileId("db/users"), Ids.partIndex(3), sha),
      `tier/data/0000000000000005/db/users/0000000003-${"a".repeat(64)}`
    )
    assert.strictEqual(KeyLayout.walKey(layout, Ids.segmentNumber(255)), "tier/wal/00000000000000FF")
    assert.strictEqual(
      KeyLayout.walKey(layout, Ids.segmentNumber(255), Ids.epoch(7)),
      "tier/wal/00000000000000FF-0000000000000007"
    )
    assert.strictEqual(KeyLayout.lockKey(KeyLayout.make("")), "lock")
    assert.strictEqual(
      KeyLayout.checkpointKey(KeyLayout.make(""), Ids.checkpointNumber(1)),
      "checkpoints/0000000000000001"
    )
  })

  it("does not parse foreign keys or keys of another prefix", () => {
    const layout = KeyLayout.make("tier")
    for (
      const key of [
        "lock",
        "other/lock",
        "tier/checkpoints/12",
        "tier/wal/zz",
        "tier/data/0000000000000001/f",
        "tier/random",
        "tier/wal/00000000000000ff",
        "tier/wal/00000000000000FF-7",
        "tier/wal/00000000000000FF_0000000000000007"
      ]
    ) {
      assert.isTrue(Option.isNone(KeyLayout.parseKey(layout, key)), key)
    }
  })

  it("rejects bad prefixes with a reason", () => {
    for (const prefix of ["/a", "a/", "a//b", "a/../b", "a/./b", "a\\b", "a\u0001"]) {
      assert.isTrue(Either.isLeft(KeyLayout.validatePrefix(prefix)), prefix)
    }
    assert.isTrue(Either.isRight(KeyLayout.validatePrefix("a/b")))
  })
})
