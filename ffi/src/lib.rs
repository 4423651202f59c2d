//! The pgisolate C ABI.
//!
//! Conventions (see CONTRIBUTING.md): opaque handles with `pgi_<noun>_new`/`_free` pairs (free
//! accepts NULL); a fallible call returns `pgi_error*` (NULL on success) and writes its result
//! through a trailing out-parameter, left untouched on failure; no thread-local last error;
//! input pointers are borrowed for the call; strings returned to the caller are freed with
//! `pgi_string_free` only. Every export is panic-guarded and NULL-checked. Blocking calls run on
//! one library-owned tokio runtime, re-created in a forked child (handles made before a fork
//! belong to the parent and must not be used in the child).
//!
//! One file per handle: `error` (codes, `pgi_error`), `string` (`pgi_str`, the version, the
//! pure helpers), `config`, `engine`, `template` (templates and caller-run builds), `schema`;
//! `guard` holds the helpers every export goes through (the panic guard, argument checks).
#![allow(non_camel_case_types)] // C type names follow the C ABI's pgi_<noun> convention
#![allow(clippy::missing_safety_doc)] // every export documents its pointer contract in prose

mod config;
mod engine;
mod error;
mod guard;
mod schema;
mod string;
mod template;

pub use config::pgi_config;
pub use engine::pgi_engine;
pub use error::{pgi_code, pgi_error};
pub use schema::pgi_schema;
pub use string::pgi_str;
pub use template::{pgi_template, pgi_template_build};

#[cfg(test)]
mod tests {
    /// Every export catches panics: its body goes through `guard` (fallible calls) or
    /// `guard_or` (the rest), directly or through a helper built on them (`free_handle`,
    /// `string_out`, `template_out`).
    #[test]
    fn every_export_is_panic_guarded() {
        let files = [
            include_str!("config.rs"),
            include_str!("engine.rs"),
            include_str!("error.rs"),
            include_str!("schema.rs"),
            include_str!("string.rs"),
            include_str!("template.rs"),
        ];
        let src = files.concat();
        let helpers =
            ["guard(", "guard_or(", "free_handle(", "string_out(", "template_out(", "pgi_template_begin_inputs("];
        let mut unguarded = Vec::new();
        for (i, part) in src.split("extern \"C\" fn ").enumerate().skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let body_start = part.find('{').unwrap_or(0);
            let body: String = part[body_start..].lines().skip(1).take(4).collect::<Vec<_>>().join("\n");
            if !helpers.iter().any(|h| body.contains(h)) {
                unguarded.push(format!("{i}: {name}"));
            }
        }
        let exports = src.matches("extern \"C\" fn ").count();
        assert!(exports >= 40, "the scan found only {exports} exports: a file is missing from the list");
        assert!(unguarded.is_empty(), "exports without a panic guard: {unguarded:?}");
    }
}
