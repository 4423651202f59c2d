// A Go module that requires the released pgisolate module (cgo, no cargo): a godog suite with
// one schema per scenario, four scenarios at once; and plain tests with pgisolatetest.DB.
package consumer

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"testing"

	"github.com/cucumber/godog"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/pgisolate/pgisolate/bindings-go"
	"github.com/pgisolate/pgisolate/bindings-go/godogisolate"
	"github.com/pgisolate/pgisolate/bindings-go/pgisolatetest"
)

type dbKey struct{}

func TestSignup(t *testing.T) {
	if v := pgisolate.Version(); v != os.Getenv("EXPECTED_VERSION") {
		t.Fatalf("library version %s, want %s", v, os.Getenv("EXPECTED_VERSION"))
	}
	engine, err := pgisolate.NewEngine(pgisolate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	tpl, err := engine.TemplateSQL("create table users (id serial primary key, email text unique not null)")
	if err != nil {
		t.Fatal(err)
	}
	scenarios := 0
	suite := godog.TestSuite{
		ScenarioInitializer: func(sc *godog.ScenarioContext) {
			godogisolate.InstallScenarioHooks(sc, engine, godogisolate.Options{
				Template: tpl,
				OnStart: func(ctx context.Context, s *pgisolate.Schema) (context.Context, error) {
					db, err := sql.Open("pgx", s.URL())
					return context.WithValue(ctx, dbKey{}, db), err
				},
				OnEnd: func(ctx context.Context, s *pgisolate.Schema) error {
					scenarios++
					return ctx.Value(dbKey{}).(*sql.DB).Close()
				},
			})
			sc.Step(`^"([^"]*)" registers$`, func(ctx context.Context, email string) error {
				_, err := ctx.Value(dbKey{}).(*sql.DB).Exec("insert into users (email) values ($1)", email)
				return err
			})
			sc.Step(`^there is (\d+) user$`, func(ctx context.Context, n int) error {
				var got int
				if err := ctx.Value(dbKey{}).(*sql.DB).QueryRow("select count(*) from users").Scan(&got); err != nil || got != n {
					return fmt.Errorf("%d users (want %d): %v", got, n, err)
				}
				return nil
			})
		},
		Options: &godog.Options{Format: "pretty", Paths: []string{"features"}, Concurrency: 4, Strict: true, TestingT: t},
	}
	if suite.Run() != 0 {
		t.Fatal("the godog suite failed")
	}
	if scenarios != 4 {
		t.Fatalf("%d scenarios ran, want 4", scenarios)
	}
}

func TestHelperGivesEachTestItsSchema(t *testing.T) {
	for _, name := range []string{"alice", "alice again"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := pgisolatetest.DB(t, pgisolatetest.Migrations("migrations"))
			if _, err := db.Exec("insert into users (email) values ('alice@example.com')"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMain(m *testing.M) { pgisolatetest.Main(m) }
