import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { randomBytes } from "node:crypto"
import { realpathSync } from "node:fs"
import { createRequire } from "node:module"
import { homedir, hostname } from "node:os"
import { isAbsolute, join, resolve } from "node:path"
import { InvalidConfig } from "./errors.js"

export interface BrokerConfigShape {
  /** The engine's base URL (`RELAY_BASE_URL` / `RELAYCAST_BASE_URL`), e.g. `http://127.0.0.1:4000`. */
  readonly baseUrl: string
  /** The workspace key (`RELAY_WORKSPACE_KEY` / `AGENT_RELAY_WORKSPACE_KEY` / `RELAY_API_KEY`). */
  readonly workspaceKey: Redacted.Redacted<string>
  /** `RELAY_NODE_TOKEN`: a pinned node token. */
  readonly nodeToken: Redacted.Redacted<string> | undefined
  /** The node's name (`--name`; default the hostname). */
  readonly nodeName: string
  /** `--state-dir`; default `<cwd>/.agentworkforce/relay`. */
  readonly stateDir: string
  /** `$XDG_DATA_HOME` or `~/.local/share`, then `agent-relay/`. Holds `machine-id` and `node-tokens/`. */
  readonly dataDir: string
  /** The canonical working directory, part of the auto node id. */
  readonly cwd: string
  /** The local control API's key (`RELAY_BROKER_API_KEY`, else a generated `br_<32 hex>`). */
  readonly brokerApiKey: Redacted.Redacted<string>
  readonly apiBind: string
  /** 0 = any free port. */
  readonly apiPort: number
  /** Node-control timings; tests shorten them. */
  readonly heartbeatInterval: number
  readonly requestTimeout: number
  /** This package's version, sent as `relay-broker/<version>`. */
  readonly version: string
}

export class BrokerConfig extends Context.Tag("relay-broker/BrokerConfig")<BrokerConfig, BrokerConfigShape>() {}

/** The CLI flags of `relay-broker up` that feed the configuration. Flags win over the environment. */
export interface BrokerFlags {
  readonly stateDir?: string | undefined
  readonly name?: string | undefined
  readonly apiPort?: number | undefined
  readonly apiBind?: string | undefined
  /** `--workspace-key`: wins over the workspace-key variables. */
  readonly workspaceKey?: string | undefined
  /** `--base-url`: wins over the base-URL variables. */
  readonly baseUrl?: string | undefined
  /** The working directory (default `process.cwd()`); canonicalised. */
  readonly cwd?: string | undefined
}

/**
 * Everything but the engine connection. Without a base URL the daemon starts the embedded engine
 * and creates a workspace key itself, then completes the settings with `complete`.
 */
export interface BrokerSettings extends Omit<BrokerConfigShape, "baseUrl" | "workspaceKey"> {
  readonly baseUrl: Option.Option<string>
  readonly workspaceKey: Option.Option<Redacted.Redacted<string>>
}

export const defaultHeartbeatInterval = 12_000
export const defaultRequestTimeout = 30_000

// Defined by the bundler (scripts/build.mjs): a bundle does not sit two folders below package.json.
declare const __RELAY_BROKER_VERSION__: string | undefined

/** This package's version (`package.json`), the same from `src/broker/`, `dist/broker/` and a bundle. */
export const packageVersion: string = typeof __RELAY_BROKER_VERSION__ === "string"
  ? __RELAY_BROKER_VERSION__
  : (createRequire(import.meta.url)("../../package.json") as { version: string }).version

const baseUrlVariables = ["RELAYCAST_BASE_URL", "RELAY_BASE_URL"] as const
// The explicit workspace-key variables must hold an `rk_` key; RELAY_API_KEY is the soft fallback.
const explicitKeyVariables = ["RELAY_WORKSPACE_KEY", "AGENT_RELAY_WORKSPACE_KEY"] as const
const keyVariables = [...explicitKeyVariables, "RELAY_API_KEY"] as const

