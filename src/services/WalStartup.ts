/**
 * WalStartup: what start-up decided, for the write-ahead log (the writer's epoch, where start-up
 * replay begins, the log's durable end at the last clean stop). Optional: the Storage layer provides
 * it from the Loader.
 *
 * Replaces: the recovery target OrioleDB's loader left for PostgreSQL (orioledb_s3_loader.py wrote
 * the checkpoint's WAL position into the restored control file).
 *
 * @since 0.1.0
 */
import { Context } from "effect"
import type { Lsn } from "../domain/Ids.js"

/**
 * Optional: what start-up decided, for the log. The Storage layer provides it from the Loader.
 * `epoch` is the writer's fencing epoch, put into every archived segment's key.
 * `replayFromLsn` is the position start-up replay begins at (the base checkpoint's WAL position):
 * until `replay` or `advanceTo` ends start-up, `position` does not pass what replay has applied.
 * @category tags
 */
export class WalStartup extends Context.Tag("effect-s3-tier/WalStartup")<
  WalStartup,
  {
    readonly replayFromLsn: Lsn
    /** The writer's epoch (the bucket lock's): in every archived key; restore reads the history of it. */
    readonly epoch: number
    /** Everything below it was durable in the local log at the last clean stop (Control.walDurableLsn):
     * damage below it is never a torn tail, it is repaired from the bucket or refused (WalCorrupt). */
    readonly durableLsn?: Lsn
  }
>() {}
