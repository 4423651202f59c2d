create table users (id bigserial primary key, email text unique not null);
create function audit.log_user() returns trigger language plpgsql as $$
begin insert into audit.events (what) values ('user ' || new.email); return new; end $$;
create trigger users_audit after insert on users for each row execute function audit.log_user();
