-- The plan explorer (issue 14). A sweep is one job for its owner (`kind = 'sweep'`), whose work
-- is split into units: rows of their own (`kind = 'unit'`, `parent_id` the sweep) that the queue,
-- the claim fencing, the retries and the reconciler treat exactly as any job, so a unit is
-- stored once under every fault that a plain job survives. A unit's cells are written to
-- `sweep_cells` in the transaction that completes it. Units are never shown to tenants.
ALTER TABLE simulations
    ADD COLUMN kind text NOT NULL DEFAULT 'plan' CHECK (kind IN ('plan', 'sweep', 'unit')),
    ADD COLUMN parent_id uuid REFERENCES simulations (id) ON DELETE CASCADE,
    ADD CONSTRAINT simulations_unit_has_parent CHECK ((kind = 'unit') = (parent_id IS NOT NULL));
CREATE INDEX simulations_parent_id ON simulations (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE sweep_cells (
    sweep_id uuid NOT NULL REFERENCES simulations (id) ON DELETE CASCADE,
    cell_index integer NOT NULL CHECK (cell_index >= 0),
    unit_id uuid NOT NULL REFERENCES simulations (id) ON DELETE CASCADE,
    -- The plain request the cell is (seed included): a plain submit of it gives these figures.
    request jsonb NOT NULL,
    -- The figures the map shows (`portfolio_engine::sweep::CellSummary`).
    summary jsonb NOT NULL,
    -- The cell's whole result, as a plain job's.
    result jsonb NOT NULL,
    -- The worker that computed it, and when: which worker ran which unit.
    worker text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sweep_id, cell_index)
);
CREATE INDEX sweep_cells_unit_id ON sweep_cells (unit_id);
