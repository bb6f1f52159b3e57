/**
 * Where S3-compatible stores differ, as pure data:
 * - bucket names, checked as S3 checks them (the rules of AWS general purpose buckets, which Ceph
 *   RGW, MinIO and R2 follow too), so that a name a real store refuses is refused here, with the
 *   rule it breaks, before any request: a lenient test server (s3rver accepts `b1`) must not hide it;
 * - the dialects of create-if-absent (a conditional PUT) and the headers each one sends.
 *
 * Replaces: nothing in OrioleDB, which passes the bucket name to libcurl unchecked and has no
 * conditional writes.
 *
 * @since 0.1.0
 */
import { Either } from "effect"

const reservedPrefixes = ["xn--", "sthree-", "amzn-s3-demo-"]
const reservedSuffixes = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]

/** Why `name` is not a valid S3 bucket name, or undefined when it is. */
const invalidReason = (name: string): string | undefined => {
  if (name.length < 3 || name.length > 63) return `it has ${name.length} characters; a bucket name has 3 to 63`
  const bad = /[^a-z0-9.-]/.exec(name)
  if (bad !== null) {
    return `it contains ${JSON.stringify(bad[0])}; only lowercase letters, digits, '.' and '-' are allowed`
  }
  if (!/^[a-z0-9]/.test(name) || !/[a-z0-9]$/.test(name)) {
    return "it must start and end with a lowercase letter or a digit"
  }
  if (name.includes("..")) return "it contains two adjacent periods"
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(name)) return "it is formatted as an IP address"
  const prefix = reservedPrefixes.find((reserved) => name.startsWith(reserved))
  if (prefix !== undefined) return `it starts with the reserved prefix ${JSON.stringify(prefix)}`
  const suffix = reservedSuffixes.find((reserved) => name.endsWith(reserved))
  if (suffix !== undefined) return `it ends with the reserved suffix ${JSON.stringify(suffix)}`
  return undefined
}

/** The name when S3 accepts it; otherwise one sentence naming the name and the rule it breaks. */
export const validateBucketName = (name: string): Either.Either<string, string> => {
  const reason = invalidReason(name)
  return reason === undefined
    ? Either.right(name)
    : Either.left(`${JSON.stringify(name)} is not a valid S3 bucket name: ${reason}`)
}

/**
 * How a store is asked for create-if-absent on a PUT:
 * - "if-none-match": `If-None-Match: *` (AWS S3, Cloudflare R2, MinIO, Ceph RGW);
 * - "gcs-generation-match": `x-goog-if-generation-match: 0` (Google Cloud Storage's XML API, which
 *   ignores `If-None-Match` on a PUT);
 * - "tigris-consistent": `If-None-Match: *` plus `X-Tigris-Consistent: true`, so that Tigris
 *   decides the condition on its leader.
 */
export type ConditionalCreateDialect = "if-none-match" | "gcs-generation-match" | "tigris-consistent"

/** Every ConditionalCreateDialect, for option parsing and messages. */
export const conditionalCreateDialects = [
  "if-none-match",
  "gcs-generation-match",
  "tigris-consistent"
] as const satisfies ReadonlyArray<ConditionalCreateDialect>

/** The headers a conditional create sends in a dialect. */
export const conditionalCreateHeaders = (dialect: ConditionalCreateDialect): Readonly<Record<string, string>> => {
  switch (dialect) {
    case "if-none-match":
      return { "if-none-match": "*" }
    case "gcs-generation-match":
      return { "x-goog-if-generation-match": "0" }
    case "tigris-consistent":
      return { "if-none-match": "*", "x-tigris-consistent": "true" }
  }
}
