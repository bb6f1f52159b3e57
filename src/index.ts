/**
 * effect-s3-tier: the public API. Import services as namespaces.
 *
 * @since 0.1.0
 */
export * as Errors from "./domain/Errors.js"
export * as Ids from "./domain/Ids.js"
export * as KeyLayout from "./domain/KeyLayout.js"
export * as Manifest from "./domain/Manifest.js"
export * as Task from "./domain/Task.js"
export * as LocalDisk from "./services/LocalDisk.js"
export * as ObjectStore from "./services/ObjectStore.js"
export * as PartTable from "./services/PartTable.js"
export * as StorageConfig from "./services/StorageConfig.js"
export * as TaskQueue from "./services/TaskQueue.js"
export * as WaitRegistry from "./services/WaitRegistry.js"
