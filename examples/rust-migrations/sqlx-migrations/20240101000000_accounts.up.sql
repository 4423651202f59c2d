CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE accounts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text UNIQUE NOT NULL,
    password_hash text NOT NULL DEFAULT crypt('secret', gen_salt('bf', 4))
);
