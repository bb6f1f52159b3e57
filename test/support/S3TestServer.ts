/**
 * An S3 server for tests: s3rver 3.7.1 in-process on 127.0.0.1 (port 0), storing into a fresh temp
 * directory, with one bucket created; stopped and its directory removed afterwards. Usable as an
 * Effect scoped resource (`make`, `layer` with the `S3TestServer` tag, for `it.layer`) and from
 * vitest hooks (`start` → `stop`).
 *
 * An external S3 server instead: when `S3_TEST_ENDPOINT` is set, `start` starts nothing and hands
 * out that endpoint with `S3_TEST_BUCKET` (which must exist), `S3_TEST_REGION` (default us-east-1),
 * `S3_TEST_ACCESS_KEY_ID` and `S3_TEST_SECRET_ACCESS_KEY` (scripts/rgw.sh prints these for a
 * throwaway Ceph RGW). Its `shim` is undefined: a test of the s3rver harness itself is skipped
 * there with `shimOnly`, which prints why.
 *
 * s3rver differs from S3 in ways that would make tests check s3rver's semantics instead of S3's
 * (each listed below). A Koa middleware placed before s3rver's own, plus two
 * replaced store methods, give S3's behaviour back:
 * - conditional puts: `If-None-Match: *` on an existing key answers 412 PreconditionFailed; the
 *   check and the write run under a per-key lock, so of concurrent conditional puts exactly one
 *   wins (every PUT of an object takes that lock);
 * - PUT bodies are buffered first; a request the client aborted midway writes nothing (s3rver
 *   would commit a truncated object after destroying the old one);
 * - a PUT that declares its body's SHA-256 in `x-amz-content-sha256` is refused with 400
 *   XAmzContentSHA256Mismatch when the body does not match it, as S3 does (counted when it matches);
 * - `aws-chunked` bodies are decoded (counted in `stats`, so a test can assert the client never
 *   sends them);
 * - AbortMultipartUpload (`DELETE ?uploadId=`) answers 204 after removing the upload;
 * - a Range GET of an empty object answers 416 (s3rver resets the connection);
 * - ListObjectsV2 without a delimiter is answered here: keys in S3's order (UTF-8 bytes; s3rver's
 *   directory walk is not), continuation tokens that need no legacy OpenSSL cipher (s3rver's DES
 *   tokens fail on OpenSSL 3), at most 1000 keys a page;
 * - objects are written to a temp file and renamed into place (atomic for readers), and deletes
 *   leave directories in place (s3rver's cleanup races with concurrent puts in the same folder).
 * Keys with a `.`, `..` or empty path segment (other than a trailing '/') are refused with 400:
 * s3rver stores keys as paths and would silently alias them. s3rver checks the access key id
 * (unknown → 403 InvalidAccessKeyId) but not the V4 signature: a wrong secret is accepted.
 */
import { Context, Effect, Layer, type Scope } from "effect"
import { createHash, randomUUID } from "node:crypto"
import * as fsp from "node:fs/promises"
import type { IncomingMessage } from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { PassThrough, type Readable } from "node:stream"
import S3rver from "s3rver"

/** What a test needs to reach the server. */
export interface S3TestServerInfo {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string
  readonly port: number
  readonly bucket: string
  readonly region: string
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string }
  /** The s3rver harness; undefined when the server is external (`S3_TEST_ENDPOINT`). */
  readonly shim: S3rverShim | undefined
}

/** What only the in-process s3rver and its harness offer. */
export interface S3rverShim {
  /** Where s3rver stores the bucket (removed at stop). */
  readonly directory: string
  /** What the harness did, for assertions. */
  readonly stats: () => S3TestServerStats
  /**
   * Writes objects straight into s3rver's store, without HTTP (as a PUT would store them): for
   * tests that need many objects and test something else than PUT (listing 1000+ keys).
   */
  readonly seed: (objects: ReadonlyArray<readonly [string, Uint8Array]>) => Effect.Effect<void>
  /** Waits until the stats satisfy `predicate` (at once if they already do); event-driven. */
  readonly awaitStats: (predicate: (stats: S3TestServerStats) => boolean) => Effect.Effect<void>
}

export interface S3TestServerStats {
  /** PUTs whose client went away before the body was complete (nothing was written). */
  readonly abortedPuts: number
  /** PUT bodies that came `aws-chunked` and were decoded. */
  readonly awsChunkedPuts: number
  /** Conditional puts answered 412. */
  readonly preconditionFailures: number
  /** PUTs whose body matched the hex SHA-256 they declared in `x-amz-content-sha256`. */
  readonly verifiedContentSha256Puts: number
}

