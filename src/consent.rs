//! Consents (and the records of the other lawful bases), their evidence, and the access
//! decision.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::choices::SealedChoices;
use crate::error::AccessDenied;
use crate::ids::{ConsentId, CustomerId, PurposeId};
use crate::purpose::{LawfulBasis, Purpose, PurposeDef};

/// How a consent (or the record of another lawful basis) was collected: the proof a
/// controller must be able to show (GDPR Art. 7(1)).
///
/// Evidence is stored in clear and printed in `Debug`: never put personal data in it. Name the
/// collection method and source; keep the notice text out and record its hash instead.
///
/// ```
/// use egard::Evidence;
///
/// let evidence = Evidence::new("web-form")
///     .source("signup-page-v3")
///     .notice_text("We send one newsletter a month...")
///     .explicit();
/// assert_eq!(evidence.method(), "web-form");
/// assert_eq!(evidence.notice_hash().map(str::len), Some(64));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    method: String,
    source: Option<String>,
    notice_sha256: Option<String>,
    explicit: bool,
    /// Left out of the serialized form when false, so that evidence stored before it existed
    /// reads and prints the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    gpc: bool,
}

impl Evidence {
    /// Evidence collected by `method` (for example `web-form`, `paper`, `contract`).
    pub fn new(method: &str) -> Self {
        Self {
            method: method.to_owned(),
            source: None,
            notice_sha256: None,
            explicit: false,
            gpc: false,
        }
    }

    /// Where it was collected (a page, a form version, a contract number: no personal data).
    pub fn source(mut self, source: &str) -> Self {
        self.source = Some(source.to_owned());
        self
    }

    /// Records the SHA-256 of the notice text the customer saw (the text itself is not kept).
    pub fn notice_text(mut self, text: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        self.notice_sha256 = Some(hex(digest.as_ref()));
        self
    }

    /// Marks the consent as explicit (Art. 9(2)(a)), as special-category purposes require.
    pub fn explicit(mut self) -> Self {
        self.explicit = true;
        self
    }

    /// Marks that the request carried the Global Privacy Control signal (the `Sec-GPC: 1`
    /// header): see [`Vault::honor_gpc`](crate::Vault::honor_gpc). A consent to a purpose the
    /// signal covers, given with this mark, needs [`explicit`](Evidence::explicit) too (the
    /// customer confirmed it despite the signal), or it is refused with
    /// [`Error::GpcConflict`](crate::Error::GpcConflict).
    pub fn gpc(mut self) -> Self {
        self.gpc = true;
        self
    }

    /// Whether the request carried the Global Privacy Control signal.
    pub fn has_gpc(&self) -> bool {
        self.gpc
    }

    /// The collection method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Where it was collected, if recorded.
    pub fn source_ref(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// The hex SHA-256 of the notice text, if recorded.
    pub fn notice_hash(&self) -> Option<&str> {
        self.notice_sha256.as_deref()
    }

    /// Whether the consent was explicit.
    pub fn is_explicit(&self) -> bool {
        self.explicit
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// One giving of consent (or the record of another lawful basis) by one customer for one
/// purpose. Records are never overwritten: a withdrawal or an objection stamps its time, a
/// renewal adds a new record and marks the old one superseded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// This record's id.
    pub id: ConsentId,
    /// Whose consent.
    pub customer: CustomerId,
    /// For which purpose.
    pub purpose: PurposeId,
    /// The purpose's lawful basis when the record was made.
    pub basis: LawfulBasis,
    /// The privacy-notice version agreed to.
    pub notice_version: u32,
    /// When it was given.
    pub given_at: DateTime<Utc>,
    /// When it stops being valid, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was withdrawn (or, for legitimate interests and public task, objected to).
    pub withdrawn_at: Option<DateTime<Utc>>,
    /// The record that replaced this one, if renewed.
    pub superseded_by: Option<ConsentId>,
    /// How it was collected.
    pub evidence: Evidence,
    /// The customer's declared choices given with this record, sealed under their data key
    /// (ciphertext, bound to this record): open them through a pass with
    /// [`Vault::choices`](crate::Vault::choices). `None` when none were given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_choices: Option<SealedChoices>,
}

/// The state of a consent record at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    /// Valid now.
    Given,
    /// Withdrawn by the customer.
    Withdrawn,
    /// Past its expiry.
    Expired,
    /// Replaced by a renewal.
    Superseded,
}

impl Consent {
    /// Whether choices were given with this record.
    pub fn has_choices(&self) -> bool {
        self.sealed_choices.is_some()
    }

