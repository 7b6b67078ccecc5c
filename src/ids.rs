//! Identifiers: customers, consents, purposes and personal-data fields.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::error::Error;

/// A customer's identifier: a random UUID (v4, or time-ordered v7).
///
/// It is a pseudonym, not personal data in itself, which is why it may appear in errors and
/// audit events.
///
/// ```
/// let id = egard::CustomerId::new();
/// let parsed: egard::CustomerId = id.to_string().parse().unwrap();
/// assert_eq!(id, parsed);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CustomerId(Uuid);

/// Deserializes with the same rule as [`CustomerId::from_uuid`]: a serialized id (in a
/// `Sealed<T>` or a stored record) is input like any other.
impl<'de> Deserialize<'de> for CustomerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_uuid(Uuid::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl CustomerId {
    /// A new, time-ordered (v7) identifier.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an existing UUID; only versions 4 and 7 are accepted.
    pub fn from_uuid(uuid: Uuid) -> Result<Self, Error> {
        match uuid.get_version_num() {
            4 | 7 => Ok(Self(uuid)),
            _ => Err(Error::InvalidId {
                kind: "customer id",
                rule: "a UUID of version 4 or 7",
            }),
        }
    }

    /// The UUID inside.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The 16 bytes of the UUID.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl Default for CustomerId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerId({})", self.0)
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for CustomerId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let uuid = Uuid::parse_str(s).map_err(|_| Error::InvalidId {
            kind: "customer id",
            rule: "a UUID of version 4 or 7",
        })?;
        Self::from_uuid(uuid)
    }
}

/// The identifier of one consent record (one giving of consent; a renewal gets a new id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConsentId(Uuid);

impl ConsentId {
    /// A new, time-ordered identifier.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an existing UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID inside.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for ConsentId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ConsentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConsentId({})", self.0)
    }
}

impl fmt::Display for ConsentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Checks the slug rule shared by purpose ids and field names: 1–64 characters of lowercase
/// ASCII letters, digits, `.`, `_` and `-`.
pub(crate) fn is_slug(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

const SLUG_RULE: &str = "1 to 64 characters of a-z, 0-9, '.', '_' or '-'";

macro_rules! slug_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `s` (1–64 characters of `a-z`, `0-9`, `.`, `_`, `-`).
            ///
            /// The error does not repeat the rejected input.
            pub fn new(s: &str) -> Result<Self, Error> {
                if is_slug(s) {
                    Ok(Self(Arc::from(s)))
                } else {
                    Err(Error::InvalidId { kind: $kind, rule: SLUG_RULE })
                }
            }

            /// The validated name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

slug_type!(
    /// The name of a purpose of processing, such as `newsletter` or `billing`.
    ///
    /// ```
    /// assert!(egard::PurposeId::new("newsletter").is_ok());
    /// assert!(egard::PurposeId::new("News Letter").is_err());
    /// ```
    PurposeId,
    "purpose id"
);

slug_type!(
    /// The name of a personal-data field, such as `email` or `address.city`.
    ///
    /// ```
    /// assert!(egard::FieldName::new("address.city").is_ok());
    /// assert!(egard::FieldName::new("").is_err());
    /// ```
    FieldName,
    "field name"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_the_documented_alphabet_only() {
        assert!(FieldName::new("a").is_ok());
        assert!(FieldName::new("email_2.work-x").is_ok());
        assert!(FieldName::new(&"a".repeat(64)).is_ok());
        for bad in ["", "Email", "e mail", "é", "a/b", "a\0", &"a".repeat(65)] {
            assert!(FieldName::new(bad).is_err(), "{bad:?} accepted");
            assert!(PurposeId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn slug_errors_do_not_echo_the_input() {
        let err = FieldName::new("Canary-Secret-Value").unwrap_err();
        assert!(!err.to_string().contains("Canary"));
        assert!(!format!("{err:?}").contains("Canary"));
    }

    #[test]
    fn customer_ids_round_trip_and_reject_other_versions() {
        let id = CustomerId::new();
        assert_eq!(id.to_string().parse::<CustomerId>().unwrap(), id);
        let v4 = Uuid::new_v4();
        assert!(CustomerId::from_uuid(v4).is_ok());
        assert!(CustomerId::from_uuid(Uuid::nil()).is_err());
        assert!("not-a-uuid".parse::<CustomerId>().is_err());
    }

    #[test]
    fn customer_ids_deserialize_with_the_same_rule() {
        let id = CustomerId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<CustomerId>(&json).unwrap(), id);
        let nil = serde_json::to_string(&Uuid::nil()).unwrap();
        assert!(serde_json::from_str::<CustomerId>(&nil).is_err());
    }

    #[test]
    fn slugs_deserialize_with_validation() {
        let ok: FieldName = serde_json::from_str("\"email\"").unwrap();
        assert_eq!(ok.as_str(), "email");
        assert!(serde_json::from_str::<FieldName>("\"EMAIL\"").is_err());
    }
}
