/*
 * The C ABI end to end: the shared vectors through the pure helpers, then a real
 * acquire/release cycle on the embedded server, checked with libpq. Run under valgrind by
 * `make test` (no leaks, no invalid access).
 *
 * usage: test_pgisolate <tests/vectors dir> <migrations dir>
 */
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pgisolate.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    checks++;                                                             \
    if (!(cond)) {                                                        \
      failures++;                                                         \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                \
      fprintf(stderr, __VA_ARGS__);                                       \
      fputc('\n', stderr);                                                \
    }                                                                     \
  } while (0)

/* Dies on an unexpected error, printing its code and message. */
static void ok(pgi_error *err, const char *what) {
  if (err) {
    fprintf(stderr, "FATAL %s: [%d] %s\n", what, (int)pgi_error_code(err), pgi_error_message(err));
    pgi_error_free(err);
    exit(2);
  }
}

/* Expects an error with `code`; frees it. */
static void expect_error(pgi_error *err, pgi_code code, const char *what) {
  CHECK(err != NULL, "%s: expected error %d, got success", what, (int)code);
  if (err) {
    CHECK(pgi_error_code(err) == code, "%s: expected error %d, got %d (%s)", what, (int)code,
          (int)pgi_error_code(err), pgi_error_message(err));
    CHECK(strlen(pgi_error_message(err)) > 0, "%s: empty message", what);
    pgi_error_free(err);
  }
}

/* A vector text value: a string, or {"repeat": s, "times": n}. Caller frees. */
static char *vector_text(json_t *v, size_t *len) {
  if (json_is_string(v)) {
    *len = json_string_length(v);
    char *s = malloc(*len + 1);
    memcpy(s, json_string_value(v), *len + 1);
    return s;
  }
  const char *unit = json_string_value(json_object_get(v, "repeat"));
  size_t times = (size_t)json_integer_value(json_object_get(v, "times"));
  size_t ul = strlen(unit);
  *len = ul * times;
  char *s = malloc(*len + 1);
  for (size_t i = 0; i < times; i++) memcpy(s + i * ul, unit, ul);
  s[*len] = 0;
  return s;
}

static json_t *load(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  json_error_t e;
  json_t *doc = json_load_file(path, JSON_ALLOW_NUL, &e);
  if (!doc) {
    fprintf(stderr, "FATAL cannot load %s: %s\n", path, e.text);
    exit(2);
  }
  return doc;
}

static void naming_vectors(const char *dir) {
  json_t *doc = load(dir, "naming.json");
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(doc, "cases"), i, c) {
    size_t fl, sl, dl = 0;
    char *f = vector_text(json_object_get(c, "feature"), &fl);
    char *s = vector_text(json_object_get(c, "scenario"), &sl);
    json_t *dj = json_object_get(c, "discriminator");
    char *d = dj ? vector_text(dj, &dl) : NULL;
    pgi_str disc = {d, dl};
    char *name = NULL;
    pgi_error *err = pgi_naming_schema_name(json_string_value(json_object_get(c, "prefix")),
                                            (size_t)json_integer_value(json_object_get(c, "hash_len")),
                                            (pgi_str){f, fl}, (pgi_str){s, sl}, disc, &name);
    const char *case_name = json_string_value(json_object_get(c, "name"));
    if (json_object_get(c, "error")) {
      expect_error(err, PGI_CODE_CONFIG, case_name);
      CHECK(name == NULL, "%s: out written on failure", case_name);
    } else {
      ok(err, case_name);
      const char *want = json_string_value(json_object_get(c, "expected_schema"));
      CHECK(strcmp(name, want) == 0, "naming %s: got %s want %s", case_name, name, want);
      char *cp = NULL;
      ok(pgi_naming_cache_prefix(json_string_value(json_object_get(c, "prefix")), name, &cp), "cache prefix");
      CHECK(strcmp(cp, json_string_value(json_object_get(c, "expected_cache_prefix"))) == 0, "cache prefix %s: %s",
            case_name, cp);
      pgi_string_free(cp);
    }
    pgi_string_free(name);
    free(f);
    free(s);
    free(d);
  }
  json_decref(doc);
}

