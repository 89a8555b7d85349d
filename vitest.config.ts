import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Builds dist/ once when it is missing or stale: the end-to-end tests run dist/main.js.
    globalSetup: ["test/support/globalSetup.ts"],
    // Integration tests spawn real processes and sockets on a 2-core machine: keep the pool small.
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
