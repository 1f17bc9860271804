//! The record model and its validation. Both protocols convert their input into [`RawFields`]
//! (present / null / value per field) and get back a validated [`RecordPatch`] or
//! [`RecordData`]; error `field`s use the JSON (camelCase) names.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use service_common::ApiError;
use uuid::Uuid;

/// Goldmine grading scale, best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grade {
    Mint,
    NearMint,
    VeryGoodPlus,
    VeryGood,
    GoodPlus,
    Good,
    Fair,
    Poor,
}

impl Grade {
    pub const ALL: [Grade; 8] = [
        Self::Mint,
        Self::NearMint,
        Self::VeryGoodPlus,
        Self::VeryGood,
        Self::GoodPlus,
        Self::Good,
        Self::Fair,
        Self::Poor,
    ];

    /// The canonical abbreviation, as stored and returned.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mint => "M",
            Self::NearMint => "NM",
            Self::VeryGoodPlus => "VG+",
            Self::VeryGood => "VG",
            Self::GoodPlus => "G+",
            Self::Good => "G",
            Self::Fair => "F",
            Self::Poor => "P",
        }
    }

    /// Accepts the abbreviations and the spelled-out names, in any case and spacing
    /// ("vg+", "Near Mint", "VG Plus"); "EX"/"Excellent" is the common alias of VG+.
    pub fn parse(text: &str) -> Option<Self> {
        let squashed: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
            .flat_map(char::to_uppercase)
            .collect();
        let grade = match squashed.as_str() {
            "M" | "MINT" => Self::Mint,
            "NM" | "NEARMINT" => Self::NearMint,
            "VG+" | "VGPLUS" | "VERYGOOD+" | "VERYGOODPLUS" | "EX" | "EXCELLENT" => {
                Self::VeryGoodPlus
            }
            "VG" | "VERYGOOD" => Self::VeryGood,
            "G+" | "GPLUS" | "GOOD+" | "GOODPLUS" => Self::GoodPlus,
            "G" | "GOOD" => Self::Good,
            "F" | "FAIR" => Self::Fair,
            "P" | "POOR" => Self::Poor,
            _ => return None,
        };
        Some(grade)
    }

    /// `records.Grade` enum number (0 is GRADE_UNSPECIFIED, i.e. no grade).
    pub fn to_proto(self) -> i32 {
        match self {
            Self::Mint => 1,
            Self::NearMint => 2,
            Self::VeryGoodPlus => 3,
            Self::VeryGood => 4,
            Self::GoodPlus => 5,
            Self::Good => 6,
            Self::Fair => 7,
            Self::Poor => 8,
        }
    }

    pub fn from_proto(value: i32) -> Result<Option<Self>, ()> {
        match value {
            0 => Ok(None),
            1..=8 => Ok(Grade::ALL
                .get(usize::try_from(value - 1).map_err(|_| ())?)
                .copied()),
            _ => Err(()),
        }
    }
}

pub const MAX_ARTIST: usize = 500;
pub const MAX_NAME: usize = 500;
pub const MAX_FORMAT: usize = 50;
pub const MAX_CATALOG_NUMBER: usize = 100;
pub const MAX_LABEL: usize = 200;
pub const MAX_NOTES: usize = 5000;

/// A field as the client sent it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Field<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> From<Option<Option<T>>> for Field<T> {
    fn from(value: Option<Option<T>>) -> Self {
        match value {
            None => Self::Absent,
            Some(None) => Self::Null,
            Some(Some(v)) => Self::Value(v),
        }
    }
}

/// A price as sent: JSON allows `"24.99"` (the documented form) and `24.99`.
#[derive(Debug, Clone, PartialEq)]
pub enum PriceInput {
    Text(String),
    Number(String),
    /// Anything else (boolean, object...): rejected with a field error.
    Other,
}

/// Unvalidated writable fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawFields {
    pub artist: Field<String>,
    pub name: Field<String>,
    pub format: Field<String>,
    pub catalog_number: Field<String>,
    pub label: Field<String>,
    pub record_grade: Field<String>,
    pub sleeve_grade: Field<String>,
    pub has_insert: Field<bool>,
    pub has_booklet: Field<bool>,
    pub has_obi_strip: Field<bool>,
    pub has_factory_sleeve: Field<bool>,
    pub is_promo: Field<bool>,
    pub notes: Field<String>,
    pub purchased_at: Field<String>,
    pub price_paid: Field<PriceInput>,
}

