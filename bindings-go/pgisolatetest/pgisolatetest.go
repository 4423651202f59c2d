// Package pgisolatetest gives each Go test its own PostgreSQL schema in one line:
//
//	func TestSignup(t *testing.T) {
//		db := pgisolatetest.DB(t) // *sql.DB whose sessions land in this test's schema
//		…
//	}
//
// The engine and the template are shared by every test of the package (built once per
// server); the schema is released by t.Cleanup, kept when the test failed and PGISOLATE_KEEP
// is "failed" (t.Log says where, with a psql command); errors end the test with t.Fatal.
// Migrations come from the Migrations option, else PGISOLATE_MIGRATIONS, else ./migrations.
//
// Call Main from TestMain to close the engine when the tests end, so that the server keeps
// nothing of the run (without it, the next run's gc reaps what is left):
//
//	func TestMain(m *testing.M) { pgisolatetest.Main(m) }
package pgisolatetest

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/pgisolate/pgisolate/bindings-go"
)

type options struct {
	migrations string
	config     pgisolate.Config
	driver     string
}

// Option configures Schema and DB.
type Option func(*options)

// Migrations names the migrations directory (default PGISOLATE_MIGRATIONS, else ./migrations).
func Migrations(dir string) Option { return func(o *options) { o.migrations = dir } }

// WithConfig sets the engine's configuration; it applies to the package's shared engine, so
// the first test to start it decides.
func WithConfig(cfg pgisolate.Config) Option { return func(o *options) { o.config = cfg } }

// Driver names the database/sql driver DB opens (default: "pgx" if registered, else
// "postgres"); import it, for example _ "github.com/jackc/pgx/v5/stdlib".
func Driver(name string) Option { return func(o *options) { o.driver = name } }

var (
	mu        sync.Mutex
	engine    *pgisolate.Engine
	templates = map[string]*pgisolate.Template{}
)

// Engine returns the package's shared engine, starting it on first use.
func Engine(t testing.TB, opts ...Option) *pgisolate.Engine {
	t.Helper()
	o := resolve(opts)
	e, err := shared(o)
	if err != nil {
		t.Fatalf("pgisolate: %v", err)
	}
	return e
}

func resolve(opts []Option) options {
	o := options{}
	for _, f := range opts {
		f(&o)
	}
	if o.migrations == "" {
		o.migrations = os.Getenv("PGISOLATE_MIGRATIONS")
	}
	if o.migrations == "" {
		o.migrations = "migrations"
	}
	return o
}

func shared(o options) (*pgisolate.Engine, error) {
	mu.Lock()
	defer mu.Unlock()
	if engine != nil {
		return engine, nil
	}
	e, err := pgisolate.NewEngine(o.config)
	if err != nil {
		return nil, err
	}
	engine = e
	return e, nil
}

func template(e *pgisolate.Engine, dir string) (*pgisolate.Template, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	if t, ok := templates[abs]; ok {
		return t, nil
	}
	t, err := e.Template(abs)
	if err != nil {
		return nil, err
	}
	templates[abs] = t
	return t, nil
}

// Schema gives the test its own schema (identity: the test's package directory and name),
// released when the test ends; kept when it failed and the keep policy says so, with a line
// in the test's log naming it and the psql command that opens it.
func Schema(t testing.TB, opts ...Option) *pgisolate.Schema {
	t.Helper()
	o := resolve(opts)
	e, err := shared(o)
	if err != nil {
		t.Fatalf("pgisolate: %v", err)
	}
	tpl, err := template(e, o.migrations)
	if err != nil {
		t.Fatalf("pgisolate: template from %s: %v", o.migrations, err)
	}
	wd, _ := os.Getwd()
	s, err := e.Acquire(tpl, filepath.Base(wd), t.Name())
	if err != nil {
		t.Fatalf("pgisolate: %v", err)
	}
	t.Cleanup(func() {
		kept, err := s.Finish(t.Failed())
		if err != nil {
			t.Errorf("pgisolate: release %s: %v", s.Name(), err)
			return
		}
		if kept {
			t.Log(s.KeptLine(t.Name()))
		}
	})
	return s
}

// DB opens a *sql.DB whose sessions land in the test's schema (Schema's), closed before the
// schema is released.
func DB(t testing.TB, opts ...Option) *sql.DB {
	t.Helper()
	o := resolve(opts)
	s := Schema(t, opts...)
	driver := o.driver
	if driver == "" {
		drivers := sql.Drivers()
		switch {
		case slices.Contains(drivers, "pgx"):
			driver = "pgx"
		case slices.Contains(drivers, "postgres"):
			driver = "postgres"
		default:
			t.Fatalf("pgisolate: no PostgreSQL database/sql driver is registered (have %v): import one, "+
				"for example _ \"github.com/jackc/pgx/v5/stdlib\", or name it with pgisolatetest.Driver", drivers)
		}
	}
	db, err := sql.Open(driver, s.URL())
	if err != nil {
		t.Fatalf("pgisolate: open %s: %v", driver, err)
	}
	// Registered after Schema's cleanup, so it runs first: closed before the release.
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// Close closes the shared engine (Main calls it after the tests).
func Close() error {
	mu.Lock()
	defer mu.Unlock()
	if engine == nil {
		return nil
	}
	err := engine.Close()
	engine = nil
	templates = map[string]*pgisolate.Template{}
	return err
}

// Main runs the tests, then closes the shared engine and exits with the tests' status.
func Main(m *testing.M) {
	code := m.Run()
	if err := Close(); err != nil {
		fmt.Fprintln(os.Stderr, "pgisolate: close:", err)
	}
	os.Exit(code)
}
