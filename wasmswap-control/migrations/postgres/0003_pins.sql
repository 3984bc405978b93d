-- Pins: a node held on one version of a service, or a region's own
-- default version. Rollouts leave pinned nodes and regions alone; the
-- engine routes them to the pinned version. Kept in step with
-- ../sqlite/0003_pins.sql.
CREATE TABLE pins (
    service     TEXT NOT NULL,
    scope       TEXT NOT NULL,   -- 'node' or 'region'
    target      TEXT NOT NULL,   -- node id or region
    module_id   TEXT NOT NULL,
    applied     BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (service, scope, target)
);
