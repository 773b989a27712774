//! Money and quantities: exact decimals (`rust_decimal`), never floats. An amount travels in
//! JSON as a decimal string ("19.99") with at most two places; a JSON number is refused.
//! Arithmetic is checked: an amount past `MAX_AMOUNT` is an error, never a wrap or a panic.

use crate::ids::ValidationError;
use crate::rules::{Pattern, TextRule};
use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

/// The largest amount anything may come to, 999,999,999,999.99: a subtotal or an order's
/// total past it is refused (422), never wrapped.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(276_447_231, 23_283, 0, false, 2);
/// A price's largest whole part: prices go up to 999,999,999.99.
pub const MAX_PRICE_UNITS: u64 = 999_999_999;

/// A non-negative amount of the tenant's currency, to the cent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Money(Decimal);

/// Up to nine integer digits and two decimals, no sign, no exponent.
static MONEY: Pattern = Pattern::new(r"^(?:0|[1-9][0-9]{0,8})(?:\.[0-9]{1,2})?$");

impl Money {
    pub const RULE: TextRule = TextRule {
        pattern: Some(&MONEY),
        ..TextRule::chars(
            1,
            12,
            "a decimal string of at most two places, as in \"19.99\": 0 to 999999999.99",
        )
    };

    pub const ZERO: Money = Money(Decimal::ZERO);

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("amount", value)?;
        Decimal::from_str(value)
            .map(|d| Self(d.normalize().max(Decimal::ZERO)))
            .map_err(|e| ValidationError::new("amount", e.to_string()))
    }

    /// An amount computed here (a subtotal, a total): only checked against `MAX_AMOUNT`.
    pub fn of(d: Decimal) -> Result<Self, Overflow> {
        if d.is_sign_negative() || d > MAX_AMOUNT {
            return Err(Overflow);
        }
        Ok(Self(d.round_dp(2)))
    }

    pub fn decimal(self) -> Decimal {
        self.0
    }

    /// `self × quantity`, or `Overflow` past `MAX_AMOUNT`.
    pub fn times(self, quantity: u32) -> Result<Self, Overflow> {
        self.0
            .checked_mul(Decimal::from(quantity))
            .ok_or(Overflow)
            .and_then(Self::of)
    }

    /// `self + other`, or `Overflow` past `MAX_AMOUNT`.
    pub fn plus(self, other: Self) -> Result<Self, Overflow> {
        self.0
            .checked_add(other.0)
            .ok_or(Overflow)
            .and_then(Self::of)
    }

    /// `self − other`, floored at zero (a revenue figure never goes negative).
    pub fn minus(self, other: Self) -> Self {
        Self((self.0 - other.0).max(Decimal::ZERO))
    }

    /// The amount as its canonical two-place string, "19.90".
    pub fn as_string(self) -> String {
        format!("{:.2}", self.0)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A string only: a JSON number would already have passed through a float.
        let raw = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        Self::parse(&raw).map_err(|e| serde::de::Error::custom(e.reason))
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

crate::rules::text_schema!(Money, "Money");

/// An amount more than zero (what a posting moves): "0.01" to "999999999.99".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositiveMoney(Money);

static POSITIVE_MONEY: Pattern =
    Pattern::new(r"^(?:[1-9][0-9]{0,8}(?:\.[0-9]{1,2})?|0\.(?:[1-9][0-9]?|0[1-9]))$");

impl PositiveMoney {
    pub const RULE: TextRule = TextRule {
        pattern: Some(&POSITIVE_MONEY),
        ..TextRule::chars(
            1,
            12,
            "a decimal string of at most two places, more than zero, as in \"19.99\": 0.01 to 999999999.99",
        )
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("amount", value)?;
        Money::parse(value).map(Self)
    }

    pub fn get(self) -> Money {
        self.0
    }

    pub fn as_str(&self) -> String {
        self.0.as_string()
    }
}

impl<'de> serde::Deserialize<'de> for PositiveMoney {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        Self::parse(&raw).map_err(|e| serde::de::Error::custom(e.reason))
    }
}

crate::rules::text_schema!(PositiveMoney, "PositiveMoney");

/// An amount in a currency, as every answer shows money: `{"amount": "19.99", "currency": "USD"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Amount {
    pub amount: Money,
    pub currency: Currency,
}

/// An amount past `MAX_AMOUNT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the amount exceeds {MAX_AMOUNT}")]
pub struct Overflow;

/// An ISO 4217 currency code: three upper-case letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Currency(String);

static CURRENCY: Pattern = Pattern::new(r"^[A-Z]{3}$");

impl Currency {
    pub const RULE: TextRule = TextRule {
        pattern: Some(&CURRENCY),
        ..TextRule::chars(3, 3, "an ISO 4217 currency code, as in USD")
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("currency", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Currency {
    fn default() -> Self {
        Self("USD".into())
    }
}

crate::rules::text_serde!(Currency);
crate::rules::text_schema!(Currency, "Currency");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_maximum_is_just_under_a_trillion() {
        assert_eq!(MAX_AMOUNT.to_string(), "999999999999.99");
    }

    #[test]
    fn amounts_are_decimal_strings_of_two_places_at_most() {
        assert_eq!(
            Money::parse("19.99").map(Money::as_string),
            Ok("19.99".into())
        );
        assert_eq!(Money::parse("5").map(Money::as_string), Ok("5.00".into()));
        assert_eq!(Money::parse("0.5").map(Money::as_string), Ok("0.50".into()));
        for bad in [
            "",
            "-1",
            "1.999",
            "01",
            "1e3",
            " 1",
            "1,00",
            "1000000000",
            ".5",
        ] {
            assert!(Money::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            serde_json::from_str::<Money>("19.99").is_err(),
            "a JSON number"
        );
        assert_eq!(
            serde_json::from_str::<Money>("\"19.99\"")
                .map(Money::as_string)
                .ok(),
            Some("19.99".into())
        );
    }

    fn price() -> impl Strategy<Value = Money> {
        (0u64..=MAX_PRICE_UNITS, 0u32..100).prop_map(|(units, cents)| {
            Money::of(Decimal::new(
                i64::try_from(units).unwrap_or(0) * 100 + i64::from(cents),
                2,
            ))
            .unwrap_or(Money::ZERO)
        })
    }

    proptest! {
        #[test]
        fn a_total_is_the_exact_sum_of_its_subtotals(
            lines in proptest::collection::vec((price(), 1u32..=10_000), 1..100)
        ) {
            let mut total = Money::ZERO;
            let mut exact = Decimal::ZERO;
            let mut overflowed = false;
            for (p, q) in &lines {
                exact += p.decimal() * Decimal::from(*q);
                match p.times(*q).and_then(|sub| total.plus(sub)) {
                    Ok(t) => total = t,
                    Err(Overflow) => { overflowed = true; break; }
                }
            }
            if overflowed {
                prop_assert!(exact > MAX_AMOUNT);
            } else {
                prop_assert_eq!(total.decimal(), exact);
            }
        }

        #[test]
        fn arithmetic_past_the_maximum_is_an_error_never_a_wrap(
            units in (MAX_PRICE_UNITS / 2)..=MAX_PRICE_UNITS,
            quantity in 1u32..=u32::MAX,
        ) {
            let p = Money::of(Decimal::from(units)).unwrap_or(Money::ZERO);
            match p.times(quantity) {
                Ok(sub) => prop_assert_eq!(sub.decimal(), Decimal::from(units) * Decimal::from(quantity)),
                Err(Overflow) => prop_assert!(Decimal::from(units) * Decimal::from(quantity) > MAX_AMOUNT),
            }
        }
    }
}
