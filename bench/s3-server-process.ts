/**
 * The benchmarks' S3 server in its own process: starts the test server (s3rver behind the harness
 * of test/support/S3TestServer.ts), prints its connection info as one JSON line on stdout, and stops
 * when stdin closes (the parent exited or ended it) or on SIGTERM.
 *
 * Why a separate process: a real S3 endpoint never shares the client's event loop. In-process,
 * every cycle the client spends (hashing, the queue, the SDK) is taken from s3rver's single thread,
 * which makes a throughput ratio measure the server's starvation rather than the client's cost.
 */
import * as S3TestServer from "../test/support/S3TestServer.js"

const running = await S3TestServer.start({ bucket: process.argv[2] ?? "bench-bucket" })
const { endpoint, port, bucket, region, credentials } = running.info
process.stdout.write(`${JSON.stringify({ endpoint, port, bucket, region, credentials })}\n`)
let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  await running.stop()
  process.exit(0)
}
process.stdin.on("end", () => void stop())
process.stdin.on("close", () => void stop())
process.stdin.resume()
process.on("SIGTERM", () => void stop())
