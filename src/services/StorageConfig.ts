/**
 * StorageConfig: every bound of the storage tier in one validated value. Every queue, pool, retry,
 * wait and deadline in the library reads its bound from here; nothing is unbounded.
 *
 * Replaces: OrioleDB's GUCs `orioledb.s3_*` (oc:999-1138, docs/ORIGINAL.md §1), which had no
 * timeouts at all. Each field names the setting it replaces where there is one.
 *
 * Read it from code (`layer({ ... })`, a bad value is one `InvalidConfig` naming the field) or
 * from the ambient ConfigProvider (`layerConfig`: the environment unless the app set another; one
 * flat key per field, `S3_TIER_` + the field in constant case, e.g. `S3_TIER_WORKER_COUNT=16`;
 * a bad value is one `InvalidConfig` naming the key). Cross-field relations are checked when it
 * is built.
 *
 * @since 0.1.0
 */
import {
  Config,
  type ConfigError,
  ConfigProvider,
  Context,
  Duration,
  Effect,
  Either,
  HashSet,
  Layer,
  Option,
  ParseResult,
  Schema
} from "effect"
import { InvalidConfig } from "../domain/Errors.js"
import * as KeyLayout from "../domain/KeyLayout.js"

const MiB = 1024 * 1024
const GiB = 1024 * MiB

const bounded = (min: number, max: number) =>
  Schema.Int.pipe(Schema.between(min, max, { message: () => `must be between ${min} and ${max}` }))

/** The validated shape of the configuration. @category models */
export const StorageConfigSchema = Schema.Struct({
  /** Key prefix inside the bucket ("" for none). Replaces `orioledb.s3_prefix`. */
  prefix: Schema.String,
  /** Bytes per part. Default 1 MiB, as OrioleDB's fixed part size (oh:122-128). */
  partSizeBytes: bounded(4096, 64 * MiB),
  /** S3 worker fibers. Default 8. Replaces `orioledb.s3_num_workers` (default 3). */
  workerCount: bounded(1, 256),
  /** Worker threads that hash uploaded parts off the JavaScript thread (Hasher); 0 hashes on it.
   * Default 1 (one SHA-256 thread hashes about 1.7 GB/s, more than a checkpoint uploads). The
   * original hashed in its S3 worker processes. */
  hashWorkerCount: bounded(0, 64),
  /** Tasks the queue holds before `enqueue` suspends. Replaces `orioledb.s3_queue_size` (1 MiB ring). */
  queueCapacity: bounded(1, 1_000_000),
  /** Per-request timeout of every object-store call. OrioleDB set no curl timeout at all. */
  requestTimeoutMs: bounded(10, 600_000),
  /** Attempts per task for transient errors (first try included). OrioleDB replayed forever. */
  retryAttemptsMax: bounded(1, 100),
  /** First retry delay; doubles per attempt, with jitter, up to `retryDelayMaxMs`. */
  retryDelayBaseMs: bounded(1, 60_000),
  retryDelayMaxMs: bounded(1, 600_000),
  /** Total time a task may spend retrying before its last error is final. */
  retryElapsedMaxMs: bounded(10, 3_600_000),
  /** At shutdown, how long queued tasks may drain before the rest are aborted. */
  drainDeadlineMs: bounded(0, 600_000),
  /** Local bytes of loaded parts above which the evictor runs. Replaces `orioledb.s3_desired_size`. */
  localBytesMax: bounded(4096, Number.MAX_SAFE_INTEGER),
  /** How often the evictor checks the budget. Replaces the bgwriter's eviction cycle. */
  evictionIntervalMs: bounded(1, 3_600_000),
  /** How long a lease waits for a part to load or finish evicting. OrioleDB waited forever. */
  leaseTimeoutMs: bounded(1, 3_600_000),
  /** Periodic checkpoint interval; 0 turns periodic checkpoints off. */
  checkpointIntervalMs: bounded(0, 86_400_000),
  /** Deadline of one checkpoint: its uploads and its manifest. */
  checkpointDeadlineMs: bounded(10, 3_600_000),
  /** Deadline of the whole close (shutdown checkpoint, drain, abort). Default 15 s. */
  shutdownDeadlineMs: bounded(10, 3_600_000),
  /** The part of the shutdown deadline the shutdown checkpoint may use. */
  shutdownCheckpointDeadlineMs: bounded(0, 3_600_000),
  /** WAL segment size. */
  walSegmentBytes: bounded(4096, GiB),
  /** Take over a bucket whose lock names another instance (known to be dead). Raises the epoch. */
  takeOver: Schema.Boolean,
  /** How often the holder re-reads and rewrites the bucket lock (its lease); a lock found not ours
   * fences this instance. OrioleDB wrote the lock once. */
  lockRenewIntervalMs: bounded(10, 600_000),
  /** A lock left unrenewed this long is expired: a restart of the same instance waits this long
   * (at most) for the previous open's lease before taking the lock. */
  lockLeaseMs: bounded(30, 3_600_000),
  /** Retention: keep at least this many of the latest checkpoints. OrioleDB kept every one. */
  retainCheckpointsMin: bounded(1, 1_000_000),
  /** Retention: keep every checkpoint of this point-in-time window, and the newest one before it
   * as the window's base, with the archived WAL from that base on; 0 keeps the latest ones only. */
  retainForMs: bounded(0, 3_650 * 86_400_000),
  /** How often the lock holder runs a garbage-collection pass; 0 turns the periodic pass off. */
  gcIntervalMs: bounded(0, 86_400_000),
  /** Objects younger than this are never collected: a request still in flight may be writing them.
   * Keep it well above a request's worst-case lifetime (retryElapsedMaxMs + requestTimeoutMs). */
  gcMinAgeMs: bounded(0, 30 * 86_400_000),
  /** Deletes a pass runs at once. */
  gcConcurrency: bounded(1, 256),
  /** A reader lease's lifetime; a reader renews it every third of it. */
  readerLeaseMs: bounded(1_000, 86_400_000),
  /** Clock skew the collector allows a lease's expiry. */
  readerLeaseSkewMs: bounded(0, 3_600_000),
  /** The group commit writes a time mark into the WAL at most this often (a restore to a time is
   * this precise); 0 writes none. */
  walTimeMarkIntervalMs: bounded(0, 3_600_000)
})
export type StorageConfigValue = typeof StorageConfigSchema.Type

