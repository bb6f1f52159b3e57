/**
 * A model of OrioleDB's original S3 protocol, as a system under test of the same harness and the
 * same properties as the real Storage layer. It exists to show that the properties have teeth:
 * run on this model they find the two shutdown hangs the original had (issues #340 and #373).
 *
 * What is modelled, faithfully (references into docs/ORIGINAL.md):
 * - §2 the task queue: a byte ring of monotonic locations. Enqueue RESERVES first
 *   (`insertLocation += length`), then waits while the ring is full, then PUBLISHES; a producer
 *   that dies in that wait leaves a reserved, unpublished slot that blocks every later pick.
 *   Workers pick at `pickLocation` only published entries. Completion is a PREFIX: a finished task
 *   is marked erased and `erasedLocation` advances over contiguous erased entries only.
 *   `s3_queue_wait_for_location(L)` sleeps on a condition variable while `erasedLocation <= L`,
 *   with no timeout and no failure path: the only way out is the prefix passing L.
 * - §2 the "already Loading ⇒ the current insert location" proxy: a read that loses the
 *   NotLoaded → Loading race waits for the location the NEXT task will get (w:703-711).
 * - §3 workers: poll every `bgwriterDelayMs`, drain every pickable task, never re-check shutdown
 *   while draining; an HTTP failure is FATAL: the worker dies, keeping its task in its replay slot;
 *   the postmaster restarts it (restart_time 0) and it replays that task first. No backoff, no
 *   request timeout (a stalled request hangs the worker). Once shutdown began, dead workers are
 *   not restarted (§7).
 * - §4 part words: NotLoaded/Loading/Loaded/Evicting, lock count, DIRTY/SCHEDULED/WRITING, usage;
 *   `s3_header_lock_part` loads a NotLoaded part and waits for its queue location, and polls every
 *   10 ms (`pg_usleep`, no interrupt check) while a part is Loading or Evicting; a failed PUT
 *   restores DIRTY|SCHEDULED; the MRU list of 4 dirty parts per file schedules the part falling
 *   off; eviction takes only Loaded, unlocked, usage-0, clean, not-writing parts (clock halving).
 * - §5 checkpoint N: the walk locks every part (loading evicted ones), schedules dirty ones, waits
 *   for the maximum location (the write-back maximum of N folded in), writes the map, archives
 *   the WAL (shutdown: enqueues every unarchived segment; otherwise switches and busy-waits for
 *   the archiver), then the completion marker, and waits. Waits of the checkpointer ignore
 *   SIGTERM (it is the process that performs the shutdown checkpoint).
 * - the bgwriter (src/workers/bgwriter.c:219-220): every `bgwriter_delay`, one eviction pass while
 *   more than `s3_desired_size` parts are loaded (scaled: `desiredLoadedParts`); an Evict step is
 *   memory pressure: passes until nothing changes.
 * - §7 shutdown: SIGTERM to backends (they die at their next interrupt check: a condition-variable
 *   wake-up, never inside the 10 ms polls); the postmaster stops restarting workers and waits for
 *   the backends; the checkpointer finishes any checkpoint in progress, then the shutdown
 *   checkpoint; the archiver's final cycle; SIGTERM to the S3 workers (they exit at their next
 *   loop check); the postmaster waits for every child, deletes the lock object, exits.
 *
 * Simplifications (none touches the waits): one process per role; the bucket layout uses this
 * project's key families (data/, manifests/, checkpoints/, wal/, lock) so that faults target the
 * same requests in both systems; a task's size is fixed (`taskBytes`) and the ring is scaled down
 * (`queueSlots` tasks) like the rest of the simulation; the tree walk touches every part the
 * workload touched; backends run in the harness's fibers; context switches that matter (reading a
 * part word and then acting on it without a lock) are explicit, and that window is widened at
 * random (BUGGIFY, `preemptionMsMax`); a crashed worker is restarted after
 * `workerRestartDelayMs` (a process start), so that a crash loop advances simulated time.
 *
 * Interruption: the harness's interruptions do not reach the model (its operations are
 * uninterruptible); only the model's own signals do, where the original checks for them.
 */
import { Chunk, Deferred, Duration, Effect, Exit, FiberId, Option, Random, Stream } from "effect"
import type { ObjectStoreService } from "../../src/services/ObjectStore.js"
import type {
  AuditedCheckpoint,
  BucketAudit,
  CheckpointResult,
  Instance,
  Observation,
  OpResult,
  PartRead,
  ShutdownResult,
  Slot,
  SystemUnderTest
} from "./Harness.js"
import { isZero, slotKey, slotsOfPart } from "./Harness.js"
import type { Fault } from "./Schedule.js"
import { dataModel } from "./Schedule.js"
import type { FaultControl, SimBucket } from "./SimBucket.js"
import { makeSimBucket } from "./SimBucket.js"

/** The original's settings, scaled to the simulation. */
export interface OriginalSettings {
  /** `orioledb.s3_num_workers` (default 3). */
  readonly workerCount: number
  /** `bgwriter_delay`: the workers' poll period (default 200 ms). */
  readonly bgwriterDelayMs: number
  /** How long the postmaster takes to restart a crashed worker (`bgw_restart_time = 0`). */
  readonly workerRestartDelayMs: number
  /** The ring's capacity in tasks (`s3_queue_size` / task size, scaled down). */
  readonly queueSlots: number
  readonly taskBytes: number
  /** `pg_usleep(10000)` in `s3_header_lock_part` while Loading/Evicting. */
  readonly lockPollMs: number
  /** `MAX_NUM_DIRTY_PARTS` per tree. */
  readonly dirtyPartsMru: number
  /** The 100 ms `pg_usleep` loop after requesting a WAL switch (cp:2374-2377). */
  readonly switchPollMs: number
  readonly walSegmentBytes: number
  readonly walRecordBytes: number
  /**
   * BUGGIFY (FoundationDB's term): how long a process may be descheduled between reading a part
   * word and acting on it (`s3_header_lock_part` → `s3_load_file_part`), drawn uniformly from
   * [0, this]. PostgreSQL backends are OS processes: under load, a window of a few instructions
   * can last milliseconds; the simulation widens it so that a short schedule can hit the race
   * that a production run hits after minutes (#340: after ~1000 s of inserts).
   */
  readonly preemptionMsMax: number
  /** `orioledb.s3_desired_size` in parts: the bgwriter evicts while more parts are loaded. */
  readonly desiredLoadedParts: number
  /** The deadline the harness holds the model to: the real system's shutdown deadline. */
  readonly shutdownDeadlineMs: number
}

export const defaultOriginalSettings: OriginalSettings = {
  workerCount: 3,
  bgwriterDelayMs: 200,
  workerRestartDelayMs: 10,
  queueSlots: 16,
  taskBytes: 48,
  lockPollMs: 10,
  dirtyPartsMru: 4,
  switchPollMs: 100,
  walSegmentBytes: 4096,
  walRecordBytes: 544,
  preemptionMsMax: 200,
  desiredLoadedParts: 2,
  shutdownDeadlineMs: 5_000
}

// ---------------------------------------------------------------------------------------------
// Shared memory: condition variables, processes
// ---------------------------------------------------------------------------------------------

/** A PostgreSQL condition variable: sleepers wake on every broadcast and re-check. */
class ConditionVariable {
  private generation = Deferred.unsafeMake<void>(FiberId.none)
  get current(): Deferred.Deferred<void> {
    return this.generation
  }
  broadcast(): void {
    const woken = this.generation
    this.generation = Deferred.unsafeMake<void>(FiberId.none)
    Deferred.unsafeDone(woken, Exit.void)
  }
}

type ProcessKind = "postmaster" | "backend" | "checkpointer" | "archiver" | "worker" | "bgwriter"

interface Process {
  readonly name: string
  readonly kind: ProcessKind
  /** What it waits on right now (for the wait-for graph), or undefined. */
  waitingOn: string | undefined
  /** The queue location it waits for in `s3_queue_wait_for_location`, if it does. */
  waitLocation: number | undefined
  alive: boolean
  exitReason: string | undefined
}

