-- A second schema and a table in public: objects every test would share.
create schema audit;
create table audit.events (id bigserial primary key, what text not null);
create table public.settings (k text primary key, v text);
