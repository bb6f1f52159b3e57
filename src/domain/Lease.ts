/**
 * A reader's lease: the object `leases/<id>` that tells the garbage collector "this checkpoint is
 * being read; keep its objects (and the archived WAL from its position on) until `expiresAtMs`".
 * A reader writes it before it reads the checkpoint's root manifest and renews it while it reads;
 * the collector keeps every checkpoint a live lease names and removes expired leases.
 *
 * Replaces: nothing in OrioleDB, which deletes nothing. The model is Neon's LSN leases (a lease is
 * an object with an expiry that readers renew), not a timer guess.
 *
 * @since 0.2.0
 */
import { Either, ParseResult, Schema } from "effect"
import { CorruptObject } from "./Errors.js"
import { CheckpointNumber } from "./Ids.js"

export const leaseFormat = "effect-s3-tier/lease@1" as const

/** The body of `leases/<id>`. @category models */
export const ReaderLease = Schema.Struct({
  format: Schema.Literal(leaseFormat),
  id: Schema.String,
  /** The checkpoint whose objects the reader needs. */
  checkpoint: CheckpointNumber,
  /** Who reads (a command and a process), for `inspect`. */
  holder: Schema.String,
  createdAtMs: Schema.Int.pipe(Schema.nonNegative()),
  /** The lease protects nothing once this instant (plus the collector's skew allowance) has passed. */
  expiresAtMs: Schema.Int.pipe(Schema.nonNegative())
})
export type ReaderLease = typeof ReaderLease.Type

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

export const encode = (lease: ReaderLease): Uint8Array =>
  encoder.encode(JSON.stringify(Schema.encodeSync(ReaderLease)(lease)))

/** Decodes a lease read from `key`; anything else is a CorruptObject naming the key. */
export const decode = (key: string, bytes: Uint8Array): Either.Either<ReaderLease, CorruptObject> => {
  let json: unknown
  try {
    json = JSON.parse(decoder.decode(bytes))
  } catch (cause) {
    return Either.left(new CorruptObject({ key, detail: `not a JSON lease (${bytes.length} bytes): ${String(cause)}` }))
  }
  return Either.mapLeft(
    Schema.decodeUnknownEither(ReaderLease)(json, { onExcessProperty: "ignore" }),
    (error) =>
      new CorruptObject({ key, detail: `not a valid lease: ${ParseResult.TreeFormatter.formatErrorSync(error)}` })
  )
}
