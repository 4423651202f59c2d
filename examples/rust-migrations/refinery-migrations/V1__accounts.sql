CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    email text UNIQUE NOT NULL,
    attributes hstore NOT NULL DEFAULT ''
);
