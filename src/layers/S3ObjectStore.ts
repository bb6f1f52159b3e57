/**
 * S3ObjectStore: the bucket on S3 or an S3-compatible server, through @aws-sdk/client-s3.
 *
 * The client is made when the layer is built and destroyed when its scope closes (closing its
 * sockets). Every request (src/internal/s3/request.ts):
 * - runs on the calling fiber under an AbortController of its own, which an interruption of the
 *   fiber aborts, so interrupting an operation aborts its HTTP request and closes its socket;
 * - is bounded by `requestTimeoutMs` (a timeout of the whole operation, body included; for `list`,
 *   of each page's request): the store's one deadline sweeper (src/internal/s3/deadlines.ts)
 *   aborts the controller then, and the request fails at once with `ObjectStoreUnavailable`
 *   reason "Timeout" (the SDK has no timeout of its own);
 * - is tried once: SDK retries are off (`maxAttempts: 1`); the workers retry transient failures;
 * - fails with a typed error chosen by one pure function, `classifyS3Error`
 *   (src/internal/s3/errors.ts).
 * A GetObject and the read of its body are one request under one AbortSignal, and the body stream
 * is destroyed when the signal aborts or the read fails, so it is consumed or destroyed on every
 * exit path.
 * Checksums are sent and checked only when required (`WHEN_REQUIRED`), so uploads go as plain
 * bodies, never `aws-chunked`, which S3-compatible servers may store with the framing.
 *
 * Conditional put (create-if-absent) is sent in the store's dialect (`conditionalCreate`): S3's
 * `If-None-Match: *` (AWS, R2, MinIO, Ceph RGW), GCS's `x-goog-if-generation-match: 0`, or
 * `If-None-Match: *` with Tigris's `X-Tigris-Consistent: true`; 412 and 409
 * ConditionalRequestConflict (a concurrent conditional write) are `PreconditionFailed`. `getRange`
 * past the end returns the bytes there are (416 = none). `delete` of a missing key succeeds.
 * `list` pages ListObjectsV2 by continuation token, 1000 keys a request. `probe` = the bucket name
 * is valid, HeadBucket, then (unless `checkConditionalCreate` is false) the conformance check:
 * two racing conditional creates of a scratch key under `scratchPrefix` must have exactly one
 * winner, else the store is refused (`ObjectStoreRejected` "ConditionalCreateIgnored"): the bucket
 * lock and the checkpoint commit rely on create-if-absent. Storage runs `probe` first on open.
 * Every request is counted in `s3_requests` by `request` (PutObject, GetObject, …), `outcome` and
 * `instance` (docs/METRICS.md).
 *
 * The client keeps the app's own S3 client settings (`S3ServiceConfig.setS3ServiceConfig`: request
 * handler, retry, logger …); the store's options (region, endpoint, path style, credentials) win.
 * `layerConfig` reads the options from the ambient ConfigProvider (`S3_TIER_S3_*` keys).
 *
 * Replaces: OrioleDB's src/s3/requests.c (libcurl, no timeouts, no cancellation, FATAL on any
 * error: docs/ORIGINAL.md §2, §7).
 *
 * @since 0.1.0
 */
/* eslint-disable max-lines -- the client's settings, the conformance check and the options read from config beside the store; the error classification and the request are in src/internal/s3/ */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig
} from "@aws-sdk/client-s3"
import { S3ServiceConfig } from "@effect-aws/client-s3"
import {
  Chunk,
  Config,
  Duration,
  Effect,
  Either,
  Fiber,
  Layer,
  Metric,
  MetricLabel,
  Option,
  Random,
  Redacted,
  type Scope,
  Stream
} from "effect"
import {
  InvalidConfig,
  ObjectNotFound,
  type ObjectStoreError,
  ObjectStoreRejected,
  ObjectStoreUnavailable,
  PreconditionFailed
} from "../domain/Errors.js"
import {
  type ConditionalCreateDialect,
  conditionalCreateDialects,
  conditionalCreateHeaders,
  validateBucketName
} from "../domain/S3Compat.js"
import * as Deadlines from "../internal/s3/deadlines.js"
import { classifyS3Error, hasStatus, statusOf } from "../internal/s3/errors.js"
import { deadlinePassed, readBody, type Send, sendWith } from "../internal/s3/request.js"
import { MetricsInstance } from "../services/MetricsInstance.js"
import { type ObjectInfo, ObjectStore, type ObjectStoreService, type PutOptions } from "../services/ObjectStore.js"
import * as StorageConfig from "../services/StorageConfig.js"
import { type RequestOutcome, requestOutcome } from "./CountingObjectStore.js"

