/**
 * Parsing of the CLI's durations (`500ms`, `8s`, `2m`, `1000s`, `1h`) and sizes (`64MiB`, `1GiB`,
 * `512KiB`, `10MB`, plain bytes), with one clear message for anything else. Pure.
 *
 * Hand-written: Effect's `Duration.decode` reads only `"8 seconds"` (no `8s`, no message on a
 * typo), `Duration.format` prints `1s 500ms` for the CLI's `1.5s`, and Effect has no size parser.
 *
 * @since 0.1.0
 */
import { Either } from "effect"

const durationUnitsMs: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }
const sizeUnitsBytes: Record<string, number> = {
  "": 1,
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  tb: 1000 ** 4
}

const pattern = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$/

/** A positive duration in milliseconds: `500ms`, `8s`, `2m`, `1h`, `1.5s`. Zero and negatives are refused. */
export const parseDurationMs = (text: string): Either.Either<number, string> => {
  const match = pattern.exec(text)
  const unit = match?.[2]?.toLowerCase() ?? ""
  const factor = durationUnitsMs[unit]
  if (match === null || match[1] === undefined || factor === undefined) {
    return Either.left(
      `${JSON.stringify(text)} is not a duration: write a positive number with ms, s, m or h (e.g. 500ms, 8s, 2m)`
    )
  }
  const value = Math.round(Number(match[1]) * factor)
  if (!Number.isSafeInteger(value) || value <= 0) {
    return Either.left(`${JSON.stringify(text)} is not a positive duration`)
  }
  return Either.right(value)
}

/** A duration in milliseconds that may be zero (`0` turns something off): `0`, `90s`, `10m`, `24h`. */
export const parseDurationOrZeroMs = (text: string): Either.Either<number, string> => {
  const match = pattern.exec(text)
  const unit = match?.[2]?.toLowerCase() ?? ""
  if (match !== null && Number(match[1]) === 0 && (unit === "" || durationUnitsMs[unit] !== undefined)) {
    return Either.right(0)
  }
  return Either.mapLeft(
    parseDurationMs(text),
    (problem) => problem.replace("write a positive number", "write 0 or a positive number")
  )
}

/** A positive size in bytes: `64MiB`, `1GiB`, `512KiB`, `10MB`, `4096`. Zero and negatives are refused. */
export const parseSizeBytes = (text: string): Either.Either<number, string> => {
  const match = pattern.exec(text)
  const unit = match?.[2]?.toLowerCase() ?? ""
  const factor = sizeUnitsBytes[unit]
  if (match === null || match[1] === undefined || factor === undefined) {
    return Either.left(
      `${JSON.stringify(text)} is not a size: write a positive number of bytes, or with KiB, MiB, GiB (or KB, MB, GB)`
    )
  }
  const value = Math.round(Number(match[1]) * factor)
  if (!Number.isSafeInteger(value) || value <= 0) return Either.left(`${JSON.stringify(text)} is not a positive size`)
  return Either.right(value)
}

/** Formats a duration for humans: 1500 → "1.5s". */
export const formatDurationMs = (ms: number): string =>
  ms < 1_000
    ? `${Math.round(ms)}ms`
    : ms < 60_000
    ? `${(ms / 1_000).toFixed(ms % 1_000 === 0 ? 0 : 1)}s`
    : `${(ms / 60_000).toFixed(1)}m`

/** Formats a size for humans: 1048576 → "1.0MiB". */
export const formatSizeBytes = (bytes: number): string => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]
  let value = bytes
  let index = 0
  while (value >= 1024 && index < units.length - 1) {
    value /= 1024
    index++
  }
  return index === 0 ? `${bytes}B` : `${value.toFixed(1)}${units[index]}`
}
