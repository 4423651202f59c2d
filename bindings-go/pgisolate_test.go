package pgisolate

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
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/lib/pq"
)

var (
	shared     *Engine
	sharedTpl  *Template
	vectorsDir = filepath.Join("..", "tests", "vectors")
)

func TestMain(m *testing.M) {
	var err error
	shared, err = NewEngine(Config{NoGCOnStart: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "engine:", err)
		os.Exit(1)
	}
	sharedTpl, err = shared.Template(filepath.Join("..", "examples", "migrations"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "template:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = shared.Close()
	os.Exit(code)
}

func loadCases(t *testing.T, name string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(vectorsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []map[string]any `json:"cases"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Cases) == 0 {
		t.Fatalf("%s has no cases", name)
	}
	return doc.Cases
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		return strings.Repeat(x["repeat"].(string), int(x["times"].(float64)))
	}
	panic(fmt.Sprintf("unexpected text %v", v))
}

func TestNamingVectors(t *testing.T) {
	for _, c := range loadCases(t, "naming.json") {
		var disc *string
		if d, ok := c["discriminator"]; ok {
			s := text(d)
			disc = &s
		}
		got, err := SchemaName(c["prefix"].(string), int(c["hash_len"].(float64)), text(c["feature"]), text(c["scenario"]), disc)
		if _, wantErr := c["error"]; wantErr {
			var pe *Error
			if !errors.As(err, &pe) || pe.Code != CodeConfig {
				t.Errorf("%v: want a config error, got %q, %v", c["name"], got, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", c["name"], err)
		}
		if got != c["expected_schema"] {
			t.Errorf("%v: got %s want %s", c["name"], got, c["expected_schema"])
		}
		cp, err := CachePrefixOf(c["prefix"].(string), got)
		if err != nil || cp != c["expected_cache_prefix"] {
			t.Errorf("%v: cache prefix %q %v", c["name"], cp, err)
		}
	}
}

func TestConfigVectors(t *testing.T) {
	for _, c := range loadCases(t, "config.json") {
		key, value := c["key"].(string), c["value"].(string)
		err := CheckSetting(key, value)
		if c["ok"].(bool) {
			if err != nil {
				t.Errorf("%s=%q: %v", key, value, err)
			}
			continue
		}
		want := CodeConfig
		if c["code"] == "conninfo" {
			want = CodeConnInfo
		}
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != want || !strings.Contains(pe.Message, c["error"].(string)) {
			t.Errorf("%s=%q: want %v error with %q, got %v", key, value, want, c["error"], err)
		}
	}
}

// Config's typed fields are settings of the core's table: each one set gives a key the core
// accepts with the value it produces (a renamed or dropped key fails here).
func TestTypedConfigFieldsAreTheCoresSettings(t *testing.T) {
	c := Config{
		URL: "postgres://u@127.0.0.1:5432/db", Prefix: "t_", HashLen: 12, Keep: "failed",
		SearchPathTail: []string{"public"}, PgBin: "/usr/bin", RunID: "run-1", GCGrace: 1500 * time.Millisecond,
		NoGCOnStart: true, LoginRole: true,
	}
	got := c.settings()
	// Every typed field, plus collect_warnings (always set).
	if len(got) != 11 {
		t.Fatalf("settings() gave %d keys for 10 typed fields: %v", len(got), got)
	}
	for _, kv := range got {
		if err := CheckSetting(kv[0], kv[1]); err != nil {
			t.Errorf("typed field gives %s=%q, which the core refuses: %v", kv[0], kv[1], err)
		}
	}
}

func TestConnInfoVectors(t *testing.T) {
	for _, c := range loadCases(t, "conninfo.json") {
		var tail []string
		for _, x := range c["tail"].([]any) {
			tail = append(tail, x.(string))
		}
		got, err := ScopedURL(c["input"].(string), c["schema"].(string), tail)
		if _, wantErr := c["error"]; wantErr {
			if err == nil {
				t.Errorf("%v: want an error, got %q", c["name"], got)
			}
			continue
		}
		if err != nil || got != c["expected"] {
			t.Errorf("%v:\n got  %s (%v)\n want %s", c["name"], got, err, c["expected"])
		}
	}
	for _, c := range loadCases(t, "prisma.json") {
		got, err := PrismaURL(c["input"].(string), c["schema"].(string))
		if _, wantErr := c["error"]; wantErr {
			if err == nil {
				t.Errorf("prisma %v: want an error", c["input"])
			}
			continue
		}
		if err != nil || got != c["expected"] {
			t.Errorf("prisma %v: got %s %v", c["input"], got, err)
		}
	}
	for _, c := range loadCases(t, "cache_key.json") {
		got, err := CacheKeyFor(c["cache_prefix"].(string), c["key"].(string))
		if err != nil || got != c["expected"] {
			t.Errorf("cache key: got %s %v", got, err)
		}
	}
}

func currentSchema(t *testing.T, driver, dsn string) string {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var s string
	if err := db.QueryRow("select current_schema()").Scan(&s); err != nil {
		t.Fatalf("%s %s: %v", driver, dsn, err)
	}
	return s
}

// R14 for the Go drivers: pgx and lib/pq land in the schema with the URL and the conninfo.
func TestHandedOutStringsLandInTheSchemaWithPgxAndLibPq(t *testing.T) {
	s, err := shared.Acquire(sharedTpl, "go.feature", "drivers")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	for _, driver := range []string{"pgx", "postgres"} {
		for _, dsn := range []string{s.URL(), s.ConnInfo()} {
			if got := currentSchema(t, driver, dsn); got != s.Name() {
				t.Errorf("%s with %s landed in %q, want %q", driver, dsn, got, s.Name())
			}
		}
	}
	if !strings.HasPrefix(s.CacheKey("user:1"), strings.TrimPrefix(s.Name(), "test_")+"_") {
		t.Errorf("cache key %s for %s", s.CacheKey("user:1"), s.Name())
	}
}

// Least privilege: with LoginRole each schema's strings log in as its own role, which lands in
// the schema with pgx and lib/pq and cannot read another test's schema.
func TestLoginRoleConfinesEachSchema(t *testing.T) {
	e, err := NewEngine(Config{NoGCOnStart: true, LoginRole: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tpl, err := e.Template(filepath.Join("..", "examples", "migrations"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.Acquire(tpl, "go.feature", "login role")
	if err != nil {
		t.Fatal(err)
	}
	other, err := shared.Acquire(sharedTpl, "go.feature", "someone else")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Release()
	if strings.Contains(s.URL(), "options=") {
		t.Errorf("a login-role URL carries startup options: %s", s.URL())
	}
	for _, driver := range []string{"pgx", "postgres"} {
		for _, dsn := range []string{s.URL(), s.ConnInfo()} {
			if got := currentSchema(t, driver, dsn); got != s.Name() {
				t.Errorf("%s with %s landed in %q, want %q", driver, dsn, got, s.Name())
			}
		}
	}
	db, err := sql.Open("pgx", s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var user string
	if err := db.QueryRow("select current_user").Scan(&user); err != nil || !strings.HasPrefix(user, "pgir_") {
		t.Errorf("logged in as %q (%v), want the schema's role", user, err)
	}
	var n int
	err = db.QueryRow(fmt.Sprintf(`select count(*) from %q.users`, other.Name())).Scan(&n)
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("reading another test's schema: %v, want permission denied", err)
	}
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentAcquireAndRelease(t *testing.T) {
	// 16 goroutines ask for the same identity at once (R11): 16 distinct schemas, each
	// isolated, all released.
	schemas := make([]*Schema, 16)
	errs := make([]error, 16)
	var wg sync.WaitGroup
	for i := range schemas {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := shared.Acquire(sharedTpl, "go.feature", "same scenario")
			if err != nil {
				errs[i] = err
				return
			}
			schemas[i] = s
			db, err := sql.Open("pgx", s.URL())
			if err != nil {
				errs[i] = err
				return
			}
			defer db.Close()
			var n int
			if _, err = db.Exec("insert into users (email) values ('same@example.com')"); err == nil {
				err = db.QueryRow("select count(*) from users").Scan(&n)
			}
			if err == nil && n != 1 {
				err = fmt.Errorf("%s sees %d users", s.Name(), n)
			}
			errs[i] = err
		}(i)
	}
	wg.Wait()
	names := map[string]bool{}
	for i, s := range schemas {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if names[s.Name()] {
			t.Fatalf("%s handed out twice", s.Name())
		}
		names[s.Name()] = true
	}
	for _, s := range schemas {
		wg.Add(1)
		go func(s *Schema) {
			defer wg.Done()
			if err := s.Release(); err != nil {
				t.Error(err)
			}
		}(s)
	}
	wg.Wait()
}

func TestTemplateFuncBuildsOnceWithTheCallersTool(t *testing.T) {
	key := fmt.Sprintf("go-automigrate-%d", os.Getpid())
	calls := 0
	build := func(url string) error {
		calls++
		db, err := sql.Open("pgx", url)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.Exec("create table widgets (id bigserial primary key, label text unique not null); insert into widgets (label) values ('seed')")
		return err
	}
	tpl, err := shared.TemplateFunc(key, build)
	if err != nil {
		t.Fatal(err)
	}
	again, err := shared.TemplateFunc(key, build)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 || !tpl.BuiltHere() || again.BuiltHere() || again.Name() != tpl.Name() {
		t.Fatalf("calls=%d built=%v/%v names %s/%s", calls, tpl.BuiltHere(), again.BuiltHere(), tpl.Name(), again.Name())
	}
	s, err := shared.Acquire(tpl, "go.feature", "widgets")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	db, _ := sql.Open("pgx", s.URL())
	defer db.Close()
	var id int
	if err := db.QueryRow("insert into widgets (label) values ('x') returning id").Scan(&id); err != nil || id != 2 {
		t.Fatalf("id=%d err=%v", id, err)
	}
	_, err = shared.TemplateFunc(key+"-bad", func(string) error { return errors.New("migration exploded") })
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeMigration || !strings.Contains(pe.Message, "exploded") {
		t.Fatalf("want a migration error, got %v", err)
	}
}

func TestTemplateFuncInputsCannotGoStale(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "001_gadgets.sql")
	// Contents of this run only: a capture kept from an earlier run (PGISOLATE_HOME/captures)
	// would otherwise build the template without calling build.
	run := fmt.Sprintf("-- %d\n", time.Now().UnixNano())
	write := func(sql string) {
		if err := os.WriteFile(file, []byte(run+sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("create table gadgets (id int);")
	calls := 0
	build := func(url string) error {
		calls++
		raw, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		db, err := sql.Open("pgx", url)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.Exec(string(raw))
		return err
	}
	first, err := shared.TemplateFunc("gadgets", build, dir)
	if err != nil {
		t.Fatal(err)
	}
	same, err := shared.TemplateFunc("gadgets", build, dir)
	if err != nil || same.Name() != first.Name() || calls != 1 {
		t.Fatalf("unchanged inputs: calls=%d names %s/%v err=%v", calls, first.Name(), same, err)
	}
	write("create table gadgets (id int, label text);")
	changed, err := shared.TemplateFunc("gadgets", build, dir)
	if err != nil || changed.Name() == first.Name() || calls != 2 {
		t.Fatalf("changed inputs must build anew: calls=%d names %s/%v err=%v", calls, first.Name(), changed, err)
	}
	_, err = shared.TemplateFunc("gadgets", build, filepath.Join(dir, "missing"))
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeIO {
		t.Fatalf("a missing input must be an io error, got %v", err)
	}
	// A failed build publishes nothing: the next call builds again, with the tool's message.
	write("select no_such_function();")
	_, err = shared.TemplateFunc("gadgets", build, dir)
	if !errors.As(err, &pe) || pe.Code != CodeMigration || !strings.Contains(pe.Message, "no_such_function") {
		t.Fatalf("want the tool's error as a migration error, got %v", err)
	}
	_, _ = shared.TemplateFunc("gadgets", build, dir)
	if calls != 4 {
		t.Fatalf("a failed build must not be published: calls=%d", calls)
	}
}

func TestWarningsReachOnWarning(t *testing.T) {
	var mu sync.Mutex
	var got []string
	e, err := NewEngine(Config{NoGCOnStart: true, SearchPathTail: []string{"public"}, OnWarning: func(m string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	table := fmt.Sprintf("go_shadow_%d", os.Getpid())
	tpl, err := e.TemplateSQL("create table " + table + " (id int)")
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := sql.Open("pgx", e.URL())
	defer admin.Close()
	if _, err := admin.Exec("create table public." + table + " (id int)"); err != nil {
		t.Fatal(err)
	}
	defer admin.Exec("drop table public." + table)
	s, err := e.Acquire(tpl, "go.feature", "shadowed")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	mu.Lock()
	defer mu.Unlock()
	for _, m := range got {
		if strings.Contains(m, "public."+table) {
			return
		}
	}
	t.Fatalf("no warning named public.%s; got %q", table, got)
}

func TestErrorsCarryCodes(t *testing.T) {
	_, err := NewEngine(Config{HashLen: 99})
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeConfig {
		t.Fatalf("want config error, got %v", err)
	}
	_, err = NewEngine(Config{URL: "postgres://nobody@127.0.0.1:1/x"})
	if !errors.As(err, &pe) || pe.Code != CodeConnect {
		t.Fatalf("want connect error, got %v", err)
	}
	_, err = shared.Template("/nonexistent/migrations")
	if !errors.As(err, &pe) || pe.Code != CodeIO {
		t.Fatalf("want io error, got %v", err)
	}
}

// tests/vectors/errors.json: every kind has its errors.Is target with the same number and
// name; a failed login, a missing table and a lock timeout give the kind and the SQLSTATE.
func TestErrorVectors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(vectorsDir, "errors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Kinds []struct {
			Number   int
			Code, Go string
		} `json:"kinds"`
		ABIOnly []struct {
			Number   int
			Code, Go string
		} `json:"abi_only"`
		Failures []struct {
			Name, User, SQL, SQLState string
			Lock                      int64
			Kind                      int
		} `json:"failures"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	targets := map[string]error{
		"ErrConfig": ErrConfig, "ErrConnInfo": ErrConnInfo, "ErrBinariesNotFound": ErrBinariesNotFound,
		"ErrServer": ErrServer, "ErrConnect": ErrConnect, "ErrDB": ErrDB, "ErrMigration": ErrMigration,
		"ErrIO": ErrIO, "ErrTimeout": ErrTimeout, "ErrNameExhausted": ErrNameExhausted, "ErrRefused": ErrRefused,
		"ErrClosed": ErrClosed, "ErrNullArgument": ErrNullArgument, "ErrInvalidUTF8": ErrInvalidUTF8,
		"ErrInternal": ErrInternal, "ErrCache": ErrCache, "ErrLease": ErrLease,
	}
	all := append(doc.Kinds, doc.ABIOnly...)
	if len(all) != len(targets) || len(all) != len(codeNames) {
		t.Fatalf("errors.json has %d kinds, Go %d targets and %d codes", len(all), len(targets), len(codeNames))
	}
	byNumber := map[int]error{}
	for _, k := range all {
		target, ok := targets[k.Go]
		if !ok {
			t.Fatalf("no errors.Is target %s", k.Go)
		}
		if c := target.(Code); int(c) != k.Number || c.String() != k.Code {
			t.Errorf("%s is %d %q, errors.json says %d %q", k.Go, int(c), c.String(), k.Number, k.Code)
		}
		e := &Error{Code: Code(k.Number)}
		if !errors.Is(e, target) || (k.Go != "ErrConfig" && errors.Is(e, ErrConfig)) {
			t.Errorf("errors.Is is wrong for %s", k.Go)
		}
		byNumber[k.Number] = target
	}
	for _, f := range doc.Failures {
		t.Run(f.Name, func(t *testing.T) {
			var err error
			if f.User != "" {
				rest := strings.SplitN(shared.URL(), "://", 2)
				hostAndPath := rest[1]
				if at := strings.LastIndex(strings.SplitN(hostAndPath, "/", 2)[0], "@"); at >= 0 {
					hostAndPath = hostAndPath[at+1:]
				}
				_, err = NewEngine(Config{URL: rest[0] + "://" + f.User + "@" + hostAndPath, NoGCOnStart: true})
			} else {
				if f.Lock != 0 {
					db, oerr := sql.Open("pgx", shared.URL())
					if oerr != nil {
						t.Fatal(oerr)
					}
					defer db.Close()
					conn, cerr := db.Conn(t.Context())
					if cerr != nil {
						t.Fatal(cerr)
					}
					defer conn.Close()
					if _, lerr := conn.ExecContext(t.Context(), "select pg_advisory_lock($1)", f.Lock); lerr != nil {
						t.Fatal(lerr)
					}
				}
				_, err = shared.TemplateSQL(f.SQL)
			}
			var pe *Error
			if !errors.As(err, &pe) || !errors.Is(err, byNumber[f.Kind]) || pe.SQLState != f.SQLState {
				t.Fatalf("want kind %d with SQLSTATE %s, got %#v", f.Kind, f.SQLState, err)
			}
		})
	}
}

func TestCloseIsIdempotentAndLaterCallsFail(t *testing.T) {
	e, err := NewEngine(Config{NoGCOnStart: true})
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := e.Template(filepath.Join("..", "examples", "migrations"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.Acquire(tpl, "go.feature", "close")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(); err != nil {
		t.Fatal("second release:", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = e.Acquire(tpl, "go.feature", "after close")
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeClosed {
		t.Fatalf("want closed error, got %v", err)
	}
}

// The godog glue: every scenario (same-named ones and outline rows included) gets its own
// schema, running concurrently, and every schema is released, even after a failed or
// panicking step.

func TestContextVariantsStopWaitingWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := shared.AcquireContext(ctx, sharedTpl, "ctx", "cancelled"); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := shared.AcquireContext(ctx, sharedTpl, "ctx", "in time")
	if err != nil {
		t.Fatal(err)
	}
	if kept, err := s.FinishContext(ctx, false); err != nil || kept {
		t.Fatalf("finish: kept=%v err=%v", kept, err)
	}
	if _, err := shared.TemplateContext(ctx, filepath.Join("..", "examples", "migrations")); err != nil {
		t.Fatal(err)
	}
	if _, err := shared.GCContext(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
}

// A build that reaches outside its schema (issue 24's audit set) is refused, naming each
// object, and what it created there is dropped.
func TestABuildThatReachesOutsideItsSchemaIsRefused(t *testing.T) {
	_, err := shared.Template(filepath.Join("..", "tests", "outside", "audit"))
	if !errors.Is(err, ErrMigration) {
		t.Fatalf("want a migration error, got %v", err)
	}
	for _, want := range []string{
		"schema audit: created by the build; dropped",
		"table audit.events: created by the build; dropped",
		"table public.settings: created by the build; dropped",
		"function audit.log_user(): created by the build; dropped",
		"PGISOLATE_ISOLATION=database",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from: %v", want, err)
		}
	}
	u := fmt.Sprintf("%d_%d", os.Getpid(), time.Now().UnixNano())
	_, err = shared.TemplateFunc("go-outside-"+u, func(url string) error {
		db, err := sql.Open("pgx", url)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.Exec("create table users (id int); create schema audit_" + u)
		return err
	})
	if !errors.Is(err, ErrMigration) || !strings.Contains(err.Error(), "schema audit_"+u+": created by the build; dropped") {
		t.Fatalf("want the caller's build refused, got %v", err)
	}
	admin, err := sql.Open("pgx", shared.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var left int
	if err := admin.QueryRow(`select count(*) from pg_namespace where nspname in ('audit', $1)
		or (nspname = 'public' and to_regclass('public.settings') is not null)`, "audit_"+u).Scan(&left); err != nil || left != 0 {
		t.Fatalf("a refused build left %d objects (%v)", left, err)
	}
}

// isolation=database: the audit migration set gets a database per test; tests at once
// register the same email, each sees its own audit row and public.settings; released
// databases are dropped.
func TestIsolationDatabaseGivesTheAuditAppADatabasePerTest(t *testing.T) {
	e, err := NewEngine(Config{NoGCOnStart: true, Settings: map[string]string{"isolation": "database"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tpl, err := e.Template(filepath.Join("..", "tests", "outside", "audit"))
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		name, db, settings string
		audit              int
	}
	out := make(chan seen, 6)
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		go func(i int) {
			s, err := e.Acquire(tpl, "go.database", fmt.Sprintf("registers alice %d", i))
			if err != nil {
				errs <- err
				return
			}
			db, err := sql.Open("pgx", s.URL())
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			if _, err := db.Exec(`insert into users (email) values ('alice@example.com')`); err != nil {
				errs <- err
				return
			}
			if _, err := db.Exec(`insert into public.settings (k, v) values ('go', $1)`, fmt.Sprint(i)); err != nil {
				errs <- err
				return
			}
			var r seen
			r.name = s.Name()
			if err := db.QueryRow(`select current_database(), (select count(*) from audit.events),
				(select string_agg(v, ',') from public.settings)`).Scan(&r.db, &r.audit, &r.settings); err != nil {
				errs <- err
				return
			}
			db.Close()
			if err := s.Release(); err != nil {
				errs <- err
				return
			}
			out <- r
		}(i)
	}
	var names []string
	for i := 0; i < 6; i++ {
		select {
		case err := <-errs:
			t.Fatal(err)
		case r := <-out:
			if r.db != r.name || r.audit != 1 || strings.Contains(r.settings, ",") {
				t.Errorf("%s: database %s, %d audit rows, settings %q: not its own", r.name, r.db, r.audit, r.settings)
			}
			names = append(names, r.name)
		}
	}
	admin, err := sql.Open("pgx", e.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var left int
	if err := admin.QueryRow(`select count(*) from pg_database where datname = any($1)`, names).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d released databases left (%v)", left, err)
	}
}