/** A backend killed by SIGTERM at an interrupt check (PostgreSQL's FATAL "terminating connection"). */
class Terminated {
  readonly _tag = "Terminated"
  constructor(readonly process: string) {}
}

/** A FATAL error inside a worker (any HTTP failure). */
class WorkerFatal {
  readonly _tag = "WorkerFatal"
  constructor(readonly detail: string) {}
}

// ---------------------------------------------------------------------------------------------
// Queue, tasks, parts, WAL
// ---------------------------------------------------------------------------------------------

type ModelTask =
  | { readonly _tag: "WriteFilePart"; readonly file: number; readonly part: number; readonly checkpoint: number }
  | { readonly _tag: "ReadFilePart"; readonly file: number; readonly part: number }
  | { readonly _tag: "WriteWALFile"; readonly segment: number }
  | { readonly _tag: "WriteFile"; readonly key: string; readonly bytes: Uint8Array }

const taskText = (task: ModelTask): string => {
  switch (task._tag) {
    case "WriteFilePart":
      return `WriteFilePart f${task.file}#${task.part} chkp ${task.checkpoint}`
    case "ReadFilePart":
      return `ReadFilePart f${task.file}#${task.part}`
    case "WriteWALFile":
      return `WriteWALFile segment ${task.segment}`
    case "WriteFile":
      return `WriteFile ${task.key}`
  }
}

interface QueueEntry {
  readonly location: number
  readonly length: number
  /** The length word is written last: until then a picker sees 0 (reserved, unpublished). */
  published: boolean
  erased: boolean
  task: ModelTask | undefined
  /** Failed attempts (each one killed a worker). */
  failures: number
  lastError: string | undefined
  readonly reservedBy: Process
}

type PartStatus = "NotLoaded" | "Loading" | "Loaded" | "Evicting"

interface PartWord {
  readonly file: number
  readonly part: number
  status: PartStatus
  locks: number
  dirty: boolean
  scheduled: boolean
  writing: boolean
  usage: number
  /** The checkpoint whose data object holds the latest completed upload. */
  uploadedAt: number | undefined
  /** Local bytes (meaningful when Loaded). */
  bytes: Uint8Array
}

interface WalRecord {
  readonly lsn: number
  readonly slot: Slot
  readonly value: Uint8Array
  committed: boolean
}

interface Checkpointed {
  readonly checkpoint: number
  readonly walPosition: number
}

const partKey = (file: number, part: number) => `f${file}#${part}`
const dataKey = (checkpoint: number, file: number, part: number) =>
  `data/${String(checkpoint).padStart(8, "0")}/f${file}/${part}`
const mapKey = (checkpoint: number) => `manifests/${String(checkpoint).padStart(8, "0")}/map.json`
const markerKey = (checkpoint: number) => `checkpoints/${String(checkpoint).padStart(8, "0")}`
const walKey = (segment: number) => `wal/${segment.toString(16).toUpperCase().padStart(16, "0")}`
const lockKey = "lock"
const modelEpoch = 1

const encodeJson = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value))
const decodeJson = (bytes: Uint8Array): unknown => JSON.parse(new TextDecoder().decode(bytes))
const toBase64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64")
const fromBase64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, "base64"))

interface MarkerJson {
  readonly checkpoint: number
  readonly previous: number
  readonly walPosition: number
  readonly instanceId: string
}
interface MapJson {
  readonly parts: ReadonlyArray<readonly [number, number, number]>
}
interface WalSegmentJson {
  readonly records: ReadonlyArray<
    {
      readonly lsn: number
      readonly file: number
      readonly part: number
      readonly index: number
      readonly value: string
    }
  >
}

/** What a local data directory keeps across a restart. */
interface LocalDirectory {
  lastCheckpoint: Checkpointed | undefined
  /** Part bytes present locally (Loaded parts), by part key. */
  parts: Map<string, Uint8Array>
  wal: Array<WalRecord>
  walInsertLsn: number
}

// ---------------------------------------------------------------------------------------------
// One running cluster (postmaster and its children)
// ---------------------------------------------------------------------------------------------

const now = Effect.clockWith((clock) => clock.currentTimeMillis)

class Cluster {
  // --- queue (q) ---
  insertLocation = 0
  pickLocation = 0
  erasedLocation = 0
  readonly entries = new Map<number, QueueEntry>()
  readonly erasedLocationCv = new ConditionVariable()
  // --- parts (h) ---
  readonly parts = new Map<string, PartWord>()
  readonly partCv = new ConditionVariable()
  /** MRU dirty parts per file (io:530-586). */
  readonly dirtyMru = new Map<number, Array<number>>()
  /** Highest part-write location per checkpoint number (`writeMaxLocation`). */
  readonly writeMaxLocation = new Map<number, number>()
  /** The checkpoint new write-backs upload under. */
  openCheckpoint: number
  // --- workers (w) ---
  readonly workerSlots: Array<number | undefined>
  readonly workerLatches: Array<ConditionVariable>
  workersShutdownRequested = false
  // --- WAL, archiver ---
  readonly wal: Array<WalRecord>
  walInsertLsn: number
  readonly readySegments: Array<number> = []
  readonly archivedSegments = new Set<number>()
  readonly archiverCv = new ConditionVariable()
  archiverFinalCycle = false
  // --- checkpointer ---
  checkpointsRequested = 0
  checkpointsDone = 0
  readonly checkpointCv = new ConditionVariable()
  shutdownCheckpointRequested = false
  lastCheckpoint: Checkpointed | undefined
  readonly completed: Array<Checkpointed> = []
  // --- postmaster ---
  shutdownRequested = false
  readonly processes: Array<Process> = []
  readonly postmasterDone = Deferred.unsafeMake<ShutdownResult>(FiberId.none)
  shutdownStarted = false
  activeBackends = 0
  readonly backendsCv = new ConditionVariable()

  constructor(
    readonly settings: OriginalSettings,
    readonly store: ObjectStoreService,
    readonly faults: FaultControl,
    readonly label: string,
    readonly local: LocalDirectory,
    /** Where each part's remote copy lives, from the checkpoint the cluster started from. */
    remote: ReadonlyMap<string, number>
  ) {
    this.workerSlots = Array.from({ length: settings.workerCount }, () => undefined)
    this.workerLatches = Array.from({ length: settings.workerCount }, () => new ConditionVariable())
    this.lastCheckpoint = local.lastCheckpoint
    this.openCheckpoint = (local.lastCheckpoint?.checkpoint ?? 0) + 1
    this.wal = local.wal
    this.walInsertLsn = local.walInsertLsn
    for (const [key, checkpoint] of remote) {
      const [file, part] = key.slice(1).split("#").map(Number)
      this.parts.set(key, newPart(file ?? 0, part ?? 0, "NotLoaded", checkpoint))
    }
    for (const [key, bytes] of local.parts) {
      const word = this.parts.get(key)
      if (word !== undefined) {
        word.status = "Loaded"
        word.bytes = bytes
      }
    }
  }

  process(name: string, kind: ProcessKind): Process {
    const process: Process = {
      name,
      kind,
      waitingOn: undefined,
      waitLocation: undefined,
      alive: true,
      exitReason: undefined
    }
    this.processes.push(process)
    return process
  }

  /** CHECK_FOR_INTERRUPTS: a backend dies once SIGTERM arrived; other processes ignore it here. */
  checkInterrupts(process: Process): Effect.Effect<void, Terminated> {
    return process.kind === "backend" && this.shutdownRequested
      ? Effect.fail(new Terminated(process.name))
      : Effect.void
  }

  /**
   * `while (!condition) ConditionVariableSleep(cv)`: no timeout; interrupt checks on every wake-up
   * (which only kill backends). The Effect fiber is uninterruptible: nothing outside the model
   * can cut this wait.
   */
  waitUntil(
    process: Process,
    cv: ConditionVariable,
    what: string,
    condition: () => boolean
  ): Effect.Effect<void, Terminated> {
    const loop: Effect.Effect<void, Terminated> = Effect.suspend(() => {
      const generation = cv.current
      if (condition()) {
        process.waitingOn = undefined
        return Effect.void
      }
      process.waitingOn = what
      return this.checkInterrupts(process).pipe(
        Effect.zipRight(Deferred.await(generation)),
        Effect.zipRight(loop)
      )
    })
    return Effect.uninterruptible(loop)
  }

