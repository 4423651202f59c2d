// Package pgisolate gives each test, godog scenario or package its own PostgreSQL schema,
// made from a cached template of the app's migrations, through the shared pgisolate engine
// (a Rust core reached over its C ABI).
//
//	engine, err := pgisolate.NewEngine(pgisolate.Config{}) // embedded server unless PGISOLATE_DATABASE_URL is set
//	tpl, err := engine.Template("migrations")
//	schema, err := engine.Acquire(tpl, "signup.feature", "alice registers")
//	db, err := sql.Open("pgx", schema.URL())
//	defer schema.Release()
//
// All methods are safe for concurrent use.
package pgisolate

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Code classifies an *Error: the C ABI's pgi_code, with the same stable numbers in every
// binding (tests/vectors/errors.json). Each Code is also an error value, the target of
// errors.Is: errors.Is(err, pgisolate.ErrConnect).
type Code int

// Error codes (the C ABI's pgi_code; 16 is retired and never reused).
const (
	CodeConfig       Code = 1
	CodeConnInfo     Code = 2
	CodeBinaries     Code = 3
	CodeServer       Code = 4
	CodeConnect      Code = 5
	CodeDB           Code = 6
	CodeMigration    Code = 7
	CodeIO           Code = 8
	CodeTimeout      Code = 9
	CodeName         Code = 10
	CodeRefused      Code = 11
	CodeClosed       Code = 12
	CodeNullArgument Code = 13
	CodeInvalidUTF8  Code = 14
	CodeInternal     Code = 15
	CodeCache        Code = 17
	CodeLease        Code = 18
)

// The errors.Is targets, one per Code.
var (
	ErrConfig           error = CodeConfig       // a configuration value is invalid
	ErrConnInfo         error = CodeConnInfo     // a connection string could not be parsed
	ErrBinariesNotFound error = CodeBinaries     // PostgreSQL binaries (initdb, postgres, pg_dump) not found
	ErrServer           error = CodeServer       // the embedded server could not be started
	ErrConnect          error = CodeConnect      // the server could not be reached or refused the login
	ErrDB               error = CodeDB           // a statement failed on the server
	ErrMigration        error = CodeMigration    // a migration failed while building a template
	ErrIO               error = CodeIO           // a file could not be read or written
	ErrTimeout          error = CodeTimeout      // an operation did not finish within its deadline
	ErrNameExhausted    error = CodeName         // no unique schema name could be found
	ErrRefused          error = CodeRefused      // the engine refused to touch what it does not own
	ErrClosed           error = CodeClosed       // the engine or object is closed
	ErrNullArgument     error = CodeNullArgument // a required argument was nil
	ErrInvalidUTF8      error = CodeInvalidUTF8  // a string argument was not valid UTF-8
	ErrInternal         error = CodeInternal     // a bug in pgisolate: please report it
	ErrCache            error = CodeCache        // the cache server (Redis) failed
	ErrLease            error = CodeLease        // the owner lease could not be taken, or was lost
)

var codeNames = map[Code]string{
	CodeConfig: "config", CodeConnInfo: "conninfo", CodeBinaries: "binaries", CodeServer: "server",
	CodeConnect: "connect", CodeDB: "db", CodeMigration: "migration", CodeIO: "io", CodeTimeout: "timeout",
	CodeName: "name", CodeRefused: "refused", CodeClosed: "closed", CodeNullArgument: "null argument",
	CodeInvalidUTF8: "invalid utf-8", CodeInternal: "internal", CodeCache: "cache", CodeLease: "lease",
}

func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return "code " + strconv.Itoa(int(c))
}

// Error makes a Code an errors.Is target.
func (c Code) Error() string { return "pgisolate: " + c.String() + " error" }

// Error is every error the engine returns: errors.Is(err, pgisolate.ErrConnect) tests its
// kind, errors.As reads Code and SQLState.
type Error struct {
	Code Code
	// SQLState is the server's code (28P01, 42P01, 55P03, …) when the server sent one.
	SQLState string
	Message  string
}

func (e *Error) Error() string { return "pgisolate: " + e.Message }

// Is reports whether target is this error's Code (errors.Is(err, pgisolate.ErrDB)).
func (e *Error) Is(target error) bool {
	c, ok := target.(Code)
	return ok && c == e.Code
}

func closedError(what string) error {
	return &Error{Code: CodeClosed, Message: what + " is closed"}
}

