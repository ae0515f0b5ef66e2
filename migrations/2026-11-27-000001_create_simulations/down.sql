DROP FUNCTION ensure_audit_log_partitions(integer);
DROP FUNCTION ensure_audit_log_partition(date);
DROP TABLE audit_logs;
DROP TABLE simulation_results;
DROP TABLE simulations;
