/**
 * The bucket and the directories a command names, checked before anything is written: which store
 * the options name (the filesystem store or S3) and its layer, the fault decorator over it for
 * `run`, the data and restore directories, and the helpers the read-side commands share.
 *
 * Replaces: the bucket settings of OrioleDB's S3 tests and of orioledb_s3_loader.py (docs/ORIGINAL.md §8).
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect, Either, Layer, Option } from "effect"
import type { LocalIoError } from "../domain/Errors.js"
import { type ConditionalCreateDialect, validateBucketName } from "../domain/S3Compat.js"
import * as FaultyObjectStore from "../layers/FaultyObjectStore.js"
import * as FileObjectStore from "../layers/FileObjectStore.js"
import * as FileSystemDisk from "../layers/FileSystemDisk.js"
import * as Loader from "../services/Loader.js"
import type { LocalDisk } from "../services/LocalDisk.js"
import { ObjectStore } from "../services/ObjectStore.js"
import * as StorageConfig from "../services/StorageConfig.js"
import * as Faults from "../workload/Faults.js"
import type * as Run from "../workload/Run.js"
import type { StoreArgs } from "./Options.js"
import { type Output, programName, UsageError } from "./Output.js"
/** The bucket options every command takes (the optional ones are absent when a test builds them). */
export type StoreOptions =
  & Omit<StoreArgs, "conditionalCreate" | "skipConformanceCheck">
  & Partial<Pick<StoreArgs, "conditionalCreate" | "skipConformanceCheck">>

// ---------------------------------------------------------------------------------------------
// The bucket
// ---------------------------------------------------------------------------------------------

export type StoreChoice =
  | { readonly _tag: "File"; readonly root: string }
  | {
    readonly _tag: "S3"
    readonly bucket: string
    readonly endpoint: string | undefined
    readonly region: string
    readonly forcePathStyle: boolean
    readonly conditionalCreate: ConditionalCreateDialect
    readonly checkConditionalCreate: boolean
    readonly scratchPrefix: string
  }

const s3RequestTimeoutMs = StorageConfig.defaults.requestTimeoutMs

/** Which bucket the options name; `defaultRoot` is the filesystem store `run` uses by default. */
export const chooseStore = (
  options: StoreOptions,
  defaultRoot: string | undefined,
  pathApi: Path.Path
): Either.Either<StoreChoice, UsageError> => {
  const endpoint = Option.getOrUndefined(options.endpoint)
  const bucket = Option.getOrUndefined(options.bucket)
  const storeDir = Option.getOrUndefined(options.storeDir)
  if (endpoint !== undefined || bucket !== undefined) {
    if (storeDir !== undefined) {
      return Either.left(
        new UsageError({
          message: "--store-dir cannot be combined with --endpoint/--bucket: choose the filesystem store or S3"
        })
      )
    }
    if (bucket === undefined || bucket.trim() === "") {
      return Either.left(new UsageError({ message: "--endpoint needs --bucket <name>" }))
    }
    if (endpoint !== undefined && !/^https?:\/\/[^\s/]+/.test(endpoint)) {
      return Either.left(new UsageError({ message: `--endpoint ${JSON.stringify(endpoint)} is not an http(s) URL` }))
    }
    const validBucket = validateBucketName(bucket)
    if (Either.isLeft(validBucket)) return Either.left(new UsageError({ message: `--bucket ${validBucket.left}` }))
    return Either.right({
      _tag: "S3",
      bucket,
      endpoint,
      region: options.region,
      forcePathStyle: options.pathStyle,
      conditionalCreate: options.conditionalCreate ?? "if-none-match",
      checkConditionalCreate: options.skipConformanceCheck !== true,
      scratchPrefix: options.prefix
    })
  }
  const root = storeDir ?? defaultRoot
  if (root === undefined) {
    return Either.left(
      new UsageError({ message: "name the bucket: --store-dir <directory>, or --endpoint <url> --bucket <name>" })
    )
  }
  if (root.trim() === "") return Either.left(new UsageError({ message: "--store-dir is empty" }))
  return Either.right({ _tag: "File", root: pathApi.resolve(root) })
}

