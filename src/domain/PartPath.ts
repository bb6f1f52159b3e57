/**
 * PartPath: where the part table keeps each part on the local disk, and which parts a byte range
 * of a file covers. Pure data and arithmetic, no I/O.
 *
 * Every part is its own file on the LocalDisk, `parts/<encodeURIComponent(fileId)>/<part index,
 * 10 digits>`, so evicting a part is an unlink that frees its space for real (OrioleDB wrote zeros
 * into a shared file, which frees nothing unless the file system punches holes).
 *
 * Replaces: OrioleDB's data-file layout, where part i of a segment is the byte range
 * [8192 + i·1 MiB, +1 MiB) of one shared local file, and its offset → part arithmetic for
 * multi-part I/O (src/btree/io.c:624-663, docs/ORIGINAL.md §4).
 *
 * @since 0.1.0
 */
import { Either, Option, Schema } from "effect"
import { InvalidRange } from "./Errors.js"
import { type FileId, FileId as FileIdSchema, type PartIndex, PartIndex as PartIndexSchema } from "./Ids.js"

/** The directory of every part file. */
export const partsDirectory = "parts"

const partDigits = 10

/** The local path of a part's file: `parts/<encodeURIComponent(file)>/<part:10>`. */
export const partPath = (file: FileId, part: PartIndex): string =>
  `${partsDirectory}/${encodeURIComponent(file)}/${part.toString().padStart(partDigits, "0")}`

const decodeFileId = Schema.decodeUnknownEither(FileIdSchema)
const decodePartIndex = Schema.decodeUnknownEither(PartIndexSchema)

/** The (file, part) a local path names, or None for anything else (temp files, foreign files). */
export const parsePartPath = (path: string): Option.Option<readonly [FileId, PartIndex]> => {
  const segments = path.split("/")
  if (segments.length !== 3 || segments[0] !== partsDirectory) return Option.none()
  const [, encoded = "", leaf = ""] = segments
  if (leaf.length !== partDigits || !/^[0-9]+$/.test(leaf)) return Option.none()
  let decoded: string
  try {
    decoded = decodeURIComponent(encoded)
  } catch {
    return Option.none()
  }
  if (encodeURIComponent(decoded) !== encoded) return Option.none()
  const file = Either.getRight(decodeFileId(decoded))
  const part = Either.getRight(decodePartIndex(Number(leaf)))
  return Option.zipWith(file, part, (fileId, partIndex) => [fileId, partIndex] as const)
}

/** The key of a part in the part table: `file#part`. */
export const partKey = (file: FileId, part: number): string => `${file}#${part}`

/** The slice of a byte range of a file that falls in one part. */
export interface PartSlice {
  readonly part: PartIndex
  /** Where the slice starts within the part. */
  readonly offsetInPart: number
  readonly length: number
  /** Where the slice starts within the range. */
  readonly offsetInRange: number
}

/** The parts the byte range [offset, offset + length) of a file covers, in order. */
export const partSlices = (
  partSizeBytes: number,
  offset: number,
  length: number
): Either.Either<Array<PartSlice>, InvalidRange> => {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    return Either.left(
      new InvalidRange({ detail: `offset ${offset} and length ${length} must be non-negative integers` })
    )
  }
  const end = offset + length
  if (length > 0 && Math.floor((end - 1) / partSizeBytes) > 2 ** 31 - 1) {
    return Either.left(new InvalidRange({ detail: `bytes up to ${end} lie beyond the last part index` }))
  }
  const result: Array<PartSlice> = []
  for (let position = offset; position < end;) {
    const part = Math.floor(position / partSizeBytes)
    const offsetInPart = position - part * partSizeBytes
    const count = Math.min(partSizeBytes - offsetInPart, end - position)
    result.push({ part: PartIndexSchema.make(part), offsetInPart, length: count, offsetInRange: position - offset })
    position += count
  }
  return Either.right(result)
}
