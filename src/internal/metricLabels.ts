/**
 * The label arrays of one storage's metrics: `instance` alone, and `instance` with each
 * `taskType`. Built once per service (stable arrays keep Effect's metric lookups cached: an update
 * with the same array reuses its hook).
 *
 * Replaces: nothing in OrioleDB, whose S3 tier exports no metrics.
 *
 * @internal
 * @since 0.2.0
 */
import { MetricLabel } from "effect"
import { type TaskType, taskTypes } from "../domain/Task.js"

export interface MetricLabels {
  /** `instance` only. */
  readonly instance: ReadonlyArray<MetricLabel.MetricLabel>
  /** `instance` and `taskType`, per task type. */
  readonly byType: Readonly<Record<TaskType, ReadonlyArray<MetricLabel.MetricLabel>>>
}

/** The labels of the storage named `instance`. */
export const metricLabels = (instance: string): MetricLabels => {
  const instanceLabel = MetricLabel.make("instance", instance)
  const byType: Partial<Record<TaskType, ReadonlyArray<MetricLabel.MetricLabel>>> = {}
  for (const type of taskTypes) byType[type] = [instanceLabel, MetricLabel.make("taskType", type)]
  return { instance: [instanceLabel], byType: byType as Record<TaskType, ReadonlyArray<MetricLabel.MetricLabel>> }
}
