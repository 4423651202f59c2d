// Package steps holds the step definitions every feature package shares, and RunFeatures,
// which runs a package's feature files with one pgisolate schema per scenario.
package steps

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/cucumber/godog"
	_ "github.com/jackc/pgx/v5/stdlib"
	pgisolate "github.com/pgisolate/pgisolate/bindings-go"
	"github.com/pgisolate/pgisolate/bindings-go/godogisolate"

	"example.com/pgisolate-godog/app"
)

// world is one scenario's state, kept in the godog context (never in package variables, so
// concurrent scenarios cannot see each other's).
type world struct {
	db     *sql.DB
	srv    *httptest.Server
	status int
	body   map[string]any
	tokens map[string]string
}

type worldKey struct{}

func get(ctx context.Context) *world { return ctx.Value(worldKey{}).(*world) }

// RunFeatures runs the *.feature files of the calling package, each scenario in its own schema
// made from the app's migrations (built once for all packages on the shared server).
// GODOG_CONCURRENCY sets the scenarios run at once (default 4).
func RunFeatures(t *testing.T) {
	concurrency := 4
	if v, err := strconv.Atoi(os.Getenv("GODOG_CONCURRENCY")); err == nil && v > 0 {
		concurrency = v
	}
	engine, err := pgisolate.NewEngine(pgisolate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	tpl, err := engine.TemplateFunc(app.SchemaVersion, func(url string) error {
		db, err := sql.Open("pgx", url)
		if err != nil {
			return err
		}
		defer db.Close()
		return app.Migrate(db)
	})
	if err != nil {
		t.Fatal(err)
	}
	_, file, _, _ := runtime.Caller(1)
	if os.Getenv("EXAMPLE_NO_ISOLATION") == "1" {
		runShared(t, engine, tpl, filepath.Dir(file), concurrency)
		return
	}
	var out bytes.Buffer
	suite := godog.TestSuite{
		Name: filepath.Base(filepath.Dir(file)),
		ScenarioInitializer: func(sc *godog.ScenarioContext) {
			godogisolate.InstallScenarioHooks(sc, engine, godogisolate.Options{
				Template: tpl,
				OnStart: func(ctx context.Context, s *pgisolate.Schema) (context.Context, error) {
					db, err := sql.Open("pgx", s.URL())
					if err != nil {
						return ctx, err
					}
					server := &app.Server{DB: db, Key: s.CacheKey}
					w := &world{db: db, srv: httptest.NewServer(server.Handler()), tokens: map[string]string{}}
					return context.WithValue(ctx, worldKey{}, w), nil
				},
				OnEnd: func(ctx context.Context, s *pgisolate.Schema) error {
					if w, ok := ctx.Value(worldKey{}).(*world); ok {
						w.srv.Close()
						return w.db.Close()
					}
					return nil
				},
			})
			register(sc)
		},
		Options: &godog.Options{
			Format:      "progress",
			Output:      &out,
			Paths:       []string{filepath.Dir(file)},
			Concurrency: concurrency,
			Strict:      true,
		},
	}
	if status := suite.Run(); status != 0 {
		t.Fatalf("godog suite %s failed (status %d):\n%s", suite.Name, status, out.String())
	}
	t.Logf("%s", out.String())
}

// runShared is the control experiment: every scenario in one schema with unprefixed cache
// keys, as without pgisolate. The suite is expected to fail.
func runShared(t *testing.T, engine *pgisolate.Engine, tpl *pgisolate.Template, dir string, concurrency int) {
	schema, err := engine.Acquire(tpl, dir, "all scenarios share this schema")
	if err != nil {
		t.Fatal(err)
	}
	defer schema.Release()
	db, err := sql.Open("pgx", schema.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	server := &app.Server{DB: db, Key: func(k string) string { return k }}
	var out bytes.Buffer
	suite := godog.TestSuite{
		Name: "shared",
		ScenarioInitializer: func(sc *godog.ScenarioContext) {
			sc.Before(func(ctx context.Context, _ *godog.Scenario) (context.Context, error) {
				w := &world{db: db, srv: httptest.NewServer(server.Handler()), tokens: map[string]string{}}
				return context.WithValue(ctx, worldKey{}, w), nil
			})
			sc.After(func(ctx context.Context, _ *godog.Scenario, err error) (context.Context, error) {
				get(ctx).srv.Close()
				return ctx, nil
			})
			register(sc)
		},
		Options: &godog.Options{Format: "progress", Output: &out, Paths: []string{dir}, Concurrency: concurrency, Strict: true},
	}
	status := suite.Run()
	t.Fatalf("without isolation (EXAMPLE_NO_ISOLATION=1) the suite status is %d:\n%s", status, out.String())
}

func (w *world) call(method, path string, body any, token string) error {
	var buf bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&buf).Encode(body); err != nil {
			return err
		}
	}
	req, err := http.NewRequest(method, w.srv.URL+path, &buf)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := w.srv.Client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	w.status = resp.StatusCode
	w.body = map[string]any{}
	return json.NewDecoder(resp.Body).Decode(&w.body)
}

