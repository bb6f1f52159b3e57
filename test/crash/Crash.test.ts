/**
 * Goal: nothing acknowledged is lost when the process is killed (SIGKILL) during start-up replay, a
 * checkpoint, WAL archiving or shutdown, when a restart uses another checkpoint interval (off, or
 * shorter than its replay), or when another process takes the bucket over; a second process on the
 * same data directory, or on a copy of it taken while it runs, is refused and changes nothing; a
 * byte flipped in the middle of the local WAL is repaired from the bucket's copy or refused with
 * WalCorrupt, never cut; and a restore from the bucket alone holds every acknowledged insert below
 * the bucket's archived WAL position.
 * Method: the short crash campaign of test/crash/Campaign.ts: a writer process using the library as
 * an application does, a ledger of acknowledgements fsynced outside the data directory, one round
 * of each kind on the same directories, a restore from a copy of the bucket at the end. A failure
 * names its seed, round and the command that replays it (`npm run crash -- --seed S --rounds N`);
 * CRASH_SEED overrides the seed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { runCampaign } from "./Campaign.js"

const seed = Number(process.env["CRASH_SEED"] ?? 20261206)

describe("crash test with an external ledger", () => {
  it.live(
    "keeps every acknowledged insert through kills, a take-over, refused second openers and a WAL byte flip",
    () =>
      Effect.gen(function*() {
        const lines: Array<string> = []
        const result = yield* Effect.promise(() =>
          runCampaign({
            seed,
            rounds: 9,
            short: true,
            restoreEvery: 100, // the take-over round ends with the restore from the bucket alone
            keepOnFailure: false,
            plan: [
              "clean",
              "second-process",
              "copy",
              "replay",
              "checkpoint",
              "writing",
              "shutdown",
              "wal-flip",
              "take-over"
            ],
            log: (line) => void lines.push(line)
          })
        )
        assert.strictEqual(
          result.findings.length,
          0,
          `${
            result.findings.map((finding) =>
              `seed ${result.seed} round ${finding.round} (${finding.roundType}): ${finding.kind}: ${finding.detail}`
            ).join("\n")
          }\n` +
            `replay: ${result.replayCommand}\n${lines.join("\n")}`
        )
        assert.isAbove(result.acknowledged, 0)
        assert.isAbove(result.restoresChecked, 0)
      }),
    { timeout: 360_000 }
  )
})
