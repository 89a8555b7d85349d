// The shape of one agent-relay tool: its arguments as a small field table that gives both the JSON
// Schema advertised in `tools/list` and the check each call's arguments pass before a handler runs.
// (The tool server's stdio entry must start in well under 200 ms: this table costs nothing to load,
// where a schema library costs more than the whole budget.)

export type Field =
  | { readonly type: "string"; readonly description: string; readonly optional?: true; readonly enum?: ReadonlyArray<string> }
  | { readonly type: "number" | "boolean" | "string[]" | "object"; readonly description: string; readonly optional?: true }
  | { readonly type: "any"; readonly description: string }

export type Fields = { readonly [name: string]: Field }

export interface ToolAnnotations {
  readonly readOnlyHint: boolean
  readonly destructiveHint: boolean
  readonly idempotentHint: boolean
  readonly openWorldHint: boolean
}

export interface ToolSpec {
  readonly name: string
  readonly title: string
  readonly description: string
  readonly fields: Fields
  readonly annotations: ToolAnnotations
}

export type Args = { readonly [name: string]: unknown }

const jsonSchemaOfField = (field: Field): Record<string, unknown> => {
  switch (field.type) {
    case "string":
      return { type: "string", ...(field.enum === undefined ? {} : { enum: field.enum }), description: field.description }
    case "string[]":
      return { type: "array", items: { type: "string" }, description: field.description }
    case "object":
      return { type: "object", propertyNames: { type: "string" }, additionalProperties: {}, description: field.description }
    case "any":
      return { description: field.description }
    default:
      return { type: field.type, description: field.description }
  }
}

const isOptional = (field: Field): boolean => field.type === "any" || field.optional === true

/** The `inputSchema` of `tools/list` (what upstream's zod shapes produce). */
export const inputSchemaOf = (fields: Fields) => {
  const properties: Record<string, unknown> = {}
  for (const [name, field] of Object.entries(fields)) properties[name] = jsonSchemaOfField(field)
  const required = Object.entries(fields).filter(([, field]) => !isOptional(field)).map(([name]) => name)
  return {
    type: "object" as const,
    properties,
    ...(required.length === 0 ? {} : { required }),
    $schema: "http://json-schema.org/draft-07/schema#"
  }
}

const typeName = (value: unknown): string =>
  value === null ? "null" : Array.isArray(value) ? "array" : typeof value

const checkField = (name: string, field: Field, value: unknown): string | undefined => {
  switch (field.type) {
    case "any":
      return undefined
    case "string":
      if (typeof value !== "string") return `${name}: expected a string, received ${typeName(value)}`
      if (field.enum !== undefined && !field.enum.includes(value)) {
        return `${name}: expected one of ${field.enum.map((option) => JSON.stringify(option)).join(", ")}, received ${JSON.stringify(value)}`
      }
      return undefined
    case "number":
      return typeof value === "number" && Number.isFinite(value) ? undefined : `${name}: expected a number, received ${typeName(value)}`
    case "boolean":
      return typeof value === "boolean" ? undefined : `${name}: expected a boolean, received ${typeName(value)}`
    case "string[]":
      return Array.isArray(value) && value.every((item) => typeof item === "string")
        ? undefined
        : `${name}: expected an array of strings`
    case "object":
      return typeof value === "object" && value !== null && !Array.isArray(value)
        ? undefined
        : `${name}: expected an object, received ${typeName(value)}`
  }
}

/** The arguments, or every problem with them in one readable line. `null` counts as absent. */
export const validateArgs = (
  spec: ToolSpec,
  raw: unknown
): { readonly ok: true; readonly args: Args } | { readonly ok: false; readonly message: string } => {
  const input = raw === undefined || raw === null ? {} : raw
  if (typeof input !== "object" || Array.isArray(input)) {
    return { ok: false, message: `Invalid arguments for tool ${spec.name}: expected an object` }
  }
  const given = input as Record<string, unknown>
  const problems: Array<string> = []
  const args: Record<string, unknown> = {}
  for (const [name, field] of Object.entries(spec.fields)) {
    const value = given[name]
    if (value === undefined || value === null) {
      if (!isOptional(field)) problems.push(`${name}: required`)
      continue
    }
    const problem = checkField(name, field, value)
    if (problem === undefined) args[name] = value
    else problems.push(problem)
  }
  if (problems.length > 0) {
    return { ok: false, message: `Input validation error: Invalid arguments for tool ${spec.name}: ${problems.join("; ")}` }
  }
  return { ok: true, args }
}

export const readOnly: ToolAnnotations = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true }
export const writes: ToolAnnotations = { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true }
export const idempotentWrite: ToolAnnotations = { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true }

export const asField: Field = {
  type: "string",
  optional: true,
  description: "Registered agent identity to act as when multiple identities have been registered"
}