  // --- q: the queue ---------------------------------------------------------------------------

  /** `s3_queue_put_task` (q:102-160): reserve, wait while full, publish. Returns the location. */
  enqueue(process: Process, task: ModelTask): Effect.Effect<number, Terminated> {
    return Effect.suspend(() => {
      const length = this.settings.taskBytes
      const location = this.insertLocation
      this.insertLocation += length
      const entry: QueueEntry = {
        location,
        length,
        published: false,
        erased: false,
        task: undefined,
        failures: 0,
        lastError: undefined,
        reservedBy: process
      }
      this.entries.set(location, entry)
      const size = this.settings.queueSlots * this.settings.taskBytes
      return this.waitUntil(
        process,
        this.erasedLocationCv,
        `queue full: slot at ${location} reserved, waiting for erasedLocation > ${location + length - size}`,
        () => location + length <= this.erasedLocation + size
      ).pipe(
        // A producer killed here leaves its slot reserved and unpublished: a permanent hole.
        Effect.tapError(() => Effect.sync(() => void (coverage.holes += 1))),
        Effect.map(() => {
          // No wake-up on enqueue: workers find the task at their next poll (w:982-984).
          entry.task = task
          entry.published = true
          return location
        })
      )
    })
  }

  /** `s3_queue_try_pick_task` (q:166-215). */
  tryPick(): QueueEntry | undefined {
    if (this.pickLocation >= this.insertLocation) return undefined
    const entry = this.entries.get(this.pickLocation)
    if (entry === undefined || !entry.published) return undefined
    this.pickLocation += entry.length
    return entry
  }

  /** `s3_queue_erase_task` (q:266-330): mark erased, advance the erased prefix, broadcast. */
  erase(entry: QueueEntry): void {
    entry.erased = true
    for (;;) {
      const next = this.entries.get(this.erasedLocation)
      if (next === undefined || !next.erased) break
      this.entries.delete(this.erasedLocation)
      this.erasedLocation += next.length
    }
    this.erasedLocationCv.broadcast()
  }

  /** `s3_queue_wait_for_location(L)` (q:335-348): while erased <= L sleep. No timeout. */
  waitForLocation(process: Process, location: number, why: string): Effect.Effect<void, Terminated> {
    return Effect.suspend(() => {
      process.waitLocation = location
      return this.waitUntil(
        process,
        this.erasedLocationCv,
        `s3_queue_wait_for_location(${location}) ${why}`,
        () => this.erasedLocation > location
      )
    }).pipe(Effect.ensuring(Effect.sync(() => (process.waitLocation = undefined))))
  }

  // --- h: part words ---------------------------------------------------------------------------

  word(file: number, part: number): PartWord {
    const key = partKey(file, part)
    let word = this.parts.get(key)
    if (word === undefined) {
      // A new part of a file newer than the last checkpoint: Loaded and dirty (h:220-235).
      word = newPart(file, part, "Loaded", undefined)
      word.dirty = true
      this.parts.set(key, word)
    }
    return word
  }

  /** `s3_load_file_part` (w:692-711): the NotLoaded → Loading winner enqueues the read; a loser
   * of that race gets the CURRENT INSERT LOCATION as a proxy; a Loaded part needs no wait. */
  loadFilePart(
    process: Process,
    word: PartWord
  ): Effect.Effect<{ readonly location: number; readonly proxy: boolean } | undefined, Terminated> {
    return Effect.suspend(
      (): Effect.Effect<{ readonly location: number; readonly proxy: boolean } | undefined, Terminated> => {
        if (word.status === "NotLoaded") {
          coverage.loads += 1
          word.status = "Loading"
          return Effect.map(
            this.enqueue(process, { _tag: "ReadFilePart", file: word.file, part: word.part }),
            (location) => ({ location, proxy: false })
          )
        }
        if (word.status === "Loading") {
          coverage.proxyWaits += 1
          if (process.kind === "checkpointer") coverage.checkpointerProxyWaits += 1
          return Effect.succeed({ location: this.insertLocation, proxy: true })
        }
        return Effect.succeed(undefined)
      }
    )
  }

  /** `s3_header_lock_part` (h:670-722). */
  lockPart(process: Process, file: number, part: number): Effect.Effect<PartWord, Terminated> {
    const word = this.word(file, part)
    const attempt: Effect.Effect<PartWord, Terminated> = Effect.suspend(() => {
      switch (word.status) {
        case "Loaded":
          word.locks += 1
          word.usage = Math.min(127, word.usage + 1)
          process.waitingOn = undefined
          return Effect.succeed(word)
        case "NotLoaded":
          // The word was read without a lock: another process may run before the CAS inside
          // s3_load_file_part.
          return Random.nextIntBetween(0, this.settings.preemptionMsMax + 1).pipe(
            Effect.flatMap((ms) => (ms === 0 ? Effect.yieldNow() : Effect.sleep(Duration.millis(ms)))),
            Effect.zipRight(this.loadFilePart(process, word)),
            Effect.flatMap((load) =>
              load === undefined
                ? Effect.void
                : this.waitForLocation(
                  process,
                  load.location,
                  load.proxy
                    ? `[proxy: part ${
                      partKey(file, part)
                    } was already Loading; ${load.location} is the insert location at that time]`
                    : `[read of part ${partKey(file, part)}]`
                )
            ),
            Effect.zipRight(attempt)
          )
        case "Loading":
        case "Evicting":
          // pg_usleep(10 ms) until the status changes: no interrupt check (h:694-703).
          process.waitingOn = `pg_usleep poll: part ${partKey(file, part)} is ${word.status}`
          return Effect.sleep(Duration.millis(this.settings.lockPollMs)).pipe(Effect.zipRight(attempt))
      }
    })
    return Effect.uninterruptible(attempt)
  }

  /** unlock (h:807-835), optionally setting DIRTY (writes pass true). */
  unlockPart(word: PartWord, dirty: boolean): void {
    word.locks -= 1
    if (dirty) word.dirty = true
    this.partCv.broadcast()
  }

  /** The MRU dirty list (io:530-586): push; the part falling off is scheduled for write. */
  touchDirty(process: Process, word: PartWord): Effect.Effect<void, Terminated> {
    return Effect.suspend(() => {
      const list = this.dirtyMru.get(word.file) ?? []
      const without = list.filter((part) => part !== word.part)
      without.unshift(word.part)
      const fallen = without.length > this.settings.dirtyPartsMru ? without.pop() : undefined
      this.dirtyMru.set(word.file, without)
      if (fallen === undefined) return Effect.void
      return Effect.asVoid(this.scheduleWrite(process, this.word(word.file, fallen), this.openCheckpoint))
    })
  }

  /** `mark_part_scheduled_for_write` (h:837-861) + enqueue: only if DIRTY and not SCHEDULED. */
  scheduleWrite(process: Process, word: PartWord, checkpoint: number): Effect.Effect<number | undefined, Terminated> {
    return Effect.suspend(() => {
      if (!word.dirty || word.scheduled) return Effect.succeed(undefined)
      word.scheduled = true
      return this.enqueue(process, { _tag: "WriteFilePart", file: word.file, part: word.part, checkpoint }).pipe(
        Effect.tap((location) =>
          Effect.sync(() =>
            this.writeMaxLocation.set(checkpoint, Math.max(this.writeMaxLocation.get(checkpoint) ?? -1, location))
          )
        )
      )
    })
  }

  // --- w: workers ------------------------------------------------------------------------------

