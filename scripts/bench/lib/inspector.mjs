// A full garbage collection inside a running Node process, from outside: SIGUSR1 opens its
// inspector (it prints `Debugger listening on ws://…` on stderr), then one
// `HeapProfiler.collectGarbage` over the inspector's WebSocket. Used for "RSS after GC".
import WebSocket from "ws"

const LISTENING = /Debugger listening on (ws:\/\/\S+)/

/** `proc`: a handle from procs.mjs `start` (its stderr lines are followed). */
export const collectGarbage = async (proc, { timeoutMs = 10000 } = {}) => {
  process.kill(proc.pid, "SIGUSR1")
  const { match } = await proc.waitForLine(LISTENING, timeoutMs)
  const socket = new WebSocket(match[1])
  try {
    await new Promise((resolve, reject) => {
      socket.once("open", resolve)
      socket.once("error", reject)
    })
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("HeapProfiler.collectGarbage: no answer")), timeoutMs)
      socket.on("message", (data) => {
        if (JSON.parse(String(data)).id === 1) {
          clearTimeout(timer)
          resolve()
        }
      })
      socket.send(JSON.stringify({ id: 1, method: "HeapProfiler.collectGarbage" }))
    })
  } finally {
    socket.close()
  }
}
