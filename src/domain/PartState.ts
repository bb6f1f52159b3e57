/**
 * The part state machine, as pure transition functions: one place where every rule about a part's
 * status, leases, dirty / scheduled / writing flags, usage count and versions lives. The PartTable
 * runs these inside STM (src/internal/partTable/table.ts `applyEvent`); the tests and the simulation check
 * `invariantProblem` after every step.
 *
 * Replaces: OrioleDB's part word of src/s3/headers.c (bits 0-17 lock count, 18-20 status, 21 DIRTY,
 * 22 WRITING, 23 SCHEDULED_FOR_WRITE, 25-31 usage count) and its CAS-loop transitions
 * `s3_header_mark_part_*`, `s3_header_lock_part`, `s3_header_unlock_part` (docs/ORIGINAL.md §4).
 * Differences, on purpose:
 * - every transition is a total function returning the next state or a `TransitionRejected` value
 *   (the original asserted or warned and went on, e.g. `mark_part_loaded` on a non-Loading part);
 * - a part carries a write `version` and the `uploadedVersion` its last successful upload carried,
 *   so "clean" has a checkable meaning: a clean part's content is exactly what `remote` names;
 * - a never-written part without a remote object is "Loaded" at its first lease with no download
 *   (it reads as zeros), where the original created such files Loaded + dirty (h:220-235).
 *
 * Invariants (`invariantProblem`; docs/ORIGINAL.md §9, invariants 1 and 3):
 * - leases, usage (0..127), versions and sizes are non-negative integers, uploadedVersion ≤ version;
 * - only a Loaded part has leases, is dirty, scheduled or being written (so an Evicting part is
 *   unleased and clean: eviction excludes locking, and a dirty part is never evicted);
 * - scheduled ⇒ dirty and not writing (at most one pending upload per dirty epoch);
 * - writing ⇔ an uploading version is recorded (UploadStart captured it; it is ≤ version), and
 *   UploadSucceeded must name that version;
 * - not dirty and not writing ⇒ uploadedVersion = version (clean means uploaded);
 * - no remote ⇒ uploadedVersion = 0, so a clean part without a remote was never written (zeros);
 * - a NotLoaded or Loading part occupies no local bytes (sizeBytes = 0).
 *
 * @since 0.1.0
 */
import { Data, Either } from "effect"
import type { RemotePart } from "./Manifest.js"

/** Where a part's bytes are. @category models */
export type PartStatus = "NotLoaded" | "Loading" | "Loaded" | "Evicting"

/** One part's state. @category models */
export interface PartState {
  readonly status: PartStatus
  /** Leases held (OrioleDB's lock count). */
  readonly leases: number
  /** Written since the last upload started reading it. */
  readonly dirty: boolean
  /** An upload is reading or sending the part right now. */
  readonly writing: boolean
  /** An upload is owed and enqueued (or to be re-enqueued after a failure), not started yet. */
  readonly scheduled: boolean
  /** The clock-algorithm usage count, 0..127. */
  readonly usage: number
  /** Incremented when a lease that wrote is released (its bytes are in the local file before). */
  readonly version: number
  /** The version whose content the last successful upload carried. */
  readonly uploadedVersion: number
  /** The version the upload in flight is reading (set by UploadStart); undefined when not writing. */
  readonly uploadingVersion: number | undefined
  /** Where that upload went; undefined if the part was never uploaded. */
  readonly remote: RemotePart | undefined
  /** Bytes of the local part file while it exists (Loaded, Evicting); 0 otherwise. */
  readonly sizeBytes: number
}

/** The largest usage count (7 bits, as in the original's part word). */
export const usageMax = 127

/** Every event a part reacts to. @category models */
export type PartEvent =
  /** NotLoaded (with a remote object) → Loading: the caller wins the right to download it. */
  | { readonly _tag: "BeginLoad" }
  /** Loading → Loaded: the download wrote the local file (`sizeBytes` bytes). */
  | { readonly _tag: "LoadSucceeded"; readonly sizeBytes: number }
  /** Loading → NotLoaded: the download failed (or its owner was interrupted). */
  | { readonly _tag: "LoadFailed" }
  /** A lease: Loaded → leases + 1, usage + 1; a NotLoaded part with no remote becomes Loaded (zeros). */
  | { readonly _tag: "Acquire" }
  /** A lease ends: leases − 1; if it wrote, dirty and version + 1, size grows to `writtenEndBytes`. */
  | { readonly _tag: "Release"; readonly wrote: boolean; readonly writtenEndBytes: number }
  /** Dirty, not scheduled, not writing → scheduled (its upload is enqueued). */
  | { readonly _tag: "Schedule" }
  /** Scheduled, not writing → writing, not dirty, not scheduled: the upload starts reading. */
  | { readonly _tag: "UploadStart" }
  /** Writing → not writing; records the upload of `version` (the one UploadStart captured) at `remote`. */
  | { readonly _tag: "UploadSucceeded"; readonly version: number; readonly remote: RemotePart }
  /** Writing → not writing, dirty and scheduled again. */
  | { readonly _tag: "UploadFailed" }
  /** Loaded, unleased, usage 0, clean, not writing → Evicting. */
  | { readonly _tag: "BeginEvict" }
  /** Evicting → NotLoaded: the local file is gone. */
  | { readonly _tag: "EvictDone" }
  /** Evicting → Loaded: removing the local file failed, it is still there. */
  | { readonly _tag: "EvictAborted" }
  /** The clock hand passes: usage halves. */
  | { readonly _tag: "Sweep" }
  /** A restart: no lease, load, eviction or upload survives (an upload in flight leaves it dirty). */
  | { readonly _tag: "Reset" }