/// Every writable field of a record, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordData {
    pub artist: String,
    pub name: String,
    pub format: String,
    pub catalog_number: Option<String>,
    pub label: Option<String>,
    pub record_grade: Option<Grade>,
    pub sleeve_grade: Option<Grade>,
    pub has_insert: bool,
    pub has_booklet: bool,
    pub has_obi_strip: bool,
    pub has_factory_sleeve: bool,
    pub is_promo: bool,
    pub notes: Option<String>,
    pub purchased_at: Option<NaiveDate>,
    pub price_paid: Option<Decimal>,
}

/// Validated changes: `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordPatch {
    pub artist: Option<String>,
    pub name: Option<String>,
    pub format: Option<String>,
    pub catalog_number: Option<Option<String>>,
    pub label: Option<Option<String>>,
    pub record_grade: Option<Option<Grade>>,
    pub sleeve_grade: Option<Option<Grade>>,
    pub has_insert: Option<bool>,
    pub has_booklet: Option<bool>,
    pub has_obi_strip: Option<bool>,
    pub has_factory_sleeve: Option<bool>,
    pub is_promo: Option<bool>,
    pub notes: Option<Option<String>>,
    pub purchased_at: Option<Option<NaiveDate>>,
    pub price_paid: Option<Option<Decimal>>,
}

impl RecordPatch {
    pub fn apply(self, data: &mut RecordData) {
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(value) = self.$field {
                    data.$field = value;
                }
            )*};
        }
        set!(
            artist,
            name,
            format,
            catalog_number,
            label,
            record_grade,
            sleeve_grade,
            has_insert,
            has_booklet,
            has_obi_strip,
            has_factory_sleeve,
            is_promo,
            notes,
            purchased_at,
            price_paid
        );
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: Uuid,
    pub user_id: Uuid,
    pub data: RecordData,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// For create and PUT: artist, name and format must be given; everything else defaults.
pub fn validate_full(raw: RawFields) -> Result<RecordData, ApiError> {
    for (field, present) in [
        ("artist", !matches!(raw.artist, Field::Absent)),
        ("name", !matches!(raw.name, Field::Absent)),
        ("format", !matches!(raw.format, Field::Absent)),
    ] {
        if !present {
            return Err(ApiError::invalid(
                field,
                "missing_field",
                format!("`{field}` is required"),
            ));
        }
    }
    let mut data = RecordData::default();
    validate_patch(raw)?.apply(&mut data);
    Ok(data)
}

/// For PATCH: only the fields present change; `null` clears an optional field.
pub fn validate_patch(raw: RawFields) -> Result<RecordPatch, ApiError> {
    Ok(RecordPatch {
        artist: required_text(raw.artist, "artist", MAX_ARTIST)?,
        name: required_text(raw.name, "name", MAX_NAME)?,
        format: required_text(raw.format, "format", MAX_FORMAT)?,
        catalog_number: optional_text(
            raw.catalog_number,
            "catalogNumber",
            MAX_CATALOG_NUMBER,
            false,
        )?,
        label: optional_text(raw.label, "label", MAX_LABEL, false)?,
        record_grade: grade(raw.record_grade, "recordGrade")?,
        sleeve_grade: grade(raw.sleeve_grade, "sleeveGrade")?,
        has_insert: flag(raw.has_insert, "hasInsert")?,
        has_booklet: flag(raw.has_booklet, "hasBooklet")?,
        has_obi_strip: flag(raw.has_obi_strip, "hasObiStrip")?,
        has_factory_sleeve: flag(raw.has_factory_sleeve, "hasFactorySleeve")?,
        is_promo: flag(raw.is_promo, "isPromo")?,
        notes: optional_text(raw.notes, "notes", MAX_NOTES, true)?,
        purchased_at: date(raw.purchased_at, "purchasedAt")?,
        price_paid: price(raw.price_paid, "pricePaid")?,
    })
}

/// Trimmed; rejects NUL (PostgreSQL text cannot hold it) and, unless `multiline`, every
/// other control character.
fn clean_text(value: &str, field: &str, max: usize, multiline: bool) -> Result<String, ApiError> {
    let value = value.trim();
    let bad =
        |c: char| c == '\0' || (c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')));
    if value.chars().any(bad) {
        return Err(ApiError::invalid(
            field,
            "invalid_characters",
            format!("`{field}` contains control characters"),
        ));
    }
    if value.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            "too_long",
            format!("`{field}` must be at most {max} characters"),
        ));
    }
    Ok(value.to_string())
}

