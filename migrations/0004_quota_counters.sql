-- mcpgw embedded store, version 4: [[quota]] counters, saved by the control plane.
CREATE TABLE quota_counters (
    rule       TEXT NOT NULL,      -- the quota's key: <scope>/<window>/<match,...>
    subject    TEXT NOT NULL,      -- principal key (<method>:<name>) or team name
    window_id  INTEGER NOT NULL,   -- UTC days since 1970-01-01, or year * 12 + month - 1
    used       INTEGER NOT NULL,   -- calls counted in that window
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (rule, subject)
);
