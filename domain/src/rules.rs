//! What a text value from outside must be, stated once. A value type checks its input
//! against its `TextRule`, and (with the `openapi` feature) documents itself with the same
//! rule as a JSON Schema, so the API's contract cannot drift from the code that enforces it.
//!
//! Lengths count Unicode scalar values, as JSON Schema's `minLength`/`maxLength` do.
//! Control characters are Unicode's `Cc` and whitespace is Unicode's `White_Space`, which is
//! what `char::is_control` and `char::is_whitespace` test; the schema spells both sets out
//! as explicit ranges, since `\s` means something else in each regex dialect.

use crate::ids::ValidationError;
use std::sync::OnceLock;

/// A full-match grammar for token-like values (ids, emails, header values). Its source is
/// written in the common subset of ECMA-262 (JSON Schema's dialect) and Rust's `regex`:
/// anchored with `^…$`, ASCII classes only, so both read it alike.
pub struct Pattern {
    source: &'static str,
    compiled: OnceLock<regex::Regex>,
}

impl Pattern {
    pub const fn new(source: &'static str) -> Self {
        Self {
            source,
            compiled: OnceLock::new(),
        }
    }

    pub fn source(&self) -> &'static str {
        self.source
    }

    pub fn is_match(&self, value: &str) -> bool {
        self.compiled
            .get_or_init(|| {
                // The sources are constants of this crate, each compiled by a unit test.
                #[allow(clippy::expect_used)]
                regex::Regex::new(self.source).expect("a valid pattern")
            })
            .is_match(value)
    }
}

/// The rule of one kind of text value.
pub struct TextRule {
    pub min_chars: usize,
    pub max_chars: usize,
    /// Refuse control characters (`Cc`: U+0000–U+001F, U+007F–U+009F).
    pub no_control: bool,
    /// Refuse a value made of whitespace only.
    pub not_blank: bool,
    /// A grammar the whole value must match; then `no_control` and `not_blank` are implied
    /// by it and left false.
    pub pattern: Option<&'static Pattern>,
    /// What the value is, for people: the schema's `description`.
    pub description: &'static str,
}

/// Control characters, as a regex class body.
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";
/// Control characters and whitespace together, as a regex class body.
const CONTROL_OR_SPACE: &str =
    r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Whitespace, as a regex class body.
const SPACE: &str = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

impl TextRule {
    /// A rule with only lengths; the other constraints are added with struct update syntax.
    pub const fn chars(min_chars: usize, max_chars: usize, description: &'static str) -> Self {
        Self {
            min_chars,
            max_chars,
            no_control: false,
            not_blank: false,
            pattern: None,
            description,
        }
    }

    /// Checks `value` for the input named `field`.
    pub fn check(&self, field: &'static str, value: &str) -> Result<(), ValidationError> {
        let bad = |reason: String| Err(ValidationError::new(field, reason));
        let chars = value.chars().count();
        if chars < self.min_chars {
            return if self.min_chars == 1 {
                bad("must not be empty".into())
            } else {
                bad(format!(
                    "must be at least {} characters, got {chars}",
                    self.min_chars
                ))
            };
        }
        if chars > self.max_chars {
            return bad(format!(
                "must be at most {} characters, got {chars}",
                self.max_chars
            ));
        }
        if self.no_control && value.chars().any(char::is_control) {
            return bad("must not contain control characters".into());
        }
        if self.not_blank && value.chars().all(char::is_whitespace) {
            return bad("must not be blank".into());
        }
        if let Some(p) = self.pattern
            && !p.is_match(value)
        {
            return bad(format!("must be {}", self.description));
        }
        Ok(())
    }

    /// The one `pattern` keyword the schema carries: the grammar, or the character rules.
    pub fn schema_pattern(&self) -> Option<String> {
        if let Some(p) = self.pattern {
            return Some(p.source().to_owned());
        }
        match (self.no_control, self.not_blank) {
            (true, true) => Some(format!("^[^{CONTROL}]*[^{CONTROL_OR_SPACE}][^{CONTROL}]*$")),
            (true, false) => Some(format!("^[^{CONTROL}]*$")),
            // Unanchored: somewhere a character that is not whitespace.
            (false, true) => Some(format!("[^{SPACE}]")),
            (false, false) => None,
        }
    }
}

#[cfg(feature = "openapi")]
mod schema {
    use super::TextRule;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

