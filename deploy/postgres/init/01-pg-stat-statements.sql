-- Run by the postgres image on a new data volume (docker-compose.yml mounts this directory at
-- /docker-entrypoint-initdb.d). pg_stat_statements is the guide's slow-query view, read by
-- postgres-exporter; the library is preloaded by the compose command. Kept out of the app's
-- migrations: it is the operator's choice, and a managed database (RDS) enables it in its
-- parameter group instead.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
