/**
 * Goal: the branded ids accept what they should and reject bad input with a clear reason.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import * as Ids from "../../src/domain/Ids.js"

const decodeFileId = Schema.decodeUnknownEither(Ids.FileId)

describe("FileId", () => {
  it("accepts relative path-like names", () => {
    for (const name of ["users", "db/users", "a b/c+d", "é/中", "x.parts/0"]) {
      assert.isTrue(Either.isRight(decodeFileId(name)), name)
    }
  })

  it("rejects empty, absolute, dot segments, control characters and backslashes, saying why", () => {
    const cases: Array<[string, string]> = [
      ["", "empty"],
      ["/etc/passwd", "relative"],
      ["a/../b", "'..'"],
      ["..", "'..'"],
      ["./a", "'.'"],
      ["a//b", "empty segment"],
      ["a/", "empty segment"],
      ["a\u0000b", "control"],
      ["a\nb", "control"],
      ["a\\b", "backslash"],
      ["x".repeat(201), "200"]
    ]
    for (const [name, reason] of cases) {
      const result = decodeFileId(name)
      assert.isTrue(Either.isLeft(result), JSON.stringify(name))
      if (Either.isLeft(result)) assert.include(result.left.message, reason, JSON.stringify(name))
    }
  })
})

describe("numeric ids", () => {
  it("bounds part indexes, checkpoint numbers, task ids and LSNs", () => {
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(Ids.PartIndex)(-1)))
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(Ids.PartIndex)(1.5)))
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(Ids.CheckpointNumber)(-1)))
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(Ids.TaskId)(0)))
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(Ids.Lsn)(Number.MAX_SAFE_INTEGER + 2)))
    assert.isTrue(Either.isRight(Schema.decodeUnknownEither(Ids.InstanceId)("node-1_a")))
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(Ids.InstanceId)("no spaces")))
  })
})
