package recipes

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/pgisolate/pgisolate/bindings-go"
)

// devDatabase makes a database of its own on the test server and migrates it with goose, as a
// developer's `goose up` would have: the app's tables, goose_db_version and the uuid-ossp
// extension, all in public. Dropped at the end of the test.
func devDatabase(t *testing.T, dir string) string {
	t.Helper()
	admin, err := sql.Open("pgx", engine.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := fmt.Sprintf("pgi_go_dev_%d", os.Getpid())
	if _, err := admin.Exec("create database " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a, _ := sql.Open("pgx", engine.URL())
		defer a.Close()
		if _, err := a.Exec("drop database " + name + " with (force)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(strings.Replace(engine.URL(), "postgresql://", "postgres://", 1))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	dev := u.String()
	if err := gooseUp(dev, dir); err != nil {
		t.Fatal(err)
	}
	return dev
}

// warnings collects what an engine warns about.
type warnings struct {
	mu  sync.Mutex
	got []string
}

func (w *warnings) add(m string) { w.mu.Lock(); w.got = append(w.got, m); w.mu.Unlock() }

func (w *warnings) find(all ...string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
next:
	for _, m := range w.got {
		for _, s := range all {
			if !strings.Contains(m, s) {
				continue next
			}
		}
		return true
	}
	return false
}

// Pointed at the already-migrated dev database, every way of building the template gives
// real isolation or a clear error, never an empty template that falls through to public.
func TestAMigratedDevDatabaseGivesIsolationOrAClearError(t *testing.T) {
	dir := abs(t, gooseDir)
	dev := devDatabase(t, dir)
	var w warnings
	e, err := pgisolate.NewEngine(pgisolate.Config{URL: dev, NoGCOnStart: true, OnWarning: w.add})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var pe *pgisolate.Error

	// 1. A build that ignores the URL it is given (goose run against the app's own URL) finds
	//    public.goose_db_version at the last version and does nothing: refused, nothing published.
	_, err = e.TemplateFunc("goose-ignores-url", func(string) error { return gooseUp(dev, dir) }, dir)
	if !errors.As(err, &pe) || pe.Code != pgisolate.CodeMigration ||
		!strings.Contains(pe.Message, "empty") || !strings.Contains(pe.Message, "public.goose_db_version") {
		t.Fatalf("want an empty-build error naming public.goose_db_version, got %v", err)
	}
	if n := count(t, dev, "select count(*) from pgisolate.templates"); n != 0 {
		t.Fatalf("%d templates published", n)
	}
	if n := count(t, dev, "select count(*) from pg_namespace where nspname like 'tpl%'"); n != 0 {
		t.Fatalf("%d build schemas left", n)
	}

	// 2. goose with the build URL: the build sees only its schema, so uuid_generate_v4() (in
	//    public) is missing; the error says where the extension is and what to do.
	_, err = e.TemplateFunc("goose", func(u string) error { return gooseUp(u, dir) }, dir)
	if !errors.As(err, &pe) || pe.Code != pgisolate.CodeMigration ||
		!strings.Contains(pe.Message, "uuid_generate_v4") || !strings.Contains(pe.Message, "uuid-ossp (in public)") {
		t.Fatalf("want a migration error with the extension hint, got %v", err)
	}
	// The same through the engine's own reading of the goose directory.
	_, err = e.Template(dir)
	if !errors.As(err, &pe) || !strings.Contains(pe.Message, "uuid-ossp (in public)") {
		t.Fatalf("want the extension hint from Template(dir), got %v", err)
	}

	// 3. Following the hint (move the extension out of public), the build works, and each test's
	//    schema holds the app's tables; the tables public also holds are named in a warning.
	mustExec(t, dev, `create schema if not exists extensions; alter extension "uuid-ossp" set schema extensions`)
	tpl, err := e.TemplateFunc("goose", func(u string) error { return gooseUp(u, dir) }, dir)
	if err != nil {
		t.Fatal(err)
	}
	isolated(t, e, tpl, 3, "insert into accounts (email) values ('admin@example.com')", nil)
	if n := count(t, dev, "select count(*) from public.accounts"); n != 0 {
		t.Fatalf("a test wrote into public.accounts (%d rows)", n)
	}
	if !w.find("public.accounts", "public.goose_db_version") {
		t.Fatalf("no warning named the tables shadowed in public: %q", w.got)
	}

	// 4. The next run reuses the template; public is no longer in the search_path at all.
	_ = e.Close()
	e2, err := pgisolate.NewEngine(pgisolate.Config{URL: dev, NoGCOnStart: true, OnWarning: w.add})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	again, err := e2.TemplateFunc("goose", func(string) error { t.Error("rebuilt"); return nil }, dir)
	if err != nil || again.Name() != tpl.Name() {
		t.Fatalf("reuse: %v %v", again, err)
	}
	isolated(t, e2, again, 2, "insert into accounts (email) values ('admin@example.com')", func(db *sql.DB) error {
		var path string
		if err := db.QueryRow("show search_path").Scan(&path); err != nil || strings.Contains(path, "public") {
			return fmt.Errorf("search_path %q: %v", path, err)
		}
		return nil
	})
}

func mustExec(t *testing.T, url, sqlText string) {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(sqlText); err != nil {
		t.Fatalf("%s: %v", sqlText, err)
	}
}