// The type the store's options name, so that an application can name it too.
export type { ConditionalCreateDialect } from "../domain/S3Compat.js"
export { classifyS3Error } from "../internal/s3/errors.js"

/** Options of the S3 store. */
export interface S3ObjectStoreOptions {
  readonly bucket: string
  /** An S3-compatible endpoint (`http://127.0.0.1:9000`); omitted = AWS S3 of `region`. */
  readonly endpoint?: string
  readonly region: string
  /** Path-style URLs (`endpoint/bucket/key`), needed for servers on an IP address. */
  readonly forcePathStyle: boolean
  /**
   * Explicit credentials (the secret preferably `Redacted`, so it never shows in a log or an
   * error); omitted = the app's S3 client credentials, else the AWS default chain (environment,
   * profile, instance role).
   */
  readonly credentials?: {
    readonly accessKeyId: string
    readonly secretAccessKey: string | Redacted.Redacted<string>
    readonly sessionToken?: string | Redacted.Redacted<string>
  }
  /**
   * Bound of every operation, from its start to its last byte. `layer` and `layerConfig` take
   * StorageConfig's `requestTimeoutMs` when it is not given here.
   */
  readonly requestTimeoutMs: number
  /** How create-if-absent is asked for (default "if-none-match"); see S3Compat's `ConditionalCreateDialect`. */
  readonly conditionalCreate?: ConditionalCreateDialect
  /**
   * Whether `probe` checks that the store honours create-if-absent (default true). Skip it only
   * for a store known to honour it: without it, the bucket lock and the checkpoint commit are unsafe.
   */
  readonly checkConditionalCreate?: boolean
  /** The key prefix under which the conformance check writes (and deletes) its scratch key. */
  readonly scratchPrefix?: string
}

/** Keys per ListObjectsV2 request (S3's maximum). */
export const listPageKeysMax = 1000

// ---------------------------------------------------------------------------------------------
// A known payload hash
// ---------------------------------------------------------------------------------------------

/** The header SigV4 signs as the payload's hash; when it is present the signer does not hash the body. */
export const contentSha256Header = "x-amz-content-sha256"

const hasHeaders = (value: unknown): value is { headers: Record<string, string> } =>
  typeof value === "object" && value !== null && "headers" in value && typeof value.headers === "object" &&
  value.headers !== null

/**
 * Adds a build-step middleware that sets `headers` on the request: it runs before signing
 * (finalizeRequest), so the headers are signed like the SDK's own.
 *
 * @category internals
 */
export const withHeaders = (command: PutObjectCommand, name: string, headers: Readonly<Record<string, string>>): void =>
  command.middlewareStack.add(
    (next) => (args) => {
      if (hasHeaders(args.request)) Object.assign(args.request.headers, headers)
      return next(args)
    },
    { step: "build", name }
  )

/**
 * Sets `x-amz-content-sha256` to a hash the caller computed already: the signer reads the header
 * instead of hashing the body again, and S3 checks the body against it.
 *
 * @category internals
 */
export const withContentSha256 = (command: PutObjectCommand, sha256Hex: string): void =>
  withHeaders(command, "effectS3TierContentSha256", { [contentSha256Header]: sha256Hex })

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/** The S3 request an operation sends. */
export type S3RequestType = "PutObject" | "GetObject" | "HeadObject" | "DeleteObject" | "ListObjectsV2" | "HeadBucket"

