//! The ad: its fields, its validation rules, and the JSON input a client sends.
//!
//! Validation lives here, not in the HTTP layer, so that every way into the ledger
//! (HTTP, import, tests) enforces the same rules before anything reaches the journal:
//! an immutable journal cannot be cleaned up afterwards.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::currency::is_iso4217;
use crate::error::{Error, Result};

/// Longest `adTitle`, in characters, after trimming.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest `adDescription`, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Longest `category`, in characters.
pub const MAX_CATEGORY_CHARS: usize = 100;
/// Most tags on one ad.
pub const MAX_TAGS: usize = 50;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 50;
/// Longest publisher id.
pub const MAX_PUBLISHER_CHARS: usize = 128;

/// Identifies one ad: its publisher and its server-assigned id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AdKey {
    /// The owning publisher.
    pub publisher_id: String,
    /// The ad's id (a ULID).
    pub ad_id: String,
}

impl AdKey {
    /// Builds a key.
    pub fn new(publisher_id: impl Into<String>, ad_id: impl Into<String>) -> Self {
        AdKey {
            publisher_id: publisher_id.into(),
            ad_id: ad_id.into(),
        }
    }
}

/// The complete state of an ad: what a revision's `data` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ad {
    /// Server-assigned, time-ordered id (ULID).
    pub ad_id: String,
    /// The owning publisher.
    pub publisher_id: String,
    /// Title, trimmed, 1–200 characters.
    pub ad_title: String,
    /// Free text, at most 10,000 characters; empty when cleared.
    pub ad_description: String,
    /// Exact decimal price ≥ 0; `None` when not given or cleared.
    #[serde(with = "price_json")]
    pub price: Option<Decimal>,
    /// ISO 4217 code, or empty.
    pub currency: String,
    /// At most 100 characters; empty when cleared.
    pub category: String,
    /// Distinct tags in the order given.
    pub tags: Vec<String>,
}

impl Ad {
    /// The ad's key.
    pub fn key(&self) -> AdKey {
        AdKey::new(&self.publisher_id, &self.ad_id)
    }

    /// Roughly the heap bytes the ad's strings hold, so caches of ads can be bounded by
    /// memory rather than by count (ads range from a title to 10,000-character
    /// descriptions).
    pub fn heap_bytes(&self) -> usize {
        self.ad_id.len()
            + self.publisher_id.len()
            + self.ad_title.len()
            + self.ad_description.len()
            + self.currency.len()
            + self.category.len()
            + self.tags.iter().map(|t| t.len() + 24).sum::<usize>()
    }
}

/// The fields of a new ad, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdDraft {
    /// See [`Ad::ad_title`].
    pub ad_title: String,
    /// See [`Ad::ad_description`].
    pub ad_description: String,
    /// See [`Ad::price`].
    pub price: Option<Decimal>,
    /// See [`Ad::currency`].
    pub currency: String,
    /// See [`Ad::category`].
    pub category: String,
    /// See [`Ad::tags`].
    pub tags: Vec<String>,
}

impl AdDraft {
    /// A draft with only a title; the other fields empty.
    pub fn titled(title: &str) -> Result<AdDraft> {
        Ok(AdDraft {
            ad_title: validate_title(title)?,
            ad_description: String::new(),
            price: None,
            currency: String::new(),
            category: String::new(),
            tags: Vec::new(),
        })
    }

    /// Parses and validates the JSON body of a create request.
    ///
    /// Unknown fields are rejected so that a typo (`adTitel`) is reported instead of
    /// silently dropped; `null` means "empty" for every field but `adTitle`.
    pub fn from_json(body: &Value) -> Result<AdDraft> {
        let patch = AdPatch::from_json(body)?;
        let Some(title) = patch.ad_title else {
            return Err(Error::invalid(
                "adTitle",
                "is required when creating an ad: send a non-empty string of at most 200 characters",
            ));
        };
        Ok(AdDraft {
            ad_title: title,
            ad_description: patch.ad_description.unwrap_or_default(),
            price: patch.price.unwrap_or_default(),
            currency: patch.currency.unwrap_or_default(),
            category: patch.category.unwrap_or_default(),
            tags: patch.tags.unwrap_or_default(),
        })
    }

