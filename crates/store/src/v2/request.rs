//! Parsing a `/v2/keys` request the way etcd's `parseKeyRequest` does: query and form body,
//! Go's `strconv.ParseBool`/`ParseUint` rules, and the same error codes and causes.

use axum::http::{HeaderMap, Method, Uri};

use crate::state::error::*;
use crate::state::tree::clean;
use crate::state::{V2Method, V2Request};

/// Go's `URL.Path` after `/v2/keys`: the percent-decoded key.
pub fn decoded_key(uri: &Uri) -> String {
    let rest = uri.path().strip_prefix("/v2/keys").unwrap_or("");
    percent_encoding::percent_decode_str(rest)
        .decode_utf8_lossy()
        .into_owned()
}

/// Go's `r.Form`: body values (for url-encoded POST/PUT/PATCH) first, then the query's.
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn parse(method: &Method, headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Form {
        let mut pairs = Vec::new();
        let form_body = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if form_body && matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            pairs.extend(form_urlencoded::parse(body).into_owned());
        }
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Form { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The first value (or "") — Go's `FormValue`.
    pub fn value(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    fn bool(&self, key: &str, code: u32, cause: &str) -> Result<bool, V2Error> {
        match self.get(key) {
            None => Ok(false),
            Some(v) => parse_bool(v).ok_or_else(|| V2Error::new(code, cause, 0)),
        }
    }

    fn uint(&self, key: &str, cause: &str) -> Result<u64, V2Error> {
        match self.get(key) {
            None => Ok(0),
            Some(v) => parse_uint(v).ok_or_else(|| V2Error::new(INDEX_NAN, cause, 0)),
        }
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(s, 10, 64)`: digits only, no sign.
fn parse_uint(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRequest {
    Get {
        path: String,
        recursive: bool,
        sorted: bool,
    },
    Wait {
        path: String,
        recursive: bool,
        stream: bool,
        since: u64,
    },
    Write(V2Request),
}

/// Parses a keys request; `key` is the decoded URL path after `/v2/keys`.
pub fn parse(
    method: &Method,
    key: &str,
    form: &Form,
    now: i64,
) -> Result<(KeyRequest, bool), V2Error> {
    let path = clean(key);
    let prev_index = form.uint("prevIndex", r#"invalid value for "prevIndex""#)?;
    let since = form.uint("waitIndex", r#"invalid value for "waitIndex""#)?;
    let field = |k: &str| form.bool(k, INVALID_FIELD, &format!(r#"invalid value for "{k}""#));
    let recursive = field("recursive")?;
    let sorted = field("sorted")?;
    let wait = field("wait")?;
    let dir = field("dir")?;
    let quorum = field("quorum")?;
    let stream = field("stream")?;
    if wait && method != Method::GET {
        return Err(V2Error::new(
            INVALID_FIELD,
            r#""wait" can only be used with GET requests"#,
            0,
        ));
    }
    let prev_value = form.value("prevValue").to_string();
    if form.has("prevValue") && prev_value.is_empty() {
        return Err(V2Error::new(
            PREV_VALUE_REQUIRED,
            r#""prevValue" cannot be empty"#,
            0,
        ));
    }
    let no_value = field("noValueOnSuccess")?;
    let ttl = if form.value("ttl").is_empty() {
        None
    } else {
        Some(
            parse_uint(form.value("ttl"))
                .ok_or_else(|| V2Error::new(TTL_NAN, r#"invalid value for "ttl""#, 0))?,
        )
    };
    let prev_exist = match form.get("prevExist") {
        None => None,
        Some(v) => Some(
            parse_bool(v)
                .ok_or_else(|| V2Error::new(INVALID_FIELD, "invalid value for prevExist", 0))?,
        ),
    };
    let refresh = match form.get("refresh") {
        None => false,
        Some(v) => {
            let r = parse_bool(v)
                .ok_or_else(|| V2Error::new(INVALID_FIELD, "invalid value for refresh", 0))?;
            if r && form.has("value") && !form.value("value").is_empty() {
                return Err(V2Error::new(
                    REFRESH_VALUE,
                    "A value was provided on a refresh",
                    0,
                ));
            }
            if r && ttl.is_none() {
                return Err(V2Error::new(REFRESH_TTL_REQUIRED, "No TTL value set", 0));
            }
            r
        }
    };
    let v2method = match *method {
        Method::GET | Method::HEAD if wait => {
            return Ok((
                KeyRequest::Wait {
                    path,
                    recursive,
                    stream,
                    since,
                },
                no_value,
            ));
        }
        Method::GET | Method::HEAD if quorum => V2Method::QuorumGet,
        Method::GET | Method::HEAD => {
            return Ok((
                KeyRequest::Get {
                    path,
                    recursive,
                    sorted,
                },
                no_value,
            ));
        }
        Method::PUT => V2Method::Put,
        Method::POST => V2Method::Post,
        _ => V2Method::Delete,
    };
    let expiration = ttl.map(|t| now.saturating_add((t as i64).saturating_mul(1_000_000_000)));
    Ok((
        KeyRequest::Write(V2Request {
            method: v2method,
            path,
            value: form.value("value").to_string(),
            dir,
            prev_value,
            prev_index,
            prev_exist,
            recursive,
            sorted,
            expiration,
            refresh,
            now,
        }),
        no_value,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: Method, q: &str) -> Result<(KeyRequest, bool), V2Error> {
        let form = Form::parse(&method, &HeaderMap::new(), Some(q), b"");
        parse(&method, "/k", &form, 0)
    }

    #[test]
    fn bad_fields_give_etcds_errors() {
        assert_eq!(p(Method::PUT, "ttl=abc").unwrap_err().code, TTL_NAN);
        assert_eq!(p(Method::PUT, "ttl=-1").unwrap_err().code, TTL_NAN);
        assert_eq!(p(Method::PUT, "prevIndex=x").unwrap_err().code, INDEX_NAN);
        assert_eq!(
            p(Method::GET, "recursive=yes").unwrap_err().cause,
            r#"invalid value for "recursive""#
        );
        assert_eq!(p(Method::PUT, "wait=true").unwrap_err().code, INVALID_FIELD);
        assert_eq!(
            p(Method::PUT, "prevValue=").unwrap_err().code,
            PREV_VALUE_REQUIRED
        );
        assert_eq!(
            p(Method::PUT, "refresh=true").unwrap_err().code,
            REFRESH_TTL_REQUIRED
        );
        assert_eq!(
            p(Method::PUT, "refresh=true&ttl=5&value=x")
                .unwrap_err()
                .code,
            REFRESH_VALUE
        );
        assert_eq!(
            p(Method::PUT, "prevExist=maybe").unwrap_err().code,
            INVALID_FIELD
        );
    }

    #[test]
    fn body_values_win_over_query() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let form = Form::parse(&Method::PUT, &h, Some("value=q"), b"value=b");
        assert_eq!(form.value("value"), "b");
        let (r, _) = parse(&Method::PUT, "/a/../b", &form, 7).unwrap();
        match r {
            KeyRequest::Write(r) => {
                assert_eq!((r.path.as_str(), r.value.as_str(), r.now), ("/b", "b", 7))
            }
            other => panic!("{other:?}"),
        }
    }
}