/**
 * The plain store layer of a choice. `create`: the filesystem store may create its root;
 * `readOnly`: it never writes (the read-only commands, which must work on a read-only store);
 * `writesLeases`: read-only but for a reader's lease (`verify`, `restore`): no conformance check.
 */
export const storeLayer = (
  choice: StoreChoice,
  create: boolean,
  readOnly = false,
  writesLeases = false
): Layer.Layer<ObjectStore> =>
  choice._tag === "File"
    ? FileObjectStore.layerNode({ root: choice.root, create, readOnly: readOnly && !writesLeases })
    : Layer.unwrapEffect(
      // Loaded on demand: the AWS SDK is the largest import, and the default store does not need it.
      Effect.map(Effect.promise(() => import("../layers/S3ObjectStore.js")), (S3ObjectStore) =>
        S3ObjectStore.layer({
          bucket: choice.bucket,
          ...(choice.endpoint === undefined ? {} : { endpoint: choice.endpoint }),
          region: choice.region,
          forcePathStyle: choice.forcePathStyle,
          requestTimeoutMs: s3RequestTimeoutMs,
          conditionalCreate: choice.conditionalCreate,
          // A read-only command writes nothing, not even the conformance check's scratch key.
          checkConditionalCreate: choice.checkConditionalCreate && !readOnly,
          scratchPrefix: choice.scratchPrefix
        }))
    )

export const describeChoice = (choice: StoreChoice, prefix: string): string =>
  (choice._tag === "File"
    ? `file://${choice.root}`
    : `s3://${choice.bucket}${choice.endpoint === undefined ? "" : ` at ${choice.endpoint}`}`) +
  (prefix === "" ? "" : ` prefix ${prefix}`)

/** The run's store: the fault decorator over the plain store when faults were asked for. */
export const runStore = (choice: StoreChoice, plan: Faults.FaultPlan, prefix: string): Effect.Effect<Run.RunStore> =>
  Effect.gen(function*() {
    const plain = storeLayer(choice, true)
    const description = describeChoice(choice, prefix)
    if (Faults.isEmpty(plan)) {
      return {
        layer: plain,
        plainLayer: storeLayer(choice, false),
        arm: Effect.void,
        stallNow: Effect.void,
        faultStats: Effect.succeed(undefined),
        description
      }
    }
    const controller = yield* FaultyObjectStore.makeController()
    const faulty: Layer.Layer<ObjectStore> = FaultyObjectStore.layer(controller).pipe(Layer.provide(plain))
    return {
      layer: faulty,
      plainLayer: storeLayer(choice, false),
      arm: applyFaults(controller, plan, prefix),
      stallNow: Effect.asVoid(controller.stall()),
      faultStats: controller.stats,
      description
    }
  })

/** Turns a fault plan into the controller's rules. */
const applyFaults = (
  controller: FaultyObjectStore.FaultControllerService,
  plan: Faults.FaultPlan,
  prefix: string
): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (plan.latencyMs !== undefined) yield* controller.latency(plan.latencyMs)
    if (plan.errorRate !== undefined) yield* controller.errorRate(plan.errorRate)
    if (plan.stallAfterMs !== undefined) yield* controller.stallAfter(plan.stallAfterMs)
    for (const taskType of plan.failTasks) {
      yield* controller.failPermanently(FaultyObjectStore.failTaskFilter(taskType, { prefix }))
    }
  })

// ---------------------------------------------------------------------------------------------
// Directories
// ---------------------------------------------------------------------------------------------

/**
 * Refuses a data directory that is not ours before anything is written: it exists and is not a
 * directory, or it is a non-empty directory without the control file.
 */