    /// The ad this draft becomes under the given ids.
    pub fn into_ad(self, publisher_id: &str, ad_id: &str) -> Ad {
        Ad {
            ad_id: ad_id.to_string(),
            publisher_id: publisher_id.to_string(),
            ad_title: self.ad_title,
            ad_description: self.ad_description,
            price: self.price,
            currency: self.currency,
            category: self.category,
            tags: self.tags,
        }
    }
}

/// A partial update: `None` leaves a field unchanged, `Some` replaces it (a cleared
/// optional field is `Some` of its empty value).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdPatch {
    /// New title.
    pub ad_title: Option<String>,
    /// New description.
    pub ad_description: Option<String>,
    /// New price (`Some(None)` clears it).
    pub price: Option<Option<Decimal>>,
    /// New currency.
    pub currency: Option<String>,
    /// New category.
    pub category: Option<String>,
    /// New tags.
    pub tags: Option<Vec<String>>,
}

impl AdPatch {
    /// Parses and validates the JSON body of an update request.
    pub fn from_json(body: &Value) -> Result<AdPatch> {
        let Value::Object(fields) = body else {
            return Err(Error::invalid(
                "body",
                format!(
                    "must be a JSON object with ad fields, got {}",
                    json_kind(body)
                ),
            ));
        };
        reject_unknown_fields(fields)?;
        let mut patch = AdPatch::default();
        for (name, value) in fields {
            match name.as_str() {
                "adTitle" => {
                    let text = string_field(name, value)?.ok_or_else(|| {
                        Error::invalid("adTitle", "cannot be null: every ad needs a title")
                    })?;
                    patch.ad_title = Some(validate_title(&text)?);
                }
                "adDescription" => {
                    let text = string_field(name, value)?.unwrap_or_default();
                    check_len(name, &text, MAX_DESCRIPTION_CHARS)?;
                    patch.ad_description = Some(text);
                }
                "price" => patch.price = Some(parse_price(value)?),
                "currency" => {
                    let code = string_field(name, value)?.unwrap_or_default();
                    patch.currency = Some(validate_currency(&code)?);
                }
                "category" => {
                    let text = string_field(name, value)?.unwrap_or_default();
                    let text = text.trim().to_string();
                    check_len(name, &text, MAX_CATEGORY_CHARS)?;
                    check_no_control(name, &text)?;
                    patch.category = Some(text);
                }
                "tags" => patch.tags = Some(parse_tags(value)?),
                _ => {}
            }
        }
        Ok(patch)
    }

    /// Whether the patch sets no field at all.
    pub fn is_empty(&self) -> bool {
        *self == AdPatch::default()
    }

    /// The ad after applying this patch.
    pub fn apply_to(&self, ad: &Ad) -> Ad {
        let mut next = ad.clone();
        if let Some(v) = &self.ad_title {
            next.ad_title.clone_from(v);
        }
        if let Some(v) = &self.ad_description {
            next.ad_description.clone_from(v);
        }
        if let Some(v) = &self.price {
            next.price = *v;
        }
        if let Some(v) = &self.currency {
            next.currency.clone_from(v);
        }
        if let Some(v) = &self.category {
            next.category.clone_from(v);
        }
        if let Some(v) = &self.tags {
            next.tags.clone_from(v);
        }
        next
    }
}

/// Checks a publisher id from a URL path: 1–128 characters of `[A-Za-z0-9_.-]`.
pub fn validate_publisher_id(id: &str) -> Result<()> {
    let ok_chars = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if id.is_empty() || id.len() > MAX_PUBLISHER_CHARS || !ok_chars {
        return Err(Error::invalid(
            "publisherId",
            format!(
                "must be 1 to {MAX_PUBLISHER_CHARS} characters of letters, digits, '_', '.' or '-', got {id:?}"
            ),
        ));
    }
    Ok(())
}

/// Whether `id` has the shape of an ad id the server could have assigned (a ULID).
pub fn is_well_formed_ad_id(id: &str) -> bool {
    id.len() == 26 && ulid::Ulid::from_string(id).is_ok()
}

const KNOWN_FIELDS: &[&str] = &[
    "adTitle",
    "adDescription",
    "price",
    "currency",
    "category",
    "tags",
];

