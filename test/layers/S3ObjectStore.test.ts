/**
 * Goal: the S3 backend keeps the ObjectStore contract against a real S3 protocol server (s3rver,
 * with the harness that gives back S3's semantics), maps every kind of failure to the right typed
 * error, and never hangs: an interrupt aborts the HTTP request at once and closes its socket, a
 * silent server costs exactly `requestTimeoutMs`, and bad endpoints, credentials or buckets fail
 * fast with clear messages.
 * Method: the shared contract suite on s3rver; `classifyS3Error` case by case on SDK-shaped
 * errors; live tests against a TCP server that never answers (HangingServer), a closed port, and
 * s3rver with a wrong access key or a missing bucket. s3rver checks the access key id but not the
 * V4 signature, so a wrong secret cannot be observed here: SignatureDoesNotMatch is covered by
 * the classification table only. The harness fixes themselves are checked with raw HTTP requests.
 * Load shedding (503 SlowDown, 429, 408 RequestCanceled), a reset connection and the dialects of
 * create-if-absent run against a scripted server (ScriptedServer) that answers that way and records
 * what it was sent; the start-up conformance check against s3rver without the harness's
 * conditional puts (a store that ignores `If-None-Match`).
 * Configuration: `layerConfig` from a ConfigProvider.fromMap against s3rver and the hanging server
 * (its timeout is StorageConfig's), each bad key named, the secret Redacted everywhere it could be
 * printed, the app's own client settings (user agent, maxAttempts) seen by the scripted server.
 * With S3_TEST_ENDPOINT (scripts/rgw.sh) the contract suite and the live tests run against that
 * server instead of s3rver; the tests of the s3rver harness itself are skipped there, saying why.
 */
import { AbortMultipartUploadCommand, CreateMultipartUploadCommand, S3Client } from "@aws-sdk/client-s3"
import { S3ServiceConfig } from "@effect-aws/client-s3"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import {
  Cause,
  ConfigProvider,
  Context,
  Deferred,
  Effect,
  Either,
  Exit,
  Fiber,
  Layer,
  Logger,
  Metric,
  Redacted,
  Stream
} from "effect"
import { createHash } from "node:crypto"
import * as http from "node:http"
import { inspect } from "node:util"
import { isTransient, type ObjectStoreError } from "../../src/domain/Errors.js"
import type { ConditionalCreateDialect } from "../../src/domain/S3Compat.js"
import * as S3ObjectStore from "../../src/layers/S3ObjectStore.js"
import { classifyS3Error } from "../../src/layers/S3ObjectStore.js"
import { ObjectStore, type ObjectStoreService } from "../../src/services/ObjectStore.js"
import { withRequestPolicy } from "../../src/services/RequestPolicy.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as HangingServer from "../support/HangingServer.js"
import * as S3TestServer from "../support/S3TestServer.js"
import * as ScriptedServer from "../support/ScriptedServer.js"
import { suite } from "./ObjectStoreSuite.js"

let running: S3TestServer.RunningS3TestServer | undefined
beforeAll(async () => {
  running = await S3TestServer.start()
}, 60_000)
afterAll(() => running?.stop(), 60_000)

const server = (): S3TestServer.S3TestServerInfo => {
  if (running === undefined) throw new Error("the s3rver test server is not running (beforeAll did not finish)")
  return running.info
}

/** The s3rver harness (only tests skipped on an external server use it). */
const shim = (): S3TestServer.S3rverShim => {
  const found = server().shim
  if (found === undefined) throw new Error("this test needs the s3rver harness")
  return found
}

const harnessOnly = "it checks the s3rver test harness itself"

const optionsFor = (
  info: S3TestServer.S3TestServerInfo,
  overrides: Partial<S3ObjectStore.S3ObjectStoreOptions> = {}
): S3ObjectStore.S3ObjectStoreOptions => ({
  bucket: info.bucket,
  endpoint: info.endpoint,
  region: info.region,
  forcePathStyle: true,
  credentials: info.credentials,
  requestTimeoutMs: 10_000,
  ...overrides
})

suite(
  S3TestServer.external === undefined
    ? "S3ObjectStore on s3rver"
    : `S3ObjectStore on ${S3TestServer.external.endpoint}`,
  Layer.unwrapEffect(Effect.sync(() => S3ObjectStore.layer(optionsFor(server())))),
  S3TestServer.external === undefined
    ? { seedObjects: (objects) => Effect.suspend(() => shim().seed(objects)), readsInto: true }
    : { dotSegmentKeys: true, keyPrefix: `${S3TestServer.runId}/`, readsInto: true }
)

const elapsedMs = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const started = performance.now()
    const exit = yield* Effect.exit(effect)
    return { exit, ms: performance.now() - started }
  })

const failureOf = <A>(exit: Exit.Exit<A, ObjectStoreError>): ObjectStoreError | undefined =>
  Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined

// ---------------------------------------------------------------------------------------------