static void conninfo_vectors(const char *dir) {
  json_t *doc = load(dir, "conninfo.json");
  size_t i, j;
  json_t *c, *t;
  json_array_foreach(json_object_get(doc, "cases"), i, c) {
    char tail[1024] = "";
    json_array_foreach(json_object_get(c, "tail"), j, t) {
      if (j) strcat(tail, ",");
      strcat(tail, json_string_value(t));
    }
    char *got = NULL;
    pgi_error *err = pgi_conninfo_scoped(json_string_value(json_object_get(c, "input")),
                                         json_string_value(json_object_get(c, "schema")), tail, &got);
    const char *case_name = json_string_value(json_object_get(c, "name"));
    if (json_object_get(c, "error")) {
      expect_error(err, PGI_CODE_CONNINFO, case_name);
    } else {
      ok(err, case_name);
      const char *want = json_string_value(json_object_get(c, "expected"));
      CHECK(strcmp(got, want) == 0, "conninfo %s:\n  got  %s\n  want %s", case_name, got, want);
    }
    pgi_string_free(got);
  }
  json_decref(doc);

  doc = load(dir, "prisma.json");
  json_array_foreach(json_object_get(doc, "cases"), i, c) {
    char *got = NULL;
    pgi_error *err = pgi_conninfo_prisma_url(json_string_value(json_object_get(c, "input")),
                                             json_string_value(json_object_get(c, "schema")), &got);
    if (json_object_get(c, "error")) {
      expect_error(err, PGI_CODE_CONNINFO, "prisma");
    } else {
      ok(err, "prisma");
      CHECK(strcmp(got, json_string_value(json_object_get(c, "expected"))) == 0, "prisma: %s", got);
    }
    pgi_string_free(got);
  }
  json_decref(doc);

  doc = load(dir, "cache_key.json");
  json_array_foreach(json_object_get(doc, "cases"), i, c) {
    char *got = NULL;
    const char *key = json_string_value(json_object_get(c, "key"));
    ok(pgi_cache_key_for(json_string_value(json_object_get(c, "cache_prefix")), PGI_CSTR(key), &got), "cache key");
    CHECK(strcmp(got, json_string_value(json_object_get(c, "expected"))) == 0, "cache key: %s", got);
    pgi_string_free(got);
  }
  json_decref(doc);
}

/* tests/vectors/config.json through pgi_config_set: accepted values, and errors with their kind. */
static void config_vectors(const char *dir) {
  json_t *doc = load(dir, "config.json");
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(doc, "cases"), i, c) {
    const char *key = json_string_value(json_object_get(c, "key"));
    const char *value = json_string_value(json_object_get(c, "value"));
    pgi_config *cfg = NULL;
    ok(pgi_config_new(&cfg), "config");
    pgi_error *e = pgi_config_set(cfg, key, value);
    if (json_is_true(json_object_get(c, "ok"))) {
      CHECK(e == NULL, "%s=%s: %s", key, value, e ? pgi_error_message(e) : "");
    } else {
      json_t *code = json_object_get(c, "code");
      pgi_code want = code && strcmp(json_string_value(code), "conninfo") == 0 ? PGI_CODE_CONNINFO : PGI_CODE_CONFIG;
      const char *fragment = json_string_value(json_object_get(c, "error"));
      CHECK(e != NULL && pgi_error_code(e) == want && strstr(pgi_error_message(e), fragment) != NULL,
            "%s=%s: want error %d with %s, got %s", key, value, (int)want, fragment, e ? pgi_error_message(e) : "success");
    }
    pgi_error_free(e);
    pgi_config_free(cfg);
  }
  json_decref(doc);
}