/** The name of a part event. */
export type PartEventTag = PartEvent["_tag"]

/** Event constructors (the argument-free ones are shared constants). */
export const PartEvent = {
  BeginLoad: { _tag: "BeginLoad" } as PartEvent,
  LoadSucceeded: (sizeBytes: number): PartEvent => ({ _tag: "LoadSucceeded", sizeBytes }),
  LoadFailed: { _tag: "LoadFailed" } as PartEvent,
  Acquire: { _tag: "Acquire" } as PartEvent,
  Release: (wrote: boolean, writtenEndBytes = 0): PartEvent => ({ _tag: "Release", wrote, writtenEndBytes }),
  Schedule: { _tag: "Schedule" } as PartEvent,
  UploadStart: { _tag: "UploadStart" } as PartEvent,
  UploadSucceeded: (version: number, remote: RemotePart): PartEvent => ({ _tag: "UploadSucceeded", version, remote }),
  UploadFailed: { _tag: "UploadFailed" } as PartEvent,
  BeginEvict: { _tag: "BeginEvict" } as PartEvent,
  EvictDone: { _tag: "EvictDone" } as PartEvent,
  EvictAborted: { _tag: "EvictAborted" } as PartEvent,
  Sweep: { _tag: "Sweep" } as PartEvent,
  Reset: { _tag: "Reset" } as PartEvent
} as const

/** Every event tag, for tests that try each event on each state. */
export const eventTags: ReadonlyArray<PartEventTag> = [
  "BeginLoad",
  "LoadSucceeded",
  "LoadFailed",
  "Acquire",
  "Release",
  "Schedule",
  "UploadStart",
  "UploadSucceeded",
  "UploadFailed",
  "BeginEvict",
  "EvictDone",
  "EvictAborted",
  "Sweep",
  "Reset"
]

/** An event that the state does not allow: a programming error of the caller, as a value. @category errors */
export class TransitionRejected extends Data.TaggedError("TransitionRejected")<{
  readonly event: PartEventTag
  readonly state: PartState
  readonly reason: string
}> {
  override get message(): string {
    return `part transition ${this.event} rejected in state ${describeState(this.state)}: ${this.reason}`
  }
}

// ---------------------------------------------------------------------------------------------
// Constructors
// ---------------------------------------------------------------------------------------------

/** A part the table has never seen: nothing local, nothing remote (it reads as zeros). */
export const empty: PartState = {
  status: "NotLoaded",
  leases: 0,
  dirty: false,
  writing: false,
  scheduled: false,
  usage: 0,
  version: 0,
  uploadedVersion: 0,
  uploadingVersion: undefined,
  remote: undefined,
  sizeBytes: 0
}

/** A part that lives in the bucket only (restore, reopen without a local copy). */
export const remoteOnly = (remote: RemotePart): PartState => ({ ...empty, remote })

/**
 * A part whose local file is present at reopen: clean when its bytes are the remote object's (the
 * SHA-256 matched), else dirty with a version the bucket does not have yet (it was written after
 * the last checkpoint, or without any remote at all).
 */
export const localCopy = (
  options: { readonly sizeBytes: number; readonly remote: RemotePart | undefined; readonly matchesRemote: boolean }
): PartState => {
  const clean = options.matchesRemote && options.remote !== undefined
  return {
    ...empty,
    status: "Loaded",
    dirty: !clean,
    version: clean ? 0 : 1,
    remote: options.remote,
    sizeBytes: options.sizeBytes
  }
}

// ---------------------------------------------------------------------------------------------
// Predicates
// ---------------------------------------------------------------------------------------------

