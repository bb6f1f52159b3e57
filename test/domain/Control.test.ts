/**
 * Goal: the start-up decision refuses every directory that going on with would lose or fork data
 * (the analogue of OrioleDB's test_s3_check_control) and accepts the legitimate cases, including the
 * crash window between a checkpoint's commit and the control file's rewrite.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as Control from "../../src/domain/Control.js"
import * as Ids from "../../src/domain/Ids.js"

const control: Control.Control = {
  format: Control.controlFormat,
  instanceId: Ids.InstanceId.make("a"),
  epoch: Ids.epoch(2),
  store: "file:///bucket",
  prefix: "p",
  lastCheckpoint: Ids.checkpointNumber(5),
  walPosition: Ids.lsn(0),
  partSizeBytes: 4096,
  walSegmentBytes: 8192,
  cleanShutdown: true
}
const sizes = { partSizeBytes: 4096, walSegmentBytes: 8192 }
const bucket = (checkpoint: number | undefined, instance = "a", epoch = 2): Control.BucketState => ({
  store: "file:///bucket",
  prefix: "p",
  latest: checkpoint === undefined
    ? undefined
    : {
      checkpoint: Ids.checkpointNumber(checkpoint),
      instanceId: Ids.InstanceId.make(instance),
      epoch: Ids.epoch(epoch)
    }
})

const refusal = (result: Either.Either<Control.StartupPlan, { reason: string }>): string | undefined =>
  Either.isLeft(result) ? result.left.reason : undefined
const plan = (result: Either.Either<Control.StartupPlan, unknown>): string | undefined =>
  Either.isRight(result) ? result.right._tag : undefined

describe("planStartup", () => {
  it("starts fresh, restores, or reopens when in step", () => {
    assert.strictEqual(plan(Control.planStartup(undefined, false, bucket(undefined), sizes)), "Fresh")
    assert.strictEqual(plan(Control.planStartup(undefined, false, bucket(3), sizes)), "Restore")
    assert.strictEqual(plan(Control.planStartup(control, true, bucket(5), sizes)), "Reopen")
    assert.strictEqual(
      plan(
        Control.planStartup({ ...control, lastCheckpoint: Ids.checkpointNumber(0) }, true, bucket(undefined), sizes)
      ),
      "Reopen"
    )
  })

  it("reopens across the crash window: one behind, same instance and epoch", () => {
    assert.strictEqual(plan(Control.planStartup(control, true, bucket(6), sizes)), "Reopen")
    assert.strictEqual(refusal(Control.planStartup(control, true, bucket(6, "a", 3), sizes)), "LocalBehind")
  })

  it("reopens a directory behind only by its own checkpoints, and refuses one behind by another history", () => {
    const summary = (
      checkpoint: number,
      instance = "a",
      epoch = 2,
      previous = checkpoint - 1
    ): Control.CheckpointSummary => ({
      checkpoint: Ids.checkpointNumber(checkpoint),
      instanceId: Ids.InstanceId.make(instance),
      epoch: Ids.epoch(epoch),
      previous: Ids.checkpointNumber(previous)
    })
    const behind = (newer: ReadonlyArray<Control.CheckpointSummary>) => {
      const latest = newer[newer.length - 1]
      return Control.planStartup(control, true, { ...bucket(undefined), latest, newer }, sizes)
    }
    // Checkpoints 6-8 committed by this directory's instance and epoch, its control file left at 5.
    assert.strictEqual(plan(behind([summary(6), summary(7), summary(8)])), "Reopen")
    // The same numbers from another history: refused, naming what differs and the remedy.
    const copied = behind([summary(6, "a", 3), summary(7, "a", 3), summary(8, "a", 3)])
    assert.strictEqual(refusal(copied), "LocalBehind")
    assert.match(Either.isLeft(copied) ? copied.left.message : "", /epoch 3.*empty data directory/)
    assert.strictEqual(refusal(behind([summary(6), summary(7, "b"), summary(8)])), "LocalBehind")
    assert.strictEqual(refusal(behind([summary(6), summary(8, "a", 2, 7)])), "LocalBehind", "a missing checkpoint")
    assert.strictEqual(
      refusal(behind([summary(6), summary(7, "a", 2, 5), summary(8)])),
      "LocalBehind",
      "a fork: 7 does not build on 6"
    )
    assert.strictEqual(refusal(behind([summary(6, "a", 2, 4)])), "LocalBehind", "6 does not build on the directory's 5")
  })

  it("refuses foreign directories, instances and buckets, and local state ahead or behind", () => {
    assert.strictEqual(refusal(Control.planStartup(undefined, true, bucket(undefined), sizes)), "NotOurDirectory")
    assert.strictEqual(refusal(Control.planStartup(control, true, bucket(5, "b"), sizes)), "ForeignInstance")
    assert.strictEqual(refusal(Control.planStartup(control, true, bucket(4), sizes)), "LocalAhead")
    assert.strictEqual(refusal(Control.planStartup(control, true, bucket(undefined), sizes)), "LocalAhead")
    assert.strictEqual(refusal(Control.planStartup(control, true, bucket(9), sizes)), "LocalBehind")
    assert.strictEqual(
      refusal(Control.planStartup(control, true, { ...bucket(5), prefix: "q" }, sizes)),
      "ForeignBucket"
    )
    assert.strictEqual(
      refusal(Control.planStartup(control, true, { ...bucket(5), store: "s3://other" }, sizes)),
      "ForeignBucket"
    )
    assert.strictEqual(
      refusal(Control.planStartup(control, true, bucket(5), { ...sizes, partSizeBytes: 8192 })),
      "NotOurDirectory"
    )
  })

  it("each refusal says what happened and what to do", () => {
    const message = (
      result: Either.Either<Control.StartupPlan, { message: string }>
    ): string => (Either.isLeft(result) ? result.left.message : "")
    const foreign = message(Control.planStartup(control, true, bucket(5, "b"), sizes))
    assert.match(foreign, /written by instance b.*taken over/)
    assert.match(
      foreign,
      /What to do: .*cannot be reopened, with or without takeOver.*open an empty data directory.*BucketLocked.*restore --dir/
    )
    const ahead = message(Control.planStartup(control, true, bucket(4), sizes))
    assert.match(ahead, /checkpoint 5, the bucket only at 4/)
    assert.match(
      ahead,
      /What to do: check that the store and prefix.*put them back.*otherwise open an empty data directory/
    )
    const behind = message(Control.planStartup(control, true, bucket(9), sizes))
    assert.match(behind, /behind the bucket's 9/)
    assert.match(
      behind,
      /What to do: the bucket went on without this directory.*cannot be reopened; open an empty data directory/
    )
    assert.match(
      message(Control.planStartup(undefined, true, bucket(undefined), sizes)),
      /What to do: open a missing or empty directory/
    )
    assert.match(
      message(Control.planStartup(control, true, { ...bucket(5), prefix: "q" }, sizes)),
      /What to do: open the directory with the store and prefix it belongs to/
    )
  })

  it("decodes its own encoding and rejects a truncated control file", () => {
    const bytes = Control.encodeControl(control)
    assert.deepStrictEqual(Either.getOrThrow(Control.decodeControl("c", bytes)), control)
    assert.isTrue(Either.isLeft(Control.decodeControl("c", bytes.slice(0, 20))))
  })
})

describe("Control.forCheckpoint", () => {
  const holder = { instanceId: Ids.InstanceId.make("a"), epoch: Ids.epoch(4) }
  const config = { prefix: "p", ...sizes }
  const base = (instance: string, commitToken?: string): Control.ControlBase => ({
    checkpoint: Ids.checkpointNumber(7),
    walPosition: Ids.lsn(700),
    instanceId: Ids.InstanceId.make(instance),
    ...(commitToken === undefined ? {} : { commitToken })
  })

  it("records the holder, the bucket, the sizes and the base checkpoint, not as a clean stop", () => {
    const written = Control.forCheckpoint({ holder, store: "file:///bucket", config, base: base("a", "t-own") })
    assert.deepStrictEqual(written, {
      ...control,
      epoch: Ids.epoch(4),
      lastCheckpoint: Ids.checkpointNumber(7),
      walPosition: Ids.lsn(700),
      cleanShutdown: false
    })
    const first = Control.forCheckpoint({ holder, store: "file:///bucket", config, base: undefined })
    assert.strictEqual(first.lastCheckpoint, 0)
    assert.strictEqual(first.walPosition, 0)
  })

  it("keeps the base's commit token only when another instance committed the base", () => {
    assert.strictEqual(
      Control.forCheckpoint({ holder, store: "s", config, base: base("b", "t-b") }).baseCommitToken,
      "t-b"
    )
    assert.isUndefined(Control.forCheckpoint({ holder, store: "s", config, base: base("a", "t-a") }).baseCommitToken)
    assert.isUndefined(
      Control.forCheckpoint({
        holder,
        store: "s",
        config,
        base: { checkpoint: Ids.checkpointNumber(7), walPosition: Ids.lsn(700) }
      }).baseCommitToken
    )
  })

  it("carries the WAL's durable end when given", () => {
    assert.strictEqual(
      Control.forCheckpoint({ holder, store: "s", config, base: undefined, walDurableLsn: Ids.lsn(9) }).walDurableLsn,
      9
    )
    assert.isFalse("walDurableLsn" in Control.forCheckpoint({ holder, store: "s", config, base: undefined }))
  })
})
