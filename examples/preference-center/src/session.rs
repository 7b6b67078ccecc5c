//! Sessions, CSRF tokens and one-time sign-in links, kept server-side in memory.
//!
//! Every secret handed to a browser (a session id in a cookie, a sign-in link's token) is 256
//! random bits from the operating system, shown as 64 hexadecimal digits. The server keeps only
//! its SHA-256, so a dump of the maps cannot be replayed as a cookie or a link. CSRF tokens are
//! compared in constant time.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use egard::CustomerId;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// How many sessions (signed in or not) are kept at most; past it, expired ones are dropped
/// and then the oldest, so that a flood of anonymous visitors cannot grow memory without end.
const MAX_SESSIONS: usize = 10_000;
/// How many unused sign-in links are kept at most (the oldest go first).
const MAX_LINKS: usize = 10_000;

/// A random secret of 256 bits, as 64 lowercase hexadecimal digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// 256 random bits from the operating system.
    fn generate(rng: &SystemRandom) -> Option<Self> {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes).ok()?;
        Some(Self(hex(&bytes)))
    }

    /// The secret's text, for a cookie, a link or a form field.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

/// The SHA-256 of a presented secret: what the maps are keyed by.
type Hash = [u8; 32];

fn hash(secret: &str) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, secret.as_bytes()).as_ref());
    out
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// One browser's session: anonymous until a sign-in link is opened.
#[derive(Clone, Debug)]
pub struct Session {
    /// The signed-in customer, if any.
    pub customer: Option<CustomerId>,
    /// The token every form of this session carries.
    pub csrf: Secret,
    /// A message to show on the next page (after a form's redirect), then forget.
    pub flash: Option<String>,
    created: Instant,
    expires: Instant,
}

struct Link {
    customer: CustomerId,
    expires: Instant,
}

/// The server's sessions and sign-in links.
pub struct Sessions {
    rng: SystemRandom,
    session_lifetime: Duration,
    link_lifetime: Duration,
    sessions: Mutex<HashMap<Hash, Session>>,
    links: Mutex<HashMap<Hash, Link>>,
}

/// Why a sign-in link was refused (the page says the same for each; the reason is for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefused {
    /// Never issued, or already used.
    Unknown,
    /// Issued, but opened too late (it is now used up as well).
    Expired,
}

impl Sessions {
    /// Sessions that last `session_lifetime` from sign-in, links that last `link_lifetime`.
    pub fn new(session_lifetime: Duration, link_lifetime: Duration) -> Self {
        Self {
            rng: SystemRandom::new(),
            session_lifetime,
            link_lifetime,
            sessions: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
        }
    }

    /// A new session (anonymous, or signed in as `customer`): its id, to put in the cookie, and
    /// the session. `None` if the operating system gave no random bytes.
    pub fn create(&self, customer: Option<CustomerId>) -> Option<(Secret, Session)> {
        let id = Secret::generate(&self.rng)?;
        let now = Instant::now();
        let session = Session {
            customer,
            csrf: Secret::generate(&self.rng)?,
            flash: None,
            created: now,
            expires: now + self.session_lifetime,
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| s.expires > now);
            while sessions.len() >= MAX_SESSIONS {
                let oldest = sessions.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k);
                match oldest {
                    Some(k) => sessions.remove(&k),
                    None => break,
                };
            }
        }
        sessions.insert(hash(id.as_str()), session.clone());
        Some((id, session))
    }

    /// The live session whose id is `id`, if any (an expired one is dropped).
    pub fn get(&self, id: &str) -> Option<Session> {
        let key = hash(id);
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        match sessions.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Takes the session's flash message, if any.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.get_mut(&hash(id)).and_then(|s| s.flash.take())
    }

    /// Sets the message the session's next page shows.
    pub fn set_flash(&self, id: &str, message: String) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = sessions.get_mut(&hash(id)) {
            s.flash = Some(message);
        }
    }

    /// Ends the session.
    pub fn end(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&hash(id));
    }

    /// Ends every session of `customer` (after their erasure).
    pub fn end_all(&self, customer: CustomerId) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, s| s.customer != Some(customer));
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, l| l.customer != customer);
    }

    /// A new one-time sign-in link token for `customer`. `None` if the operating system gave
    /// no random bytes.
    pub fn issue_link(&self, customer: CustomerId) -> Option<Secret> {
        let token = Secret::generate(&self.rng)?;
        let now = Instant::now();
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        links.retain(|_, l| l.expires > now);
        if links.len() >= MAX_LINKS {
            // All live: refuse to grow; the oldest expires first.
            let oldest = links.iter().min_by_key(|(_, l)| l.expires).map(|(k, _)| *k);
            if let Some(k) = oldest {
                links.remove(&k);
            }
        }
        links.insert(
            hash(token.as_str()),
            Link {
                customer,
                expires: now + self.link_lifetime,
            },
        );
        Some(token)
    }

    /// Uses up the link token `token`: the customer it signs in, once, if opened in time.
    pub fn redeem_link(&self, token: &str) -> Result<CustomerId, LinkRefused> {
        let link = self
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&hash(token))
            .ok_or(LinkRefused::Unknown)?;
        if Instant::now() >= link.expires {
            return Err(LinkRefused::Expired);
        }
        Ok(link.customer)
    }
}

/// Whether `presented` is the session's CSRF token, compared in constant time.
pub fn csrf_matches(session: &Session, presented: &str) -> bool {
    let expected = session.csrf.as_str().as_bytes();
    let presented = presented.as_bytes();
    // Both are 64 hex digits when genuine; a length mismatch says nothing about the token.
    expected.len() == presented.len() && bool::from(expected.ct_eq(presented))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer() -> CustomerId {
        // Any id will do: the maps never ask the vault.
        let vault = egard::Vault::builder()
            .master_key(egard::MasterKey::from_bytes([1; 32]))
            .store(egard::MemoryStore::new())
            .build()
            .unwrap();
        vault.create_customer().unwrap()
    }

    #[test]
    fn a_link_works_once() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(60));
        let alice = customer();
        let token = sessions.issue_link(alice).unwrap();
        assert_eq!(token.as_str().len(), 64);
        assert_eq!(sessions.redeem_link(token.as_str()), Ok(alice));
        assert_eq!(sessions.redeem_link(token.as_str()), Err(LinkRefused::Unknown));
        assert_eq!(sessions.redeem_link("not-a-token"), Err(LinkRefused::Unknown));
    }

    #[test]
    fn a_link_expires() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::ZERO);
        let token = sessions.issue_link(customer()).unwrap();
        assert_eq!(sessions.redeem_link(token.as_str()), Err(LinkRefused::Expired));
        // And it is used up.
        assert_eq!(sessions.redeem_link(token.as_str()), Err(LinkRefused::Unknown));
    }

    #[test]
    fn sessions_expire_and_end() {
        let sessions = Sessions::new(Duration::ZERO, Duration::from_secs(60));
        let (id, _) = sessions.create(None).unwrap();
        assert!(sessions.get(id.as_str()).is_none());

        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(60));
        let alice = customer();
        let (id, session) = sessions.create(Some(alice)).unwrap();
        assert!(csrf_matches(&session, session.csrf.as_str()));
        assert!(!csrf_matches(&session, ""));
        assert!(!csrf_matches(&session, &"0".repeat(64)));
        assert_eq!(format!("{id:?}"), "Secret([REDACTED])");
        sessions.end_all(alice);
        assert!(sessions.get(id.as_str()).is_none());
    }
}
