-- Runs once, when the data directory is initialised (docker-entrypoint-initdb.d), as the
-- superuser in POSTGRES_DB. The migrations also create these (IF NOT EXISTS); creating them here
-- means the application role never needs the privilege.
CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public;