/** How a request ended: "Success", "Interrupted", "Defect", or the failure's kind. */
export type S3RequestOutcome = RequestOutcome

/** Requests sent, tagged `request` (S3RequestType), `outcome` (S3RequestOutcome) and `instance`. */
export const requests = Metric.counter("s3_requests", {
  description: "S3 requests sent, by request type and outcome",
  incremental: true
})

/** The tagged counter of one request type and outcome, for `instance`. */
export const requestsOf = (
  request: S3RequestType,
  outcome: S3RequestOutcome,
  instance = "default"
): Metric.Metric.Counter<number> =>
  requests.pipe(
    Metric.tagged("instance", instance),
    Metric.tagged("request", request),
    Metric.tagged("outcome", outcome)
  )

/** The labels of one request type and outcome under one instance, built once (one entry per
 * instance, request type and outcome): tagging the counter anew for each request cost 5 µs (a
 * new metric key, hashed, per call). */
const requestLabels = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
const labelsOf = (
  request: S3RequestType,
  outcome: S3RequestOutcome,
  instance: string
): ReadonlyArray<MetricLabel.MetricLabel> => {
  const key = `${instance}\u0000${request}\u0000${outcome}`
  let labels = requestLabels.get(key)
  if (labels === undefined) {
    labels = [
      MetricLabel.make("instance", instance),
      MetricLabel.make("request", request),
      MetricLabel.make("outcome", outcome)
    ]
    requestLabels.set(key, labels)
  }
  return labels
}

/** Counts `effect` once in `s3_requests` when it ends, under the MetricsInstance of the fiber. */
const counted = <A>(
  request: S3RequestType,
  effect: Effect.Effect<A, ObjectStoreError>
): Effect.Effect<A, ObjectStoreError> =>
  Effect.onExit(
    effect,
    (exit) =>
      Effect.flatMap(
        MetricsInstance,
        (instance) => Effect.sync(() => requests.unsafeUpdate(1, labelsOf(request, requestOutcome(exit), instance)))
      )
  )

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

const revealed = (
  secret: string | Redacted.Redacted<string>
): string => (Redacted.isRedacted(secret) ? Redacted.value(secret) : secret)

/**
 * The client's settings: the app's own (set with @effect-aws's `S3ServiceConfig.setS3ServiceConfig`
 * or `withS3ServiceConfig`: request handler and agent, retry, logger, user agent, …) over the
 * store's defaults (one attempt, checksums only when required), then the store's options
 * (region, endpoint, path style, credentials when given), which win.
 */
const clientConfig = (options: S3ObjectStoreOptions): Effect.Effect<S3ClientConfig> =>
  Effect.map(S3ServiceConfig.toS3ClientConfig, (app) => {
    const appSettings = Object.fromEntries(Object.entries(app).filter(([, value]) => value !== undefined))
    const credentials = options.credentials
    return {
      maxAttempts: 1,
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      ...appSettings,
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      ...(credentials === undefined ? {} : {
        credentials: {
          accessKeyId: credentials.accessKeyId,
          secretAccessKey: revealed(credentials.secretAccessKey),
          ...(credentials.sessionToken === undefined ? {} : { sessionToken: revealed(credentials.sessionToken) })
        }
      })
    }
  })

/**
 * The store over a client made for `options` and the app's S3 client settings (see
 * `clientConfig`); the client is destroyed when the scope closes.
 */
export const make = (options: S3ObjectStoreOptions): Effect.Effect<ObjectStoreService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* clientConfig(options)
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => new S3Client(config)),
      (made) => Effect.sync(() => made.destroy())
    )
    return makeWithClient(client, options)
  })

