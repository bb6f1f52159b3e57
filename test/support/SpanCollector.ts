/**
 * A tracer that keeps every span it starts, in start order, so a test can check names, attributes
 * and parents (which span a piece of work ran inside) without an exporter.
 */
import { Option, Tracer } from "effect"
import type { Context, Exit } from "effect"

/** A started span, as the tracer recorded it. */
export interface CollectedSpan extends Tracer.Span {
  readonly attributes: Map<string, unknown>
  readonly ended: boolean
}

let nextId = 0

const makeSpan = (
  name: string,
  parent: Option.Option<Tracer.AnySpan>,
  context: Context.Context<never>,
  links: ReadonlyArray<Tracer.SpanLink>,
  startTime: bigint,
  kind: Tracer.SpanKind
): CollectedSpan => {
  nextId += 1
  const attributes = new Map<string, unknown>()
  const span = {
    _tag: "Span" as const,
    name,
    spanId: `span-${nextId}`,
    traceId: Option.match(parent, { onNone: () => `trace-${nextId}`, onSome: (value) => value.traceId }),
    parent,
    context,
    status: { _tag: "Started", startTime } as Tracer.SpanStatus,
    attributes,
    links: [...links],
    sampled: true,
    kind,
    ended: false,
    end(endTime: bigint, exit: Exit.Exit<unknown, unknown>) {
      span.status = { _tag: "Ended", startTime, endTime, exit }
      span.ended = true
    },
    attribute(key: string, value: unknown) {
      attributes.set(key, value)
    },
    event() {},
    addLinks(more: ReadonlyArray<Tracer.SpanLink>) {
      span.links.push(...more)
    }
  }
  return span
}

/** A collecting tracer and the spans it started. */
export const make = () => {
  const spans: Array<CollectedSpan> = []
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind) => {
      const span = makeSpan(name, parent, context, links, startTime, kind)
      spans.push(span)
      return span
    },
    context: (f) => f()
  })
  return { tracer, spans }
}

/** The span's parent, if it is one of `spans`. */
export const parentOf = (span: Tracer.Span): Tracer.AnySpan | undefined => Option.getOrUndefined(span.parent)
