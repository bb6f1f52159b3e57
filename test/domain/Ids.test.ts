/**
 * Goal: the branded ids accept what they should and reject bad input with a clear reason.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Exit, Schema } from "effect"
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

describe("decode constructors", () => {
  it("return the id, or an InvalidId naming the kind, the value and why, where the plain ones throw", () => {
    assert.strictEqual(Either.getOrThrow(Ids.decodeFileId("db/users")), "db/users")
    assert.throws(() => Ids.fileId("../etc"))
    const bad = Ids.decodeFileId("../etc")
    assert.isTrue(Either.isLeft(bad))
    if (Either.isLeft(bad)) {
      assert.strictEqual(bad.left._tag, "InvalidId")
      assert.strictEqual(bad.left.kind, "FileId")
      assert.match(bad.left.message, /^invalid FileId "\.\.\/etc": .*'\.' or '\.\.' segments/)
    }
    assert.strictEqual(Either.getOrThrow(Ids.decodePartIndex(3)), 3)
    assert.throws(() => Ids.partIndex(-1))
    const negative = Ids.decodePartIndex(-1)
    assert.strictEqual(
      Either.isLeft(negative) ? negative.left.message.startsWith("invalid PartIndex -1: ") : false,
      true
    )
    assert.isTrue(Either.isLeft(Ids.decodeLsn(1.5)))
    assert.isTrue(Either.isLeft(Ids.decodeInstanceId("no spaces")))
    assert.isTrue(Either.isLeft(Ids.decodeSha256Hex("ABC")))
    assert.isTrue(Either.isLeft(Ids.decodeCheckpointNumber("5")), "no coercion from a string")
  })

  it.effect("fail an Effect with the typed error when yielded", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.gen(function*() {
        return yield* Ids.decodeEpoch(-2)
      }))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause : undefined
      assert.match(String(error), /InvalidId/)
      const caught = yield* Ids.decodeEpoch(-2).pipe(
        Effect.catchTag("InvalidId", (invalid) => Effect.succeed(invalid.kind))
      )
      assert.strictEqual(caught, "Epoch")
    }))
})
