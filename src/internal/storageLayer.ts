/**
 * The Storage layer with its internal services in the output too: for the tests, the benchmark, the
 * simulation and the CLI, which read the part table, the queue, the wait registry and the others
 * beside Storage. Not part of the public API (src/index.ts does not export it): an application gets
 * `Storage` alone from Storage.layer.
 *
 * Replaces: nothing in OrioleDB (its processes shared memory, not an interface).
 *
 * @since 0.1.0
 */
import { Layer } from "effect"
import { Storage, type StorageOpenError, type StorageOptions } from "../layers/Storage.js"
import type { LocalDisk } from "../services/LocalDisk.js"
import type { ObjectStore } from "../services/ObjectStore.js"
import type { StorageConfig } from "../services/StorageConfig.js"
import { type InternalServices, make, servicesLayer } from "./storageService.js"

/** Storage and every internal service under it. */
export type StorageServices = Storage | InternalServices

/** Storage.layer, with the internal services in its output. Closing its scope is shutdown. */
export const layerWithServices = (
  options: StorageOptions = {}
): Layer.Layer<StorageServices, StorageOpenError, StorageConfig | ObjectStore | LocalDisk> =>
  Layer.scoped(Storage, make(options)).pipe(Layer.provideMerge(servicesLayer()))