/** The scratch key of one conformance check: under `scratchPrefix`, named by a random token. */
const scratchKey = (scratchPrefix: string): Effect.Effect<string> =>
  Effect.map(Effect.all(Array.from({ length: 4 }, () => Random.nextIntBetween(0, 0x10000))), (words) => {
    const token = words.map((word) => word.toString(16).padStart(4, "0")).join("")
    const base = scratchPrefix === "" || scratchPrefix.endsWith("/") ? scratchPrefix : `${scratchPrefix}/`
    return `${base}conformance/conditional-create-${token}`
  })

/**
 * The conformance check of create-if-absent: two racing conditional puts of a fresh scratch key,
 * then its delete (also when a put failed). Exactly one must win and the other fail with
 * PreconditionFailed. Both winning (the store ignores the condition) or both losing (it refuses a
 * key that does not exist) is `ObjectStoreRejected` "ConditionalCreateIgnored"; any other failure
 * of a put is returned as it is (a transient one is retried by the caller's policy).
 *
 * @category internals
 */
export const checkConditionalCreate = (
  store: Pick<ObjectStoreService, "put" | "delete">,
  options: { readonly scratchPrefix: string; readonly dialect: ConditionalCreateDialect; readonly where: string }
): Effect.Effect<void, ObjectStoreError> =>
  Effect.gen(function*() {
    const key = yield* scratchKey(options.scratchPrefix)
    const attempt = (writer: string) =>
      Effect.either(store.put(key, new TextEncoder().encode(writer), { ifNoneMatch: true }))
    const results = yield* Effect.all([attempt("first"), attempt("second")], { concurrency: 2 }).pipe(
      Effect.ensuring(Effect.ignore(store.delete(key)))
    )
    const other = results.find((result) => Either.isLeft(result) && result.left._tag !== "PreconditionFailed")
    if (other !== undefined && Either.isLeft(other)) return yield* Effect.fail(other.left)
    const winners = results.filter(Either.isRight).length
    if (winners === 1) return
    return yield* new ObjectStoreRejected({
      operation: "probe",
      key,
      code: "ConditionalCreateIgnored",
      detail:
        `${options.where} does not honour create-if-absent (dialect ${options.dialect}): ${
          winners === 2 ? "both" : "neither"
        } of two concurrent ` +
        "conditional PUTs of a new key succeeded; the bucket lock and the checkpoint commit rely on exactly one. " +
        "Choose the store's dialect (conditionalCreate / --conditional-create) or a store that honours it"
    })
  })

/** `probe`: the bucket name is valid, HeadBucket answers, and (unless skipped) the conformance check. */
const probeWith = (
  options: S3ObjectStoreOptions,
  where: string,
  headBucket: Effect.Effect<unknown, unknown>,
  store: Pick<ObjectStoreService, "put" | "delete">
): Effect.Effect<void, ObjectStoreError> =>
  Effect.gen(function*() {
    const { bucket } = options
    const valid = validateBucketName(bucket)
    if (Either.isLeft(valid)) {
      return yield* new ObjectStoreRejected({ operation: "probe", code: "InvalidBucketName", detail: valid.left })
    }
    yield* Effect.timeoutFail(headBucket, {
      duration: Duration.millis(options.requestTimeoutMs),
      onTimeout: () =>
        new ObjectStoreUnavailable({
          operation: "probe",
          reason: "Timeout",
          detail: `no answer from ${where} within ${options.requestTimeoutMs} ms`
        })
    }).pipe(
      Effect.mapError((error): ObjectStoreError => {
        if (error instanceof ObjectStoreUnavailable) {
          return error
        }
        const status = statusOf(error)
        if (status === 404) {
          return new ObjectStoreRejected({
            operation: "probe",
            status,
            code: "NoSuchBucket",
            detail: `bucket ${
              JSON.stringify(bucket)
            } does not exist at ${where}; create it first or check the bucket name`
          })
        }
        if (status === 401 || status === 403) {
          return new ObjectStoreRejected({
            operation: "probe",
            status,
            code: "AccessDenied",
            detail: `access to bucket ${
              JSON.stringify(bucket)
            } at ${where} was refused: check the credentials and the bucket's policy`
          })
        }
        if (status === 301) {
          return new ObjectStoreRejected({
            operation: "probe",
            status,
            code: "WrongRegion",
            detail: `bucket ${JSON.stringify(bucket)} is not in region ${options.region}`
          })
        }
        return classifyS3Error("probe", undefined, error)
      }),
      (effect) => counted("HeadBucket", effect)
    )
    if (options.checkConditionalCreate === false) return
    yield* checkConditionalCreate(store, {
      scratchPrefix: options.scratchPrefix ?? "",
      dialect: options.conditionalCreate ?? "if-none-match",
      where
    })
  })

