import { defineConfig } from "vitest/config"

// One config for the whole suite. Integration tests start their own s3rver on 127.0.0.1
// (test/support/S3TestServer.ts); nothing here reaches the network.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // CI has 2 cores: two test files at a time keeps s3rver, the CLI tests and the simulation from
    // starving each other.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } }
  }
})
