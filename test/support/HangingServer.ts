/**
 * A TCP server on 127.0.0.1 that accepts connections, reads whatever is sent and never answers
 * (or, with `answerHead`, writes that much of an answer once a request arrives and then nothing
 * more: a body that stalls midway): the shape of a stalled object store. It counts accepted and open sockets, so a test can assert
 * that an interrupted request closed its socket (the client aborted it) instead of leaking it.
 * Waiting is event-driven (`awaitSockets` resolves on a socket change), never a sleep.
 */
import { Context, Effect, Layer, type Scope } from "effect"
import * as net from "node:net"

export interface HangingServerInfo {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string
  readonly port: number
  /** Sockets accepted since start. */
  readonly acceptedSockets: () => number
  /** Sockets open right now. */
  readonly openSockets: () => number
  /** Waits until the counts satisfy `predicate` (at once if they already do). */
  readonly awaitSockets: (
    predicate: (counts: { readonly accepted: number; readonly open: number }) => boolean
  ) => Effect.Effect<void>
}

export interface RunningHangingServer {
  readonly info: HangingServerInfo
  /** Destroys every open socket and closes the server. */
  readonly stop: () => Promise<void>
}

/** Starts the server (for vitest hooks; pair with `stop`). */
export const start = (options: { readonly answerHead?: string } = {}): Promise<RunningHangingServer> =>
  new Promise((resolve, reject) => {
    const sockets = new Set<net.Socket>()
    const listeners = new Set<() => void>()
    let accepted = 0
    const changed = () => {
      for (const listener of [...listeners]) listener()
    }
    const server = net.createServer((socket) => {
      accepted += 1
      sockets.add(socket)
      // Read and drop whatever arrives; write nothing, or the answer's head once.
      let answered = false
      socket.on("data", () => {
        if (options.answerHead === undefined || answered) return
        answered = true
        socket.write(options.answerHead)
      })
      socket.on("error", () => {})
      socket.on("close", () => {
        sockets.delete(socket)
        changed()
      })
      changed()
    })
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      if (address === null || typeof address === "string") {
        return reject(new Error("the hanging server has no TCP address"))
      }
      const counts = () => ({ accepted, open: sockets.size })
      const awaitSockets: HangingServerInfo["awaitSockets"] = (predicate) =>
        Effect.async<void>((resume) => {
          const check = () => {
            if (!predicate(counts())) return
            listeners.delete(check)
            resume(Effect.void)
          }
          listeners.add(check)
          check()
          return Effect.sync(() => listeners.delete(check))
        })
      resolve({
        info: {
          endpoint: `http://127.0.0.1:${address.port}`,
          port: address.port,
          acceptedSockets: () => accepted,
          openSockets: () => sockets.size,
          awaitSockets
        },
        stop: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => done())
          })
      })
    })
  })

/** The server as a scoped resource. */
export const makeWith = (
  options: { readonly answerHead?: string }
): Effect.Effect<HangingServerInfo, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(Effect.promise(() => start(options)), (running) => Effect.promise(() => running.stop())),
    (running) => running.info
  )

/** The server that never answers, as a scoped resource. */
export const make: Effect.Effect<HangingServerInfo, never, Scope.Scope> = makeWith({})

/** A running hanging server, for `it.layer`. */
export class HangingServer
  extends Context.Tag("effect-s3-tier/test/HangingServer")<HangingServer, HangingServerInfo>()
{}

export const layer: Layer.Layer<HangingServer> = Layer.scoped(HangingServer, make)

/** A port on 127.0.0.1 where nothing listens (bound, then closed): connections are refused. */
export const closedPort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      if (address === null || typeof address === "string") return reject(new Error("no TCP address"))
      server.close(() => resolve(address.port))
    })
  })
