//! Authenticated records: the store is trusted with bytes, never with decisions.
//!
//! Every stored record that decides an access carries an HMAC-SHA256 under the vault's *record
//! key*: 32 random bytes made once per store and kept only wrapped under the master key (a
//! vault secret, like the audit key, so it survives a master-key rotation). The store never
//! sees the key, so whoever can write to the database but holds no master key cannot make a
//! record the vault accepts:
//!
//! - a consent record (with its history) and an objection each carry their own MAC, binding
//!   the namespace, the customer, the record's identity and its whole content;
//! - a purpose definition carries a MAC binding its id, its revision and the definition;
//! - a customer's record carries the customer's *state MAC*: it binds the customer's flags
//!   (restricted, erased), a revision counting every change, the versions of the customer's
//!   data keys, the MACs of all their consent records and objections, and the name, write
//!   version and time of every stored field. Adding, dropping or editing any of those records
//!   changes what the state MAC must be.
//!
//! Every change's audit event carries the state MAC it produced (see
//! [`AuditEvent::state`](crate::AuditEvent::state)); loading a customer or a purpose checks the
//! stored state against the latest such event, so earlier, correctly authenticated rows written
//! back (a partial restore) are caught as long as the audit log is whole. A field envelope's
//! associated data binds its write version, which the state MAC records, so an older envelope
//! never opens.
//!
//! # MAC input
//!
//! For anyone re-implementing verification: the key is the record key; the input starts with a
//! label naming the kind of record and its layout version, then the vault's namespace, then
//! the record's parts in the order below. The label, the namespace and every text are prefixed
//! by their length in bytes as a u32 big-endian; ids (16 bytes), MACs and lookup tokens (32
//! bytes) are written as they are, without a prefix; integers are big-endian (`u8`, `u32`,
//! `u64`, times as `i64` microseconds since the Unix epoch, durations as `i64` seconds); an
//! optional part is the byte `0`, or `1` followed by the part; a boolean is one byte, `0` or
//! `1`. FORMAT.md at the repository root gives every layout with its encoding.
//!
//! - `egard/consent/v1`: customer id (16 bytes), consent id (16), purpose, lawful basis code,
//!   notice version (u32), given at, expires at (optional), withdrawn at (optional),
//!   superseded by (optional consent id), evidence method, evidence source (optional text),
//!   notice hash (optional text), explicit (boolean).
//!   A record whose evidence carries the Global Privacy Control mark, or that holds sealed
//!   choices, goes on with: GPC (boolean), the sealed choices (optional, length-prefixed
//!   bytes); a record with neither adds nothing, so that records written before either
//!   existed keep their MACs.
//! - `egard/objection/v1`: customer id, purpose, time.
//! - `egard/purpose/v1`: purpose id, revision (u64), description, lawful basis code, the
//!   number of fields (u32) and each field as given, notice version (u32), consent lifetime
//!   and retention (each optional, as `i64` seconds), special category (boolean), direct
//!   marketing (boolean). A purpose that sells or shares data, or declares choices, goes on
//!   with: sells or shares (boolean), the number of choices (u32) and for each its name,
//!   single (boolean), the number of options (u32) and each option; others add nothing.
//! - `egard/customer/v1` (the state MAC): customer id, revision (u64), created at, restricted
//!   (boolean), erased at (optional), key uses (u64); then the data-key versions (a u32 count, then each u32,
//!   ascending); the consent records' MACs (a count, then each 32-byte MAC, ordered by consent
//!   id); the objections' MACs (a count, then each, in byte order); the fields (a count, then
//!   for each, by name: the name, its write version (u64) and the time it was written).
//! - `egard/lookup/v1` (a lookup definition): the field, the normaliser's code.
//! - After the fields, the state MAC of a customer with indexed fields goes on with their
//!   lookup tokens (a count, then for each, by field name: the name and the 32-byte token);
//!   a customer without any adds nothing, so that states written before lookups existed
//!   keep their MACs.
//! - `egard/erasure/v1` (an [`ErasureReceipt`](crate::ErasureReceipt)'s `mac`, in lowercase
//!   hexadecimal): customer id, erased at, the fields (a count, then each name, as listed),
//!   the data-key versions (a count, then each u32, as listed).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ring::hmac;