/** The store over a given client (its lifetime is the caller's). @category constructors */
// eslint-disable-next-line max-lines-per-function -- a service's constructor: its operations are small functions sharing one closure, each under a screen
export const makeWithClient = (client: S3Client, options: S3ObjectStoreOptions): ObjectStoreService => {
  const { bucket, requestTimeoutMs } = options
  const where = options.endpoint ?? `AWS S3 (${options.region})`
  const createHeaders = conditionalCreateHeaders(options.conditionalCreate ?? "if-none-match")

  const deadlines = Deadlines.make(requestTimeoutMs)

  /**
   * One request: typed failure, bounded, counted. `build` makes its SDK calls with the `send` it is
   * given, bound to the request's deadline, `requestTimeoutMs` away: the store's deadline sweeper
   * (src/internal/s3/deadlines.ts) aborts the calls then, and they fail at once. The request itself
   * runs on the calling fiber (racing it against a timer in fibers of their own, as Effect.timeout
   * does, made a 1 MiB GET cost 1.3x the time: its bytes outlived the race).
   */
  const classified = <A>(
    request: S3RequestType,
    operation: string,
    key: string | undefined,
    build: (send: Send) => Effect.Effect<A, unknown>
  ): Effect.Effect<A, ObjectStoreError> =>
    counted(
      request,
      deadlines.within((deadline) =>
        Effect.mapError(build(sendWith(deadline)), (error) =>
          error === deadlinePassed
            ? new ObjectStoreUnavailable({
              operation,
              key,
              reason: "Timeout",
              detail: `no answer from ${where} within ${requestTimeoutMs} ms`
            })
            : classifyS3Error(operation, key, error))
      )
    )

  /** GetObject and its body, read in one request whose AbortSignal covers the body too: the
   * stream is consumed, or destroyed on every other exit (a failed read, an interruption). */
  const getObject = (
    send: Send,
    key: string,
    range: string | undefined,
    into?: Uint8Array
  ): Effect.Effect<{ readonly output: GetObjectCommandOutput; readonly bytes: Uint8Array }, unknown> =>
    send(async (signal) => {
      const output = await client.send(
        new GetObjectCommand({ Bucket: bucket, Key: key, ...(range === undefined ? {} : { Range: range }) }),
        { abortSignal: signal }
      )
      const body = output.Body
      if (body === undefined) return { output, bytes: new Uint8Array(0) }
      // A body announced longer than `into` is read as fresh bytes from the start.
      const fits = into !== undefined && (output.ContentLength ?? 0) <= into.length
      return { output, bytes: await readBody(body, signal, fits ? into : undefined) }
    })

  const put = (key: string, bytes: Uint8Array, putOptions?: PutOptions): Effect.Effect<void, ObjectStoreError> =>
    classified("PutObject", "put", key, (send) =>
      send((signal) => {
        const command = new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes, ContentLength: bytes.length })
        if (putOptions?.ifNoneMatch === true) withHeaders(command, "effectS3TierConditionalCreate", createHeaders)
        const sha256Hex = putOptions?.sha256Hex
        if (sha256Hex !== undefined) withContentSha256(command, sha256Hex)
        return client.send(command, { abortSignal: signal })
      }))

  const head = (key: string): Effect.Effect<ObjectInfo, ObjectStoreError> =>
    classified("HeadObject", "head", key, (send) =>
      Effect.map(
        send((signal) => client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal })),
        (output) => ({
          key,
          sizeBytes: output.ContentLength ?? 0,
          lastModifiedMs: output.LastModified?.getTime() ?? Number.MAX_SAFE_INTEGER
        })
      ))

  const getRange = (key: string, offset: number, length: number): Effect.Effect<Uint8Array, ObjectStoreError> => {
    if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0)) {
      return Effect.dieMessage(`getRange: offset ${offset} and length ${length} must be non-negative integers`)
    }
    // An empty range cannot be written as an HTTP Range (S3 would send the whole object).
    if (length === 0) {
      return Effect.as(
        Effect.mapError(
          head(key),
          (error) => error._tag === "ObjectNotFound" ? new ObjectNotFound({ operation: "getRange", key }) : error
        ),
        new Uint8Array(0)
      )
    }
    const read = (send: Send) =>
      getObject(send, key, `bytes=${offset}-${offset + length - 1}`).pipe(
        // Without Content-Range the server ignored the Range and sent the whole object.
        Effect.map(({ bytes, output }) =>
          output.ContentRange === undefined ? bytes.slice(offset, offset + length) : bytes
        ),
        // 416: the object exists and the range starts at or past its end.
        Effect.catchIf((error) => hasStatus(error, 416), () => Effect.succeed(new Uint8Array(0)))
      )
    return classified("GetObject", "getRange", key, read)
  }

  const listPage = (prefix: string, token: string | undefined) =>
    classified("ListObjectsV2", "list", prefix, (send) =>
      send((signal) =>
        client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: prefix,
            MaxKeys: listPageKeysMax,
            ...(token === undefined ? {} : { ContinuationToken: token })
          }),
          { abortSignal: signal }
        )
      ))

  const list = (prefix: string): Stream.Stream<ObjectInfo, ObjectStoreError> =>
    Stream.paginateChunkEffect(
      undefined as string | undefined,
      (token) =>
        Effect.map(listPage(prefix, token), (output) => {
          const infos = (output.Contents ?? []).flatMap((object): Array<ObjectInfo> =>
            object.Key === undefined
              ? []
              : [{
                key: object.Key,
                sizeBytes: object.Size ?? 0,
                lastModifiedMs: object.LastModified?.getTime() ?? Number.MAX_SAFE_INTEGER
              }]
          )
          const next = output.IsTruncated === true && output.NextContinuationToken !== undefined
            ? Option.some(output.NextContinuationToken)
            : Option.none()
          return [Chunk.unsafeFromArray(infos), next] as const
        })
    )

  const deleteObject = (key: string) =>
    classified(
      "DeleteObject",
      "delete",
      key,
      (send) =>
        send((signal) => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal }))
    ).pipe(
      Effect.asVoid,
      Effect.catchTag("ObjectNotFound", () => Effect.void)
    )

  // The probe bounds its HeadBucket itself.
  const headBucket = sendWith(new AbortController())((signal) =>
    client.send(new HeadBucketCommand({ Bucket: bucket }), { abortSignal: signal })
  )

  return {
    description: `s3://${bucket}${options.endpoint === undefined ? "" : ` at ${options.endpoint}`}`,
    probe: probeWith(options, where, headBucket, { put, delete: deleteObject }),
    put,
    get: (key, getOptions) =>
      classified(
        "GetObject",
        "get",
        key,
        (send) => Effect.map(getObject(send, key, undefined, getOptions?.into), ({ bytes }) => bytes)
      ),
    getRange,
    head,
    delete: deleteObject,
    list
  }
}

