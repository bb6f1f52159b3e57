/**
 * MetricsInstance: the `instance` label that every metric of the library carries, so that two
 * storages in one process (two tenants, a test beside an app) keep separate series. It is a
 * Context reference with a default ("default"): nothing needs to provide it, and an app that opens
 * more than one storage provides one value per storage (`MetricsInstance.layer("orders")` beside
 * that storage's layers). Every metric and its labels are listed in docs/METRICS.md.
 *
 * Replaces: nothing in OrioleDB, whose S3 tier exports no metrics.
 *
 * @since 0.2.0
 */
import { Context, Layer } from "effect"

/** The label value of this storage's metrics (default "default"). @category tags */
export class MetricsInstance extends Context.Reference<MetricsInstance>()("effect-s3-tier/MetricsInstance", {
  defaultValue: (): string => "default"
}) {}

/** Labels the metrics of the layers it is provided to with `instance`. @category layers */
export const layer = (instance: string): Layer.Layer<MetricsInstance> => Layer.succeed(MetricsInstance, instance)