  /** Performs one task (w:280-587); any HTTP failure is FATAL. */
  perform(task: ModelTask): Effect.Effect<void, WorkerFatal> {
    const http = <A>(what: string, request: Effect.Effect<A, unknown>) =>
      request.pipe(Effect.mapError((error) => new WorkerFatal(`${what}: ${describeError(error)}`)))
    switch (task._tag) {
      case "WriteFilePart": {
        const word = this.word(task.file, task.part)
        return Effect.suspend(() => {
          // DIRTY|SCHEDULED → WRITING (h:863-885); the bytes are read after.
          word.dirty = false
          word.scheduled = false
          word.writing = true
          const bytes = word.bytes.slice()
          return http(
            `PUT ${dataKey(task.checkpoint, task.file, task.part)}`,
            this.store.put(dataKey(task.checkpoint, task.file, task.part), bytes)
          ).pipe(
            Effect.tapBoth({
              // On error: not written, DIRTY|SCHEDULED restored, rethrow (h:932-951).
              onFailure: () =>
                Effect.sync(() => {
                  word.writing = false
                  word.dirty = true
                  word.scheduled = true
                }),
              onSuccess: () =>
                Effect.sync(() => {
                  word.writing = false
                  word.uploadedAt = Math.max(word.uploadedAt ?? 0, task.checkpoint)
                })
            })
          )
        })
      }
      case "ReadFilePart": {
        const word = this.word(task.file, task.part)
        const checkpoint = word.uploadedAt ?? 0
        return http(
          `GET ${dataKey(checkpoint, task.file, task.part)}`,
          this.store.get(dataKey(checkpoint, task.file, task.part))
        ).pipe(
          Effect.map((bytes) => {
            word.bytes = padPart(bytes)
            // Idempotent replay: only a Loading part becomes Loaded (w:350-395, 7ab94115).
            if (word.status === "Loading") {
              word.status = "Loaded"
              word.usage = 1
            }
            this.partCv.broadcast()
          })
        )
      }
      case "WriteWALFile":
        return http(
          `PUT ${walKey(task.segment)}`,
          this.store.put(walKey(task.segment), this.encodeSegment(task.segment))
        ).pipe(
          Effect.map(() => void this.archivedSegments.add(task.segment))
        )
      case "WriteFile":
        return http(`PUT ${task.key}`, this.store.put(task.key, task.bytes))
    }
  }

  /** One worker process (w:924-1030): replay, then poll-and-drain until SIGTERM. */
  worker(process: Process, index: number): Effect.Effect<void, WorkerFatal> {
    const run = (location: number): Effect.Effect<void, WorkerFatal> =>
      Effect.suspend(() => {
        const entry = this.entries.get(location)
        if (entry?.task === undefined) return Effect.void
        const task = entry.task
        this.workerSlots[index] = location
        process.waitingOn = `HTTP for task at ${location} (${taskText(task)})`
        return this.perform(task).pipe(
          Effect.tapError((error) =>
            Effect.sync(() => {
              entry.failures += 1
              entry.lastError = error.detail
            })
          ),
          Effect.map(() => {
            this.workerSlots[index] = undefined
            process.waitingOn = undefined
            this.erase(entry)
          })
        )
      })
    const drain: Effect.Effect<void, WorkerFatal> = Effect.suspend(() => {
      const entry = this.tryPick()
      return entry === undefined ? Effect.void : run(entry.location).pipe(Effect.zipRight(drain))
    })
    const loop: Effect.Effect<void, WorkerFatal> = Effect.suspend(() => {
      if (this.workersShutdownRequested) return Effect.void
      const latch = this.workerLatches[index]?.current
      process.waitingOn = `WaitLatch(timeout ${this.settings.bgwriterDelayMs} ms) in the main loop`
      const wait = latch === undefined ? Effect.void : Deferred.await(latch)
      return wait.pipe(
        Effect.timeout(Duration.millis(this.settings.bgwriterDelayMs)),
        Effect.ignore,
        Effect.zipRight(drain),
        Effect.zipRight(loop)
      )
    })
    const replay = Effect.suspend(() => {
      const location = this.workerSlots[index]
      return location === undefined ? Effect.void : run(location)
    })
    // Nothing outside the model interrupts a worker: it ends by its own exit or FATAL error.
    return replay.pipe(Effect.zipRight(loop))
  }

  /** The postmaster's care of worker `index`: restart after a crash, unless shutting down. */
  superviseWorker(index: number): Effect.Effect<void> {
    const generation = { count: 0 }
    const start: Effect.Effect<void> = Effect.suspend(() => {
      const process = this.process(
        `s3 worker ${index}${generation.count === 0 ? "" : ` (restart ${generation.count})`}`,
        "worker"
      )
      generation.count += 1
      return this.worker(process, index).pipe(
        Effect.matchEffect({
          onSuccess: () =>
            Effect.sync(() => {
              process.alive = false
              process.waitingOn = undefined
              process.exitReason = "exit 0 (shutdown)"
              this.wakeAll()
            }),
          onFailure: (fatal) =>
            Effect.suspend(() => {
              coverage.workerCrashes += 1
              process.alive = false
              process.exitReason = `FATAL: ${fatal.detail}`
              this.wakeAll()
              if (this.shutdownRequested) return Effect.void // not restarted once shutdown began
              return Effect.sleep(Duration.millis(this.settings.workerRestartDelayMs)).pipe(Effect.zipRight(start))
            })
        })
      )
    })
    return start
  }

  // --- WAL and the archiver ---------------------------------------------------------------------

  appendRecord(slot: Slot, value: Uint8Array): WalRecord {
    const segmentBytes = this.settings.walSegmentBytes
    if ((this.walInsertLsn % segmentBytes) + this.settings.walRecordBytes > segmentBytes) {
      // The record does not fit: the segment is complete, the next one begins.
      const segment = Math.floor(this.walInsertLsn / segmentBytes)
      this.closeSegment(segment)
      this.walInsertLsn = (segment + 1) * segmentBytes
    }
    const record: WalRecord = { lsn: this.walInsertLsn, slot, value, committed: false }
    this.walInsertLsn += this.settings.walRecordBytes
    this.wal.push(record)
    this.local.walInsertLsn = this.walInsertLsn
    return record
  }

  /** Marks a segment ready for archiving (full, or switched). */
  closeSegment(segment: number): void {
    if (!this.readySegments.includes(segment) && !this.archivedSegments.has(segment)) this.readySegments.push(segment)
    this.archiverCv.broadcast()
  }

  /** `pg_switch_wal`: closes the current segment if it holds anything. */
  switchWal(): void {
    const segmentBytes = this.settings.walSegmentBytes
    if (this.walInsertLsn % segmentBytes === 0) return
    const segment = Math.floor(this.walInsertLsn / segmentBytes)
    this.closeSegment(segment)
    this.walInsertLsn = (segment + 1) * segmentBytes
    this.local.walInsertLsn = this.walInsertLsn
  }

  encodeSegment(segment: number): Uint8Array {
    const start = segment * this.settings.walSegmentBytes
    const end = start + this.settings.walSegmentBytes
    const records = this.wal
      .filter((record) => record.lsn >= start && record.lsn < end)
      .map((record) => ({
        lsn: record.lsn,
        file: record.slot.file,
        part: record.slot.part,
        index: record.slot.index,
        value: toBase64(record.value)
      }))
    const json: WalSegmentJson = { records }
    return encodeJson(json)
  }

  /** Every record below this LSN is in an archived segment. */
  archivedThroughLsn(): number {
    let segment = 0
    while (this.archivedSegments.has(segment)) segment += 1
    return Math.min(this.walInsertLsn, segment * this.settings.walSegmentBytes)
  }

  /** The archiver (ar:123-178): enqueue the segment's PUT, wait for it; ignores SIGTERM. */
  archiver(process: Process): Effect.Effect<void, Terminated> {
    const loop: Effect.Effect<void, Terminated> = Effect.suspend(() => {
      const segment = this.readySegments[0]
      if (segment !== undefined) {
        return this.enqueue(process, { _tag: "WriteWALFile", segment }).pipe(
          Effect.flatMap((location) => this.waitForLocation(process, location, `[archive of WAL segment ${segment}]`)),
          Effect.map(() => {
            this.readySegments.shift()
            this.archivedSegments.add(segment)
            this.archiverCv.broadcast()
          }),
          Effect.zipRight(loop)
        )
      }
      if (this.archiverFinalCycle) return Effect.void
      return this.waitUntil(
        process,
        this.archiverCv,
        "archiver: waiting for a ready segment",
        () => this.readySegments.length > 0 || this.archiverFinalCycle
      ).pipe(
        Effect.zipRight(loop)
      )
    })
    return loop
  }

