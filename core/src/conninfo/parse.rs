//! Reading and writing the two forms: URLs (percent-decoded) and key/value strings (single
//! quotes), and the tokens of `options` (backslash escapes).

use percent_encoding::percent_decode_str;

use super::{redact, ConnInfo, Form, Param};
use crate::error::{Error, Result};

pub(super) fn parse_url(input: &str) -> Result<ConnInfo> {
    let input = input.split('#').next().unwrap_or(input);
    let (base, query) = match input.find('?') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, ""),
    };
    let mut params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::ConnInfo(format!("query parameter {pair:?} has no '=' in {}", redact(input))))?;
        let key = decode(k, input)?;
        let value = decode(v, input)?;
        params.push(Param { key, value, raw: Some(pair.to_owned()) });
    }
    Ok(ConnInfo { form: Form::Url, base: base.to_owned(), params })
}

pub(super) fn decode(s: &str, whole: &str) -> Result<String> {
    let b = s.as_bytes();
    for (i, _) in s.match_indices('%') {
        if !(i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
            return Err(Error::ConnInfo(format!("invalid percent-encoding in {}", redact(whole))));
        }
    }
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Error::ConnInfo(format!("invalid percent-encoding in {}", redact(whole))))
}

pub(super) fn parse_kv(input: &str) -> Result<ConnInfo> {
    let bad = |why: &str| Error::ConnInfo(format!("cannot parse connection string: {why}"));
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    let mut params = Vec::new();
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() || chars[i] != '=' || key.is_empty() {
            return Err(bad(&format!("expected key=value near {key:?}")));
        }
        i += 1;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '\'' {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(bad(&format!("unterminated quoted value for {key}"))),
                    Some('\\') => {
                        if let Some(c) = chars.get(i + 1) {
                            value.push(*c);
                        }
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
        }
        let raw: String = chars[start..i].iter().collect();
        params.push(Param { key, value, raw: Some(raw) });
    }
    if params.is_empty() {
        return Err(bad("no key=value pairs"));
    }
    Ok(ConnInfo { form: Form::KeyValue, base: String::new(), params })
}

pub(super) fn quote_kv(v: &str) -> String {
    if !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c == '\'' || c == '\\') {
        return v.to_owned();
    }
    let mut s = String::from("'");
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('\'');
    s
}

/// Splits an `options` value the way the server does: on white space, with `\` escaping the
/// next character.
pub(crate) fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            if in_token {
                out.push(std::mem::take(&mut cur));
                in_token = false;
            }
        } else if c == '\\' {
            in_token = true;
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else {
            in_token = true;
            cur.push(c);
        }
    }
    if in_token {
        out.push(cur);
    }
    out
}

pub(super) fn join_options(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| {
            let mut s = String::new();
            for c in t.chars() {
                if c.is_whitespace() || c == '\\' {
                    s.push('\\');
                }
                s.push(c);
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Removes every `-c name=…`, `-cname=…` and `--name=…` for the setting `name`.
pub(super) fn remove_setting(tokens: &mut Vec<String>, name: &str) {
    let is_name = |assign: &str| {
        let key = assign.split('=').next().unwrap_or("");
        key.replace('-', "_").eq_ignore_ascii_case(name)
    };
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if t == "-c" && i + 1 < tokens.len() && is_name(&tokens[i + 1]) {
            i += 2;
            continue;
        }
        if let Some(rest) = t.strip_prefix("--").or_else(|| t.strip_prefix("-c")) {
            if rest.contains('=') && is_name(rest) {
                i += 1;
                continue;
            }
        }
        out.push(t.clone());
        i += 1;
    }
    *tokens = out;
}

/// An identifier as it must appear in `search_path`: bare when plain, else double-quoted.
pub(crate) fn quote_ident(s: &str) -> String {
    if crate::naming::is_plain_identifier(s) {
        s.to_owned()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}
