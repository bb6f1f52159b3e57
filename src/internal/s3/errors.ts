/**
 * The typed error of a failed S3 request, chosen by one pure function (`classifyS3Error`) from the
 * SDK error's HTTP status, code and name; `statusOf` and `hasStatus` for the store's own checks.
 *
 * Replaces: OrioleDB's src/s3/requests.c, which turned every failure into a FATAL (docs/ORIGINAL.md §7).
 */
import {
  ObjectNotFound,
  type ObjectStoreError,
  ObjectStoreRejected,
  ObjectStoreUnavailable,
  PreconditionFailed
} from "../../domain/Errors.js"

const networkCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "ECONNABORTED",
  "EADDRNOTAVAIL",
  "ERR_STREAM_PREMATURE_CLOSE",
  "UND_ERR_SOCKET"
])
const timeoutCodes = new Set([
  "ETIMEDOUT",
  "ESOCKETTIMEDOUT",
  "TimeoutError",
  "RequestTimeout",
  "RequestTimeoutException"
])
// Load shedding: 503 SlowDown (S3, RGW), 429 (R2, GCS, MinIO …), 408 RequestCanceled (Tigris).
const throttleCodes = new Set([
  "SlowDown",
  "SlowDownRead",
  "SlowDownWrite",
  "Throttling",
  "ThrottlingException",
  "TooManyRequests",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "ProvisionedThroughputExceededException",
  "RequestCanceled"
])
const serverCodes = new Set(["InternalError", "ServiceUnavailable", "OperationAborted"])
const localRejections = new Set(["CredentialsProviderError", "TypeError", "RangeError", "InvalidEndpoint"])

interface ErrorFields {
  readonly name: string | undefined
  readonly code: string | undefined
  readonly message: string | undefined
  readonly status: number | undefined
}

const stringField = (value: unknown, field: string): string | undefined => {
  if (typeof value !== "object" || value === null || !(field in value)) return undefined
  const found: unknown = (value as Record<string, unknown>)[field]
  return typeof found === "string" ? found : undefined
}

const fieldsOf = (error: unknown): ErrorFields => {
  const metadata: unknown = typeof error === "object" && error !== null && "$metadata" in error
    ? error.$metadata
    : undefined
  const status: unknown = typeof metadata === "object" && metadata !== null && "httpStatusCode" in metadata
    ? metadata.httpStatusCode
    : undefined
  return {
    name: stringField(error, "name"),
    // S3 error responses carry `Code`; Node's system errors carry `code` (ECONNREFUSED …).
    code: stringField(error, "Code") ?? stringField(error, "code"),
    message: stringField(error, "message") ?? (typeof error === "string" ? error : undefined),
    status: typeof status === "number" ? status : undefined
  }
}

/**
 * Every value of `field` (`code` or `name`) in an error, its `cause` chain and an AggregateError's
 * `errors` (bounded depth).
 */
const causeFields = (error: unknown, field: "code" | "name", depth = 0): Array<string> => {
  if (depth > 4 || typeof error !== "object" || error === null) return []
  const own = stringField(error, field)
  const cause: unknown = "cause" in error ? error.cause : undefined
  const errors: unknown = "errors" in error ? error.errors : undefined
  const nested = Array.isArray(errors) ? errors.flatMap((inner: unknown) => causeFields(inner, field, depth + 1)) : []
  return [...(own === undefined ? [] : [own]), ...causeFields(cause, field, depth + 1), ...nested]
}

const statusText = (status: number | undefined): string => {
  switch (status) {
    case 400:
      return "bad request"
    case 401:
    case 403:
      return "access denied: check the credentials and the bucket's policy"
    case 404:
      return "not found"
    default:
      return status === undefined ? "no details" : `HTTP ${status}`
  }
}

/**
 * The typed error of a failed S3 request: 404/NoSuchKey/NotFound → ObjectNotFound; NoSuchBucket,
 * 400, 401, 403 (AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch), other 4xx and local
 * configuration errors (no credentials) → ObjectStoreRejected; 412 and 409 (but OperationAborted)
 * → PreconditionFailed; load shedding (503 SlowDown, 429, 408 RequestCanceled) → Unavailable
 * "Throttled"; 5xx → Unavailable "ServerError"; timeouts (ETIMEDOUT, TimeoutError, 400
 * RequestTimeout, other 408s) → Unavailable "Timeout"; socket errors (ECONNREFUSED, ECONNRESET,
 * EPIPE, socket hang up …) and anything unrecognised → Unavailable "Network". A socket error's
 * `code` wins over its `name`: the SDK renames ECONNRESET and EPIPE errors "TimeoutError" (to
 * retry them), but a reset connection is not a timeout. Pure: `error` is only read.
 */
export const classifyS3Error = (operation: string, key: string | undefined, error: unknown): ObjectStoreError => {
  const { code, message, name, status } = fieldsOf(error)
  const label = code ?? name ?? "Error"
  const text = message === undefined || message === "" || message === "UnknownError" ? statusText(status) : message
  const detail = `${label}${status === undefined ? "" : ` (HTTP ${status})`}: ${text}`
  const codes = [label, ...causeFields(error, "code")]
  const names = [...(name === undefined ? [] : [name]), ...causeFields(error, "name")]
  const unavailable = (reason: ObjectStoreUnavailable["reason"]) =>
    new ObjectStoreUnavailable({ operation, key, reason, detail })
  const rejected = (rejectedCode: string) =>
    new ObjectStoreRejected({ operation, key, status, code: rejectedCode, detail })

  if (codes.some((candidate) => timeoutCodes.has(candidate))) return unavailable("Timeout")
  if (
    status === undefined &&
    (codes.some((candidate) => networkCodes.has(candidate)) || /socket hang up|aborted/i.test(message ?? ""))
  ) {
    return unavailable("Network")
  }
  if (names.some((candidate) => timeoutCodes.has(candidate))) return unavailable("Timeout")
  if (status === 412 || label === "PreconditionFailed" || label === "ConditionalRequestConflict") {
    return new PreconditionFailed({ operation, key: key ?? "" })
  }
  if (status === 409 && label !== "OperationAborted") return new PreconditionFailed({ operation, key: key ?? "" })
  if (label === "NoSuchBucket") return rejected("NoSuchBucket")
  if (status === 404 || label === "NoSuchKey" || label === "NotFound") {
    return new ObjectNotFound({ operation, key: key ?? "" })
  }
  if (status === 429 || throttleCodes.has(label)) return unavailable("Throttled")
  if (status === 408) return unavailable("Timeout")
  if ((status !== undefined && status >= 500) || serverCodes.has(label)) return unavailable("ServerError")
  if (status !== undefined && status >= 300) {
    return rejected(label === "Unknown" || label === "Error" ? `HTTP${status}` : label)
  }
  if (name !== undefined && localRejections.has(name)) return rejected(name)
  return unavailable("Network")
}

/** The HTTP status an SDK error carries, if any. */
export const statusOf = (error: unknown): number | undefined => fieldsOf(error).status

/** Whether `error` carries HTTP status `status`. */
export const hasStatus = (error: unknown, status: number): boolean => statusOf(error) === status