  // --- the checkpointer ------------------------------------------------------------------------

  /** Checkpoint N (cp:1684-2133, sc:232-320, cp:2331-2392). */
  checkpoint(process: Process, shutdown: boolean): Effect.Effect<void, Terminated> {
    return Effect.gen(this, function*() {
      const checkpoint = (this.lastCheckpoint?.checkpoint ?? 0) + 1
      const walPosition = this.walInsertLsn
      this.openCheckpoint = checkpoint + 1
      let maxLocation = this.writeMaxLocation.get(checkpoint) ?? -1
      const walk = [...this.parts.values()].sort((left, right) => left.file - right.file || left.part - right.part)
      for (const { file, part } of walk) {
        const word = yield* this.lockPart(process, file, part)
        const location = yield* this.scheduleWrite(process, word, checkpoint)
        this.unlockPart(word, false)
        if (location !== undefined) maxLocation = Math.max(maxLocation, location)
      }
      maxLocation = Math.max(maxLocation, this.writeMaxLocation.get(checkpoint) ?? -1)
      if (maxLocation >= 0) yield* this.waitForLocation(process, maxLocation, `[parts of checkpoint ${checkpoint}]`)
      const map: MapJson = {
        parts: [...this.parts.values()].flatMap((
          word
        ) => (word.uploadedAt === undefined ? [] : [[word.file, word.part, word.uploadedAt] as const]))
      }
      const mapLocation = yield* this.enqueue(process, {
        _tag: "WriteFile",
        key: mapKey(checkpoint),
        bytes: encodeJson(map)
      })
      yield* this.waitForLocation(process, mapLocation, `[map of checkpoint ${checkpoint}]`)
      if (shutdown) {
        // WAL insertion is forbidden after the shutdown checkpoint: enqueue every unarchived segment.
        const last = Math.floor(Math.max(0, this.walInsertLsn - 1) / this.settings.walSegmentBytes)
        for (let segment = 0; segment <= last && this.walInsertLsn > 0; segment++) {
          if (!this.archivedSegments.has(segment)) yield* this.enqueue(process, { _tag: "WriteWALFile", segment })
        }
      } else if (this.walInsertLsn > 0) {
        // RequestXLogSwitch, then pg_usleep(100 ms) until the archiver marks it done.
        const segment = Math.floor(Math.max(0, this.walInsertLsn - 1) / this.settings.walSegmentBytes)
        this.switchWal()
        while (!this.archivedSegments.has(segment)) {
          process.waitingOn = `pg_usleep poll: WAL segment ${segment} archived?`
          yield* Effect.sleep(Duration.millis(this.settings.switchPollMs))
        }
        process.waitingOn = undefined
      }
      const marker: MarkerJson = {
        checkpoint,
        previous: this.lastCheckpoint?.checkpoint ?? 0,
        walPosition,
        instanceId: modelInstanceId
      }
      const markerLocation = yield* this.enqueue(process, {
        _tag: "WriteFile",
        key: markerKey(checkpoint),
        bytes: encodeJson(marker)
      })
      yield* this.waitForLocation(process, markerLocation, `[completion marker of checkpoint ${checkpoint}]`)
      this.lastCheckpoint = { checkpoint, walPosition }
      this.local.lastCheckpoint = this.lastCheckpoint
      this.completed.push(this.lastCheckpoint)
    }).pipe(Effect.uninterruptible)
  }

  /** The checkpointer process: requested checkpoints, then the shutdown checkpoint, then exit. */
  checkpointer(process: Process): Effect.Effect<void, Terminated> {
    const loop: Effect.Effect<void, Terminated> = Effect.suspend(() => {
      if (this.checkpointsDone < this.checkpointsRequested) {
        const target = this.checkpointsRequested
        return this.checkpoint(process, false).pipe(
          Effect.map(() => {
            this.checkpointsDone = target
            this.checkpointCv.broadcast()
          }),
          Effect.zipRight(loop)
        )
      }
      if (this.shutdownCheckpointRequested) return this.checkpoint(process, true)
      return this.waitUntil(
        process,
        this.checkpointCv,
        "checkpointer main loop: waiting for a request",
        () => this.checkpointsDone < this.checkpointsRequested || this.shutdownCheckpointRequested
      ).pipe(
        Effect.zipRight(loop)
      )
    })
    return loop
  }

  // --- the postmaster --------------------------------------------------------------------------

  /** Forks a child process fiber and marks it dead when it ends. */
  spawn(process: Process, body: Effect.Effect<void, unknown>): Effect.Effect<void> {
    return Effect.asVoid(
      Effect.forkDaemon(
        body.pipe(
          Effect.exit,
          Effect.map((exit) => {
            process.alive = false
            process.waitingOn = undefined
            process.exitReason = Exit.isSuccess(exit) ? "exit 0" : "exit 1"
            // SIGCHLD: the postmaster's latch is set.
            this.wakeAll()
          })
        )
      )
    )
  }

  start: Effect.Effect<void> = Effect.gen(this, function*() {
    const checkpointer = this.process("checkpointer", "checkpointer")
    yield* this.spawn(checkpointer, this.checkpointer(checkpointer))
    const archiver = this.process("archiver", "archiver")
    yield* this.spawn(archiver, this.archiver(archiver))
    const bgwriter = this.process("bgwriter", "bgwriter")
    yield* this.spawn(bgwriter, this.bgwriter(bgwriter))
    for (let index = 0; index < this.settings.workerCount; index++) {
      yield* Effect.forkDaemon(this.superviseWorker(index))
    }
  })

  /** The shutdown sequence of §7; completes `postmasterDone` when the postmaster exits. */
  shutdown: Effect.Effect<ShutdownResult> = Effect.suspend(() => {
    if (!this.shutdownStarted) {
      this.shutdownStarted = true
      const postmaster = this.process("postmaster", "postmaster")
      const sequence = Effect.gen(this, function*() {
        const startMs = yield* now
        // SIGTERM to backends: set the flag and set their latches (wake every sleeper).
        this.shutdownRequested = true
        this.wakeAll()
        yield* this.waitUntil(
          postmaster,
          this.backendsCv,
          "waiting for backends to exit",
          () => this.activeBackends === 0
        )
        // The checkpointer finishes any checkpoint in progress, then the shutdown checkpoint.
        this.shutdownCheckpointRequested = true
        this.checkpointCv.broadcast()
        yield* this.waitUntil(
          postmaster,
          this.checkpointCv,
          "waiting for the checkpointer (shutdown checkpoint)",
          () => !this.processAlive("checkpointer")
        )
        this.archiverFinalCycle = true
        this.archiverCv.broadcast()
        yield* this.waitUntil(
          postmaster,
          this.archiverCv,
          "waiting for the archiver's final cycle",
          () => !this.processAlive("archiver")
        )
        this.workersShutdownRequested = true
        this.wakeAll()
        yield* this.waitUntil(
          postmaster,
          this.erasedLocationCv,
          "waiting for the S3 workers and the bgwriter to exit",
          () => !this.processes.some((each) => (each.kind === "worker" || each.kind === "bgwriter") && each.alive)
        )
        // before_shmem_exit: delete the lock object (errors are FATAL-at-exit: ignored).
        yield* this.store.delete(lockKey).pipe(Effect.ignore)
        postmaster.alive = false
        postmaster.exitReason = "exit 0"
        const endMs = yield* now
        const result: ShutdownResult = {
          metDeadline: endMs - startMs <= this.settings.shutdownDeadlineMs,
          durationMs: endMs - startMs,
          archivedThroughLsn: this.archivedThroughLsn(),
          finalCheckpoint: this.lastCheckpoint?.checkpoint,
          finalCheckpointTimedOut: false,
          problems: [],
          detail: `postmaster exited after ${endMs - startMs} ms`
        }
        yield* Deferred.succeed(this.postmasterDone, result)
      })
      return Effect.forkDaemon(Effect.catchAll(sequence, () => Effect.void)).pipe(
        Effect.zipRight(Deferred.await(this.postmasterDone))
      )
    }
    return Deferred.await(this.postmasterDone)
  })

