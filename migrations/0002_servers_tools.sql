-- mcpgw embedded store, version 2: virtual servers and per-tool enablement.
CREATE TABLE servers (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,      -- one [[server]] table, TOML
    updated_ms INTEGER NOT NULL
);
CREATE TABLE removed_servers (
    name       TEXT PRIMARY KEY,   -- a config-file virtual server removed through the admin API
    updated_ms INTEGER NOT NULL
);
CREATE TABLE disabled_tools (
    name       TEXT PRIMARY KEY,   -- gateway tool name (<upstream><sep><tool>)
    updated_ms INTEGER NOT NULL
);
