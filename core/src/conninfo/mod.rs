//! Connection strings: parse a URL or libpq key/value string, scope it to a schema, print it in
//! the same form.
//!
//! Scoping merges `-c search_path=<schema>[,<tail>]` into the existing `options` (replacing any
//! `search_path` already there) and sets `application_name=pgisolate/<schema>`. Two quoting levels
//! are handled: inside `options` a backslash escapes spaces and backslashes (the server splits
//! `options` on white space); around it, URLs percent-encode everything but unreserved
//! characters (libpq does not decode `+` and rejects a bare `=`), and key/value strings use
//! single quotes. Behaviour is pinned by `tests/vectors/conninfo.json`.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::{Error, Result};

mod parse;

use parse::{decode, join_options, parse_kv, parse_url, quote_kv, remove_setting};
pub(crate) use parse::{quote_ident, split_options};

/// Everything but RFC 3986 unreserved characters is encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The two textual forms libpq accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `postgres://…` or `postgresql://…`.
    Url,
    /// `host=… dbname=…`.
    KeyValue,
}

/// One parameter: its decoded key and value, and its original text when untouched.
#[derive(Debug, Clone)]
struct Param {
    key: String,
    value: String,
    raw: Option<String>,
}

/// A parsed connection string that prints back in its own form.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    form: Form,
    /// For URLs: everything before `?`.
    base: String,
    params: Vec<Param>,
}

