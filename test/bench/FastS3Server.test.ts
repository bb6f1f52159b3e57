/**
 * The benchmarks' fast S3 endpoint (bench/fast-s3-server.ts) keeps the ObjectStore contract through
 * the library's S3 store: a benchmark against it measures the real client path, conditional
 * creates and listings included, not a shortcut.
 */
import { Effect, Layer } from "effect"
import * as FastS3Server from "../../bench/fast-s3-server.js"
import * as S3ObjectStore from "../../src/layers/S3ObjectStore.js"
import { suite } from "../layers/ObjectStoreSuite.js"

const bucket = "fast-bucket"

suite(
  "S3ObjectStore on the benchmarks' fast S3 endpoint",
  Layer.unwrapScoped(
    Effect.map(
      Effect.acquireRelease(
        Effect.promise(() => FastS3Server.start([bucket])),
        (server) => Effect.promise(() => server.close())
      ),
      (server) =>
        S3ObjectStore.layer({
          bucket,
          endpoint: server.endpoint,
          region: "us-east-1",
          forcePathStyle: true,
          credentials: { accessKeyId: "fast", secretAccessKey: "fast" },
          requestTimeoutMs: 10_000
        })
    )
  ),
  { dotSegmentKeys: true, readsInto: true }
)
