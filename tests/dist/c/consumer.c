/* A C program built against the installed tarball with pkg-config: two scenarios, two schemas. */
#include <stdio.h>
#include <string.h>

#include "pgisolate.h"

static int fail(pgi_error *e, const char *what) {
  fprintf(stderr, "%s: %s\n", what, e ? pgi_error_message(e) : "unexpected");
  pgi_error_free(e);
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 2 || strcmp(pgi_version(), argv[1]) != 0) {
    fprintf(stderr, "library version %s, want %s\n", pgi_version(), argc == 2 ? argv[1] : "?");
    return 1;
  }
  pgi_engine *engine = NULL;
  pgi_error *e = pgi_engine_new(NULL, &engine);
  if (e) return fail(e, "engine");
  pgi_template *tpl = NULL;
  if ((e = pgi_template_from_sql(engine, "create table users (id serial primary key, email text unique)", &tpl)))
    return fail(e, "template");
  pgi_schema *a = NULL, *b = NULL;
  if ((e = pgi_schema_acquire(engine, tpl, PGI_CSTR("c.feature"), PGI_CSTR("a"), (pgi_str){NULL, 0}, &a)))
    return fail(e, "acquire a");
  if ((e = pgi_schema_acquire(engine, tpl, PGI_CSTR("c.feature"), PGI_CSTR("b"), (pgi_str){NULL, 0}, &b)))
    return fail(e, "acquire b");
  char *na = NULL, *nb = NULL, *url = NULL;
  if ((e = pgi_schema_name(a, &na)) || (e = pgi_schema_name(b, &nb)) || (e = pgi_schema_url(a, &url)))
    return fail(e, "names");
  int ok = strcmp(na, nb) != 0 && strncmp(na, "test_", 5) == 0 && strstr(url, na) != NULL;
  printf("consumer: %s and %s (%s)\n", na, nb, ok ? "distinct" : "WRONG");
  if ((e = pgi_schema_release(a, false, NULL)) || (e = pgi_schema_release(b, false, NULL))) return fail(e, "release");
  pgi_schema_free(a);
  pgi_schema_free(b);
  pgi_template_free(tpl);
  if ((e = pgi_engine_close(engine))) return fail(e, "close");
  pgi_engine_free(engine);
  pgi_string_free(na);
  pgi_string_free(nb);
  pgi_string_free(url);
  return ok ? 0 : 1;
}
