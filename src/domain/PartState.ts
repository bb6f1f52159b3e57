/**
 * The part state machine, as pure transition functions. IMPLEMENTATION: placeholder; see issue "3 of 8".
 *
 * @since 0.1.0
 */
import type { RemotePart } from "./Manifest.js"

export type PartStatus = "NotLoaded" | "Loading" | "Loaded" | "Evicting"

export interface PartState {
  readonly status: PartStatus
  readonly leases: number
  readonly dirty: boolean
  readonly writing: boolean
  readonly scheduled: boolean
  readonly usage: number
  readonly version: number
  readonly uploadedVersion: number
  readonly remote: RemotePart | undefined
  readonly sizeBytes: number
}
