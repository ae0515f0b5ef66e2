DROP FUNCTION drop_audit_log_partitions_before(date);
