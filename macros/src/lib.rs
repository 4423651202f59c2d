//! `#[pgisolate::test]`: a test that gets its own PostgreSQL schema, with its arguments
//! injected by type. Re-exported by the `pgisolate` crate; see `pgisolate::testing`.
//!
//! ```ignore
//! #[pgisolate::test]
//! async fn registers_alice(db: tokio_postgres::Client) {
//!     db.execute("insert into users (email) values ('alice@example.com')", &[]).await.unwrap();
//! }
//!
//! #[pgisolate::test(migrations = "db/migrations", fixtures("fixtures/users.sql"))]
//! fn sees_the_fixture(schema: &pgisolate::testing::TestSchema) { /* schema.url() … */ }
//! ```

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, LitStr, Pat, Token, Type};

/// The attribute's options: `migrations = "dir"`, `fixtures("a.sql", …)`.
#[derive(Default)]
struct Options {
    migrations: Option<LitStr>,
    fixtures: Vec<LitStr>,
}

impl Parse for Options {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut opts = Options::default();
        while !input.is_empty() {
            let key: syn::Ident = input.parse()?;
            match key.to_string().as_str() {
                "migrations" => {
                    input.parse::<Token![=]>()?;
                    opts.migrations = Some(input.parse()?);
                }
                "fixtures" => {
                    let content;
                    syn::parenthesized!(content in input);
                    let list: Punctuated<LitStr, Token![,]> = content.parse_terminated(|p| p.parse(), Token![,])?;
                    opts.fixtures.extend(list);
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "unknown option `{other}`: #[pgisolate::test] takes `migrations = \"dir\"` and \
                             `fixtures(\"a.sql\", …)`"
                        ),
                    ))
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(opts)
    }
}

/// The last path segment of a type (`TestSchema` for `pgisolate::testing::TestSchema`).
fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// Marks a test that gets its own schema: sync or `async`, its arguments injected by type —
/// `&TestSchema` / `&Schema` (the schema; a sync test may take `TestSchema` by value),
/// `tokio_postgres::Client` (connected
/// to it), `sqlx::PgPool` (feature `sqlx` of pgisolate) or any type implementing
/// `pgisolate::testing::Inject`. Options: `migrations = "dir"` (relative to the crate; default
/// `PGISOLATE_MIGRATIONS` or `./migrations`) and `fixtures("a.sql", …)` (relative to the crate,
/// run in the test's schema after it is made). The schema's identity is the test's module path
/// and name; it is released when the test ends (kept when it failed and `PGISOLATE_KEEP=failed`).
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    let opts = syn::parse_macro_input!(args as Options);
    let func = syn::parse_macro_input!(item as ItemFn);
    match expand(opts, func) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(opts: Options, func: ItemFn) -> syn::Result<TokenStream2> {
    let ItemFn { attrs, vis, sig, block } = func;
    let name = &sig.ident;
    let name_str = name.to_string();
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(sig.generics.span(), "a #[pgisolate::test] function cannot be generic"));
    }
    let is_async = sig.asyncness.is_some();
    let output = &sig.output;
    let migrations = match &opts.migrations {
        Some(dir) => {
            quote! { ::core::option::Option::Some(::core::concat!(::core::env!("CARGO_MANIFEST_DIR"), "/", #dir)) }
        }
        None => quote! { ::core::option::Option::None },
    };
    let fixtures =
        opts.fixtures.iter().map(|f| quote! { ::core::concat!(::core::env!("CARGO_MANIFEST_DIR"), "/", #f) });
    let schema = syn::Ident::new("__pgisolate_schema", Span::mixed_site());
    let mut bindings = Vec::new();
    for arg in &sig.inputs {
        let FnArg::Typed(arg) = arg else {
            return Err(syn::Error::new(arg.span(), "a test function takes no `self`"));
        };
        let pat = &arg.pat;
        if !matches!(&*arg.pat, Pat::Ident(_) | Pat::Wild(_)) {
            return Err(syn::Error::new(arg.pat.span(), "use a plain name for an injected argument"));
        }
        let ty = &arg.ty;
        let span = ty.span();
        let binding = match &**ty {
            Type::Reference(r) if r.mutability.is_none() => match last_segment(&r.elem).as_deref() {
                Some("TestSchema") => quote_spanned! {span=> let #pat: #ty = &#schema; },
                Some("Schema") => quote_spanned! {span=> let #pat: #ty = &*#schema; },
                _ => {
                    return Err(syn::Error::new(
                        span,
                        "by reference a test takes `&TestSchema` or `&Schema`; take other injected values by value",
                    ))
                }
            },
            t if last_segment(t).as_deref() == Some("TestSchema") && !is_async => {
                // Moved into the test: released when the body drops it (or at its end).
                quote_spanned! {span=> let #pat: #ty = #schema; }
            }
            t if last_segment(t).as_deref() == Some("TestSchema") => {
                // Released after the test's runtime (and the connections it drove) is gone.
                return Err(syn::Error::new(span, "an async test takes the schema by reference: `&TestSchema`"));
            }
            t if last_segment(t).as_deref() == Some("Schema") => {
                return Err(syn::Error::new(span, "take `&Schema` or `TestSchema` (which releases it when dropped)"));
            }
            _ if !is_async => {
                return Err(syn::Error::new(
                    span,
                    "injected connections need an `async fn` test (a sync test can take `&TestSchema`)",
                ))
            }
            _ => quote_spanned! {span=>
                let #pat: #ty = <#ty as ::pgisolate::testing::Inject>::inject(&#schema).await;
            },
        };
        bindings.push(binding);
    }
    let acquire = quote! {
        let #schema = ::pgisolate::testing::__private::acquire(
            ::core::module_path!(),
            #name_str,
            #migrations,
            &[#(#fixtures),*],
        );
    };
    // References to the schema are taken inside the body; the schema itself is dropped after
    // the body (and after an async test's runtime, with the connections it drove), on the
    // test's thread, so that a panic in the test keeps it when asked to.
    let body = if is_async {
        quote! {
            #acquire
            ::pgisolate::testing::__private::run(async {
                #(#bindings)*
                #block
            })
        }
    } else {
        quote! {
            #acquire
            #(#bindings)*
            #block
        }
    };
    Ok(quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis fn #name() #output {
            #body
        }
    })
}
