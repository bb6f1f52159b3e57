import { runSchedule, simSystem } from "./Check.js"
import { realSystem } from "./RealSystem.js"
import type { Schedule, Step } from "./Schedule.js"
const at = (delayMs: number, step: Step) => ({ delayMs, step })
const schedule: Schedule = {
  steps: [at(1, { _tag: "OwnerStops" }), at(1, { _tag: "TakeOver" })],
  shutdownAtMs: 2999, interruptWorkloadAtShutdown: true, shutdownByScope: false, crashBeforeRestart: true, randomSeed: 916401365
}
const outcome = runSchedule(simSystem(realSystem), schedule)
console.log(outcome.violations)
console.log(outcome.record?.trace.join("\n"))
console.log(outcome.record?.shutdowns.map((s) => `${s.instance} ${s.startedAtMs}..${s.completedAtMs} ${s.result?.detail}`).join("\n"))
console.log(outcome.record?.audit?.checkpoints.map((c) => `${c.checkpoint} e${c.epoch} ${c.instanceId}`).join("\n"))
console.log(outcome.record?.instances)
console.log(outcome.logs.slice(-15).join("\n"))