/**
 * The S3 store as the ObjectStore. Without `requestTimeoutMs` it takes StorageConfig's, so an app
 * configures the request timeout in one place (the workers' attempts use the same one).
 * @category layers
 */
export function layer(options: S3ObjectStoreOptions): Layer.Layer<ObjectStore>
export function layer(
  options: Omit<S3ObjectStoreOptions, "requestTimeoutMs">
): Layer.Layer<ObjectStore, never, StorageConfig.StorageConfig>
export function layer(
  options: Omit<S3ObjectStoreOptions, "requestTimeoutMs"> & { readonly requestTimeoutMs?: number }
): Layer.Layer<ObjectStore, never, StorageConfig.StorageConfig> {
  const { requestTimeoutMs } = options
  return requestTimeoutMs === undefined
    ? Layer.scoped(
      ObjectStore,
      Effect.flatMap(
        StorageConfig.StorageConfig,
        (config) => make({ ...options, requestTimeoutMs: config.requestTimeoutMs })
      )
    )
    : Layer.scoped(ObjectStore, make({ ...options, requestTimeoutMs }))
}

// ---------------------------------------------------------------------------------------------
// Configuration from the ambient ConfigProvider
// ---------------------------------------------------------------------------------------------

/** The keys `layerConfig` reads, each with its description. */
export const configKeys = {
  bucket: ["S3_TIER_S3_BUCKET", "the bucket (required)"],
  endpoint: ["S3_TIER_S3_ENDPOINT", "an S3-compatible endpoint URL; unset = AWS S3 of the region"],
  region: ["S3_TIER_S3_REGION", "the S3 region (default us-east-1)"],
  forcePathStyle: ["S3_TIER_S3_FORCE_PATH_STYLE", "path-style URLs, true or false (default false)"],
  conditionalCreate: [
    "S3_TIER_S3_CONDITIONAL_CREATE",
    `how create-if-absent is asked for: ${conditionalCreateDialects.join(", ")}`
  ],
  checkConditionalCreate: [
    "S3_TIER_S3_CHECK_CONDITIONAL_CREATE",
    "check at start that the store honours create-if-absent (default true)"
  ],
  scratchPrefix: ["S3_TIER_S3_SCRATCH_PREFIX", "key prefix of the conformance check's scratch key (default \"\")"],
  accessKeyId: ["S3_TIER_S3_ACCESS_KEY_ID", "access key id; unset = the AWS default credential chain"],
  secretAccessKey: ["S3_TIER_S3_SECRET_ACCESS_KEY", "secret access key (with S3_TIER_S3_ACCESS_KEY_ID)"],
  sessionToken: ["S3_TIER_S3_SESSION_TOKEN", "session token of temporary credentials"]
} as const

