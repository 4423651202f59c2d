package pgisolatetest_test

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/pgisolate/pgisolate/bindings-go"
	"github.com/pgisolate/pgisolate/bindings-go/pgisolatetest"
)

var migrations = pgisolatetest.Migrations(filepath.Join("..", "..", "examples", "migrations"))

func TestMain(m *testing.M) { pgisolatetest.Main(m) }

func register(t *testing.T, db *sql.DB) int {
	t.Helper()
	if _, err := db.Exec("insert into users (email) values ('same@example.com')"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow("select count(*) from users").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Twenty parallel tests register the same email: each has its own schema.
func TestEachTestHasItsOwnSchema(t *testing.T) {
	for i := range 20 {
		t.Run(fmt.Sprintf("user %d", i), func(t *testing.T) {
			t.Parallel()
			if n := register(t, pgisolatetest.DB(t, migrations)); n != 1 {
				t.Fatalf("saw %d rows: another test's", n)
			}
		})
	}
}

func TestSchemaIsNamedForTheTestAndReleasedAfterIt(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		s := pgisolatetest.Schema(t, migrations)
		name = s.Name()
		want, err := pgisolate.SchemaName("test_", 8, "pgisolatetest", t.Name(), nil)
		if err != nil || name != want {
			t.Fatalf("schema %s, want %s (%v)", name, want, err)
		}
	})
	db, err := sql.Open("pgx", pgisolatetest.Engine(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("select count(*) from pg_namespace where nspname = $1", name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%s still there after its test (%d, %v)", name, n, err)
	}
}

// The child's test fails on purpose (run by TestAFailedTestsSchemaIsKeptAndOpensWithPsql).
func TestDeliberateFailure(t *testing.T) {
	if os.Getenv("PGISOLATE_HELPER_FAIL") != "1" {
		t.Skip("runs only as the child of TestAFailedTestsSchemaIsKeptAndOpensWithPsql")
	}
	register(t, pgisolatetest.DB(t, migrations))
	t.Fatal("deliberate failure: the schema must be kept")
}

func psql(t *testing.T) string {
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	if len(found) == 0 {
		t.Skip("no psql on this machine")
	}
	return found[len(found)-1]
}

func TestAFailedTestsSchemaIsKeptAndOpensWithPsql(t *testing.T) {
	engine := pgisolatetest.Engine(t) // holds the embedded server while the child runs and after
	cmd := exec.Command(os.Args[0], "-test.run=^TestDeliberateFailure$", "-test.v")
	cmd.Env = append(os.Environ(), "PGISOLATE_HELPER_FAIL=1", "PGISOLATE_KEEP=failed")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the deliberately failing test passed:\n%s", out)
	}
	m := regexp.MustCompile(`kept schema (\S+) \([^)]*\); open it with: psql '([^']+)'`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no kept-schema line in the failing test's log:\n%s", out)
	}
	name, url := string(m[1]), string(m[2])
	defer func() {
		if err := dropKept(engine.URL(), name); err != nil {
			t.Error(err)
		}
	}()
	// The run has ended; the printed command opens the schema and sees the test's row.
	got, err := exec.Command(psql(t), url, "-Atc", "select current_schema() || ' ' || count(*) from users").CombinedOutput()
	if err != nil || strings.TrimSpace(string(got)) != name+" 1" {
		t.Fatalf("psql %s: %s (%v)", url, got, err)
	}
}

func dropKept(adminURL, name string) error {
	db, err := sql.Open("pgx", adminURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf("drop schema %q cascade", name)); err != nil {
		return err
	}
	_, err = db.Exec("delete from pgisolate.leases where schema_name = $1", name)
	return err
}

func TestDBSaysWhichDriverToImportWhenNoneFits(t *testing.T) {
	// A driver name nobody registered: sql.Open fails with the driver's name.
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		pgisolatetest.DB(ft, migrations, pgisolatetest.Driver("no-such-driver"))
	}()
	if !strings.Contains(ft.msg, "no-such-driver") {
		t.Fatalf("unclear failure: %q", ft.msg)
	}
}

// fatalRecorder records Fatalf instead of ending the test (it panics to stop the helper).
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}

func (f *fatalRecorder) Helper() {}
