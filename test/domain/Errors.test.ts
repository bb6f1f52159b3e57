/**
 * Goal: every refusal an operator meets says what happened and what to do about it; any failure,
 * typed or not, has one line of text; errors are recognised by their tag.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Data, FiberId } from "effect"
import * as Errors from "../../src/domain/Errors.js"

describe("refusal messages", () => {
  it("name the remedy for a lock, a directory, a fence, a corrupt WAL and a restore", () => {
    const locked = new Errors.BucketLocked({ key: "p/lock", holder: "b", epoch: 4 })
    assert.match(
      locked.message,
      /locked by instance b \(epoch 4.*stop that instance first; only if it is dead .*takeOver \(CLI `--take-over`\)/
    )
    const directory = new Errors.DirectoryLocked({ path: "/d", holder: "process 7" })
    assert.match(directory.message, /in use by process 7.*stop that process first/)
    const fenced = new Errors.Fenced({ epoch: 2, detail: "the lock names epoch 3" })
    assert.match(
      fenced.message,
      /epoch 2\) was superseded: the lock names epoch 3; close it: .*go on from the instance that took over/
    )
    const corrupt = new Errors.WalCorrupt({ segment: 5, lsn: 100, detail: "bad CRC" })
    assert.match(
      corrupt.message,
      /segment 5 is corrupt at position 100.*bad CRC; put back the segment .*open an empty one/
    )
    const expired = new Errors.RestoreRefused({
      reason: "Expired",
      detail: "checkpoint 3 is outside the retention window (it has expired): ..."
    })
    assert.match(
      expired.message,
      /^checkpoint 3 is outside .*; choose a target at or after the oldest restorable checkpoint$/
    )
    assert.match(
      new Errors.RestoreRefused({ reason: "BeyondArchive", detail: "x" }).message,
      /below the archived WAL's end/
    )
    assert.match(
      new Errors.RestoreRefused({ reason: "NoCheckpoint", detail: "x" }).message,
      /check the store and prefix/
    )
  })

  it("give every StartupRefused reason its own remedy after what happened", () => {
    const reasons = ["ForeignInstance", "LocalAhead", "LocalBehind", "NotOurDirectory", "ForeignBucket"] as const
    const remedies = new Set(reasons.map((reason) => Errors.startupRefusedRemedy[reason]))
    assert.strictEqual(remedies.size, reasons.length)
    for (const reason of reasons) {
      const message = new Errors.StartupRefused({ reason, detail: "what happened" }).message
      assert.strictEqual(
        message,
        `start-up refused (${reason}): what happened. What to do: ${Errors.startupRefusedRemedy[reason]}`
      )
    }
  })
})

describe("errors as text and by tag", () => {
  it("messageOf gives a tagged error's message, a plain object's message, a bare tag, or the value", () => {
    assert.strictEqual(
      Errors.messageOf(new Errors.ShuttingDown({ operation: "lease" })),
      "lease: the storage layer is shutting down"
    )
    assert.strictEqual(Errors.messageOf(new Error("boom")), "boom")
    assert.strictEqual(Errors.messageOf({ message: "plain" }), "plain")
    class Bare extends Data.TaggedError("Bare")<{}> {}
    assert.strictEqual(Errors.messageOf(new Bare()), "Bare")
    assert.strictEqual(Errors.messageOf(42), "42")
  })

  it("describeCause names the first failure, else the defect, else the interruption", () => {
    const failure = new Errors.InvalidRange({ detail: "offset past the end" })
    assert.strictEqual(
      Errors.describeCause(Cause.sequential(Cause.fail(failure), Cause.die(new Error("later")))),
      "invalid range: offset past the end"
    )
    assert.strictEqual(Errors.describeCause(Cause.die(new Error("a defect"))), "a defect")
    assert.strictEqual(Errors.describeCause(Cause.interrupt(FiberId.none)), "interrupted")
  })

  it("isTransient and isRequestTimeout go by tag and reason", () => {
    const timeout = new Errors.ObjectStoreUnavailable({ operation: "put", reason: "Timeout", detail: "no answer" })
    const network = new Errors.ObjectStoreUnavailable({ operation: "put", reason: "Network", detail: "reset" })
    assert.isTrue(Errors.isTransient(timeout))
    assert.isTrue(Errors.isTransient(network))
    assert.isFalse(
      Errors.isTransient(new Errors.ObjectStoreRejected({ operation: "put", code: "AccessDenied", detail: "" }))
    )
    assert.isTrue(Errors.isRequestTimeout(timeout))
    assert.isFalse(Errors.isRequestTimeout(network))
    assert.isFalse(
      Errors.isRequestTimeout({ _tag: "ObjectStoreUnavailable", reason: "Timeout" }),
      "not an ObjectStoreUnavailable, only shaped like one"
    )
  })
})