const text = (name: keyof typeof configKeys) =>
  Config.option(Config.string(configKeys[name][0]).pipe(Config.withDescription(configKeys[name][1])))
const secret = (name: keyof typeof configKeys) =>
  Config.option(Config.redacted(configKeys[name][0]).pipe(Config.withDescription(configKeys[name][1])))

const rawStoreConfig = Config.all({
  bucket: text("bucket"),
  endpoint: text("endpoint"),
  region: text("region"),
  forcePathStyle: text("forcePathStyle"),
  conditionalCreate: text("conditionalCreate"),
  checkConditionalCreate: text("checkConditionalCreate"),
  scratchPrefix: text("scratchPrefix"),
  accessKeyId: text("accessKeyId"),
  secretAccessKey: secret("secretAccessKey"),
  sessionToken: secret("sessionToken")
})

const refuse = (name: keyof typeof configKeys, detail: string) =>
  new InvalidConfig({ field: configKeys[name][0], detail })

const booleanOf = (
  name: keyof typeof configKeys,
  value: Option.Option<string>,
  fallback: boolean
): Either.Either<boolean, InvalidConfig> =>
  Option.match(value, {
    onNone: () => Either.right(fallback),
    onSome: (given) =>
      given === "true"
        ? Either.right(true)
        : given === "false"
        ? Either.right(false)
        : Either.left(refuse(name, `must be true or false, got ${JSON.stringify(given)}`))
  })