// Version is the native library's version.
func Version() string { return nativeVersion() }

// Config configures an Engine. Zero values mean "from the PGISOLATE_* environment, else the
// default".
type Config struct {
	URL            string        // server to use; empty: PGISOLATE_DATABASE_URL, else the embedded server
	Prefix         string        // schema name prefix (test_)
	HashLen        int           // hex characters in names, 8..32 (8)
	Keep           string        // never, failed, always (never)
	SearchPathTail []string      // schemas after the test schema (public); nil: default
	PgBin          string        // PostgreSQL binaries for the embedded server
	RunID          string        // run identity shared by workers
	GCGrace        time.Duration // gc leaves younger orphans alone (5s)
	NoGCOnStart    bool          // do not run gc when the engine starts
	LoginRole      bool          // a LOGIN role per schema (least privilege; needs CREATEROLE)
	// Settings sets any setting by its key, as in the settings table (docs/configuration.md) ({"pool_size": "4",
	// "release_timeout": "20s"}); applied after the fields above.
	Settings map[string]string
	// OnWarning receives the engine's warnings (a template's tables also in public, leaked
	// connections at release, …); nil prints them to stderr. A test helper passes t.Log.
	OnWarning func(msg string)
}

func (c Config) settings() [][2]string {
	var s [][2]string
	add := func(k, v string) { s = append(s, [2]string{k, v}) }
	if c.URL != "" {
		add("url", c.URL)
	}
	if c.Prefix != "" {
		add("prefix", c.Prefix)
	}
	if c.HashLen != 0 {
		add("hash_len", strconv.Itoa(c.HashLen))
	}
	if c.Keep != "" {
		add("keep", c.Keep)
	}
	if c.SearchPathTail != nil {
		add("search_path_tail", strings.Join(c.SearchPathTail, ","))
	}
	if c.PgBin != "" {
		add("pg_bin", c.PgBin)
	}
	if c.RunID != "" {
		add("run_id", c.RunID)
	}
	if c.GCGrace != 0 {
		add("gc_grace", strconv.FormatInt(c.GCGrace.Milliseconds(), 10)+"ms")
	}
	if c.NoGCOnStart {
		add("gc_on_start", "false")
	}
	if c.LoginRole {
		add("login_role", "true")
	}
	keys := make([]string, 0, len(c.Settings))
	for k := range c.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		add(k, c.Settings[k])
	}
	add("collect_warnings", "true") // handed to OnWarning by Engine.warnings
	return s
}

// CheckSetting reports whether value is valid for the setting key (a *Error with CodeConfig,
// or CodeConnInfo for a URL, naming both), without starting anything.
func CheckSetting(key, value string) error {
	return nativeCheckSettings([][2]string{{key, value}})
}

// Engine is one per process: admin connections, the owner lease, templates.
type Engine struct {
	mu        sync.RWMutex
	ptr       *nativeEngine
	url       string
	onWarning func(string)
}

// NewEngine starts an engine (booting or reusing the embedded server when no URL is set).
func NewEngine(cfg Config) (*Engine, error) {
	ptr, err := nativeEngineNew(cfg.settings())
	if err != nil {
		return nil, err
	}
	url, err := nativeEngineURL(ptr)
	if err != nil {
		nativeEngineFree(ptr)
		return nil, err
	}
	e := &Engine{ptr: ptr, url: url, onWarning: cfg.OnWarning}
	runtime.SetFinalizer(e, func(e *Engine) { _ = e.Close() })
	e.warnings()
	return e, nil
}

// warnings hands what the engine collected to OnWarning (stderr by default).
func (e *Engine) warnings() {
	var msgs []string
	_ = e.with(func(p *nativeEngine) (err error) { msgs, err = nativeTakeWarnings(p); return })
	for _, m := range msgs {
		if e.onWarning != nil {
			e.onWarning(m)
		} else {
			fmt.Fprintln(os.Stderr, "pgisolate: warning: "+m)
		}
	}
}

// with runs f with the live native engine under a read lock.
func (e *Engine) with(f func(*nativeEngine) error) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return closedError("engine")
	}
	err := f(e.ptr)
	keepAlive(e)
	return err
}

// call is with, then hands over the warnings the call raised.
func (e *Engine) call(f func(*nativeEngine) error) error {
	err := e.with(f)
	e.warnings()
	return err
}

// URL is the admin connection string of the server in use.
func (e *Engine) URL() string { return e.url }

