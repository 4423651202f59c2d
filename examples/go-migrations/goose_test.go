package recipes

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/pgisolate/pgisolate/bindings-go"
	"github.com/pressly/goose/v3"
)

const gooseDir = "goose/migrations"

// gooseUp is what a project runs: goose's Provider on a database/sql pool opened with the URL.
func gooseUp(url, dir string) error {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, os.DirFS(dir))
	if err != nil {
		return err
	}
	_, err = p.Up(context.Background())
	return err
}

// The recipe: goose builds the template once per server, keyed by the migrations' contents.
func TestGooseBuildsTheTemplate(t *testing.T) {
	dir := abs(t, gooseDir)
	tpl, err := engine.TemplateFunc("goose", func(url string) error { return gooseUp(url, dir) }, dir)
	if err != nil {
		t.Fatal(err)
	}
	// goose's version table is in the template (so in every test's schema), at the last version.
	isolated(t, engine, tpl, 4, "insert into accounts (email) values ('Alice@Example.com')", func(db *sql.DB) error {
		var email string
		var version int
		if err := db.QueryRow("select email from accounts").Scan(&email); err != nil || email != "alice@example.com" {
			return fmt.Errorf("the goose StatementBegin/End trigger did not run: %q %v", email, err)
		}
		if err := db.QueryRow("select max(version_id) from goose_db_version").Scan(&version); err != nil || version != 10 {
			return fmt.Errorf("goose_db_version in the test schema: %d %v", version, err)
		}
		return nil
	})
	again, err := engine.TemplateFunc("goose", func(string) error { t.Error("unchanged migrations rebuilt"); return nil }, dir)
	if err != nil || again.Name() != tpl.Name() {
		t.Fatalf("reuse: %v %v", again, err)
	}
}

// Without running goose: the engine reads goose's layout itself (Up sections only, numeric order).
func TestGooseLayoutWithoutGoose(t *testing.T) {
	tpl, err := engine.Template(abs(t, gooseDir))
	if err != nil {
		t.Fatal(err)
	}
	isolated(t, engine, tpl, 2, "insert into accounts (email) values ('BOB@example.com')", func(db *sql.DB) error {
		var n int
		if err := db.QueryRow("select count(*) from accounts where email = 'bob@example.com'").Scan(&n); err != nil || n != 1 {
			return fmt.Errorf("accounts: %d %v", n, err)
		}
		if err := db.QueryRow("select count(*) from sessions").Scan(&n); err != nil {
			return fmt.Errorf("00010 ran before 00002 or not at all: %v", err)
		}
		return nil
	})
	_ = pgisolate.Version()
}

// A goose migration that reaches outside the schema it migrates (a second schema, a table in
// public) is refused when the build commits, naming each object; what it created is dropped.
func TestGooseMigrationsThatReachOutsideAreRefused(t *testing.T) {
	dir := t.TempDir()
	u := fmt.Sprintf("%d", os.Getpid())
	migration := fmt.Sprintf(`-- +goose Up
create table accounts (id bigserial primary key, email text not null);
create schema audit_%[1]s;
create table audit_%[1]s.events (id bigserial primary key, what text not null);
create table public.settings_%[1]s (k text primary key, v text);

-- +goose Down
drop schema audit_%[1]s cascade;
`, u)
	if err := os.WriteFile(dir+"/00001_audit.sql", []byte(migration), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := engine.TemplateFunc("goose-outside", func(url string) error { return gooseUp(url, dir) }, dir)
	if !errors.Is(err, pgisolate.ErrMigration) {
		t.Fatalf("want the build refused, got %v", err)
	}
	for _, want := range []string{
		"schema audit_" + u + ": created by the build; dropped",
		"table audit_" + u + ".events: created by the build; dropped",
		"table public.settings_" + u + ": created by the build; dropped",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from: %v", want, err)
		}
	}
	if n := count(t, engine.URL(), "select count(*) from pg_namespace where nspname = 'audit_"+u+"'"); n != 0 {
		t.Fatalf("schema audit_%s was left", u)
	}
	if n := count(t, engine.URL(), "select count(*) from pg_class where relname = 'settings_"+u+"'"); n != 0 {
		t.Fatalf("public.settings_%s was left", u)
	}
}
