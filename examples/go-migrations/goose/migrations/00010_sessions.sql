-- +goose Up
CREATE TABLE sessions (
    token text PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE
);

-- +goose Down
DROP TABLE sessions;
