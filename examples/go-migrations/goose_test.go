package recipes

import (
	"context"
	"database/sql"
	"fmt"
	"os"
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
