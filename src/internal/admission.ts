/**
 * The Storage's intake: every operation of the application (a read, a write, an append, a commit,
 * a checkpoint) is admitted while the storage is open and counted while it runs (a lease is only
 * refused once closed: on a loaded part it is taken at once, and one waiting for its part is woken
 * by the part table's close); the shutdown closes the intake (later operations fail with
 * ShuttingDown) and then waits, bounded, for the operations admitted before to end. Without that
 * wait an operation in flight at the shutdown (a read or write through a lease on a slow disk) ran
 * on after the close, holding its lease, and its disk write could land after the stop was marked
 * clean or the directory was reopened (one that outlives the bound keeps the directory locked:
 * directoryGuard.ts). An operation admitted as `cut` (a checkpoint on demand) is interrupted when
 * the intake closes: the shutdown's own checkpoint supersedes it, and must not queue behind it.
 *
 * Replaces: nothing in OrioleDB, whose backends are stopped by the postmaster before its
 * checkpointer runs the shutdown checkpoint.
 *
 * @since 0.1.0
 */
import { Deferred, Effect, Ref } from "effect"
import { ShuttingDown } from "../domain/Errors.js"

/** The intake of one Storage. */
export interface Admission {
  /** Runs `effect` as an admitted operation: fails with ShuttingDown once the intake is closed. */
  readonly admit: <A, E, R>(operation: string, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | ShuttingDown, R>
  /** Fails with ShuttingDown once the intake is closed; counts nothing. */
  readonly refuseIfClosed: (operation: string) => Effect.Effect<void, ShuttingDown>
  /** As `admit`, and interrupted (failing with ShuttingDown) when the intake closes while it runs. */
  readonly cut: <A, E, R>(operation: string, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | ShuttingDown, R>
  /** Closes the intake: from now on operations are refused. Idempotent. */
  readonly close: Effect.Effect<void>
  /** Succeeds once the intake is closed and no admitted operation runs (unbounded: bound it). */
  readonly idle: Effect.Effect<void>
  /** The admitted operations still running. */
  readonly inFlight: Effect.Effect<number>
}

interface State {
  readonly closed: boolean
  readonly inFlight: number
}

/** A new, open intake. */
export const make: Effect.Effect<Admission> = Effect.gen(function*() {
  // One Ref for both, so that an admission and the close are ordered: an operation is either
  // counted before the close reads the count, or refused.
  const state = yield* Ref.make<State>({ closed: false, inFlight: 0 })
  const idle = yield* Deferred.make<void>()
  const closed = yield* Deferred.make<void>()
  const enter = (operation: string) =>
    Effect.flatMap(
      Ref.modify(state, (current): [boolean, State] =>
        current.closed ? [false, current] : [true, { ...current, inFlight: current.inFlight + 1 }]),
      (admitted) => (admitted ? Effect.void : Effect.fail(new ShuttingDown({ operation })))
    )
  const leave = Effect.flatMap(
    Ref.modify(state, (current): [boolean, State] => [
      current.closed && current.inFlight === 1,
      { ...current, inFlight: current.inFlight - 1 }
    ]),
    (nowIdle) => (nowIdle ? Deferred.succeed(idle, undefined) : Effect.void)
  )
  const admit: Admission["admit"] = (operation, effect) =>
    Effect.acquireUseRelease(enter(operation), () => effect, () => leave)
  return {
    admit,
    refuseIfClosed: (operation) =>
      Effect.flatMap(
        Ref.get(state),
        (current) => (current.closed ? Effect.fail(new ShuttingDown({ operation })) : Effect.void)
      ),
    cut: (operation, effect) =>
      admit(
        operation,
        Effect.raceFirst(effect, Effect.zipRight(Deferred.await(closed), Effect.fail(new ShuttingDown({ operation }))))
      ),
    close: Effect.flatMap(
      Ref.modify(state, (current): [boolean, State] => [current.inFlight === 0, { ...current, closed: true }]),
      (nowIdle) =>
        Effect.zipRight(Deferred.succeed(closed, undefined), nowIdle ? Deferred.succeed(idle, undefined) : Effect.void)
    ),
    idle: Deferred.await(idle),
    inFlight: Effect.map(Ref.get(state), (current) => current.inFlight)
  }
})
