//! The opaque keyset-pagination cursor: the (created_at, id) of the last record of a page.
//!
//! Clients must not build cursors, so the encoding is versioned base64url text; anything that
//! does not decode to exactly our shape is a 422 on the `cursor` field, never a 500.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use service_common::ApiError;
use uuid::Uuid;

const VERSION: &str = "c1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let text = format!(
            "{VERSION}:{}:{}",
            self.created_at.timestamp_micros(),
            self.id.simple()
        );
        URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(text: &str) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::invalid(
                "cursor",
                "invalid_cursor",
                "the cursor is not one this service issued",
            )
        };
        if text.len() > 128 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.split(':');
        let (Some(VERSION), Some(micros), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        let id = Uuid::try_parse(id).map_err(|_| invalid())?;
        Ok(Self { created_at, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_the_microsecond() {
        let created_at = DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("time");
        let cursor = Cursor {
            created_at,
            id: Uuid::new_v4(),
        };
        let encoded = cursor.encode();
        assert!(
            encoded
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{encoded}"
        );
        assert_eq!(Cursor::decode(&encoded).expect("decode"), cursor);
    }

    #[test]
    fn foreign_or_damaged_cursors_are_field_errors() {
        let good = Cursor {
            created_at: Utc::now(),
            id: Uuid::new_v4(),
        }
        .encode();
        let forged_version = URL_SAFE_NO_PAD.encode(format!("c9:1:{}", Uuid::new_v4().simple()));
        let extra = URL_SAFE_NO_PAD.encode(format!("c1:1:{}:x", Uuid::new_v4().simple()));
        let huge_time =
            URL_SAFE_NO_PAD.encode(format!("c1:{}:{}", i64::MAX, Uuid::new_v4().simple()));
        for bad in [
            "",
            "!!!",
            "abc",
            &good[..good.len() - 3],
            &forged_version,
            &extra,
            &huge_time,
            &"A".repeat(500),
        ] {
            let err = Cursor::decode(bad).expect_err(bad);
            assert_eq!(
                (err.code.as_ref(), err.field.as_deref()),
                ("invalid_cursor", Some("cursor")),
                "{bad}"
            );
        }
    }
}