describe("classifyS3Error", () => {
  const service = (name: string, status: number, message = "some message") => ({
    name,
    Code: name,
    message,
    $metadata: { httpStatusCode: status },
    $fault: "client"
  })
  const headError = (status: number) => ({
    name: status === 404 ? "NotFound" : "Unknown",
    message: "UnknownError",
    $metadata: { httpStatusCode: status }
  })
  const system = (code: string, message = `${code} happened`) => Object.assign(new Error(message), { code })
  const classify = (error: unknown) => classifyS3Error("get", "some/key", error)
  const summary = (error: ObjectStoreError): string =>
    error._tag === "ObjectStoreUnavailable"
      ? `Unavailable:${error.reason}`
      : error._tag === "ObjectStoreRejected"
      ? `Rejected:${error.code}`
      : error._tag

  const cases: ReadonlyArray<readonly [string, unknown, string]> = [
    ["NoSuchKey 404", service("NoSuchKey", 404), "ObjectNotFound"],
    ["HEAD 404 without a body", headError(404), "ObjectNotFound"],
    ["NoSuchBucket 404", service("NoSuchBucket", 404), "Rejected:NoSuchBucket"],
    ["400 InvalidArgument", service("InvalidArgument", 400), "Rejected:InvalidArgument"],
    ["403 AccessDenied", service("AccessDenied", 403), "Rejected:AccessDenied"],
    ["403 InvalidAccessKeyId", service("InvalidAccessKeyId", 403), "Rejected:InvalidAccessKeyId"],
    ["403 SignatureDoesNotMatch", service("SignatureDoesNotMatch", 403), "Rejected:SignatureDoesNotMatch"],
    ["HEAD 403 without a body", headError(403), "Rejected:HTTP403"],
    ["416 InvalidRange", service("InvalidRange", 416), "Rejected:InvalidRange"],
    ["412 PreconditionFailed", service("PreconditionFailed", 412), "PreconditionFailed"],
    ["409 ConditionalRequestConflict", service("ConditionalRequestConflict", 409), "PreconditionFailed"],
    ["409 OperationAborted", service("OperationAborted", 409), "Unavailable:ServerError"],
    ["500 InternalError", service("InternalError", 500), "Unavailable:ServerError"],
    ["502", headError(502), "Unavailable:ServerError"],
    ["503 ServiceUnavailable", service("ServiceUnavailable", 503), "Unavailable:ServerError"],
    ["504", headError(504), "Unavailable:ServerError"],
    ["503 SlowDown", service("SlowDown", 503), "Unavailable:Throttled"],
    ["429", headError(429), "Unavailable:Throttled"],
    ["429 TooManyRequests", service("TooManyRequests", 429), "Unavailable:Throttled"],
    ["408 RequestCanceled (Tigris load shedding)", service("RequestCanceled", 408), "Unavailable:Throttled"],
    ["408 without a body", headError(408), "Unavailable:Timeout"],
    ["400 RequestTimeout", service("RequestTimeout", 400), "Unavailable:Timeout"],
    ["ECONNREFUSED", system("ECONNREFUSED"), "Unavailable:Network"],
    ["ECONNRESET", system("ECONNRESET", "aborted"), "Unavailable:Network"],
    ["EPIPE", system("EPIPE"), "Unavailable:Network"],
    ["socket hang up", Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }), "Unavailable:Network"],
    ["socket hang up without a code", new Error("socket hang up"), "Unavailable:Network"],
    ["ETIMEDOUT", system("ETIMEDOUT"), "Unavailable:Timeout"],
    // The SDK's node handler renames ECONNRESET, EPIPE and ETIMEDOUT errors "TimeoutError".
    [
      "ECONNRESET renamed TimeoutError by the SDK",
      Object.assign(system("ECONNRESET", "read ECONNRESET"), { name: "TimeoutError" }),
      "Unavailable:Network"
    ],
    [
      "EPIPE renamed TimeoutError by the SDK",
      Object.assign(system("EPIPE", "write EPIPE"), { name: "TimeoutError" }),
      "Unavailable:Network"
    ],
    [
      "ETIMEDOUT renamed TimeoutError by the SDK",
      Object.assign(system("ETIMEDOUT"), { name: "TimeoutError" }),
      "Unavailable:Timeout"
    ],
    [
      "TimeoutError",
      Object.assign(new Error("Connection timed out after 1000 ms"), { name: "TimeoutError" }),
      "Unavailable:Timeout"
    ],
    [
      "AggregateError of refusals",
      Object.assign(new AggregateError([system("ECONNREFUSED"), system("ECONNREFUSED")], ""), { code: "ECONNREFUSED" }),
      "Unavailable:Network"
    ],
    [
      "a cause chain",
      Object.assign(new Error("request failed"), { cause: system("ECONNRESET") }),
      "Unavailable:Network"
    ],
    [
      "no credentials",
      Object.assign(new Error("Could not load credentials from any providers"), { name: "CredentialsProviderError" }),
      "Rejected:CredentialsProviderError"
    ],
    ["an unknown failure", { something: "odd" }, "Unavailable:Network"]
  ]

  for (const [label, error, expected] of cases) {
    it(`${label} → ${expected}`, () => {
      assert.strictEqual(summary(classify(error)), expected)
    })
  }

  it("keeps the operation, the key, the status and a readable detail", () => {
    const rejected = classify(headError(403))
    assert.strictEqual(rejected._tag, "ObjectStoreRejected")
    if (rejected._tag !== "ObjectStoreRejected") return
    assert.strictEqual(rejected.operation, "get")
    assert.strictEqual(rejected.key, "some/key")
    assert.strictEqual(rejected.status, 403)
    assert.include(rejected.message, "access denied")
    const lost = classify(service("PreconditionFailed", 412))
    assert.isTrue(lost._tag === "PreconditionFailed" && lost.key === "some/key")
    const refused = classify(system("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:9"))
    assert.include(refused.message, "ECONNREFUSED 127.0.0.1:9")
  })
})

// ---------------------------------------------------------------------------------------------

