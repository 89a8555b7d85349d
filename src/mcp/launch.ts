// How a harness launches this installation's stdio tool server (`relay-broker mcp`): one process per
// agent, so it is kept small. `--max-semi-space-size=1` caps V8's young generation at 1 MB per
// semi-space (the default grows to 16 MB): the server allocates little between tool calls, and it
// saves ~1.2 MB of peak RSS (npm run bench: 50.3 → 49.1 MB at `initialize`). `--lite-mode` would save
// more, but it turns WebAssembly off, and Node's fetch (undici's llhttp) needs it.
export const stdioNodeFlags: ReadonlyArray<string> = ["--max-semi-space-size=1"]