impl ConnInfo {
    /// Parses a URL or key/value connection string.
    pub fn parse(input: &str) -> Result<ConnInfo> {
        let trimmed = input.trim();
        if let Some((_, rest)) = split_driver(trimmed) {
            // SQLAlchemy's postgresql+psycopg:// (any driver): the same server, in libpq's form.
            return parse_url(&format!("postgresql://{rest}"));
        }
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            parse_url(trimmed)
        } else if trimmed.contains("://") {
            Err(Error::ConnInfo(format!(
                "unsupported connection URL scheme in {}: use postgres:// or postgresql://",
                redact(trimmed)
            )))
        } else if trimmed.is_empty() {
            Err(Error::ConnInfo("empty connection string: give a postgres:// URL or key=value pairs".into()))
        } else {
            parse_kv(trimmed)
        }
    }

    /// The form this string was given in.
    pub fn form(&self) -> Form {
        self.form
    }

    /// The decoded value of a parameter, if present (query parameters only for URLs).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.iter().rev().find(|p| p.key == key).map(|p| p.value.as_str())
    }

    /// Sets a parameter, replacing every earlier occurrence.
    pub fn set(&mut self, key: &str, value: &str) {
        self.params.retain(|p| p.key != key);
        self.params.push(Param { key: key.to_owned(), value: value.to_owned(), raw: None });
    }

    /// Removes `search_path` from `options` (and `options` when nothing else is left): for
    /// strings whose sessions are scoped otherwise (a login role's own default, a database).
    pub(crate) fn drop_search_path(&mut self) {
        let mut tokens = split_options(self.get("options").unwrap_or(""));
        remove_setting(&mut tokens, "search_path");
        if tokens.is_empty() {
            self.params.retain(|p| p.key != "options");
        } else {
            self.set("options", &join_options(&tokens));
        }
    }

    /// Sets `search_path` inside `options`, keeping every other option.
    pub fn set_search_path(&mut self, schemas: &[&str]) {
        let mut tokens = split_options(self.get("options").unwrap_or(""));
        remove_setting(&mut tokens, "search_path");
        tokens.push("-c".to_owned());
        let path: Vec<String> = schemas.iter().map(|s| quote_ident(s)).collect();
        tokens.push(format!("search_path={}", path.join(",")));
        self.set("options", &join_options(&tokens));
    }

    /// Prints the connection string in its original form.
    pub fn to_string_form(&self) -> String {
        match self.form {
            Form::Url => {
                let mut s = self.base.clone();
                for (i, p) in self.params.iter().enumerate() {
                    s.push(if i == 0 { '?' } else { '&' });
                    match &p.raw {
                        Some(raw) => s.push_str(raw),
                        None => {
                            s.push_str(&utf8_percent_encode(&p.key, QUERY_VALUE).to_string());
                            s.push('=');
                            s.push_str(&utf8_percent_encode(&p.value, QUERY_VALUE).to_string());
                        }
                    }
                }
                s
            }
            Form::KeyValue => self
                .params
                .iter()
                .map(|p| p.raw.clone().unwrap_or_else(|| format!("{}={}", p.key, quote_kv(&p.value))))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

impl ConnInfo {
    /// The same connection in key/value form (URL authority and path become `user`,
    /// `password`, `host`, `port`, `dbname`).
    pub fn to_keyvalue(&self) -> Result<ConnInfo> {
        if self.form == Form::KeyValue {
            return Ok(self.clone());
        }
        let rest = self.base.split_once("://").map(|(_, r)| r).unwrap_or("");
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let mut params: Vec<Param> = Vec::new();
        let mut push = |k: &str, v: String| params.push(Param { key: k.to_owned(), value: v, raw: None });
        let (userinfo, hostlist) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        if let Some(ui) = userinfo {
            let (u, p) = match ui.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            if !u.is_empty() {
                push("user", decode(u, &self.base)?);
            }
            if let Some(p) = p {
                push("password", decode(p, &self.base)?);
            }
        }
        let (mut hosts, mut ports) = (Vec::new(), Vec::new());
        for h in hostlist.split(',').filter(|h| !h.is_empty()) {
            let (host, port) = if let Some(r) = h.strip_prefix('[') {
                let end =
                    r.find(']').ok_or_else(|| Error::ConnInfo(format!("unterminated [ in {}", redact(&self.base))))?;
                (&r[..end], r[end + 1..].strip_prefix(':').unwrap_or(""))
            } else {
                match h.rsplit_once(':') {
                    Some((a, b)) => (a, b),
                    None => (h, ""),
                }
            };
            hosts.push(decode(host, &self.base)?);
            ports.push(port.to_owned());
        }
        if !hosts.is_empty() {
            push("host", hosts.join(","));
        }
        if ports.iter().any(|p| !p.is_empty()) {
            push("port", ports.join(","));
        }
        if !path.is_empty() {
            push("dbname", decode(path, &self.base)?);
        }
        let mut ci = ConnInfo { form: Form::KeyValue, base: String::new(), params };
        for p in &self.params {
            ci.set(&p.key, &p.value);
        }
        Ok(ci)
    }

    /// The same connection as a `postgres://` URL. Simple host lists go in the authority;
    /// everything else (socket paths, ports of several hosts) in the query.
    pub fn to_url(&self) -> ConnInfo {
        if self.form == Form::Url {
            return self.clone();
        }
        let enc = |s: &str| utf8_percent_encode(s, QUERY_VALUE).to_string();
        let mut base = String::from("postgres://");
        let mut rest: Vec<Param> = Vec::new();
        let user = self.get("user");
        let password = self.get("password");
        let host = self.get("host").filter(|h| !h.starts_with('/') && !h.contains(','));
        let port = self.get("port").filter(|p| !p.contains(',') && host.is_some());
        if let Some(u) = user {
            base.push_str(&enc(u));
            if let Some(p) = password {
                base.push(':');
                base.push_str(&enc(p));
            }
            base.push('@');
        }
        if let Some(h) = host {
            if h.contains(':') {
                base.push_str(&format!("[{h}]"));
            } else {
                base.push_str(&enc(h));
            }
            if let Some(p) = port {
                base.push(':');
                base.push_str(p);
            }
        }
        base.push('/');
        if let Some(d) = self.get("dbname") {
            base.push_str(&enc(d));
        }
        for p in &self.params {
            let in_base = match p.key.as_str() {
                "user" => user.is_some(),
                "password" => user.is_some() && password.is_some(),
                "host" => host.is_some(),
                "port" => port.is_some(),
                "dbname" => true,
                _ => false,
            };
            if !in_base && !rest.iter().any(|r| r.key == p.key) {
                rest.push(Param { key: p.key.clone(), value: self.get(&p.key).unwrap_or("").to_owned(), raw: None });
            }
        }
        ConnInfo { form: Form::Url, base, params: rest }
    }
}

impl std::fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string_form())
    }
}

/// The application_name given to every session of a schema, so leaked ones can be found.
pub fn application_name(schema: &str) -> String {
    format!("pgisolate/{schema}")
}

