/**
 * The crash campaign: runs the writer (test/crash/child.ts) again and again on the SAME data and
 * bucket directories, SIGKILLs it at chosen moments, and checks the ledger of acknowledgements
 * against what every restart reads back and against a restore from the bucket alone.
 *
 * Rounds, chosen from one seeded random stream (a round may start several processes):
 * - random:     killed at a random time after start (open, replay, writing, archiving, checkpoints);
 * - replay:     a writer with checkpoints off builds a long log and is killed; the next start runs
 *               with a checkpoint interval shorter than its replay and is killed during replay;
 * - checkpoint: killed a random few ms after an on-demand checkpoint began;
 * - writing:    killed a few ms after a WAL segment filled (its archive upload starts then);
 * - shutdown:   killed a random few ms into the shutdown;
 * - clean:      left to finish its inserts and shut down;
 * - take-over:  a second process takes the bucket over (`takeOver`) while the first still writes,
 *               inserts, and shuts down cleanly while the first still runs; then the first is
 *               killed and the new one's data directory is the one later rounds use.
 * - second-process: while a writer runs, a second process is started on the same data directory:
 *               it must be refused with DirectoryLocked and change nothing (the directory lock file
 *               and the bucket lock stay the first's); the first goes on, then stops on SIGTERM.
 * - copy:       while a writer runs, its data directory is copied (`cp -r`) and a process started on
 *               the copy: refused with DirectoryLocked (the copied lock file names the live process);
 *               then, the copied lock file removed (a snapshot restored on another host), refused
 *               with BucketLocked (the lock names this instance under a generation whose lease is
 *               being renewed). Neither acknowledges anything; the first is never fenced.
 * - wal-flip:   a writer with checkpoints off is killed or stopped; one byte in the payload of a WAL
 *               record is flipped in the local WAL (one with a valid frame after it, or the log's
 *               last record, which the recorded durable end covers: a kill keeps the flush mark and
 *               a clean stop records it); the next start must
 *               repair the segment from the bucket's archived copy when that copy reaches past the
 *               damage, and otherwise refuse with WalCorrupt (never cut the log): then a restore
 *               from the bucket into a fresh directory must hold what the bucket covers, and later
 *               rounds use that directory.
 * Each process's checkpoint interval is drawn from 0 (off), 10, 50, 200 and 1000 ms.
 *
 * Checks. Every start that gets past opening reads back every acknowledged insert (the check
 * file), and a start must not be refused. Every few rounds (and after a take-over, and at the end)
 * the bucket is copied and restored into a fresh directory, which must hold every acknowledged
 * insert whose WAL record lies below the bucket's archived WAL position or below its latest
 * checkpoint's position (both read from the bucket copy itself). After a take-over the old
 * writer's acknowledgements that the bucket did not hold when the new owner started are forfeit
 * (a take-over is for a writer known to be dead); those of the new owner are not. A writer that
 * acknowledges after its commit failed with Fenced is a failure; one that goes on acknowledging
 * for the whole overlap without ever being told is reported too.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { Effect, Layer, Stream } from "effect"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type * as Control from "../../src/domain/Control.js"
import * as KeyLayout from "../../src/domain/KeyLayout.js"
import * as Wal from "../../src/domain/Wal.js"
import * as FileObjectStore from "../../src/layers/FileObjectStore.js"
import { directoryLockName } from "../../src/layers/FileSystemDisk.js"
import * as BucketLock from "../../src/services/BucketLock.js"
import * as Loader from "../../src/services/Loader.js"
import * as StorageConfig from "../../src/services/StorageConfig.js"
import * as WalArchiver from "../../src/services/WalArchiver.js"
import * as Model from "./Model.js"

export const repositoryRoot = path.resolve(import.meta.dirname, "..", "..")
const segmentBytes = 4096
const frameBytes = Wal.headerBytes + Model.recordHeaderBytes + Model.pageBytes

export interface CampaignOptions {
  readonly rounds: number
  readonly seed: number
  /** Where the directories go (default: /dev/shm when present, else the temp directory). */
  readonly baseDir?: string
  /** A restore from the bucket alone every this many rounds (and at the end). */
  readonly restoreEvery?: number
  /** Go on after a failure (default: stop at the first failing round). */
  readonly keepGoing?: boolean
  /** Rounds with a take-over (default true). */
  readonly takeOver?: boolean
  readonly log?: (line: string) => void
  /** Round types to run in this order instead of drawing them (the CI run). */
  readonly plan?: ReadonlyArray<RoundType>
  /** Shorter processes (fewer inserts, a shorter log before the replay round): the CI run. */
  readonly short?: boolean
  /** Keep the directories (default: removed when no failure was found). */
  readonly keep?: boolean
  /** Keep the directories of a failing campaign (default true). */
  readonly keepOnFailure?: boolean
}

export interface Finding {
  readonly round: number
  readonly roundType: string
  readonly kind: string
  readonly detail: string
}

export interface CampaignResult {
  readonly seed: number
  readonly roundsRun: number
  readonly lives: number
  readonly acknowledged: number
  readonly restoresChecked: number
  readonly findings: ReadonlyArray<Finding>
  readonly directory: string
  readonly replayCommand: string
}

// ---------------------------------------------------------------------------------------------
// Randomness (seeded)
// ---------------------------------------------------------------------------------------------

const mulberry32 = (seed: number) => {
  let state = seed >>> 0
  return (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let value = state
    value = Math.imul(value ^ (value >>> 15), value | 1)
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61)
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296
  }
}

