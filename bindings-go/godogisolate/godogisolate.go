// Package godogisolate gives every godog scenario its own PostgreSQL schema through a
// pgisolate engine. It is a package of its own so that importing pgisolate does not pull in
// godog.
//
//	sc := func(sc *godog.ScenarioContext) {
//		godogisolate.InstallScenarioHooks(sc, engine, godogisolate.Options{Template: tpl})
//		sc.Step(`^…$`, func(ctx context.Context) error {
//			db, err := sql.Open("pgx", godogisolate.FromContext(ctx).URL())
//			…
//		})
//	}
package godogisolate

import (
	"context"
	"errors"
	"strings"

	"github.com/cucumber/godog"
	"github.com/pgisolate/pgisolate/bindings-go"
)

type ctxKey struct{}

// FromContext is the scenario's schema installed by InstallScenarioHooks, or nil.
func FromContext(ctx context.Context) *pgisolate.Schema {
	s, _ := ctx.Value(ctxKey{}).(*pgisolate.Schema)
	return s
}

// WithSchema returns ctx carrying s (what the Before hook does; useful in your own hooks).
func WithSchema(ctx context.Context, s *pgisolate.Schema) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}

// Options configures InstallScenarioHooks.
type Options struct {
	// Template each scenario's schema is made from (required).
	Template *pgisolate.Template
	// OnStart runs after the schema is acquired: start the app bound to s.URL(), put
	// per-scenario state in the returned context.
	OnStart func(ctx context.Context, s *pgisolate.Schema) (context.Context, error)
	// OnEnd runs before the schema is released, even when a step failed or panicked: stop
	// servers, reset in-memory state, close connections.
	OnEnd func(ctx context.Context, s *pgisolate.Schema) error
}

// ScenarioIdentity is the identity a scenario's schema is named from: the feature file, the
// scenario name, and the pickle's AST node ids (distinct for each Scenario Outline row and for
// same-named scenarios).
func ScenarioIdentity(sc *godog.Scenario) (feature, scenario, discriminator string) {
	return sc.Uri, sc.Name, strings.Join(sc.AstNodeIds, "/")
}

// InstallScenarioHooks gives every scenario of sc its own schema from engine: Before acquires
// it (see FromContext), After releases it, kept per the Keep policy when a step failed. Safe
// with godog.Options{Concurrency: N} and `go test -p N`.
func InstallScenarioHooks(sc *godog.ScenarioContext, engine *pgisolate.Engine, opts Options) {
	sc.Before(func(ctx context.Context, scn *godog.Scenario) (context.Context, error) {
		if opts.Template == nil {
			return ctx, &pgisolate.Error{Code: pgisolate.CodeNullArgument, Message: "godogisolate.Options.Template is nil"}
		}
		f, s, d := ScenarioIdentity(scn)
		schema, err := engine.AcquireRow(opts.Template, f, s, d)
		if err != nil {
			return ctx, err
		}
		ctx = WithSchema(ctx, schema)
		if opts.OnStart != nil {
			next, err := opts.OnStart(ctx, schema)
			if next != nil {
				ctx = next
			}
			if err != nil {
				return ctx, err
			}
		}
		return ctx, nil
	})
	sc.After(func(ctx context.Context, scn *godog.Scenario, stepErr error) (context.Context, error) {
		schema := FromContext(ctx)
		if schema == nil {
			return ctx, nil
		}
		var endErr error
		if opts.OnEnd != nil {
			endErr = callEnd(opts.OnEnd, ctx, schema)
		}
		_, relErr := schema.Finish(stepErr != nil || endErr != nil)
		return ctx, errors.Join(endErr, relErr)
	})
}

func callEnd(f func(context.Context, *pgisolate.Schema) error, ctx context.Context, s *pgisolate.Schema) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &pgisolate.Error{Code: pgisolate.CodeInternal, Message: "panic in OnEnd"}
		}
	}()
	return f(ctx, s)
}