fn reject_unknown_fields(fields: &Map<String, Value>) -> Result<()> {
    for name in fields.keys() {
        if KNOWN_FIELDS.contains(&name.as_str()) {
            continue;
        }
        let reason = match name.as_str() {
            "adId" | "publisherId" => format!(
                "is assigned by the server and taken from the URL; remove `{name}` from the body"
            ),
            _ => format!(
                "is not an ad field; the fields are {}",
                KNOWN_FIELDS.join(", ")
            ),
        };
        return Err(Error::invalid(name.clone(), reason));
    }
    Ok(())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string field; `Ok(None)` for `null`.
fn string_field(name: &str, value: &Value) -> Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(Error::invalid(
            name,
            format!("must be a string, got {}", json_kind(other)),
        )),
    }
}

fn check_len(field: &str, text: &str, max: usize) -> Result<()> {
    let chars = text.chars().count();
    if chars > max {
        return Err(Error::invalid(
            field,
            format!("is {chars} characters long; the limit is {max}"),
        ));
    }
    Ok(())
}

fn check_no_control(field: &str, text: &str) -> Result<()> {
    if text.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            "contains a control character (such as a newline or NUL); remove it",
        ));
    }
    Ok(())
}

fn validate_title(title: &str) -> Result<String> {
    let trimmed = title.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(
            "adTitle",
            "is empty; send 1 to 200 characters of text",
        ));
    }
    check_len("adTitle", trimmed, MAX_TITLE_CHARS)?;
    check_no_control("adTitle", trimmed)?;
    Ok(trimmed.to_string())
}

fn validate_currency(code: &str) -> Result<String> {
    if code.is_empty() {
        return Ok(String::new());
    }
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::invalid(
            "currency",
            format!(
                "must be an ISO 4217 code of three upper-case letters (such as \"EUR\") or empty, got {code:?}"
            ),
        ));
    }
    if !is_iso4217(code) {
        return Err(Error::invalid(
            "currency",
            format!("{code:?} is not an ISO 4217 currency code"),
        ));
    }
    Ok(code.to_string())
}

/// Parses a price from a JSON number or a numeric string, exactly.
///
/// The server's JSON parser keeps numbers as their original text (serde_json's
/// `arbitrary_precision`), so `19.99` arrives as the digits "19.99" and never passes
/// through a binary float.
fn parse_price(value: &Value) -> Result<Option<Decimal>> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => {
            return Err(Error::invalid(
                "price",
                format!("must be a number such as 19.99, got {}", json_kind(other)),
            ));
        }
    };
    let price = exact_decimal(&text).map_err(|why| {
        Error::invalid(
            "price",
            format!("{text:?} {why}; write a plain decimal number such as 19.99"),
        )
    })?;
    if price.is_sign_negative() && !price.is_zero() {
        return Err(Error::invalid(
            "price",
            format!("must be zero or more, got {text}"),
        ));
    }
    // `-0` is stored as `0`.
    let mut price = price;
    price.set_sign_positive(true);
    Ok(Some(price))
}

/// The most significant digits a price may have: what [`Decimal`] stores exactly.
const MAX_PRICE_DIGITS: usize = 28;

