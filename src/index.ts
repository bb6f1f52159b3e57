/**
 * effect-s3-tier: the public API. Import modules as namespaces:
 * `import { Storage, StorageConfig, S3ObjectStore } from "effect-s3-tier"`.
 *
 * What is here is what an app needs: the Storage layer and its one-call opens, the configuration,
 * the object-store and local-disk backends with their service interfaces (for a custom backend),
 * point-in-time restore, the garbage collector's one-off pass, the typed errors and the ids. The
 * machinery (task queue, workers, part table, checkpointer, WAL archiver, loader, bucket lock, …)
 * is not exported and may change in any release. The fault-injecting and counting decorators, for
 * an app's own tests, are in `effect-s3-tier/testing`.
 *
 * @module effect-s3-tier
 * @since 0.1.0
 */
export * as Errors from "./domain/Errors.js"
export * as Ids from "./domain/Ids.js"
export * as FileObjectStore from "./layers/FileObjectStore.js"
export * as FileSystemDisk from "./layers/FileSystemDisk.js"
export * as MemoryDisk from "./layers/MemoryDisk.js"
export * as MemoryObjectStore from "./layers/MemoryObjectStore.js"
export * as Restore from "./layers/Restore.js"
export * as S3ObjectStore from "./layers/S3ObjectStore.js"
export * as Storage from "./layers/Storage.js"
export * as GarbageCollector from "./services/GarbageCollector.js"
export * as LocalDisk from "./services/LocalDisk.js"
export * as MetricsInstance from "./services/MetricsInstance.js"
export * as ObjectStore from "./services/ObjectStore.js"
export * as StorageConfig from "./services/StorageConfig.js"