use crate::consent::Consent;
use crate::crypto::MacKey;
use crate::ids::{ConsentId, CustomerId, FieldName};
use crate::lookup::Normalizer;
use crate::purpose::{LawfulBasis, Purpose};
use crate::store::{CustomerRecord, LookupToken, Objection, RecordMac};

/// The name of the stored, wrapped record key.
pub(crate) const RECORD_SECRET: &str = "records";

/// The key that authenticates the records deciding access.
pub(crate) struct RecordKey {
    /// Wiped when dropped.
    key: MacKey,
    namespace: std::sync::Arc<str>,
}

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordKey(..)")
    }
}

/// A MAC computation over the canonical encoding described in the module docs.
struct Canon(hmac::Context);

impl Canon {
    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        // INVARIANT: every part is an id, a name, a MAC or a short code; a part beyond 4 GiB
        // cannot reach here (values are capped far lower), and would only make a check fail.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.0.update(&len.to_be_bytes());
        self.0.update(bytes);
        self
    }

    fn text(&mut self, text: &str) -> &mut Self {
        self.bytes(text.as_bytes())
    }

    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(bytes);
        self
    }

    fn flag(&mut self, b: bool) -> &mut Self {
        self.raw(&[u8::from(b)])
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    fn time(&mut self, t: DateTime<Utc>) -> &mut Self {
        self.raw(&t.timestamp_micros().to_be_bytes())
    }

    fn opt<T>(&mut self, v: Option<T>, write: impl FnOnce(&mut Self, T)) -> &mut Self {
        match v {
            None => self.raw(&[0]),
            Some(v) => {
                self.raw(&[1]);
                write(self, v);
                self
            }
        }
    }

    fn finish(self) -> RecordMac {
        let tag = self.0.sign();
        let mut mac = [0u8; 32];
        mac.copy_from_slice(tag.as_ref());
        mac
    }
}

/// The state of one customer as the state MAC binds it.
pub(crate) struct CustomerState<'a> {
    pub(crate) record: &'a CustomerRecord,
    /// Data-key versions, ascending.
    pub(crate) key_versions: &'a [u32],
    /// Consent-record MACs by consent id.
    pub(crate) consents: &'a BTreeMap<ConsentId, RecordMac>,
    /// Objection MACs, in byte order.
    pub(crate) objections: &'a [RecordMac],
    /// Stored fields by name: write version and time.
    pub(crate) fields: &'a BTreeMap<FieldName, (u64, DateTime<Utc>)>,
    /// The lookup tokens of the indexed fields, by name.
    pub(crate) tokens: &'a BTreeMap<FieldName, LookupToken>,
}

/// The key of one lookup: tokens are HMAC-SHA256 of normalised values under it.
pub(crate) struct LookupKey(MacKey);

impl LookupKey {
    /// The token of a normalised value.
    pub(crate) fn token(&self, normalized: &str) -> LookupToken {
        let tag = hmac::sign(self.0.get(), normalized.as_bytes());
        let mut token = [0u8; 32];
        token.copy_from_slice(tag.as_ref());
        token
    }
}

impl RecordKey {
    /// The record key from its 32 raw bytes, for the vault's namespace.
    pub(crate) fn new(raw: &[u8], namespace: std::sync::Arc<str>) -> Self {
        Self {
            key: MacKey::new(raw),
            namespace,
        }
    }

    fn start(&self, label: &str) -> Canon {
        let mut c = Canon(hmac::Context::with_key(self.key.get()));
        c.text(label).text(&self.namespace);
        c
    }