// RunID is the run identity recorded with every schema of this engine.
func (e *Engine) RunID() (string, error) {
	var id string
	err := e.with(func(p *nativeEngine) (err error) { id, err = nativeEngineRunID(p); return })
	return id, err
}

// Close waits for background releases and frees the engine. Idempotent.
func (e *Engine) Close() error {
	e.warnings() // background releases may have warned
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ptr != nil {
		nativeEngineFree(e.ptr)
		e.ptr = nil
		runtime.SetFinalizer(e, nil)
	}
	return nil
}

// GC drops marked schemas whose owner is gone and that are older than grace; returns how
// many it dropped.
func (e *Engine) GC(grace time.Duration) (int, error) {
	var n int
	err := e.with(func(p *nativeEngine) (err error) { n, err = nativeGC(p, uint64(grace.Milliseconds())); return })
	return n, err
}

// Template is the application's schema, built once per server and reused.
type Template struct {
	mu        sync.Mutex
	ptr       *nativeTemplate
	name      string
	builtHere bool
}

func newTemplate(ptr *nativeTemplate) (*Template, error) {
	name, err := nativeTemplateName(ptr)
	if err != nil {
		nativeTemplateFree(ptr)
		return nil, err
	}
	t := &Template{ptr: ptr, name: name, builtHere: nativeTemplateBuiltHere(ptr)}
	runtime.SetFinalizer(t, func(t *Template) { t.free() })
	return t, nil
}

func (t *Template) free() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ptr != nil {
		nativeTemplateFree(t.ptr)
		t.ptr = nil
	}
}

// Name is the template schema's name (tpl_<fingerprint>).
func (t *Template) Name() string { return t.name }

// BuiltHere reports whether this call built the template (false when it already existed).
func (t *Template) BuiltHere() bool { return t.builtHere }

// Template builds (once per server) or finds the template for every *.sql file in dir.
func (e *Engine) Template(dir string) (*Template, error) {
	var ptr *nativeTemplate
	if err := e.call(func(p *nativeEngine) (err error) { ptr, err = nativeTemplateFromDir(p, dir); return }); err != nil {
		return nil, err
	}
	return newTemplate(ptr)
}

// TemplateSQL builds (once per server) or finds the template for SQL text.
func (e *Engine) TemplateSQL(sql string) (*Template, error) {
	var ptr *nativeTemplate
	if err := e.call(func(p *nativeEngine) (err error) { ptr, err = nativeTemplateFromSQL(p, sql); return }); err != nil {
		return nil, err
	}
	return newTemplate(ptr)
}

// TemplateFunc builds the template once per server with build, which migrates the database
// at the URL it is given (goose, golang-migrate, GORM AutoMigrate, plain SQL). The URL's
// search_path holds only the build schema (and extensions): a tool that ignores it, or finds
// its version table elsewhere, makes an empty build, which is refused. Other processes wait
// for the build and reuse it.
//
// inputs are the files and directories the build reads (the migrations directory): their
// contents are hashed with fingerprint, so a changed migration builds a new template. Without
// inputs, fingerprint alone names the version: change it when the migrations change.
func (e *Engine) TemplateFunc(fingerprint string, build func(url string) error, inputs ...string) (*Template, error) {
	var ready *nativeTemplate
	var b *nativeBuild
	if err := e.call(func(p *nativeEngine) (err error) {
		ready, b, err = nativeTemplateBegin(p, fingerprint, inputs)
		return
	}); err != nil {
		return nil, err
	}
	if ready != nil {
		return newTemplate(ready)
	}
	defer nativeBuildFree(b) // abandons the build unless committed
	url, err := nativeBuildURL(b)
	if err != nil {
		return nil, err
	}
	if err := callBuild(build, url); err != nil {
		return nil, nativeBuildFail(b, "", err.Error()) // named by the core: template "<key and inputs>"
	}
	var ptr *nativeTemplate
	if err := e.call(func(*nativeEngine) (err error) { ptr, err = nativeBuildCommit(b); return }); err != nil {
		return nil, err
	}
	return newTemplate(ptr)
}

func callBuild(build func(string) error, url string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in template build: %v", r)
		}
	}()
	return build(url)
}

// Schema is one test's isolated schema.
type Schema struct {
	mu          sync.Mutex
	engine      *Engine
	ptr         *nativeSchema
	name        string
	url         string
	conninfo    string
	cachePrefix string
}

