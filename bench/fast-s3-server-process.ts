/**
 * The fast S3 endpoint (bench/fast-s3-server.ts) in a process of its own: prints its connection
 * info as one JSON line on stdout, as bench/s3-server-process.ts does, and stops when stdin closes.
 */
import * as FastS3Server from "./fast-s3-server.js"

const bucket = process.argv[2] ?? "bench-bucket"
const running = await FastS3Server.start([bucket])
const credentials = { accessKeyId: "fast", secretAccessKey: "fast" }
process.stdout.write(
  `${JSON.stringify({ endpoint: running.endpoint, port: running.port, bucket, region: "us-east-1", credentials })}\n`
)
const stop = () => void running.close().then(() => process.exit(0))
process.stdin.on("end", stop)
process.stdin.on("close", stop)
process.stdin.resume()
process.on("SIGTERM", stop)