const isDialect = (value: string): value is ConditionalCreateDialect =>
  (conditionalCreateDialects as ReadonlyArray<string>).includes(value)

/**
 * The store's options from the ambient ConfigProvider (`S3_TIER_S3_*` keys, see `configKeys`),
 * the request timeout from StorageConfig. The secret stays `Redacted`.
 */
export const readOptions: Effect.Effect<S3ObjectStoreOptions, InvalidConfig, StorageConfig.StorageConfig> = Effect.gen(
  function*() {
    yield* StorageConfig.warnUnknownKeys(
      Object.values(configKeys).map(([key]) => key),
      (key) => key.startsWith(StorageConfig.s3KeyPrefix)
    )
    const raw = yield* Effect.mapError(
      rawStoreConfig,
      (error) => new InvalidConfig({ field: "S3_TIER_S3_*", detail: String(error) })
    )
    const { requestTimeoutMs } = yield* StorageConfig.StorageConfig
    if (Option.isNone(raw.bucket)) {
      return yield* refuse("bucket", "is required")
    }
    const bucket = validateBucketName(raw.bucket.value)
    if (Either.isLeft(bucket)) return yield* refuse("bucket", bucket.left)
    const endpoint = Option.getOrUndefined(raw.endpoint)
    if (endpoint !== undefined && !/^https?:\/\/[^\s/]+/.test(endpoint)) {
      return yield* refuse("endpoint", `must be an http(s) URL, got ${JSON.stringify(endpoint)}`)
    }
    const dialect = Option.getOrElse(raw.conditionalCreate, () => "if-none-match")
    if (!isDialect(dialect)) {
      return yield* refuse(
        "conditionalCreate",
        `must be one of ${conditionalCreateDialects.join(", ")}, got ${JSON.stringify(dialect)}`
      )
    }
    if (Option.isSome(raw.accessKeyId) !== Option.isSome(raw.secretAccessKey)) {
      return yield* refuse(
        Option.isSome(raw.accessKeyId) ? "secretAccessKey" : "accessKeyId",
        "must be set with the other key of the pair"
      )
    }
    const credentials = Option.isSome(raw.accessKeyId) && Option.isSome(raw.secretAccessKey)
      ? {
        credentials: {
          accessKeyId: raw.accessKeyId.value,
          secretAccessKey: raw.secretAccessKey.value,
          ...(Option.isSome(raw.sessionToken) ? { sessionToken: raw.sessionToken.value } : {})
        }
      }
      : {}
    return {
      bucket: bucket.right,
      ...(endpoint === undefined ? {} : { endpoint }),
      region: Option.getOrElse(raw.region, () => "us-east-1"),
      forcePathStyle: yield* booleanOf("forcePathStyle", raw.forcePathStyle, false),
      conditionalCreate: dialect,
      checkConditionalCreate: yield* booleanOf("checkConditionalCreate", raw.checkConditionalCreate, true),
      scratchPrefix: Option.getOrElse(raw.scratchPrefix, () => ""),
      requestTimeoutMs,
      ...credentials
    }
  }
)

/**
 * The S3 store configured from the ambient ConfigProvider (the environment by default):
 * `S3_TIER_S3_BUCKET`, `S3_TIER_S3_ENDPOINT`, … (see `configKeys`); credentials from
 * `S3_TIER_S3_ACCESS_KEY_ID`/`S3_TIER_S3_SECRET_ACCESS_KEY` (the secret read as `Redacted`), or
 * the app's client settings, or the AWS default chain. Its request timeout is StorageConfig's
 * `requestTimeoutMs`, the one the workers use. @category layers
 */
export const layerConfig: Layer.Layer<ObjectStore, InvalidConfig, StorageConfig.StorageConfig> = Layer.scoped(
  ObjectStore,
  Effect.flatMap(readOptions, make)
)
