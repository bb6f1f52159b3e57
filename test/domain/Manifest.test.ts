/**
 * Goal: manifests round-trip, and a corrupt, truncated, foreign or inconsistent manifest is a typed
 * CorruptObject naming its key, never a crash. Also: a million-part file manifest stays practical.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as Ids from "../../src/domain/Ids.js"
import * as Manifest from "../../src/domain/Manifest.js"

const sha = (seed: number) => Manifest.sha256Hex(new Uint8Array([seed & 0xff, seed >> 8]))
const file = Ids.fileId("db/users")
const partSizeBytes = 1024 * 1024

const fileManifest = (parts: ReadonlyArray<Manifest.PartEntry>): Manifest.FileManifest => ({
  format: Manifest.fileManifestFormat,
  instanceId: Ids.InstanceId.make("i1"),
  checkpoint: Ids.checkpointNumber(3),
  file,
  parts
})

const root: Manifest.CheckpointManifest = {
  format: Manifest.checkpointManifestFormat,
  instanceId: Ids.InstanceId.make("i1"),
  epoch: Ids.epoch(1),
  checkpoint: Ids.checkpointNumber(3),
  previous: Ids.checkpointNumber(2),
  createdAtMs: 1,
  partSizeBytes,
  walSegmentBytes: 4096,
  walPosition: Ids.lsn(100),
  files: [{ file, manifestCheckpoint: Ids.checkpointNumber(2), manifestSha256: sha(1), partCount: 1, sizeBytes: 10 }]
}

describe("Manifest", () => {
  it("round-trips a root manifest and a file manifest", () => {
    const decodedRoot = Manifest.decodeCheckpointManifest(
      "k",
      Manifest.encodeCheckpointManifest(root),
      Ids.checkpointNumber(3)
    )
    assert.deepStrictEqual(Either.getOrThrow(decodedRoot), root)
    const manifest = fileManifest([[Ids.partIndex(0), Ids.checkpointNumber(3), sha(2), 10]])
    const bytes = Manifest.encodeFileManifest(manifest)
    const decoded = Manifest.decodeFileManifest("k", bytes, { file, sha256: Manifest.sha256Hex(bytes), partSizeBytes })
    assert.deepStrictEqual(Either.getOrThrow(decoded), manifest)
  })

  it("tells a committed root manifest from the tombstone of an expired one", () => {
    const committed = Manifest.decodeRootObject("k", Manifest.encodeCheckpointManifest(root), Ids.checkpointNumber(3))
    assert.deepStrictEqual(Either.getOrThrow(committed), { _tag: "Committed", manifest: root })
    const tombstone = Manifest.expiredCheckpointOf(root, 99)
    const bytes = Manifest.encodeExpiredCheckpoint(tombstone)
    assert.deepStrictEqual(Either.getOrThrow(Manifest.decodeRootObject("k", bytes, Ids.checkpointNumber(3))), {
      _tag: "Expired",
      tombstone
    })
    assert.match(
      Either.getLeft(Manifest.decodeCheckpointManifest("k", bytes, Ids.checkpointNumber(3))).pipe((
        o
      ) => (o._tag === "Some" ? o.value.detail : "")),
      /has expired/
    )
    assert.isTrue(Either.isLeft(Manifest.decodeRootObject("k", bytes, Ids.checkpointNumber(4))))
  })

  it("carries a commit token, which tells who committed a manifest found at the key", () => {
    const ours = { ...root, commitToken: "t-ours" }
    const decoded = Either.getOrThrow(
      Manifest.decodeCheckpointManifest("k", Manifest.encodeCheckpointManifest(ours), Ids.checkpointNumber(3))
    )
    assert.strictEqual(decoded.commitToken, "t-ours")
    const attempt = { instanceId: ours.instanceId, epoch: ours.epoch, commitToken: "t-ours" }
    const earlier = new Set(["t-earlier"])
    assert.strictEqual(Manifest.commitOwner(decoded, attempt, earlier), "this-attempt")
    assert.strictEqual(Manifest.commitOwner({ ...ours, commitToken: "t-earlier" }, attempt, earlier), "earlier-attempt")
    assert.strictEqual(
      Manifest.commitOwner({ ...ours, commitToken: "t-else" }, attempt, earlier),
      "other-writer",
      "same identity, unknown token: a copy of this writer"
    )
    assert.strictEqual(
      Manifest.commitOwner({ ...ours, instanceId: Ids.InstanceId.make("i2") }, attempt, earlier),
      "other-writer"
    )
    assert.strictEqual(
      Manifest.commitOwner({ ...ours, epoch: Ids.epoch(2), commitToken: "t-else" }, attempt, earlier),
      "newer-epoch"
    )
    assert.strictEqual(
      Manifest.commitOwner(root, attempt, earlier),
      "other-writer",
      "a manifest without a token is never ours"
    )
  })

  it("reports corrupt, truncated, foreign and inconsistent manifests as CorruptObject naming the key", () => {
    const bytes = Manifest.encodeCheckpointManifest(root)
    const cases: Array<[string, Uint8Array, number]> = [
      ["truncated", bytes.slice(0, bytes.length - 5), 3],
      ["garbage", new Uint8Array([0xff, 0xfe, 0x00]), 3],
      [
        "other format",
        new TextEncoder().encode(
          JSON.stringify({ ...JSON.parse(new TextDecoder().decode(bytes)), format: "someone-else@7" })
        ),
        3
      ],
      ["wrong number", bytes, 4],
      ["not an object", new TextEncoder().encode("[1,2,3]"), 3]
    ]
    for (const [name, input, expected] of cases) {
      const result = Manifest.decodeCheckpointManifest("tier/checkpoints/x", input, Ids.checkpointNumber(expected))
      assert.isTrue(Either.isLeft(result), name)
      if (Either.isLeft(result)) {
        assert.strictEqual(result.left._tag, "CorruptObject", name)
        assert.include(result.left.message, "tier/checkpoints/x", name)
      }
    }
  })

  it("checks a file manifest against the digest its root names, and its part order", () => {
    const good = Manifest.encodeFileManifest(fileManifest([[Ids.partIndex(0), Ids.checkpointNumber(3), sha(2), 10]]))
    const wrongDigest = Manifest.decodeFileManifest("k", good, { file, sha256: sha(9), partSizeBytes })
    assert.isTrue(Either.isLeft(wrongDigest))
    const unordered = Manifest.encodeFileManifest(fileManifest([
      [Ids.partIndex(2), Ids.checkpointNumber(3), sha(2), 10],
      [Ids.partIndex(1), Ids.checkpointNumber(3), sha(3), 10]
    ]))
    const result = Manifest.decodeFileManifest("k", unordered, {
      file,
      sha256: Manifest.sha256Hex(unordered),
      partSizeBytes
    })
    assert.isTrue(Either.isLeft(result))
    if (Either.isLeft(result)) assert.include(result.left.detail, "out of order")
    const oversized = Manifest.encodeFileManifest(
      fileManifest([[Ids.partIndex(0), Ids.checkpointNumber(3), sha(2), partSizeBytes + 1]])
    )
    assert.isTrue(
      Either.isLeft(
        Manifest.decodeFileManifest("k", oversized, { file, sha256: Manifest.sha256Hex(oversized), partSizeBytes })
      )
    )
  })

  it("rejects a root manifest whose files are unordered or name a later manifest", () => {
    assert.isDefined(Manifest.checkpointManifestProblem({ ...root, files: [root.files[0]!, root.files[0]!] })) // both defined: literal above
    assert.isDefined(
      Manifest.checkpointManifestProblem({
        ...root,
        files: [{ ...root.files[0]!, manifestCheckpoint: Ids.checkpointNumber(4) }]
      })
    )
    assert.isDefined(Manifest.checkpointManifestProblem({ ...root, previous: Ids.checkpointNumber(3) }))
    assert.isUndefined(Manifest.checkpointManifestProblem(root))
  })

  it("encodes and decodes a file manifest of a million parts in linear time", () => {
    const digest = sha(7)
    const parts: Array<Manifest.PartEntry> = []
    for (let index = 0; index < 1_000_000; index++) {
      parts.push([Ids.partIndex(index), Ids.checkpointNumber(3), digest, partSizeBytes])
    }
    const bytes = Manifest.encodeFileManifest(fileManifest(parts))
    const decoded = Manifest.decodeFileManifest("k", bytes, { file, sha256: Manifest.sha256Hex(bytes), partSizeBytes })
    assert.isTrue(Either.isRight(decoded))
    if (Either.isRight(decoded)) assert.strictEqual(decoded.right.parts.length, 1_000_000)
  }, 60_000)
})

describe("Manifest.rootManifest", () => {
  const entry = (name: string): Manifest.FileEntry => ({
    file: Ids.fileId(name),
    manifestCheckpoint: Ids.checkpointNumber(2),
    manifestSha256: sha(name.length),
    partCount: 1,
    sizeBytes: 10
  })
  const config = { partSizeBytes, walSegmentBytes: 4096, retainCheckpointsMin: 3, retainForMs: 60_000 }
  const built = Manifest.rootManifest({
    writer: { instanceId: Ids.InstanceId.make("i1"), epoch: Ids.epoch(1) },
    checkpoint: Ids.checkpointNumber(3),
    previous: Ids.checkpointNumber(2),
    createdAtMs: 1,
    walPosition: Ids.lsn(100),
    files: [entry("db/b"), entry("db/a"), entry("db/c")],
    commitToken: "t1",
    config
  })

  it("builds a valid root manifest with its files sorted, the sizes and the writer's retention policy", () => {
    assert.deepStrictEqual(built.files.map((file) => file.file), ["db/a", "db/b", "db/c"])
    assert.isUndefined(Manifest.checkpointManifestProblem(built))
    assert.strictEqual(built.commitToken, "t1")
    assert.strictEqual(built.retainCheckpointsMin, 3)
    assert.strictEqual(built.retainForMs, 60_000)
    assert.deepStrictEqual(
      Either.getOrThrow(
        Manifest.decodeCheckpointManifest("k", Manifest.encodeCheckpointManifest(built), Ids.checkpointNumber(3))
      ),
      built
    )
  })

  it("stands a tombstone in for the manifest it replaced: its writer, epoch, number and WAL position, no token, no files", () => {
    const standIn = Manifest.tombstoneStandIn(Manifest.expiredCheckpointOf(built, 5), config)
    assert.deepStrictEqual(standIn, { ...root, files: [], previous: Ids.checkpointNumber(2) })
    assert.strictEqual(Manifest.commitOwner(standIn, built, new Set()), "other-writer")
  })
})