  processAlive(kind: ProcessKind): boolean {
    return this.processes.some((process) => process.kind === kind && process.alive)
  }

  /** Signals set every latch: every sleeper wakes and re-checks. */
  wakeAll(): void {
    this.erasedLocationCv.broadcast()
    this.partCv.broadcast()
    this.checkpointCv.broadcast()
    this.archiverCv.broadcast()
    this.backendsCv.broadcast()
    for (const latch of this.workerLatches) latch.broadcast()
  }

  /** Runs a backend's operation: counted while it runs, part locks released on exit. */
  backend<A>(
    name: string,
    body: (process: Process) => Effect.Effect<A, Terminated>
  ): Effect.Effect<Exit.Exit<A, Terminated>> {
    return Effect.suspend(() => {
      if (this.shutdownRequested) return Effect.succeed(Exit.fail(new Terminated(name)))
      const process = this.process(name, "backend")
      this.activeBackends += 1
      return body(process).pipe(
        Effect.exit,
        Effect.tap(() =>
          Effect.sync(() => {
            process.alive = false
            process.waitingOn = undefined
            this.activeBackends -= 1
            this.backendsCv.broadcast()
          })
        ),
        Effect.uninterruptible
      )
    })
  }

  /** Locks a part for a backend; the lock is released whatever happens (error cleanup, h:993-1001). */
  withPart<A>(
    process: Process,
    file: number,
    part: number,
    dirty: boolean,
    body: (word: PartWord) => Effect.Effect<A, Terminated>
  ): Effect.Effect<A, Terminated> {
    return Effect.acquireUseRelease(
      this.lockPart(process, file, part),
      body,
      (word) => Effect.sync(() => this.unlockPart(word, dirty))
    )
  }

  // --- eviction --------------------------------------------------------------------------------

  /**
   * Memory pressure: the bgwriter's `s3_headers_try_eviction_cycle` (h:1231-1335), run as often as
   * it would run over a few `bgwriter_delay`s while the loaded parts stay above
   * `s3_desired_size`: clock passes until a pass changes nothing (at most `evictionPassesMax`).
   */
  /** One pass of the clock over every part (h:1231-1335). Reports whether it changed anything. */
  evictionPass: Effect.Effect<boolean> = Effect.suspend(() => {
    const evicting: Array<PartWord> = []
    let changed = false
    for (const word of this.parts.values()) {
      if (word.status !== "Loaded" || word.locks > 0 || word.dirty || word.writing || word.scheduled) continue
      changed = true
      if (word.usage > 0) {
        word.usage = Math.floor(word.usage / 2)
        continue
      }
      word.status = "Evicting"
      evicting.push(word)
    }
    // Zero-filling the part's bytes (pg_pwrite_zeros) is I/O: other processes run meanwhile.
    return Effect.yieldNow().pipe(
      Effect.map(() => {
        for (const word of evicting) {
          coverage.evictions += 1
          word.bytes = new Uint8Array(dataModel.partSizeBytes)
          word.status = "NotLoaded"
          this.local.parts.delete(partKey(word.file, word.part))
        }
        this.partCv.broadcast()
        return changed
      })
    )
  })

  evictionCycle: Effect.Effect<void> = Effect.suspend(() => {
    const passes = (left: number): Effect.Effect<void> =>
      left === 0
        ? Effect.void
        : Effect.flatMap(this.evictionPass, (changed) => (changed ? passes(left - 1) : Effect.void))
    return passes(evictionPassesMax)
  })

  /** The bgwriter (src/workers/bgwriter.c:219-220): each loop, one eviction pass when the loaded
   * parts exceed `s3_desired_size`; leaves at shutdown. */
  bgwriter(process: Process): Effect.Effect<void> {
    const loop: Effect.Effect<void> = Effect.suspend(() => {
      if (this.shutdownRequested) return Effect.void
      process.waitingOn = `WaitLatch(timeout ${this.settings.bgwriterDelayMs} ms)`
      return Effect.sleep(Duration.millis(this.settings.bgwriterDelayMs)).pipe(
        Effect.zipRight(
          Effect.suspend(() => {
            process.waitingOn = undefined
            const loaded = [...this.parts.values()].filter((word) => word.status === "Loaded").length
            return loaded > this.settings.desiredLoadedParts && !this.shutdownRequested
              ? Effect.asVoid(this.evictionPass)
              : Effect.void
          })
        ),
        Effect.zipRight(loop)
      )
    })
    return loop
  }

  // --- observation -----------------------------------------------------------------------------

  invariantProblems(): Array<string> {
    const problems: Array<string> = []
    for (const word of this.parts.values()) {
      const name = partKey(word.file, word.part)
      if (word.locks < 0) problems.push(`${name}: negative lock count ${word.locks}`)
      if (word.locks > 0 && word.status !== "Loaded") {
        problems.push(`${name}: ${word.locks} lock(s) on a ${word.status} part`)
      }
      if (word.status !== "Loaded" && (word.dirty || word.writing || word.scheduled)) {
        problems.push(`${name}: ${word.status} but dirty/writing/scheduled`)
      }
      if (word.scheduled && !word.dirty && !word.writing) problems.push(`${name}: SCHEDULED without DIRTY`)
      if (word.usage > 127) problems.push(`${name}: usage ${word.usage} over 127`)
    }
    return problems
  }

  /** The wait-for graph, with the shape of a hang when one is recognisable. */
  diagnose(): string {
    const lines = [
      `queue: insertLocation=${this.insertLocation} pickLocation=${this.pickLocation} erasedLocation=${this.erasedLocation}`
    ]
    for (const entry of [...this.entries.values()].sort((left, right) => left.location - right.location)) {
      const state = !entry.published
        ? "reserved, unpublished"
        : entry.location < this.pickLocation
        ? "picked"
        : "queued"
      lines.push(
        `  task at ${entry.location}: ${entry.task === undefined ? "?" : taskText(entry.task)} (${state}${
          entry.failures > 0 ? `, failed ${entry.failures}x` : ""
        })`
      )
    }
    const blockedAt = this.entries.get(this.pickLocation)
    if (blockedAt !== undefined && !blockedAt.published) {
      lines.push(
        `  the entry at pickLocation ${this.pickLocation} is reserved but unpublished: no worker can pick past it`
      )
    }
    for (const process of this.processes) {
      if (!process.alive) continue
      lines.push(`${process.name}: ${process.waitingOn ?? "running"}`)
    }
    const dead = this.processes.filter((process) =>
      process.kind === "worker" && !process.alive && process.exitReason?.startsWith("FATAL") === true
    )
    for (const [index, location] of this.workerSlots.entries()) {
      if (location === undefined) continue
      const entry = this.entries.get(location)
      const alive = this.processes.some((process) =>
        process.kind === "worker" && process.alive && process.name.startsWith(`s3 worker ${index}`)
      )
      lines.push(
        `s3 worker ${index}: replay slot holds the task at ${location} (${
          entry?.task === undefined ? "?" : taskText(entry.task)
        }), ` +
          `failed ${entry?.failures ?? 0} time(s), last: ${entry?.lastError ?? "-"}; worker ${
            alive ? "alive" : this.shutdownRequested ? "dead, not restarted (shutdown)" : "dead"
          }`
      )
    }
    if (dead.length > 0) {
      lines.push(`dead workers: ${dead.map((process) => `${process.name} (${process.exitReason})`).join("; ")}`)
    }
    const shape = this.hangShape()
    if (shape !== undefined) lines.push(`[shape ${shape}]`)
    return lines.join("\n")
  }