describe("S3ObjectStore never hangs", () => {
  const hangingStore = (hanging: HangingServer.HangingServerInfo, requestTimeoutMs: number) =>
    S3ObjectStore.make({
      bucket: "hang",
      endpoint: hanging.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "a", secretAccessKey: "b" },
      requestTimeoutMs
    })

  /** A server that answers with the headers and 1 KiB of a 1 MiB body, then sends nothing more. */
  const stallingBody = HangingServer.makeWith({
    answerHead: `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${1024 * 1024}\r\n\r\n${
      "x".repeat(1024)
    }`
  })

  const interruptWhileWaiting = (operation: (store: ObjectStoreService) => Effect.Effect<unknown, ObjectStoreError>) =>
    Effect.gen(function*() {
      const hanging = yield* HangingServer.make
      const store = yield* hangingStore(hanging, 60_000)
      const fiber = yield* Effect.fork(operation(store))
      // The request reached the server: it is in flight, waiting for an answer that never comes.
      yield* hanging.awaitSockets((counts) => counts.accepted === 1 && counts.open === 1)
      const { ms } = yield* elapsedMs(Fiber.interrupt(fiber))
      assert.isBelow(ms, 100, `interrupt took ${ms} ms`)
      // The abort closed the socket (event-driven wait, bounded so a leak fails instead of hanging).
      yield* hanging.awaitSockets((counts) => counts.open === 0).pipe(
        Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => "the socket stayed open" })
      )
      assert.strictEqual(hanging.openSockets(), 0)
    })

  it.scopedLive("interrupting a put returns within 100 ms and closes its socket", () =>
    interruptWhileWaiting((store) => store.put("k", new Uint8Array(1024))))

  it.scopedLive("interrupting a get returns within 100 ms and closes its socket", () =>
    interruptWhileWaiting((store) => store.get("k")))

  it.scopedLive("interrupting a get whose body stalls midway returns within 100 ms and closes its socket", () =>
    Effect.gen(function*() {
      // The answer's headers and 1 KiB of its 1 MiB body, then nothing: the request has been
      // answered, so only the body's read is left to cut.
      const hanging = yield* stallingBody
      const client = new S3Client({
        endpoint: hanging.endpoint,
        region: "us-east-1",
        forcePathStyle: true,
        credentials: { accessKeyId: "a", secretAccessKey: "b" },
        maxAttempts: 1
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => client.destroy()))
      // Told when the SDK hands back the answer (its body still arriving).
      const answered = yield* Deferred.make<void>()
      client.middlewareStack.add(
        (next) => async (args) => {
          const output = await next(args)
          Deferred.unsafeDone(answered, Exit.void)
          return output
        },
        { step: "initialize", name: "testAnswered" }
      )
      const store = S3ObjectStore.makeWithClient(client, {
        bucket: "hang",
        endpoint: hanging.endpoint,
        region: "us-east-1",
        forcePathStyle: true,
        requestTimeoutMs: 60_000
      })
      const fiber = yield* Effect.fork(store.get("k"))
      yield* Deferred.await(answered)
      yield* Effect.yieldNow()
      assert.isNull(fiber.unsafePoll(), "the get ended before its body was cut")
      const { ms } = yield* elapsedMs(Fiber.interrupt(fiber))
      assert.isBelow(ms, 100, `interrupt took ${ms} ms`)
      yield* hanging.awaitSockets((counts) => counts.open === 0).pipe(
        Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => "the socket stayed open" })
      )
      assert.strictEqual(hanging.openSockets(), 0)
    }))

  it.scopedLive("interrupting a list returns within 100 ms and closes its socket", () =>
    interruptWhileWaiting((store) => Stream.runDrain(store.list(""))))

  it.scopedLive("a server that never answers costs requestTimeoutMs: Unavailable Timeout after ~300 ms", () =>
    Effect.gen(function*() {
      const hanging = yield* HangingServer.make
      const store = yield* hangingStore(hanging, 300)
      const { exit, ms } = yield* elapsedMs(store.get("k"))
      const error = failureOf(exit)
      assert.isTrue(error?._tag === "ObjectStoreUnavailable" && error.reason === "Timeout", JSON.stringify(error))
      assert.isAtLeast(ms, 290)
      assert.isBelow(ms, 1000)
      assert.include(error?.message ?? "", "300 ms")
      yield* hanging.awaitSockets((counts) => counts.open === 0).pipe(
        Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => "the socket stayed open" })
      )
    }))

  it.scopedLive("a body that stalls midway costs requestTimeoutMs too: Unavailable Timeout, socket closed", () =>
    Effect.gen(function*() {
      // The answer's headers and 1 KiB of its 1 MiB body, then nothing: the deadline covers the body.
      const hanging = yield* stallingBody
      const store = yield* hangingStore(hanging, 300)
      // Bounded here too, so that a store that never times out fails this test instead of hanging it.
      const { exit, ms } = yield* elapsedMs(
        store.get("k").pipe(
          Effect.timeout("5 seconds"),
          Effect.catchTag("TimeoutException", () => Effect.dieMessage("the store's get never timed out"))
        )
      )
      const error = failureOf(exit)
      assert.isTrue(error?._tag === "ObjectStoreUnavailable" && error.reason === "Timeout", JSON.stringify(error))
      assert.isAtLeast(ms, 290)
      assert.isBelow(ms, 1000)
      yield* hanging.awaitSockets((counts) => counts.open === 0).pipe(
        Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => "the socket stayed open" })
      )
    }))

  it.scopedLive("an unreachable endpoint (a closed port) is Unavailable Network at once", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(HangingServer.closedPort)
      const store = yield* S3ObjectStore.make({
        ...optionsFor(server()),
        endpoint: `http://127.0.0.1:${port}`,
        requestTimeoutMs: 5000
      })
      for (const attempt of [store.probe, store.put("k", new Uint8Array(1)), store.get("k")]) {
        const { exit, ms } = yield* elapsedMs(attempt)
        const error = failureOf(exit)
        assert.isTrue(error?._tag === "ObjectStoreUnavailable" && error.reason === "Network", JSON.stringify(error))
        assert.include(error?.message ?? "", "ECONNREFUSED")
        assert.isBelow(ms, 1000)
      }
    }))

  it.scopedLive("a wrong access key is ObjectStoreRejected with a clear message, within the timeout", () =>
    Effect.gen(function*() {
      const store = yield* S3ObjectStore.make(
        optionsFor(server(), {
          credentials: { accessKeyId: "WRONG-KEY", secretAccessKey: "whatever" },
          requestTimeoutMs: 2000
        })
      )
      const probe = yield* elapsedMs(store.probe)
      const probeError = failureOf(probe.exit)
      assert.isTrue(
        probeError?._tag === "ObjectStoreRejected" && probeError.code === "AccessDenied" && probeError.status === 403,
        JSON.stringify(probeError)
      )
      assert.include(probeError?.message ?? "", "check the credentials")
      assert.isBelow(probe.ms, 2000)
      const get = failureOf((yield* elapsedMs(store.get("k"))).exit)
      assert.isTrue(get?._tag === "ObjectStoreRejected" && get.code === "InvalidAccessKeyId", JSON.stringify(get))
    }))

  it.scopedLive("a missing bucket is ObjectStoreRejected NoSuchBucket naming the bucket", () =>
    Effect.gen(function*() {
      const store = yield* S3ObjectStore.make(
        optionsFor(server(), { bucket: "no-such-bucket", requestTimeoutMs: 2000 })
      )
      const probe = failureOf((yield* elapsedMs(store.probe)).exit)
      assert.isTrue(probe?._tag === "ObjectStoreRejected" && probe.code === "NoSuchBucket", JSON.stringify(probe))
      assert.include(probe?.message ?? "", "\"no-such-bucket\" does not exist")
      for (const attempt of [store.put("k", new Uint8Array(1)), store.get("k")]) {
        const error = failureOf((yield* elapsedMs(attempt)).exit)
        assert.isTrue(error?._tag === "ObjectStoreRejected" && error.code === "NoSuchBucket", JSON.stringify(error))
      }
    }))
})

