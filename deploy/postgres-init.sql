-- Run once by the postgres image on an empty data volume (deploy/compose.yaml): the instance's
-- database (POSTGRES_DB=dagster) exists already; this adds the invoice ledger's, kept apart
-- because both keep their schema version in a table named alembic_version.
CREATE DATABASE billing;
