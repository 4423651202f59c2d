ALTER TABLE accounts DROP COLUMN plan;
DROP INDEX orders_account;
