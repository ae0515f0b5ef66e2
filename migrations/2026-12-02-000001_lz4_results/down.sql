ALTER TABLE simulation_results ALTER COLUMN result SET COMPRESSION default;
ALTER TABLE sweep_cells ALTER COLUMN result SET COMPRESSION default;