/** Whether the eviction rule allows evicting the part now (invariant 1). */
export const isEvictable = (state: PartState): boolean =>
  state.status === "Loaded" && state.leases === 0 && state.usage === 0 && !state.dirty && !state.writing &&
  !state.scheduled

/** Whether `Acquire` is allowed now: the part is Loaded, or was never written nor uploaded (a
 * lease makes it Loaded at once). A lease checks this before the transition, so that the common
 * "wait for a load" path builds no TransitionRejected. */
export const isAcquirable = (state: PartState): boolean =>
  state.status === "Loaded" || (state.status === "NotLoaded" && state.remote === undefined)

/** Whether the bucket lacks the part's current content (dirty, or its upload is in flight). */
export const needsUpload = (state: PartState): boolean => state.dirty || state.writing

/** Local bytes the part occupies (its file exists while Loaded or Evicting). */
export const residentBytes = (state: PartState): number =>
  state.status === "Loaded" || state.status === "Evicting" ? state.sizeBytes : 0

/** A compact description, for messages: `Loaded leases=1 dirty v3/2 usage=4 12B`. */
export const describeState = (state: PartState): string =>
  [
    state.status,
    `leases=${state.leases}`,
    state.dirty ? "dirty" : "",
    state.scheduled ? "scheduled" : "",
    state.writing ? "writing" : "",
    `v${state.version}/${state.uploadedVersion}${
      state.uploadingVersion === undefined ? "" : `/uploading ${state.uploadingVersion}`
    }`,
    `usage=${state.usage}`,
    `${state.sizeBytes}B`,
    state.remote === undefined ? "no-remote" : `remote@${state.remote.checkpoint}`
  ].filter((word) => word !== "").join(" ")

const isCount = (value: number): boolean => Number.isSafeInteger(value) && value >= 0

