// The engine's SQLite schema, as ordered migrations; `PRAGMA user_version` records how many ran.
// Times are integer milliseconds (the Effect Clock); JSON columns are TEXT.
export const migrations: ReadonlyArray<ReadonlyArray<string>> = [
  [
    `CREATE TABLE workspaces (
      id TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE, plan TEXT NOT NULL DEFAULT 'free',
      system_prompt TEXT, metadata TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL)`,
    `CREATE TABLE agents (
      id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, status TEXT NOT NULL,
      token_hash TEXT UNIQUE, persona TEXT, metadata TEXT NOT NULL DEFAULT '{}', capabilities TEXT,
      location_type TEXT NOT NULL DEFAULT 'self_connected', location_node_id TEXT, origin_node_id TEXT,
      session_ref TEXT, resumable INTEGER NOT NULL DEFAULT 0, delivery_ack_seq INTEGER NOT NULL DEFAULT 0,
      last_seq INTEGER NOT NULL DEFAULT 0, last_seen INTEGER, created_at INTEGER NOT NULL,
      UNIQUE (workspace_id, name))`,
    `CREATE INDEX agents_location ON agents (location_node_id)`,
    `CREATE TABLE nodes (
      id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, name TEXT NOT NULL, token_hash TEXT UNIQUE,
      kind TEXT NOT NULL, role TEXT NOT NULL, capabilities TEXT NOT NULL DEFAULT '[]',
      max_agents INTEGER NOT NULL DEFAULT 0, active_agents INTEGER NOT NULL DEFAULT 0,
      reserved_agents INTEGER NOT NULL DEFAULT 0, tags TEXT NOT NULL DEFAULT '[]', version TEXT,
      status TEXT NOT NULL DEFAULT 'offline', handlers_live INTEGER NOT NULL DEFAULT 0, load REAL NOT NULL DEFAULT 0,
      last_heartbeat_at INTEGER, delivery TEXT, created_at INTEGER NOT NULL)`,
    `CREATE INDEX nodes_name ON nodes (workspace_id, name)`,
    `CREATE TABLE bindings (
      id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, node_id TEXT NOT NULL, status TEXT NOT NULL,
      priority INTEGER NOT NULL DEFAULT 0, session_ref TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
      UNIQUE (agent_id, node_id))`,
    `CREATE TABLE channels (
      id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, name TEXT NOT NULL, topic TEXT,
      metadata TEXT NOT NULL DEFAULT '{}', channel_type INTEGER NOT NULL DEFAULT 0, created_by TEXT,
      archived INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, UNIQUE (workspace_id, name))`,
    `CREATE TABLE members (
      channel_id TEXT NOT NULL, agent_id TEXT NOT NULL, role TEXT NOT NULL, last_read_id TEXT,
      joined_at INTEGER NOT NULL, PRIMARY KEY (channel_id, agent_id))`,
    `CREATE INDEX members_agent ON members (agent_id)`,
    `CREATE TABLE conversations (
      id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, channel_id TEXT NOT NULL, type TEXT NOT NULL,
      name TEXT, participants TEXT NOT NULL, created_by TEXT, created_at INTEGER NOT NULL)`,
    `CREATE TABLE messages (
      id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, channel_id TEXT NOT NULL, agent_id TEXT NOT NULL,
      thread_id TEXT, text TEXT NOT NULL, blocks TEXT, data TEXT, metadata TEXT NOT NULL DEFAULT '{}',
      mode TEXT NOT NULL, event_type TEXT NOT NULL, payload TEXT NOT NULL, created_at INTEGER NOT NULL)`,
    `CREATE INDEX messages_channel ON messages (channel_id, id)`,
    `CREATE INDEX messages_thread ON messages (thread_id)`,
    `CREATE TABLE deliveries (
      id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, message_id TEXT NOT NULL, agent_id TEXT NOT NULL,
      seq INTEGER NOT NULL, status TEXT NOT NULL, mode TEXT NOT NULL, reason TEXT NOT NULL,
      location_type TEXT, location_node_id TEXT, expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
      delivered_at INTEGER, acked_at INTEGER, error TEXT, UNIQUE (agent_id, seq))`,
    `CREATE INDEX deliveries_open ON deliveries (agent_id, status, seq)`,
    `CREATE INDEX deliveries_message ON deliveries (message_id)`,
    `CREATE INDEX deliveries_expiry ON deliveries (status, expires_at)`,
    `CREATE TABLE read_receipts (
      message_id TEXT NOT NULL, agent_id TEXT NOT NULL, read_at INTEGER NOT NULL, PRIMARY KEY (message_id, agent_id))`,
    `CREATE TABLE reactions (
      id TEXT PRIMARY KEY, message_id TEXT NOT NULL, agent_id TEXT NOT NULL, emoji TEXT NOT NULL,
      created_at INTEGER NOT NULL, UNIQUE (message_id, agent_id, emoji))`
  ],
  [
    `CREATE TABLE actions (
      id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT,
      handler_agent_id TEXT, handler_node_id TEXT, input_schema TEXT NOT NULL DEFAULT '{}',
      output_schema TEXT NOT NULL DEFAULT '{}', available_to TEXT, is_active INTEGER NOT NULL DEFAULT 1,
      created_at INTEGER NOT NULL, UNIQUE (workspace_id, name))`,
    `CREATE TABLE invocations (
      id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, action_name TEXT NOT NULL, frame_action TEXT NOT NULL,
      kind TEXT NOT NULL, caller_id TEXT NOT NULL, caller_name TEXT NOT NULL, caller_agent_id TEXT,
      input TEXT NOT NULL, status TEXT NOT NULL, handler_agent_id TEXT, handler_node_id TEXT, target_node_id TEXT,
      dispatched_node_id TEXT, queued_node_id TEXT, attempted_node_ids TEXT NOT NULL DEFAULT '[]',
      dispatch_attempts INTEGER NOT NULL DEFAULT 0, dispatched_at INTEGER, retry_after_at INTEGER,
      reserved_node_id TEXT, output TEXT, error TEXT, created_at INTEGER NOT NULL, completed_at INTEGER)`,
    `CREATE INDEX invocations_open ON invocations (status, dispatched_node_id)`,
    `CREATE INDEX invocations_queue ON invocations (queued_node_id, status)`
  ],
  [
    // relaycast 6 providers: one attachment per provider name per node; the node row aggregates them.
    `CREATE TABLE node_providers (
      node_id TEXT NOT NULL, name TEXT NOT NULL, instance_id TEXT NOT NULL, capabilities TEXT NOT NULL DEFAULT '[]',
      max_agents INTEGER NOT NULL DEFAULT 0, active_agents INTEGER NOT NULL DEFAULT 0, load REAL NOT NULL DEFAULT 0,
      handlers_live INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'offline', version TEXT, machine_id TEXT,
      last_heartbeat_at INTEGER, created_at INTEGER NOT NULL, PRIMARY KEY (node_id, name))`,
    `ALTER TABLE actions ADD COLUMN handler_provider TEXT`,
    `ALTER TABLE actions ADD COLUMN queue INTEGER NOT NULL DEFAULT 0`,
    `ALTER TABLE invocations ADD COLUMN dispatched_provider TEXT`,
    `ALTER TABLE members ADD COLUMN is_muted INTEGER NOT NULL DEFAULT 0`
  ],
  [
    // What a 12.4.1 broker reports about its agents (POST /v1/agents/:name/events), newest kept.
    `CREATE TABLE agent_events (
      id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL DEFAULT '{}',
      created_at INTEGER NOT NULL)`,
    `CREATE INDEX agent_events_by_agent ON agent_events (agent_id, created_at)`
  ]
]
