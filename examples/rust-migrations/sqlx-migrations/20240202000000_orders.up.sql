CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    cents integer NOT NULL CHECK (cents > 0)
);
