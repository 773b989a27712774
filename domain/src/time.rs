//! Timestamps as text: RFC 3339 in UTC, written and read without chrono's general
//! formatting machinery.
//!
//! chrono writes a `DateTime` through `fmt::Display`, a character at a time, and parses it
//! with a relaxed RFC 3339 grammar; a `POST /tasks` wrote or read a timestamp seven times
//! (the answer, the event payload, the read model's row, the analytics day), and under
//! `callgrind` each write cost about 4,300 instructions and each read about 3,700. Here a
//! write fills a fixed buffer of digits and a read takes the one shape every backend
//! writes (`2026-12-07T17:00:00.123456Z`) in one pass; anything else (another offset, a
//! space for the `T`, a year past 9999) goes to chrono, so the text and the values are
//! exactly chrono's (`tests` compares them over random instants).

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Timelike, Utc};

/// The longest text `write` makes: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const MAX_LEN: usize = 30;

/// How many digits of the second's fraction to write.
#[derive(Clone, Copy)]
enum Fraction {
    /// As few as show the value exactly: none, 3, 6 or 9 (chrono's `SecondsFormat::AutoSi`,
    /// what its serde writes).
    Auto,
    /// Always 6: the store's own timestamps (`envelope::format_time`).
    Micros,
}

/// A timestamp's text, on the stack.
pub struct Rfc3339 {
    buf: [u8; MAX_LEN],
    len: usize,
}

