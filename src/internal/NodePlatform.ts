/**
 * Node's FileSystem and Path for the `layerNode` backends, loaded when a layer is first built.
 *
 * @effect/platform-node is an optional peer of the package: an app that gives the file layers its
 * own FileSystem (`FileObjectStore.layer`, `FileSystemDisk.layer`) or uses only the S3 and memory
 * backends does not need it installed, so nothing imports it when the package is loaded. Without it,
 * building a `layerNode` dies with the module loader's "Cannot find package" message.
 *
 * Replaces: nothing in OrioleDB (it reads its directory with POSIX calls).
 *
 * @since 0.2.0
 */
import type { FileSystem, Path } from "@effect/platform"
import { Effect, Layer } from "effect"

/** FileSystem and Path over Node's `fs` and `path`. */
export const layer: Layer.Layer<FileSystem.FileSystem | Path.Path> = Layer.unwrapEffect(
  Effect.promise(async () => {
    const [fileSystem, path] = await Promise.all([
      import("@effect/platform-node/NodeFileSystem"),
      import("@effect/platform-node/NodePath")
    ])
    return Layer.merge(fileSystem.layer, path.layer)
  })
)