// ---------------------------------------------------------------------------------------------

describe("S3ObjectStore with a known content hash (PutOptions.sha256Hex)", () => {
  const withStore = <A, E>(body: (store: ObjectStoreService) => Effect.Effect<A, E>) =>
    Effect.flatMap(S3ObjectStore.make(optionsFor(server())), body)
  const bytes = new TextEncoder().encode("a part's bytes, hashed once by the caller")
  const sha256 = createHash("sha256").update(bytes).digest("hex")

  it.scopedLive("the given hash is what the request declares, and the server verifies the body against it", () =>
    withStore((store) =>
      Effect.gen(function*() {
        const before = server().shim?.stats().verifiedContentSha256Puts
        yield* store.put(`${S3TestServer.runId}/hashed/right`, bytes, { sha256Hex: sha256 })
        // The harness counts verified hashes; an external server is checked by the wrong-hash test.
        if (before !== undefined) assert.strictEqual(shim().stats().verifiedContentSha256Puts, before + 1)
        assert.deepStrictEqual(Array.from(yield* store.get(`${S3TestServer.runId}/hashed/right`)), Array.from(bytes))
      })
    ))

  it.scopedLive("a hash that does not match the body is ObjectStoreRejected (permanent) and writes nothing", () =>
    withStore((store) =>
      Effect.gen(function*() {
        // If the SDK replaced our header with its own hash, this put would succeed.
        const wrong = createHash("sha256").update("other bytes").digest("hex")
        const error = failureOf(
          yield* Effect.exit(store.put(`${S3TestServer.runId}/hashed/wrong`, bytes, { sha256Hex: wrong }))
        )
        assert.isTrue(
          error?._tag === "ObjectStoreRejected" && error.code === "XAmzContentSHA256Mismatch",
          JSON.stringify(error)
        )
        const missing = failureOf(yield* Effect.exit(store.get(`${S3TestServer.runId}/hashed/wrong`)))
        assert.strictEqual(missing?._tag, "ObjectNotFound")
      })
    ))
})

// ---------------------------------------------------------------------------------------------

/** A raw HTTP request to s3rver (no SDK): the harness must handle what a client really sends. */
const rawRequest = (options: http.RequestOptions, body: Buffer, abortAfterBytes?: number) =>
  Effect.async<number, Error>((resume) => {
    const request = http.request({ host: "127.0.0.1", port: server().port, ...options }, (response) => {
      response.resume()
      response.on("end", () => resume(Effect.succeed(response.statusCode ?? 0)))
    })
    request.on("error", (error) => resume(Effect.fail(error)))
    if (abortAfterBytes === undefined) {
      request.end(body)
    } else {
      request.write(body.subarray(0, abortAfterBytes), () => request.destroy())
      resume(Effect.succeed(0))
    }
  })

