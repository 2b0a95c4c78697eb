//! Query parameters, parsed by hand so every bad value is a 400 problem naming the
//! parameter (axum's `Query<T>` rejection is plain text and names serde paths).
//!
//! Rules shared by every route:
//! - A parameter the route does not know is refused, so a typo (`minPirce`) is reported
//!   instead of silently returning unfiltered results.
//! - A parameter given twice is refused: which one wins would be a guess.
//! - An empty value (`cursor=`) means the parameter is absent.

use std::str::FromStr;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::error::ApiError;

/// The decoded query string of one request.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

/// What axum hands a handler that asks for the raw pairs.
pub type RawPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

impl QueryParams {
    /// Decodes the query and checks it only uses `allowed` names, each at most once.
    pub fn parse(raw: RawPairs, allowed: &[&str]) -> Result<QueryParams, ApiError> {
        let Query(pairs) = raw.map_err(|e| {
            ApiError::invalid_parameter(
                "query",
                format!("the query string could not be decoded: {}", e.body_text()),
            )
        })?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                let detail = if allowed.is_empty() {
                    format!("unknown query parameter `{name}`: this route takes none")
                } else {
                    format!(
                        "unknown query parameter `{name}`; this route takes {}",
                        allowed
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err(ApiError::invalid_parameter(name, detail));
            }
            if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(ApiError::invalid_parameter(
                    name,
                    format!("query parameter `{name}` is given more than once; give it once"),
                ));
            }
        }
        Ok(QueryParams { pairs })
    }

    /// The value of `name`, `None` if absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// An integer in `min..=max`, or `default` when absent.
    pub fn integer(
        &self,
        name: &str,
        min: usize,
        max: usize,
        default: usize,
    ) -> Result<usize, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(default);
        };
        match text.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid_parameter(
                name,
                format!("`{name}` must be a whole number from {min} to {max}, got {text:?}"),
            )),
        }
    }

    /// An exact decimal (prices), never through a float.
    pub fn decimal(&self, name: &str) -> Result<Option<Decimal>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let parsed = if text.contains(['e', 'E']) {
            Decimal::from_scientific(text)
        } else {
            Decimal::from_str(text)
        };
        parsed.map(Some).map_err(|_| {
            ApiError::invalid_parameter(
                name,
                format!("`{name}` must be a decimal number such as 19.99, got {text:?}"),
            )
        })
    }

    /// An RFC 3339 time such as `2020-01-01T00:00:00Z`.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        adledger_engine::time::parse_rfc3339(text)
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid_parameter(
                    name,
                    format!(
                        "`{name}` must be an RFC 3339 time such as 2020-01-01T00:00:00Z, got {text:?}"
                    ),
                )
            })
    }

    /// `true` or `false` (absent: false).
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::invalid_parameter(
                name,
                format!("`{name}` must be true or false, got {other:?}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)], allowed: &[&str]) -> Result<QueryParams, ApiError> {
        let pairs = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        QueryParams::parse(Ok(Query(pairs)), allowed)
    }

    fn field(err: Option<ApiError>) -> Option<String> {
        err.and_then(|e| e.problem().field.clone())
    }

    #[test]
    fn unknown_and_repeated_names_are_refused() {
        assert_eq!(
            field(params(&[("minPirce", "1")], &["minPrice"]).err()),
            Some("minPirce".into())
        );
        assert_eq!(
            field(params(&[("q", "a"), ("q", "b")], &["q"]).err()),
            Some("q".into())
        );
    }

    #[test]
    fn values_are_checked_and_named() {
        let Ok(p) = params(
            &[
                ("limit", "0"),
                ("minPrice", "abc"),
                ("maxPrice", "19.99"),
                ("cursor", ""),
                ("from", "yesterday"),
                ("versions", "yes"),
            ],
            &[
                "limit", "minPrice", "maxPrice", "cursor", "from", "versions",
            ],
        ) else {
            panic!("names are allowed");
        };
        assert_eq!(
            field(p.integer("limit", 1, 100, 20).err()),
            Some("limit".into())
        );
        assert_eq!(field(p.decimal("minPrice").err()), Some("minPrice".into()));
        assert_eq!(
            p.decimal("maxPrice").ok().flatten().map(|d| d.to_string()),
            Some("19.99".into())
        );
        assert_eq!(p.get("cursor"), None);
        assert_eq!(field(p.time("from").err()), Some("from".into()));
        assert_eq!(field(p.flag("versions").err()), Some("versions".into()));
        assert_eq!(p.integer("absent", 1, 100, 20).ok(), Some(20));
    }
}