    /// The MAC of a consent record.
    pub(crate) fn consent(&self, c: &Consent) -> RecordMac {
        let mut m = self.start("egard/consent/v1");
        m.raw(c.customer.as_bytes())
            .raw(c.id.as_uuid().as_bytes())
            .text(c.purpose.as_str())
            .text(basis_code(c.basis))
            .u32(c.notice_version)
            .time(c.given_at)
            .opt(c.expires_at, |m, t| {
                m.time(t);
            })
            .opt(c.withdrawn_at, |m, t| {
                m.time(t);
            })
            .opt(c.superseded_by, |m, id| {
                m.raw(id.as_uuid().as_bytes());
            })
            .text(c.evidence.method())
            .opt(c.evidence.source_ref(), |m, s| {
                m.text(s);
            })
            .opt(c.evidence.notice_hash(), |m, s| {
                m.text(s);
            })
            .flag(c.evidence.is_explicit());
        // Appended only when present, so that records written before either existed keep
        // their MACs.
        if c.evidence.has_gpc() || c.sealed_choices.is_some() {
            m.flag(c.evidence.has_gpc()).opt(c.sealed_choices.as_ref(), |m, s| {
                m.bytes(s.as_bytes());
            });
        }
        m.finish()
    }

    /// The MAC of an objection.
    pub(crate) fn objection(&self, o: &Objection) -> RecordMac {
        let mut m = self.start("egard/objection/v1");
        m.raw(o.customer.as_bytes()).text(o.purpose.as_str()).time(o.at);
        m.finish()
    }

    /// The MAC of a purpose definition at revision `rev`.
    pub(crate) fn purpose(&self, p: &Purpose, rev: u64) -> RecordMac {
        let mut m = self.start("egard/purpose/v1");
        m.text(p.id())
            .u64(rev)
            .text(p.description_text())
            .text(basis_code(p.basis()));
        let fields: Vec<&str> = p.field_names().collect();
        m.u32(u32::try_from(fields.len()).unwrap_or(u32::MAX));
        for f in fields {
            m.text(f);
        }
        m.u32(p.required_notice_version())
            .opt(p.lifetime(), |m, d| {
                m.raw(&d.num_seconds().to_be_bytes());
            })
            .opt(p.retention_period(), |m, d| {
                m.raw(&d.num_seconds().to_be_bytes());
            })
            .flag(p.is_special_category())
            .flag(p.is_direct_marketing());
        // Appended only when present, so that definitions written before either existed keep
        // their MACs.
        if p.is_sale_or_sharing() || !p.choices().is_empty() {
            m.flag(p.is_sale_or_sharing()).u32(count(p.choices().len()));
            for choice in p.choices() {
                m.text(choice.name())
                    .flag(choice.is_single())
                    .u32(count(choice.options().len()));
                for option in choice.options() {
                    m.text(option);
                }
            }
        }
        m.finish()
    }

    /// The MAC of a lookup definition.
    pub(crate) fn lookup(&self, field: &FieldName, normalizer: Normalizer) -> RecordMac {
        let mut m = self.start("egard/lookup/v1");
        m.text(field.as_str()).text(normalizer.code());
        m.finish()
    }

    /// The key of the lookup on `field` with `normalizer`: HKDF-Expand of the record key
    /// (one block), see the `lookup` module docs.
    pub(crate) fn lookup_key(&self, field: &FieldName, normalizer: Normalizer) -> LookupKey {
        let mut info = Canon(hmac::Context::with_key(self.key.get()));
        info.text("egard/lookup-key/v1")
            .text(&self.namespace)
            .text(field.as_str())
            .text(normalizer.code())
            .raw(&[1]);
        let raw = zeroize::Zeroizing::new(info.finish());
        LookupKey(MacKey::new(raw.as_slice()))
    }

    /// The MAC of an erasure receipt: the customer, when, the fields and key versions
    /// destroyed.
    pub(crate) fn erasure(
        &self,
        customer: CustomerId,
        at: DateTime<Utc>,
        fields: &[FieldName],
        keys: &[u32],
    ) -> RecordMac {
        let mut m = self.start("egard/erasure/v1");
        m.raw(customer.as_bytes()).time(at).u32(count(fields.len()));
        for f in fields {
            m.text(f.as_str());
        }
        m.u32(count(keys.len()));
        for v in keys {
            m.u32(*v);
        }
        m.finish()
    }