impl Rfc3339 {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

fn two(buf: &mut [u8], at: usize, n: u32) {
    buf[at] = b'0' + (n / 10 % 10) as u8;
    buf[at + 1] = b'0' + (n % 10) as u8;
}

fn digits(buf: &mut [u8], at: usize, mut n: u32, count: usize) {
    for i in (0..count).rev() {
        buf[at + i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// `t` as chrono's serde writes it, or `None` for a year outside 0..=9999 (chrono signs
/// those), which the callers leave to chrono.
fn write(t: &DateTime<Utc>, fraction: Fraction) -> Option<Rfc3339> {
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut buf = *b"0000-00-00T00:00:00.000000000Z";
    digits(&mut buf, 0, year as u32, 4);
    two(&mut buf, 5, t.month());
    two(&mut buf, 8, t.day());
    two(&mut buf, 11, t.hour());
    two(&mut buf, 14, t.minute());
    // A leap second's fraction runs past 1e9: chrono's serde writes it as second 60, the
    // store's format (`to_micros`) as second 59 with the fraction from 0 again.
    let leap = t.nanosecond() >= 1_000_000_000;
    let second = t.second() + u32::from(leap && matches!(fraction, Fraction::Auto));
    two(&mut buf, 17, second);
    let nanos = t.nanosecond() % 1_000_000_000;
    let places = match fraction {
        Fraction::Micros => 6,
        Fraction::Auto if nanos == 0 => 0,
        Fraction::Auto if nanos.is_multiple_of(1_000_000) => 3,
        Fraction::Auto if nanos.is_multiple_of(1_000) => 6,
        Fraction::Auto => 9,
    };
    let mut len = 19;
    if places > 0 {
        buf[19] = b'.';
        digits(&mut buf, 20, nanos / 10u32.pow(9 - places as u32), places);
        len = 20 + places;
    }
    buf[len] = b'Z';
    Some(Rfc3339 { buf, len: len + 1 })
}

/// `t` with as many fraction digits as it needs, exactly as chrono's serde writes it.
pub fn to_rfc3339(t: &DateTime<Utc>) -> String {
    match write(t, Fraction::Auto) {
        Some(text) => text.as_str().to_owned(),
        None => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    }
}

/// `t` to the microsecond (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), the store's own timestamps.
pub fn to_micros(t: &DateTime<Utc>) -> String {
    match write(t, Fraction::Micros) {
        Some(text) => text.as_str().to_owned(),
        None => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond() / 1000 % 1_000_000
        ),
    }
}

/// A day as `YYYY-MM-DD`, as chrono's `%Y-%m-%d` writes it.
pub fn to_day(day: NaiveDate) -> String {
    let year = day.year();
    if !(0..=9999).contains(&year) {
        return day.format("%Y-%m-%d").to_string();
    }
    let mut buf = *b"0000-00-00";
    digits(&mut buf, 0, year as u32, 4);
    two(&mut buf, 5, day.month());
    two(&mut buf, 8, day.day());
    std::str::from_utf8(&buf).unwrap_or_default().to_owned()
}

fn number(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// The one shape every backend writes, `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`; `None` for any
/// other text, valid or not.
fn read_canonical(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b.last() != Some(&b'Z') {
        return None;
    }
    let (year, month, day) = (number(&b[0..4])?, number(&b[5..7])?, number(&b[8..10])?);
    let (hour, minute, second) = (
        number(&b[11..13])?,
        number(&b[14..16])?,
        number(&b[17..19])?,
    );
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            number(frac)? * 10u32.pow(9 - frac.len() as u32)
        }
        _ => return None,
    };
    // A leap second (60) is chrono's to read.
    if second > 59 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let time = chrono::NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some(date.and_time(time).and_utc())
}

/// Reads a timestamp as chrono's serde does (RFC 3339, relaxed: any offset, a space for
/// the `T`), in UTC.
pub fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match read_canonical(s) {
        Some(t) => Ok(t),
        None => s
            .parse::<DateTime<FixedOffset>>()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// Reads a timestamp as `DateTime::parse_from_rfc3339` does (strict RFC 3339), in UTC.
pub fn parse_rfc3339_strict(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match read_canonical(s) {
        Some(t) => Ok(t),
        None => DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)),
    }
}

/// `#[serde(with = "domain::time::rfc3339")]` on a `DateTime<Utc>`: the same text as
/// chrono's own serde, in and out, at a fraction of the cost.
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        match super::write(t, super::Fraction::Auto) {
            Some(text) => s.serialize_str(text.as_str()),
            None => s.serialize_str(&super::to_rfc3339(t)),
        }
    }

    struct Visitor;

    impl de::Visitor<'_> for Visitor {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC 3339 formatted date and time string")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            super::parse_rfc3339(v).map_err(E::custom)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(Visitor)
    }

    /// The same for an `Option<DateTime<Utc>>` (`null` when `None`).
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super")] DateTime<Utc>);

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono_text(t: &DateTime<Utc>) -> String {
        serde_json::to_value(t)
            .expect("serializes")
            .as_str()
            .expect("a string")
            .to_owned()
    }

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        // Years 0..=9999 and beyond, nanoseconds that end in zeros as often as not.
        (
            -70_000_000_000i64..260_000_000_000,
            prop_oneof![
                Just(0u32),
                (0u32..1000).prop_map(|m| m * 1_000_000),
                (0u32..1_000_000).prop_map(|u| u * 1_000),
                0u32..1_000_000_000
            ],
        )
            .prop_map(|(secs, nanos)| {
                DateTime::from_timestamp(secs, nanos).expect("in chrono's range")
            })
    }

    proptest! {
        #[test]
        fn writes_what_chrono_writes_and_reads_it_back(t in instant()) {
            let ours = serde_json::to_value(Ser(t)).expect("serializes");
            let theirs = chrono_text(&t);
            prop_assert_eq!(ours.as_str(), Some(theirs.as_str()));
            prop_assert_eq!(to_rfc3339(&t), theirs.clone());
            // chrono itself reads back only years 0..=9999 (it writes others signed).
            if (0..=9999).contains(&t.year()) {
                prop_assert_eq!(parse_rfc3339(&theirs), Ok(t));
                prop_assert_eq!(parse_rfc3339_strict(&theirs), Ok(t));
            }
        }

        #[test]
        fn days_are_written_as_chrono_writes_them(t in instant()) {
            let day = t.date_naive();
            prop_assert_eq!(to_day(day), day.format("%Y-%m-%d").to_string());
        }

        #[test]
        fn the_store_format_is_the_old_one(t in instant()) {
            let old = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second(),
                t.nanosecond() / 1000 % 1_000_000
            );
            prop_assert_eq!(to_micros(&t), old);
        }

        #[test]
        fn reads_any_text_as_chrono_does(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,10})?(Z|z|[+-][0-9]{2}:[0-9]{2})?") {
            let chrono_relaxed = s.parse::<DateTime<FixedOffset>>().map(|t| t.with_timezone(&Utc));
            prop_assert_eq!(parse_rfc3339(&s).ok(), chrono_relaxed.ok());
            let chrono_strict = DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc));
            prop_assert_eq!(parse_rfc3339_strict(&s).ok(), chrono_strict.ok());
        }
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Ser(#[serde(with = "rfc3339")] DateTime<Utc>);

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Opt(#[serde(with = "rfc3339::option")] Option<DateTime<Utc>>);

    #[test]
    fn a_leap_second_and_other_shapes_go_through_chrono() {
        let leap = "2016-12-31T23:59:60.5Z";
        let chrono = leap
            .parse::<DateTime<FixedOffset>>()
            .map(|t| t.with_timezone(&Utc));
        assert_eq!(parse_rfc3339(leap), chrono);
        assert!(parse_rfc3339("2026-12-07T10:00:00+05:00").is_ok());
        assert_eq!(
            parse_rfc3339("2026-12-07T10:00:00+05:00"),
            parse_rfc3339("2026-12-07T05:00:00Z")
        );
        assert!(parse_rfc3339("2026-02-30T10:00:00Z").is_err());
        assert!(parse_rfc3339("not a time").is_err());
        let t = parse_rfc3339(leap).expect("a leap second");
        assert_eq!(
            serde_json::to_value(Ser(t)).expect("serializes"),
            serde_json::to_value(t).expect("serializes")
        );
    }

    #[test]
    fn options_are_null_or_the_same_text() {
        let t = DateTime::from_timestamp(1_765_000_000, 123_000).expect("valid");
        let some = serde_json::to_value(Opt(Some(t))).expect("serializes");
        assert_eq!(some, serde_json::to_value(Some(t)).expect("serializes"));
        assert_eq!(
            serde_json::from_value::<Opt>(some).expect("reads"),
            Opt(Some(t))
        );
        let none = serde_json::to_value(Opt(None)).expect("serializes");
        assert_eq!(none, serde_json::Value::Null);
        assert_eq!(
            serde_json::from_value::<Opt>(none).expect("reads"),
            Opt(None)
        );
    }
}
