//! A schema handed to one test.

use std::future::Future;
use std::pin::Pin;

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
    /// The owner key (lease) it was handed out under.
    pub(crate) owner: i32,
    /// What releases it: all a schema knows of its engine.
    pub(crate) releaser: Option<Box<dyn Releaser>>,
}

/// What a release needs to know about a schema.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    pub(crate) name: String,
    pub(crate) identity: String,
    /// The template it came from, when it may be recycled into that template's pool.
    pub(crate) template_fp: Option<String>,
    pub(crate) role: Option<String>,
    /// The owner key it was handed out under: when that lease was fenced, the schema is lost.
    pub(crate) owner: i32,
}

/// The narrow handle a [`Schema`] holds on its engine: release now, or in the background
/// (when it is dropped unreleased).
pub(crate) trait Releaser: Send + Sync + std::fmt::Debug {
    fn release(&self, ticket: Ticket, failed: bool) -> Pin<Box<dyn Future<Output = Result<Released>> + Send + '_>>;
    fn release_in_background(&self, ticket: Ticket, failed: bool);
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
    /// Releasing twice is not possible (it consumes the schema); a binding's second release
    /// does nothing.
    pub async fn finish(mut self, failed: bool) -> Result<Released> {
        let releaser = self.releaser.take().ok_or_else(|| Error::Closed("schema already released".into()))?;
        releaser.release(self.ticket(), failed).await
    }

    fn ticket(&mut self) -> Ticket {
        Ticket {
            name: std::mem::take(&mut self.name),
            identity: self.identity.display(),
            template_fp: self.template_fp.take(),
            role: self.role.take(),
            owner: self.owner,
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Some(releaser) = self.releaser.take() {
            releaser.release_in_background(self.ticket(), std::thread::panicking());
        }
    }
}

/// How a release ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The schema was dropped (or renamed away and queued for a background drop).
    Dropped,
    /// Its DDL was unchanged: its data was reset and it went back to the warm pool.
    Recycled,
    /// The keep policy kept it (`pgisolate ls` shows it; `pgisolate gc --kept` drops it).
    Kept,
}
