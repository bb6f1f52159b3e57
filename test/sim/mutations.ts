/**
 * The mutation check: breaks the real code one way at a time (each a small textual patch of one
 * source file), runs the simulation and the relevant unit tests against the broken code, and
 * confirms that the suite fails. Run it with `npx tsx test/sim/mutations.ts` (options: `--runs N`
 * schedules per simulation, default 150; `--only ID`; `--seed S` to skip the search for a seed
 * that passes unmutated, when S is known to). The results are summarized in
 * test/sim/README.md.
 *
 * Safety: the mutations are applied to a private copy of the project (src, test and the config
 * files, under the system's temporary directory, `node_modules` linked), never to the working
 * tree, so nothing another process reads, tests or commits can ever see a mutated file; the copy
 * is removed at the end. No git command is used.
 */
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"

interface Mutation {
  readonly id: string
  /** What the patch breaks, in the words of the issue. */
  readonly breaks: string
  readonly file: string
  readonly find: string
  readonly replace: string
  /** Unit test files that cover the same guarantee. */
  readonly tests: ReadonlyArray<string>
  /** The simulation profile whose fault class finds it (default `full`). */
  readonly profile?: string
  /** The simulation's test files with hand-written scenarios to run too (default Simulation.test.ts). */
  readonly scenarioTests?: ReadonlyArray<string>
}

