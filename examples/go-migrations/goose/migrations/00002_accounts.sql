-- +goose Up
CREATE TABLE accounts (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    email text UNIQUE NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose StatementBegin
CREATE FUNCTION normalize_email() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.email := lower(NEW.email);
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER accounts_normalize_email BEFORE INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION normalize_email();

-- +goose Down
DROP TABLE accounts;
DROP FUNCTION normalize_email();
