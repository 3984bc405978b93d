-- wasmswap control plane, schema 1 (PostgreSQL). Times are Unix milliseconds;
-- lists and maps are JSON text. Kept in step with ../sqlite/0001_init.sql.

-- One row per distinct binary. The object (compressed, content-addressed)
-- is written before its row, so a row never names a missing object.
CREATE TABLE blobs (
    checksum      TEXT PRIMARY KEY,
    size_bytes    BIGINT NOT NULL,
    stored_bytes  BIGINT NOT NULL,
    encoding      TEXT NOT NULL,
    -- 'live', or 'deleting' while the sweeper removes an unused object:
    -- a registration waits for that to finish instead of reusing it.
    state         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT NOT NULL
);

CREATE TABLE modules (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    version             TEXT NOT NULL,
    description         TEXT NOT NULL,
    checksum            TEXT NOT NULL REFERENCES blobs (checksum),
    size_bytes          BIGINT NOT NULL,
    kind                TEXT NOT NULL,
    wasi_version        TEXT NOT NULL,
    exported_functions  TEXT NOT NULL,
    imports             TEXT NOT NULL,
    required_interfaces TEXT NOT NULL,
    limits              TEXT NOT NULL,
    metadata            TEXT NOT NULL,
    wit                 TEXT,
    status              TEXT NOT NULL,
    created_by          TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    UNIQUE (name, version)
);
CREATE INDEX modules_checksum ON modules (checksum);
CREATE INDEX modules_status ON modules (status);

CREATE TABLE nodes (
    id                TEXT PRIMARY KEY,
    region            TEXT NOT NULL,
    zone              TEXT NOT NULL,
    agent_url         TEXT NOT NULL,
    data_url          TEXT NOT NULL,
    max_modules       BIGINT NOT NULL,
    max_instances     BIGINT NOT NULL,
    runtime_version   TEXT NOT NULL,
    wasi_support      TEXT NOT NULL,
    registered_at     BIGINT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL,
    loaded_modules    BIGINT NOT NULL,
    services          TEXT NOT NULL
);
CREATE INDEX nodes_region ON nodes (region);

-- Which module versions a node holds (from heartbeats and from loads the
-- control plane made): capacity and "is it deployed" read this.
CREATE TABLE node_modules (
    node_id    TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    module_id  TEXT NOT NULL,
    loaded_at  BIGINT NOT NULL,
    PRIMARY KEY (node_id, module_id)
);

CREATE TABLE interfaces (
    id             TEXT PRIMARY KEY,
    namespace      TEXT NOT NULL,
    name           TEXT NOT NULL,
    version        TEXT NOT NULL,
    interface_name TEXT NOT NULL,
    wit            TEXT NOT NULL,
    compatibility  TEXT NOT NULL,
    status         TEXT NOT NULL,
    review         TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    approved_by    TEXT,
    approved_at    BIGINT,
    UNIQUE (namespace, name, version)
);

CREATE TABLE audit (
    seq         BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    client      TEXT NOT NULL,
    details     TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);
