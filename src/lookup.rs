//! Lookups: finding a customer by the value of a field (an email, a phone number) without
//! keeping that value in clear anywhere.
//!
//! A [`Lookup`] names a field and a [`Normalizer`]. Once defined
//! ([`Vault::define_lookup`](crate::Vault::define_lookup)), every value written to the field is
//! normalised and indexed by a *token*: HMAC-SHA256 of the normalised value under a key made
//! for that lookup alone. The store keeps the token next to the sealed value; it never sees
//! the value or the key, and a token cannot be turned back into the value (only confirmed by
//! someone who holds the key and guesses the value).
//!
//! # Keys and tokens
//!
//! For anyone re-implementing them: the lookup key is HKDF-Expand (RFC 5869, SHA-256, one
//! 32-byte block) with the vault's record key as the pseudorandom key and, as `info`, the
//! label `egard/lookup-key/v1`, the namespace, the field and the normaliser's code, each
//! prefixed by its length as a u32 big-endian. The token is HMAC-SHA256 under the lookup key
//! of the normalised value's UTF-8 bytes. The record key is a vault secret stored wrapped
//! under the master key, so tokens survive a master-key rotation.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::Error;

/// How a value is brought to one canonical form before it is indexed and when it is looked
/// up, so that `" Alice@Example.org"` finds what `"alice@example.org"` indexed.
///
/// ```
/// use egard::Normalizer;
///
/// assert_eq!(Normalizer::Email.normalize(" Alice.Martin@Example.ORG ")?.as_str(), "alice.martin@example.org");
/// assert_eq!(Normalizer::Phone.normalize("+33 (6) 12-34-56-78")?.as_str(), "+33612345678");
/// assert_eq!(Normalizer::Exact.normalize(" AB ")?.as_str(), " AB ");
/// # Ok::<(), egard::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Normalizer {
    /// Trims surrounding white space and lowercases (Unicode lowercase).
    Email,
    /// Keeps a leading `+` (the first character that is not white space) and the ASCII
    /// digits; drops spaces, dashes, dots, parentheses and anything else.
    Phone,
    /// Keeps the value exactly as given.
    Exact,
}

impl Normalizer {
    /// A stable, lowercase code, as stores and MACs write it.
    pub fn code(self) -> &'static str {
        match self {
            Normalizer::Email => "email",
            Normalizer::Phone => "phone",
            Normalizer::Exact => "exact",
        }
    }

    /// The normaliser with this code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "email" => Some(Normalizer::Email),
            "phone" => Some(Normalizer::Phone),
            "exact" => Some(Normalizer::Exact),
            _ => None,
        }
    }

    /// The normalised form of `value`, in a buffer wiped on drop. A value with nothing left
    /// once normalised (an empty email, a phone number without digits) is refused with
    /// [`Error::Invalid`]: it could only ever collide.
    pub fn normalize(self, value: &str) -> Result<Zeroizing<String>, Error> {
        let mut out = Zeroizing::new(String::with_capacity(value.len() * 2));
        match self {
            Normalizer::Email => {
                // `to_lowercase` would allocate an unwiped copy: lowercase char by char.
                for c in value.trim().chars() {
                    out.extend(c.to_lowercase());
                }
            }
            Normalizer::Phone => {
                if value.trim_start().starts_with('+') {
                    out.push('+');
                }
                out.extend(value.chars().filter(char::is_ascii_digit));
                if !out.chars().any(|c| c.is_ascii_digit()) {
                    out.clear();
                }
            }
            Normalizer::Exact => out.push_str(value),
        }
        if out.is_empty() {
            return Err(Error::Invalid("the value is empty once normalised"));
        }
        Ok(out)
    }
}

/// A lookup on a field: see [`Vault::define_lookup`](crate::Vault::define_lookup).
///
/// ```
/// use egard::{Lookup, Normalizer};
///
/// let lookup = Lookup::new("email", Normalizer::Email);
/// assert_eq!(lookup.field(), "email");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lookup {
    field: String,
    normalizer: Normalizer,
}

impl Lookup {
    /// A lookup on `field`, normalising values with `normalizer`. The field name is checked
    /// when the lookup is defined.
    pub fn new(field: &str, normalizer: Normalizer) -> Self {
        Self {
            field: field.to_owned(),
            normalizer,
        }
    }

    /// The looked-up field.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The normaliser.
    pub fn normalizer(&self) -> Normalizer {
        self.normalizer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(n: Normalizer, v: &str) -> Result<String, Error> {
        n.normalize(v).map(|s| s.as_str().to_owned())
    }

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            norm(Normalizer::Email, "  Alice.Martin@Example.ORG\n").unwrap(),
            "alice.martin@example.org"
        );
        assert_eq!(
            norm(Normalizer::Email, "ÉLODIE@exemple.fr").unwrap(),
            "élodie@exemple.fr"
        );
        assert!(matches!(norm(Normalizer::Email, "   "), Err(Error::Invalid(_))));
    }

    #[test]
    fn phones_keep_a_leading_plus_and_the_digits() {
        assert_eq!(norm(Normalizer::Phone, "+33 (6) 12-34-56-78").unwrap(), "+33612345678");
        assert_eq!(norm(Normalizer::Phone, "  +1.555.0100").unwrap(), "+15550100");
        assert_eq!(norm(Normalizer::Phone, "06 12 34 56 78").unwrap(), "0612345678");
        assert_eq!(norm(Normalizer::Phone, "1+2").unwrap(), "12", "a '+' inside is dropped");
        assert!(matches!(norm(Normalizer::Phone, "+"), Err(Error::Invalid(_))));
        assert!(matches!(norm(Normalizer::Phone, "n/a"), Err(Error::Invalid(_))));
    }

    #[test]
    fn exact_keeps_the_value() {
        assert_eq!(norm(Normalizer::Exact, " A-b ").unwrap(), " A-b ");
        assert!(matches!(norm(Normalizer::Exact, ""), Err(Error::Invalid(_))));
    }

    #[test]
    fn codes_round_trip() {
        for n in [Normalizer::Email, Normalizer::Phone, Normalizer::Exact] {
            assert_eq!(Normalizer::from_code(n.code()), Some(n));
        }
        assert_eq!(Normalizer::from_code("other"), None);
    }
}
