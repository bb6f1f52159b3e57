/**
 * `npm run crash -- --rounds N --seed S [--keep-going] [--no-take-over] [--restore-every K] [--dir D]`:
 * a crash campaign (test/crash/Campaign.ts). Exit 1 when it found a failure; each failure prints its
 * seed, round and the command that replays it.
 */
import { runCampaign } from "./Campaign.js"

const argv = process.argv.slice(2)
const option = (name: string): string | undefined => {
  const index = argv.indexOf(`--${name}`)
  return index >= 0 ? argv[index + 1] : undefined
}
const seed = Number(option("seed") ?? Math.floor(Math.random() * 1_000_000))
const rounds = Number(option("rounds") ?? 40)
const restoreEvery = option("restore-every")
const baseDir = option("dir")

const result = await runCampaign({
  rounds,
  seed,
  keepGoing: argv.includes("--keep-going"),
  takeOver: !argv.includes("--no-take-over"),
  keep: argv.includes("--keep"),
  ...(restoreEvery === undefined ? {} : { restoreEvery: Number(restoreEvery) }),
  ...(baseDir === undefined ? {} : { baseDir })
})
process.stdout.write(`${JSON.stringify({ ...result, ok: result.findings.length === 0 }, null, 2)}\n`)
process.exit(result.findings.length === 0 ? 0 : 1)
