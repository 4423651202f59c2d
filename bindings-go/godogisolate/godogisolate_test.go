package godogisolate

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cucumber/godog"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/pgisolate/pgisolate/bindings-go"
)

var (
	engine *pgisolate.Engine
	tpl    *pgisolate.Template
)

func TestMain(m *testing.M) {
	var err error
	engine, err = pgisolate.NewEngine(pgisolate.Config{NoGCOnStart: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "engine:", err)
		os.Exit(1)
	}
	tpl, err = engine.Template(filepath.Join("..", "..", "examples", "migrations"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "template:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = engine.Close()
	os.Exit(code)
}

func TestGodogHooksIsolateEveryScenario(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	ended := 0
	var report strings.Builder
	suite := godog.TestSuite{
		Name: "hooks",
		ScenarioInitializer: func(sc *godog.ScenarioContext) {
			InstallScenarioHooks(sc, engine, Options{
				Template: tpl,
				OnStart: func(ctx context.Context, s *pgisolate.Schema) (context.Context, error) {
					mu.Lock()
					defer mu.Unlock()
					if seen[s.Name()] {
						return ctx, fmt.Errorf("schema %s handed to two scenarios", s.Name())
					}
					seen[s.Name()] = true
					db, err := sql.Open("pgx", s.URL())
					return context.WithValue(ctx, dbKey{}, db), err
				},
				OnEnd: func(ctx context.Context, s *pgisolate.Schema) error {
					mu.Lock()
					ended++
					mu.Unlock()
					return ctx.Value(dbKey{}).(*sql.DB).Close()
				},
			})
			sc.Step(`^I register "([^"]*)"$`, func(ctx context.Context, email string) error {
				_, err := ctx.Value(dbKey{}).(*sql.DB).Exec("insert into users (email) values ($1)", email)
				return err
			})
			sc.Step(`^there (?:is|are) (\d+) users?$`, func(ctx context.Context, n int) error {
				var got int
				if err := ctx.Value(dbKey{}).(*sql.DB).QueryRow("select count(*) from users").Scan(&got); err != nil {
					return err
				}
				if got != n {
					return fmt.Errorf("want %d users, got %d", n, got)
				}
				return nil
			})
			sc.Step(`^this step fails$`, func() error { return errors.New("deliberate failure") })
			sc.Step(`^this step panics$`, func() error { panic("deliberate panic") })
		},
		Options: &godog.Options{
			Format:          "cucumber", // JSON: every scenario's steps and their outcome
			Output:          &report,
			Concurrency:     4,
			Strict:          true,
			FeatureContents: []godog.Feature{{Name: "hooks.feature", Contents: []byte(hooksFeature)}},
		},
	}
	status := suite.Run()
	if status == 0 {
		t.Fatal("the failing and panicking scenarios must fail the suite")
	}
	// Every scenario's outcome, not just the exit status: the isolated ones pass, the two
	// deliberate failures fail for their own reason (and nothing else fails).
	var features []struct {
		Elements []struct {
			Name  string `json:"name"`
			Steps []struct {
				Name   string `json:"name"`
				Result struct {
					Status string `json:"status"`
					Error  string `json:"error_message"`
				} `json:"result"`
			} `json:"steps"`
		} `json:"elements"`
	}
	if err := json.Unmarshal([]byte(report.String()), &features); err != nil || len(features) != 1 {
		t.Fatalf("cucumber report: %v\n%s", err, report.String())
	}
	want := map[string]string{"a failing step still releases": "deliberate failure", "a panicking step still releases": "deliberate panic"}
	outcomes := map[string]int{}
	for _, sc := range features[0].Elements {
		failed := ""
		for _, st := range sc.Steps {
			if st.Result.Status != "passed" {
				failed = st.Result.Status + ": " + st.Name + ": " + st.Result.Error
				break
			}
		}
		reason, mustFail := want[sc.Name]
		switch {
		case mustFail && !strings.Contains(failed, reason):
			t.Errorf("scenario %q must fail with %q, got %q", sc.Name, reason, failed)
		case !mustFail && failed != "":
			t.Errorf("scenario %q must pass: %s", sc.Name, failed)
		}
		outcomes[sc.Name]++
	}
	if outcomes["same name"] != 2 || outcomes["outline"] != 2 || len(features[0].Elements) != 6 {
		t.Errorf("scenarios in the report: %v", outcomes)
	}
	if len(seen) != 6 || ended != 6 {
		t.Fatalf("%d distinct schemas, %d ends; want 6 and 6: %v", len(seen), ended, seen)
	}
	db, err := sql.Open("pgx", engine.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for name := range seen {
		var exists bool
		if err := db.QueryRow("select exists (select 1 from pg_namespace where nspname = $1)", name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Errorf("schema %s was not released", name)
		}
	}
}

type dbKey struct{}

const hooksFeature = `Feature: hooks
  Background:
    Given I register "alice@example.com"

  Scenario: same name
    Then there is 1 user

  Scenario: same name
    Then there is 1 user

  Scenario Outline: outline
    When I register "<email>"
    Then there are <n> users

    Examples:
      | email            | n |
      | bob@example.com  | 2 |
      | carl@example.com | 2 |

  Scenario: a failing step still releases
    Then this step fails

  Scenario: a panicking step still releases
    Then this step panics
`
