ALTER TABLE simulation_results DROP COLUMN from_cache;
ALTER TABLE simulations DROP COLUMN cache_key;