/** The defaults, each chosen to fit a 15 s termination budget (as @effect/cluster does). */
export const defaults: StorageConfigValue = {
  prefix: "",
  partSizeBytes: MiB,
  workerCount: 8,
  hashWorkerCount: 1,
  queueCapacity: 1024,
  requestTimeoutMs: 10_000,
  retryAttemptsMax: 5,
  retryDelayBaseMs: 100,
  retryDelayMaxMs: 2_000,
  retryElapsedMaxMs: 20_000,
  drainDeadlineMs: 3_000,
  localBytesMax: GiB,
  evictionIntervalMs: 1_000,
  leaseTimeoutMs: 30_000,
  checkpointIntervalMs: 60_000,
  checkpointDeadlineMs: 60_000,
  shutdownDeadlineMs: 15_000,
  shutdownCheckpointDeadlineMs: 10_000,
  walSegmentBytes: 16 * MiB,
  takeOver: false,
  lockRenewIntervalMs: 2_000,
  lockLeaseMs: 10_000,
  retainCheckpointsMin: 2,
  retainForMs: 86_400_000,
  gcIntervalMs: 600_000,
  gcMinAgeMs: 3_600_000,
  gcConcurrency: 8,
  readerLeaseMs: 60_000,
  readerLeaseSkewMs: 30_000,
  walTimeMarkIntervalMs: 1_000
}

/** Relations between fields that a per-field bound cannot say. */
const crossFieldProblem = (value: StorageConfigValue): InvalidConfig | undefined => {
  const prefix = KeyLayout.validatePrefix(value.prefix)
  if (Either.isLeft(prefix)) return new InvalidConfig({ field: "prefix", detail: prefix.left })
  if (value.retryDelayMaxMs < value.retryDelayBaseMs) {
    return new InvalidConfig({ field: "retryDelayMaxMs", detail: "must be at least retryDelayBaseMs" })
  }
  if (value.shutdownCheckpointDeadlineMs + value.drainDeadlineMs > value.shutdownDeadlineMs) {
    return new InvalidConfig({
      field: "shutdownDeadlineMs",
      detail:
        `must be at least shutdownCheckpointDeadlineMs + drainDeadlineMs (${value.shutdownCheckpointDeadlineMs} + ${value.drainDeadlineMs})`
    })
  }
  if (value.lockLeaseMs < 3 * value.lockRenewIntervalMs) {
    return new InvalidConfig({
      field: "lockLeaseMs",
      detail: `must be at least 3 x lockRenewIntervalMs (${value.lockRenewIntervalMs})`
    })
  }
  if (value.walSegmentBytes % 8 !== 0) {
    return new InvalidConfig({ field: "walSegmentBytes", detail: "must be a multiple of 8" })
  }
  return undefined
}