describe.skipIf(S3TestServer.shimOnly("the s3rver harness", harnessOnly))("the s3rver harness", () => {
  const withStore = <A, E>(body: (store: ObjectStoreService) => Effect.Effect<A, E>) =>
    Effect.flatMap(S3ObjectStore.make(optionsFor(server())), body)

  it.scopedLive("a PUT the client aborts midway writes nothing and keeps the old object", () =>
    withStore((store) =>
      Effect.gen(function*() {
        yield* store.put("harness/victim", new Uint8Array([1, 2, 3]))
        const before = shim().stats().abortedPuts
        yield* rawRequest(
          { method: "PUT", path: `/${server().bucket}/harness/victim`, headers: { "content-length": "1000" } },
          Buffer.alloc(1000, 7),
          100
        )
        yield* shim().awaitStats((stats) => stats.abortedPuts === before + 1).pipe(
          Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => "abort not seen" })
        )
        assert.deepStrictEqual(Array.from(yield* store.get("harness/victim")), [1, 2, 3])
      })
    ))

  it.scopedLive("aws-chunked bodies are decoded; the store's own puts never send them", () =>
    withStore((store) =>
      Effect.gen(function*() {
        const before = shim().stats().awsChunkedPuts
        yield* store.put("harness/plain", new Uint8Array(5000))
        assert.strictEqual(shim().stats().awsChunkedPuts, before, "the client sent aws-chunked")
        const framed = Buffer.from(
          "5;chunk-signature=abc\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
        )
        const status = yield* rawRequest({
          method: "PUT",
          path: `/${server().bucket}/harness/chunked`,
          headers: {
            "content-encoding": "aws-chunked",
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x-amz-decoded-content-length": "11",
            "content-length": String(framed.length)
          }
        }, framed)
        assert.strictEqual(status, 200)
        assert.strictEqual(new TextDecoder().decode(yield* store.get("harness/chunked")), "hello world")
        assert.strictEqual(S3TestServer.decodeAwsChunked(Buffer.from("5\r\nhel")), undefined)
      })
    ))

  it.scopedLive("keys s3rver would alias on disk ('.', '..', empty segments) are refused, not stored", () =>
    withStore((store) =>
      Effect.gen(function*() {
        for (const key of ["harness/../escape", "harness/./here", "harness//double"]) {
          const error = failureOf((yield* elapsedMs(store.put(key, new Uint8Array(1)))).exit)
          assert.isTrue(
            error?._tag === "ObjectStoreRejected" && error.code === "InvalidArgument" && error.status === 400,
            JSON.stringify(error)
          )
        }
        yield* store.put("harness/trailing/", new Uint8Array(1))
      })
    ))

  it.live("AbortMultipartUpload answers 204 and then NoSuchUpload", () =>
    Effect.gen(function*() {
      const info = server()
      const client = new S3Client({
        region: info.region,
        endpoint: info.endpoint,
        forcePathStyle: true,
        credentials: info.credentials,
        maxAttempts: 1
      })
      const created = yield* Effect.promise(() =>
        client.send(new CreateMultipartUploadCommand({ Bucket: info.bucket, Key: "harness/multi" }))
      )
      const abort = () =>
        client.send(
          new AbortMultipartUploadCommand({ Bucket: info.bucket, Key: "harness/multi", UploadId: created.UploadId })
        )
      const first = yield* Effect.either(Effect.tryPromise(abort))
      assert.isTrue(Either.isRight(first), JSON.stringify(first))
      const second = yield* Effect.either(Effect.tryPromise(abort))
      assert.isTrue(
        Either.isLeft(second) && classifyS3Error("abort", "harness/multi", second.left.error)._tag === "ObjectNotFound"
      )
      client.destroy()
    }))
})

// ---------------------------------------------------------------------------------------------

/** Short retry bounds over the defaults: 4 attempts, 20-100 ms apart, 5 s in all. */
const retryConfig: StorageConfig.StorageConfigValue = {
  ...StorageConfig.defaults,
  requestTimeoutMs: 5_000,
  retryAttemptsMax: 4,
  retryDelayBaseMs: 20,
  retryDelayMaxMs: 100,
  retryElapsedMaxMs: 5_000
}

const scriptedStore = (endpoint: string, overrides: Partial<S3ObjectStore.S3ObjectStoreOptions> = {}) =>
  S3ObjectStore.make({
    bucket: "scripted",
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "a", secretAccessKey: "b" },
    requestTimeoutMs: 5_000,
    ...overrides
  })

const countOf = (request: S3ObjectStore.S3RequestType, outcome: S3ObjectStore.S3RequestOutcome) =>
  Effect.map(Metric.value(S3ObjectStore.requestsOf(request, outcome)), (state) => state.count)

