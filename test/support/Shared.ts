/**
 * Test support shared by several suites: an arbitrary of code points that covers every range where
 * key orders and encodings differ, `eventually`, a bounded wait on the scheduler (no clock), and
 * `failureOf`, the typed failure of an Exit.
 */
import { Cause, Effect, Exit, FastCheck, Option } from "effect"

/**
 * One code point from each range where orders and encodings differ: ASCII, the rest of the BMP
 * below the surrogates, the BMP above them (U+E000–U+FFFF) and the astral planes (surrogate pairs).
 * (Hand-made rather than fast-check's "binary" unit, whose first use costs ~2 s of set-up.)
 */
export const codePoint = FastCheck.oneof(
  FastCheck.integer({ min: 0x00, max: 0x7f }),
  FastCheck.integer({ min: 0x80, max: 0xd7ff }),
  FastCheck.integer({ min: 0xe000, max: 0xffff }),
  FastCheck.integer({ min: 0x10000, max: 0x10ffff })
).map((point) => String.fromCodePoint(point))

/** Yields to the other fibers until `check` holds (bounded: a broken service fails, never hangs). */
export const eventually = (check: Effect.Effect<boolean>, what: string) =>
  Effect.gen(function*() {
    for (let round = 0; round < 500; round++) {
      if (yield* check) return
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage(`never happened: ${what}`)
  })

/** The typed failure of `exit`, or undefined for a success, a defect or an interruption. */
export const failureOf = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