  /**
   * Names the hang: `#340` when a waiter of the queue needs a location whose task does not exist
   * (the insert-location proxy) or lies behind a reserved, unpublished hole; `#373` when the task
   * at the erased prefix sits in the replay slot of a worker that died and will not be restarted;
   * `stalled-request` when a worker hangs in an HTTP request (the original has no timeout).
   */
  hangShape(): "#340" | "#373" | "stalled-request" | undefined {
    const waiters = this.processes.filter((process) => process.alive && process.waitLocation !== undefined)
    // A waiter needs a location no task holds yet (the insert-location proxy), and nobody who
    // could still enqueue is left.
    if (waiters.some((process) => (process.waitLocation ?? 0) >= this.insertLocation)) return "#340"
    // A reserved, unpublished entry blocks the pick, and its producer is dead.
    const hole = this.entries.get(this.pickLocation)
    if (
      hole !== undefined && !hole.published && !hole.reservedBy.alive &&
      waiters.some((process) => (process.waitLocation ?? 0) >= hole.location)
    ) return "#340"
    // The task at the head of the erased prefix is in the replay slot of a dead worker that will
    // not be restarted.
    for (const [index, location] of this.workerSlots.entries()) {
      const entry = location === undefined ? undefined : this.entries.get(location)
      if (entry === undefined || entry.failures === 0 || this.erasedLocation > entry.location) continue
      const alive = this.processes.some((process) =>
        process.kind === "worker" && process.alive && process.name.startsWith(`s3 worker ${index}`)
      )
      if (
        !alive && this.shutdownRequested && waiters.some((process) => (process.waitLocation ?? 0) >= entry.location)
      ) return "#373"
    }
    if (
      this.processes.some((process) =>
        process.kind === "worker" && process.alive && process.waitingOn?.startsWith("HTTP") === true
      )
    ) return "stalled-request"
    return undefined
  }
}

/**
 * Coverage marks (TigerStyle): how often the rare paths ran, so that a test can check that the
 * generator reaches them at all. Counted over the whole process.
 */
export const coverage = {
  /** A read lost the NotLoaded → Loading race and took the insert-location proxy. */
  proxyWaits: 0,
  /** ... and the loser was the checkpointer (the #340 shape). */
  checkpointerProxyWaits: 0,
  /** A worker died on an HTTP failure. */
  workerCrashes: 0,
  /** A producer died holding a reserved, unpublished queue slot. */
  holes: 0,
  /** Parts evicted, and parts loaded back (NotLoaded → Loading winners). */
  evictions: 0,
  loads: 0
}

const modelInstanceId = "original"
/** Clock passes of one Evict step: enough to take a part from the usage cap (127) to eviction. */
const evictionPassesMax = 9

const newPart = (file: number, part: number, status: PartStatus, uploadedAt: number | undefined): PartWord => ({
  file,
  part,
  status,
  locks: 0,
  dirty: false,
  scheduled: false,
  writing: false,
  usage: status === "Loaded" ? 1 : 0,
  uploadedAt,
  bytes: new Uint8Array(dataModel.partSizeBytes)
})

const padPart = (bytes: Uint8Array): Uint8Array => {
  const part = new Uint8Array(dataModel.partSizeBytes)
  part.set(bytes.subarray(0, dataModel.partSizeBytes))
  return part
}

const describeError = (error: unknown): string =>
  typeof error === "object" && error !== null && "_tag" in error
    ? `${String(error._tag)}${"message" in error ? `: ${String(error.message)}` : ""}`
    : String(error)

const exitError = (exit: Exit.Exit<unknown, unknown>): string | undefined =>
  Exit.isSuccess(exit) ?
    undefined :
    Option.match(Exit.causeOption(exit).pipe(Option.flatMap((cause) => Option.fromNullable(cause))), {
      onNone: () => "failed",
      onSome: (cause) => (cause._tag === "Fail" ? describeError(cause.error) : String(cause))
    })

// ---------------------------------------------------------------------------------------------
// The system under test
// ---------------------------------------------------------------------------------------------

/** The world of the model: one bucket, one local directory per instance label. */
export interface OriginalWorld {
  readonly bucket: SimBucket
  readonly directories: Map<string, LocalDirectory>
  readonly faultControls: Array<FaultControl>
}

const emptyDirectory = (): LocalDirectory => ({ lastCheckpoint: undefined, parts: new Map(), wal: [], walInsertLsn: 0 })

/** The instance API over a running cluster. */
const instanceOf = (cluster: Cluster): Instance => {
  const writeSlot = (word: PartWord, slot: Slot, value: Uint8Array) => {
    const bytes = word.bytes.slice()
    bytes.set(value, slot.index * dataModel.slotBytes)
    word.bytes = bytes
    cluster.local.parts.set(partKey(word.file, word.part), bytes)
  }
  return {
    label: cluster.label,
    instanceId: modelInstanceId,
    epoch: modelEpoch,
    insert: (slot, value) =>
      Effect.gen(function*() {
        let applied = false
        let lsn: number | undefined
        let acked = false
        const exit = yield* cluster.backend(`backend insert ${slotKey(slot)}`, (process) =>
          Effect.gen(function*() {
            yield* cluster.withPart(process, slot.file, slot.part, true, (word) =>
              Effect.sync(() => writeSlot(word, slot, value)))
            applied = true
            yield* cluster.touchDirty(process, cluster.word(slot.file, slot.part))
            const record = cluster.appendRecord(slot, value)
            lsn = record.lsn
            // COMMIT: the WAL is flushed locally (no S3 involved).
            record.committed = true
            acked = true
          }))
        return { applied, lsn, acked, error: exitError(exit) }
      }),
    readPart: (file, part) =>
      Effect.map(
        cluster.backend(`backend read f${file}#${part}`, (process) =>
          cluster.withPart(process, file, part, false, (word) => Effect.sync(() => word.bytes.slice()))),
        (exit): PartRead => (Exit.isSuccess(exit)
          ? { bytes: exit.value, error: undefined }
          : { bytes: undefined, error: exitError(exit) })
      ),
    holdLease: (file, part, holdMs) =>
      Effect.map(
        cluster.backend(`backend lease f${file}#${part}`, (process) =>
          cluster.withPart(process, file, part, false, () => Effect.sleep(Duration.millis(holdMs)))),
        (exit): OpResult => ({ error: exitError(exit) })
      ),
    checkpoint: Effect.map(
      cluster.backend("backend CHECKPOINT", (process) =>
        Effect.suspend(() => {
          // RequestCheckpoint(CHECKPOINT_WAIT): wait for a checkpoint started after the request.
          cluster.checkpointsRequested += 1
          const ticket = cluster.checkpointsRequested
          cluster.checkpointCv.broadcast()
          return cluster.waitUntil(process, cluster.checkpointCv, "waiting for the requested checkpoint", () =>
            cluster.checkpointsDone >= ticket).pipe(
              Effect.map(() =>
                cluster.lastCheckpoint
              )
            )
        })),
      (exit): CheckpointResult =>
        Exit.isSuccess(exit) && exit.value !== undefined
          ? {
            completed: { checkpoint: exit.value.checkpoint, walPosition: exit.value.walPosition },
            skipped: undefined,
            error: undefined
          }
          : { completed: undefined, skipped: undefined, error: { tag: "Terminated", detail: exitError(exit) ?? "" } }
    ),
    evict: Effect.map(Effect.exit(cluster.evictionCycle), (exit): OpResult => ({ error: exitError(exit) })),
    archiveWal: Effect.sync((): OpResult => {
      if (cluster.shutdownRequested) return { error: "WAL insertion not allowed during shutdown" }
      cluster.switchWal()
      return { error: undefined }
    }),
    inject: (fault: Fault) => cluster.faults.inject(fault),
    heal: cluster.faults.heal,
    faultsActive: cluster.faults.active,
    shutdown: () => cluster.shutdown,
    observe: Effect.sync(
      (): Observation => {
        const alive = cluster.processes.filter((process) => process.alive && process.kind !== "backend")
        return {
          leasesHeld: [...cluster.parts.values()].reduce((sum, word) => sum + Math.max(0, word.locks), 0),
          fibersAlive: alive.length,
          fibersAliveDetail: alive.map((process) => `${process.name} (${process.waitingOn ?? "running"})`).join("; "),
          unresolvedTasks: Math.round((cluster.insertLocation - cluster.erasedLocation) / cluster.settings.taskBytes),
          invariantProblems: cluster.invariantProblems()
        }
      }
    ),
    invariants: Effect.sync(() => cluster.invariantProblems()),
    diagnose: Effect.sync(() => cluster.diagnose())
  }
}

