/**
 * A fast S3 endpoint for the benchmarks: the S3 protocol subset the library speaks (PutObject with
 * create-if-absent, GetObject with a range, HeadObject, DeleteObject, ListObjectsV2, HeadBucket),
 * over objects kept in memory, with no hashing, no disk and no signature check. It does almost no
 * work per byte, so against it the client, not the server, is the bound: what a network fast
 * enough for the client to be the limit looks like. `startFastS3ServerProcess` (bench/common.ts)
 * runs it in a process of its own, as a real endpoint never shares the client's event loop.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"

interface StoredObject {
  readonly body: Buffer
  readonly etag: string
  readonly lastModified: Date
}

const xmlEscape = (text: string): string =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(
    /'/g,
    "&apos;"
  )

const errorXml = (code: string, message: string): string =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${
    xmlEscape(message)
  }</Message><RequestId>fast</RequestId></Error>`

const listPageKeysMax = 1000

/** S3 lists keys in the order of their UTF-8 bytes (not JavaScript's UTF-16 order). */
const utf8Order = (left: string, right: string): number => Buffer.compare(Buffer.from(left), Buffer.from(right))

/** The running server: its endpoint and a way to close it. */
export interface FastS3Server {
  readonly endpoint: string
  readonly port: number
  readonly objectCount: () => number
  readonly close: () => Promise<void>
}

/** Starts the server on 127.0.0.1 (an ephemeral port unless `port` is given) with the given buckets. */
export const start = (buckets: ReadonlyArray<string>, port = 0): Promise<FastS3Server> => {
  const stores = new Map(buckets.map((bucket) => [bucket, new Map<string, StoredObject>()]))
  let generation = 0
  const server = http.createServer((request, response) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)
      answer(request, body, response)
    })
  })
  server.keepAliveTimeout = 60_000

  const fail = (response: http.ServerResponse, status: number, code: string, message: string, head = false): void => {
    const text = errorXml(code, message)
    response.writeHead(status, {
      "content-type": "application/xml",
      "content-length": head ? 0 : Buffer.byteLength(text)
    })
    response.end(head ? undefined : text)
  }

  const answer = (request: http.IncomingMessage, body: Buffer, response: http.ServerResponse): void => {
    // The path is split by hand: URL parsing would resolve a key's "." and ".." segments.
    const raw = request.url ?? "/"
    const question = raw.indexOf("?")
    const pathname = question < 0 ? raw : raw.slice(0, question)
    const query = new URLSearchParams(question < 0 ? "" : raw.slice(question + 1))
    const slash = pathname.indexOf("/", 1)
    const bucket = decodeURIComponent(slash < 0 ? pathname.slice(1) : pathname.slice(1, slash))
    const key = slash < 0 ? "" : decodeURIComponent(pathname.slice(slash + 1))
    const method = request.method ?? "GET"
    const objects = stores.get(bucket)
    if (objects === undefined) return fail(response, 404, "NoSuchBucket", `no bucket ${bucket}`, method === "HEAD")
    if (key === "") {
      if (method === "HEAD") return void response.writeHead(200).end()
      if (method === "GET" && query.get("list-type") === "2") return list(bucket, objects, query, response)
      return fail(response, 400, "NotImplemented", `${method} on a bucket`)
    }
    const stored = objects.get(key)
    switch (method) {
      case "PUT": {
        const createOnly = request.headers["if-none-match"] === "*" ||
          request.headers["x-goog-if-generation-match"] === "0"
        if (createOnly && stored !== undefined) return fail(response, 412, "PreconditionFailed", "the object exists")
        const ifMatch = request.headers["if-match"]
        if (ifMatch !== undefined && ifMatch !== stored?.etag) {
          return fail(response, 412, "PreconditionFailed", "the etag differs")
        }
        const etag = `"${(++generation).toString(16).padStart(32, "0")}"`
        objects.set(key, { body, etag, lastModified: new Date() })
        response.writeHead(200, { etag, "content-length": 0 })
        return void response.end()
      }
      case "GET":
      case "HEAD": {
        if (stored === undefined) return fail(response, 404, "NoSuchKey", `no key ${key}`, method === "HEAD")
        const headers: http.OutgoingHttpHeaders = {
          etag: stored.etag,
          "last-modified": stored.lastModified.toUTCString(),
          "accept-ranges": "bytes"
        }
        const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? "")
        if (method === "GET" && range !== null) {
          const size = stored.body.length
          const first = Number(range[1])
          const last = Math.min(range[2] === "" ? size - 1 : Number(range[2]), size - 1)
          if (first >= size) return fail(response, 416, "InvalidRange", "the range starts past the end")
          response.writeHead(206, {
            ...headers,
            "content-length": last - first + 1,
            "content-range": `bytes ${first}-${last}/${size}`
          })
          return void response.end(stored.body.subarray(first, last + 1))
        }
        response.writeHead(200, { ...headers, "content-length": stored.body.length })
        return void response.end(method === "HEAD" ? undefined : stored.body)
      }
      case "DELETE":
        objects.delete(key)
        return void response.writeHead(204).end()
      default:
        return fail(response, 405, "MethodNotAllowed", method)
    }
  }

  const list = (
    bucket: string,
    objects: Map<string, StoredObject>,
    query: URLSearchParams,
    response: http.ServerResponse
  ): void => {
    const prefix = query.get("prefix") ?? ""
    const after = query.get("continuation-token") ?? query.get("start-after") ?? ""
    const maxKeys = Math.min(Number(query.get("max-keys") ?? listPageKeysMax), listPageKeysMax)
    const keys = [...objects.keys()].filter((key) => key.startsWith(prefix) && utf8Order(key, after) > 0).sort(
      utf8Order
    )
    const page = keys.slice(0, maxKeys)
    const truncated = keys.length > page.length
    const contents = page.map((key) => {
      const object = objects.get(key) as StoredObject
      return `<Contents><Key>${
        xmlEscape(key)
      }</Key><LastModified>${object.lastModified.toISOString()}</LastModified><ETag>${
        xmlEscape(object.etag)
      }</ETag><Size>${object.body.length}</Size><StorageClass>STANDARD</StorageClass></Contents>`
    })
    const next = truncated
      ? `<NextContinuationToken>${xmlEscape(page[page.length - 1] as string)}</NextContinuationToken>`
      : ""
    const text =
      `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${
        xmlEscape(bucket)
      }</Name><Prefix>${
        xmlEscape(prefix)
      }</Prefix><KeyCount>${page.length}</KeyCount><MaxKeys>${maxKeys}</MaxKeys><IsTruncated>${truncated}</IsTruncated>${
        contents.join("")
      }${next}</ListBucketResult>`
    response.writeHead(200, { "content-type": "application/xml", "content-length": Buffer.byteLength(text) })
    response.end(text)
  }

  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, "127.0.0.1", () => {
      const address = server.address() as AddressInfo
      resolve({
        endpoint: `http://127.0.0.1:${address.port}`,
        port: address.port,
        objectCount: () => [...stores.values()].reduce((sum, objects) => sum + objects.size, 0),
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections()
            server.close(() => done())
          })
      })
    })
  })
}