/// Scopes a connection string to `schema`: `options=-c search_path=<schema>[,<tail>…]` merged
/// into existing options and `application_name=pgisolate/<schema>`, in the input's form.
pub fn scoped(input: &str, schema: &str, tail: &[String]) -> Result<String> {
    let mut ci = ConnInfo::parse(input)?;
    let mut path: Vec<&str> = vec![schema];
    path.extend(tail.iter().map(String::as_str).filter(|t| !t.is_empty() && *t != schema));
    ci.set_search_path(&path);
    ci.set("application_name", &application_name(schema));
    Ok(ci.to_string_form())
}

/// The input connection string pointed at database `db` (a test's own, in database
/// isolation): its database replaced, no `search_path` in `options` (the database is the unit),
/// and the application_name of `db`. Other options the input carried are kept.
pub(crate) fn for_database(input: &str, db: &str) -> Result<String> {
    let mut ci = ConnInfo::parse(input)?;
    ci.drop_search_path();
    match ci.form {
        Form::Url => {
            // postgres://[userinfo@]hosts[/db]: replace the path.
            let scheme_end = ci.base.find("://").map(|i| i + 3).unwrap_or(0);
            let rest = &ci.base[scheme_end..];
            let hosts_end = rest.find('/').unwrap_or(rest.len());
            ci.base =
                format!("{}{}/{}", &ci.base[..scheme_end], &rest[..hosts_end], utf8_percent_encode(db, QUERY_VALUE));
            ci.params.retain(|p| p.key != "dbname");
        }
        Form::KeyValue => ci.set("dbname", db),
    }
    ci.set("application_name", &application_name(db));
    Ok(ci.to_string_form())
}

/// The input connection string for a login role: user and password replaced, the
/// application_name of the schema set, and no `search_path` in `options` (the role's own
/// default `search_path` scopes its sessions, so poolers that reject startup options work).
/// Other options the input carried are kept.
pub(crate) fn with_role(input: &str, schema: &str, role: &str, password: &str) -> Result<String> {
    let mut ci = ConnInfo::parse(input)?;
    ci.drop_search_path();
    match ci.form {
        Form::Url => {
            // postgres://[userinfo@]hosts[/db]: replace the userinfo.
            let scheme_end = ci.base.find("://").map(|i| i + 3).unwrap_or(0);
            let rest = &ci.base[scheme_end..];
            let auth_end = rest.find('/').unwrap_or(rest.len());
            let hosts_start = rest[..auth_end].rfind('@').map(|i| i + 1).unwrap_or(0);
            ci.base = format!(
                "{}{}:{}@{}",
                &ci.base[..scheme_end],
                utf8_percent_encode(role, QUERY_VALUE),
                utf8_percent_encode(password, QUERY_VALUE),
                &rest[hosts_start..]
            );
            ci.params.retain(|p| p.key != "user" && p.key != "password");
        }
        Form::KeyValue => {
            ci.set("user", role);
            ci.set("password", password);
        }
    }
    ci.set("application_name", &application_name(schema));
    Ok(ci.to_string_form())
}

/// A Prisma-style URL: the input URL with `?schema=<schema>` (replacing any `schema`) and no
/// `options`. Only URLs have this form.
pub fn prisma_url(input: &str, schema: &str) -> Result<String> {
    let mut ci = ConnInfo::parse(input)?;
    if ci.form != Form::Url {
        return Err(Error::ConnInfo("a Prisma-style ?schema= URL needs a postgres:// URL, not key=value pairs".into()));
    }
    ci.params.retain(|p| p.key != "options");
    ci.set("schema", schema);
    Ok(ci.to_string_form())
}

/// A SQLAlchemy-style scheme `postgresql+<driver>://`: the driver and what follows `://`.
fn split_driver(input: &str) -> Option<(&str, &str)> {
    let rest = input.strip_prefix("postgresql+").or_else(|| input.strip_prefix("postgres+"))?;
    let (driver, after) = rest.split_once("://")?;
    (!driver.is_empty() && driver.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')).then_some((driver, after))
}

/// A URL for SQLAlchemy's `create_engine`: `postgresql+<driver>://…` with the same query
/// (the `options` carrying the search_path reach libpq through psycopg and psycopg2).
/// Key/value strings are turned into URLs first.
pub fn sqlalchemy_url(input: &str, driver: &str) -> Result<String> {
    if driver.is_empty() || !driver.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Error::ConnInfo(format!("SQLAlchemy driver name {driver:?} is not valid (psycopg, psycopg2, …)")));
    }
    let url = ConnInfo::parse(input)?.to_url().to_string_form();
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or("");
    Ok(format!("postgresql+{driver}://{rest}"))
}

