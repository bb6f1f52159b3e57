/**
 * The crash test's writer: an application of the storage tier, run as its own process
 * (`node --import tsx test/crash/child.ts …`) so that the campaign (test/crash/Campaign.ts) can
 * SIGKILL it at any moment.
 *
 * It opens `Storage.layer` over the embedded bucket directory (FileObjectStore) and a data directory
 * (FileSystemDisk) with a replay function, as an application does; checks that every insert in the
 * check file (what the ledger says must be there) reads back with its exact bytes; then W writer
 * fibers insert: write the page through a lease, append its WAL record (apply, then log), commit,
 * and only then append `ack …` to the ledger, fsynced. Optional on-demand checkpoints run beside them;
 * after `--inserts` inserts (or on SIGTERM) it shuts down. With `--restore` it only opens (taking the
 * bucket over) and checks.
 *
 * Markers on stdout, one a line, let the campaign time its kill into a phase:
 *   phase open | phase replay (first replayed record) | phase opened <json> | verify <json> |
 *   phase writing | phase archive <segment> (a segment filled: its upload starts with this commit) |
 *   phase checkpoint | phase checkpoint-done <outcome> | phase shutdown |
 *   phase holding (--hold: the inserts are done; no shutdown) | shutdown <json> | fenced |
 *   open-failed <tag> <message> | done
 */
import { Cause, Effect, Either, Layer, Logger, LogLevel, Option, Ref } from "effect"
import * as fs from "node:fs"
import * as Ids from "../../src/domain/Ids.js"
import * as FileObjectStore from "../../src/layers/FileObjectStore.js"
import * as FileSystemDisk from "../../src/layers/FileSystemDisk.js"
import * as Storage from "../../src/layers/Storage.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as Model from "./Model.js"

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

const argv = process.argv.slice(2)
const flag = (name: string): boolean => argv.includes(`--${name}`)
const option = (name: string, fallback: string): string => {
  const index = argv.indexOf(`--${name}`)
  return index >= 0 && index + 1 < argv.length ? (argv[index + 1] ?? fallback) : fallback
}
const required = (name: string): string => {
  const value = option(name, "")
  if (value === "") throw new Error(`--${name} is required`)
  return value
}

const args = {
  data: required("data"),
  bucket: required("bucket"),
  ledger: required("ledger"),
  check: option("check", ""),
  owner: option("owner", "w"),
  writers: Number(option("writers", "4")),
  inserts: Number(option("inserts", "0")), // 0: until killed
  checkpointIntervalMs: Number(option("checkpoint-interval", "0")),
  checkpointEveryMs: Number(option("checkpoint-every", "0")), // on-demand checkpoints; 0: none
  segmentBytes: Number(option("segment-bytes", "4096")),
  seqStart: Number(option("seq-start", "0")),
  takeOver: flag("take-over"),
  restore: flag("restore"),
  hold: flag("hold") // after the inserts, wait to be killed instead of shutting down
}

const say = (line: string): void => void process.stdout.write(`${line}\n`)

// SIGTERM asks for a clean stop: the writers finish their inserts in flight, then the shutdown runs.
let stopRequested = false
process.on("SIGTERM", () => void (stopRequested = true))

// ---------------------------------------------------------------------------------------------
// The application
// ---------------------------------------------------------------------------------------------

const fileIdOf = (fileIndex: number) => Ids.fileId(Model.fileName(fileIndex))

let replayedRecords = 0
const replay = (record: Storage.ReplayRecord, storage: Storage.StorageService) =>
  Effect.suspend(() => {
    if (replayedRecords++ === 0) say("phase replay")
    const decoded = Model.decodeRecord(record.bytes)
    return storage.write(fileIdOf(decoded.fileIndex), decoded.offset, decoded.page)
  })

/** Reads back every insert of the check file; reports the ones whose bytes differ. */
const verify = (storage: Storage.StorageService) =>
  Effect.gen(function*() {
    if (args.check === "") return
    const expected = JSON.parse(fs.readFileSync(args.check, "utf8")) as ReadonlyArray<
      readonly [number, number, number, string]
    >
    const bad: Array<{ seq: number; found: string }> = []
    let unreadable = 0
    yield* Effect.forEach(expected, ([seq, fileIndex, offset, sha256]) =>
      storage.read(fileIdOf(fileIndex), offset, Model.pageBytes).pipe(
        Effect.map((bytes) => {
          const found = Model.sha256Hex(bytes)
          if (found === sha256) {
            return
          }
          const foundSeq = bytes.length >= 8
            ? Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true))
            : -1
          bad.push({
            seq,
            found: found === Model.zeroPageSha ? "zeros" : foundSeq === seq ? "torn" : `other (seq ${foundSeq})`
          })
        }),
        Effect.catchAll((error) =>
          Effect.sync(() => {
            unreadable++
            bad.push({ seq, found: `unreadable: ${String((error as { _tag?: string })._tag ?? error)}` })
          })
        )
      ), { concurrency: 8, discard: true })
    say(
      `verify ${JSON.stringify({ checked: expected.length, bad: bad.length, unreadable, examples: bad.slice(0, 12) })}`
    )
  })