export interface RunningS3TestServer {
  readonly info: S3TestServerInfo
  /** Closes the server (and its open connections) and removes its directory. */
  readonly stop: () => Promise<void>
}

export interface S3TestServerOptions {
  /** Default "test-bucket" (s3rver wants at least 3 characters); an external server's bucket is `S3_TEST_BUCKET`. */
  readonly bucket?: string
  /**
   * Whether the harness decides `If-None-Match: *` puts (default true). False gives s3rver's own
   * behaviour, a store that ignores the condition: every conditional put overwrites.
   */
  readonly conditionalPuts?: boolean
}

/** The external S3 server named by the environment, or undefined (then tests use s3rver). */
export interface ExternalS3 {
  readonly endpoint: string
  readonly bucket: string
  readonly region: string
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string }
}

const fromEnvironment = (): ExternalS3 | undefined => {
  const endpoint = process.env["S3_TEST_ENDPOINT"]
  if (endpoint === undefined || endpoint === "") return undefined
  const required = (name: string): string => {
    const value = process.env[name]
    if (value === undefined || value === "") throw new Error(`S3_TEST_ENDPOINT is set, so ${name} must be set too`)
    return value
  }
  return {
    endpoint,
    bucket: required("S3_TEST_BUCKET"),
    region: process.env["S3_TEST_REGION"] || "us-east-1",
    credentials: {
      accessKeyId: required("S3_TEST_ACCESS_KEY_ID"),
      secretAccessKey: required("S3_TEST_SECRET_ACCESS_KEY")
    }
  }
}

/** The external server the tests run against, when the environment names one. */
export const external: ExternalS3 | undefined = fromEnvironment()

/**
 * Whether a test of the s3rver harness itself must be skipped (the server is external); prints the
 * test's name and the reason when it is. Use as `it.skipIf(shimOnly(name, reason))(name, …)`.
 */
export const shimOnly = (name: string, reason: string): boolean => {
  if (external === undefined) return false
  console.log(`skipped against ${external.endpoint}: "${name}": ${reason}`)
  return true
}

/** A string unique to this test process, for key prefixes on a bucket that outlives the run. */
export const runId: string = randomUUID().slice(0, 8)

