DROP TABLE sweep_cells;
DELETE FROM simulations WHERE kind = 'unit';
ALTER TABLE simulations DROP CONSTRAINT simulations_unit_has_parent;
DROP INDEX simulations_parent_id;
ALTER TABLE simulations DROP COLUMN parent_id, DROP COLUMN kind;
