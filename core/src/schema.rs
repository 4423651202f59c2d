//! A schema handed to one test.

use std::sync::Arc;

use crate::engine::{Inner, Released};
use crate::error::{Error, Result};
use crate::naming::{self, Identity};

/// An isolated schema: its name, scoped connection strings and cache prefix. Release it with
/// [`Schema::release`] (or [`Schema::finish`] with the test's outcome); dropping it unreleased
/// releases it in the background on the engine's runtime.
#[derive(Debug)]
pub struct Schema {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) conninfo: String,
    pub(crate) cache_prefix: String,
    pub(crate) search_path: String,
    pub(crate) identity: Identity,
    pub(crate) template_fp: Option<String>,
    pub(crate) role: Option<String>,
    pub(crate) engine: Option<Arc<Inner>>,
}

impl Schema {
    /// The schema's name (`[a-z0-9_]`, at most 63 bytes).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `postgres://` URL whose sessions land in this schema (`options=-c search_path=…`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same connection as a libpq key/value string.
    pub fn conninfo(&self) -> &str {
        &self.conninfo
    }

    /// A Prisma-style URL (`?schema=<name>`).
    pub fn prisma_url(&self) -> Result<String> {
        crate::conninfo::prisma_url(&self.url, &self.name)
    }

    /// A SQLAlchemy URL for this schema, `postgresql+<driver>://…` (psycopg or psycopg2: the
    /// search_path travels in `options`, which both pass to libpq).
    pub fn sqlalchemy_url(&self, driver: &str) -> Result<String> {
        crate::conninfo::sqlalchemy_url(&self.url, driver)
    }

    /// The cache-key prefix (`<hex>_`).
    pub fn cache_prefix(&self) -> &str {
        &self.cache_prefix
    }

    /// A cache key in this schema's namespace: `<hex>_<key>`.
    pub fn cache_key(&self, key: &str) -> String {
        naming::cache_key(&self.cache_prefix, key)
    }

    /// The `search_path` its sessions get (`<name>, <tail>…`), for drivers that take settings
    /// instead of startup `options` (asyncpg's `server_settings`).
    pub fn search_path(&self) -> &str {
        &self.search_path
    }

    /// The LOGIN role the handed-out strings use, with [`crate::Config::login_role`].
    pub fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// The `application_name` its sessions get (`pgisolate/<name>`).
    pub fn application_name(&self) -> String {
        crate::conninfo::application_name(&self.name)
    }

    /// What this schema isolates.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The hand-out check: connects with [`Schema::url`] the way a test would and confirms
    /// that `current_schema()` is this schema. Fails fast with a clear message when the schema
    /// is gone or the connection lands elsewhere (a pooler that drops startup options, a
    /// search_path override), instead of letting the test write into `public`.
    pub async fn verify(&self) -> Result<()> {
        let client = crate::admin::connect(&self.url, &crate::conninfo::application_name(&self.name)).await?;
        let current: Option<String> = client
            .query_one("select current_schema()::text", &[])
            .await
            .map_err(|e| Error::db("check where the handed-out connection lands", e))?
            .get(0);
        if current.as_deref() == Some(self.name.as_str()) {
            return Ok(());
        }
        Err(Error::Refused(format!(
            "hand-out check failed: a connection with the URL of schema {} lands in {} (the schema was dropped, \
             or something between the test and PostgreSQL ignores the startup options, such as PgBouncer); \
             refusing to let the test write elsewhere",
            self.name,
            current.map(|c| format!("schema {c:?}")).unwrap_or_else(|| "no schema at all".into())
        )))
    }

    /// Releases the schema after a passing test (dropped unless the keep policy is `always`).
    pub async fn release(self) -> Result<Released> {
        self.finish(false).await
    }

    /// Releases the schema given the test's outcome; the keep policy decides keep or drop.
    pub async fn finish(mut self, failed: bool) -> Result<Released> {
        let inner = self.engine.take().ok_or_else(|| Error::Closed("schema already released".into()))?;
        let recycle = self.template_fp.as_deref();
        inner.release(&self.name, &self.identity.display(), failed, recycle, self.role.as_deref()).await
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let Some(inner) = self.engine.take() else { return };
        let name = std::mem::take(&mut self.name);
        let identity = self.identity.display();
        let recycle = self.template_fp.take();
        let role = self.role.take();
        let failed = std::thread::panicking();
        inner.begin_background();
        let rt = inner.runtime.clone();
        rt.spawn(async move {
            let r = recycle.as_deref();
            if let Err(e) = inner.release(&name, &identity, failed, r, role.as_deref()).await {
                if inner.is_closed() {
                    inner.warn(&format!(
                        "schema {name} was still held when the engine closed; gc will drop it once this process is gone"
                    ));
                } else {
                    inner.warn(&format!("background release of {name} failed (gc will retry): {e}"));
                }
            }
            inner.end_background();
        });
    }
}