    /// The record's state at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> ConsentState {
        if self.superseded_by.is_some() {
            ConsentState::Superseded
        } else if self.withdrawn_at.is_some() {
            ConsentState::Withdrawn
        } else if self.expires_at.is_some_and(|t| now >= t) {
            ConsentState::Expired
        } else {
            ConsentState::Given
        }
    }
}

/// When `record` stops opening data for `purpose` as it is defined now: the earlier of the
/// record's own expiry and its time of giving plus the purpose's current lifetime (a
/// shortened lifetime applies to earlier records; a longer one does not extend them). `None`:
/// never.
pub(crate) fn expiry(record: &Consent, purpose: &Purpose) -> Option<DateTime<Utc>> {
    // A lifetime that runs past the calendar's end ends never.
    let by_purpose = purpose.lifetime().and_then(|d| record.given_at.checked_add_signed(d));
    match (record.expires_at, by_purpose) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What is known about a customer, beyond their consents, when deciding an access.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Standing {
    pub(crate) restricted: bool,
    /// The latest objection to this purpose, if any.
    pub(crate) objected_at: Option<DateTime<Utc>>,
}

/// The access decision: a pure function of the customer's current record for the purpose,
/// the purpose, the customer's standing, the field asked for (if any) and the time.
///
/// `record` is the customer's latest record for this purpose (superseded ones are history).
/// A consent expires at its expiry instant exactly: `now == expires_at` is denied.
pub(crate) fn decide(
    record: Option<&Consent>,
    purpose: &PurposeDef,
    standing: Standing,
    field: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), AccessDenied> {
    if standing.restricted {
        return Err(AccessDenied::Restricted);
    }
    if let Some(objected) = standing.objected_at {
        // An objection to direct marketing is absolute (Art. 21(3)); otherwise it ends the
        // records given before it, and a later record documents the controller's compelling
        // grounds (Art. 21(1)).
        if purpose.purpose.is_direct_marketing() || record.is_none_or(|r| r.given_at <= objected) {
            return Err(AccessDenied::Objected);
        }
    }
    let record = record.ok_or(AccessDenied::NoConsent)?;
    if record.withdrawn_at.is_some() {
        return Err(AccessDenied::Withdrawn);
    }
    if record.superseded_by.is_some() {
        // Only the latest record is ever passed in; a superseded one opens nothing.
        return Err(AccessDenied::NoConsent);
    }
    // A redefined purpose cannot turn a record into what it was not when given: a record of
    // another lawful basis, or a plain consent for what is now special-category data.
    if record.basis != purpose.purpose.basis()
        || (purpose.purpose.is_special_category() && !record.evidence.is_explicit())
    {
        return Err(AccessDenied::NoConsent);
    }
    if expiry(record, &purpose.purpose).is_some_and(|t| now >= t) {
        return Err(AccessDenied::Expired);
    }
    if record.notice_version < purpose.purpose.required_notice_version() {
        return Err(AccessDenied::NoticeOutdated);
    }
    if let Some(field) = field {
        if !purpose.covers(field) {
            return Err(AccessDenied::FieldNotCovered);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purpose::Purpose;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn purpose() -> PurposeDef {
        Purpose::new("news", LawfulBasis::Consent)
            .fields(["email"])
            .notice_version(2)
            .validate()
            .unwrap()
    }

    fn record() -> Consent {
        Consent {
            id: ConsentId::new(),
            customer: CustomerId::new(),
            purpose: PurposeId::new("news").unwrap(),
            basis: LawfulBasis::Consent,
            notice_version: 2,
            given_at: t0(),
            expires_at: Some(t0() + Duration::days(10)),
            withdrawn_at: None,
            superseded_by: None,
            evidence: Evidence::new("test"),
            sealed_choices: None,
        }
    }

    #[test]
    fn one_reason_per_cause() {
        let p = purpose();
        let ok = Standing::default();
        let now = t0() + Duration::days(1);
        assert_eq!(decide(Some(&record()), &p, ok, Some("email"), now), Ok(()));
        assert_eq!(decide(None, &p, ok, None, now), Err(AccessDenied::NoConsent));
        let mut withdrawn = record();
        withdrawn.withdrawn_at = Some(now);
        assert_eq!(
            decide(Some(&withdrawn), &p, ok, None, now),
            Err(AccessDenied::Withdrawn)
        );
        let mut old = record();
        old.notice_version = 1;
        assert_eq!(decide(Some(&old), &p, ok, None, now), Err(AccessDenied::NoticeOutdated));
        assert_eq!(
            decide(Some(&record()), &p, ok, Some("phone"), now),
            Err(AccessDenied::FieldNotCovered)
        );
        let restricted = Standing { restricted: true, ..ok };
        assert_eq!(
            decide(Some(&record()), &p, restricted, None, now),
            Err(AccessDenied::Restricted)
        );
        let objected = Standing {
            objected_at: Some(now),
            ..ok
        };
        assert_eq!(
            decide(Some(&record()), &p, objected, None, now),
            Err(AccessDenied::Objected)
        );
    }

    #[test]
    fn a_record_must_match_the_purpose_basis_and_special_category() {
        let now = t0() + Duration::days(1);
        let ok = Standing::default();
        let contract = Consent {
            basis: LawfulBasis::Contract,
            ..record()
        };
        assert_eq!(
            decide(Some(&contract), &purpose(), ok, None, now),
            Err(AccessDenied::NoConsent)
        );
        let special = Purpose::new("news", LawfulBasis::Consent)
            .fields(["email"])
            .notice_version(2)
            .special_category()
            .validate()
            .unwrap();
        assert_eq!(
            decide(Some(&record()), &special, ok, None, now),
            Err(AccessDenied::NoConsent)
        );
        let explicit = Consent {
            evidence: Evidence::new("test").explicit(),
            ..record()
        };
        assert_eq!(decide(Some(&explicit), &special, ok, None, now), Ok(()));
    }

    #[test]
    fn expiry_is_exclusive_at_the_exact_instant() {
        let p = purpose();
        let r = record();
        let end = r.expires_at.unwrap();
        let ok = Standing::default();
        assert_eq!(decide(Some(&r), &p, ok, None, end - Duration::nanoseconds(1)), Ok(()));
        assert_eq!(decide(Some(&r), &p, ok, None, end), Err(AccessDenied::Expired));
        assert_eq!(r.state(end), ConsentState::Expired);
    }

    #[test]
    fn a_record_given_after_an_objection_reopens_only_outside_direct_marketing() {
        let li = Purpose::new("news", LawfulBasis::LegitimateInterests).fields(["email"]);
        let later = Consent {
            given_at: t0() + Duration::days(2),
            notice_version: 1,
            basis: LawfulBasis::LegitimateInterests,
            ..record()
        };
        let standing = Standing {
            restricted: false,
            objected_at: Some(t0() + Duration::days(1)),
        };
        let now = t0() + Duration::days(3);
        let plain = li.clone().validate().unwrap();
        assert_eq!(decide(Some(&later), &plain, standing, None, now), Ok(()));
        let dm = li.direct_marketing().validate().unwrap();
        assert_eq!(
            decide(Some(&later), &dm, standing, None, now),
            Err(AccessDenied::Objected)
        );
    }
}
