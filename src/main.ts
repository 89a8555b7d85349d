#!/usr/bin/env node
console.error("relay-broker: the daemon is not built yet (see the open issues).")
process.exit(1)