type Rng = ReturnType<typeof mulberry32>
const between = (rng: Rng, low: number, high: number): number => low + Math.floor(rng() * (high - low + 1))
const pick = <A>(rng: Rng, values: ReadonlyArray<A>): A => values[Math.floor(rng() * values.length)] as A

// ---------------------------------------------------------------------------------------------
// One process
// ---------------------------------------------------------------------------------------------

interface LifeSpec {
  readonly data: string
  readonly bucket: string
  readonly ledger: string
  readonly check: string
  readonly owner: string
  readonly inserts: number
  readonly checkpointIntervalMs: number
  readonly checkpointEveryMs: number
  readonly takeOver?: boolean
  readonly restore?: boolean
  readonly seqStart?: number
}

interface Life {
  readonly spec: LifeSpec
  readonly lines: Array<string>
  stderr: string
  exit: { code: number | null; signal: string | null } | undefined
  readonly exited: Promise<void>
  /** Resolves true when a stdout line matches, false when the process ended or the bound passed. */
  readonly waitFor: (pattern: RegExp, timeoutMs: number) => Promise<boolean>
  /** The same, for lines that arrive after the call only. */
  readonly waitForNext: (pattern: RegExp, timeoutMs: number) => Promise<boolean>
  readonly kill: () => Promise<void>
  /** Asks for a clean stop (SIGTERM: the writer finishes its inserts in flight and shuts down). */
  readonly terminate: () => void
}

const childArgs = (spec: LifeSpec): Array<string> => [
  "--import",
  "tsx",
  "test/crash/child.ts",
  "--data",
  spec.data,
  "--bucket",
  spec.bucket,
  "--ledger",
  spec.ledger,
  "--check",
  spec.check,
  "--owner",
  spec.owner,
  "--inserts",
  String(spec.inserts),
  "--checkpoint-interval",
  String(spec.checkpointIntervalMs),
  "--checkpoint-every",
  String(spec.checkpointEveryMs),
  "--segment-bytes",
  String(segmentBytes),
  "--seq-start",
  String(spec.seqStart ?? 0),
  ...(spec.takeOver === true ? ["--take-over"] : []),
  ...(spec.restore === true ? ["--restore"] : [])
]

const startLife = (spec: LifeSpec): Life => {
  const child = spawn(process.execPath, childArgs(spec), { cwd: repositoryRoot, stdio: ["ignore", "pipe", "pipe"] })
  const lines: Array<string> = []
  const watchers = new Set<{ pattern: RegExp; resolve: (found: boolean) => void }>()
  let pending = ""
  const life: Life = {
    spec,
    lines,
    stderr: "",
    exit: undefined,
    exited: new Promise<void>((resolve) => {
      child.on("close", (code, signal) => {
        life.exit = { code, signal }
        for (const watcher of watchers) watcher.resolve(false)
        watchers.clear()
        resolve()
      })
    }),
    waitFor: (
      pattern,
      timeoutMs
    ) => (lines.some((line) => pattern.test(line)) ? Promise.resolve(true) : life.waitForNext(pattern, timeoutMs)),
    waitForNext: (pattern, timeoutMs) => {
      if (life.exit !== undefined) return Promise.resolve(false)
      return new Promise<boolean>((resolve) => {
        const watcher = {
          pattern,
          resolve: (found: boolean) => {
            clearTimeout(timer)
            watchers.delete(watcher)
            resolve(found)
          }
        }
        const timer = setTimeout(() => watcher.resolve(false), timeoutMs)
        watchers.add(watcher)
      })
    },
    kill: async () => {
      if (life.exit === undefined) child.kill("SIGKILL")
      await life.exited
    },
    terminate: () => void (life.exit === undefined && child.kill("SIGTERM"))
  }
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    pending += chunk
    const parts = pending.split("\n")
    pending = parts.pop() ?? ""
    for (const line of parts) {
      lines.push(line)
      for (const watcher of [...watchers]) if (watcher.pattern.test(line)) watcher.resolve(true)
    }
  })
  child.stderr.setEncoding("utf8").on(
    "data",
    (chunk: string) => void (life.stderr = (life.stderr + chunk).slice(-4000))
  )
  return life
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Kills the process `delayMs` after a line matches (or after `fallbackMs` without one). */
const killAfter = async (life: Life, pattern: RegExp, delayMs: number, fallbackMs: number): Promise<void> => {
  await life.waitFor(pattern, fallbackMs)
  await sleep(delayMs)
  await life.kill()
}

/** Waits for a process that should end by itself; kills it after the bound and says so. */
const awaitEnd = async (life: Life, boundMs: number): Promise<boolean> => {
  const ended = await Promise.race([life.exited.then(() => true), sleep(boundMs).then(() => false)])
  if (!ended) await life.kill()
  return ended
}

// ---------------------------------------------------------------------------------------------
// What the bucket holds (read from a copy, with the library's own formats only)
// ---------------------------------------------------------------------------------------------