    /// The state MAC of a customer.
    pub(crate) fn customer(&self, s: &CustomerState<'_>) -> RecordMac {
        let r = s.record;
        let mut m = self.start("egard/customer/v1");
        m.raw(r.id.as_bytes())
            .u64(r.rev)
            .time(r.created_at)
            .flag(r.restricted)
            .opt(r.erased_at, |m, t| {
                m.time(t);
            })
            .u64(r.key_uses);
        m.u32(count(s.key_versions.len()));
        for v in s.key_versions {
            m.u32(*v);
        }
        m.u32(count(s.consents.len()));
        for mac in s.consents.values() {
            m.raw(mac);
        }
        m.u32(count(s.objections.len()));
        for mac in s.objections {
            m.raw(mac);
        }
        m.u32(count(s.fields.len()));
        for (name, (version, at)) in s.fields {
            m.text(name.as_str()).u64(*version).time(*at);
        }
        if !s.tokens.is_empty() {
            m.u32(count(s.tokens.len()));
            for (name, token) in s.tokens {
                m.text(name.as_str()).raw(token);
            }
        }
        m.finish()
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The stable code of a lawful basis, as MACs and stores write it.
pub(crate) fn basis_code(b: LawfulBasis) -> &'static str {
    match b {
        LawfulBasis::Consent => "consent",
        LawfulBasis::Contract => "contract",
        LawfulBasis::LegalObligation => "legal_obligation",
        LawfulBasis::VitalInterests => "vital_interests",
        LawfulBasis::PublicTask => "public_task",
        LawfulBasis::LegitimateInterests => "legitimate_interests",
    }
}

/// Compares two MACs in time independent of where they differ.
pub(crate) fn macs_equal(a: &RecordMac, b: &RecordMac) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::Evidence;
    use crate::ids::{CustomerId, PurposeId};
    use chrono::{Duration, TimeZone};