describe("S3ObjectStore under load shedding and resets", () => {
  const sheds: ReadonlyArray<readonly [string, ScriptedServer.ScriptedAnswer]> = [
    ["503 SlowDown", { status: 503, code: "SlowDown" }],
    ["429 TooManyRequests", { status: 429, code: "TooManyRequests" }],
    ["408 RequestCanceled", { status: 408, code: "RequestCanceled" }]
  ]
  for (const [label, shed] of sheds) {
    it.scopedLive(`${label} is Unavailable Throttled, retried with backoff until the store accepts, and counted`, () =>
      Effect.gen(function*() {
        const scripted = yield* ScriptedServer.make((_, index) => (index < 2 ? shed : { status: 200 }))
        const store = yield* scriptedStore(scripted.endpoint)
        const [throttledBefore, successBefore] = [
          yield* countOf("PutObject", "Throttled"),
          yield* countOf("PutObject", "Success")
        ]
        const single = failureOf(yield* Effect.exit(store.put("k", new Uint8Array(3))))
        assert.isTrue(
          single?._tag === "ObjectStoreUnavailable" && single.reason === "Throttled" && isTransient(single),
          JSON.stringify(single)
        )
        // Under the workers' policy: the second shed answer is retried, the third request succeeds.
        yield* store.put("k", new Uint8Array(3)).pipe(withRequestPolicy(retryConfig, "put", "k"))
        const arrivals = scripted.requests().map((request) => request.atMs)
        assert.strictEqual(arrivals.length, 3)
        const gapMs = (arrivals[2] ?? 0) - (arrivals[1] ?? 0)
        // One backoff step: 20 ms jittered (0.8-1.2), capped at 100 ms.
        assert.isAtLeast(gapMs, 15, `retried after ${gapMs} ms`)
        assert.isBelow(gapMs, 1_000, `retried after ${gapMs} ms`)
        assert.strictEqual((yield* countOf("PutObject", "Throttled")) - throttledBefore, 2)
        assert.strictEqual((yield* countOf("PutObject", "Success")) - successBefore, 1)
      }))
  }

  it.scopedLive("a store that keeps shedding fails Throttled after retryAttemptsMax attempts, within the retry bounds", () =>
    Effect.gen(function*() {
      const scripted = yield* ScriptedServer.make(() => ({ status: 503, code: "SlowDown" }))
      const store = yield* scriptedStore(scripted.endpoint)
      const started = performance.now()
      const error = failureOf(yield* Effect.exit(store.get("k").pipe(withRequestPolicy(retryConfig, "get", "k"))))
      const ms = performance.now() - started
      assert.isTrue(error?._tag === "ObjectStoreUnavailable" && error.reason === "Throttled", JSON.stringify(error))
      assert.strictEqual(scripted.requests().length, retryConfig.retryAttemptsMax)
      assert.isBelow(ms, 3 * retryConfig.retryDelayMaxMs * 1.2 + 1_000)
    }))

  it.scopedLive("a connection reset is Unavailable Network naming ECONNRESET (not a timeout), and retried", () =>
    Effect.gen(function*() {
      const scripted = yield* ScriptedServer.make((_, index) => (index === 0 ? "reset" : { status: 200 }))
      const store = yield* scriptedStore(scripted.endpoint)
      const [networkBefore, timeoutBefore] = [
        yield* countOf("PutObject", "Network"),
        yield* countOf("PutObject", "Timeout")
      ]
      const error = failureOf(yield* Effect.exit(store.put("k", new Uint8Array(3))))
      assert.isTrue(error?._tag === "ObjectStoreUnavailable" && error.reason === "Network", JSON.stringify(error))
      assert.include(error?.message ?? "", "(Network): ECONNRESET")
      assert.isTrue(error !== undefined && isTransient(error))
      assert.strictEqual((yield* countOf("PutObject", "Network")) - networkBefore, 1)
      assert.strictEqual((yield* countOf("PutObject", "Timeout")) - timeoutBefore, 0)
      yield* store.put("k", new Uint8Array(3)).pipe(withRequestPolicy(retryConfig, "put", "k"))
      assert.strictEqual(scripted.requests().length, 2)
    }))
})

// ---------------------------------------------------------------------------------------------