// Acquire gives (feature, scenario) a fresh schema from tpl.
func (e *Engine) Acquire(tpl *Template, feature, scenario string) (*Schema, error) {
	return e.acquire(tpl, feature, scenario, nil)
}

// AcquireRow is Acquire with a discriminator (a Scenario Outline row, a subtest, a
// parametrization) so that identical (feature, scenario) pairs get distinct identities.
func (e *Engine) AcquireRow(tpl *Template, feature, scenario, discriminator string) (*Schema, error) {
	return e.acquire(tpl, feature, scenario, &discriminator)
}

func (e *Engine) acquire(tpl *Template, feature, scenario string, discriminator *string) (*Schema, error) {
	if tpl == nil {
		return nil, &Error{Code: CodeNullArgument, Message: "template is nil"}
	}
	var ptr *nativeSchema
	var info schemaInfo
	err := e.call(func(p *nativeEngine) error {
		tpl.mu.Lock()
		defer tpl.mu.Unlock()
		if tpl.ptr == nil {
			return closedError("template")
		}
		var err error
		ptr, info, err = nativeAcquire(p, tpl.ptr, feature, scenario, discriminator)
		keepAlive(tpl)
		return err
	})
	if err != nil {
		return nil, err
	}
	s := &Schema{engine: e, ptr: ptr, name: info.name, url: info.url, conninfo: info.conninfo, cachePrefix: info.cachePrefix}
	runtime.SetFinalizer(s, func(s *Schema) { s.free() })
	return s, nil
}

// Name is the schema's name.
func (s *Schema) Name() string { return s.name }

// URL is a postgres:// URL whose sessions land in this schema (pgx, lib/pq, GORM accept it).
func (s *Schema) URL() string { return s.url }

// ConnInfo is the same connection as a libpq key/value string.
func (s *Schema) ConnInfo() string { return s.conninfo }

// CachePrefix is the schema's cache-key prefix (<hex>_).
func (s *Schema) CachePrefix() string { return s.cachePrefix }

// CacheKey is key in this schema's namespace: <hex>_<key>.
func (s *Schema) CacheKey(key string) string { return s.cachePrefix + key }

// PrismaURL is a Prisma-style URL (?schema=<name>).
func (s *Schema) PrismaURL() (string, error) { return PrismaURL(s.url, s.name) }

// KeptLine is the line every test runner prints for this schema when it is kept (a failed
// test's): its name, the test, and a psql command that opens it.
func (s *Schema) KeptLine(test string) string {
	line, err := nativeKeptLine(s.name, test, s.url)
	if err != nil {
		return "pgisolate: kept schema " + s.name + " (" + test + ")"
	}
	return line
}

// Release drops the schema (kept only under Keep "always"). Idempotent.
func (s *Schema) Release() error {
	_, err := s.Finish(false)
	return err
}

// Finish releases the schema given the test's outcome and reports whether the keep policy
// kept it. A second call does nothing.
func (s *Schema) Finish(failed bool) (kept bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return false, nil
	}
	kept, err = nativeRelease(s.ptr, failed)
	nativeSchemaFree(s.ptr)
	s.ptr = nil
	runtime.SetFinalizer(s, nil)
	s.engine.warnings() // leaked connections terminated at release, …
	return kept, err
}

func (s *Schema) free() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr != nil {
		nativeSchemaFree(s.ptr) // releases in the background
		s.ptr = nil
	}
}

// SchemaName is the deterministic schema name for an identity (no server needed).
// discriminator may be nil.
func SchemaName(prefix string, hashLen int, feature, scenario string, discriminator *string) (string, error) {
	return nativeSchemaName(prefix, hashLen, feature, scenario, discriminator)
}

// CachePrefixOf is the cache-key prefix of a schema name made with prefix.
func CachePrefixOf(prefix, schema string) (string, error) { return nativeCachePrefix(prefix, schema) }

// CacheKeyFor is cachePrefix + key.
func CacheKeyFor(cachePrefix, key string) (string, error) { return nativeCacheKeyFor(cachePrefix, key) }

// ScopedURL scopes a URL or key/value connection string to schema, then tail, in search_path.
func ScopedURL(url, schema string, tail []string) (string, error) {
	return nativeScoped(url, schema, strings.Join(tail, ","))
}

// PrismaURL is url with ?schema=<schema>.
func PrismaURL(url, schema string) (string, error) { return nativePrisma(url, schema) }
