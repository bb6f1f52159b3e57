/**
 * Goal: the benchmarks still run (CI's smoke check). Runs the quick queue scenario (in a Node
 * process of its own, as every scenario runs), writing no files, and checks that it produced
 * figures for ours and its baseline and a ratio; then every scenario in quick mode (`npm run bench
 * -- --quick`, s3rver in its own process included), checking that each one ran and reported finite
 * figures. It asserts nothing about speed: figures on shared CI machines are noise.
 */
import { assert, describe, it } from "@effect/vitest"
import type { ScenarioResult } from "../../bench/common.js"
import * as FastS3Server from "../../bench/fast-s3-server.js"
import { boundCheck, measure, settingsOf } from "../../bench/growth.js"
import type { Run } from "../../bench/report.js"
import { main, mergeRuns, parseArguments } from "../../bench/run.js"

const scenario = (id: string, ours: number): ScenarioResult => ({
  id,
  title: id,
  method: "",
  ratioMeaning: "",
  oursLabel: "ours",
  baselineLabel: "baseline",
  rows: [{ case: "figure", ours, unit: "ms", goal: "reported" }],
  notes: [],
  raw: {},
  durationMs: 1
})

const recorded = (
  date: string,
  quick: boolean,
  scenarios: ReadonlyArray<ScenarioResult>,
  failed: ReadonlyArray<string> = []
): Run => ({
  failed,
  quick,
  date,
  commit: date,
  machine: { cpu: "cpu", cores: 2, memoryGiB: 1, node: "v20", platform: "linux", loadAverage: [0, 0, 0] },
  loadAverageAfter: [0, 0, 0],
  durationMs: 1,
  scenarios
})