/** The archived WAL's contiguous end from segment 0, and the latest checkpoint's WAL position. */
export const bucketPositions = (
  bucket: string
): Promise<{ readonly archivedEnd: number; readonly checkpointPosition: number }> =>
  Effect.runPromise(
    Effect.gen(function*() {
      const store = yield* FileObjectStore.make({ root: bucket })
      const config = StorageConfig.defaults
      const layout = StorageConfig.keyLayout(config)
      const keys = yield* Stream.runCollect(store.list(KeyLayout.walPrefix(layout)))
      const ends = new Map<number, { end: number; sealed: boolean }>()
      for (const info of keys) {
        const parsed = KeyLayout.parseKey(layout, info.key)
        if (parsed._tag !== "Some" || parsed.value._tag !== "Wal") continue
        const segment = parsed.value.segment
        const scan = Wal.scanSegment(yield* store.get(info.key), segment, segmentBytes)
        const end = Wal.scanEndLsn(scan, segmentBytes)
        const known = ends.get(segment)
        if (known === undefined || known.end < end) ends.set(segment, { end, sealed: scan.stop === "Sealed" })
      }
      let archivedEnd = 0
      for (let segment = 0;; segment++) {
        const known = ends.get(segment)
        if (known === undefined) break
        archivedEnd = known.end
        if (!known.sealed) break
      }
      const latest = yield* Loader.readLatest(store, config)
      return { archivedEnd, checkpointPosition: latest === undefined ? 0 : latest.manifest.walPosition }
    }).pipe(Effect.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer)))
  )

/** The bucket's lock object, if any. */
export const bucketLockObject = (bucket: string): Promise<Control.LockObject | undefined> =>
  Effect.runPromise(
    Effect.gen(function*() {
      const store = yield* FileObjectStore.make({ root: bucket })
      return yield* BucketLock.read(store, StorageConfig.defaults)
    }).pipe(Effect.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer)))
  )

/** Whether the bucket holds an archived copy of `segment` (its newest epoch's) that is intact and
 * reaches past `offset`: what the start-up repair of damage at `offset` needs. */
export const archivedCopyReaches = (bucket: string, segment: number, offset: number): Promise<boolean> =>
  Effect.runPromise(
    Effect.gen(function*() {
      const store = yield* FileObjectStore.make({ root: bucket })
      const layout = StorageConfig.keyLayout(StorageConfig.defaults)
      let newest: { readonly key: string; readonly epoch: number } | undefined
      for (const info of yield* Stream.runCollect(store.list(KeyLayout.walPrefix(layout)))) {
        const parsed = KeyLayout.parseKey(layout, info.key)
        if (parsed._tag !== "Some" || parsed.value._tag !== "Wal" || parsed.value.segment !== segment) continue
        const epoch = parsed.value.epoch ?? -1
        if (newest === undefined || epoch > newest.epoch) newest = { key: info.key, epoch }
      }
      if (newest === undefined) return false
      const scan = Wal.scanSegment(yield* store.get(newest.key), segment, segmentBytes)
      return scan.stop === "Sealed" || (scan.stop === "End" && scan.validBytes > offset)
    }).pipe(Effect.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer)))
  )

/** The WAL's durable end as the data directory records it (the flush mark, the control file's
 * record of a clean stop or checkpoint), the higher of the two; 0 when neither is there. */
export const recordedDurableLsn = (data: string): number => {
  const markPath = path.join(data, WalArchiver.durableMarkPath)
  const mark = fs.existsSync(markPath) ? (Wal.decodeDurableMark(new Uint8Array(fs.readFileSync(markPath))) ?? 0) : 0
  const controlPath = path.join(data, Loader.controlPath)
  const control = fs.existsSync(controlPath)
    ? (JSON.parse(fs.readFileSync(controlPath, "utf8")) as { readonly walDurableLsn?: number })
    : {}
  return Math.max(mark, control.walDurableLsn ?? 0)
}

/** A byte flipped in the local WAL: which segment, the offset of the damaged frame in it, and its position. */
export interface WalFlip {
  readonly segment: number
  readonly frameOffset: number
  readonly lsn: number
  readonly framesAfter: number
}

/**
 * Flips one byte in the middle of the payload of a WAL record in the data directory `data`:
 * - "anywhere": a record with a valid frame after it (in its segment or a later one);
 * - "last-segment": the same, drawn from the log's last segment when it holds two records or more
 *   (the part of the log least likely to be archived yet);
 * - "last-record": the last record below `durableEndLsn` (the durable end the directory recorded),
 *   the log first cut there (what lies past it was never acknowledged, so a crash may tear it):
 *   nothing valid follows the damage, and only the recorded durable end (the flush mark, which a
 *   process kill keeps, or a clean stop's record) tells it from a torn write.
 * Undefined when the log holds fewer than two records.
 */
