UPDATE simulation_results SET result = document::jsonb, document = NULL WHERE result IS NULL;
ALTER TABLE simulation_results
    DROP CONSTRAINT simulation_results_one_document,
    DROP COLUMN document,
    ALTER COLUMN result SET NOT NULL;
