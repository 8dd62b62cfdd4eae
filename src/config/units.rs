//! Human-readable sizes ("512MiB") and durations ("30s") for the config file.
//!
//! Owns parsing and printing of these two value types; knows nothing of config fields.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A byte size, written in TOML as an integer of bytes or a string such as "512MiB" or "10GB".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

const UNITS: &[(&str, u64)] = &[
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("k", 1 << 10),
    ("m", 1 << 20),
    ("g", 1 << 30),
    ("t", 1 << 40),
    ("b", 1),
];

impl ByteSize {
    /// Parses "123", "123B", "4KiB", "1.5GiB", "10MB" (case-insensitive, spaces allowed).
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = (t[..split].trim(), t[split..].trim());
        if num.is_empty() {
            return Err(format!("invalid size {s:?}: expected a number and a unit such as \"512MiB\""));
        }
        let mult = if unit.is_empty() {
            1
        } else {
            UNITS.iter().find(|(u, _)| *u == unit).map(|(_, m)| *m).ok_or_else(|| {
                format!("invalid size {s:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")
            })?
        };
        let bytes = if let Ok(n) = num.parse::<u64>() {
            n.checked_mul(mult)
        } else {
            let f: f64 = num.parse().map_err(|_| format!("invalid size {s:?}: bad number {num:?}"))?;
            let v = f * mult as f64;
            (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
        };
        bytes.map(ByteSize).ok_or_else(|| format!("invalid size {s:?}: too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, mult) in [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= mult && self.0.is_multiple_of(mult) {
                return write!(f, "{}{unit}", self.0 / mult);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A duration, written in TOML as a string such as "30s", "5m" or "1h 30m".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e} (write e.g. \"30s\", \"5m\")")))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(ByteSize::parse("512MiB"), Ok(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("10 GB"), Ok(ByteSize(10_000_000_000)));
        assert_eq!(ByteSize::parse("1.5KiB"), Ok(ByteSize(1536)));
        assert_eq!(ByteSize::parse("42"), Ok(ByteSize(42)));
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert!(ByteSize::parse("MiB").is_err());
        assert!(ByteSize::parse("99999999999TiB").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,20}") {
            let _ = ByteSize::parse(&s);
        }

        #[test]
        fn display_round_trips(n in any::<u64>()) {
            let b = ByteSize(n);
            prop_assert_eq!(ByteSize::parse(&b.to_string()), Ok(b));
        }
    }
}
