package pgisolate

import (
	"context"
	"time"
)

// withContext runs a blocking engine call and returns early with ctx's error when ctx ends
// first; the call then finishes in the background and discard cleans up what it made (a
// schema is released, a template kept for later calls).
func withContext[T any](ctx context.Context, call func() (T, error), discard func(T)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := call()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.err == nil && discard != nil {
				discard(r.v)
			}
		}()
		return zero, ctx.Err()
	}
}

// TemplateContext is Template, returning ctx.Err() when ctx ends first (the build goes on in
// the background and serves later calls).
func (e *Engine) TemplateContext(ctx context.Context, dir string) (*Template, error) {
	return withContext(ctx, func() (*Template, error) { return e.Template(dir) }, nil)
}

// AcquireContext is Acquire, returning ctx.Err() when ctx ends first (a schema made after
// that is released at once).
func (e *Engine) AcquireContext(ctx context.Context, tpl *Template, feature, scenario string) (*Schema, error) {
	return withContext(ctx, func() (*Schema, error) { return e.Acquire(tpl, feature, scenario) },
		func(s *Schema) { _ = s.Release() })
}

// FinishContext is Finish, returning ctx.Err() when ctx ends first (the release goes on in
// the background).
func (s *Schema) FinishContext(ctx context.Context, failed bool) (kept bool, err error) {
	return withContext(ctx, func() (bool, error) { return s.Finish(failed) }, nil)
}

// GCContext is GC, returning ctx.Err() when ctx ends first (gc goes on in the background).
func (e *Engine) GCContext(ctx context.Context, grace time.Duration) (int, error) {
	return withContext(ctx, func() (int, error) { return e.GC(grace) }, nil)
}
