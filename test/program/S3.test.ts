/**
 * Goal: the CLI against a real S3 protocol server (s3rver with the S3 harness of
 * test/support/S3TestServer.ts): a clean run verifies and `inspect`/`verify` read the bucket with the
 * same S3 options; each fault still ends within the deadline with a report saying what happened;
 * an unreachable endpoint, a missing bucket and wrong credentials are refused with one line and
 * exit 2, before anything is written; so are a bucket name S3 refuses and a store that ignores
 * create-if-absent (unless --skip-conformance-check). Method: the CLI spawned with the server's
 * endpoint, the credentials passed through the standard AWS environment variables, one key prefix
 * per test (and per run: S3_TEST_ENDPOINT's bucket outlives it) so that concurrent runs do not share
 * a bucket lock. With S3_TEST_ENDPOINT (scripts/rgw.sh) every test runs against that server; the
 * store that ignores create-if-absent is always an s3rver without the harness's conditional puts.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { RunReport } from "../../src/cli/Report.js"
import type { InspectReport } from "../../src/workload/Inspect.js"
import type { CheckpointVerification } from "../../src/workload/Verify.js"
import * as S3TestServer from "../support/S3TestServer.js"
import { hasStackTrace, parseReport, quickManyRequests, quickRun, quickStalled, runCli } from "./Cli.js"

let server: S3TestServer.RunningS3TestServer | undefined

beforeAll(async () => {
  server = await S3TestServer.start({ bucket: "cli-bucket" })
}, 60_000)

afterAll(async () => {
  await server?.stop()
})

const info = () => {
  // beforeAll ran: every test sees a started server.
  if (server === undefined) throw new Error("the S3 test server did not start")
  return server.info
}

const s3Args = (
  prefix: string
) => [
  "--endpoint",
  info().endpoint,
  "--bucket",
  info().bucket,
  "--path-style",
  "--prefix",
  `${S3TestServer.runId}-${prefix}`
]

const env = (): Record<string, string> => ({
  AWS_ACCESS_KEY_ID: info().credentials.accessKeyId,
  AWS_SECRET_ACCESS_KEY: info().credentials.secretAccessKey,
  AWS_REGION: info().region
})

const bounded = (report: RunReport, label: string) => {
  assert.isTrue(report.shutdown.returned, label)
  assert.isTrue(
    report.shutdown.metDeadline,
    `${label}: ${report.shutdown.durationMs} of ${report.shutdown.deadlineMs} ms`
  )
  assert.strictEqual(report.shutdown.leasesHeld, 0, label)
  assert.strictEqual(report.shutdown.fibersAlive, 0, label)
  assert.isAbove(report.inserts.acknowledged, 0, label)
}

describe.concurrent(
  S3TestServer.external === undefined ? "CLI against s3rver" : `CLI against ${S3TestServer.external.endpoint}`,
  () => {
    it.live(
      "a clean run verifies; inspect and verify read the bucket through the same options",
      () =>
        Effect.gen(function*() {
          const result = yield* runCli(["run", ...quickRun, ...s3Args("clean"), "--json"], { env: env() })
          assert.strictEqual(result.code, 0, result.stderr)
          const report = parseReport(result)
          bounded(report, "clean")
          assert.include(
            ["completed", "none"],
            report.shutdown.finalCheckpoint,
            report.shutdown.finalCheckpointDetail ?? ""
          )
          assert.isTrue(report.shutdown.lockReleased)
          assert.isTrue(report.verify.ok)
          assert.strictEqual(report.verify.mode, "every-acknowledged")
          assert.include(report.settings.store, `s3://${info().bucket}`)
          const inspected = yield* runCli(["inspect", ...s3Args("clean"), "--json"], { env: env() })
          assert.strictEqual(inspected.code, 0, inspected.stderr)
          const rows = parseReport<InspectReport>(inspected).checkpoints
          assert.strictEqual(
            rows.filter((row) => row.complete).at(-1)?.checkpoint,
            report.checkpoints.last
          )
          const verified = yield* runCli(["verify", ...s3Args("clean"), "--json"], { env: env() })
          assert.strictEqual(verified.code, 0, verified.stderr)
          assert.isTrue(parseReport<CheckpointVerification>(verified).ok)
        }),
      240_000
    )

    const faults: ReadonlyArray<[string, (report: RunReport) => void]> = [
      ["stall-at-shutdown", (report) => assert.notStrictEqual(report.shutdown.finalCheckpoint, "completed")],
      ["stall-after=600ms", (report) => assert.isAbove(report.faults?.injected["stall"] ?? 0, 0)],
      ["error-rate=0.3", (report) => assert.isAbove(report.faults?.injected["error"] ?? 0, 0)],
      ["latency=20ms", (report) => assert.isAbove(report.faults?.injected["latency"] ?? 0, 0)],
      ["fail-task=WriteWalSegment", (report) => {
        assert.isAbove(report.faults?.injected["permanent"] ?? 0, 0)
        assert.strictEqual(report.wal.archivedThrough, 0)
      }]
    ]
    for (const [fault, check] of faults) {
      it.live(
        `--fault ${fault}: exit 0 within the deadline, verified up to the archived WAL`,
        () =>
          Effect.gen(function*() {
            const prefix = fault.replace(/[^a-zA-Z0-9]/g, "-")
            const stalls = fault.startsWith("stall") || fault.startsWith("fail-task")
            const result = yield* runCli([
              "run",
              ...(stalls ? quickStalled : fault.startsWith("error-rate") ? quickManyRequests : quickRun),
              ...s3Args(prefix),
              "--fault",
              fault,
              "--json"
            ], { env: env() })
            assert.isFalse(hasStackTrace(result.stderr), result.stderr)
            const report = parseReport(result)
            bounded(report, fault)
            check(report)
            assert.isTrue(report.verify.ok, JSON.stringify(report.verify))
            assert.strictEqual(result.code, 0, result.stderr)
          }),
        150_000
      )
    }

    const refusals: ReadonlyArray<[string, () => ReadonlyArray<string>, () => Record<string, string>, RegExp]> = [
      [
        "an unreachable endpoint",
        () => ["--endpoint", "http://127.0.0.1:1", "--bucket", "cli-bucket", "--path-style"],
        env,
        /unavailable|ECONNREFUSED|connect/i
      ],
      [
        "a missing bucket",
        () => ["--endpoint", info().endpoint, "--bucket", "no-such-bucket", "--path-style"],
        env,
        /NoSuchBucket|does not exist|bucket/i
      ],
      [
        "wrong credentials",
        () => s3Args("creds"),
        () => ({ ...env(), AWS_ACCESS_KEY_ID: "WRONGKEY" }),
        /InvalidAccessKeyId|403|credentials|access/i
      ],
      [
        "a bucket name S3 refuses",
        () => ["--endpoint", info().endpoint, "--bucket", "b1", "--path-style"],
        env,
        /^effect-s3-tier: --bucket "b1" is not a valid S3 bucket name: it has 2 characters; a bucket name has 3 to 63$/
      ]
    ]
    for (const [name, args, environment, pattern] of refusals) {
      it.live(`refuses ${name} with one line, for run and inspect`, () =>
        Effect.gen(function*() {
          for (const command of [["run", ...quickRun], ["inspect"]]) {
            const result = yield* runCli([...command, ...args()], { env: environment() })
            assert.strictEqual(result.code, 2, result.stderr)
            const lines = result.stderr.trim().split("\n").filter((line) => !line.startsWith("effect-s3-tier: run:"))
            assert.strictEqual(lines.length, 1, result.stderr)
            assert.match(lines[0] ?? "", pattern)
            assert.isFalse(hasStackTrace(result.stderr))
            assert.strictEqual(result.stdout, "")
          }
        }), 150_000)
    }

    it.live(
      "refuses a store that ignores create-if-absent with one line naming the problem; --skip-conformance-check runs on it",
      () =>
        Effect.gen(function*() {
          const ignoring = yield* Effect.acquireRelease(
            Effect.promise(() => S3TestServer.startS3rver({ bucket: "ignores-conditions", conditionalPuts: false })),
            (started) => Effect.promise(() => started.stop())
          )
          const args = ["--endpoint", ignoring.info.endpoint, "--bucket", "ignores-conditions", "--path-style"]
          const ignoringEnv = {
            AWS_ACCESS_KEY_ID: ignoring.info.credentials.accessKeyId,
            AWS_SECRET_ACCESS_KEY: ignoring.info.credentials.secretAccessKey,
            AWS_REGION: ignoring.info.region
          }
          const refused = yield* runCli(["run", ...quickRun, ...args], { env: ignoringEnv })
          assert.strictEqual(refused.code, 2, refused.stderr)
          const lines = refused.stderr.trim().split("\n").filter((line) => !line.startsWith("effect-s3-tier: run:"))
          assert.strictEqual(lines.length, 1, refused.stderr)
          assert.match(
            lines[0] ?? "",
            /does not honour create-if-absent \(dialect if-none-match\): both of two concurrent conditional PUTs/
          )
          assert.strictEqual(refused.stdout, "")
          const trusted = yield* runCli(["run", ...quickRun, ...args, "--skip-conformance-check", "--json"], {
            env: ignoringEnv
          })
          assert.strictEqual(trusted.code, 0, trusted.stderr)
          assert.isTrue(parseReport(trusted).verify.ok)
        }).pipe(Effect.scoped),
      150_000
    )
  }
)
