// Recipes: pgisolate with the Go migration tools teams already use (goose, golang-migrate),
// driven for real against the embedded server, and what happens on a database that already
// holds the migrated app (the most natural first setup).
package recipes

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/pgisolate/pgisolate/bindings-go"
)

var engine *pgisolate.Engine

func TestMain(m *testing.M) {
	var err error
	engine, err = pgisolate.NewEngine(pgisolate.Config{}) // embedded server unless PGISOLATE_DATABASE_URL is set
	if err != nil {
		fmt.Fprintln(os.Stderr, "engine:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = engine.Close()
	os.Exit(code)
}

func abs(t *testing.T, dir string) string {
	t.Helper()
	p, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// isolated acquires n schemas at once from tpl and runs the same statements in each: they
// must not see each other (a unique email inserted by all of them), and each session must
// land in its own schema.
func isolated(t *testing.T, e *pgisolate.Engine, tpl *pgisolate.Template, n int, insert string, check func(db *sql.DB) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- func() error {
				s, err := e.Acquire(tpl, t.Name(), fmt.Sprintf("worker %d", i))
				if err != nil {
					return err
				}
				defer s.Release()
				db, err := sql.Open("pgx", s.URL())
				if err != nil {
					return err
				}
				defer db.Close()
				var schema string
				if err := db.QueryRow("select current_schema()").Scan(&schema); err != nil || schema != s.Name() {
					return fmt.Errorf("session landed in %q (want %s): %v", schema, s.Name(), err)
				}
				if _, err := db.Exec(insert); err != nil {
					return fmt.Errorf("%s in %s: %w", insert, s.Name(), err)
				}
				if check != nil {
					return check(db)
				}
				return nil
			}()
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// count runs a count(*) query.
func count(t *testing.T, url, query string) int {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