/// Parses decimal `text` (JSON number syntax: `-`, digits, an optional fraction and an
/// optional exponent; nothing else, not `1_000`, not `+5`) into the exact [`Decimal`], or
/// says why it cannot be stored exactly. `rust_decimal`'s own parser accepts `_`
/// separators and rounds excess digits silently; a ledger must do neither.
fn exact_decimal(text: &str) -> std::result::Result<Decimal, &'static str> {
    const SYNTAX: &str = "is not a decimal number";
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(SYNTAX);
            }
            let value: i64 = digits.parse().map_err(|_| SYNTAX)?;
            (m, if e.starts_with('-') { -value } else { value })
        }
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty()
        || !all_digits(int_part)
        || !all_digits(frac_part)
        || (mantissa.contains('.') && frac_part.is_empty())
    {
        return Err(SYNTAX);
    }
    // All the digits, and where the decimal point goes among them after the exponent.
    let digits = format!("{int_part}{frac_part}");
    let point = int_part.len() as i64 + exponent;
    let first = digits.find(|c| c != '0').unwrap_or(digits.len());
    if first == digits.len() {
        return Ok(Decimal::ZERO);
    }
    // Trailing zeros stay: `120.50` keeps its two decimals, as the client wrote it.
    let significant = &digits[first..];
    // The value is `0.significant × 10^(point - first)`.
    let magnitude = point - first as i64;
    let scale = (significant.len() as i64 - magnitude).max(0);
    let integer_digits = magnitude.max(0);
    if significant.len() > MAX_PRICE_DIGITS
        || scale > MAX_PRICE_DIGITS as i64
        || integer_digits + scale > MAX_PRICE_DIGITS as i64
    {
        return Err("has more digits than this ledger can store exactly (28 in all)");
    }
    let mut plain = String::with_capacity(MAX_PRICE_DIGITS + 3);
    if negative {
        plain.push('-');
    }
    if magnitude <= 0 {
        plain.push_str("0.");
        plain.extend(std::iter::repeat_n('0', (-magnitude) as usize));
        plain.push_str(significant);
    } else if magnitude as usize >= significant.len() {
        plain.push_str(significant);
        plain.extend(std::iter::repeat_n(
            '0',
            magnitude as usize - significant.len(),
        ));
    } else {
        let (whole, fraction) = significant.split_at(magnitude as usize);
        plain.push_str(whole);
        plain.push('.');
        plain.push_str(fraction);
    }
    Decimal::from_str_exact(&plain).map_err(|_| "cannot be stored exactly")
}

fn parse_tags(value: &Value) -> Result<Vec<String>> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(Error::invalid(
                "tags",
                format!("must be an array of strings, got {}", json_kind(other)),
            ));
        }
    };
    let mut tags: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("tags[{i}]");
        let Value::String(tag) = item else {
            return Err(Error::invalid(
                field,
                format!("must be a string, got {}", json_kind(item)),
            ));
        };
        let tag = tag.trim();
        if tag.is_empty() {
            return Err(Error::invalid(
                field,
                "is empty; every tag needs 1 to 50 characters",
            ));
        }
        check_len(&field, tag, MAX_TAG_CHARS)?;
        check_no_control(&field, tag)?;
        if !tags.iter().any(|t| t == tag) {
            // Refused as soon as one too many is seen: the duplicate check above then
            // never compares against more than MAX_TAGS tags, however long the array.
            if tags.len() == MAX_TAGS {
                return Err(Error::invalid(
                    "tags",
                    format!(
                        "has more than {MAX_TAGS} distinct tags ({} given in all); the limit \
                         is {MAX_TAGS}",
                        items.len()
                    ),
                ));
            }
            tags.push(tag.to_string());
        }
    }
    Ok(tags)
}

/// Serializes a price as a JSON number with exactly its decimal digits.
pub mod price_json {
    use std::str::FromStr;

    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes `Some(19.99)` as the JSON number `19.99`, `None` as `null`.
    pub fn serialize<S: Serializer>(price: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match price {
            None => s.serialize_none(),
            Some(d) => serde_json::Number::from_str(&d.to_string())
                .map_err(serde::ser::Error::custom)?
                .serialize(s),
        }
    }

