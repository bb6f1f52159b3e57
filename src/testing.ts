/**
 * effect-s3-tier/testing: decorators and in-memory backends for an app's own tests.
 *
 * `FaultyObjectStore` and `FaultyDisk` inject the failures the tier is built to survive (stalls,
 * errors, latency, lost responses; a full disk with torn writes, a failed fsync, bit flips);
 * `CountingObjectStore` counts requests and bytes by key kind; `MemoryObjectStore` and `MemoryDisk`
 * are the in-memory backends with their inspection and failure-injection handles. `Storage.layerMemory`
 * (in the main entry point) composes the two memory backends for the common case.
 *
 * Replaces: nothing in OrioleDB.
 *
 * @module effect-s3-tier/testing
 * @since 0.2.0
 */
export * as CountingObjectStore from "./layers/CountingObjectStore.js"
export * as FaultyDisk from "./layers/FaultyDisk.js"
export * as FaultyObjectStore from "./layers/FaultyObjectStore.js"
export * as MemoryDisk from "./layers/MemoryDisk.js"
export * as MemoryObjectStore from "./layers/MemoryObjectStore.js"
