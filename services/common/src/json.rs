//! A JSON body extractor whose every failure is an [`ApiError`] in our error shape.
//!
//! axum's own `Json` answers bad input with plain-text bodies; clients of this API branch on
//! `error.code` and `error.field`, so we read the bytes ourselves and classify serde's verdict:
//! unreadable JSON is 400, readable JSON with a wrong, missing or unknown field is 422 naming
//! the field (its path, via `serde_path_to_error`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorKind};

/// `ApiJson<T>` in a handler's arguments: the body, parsed, or a 4xx [`ApiError`].
/// The size limit is axum's `DefaultBodyLimit` layer (413 `payload_too_large`).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                "unsupported_media_type",
                "expected `content-type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorKind::PayloadTooLarge,
                    "payload_too_large",
                    "the request body is too large",
                )
            } else {
                ApiError::bad_request("unreadable_body", "the request body could not be read")
            }
        })?;
        decode(&bytes).map(ApiJson)
    }
}

/// `application/json` and `application/*+json` only. A missing content type, form
/// encodings and `text/plain` are 415: those are exactly what a page on any other site can
/// POST without a CORS preflight (Fetch "CORS-safelisted request-header"), so accepting
/// them would let such a page register accounts or log a browser in. `curl` needs
/// `-H 'content-type: application/json'`, as every example in the README has.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.len() > 5 && subtype.ends_with("+json"))
}

/// Parses `bytes` as one JSON value of type `T` (trailing garbage is an error too).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "malformed_json",
            "the request body is empty",
        ));
    }
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // serde would happily read a struct from an array and blame "[0]"; say what is wrong.
        return Err(match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(_) => ApiError::new(
                ErrorKind::Invalid,
                "invalid_body",
                "the request body must be a JSON object",
            ),
            Err(err) => ApiError::bad_request("malformed_json", format!("malformed JSON: {err}")),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => value,
        Err(err) => return Err(classify(err)),
    };
    if let Err(err) = de.end() {
        return Err(ApiError::bad_request(
            "malformed_json",
            format!("trailing characters after the JSON value: {err}"),
        ));
    }
    Ok(value)
}

fn classify(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => data_error(&path, &inner),
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => {
            ApiError::bad_request("malformed_json", format!("malformed JSON: {inner}"))
        }
    }
}

fn data_error(path: &str, inner: &serde_json::Error) -> ApiError {
    // serde's messages carry the position ("at line 1 column 9"); keep only the reason.
    let text = inner.to_string();
    let reason = text.split(" at line ").next().unwrap_or(&text).to_string();
    let parent = if path == "." { None } else { Some(path) };
    let join = |name: &str| match parent {
        Some(parent) => format!("{parent}.{name}"),
        None => name.to_string(),
    };
    if let Some(name) = backticked(&reason, "unknown field `") {
        // serde_path_to_error already appended the unknown key to the path.
        let field = if path.ends_with(name) {
            path.to_string()
        } else {
            join(name)
        };
        return ApiError::new(
            ErrorKind::Invalid,
            "unknown_field",
            format!("unknown field `{name}`"),
        )
        .with_field(field);
    }
    if let Some(name) = backticked(&reason, "missing field `") {
        return ApiError::new(
            ErrorKind::Invalid,
            "missing_field",
            format!("`{name}` is required"),
        )
        .with_field(join(name));
    }
    let err = ApiError::new(ErrorKind::Invalid, "invalid_field", reason);
    match parent {
        Some(field) => err.with_field(field),
        None => err,
    }
}

fn backticked<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// For `PATCH`: tells "absent" (`None`) from "explicitly null" (`Some(None)`).
/// Use with `#[serde(default, deserialize_with = "json::double_option")]`.
pub fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        artist: String,
        has_insert: Option<bool>,
        #[serde(default, deserialize_with = "double_option")]
        notes: Option<Option<String>>,
    }

    fn err(json: &str) -> ApiError {
        decode::<Body>(json.as_bytes()).expect_err(json)
    }

    #[test]
    fn malformed_json_is_400() {
        for bad in [
            "{",
            "{\"artist\":}",
            "nope",
            "",
            "  ",
            "{\"artist\":\"a\"} trailing",
        ] {
            let e = err(bad);
            assert_eq!(e.kind, ErrorKind::BadRequest, "{bad}: {e:?}");
            assert_eq!(e.code, "malformed_json");
        }
    }

    #[test]
    fn unknown_field_is_422_naming_the_field() {
        let e = err(r#"{"artist":"a","colour":"red"}"#);
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert_eq!(e.code, "unknown_field");
        assert_eq!(e.field.as_deref(), Some("colour"));
    }

    #[test]
    fn missing_and_mistyped_fields_name_the_field() {
        let e = err(r#"{"hasInsert":true}"#);
        assert_eq!(
            (e.code.as_ref(), e.field.as_deref()),
            ("missing_field", Some("artist"))
        );
        let e = err(r#"{"artist":"a","hasInsert":"yes"}"#);
        assert_eq!(
            (e.code.as_ref(), e.field.as_deref()),
            ("invalid_field", Some("hasInsert"))
        );
        assert!(!e.message.contains("line"), "{}", e.message);
        let e = err(r#"[1,2]"#);
        assert_eq!(
            (e.code.as_ref(), e.field.as_deref(), e.kind),
            ("invalid_body", None, ErrorKind::Invalid)
        );
    }

    #[test]
    fn double_option_tells_absent_from_null() {
        let absent: Body = decode(br#"{"artist":"a"}"#).expect("absent");
        assert_eq!(absent.notes, None);
        let null: Body = decode(br#"{"artist":"a","notes":null}"#).expect("null");
        assert_eq!(null.notes, Some(None));
        let set: Body = decode(br#"{"artist":"a","notes":"x"}"#).expect("set");
        assert_eq!(set.notes, Some(Some("x".into())));
    }

    #[test]
    fn json_content_types() {
        let mut headers = HeaderMap::new();
        assert!(
            !is_json(&headers),
            "no content type: a cross-site simple request"
        );
        for (value, ok) in [
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
            ("application/+json", false),
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/jsonx", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().expect("header"));
            assert_eq!(is_json(&headers), ok, "{value}");
        }
    }
}
