-- mcpgw embedded store, version 3: API keys issued through the admin API.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,   -- 8 hex digits, the part after mcpgw_ in the key
    name       TEXT NOT NULL,      -- the principal's name
    hash       TEXT NOT NULL,      -- sha256:<salt>:<digest>; the key itself is never stored
    roles      TEXT NOT NULL,      -- JSON array of role names
    team       TEXT,
    created_ms INTEGER NOT NULL
);
