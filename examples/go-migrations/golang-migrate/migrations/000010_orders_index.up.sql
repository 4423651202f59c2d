CREATE INDEX orders_account ON orders (account_id);
ALTER TABLE accounts ADD COLUMN plan text NOT NULL DEFAULT 'free';
