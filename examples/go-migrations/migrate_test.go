package recipes

import (
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/postgres"
	_ "github.com/golang-migrate/migrate/v4/source/file"
)

const migrateDir = "golang-migrate/migrations"

// migrateUp is what a project runs: golang-migrate with its postgres driver and file source.
func migrateUp(url, dir string) error {
	m, err := migrate.New("file://"+dir, url)
	if err != nil {
		return err
	}
	err = m.Up()
	srcErr, dbErr := m.Close()
	if errors.Is(err, migrate.ErrNoChange) {
		err = nil
	}
	return errors.Join(err, srcErr, dbErr)
}

func TestGolangMigrateBuildsTheTemplate(t *testing.T) {
	dir := abs(t, migrateDir)
	tpl, err := engine.TemplateFunc("golang-migrate", func(url string) error { return migrateUp(url, dir) }, dir)
	if err != nil {
		t.Fatal(err)
	}
	isolated(t, engine, tpl, 4, "insert into accounts (email) values ('carol@example.com')", func(db *sql.DB) error {
		var version int
		var dirty bool
		if err := db.QueryRow("select version, dirty from schema_migrations").Scan(&version, &dirty); err != nil || version != 10 || dirty {
			return fmt.Errorf("schema_migrations in the test schema: %d dirty=%v %v", version, dirty, err)
		}
		// 000010 ran after 000002 (numeric order), the citext extension made by 000002 works.
		_, err := db.Exec("insert into orders (account_id, coupon) select id, 'WELCOME' from accounts")
		if err != nil {
			return err
		}
		var plan string
		var n int
		if err := db.QueryRow("select plan from accounts").Scan(&plan); err != nil || plan != "free" {
			return fmt.Errorf("accounts.plan: %q %v", plan, err)
		}
		if err := db.QueryRow("select count(*) from orders where coupon = 'welcome'").Scan(&n); err != nil || n != 1 {
			return fmt.Errorf("citext coupon: %d %v", n, err)
		}
		return nil
	})
}

// The engine reads golang-migrate's layout itself: .up.sql only, in numeric order.
func TestGolangMigrateLayoutWithoutTheTool(t *testing.T) {
	tpl, err := engine.Template(abs(t, migrateDir))
	if err != nil {
		t.Fatal(err)
	}
	isolated(t, engine, tpl, 2, "insert into accounts (email) values ('dave@example.com')", func(db *sql.DB) error {
		var n int
		if err := db.QueryRow("select count(*) from accounts where plan = 'free'").Scan(&n); err != nil || n != 1 {
			return fmt.Errorf("a .down.sql ran, or 000010 did not: %d %v", n, err)
		}
		return nil
	})
}
