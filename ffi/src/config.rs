//! `pgi_config`: settings by key, as in every binding.

use std::ffi::c_char;

use pgisolate::Config;

use crate::error::pgi_error;
use crate::guard::{check_out, cstr, free_handle, from_core, guard, handle_mut};

/// Engine settings, starting from the `PGISOLATE_*` environment. Owned by the caller: free
/// with `pgi_config_free` (an engine made from it keeps its own copy). One thread at a time.
#[derive(Debug)]
pub struct pgi_config {
    pub(crate) cfg: Config,
}
// ---------------------------------------------------------------------------------------------
// Config

/// Writes a new config read from the `PGISOLATE_*` environment to `*out`. Fails if a variable
/// is invalid.
#[no_mangle]
pub unsafe extern "C" fn pgi_config_new(out: *mut *mut pgi_config) -> *mut pgi_error {
    guard(|| {
        check_out(out, "out")?;
        let cfg = Config::from_env().map_err(from_core)?;
        // SAFETY: checked above.
        unsafe { *out = Box::into_raw(Box::new(pgi_config { cfg })) };
        Ok(())
    })
}

/// Sets one setting by its key, the same keys in every binding and in the environment
/// (`PGISOLATE_<KEY>`, see the settings table (docs/configuration.md)): `url`, `worker`, `isolation`, `prefix`,
/// `hash_len`, `keep`, `search_path_tail`, `extensions`, `pg_bin`, `pg_dump`, `pg_bin_fallback`,
/// `run_id`, `gc_on_start`, `gc_grace`, `template_max_age`, `pool_size`, `recycle`,
/// `max_admin_connections`, `test_connections`, `release_timeout`, `login_role`, `verify`, `redis_url`,
/// `redis_ca_file`, `reuse`, `collect_warnings`. Values are text:
/// durations as `500ms`, `5s`, `2m`; switches as `on`/`off`; lists comma-separated. An empty
/// `url` means the embedded server. A bad key or value is a `CONFIG` error naming it, and the
/// config is left unchanged.
#[no_mangle]
pub unsafe extern "C" fn pgi_config_set(
    config: *mut pgi_config,
    key: *const c_char,
    value: *const c_char,
) -> *mut pgi_error {
    guard(|| {
        // SAFETY: arguments follow the documented contract.
        let (c, key, value) = unsafe { (handle_mut(config, "config")?, cstr(key, "key")?, cstr(value, "value")?) };
        let mut next = c.cfg.clone();
        next.set(key, value).map_err(from_core)?;
        next.validate().map_err(from_core)?;
        c.cfg = next;
        Ok(())
    })
}

/// Frees a config. Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn pgi_config_free(config: *mut pgi_config) {
    // SAFETY: a config from this library or NULL, freed once.
    unsafe { free_handle(config) }
}

#[cfg(test)]
mod tests {
    /// The header's `pgi_config_set` names every setting of the core's table, and no other key.
    #[test]
    fn the_header_lists_every_setting() {
        let header = include_str!("../../include/pgisolate.h");
        let at = header.find("struct pgi_error *pgi_config_set(").unwrap();
        let doc: Vec<&str> = header[..at]
            .lines()
            .rev()
            .take_while(|l| l.starts_with("//"))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let doc = doc.join(" ");
        let list = doc.split("(docs/configuration.md)):").nth(1).and_then(|d| d.split(". Values").next()).unwrap();
        let named: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
        let keys: Vec<&str> = pgisolate::config::SETTINGS.iter().map(|s| s.key).collect();
        assert_eq!(named, keys, "pgi_config_set's doc (ffi/src/lib.rs) lists the settings in the table's order");
    }
}