const objectSuffix = "._S3rver_object"
const listPageKeysMax = 1000
const accessKeyId = "S3RVER"
const secretAccessKey = "S3RVER"

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const xmlEscape = (text: string): string =>
  text.replace(
    /[&<>"']/g,
    (character) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&apos;" })[character] ?? character
  )

const sendError = (context: S3rver.KoaContext, status: number, code: string, message: string): void => {
  context.status = status
  context.type = "application/xml"
  context.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${
    xmlEscape(message)
  }</Message></Error>`
}

const queryValue = (context: S3rver.KoaContext, name: string): string | undefined => {
  const value = context.query[name]
  return typeof value === "string" ? value : undefined
}

/** The whole body, or undefined when the client went away before sending all of it. */
const readBody = (request: IncomingMessage): Promise<Buffer | undefined> =>
  new Promise((resolve) => {
    const chunks: Array<Buffer> = []
    let ended = false
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      ended = true
      const body = Buffer.concat(chunks)
      const declared = request.headers["content-length"]
      resolve(request.complete && (declared === undefined || Number(declared) === body.length) ? body : undefined)
    })
    request.on("error", () => resolve(undefined))
    request.on("close", () => {
      if (!ended) resolve(undefined)
    })
  })

/** Decodes an `aws-chunked` body (signed or unsigned chunks, trailers ignored); undefined if malformed. */
export const decodeAwsChunked = (body: Buffer): Buffer | undefined => {
  const chunks: Array<Buffer> = []
  let position = 0
  for (;;) {
    const lineEnd = body.indexOf("\r\n", position)
    if (lineEnd < 0) return undefined
    const sizeText = body.subarray(position, lineEnd).toString("latin1").split(";")[0] ?? ""
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) return undefined
    const size = parseInt(sizeText, 16)
    position = lineEnd + 2
    if (size === 0) return Buffer.concat(chunks)
    if (position + size + 2 > body.length) return undefined
    chunks.push(body.subarray(position, position + size))
    position += size
    if (body[position] !== 0x0d || body[position + 1] !== 0x0a) return undefined
    position += 2
  }
}

const isAwsChunked = (context: S3rver.KoaContext): boolean =>
  (context.get("content-encoding") ?? "").split(",").some((value) => value.trim() === "aws-chunked") ||
  context.get("x-amz-content-sha256").startsWith("STREAMING-")

/** Bucket and key of a path-style URL; key undefined for bucket-level requests. */
const target = (urlPath: string): { readonly bucket: string; readonly key: string | undefined } | undefined => {
  const match = /^\/([^/]+)(?:\/(.*))?$/.exec(urlPath)
  if (match === null || match[1] === undefined) return undefined
  try {
    const rest = match[2]
    return {
      bucket: decodeURIComponent(match[1]),
      key: rest === undefined || rest === "" ? undefined : decodeURIComponent(rest)
    }
  } catch {
    return undefined
  }
}

/** s3rver maps keys to paths: `.`, `..` and empty segments (but a trailing '/') would alias. */
const unsafeKey = (key: string): boolean => {
  const segments = key.split("/")
  return segments.some((segment, index) =>
    segment === "." || segment === ".." || (segment === "" && index !== segments.length - 1)
  )
}

const collect = async (content: Readable | Uint8Array): Promise<Buffer> => {
  if (content instanceof Uint8Array) return Buffer.from(content)
  const chunks: Array<Buffer> = []
  for await (const chunk of content) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array))
  return Buffer.concat(chunks)
}

/** A mutex per key: the callbacks of one key run one at a time, in arrival order. */
const keyLocks = () => {
  const tails = new Map<string, Promise<void>>()
  return async <A>(key: string, body: () => Promise<A>): Promise<A> => {
    const previous = tails.get(key) ?? Promise.resolve()
    let release = () => {}
    const current = new Promise<void>((resolve) => {
      release = resolve
    })
    const tail = previous.then(() => current)
    tails.set(key, tail)
    await previous
    try {
      return await body()
    } finally {
      release()
      if (tails.get(key) === tail) tails.delete(key)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------------------------

const exists = (file: string): Promise<boolean> => fsp.stat(file).then(() => true, () => false)

/** Every key below `directory` (relative key prefix `keyPrefix`), unsorted. */
const walkKeys = async (directory: string, keyPrefix: string, keys: Array<string>): Promise<void> => {
  const entries = await fsp.readdir(directory, { withFileTypes: true }).catch(() => [])
  for (const entry of entries) {
    if (entry.isDirectory()) await walkKeys(path.join(directory, entry.name), `${keyPrefix}${entry.name}/`, keys)
    else if (entry.name.endsWith(objectSuffix)) keys.push(keyPrefix + entry.name.slice(0, -objectSuffix.length))
  }
}

const compareUtf8 = (left: string, right: string): number => Buffer.compare(Buffer.from(left), Buffer.from(right))

const listObjectsV2 = async (
  context: S3rver.KoaContext,
  store: S3rver.FilesystemStore,
  bucket: string
): Promise<void> => {
  const prefix = queryValue(context, "prefix") ?? ""
  const maxKeysText = queryValue(context, "max-keys")
  const maxKeys = maxKeysText === undefined
    ? listPageKeysMax
    : Math.max(0, Math.min(listPageKeysMax, Number(maxKeysText)))
  const token = queryValue(context, "continuation-token")
  const startAfter = token !== undefined
    ? Buffer.from(token, "base64url").toString("utf8")
    : queryValue(context, "start-after") ?? ""
  const bucketPath = store.getBucketPath(bucket)
  const directorySegments = prefix.split("/").slice(0, -1)
  const keys: Array<string> = []
  await walkKeys(
    path.join(bucketPath, ...directorySegments),
    directorySegments.map((segment) => `${segment}/`).join(""),
    keys
  )
  const after = keys.filter((key) => key.startsWith(prefix) && compareUtf8(key, startAfter) > 0).sort(compareUtf8)
  const page = after.slice(0, maxKeys)
  const truncated = after.length > page.length
  const contents = await Promise.all(
    page.map(async (key) => {
      const stat = await fsp.stat(store.getResourcePath(bucket, key, "object")).catch(() => undefined)
      if (stat === undefined) return ""
      return `<Contents><Key>${
        xmlEscape(key)
      }</Key><LastModified>${stat.mtime.toISOString()}</LastModified><Size>${stat.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`
    })
  )
  const last = page[page.length - 1]
  const next = truncated && last !== undefined
    ? `<NextContinuationToken>${Buffer.from(last).toString("base64url")}</NextContinuationToken>`
    : ""
  context.status = 200
  context.type = "application/xml"
  context.body = [
    `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`,
    `<Name>${xmlEscape(bucket)}</Name><Prefix>${xmlEscape(prefix)}</Prefix><KeyCount>${page.length}</KeyCount>`,
    `<MaxKeys>${maxKeys}</MaxKeys><IsTruncated>${truncated}</IsTruncated>`,
    token === undefined ? "" : `<ContinuationToken>${xmlEscape(token)}</ContinuationToken>`,
    next,
    ...contents,
    "</ListBucketResult>"
  ].join("")
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

const fixStore = (store: S3rver.FilesystemStore): void => {
  let tempCounter = 0
  store.putObject = async (object) => {
    const bytes = await collect(object.content)
    const objectPath = store.getResourcePath(object.bucket, object.key, "object")
    await fsp.mkdir(path.dirname(objectPath), { recursive: true })
    tempCounter += 1
    const tempPath = `${objectPath}.harness-${tempCounter}`
    await fsp.writeFile(tempPath, bytes)
    await fsp.rename(tempPath, objectPath)
    const md5 = createHash("md5").update(bytes).digest("hex")
    await store.putMetadata(object.bucket, object.key, object.metadata, md5)
    return { size: bytes.length, md5 }
  }
  store.deleteObject = async (bucket, key) => {
    const files = ["object", "object.md5", "metadata.json"].map((resource) =>
      store.getResourcePath(bucket, key, resource)
    )
    await Promise.all(
      files.map((file) =>
        fsp.unlink(file).catch((
          error: NodeJS.ErrnoException
        ) => (error.code === "ENOENT" ? undefined : Promise.reject(error)))
      )
    )
  }
}

interface MutableStats {
  abortedPuts: number
  awsChunkedPuts: number
  preconditionFailures: number
  verifiedContentSha256Puts: number
}

const harness = (
  store: S3rver.FilesystemStore,
  stats: MutableStats,
  changed: () => void,
  conditionalPuts: boolean
): S3rver.Middleware => {
  const withKeyLock = keyLocks()
  return async (context, next) => {
    const resource = target(context.path)
    if (resource === undefined) return next()
    const { bucket, key } = resource
    if (key === undefined) {
      const listV2 = context.method === "GET" && queryValue(context, "list-type") === "2" &&
        queryValue(context, "delimiter") === undefined
      if (listV2 && (await exists(store.getBucketPath(bucket)))) return listObjectsV2(context, store, bucket)
      return next()
    }
    if (unsafeKey(key)) {
      return sendError(
        context,
        400,
        "InvalidArgument",
        `the s3rver test harness cannot store key ${JSON.stringify(key)}: a '.', '..' or empty path segment`
      )
    }
    if (context.method === "DELETE" && queryValue(context, "uploadId") !== undefined) {
      const uploadId = queryValue(context, "uploadId") ?? ""
      const uploadDirectory = path.join(store.getResourcePath(bucket, undefined, "uploads"), uploadId)
      if (!/^[0-9a-f]+$/i.test(uploadId) || !(await exists(uploadDirectory))) {
        return sendError(context, 404, "NoSuchUpload", "The specified upload does not exist.")
      }
      await fsp.rm(uploadDirectory, { recursive: true, force: true })
      context.status = 204
      context.body = null
      return
    }
    if (context.method === "GET" && context.get("range") !== "") {
      // s3rver answers a Range on an empty object by resetting the connection; S3 answers 416.
      const stat = await fsp.stat(store.getResourcePath(bucket, key, "object")).catch(() => undefined)
      if (stat !== undefined && stat.size === 0) {
        return sendError(context, 416, "InvalidRange", "The requested range is not satisfiable")
      }
    }
    if (context.method !== "PUT") return next()
    const body = await readBody(context.req as IncomingMessage)
    if (body === undefined) {
      stats.abortedPuts += 1
      changed()
      return sendError(
        context,
        400,
        "IncompleteBody",
        "the client sent less than the declared body; nothing was written"
      )
    }
    let content = body
    if (isAwsChunked(context)) {
      const decoded = decodeAwsChunked(body)
      if (decoded === undefined) return sendError(context, 400, "InvalidChunkSizeError", "malformed aws-chunked body")
      stats.awsChunkedPuts += 1
      changed()
      content = decoded
      const encodings = (context.get("content-encoding") ?? "").split(",").map((value) => value.trim()).filter((
        value
      ) => value !== "" && value !== "aws-chunked")
      if (encodings.length === 0) delete context.headers["content-encoding"]
      else context.headers["content-encoding"] = encodings.join(",")
    }
    // S3 checks a declared payload hash (64 hex digits; not UNSIGNED-PAYLOAD or STREAMING-…) against
    // the body and refuses a mismatch; s3rver does not look at it.
    const declared = context.get("x-amz-content-sha256").trim().toLowerCase()
    if (/^[0-9a-f]{64}$/.test(declared)) {
      if (createHash("sha256").update(content).digest("hex") !== declared) {
        return sendError(
          context,
          400,
          "XAmzContentSHA256Mismatch",
          "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
      }
      stats.verifiedContentSha256Puts += 1
      changed()
    }
    const stream = new PassThrough()
    stream.end(content)
    context.req = stream
    const conditional = conditionalPuts && context.get("if-none-match").trim() === "*"
    return withKeyLock(`${bucket}/${key}`, async () => {
      if (conditional && (await store.existsObject(bucket, key))) {
        stats.preconditionFailures += 1
        changed()
        return sendError(
          context,
          412,
          "PreconditionFailed",
          "At least one of the pre-conditions you specified did not hold"
        )
      }
      await next()
    })
  }
}

/** The external server as a running one: nothing to start or stop. */
const useExternal = (server: ExternalS3): RunningS3TestServer => {
  const url = new URL(server.endpoint)
  const port = url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port)
  return { info: { ...server, port, shim: undefined }, stop: () => Promise.resolve() }
}

/**
 * Starts a server with one bucket (for vitest hooks; pair with `stop`): the external one when the
 * environment names it (unless `s3rverOnly`), otherwise s3rver.
 */
export const start = (
  options: S3TestServerOptions & { readonly s3rverOnly?: boolean } = {}
): Promise<RunningS3TestServer> =>
  external !== undefined && options.s3rverOnly !== true ? Promise.resolve(useExternal(external)) : startS3rver(options)

/** Starts s3rver with one bucket and the harness, whatever the environment says. */
export const startS3rver = async (options: S3TestServerOptions = {}): Promise<RunningS3TestServer> => {
  const bucket = options.bucket ?? "test-bucket"
  const directory = await fsp.mkdtemp(path.join(os.tmpdir(), "s3rver-"))
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory,
    vhostBuckets: false,
    configureBuckets: [{ name: bucket }]
  })
  const stats: MutableStats = {
    abortedPuts: 0,
    awsChunkedPuts: 0,
    preconditionFailures: 0,
    verifiedContentSha256Puts: 0
  }
  const listeners = new Set<() => void>()
  const changed = () => {
    for (const listener of [...listeners]) listener()
  }
  const awaitStats = (predicate: (current: S3TestServerStats) => boolean): Effect.Effect<void> =>
    Effect.async<void>((resume) => {
      const check = () => {
        if (!predicate({ ...stats })) return
        listeners.delete(check)
        resume(Effect.void)
      }
      listeners.add(check)
      check()
      return Effect.sync(() => listeners.delete(check))
    })
  fixStore(server.store)
  server.middleware.unshift(harness(server.store, stats, changed, options.conditionalPuts ?? true))
  const address = await server.run()
  const endpoint = `http://127.0.0.1:${address.port}`
  let stopped = false
  return {
    info: {
      endpoint,
      port: address.port,
      bucket,
      region: "us-east-1",
      credentials: { accessKeyId, secretAccessKey },
      shim: {
        directory,
        stats: () => ({ ...stats }),
        // Only the object files: s3rver makes the md5 file on first read and needs no metadata file.
        seed: (objects) =>
          Effect.promise(async () => {
            const paths = objects.map(([key, bytes]) =>
              [server.store.getResourcePath(bucket, key, "object"), bytes] as const
            )
            for (const directory of new Set(paths.map(([file]) => path.dirname(file)))) {
              await fsp.mkdir(directory, { recursive: true })
            }
            for (let start = 0; start < paths.length; start += 64) {
              await Promise.all(paths.slice(start, start + 64).map(([file, bytes]) => fsp.writeFile(file, bytes)))
            }
          }),
        awaitStats
      }
    },
    stop: async () => {
      if (stopped) return
      stopped = true
      server.httpServer?.closeAllConnections()
      await server.close()
      await fsp.rm(directory, { recursive: true, force: true })
    }
  }
}

/** The server as a scoped resource: started now, stopped when the scope closes. */
export const make = (options: S3TestServerOptions = {}): Effect.Effect<S3TestServerInfo, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(Effect.promise(() => start(options)), (running) => Effect.promise(() => running.stop())),
    (running) => running.info
  )

/** The running test server, for `it.layer`. */
export class S3TestServer extends Context.Tag("effect-s3-tier/test/S3TestServer")<S3TestServer, S3TestServerInfo>() {}

export const layer = (options: S3TestServerOptions = {}): Layer.Layer<S3TestServer> =>
  Layer.scoped(S3TestServer, make(options))