export type FlipPlace = "anywhere" | "last-segment" | "last-record"
export const flipWalByte = (
  data: string,
  draw: (count: number) => number,
  place: FlipPlace,
  durableEndLsn: number
): WalFlip | undefined => {
  const walDir = path.join(data, "wal")
  if (!fs.existsSync(walDir)) return undefined
  const segments = fs.readdirSync(walDir).flatMap((name) => {
    const parsed = KeyLayout.parseKey({ prefix: "" }, `wal/${name}`)
    return parsed._tag === "Some" && parsed.value._tag === "Wal" && parsed.value.epoch === undefined
      ? [parsed.value.segment as number]
      : []
  }).sort((a, b) => a - b)
  if (place === "last-record") {
    for (const segment of segments) {
      const file = path.join(data, WalArchiver.localSegmentPath(segment))
      const start = Wal.segmentStart(segment, segmentBytes)
      if (start >= durableEndLsn) fs.rmSync(file)
      else if (
        durableEndLsn < Wal.segmentEnd(segment, segmentBytes) && fs.statSync(file).size > durableEndLsn - start
      ) fs.truncateSync(file, durableEndLsn - start)
    }
  }
  const records: Array<{ readonly segment: number; readonly frameOffset: number; readonly lsn: number }> = []
  for (const segment of segments) {
    const file = path.join(data, WalArchiver.localSegmentPath(segment))
    if (!fs.existsSync(file)) break
    const scan = Wal.scanSegment(new Uint8Array(fs.readFileSync(file)), segment, segmentBytes)
    for (const record of scan.records) {
      records.push({ segment, frameOffset: record.lsn - Wal.segmentStart(segment, segmentBytes), lsn: record.lsn })
    }
    if (scan.stop !== "Sealed") break
  }
  if (records.length < 2) return undefined
  const lastSegment = records[records.length - 1]?.segment
  const firstInLast = records.findIndex((record) => record.segment === lastSegment)
  const from = place === "last-segment" && firstInLast < records.length - 1 ? firstInLast : 0
  const index = place === "last-record" ? records.length - 1 : from + draw(records.length - 1 - from)
  const target = records[index] as (typeof records)[number]
  const file = path.join(data, WalArchiver.localSegmentPath(target.segment))
  const fd = fs.openSync(file, "r+")
  try {
    const at = target.frameOffset + Wal.headerBytes + Math.floor((Model.recordHeaderBytes + Model.pageBytes) / 2)
    const byte = Buffer.alloc(1)
    fs.readSync(fd, byte, 0, 1, at)
    byte[0] = (byte[0] ?? 0) ^ 0x5a
    fs.writeSync(fd, byte, 0, 1, at)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  return { ...target, framesAfter: records.length - 1 - index }
}

// ---------------------------------------------------------------------------------------------
// The campaign
// ---------------------------------------------------------------------------------------------

export type RoundType =
  | "random"
  | "replay"
  | "checkpoint"
  | "writing"
  | "shutdown"
  | "clean"
  | "take-over"
  | "second-process"
  | "copy"
  | "wal-flip"

const roundTypes: ReadonlyArray<readonly [RoundType, number]> = [
  ["random", 4],
  ["replay", 3],
  ["checkpoint", 3],
  ["writing", 2],
  ["shutdown", 3],
  ["clean", 2],
  ["take-over", 1],
  ["second-process", 1],
  ["copy", 1],
  ["wal-flip", 2]
]
/** Every round type, for the command line. */
export const roundTypeNames: ReadonlyArray<RoundType> = roundTypes.map(([type]) => type)
const checkpointIntervalsMs = [0, 10, 50, 200, 1000]

const chooseRoundType = (rng: Rng, allowTakeOver: boolean): RoundType => {
  const choices = roundTypes.filter(([type]) => allowTakeOver || type !== "take-over")
  let draw = rng() * choices.reduce((sum, [, weight]) => sum + weight, 0)
  for (const [type, weight] of choices) {
    draw -= weight
    if (draw < 0) return type
  }
  return "random"
}

const parseJsonAfter = <A>(life: Life, prefix: string): A | undefined => {
  const line = life.lines.find((candidate) => candidate.startsWith(`${prefix} `))
  return line === undefined ? undefined : (JSON.parse(line.slice(prefix.length + 1)) as A)
}

interface VerifyLine {
  readonly checked: number
  readonly bad: number
  readonly unreadable: number
  readonly examples: ReadonlyArray<{ readonly seq: number; readonly found: string }>
}

/** Runs a campaign; never throws for a failure of the system under test (it is a finding). */
export const runCampaign = async (options: CampaignOptions): Promise<CampaignResult> => {
  const log = options.log ?? ((line: string) => void process.stderr.write(`${line}\n`))
  const base = options.baseDir ?? (fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir())
  const directory = fs.mkdtempSync(path.join(base, `crash-${options.seed}-`))
  const bucket = path.join(directory, "bucket")
  const ledgerPath = path.join(directory, "ledger")
  const checkPath = path.join(directory, "check.json")
  const rng = mulberry32(options.seed)
  const scale = options.short === true ? 0.4 : 1
  const scaled = (low: number, high: number) => between(rng, Math.round(low * scale), Math.round(high * scale))
  const restoreEvery = options.restoreEvery ?? 4
  const findings: Array<Finding> = []
  const forfeit = new Set<number>()
  let dataDir = path.join(directory, "data-0")
  let lives = 0
  let restores = 0
  let round = 0
  let roundType: RoundType = "random"
  const replayCommand = (throughRound: number) =>
    `npm run crash -- --seed ${options.seed} --rounds ${throughRound + 1}${
      options.takeOver === false ? " --no-take-over" : ""
    }` +
    `${options.short === true ? " --short" : ""}${
      options.plan === undefined ? "" : ` --plan ${options.plan.join(",")}`
    }${options.restoreEvery === undefined ? "" : ` --restore-every ${options.restoreEvery}`}`

  const find = (kind: string, detail: string) => {
    findings.push({ round, roundType, kind, detail })
    log(
      `FAILURE seed ${options.seed} round ${round} (${roundType}): ${kind}: ${detail}\n  replay: ${
        replayCommand(round)
      }\n  directories: ${directory}${options.keepOnFailure === false ? " (removed at the end)" : ""}`
    )
  }
  /** Writes the check file: the acknowledged inserts that must read back (optionally only some). */
  const writeCheck = (keep: (ack: Model.Ack) => boolean = () => true): number => {
    const acks = Model.readLedger(ledgerPath).acks.filter((ack) => !forfeit.has(ack.seq) && keep(ack))
    fs.writeFileSync(checkPath, JSON.stringify(acks.map((ack) => [ack.seq, ack.fileIndex, ack.offset, ack.sha256])))
    return acks.length
  }
  const spec = (owner: string, fields: Partial<LifeSpec>): LifeSpec => ({
    data: dataDir,
    bucket,
    ledger: ledgerPath,
    check: checkPath,
    owner,
    inserts: 0,
    checkpointIntervalMs: pick(rng, checkpointIntervalsMs),
    checkpointEveryMs: pick(rng, [0, 0, 60, 150]),
    ...fields
  })
  /** The findings of one ended process: refused start, lost inserts, an unexpected error. */
  const judge = (life: Life, what: string) => {
    lives++
    fs.mkdirSync(path.join(directory, "logs"), { recursive: true })
    fs.writeFileSync(
      path.join(directory, "logs", `${life.spec.owner}.log`),
      `${life.lines.join("\n")}\n--- stderr (last 4000 characters)\n${life.stderr}`
    )
    const opened = life.lines.find((line) => line.startsWith("phase opened "))
    const last =
      life.lines.filter((line) => line.startsWith("phase ") && !line.startsWith("phase checkpoint-done")).pop() ??
        "(no output)"
    log(
      `  ${life.spec.owner} (checkpoint interval ${life.spec.checkpointIntervalMs} ms, on demand every ${life.spec.checkpointEveryMs} ms): ${
        life.exit?.signal === "SIGKILL" ? `killed at "${last}"` : `exit ${life.exit?.code}`
      }; ${opened === undefined ? "not opened" : opened.slice("phase ".length)}; ${
        life.lines.find((line) => line.startsWith("verify ")) ?? "no verify"
      }`
    )
    const openFailed = life.lines.find((line) => line.startsWith("open-failed "))
    if (openFailed !== undefined) find("start refused", `${what}: ${openFailed.slice("open-failed ".length)}`)
    const verify = parseJsonAfter<VerifyLine>(life, "verify")
    if (verify !== undefined && verify.bad > 0) {
      find(
        "acknowledged inserts lost",
        `${what}: ${verify.bad} of ${verify.checked} acknowledged inserts do not read back (${verify.unreadable} unreadable); e.g. ${
          verify.examples.slice(0, 6).map((example) => `seq ${example.seq}: ${example.found}`).join(", ")
        }`
      )
    }
    const error = life.lines.find((line) => line.startsWith("error "))
    if (error !== undefined) {
      find("writer failed", `${what}: ${error}; stderr: ${life.stderr.split("\n").slice(-4).join(" | ")}`)
    }
    const shutdown = parseJsonAfter<{ metDeadline: boolean }>(life, "shutdown")
    if (shutdown !== undefined && !shutdown.metDeadline) {
      find("shutdown overran", `${what}: ${JSON.stringify(shutdown)}`)
    }
    return verify
  }
  /** The findings of a process that must be refused at open with `tag`, acknowledging nothing. */
  const judgeRefused = (life: Life, what: string, tag: string) => {
    const openFailed = life.lines.find((line) => line.startsWith("open-failed "))
    if (openFailed === undefined) {
      judge(life, what) // what it read back and how it ended
      find(
        "admitted",
        `${what}: it was not refused (${life.lines.filter((line) => line.startsWith("phase ")).slice(-2).join(" | ")})`
      )
    } else {
      lives++
      fs.mkdirSync(path.join(directory, "logs"), { recursive: true })
      fs.writeFileSync(
        path.join(directory, "logs", `${life.spec.owner}.log`),
        `${life.lines.join("\n")}\n--- stderr (last 4000 characters)\n${life.stderr}`
      )
      log(`  ${life.spec.owner}: exit ${life.exit?.code ?? life.exit?.signal}; ${openFailed}`)
      if (!openFailed.startsWith(`open-failed ${tag} `)) {
        find("refused for another reason", `${what}: expected ${tag}, got ${openFailed.slice("open-failed ".length)}`)
      } else if (life.exit?.code === 0) find("refused with exit 0", what)
    }
    const acks = Model.readLedger(ledgerPath).acks.filter((ack) => ack.owner === life.spec.owner)
    if (acks.length > 0) find("refused process acknowledged", `${what}: ${acks.length} acknowledgements`)
  }
  /** A writer left running beside refused openers: stopped cleanly; it must have gone on
   * acknowledging after `sinceLine` of the ledger and never been fenced. */
  const stopAndJudgeFirst = async (first: Life, sinceLine: number, what: string) => {
    await sleep(between(rng, 100, 300))
    first.terminate()
    if (!(await awaitEnd(first, 60_000))) find("hang", `${what}: the first writer did not stop within 60 s of SIGTERM`)
    judge(first, what)
    const ledger = Model.readLedger(ledgerPath)
    const later = ledger.acks.filter((ack) => ack.owner === first.spec.owner && ack.line >= sinceLine).length
    log(`  ${first.spec.owner} acknowledged ${later} inserts after the refusals`)
    if (later === 0) find("first writer stalled", `${what}: no acknowledgement after the refusals`)
    if (ledger.fencedAtLine.has(first.spec.owner)) {
      find("first writer fenced", `${what}: a refused opener fenced the running writer`)
    }
    const shutdown = parseJsonAfter<{ lock: string }>(first, "shutdown")
    if (shutdown === undefined) find("first writer did not shut down", `${what}: ${first.lines.slice(-2).join(" | ")}`)
    else if (shutdown.lock !== "released") {
      find("lock not released", `${what}: the first writer's shutdown said lock ${shutdown.lock}`)
    }
  }
  const sameHolder = (left: Control.LockObject | undefined, right: Control.LockObject | undefined): boolean =>
    left !== undefined && right !== undefined &&
    BucketLock.isHeldBy(left, { instanceId: right.instanceId, epoch: right.epoch, generation: right.generation })
  /** A restore from the (real) bucket into a fresh directory that later rounds use; what the bucket
   * does not cover is forfeit. */
  const restoreInto = async (why: string) => {
    const positions = await bucketPositions(bucket)
    const held = (ack: Model.Ack) =>
      ack.lsn + frameBytes <= positions.archivedEnd || ack.lsn < positions.checkpointPosition
    for (const ack of Model.readLedger(ledgerPath).acks) if (!held(ack)) forfeit.add(ack.seq)
    const required = writeCheck()
    const fresh = path.join(directory, `data-${round}-restored`)
    const life = startLife(spec(`r${round}restore`, { data: fresh, restore: true }))
    if (!(await awaitEnd(life, 120_000))) find("restore hung", "the restore did not end within 120 s")
    restores++
    const verify = judge(
      life,
      `restore from the bucket after ${why} (archived WAL end ${positions.archivedEnd}, checkpoint position ${positions.checkpointPosition}, ${required} inserts below)`
    )
    if (verify === undefined) find("restore failed", `no verification: ${life.lines.slice(-3).join(" | ")}`)
    log(
      `  restore: archived ${positions.archivedEnd}, checkpoint ${positions.checkpointPosition}, checked ${
        verify?.checked ?? "-"
      }, bad ${verify?.bad ?? "-"}, forfeit in all ${forfeit.size}`
    )
    dataDir = fresh
  }
  /** Acknowledgements after the owner's own Fenced: impossible by contract. */
  const checkFencedAcks = (owner: string) => {
    const ledger = Model.readLedger(ledgerPath)
    const fencedLine = ledger.fencedAtLine.get(owner)
    if (fencedLine === undefined) return
    const after = ledger.acks.filter((ack) => ack.owner === owner && ack.line > fencedLine)
    if (after.length > 0) {
      find(
        "acknowledged after Fenced",
        `${owner} acknowledged ${after.length} inserts after its commit failed with Fenced`
      )
    }
  }

  const restoreCheck = async () => {
    const copy = path.join(directory, `restore-bucket-${round}`)
    const fresh = path.join(directory, `restore-data-${round}`)
    fs.cpSync(bucket, copy, { recursive: true, filter: (source) => !source.includes(`${path.sep}.tmp`) })
    const positions = await bucketPositions(copy)
    const required = writeCheck((ack) =>
      ack.lsn + frameBytes <= positions.archivedEnd || ack.lsn < positions.checkpointPosition
    )
    const life = startLife(spec(`restore${round}`, { data: fresh, bucket: copy, restore: true }))
    if (!(await awaitEnd(life, 120_000))) find("restore hung", "the restore did not end within 120 s")
    restores++
    const verify = judge(
      life,
      `restore from the bucket alone (archived WAL end ${positions.archivedEnd}, checkpoint position ${positions.checkpointPosition}, ${required} inserts below)`
    )
    if (verify === undefined && life.lines.every((line) => !line.startsWith("open-failed"))) {
      find("restore failed", `no verification: ${life.lines.slice(-3).join(" | ")} ${life.stderr.slice(-300)}`)
    }
    log(
      `  restore: archived ${positions.archivedEnd}, checkpoint ${positions.checkpointPosition}, checked ${
        verify?.checked ?? "-"
      }, bad ${verify?.bad ?? "-"}`
    )
    if (findings.length === 0 || options.keepOnFailure === false) {
      fs.rmSync(copy, { recursive: true, force: true })
      fs.rmSync(fresh, { recursive: true, force: true })
    }
  }

  const rounds: Record<RoundType, () => Promise<void>> = {
    random: async () => {
      writeCheck()
      const life = startLife(spec(`r${round}`, {}))
      await killAfter(life, /^phase open$/, scaled(0, 3500), 30_000)
      judge(life, "restart killed at a random time")
    },
    replay: async () => {
      writeCheck()
      const builder = startLife(spec(`r${round}a`, { checkpointIntervalMs: 0, checkpointEveryMs: 0 }))
      await killAfter(builder, /^phase writing/, scaled(1500, 3500), 30_000)
      judge(builder, "restart before the long log")
      writeCheck()
      const replayer = startLife(spec(`r${round}b`, { checkpointIntervalMs: pick(rng, [5, 10, 20]) }))
      await killAfter(replayer, /^phase replay/, between(rng, 0, 400), 30_000)
      judge(replayer, "restart killed during replay")
    },
    checkpoint: async () => {
      writeCheck()
      const life = startLife(spec(`r${round}`, { checkpointEveryMs: pick(rng, [40, 100]) }))
      await life.waitFor(/^phase writing/, 30_000)
      for (let skip = between(rng, 0, 3); skip > 0; skip--) await life.waitForNext(/^phase checkpoint-done/, 10_000)
      await life.waitForNext(/^phase checkpoint$/, 10_000)
      await sleep(between(rng, 0, 30))
      await life.kill()
      judge(life, "restart killed in a checkpoint")
    },
    writing: async () => {
      writeCheck()
      const life = startLife(spec(`r${round}`, {}))
      await life.waitFor(/^phase writing/, 30_000)
      for (let skip = scaled(0, 40); skip > 0; skip--) await life.waitForNext(/^phase archive/, 10_000)
      await life.waitForNext(/^phase archive/, 10_000)
      await sleep(between(rng, 0, 15))
      await life.kill()
      judge(life, "restart killed while a WAL segment was being archived")
    },
    shutdown: async () => {
      writeCheck()
      const life = startLife(spec(`r${round}`, { inserts: scaled(50, 600) }))
      await killAfter(life, /^phase shutdown/, between(rng, 0, 60), 60_000)
      judge(life, "restart killed in its shutdown")
    },
    clean: async () => {
      writeCheck()
      const life = startLife(spec(`r${round}`, { inserts: scaled(50, 600) }))
      if (!(await awaitEnd(life, 90_000))) find("hang", "a writer with a bounded insert count did not end within 90 s")
      judge(life, "restart run to a clean shutdown")
    },
    "take-over": async () => {
      writeCheck()
      const old = startLife(spec(`r${round}old`, { checkpointEveryMs: 100 }))
      await old.waitFor(/^phase writing/, 30_000)
      await sleep(between(rng, 200, 800))
      // What the bucket holds when the new owner starts: the old writer's acknowledgements beyond it are forfeit.
      const positions = await bucketPositions(bucket)
      const held = (ack: Model.Ack) =>
        ack.lsn + frameBytes <= positions.archivedEnd || ack.lsn < positions.checkpointPosition
      writeCheck(held)
      const atTakeOver = Model.readLedger(ledgerPath)
      for (const ack of atTakeOver.acks) if (!held(ack)) forfeit.add(ack.seq)
      const newDir = path.join(directory, `data-${round}`)
      const owner = startLife(
        spec(`r${round}new`, {
          data: newDir,
          takeOver: true,
          inserts: scaled(200, 600),
          seqStart: atTakeOver.seqEnd + 20_000
        })
      )
      const opened = await owner.waitFor(/^phase opened/, 30_000)
      const linesAtOpen = Model.readLedger(ledgerPath).lineCount
      const ended = await awaitEnd(owner, 90_000)
      if (!ended) find("hang", "the new owner did not end within 90 s")
      judge(owner, "take-over by a new process while the old one writes")
      await sleep(between(rng, 300, 1000)) // the old writer goes on after the new owner's clean stop
      await old.kill()
      judge(old, "the old writer, killed after the new owner's clean stop")
      checkFencedAcks(old.spec.owner)
      const ledger = Model.readLedger(ledgerPath)
      // The old writer's later acknowledgements can never be durable in the new owner's lineage.
      for (const ack of ledger.acks) {
        if (ack.owner === old.spec.owner && ack.line >= atTakeOver.lineCount) forfeit.add(ack.seq)
      }
      const oldAcksAfterOpen = ledger.acks.filter((ack) => ack.owner === old.spec.owner && ack.line >= linesAtOpen)
      log(
        `  take-over: the old writer acknowledged ${oldAcksAfterOpen.length} inserts after the new owner opened; ${
          ledger.fencedAtLine.has(old.spec.owner) ? "it was told Fenced" : "it was never told Fenced"
        }`
      )
      if (opened && oldAcksAfterOpen.length > 0 && !ledger.fencedAtLine.has(old.spec.owner)) {
        find(
          "fenced writer never told",
          `the old writer acknowledged ${oldAcksAfterOpen.length} inserts after the new owner opened and never failed with Fenced`
        )
      }
      dataDir = newDir
      await restoreCheck()
    },
    "second-process": async () => {
      writeCheck()
      const first = startLife(spec(`r${round}`, {}))
      await first.waitFor(/^phase writing/, 30_000)
      await sleep(between(rng, 50, 400))
      const lockFile = path.join(dataDir, directoryLockName)
      const lockFileBefore = fs.existsSync(lockFile) ? fs.readFileSync(lockFile, "utf8") : undefined
      const bucketLockBefore = await bucketLockObject(bucket)
      const second = startLife(spec(`r${round}second`, { inserts: scaled(50, 200) }))
      if (!(await awaitEnd(second, 120_000))) {
        find("hang", "a second process on the same data directory did not end within 120 s")
      }
      judgeRefused(second, "a second process on the same data directory", "DirectoryLocked")
      const lockFileAfter = fs.existsSync(lockFile) ? fs.readFileSync(lockFile, "utf8") : undefined
      if (lockFileBefore === undefined || lockFileAfter !== lockFileBefore) {
        find(
          "directory lock changed",
          `before ${JSON.stringify(lockFileBefore)}, after ${JSON.stringify(lockFileAfter)}`
        )
      }
      const bucketLockAfter = await bucketLockObject(bucket)
      if (!sameHolder(bucketLockBefore, bucketLockAfter)) {
        find(
          "bucket lock changed",
          `before ${JSON.stringify(bucketLockBefore)}, after ${JSON.stringify(bucketLockAfter)}`
        )
      }
      await stopAndJudgeFirst(
        first,
        Model.readLedger(ledgerPath).lineCount,
        "the writer beside a refused second process"
      )
    },
    copy: async () => {
      writeCheck()
      const first = startLife(spec(`r${round}`, {}))
      await first.waitFor(/^phase writing/, 30_000)
      await sleep(between(rng, 50, 400))
      const copyDir = path.join(directory, `copy-${round}`)
      // As an operator would, while the writer runs (files renamed meanwhile may be missed: cp says so).
      const copied = spawnSync("cp", ["-r", dataDir, copyDir], { encoding: "utf8" })
      log(
        `  cp -r: exit ${copied.status}${
          copied.stderr === "" ? "" : `, ${copied.stderr.trim().split("\n").length} complaint(s)`
        }`
      )
      const bucketLockBefore = await bucketLockObject(bucket)
      const asCopied = startLife(spec(`r${round}copy`, { data: copyDir, inserts: scaled(50, 200) }))
      if (!(await awaitEnd(asCopied, 120_000))) {
        find("hang", "a process on a copy of the data directory did not end within 120 s")
      }
      judgeRefused(asCopied, "a process on a copy (cp -r) of the live data directory", "DirectoryLocked")
      // A snapshot restored on another host: the copied lock file names no process running there.
      fs.rmSync(path.join(copyDir, directoryLockName), { force: true })
      const snapshot = startLife(spec(`r${round}snapshot`, { data: copyDir, inserts: scaled(50, 200) }))
      if (!(await awaitEnd(snapshot, 120_000))) {
        find("hang", "a process on a snapshot of the data directory did not end within 120 s")
      }
      judgeRefused(snapshot, "a process on a copy of the live data directory without its lock file", "BucketLocked")
      const bucketLockAfter = await bucketLockObject(bucket)
      if (!sameHolder(bucketLockBefore, bucketLockAfter)) {
        find(
          "bucket lock changed",
          `before ${JSON.stringify(bucketLockBefore)}, after ${JSON.stringify(bucketLockAfter)}`
        )
      }
      await stopAndJudgeFirst(first, Model.readLedger(ledgerPath).lineCount, "the writer beside refused copies")
      fs.rmSync(copyDir, { recursive: true, force: true })
    },
    "wal-flip": async () => {
      writeCheck()
      const builder = startLife(spec(`r${round}a`, { checkpointIntervalMs: 0, checkpointEveryMs: 0 }))
      await builder.waitFor(/^phase writing/, 30_000)
      await sleep(scaled(300, 1500))
      const killed = rng() < 0.5
      if (killed) await builder.kill()
      else {
        builder.terminate()
        if (!(await awaitEnd(builder, 60_000))) find("hang", "a writer did not stop within 60 s of SIGTERM")
      }
      judge(builder, `a writer ${killed ? "killed" : "stopped"} before a WAL byte flip`)
      const durableBefore = recordedDurableLsn(dataDir)
      const flip = flipWalByte(
        dataDir,
        (count) => between(rng, 0, count - 1),
        pick(rng, ["anywhere", "last-segment", "last-record"] as const),
        durableBefore
      )
      if (flip === undefined) {
        log("  no local WAL with two records: nothing flipped")
        return
      }
      const repairable = await archivedCopyReaches(bucket, flip.segment, flip.frameOffset)
      // Nothing valid after it and past the recorded durable end: a torn write, which a start cuts
      // (never acknowledged: the mark is written after the fsync, before any commit returns).
      const tornTail = flip.framesAfter === 0 && flip.lsn + frameBytes > durableBefore
      log(
        `  flipped a byte in the record at ${flip.lsn} (segment ${flip.segment}, offset ${flip.frameOffset}, ${
          flip.framesAfter === 0 ? "the log's last record" : `${flip.framesAfter} record(s) after it`
        }; recorded durable end ${durableBefore}); the bucket's copy ${
          repairable ? "reaches past it" : "does not reach past it"
        }`
      )
      writeCheck()
      const life = startLife(spec(`r${round}b`, { inserts: scaled(50, 200) }))
      if (!(await awaitEnd(life, 240_000))) find("hang", "a start after a WAL byte flip did not end within 240 s")
      if (repairable || tornTail) {
        judge(
          life,
          `a start after a byte flip at ${flip.lsn} that ${repairable ? "the bucket's copy repairs" : "is a torn tail"}`
        )
        if (!life.lines.some((line) => line.startsWith("verify "))) {
          find("not repaired", `the start did not open: ${life.lines.slice(-2).join(" | ")}`)
        }
        return
      }
      judgeRefused(life, `a start after a byte flip at ${flip.lsn} that the bucket cannot repair`, "WalCorrupt")
      await restoreInto(`the WAL byte flip at ${flip.lsn}`)
    }
  }

  log(`crash campaign: seed ${options.seed}, ${options.rounds} rounds, in ${directory}`)
  for (round = 0; round < options.rounds; round++) {
    roundType = options.plan?.[round] ?? (round === 0 ? "clean" : chooseRoundType(rng, options.takeOver !== false))
    const before = findings.length
    const startedAt = performance.now()
    await rounds[roundType]()
    if (roundType !== "take-over" && (round % restoreEvery === restoreEvery - 1 || round === options.rounds - 1)) {
      await restoreCheck()
    }
    const acknowledged = Model.readLedger(ledgerPath).acks.length
    log(
      `round ${round} ${roundType}: ${
        Math.round(performance.now() - startedAt)
      } ms, ${acknowledged} acknowledged in all${
        findings.length > before ? `, ${findings.length - before} finding(s)` : ""
      }`
    )
    if (findings.length > before && options.keepGoing !== true) {
      round++
      break
    }
  }
  const acknowledged = Model.readLedger(ledgerPath).acks.length
  const keep = options.keep === true || (findings.length > 0 && options.keepOnFailure !== false)
  if (!keep) fs.rmSync(directory, { recursive: true, force: true })
  return {
    seed: options.seed,
    roundsRun: round,
    lives,
    acknowledged,
    restoresChecked: restores,
    findings,
    directory,
    replayCommand: replayCommand(Math.max(0, round - 1))
  }
}