/** The first broken invariant of a state, or undefined. */
export const invariantProblem = (state: PartState): string | undefined => {
  if (!isCount(state.leases)) return `lease count ${state.leases} is not a non-negative integer`
  if (!isCount(state.usage) || state.usage > usageMax) return `usage ${state.usage} is not within 0..${usageMax}`
  if (!isCount(state.version) || !isCount(state.uploadedVersion)) {
    return `versions ${state.version}/${state.uploadedVersion} are not non-negative integers`
  }
  if (state.uploadedVersion > state.version) {
    return `uploaded version ${state.uploadedVersion} is newer than the version ${state.version}`
  }
  if (!isCount(state.sizeBytes)) return `size ${state.sizeBytes} is not a non-negative integer`
  if (state.status !== "Loaded") {
    if (state.leases > 0) return `a ${state.status} part holds ${state.leases} leases`
    if (state.dirty || state.writing || state.scheduled) {
      return `a ${state.status} part is dirty, scheduled or being written`
    }
  }
  if (state.scheduled && !state.dirty) return "scheduled but not dirty"
  if (state.scheduled && state.writing) return "scheduled while an upload is in flight"
  if (state.writing !== (state.uploadingVersion !== undefined)) {
    return "writing without an uploading version, or the reverse"
  }
  if (
    state.uploadingVersion !== undefined && (!isCount(state.uploadingVersion) || state.uploadingVersion > state.version)
  ) {
    return `uploading version ${state.uploadingVersion} is not a version of this part`
  }
  if (!state.dirty && !state.writing && state.uploadedVersion !== state.version) {
    return `clean, but version ${state.version} was never uploaded (uploaded ${state.uploadedVersion})`
  }
  if (state.remote === undefined && state.uploadedVersion !== 0) {
    return `uploaded version ${state.uploadedVersion} but no remote object`
  }
  if ((state.status === "NotLoaded" || state.status === "Loading") && state.sizeBytes !== 0) {
    return `a ${state.status} part counts ${state.sizeBytes} local bytes`
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// The transition function
// ---------------------------------------------------------------------------------------------

const reject = (event: PartEventTag, state: PartState, reason: string): Either.Either<PartState, TransitionRejected> =>
  Either.left(new TransitionRejected({ event, state, reason }))

const next = (state: PartState): Either.Either<PartState, TransitionRejected> => Either.right(state)

/** The state after `event`, or why the event is not allowed in `state`. Pure and total. */
// eslint-disable-next-line max-lines-per-function -- one short case per event, so the whole machine reads as one table
export const transition = (state: PartState, event: PartEvent): Either.Either<PartState, TransitionRejected> => {
  switch (event._tag) {
    case "BeginLoad":
      if (state.status !== "NotLoaded") return reject(event._tag, state, "only a NotLoaded part starts loading")
      if (state.remote === undefined) {
        return reject(event._tag, state, "the part has no remote object to download (a lease makes it Loaded at once)")
      }
      return next({ ...state, status: "Loading" })
    case "LoadSucceeded":
      if (state.status !== "Loading") return reject(event._tag, state, "only a Loading part finishes loading")
      if (!isCount(event.sizeBytes)) {
        return reject(event._tag, state, `size ${event.sizeBytes} is not a non-negative integer`)
      }
      return next({ ...state, status: "Loaded", usage: 1, sizeBytes: event.sizeBytes })
    case "LoadFailed":
      if (state.status !== "Loading") return reject(event._tag, state, "only a Loading part fails loading")
      return next({ ...state, status: "NotLoaded", sizeBytes: 0 })
    case "Acquire":
      if (!isAcquirable(state)) return reject(event._tag, state, "a lease needs a Loaded part")
      if (state.status === "NotLoaded") {
        // Never written and never uploaded (invariants: no remote ⇒ uploadedVersion 0 = version).
        return next({ ...state, status: "Loaded", leases: 1, usage: 1, sizeBytes: 0 })
      }
      return next({ ...state, leases: state.leases + 1, usage: Math.min(usageMax, state.usage + 1) })
    case "Release":
      if (state.status !== "Loaded" || state.leases === 0) return reject(event._tag, state, "no lease is held")
      if (!isCount(event.writtenEndBytes)) {
        return reject(event._tag, state, `written end ${event.writtenEndBytes} is not a non-negative integer`)
      }
      if (!event.wrote) return next({ ...state, leases: state.leases - 1 })
      return next({
        ...state,
        leases: state.leases - 1,
        dirty: true,
        version: state.version + 1,
        sizeBytes: Math.max(state.sizeBytes, event.writtenEndBytes)
      })
    case "Schedule":
      if (!state.dirty) return reject(event._tag, state, "only a dirty part is scheduled for upload")
      if (state.scheduled) return reject(event._tag, state, "already scheduled")
      if (state.writing) return reject(event._tag, state, "an upload is in flight; schedule after it ends")
      return next({ ...state, scheduled: true })
    case "UploadStart":
      if (!state.scheduled) return reject(event._tag, state, "only a scheduled part starts uploading")
      if (state.writing) return reject(event._tag, state, "an upload is already in flight")
      return next({ ...state, writing: true, dirty: false, scheduled: false, uploadingVersion: state.version })
    case "UploadSucceeded": {
      if (!state.writing) return reject(event._tag, state, "no upload is in flight")
      if (event.version !== state.uploadingVersion) {
        return reject(
          event._tag,
          state,
          `the upload in flight read version ${state.uploadingVersion}, not ${event.version}`
        )
      }
      const newer = event.version >= state.uploadedVersion
      return next({
        ...state,
        writing: false,
        uploadingVersion: undefined,
        uploadedVersion: newer ? event.version : state.uploadedVersion,
        remote: newer ? event.remote : state.remote
      })
    }
    case "UploadFailed":
      if (!state.writing) return reject(event._tag, state, "no upload is in flight")
      return next({ ...state, writing: false, uploadingVersion: undefined, dirty: true, scheduled: true })
    case "BeginEvict":
      if (!isEvictable(state)) {
        return reject(
          event._tag,
          state,
          "only a Loaded, unleased, usage-0, clean part that is not being written is evicted"
        )
      }
      return next({ ...state, status: "Evicting" })
    case "EvictDone":
      if (state.status !== "Evicting") return reject(event._tag, state, "only an Evicting part finishes evicting")
      return next({ ...state, status: "NotLoaded", usage: 0, sizeBytes: 0 })
    case "EvictAborted":
      if (state.status !== "Evicting") return reject(event._tag, state, "only an Evicting part aborts evicting")
      return next({ ...state, status: "Loaded" })
    case "Sweep":
      return next(state.usage === 0 ? state : { ...state, usage: state.usage >> 1 })
    case "Reset": {
      const status: PartStatus = state.status === "Loading" || state.status === "Evicting" ? "NotLoaded" : state.status
      const dirty = state.dirty || state.writing
      return next({
        ...state,
        status,
        leases: 0,
        writing: false,
        uploadingVersion: undefined,
        // No task survives a restart: an owed upload is owed again, to be scheduled anew.
        scheduled: false,
        dirty,
        sizeBytes: status === "NotLoaded" ? 0 : state.sizeBytes
      })
    }
  }
}

/** Applies events in order, stopping at the first rejection. */
export const applyAll = (
  state: PartState,
  events: Iterable<PartEvent>
): Either.Either<PartState, TransitionRejected> => {
  let current = state
  for (const event of events) {
    const result = transition(current, event)
    if (Either.isLeft(result)) return result
    current = result.right
  }
  return Either.right(current)
}