/* Connects with a handed-out string through libpq and returns current_schema() (caller frees). */
static char *current_schema(const char *dsn) {
  PGconn *conn = PQconnectdb(dsn);
  if (PQstatus(conn) != CONNECTION_OK) {
    fprintf(stderr, "libpq cannot connect with %s: %s\n", dsn, PQerrorMessage(conn));
    PQfinish(conn);
    return strdup("<no connection>");
  }
  PGresult *r = PQexec(conn, "insert into users (email) values ('c@example.com'); select current_schema()");
  char *out = strdup(PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(conn);
  return out;
}

static void engine_cycle(const char *migrations) {
  pgi_config *cfg = NULL;
  ok(pgi_config_new(&cfg), "config");
  expect_error(pgi_config_set(cfg, "hash_len", "99"), PGI_CODE_CONFIG, "hash_len 99");
  expect_error(pgi_config_set(cfg, "no_such_key", "1"), PGI_CODE_CONFIG, "unknown key");
  ok(pgi_config_set(cfg, "gc_on_start", "false"), "gc_on_start");

  pgi_engine *engine = NULL;
  ok(pgi_engine_new(cfg, &engine), "engine");
  pgi_config_free(cfg);

  pgi_template *tpl = NULL;
  ok(pgi_template_from_dir(engine, migrations, &tpl), "template");
  char *tname = NULL;
  ok(pgi_template_name(tpl, &tname), "template name");
  CHECK(strncmp(tname, "tpl_", 4) == 0, "template name %s", tname);
  pgi_string_free(tname);

  /* Two scenarios, same unique email, their own schemas. */
  const char disc_with_nul[] = {'r', 'o', 'w', 0, '1'};
  pgi_schema *a = NULL, *b = NULL;
  ok(pgi_schema_acquire(engine, tpl, PGI_CSTR("c.feature"), PGI_CSTR("register"), (pgi_str){NULL, 0}, &a), "acquire a");
  ok(pgi_schema_acquire(engine, tpl, PGI_CSTR("c.feature"), PGI_CSTR("register"),
                        (pgi_str){disc_with_nul, sizeof disc_with_nul}, &b),
     "acquire b");
  char *na = NULL, *nb = NULL, *ua = NULL, *kb = NULL, *key = NULL;
  ok(pgi_schema_name(a, &na), "name a");
  ok(pgi_schema_name(b, &nb), "name b");
  CHECK(strcmp(na, nb) != 0, "two identities share %s", na);
  ok(pgi_schema_url(a, &ua), "url a");
  ok(pgi_schema_conninfo(b, &kb), "conninfo b");
  char *sa = current_schema(ua), *sb = current_schema(kb);
  CHECK(strcmp(sa, na) == 0, "libpq URL landed in %s, want %s", sa, na);
  CHECK(strcmp(sb, nb) == 0, "libpq conninfo landed in %s, want %s", sb, nb);
  ok(pgi_cache_key(a, PGI_CSTR("user:42"), &key), "cache key");
  CHECK(strncmp(key, na + 5, 8) == 0 && strstr(key, "_user:42") != NULL, "cache key %s for %s", key, na);

  bool kept = true;
  ok(pgi_schema_release(a, false, &kept), "release a");
  CHECK(!kept, "a passing test's schema was kept");
  bool kept_again = true;
  ok(pgi_schema_release(a, false, &kept_again), "second release (does nothing)");
  CHECK(!kept_again, "a second release reports not kept");
  char *after = NULL;
  ok(pgi_schema_name(a, &after), "name after release");
  CHECK(strcmp(after, na) == 0, "name after release");

  /* NULL checks and out-parameters untouched on failure. */
  pgi_schema *untouched = (pgi_schema *)0x1;
  expect_error(pgi_schema_acquire(NULL, tpl, PGI_CSTR("f"), PGI_CSTR("s"), (pgi_str){NULL, 0}, &untouched),
               PGI_CODE_NULL_ARGUMENT, "NULL engine");
  CHECK(untouched == (pgi_schema *)0x1, "out-parameter written on failure");
  expect_error(pgi_schema_acquire(engine, tpl, PGI_CSTR("f"), PGI_CSTR("s"), (pgi_str){NULL, 0}, NULL),
               PGI_CODE_NULL_ARGUMENT, "NULL out");
  expect_error(pgi_schema_acquire(engine, tpl, (pgi_str){NULL, 3}, PGI_CSTR("s"), (pgi_str){NULL, 0}, &untouched),
               PGI_CODE_NULL_ARGUMENT, "NULL ptr with length");
  const char bad_utf8[] = {(char)0xff, (char)0xfe};
  expect_error(pgi_schema_acquire(engine, tpl, (pgi_str){bad_utf8, 2}, PGI_CSTR("s"), (pgi_str){NULL, 0}, &untouched),
               PGI_CODE_INVALID_UTF8, "invalid UTF-8");
  expect_error(pgi_template_from_dir(engine, "/nonexistent/migrations", (pgi_template **)&untouched),
               PGI_CODE_IO, "missing migrations dir");

  /* A template built by the caller's own migration tool (here: libpq). */
  char keybuf[64];
  snprintf(keybuf, sizeof keybuf, "c-test-%ld", (long)getpid());
  pgi_template *ready = NULL;
  pgi_template_build *build = NULL;
  ok(pgi_template_begin(engine, keybuf, &ready, &build), "template begin");
  CHECK(ready == NULL && build != NULL, "fresh key must need a build");
  char *burl = NULL;
  ok(pgi_template_build_url(build, &burl), "build url");
  PGconn *m = PQconnectdb(burl);
  PGresult *r = PQexec(m, "create table users (id serial primary key, email text unique not null)");
  CHECK(PQresultStatus(r) == PGRES_COMMAND_OK, "migration: %s", PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(m);
  pgi_template *custom = NULL;
  ok(pgi_template_commit(build, &custom), "commit");
  CHECK(pgi_template_built_here(custom), "commit built it");
  pgi_template *again = NULL;
  expect_error(pgi_template_commit(build, &again), PGI_CODE_CLOSED, "second commit");
  pgi_template_build_free(build);
  pgi_schema *c = NULL;
  ok(pgi_schema_acquire(engine, custom, PGI_CSTR("c.feature"), PGI_CSTR("custom"), (pgi_str){NULL, 0}, &c), "acquire c");
  char *uc = NULL, *nc = NULL;
  ok(pgi_schema_url(c, &uc), "url c");
  ok(pgi_schema_name(c, &nc), "name c");
  char *sc = current_schema(uc);
  CHECK(strcmp(sc, nc) == 0, "custom template schema: %s want %s", sc, nc);

  /* After fork the parent's engine is refused; a new engine in the child works. The child
   * reports through a pipe: its exit status under valgrind also counts memory held by the
   * parent's threads, which do not exist after fork (run with --child-silent-after-fork). */
  int result_pipe[2];
  CHECK(pipe(result_pipe) == 0, "pipe");
  fflush(NULL);
  pid_t child = fork();
  if (child == 0) {
    close(result_pipe[0]);
    pgi_schema *x = NULL;
    pgi_error *e = pgi_schema_acquire(engine, tpl, PGI_CSTR("fork"), PGI_CSTR("parent engine"), (pgi_str){NULL, 0}, &x);
    int bad = !(e && pgi_error_code(e) == PGI_CODE_CLOSED);
    pgi_error_free(e);
    pgi_engine *mine = NULL;
    pgi_template *t2 = NULL;
    e = pgi_engine_new(NULL, &mine);
    if (!e) e = pgi_template_from_dir(mine, migrations, &t2);
    if (!e) e = pgi_schema_acquire(mine, t2, PGI_CSTR("fork"), PGI_CSTR("child engine"), (pgi_str){NULL, 0}, &x);
    if (!e) e = pgi_schema_release(x, false, NULL);
    if (e) {
      fprintf(stderr, "child: [%d] %s\n", (int)pgi_error_code(e), pgi_error_message(e));
      bad = 1;
    }
    pgi_error_free(e);
    pgi_schema_free(x);
    pgi_template_free(t2);
    pgi_engine_free(mine);
    char verdict = bad ? 'F' : 'P';
    ssize_t w = write(result_pipe[1], &verdict, 1);
    _exit(w == 1 ? 0 : 1);
  }
  close(result_pipe[1]);
  char verdict = 0;
  ssize_t got = read(result_pipe[0], &verdict, 1);
  close(result_pipe[0]);
  waitpid(child, NULL, 0);
  CHECK(got == 1 && verdict == 'P', "forked child failed (verdict %c)", got == 1 ? verdict : '?');

  size_t dropped = 99;
  ok(pgi_engine_gc(engine, 0, &dropped), "gc");
  CHECK(dropped == 0, "gc dropped %zu schemas of a live engine", dropped);

  pgi_schema_free(a);
  pgi_schema_free(b); /* never released: released in the background, waited for by close */
  pgi_schema_free(c);
  ok(pgi_engine_close(engine), "close");
  ok(pgi_engine_close(engine), "close again");
  expect_error(pgi_schema_acquire(engine, tpl, PGI_CSTR("f"), PGI_CSTR("s"), (pgi_str){NULL, 0}, &untouched),
               PGI_CODE_CLOSED, "acquire after close");
  pgi_template_free(tpl);
  pgi_template_free(custom);
  pgi_engine_free(engine);
  pgi_engine_free(NULL);
  pgi_schema_free(NULL);
  pgi_string_free(NULL);
  pgi_error_free(NULL);
  free(sa);
  free(sb);
  free(sc);
  pgi_string_free(na);
  pgi_string_free(nb);
  pgi_string_free(nc);
  pgi_string_free(ua);
  pgi_string_free(uc);
  pgi_string_free(kb);
  pgi_string_free(key);
  pgi_string_free(after);
  pgi_string_free(burl);
}

/* Runs one statement through libpq; returns 1 when it succeeded, else copies the error. */
static int exec_sql(const char *dsn, const char *sql, char *errbuf, size_t errlen) {
  PGconn *conn = PQconnectdb(dsn);
  PGresult *r = PQexec(conn, sql);
  int good = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!good && errbuf) snprintf(errbuf, errlen, "%s", PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(conn);
  return good;
}

/* Caller-run builds keyed by their inputs, a failed build reported with pgi_template_build_fail,
 * and warnings taken by the caller instead of printed. */
static void caller_builds(const char *migrations) {
  pgi_config *cfg = NULL;
  ok(pgi_config_new(&cfg), "config");
  ok(pgi_config_set(cfg, "gc_on_start", "false"), "gc_on_start");
  ok(pgi_config_set(cfg, "collect_warnings", "true"), "collect_warnings");
  /* public in the tail by choice (a superuser's default leaves a writable public out). */
  ok(pgi_config_set(cfg, "search_path_tail", "public"), "search_path_tail");
  expect_error(pgi_config_set(cfg, "collect_warnings", "yes please"), PGI_CODE_CONFIG, "collect_warnings bad");
  pgi_engine *engine = NULL;
  ok(pgi_engine_new(cfg, &engine), "engine");
  pgi_config_free(cfg);
  char *admin = NULL;
  ok(pgi_engine_url(engine, &admin), "engine url");

  /* The inputs: a directory of its own, so that this run's key is new. */
  char dir[] = "/tmp/pgi-c-inputsXXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char file[256], table[64], sql[256];
  snprintf(file, sizeof file, "%s/001.sql", dir);
  snprintf(table, sizeof table, "c_shadow_%ld", (long)getpid());
  FILE *f = fopen(file, "w");
  fprintf(f, "create table %s (id int);\n", table);
  fclose(f);
  const char *inputs[] = {dir, migrations};

  pgi_template *ready = NULL, *tpl = NULL;
  pgi_template_build *build = NULL;
  expect_error(pgi_template_begin_inputs(engine, "", NULL, 2, &ready, &build), PGI_CODE_NULL_ARGUMENT,
               "NULL inputs with a count");
  const char *missing[] = {"/nonexistent/pgi-inputs"};
  expect_error(pgi_template_begin_inputs(engine, "", missing, 1, &ready, &build), PGI_CODE_IO, "missing input");

  /* 1. The tool fails: the error carries its message, nothing is published. */
  ok(pgi_template_begin_inputs(engine, "c-tool", inputs, 2, &ready, &build), "begin inputs");
  CHECK(ready == NULL && build != NULL, "new inputs must need a build");
  char *burl = NULL, errbuf[512] = "";
  ok(pgi_template_build_url(build, &burl), "build url");
  CHECK(!exec_sql(burl, "select no_such_function()", errbuf, sizeof errbuf), "the failing migration succeeded");
  pgi_error *failed = pgi_template_build_fail(build, "c-tool up", errbuf);
  CHECK(failed != NULL && pgi_error_code(failed) == PGI_CODE_MIGRATION, "build_fail: not a MIGRATION error");
  CHECK(failed && strstr(pgi_error_message(failed), "no_such_function") && strstr(pgi_error_message(failed), "c-tool up"),
        "build_fail message: %s", failed ? pgi_error_message(failed) : "(null)");
  pgi_error_free(failed);
  expect_error(pgi_template_build_fail(build, "again", "x"), PGI_CODE_CLOSED, "fail twice");
  pgi_template_build_free(build);
  pgi_string_free(burl);

  /* 2. Same inputs: built now, since the failed build published nothing. */
  ok(pgi_template_begin_inputs(engine, "c-tool", inputs, 2, &ready, &build), "begin inputs again");
  CHECK(ready == NULL && build != NULL, "a failed build must not be published");
  ok(pgi_template_build_url(build, &burl), "build url");
  snprintf(sql, sizeof sql, "create table %s (id int)", table);
  CHECK(exec_sql(burl, sql, errbuf, sizeof errbuf), "migration: %s", errbuf);
  ok(pgi_template_commit(build, &tpl), "commit");
  pgi_template_build_free(build);
  pgi_string_free(burl);

  /* 3. Same inputs: ready. Changed inputs: a new build. */
  ok(pgi_template_begin_inputs(engine, "c-tool", inputs, 2, &ready, &build), "begin inputs, third");
  CHECK(ready != NULL && build == NULL, "unchanged inputs must reuse the template");
  pgi_template_free(ready);
  f = fopen(file, "a");
  fprintf(f, "-- changed\n");
  fclose(f);
  ok(pgi_template_begin_inputs(engine, "c-tool", inputs, 2, &ready, &build), "begin changed inputs");
  CHECK(ready == NULL && build != NULL, "changed inputs must need a new build");
  pgi_template_build_free(build);

  /* A table of the template also in public: acquire warns, and the warning is collected. */
  snprintf(sql, sizeof sql, "create table public.%s (id int)", table);
  CHECK(exec_sql(admin, sql, errbuf, sizeof errbuf), "public table: %s", errbuf);
  char *none = NULL; /* what start-up said (public is writable by this role) */
  ok(pgi_engine_take_warnings(engine, &none), "take warnings (start)");
  CHECK(strstr(none, table) == NULL, "warned about %s before acquire: %s", table, none);
  pgi_schema *s = NULL;
  ok(pgi_schema_acquire(engine, tpl, PGI_CSTR("c.feature"), PGI_CSTR("shadowed"), (pgi_str){NULL, 0}, &s), "acquire");
  char *warnings = NULL;
  ok(pgi_engine_take_warnings(engine, &warnings), "take warnings");
  char want[96];
  snprintf(want, sizeof want, "public.%s", table);
  CHECK(strstr(warnings, want) != NULL, "warning naming %s expected, got: %s", want, warnings);
  char *drained = NULL;
  ok(pgi_engine_take_warnings(engine, &drained), "take warnings again");
  CHECK(strcmp(drained, "") == 0, "warnings taken twice: %s", drained);
  snprintf(sql, sizeof sql, "drop table public.%s", table);
  CHECK(exec_sql(admin, sql, errbuf, sizeof errbuf), "drop public table: %s", errbuf);

  ok(pgi_schema_release(s, false, NULL), "release");
  pgi_schema_free(s);
  pgi_template_free(tpl);
  ok(pgi_engine_close(engine), "close");
  pgi_engine_free(engine);
  remove(file);
  rmdir(dir);
  pgi_string_free(none);
  pgi_string_free(warnings);
  pgi_string_free(drained);
  pgi_string_free(admin);
}

/* A build that reaches outside its schema (tests/outside/audit, and a caller's build making a
 * schema of its own) is refused with a MIGRATION error naming each object; nothing is left. */
static void outside_builds(const char *vectors) {
  char audit[1024], key[64], sql[512], errbuf[512] = "";
  snprintf(audit, sizeof audit, "%s/../outside/audit", vectors);
  pgi_config *cfg = NULL;
  ok(pgi_config_new(&cfg), "config");
  ok(pgi_config_set(cfg, "gc_on_start", "false"), "gc_on_start");
  pgi_engine *engine = NULL;
  ok(pgi_engine_new(cfg, &engine), "engine");
  pgi_config_free(cfg);
  char *admin = NULL;
  ok(pgi_engine_url(engine, &admin), "engine url");

  pgi_template *tpl = NULL;
  pgi_error *err = pgi_template_from_dir(engine, audit, &tpl);
  CHECK(err != NULL && pgi_error_code(err) == PGI_CODE_MIGRATION, "the audit build must be a MIGRATION error");
  const char *wants[] = {"schema audit: created by the build; dropped", "table audit.events: created by the build; dropped",
                         "table public.settings: created by the build; dropped",
                         "function audit.log_user(): created by the build; dropped", "PGISOLATE_ISOLATION=database"};
  for (size_t i = 0; err && i < sizeof wants / sizeof wants[0]; i++)
    CHECK(strstr(pgi_error_message(err), wants[i]) != NULL, "'%s' missing from: %s", wants[i], pgi_error_message(err));
  CHECK(tpl == NULL, "a refused build wrote its out-parameter");
  pgi_error_free(err);

  pgi_template *ready = NULL;
  pgi_template_build *build = NULL;
  snprintf(key, sizeof key, "c-outside-%ld", (long)getpid());
  ok(pgi_template_begin(engine, key, &ready, &build), "begin");
  CHECK(ready == NULL && build != NULL, "a new key must build");
  char *burl = NULL;
  ok(pgi_template_build_url(build, &burl), "build url");
  snprintf(sql, sizeof sql, "create table users (id int); create schema audit_c_%ld", (long)getpid());
  CHECK(exec_sql(burl, sql, errbuf, sizeof errbuf), "migration: %s", errbuf);
  err = pgi_template_commit(build, &tpl);
  snprintf(sql, sizeof sql, "schema audit_c_%ld: created by the build; dropped", (long)getpid());
  CHECK(err != NULL && pgi_error_code(err) == PGI_CODE_MIGRATION && strstr(pgi_error_message(err), sql),
        "the caller's build must be refused naming its schema: %s", err ? pgi_error_message(err) : "(success)");
  pgi_error_free(err);
  pgi_template_build_free(build);
  pgi_string_free(burl);

  snprintf(sql, sizeof sql,
           "do $$ begin if to_regnamespace('audit') is not null or to_regnamespace('audit_c_%ld') is not null "
           "or to_regclass('public.settings') is not null then raise exception 'a refused build left objects'; "
           "end if; end $$",
           (long)getpid());
  CHECK(exec_sql(admin, sql, errbuf, sizeof errbuf), "%s", errbuf);
  ok(pgi_engine_close(engine), "close");
  pgi_engine_free(engine);
  pgi_string_free(admin);
}

/* isolation=database: the audit migration set (a second schema fed by a trigger, a table in
 * public) gets a database per test; two tests register the same email, each sees its own
 * audit row and its own public.settings; released databases are dropped. */
static void database_isolation(const char *vectors) {
  char audit[1024], errbuf[512] = "", sql[512];
  snprintf(audit, sizeof audit, "%s/../outside/audit", vectors);
  pgi_config *cfg = NULL;
  ok(pgi_config_new(&cfg), "config");
  ok(pgi_config_set(cfg, "gc_on_start", "false"), "gc_on_start");
  ok(pgi_config_set(cfg, "isolation", "database"), "isolation=database");
  pgi_engine *engine = NULL;
  ok(pgi_engine_new(cfg, &engine), "engine (database isolation)");
  pgi_config_free(cfg);
  char *admin = NULL;
  ok(pgi_engine_url(engine, &admin), "engine url");
  pgi_template *tpl = NULL;
  ok(pgi_template_from_dir(engine, audit, &tpl), "the audit template database");
  pgi_schema *dbs[2] = {NULL, NULL};
  char *names[2] = {NULL, NULL};
  for (int i = 0; i < 2; i++) {
    char scenario[32];
    snprintf(scenario, sizeof scenario, "registers alice %d", i);
    ok(pgi_schema_acquire(engine, tpl, PGI_CSTR("c.database"), PGI_CSTR(scenario), (pgi_str){NULL, 0}, &dbs[i]),
       "acquire a database");
    char *url = NULL;
    ok(pgi_schema_url(dbs[i], &url), "database url");
    ok(pgi_schema_name(dbs[i], &names[i]), "database name");
    CHECK(exec_sql(url,
                   "insert into users (email) values ('alice@example.com'); "
                   "insert into public.settings (k, v) values ('c', 'x'); "
                   "do $$ begin if (select count(*) from audit.events) <> 1 or (select count(*) from public.settings) <> 1 "
                   "or current_database() not like 'test\\_%' then raise exception 'not isolated'; end if; end $$",
                   errbuf, sizeof errbuf),
          "database %d: %s", i, errbuf);
    pgi_string_free(url);
  }
  CHECK(strcmp(names[0], names[1]) != 0, "two tests, two databases");
  for (int i = 0; i < 2; i++) {
    ok(pgi_schema_release(dbs[i], false, NULL), "release the database");
    pgi_schema_free(dbs[i]);
  }
  snprintf(sql, sizeof sql,
           "do $$ begin if exists (select 1 from pg_database where datname in ('%s', '%s')) then "
           "raise exception 'a released database is left'; end if; end $$",
           names[0], names[1]);
  CHECK(exec_sql(admin, sql, errbuf, sizeof errbuf), "%s", errbuf);
  pgi_string_free(names[0]);
  pgi_string_free(names[1]);
  pgi_template_free(tpl);
  ok(pgi_engine_close(engine), "close");
  pgi_engine_free(engine);
  pgi_string_free(admin);
}

/* tests/vectors/errors.json: a failed login, a missing table and a lock timeout give the kind
 * and the server's SQLSTATE; every kind's number is the header's. */
static void error_vectors(const char *dir) {
  json_t *doc = load(dir, "errors.json");
  static const struct { const char *name; pgi_code code; } header[] = {
      {"PGI_CODE_CONFIG", PGI_CODE_CONFIG},       {"PGI_CODE_CONNINFO", PGI_CODE_CONNINFO},
      {"PGI_CODE_BINARIES", PGI_CODE_BINARIES},   {"PGI_CODE_SERVER", PGI_CODE_SERVER},
      {"PGI_CODE_CONNECT", PGI_CODE_CONNECT},     {"PGI_CODE_DB", PGI_CODE_DB},
      {"PGI_CODE_MIGRATION", PGI_CODE_MIGRATION}, {"PGI_CODE_IO", PGI_CODE_IO},
      {"PGI_CODE_TIMEOUT", PGI_CODE_TIMEOUT},     {"PGI_CODE_NAME", PGI_CODE_NAME},
      {"PGI_CODE_REFUSED", PGI_CODE_REFUSED},     {"PGI_CODE_CLOSED", PGI_CODE_CLOSED},
      {"PGI_CODE_INTERNAL", PGI_CODE_INTERNAL},   {"PGI_CODE_CACHE", PGI_CODE_CACHE},
      {"PGI_CODE_LEASE", PGI_CODE_LEASE},         {"PGI_CODE_NULL_ARGUMENT", PGI_CODE_NULL_ARGUMENT},
      {"PGI_CODE_INVALID_UTF8", PGI_CODE_INVALID_UTF8},
  };
  size_t n_header = sizeof header / sizeof header[0], seen = 0, i, j;
  json_t *k;
  const char *lists[] = {"kinds", "abi_only"};
  for (j = 0; j < 2; j++) {
    json_array_foreach(json_object_get(doc, lists[j]), i, k) {
      const char *name = json_string_value(json_object_get(k, "c"));
      int found = 0;
      for (size_t h = 0; h < n_header; h++) {
        if (strcmp(header[h].name, name) == 0) {
          found = 1;
          CHECK((json_int_t)header[h].code == json_integer_value(json_object_get(k, "number")), "%s number", name);
        }
      }
      CHECK(found, "%s is not in the header", name);
      seen++;
    }
  }
  CHECK(seen == n_header, "errors.json lists %zu kinds, the header %zu", seen, n_header);

  pgi_config *cfg = NULL;
  ok(pgi_config_new(&cfg), "config");
  ok(pgi_config_set(cfg, "gc_on_start", "false"), "gc_on_start");
  pgi_engine *engine = NULL;
  ok(pgi_engine_new(cfg, &engine), "engine");
  char *url = NULL;
  ok(pgi_engine_url(engine, &url), "engine url");
  json_t *f;
  json_array_foreach(json_object_get(doc, "failures"), i, f) {
    const char *name = json_string_value(json_object_get(f, "name"));
    pgi_error *e = NULL;
    PGconn *holder = NULL;
    json_t *user = json_object_get(f, "user");
    if (user) {
      /* The server's URL with its user replaced: scheme://user@host... */
      const char *rest = strstr(url, "://") + 3;
      const char *slash = strchr(rest, '/');
      const char *at = strchr(rest, '@');
      const char *host = at && (!slash || at < slash) ? at + 1 : rest;
      char bad[1024];
      snprintf(bad, sizeof bad, "%.*s%s@%s", (int)(rest - url), url, json_string_value(user), host);
      pgi_config *c2 = NULL;
      ok(pgi_config_new(&c2), "config");
      ok(pgi_config_set(c2, "url", bad), "url");
      pgi_engine *e2 = NULL;
      e = pgi_engine_new(c2, &e2);
      pgi_config_free(c2);
      pgi_engine_free(e2);
    } else {
      json_t *lock = json_object_get(f, "lock");
      if (lock) {
        holder = PQconnectdb(url);
        char sql[64];
        snprintf(sql, sizeof sql, "select pg_advisory_lock(%lld)", (long long)json_integer_value(lock));
        PGresult *r = PQexec(holder, sql);
        CHECK(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: hold the lock: %s", name, PQerrorMessage(holder));
        PQclear(r);
      }
      pgi_template *t = NULL;
      e = pgi_template_from_sql(engine, json_string_value(json_object_get(f, "sql")), &t);
      pgi_template_free(t);
    }
    json_int_t want = json_integer_value(json_object_get(f, "kind"));
    const char *want_state = json_string_value(json_object_get(f, "sqlstate"));
    const char *state = e ? pgi_error_sqlstate(e) : NULL;
    CHECK(e != NULL && (json_int_t)pgi_error_code(e) == want, "%s: want code %lld, got %d (%s)", name, (long long)want,
          e ? (int)pgi_error_code(e) : 0, e ? pgi_error_message(e) : "success");
    CHECK(state != NULL && strcmp(state, want_state) == 0, "%s: want SQLSTATE %s, got %s", name, want_state,
          state ? state : "NULL");
    pgi_error_free(e);
    if (holder) PQfinish(holder);
  }
  CHECK(pgi_error_sqlstate(NULL) == NULL, "sqlstate of NULL");
  pgi_string_free(url);
  pgi_engine_free(engine);
  pgi_config_free(cfg);
  json_decref(doc);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s <vectors dir> <migrations dir>\n", argv[0]);
    return 2;
  }
  printf("libpgisolate %s\n", pgi_version());
  naming_vectors(argv[1]);
  conninfo_vectors(argv[1]);
  config_vectors(argv[1]);
  error_vectors(argv[1]);
  engine_cycle(argv[2]);
  caller_builds(argv[2]);
  outside_builds(argv[1]);
  database_isolation(argv[1]);
  int passed = checks - failures;
  printf("%d passed, %d failed\n", passed, failures);
  return failures ? 1 : 0;
}