fn required_text(field: Field<String>, name: &str, max: usize) -> Result<Option<String>, ApiError> {
    match field {
        Field::Absent => Ok(None),
        Field::Null => Err(ApiError::invalid(
            name,
            "required_field",
            format!("`{name}` cannot be null"),
        )),
        Field::Value(value) => {
            let value = clean_text(&value, name, max, false)?;
            if value.is_empty() {
                return Err(ApiError::invalid(
                    name,
                    "required_field",
                    format!("`{name}` must not be empty"),
                ));
            }
            Ok(Some(value))
        }
    }
}

/// An empty string clears the field, like `null` (gRPC has no null for strings).
fn optional_text(
    field: Field<String>,
    name: &str,
    max: usize,
    multiline: bool,
) -> Result<Option<Option<String>>, ApiError> {
    match field {
        Field::Absent => Ok(None),
        Field::Null => Ok(Some(None)),
        Field::Value(value) => {
            let value = clean_text(&value, name, max, multiline)?;
            Ok(Some(Some(value).filter(|v| !v.is_empty())))
        }
    }
}

pub fn parse_grade(value: &str, field: &str) -> Result<Grade, ApiError> {
    Grade::parse(value).ok_or_else(|| {
        ApiError::invalid(
            field,
            "invalid_grade",
            format!("`{field}` must be one of M, NM, VG+, VG, G+, G, F, P (Goldmine scale)"),
        )
    })
}

fn grade(field: Field<String>, name: &str) -> Result<Option<Option<Grade>>, ApiError> {
    match field {
        Field::Absent => Ok(None),
        Field::Null => Ok(Some(None)),
        Field::Value(value) if value.trim().is_empty() => Ok(Some(None)),
        Field::Value(value) => parse_grade(&value, name).map(|g| Some(Some(g))),
    }
}

fn flag(field: Field<bool>, name: &str) -> Result<Option<bool>, ApiError> {
    match field {
        Field::Absent => Ok(None),
        Field::Null => Err(ApiError::invalid(
            name,
            "invalid_field",
            format!("`{name}` must be true or false"),
        )),
        Field::Value(value) => Ok(Some(value)),
    }
}

const EARLIEST_PURCHASE: (i32, u32, u32) = (1900, 1, 1);
const LATEST_PURCHASE: (i32, u32, u32) = (2100, 12, 31);

fn date(field: Field<String>, name: &str) -> Result<Option<Option<NaiveDate>>, ApiError> {
    let value = match field {
        Field::Absent => return Ok(None),
        Field::Null => return Ok(Some(None)),
        Field::Value(value) if value.trim().is_empty() => return Ok(Some(None)),
        Field::Value(value) => value,
    };
    let invalid = || {
        ApiError::invalid(
            name,
            "invalid_date",
            format!("`{name}` must be an ISO date, YYYY-MM-DD"),
        )
    };
    let text = value.trim();
    // chrono alone would accept "2024-1-5"; the contract is the fixed-width ISO form.
    if text.len() != 10 {
        return Err(invalid());
    }
    let parsed = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| invalid())?;
    let bound = |(y, m, d): (i32, u32, u32)| NaiveDate::from_ymd_opt(y, m, d);
    if bound(EARLIEST_PURCHASE).is_some_and(|min| parsed < min)
        || bound(LATEST_PURCHASE).is_some_and(|max| parsed > max)
    {
        return Err(ApiError::invalid(
            name,
            "invalid_date",
            format!("`{name}` must be between 1900-01-01 and 2100-12-31"),
        ));
    }
    Ok(Some(Some(parsed)))
}

/// numeric(10,2): at most 8 integer digits and 2 decimals, not negative.
pub fn parse_price(text: &str, field: &str) -> Result<Decimal, ApiError> {
    let invalid =
        |message: &str| ApiError::invalid(field, "invalid_price", format!("`{field}` {message}"));
    let text = text.trim();
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if unsigned.is_empty()
        || !digits(int)
        || !digits(frac)
        || (int.is_empty() && frac.is_empty())
        || (unsigned.contains('.') && frac.is_empty())
    {
        return Err(invalid("must be a decimal amount like \"24.99\""));
    }
    let amount =
        Decimal::from_str(text).map_err(|_| invalid("must be a decimal amount like \"24.99\""))?;
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(invalid("must not be negative"));
    }
    if amount.normalize().scale() > 2 {
        return Err(invalid("must have at most 2 decimal places"));
    }
    if amount >= Decimal::from(100_000_000) {
        return Err(invalid("must be less than 100000000"));
    }
    Ok(amount.abs().round_dp(2))
}