const formatIssue = (error: ParseResult.ParseError): InvalidConfig => {
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  const field = issue === undefined ? "config" : issue.path.map(String).join(".") || "config"
  return new InvalidConfig({ field, detail: issue?.message ?? error.message })
}

/** Validates a full or partial configuration over the defaults. */
export const validate = (input: Partial<StorageConfigValue>): Either.Either<StorageConfigValue, InvalidConfig> =>
  Either.flatMap(
    Either.mapLeft(
      Schema.decodeUnknownEither(StorageConfigSchema)({ ...defaults, ...input }, { onExcessProperty: "error" }),
      formatIssue
    ),
    (value) => {
      const problem = crossFieldProblem(value)
      return problem === undefined ? Either.right(value) : Either.left(problem)
    }
  )

/** The configuration service. @category tags */
export class StorageConfig extends Context.Tag("effect-s3-tier/StorageConfig")<StorageConfig, StorageConfigValue>() {}

/** The key layout that this configuration's prefix gives. */
export const keyLayout = (config: StorageConfigValue): KeyLayout.KeyLayout => ({ prefix: config.prefix })

/** How long a daemon's stop (the collector's, the periodic checkpoint's, the evictor's) is awaited,
 * at the shutdown and when its scope closes: one request at most, and a tenth of the shutdown's
 * deadline. A daemon whose step a stalled disk holds (an eviction's unlink, a committed checkpoint's
 * control-file write) ends on its own when the step lands. */
export const daemonStopBoundMs = (config: StorageConfigValue): number =>
  Math.min(config.requestTimeoutMs, config.shutdownDeadlineMs / 10)

/** A layer from values given in code (over the defaults). @category layers */
export const layer = (input: Partial<StorageConfigValue> = {}): Layer.Layer<StorageConfig, InvalidConfig> =>
  Layer.effect(StorageConfig, Either.match(validate(input), { onLeft: Effect.fail, onRight: Effect.succeed }))

/** The defaults as a layer. @category layers */
export const layerDefaults: Layer.Layer<StorageConfig> = Layer.succeed(StorageConfig, defaults)

const integerKeys = Object.keys(defaults).filter((key) =>
  typeof defaults[key as keyof StorageConfigValue] === "number"
) as ReadonlyArray<keyof StorageConfigValue>

/**
 * Reads every field from Effect Config under its field name (`workerCount`), each with its default.
 * @deprecated Use `read` / `layerConfig`, which read the `S3_TIER_*` keys strictly.
 * @category config
 */
export const config: Config.Config<Partial<StorageConfigValue>> = Config.all({
  ...Object.fromEntries(
    integerKeys.map((key) => [key, Config.integer(key).pipe(Config.withDefault(defaults[key] as number))])
  ),
  prefix: Config.string("prefix").pipe(Config.withDefault(defaults.prefix)),
  takeOver: Config.boolean("takeOver").pipe(Config.withDefault(defaults.takeOver))
}) as Config.Config<Partial<StorageConfigValue>>

/**
 * Reads the configuration from the process environment alone, whatever the app's ConfigProvider.
 * @deprecated Use `read`, which reads the ambient ConfigProvider (the environment by default).
 */
export const fromEnv: Effect.Effect<StorageConfigValue, InvalidConfig> = Effect.suspend(() => read).pipe(
  Effect.withConfigProvider(ConfigProvider.fromEnv())
)

/**
 * A layer read from the ambient ConfigProvider.
 * @deprecated The same as `layerConfig`.
 * @category layers
 */
export const layerFromEnv: Layer.Layer<StorageConfig, InvalidConfig> = Layer.suspend(() => layerConfig)

// ---------------------------------------------------------------------------------------------
// Configuration from the ambient ConfigProvider
// ---------------------------------------------------------------------------------------------

