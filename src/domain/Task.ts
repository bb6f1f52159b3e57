/**
 * The S3 task descriptors: what the task queue carries, as a Schema union. A descriptor says what a
 * task is (for deduplication, metrics, the waiter registry and reports); the effect that performs it
 * is supplied by the service that enqueues it (see src/services/TaskQueue.ts).
 *
 * Replaces: the task structs of OrioleDB's include/s3/worker.h (WriteFile, WriteFilePart,
 * ReadFilePart, WriteWALFile, WriteEmptyDir, WriteRootFile, WritePGFile; docs/ORIGINAL.md §2).
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { CheckpointNumber, FileId, PartIndex, SegmentNumber } from "./Ids.js"

/** Upload one part of a file under the keys of checkpoint `checkpoint`. */
export class WritePart extends Schema.TaggedClass<WritePart>()("WritePart", {
  file: FileId,
  part: PartIndex,
  checkpoint: CheckpointNumber
}) {}

/** Download one part of a file (from the object named by the current manifest). */
export class ReadPart extends Schema.TaggedClass<ReadPart>()("ReadPart", {
  file: FileId,
  part: PartIndex
}) {}

/** Write one whole object: a file manifest, a checkpoint's root manifest, the lock object. */
export class WriteObject extends Schema.TaggedClass<WriteObject>()("WriteObject", {
  key: Schema.String,
  kind: Schema.Literal("FileManifest", "Manifest", "Lock", "Other")
}) {}

/** Archive one WAL segment to `wal/<segment>`. */
export class WriteWalSegment extends Schema.TaggedClass<WriteWalSegment>()("WriteWalSegment", {
  segment: SegmentNumber,
  partial: Schema.Boolean
}) {}

/** Delete one object. */
export class DeleteObject extends Schema.TaggedClass<DeleteObject>()("DeleteObject", {
  key: Schema.String
}) {}

/** Any task. @category models */
export const Task = Schema.Union(WritePart, ReadPart, WriteObject, WriteWalSegment, DeleteObject)
export type Task = typeof Task.Type

/** The task types, for metrics labels and CLI flags (`--fault fail-task=<type>`). */
export const taskTypes = ["WritePart", "ReadPart", "WriteObject", "WriteWalSegment", "DeleteObject"] as const
/** The name of a task type. */
export type TaskType = Task["_tag"]

/**
 * The deduplication key: a read joins the in-flight read of the same part, a write of a part
 * coalesces into a queued, not yet picked write of the same part. Other tasks are never merged.
 */
export const dedupKey = (task: Task): string | undefined => {
  switch (task._tag) {
    case "ReadPart":
      return `read:${task.file}#${task.part}`
    case "WritePart":
      return `write:${task.file}#${task.part}`
    default:
      return undefined
  }
}

/** A short human description, for logs and the waiter registry. */
export const describe = (task: Task): string => {
  switch (task._tag) {
    case "WritePart":
      return `WritePart ${task.file}#${task.part} @${task.checkpoint}`
    case "ReadPart":
      return `ReadPart ${task.file}#${task.part}`
    case "WriteObject":
      return `WriteObject ${task.kind} ${task.key}`
    case "WriteWalSegment":
      return `WriteWalSegment ${task.segment}${task.partial ? " (partial)" : ""}`
    case "DeleteObject":
      return `DeleteObject ${task.key}`
  }
}

/** What a task is about, for span attributes: the object key of a WriteObject or DeleteObject,
 * `file#part` of a part, the segment number of a WAL segment. */
export const subjectOf = (task: Task): string => {
  switch (task._tag) {
    case "WritePart":
    case "ReadPart":
      return `${task.file}#${task.part}`
    case "WriteObject":
    case "DeleteObject":
      return task.key
    case "WriteWalSegment":
      return String(task.segment)
  }
}
