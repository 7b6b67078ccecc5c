//! Who acts: the host-supplied identifier recorded in each audit event.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// The id of the default actor, `app`: what the plain [`Vault`](crate::Vault) API records
/// when no other actor is named (see [`VaultBuilder::default_actor`](crate::VaultBuilder::default_actor)).
pub const DEFAULT_ACTOR: &str = "app";

/// The longest actor id, in bytes.
pub const MAX_ACTOR_LEN: usize = 64;

const ACTOR_RULE: &str = "1 to 64 characters of A-Z, a-z, 0-9, '_', '.', ':', '/' or '-'";

/// Who acts: an identifier the host gives for the person or system behind a call, such as
/// `support:agent-42` or `service:mailer`, recorded in every audit event that call writes
/// and shown to the customer in their [access log](crate::Vault::access_log).
///
/// It names a role, an account number or a service, **never a person's personal data**: it
/// is 1 to 64 bytes of ASCII letters, digits, `_`, `.`, `:`, `/` and `-`, so an email address
/// (`@`), a name with spaces or any other free text is refused with
/// [`Error::InvalidId`] (which does not repeat the input). Map your staff to pseudonymous ids
/// (`support:agent-42`), not to their names.
///
/// Because it is not personal data, `Debug` and `Display` print it as it is. Cloning is
/// cheap (a reference count).
///
/// ```
/// use egard::Actor;
///
/// let mailer = Actor::new("service:mailer")?;
/// assert_eq!(mailer.as_str(), "service:mailer");
/// assert_eq!(Actor::default().as_str(), "app");
/// assert!(Actor::new("alice@example.com").is_err());
/// assert!(Actor::new("Alice Martin").is_err());
/// # Ok::<(), egard::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Actor(Arc<str>);

/// Whether `s` follows the actor rule.
fn is_actor(s: &str) -> bool {
    (1..=MAX_ACTOR_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'-'))
}

impl Actor {
    /// Validates `id` (1–64 bytes of `A-Z`, `a-z`, `0-9`, `_`, `.`, `:`, `/`, `-`). The
    /// error does not repeat the rejected input.
    pub fn new(id: &str) -> Result<Self, Error> {
        if is_actor(id) {
            Ok(Self(Arc::from(id)))
        } else {
            Err(Error::InvalidId {
                kind: "actor",
                rule: ACTOR_RULE,
            })
        }
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The default actor, [`DEFAULT_ACTOR`] (`app`).
impl Default for Actor {
    fn default() -> Self {
        Self(Arc::from(DEFAULT_ACTOR))
    }
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Actor({:?})", &*self.0)
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Actor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for Actor {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl AsRef<str> for Actor {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Actor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Deserializes with the same rule as [`Actor::new`].
impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_accepts_role_ids_and_refuses_personal_data() {
        for ok in [
            "app",
            "support:agent-42",
            "service:mailer",
            "svc/batch_7.v2",
            "A",
            &"a".repeat(64),
        ] {
            assert_eq!(Actor::new(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "alice@example.com",
            "Alice Martin",
            "agent 42",
            "é",
            "a\0",
            "tab\t",
            "+33 6 12 34 56 78",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(Actor::new(bad), Err(Error::InvalidId { kind: "actor", .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn errors_do_not_echo_the_input() {
        let err = Actor::new("Canary.Person@example.com").unwrap_err();
        assert!(!err.to_string().contains("Canary"));
        assert!(!format!("{err:?}").contains("Canary"));
    }

    #[test]
    fn it_deserializes_with_validation() {
        let a: Actor = serde_json::from_str("\"support:agent-42\"").unwrap();
        assert_eq!(a.to_string(), "support:agent-42");
        assert_eq!(format!("{a:?}"), "Actor(\"support:agent-42\")");
        assert!(serde_json::from_str::<Actor>("\"a@b.c\"").is_err());
        assert_eq!(Actor::default().as_str(), DEFAULT_ACTOR);
    }
}