describe("S3ObjectStore: create-if-absent dialects and the start-up conformance check", () => {
  const expected: ReadonlyArray<readonly [ConditionalCreateDialect, Readonly<Record<string, string | undefined>>]> = [
    ["if-none-match", {
      "if-none-match": "*",
      "x-goog-if-generation-match": undefined,
      "x-tigris-consistent": undefined
    }],
    ["gcs-generation-match", {
      "if-none-match": undefined,
      "x-goog-if-generation-match": "0",
      "x-tigris-consistent": undefined
    }],
    ["tigris-consistent", {
      "if-none-match": "*",
      "x-goog-if-generation-match": undefined,
      "x-tigris-consistent": "true"
    }]
  ]
  for (const [dialect, headers] of expected) {
    it.scopedLive(`dialect ${dialect}: a conditional put sends ${JSON.stringify(headers)}, signed; a plain put sends none`, () =>
      Effect.gen(function*() {
        const scripted = yield* ScriptedServer.make(() => ({ status: 200 }))
        const store = yield* scriptedStore(scripted.endpoint, { conditionalCreate: dialect })
        yield* store.put("conditional", new Uint8Array(1), { ifNoneMatch: true })
        yield* store.put("plain", new Uint8Array(1))
        const [conditional, plain] = scripted.requests()
        for (const [name, value] of Object.entries(headers)) {
          assert.strictEqual(conditional?.headers[name], value, name)
          assert.strictEqual(plain?.headers[name], undefined, `plain ${name}`)
          if (value !== undefined) {
            assert.include(String(conditional?.headers["authorization"]), name, `${name} is signed`)
          }
        }
      }))
  }

  it.scopedLive("probe passes on the test server and leaves no scratch key behind", () =>
    Effect.gen(function*() {
      const scratchPrefix = `${S3TestServer.runId}/probe-ok`
      const store = yield* S3ObjectStore.make(optionsFor(server(), { scratchPrefix }))
      const before = yield* countOf("PutObject", "PreconditionFailed")
      yield* store.probe
      assert.strictEqual(
        (yield* countOf("PutObject", "PreconditionFailed")) - before,
        1,
        "one of the two racing puts lost"
      )
      assert.deepStrictEqual(Array.from(yield* Stream.runCollect(store.list(`${scratchPrefix}/`))), [])
    }))

  it.scopedLive("a store that ignores If-None-Match is refused at probe with ConditionalCreateIgnored; the switch skips the check", () =>
    Effect.gen(function*() {
      const ignoring = yield* Effect.acquireRelease(
        Effect.promise(() => S3TestServer.startS3rver({ bucket: "ignores-conditions", conditionalPuts: false })),
        (started) => Effect.promise(() => started.stop())
      )
      const store = yield* S3ObjectStore.make(optionsFor(ignoring.info, { scratchPrefix: "tier" }))
      const error = failureOf(yield* Effect.exit(store.probe))
      assert.isTrue(
        error?._tag === "ObjectStoreRejected" && error.code === "ConditionalCreateIgnored",
        JSON.stringify(error)
      )
      assert.include(
        error?.message ?? "",
        "does not honour create-if-absent (dialect if-none-match): both of two concurrent conditional PUTs"
      )
      assert.match(
        error?._tag === "ObjectStoreRejected" ? error.key ?? "" : "",
        /^tier\/conformance\/conditional-create-[0-9a-f]{16}$/
      )
      assert.deepStrictEqual(
        Array.from(yield* Stream.runCollect(store.list("tier/"))),
        [],
        "the scratch key was deleted"
      )
      const trusted = yield* S3ObjectStore.make(optionsFor(ignoring.info, { checkConditionalCreate: false }))
      yield* trusted.probe
    }))

  it.scopedLive("a store that refuses every conditional create is refused too (neither put won)", () =>
    Effect.gen(function*() {
      const scripted = yield* ScriptedServer.make((request) =>
        request.method === "PUT" && request.headers["if-none-match"] === "*"
          ? { status: 412, code: "PreconditionFailed" }
          : { status: 200 }
      )
      const error = failureOf(
        yield* Effect.exit(Effect.flatMap(scriptedStore(scripted.endpoint), (store) => store.probe))
      )
      assert.isTrue(
        error?._tag === "ObjectStoreRejected" && error.code === "ConditionalCreateIgnored",
        JSON.stringify(error)
      )
      assert.include(error?.message ?? "", "neither of two concurrent conditional PUTs")
      assert.deepStrictEqual(scripted.requests().map((request) => request.method), ["HEAD", "PUT", "PUT", "DELETE"])
    }))

  it.scopedLive("a bucket name S3 refuses is refused at probe before any request", () =>
    Effect.gen(function*() {
      const scripted = yield* ScriptedServer.make(() => ({ status: 200 }))
      for (const bucket of ["b1", "Upper-Case", "192.168.5.4", "ends-with-dash-"]) {
        const error = failureOf(
          yield* Effect.exit(Effect.flatMap(scriptedStore(scripted.endpoint, { bucket }), (store) => store.probe))
        )
        assert.isTrue(
          error?._tag === "ObjectStoreRejected" && error.code === "InvalidBucketName",
          JSON.stringify(error)
        )
        assert.include(error?.message ?? "", `${JSON.stringify(bucket)} is not a valid S3 bucket name`)
      }
      assert.strictEqual(scripted.requests().length, 0)
    }))
})

// ---------------------------------------------------------------------------------------------

