/**
 * Goal: bucket names are accepted and refused as S3 (and Ceph RGW) do, each refusal naming the rule
 * it breaks; each create-if-absent dialect sends its store's headers.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as S3Compat from "../../src/domain/S3Compat.js"

describe("S3Compat.validateBucketName", () => {
  it("accepts names S3 accepts", () => {
    for (
      const name of [
        "abc",
        "a".repeat(63),
        "my-bucket",
        "my.bucket.name",
        "1bucket",
        "bucket9",
        "effect-s3-tier-test",
        "a-b.c-d"
      ]
    ) {
      assert.isTrue(Either.isRight(S3Compat.validateBucketName(name)), name)
    }
  })

  it("refuses names S3 refuses, naming the rule", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["b1", "2 characters; a bucket name has 3 to 63"],
      ["", "0 characters"],
      ["a".repeat(64), "64 characters"],
      ["Bucket", "contains \"B\""],
      ["my_bucket", "contains \"_\""],
      ["my bucket", "contains \" \""],
      ["-bucket", "start and end with a lowercase letter or a digit"],
      ["bucket-", "start and end with a lowercase letter or a digit"],
      [".bucket", "start and end"],
      ["my..bucket", "two adjacent periods"],
      ["192.168.5.4", "formatted as an IP address"],
      ["xn--bucket", "reserved prefix \"xn--\""],
      ["sthree-bucket", "reserved prefix \"sthree-\""],
      ["bucket-s3alias", "reserved suffix \"-s3alias\""],
      ["bucket--ol-s3", "reserved suffix \"--ol-s3\""]
    ]
    for (const [name, rule] of cases) {
      const result = S3Compat.validateBucketName(name)
      assert.isTrue(Either.isLeft(result), name)
      if (Either.isLeft(result)) {
        assert.include(result.left, `${JSON.stringify(name)} is not a valid S3 bucket name`)
        assert.include(result.left, rule, name)
      }
    }
  })
})

describe("S3Compat.conditionalCreateHeaders", () => {
  it("sends each store's create-if-absent headers", () => {
    assert.deepStrictEqual(S3Compat.conditionalCreateHeaders("if-none-match"), { "if-none-match": "*" })
    assert.deepStrictEqual(S3Compat.conditionalCreateHeaders("gcs-generation-match"), {
      "x-goog-if-generation-match": "0"
    })
    assert.deepStrictEqual(S3Compat.conditionalCreateHeaders("tigris-consistent"), {
      "if-none-match": "*",
      "x-tigris-consistent": "true"
    })
  })
})
