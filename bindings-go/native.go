package pgisolate

// The only file that calls C: it wraps every C call the package makes. The flags that find the
// header and the library are in link_dev.go (this repository) or link.go (the release module).

/*
#include <stdlib.h>
#include "pgisolate.h"
*/
import "C"

import (
	"runtime"
	"strings"
	"unsafe"
)

// cString is a C copy of s (NUL-terminated; s must not contain NUL) and its free function.
func cString(s string) (*C.char, func()) {
	p := C.CString(s)
	return p, func() { C.free(unsafe.Pointer(p)) }
}

// cStr is a length-delimited C copy of s (may contain NUL bytes). present=false means absent.
func cStr(s string, present bool) (C.pgi_str, func()) {
	if !present {
		return C.pgi_str{ptr: nil, len: 0}, func() {}
	}
	p := C.CString(s) // copies all len(s) bytes, NULs included, plus a terminator
	return C.pgi_str{ptr: p, len: C.size_t(len(s))}, func() { C.free(unsafe.Pointer(p)) }
}

// takeError converts and frees a pgi_error; nil for NULL.
func takeError(e *C.pgi_error) error {
	if e == nil {
		return nil
	}
	err := &Error{Code: Code(C.pgi_error_code(e)), Message: C.GoString(C.pgi_error_message(e))}
	if s := C.pgi_error_sqlstate(e); s != nil {
		err.SQLState = C.GoString(s)
	}
	C.pgi_error_free(e)
	return err
}

// takeString converts and frees a string returned by the library.
func takeString(s *C.char) string {
	if s == nil {
		return ""
	}
	out := C.GoString(s)
	C.pgi_string_free(s)
	return out
}

func stringCall(f func(out **C.char) *C.pgi_error) (string, error) {
	var out *C.char
	if err := takeError(f(&out)); err != nil {
		return "", err
	}
	return takeString(out), nil
}

func nativeVersion() string { return C.GoString(C.pgi_version()) }

func nativeSchemaName(prefix string, hashLen int, feature, scenario string, discriminator *string) (string, error) {
	p, freeP := cString(prefix)
	defer freeP()
	f, freeF := cStr(feature, true)
	defer freeF()
	s, freeS := cStr(scenario, true)
	defer freeS()
	d, freeD := cStr(deref(discriminator), discriminator != nil)
	defer freeD()
	if hashLen < 0 {
		hashLen = 0
	}
	return stringCall(func(out **C.char) *C.pgi_error {
		return C.pgi_naming_schema_name(p, C.size_t(hashLen), f, s, d, out)
	})
}

func nativeCachePrefix(prefix, schema string) (string, error) {
	p, freeP := cString(prefix)
	defer freeP()
	s, freeS := cString(schema)
	defer freeS()
	return stringCall(func(out **C.char) *C.pgi_error { return C.pgi_naming_cache_prefix(p, s, out) })
}

func nativeCacheKeyFor(prefix, key string) (string, error) {
	p, freeP := cString(prefix)
	defer freeP()
	k, freeK := cStr(key, true)
	defer freeK()
	return stringCall(func(out **C.char) *C.pgi_error { return C.pgi_cache_key_for(p, k, out) })
}

func nativeKeptLine(schema, test, url string) (string, error) {
	s, freeS := cString(schema)
	defer freeS()
	t, freeT := cString(test)
	defer freeT()
	u, freeU := cString(url)
	defer freeU()
	return stringCall(func(out **C.char) *C.pgi_error { return C.pgi_kept_line(s, t, u, out) })
}

func nativeScoped(url, schema, tailCSV string) (string, error) {
	u, freeU := cString(url)
	defer freeU()
	s, freeS := cString(schema)
	defer freeS()
	t, freeT := cString(tailCSV)
	defer freeT()
	return stringCall(func(out **C.char) *C.pgi_error { return C.pgi_conninfo_scoped(u, s, t, out) })
}

func nativePrisma(url, schema string) (string, error) {
	u, freeU := cString(url)
	defer freeU()
	s, freeS := cString(schema)
	defer freeS()
	return stringCall(func(out **C.char) *C.pgi_error { return C.pgi_conninfo_prisma_url(u, s, out) })
}

type nativeEngine = C.pgi_engine
type nativeTemplate = C.pgi_template
type nativeBuild = C.pgi_template_build
type nativeSchema = C.pgi_schema

// nativeConfig is a config from the environment with settings applied (pgi_config_set).
func nativeConfig(settings [][2]string) (*C.pgi_config, error) {
	var cfg *C.pgi_config
	if err := takeError(C.pgi_config_new(&cfg)); err != nil {
		return nil, err
	}
	for _, kv := range settings {
		k, freeK := cString(kv[0])
		v, freeV := cString(kv[1])
		err := takeError(C.pgi_config_set(cfg, k, v))
		freeK()
		freeV()
		if err != nil {
			C.pgi_config_free(cfg)
			return nil, err
		}
	}
	return cfg, nil
}

func nativeCheckSettings(settings [][2]string) error {
	cfg, err := nativeConfig(settings)
	if err == nil {
		C.pgi_config_free(cfg)
	}
	return err
}

func nativeEngineNew(settings [][2]string) (*nativeEngine, error) {
	cfg, err := nativeConfig(settings)
	if err != nil {
		return nil, err
	}
	defer C.pgi_config_free(cfg)
	var e *C.pgi_engine
	if err := takeError(C.pgi_engine_new(cfg, &e)); err != nil {
		return nil, err
	}
	return e, nil
}

func nativeEngineFree(e *nativeEngine) { C.pgi_engine_free(e) }

func nativeEngineURL(e *nativeEngine) (string, error) {
	return stringCall(func(out **C.char) *C.pgi_error { return C.pgi_engine_url(e, out) })
}