/** What each field is for, as each key's `Config` description. */
const descriptions: { readonly [K in keyof StorageConfigValue]: string } = {
  prefix: "key prefix inside the bucket (\"\" for none)",
  partSizeBytes: "bytes per part",
  workerCount: "S3 worker fibers",
  hashWorkerCount: "worker threads hashing uploaded parts (0 hashes on the JavaScript thread)",
  queueCapacity: "tasks the queue holds before enqueue suspends",
  requestTimeoutMs: "timeout of every object-store request",
  retryAttemptsMax: "attempts per task for transient errors, first try included",
  retryDelayBaseMs: "first retry delay (doubles per attempt)",
  retryDelayMaxMs: "largest retry delay",
  retryElapsedMaxMs: "total time a task may spend retrying",
  drainDeadlineMs: "at shutdown, how long queued tasks may drain",
  localBytesMax: "local bytes of loaded parts above which the evictor runs",
  evictionIntervalMs: "how often the evictor checks the budget",
  leaseTimeoutMs: "how long a lease waits for a part to load or finish evicting",
  checkpointIntervalMs: "periodic checkpoint interval (0 turns periodic checkpoints off)",
  checkpointDeadlineMs: "deadline of one checkpoint",
  shutdownDeadlineMs: "deadline of the whole close",
  shutdownCheckpointDeadlineMs: "part of the shutdown deadline the shutdown checkpoint may use",
  walSegmentBytes: "WAL segment size",
  takeOver: "take over a bucket whose lock names another (dead) instance",
  lockRenewIntervalMs: "how often the holder renews the bucket lock",
  lockLeaseMs: "how long an unrenewed bucket lock stays valid",
  retainCheckpointsMin: "retention: latest checkpoints always kept",
  retainForMs: "retention: point-in-time window (0 keeps the latest checkpoints only)",
  gcIntervalMs: "how often the lock holder collects garbage (0 turns it off)",
  gcMinAgeMs: "objects younger than this are never collected",
  gcConcurrency: "deletes a garbage-collection pass runs at once",
  readerLeaseMs: "a reader lease's lifetime",
  readerLeaseSkewMs: "clock skew allowed a reader lease's expiry",
  walTimeMarkIntervalMs: "how often the group commit writes a time mark into the WAL (0 writes none)"
}

/** The prefix of every key: `S3_TIER_WORKER_COUNT` sets `workerCount`. */
export const keyPrefix = "S3_TIER_"

/** The key of a field (`workerCount` -> `S3_TIER_WORKER_COUNT`). */
export const keyOf = (field: string): string => keyPrefix + field.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()

const fields = Object.keys(defaults) as ReadonlyArray<keyof StorageConfigValue>

/** Every key `layerConfig` reads. */
export const keys: ReadonlyArray<string> = fields.map(keyOf)

/** The raw text of every key that is set, each read with its description. */
const rawConfig: Config.Config<Record<string, Option.Option<string>>> = Config.all(
  Object.fromEntries(
    fields.map((
      field
    ) => [field, Config.option(Config.string(keyOf(field)).pipe(Config.withDescription(descriptions[field])))])
  )
)

const integerText = /^-?[0-9]+$/

/**
 * One value from its text: a decimal integer (no sign but `-`, no spaces, no hex, no exponent);
 * a field in ms also takes an Effect `Duration` string ("10 seconds", "1500 millis").
 */
const parseField = (
  field: keyof StorageConfigValue,
  text: string
): Either.Either<string | number | boolean, InvalidConfig> => {
  const refuse = (detail: string) =>
    Either.left(new InvalidConfig({ field: keyOf(field), detail: `${detail}, got ${JSON.stringify(text)}` }))
  const fallback = defaults[field]
  if (typeof fallback === "string") return Either.right(text)
  if (typeof fallback === "boolean") {
    return text === "true"
      ? Either.right(true)
      : text === "false"
      ? Either.right(false)
      : refuse("must be true or false")
  }
  if (integerText.test(text)) {
    const value = Number(text)
    return Number.isSafeInteger(value) ? Either.right(value) : refuse("must be a safe integer")
  }
  if (!field.endsWith("Ms")) return refuse("must be a decimal integer")
  const duration = Duration.decodeUnknown(text)
  if (Option.isNone(duration) || !Duration.isFinite(duration.value)) {
    return refuse("must be an integer of milliseconds or a Duration such as \"10 seconds\"")
  }
  return Either.right(Duration.toMillis(duration.value))
}

/** A field's validation error under the key the user sets. */
const underKey = (error: InvalidConfig): InvalidConfig =>
  error.field in defaults ? new InvalidConfig({ field: keyOf(error.field), detail: error.detail }) : error

const decodeRaw = (raw: Record<string, Option.Option<string>>): Either.Either<StorageConfigValue, InvalidConfig> => {
  const input: Record<string, unknown> = {}
  for (const field of fields) {
    const text = raw[field]
    if (text === undefined || Option.isNone(text)) continue
    const parsed = parseField(field, text.value)
    if (Either.isLeft(parsed)) return Either.left(parsed.left)
    input[field] = parsed.right
  }
  return Either.mapLeft(validate(input as Partial<StorageConfigValue>), underKey)
}