export const checkDataDirectory = (directory: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const exists = yield* fs.exists(directory).pipe(Effect.orElseSucceed(() => false))
    if (!exists) return
    const info = yield* fs.stat(directory).pipe(
      Effect.mapError(() => new UsageError({ message: `cannot read ${directory}` }))
    )
    if (info.type !== "Directory") {
      return yield* Effect.fail(new UsageError({ message: `--dir ${directory} exists and is not a directory` }))
    }
    const entries = yield* fs.readDirectory(directory).pipe(
      Effect.mapError(() => new UsageError({ message: `cannot list ${directory}` }))
    )
    if (entries.length > 0 && !entries.includes(Loader.controlPath)) {
      return yield* Effect.fail(
        new UsageError({
          message:
            `start-up refused (NotOurDirectory): ${directory} is not empty and has no ${Loader.controlPath}: it is not an ${programName} data directory`
        })
      )
    }
  })

/** Refuses a filesystem store root that exists and is not a directory. */
export const checkStoreRoot = (choice: StoreChoice) =>
  Effect.gen(function*() {
    if (choice._tag !== "File") return
    const fs = yield* FileSystem.FileSystem
    const exists = yield* fs.exists(choice.root).pipe(Effect.orElseSucceed(() => false))
    if (!exists) return
    const info = yield* fs.stat(choice.root).pipe(
      Effect.mapError(() => new UsageError({ message: `cannot read ${choice.root}` }))
    )
    if (info.type !== "Directory") {
      return yield* Effect.fail(new UsageError({ message: `--store-dir ${choice.root} exists and is not a directory` }))
    }
  })

/** A fresh directory for a restore: missing or empty. */
export const checkFreshDirectory = (directory: string, command = "verify") =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const exists = yield* fs.exists(directory).pipe(Effect.orElseSucceed(() => false))
    if (!exists) return
    const entries = yield* fs.readDirectory(directory).pipe(
      Effect.mapError(() => new UsageError({ message: `--dir ${directory} is not a readable directory` }))
    )
    if (entries.length > 0) {
      return yield* Effect.fail(
        new UsageError({ message: `--dir ${directory} is not empty: ${command} restores into a fresh directory` })
      )
    }
  })

export const removeQuietly = (path: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.remove(path, { recursive: true })).pipe(Effect.ignore)

export const diskLayer = (root: string): Layer.Layer<LocalDisk, LocalIoError> => FileSystemDisk.layerNode({ root })

/**
 * The bucket a read-side command names, validated: its configuration (the prefix and `extra`
 * fields) and its store, checked before anything is opened. Shared by verify, inspect, gc, restore.
 */
export const namedBucket = (
  args: StoreOptions,
  extra: Partial<StorageConfig.StorageConfigValue> = {},
  flagOf?: (field: string) => string
) =>
  Effect.gen(function*() {
    const pathApi = yield* Path.Path
    const config = yield* Either.mapLeft(StorageConfig.validate({ prefix: args.prefix, ...extra }), (error) =>
      new UsageError({ message: flagOf === undefined ? error.message : `${flagOf(error.field)}: ${error.detail}` }))
    const choice = yield* chooseStore(args, undefined, pathApi)
    yield* checkStoreRoot(choice)
    return { config, choice }
  })

/** The store, once it answered its probe (a store that does not answer is bad input: exit 2). */
export const probedStore = Effect.flatMap(
  ObjectStore,
  (store) => Effect.as(Effect.mapError(store.probe, (error) => new UsageError({ message: error.message })), store)
)

/** A `done/total parts` progress reporter: every 10 %, on the status line of a terminal. */
export const percentProgress = (label: string, output: Output) => {
  let lastShownPercent = -1
  return (done: number, total: number): Effect.Effect<void> => {
    const percent = Math.floor((done * 100) / Math.max(1, total))
    if (percent === lastShownPercent || (percent % 10 !== 0 && done !== total)) return Effect.void
    lastShownPercent = percent
    const text = `${label}: ${done}/${total} parts`
    if (!output.isTty) return output.stderr(`${text}\n`)
    // The output's status line when it has one: a log written meanwhile goes above it.
    if (output.status !== undefined && output.endStatus !== undefined) {
      return Effect.zipRight(output.status(text), done === total ? output.endStatus : Effect.void)
    }
    return output.stderr(`\r${text}\x1b[K${done === total ? "\n" : ""}`)
  }
}
