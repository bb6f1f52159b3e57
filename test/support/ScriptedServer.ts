/**
 * An HTTP server on 127.0.0.1 that answers each request as a test scripts it: a status with an S3
 * error body (503 SlowDown, 429, 408 RequestCanceled …), a success, or a reset connection. It
 * records every request (method, path, headers, arrival time), so a test can assert what a client
 * sent and how often it retried. The shape of a real store under load shedding, without one.
 */
import { Effect, type Scope } from "effect"
import * as http from "node:http"

/** One recorded request. */
export interface ScriptedRequest {
  readonly method: string
  readonly path: string
  readonly headers: http.IncomingHttpHeaders
  /** performance.now() when the request's body had arrived. */
  readonly atMs: number
}

/** How to answer a request: a status (with an S3 error body when `code` is given), or a reset. */
export type ScriptedAnswer =
  | {
    readonly status: number
    readonly code?: string
    readonly headers?: Readonly<Record<string, string>>
    readonly body?: string
  }
  | "reset"

export interface ScriptedServerInfo {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string
  /** Every request so far, in arrival order. */
  readonly requests: () => ReadonlyArray<ScriptedRequest>
}

const errorBody = (code: string): string =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>scripted ${code}</Message><RequestId>scripted</RequestId></Error>`

/**
 * A server answering request number `index` (0-based) with `answer(request, index)`; closed, with
 * its open connections, when the scope closes.
 */
export const make = (
  answer: (request: ScriptedRequest, index: number) => ScriptedAnswer
): Effect.Effect<ScriptedServerInfo, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly info: ScriptedServerInfo; readonly server: http.Server }>((resume) => {
      const recorded: Array<ScriptedRequest> = []
      const server = http.createServer((request, response) => {
        request.resume()
        request.on("end", () => {
          const entry: ScriptedRequest = {
            method: request.method ?? "",
            path: request.url ?? "",
            headers: request.headers,
            atMs: performance.now()
          }
          recorded.push(entry)
          const reply = answer(entry, recorded.length - 1)
          if (reply === "reset") {
            request.socket.resetAndDestroy()
            return
          }
          const body = reply.body ?? (reply.code === undefined ? "" : errorBody(reply.code))
          response.writeHead(reply.status, {
            "content-type": "application/xml",
            "content-length": String(Buffer.byteLength(body)),
            ...(reply.status < 300 ? { etag: "\"d41d8cd98f00b204e9800998ecf8427e\"" } : {}),
            ...reply.headers
          })
          response.end(body)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        if (address === null || typeof address === "string") {
          return resume(Effect.dieMessage("the scripted server has no TCP address"))
        }
        resume(
          Effect.succeed({
            server,
            info: { endpoint: `http://127.0.0.1:${address.port}`, requests: () => [...recorded] }
          })
        )
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ info }) => info))