/// `url` (`scheme://[user[:password]@]rest`) with its password shown as `***`. The userinfo
/// ends at the first of `terminators`; with `lone_user_is_secret`, a user without a password is
/// masked too (Redis takes `redis://password@host`).
pub(crate) fn mask_password(url: &str, terminators: &[char], lone_user_is_secret: bool) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let auth_end = rest.find(terminators).unwrap_or(rest.len());
    match rest[..auth_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]),
            None if lone_user_is_secret => format!("{scheme}://***{}", &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The connection string with its password replaced by `***`, for messages.
pub fn redact(input: &str) -> String {
    if let Some((driver, rest)) = split_driver(input) {
        let r = redact(&format!("postgresql://{rest}"));
        return format!("postgresql+{driver}://{}", r.strip_prefix("postgresql://").unwrap_or(&r));
    }
    if input.starts_with("postgres://") || input.starts_with("postgresql://") {
        return mask_password(input, &['/', '?'], false);
    }
    match parse_kv(input) {
        Ok(mut ci) => {
            for p in ci.params.iter_mut().filter(|p| p.key == "password") {
                p.value = "***".into();
                p.raw = None;
            }
            ci.to_string_form()
        }
        Err(_) => "<unparsable connection string>".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn role_strings_replace_the_user_and_drop_the_search_path() {
        let u = super::with_role(
            "postgres://admin:secret@127.0.0.1:5432/app?options=-c%20search_path%3Dx%20-c%20work_mem%3D8MB&user=admin",
            "test_ab",
            "pgir_1",
            "p w",
        )
        .unwrap();
        assert_eq!(
            u,
            "postgres://pgir_1:p%20w@127.0.0.1:5432/app?options=-c%20work_mem%3D8MB&application_name=pgisolate%2Ftest_ab"
        );
        let k = super::with_role("host=h user=admin options='-c search_path=x'", "test_ab", "pgir_1", "pw").unwrap();
        assert_eq!(k, "host=h user=pgir_1 password=pw application_name=pgisolate/test_ab");
        let bare = super::with_role("postgres://h/db", "s", "r", "p").unwrap();
        assert_eq!(bare, "postgres://r:p@h/db?application_name=pgisolate%2Fs");
    }

    use super::*;

    #[test]
    fn database_strings_replace_the_database_and_drop_the_search_path() {
        let u = super::for_database(
            "postgres://admin:secret@127.0.0.1:5432/app?options=-c%20search_path%3Dx%20-c%20work_mem%3D8MB&sslmode=disable",
            "test_ab",
        )
        .unwrap();
        assert_eq!(
            u,
            "postgres://admin:secret@127.0.0.1:5432/test_ab?sslmode=disable&options=-c%20work_mem%3D8MB&application_name=pgisolate%2Ftest_ab"
        );
        let k = super::for_database("host=h dbname=app user=u", "test_ab").unwrap();
        assert!(k.contains("dbname=test_ab") && !k.contains("dbname=app"), "{k}");
    }

    #[test]
    fn options_round_trip() {
        let toks = split_options(r"-c a=b\ c  -c\ d");
        assert_eq!(toks, vec!["-c", "a=b c", "-c d"]);
        assert_eq!(split_options(&join_options(&toks)), toks);
    }

    #[test]
    fn existing_search_path_is_replaced() {
        let out =
            scoped("host=h options='-c search_path=x -c statement_timeout=5s --search-path=y'", "s1", &[]).unwrap();
        let ci = ConnInfo::parse(&out).unwrap();
        assert_eq!(ci.get("options"), Some("-c statement_timeout=5s -c search_path=s1"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h:5/db"), "postgres://u:***@h:5/db");
        assert_eq!(redact("host=h password='a b'"), "host=h password=***");
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(ConnInfo::parse("").is_err());
        assert!(ConnInfo::parse("mysql://x").is_err());
        assert!(ConnInfo::parse("host=h password='open").is_err());
        assert!(ConnInfo::parse("justtext").is_err());
        assert!(ConnInfo::parse("postgres://h/db?x=%zz").is_err());
    }
}
