/**
 * One S3 request's SDK calls under a deadline (`sendWith`), and the read of a GetObject body
 * (`readBody`): one AbortController per request, aborted by the request's deadline or by an
 * interruption of the calling fiber; a call whose signal has aborted fails at once, whether or
 * not the SDK honours the abort, and a body is consumed or destroyed on every exit path.
 *
 * Replaces: OrioleDB's src/s3/requests.c, whose libcurl requests had no timeout and could not be
 * cancelled (docs/ORIGINAL.md §7).
 */
import type { GetObjectCommandOutput } from "@aws-sdk/client-s3"
import { Effect } from "effect"

const isDestroyable = (value: unknown): value is { readonly destroy: () => void } =>
  typeof value === "object" && value !== null && "destroy" in value && typeof value.destroy === "function"

/** An SDK call of a request, made with the request's deadline. */
export type Send = <A>(call: (signal: AbortSignal) => Promise<A>) => Effect.Effect<A, unknown>

/** What a request's SDK call fails with once its deadline has passed (told apart from SDK errors). */
export const deadlinePassed: unique symbol = Symbol("deadlinePassed")

/** `promise`'s outcome, or a rejection as soon as `deadline` aborts, whether or not the SDK
 * honours the abort. */
const beforeDeadline = <A>(promise: Promise<A>, deadline: AbortSignal): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const passed = () => reject(deadlinePassed)
    if (deadline.aborted) return passed()
    deadline.addEventListener("abort", passed, { once: true })
    promise.then(resolve, reject).finally(() => deadline.removeEventListener("abort", passed))
  })

/** The `Send` of a request: each call runs under `request`'s signal, which the request's deadline
 * aborts and so does an interruption of the calling fiber; any other failure is the raw SDK error.
 * (One controller per request: `AbortSignal.any` of the fiber's and the deadline's signals cost
 * every request a composite signal and its weak references.) */
export const sendWith = (request: AbortController): Send => <A>(call: (signal: AbortSignal) => Promise<A>) =>
  Effect.async<A, unknown>((resume) => {
    const signal = request.signal
    beforeDeadline(call(signal), signal).then(
      (value) => resume(Effect.succeed(value)),
      (error: unknown) => resume(Effect.fail(signal.aborted ? deadlinePassed : error))
    )
    return Effect.sync(() => request.abort())
  })

/** A body's chunks in `into` while they fit, then in fresh bytes (the result is a view of `into`
 * only if all of them fit). Nothing is written into `into` once `signal` has aborted: the request
 * has ended, and its caller may own the buffer again. */
const collectInto = async (
  body: AsyncIterable<Uint8Array>,
  into: Uint8Array,
  signal: AbortSignal
): Promise<Uint8Array> => {
  let length = 0
  let spilled: Array<Uint8Array> | undefined
  for await (const chunk of body) {
    if (signal.aborted) throw signal.reason
    if (spilled === undefined && length + chunk.length <= into.length) {
      into.set(chunk, length)
    } else {
      spilled ??= [into.slice(0, length)]
      spilled.push(chunk)
    }
    length += chunk.length
  }
  if (spilled === undefined) return into.subarray(0, length)
  const bytes = new Uint8Array(length)
  let offset = 0
  for (const chunk of spilled) {
    bytes.set(chunk, offset)
    offset += chunk.length
  }
  return bytes
}

const isAsyncIterable = (value: unknown): value is AsyncIterable<Uint8Array> =>
  typeof value === "object" && value !== null && Symbol.asyncIterator in value

/** Reads a GetObject body to bytes (into `into` when given, it fits and the body is a Node stream);
 * destroys the stream if the read fails or `signal` aborts (whether or not the SDK's own abort
 * still covers the response: it does in the pinned version). */
export const readBody = async (
  body: NonNullable<GetObjectCommandOutput["Body"]>,
  signal: AbortSignal,
  into: Uint8Array | undefined
): Promise<Uint8Array> => {
  const destroy = () => {
    if (isDestroyable(body)) body.destroy()
  }
  if (signal.aborted) {
    destroy()
    throw signal.reason
  }
  signal.addEventListener("abort", destroy, { once: true })
  try {
    return into !== undefined && isAsyncIterable(body)
      ? await collectInto(body, into, signal)
      : await body.transformToByteArray()
  } catch (error) {
    destroy()
    throw error
  } finally {
    signal.removeEventListener("abort", destroy)
  }
}
