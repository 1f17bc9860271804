//! The bearer credential of a request (RFC 6750 §2.1).

use http::header::AUTHORIZATION;
use http::HeaderMap;

use super::JwtRejection;

/// Longest `Authorization` token considered; longer is malformed (and not worth hashing).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The bearer token of a request: `Ok(None)` when there is none, `Err` when the
/// `Authorization` header is a bearer credential we cannot use.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, JwtRejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        // Two credentials: which one would the service think we checked?
        return Err(JwtRejection::Malformed);
    }
    let bytes = value.as_bytes();
    // RFC 6750 §2.1 / RFC 9110 §11.1: the scheme is case-insensitive, then 1*SP.
    if bytes.len() < 7 || !bytes[..6].eq_ignore_ascii_case(b"bearer") || bytes[6] != b' ' {
        // Another scheme (Basic, ...) carries no bearer token.
        return Ok(None);
    }
    let token = std::str::from_utf8(&bytes[7..])
        .map_err(|_| JwtRejection::Malformed)?
        .trim_matches(' ');
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(JwtRejection::Malformed);
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn bearer_token_extraction() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), Ok(None));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwdw=="),
        );
        assert_eq!(bearer_token(&headers), Ok(None));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("bearer abc.def.ghi"),
        );
        assert_eq!(bearer_token(&headers), Ok(Some("abc.def.ghi")));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&headers), Err(JwtRejection::Malformed));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer d.e.f"));
        assert_eq!(bearer_token(&headers), Err(JwtRejection::Malformed));
    }
}