fn price(field: Field<PriceInput>, name: &str) -> Result<Option<Option<Decimal>>, ApiError> {
    match field {
        Field::Absent => Ok(None),
        Field::Null => Ok(Some(None)),
        Field::Value(PriceInput::Text(text)) if text.trim().is_empty() => Ok(Some(None)),
        Field::Value(PriceInput::Text(text) | PriceInput::Number(text)) => {
            parse_price(&text, name).map(|p| Some(Some(p)))
        }
        Field::Value(PriceInput::Other) => Err(ApiError::invalid(
            name,
            "invalid_price",
            format!("`{name}` must be a decimal string like \"24.99\""),
        )),
    }
}

/// Price as the API shows it: always two decimals ("24.90").
pub fn format_price(price: &Decimal) -> String {
    format!("{:.2}", price)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_minimal() -> RawFields {
        RawFields {
            artist: Field::Value("Aphex Twin".into()),
            name: Field::Value("SAW 85-92".into()),
            format: Field::Value("LP".into()),
            ..RawFields::default()
        }
    }

    #[test]
    fn grades_parse_abbreviations_and_names() {
        for (text, grade) in [
            ("M", Grade::Mint),
            ("mint", Grade::Mint),
            ("NM", Grade::NearMint),
            ("Near Mint", Grade::NearMint),
            ("vg+", Grade::VeryGoodPlus),
            ("VG Plus", Grade::VeryGoodPlus),
            ("EX", Grade::VeryGoodPlus),
            ("VG", Grade::VeryGood),
            ("g+", Grade::GoodPlus),
            ("G", Grade::Good),
            ("Fair", Grade::Fair),
            ("p", Grade::Poor),
        ] {
            assert_eq!(Grade::parse(text), Some(grade), "{text}");
        }
        for bad in ["", "A", "VG++", "excellent plus", "10"] {
            assert_eq!(Grade::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn grades_round_trip_through_text_and_proto() {
        for grade in Grade::ALL {
            assert_eq!(Grade::parse(grade.as_str()), Some(grade));
            assert_eq!(Grade::from_proto(grade.to_proto()), Ok(Some(grade)));
        }
        assert_eq!(Grade::from_proto(0), Ok(None));
        assert!(Grade::from_proto(9).is_err());
        assert!(Grade::from_proto(-1).is_err());
    }

    #[test]
    fn minimal_record_gets_defaults() {
        let data = validate_full(raw_minimal()).expect("valid");
        assert_eq!(data.artist, "Aphex Twin");
        assert!(!data.has_insert);
        assert_eq!(data.price_paid, None);
    }

    #[test]
    fn missing_required_fields_are_named() {
        for field in ["artist", "name", "format"] {
            let mut raw = raw_minimal();
            match field {
                "artist" => raw.artist = Field::Absent,
                "name" => raw.name = Field::Absent,
                _ => raw.format = Field::Absent,
            }
            let err = validate_full(raw).expect_err(field);
            assert_eq!(
                (err.code.as_ref(), err.field.as_deref()),
                ("missing_field", Some(field))
            );
        }
    }

    #[test]
    fn every_field_rejects_bad_values_with_its_name() {
        let cases: Vec<(&str, RawFields)> = vec![
            (
                "artist",
                RawFields {
                    artist: Field::Value("  ".into()),
                    ..raw_minimal()
                },
            ),
            (
                "artist",
                RawFields {
                    artist: Field::Null,
                    ..raw_minimal()
                },
            ),
            (
                "artist",
                RawFields {
                    artist: Field::Value("a".repeat(501)),
                    ..raw_minimal()
                },
            ),
            (
                "name",
                RawFields {
                    name: Field::Value("nul\0byte".into()),
                    ..raw_minimal()
                },
            ),
            (
                "format",
                RawFields {
                    format: Field::Value("x".repeat(51)),
                    ..raw_minimal()
                },
            ),
            (
                "catalogNumber",
                RawFields {
                    catalog_number: Field::Value("c".repeat(101)),
                    ..raw_minimal()
                },
            ),
            (
                "label",
                RawFields {
                    label: Field::Value("tab\there".into()),
                    ..raw_minimal()
                },
            ),
            (
                "recordGrade",
                RawFields {
                    record_grade: Field::Value("great".into()),
                    ..raw_minimal()
                },
            ),
            (
                "sleeveGrade",
                RawFields {
                    sleeve_grade: Field::Value("Z".into()),
                    ..raw_minimal()
                },
            ),
            (
                "hasInsert",
                RawFields {
                    has_insert: Field::Null,
                    ..raw_minimal()
                },
            ),
            (
                "hasBooklet",
                RawFields {
                    has_booklet: Field::Null,
                    ..raw_minimal()
                },
            ),
            (
                "hasObiStrip",
                RawFields {
                    has_obi_strip: Field::Null,
                    ..raw_minimal()
                },
            ),
            (
                "hasFactorySleeve",
                RawFields {
                    has_factory_sleeve: Field::Null,
                    ..raw_minimal()
                },
            ),
            (
                "isPromo",
                RawFields {
                    is_promo: Field::Null,
                    ..raw_minimal()
                },
            ),
            (
                "notes",
                RawFields {
                    notes: Field::Value("n".repeat(5001)),
                    ..raw_minimal()
                },
            ),
            (
                "notes",
                RawFields {
                    notes: Field::Value("bell\u{7}".into()),
                    ..raw_minimal()
                },
            ),
            (
                "purchasedAt",
                RawFields {
                    purchased_at: Field::Value("2024-02-30".into()),
                    ..raw_minimal()
                },
            ),
            (
                "purchasedAt",
                RawFields {
                    purchased_at: Field::Value("2024-2-3".into()),
                    ..raw_minimal()
                },
            ),
            (
                "purchasedAt",
                RawFields {
                    purchased_at: Field::Value("1850-01-01".into()),
                    ..raw_minimal()
                },
            ),
            (
                "pricePaid",
                RawFields {
                    price_paid: Field::Value(PriceInput::Text("-1".into())),
                    ..raw_minimal()
                },
            ),
            (
                "pricePaid",
                RawFields {
                    price_paid: Field::Value(PriceInput::Other),
                    ..raw_minimal()
                },
            ),
        ];
        for (field, raw) in cases {
            let err = validate_full(raw.clone()).expect_err(field);
            assert_eq!(err.field.as_deref(), Some(field), "{raw:?} -> {err:?}");
            assert_eq!(err.http_status(), http::StatusCode::UNPROCESSABLE_ENTITY);
        }
    }

    #[test]
    fn notes_keep_newlines_and_empty_optionals_clear() {
        let raw = RawFields {
            notes: Field::Value("line one\nline two".into()),
            label: Field::Value("".into()),
            record_grade: Field::Value("".into()),
            ..raw_minimal()
        };
        let patch = validate_patch(raw).expect("valid");
        assert_eq!(patch.notes, Some(Some("line one\nline two".into())));
        assert_eq!(patch.label, Some(None));
        assert_eq!(patch.record_grade, Some(None));
    }

    #[test]
    fn prices_are_strict_decimals() {
        let ok = |t: &str| parse_price(t, "pricePaid").map(|d| format_price(&d));
        assert_eq!(ok("24.99").as_deref(), Ok("24.99"));
        assert_eq!(ok("24.9").as_deref(), Ok("24.90"));
        assert_eq!(ok("0").as_deref(), Ok("0.00"));
        assert_eq!(ok("24.990").as_deref(), Ok("24.99"));
        assert_eq!(ok("99999999.99").as_deref(), Ok("99999999.99"));
        assert_eq!(ok("-0").as_deref(), Ok("0.00"));
        for bad in [
            "",
            "abc",
            "1e3",
            "1_000",
            "24.999",
            "-0.01",
            "100000000",
            "1.",
            ".",
            "+5",
            "NaN",
            " 1 2",
        ] {
            assert!(parse_price(bad, "pricePaid").is_err(), "{bad}");
        }
    }

    #[test]
    fn patch_applies_only_present_fields() {
        let mut data = validate_full(raw_minimal()).expect("valid");
        data.label = Some("Apollo".into());
        let patch = validate_patch(RawFields {
            name: Field::Value("Selected Ambient Works 85-92".into()),
            label: Field::Null,
            ..RawFields::default()
        })
        .expect("valid");
        patch.apply(&mut data);
        assert_eq!(data.artist, "Aphex Twin");
        assert_eq!(data.name, "Selected Ambient Works 85-92");
        assert_eq!(data.label, None);
    }
}
