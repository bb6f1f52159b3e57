/**
 * Goal: the CLI's durations and sizes parse as documented, and bad ones give one clear message.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as Units from "../../src/domain/Units.js"

describe("Units", () => {
  it("parses durations", () => {
    const cases: Array<[string, number]> = [["500ms", 500], ["8s", 8_000], ["2m", 120_000], ["1000s", 1_000_000], [
      "1h",
      3_600_000
    ], ["1.5s", 1_500]]
    for (const [text, expected] of cases) {
      assert.strictEqual(Either.getOrThrow(Units.parseDurationMs(text)), expected, text)
    }
  })

  it("parses durations that may be zero (retention, minimum age), refusing the rest with one message", () => {
    const cases: Array<[string, number]> = [["0", 0], ["0s", 0], ["0h", 0], ["90s", 90_000], ["10m", 600_000], [
      "24h",
      86_400_000
    ]]
    for (const [text, expected] of cases) {
      assert.strictEqual(Either.getOrThrow(Units.parseDurationOrZeroMs(text)), expected, text)
    }
    for (const text of ["-5s", "0parsecs", "10parsecs", "", "250"]) {
      const result = Units.parseDurationOrZeroMs(text)
      assert.isTrue(Either.isLeft(result), text)
      if (Either.isLeft(result)) assert.include(result.left, "0 or a positive number", text)
    }
  })

  it("parses sizes", () => {
    const cases: Array<[string, number]> = [
      ["64MiB", 64 * 1024 ** 2],
      ["1GiB", 1024 ** 3],
      ["512KiB", 512 * 1024],
      ["10MB", 10_000_000],
      ["4096", 4096],
      ["1mib", 1024 ** 2]
    ]
    for (const [text, expected] of cases) {
      assert.strictEqual(Either.getOrThrow(Units.parseSizeBytes(text)), expected, text)
    }
  })

  it("refuses zero, negative and unknown units with a message", () => {
    for (const text of ["0s", "-1s", "0", "250", "5 parsecs", "", "1e3s", "ten"]) {
      const result = Units.parseDurationMs(text)
      assert.isTrue(Either.isLeft(result), text)
    }
    for (const text of ["0", "-5MiB", "1PiB", "", "lots"]) {
      assert.isTrue(Either.isLeft(Units.parseSizeBytes(text)), text)
    }
    const message = Units.parseDurationMs("5 parsecs")
    if (Either.isLeft(message)) assert.include(message.left, "ms, s, m or h")
  })

  it("formats for humans", () => {
    assert.strictEqual(Units.formatDurationMs(1_500), "1.5s")
    assert.strictEqual(Units.formatSizeBytes(1024 ** 2), "1.0MiB")
  })
})