describe("S3ObjectStore configuration", () => {
  const fromMap = (entries: Record<string, string>) => ConfigProvider.fromMap(new Map(Object.entries(entries)))
  const secretText = "SECRET-never-printed-1234"
  const storeFrom = (entries: Record<string, string>, storage: Partial<StorageConfig.StorageConfigValue> = {}) =>
    Effect.map(
      Layer.build(S3ObjectStore.layerConfig.pipe(Layer.provide(StorageConfig.layer(storage)))),
      Context.get(ObjectStore)
    ).pipe(Effect.withConfigProvider(fromMap(entries)))
  const s3rverKeys = () => ({
    S3_TIER_S3_BUCKET: server().bucket,
    S3_TIER_S3_ENDPOINT: server().endpoint,
    S3_TIER_S3_REGION: server().region,
    S3_TIER_S3_FORCE_PATH_STYLE: "true",
    S3_TIER_S3_ACCESS_KEY_ID: server().credentials.accessKeyId,
    S3_TIER_S3_SECRET_ACCESS_KEY: server().credentials.secretAccessKey
  })

  it.scopedLive("layerConfig reads the app's ConfigProvider and works against the server", () =>
    Effect.gen(function*() {
      const store = yield* storeFrom(s3rverKeys())
      yield* store.probe
      const key = `${S3TestServer.runId}/config/roundtrip`
      yield* store.put(key, new Uint8Array([1, 2, 3]))
      assert.deepStrictEqual(Array.from(yield* store.get(key)), [1, 2, 3])
      yield* store.delete(key)
    }))

  it.scopedLive("the request timeout is StorageConfig's requestTimeoutMs", () =>
    Effect.gen(function*() {
      const hanging = yield* HangingServer.make
      const store = yield* storeFrom({
        S3_TIER_S3_BUCKET: "hang",
        S3_TIER_S3_ENDPOINT: hanging.endpoint,
        S3_TIER_S3_FORCE_PATH_STYLE: "true",
        S3_TIER_S3_ACCESS_KEY_ID: "a",
        S3_TIER_S3_SECRET_ACCESS_KEY: "b"
      }, { requestTimeoutMs: 300 })
      const error = failureOf(yield* Effect.exit(store.get("k")))
      assert.isTrue(error?._tag === "ObjectStoreUnavailable" && error.reason === "Timeout", JSON.stringify(error))
      assert.include(error?.message ?? "", "within 300 ms")
      const fromCode = S3ObjectStore.layer({
        bucket: "hang",
        endpoint: hanging.endpoint,
        region: "us-east-1",
        forcePathStyle: true,
        credentials: { accessKeyId: "a", secretAccessKey: "b" }
      })
      const coded = yield* Effect.map(
        Layer.build(fromCode.pipe(Layer.provide(StorageConfig.layer({ requestTimeoutMs: 200 })))),
        Context.get(ObjectStore)
      )
      assert.include(failureOf(yield* Effect.exit(coded.get("k")))?.message ?? "", "within 200 ms")
    }))

  it.scoped("a bad value's error names its S3_TIER_S3_* key", () =>
    Effect.gen(function*() {
      const fieldOf = (entries: Record<string, string>) =>
        Effect.map(
          Effect.flip(
            S3ObjectStore.readOptions.pipe(
              Effect.provide(StorageConfig.layerDefaults),
              Effect.withConfigProvider(fromMap(entries))
            )
          ),
          (error) => error.field
        )
      assert.strictEqual(yield* fieldOf({}), "S3_TIER_S3_BUCKET")
      assert.strictEqual(yield* fieldOf({ S3_TIER_S3_BUCKET: "Bad_Bucket" }), "S3_TIER_S3_BUCKET")
      assert.strictEqual(
        yield* fieldOf({ S3_TIER_S3_BUCKET: "b-1", S3_TIER_S3_FORCE_PATH_STYLE: "yes" }),
        "S3_TIER_S3_FORCE_PATH_STYLE"
      )
      assert.strictEqual(
        yield* fieldOf({ S3_TIER_S3_BUCKET: "b-1", S3_TIER_S3_CONDITIONAL_CREATE: "etag" }),
        "S3_TIER_S3_CONDITIONAL_CREATE"
      )
      assert.strictEqual(
        yield* fieldOf({ S3_TIER_S3_BUCKET: "b-1", S3_TIER_S3_SECRET_ACCESS_KEY: secretText }),
        "S3_TIER_S3_ACCESS_KEY_ID"
      )
    }))

  it.scoped("the secret is Redacted: never in the printed options, an error or the logs", () =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const capture = Logger.make(({ message }) => {
        logs.push(String(message))
      })
      const read = (entries: Record<string, string>) =>
        S3ObjectStore.readOptions.pipe(
          Effect.provide(StorageConfig.layerDefaults),
          Effect.withConfigProvider(fromMap(entries)),
          Effect.provide(Logger.replace(Logger.defaultLogger, capture))
        )
      const options = yield* read({
        S3_TIER_S3_BUCKET: "b-1",
        S3_TIER_S3_ACCESS_KEY_ID: "id",
        S3_TIER_S3_SECRET_ACCESS_KEY: secretText,
        S3_TIER_S3_SESSION_TOKEN: secretText
      })
      const secret = options.credentials?.secretAccessKey
      assert.isTrue(secret !== undefined && Redacted.isRedacted(secret) && Redacted.value(secret) === secretText)
      for (
        const printed of [
          JSON.stringify(options),
          inspect(options, { depth: 10 }),
          String(secret),
          `${Cause.pretty(Cause.fail(options))}`
        ]
      ) {
        assert.notInclude(printed, secretText)
      }
      const error = yield* Effect.flip(
        read({
          S3_TIER_S3_BUCKET: "Bad_Bucket",
          S3_TIER_S3_ACCESS_KEY_ID: "id",
          S3_TIER_S3_SECRET_ACCESS_KEY: secretText
        })
      )
      assert.notInclude(`${error.message} ${JSON.stringify(error)} ${inspect(error)}`, secretText)
      assert.notInclude(logs.join("\n"), secretText)
    }))

  it.scopedLive("keeps the app's own S3 client settings (user agent, retry)", () =>
    Effect.gen(function*() {
      const scripted = yield* ScriptedServer.make(() => ({ status: 503, code: "SlowDown" }))
      const appSettings = S3ServiceConfig.setS3ServiceConfig({ customUserAgent: "my-app/1.0", maxAttempts: 2 })
      const store = yield* Effect.map(
        Layer.build(
          S3ObjectStore.layer({
            bucket: "scripted",
            endpoint: scripted.endpoint,
            region: "us-east-1",
            forcePathStyle: true,
            credentials: { accessKeyId: "a", secretAccessKey: Redacted.make("b") },
            requestTimeoutMs: 5_000
          }).pipe(Layer.provide(appSettings))
        ),
        Context.get(ObjectStore)
      )
      const error = failureOf(yield* Effect.exit(store.get("k")))
      assert.isTrue(error?._tag === "ObjectStoreUnavailable" && error.reason === "Throttled", JSON.stringify(error))
      const sent = scripted.requests()
      assert.strictEqual(sent.length, 2, "the app's maxAttempts: 2 was kept")
      assert.include(String(sent[0]?.headers["user-agent"] ?? ""), "my-app/1.0")
    }))

  it.scoped("warns about an unknown S3_TIER_S3_* name once; StorageConfig leaves the store's keys alone", () =>
    Effect.gen(function*() {
      const saved = { ...process.env }
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          process.env = saved
        })
      )
      process.env.S3_TIER_S3_BUCKT = "b-1"
      process.env.S3_TIER_S3_BUCKET = "b-1"
      const logs: Array<string> = []
      const capture = Logger.make(({ logLevel, message }) => {
        logs.push(`${logLevel.label} ${String(message)}`)
      })
      yield* Layer.build(StorageConfig.layerConfig).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
      assert.deepStrictEqual(logs, [])
      yield* S3ObjectStore.readOptions.pipe(
        Effect.provide(StorageConfig.layerDefaults),
        Effect.provide(Logger.replace(Logger.defaultLogger, capture))
      )
      assert.deepStrictEqual(logs, [
        "WARN unknown configuration key S3_TIER_S3_BUCKT (did you mean S3_TIER_S3_BUCKET?); it is ignored"
      ])
    }))
})
