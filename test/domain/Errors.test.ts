/**
 * Goal: every refusal an operator meets says what happened and what to do about it.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Errors from "../../src/domain/Errors.js"

describe("refusal messages", () => {
  it("name the remedy for a lock, a directory, a fence, a corrupt WAL and a restore", () => {
    const locked = new Errors.BucketLocked({ key: "p/lock", holder: "b", epoch: 4 })
    assert.match(locked.message, /locked by instance b \(epoch 4.*stop that instance first; only if it is dead .*takeOver \(CLI `--take-over`\)/)
    const directory = new Errors.DirectoryLocked({ path: "/d", holder: "process 7" })
    assert.match(directory.message, /in use by process 7.*stop that process first/)
    const fenced = new Errors.Fenced({ epoch: 2, detail: "the lock names epoch 3" })
    assert.match(fenced.message, /epoch 2\) was superseded: the lock names epoch 3; close it: .*go on from the instance that took over/)
    const corrupt = new Errors.WalCorrupt({ segment: 5, lsn: 100, detail: "bad CRC" })
    assert.match(corrupt.message, /segment 5 is corrupt at position 100.*bad CRC; put back the segment .*open an empty one/)
    const expired = new Errors.RestoreRefused({ reason: "Expired", detail: "checkpoint 3 is outside the retention window (it has expired): ..." })
    assert.match(expired.message, /^checkpoint 3 is outside .*; choose a target at or after the oldest restorable checkpoint$/)
    assert.match(new Errors.RestoreRefused({ reason: "BeyondArchive", detail: "x" }).message, /below the archived WAL's end/)
    assert.match(new Errors.RestoreRefused({ reason: "NoCheckpoint", detail: "x" }).message, /check the store and prefix/)
  })

  it("give every StartupRefused reason its own remedy after what happened", () => {
    const reasons = ["ForeignInstance", "LocalAhead", "LocalBehind", "NotOurDirectory", "ForeignBucket"] as const
    const remedies = new Set(reasons.map((reason) => Errors.startupRefusedRemedy[reason]))
    assert.strictEqual(remedies.size, reasons.length)
    for (const reason of reasons) {
      const message = new Errors.StartupRefused({ reason, detail: "what happened" }).message
      assert.strictEqual(message, `start-up refused (${reason}): what happened. What to do: ${Errors.startupRefusedRemedy[reason]}`)
    }
  })
})
