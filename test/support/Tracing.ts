/**
 * Tests of spans: a tracer that records every span it starts (over the runtime's own), and the
 * ancestry of a recorded span.
 */
import { Effect, Option, Tracer } from "effect"

/** `base`, recording every span it starts in `spans`. */
export const collectingTracer = (base: Tracer.Tracer, spans: Array<Tracer.Span>): Tracer.Tracer =>
  Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = base.span(name, parent, context, links, startTime, kind, options)
      spans.push(span)
      return span
    },
    context: (f, fiber) => base.context(f, fiber)
  })

/** A recording tracer over the runtime's own, and the spans it records. */
export const makeCollectingTracer: Effect.Effect<
  { readonly tracer: Tracer.Tracer; readonly spans: Array<Tracer.Span> }
> = Effect.map(Effect.tracer, (base) => {
  const spans: Array<Tracer.Span> = []
  return { tracer: collectingTracer(base, spans), spans }
})

/** Runs `effect` with every span it (and every fiber it starts) opens recorded in `spans`. */
export const recordingSpans = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  spans: Array<Tracer.Span>
): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.tracer, (base) => Effect.withTracer(effect, collectingTracer(base, spans)))

/** The names of `span`'s ancestors, nearest first (as far as the recorded spans reach). */
export const ancestorNames = (span: Tracer.Span, spans: ReadonlyArray<Tracer.Span>): ReadonlyArray<string> => {
  const names: Array<string> = []
  let parent = span.parent
  while (Option.isSome(parent)) {
    const id = parent.value.spanId
    const found = spans.find((candidate) => candidate.spanId === id)
    if (found === undefined) break
    names.push(found.name)
    parent = found.parent
  }
  return names
}
