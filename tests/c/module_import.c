// Imports the C ABI as the Clang module CPgIsolate (include/module.modulemap), the way Swift's
// importer sees it, and calls through it: a module map that does not build fails here.
#pragma clang module import CPgIsolate

#include <stdio.h>
#include <string.h>

static struct pgi_str text(const char *s) {
    struct pgi_str r = {s, strlen(s)};
    return r;
}

int main(void) {
    // tests/vectors/naming.json, case "plain".
    struct pgi_str none = {NULL, 0};
    char *name = NULL;
    struct pgi_error *err = pgi_naming_schema_name("test_", 8, text("features/signup.feature"),
                                                   text("alice registers"), none, &name);
    if (err != NULL) {
        fprintf(stderr, "module import: %s\n", pgi_error_message(err));
        pgi_error_free(err);
        return 1;
    }
    int ok = strcmp(name, "test_3259aa18") == 0;
    printf("module CPgIsolate: pgisolate %s, schema name %s (%s)\n", pgi_version(), name, ok ? "ok" : "WRONG");
    pgi_string_free(name);
    return ok ? 0 : 1;
}
