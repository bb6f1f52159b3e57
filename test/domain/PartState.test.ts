/**
 * Goal: the part state machine accepts exactly the transitions of docs/ORIGINAL.md §4 (with this
 * project's versions), rejects every other event with a TransitionRejected value, and never
 * reaches a state that breaks an invariant (§9 invariants 1 and 3, the clean ⇒ uploaded rule).
 * Method: one test per event covering its accepted case and each of its rejections, then a
 * property: random event sequences from every starting state keep `invariantProblem` empty after
 * every accepted event, and a rejected event is exactly one whose precondition fails.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck } from "effect"
import { checkpointNumber } from "../../src/domain/Ids.js"
import type { RemotePart } from "../../src/domain/Manifest.js"
import { sha256Hex } from "../../src/domain/Manifest.js"
import {
  applyAll,
  empty,
  eventTags,
  invariantProblem,
  isEvictable,
  localCopy,
  needsUpload,
  PartEvent,
  type PartState,
  remoteOnly,
  residentBytes,
  transition,
  TransitionRejected,
  usageMax
} from "../../src/domain/PartState.js"

const remote: RemotePart = { checkpoint: checkpointNumber(1), sha256: sha256Hex(new Uint8Array([1])), sizeBytes: 100 }
const remote2: RemotePart = { checkpoint: checkpointNumber(2), sha256: sha256Hex(new Uint8Array([2])), sizeBytes: 200 }

const ok = (state: PartState, ...events: Array<PartEvent>): PartState => {
  const result = applyAll(state, events)
  if (Either.isLeft(result)) throw new Error(result.left.message)
  const problem = invariantProblem(result.right)
  if (problem !== undefined) throw new Error(`invariant broken: ${problem}`)
  return result.right
}

const rejected = (state: PartState, event: PartEvent, reasonPart: string): void => {
  const result = transition(state, event)
  assert.isTrue(Either.isLeft(result), `expected ${event._tag} to be rejected`)
  if (Either.isLeft(result)) {
    assert.instanceOf(result.left, TransitionRejected)
    assert.strictEqual(result.left.event, event._tag)
    assert.include(result.left.reason, reasonPart)
    assert.include(result.left.message, event._tag)
  }
}

// Fixtures along the main path.
const notLoaded = remoteOnly(remote)
const loading = ok(notLoaded, PartEvent.BeginLoad)
const loaded = ok(loading, PartEvent.LoadSucceeded(100))
const leased = ok(loaded, PartEvent.Acquire)
const dirty = ok(leased, PartEvent.Release(true, 150))
const scheduled = ok(dirty, PartEvent.Schedule)
const writing = ok(scheduled, PartEvent.UploadStart)
const coldClean = ok(loaded, PartEvent.Sweep) // usage 1 → 0
const evicting = ok(coldClean, PartEvent.BeginEvict)

describe("PartState", () => {
  it("fixtures hold their invariants", () => {
    for (const state of [empty, notLoaded, loading, loaded, leased, dirty, scheduled, writing, coldClean, evicting]) {
      assert.isUndefined(invariantProblem(state))
    }
  })

  it("BeginLoad: NotLoaded with a remote → Loading; rejected otherwise", () => {
    assert.strictEqual(loading.status, "Loading")
    rejected(empty, PartEvent.BeginLoad, "no remote object")
    rejected(loading, PartEvent.BeginLoad, "only a NotLoaded part")
    rejected(loaded, PartEvent.BeginLoad, "only a NotLoaded part")
    rejected(evicting, PartEvent.BeginLoad, "only a NotLoaded part")
  })

  it("LoadSucceeded: Loading → Loaded with usage 1 and the file's size; rejected otherwise", () => {
    assert.deepInclude(loaded, { status: "Loaded", usage: 1, sizeBytes: 100, leases: 0, dirty: false })
    assert.strictEqual(residentBytes(loaded), 100)
    assert.strictEqual(residentBytes(loading), 0)
    rejected(notLoaded, PartEvent.LoadSucceeded(1), "only a Loading part")
    rejected(loaded, PartEvent.LoadSucceeded(1), "only a Loading part")
    rejected(loading, PartEvent.LoadSucceeded(-1), "not a non-negative integer")
  })

  it("LoadFailed: Loading → NotLoaded keeping the remote; rejected otherwise", () => {
    const failed = ok(loading, PartEvent.LoadFailed)
    assert.deepStrictEqual(failed, notLoaded)
    rejected(notLoaded, PartEvent.LoadFailed, "only a Loading part")
    rejected(loaded, PartEvent.LoadFailed, "only a Loading part")
  })

  it("Acquire: Loaded → leases + 1 and usage + 1 (capped at 127); a never-written part is Loaded at once", () => {
    assert.deepInclude(leased, { leases: 1, usage: 2 })
    const twice = ok(leased, PartEvent.Acquire)
    assert.deepInclude(twice, { leases: 2, usage: 3 })
    const hot = ok({ ...loaded, usage: usageMax }, PartEvent.Acquire)
    assert.strictEqual(hot.usage, usageMax)
    const fresh = ok(empty, PartEvent.Acquire)
    assert.deepInclude(fresh, { status: "Loaded", leases: 1, sizeBytes: 0, dirty: false, version: 0 })
    rejected(notLoaded, PartEvent.Acquire, "needs a Loaded part")
    rejected(loading, PartEvent.Acquire, "needs a Loaded part")
    rejected(evicting, PartEvent.Acquire, "needs a Loaded part")
  })

  it("Release: leases − 1; a lease that wrote makes the part dirty, bumps the version and grows the size", () => {
    const read = ok(leased, PartEvent.Release(false))
    assert.deepInclude(read, { leases: 0, dirty: false, version: 0 })
    assert.deepInclude(dirty, { leases: 0, dirty: true, version: 1, uploadedVersion: 0, sizeBytes: 150 })
    const smaller = ok(ok(dirty, PartEvent.Acquire), PartEvent.Release(true, 10))
    assert.deepInclude(smaller, { version: 2, sizeBytes: 150 })
    rejected(loaded, PartEvent.Release(false), "no lease is held")
    rejected(notLoaded, PartEvent.Release(true, 1), "no lease is held")
    rejected(leased, PartEvent.Release(true, -5), "not a non-negative integer")
  })

  it("Schedule: dirty, not scheduled, not writing → scheduled; rejected otherwise", () => {
    assert.isTrue(scheduled.scheduled)
    rejected(loaded, PartEvent.Schedule, "only a dirty part")
    rejected(scheduled, PartEvent.Schedule, "already scheduled")
    const rewritten = ok(writing, PartEvent.Acquire, PartEvent.Release(true, 1))
    assert.isTrue(rewritten.dirty && rewritten.writing)
    rejected(rewritten, PartEvent.Schedule, "upload is in flight")
  })

  it("UploadStart: scheduled, not writing → writing, clean, unscheduled, capturing the version", () => {
    assert.deepInclude(writing, { writing: true, dirty: false, scheduled: false, uploadingVersion: 1 })
    assert.isTrue(needsUpload(writing))
    rejected(dirty, PartEvent.UploadStart, "only a scheduled part")
    rejected(writing, PartEvent.UploadStart, "only a scheduled part")
    // A scheduled part whose upload is in flight cannot exist; the rule is checked all the same.
    rejected({ ...writing, dirty: true, scheduled: true }, PartEvent.UploadStart, "already in flight")
  })

  it("UploadSucceeded: records the captured version and its remote; a write during the upload keeps the part dirty", () => {
    const clean = ok(writing, PartEvent.UploadSucceeded(1, remote2))
    assert.deepInclude(clean, {
      writing: false,
      dirty: false,
      uploadedVersion: 1,
      version: 1,
      remote: remote2,
      uploadingVersion: undefined
    })
    assert.isFalse(needsUpload(clean))
    const rewritten = ok(writing, PartEvent.Acquire, PartEvent.Release(true, 10), PartEvent.UploadSucceeded(1, remote2))
    assert.deepInclude(rewritten, { dirty: true, version: 2, uploadedVersion: 1, remote: remote2 })
    rejected(dirty, PartEvent.UploadSucceeded(1, remote2), "no upload is in flight")
    rejected(writing, PartEvent.UploadSucceeded(0, remote2), "read version 1, not 0")
  })

  it("UploadFailed: writing → dirty and scheduled again, the remote unchanged", () => {
    const failed = ok(writing, PartEvent.UploadFailed)
    assert.deepInclude(failed, {
      writing: false,
      dirty: true,
      scheduled: true,
      remote,
      uploadedVersion: 0,
      uploadingVersion: undefined
    })
    // It can start again at once.
    assert.isTrue(ok(failed, PartEvent.UploadStart).writing)
    rejected(loaded, PartEvent.UploadFailed, "no upload is in flight")
  })

  it("BeginEvict: only Loaded, unleased, usage 0, clean, idle parts (invariant 1)", () => {
    assert.isTrue(isEvictable(coldClean))
    assert.strictEqual(evicting.status, "Evicting")
    assert.strictEqual(residentBytes(evicting), 100)
    rejected(loaded, PartEvent.BeginEvict, "usage-0") // usage 1
    rejected({ ...leased, usage: 0 }, PartEvent.BeginEvict, "unleased")
    rejected({ ...ok(dirty, PartEvent.Sweep, PartEvent.Sweep) }, PartEvent.BeginEvict, "clean")
    rejected(ok(ok(writing, PartEvent.Sweep, PartEvent.Sweep)), PartEvent.BeginEvict, "not being written")
    rejected(notLoaded, PartEvent.BeginEvict, "only a Loaded")
    rejected(evicting, PartEvent.BeginEvict, "only a Loaded")
  })

  it("EvictDone and EvictAborted: Evicting → NotLoaded (no local bytes) or back to Loaded", () => {
    const done = ok(evicting, PartEvent.EvictDone)
    assert.deepInclude(done, { status: "NotLoaded", sizeBytes: 0, usage: 0, remote })
    assert.strictEqual(residentBytes(done), 0)
    assert.deepStrictEqual(ok(evicting, PartEvent.EvictAborted), coldClean)
    rejected(loaded, PartEvent.EvictDone, "only an Evicting part")
    rejected(loaded, PartEvent.EvictAborted, "only an Evicting part")
  })

  it("Sweep halves the usage (clock), whatever the status", () => {
    assert.strictEqual(ok({ ...loaded, usage: 127 }, PartEvent.Sweep).usage, 63)
    assert.strictEqual(ok({ ...loaded, usage: 1 }, PartEvent.Sweep).usage, 0)
    assert.strictEqual(ok(empty, PartEvent.Sweep).usage, 0)
  })

  it("Reset: Loading and Evicting become NotLoaded, leases and tasks vanish, an upload in flight leaves the part dirty", () => {
    assert.deepStrictEqual(ok(loading, PartEvent.Reset), notLoaded)
    assert.deepInclude(ok(evicting, PartEvent.Reset), { status: "NotLoaded", sizeBytes: 0 })
    assert.deepInclude(ok(leased, PartEvent.Reset), { status: "Loaded", leases: 0 })
    assert.deepInclude(ok(writing, PartEvent.Reset), { writing: false, dirty: true, scheduled: false })
    assert.deepInclude(ok(scheduled, PartEvent.Reset), { dirty: true, scheduled: false })
  })

  it("install constructors: a local copy is clean only when it matches its remote", () => {
    const clean = localCopy({ sizeBytes: 100, remote, matchesRemote: true })
    assert.deepInclude(clean, { status: "Loaded", dirty: false, version: 0, uploadedVersion: 0, remote })
    const changed = localCopy({ sizeBytes: 100, remote, matchesRemote: false })
    assert.deepInclude(changed, { status: "Loaded", dirty: true, version: 1, remote })
    const unknown = localCopy({ sizeBytes: 7, remote: undefined, matchesRemote: true })
    assert.deepInclude(unknown, { dirty: true, version: 1, remote: undefined })
    for (const state of [clean, changed, unknown, remoteOnly(remote)]) assert.isUndefined(invariantProblem(state))
  })

  it("invariantProblem names each broken rule", () => {
    const cases: ReadonlyArray<readonly [PartState, string]> = [
      [{ ...loaded, leases: -1 }, "lease count"],
      [{ ...loaded, usage: 128 }, "usage"],
      [{ ...loaded, uploadedVersion: 2, version: 1 }, "newer than the version"],
      [{ ...loaded, sizeBytes: 1.5 }, "size"],
      [{ ...loading, leases: 1 }, "holds 1 leases"],
      [{ ...evicting, dirty: true }, "dirty, scheduled or being written"],
      [{ ...loaded, scheduled: true }, "scheduled but not dirty"],
      [{ ...writing, scheduled: true, dirty: true }, "scheduled while an upload"],
      [{ ...writing, uploadingVersion: undefined }, "uploading version"],
      [{ ...writing, uploadingVersion: 5 }, "not a version of this part"],
      [{ ...loaded, version: 3, uploadedVersion: 2 }, "never uploaded"],
      [{ ...empty, status: "Loaded", version: 1, uploadedVersion: 1 }, "no remote object"],
      [{ ...notLoaded, sizeBytes: 5 }, "local bytes"]
    ]
    for (const [state, expected] of cases) assert.include(invariantProblem(state) ?? "(none)", expected)
  })

  // -------------------------------------------------------------------------------------------
  // Property: random sequences never break an invariant, and rejections are exactly the events
  // whose precondition fails (checked against an independent statement of each precondition).
  // -------------------------------------------------------------------------------------------

  type Symbolic =
    | { readonly tag: "Simple"; readonly event: PartEvent }
    | { readonly tag: "UploadSucceededCaptured" }

  const symbolic: FastCheck.Arbitrary<Symbolic> = FastCheck.oneof(
    FastCheck.constantFrom(
      ...eventTags
        .filter((tag) => tag !== "LoadSucceeded" && tag !== "Release" && tag !== "UploadSucceeded")
        .map((tag): Symbolic => ({ tag: "Simple", event: { _tag: tag } as PartEvent }))
    ),
    FastCheck.nat(4096).map((size): Symbolic => ({ tag: "Simple", event: PartEvent.LoadSucceeded(size) })),
    FastCheck.tuple(FastCheck.boolean(), FastCheck.nat(4096)).map(([wrote, end]): Symbolic => ({
      tag: "Simple",
      event: PartEvent.Release(wrote, end)
    })),
    FastCheck.nat(5).map((version): Symbolic => ({
      tag: "Simple",
      event: PartEvent.UploadSucceeded(version, remote2)
    })),
    FastCheck.constant<Symbolic>({ tag: "UploadSucceededCaptured" })
  )

  const resolve = (state: PartState, event: Symbolic): PartEvent =>
    event.tag === "Simple" ? event.event : PartEvent.UploadSucceeded(state.uploadingVersion ?? 0, remote2)

  /** Each event's precondition, restated independently of `transition`. */
  const allowed = (s: PartState, e: PartEvent): boolean => {
    switch (e._tag) {
      case "BeginLoad":
        return s.status === "NotLoaded" && s.remote !== undefined
      case "LoadSucceeded":
      case "LoadFailed":
        return s.status === "Loading"
      case "Acquire":
        return s.status === "Loaded" || (s.status === "NotLoaded" && s.remote === undefined)
      case "Release":
        return s.status === "Loaded" && s.leases > 0
      case "Schedule":
        return s.dirty && !s.scheduled && !s.writing
      case "UploadStart":
        return s.scheduled && !s.writing
      case "UploadSucceeded":
        return s.writing && e.version === s.uploadingVersion
      case "UploadFailed":
        return s.writing
      case "BeginEvict":
        return s.status === "Loaded" && s.leases === 0 && s.usage === 0 && !s.dirty && !s.writing
      case "EvictDone":
      case "EvictAborted":
        return s.status === "Evicting"
      case "Sweep":
      case "Reset":
        return true
    }
  }

  const starts = FastCheck.constantFrom(
    empty,
    notLoaded,
    loaded,
    dirty,
    writing,
    evicting,
    localCopy({ sizeBytes: 3, remote: undefined, matchesRemote: false })
  )

  it("random event sequences keep every invariant; rejections are exactly the failed preconditions", () => {
    FastCheck.assert(
      FastCheck.property(starts, FastCheck.array(symbolic, { maxLength: 60 }), (start, events) => {
        let state = start
        for (const symbolicEvent of events) {
          const event = resolve(state, symbolicEvent)
          const result = transition(state, event)
          assert.strictEqual(Either.isRight(result), allowed(state, event), `${event._tag} on ${JSON.stringify(state)}`)
          if (Either.isRight(result)) {
            const problem = invariantProblem(result.right)
            assert.isUndefined(problem, `${event._tag} from ${JSON.stringify(state)} broke: ${problem}`)
            // Invariant 1 as a step property: a part leaves Loaded for Evicting only if evictable.
            if (result.right.status === "Evicting" && state.status !== "Evicting") assert.isTrue(isEvictable(state))
            // Invariant 3: dirty is cleared only by UploadStart (the upload begins reading).
            if (state.dirty && !result.right.dirty) assert.strictEqual(event._tag, "UploadStart")
            state = result.right
          }
        }
      }),
      { numRuns: 400 }
    )
  })
})
