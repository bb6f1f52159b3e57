/**
 * `npm run crash -- --rounds N --seed S [--keep-going] [--no-take-over] [--restore-every K] [--dir D] [--plan T,T,…]`:
 * a crash campaign (test/crash/Campaign.ts). Exit 1 when it found a failure; each failure prints its
 * seed, round and the command that replays it.
 */
import { type RoundType, roundTypeNames, runCampaign } from "./Campaign.js"

const usage =
  "usage: npm run crash -- [--rounds N] [--seed S] [--keep-going] [--no-take-over] [--restore-every K] [--dir D] [--keep] [--plan T,T,...] [--short]\n" +
  `  --plan: the round types in order (then drawn), of ${roundTypeNames.join(", ")}`
const valued = new Set(["--rounds", "--seed", "--restore-every", "--dir", "--plan"])
const flags = new Set(["--keep-going", "--no-take-over", "--keep", "--short"])
const argv = process.argv.slice(2)
const refuse = (message: string): never => {
  process.stderr.write(`crash: ${message}\n${usage}\n`)
  process.exit(2)
}
if (argv.includes("--help")) {
  process.stdout.write(`${usage}\n`)
  process.exit(0)
}
for (let index = 0; index < argv.length; index++) {
  const arg = argv[index] ?? ""
  if (valued.has(arg)) index++
  else if (!flags.has(arg)) refuse(`unknown argument ${JSON.stringify(arg)}`)
}
const option = (name: string): string | undefined => {
  const index = argv.indexOf(`--${name}`)
  if (index < 0) return undefined
  return argv[index + 1] ?? refuse(`--${name} needs a value`)
}
const count = (name: string, fallback: number): number => {
  const text = option(name)
  if (text === undefined) return fallback
  const value = Number(text)
  return Number.isSafeInteger(value) && value >= 0 && /^[0-9]+$/.test(text)
    ? value
    : refuse(`--${name} must be a whole number, got ${JSON.stringify(text)}`)
}
const seed = count("seed", Math.floor(Math.random() * 1_000_000))
const rounds = count("rounds", 40)
const restoreEvery = option("restore-every") === undefined ? undefined : String(count("restore-every", 0))
const baseDir = option("dir")
const planText = option("plan")
const plan = planText === undefined ?
  undefined :
  planText.split(",").map((name) =>
    (roundTypeNames as ReadonlyArray<string>).includes(name)
      ? (name as RoundType)
      : refuse(`unknown round type ${JSON.stringify(name)}`)
  )

const result = await runCampaign({
  rounds,
  seed,
  keepGoing: argv.includes("--keep-going"),
  takeOver: !argv.includes("--no-take-over"),
  keep: argv.includes("--keep"),
  short: argv.includes("--short"),
  ...(plan === undefined ? {} : { plan }),
  ...(restoreEvery === undefined ? {} : { restoreEvery: Number(restoreEvery) }),
  ...(baseDir === undefined ? {} : { baseDir })
})
process.stdout.write(`${JSON.stringify({ ...result, ok: result.findings.length === 0 }, null, 2)}\n`)
process.exit(result.findings.length === 0 ? 0 : 1)