describe("bench", () => {
  it("parses its arguments and refuses unknown scenarios", () => {
    const args = parseArguments(["--quick", "--only", "queue,lease", "--no-write"])
    assert.isTrue(args.quick)
    assert.isFalse(args.write)
    assert.deepStrictEqual(args.only, ["queue", "lease"])
    assert.throws(() => parseArguments(["--only", "nope"]))
    assert.throws(() => parseArguments(["--fast"]))
    // A scenario's own process runs exactly one scenario.
    assert.strictEqual(
      parseArguments(["--only", "queue", "--scenario-result", "/tmp/r.json"]).scenarioResult,
      "/tmp/r.json"
    )
    assert.throws(() => parseArguments(["--scenario-result", "/tmp/r.json"]))
    assert.throws(() => parseArguments(["--only", "queue,lease", "--scenario-result", "/tmp/r.json"]))
    // An endpoint: the store scenarios only, with a bucket and an http(s) URL.
    const endpoint = parseArguments([
      "--only",
      "throughput",
      "--endpoint",
      "http://127.0.0.1:9000",
      "--bucket",
      "b",
      "--path-style",
      "--region",
      "eu-west-1"
    ]).endpoint
    assert.deepStrictEqual(endpoint, {
      url: "http://127.0.0.1:9000",
      bucket: "b",
      region: "eu-west-1",
      pathStyle: true
    })
    assert.throws(() => parseArguments(["--only", "throughput", "--endpoint", "http://127.0.0.1:9000"]), /--bucket/)
    assert.throws(() => parseArguments(["--endpoint", "http://127.0.0.1:9000", "--bucket", "b"]), /--only throughput/)
    assert.throws(
      () => parseArguments(["--only", "queue", "--endpoint", "http://127.0.0.1:9000", "--bucket", "b"]),
      /--only throughput/
    )
    assert.throws(
      () => parseArguments(["--only", "throughput", "--endpoint", "127.0.0.1:9000", "--bucket", "b"]),
      /http/
    )
    assert.throws(() => parseArguments(["--bucket", "b"]), /--endpoint/)
  })

  it(
    "runs the throughput scenario against a given endpoint, under a prefix of its own, and leaves nothing in the bucket",
    async () => {
      const server = await FastS3Server.start(["given"])
      const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY }
      process.env.AWS_ACCESS_KEY_ID = "fast"
      process.env.AWS_SECRET_ACCESS_KEY = "fast"
      try {
        const run = await main([
          "--quick",
          "--only",
          "throughput",
          "--no-write",
          "--endpoint",
          server.endpoint,
          "--bucket",
          "given",
          "--path-style"
        ])
        assert.deepStrictEqual(run.failed, [])
        const cases = run.scenarios[0]?.rows.map((row) => row.case) ?? []
        assert.isAbove(cases.length, 0)
        for (const name of cases) assert.isTrue(name.startsWith(`${server.endpoint}: `), name)
        assert.strictEqual(server.objectCount(), 0)
      } finally {
        process.env.AWS_ACCESS_KEY_ID = saved.id
        process.env.AWS_SECRET_ACCESS_KEY = saved.secret
        if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID
        if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY
        await server.close()
      }
    },
    120_000
  )

  it("a run of some scenarios replaces their sections and keeps the others of a recorded run of the same mode", () => {
    const earlier = recorded("earlier", false, [scenario("queue", 1), scenario("memory", 2), scenario("lease", 3)], [
      "lease"
    ])
    const latest = recorded("latest", false, [scenario("lease", 30), scenario("queue", 10)])
    const merged = mergeRuns(earlier, latest)
    assert.deepStrictEqual(merged.scenarios.map((each) => [each.id, each.rows[0]?.ours, each.ranAt?.commit]), [
      ["queue", 10, undefined],
      ["memory", 2, "earlier"],
      ["lease", 30, undefined]
    ])
    // The rerun scenario no longer counts as failed.
    assert.deepStrictEqual(merged.failed, [])
    assert.strictEqual(merged.date, "latest")
    // A scenario kept twice keeps the run it came from.
    assert.deepStrictEqual(
      mergeRuns(merged, recorded("third", false, [scenario("queue", 100)])).scenarios.map((each) => each.ranAt?.commit),
      [undefined, "earlier", "latest"]
    )
    // Another mode, or nothing recorded: the latest run alone.
    assert.strictEqual(mergeRuns(recorded("quick", true, [scenario("memory", 5)]), latest), latest)
    assert.strictEqual(mergeRuns(undefined, latest), latest)
  })

  it("runs the quick queue scenario and reports figures", async () => {
    const run = await main(["--quick", "--only", "queue", "--no-write"])
    assert.isTrue(run.quick)
    assert.deepStrictEqual(run.failed, [])
    assert.deepStrictEqual(run.scenarios.map((scenario) => scenario.id), ["queue"])
    const rows = run.scenarios[0]?.rows ?? []
    assert.isAbove(rows.length, 0)
    for (const row of rows) {
      assert.isTrue(Number.isFinite(row.ours) && row.ours > 0, `${row.case}: ours ${row.ours}`)
      assert.isTrue(
        row.baseline !== undefined && Number.isFinite(row.baseline) && row.baseline > 0,
        `${row.case}: baseline ${row.baseline}`
      )
      assert.isTrue(
        row.ratio !== undefined && Number.isFinite(row.ratio) && row.ratio > 0,
        `${row.case}: ratio ${row.ratio}`
      )
    }
  }, 20_000)

  it(
    "growth: under retention with the collector running, the bucket stays within its bound and below what was written",
    async () => {
      // A shorter run than the scenario's quick one, with a 2 s window and a pass every second.
      const run = await measure("filesystem", {
        ...settingsOf(true, 8_000),
        sampleEveryMs: 250,
        retainForMs: 2_000,
        gcIntervalMs: 1_000,
        gcMinAgeMs: 1_000
      })
      const check = boundCheck(run)
      assert.isAbove(run.gc.passes, 1)
      assert.strictEqual(run.gc.failures, 0)
      assert.isAbove(check.checked.length, 0)
      assert.isAtMost(check.worstRatio, 1, JSON.stringify(check.worst))
      const last = run.samples[run.samples.length - 1]
      const written = run.requests.total.bytesPut - run.requests.byKind.lock.bytesPut
      assert.isBelow((last?.bucketBytes ?? Number.POSITIVE_INFINITY) / written, 1)
      // Every checkpoint uploaded parts; no request of the run was a HEAD.
      assert.isAbove(run.requests.byKind.part.put, run.checkpoints)
      assert.strictEqual(run.requests.total.head, 0)
    },
    60_000
  )

  it("runs every scenario in quick mode and each reports finite figures", async () => {
    const run = await main(["--quick", "--no-write"])
    assert.deepStrictEqual(run.failed, [])
    assert.deepStrictEqual(run.scenarios.map((scenario) => scenario.id), [
      "throughput",
      "queue",
      "shutdown",
      "memory",
      "lease",
      "growth",
      "restore"
    ])
    for (const scenario of run.scenarios) {
      assert.isAbove(scenario.rows.length, 0, scenario.id)
      for (const row of scenario.rows) {
        assert.isTrue(Number.isFinite(row.ours) && row.ours >= 0, `${scenario.id} / ${row.case}: ours ${row.ours}`)
      }
    }
    const throughput = run.scenarios.find((scenario) => scenario.id === "throughput")
    // Three stores (s3rver, the fast endpoint, the file store), each: ours and its pipeline alone
    // against the limit, the same-work pool, the CPU against the same-work pool, what a user
    // writes, the CPU against the bare pool, and (on Linux, where a thread's CPU time can be read)
    // the JavaScript thread's CPU row.
    assert.strictEqual(throughput?.rows.length, process.platform === "linux" ? 21 : 18)
    // Ours' fixed tail (last part stored → report) was recorded for every run against both stores
    // (a run in which no part was recorded as stored reports NaN).
    const raw = throughput?.raw as {
      readonly partCount: number
      readonly oursTailMs: Record<string, ReadonlyArray<number>>
    } | undefined
    for (const store of ["s3rver", "fast endpoint", "filesystem"]) {
      const tails = raw?.oursTailMs[store] ?? []
      assert.isAbove(tails.length, 0, store)
      for (const tailMs of tails) assert.isTrue(Number.isFinite(tailMs) && tailMs >= 0, `${store}: tail ${tailMs} ms`)
    }
  }, 240_000)
})
