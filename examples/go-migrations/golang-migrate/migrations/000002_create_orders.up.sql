CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    coupon citext
);