    fn key() -> RecordKey {
        RecordKey::new(&[9; 32], "egard".into())
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn consent() -> Consent {
        Consent {
            id: ConsentId::new(),
            customer: CustomerId::new(),
            purpose: PurposeId::new("news").unwrap(),
            basis: LawfulBasis::Consent,
            notice_version: 2,
            given_at: t0(),
            expires_at: Some(t0() + Duration::days(3)),
            withdrawn_at: None,
            superseded_by: None,
            evidence: Evidence::new("web").source("form"),
            sealed_choices: None,
        }
    }

    #[test]
    fn gpc_and_choices_are_bound_and_their_absence_keeps_older_macs() {
        let k = key();
        let c = consent();
        // The layout before GPC and choices: the same input, so the same MAC.
        let mut m = k.start("egard/consent/v1");
        m.raw(c.customer.as_bytes())
            .raw(c.id.as_uuid().as_bytes())
            .text("news")
            .text("consent")
            .u32(2)
            .time(t0())
            .opt(c.expires_at, |m, t| {
                m.time(t);
            })
            .raw(&[0, 0])
            .text("web")
            .opt(Some("form"), |m, s| {
                m.text(s);
            })
            .raw(&[0])
            .flag(false);
        assert_eq!(k.consent(&c), m.finish(), "neither adds nothing");
        let gpc = Consent {
            evidence: c.evidence.clone().gpc(),
            ..c.clone()
        };
        let sealed = |b: &[u8]| Consent {
            sealed_choices: Some(crate::choices::SealedChoices::from_bytes(b.to_vec())),
            ..c.clone()
        };
        let macs = [
            k.consent(&c),
            k.consent(&gpc),
            k.consent(&sealed(b"abc")),
            k.consent(&sealed(b"abd")),
            k.consent(&sealed(b"")),
        ];
        for (i, a) in macs.iter().enumerate() {
            for b in &macs[i + 1..] {
                assert_ne!(a, b);
            }
        }

        let p = Purpose::new("news", LawfulBasis::Consent).fields(["email"]);
        let base = k.purpose(&p, 1);
        let variants = [
            p.clone().sells_or_shares(),
            p.clone().choice("topics", ["a", "b"]),
            p.clone().single_choice("topics", ["a", "b"]),
            p.clone().choice("topics", ["a", "c"]),
            p.clone().choice("topicz", ["a", "b"]),
            p.clone().choice("topics", ["a", "b"]).sells_or_shares(),
        ];
        let macs: Vec<RecordMac> = variants.iter().map(|v| k.purpose(v, 1)).collect();
        for (i, a) in macs.iter().enumerate() {
            assert_ne!(*a, base, "{:?}", variants[i]);
            for b in &macs[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn every_part_of_a_consent_changes_its_mac() {
        let k = key();
        let c = consent();
        let base = k.consent(&c);
        let changed: Vec<Consent> = vec![
            Consent {
                id: ConsentId::new(),
                ..c.clone()
            },
            Consent {
                customer: CustomerId::new(),
                ..c.clone()
            },
            Consent {
                purpose: PurposeId::new("newz").unwrap(),
                ..c.clone()
            },
            Consent {
                basis: LawfulBasis::Contract,
                ..c.clone()
            },
            Consent {
                notice_version: 3,
                ..c.clone()
            },
            Consent {
                given_at: t0() + Duration::microseconds(1),
                ..c.clone()
            },
            Consent {
                expires_at: None,
                ..c.clone()
            },
            Consent {
                withdrawn_at: Some(t0()),
                ..c.clone()
            },
            Consent {
                superseded_by: Some(ConsentId::new()),
                ..c.clone()
            },
            Consent {
                evidence: Evidence::new("web"),
                ..c.clone()
            },
            Consent {
                evidence: Evidence::new("web").source("form").explicit(),
                ..c.clone()
            },
            Consent {
                evidence: Evidence::new("web").source("form").notice_text("v2"),
                ..c.clone()
            },
        ];
        for other in changed {
            assert_ne!(k.consent(&other), base, "{other:?}");
        }
        assert_eq!(k.consent(&c), base, "deterministic");
        let other_ns = RecordKey::new(&[9; 32], "shop".into());
        assert_ne!(other_ns.consent(&c), base, "the namespace is bound");
        let other_key = RecordKey::new(&[8; 32], "egard".into());
        assert_ne!(other_key.consent(&c), base, "the key is what authenticates");
    }

    #[test]
    fn every_part_of_a_purpose_and_its_revision_change_its_mac() {
        let k = key();
        let p = Purpose::new("news", LawfulBasis::Consent).fields(["email"]);
        let base = k.purpose(&p, 1);
        assert_ne!(k.purpose(&p, 2), base);
        for other in [
            p.clone().fields(["email", "diagnosis"]),
            p.clone().notice_version(2),
            p.clone().description("x"),
            p.clone().consent_lifetime(Duration::days(1)),
            p.clone().retention(Duration::days(1)),
            p.clone().special_category(),
            p.clone().direct_marketing(),
            Purpose::new("news", LawfulBasis::Contract).fields(["email"]),
            Purpose::new("newz", LawfulBasis::Consent).fields(["email"]),
        ] {
            assert_ne!(k.purpose(&other, 1), base, "{other:?}");
        }
    }

    #[test]
    fn the_state_mac_binds_every_record_of_the_customer() {
        let k = key();
        let record = CustomerRecord {
            id: CustomerId::new(),
            created_at: t0(),
            restricted: false,
            erased_at: None,
            rev: 4,
            key_uses: 0,
            mac: [0; 32],
        };
        let consents: BTreeMap<ConsentId, RecordMac> = [(ConsentId::new(), [1; 32])].into();
        let fields: BTreeMap<FieldName, (u64, DateTime<Utc>)> = [(FieldName::new("email").unwrap(), (3, t0()))].into();
        let state = |record: &CustomerRecord,
                     keys: &[u32],
                     consents: &BTreeMap<ConsentId, RecordMac>,
                     objections: &[RecordMac],
                     fields: &BTreeMap<FieldName, (u64, DateTime<Utc>)>| {
            k.customer(&CustomerState {
                record,
                key_versions: keys,
                consents,
                objections,
                fields,
                tokens: &BTreeMap::new(),
            })
        };
        let base = state(&record, &[1], &consents, &[], &fields);
        assert_eq!(base, state(&record, &[1], &consents, &[], &fields));
        let restricted = CustomerRecord {
            restricted: true,
            ..record.clone()
        };
        let erased = CustomerRecord {
            erased_at: Some(t0()),
            ..record.clone()
        };
        let later = CustomerRecord {
            rev: 5,
            ..record.clone()
        };
        for other in [&restricted, &erased, &later] {
            assert_ne!(state(other, &[1], &consents, &[], &fields), base);
        }
        assert_ne!(state(&record, &[1, 2], &consents, &[], &fields), base);
        assert_ne!(state(&record, &[1], &BTreeMap::new(), &[], &fields), base);
        assert_ne!(state(&record, &[1], &consents, &[[2; 32]], &fields), base);
        let mut older = fields.clone();
        older.insert(FieldName::new("email").unwrap(), (2, t0()));
        assert_ne!(state(&record, &[1], &consents, &[], &older), base);
        assert_ne!(state(&record, &[1], &consents, &[], &BTreeMap::new()), base);
    }

    #[test]
    fn lookup_tokens_are_bound_and_their_absence_keeps_older_macs() {
        let k = key();
        let record = CustomerRecord {
            id: CustomerId::new(),
            created_at: t0(),
            restricted: false,
            erased_at: None,
            rev: 2,
            key_uses: 1,
            mac: [0; 32],
        };
        let email = FieldName::new("email").unwrap();
        let fields: BTreeMap<FieldName, (u64, DateTime<Utc>)> = [(email.clone(), (2, t0()))].into();
        let state = |tokens: &BTreeMap<FieldName, LookupToken>| {
            k.customer(&CustomerState {
                record: &record,
                key_versions: &[1],
                consents: &BTreeMap::new(),
                objections: &[],
                fields: &fields,
                tokens,
            })
        };
        let none = state(&BTreeMap::new());
        // The layout before lookups: the same input, so the same MAC.
        let mut m = k.start("egard/customer/v1");
        m.raw(record.id.as_bytes())
            .u64(2)
            .time(t0())
            .flag(false)
            .opt(None::<DateTime<Utc>>, |_, _| {})
            .u64(1);
        m.u32(1).u32(1).u32(0).u32(0).u32(1).text("email").u64(2).time(t0());
        assert_eq!(none, m.finish(), "no token adds nothing");
        let one = state(&[(email.clone(), [1; 32])].into());
        assert_ne!(one, none);
        assert_ne!(state(&[(email.clone(), [2; 32])].into()), one, "the token is bound");
        let other = FieldName::new("phone").unwrap();
        assert_ne!(state(&[(other, [1; 32])].into()), one, "the field is bound");
    }

    #[test]
    fn lookup_keys_and_definitions_are_separate_per_field_normaliser_and_namespace() {
        let k = key();
        let email = FieldName::new("email").unwrap();
        let phone = FieldName::new("phone").unwrap();
        let t = |k: &RecordKey, f: &FieldName, n| k.lookup_key(f, n).token("a@b.c");
        let base = t(&k, &email, Normalizer::Email);
        assert_eq!(base, t(&k, &email, Normalizer::Email), "deterministic");
        assert_ne!(base, t(&k, &phone, Normalizer::Email));
        assert_ne!(base, t(&k, &email, Normalizer::Exact));
        assert_ne!(
            base,
            t(&RecordKey::new(&[9; 32], "shop".into()), &email, Normalizer::Email)
        );
        assert_ne!(
            base,
            t(&RecordKey::new(&[8; 32], "egard".into()), &email, Normalizer::Email)
        );
        assert_ne!(k.lookup(&email, Normalizer::Email), k.lookup(&email, Normalizer::Phone));
        assert_ne!(k.lookup(&email, Normalizer::Email), k.lookup(&phone, Normalizer::Email));
    }

    #[test]
    fn macs_compare_exactly() {
        assert!(macs_equal(&[1; 32], &[1; 32]));
        let mut other = [1; 32];
        other[31] = 0;
        assert!(!macs_equal(&[1; 32], &other));
    }
}