    impl TextRule {
        /// The JSON Schema of values this rule accepts.
        pub fn schema(&self) -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(self.min_chars))
                .max_length(Some(self.max_chars))
                .pattern(self.schema_pattern())
                .description(Some(self.description))
                .into()
        }
    }
}

/// Implements `ToSchema` for a value type from its `RULE`.
#[cfg(feature = "openapi")]
macro_rules! text_schema {
    ($ty:ty, $name:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <$ty>::RULE.schema()
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($name)
            }
        }
    };
}
#[cfg(feature = "openapi")]
pub(crate) use text_schema;
/// Without the feature, value types document nothing.
#[cfg(not(feature = "openapi"))]
macro_rules! text_schema {
    ($ty:ty, $name:expr) => {};
}
#[cfg(not(feature = "openapi"))]
pub(crate) use text_schema;

/// Declares an integer value type within `[$min, $max]`: it reads any JSON number without
/// a fraction (as JSON Schema's `integer` does), refuses the rest naming the bounds, and
/// (feature `openapi`) documents itself with the same bounds.
#[macro_export]
macro_rules! bounded_int {
    ($(#[$meta:meta])* $name:ident($inner:ty), $min:expr, $max:expr, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            pub const MIN: $inner = $min;
            pub const MAX: $inner = $max;

            pub fn get(self) -> $inner {
                self.0
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let n = <f64 as serde::Deserialize>::deserialize(d)?;
                let bad = || {
                    serde::de::Error::custom(format!(
                        "must be an integer from {} to {}",
                        Self::MIN,
                        Self::MAX
                    ))
                };
                if n.fract() != 0.0 || n < Self::MIN as f64 || n > Self::MAX as f64 {
                    return Err(bad());
                }
                // In range and whole: the cast is exact.
                #[allow(clippy::cast_possible_truncation)]
                Ok(Self(n as $inner))
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Integer)
                    .minimum(Some(Self::MIN as f64))
                    .maximum(Some(Self::MAX as f64))
                    .description(Some($what))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }
    };
}

/// Implements `Deserialize` for a value type through its `parse`, reporting only the
/// reason (the caller's path names the field), and `Serialize` as its string.
macro_rules! text_serde {
    ($ty:ty) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                <$ty>::parse(&*raw).map_err(|e| serde::de::Error::custom(e.reason))
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_serde;

#[cfg(test)]
mod tests {
    use super::*;

    /// Characters on either side of every boundary the rules draw.
    const TRICKY: &[char] = &[
        'a', 'Z', '0', ' ', '\t', '\n', '\u{0b}', '\u{0c}', '\r', '\u{0}', '\u{1c}', '\u{1f}',
        '\u{7f}', '\u{84}', '\u{85}', '\u{9f}', '\u{a0}', '\u{a1}', '\u{1680}', '\u{180e}',
        '\u{2000}', '\u{200a}', '\u{200b}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}',
        '\u{3000}', '\u{feff}', 'é', '😀',
    ];

    fn agree(rule: &TextRule) {
        let re = regex::Regex::new(&rule.schema_pattern().expect("a pattern")).expect("compiles");
        let mut samples: Vec<String> = TRICKY.iter().map(|c| c.to_string()).collect();
        for a in TRICKY {
            for b in TRICKY {
                samples.push(format!("{a}{b}"));
                samples.push(format!("{a}x{b}"));
            }
        }
        for s in samples {
            assert_eq!(
                rule.check("f", &s).is_ok(),
                re.is_match(&s),
                "rule and schema pattern disagree on {s:?}"
            );
        }
    }

    #[test]
    fn the_schema_pattern_accepts_exactly_what_the_check_accepts() {
        let base = TextRule::chars(1, 10, "text");
        agree(&TextRule {
            no_control: true,
            not_blank: true,
            ..TextRule::chars(1, 10, "text")
        });
        agree(&TextRule {
            no_control: true,
            ..TextRule::chars(1, 10, "text")
        });
        agree(&TextRule {
            not_blank: true,
            ..base
        });
    }

    #[test]
    fn lengths_count_characters() {
        let rule = TextRule::chars(2, 3, "text");
        assert!(rule.check("f", "éé").is_ok());
        assert!(rule.check("f", "😀😀😀").is_ok());
        assert!(rule.check("f", "é").is_err());
        assert!(rule.check("f", "abcd").is_err());
    }
}
