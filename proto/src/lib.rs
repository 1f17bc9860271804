//! Generated gRPC types and stubs for `auth.AuthService` and `records.RecordsService`.

#![allow(clippy::derive_partial_eq_without_eq)]

pub mod auth {
    tonic::include_proto!("auth");
}

pub mod records {
    tonic::include_proto!("records");
}

/// Encoded `FileDescriptorSet` of both protos, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("record_descriptor");

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn descriptor_set_names_both_services_for_reflection() {
        let contains = |needle: &[u8]| {
            FILE_DESCRIPTOR_SET
                .windows(needle.len())
                .any(|window| window == needle)
        };
        for name in [
            &b"auth.proto"[..],
            b"records.proto",
            b"AuthService",
            b"RecordsService",
        ] {
            assert!(
                contains(name),
                "{} missing from descriptor set",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn record_fields_round_trip_keeps_unset_optionals_unset() {
        let fields = records::RecordFields {
            artist: Some("Aphex Twin".into()),
            record_grade: Some(records::Grade::VgPlus as i32),
            ..Default::default()
        };
        let decoded = records::RecordFields::decode(fields.encode_to_vec().as_slice())
            .expect("decode what we encoded");
        assert_eq!(decoded.artist.as_deref(), Some("Aphex Twin"));
        assert_eq!(decoded.record_grade, Some(records::Grade::VgPlus as i32));
        assert_eq!(decoded.name, None, "unset optional must stay unset");
    }
}