func nativeEngineRunID(e *nativeEngine) (string, error) {
	return stringCall(func(out **C.char) *C.pgi_error { return C.pgi_engine_run_id(e, out) })
}

func nativeGC(e *nativeEngine, graceMs uint64) (int, error) {
	var n C.size_t
	if err := takeError(C.pgi_engine_gc(e, C.uint64_t(graceMs), &n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

func nativeTemplateFromDir(e *nativeEngine, dir string) (*nativeTemplate, error) {
	d, freeD := cString(dir)
	defer freeD()
	var t *C.pgi_template
	if err := takeError(C.pgi_template_from_dir(e, d, &t)); err != nil {
		return nil, err
	}
	return t, nil
}

func nativeTemplateFromSQL(e *nativeEngine, sql string) (*nativeTemplate, error) {
	s, freeS := cString(sql)
	defer freeS()
	var t *C.pgi_template
	if err := takeError(C.pgi_template_from_sql(e, s, &t)); err != nil {
		return nil, err
	}
	return t, nil
}

func nativeTemplateBegin(e *nativeEngine, key string, inputs []string) (*nativeTemplate, *nativeBuild, error) {
	k, freeK := cString(key)
	defer freeK()
	var paths **C.char
	if len(inputs) > 0 {
		arr := unsafe.Slice((**C.char)(C.malloc(C.size_t(len(inputs))*C.size_t(unsafe.Sizeof((*C.char)(nil))))), len(inputs))
		for i, in := range inputs {
			arr[i] = C.CString(in)
		}
		defer func() {
			for _, p := range arr {
				C.free(unsafe.Pointer(p))
			}
			C.free(unsafe.Pointer(&arr[0]))
		}()
		paths = &arr[0]
	}
	var t *C.pgi_template
	var b *C.pgi_template_build
	if err := takeError(C.pgi_template_begin_inputs(e, k, paths, C.size_t(len(inputs)), &t, &b)); err != nil {
		return nil, nil, err
	}
	return t, b, nil
}

// nativeBuildFail abandons the build and returns the error to report (the tool's message with
// the engine's hint).
func nativeBuildFail(b *nativeBuild, source, message string) error {
	s, freeS := cString(source)
	defer freeS()
	m, freeM := cString(message)
	defer freeM()
	return takeError(C.pgi_template_build_fail(b, s, m))
}

func nativeTakeWarnings(e *nativeEngine) ([]string, error) {
	s, err := stringCall(func(out **C.char) *C.pgi_error { return C.pgi_engine_take_warnings(e, out) })
	if err != nil || s == "" {
		return nil, err
	}
	return strings.Split(s, "\n"), nil
}

func nativeBuildURL(b *nativeBuild) (string, error) {
	return stringCall(func(out **C.char) *C.pgi_error { return C.pgi_template_build_url(b, out) })
}

func nativeBuildCommit(b *nativeBuild) (*nativeTemplate, error) {
	var t *C.pgi_template
	if err := takeError(C.pgi_template_commit(b, &t)); err != nil {
		return nil, err
	}
	return t, nil
}

func nativeBuildFree(b *nativeBuild) { C.pgi_template_build_free(b) }

func nativeTemplateName(t *nativeTemplate) (string, error) {
	return stringCall(func(out **C.char) *C.pgi_error { return C.pgi_template_name(t, out) })
}

func nativeTemplateBuiltHere(t *nativeTemplate) bool { return bool(C.pgi_template_built_here(t)) }

func nativeTemplateFree(t *nativeTemplate) { C.pgi_template_free(t) }

type schemaInfo struct{ name, url, conninfo, cachePrefix string }

func nativeAcquire(e *nativeEngine, t *nativeTemplate, feature, scenario string, discriminator *string) (*nativeSchema, schemaInfo, error) {
	f, freeF := cStr(feature, true)
	defer freeF()
	s, freeS := cStr(scenario, true)
	defer freeS()
	d, freeD := cStr(deref(discriminator), discriminator != nil)
	defer freeD()
	var sc *C.pgi_schema
	if err := takeError(C.pgi_schema_acquire(e, t, f, s, d, &sc)); err != nil {
		return nil, schemaInfo{}, err
	}
	var info schemaInfo
	var err error
	get := func(f func(*C.pgi_schema, **C.char) *C.pgi_error) string {
		if err != nil {
			return ""
		}
		var v string
		v, err = stringCall(func(out **C.char) *C.pgi_error { return f(sc, out) })
		return v
	}
	info.name = get(func(s *C.pgi_schema, o **C.char) *C.pgi_error { return C.pgi_schema_name(s, o) })
	info.url = get(func(s *C.pgi_schema, o **C.char) *C.pgi_error { return C.pgi_schema_url(s, o) })
	info.conninfo = get(func(s *C.pgi_schema, o **C.char) *C.pgi_error { return C.pgi_schema_conninfo(s, o) })
	info.cachePrefix = get(func(s *C.pgi_schema, o **C.char) *C.pgi_error { return C.pgi_schema_cache_prefix(s, o) })
	if err != nil {
		C.pgi_schema_free(sc)
		return nil, schemaInfo{}, err
	}
	return sc, info, nil
}

func nativeRelease(s *nativeSchema, failed bool) (bool, error) {
	var kept C.bool
	err := takeError(C.pgi_schema_release(s, C.bool(failed), &kept))
	return bool(kept), err
}

func nativeSchemaFree(s *nativeSchema) { C.pgi_schema_free(s) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// keepAlive keeps Go objects holding C handles alive until after a C call returns.
func keepAlive(xs ...any) {
	for _, x := range xs {
		runtime.KeepAlive(x)
	}
}