/** Edit distance, for the likely intended key of an unknown one. */
const distance = (a: string, b: string): number => {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    row = next
  }
  return row[b.length]!
}

/** The known key closest to `key`, when it is close. */
export const closestKey = (key: string, known: ReadonlyArray<string> = keys): string | undefined => {
  let best: string | undefined
  let bestDistance = Number.POSITIVE_INFINITY
  for (const candidate of known) {
    const d = distance(key, candidate)
    const close = d <= Math.max(2, Math.ceil((Math.max(key.length, candidate.length) - keyPrefix.length) / 2))
    if (close && d < bestDistance) [best, bestDistance] = [candidate, d]
  }
  return best
}

/**
 * The `S3_TIER_*` names the ambient provider holds, when it can list them: a flat provider
 * (`ConfigProvider.fromMap`, `fromJson`) lists them as keys of its root; the environment provider
 * splits names on `_`, so they are the paths under `S3` / `TIER`. Providers that cannot list give none.
 */
const providedKeys: Effect.Effect<ReadonlyArray<string>> = Effect.configProviderWith((provider) => {
  const walk = (
    path: ReadonlyArray<string>,
    depth: number
  ): Effect.Effect<ReadonlyArray<string>, ConfigError.ConfigError> =>
    Effect.flatMap(provider.flattened.enumerateChildren(path), (children) =>
      HashSet.size(children) === 0 || depth === 0
        ? Effect.succeed(path.length > 2 ? [path.join("_")] : [])
        : Effect.map(Effect.forEach(children, (child) => walk([...path, child], depth - 1)), (found) => found.flat()))
  const flat = Effect.map(
    provider.flattened.enumerateChildren([]),
    (children) => [...children].filter((key) => key.startsWith(keyPrefix))
  )
  return Effect.map(
    Effect.all([
      flat.pipe(Effect.orElseSucceed(() => [])),
      walk(["S3", "TIER"], 8).pipe(Effect.orElseSucceed(() => []))
    ]),
    ([flatKeys, splitKeys]) => [...new Set([...flatKeys, ...splitKeys])]
  )
})

/** Keys read beside the configuration by `Storage.layerConfig` (the data directory). */
export const openKeys: ReadonlyArray<string> = ["S3_TIER_DATA_DIR"]

/** The prefix of the S3 store's keys (`S3ObjectStore.layerConfig` reads and checks them). */
export const s3KeyPrefix = "S3_TIER_S3_"

/**
 * Logs one warning per `S3_TIER_*` name of the ambient provider that `owns` but that is none of
 * `known`, with the likely intended key. @category internals
 */
export const warnUnknownKeys = (known: ReadonlyArray<string>, owns: (key: string) => boolean): Effect.Effect<void> =>
  Effect.flatMap(
    providedKeys,
    (found) =>
      Effect.forEach(found.filter((key) => owns(key) && !known.includes(key)), (key) => {
        const intended = closestKey(key, known)
        return Effect.logWarning(
          `unknown configuration key ${key}${
            intended === undefined ? "" : ` (did you mean ${intended}?)`
          }; it is ignored`
        )
      }, { discard: true })
  )

/**
 * Reads the configuration from the ambient ConfigProvider (the environment unless the app set
 * another: `Layer.setConfigProvider`, `Effect.withConfigProvider`). One flat key per field in
 * every provider, `S3_TIER_` + the field in constant case: `S3_TIER_WORKER_COUNT=16` in the
 * environment, `{ "S3_TIER_WORKER_COUNT": 16 }` with `ConfigProvider.fromJson`. A bad value is
 * one `InvalidConfig` naming its key. @category config
 */
export const read: Effect.Effect<StorageConfigValue, InvalidConfig> = Effect.gen(function*() {
  yield* warnUnknownKeys([...keys, ...openKeys], (key) => !key.startsWith(s3KeyPrefix))
  const raw = yield* Effect.mapError(
    rawConfig,
    (error) => new InvalidConfig({ field: "config", detail: String(error) })
  )
  return yield* Either.match(decodeRaw(raw), { onLeft: Effect.fail, onRight: Effect.succeed })
})

/** The configuration read from the ambient ConfigProvider (see `read`). @category layers */
export const layerConfig: Layer.Layer<StorageConfig, InvalidConfig> = Layer.effect(StorageConfig, read)
