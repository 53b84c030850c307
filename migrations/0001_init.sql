-- mcpgw embedded store, version 1: upstreams added and removed through the admin API.
CREATE TABLE upstreams (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,      -- one [[upstream]] table, TOML, as the config file writes it
    updated_ms INTEGER NOT NULL
);
CREATE TABLE removed (
    name       TEXT PRIMARY KEY,   -- a config-file upstream removed through the admin API
    updated_ms INTEGER NOT NULL
);
