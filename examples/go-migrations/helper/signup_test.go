// The one-line way: pgisolatetest.DB(t) gives each test a *sql.DB in its own schema, made
// from the goose migrations (read by pgisolate directly; goose itself is not needed here).
package helper

import (
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/pgisolate/pgisolate/bindings-go/pgisolatetest"
)

var migrations = pgisolatetest.Migrations("../goose/migrations")

func TestMain(m *testing.M) { pgisolatetest.Main(m) }

func TestAliceSignsUp(t *testing.T) {
	for _, attempt := range []string{"first", "second", "third"} {
		t.Run(attempt, func(t *testing.T) {
			t.Parallel()
			db := pgisolatetest.DB(t, migrations)
			if _, err := db.Exec("insert into accounts (email) values ('alice@example.com')"); err != nil {
				t.Fatal(err) // a duplicate email here would mean a shared schema
			}
		})
	}
}