const invalid = (variable: string, detail: string) => new InvalidConfig({ variable, detail })

/** A trimmed, non-empty string variable, or None. A provider failure names the variable. */
const optionalString = (variable: string): Effect.Effect<Option.Option<string>, InvalidConfig> =>
  Config.option(Config.string(variable)).pipe(
    Effect.map(Option.flatMap((value) => Option.some(value.trim()).pipe(Option.filter((trimmed) => trimmed.length > 0)))),
    Effect.mapError((error) => invalid(variable, String(error)))
  )

/** The first of `variables` that is set, with the variable's name. */
const firstSet = (variables: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    for (const variable of variables) {
      const value = yield* optionalString(variable)
      if (Option.isSome(value)) return Option.some({ variable, value: value.value })
    }
    return Option.none<{ variable: string; value: string }>()
  })

/** `http(s)://host[:port][/path]`, trimmed of trailing slashes. */
export const normalizeBaseUrl = (variable: string, raw: string): Effect.Effect<string, InvalidConfig> => {
  let url: URL
  try {
    url = new URL(raw.trim())
  } catch {
    return Effect.fail(invalid(variable, `not a URL: ${JSON.stringify(raw)}`))
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return Effect.fail(invalid(variable, `expected an http:// or https:// URL, got ${JSON.stringify(raw)}`))
  }
  if (url.search !== "" || url.hash !== "") {
    return Effect.fail(invalid(variable, `the base URL must not carry a query or fragment: ${JSON.stringify(raw)}`))
  }
  return Effect.succeed(url.toString().replace(/\/+$/, ""))
}

const positiveMillis = (variable: string, fallback: number) =>
  Effect.gen(function*() {
    const raw = yield* optionalString(variable)
    if (Option.isNone(raw)) return fallback
    const value = Number(raw.value)
    if (!Number.isInteger(value) || value <= 0) {
      return yield* invalid(variable, `expected a positive whole number of milliseconds, got ${JSON.stringify(raw.value)}`)
    }
    return value
  })

const canonicalCwd = (cwd: string): string => {
  try {
    return realpathSync(cwd)
  } catch {
    return resolve(cwd)
  }
}

const readBaseUrl = (flags: BrokerFlags) =>
  Effect.gen(function*() {
    if (flags.baseUrl !== undefined && flags.baseUrl.trim() !== "") {
      return Option.some(yield* normalizeBaseUrl("--base-url", flags.baseUrl))
    }
    const found = yield* firstSet(baseUrlVariables)
    if (Option.isNone(found)) return Option.none<string>()
    return Option.some(yield* normalizeBaseUrl(found.value.variable, found.value.value))
  })

const readWorkspaceKey = (flags: BrokerFlags) =>
  Effect.gen(function*() {
    const fromFlag = flags.workspaceKey?.trim()
    const found = fromFlag !== undefined && fromFlag !== ""
      ? Option.some({ variable: "--workspace-key", value: fromFlag })
      : yield* firstSet(keyVariables)
    if (Option.isNone(found)) return Option.none<Redacted.Redacted<string>>()
    const { value, variable } = found.value
    if (variable !== "RELAY_API_KEY" && !value.startsWith("rk_")) {
      return yield* invalid(variable, "a workspace key starts with `rk_`")
    }
    if (/\s/.test(value)) return yield* invalid(variable, "a workspace key contains no whitespace")
    return Option.some(Redacted.make(value))
  })

const readDataDir = Effect.gen(function*() {
  const explicit = yield* optionalString("AGENT_RELAY_DATA_DIR")
  if (Option.isSome(explicit)) return resolve(explicit.value)
  // XDG: a relative XDG_DATA_HOME is invalid and ignored.
  const xdg = (yield* optionalString("XDG_DATA_HOME")).pipe(Option.filter(isAbsolute))
  const home = Option.getOrElse(yield* optionalString("HOME"), () => homedir())
  return join(Option.getOrElse(xdg, () => join(home, ".local", "share")), "agent-relay")
})

