/**
 * The part maps of a checkpoint: what a completed checkpoint names (`Completed`: per file, its file
 * manifest's entry and part map), and the part maps and new file manifests of the next one from a
 * snapshot of the parts and their uploads. Pure; used by the Checkpointer
 * (src/services/Checkpointer.ts) and its commit (`commit.ts`).
 *
 * Replaces: the per-file `.map` objects of an OrioleDB checkpoint (src/checkpoint/checkpoint.c,
 * its map PUT) and the checksum lines whose CHECKPOINT field names the checkpoint holding a file's
 * latest copy (src/s3/checksum.c); docs/ORIGINAL.md §5.
 *
 * @since 0.1.0
 */
import {
  type CheckpointNumber,
  CheckpointNumber as CheckpointNumberSchema,
  type FileId,
  type InstanceId,
  type Lsn,
  type PartIndex
} from "../../domain/Ids.js"
import * as Manifest from "../../domain/Manifest.js"
import type { SnapshotEntry } from "../../services/PartTable.js"
import type { LoadedCheckpoint } from "../checkpoints.js"

export interface FileState {
  readonly entry: Manifest.FileEntry
  readonly parts: ReadonlyArray<Manifest.PartEntry>
}

/** A committed checkpoint, as the next one builds on it. */
export interface Completed {
  readonly checkpoint: CheckpointNumber
  readonly walPosition: Lsn
  readonly files: ReadonlyMap<FileId, FileState>
}

export const fromLoaded = (base: LoadedCheckpoint | undefined): Completed => ({
  checkpoint: base?.manifest.checkpoint ?? CheckpointNumberSchema.make(0),
  walPosition: base?.manifest.walPosition ?? (0 as Lsn),
  files: new Map([...(base?.files ?? [])].map(([file, loaded]) => [file, { entry: loaded.entry, parts: loaded.parts }]))
})

const samePartEntries = (left: ReadonlyArray<Manifest.PartEntry>, right: ReadonlyArray<Manifest.PartEntry>): boolean =>
  left.length === right.length && left.every((entry, index) => sameTuple(entry, right[index]))

const sameTuple = (left: Manifest.PartEntry, right: Manifest.PartEntry | undefined): boolean =>
  right !== undefined && left[0] === right[0] && left[1] === right[1] && left[2] === right[2] && left[3] === right[3]

/**
 * The part map of checkpoint N per file (parts not uploaded keep their remote copy, uploaded ones
 * the new one), and a new file manifest for every file whose part map changed (unchanged files keep
 * the file manifest of an older checkpoint).
 */
export const partMapsOf = (
  previous: Completed,
  checkpoint: CheckpointNumber,
  snapshot: ReadonlyArray<SnapshotEntry>,
  uploaded: ReadonlyArray<readonly [SnapshotEntry, Manifest.RemotePart]>,
  instanceId: InstanceId
) => {
  const byFile = new Map<FileId, Map<PartIndex, Manifest.PartEntry>>()
  const put = (file: FileId, part: PartIndex, remote: Manifest.RemotePart) => {
    let fileParts = byFile.get(file)
    if (fileParts === undefined) byFile.set(file, fileParts = new Map())
    fileParts.set(part, [part, remote.checkpoint, remote.sha256, remote.sizeBytes])
  }
  for (const entry of snapshot) {
    if (!entry.needsUpload && entry.remote !== undefined) put(entry.file, entry.part, entry.remote)
  }
  let bytesUploaded = 0
  for (const [entry, remote] of uploaded) {
    put(entry.file, entry.part, remote)
    bytesUploaded += remote.sizeBytes
  }
  const files = new Map(previous.files)
  const changed: Array<{ readonly entry: Manifest.FileEntry; readonly bytes: Uint8Array }> = []
  for (const [file, fileParts] of byFile) {
    const entries = [...fileParts.values()].sort((left, right) => left[0] - right[0])
    const before = previous.files.get(file)
    if (before !== undefined && samePartEntries(before.parts, entries)) continue
    const bytes = Manifest.encodeFileManifest({
      format: Manifest.fileManifestFormat,
      instanceId,
      checkpoint,
      file,
      parts: entries
    })
    const entry: Manifest.FileEntry = {
      file,
      manifestCheckpoint: checkpoint,
      manifestSha256: Manifest.sha256Hex(bytes),
      partCount: entries.length,
      sizeBytes: entries.reduce((sum, [, , , size]) => sum + size, 0)
    }
    files.set(file, { entry, parts: entries })
    changed.push({ entry, bytes })
  }
  return { files, changed, bytesUploaded }
}