const program = Effect.gen(function*() {
  const storage = yield* Storage.Storage
  say(
    `phase opened ${
      JSON.stringify({
        replayed: replayedRecords,
        walPosition: storage.opened.walPosition,
        plan: storage.opened.plan,
        epoch: storage.epoch
      })
    }`
  )
  yield* verify(storage)
  if (args.restore) return
  const ledger = fs.openSync(args.ledger, "a")
  let nextSeq = Math.max(args.seqStart, Model.readLedger(args.ledger).seqEnd)
  let reservedEnd = nextSeq
  const takeSeq = (): number => {
    if (nextSeq >= reservedEnd) {
      reservedEnd = nextSeq + 64
      Model.appendLedgerLine(ledger, `reserve ${reservedEnd} ${args.owner}`)
    }
    return nextSeq++
  }
  const inserted = yield* Ref.make(0)
  const stopped = yield* Ref.make(false)
  let fencedSeen = false
  let lastSegment = -1
  const insert = (seq: number) =>
    Effect.gen(function*() {
      const { fileIndex, offset } = Model.placeOf(seq)
      const page = Model.pageOf(seq)
      yield* storage.write(fileIdOf(fileIndex), offset, page)
      const lsn = yield* storage.append(Model.encodeRecord(seq))
      // A record in a new segment: the previous one is full, and its upload starts at this commit.
      const segment = Math.floor(lsn / args.segmentBytes)
      if (segment > lastSegment) {
        if (lastSegment >= 0) say(`phase archive ${segment - 1}`)
        lastSegment = segment
      }
      yield* storage.commit
      Model.appendLedgerLine(ledger, `ack ${seq} ${fileIndex} ${offset} ${lsn} ${Model.sha256Hex(page)} ${args.owner}`)
    })
  const writer = Effect.gen(function*() {
    while (!(yield* Ref.get(stopped)) && !stopRequested) {
      const count = yield* Ref.getAndUpdate(inserted, (n) => n + 1)
      if (args.inserts > 0 && count >= args.inserts) return
      const result = yield* Effect.either(insert(takeSeq()))
      if (Either.isLeft(result)) {
        const tag = (result.left as { _tag?: string })._tag ?? "unknown"
        if (tag === "Fenced" && !fencedSeen) {
          fencedSeen = true
          Model.appendLedgerLine(ledger, `fenced ${args.owner}`)
          say("fenced")
        }
        if (tag === "ShuttingDown") return
        yield* Effect.sleep("5 millis")
      }
    }
  })
  const checkpoints = args.checkpointEveryMs <= 0 ? Effect.never : Effect.forever(
    Effect.gen(function*() {
      yield* Effect.sleep(args.checkpointEveryMs)
      say("phase checkpoint")
      const outcome = yield* Effect.either(storage.checkpoint)
      say(
        `phase checkpoint-done ${
          Either.isRight(outcome) ? outcome.right.outcome : (outcome.left as { _tag?: string })._tag
        }`
      )
    })
  )
  say("phase writing")
  yield* Effect.raceFirst(
    Effect.forEach(Array.from({ length: args.writers }), () => writer, { concurrency: "unbounded", discard: true }),
    checkpoints
  )
  yield* Ref.set(stopped, true)
  if (args.hold) {
    say("phase holding")
    return yield* Effect.never
  }
  say("phase shutdown")
  const report = yield* storage.shutdown
  say(
    `shutdown ${
      JSON.stringify({
        finalCheckpoint: report.finalCheckpoint,
        wal: report.wal,
        lock: report.lock,
        metDeadline: report.metDeadline
      })
    }`
  )
})

const configLayer = StorageConfig.layer({
  partSizeBytes: 16 * 1024,
  localBytesMax: 256 * 1024,
  evictionIntervalMs: 50,
  hashWorkerCount: 0,
  checkpointIntervalMs: args.checkpointIntervalMs,
  checkpointDeadlineMs: 10_000,
  shutdownDeadlineMs: 10_000,
  shutdownCheckpointDeadlineMs: 6_000,
  drainDeadlineMs: 2_000,
  walSegmentBytes: args.segmentBytes,
  takeOver: args.takeOver || args.restore
})

const storageLayer = Storage.layer({ replay }).pipe(
  Layer.provide(configLayer),
  Layer.provide(FileObjectStore.layerNode({ root: args.bucket, create: true })),
  Layer.provide(FileSystemDisk.layerNode({ root: args.data }))
)

const stderrLogger = Logger.make(({ logLevel, message }) => {
  const text = (Array.isArray(message) ? message : [message]).map((
    part
  ) => (typeof part === "string" ? part : JSON.stringify(part))).join(" ")
  process.stderr.write(`${args.owner} ${logLevel.label} ${text}\n`)
})

const main = Effect.gen(function*() {
  say("phase open")
  const built = yield* Effect.either(Layer.build(storageLayer))
  if (Either.isLeft(built)) {
    const error = built.left as { _tag?: string; message?: string }
    say(`open-failed ${error._tag ?? "unknown"} ${String(error.message ?? error).replace(/\n/g, " ")}`)
    return 10
  }
  yield* Effect.provide(program, built.right)
  return 0
}).pipe(
  Effect.scoped,
  Effect.provide(Logger.replace(Logger.defaultLogger, stderrLogger)),
  Logger.withMinimumLogLevel(LogLevel.Warning)
)

void Effect.runPromiseExit(main).then((exit) => {
  if (exit._tag === "Success") {
    say("done")
    process.exit(exit.value)
  }
  const failure = Cause.failureOption(exit.cause)
  say(`error ${Option.isSome(failure) ? JSON.stringify(failure.value) : Cause.pretty(exit.cause).split("\n")[0]}`)
  process.exit(11)
})