const mutations: ReadonlyArray<Mutation> = [
  {
    id: "no-failure-propagation",
    breaks: "failure propagation to waiters: a failed task never completes its handle",
    file: "src/internal/workerPool.ts",
    find: "      return picked.complete(outcome)\n",
    replace: "      return Exit.isSuccess(outcome) ? picked.complete(outcome) : Effect.void // MUTATION\n",
    tests: ["test/services/S3Workers.test.ts", "test/services/TaskQueue.test.ts"]
  },
  {
    id: "uninterruptible-task-wait",
    breaks: "interruptible waits: waiting on a task handle ignores interruption (and so every deadline)",
    file: "src/internal/taskQueue.ts",
    find: "this.core.waits.track(\"TaskHandle.await\", () => this.label(), this.awaitExit())",
    replace:
      "this.core.waits.track(\"TaskHandle.await\", () => this.label(), Effect.uninterruptible(this.awaitExit())) /* MUTATION */",
    tests: ["test/services/TaskQueue.test.ts"]
  },
  {
    id: "uninterruptible-lease-wait",
    breaks: "interruptible waits: a lease waiting for a part to load ignores interruption (and its timeout)",
    file: "src/internal/partTable/lease.ts",
    find: "        STM.commit(awaitTransition(table, row, generation)),\n",
    replace: "        Effect.uninterruptible(STM.commit(awaitTransition(table, row, generation))), // MUTATION\n",
    tests: ["test/services/PartTable.test.ts"]
  },
  {
    id: "no-release-on-interruption",
    breaks: "release on interruption: an interrupted lease holder keeps its lease",
    file: "src/internal/partTable/lease.ts",
    find: "  Effect.acquireRelease(attemptOnce(table, row, span), releaseAttempt(table, row))\n",
    replace:
      "  Effect.acquireRelease(attemptOnce(table, row, span), (attempt, exit) => (exit._tag === \"Failure\" ? Effect.void : releaseAttempt(table, row)(attempt))) // MUTATION\n",
    tests: ["test/services/PartTable.test.ts"]
  },
  {
    id: "no-abort-at-close",
    breaks: "failure propagation at close: tasks still queued at shutdown are dropped, their handles never complete",
    file: "src/internal/taskQueue.ts",
    find:
      "      this.finish(\n        entry,\n        Exit.fail(new TaskAborted({ taskId: entry.id, taskType: entry.task._tag, reason: \"QueueClosed\" }))\n      )\n",
    replace: "      void entry // MUTATION\n",
    tests: ["test/services/TaskQueue.test.ts", "test/services/S3Workers.test.ts"]
  },
  {
    id: "uninterruptible-shutdown-steps",
    breaks:
      "interruptible waits: the shutdown's bounded steps run uninterruptibly (the bug the simulation found first)",
    file: "src/internal/deadline.ts",
    find: "  Effect.interruptible(step).pipe(Effect.timeoutOption(Duration.millis(Math.max(0, ms))))\n",
    replace: "  step.pipe(Effect.timeoutOption(Duration.millis(Math.max(0, ms)))) // MUTATION\n",
    tests: []
  },
  {
    id: "checkpoint-position-at-log-end-during-replay",
    breaks: "a checkpoint during start-up replay takes the log's end as its WAL position",
    file: "src/services/WalArchiver.ts",
    find: "      ([state, replayedLsn]) => toLsn(replayedLsn ?? state.endLsn)\n",
    replace: "      ([state]) => toLsn(state.endLsn) // MUTATION\n",
    tests: ["test/layers/WalReplay.test.ts"],
    profile: "crashes"
  },
  {
    id: "fence-ends-when-lock-is-gone",
    breaks:
      "a lock object that is gone passes the fence check, so a stale writer goes on once the new owner released the lock",
    file: "src/internal/bucketLock/lockObject.ts",
    find: "    ? \"the lock object is gone: another instance took the bucket over and released it\"\n",
    replace: "    ? undefined // MUTATION\n",
    tests: ["test/services/BucketLock.test.ts", "test/layers/StorageFencing.test.ts"],
    profile: "stale-writers"
  },
  {
    id: "commit-acknowledged-when-fenced",
    breaks: "a fenced writer's appends and commits are acknowledged",
    file: "src/internal/storageService.ts",
    find:
      "      append: (record) => intake.admit(\"append\", Effect.zipRight(bucketLock.ensureNotFenced, wal.append(record))),\n      commit: intake.admit(\n        \"commit\",\n        Effect.zipRight(bucketLock.ensureNotFenced, Effect.zipRight(wal.commit, bucketLock.ensureNotFenced))\n      ),\n",
    replace:
      "      append: (record) => intake.admit(\"append\", wal.append(record)), // MUTATION\n      commit: intake.admit(\"commit\", wal.commit), // MUTATION\n",
    tests: ["test/layers/StorageFencing.test.ts"],
    profile: "stale-writers"
  },
  {
    id: "commit-outcome-from-response-only",
    breaks: "a root-manifest PUT whose answer was lost counts as failed, its read-back ignored",
    file: "src/internal/RootCommit.ts",
    find: "      if (!outcomeUnknown(error)) return yield* Effect.fail(error)\n",
    replace:
      "      if (outcomeUnknown(error) || !outcomeUnknown(error)) return yield* Effect.fail(error) // MUTATION\n",
    tests: ["test/services/Checkpointer.test.ts"],
    profile: "lost-responses"
  },
  {
    id: "torn-part-not-damaged",
    breaks: "a part write that failed (a full disk tears it) leaves the part served and uploadable",
    file: "src/internal/partTable/lease.ts",
    find: "  row.damaged ??= damaged\n",
    replace: "  // MUTATION: the part is not marked damaged\n",
    tests: ["test/services/PartTable.test.ts", "test/layers/StorageLocalDisk.test.ts"],
    profile: "disk-faults"
  },
  {
    id: "part-buffer-reused-after-interruption",
    breaks:
      "a part buffer goes back to the free list after an interrupted read, which lands later in another part's upload",
    file: "src/internal/partTable/table.ts",
    find: "        if (Exit.isSuccess(exit) && table.partBuffers.length < table.config.workerCount) {\n",
    replace: "        if (table.partBuffers.length < table.config.workerCount) { // MUTATION\n",
    tests: ["test/services/PartTable.test.ts"],
    profile: "disk-faults"
  },
  {
    id: "rotten-part-trusted",
    breaks: "a local part file that differs from the hash recorded at the clean stop is trusted as newer data",
    file: "src/internal/partTable/install.ts",
    find:
      "    const trusted = (options.trustLocal ?? true) && (options.recordedHashes === undefined || recorded === sha256)\n",
    replace: "    const trusted = (options.trustLocal ?? true) || recorded === sha256 // MUTATION\n",
    tests: ["test/layers/StorageLocalDisk.test.ts"],
    profile: "bit-rot"
  },
  {
    id: "renewal-rewrites-unread-lock",
    breaks: "a lock renewal that cannot read the lock rewrites it, taking the bucket back from a newer holder",
    file: "src/services/BucketLock.ts",
    find:
      "        if (Either.isLeft(current)) {\n          return yield* Effect.logWarning(\n            `bucket lock: renewal could not read the lock, retried in ${config.lockRenewIntervalMs} ms: ${current.left.message}`\n          )\n        }\n        const notHeld = notHeldDetail(current.right, lock)\n",
    replace:
      "        const notHeld = Either.isLeft(current) ? undefined : notHeldDetail(current.right, lock) // MUTATION\n",
    tests: ["test/services/BucketLock.test.ts"],
    profile: "stale-writers"
  },
  {
    id: "start-refused-by-late-renewal",
    breaks: "a start that reads back a predecessor's late renewal (landed after its PUT) refuses itself as locked out",
    file: "src/internal/bucketLock/acquire.ts",
    find: "    if (current !== undefined && isOursToHold(current, held)) return held\n",
    replace: "    if (current !== undefined && current.generation === starter.generation) return held // MUTATION\n",
    tests: ["test/services/BucketLock.test.ts"],
    profile: "stale-writers"
  },
  {
    id: "stopped-generation-watched",
    breaks:
      "a restart watches the lock of its own cleanly stopped open, so that open's late renewal refuses it as a live copy",
    file: "src/internal/bucketLock/acquire.ts",
    find: "  lock.generation !== undefined && lock.generation === starter.stoppedGeneration\n",
    replace: "  false && lock.generation === starter.stoppedGeneration // MUTATION\n",
    tests: ["test/services/BucketLock.test.ts", "test/services/Loader.test.ts"],
    profile: "stale-writers"
  },
  {
    id: "one-rewrite-refuses-restart",
    breaks:
      "a restart after a crash takes one rewrite of the crashed open's lock (its renewal landing late) for a live copy and is refused",
    file: "src/internal/bucketLock/acquire.ts",
    find: "      if (++renewals >= renewalsSeenToRefuse) return { renewed: current.right }\n",
    replace: "      if (++renewals >= 1) return { renewed: current.right } // MUTATION\n",
    tests: ["test/services/BucketLock.test.ts"],
    profile: "crashes"
  },
  {
    id: "epoch-start-skipped-over-empty-bucket",
    breaks:
      "a take-over before its predecessor archived any WAL records no start of its history, so the predecessor's late archive replaces its log at the next open",
    file: "src/internal/wal/recovery.ts",
    find: "      (context.epoch <= firstEpoch && archive.lineage.size === 0",
    replace: "      (context.epoch >= 0 && archive.lineage.size === 0 // MUTATION\n",
    tests: ["test/services/WalArchiver.test.ts", "test/sim/Simulation.test.ts"],
    profile: "crashes"
  },
  {
    id: "own-base-refused-as-foreign",
    breaks:
      "a directory restored from another instance's checkpoint, with none of its own yet, is refused at its restart (ForeignInstance)",
    file: "src/domain/Control.ts",
    find: "  if (latest.instanceId !== control.instanceId && !openedFromIt) {\n",
    replace: "  if (latest.instanceId !== control.instanceId) { // MUTATION\n",
    tests: ["test/layers/StorageFencing.test.ts"],
    profile: "stale-writers"
  },
  {
    id: "no-directory-lock",
    breaks: "two processes open one data directory",
    file: "src/services/Loader.ts",
    find: "  yield* disk.lockDirectory\n",
    replace: "  // MUTATION\n",
    tests: ["test/layers/StorageFencing.test.ts", "test/program/DirectoryLock.test.ts"]
  },
  {
    id: "wal-damage-cut-as-torn-tail",
    breaks: "a flipped byte in the middle of the local WAL cuts the log there",
    file: "src/internal/wal/recovery.ts",
    find: "    const midLog = validInSegment || validLater\n",
    replace: "    const midLog = false && (validInSegment || validLater) // MUTATION\n",
    tests: ["test/services/WalArchiver.test.ts"]
  },
  {
    id: "archive-wait-ignores-close",
    breaks:
      "a wait for the WAL archive is not told when the archiver shuts down; it runs out its deadline after the layer closed",
    file: "src/internal/wal/archiver.ts",
    find: "      Stream.filter((view) => view.through >= target || view.closed),\n",
    replace: "      Stream.filter((view) => view.through >= target), // MUTATION\n",
    tests: ["test/services/WalArchiver.test.ts"],
    profile: "lost-responses"
  },
  {
    id: "commit-wait-ignores-close",
    breaks: "a committer whose flush hangs is not told when the archiver shuts down",
    file: "src/internal/wal/groupCommit.ts",
    find: "    if (state.running !== undefined) yield* Deferred.fail(state.running.done, closed)\n",
    replace: "    // MUTATION: the running flush's committers are not told\n",
    tests: ["test/services/WalArchiver.test.ts"],
    profile: "lost-responses"
  },
  {
    id: "wal-damage-below-durable-cut",
    breaks:
      "a bad frame below the WAL's recorded durable end (clean stop, checkpoint, flush mark) is cut as a torn tail, losing acknowledged records",
    file: "src/internal/wal/recovery.ts",
    find: "recover(context, archive, Math.max(durableAtCleanStop, durableMarked))",
    replace: "recover(context, archive, 0 * Math.max(durableAtCleanStop, durableMarked)) // MUTATION",
    tests: ["test/services/WalArchiver.test.ts", "test/layers/StorageLocalDisk.test.ts"],
    profile: "bit-rot"
  },
  {
    id: "lock-put-outcome-from-response-only",
    breaks: "a lock PUT whose every answer was lost counts as failed, its read-back by generation ignored",
    file: "src/internal/bucketLock/acquire.ts",
    find:
      "    Effect.catchTag(\n      \"ObjectStoreUnavailable\",\n      (error) =>\n        Effect.flatMap(read(store, config), (current) =>\n          current === undefined\n            ? Effect.fail(error)\n            : Effect.succeed(current.generation === generation ? (\"written\" as const) : (\"exists\" as const)))\n    )\n",
    replace: "    // MUTATION: an unknown outcome is not read back\n",
    tests: ["test/services/BucketLock.test.ts", "test/layers/StorageFencing.test.ts"],
    profile: "lost-responses"
  },
  {
    id: "lock-delete-outcome-from-response-only",
    breaks: "a lock DELETE whose answer was lost is reported failed although the lock is gone, its read-back ignored",
    file: "src/services/BucketLock.ts",
    find:
      "          Effect.catchAll((error) =>\n            Effect.flatMap(read(store, config), (after) =>\n              after === undefined\n                ? Effect.succeed(\"released\" as const)\n                : isOursToHold(after, lock)\n                ? Effect.fail(error)\n                : Effect.succeed(\"not-ours\" as const))\n          )\n",
    replace: "          // MUTATION: an unknown outcome is not read back\n",
    tests: ["test/services/BucketLock.test.ts", "test/layers/StorageFencing.test.ts"],
    profile: "lost-responses"
  },
  {
    id: "gc-ignores-leases",
    breaks: "the collector ignores reader leases: a restore's checkpoint is expired and its objects deleted under it",
    file: "src/internal/gc/read.ts",
    find: "    return leases.flat()\n",
    replace: "    return leases.flat().filter(() => false) // MUTATION\n",
    tests: ["test/services/GarbageCollector.test.ts"],
    profile: "gc",
    scenarioTests: []
  },
  {
    id: "gc-ignores-in-flight",
    breaks:
      "the collector deletes objects of checkpoint numbers above the latest committed one (uploads of a commit in flight)",
    file: "src/domain/Retention.ts",
    find: "      if (mayStillBeNamed(parsed.checkpoint, live.plan.latest)) return keepAs(\"in-flight\")\n",
    replace: "      // MUTATION: no in-flight rule\n",
    tests: ["test/domain/Retention.test.ts", "test/services/GarbageCollector.test.ts"],
    profile: "gc",
    scenarioTests: []
  },
  {
    id: "losing-attempt-uploads-at-its-number",
    breaks:
      "an attempt that an earlier attempt at its number may still overtake uploads its parts under that number, so the next checkpoint names parts under the latest number that the latest does not, and the collector deletes them",
    file: "src/services/Checkpointer.ts",
    find: "        const uploadAt = earlierMayLand ? CheckpointNumberSchema.make(checkpoint + 1) : checkpoint\n",
    replace: "        const uploadAt = earlierMayLand ? checkpoint : checkpoint // MUTATION\n",
    tests: ["test/services/Checkpointer.test.ts"],
    profile: "gc",
    scenarioTests: ["test/sim/Gc.test.ts"]
  },
  {
    id: "commit-counted-interruptibly",
    breaks:
      "the stats count a committed checkpoint interruptibly after its commit, so a checkpoint the shutdown interrupts right after its commit stands in the bucket and in the writer's state but not in its reported figures",
    file: "src/internal/checkpoint/commit.ts",
    find: "        bytesUploaded: stats.bytesUploaded + bytesUploaded\n      }))\n      return endMs\n",
    replace:
      "        bytesUploaded: stats.bytesUploaded + bytesUploaded\n      })).pipe(Effect.interruptible) // MUTATION\n      return endMs\n",
    tests: ["test/services/Checkpointer.test.ts"],
    profile: "disk-faults",
    scenarioTests: []
  },
  {
    id: "operations-in-flight-not-awaited",
    breaks:
      "the shutdown does not wait for the application's operations admitted before it: a read or write on a slow disk runs on after the close, holding its lease",
    file: "src/internal/shutdown.ts",
    find: "    if (Option.isNone(yield* bounded(services.operations.idle, boundMs))) {\n",
    replace: "    if (Option.isNone(yield* bounded(Effect.void, boundMs))) { // MUTATION\n",
    tests: ["test/layers/Storage.test.ts"],
    profile: "disk-faults",
    scenarioTests: ["test/sim/Simulation.test.ts"]
  },
  {
    id: "on-demand-checkpoint-not-cut",
    breaks:
      "the shutdown does not cut a checkpoint on demand in flight: the shutdown's own checkpoint queues behind it, and it runs on after the close",
    file: "src/internal/storageService.ts",
    find: "      checkpoint: intake.cut(\"checkpoint\", checkpointer.checkpoint({ reason: \"on demand\" })),\n",
    replace:
      "      checkpoint: intake.admit(\"checkpoint\", checkpointer.checkpoint({ reason: \"on demand\" })), // MUTATION\n",
    tests: ["test/layers/Storage.test.ts"],
    profile: "disk-faults",
    scenarioTests: []
  },
  {
    id: "directory-unlocked-before-writes-end",
    breaks:
      "the data directory is unlocked when the storage closes although a write of it still runs: a second open goes ahead, and the late write lands over its own",
    file: "src/internal/directoryGuard.ts",
    find: "      if (state.inFlight === 0) return unlock\n",
    replace: "      return unlock // MUTATION\n",
    tests: ["test/internal/directoryGuard.test.ts", "test/layers/Storage.test.ts"],
    profile: "stragglers"
  },
  {
    id: "wal-flush-awaited-at-close",
    breaks:
      "closing the WAL's scope waits for a flush in flight: a write the disk holds holds the shutdown past its deadline",
    file: "src/internal/wal/groupCommit.ts",
    find: "(flushing ? Fiber.interruptFork(flusher) : Fiber.interrupt(flusher))",
    replace: "Fiber.interrupt(flusher) /* MUTATION */",
    tests: ["test/services/WalArchiver.test.ts"],
    profile: "stragglers"
  },
  {
    id: "periodic-checkpoint-stop-awaited",
    breaks:
      "the shutdown waits for the periodic checkpoint's end: a committed checkpoint's control-file write the disk holds holds the shutdown past its deadline",
    file: "src/services/Checkpointer.ts",
    find: "forkStoppableDaemon(periodic, daemonStopBoundMs(config))",
    replace: "forkStoppableDaemon(periodic, Number.POSITIVE_INFINITY) /* MUTATION */",
    tests: ["test/layers/Storage.test.ts"],
    profile: "stragglers"
  },
  {
    id: "evictor-stop-awaited",
    breaks: "the shutdown waits for the evictor's end: an unlink the disk holds holds the shutdown past its deadline",
    file: "src/services/Evictor.ts",
    find: "      daemonStopBoundMs(config)\n    )\n",
    replace: "      Number.POSITIVE_INFINITY // MUTATION\n    )\n",
    tests: ["test/layers/Storage.test.ts"],
    profile: "stragglers"
  },
  {
    id: "clean-mark-awaited",
    breaks:
      "the shutdown waits for the clean-stop mark past its budget: a mark whose write the disk holds holds the shutdown past its deadline",
    file: "src/internal/shutdown.ts",
    find: "bounded(Effect.disconnect(Effect.either(mark)), cleanBudgetMs)",
    replace: "bounded(Effect.either(mark), cleanBudgetMs) /* MUTATION */",
    tests: ["test/layers/Storage.test.ts"],
    profile: "stragglers"
  },
  {
    id: "watchdog-lets-go-of-cut-attempt",
    breaks:
      "a worker cut by the watchdog lets go of its attempt at once: a retry overtakes a load whose disk write is held, which then lands over a later lease write",
    file: "src/internal/workerPool.ts",
    find: "Effect.exit(Effect.interruptible(run))",
    replace: "Effect.exit(Effect.interruptible(Effect.disconnect(run))) /* MUTATION */",
    tests: ["test/layers/Storage.test.ts"],
    profile: "stragglers"
  },
  {
    id: "gc-keeps-failed-attempts-at-latest",
    breaks:
      "the collector keeps what failed attempts uploaded under the latest committed number and its root does not name, so it piles up past the bucket's bound",
    file: "src/domain/Retention.ts",
    find: "=> checkpoint > latest\n",
    replace: "=> checkpoint >= latest // MUTATION\n",
    tests: ["test/domain/Retention.test.ts", "test/services/GarbageCollector.test.ts"],
    profile: "adversarial",
    scenarioTests: []
  },
  {
    id: "gc-fails-open-on-listing",
    breaks: "a failed listing counts as an empty one: the pass goes on and deletes (fail open)",
    file: "src/internal/gc/read.ts",
    find: "    Effect.mapError(failed(`listing ${prefix}`))\n",
    replace: "    Effect.orElseSucceed(() => []) // MUTATION\n",
    tests: ["test/services/GarbageCollector.test.ts"],
    profile: "gc",
    scenarioTests: []
  },
  {
    id: "gc-skips-unreadable-roots",
    breaks: "a root manifest that cannot be read is left out of the pass instead of ending it (fail open on a read)",
    file: "src/internal/gc/read.ts",
    find:
      "      ({ checkpoint, key }) => readRoot(store, config, key, checkpoint),\n      { concurrency: Math.min(config.workerCount, 16) }\n    )\n",
    replace:
      "      ({ checkpoint, key }) => Effect.option(readRoot(store, config, key, checkpoint)),\n      { concurrency: Math.min(config.workerCount, 16) }\n    ).pipe(Effect.map((roots) => roots.flatMap(Option.toArray))) // MUTATION\n",
    tests: ["test/services/GarbageCollector.test.ts"],
    profile: "gc",
    scenarioTests: []
  },
  {
    id: "gc-deletes-root-manifests",
    breaks:
      "an expired checkpoint's root manifest is deleted instead of replaced by a tombstone (its number can be committed again)",
    file: "src/internal/gc/write.ts",
    find: "      return store.put(key, Manifest.encodeExpiredCheckpoint(tombstone)).pipe(\n",
    replace: "      return store.delete(key).pipe( // MUTATION\n",
    tests: ["test/services/GarbageCollector.test.ts"],
    profile: "gc",
    scenarioTests: []
  }
]