    /// Reads a JSON number (or numeric string) exactly.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        super::parse_price(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err_field(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn prices_are_exact_or_refused() {
        let ok = |text: &str, expected: &str| {
            assert_eq!(
                exact_decimal(text).map(|d| d.to_string()),
                Ok(expected.to_string()),
                "{text}"
            );
        };
        ok("19.99", "19.99");
        ok("120.50", "120.50");
        ok("0", "0");
        ok("0.000", "0");
        ok("1e3", "1000");
        ok("1.5E-2", "0.015");
        ok("-0", "0");
        ok(
            "1234567890123456789012345678",
            "1234567890123456789012345678",
        );
        ok(
            "0.1234567890123456789012345678",
            "0.1234567890123456789012345678",
        );
        for refused in [
            "1_000",
            "+5",
            "1.",
            ".5",
            "1e",
            "1e99999",
            "0x10",
            "NaN",
            "12345678901234567890123456789",
            "1.00000000000000000000000000001",
            "1e-29",
            "1e28",
            "",
            "1 000",
        ] {
            assert!(exact_decimal(refused).is_err(), "{refused} must be refused");
        }
        let err = parse_price(&json!("1_000")).expect_err("underscore");
        assert!(err.to_string().contains("price"), "{err}");
    }

    #[test]
    fn too_many_tags_are_refused_without_quadratic_work() {
        let many: Vec<Value> = (0..11_000).map(|i| json!(format!("t{i}"))).collect();
        let err = parse_tags(&Value::Array(many)).expect_err("too many");
        assert!(err.to_string().contains("11000 given"), "{err}");
        let repeated: Vec<Value> = (0..11_000).map(|i| json!(format!("t{}", i % 50))).collect();
        assert_eq!(
            parse_tags(&Value::Array(repeated))
                .expect("50 distinct")
                .len(),
            50
        );
    }

    #[test]
    fn seed_example_is_valid_and_price_is_exact() {
        let draft = AdDraft::from_json(&json!({
            "adTitle": "  awesome title ", "adDescription": "awesome description",
            "price": 10, "currency": "", "category": "awesome category",
            "tags": ["awesome", "category", "awesome"]
        }))
        .expect("valid");
        assert_eq!(draft.ad_title, "awesome title");
        assert_eq!(draft.price, Some(Decimal::from(10)));
        assert_eq!(draft.tags, vec!["awesome", "category"]);
    }

    #[test]
    fn price_keeps_its_digits_through_json() {
        let body: Value = serde_json::from_str(r#"{"adTitle":"t","price":19.99}"#).expect("json");
        let ad = AdDraft::from_json(&body).expect("valid").into_ad("p", "a");
        assert_eq!(ad.price.map(|p| p.to_string()).as_deref(), Some("19.99"));
        let out = serde_json::to_string(&ad).expect("serialize");
        assert!(out.contains(r#""price":19.99"#), "{out}");
        let back: Ad = serde_json::from_str(&out).expect("deserialize");
        assert_eq!(back, ad);
    }

    #[test]
    fn each_rule_names_its_field() {
        assert_eq!(err_field(AdDraft::from_json(&json!({}))), "adTitle");
        assert_eq!(
            err_field(AdDraft::from_json(&json!({"adTitle": "  "}))),
            "adTitle"
        );
        let long = "x".repeat(201);
        assert_eq!(
            err_field(AdDraft::from_json(&json!({"adTitle": long}))),
            "adTitle"
        );
        assert_eq!(
            err_field(AdDraft::from_json(&json!({"adTitle": "t", "price": -1}))),
            "price"
        );
        assert_eq!(
            err_field(AdDraft::from_json(&json!({"adTitle": "t", "price": "abc"}))),
            "price"
        );
        assert_eq!(
            err_field(AdDraft::from_json(
                &json!({"adTitle": "t", "currency": "eur"})
            )),
            "currency"
        );
        assert_eq!(
            err_field(AdDraft::from_json(
                &json!({"adTitle": "t", "tags": ["ok", ""]})
            )),
            "tags[1]"
        );
        let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
        assert_eq!(
            err_field(AdDraft::from_json(&json!({"adTitle": "t", "tags": many}))),
            "tags"
        );
        assert_eq!(
            err_field(AdDraft::from_json(&json!({"adTitle": "t", "adTitel": "x"}))),
            "adTitel"
        );
        assert_eq!(err_field(AdDraft::from_json(&json!([1]))), "body");
    }

    #[test]
    fn patch_null_clears_and_absent_keeps() {
        let ad = AdDraft::from_json(&json!({"adTitle": "t", "price": 5, "category": "c"}))
            .expect("valid")
            .into_ad("p", "a");
        let patch = AdPatch::from_json(&json!({"price": null})).expect("valid");
        let next = patch.apply_to(&ad);
        assert_eq!(next.price, None);
        assert_eq!(next.category, "c");
        assert!(AdPatch::from_json(&json!({"adTitle": null})).is_err());
    }

    #[test]
    fn publisher_ids() {
        assert!(validate_publisher_id("acme-01.x_y").is_ok());
        assert!(validate_publisher_id("").is_err());
        assert!(validate_publisher_id("a b").is_err());
        assert!(validate_publisher_id(&"a".repeat(129)).is_err());
    }
}
