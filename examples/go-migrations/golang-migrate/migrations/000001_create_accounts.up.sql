CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    email text UNIQUE NOT NULL
);