const root = join(dirname(new URL(import.meta.url).pathname), "..", "..")
const sha256 = (bytes: Buffer | string): string => createHash("sha256").update(bytes).digest("hex")

const args = process.argv.slice(2)
const option = (name: string): string | undefined => {
  const index = args.indexOf(`--${name}`)
  return index >= 0 ? args[index + 1] : undefined
}
const runs = Number(option("runs") ?? 150)
const only = option("only")
/** Skip the search for a clean seed: use this one (it must pass unmutated: say how you know). */
const seedOption = option("seed")

/** A private copy of the project to mutate: sources, tests, configuration; `node_modules` linked. */
const makeCopy = (): string => {
  const copy = mkdtempSync(join(tmpdir(), "effect-s3-tier-mutations-"))
  for (const entry of ["src", "test", "package.json", "tsconfig.json", "vitest.config.ts"]) {
    if (existsSync(join(root, entry))) cpSync(join(root, entry), join(copy, entry), { recursive: true })
  }
  symlinkSync(join(root, "node_modules"), join(copy, "node_modules"), "dir")
  return copy
}

const stripAnsi = (text: string): string => text.replace(/\u001b\[[0-9;]*m/g, "")

const run = (
  cwd: string,
  command: string,
  commandArgs: ReadonlyArray<string>,
  timeoutMs: number,
  env: Record<string, string> = {}
) => {
  const result = spawnSync(command, commandArgs, {
    cwd,
    encoding: "utf8",
    timeout: timeoutMs,
    env: { ...process.env, FORCE_COLOR: "0", NO_COLOR: "1", ...env }
  })
  return {
    status: result.status,
    output: `${result.stdout ?? ""}${result.stderr ?? ""}`,
    timedOut: result.error !== undefined
  }
}

interface Slot {
  readonly mutation: Mutation
  readonly applicable: boolean
  readonly simulation: string
  readonly unitTests: string
  readonly caught: boolean
}

const simulate = (cwd: string, seed: number, profile = "full") =>
  run(cwd, "npx", [
    "tsx",
    "test/sim/cli.ts",
    "--system",
    "real",
    "--profile",
    profile,
    "--runs",
    String(runs),
    "--seed",
    String(seed),
    "--shrink-limit",
    "20"
  ], 600_000)

/**
 * A seed whose schedules all pass on the unmutated code, so that a failure under a mutation is the
 * mutation's doing (a bug of the real code that the simulation already finds would otherwise be
 * blamed on every mutation).
 */
const cleanSeeds = new Map<string, number | undefined>()
const cleanSeed = (cwd: string, profile = "full"): number | undefined => {
  if (cleanSeeds.has(profile)) return cleanSeeds.get(profile)
  let found: number | undefined
  for (let seed = 1; seed <= 12 && found === undefined; seed++) {
    const baseline = simulate(cwd, seed, profile)
    process.stderr.write(
      `baseline ${profile} seed ${seed}: ${baseline.status === 0 ? `passes ${runs} schedules` : "fails"}\n`
    )
    if (baseline.status === 0) found = seed
  }
  cleanSeeds.set(profile, found)
  return found
}

const check = (copy: string, mutation: Mutation, seed: number): Slot => {
  const path = join(copy, mutation.file)
  const original = readFileSync(path)
  const text = original.toString("utf8")
  const occurrences = text.split(mutation.find).length - 1
  if (occurrences !== 1) return { mutation, applicable: false, simulation: "-", unitTests: "-", caught: false }
  try {
    writeFileSync(path, text.replace(mutation.find, mutation.replace))
    const sim = simulate(copy, seed, mutation.profile)
    const violated = [...new Set([...sim.output.matchAll(/^\s+\[([a-z-]+)\]/gm)].map((match) => match[1]))]
    const failedAt = /schedule (\d+) failed/.exec(sim.output)?.[1]
    const simulation = `${mutation.profile ?? "full"} profile, seed ${seed}: ` + (
      sim.timedOut
        ? "timed out (counts as caught: the run hung)"
        : sim.status === 1
        ? `fails at schedule ${failedAt ?? "?"}: ${violated.join(", ")}`
        : sim.status === 0
        ? `passes ${runs} schedules`
        : `exit ${sim.status}`
    )
    // The hand-written scenarios (and a short campaign) of the simulation's test file.
    const scenarioTests = mutation.scenarioTests ?? ["test/sim/Simulation.test.ts"]
    const scenarios = scenarioTests.length === 0
      ? { status: 0, output: "", timedOut: false }
      : run(copy, "npx", ["vitest", "run", ...scenarioTests], 600_000, { SIM_RUNS: "20" })
    const failedScenarios = [...stripAnsi(scenarios.output).matchAll(/^\s+× .*? > (.*?)(?: \d+ms)?$/gm)].map((match) =>
      match[1]
    )
    const scenarioText = scenarioTests.length === 0
      ? "not run"
      : scenarios.status === 0
      ? "pass"
      : scenarios.timedOut
      ? "timed out"
      : `fail: ${failedScenarios.join("; ")}`
    let unitTests = "-"
    let unitFailed = false
    if (mutation.tests.length > 0) {
      const unit = run(copy, "npx", ["vitest", "run", "--testTimeout", "20000", ...mutation.tests], 600_000)
      const summary = /Tests\s+(.*)/.exec(stripAnsi(unit.output))?.[1]?.trim() ??
        (unit.timedOut ? "timed out" : `exit ${unit.status}`)
      unitFailed = unit.status !== 0
      unitTests = `${unitFailed ? "fail" : "pass"} (${summary})`
    }
    const simFailed = sim.timedOut || sim.status === 1 || scenarios.status !== 0
    return {
      mutation,
      applicable: true,
      simulation: `${simulation}; scenarios: ${scenarioText}`,
      unitTests,
      caught: simFailed || unitFailed
    }
  } finally {
    writeFileSync(path, original)
    if (sha256(readFileSync(path)) !== sha256(original)) throw new Error(`could not restore ${path} in the copy`)
  }
}

const main = (copy: string): number => {
  const rows: Array<Slot> = []
  for (const mutation of mutations) {
    if (only !== undefined && mutation.id !== only) continue
    const seed = seedOption === undefined ? cleanSeed(copy, mutation.profile) : Number(seedOption)
    if (seed === undefined) {
      process.stderr.write(
        `no seed in 1..12 passes the ${
          mutation.profile ?? "full"
        } profile on the unmutated code: fix what the simulation finds first\n`
      )
      return 2
    }
    process.stderr.write(
      `mutation ${mutation.id} (${mutation.file}, profile ${mutation.profile ?? "full"}, seed ${seed}) ...\n`
    )
    const row = check(copy, mutation, seed)
    rows.push(row)
    process.stderr.write(`  simulation: ${row.simulation}; unit tests: ${row.unitTests}\n`)
  }
  process.stdout.write(
    `| mutation | breaks | simulation: ${runs} schedules of the real layer (profile and seed per row); Simulation.test.ts | unit tests | caught |\n|---|---|---|---|---|\n`
  )
  for (const row of rows) {
    process.stdout.write(
      `| \`${row.mutation.id}\` (${row.mutation.file}) | ${row.mutation.breaks} | ${
        row.applicable ? row.simulation : "not applicable: the patched text is no longer in the file"
      } | ${row.unitTests} | ${row.applicable ? (row.caught ? "yes" : "**no**") : "-"} |\n`
    )
  }
  return rows.every((row) => row.caught) ? 0 : 1
}

const copy = makeCopy()
process.stderr.write(`mutating a copy of the project in ${copy}\n`)
let status = 1
try {
  status = main(copy)
} finally {
  rmSync(copy, { recursive: true, force: true })
}
process.exit(status)