func register(sc *godog.ScenarioContext) {
	sc.Step(`^"([^"]*)" registers with password "([^"]*)"$`, func(ctx context.Context, email, password string) error {
		return get(ctx).call("POST", "/register", map[string]string{"email": email, "password": password}, "")
	})
	sc.Step(`^a user "([^"]*)" has registered with password "([^"]*)"$`, func(ctx context.Context, email, password string) error {
		w := get(ctx)
		if err := w.call("POST", "/register", map[string]string{"email": email, "password": password}, ""); err != nil {
			return err
		}
		if w.status != http.StatusCreated {
			return fmt.Errorf("registering %s: status %d %v (another scenario's data leaked in?)", email, w.status, w.body)
		}
		return nil
	})
	sc.Step(`^"([^"]*)" logs in with password "([^"]*)"$`, func(ctx context.Context, email, password string) error {
		w := get(ctx)
		if err := w.call("POST", "/login", map[string]string{"email": email, "password": password}, ""); err != nil {
			return err
		}
		if tok, ok := w.body["token"].(string); ok {
			w.tokens[email] = tok
		}
		return nil
	})
	sc.Step(`^"([^"]*)" asks who they are$`, func(ctx context.Context, email string) error {
		w := get(ctx)
		return w.call("GET", "/me", nil, w.tokens[email])
	})
	sc.Step(`^someone without a token asks who they are$`, func(ctx context.Context) error {
		return get(ctx).call("GET", "/me", nil, "")
	})
	sc.Step(`^the JWT secret is rotated$`, func(ctx context.Context) error {
		return get(ctx).call("POST", "/secrets/rotate", nil, "")
	})
	sc.Step(`^the JWT secret is rotated (\d+) times?$`, func(ctx context.Context, n int) error {
		for i := 0; i < n; i++ {
			if err := get(ctx).call("POST", "/secrets/rotate", nil, ""); err != nil {
				return err
			}
		}
		return nil
	})
	sc.Step(`^the active secret version is (\d+)$`, func(ctx context.Context, v int) error {
		w := get(ctx)
		if err := w.call("GET", "/secrets/active", nil, ""); err != nil {
			return err
		}
		if got, _ := w.body["version"].(float64); int(got) != v {
			return fmt.Errorf("active secret version %v, want %d", w.body["version"], v)
		}
		return nil
	})
	sc.Step(`^the response status is (\d+)$`, func(ctx context.Context, status int) error {
		if w := get(ctx); w.status != status {
			return fmt.Errorf("status %d, want %d (body %v)", w.status, status, w.body)
		}
		return nil
	})
	sc.Step(`^the response says the user is "([^"]*)"$`, func(ctx context.Context, email string) error {
		if w := get(ctx); w.body["email"] != email {
			return fmt.Errorf("user %v, want %s", w.body["email"], email)
		}
		return nil
	})
	sc.Step(`^the new user's id is (\d+)$`, func(ctx context.Context, id int) error {
		if got, _ := get(ctx).body["id"].(float64); int(got) != id {
			return fmt.Errorf("id %v, want %d", get(ctx).body["id"], id)
		}
		return nil
	})
	sc.Step(`^there (?:is|are) (\d+) users?$`, func(ctx context.Context, n int) error {
		var got int
		if err := get(ctx).db.QueryRow("select count(*) from users").Scan(&got); err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%d users, want %d", got, n)
		}
		return nil
	})
}
