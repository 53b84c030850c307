-- mcpgw embedded store, version 5: pinned tool definitions (guard), written by the control
-- plane (first sight, changes) and the admin API (approvals).
CREATE TABLE tool_pins (
    upstream           TEXT NOT NULL,
    tool               TEXT NOT NULL,     -- the upstream's own tool name
    hash               TEXT NOT NULL,     -- hex SHA-256 of the approved definition
    definition         TEXT NOT NULL,     -- the approved definition, JSON
    approved_ms        INTEGER NOT NULL,
    approved_by        TEXT NOT NULL,     -- 'first-seen' or who approved it
    pending_hash       TEXT,              -- a different definition served since, if any
    pending_definition TEXT,
    pending_ms         INTEGER,
    PRIMARY KEY (upstream, tool)
);