/** Reads a checkpoint's marker and map. */
const readMarker = (store: ObjectStoreService, checkpoint: number) =>
  Effect.gen(function*() {
    const marker = decodeJson(yield* store.get(markerKey(checkpoint))) as MarkerJson
    const map = decodeJson(yield* store.get(mapKey(checkpoint))) as MapJson
    return { marker, map }
  })

const listCheckpointNumbers = (store: ObjectStoreService) =>
  store.list("checkpoints/").pipe(
    Stream.runCollect,
    Effect.map((infos) =>
      Chunk.toReadonlyArray(infos)
        .map((info) => Number(info.key.slice("checkpoints/".length)))
        .filter(Number.isFinite)
        .sort((left, right) => left - right)
    )
  )

/** Boots a cluster: the lock object (If-None-Match, then compare ids), then the children. */
const boot = (
  world: OriginalWorld,
  settings: OriginalSettings,
  label: string,
  directory: LocalDirectory,
  remote: ReadonlyMap<string, number>
) =>
  Effect.gen(function*() {
    const view = yield* world.bucket.view
    world.faultControls.push(view.faults)
    const lockBytes = encodeJson({ instanceId: modelInstanceId })
    yield* view.store.put(lockKey, lockBytes, { ifNoneMatch: true }).pipe(
      Effect.catchAll((error) =>
        describeError(error).startsWith("PreconditionFailed")
          ? Effect.flatMap(view.store.get(lockKey), (held) =>
            (decodeJson(held) as { instanceId?: string }).instanceId === modelInstanceId
              ? Effect.void
              : Effect.fail("FATAL: another instance holds the bucket lock"))
          : Effect.fail(`FATAL: could not put the lock object: ${describeError(error)}`)
      ),
      Effect.mapError(describeError)
    )
    const cluster = new Cluster(settings, view.store, view.faults, label, directory, remote)
    yield* cluster.start
    return cluster
  })

/** Replays WAL records into a cluster through backends (recovery). */
const replay = (cluster: Cluster, records: ReadonlyArray<{ readonly slot: Slot; readonly value: Uint8Array }>) =>
  Effect.forEach(
    records,
    (record) =>
      Effect.flatMap(
        cluster.backend(`startup replay ${slotKey(record.slot)}`, (process) =>
          cluster.withPart(process, record.slot.file, record.slot.part, true, (word) =>
            Effect.sync(() => {
              const bytes = word.bytes.slice()
              bytes.set(record.value, record.slot.index * dataModel.slotBytes)
              word.bytes = bytes
              cluster.local.parts.set(partKey(word.file, word.part), bytes)
            }))),
        (exit) => (Exit.isSuccess(exit)
          ? Effect.void
          : Effect.fail(`replay of ${slotKey(record.slot)} failed: ${exitError(exit)}`))
      ),
    { discard: true }
  )

const remoteOf = (map: MapJson): Map<string, number> =>
  new Map(map.parts.map(([file, part, checkpoint]) => [partKey(file, part), checkpoint]))

/** The model of the original protocol as a system under test. */
export const originalSystem = (
  settings: OriginalSettings = defaultOriginalSettings
): SystemUnderTest<OriginalWorld> => ({
  name: "original",
  shutdownDeadlineMs: settings.shutdownDeadlineMs,
  // The original bounds no wait.
  readDeadlineMs: undefined,
  makeWorld: Effect.map(makeSimBucket, (bucket) => ({ bucket, directories: new Map(), faultControls: [] })),
  open: (world, label) =>
    Effect.gen(function*() {
      const directory = emptyDirectory()
      world.directories.set(label, directory)
      return instanceOf(yield* boot(world, settings, label, directory, new Map()))
    }),
  takeOver: undefined,
  healAll: (world) => Effect.forEach(world.faultControls, (control) => control.heal, { discard: true }),
  restart: (world, label, crash) =>
    Effect.gen(function*() {
      const previous = world.directories.get(label) ?? emptyDirectory()
      const last = previous.lastCheckpoint
      const remote = last === undefined
        ? new Map<string, number>()
        : remoteOf((yield* readMarker(world.bucket.raw, last.checkpoint).pipe(Effect.mapError(describeError))).map)
      // A crash loses the data files written since the checkpoint (not fsynced) and uncommitted WAL.
      const directory: LocalDirectory = {
        lastCheckpoint: last,
        parts: crash ? new Map() : new Map([...previous.parts].filter(([key]) => remote.has(key))),
        wal: previous.wal.filter((record) => record.committed || !crash),
        walInsertLsn: previous.walInsertLsn
      }
      world.directories.set(label, directory)
      const cluster = yield* boot(world, settings, label, directory, remote)
      yield* replay(cluster, directory.wal.filter((record) => record.lsn >= (last?.walPosition ?? 0)))
      return instanceOf(cluster)
    }),
  restore: (world, label) =>
    Effect.gen(function*() {
      const store = world.bucket.raw
      const numbers = yield* listCheckpointNumbers(store).pipe(Effect.mapError(describeError))
      const latest = numbers[numbers.length - 1]
      const loaded = latest === undefined
        ? undefined
        : yield* readMarker(store, latest).pipe(Effect.mapError(describeError))
      const directory = emptyDirectory()
      directory.lastCheckpoint = loaded === undefined
        ? undefined
        : { checkpoint: loaded.marker.checkpoint, walPosition: loaded.marker.walPosition }
      const walKeys = yield* store.list("wal/").pipe(Stream.runCollect, Effect.mapError(describeError))
      const records: Array<{ lsn: number; slot: Slot; value: Uint8Array }> = []
      for (const info of walKeys) {
        const segment = decodeJson(yield* store.get(info.key).pipe(Effect.mapError(describeError))) as WalSegmentJson
        for (const record of segment.records) {
          if (record.lsn >= (loaded?.marker.walPosition ?? 0)) {
            records.push({
              lsn: record.lsn,
              slot: { file: record.file, part: record.part, index: record.index },
              value: fromBase64(record.value)
            })
          }
        }
      }
      records.sort((left, right) => left.lsn - right.lsn)
      directory.walInsertLsn =
        (Math.floor((records[records.length - 1]?.lsn ?? loaded?.marker.walPosition ?? 0) / settings.walSegmentBytes) +
          1) * settings.walSegmentBytes
      world.directories.set(label, directory)
      const cluster = yield* boot(
        world,
        settings,
        label,
        directory,
        loaded === undefined ? new Map() : remoteOf(loaded.map)
      )
      yield* replay(cluster, records)
      return instanceOf(cluster)
    }),
  audit: (world) => auditOriginalBucket(world.bucket.raw)
})

/** Reads every checkpoint of the model's bucket back, independently of the model. */
const auditOriginalBucket = (store: ObjectStoreService): Effect.Effect<BucketAudit> =>
  Effect.gen(function*() {
    const problems: Array<string> = []
    const checkpoints: Array<AuditedCheckpoint> = []
    const numbers = yield* listCheckpointNumbers(store).pipe(Effect.orElseSucceed((): ReadonlyArray<number> => []))
    for (const checkpoint of numbers) {
      const read = yield* Effect.either(readMarker(store, checkpoint))
      if (read._tag === "Left") {
        problems.push(`checkpoint ${checkpoint}: marker or map unreadable: ${describeError(read.left)}`)
        continue
      }
      const slots = new Map<string, Uint8Array>()
      for (const [file, part, at] of read.right.map.parts) {
        const bytes = yield* Effect.either(store.get(dataKey(at, file, part)))
        if (bytes._tag === "Left") {
          problems.push(
            `checkpoint ${checkpoint} references ${dataKey(at, file, part)}, which is missing: ${
              describeError(bytes.left)
            }`
          )
          continue
        }
        for (const [slot, value] of slotsOfPart(file, part, padPart(bytes.right))) {
          if (!isZero(value)) slots.set(slotKey(slot), value)
        }
      }
      const marker = read.right.marker
      checkpoints.push({
        checkpoint,
        previous: marker.previous,
        epoch: modelEpoch,
        instanceId: marker.instanceId,
        walPosition: marker.walPosition,
        slots
      })
    }
    return { checkpoints, problems }
  })
