/**
 * The CLI's `--fault` values, parsed into one plan of faults for the fault-injecting ObjectStore
 * (src/layers/FaultyObjectStore.ts, the same decorator the tests use). Pure.
 *
 * - `stall-at-shutdown`: the bucket stops answering when shutdown begins (the original's hang,
 *   docs/ORIGINAL.md §7: the checkpointer then waited forever);
 * - `stall-after=<duration>`: the bucket stops answering that long after the run starts;
 * - `error-rate=<p>`: each request fails with a transient error with probability p (0 < p ≤ 1);
 * - `latency=<duration>`: each request is delayed that long;
 * - `fail-task=<task type>`: every request of that task type fails permanently (the #373 shape:
 *   one task type that never completes). Repeatable.
 *
 * @since 0.1.0
 */
import { Either } from "effect"
import { type TaskType, taskTypes } from "../domain/Task.js"
import { formatDurationMs, parseDurationMs } from "../domain/Units.js"

/** Every fault asked for on the command line. @category models */
export interface FaultPlan {
  readonly stallAtShutdown: boolean
  readonly stallAfterMs: number | undefined
  readonly errorRate: number | undefined
  readonly latencyMs: number | undefined
  readonly failTasks: ReadonlyArray<TaskType>
}

/** No fault at all. */
export const none: FaultPlan = {
  stallAtShutdown: false,
  stallAfterMs: undefined,
  errorRate: undefined,
  latencyMs: undefined,
  failTasks: []
}

/** Whether the plan injects anything. */
export const isEmpty = (plan: FaultPlan): boolean =>
  !plan.stallAtShutdown && plan.stallAfterMs === undefined && plan.errorRate === undefined &&
  plan.latencyMs === undefined && plan.failTasks.length === 0

const faultNames = [
  "stall-at-shutdown",
  "stall-after=<duration>",
  "error-rate=<p>",
  "latency=<duration>",
  `fail-task=<${taskTypes.join("|")}>`
]

/** The accepted forms, for help texts and messages. */
export const usage = faultNames.join(", ")

const isTaskType = (value: string): value is TaskType => (taskTypes as ReadonlyArray<string>).includes(value)

const parseRate = (text: string): Either.Either<number, string> => {
  const value = /^\s*(0(\.[0-9]+)?|1(\.0+)?|\.[0-9]+)\s*$/.test(text) ? Number(text) : Number.NaN
  if (Number.isNaN(value) || value <= 0 || value > 1) {
    return Either.left(`error-rate=${text}: write a probability p with 0 < p <= 1 (e.g. error-rate=0.2)`)
  }
  return Either.right(value)
}

/** Adds one `--fault` value to a plan; a message naming the value when it is not one of `usage`. */
export const addFault = (plan: FaultPlan, text: string): Either.Either<FaultPlan, string> => {
  const equals = text.indexOf("=")
  const name = (equals < 0 ? text : text.slice(0, equals)).trim()
  const value = equals < 0 ? undefined : text.slice(equals + 1).trim()
  const needValue = (what: string) => Either.left(`--fault ${name} needs a value: ${name}=<${what}>`)
  const duplicate = () => Either.left(`--fault ${name} is given twice`)
  switch (name) {
    case "stall-at-shutdown":
      if (value !== undefined) {
        return Either.left(`--fault stall-at-shutdown takes no value (got ${JSON.stringify(value)})`)
      }
      return plan.stallAtShutdown ? duplicate() : Either.right({ ...plan, stallAtShutdown: true })
    case "stall-after":
      if (value === undefined || value === "") return needValue("duration")
      if (plan.stallAfterMs !== undefined) return duplicate()
      return Either.map(
        Either.mapLeft(parseDurationMs(value), (problem) => `--fault stall-after: ${problem}`),
        (ms) => ({ ...plan, stallAfterMs: ms })
      )
    case "latency":
      if (value === undefined || value === "") return needValue("duration")
      if (plan.latencyMs !== undefined) return duplicate()
      return Either.map(
        Either.mapLeft(parseDurationMs(value), (problem) => `--fault latency: ${problem}`),
        (ms) => ({ ...plan, latencyMs: ms })
      )
    case "error-rate":
      if (value === undefined || value === "") return needValue("p")
      if (plan.errorRate !== undefined) return duplicate()
      return Either.map(
        Either.mapLeft(parseRate(value), (problem) => `--fault ${problem}`),
        (rate) => ({ ...plan, errorRate: rate })
      )
    case "fail-task":
      if (value === undefined || value === "") return needValue(taskTypes.join("|"))
      if (!isTaskType(value)) {
        return Either.left(`--fault fail-task=${value}: unknown task type; one of ${taskTypes.join(", ")}`)
      }
      if (plan.failTasks.includes(value)) return duplicate()
      return Either.right({ ...plan, failTasks: [...plan.failTasks, value] })
    default:
      return Either.left(`unknown --fault ${JSON.stringify(text)}; one of ${usage}`)
  }
}

/** Parses every `--fault` value into one plan. */
export const parseFaults = (texts: ReadonlyArray<string>): Either.Either<FaultPlan, string> => {
  let plan: Either.Either<FaultPlan, string> = Either.right(none)
  for (const text of texts) plan = Either.flatMap(plan, (current) => addFault(current, text))
  return plan
}

/** The plan as the `--fault` values that give it (canonical order), for reports. */
export const describe = (plan: FaultPlan): ReadonlyArray<string> => [
  ...(plan.stallAtShutdown ? ["stall-at-shutdown"] : []),
  ...(plan.stallAfterMs === undefined ? [] : [`stall-after=${formatDurationMs(plan.stallAfterMs)}`]),
  ...(plan.errorRate === undefined ? [] : [`error-rate=${plan.errorRate}`]),
  ...(plan.latencyMs === undefined ? [] : [`latency=${formatDurationMs(plan.latencyMs)}`]),
  ...plan.failTasks.map((task) => `fail-task=${task}`)
]