const readApiPort = (flags: BrokerFlags) =>
  Effect.gen(function*() {
    const port = flags.apiPort ?? 0
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      return yield* invalid("--api-port", `expected a port number 0-65535 (0 = any free port), got ${port}`)
    }
    return port
  })

/**
 * Reads the settings from the environment (through the current `ConfigProvider`) and the flags.
 * The engine connection is optional here; see `config` for the variant that requires it.
 */
export const settings = (flags: BrokerFlags = {}): Effect.Effect<BrokerSettings, InvalidConfig> =>
  Effect.gen(function*() {
    const cwd = canonicalCwd(flags.cwd ?? process.cwd())
    const nodeToken = yield* optionalString("RELAY_NODE_TOKEN")
    const brokerApiKey = yield* optionalString("RELAY_BROKER_API_KEY")
    const name = [flags.name, hostname()].map((candidate) => candidate?.trim() ?? "").find((candidate) => candidate !== "")
    return {
      baseUrl: yield* readBaseUrl(flags),
      workspaceKey: yield* readWorkspaceKey(flags),
      nodeToken: Option.getOrUndefined(Option.map(nodeToken, Redacted.make)),
      nodeName: name ?? "relay-node",
      stateDir: flags.stateDir !== undefined && flags.stateDir.trim() !== ""
        ? resolve(cwd, flags.stateDir)
        : join(cwd, ".agentworkforce", "relay"),
      dataDir: yield* readDataDir,
      cwd,
      brokerApiKey: Redacted.make(Option.getOrElse(brokerApiKey, () => `br_${randomBytes(16).toString("hex")}`)),
      apiBind: flags.apiBind?.trim() || "127.0.0.1",
      apiPort: yield* readApiPort(flags),
      heartbeatInterval: yield* positiveMillis("RELAY_BROKER_HEARTBEAT_MS", defaultHeartbeatInterval),
      requestTimeout: yield* positiveMillis("RELAY_BROKER_REQUEST_TIMEOUT_MS", defaultRequestTimeout),
      version: packageVersion
    } satisfies BrokerSettings
  })

/** Completes settings with the engine connection (e.g. the embedded engine's URL and a fresh workspace key). */
export const complete = (
  base: BrokerSettings,
  engine: { readonly baseUrl: string; readonly workspaceKey: Redacted.Redacted<string> }
): BrokerConfigShape => ({ ...base, baseUrl: engine.baseUrl.replace(/\/+$/, ""), workspaceKey: engine.workspaceKey })

/** The full configuration; fails with one line naming the variable when the engine URL or key is missing. */
export const config = (flags: BrokerFlags = {}): Effect.Effect<BrokerConfigShape, InvalidConfig> =>
  Effect.gen(function*() {
    const read = yield* settings(flags)
    if (Option.isNone(read.baseUrl)) {
      return yield* invalid("RELAY_BASE_URL", "not set (the engine's URL; RELAYCAST_BASE_URL is also read)")
    }
    if (Option.isNone(read.workspaceKey)) {
      return yield* invalid(
        "RELAY_WORKSPACE_KEY",
        "not set (the workspace key; AGENT_RELAY_WORKSPACE_KEY and RELAY_API_KEY are also read)"
      )
    }
    return complete(read, { baseUrl: read.baseUrl.value, workspaceKey: read.workspaceKey.value })
  })

/** A fixed configuration, for compositions that build it themselves (embedded engine, tests). */
export const layer = (options: BrokerConfigShape): Layer.Layer<BrokerConfig> => Layer.succeed(BrokerConfig, options)

/** The configuration from the environment and the given flags. */
export const layerFromFlags = (flags: BrokerFlags): Layer.Layer<BrokerConfig, InvalidConfig> =>
  Layer.effect(BrokerConfig, config(flags))

/** The configuration from the environment alone. */
export const layerConfig: Layer.Layer<BrokerConfig, InvalidConfig> = layerFromFlags({})
