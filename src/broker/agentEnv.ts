import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type { Binding } from "./agentBinding.js"
import type { SpawnSpec } from "./AgentRegistry.js"
import { InvalidAgentName } from "./errors.js"
import type { resolveHarness } from "./harness.js"

// An agent's name rule and the environment its process starts with: the daemon's own minus the
// broker's secrets and what the harness unsets, then the harness's and the spawn's variables, then
// the agent's own identity.

/** The broker's own credentials: never in an agent's environment. */
export const brokerSecretEnv: ReadonlyArray<string> = [
  "RELAY_NODE_TOKEN",
  "RELAY_WORKSPACE_KEY",
  "AGENT_RELAY_WORKSPACE_KEY",
  "RELAY_API_KEY",
  "RELAY_BROKER_API_KEY"
]

const namePattern = /^[A-Za-z0-9._-]{1,64}$/

export const validateName = (name: string): Effect.Effect<string, InvalidAgentName> => {
  if (name.length === 0) return Effect.fail(new InvalidAgentName({ agent: name, detail: "the name is empty" }))
  if (name.length > 64) {
    return Effect.fail(new InvalidAgentName({ agent: name, detail: `${name.length} characters, at most 64 allowed` }))
  }
  if (!namePattern.test(name)) {
    return Effect.fail(new InvalidAgentName({ agent: name, detail: "only letters, digits, '.', '_' and '-' are allowed" }))
  }
  return Effect.succeed(name)
}

/** The agent's environment. */
export const agentChildEnv = (
  settings: { readonly baseEnv: Readonly<Record<string, string | undefined>>; readonly baseUrl: string },
  spec: SpawnSpec,
  harness: ReturnType<typeof resolveHarness>,
  binding: Binding
): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(settings.baseEnv)) {
    if (value !== undefined) env[key] = value
  }
  for (const key of [...brokerSecretEnv, ...harness.unsetEnv]) delete env[key]
  Object.assign(env, harness.env, spec.env ?? {})
  Object.assign(env, {
    RELAY_AGENT_TOKEN: Redacted.value(binding.token),
    RELAY_AGENT_NAME: spec.name,
    RELAY_AGENT_TYPE: "agent",
    RELAY_BASE_URL: settings.baseUrl,
    RELAY_STRICT_AGENT_NAME: "1",
    RELAY_SKIP_BOOTSTRAP: "1"
  })
  return env
}
