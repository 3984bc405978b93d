-- Deployments: each is a durable state machine advanced by the rollout
-- engine (see src/rollout). Kept in step with ../postgres/0002_deployments.sql.

CREATE TABLE deployments (
    id            TEXT PRIMARY KEY,
    service       TEXT NOT NULL,
    module_id     TEXT NOT NULL,
    stable_id     TEXT,
    environment   TEXT NOT NULL,
    strategy      TEXT NOT NULL,
    -- The request as accepted (strategy config, targets, checks, analysis).
    spec          TEXT NOT NULL,
    status        TEXT NOT NULL,
    -- The engine's state: plan, phase, per-node state, gate decisions.
    state         TEXT NOT NULL,
    -- Optimistic concurrency: every write checks and bumps it.
    revision      INTEGER NOT NULL,
    -- Blue-Green: when the old version is to be unloaded (engine work).
    retire_at     INTEGER,
    -- When it reached completed / rolled back / failed: the live version
    -- of a service is that of its most recently finished deployment.
    finished_at   INTEGER,
    created_by    TEXT NOT NULL,
    approved_by   TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX deployments_status ON deployments (status);
CREATE INDEX deployments_service ON deployments (service);
-- At most one deployment per service underway at a time.
CREATE UNIQUE INDEX deployments_one_active ON deployments (service)
    WHERE status IN ('pending', 'awaiting_approval', 'in_progress', 'paused');

CREATE TABLE deployment_events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id  TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    at             INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    message        TEXT NOT NULL,
    details        TEXT NOT NULL
);
CREATE INDEX deployment_events_deployment ON deployment_events (deployment_id, seq);
