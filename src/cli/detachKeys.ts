// The detach sequence of `relay-broker attach`: Ctrl-] then `d`. Everything else goes to the agent;
// Ctrl-] twice sends one Ctrl-], and Ctrl-] before any other key sends both.

export const escapeKey = "\x1d"
export const detachKey = "d"

export interface KeyFilter {
  /** The text to send to the agent for this input, and whether the person asked to detach. */
  readonly feed: (input: string) => { readonly send: string; readonly detach: boolean }
}

export const makeKeyFilter = (): KeyFilter => {
  let escaped = false
  return {
    feed: (input) => {
      let send = ""
      for (const char of input) {
        if (escaped) {
          escaped = false
          if (char === detachKey || char === detachKey.toUpperCase()) return { send, detach: true }
          send += char === escapeKey ? escapeKey : escapeKey + char
        } else if (char === escapeKey) {
          escaped = true
        } else {
          send += char
        }
      }
      return { send, detach: false }
    }
  }
}
