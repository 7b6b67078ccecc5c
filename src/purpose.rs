//! Purposes of processing and their lawful basis.

use std::sync::Arc;

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::choices::{ChoiceSpec, validate_specs};
use crate::error::{AccessDenied, Error};
use crate::gate::Revocation;
use crate::ids::{FieldName, PurposeId};
use crate::store::StoreError;

/// The six lawful bases of GDPR Art. 6(1).
///
/// Whatever the basis, egard denies by default: a purpose opens a customer's data only once a
/// record of that basis exists for that customer (given with [`Vault::give_consent`]).
///
/// [`Vault::give_consent`]: crate::Vault::give_consent
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LawfulBasis {
    /// Art. 6(1)(a): the customer consented.
    Consent,
    /// Art. 6(1)(b): needed to perform a contract with the customer.
    Contract,
    /// Art. 6(1)(c): needed to comply with a legal obligation.
    LegalObligation,
    /// Art. 6(1)(d): needed to protect someone's vital interests.
    VitalInterests,
    /// Art. 6(1)(e): a task in the public interest or official authority.
    PublicTask,
    /// Art. 6(1)(f): the business's legitimate interests.
    LegitimateInterests,
}

impl LawfulBasis {
    /// Whether the customer may object to processing on this basis (Art. 21): legitimate
    /// interests and public task.
    pub fn allows_objection(self) -> bool {
        matches!(self, Self::LegitimateInterests | Self::PublicTask)
    }
}

/// The longest consent lifetime or retention period accepted: 1,000 years.
pub(crate) const MAX_PERIOD: Duration = Duration::days(365_250);

/// Why data is processed: the definition a customer's consent (or other basis) refers to.
///
/// Built with an infallible builder; [`Vault::define_purpose`] validates it.
///
/// ```
/// use chrono::Duration;
/// use egard::{LawfulBasis, Purpose};
///
/// let newsletter = Purpose::new("newsletter", LawfulBasis::Consent)
///     .description("Our monthly newsletter")
///     .fields(["email", "first_name"])
///     .notice_version(2)
///     .consent_lifetime(Duration::days(395));
/// assert_eq!(newsletter.field_names().count(), 2);
/// ```
///
/// [`Vault::define_purpose`]: crate::Vault::define_purpose
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purpose {
    id: String,
    description: String,
    basis: LawfulBasis,
    fields: Vec<String>,
    notice_version: u32,
    #[serde(with = "opt_seconds")]
    consent_lifetime: Option<Duration>,
    #[serde(with = "opt_seconds")]
    retention: Option<Duration>,
    special_category: bool,
    direct_marketing: bool,
    /// Left out of the serialized form when false, so that definitions written before it
    /// existed read and print the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    sells_or_shares: bool,
    /// Left out of the serialized form when empty (as `sells_or_shares`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    choices: Vec<ChoiceSpec>,
}

impl Purpose {
    /// A purpose with the given id and lawful basis, no fields yet, notice version 1, no
    /// expiry, no retention period.
    pub fn new(id: &str, basis: LawfulBasis) -> Self {
        Self {
            id: id.to_owned(),
            description: String::new(),
            basis,
            fields: Vec::new(),
            notice_version: 1,
            consent_lifetime: None,
            retention: None,
            special_category: false,
            direct_marketing: false,
            sells_or_shares: false,
            choices: Vec::new(),
        }
    }

    /// A human-readable description (for the records of processing and for exports).
    pub fn description(mut self, text: &str) -> Self {
        text.clone_into(&mut self.description);
        self
    }

    /// The fields this purpose may read (data minimisation). Replaces any set before.
    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.fields = fields.into_iter().map(|f| f.as_ref().to_owned()).collect();
        self
    }

    /// The privacy-notice version a customer must have agreed to. Raising it on an existing
    /// purpose is a notice update: records given under an older version stop opening data.
    pub fn notice_version(mut self, version: u32) -> Self {
        self.notice_version = version;
        self
    }

    /// How long a consent (or other basis record) lasts once given.
    ///
    /// Each record keeps the expiry it was given with. A purpose redefined with a shorter
    /// lifetime (or a lifetime where it had none) shortens the earlier records too: a record
    /// expires at the earlier of its own expiry and its `given_at` plus the purpose's current
    /// lifetime. A longer lifetime never extends an earlier record: the customer agreed for
    /// the time they were told.
    pub fn consent_lifetime(mut self, lifetime: Duration) -> Self {
        self.consent_lifetime = Some(lifetime);
        self
    }

    /// How long the purpose's fields may be kept after its last record ends (Art. 5(1)(e)).
    pub fn retention(mut self, period: Duration) -> Self {
        self.retention = Some(period);
        self
    }

    /// Marks special-category data (Art. 9): consent must be given as explicit consent.
    pub fn special_category(mut self) -> Self {
        self.special_category = true;
        self
    }

    /// Marks direct marketing: an objection to it is absolute (Art. 21(3)).
    pub fn direct_marketing(mut self) -> Self {
        self.direct_marketing = true;
        self
    }

    /// Marks a purpose that sells or shares personal data (the CCPA/CPRA's "sale or
    /// sharing"): with [`direct_marketing`](Purpose::direct_marketing), it is what the Global
    /// Privacy Control signal opts out of ([`Purpose::is_covered_by_gpc`],
    /// [`Vault::honor_gpc`](crate::Vault::honor_gpc)).
    pub fn sells_or_shares(mut self) -> Self {
        self.sells_or_shares = true;
        self
    }

    /// Declares a choice the customer makes when agreeing, picking any subset of `options`
    /// (for example the topics of a newsletter). Names and options follow the rule of field
    /// names; a choice or option declared twice is refused by
    /// [`Vault::define_purpose`](crate::Vault::define_purpose).
    ///
    /// ```
    /// use egard::{LawfulBasis, Purpose};
    ///
    /// let newsletter = Purpose::new("newsletter", LawfulBasis::Consent)
    ///     .fields(["email"])
    ///     .choice("topics", ["rides", "food", "offers"])
    ///     .single_choice("frequency", ["weekly", "monthly"]);
    /// assert_eq!(newsletter.choices()[1].name(), "frequency");
    /// assert!(newsletter.choices()[1].is_single());
    /// ```
    pub fn choice<I, S>(mut self, name: &str, options: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.choices.push(ChoiceSpec::new(name, options, false));
        self
    }

    /// Declares a choice where the customer picks exactly one of `options` (for example how
    /// often a newsletter comes). See [`choice`](Purpose::choice).
    pub fn single_choice<I, S>(mut self, name: &str, options: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.choices.push(ChoiceSpec::new(name, options, true));
        self
    }

    /// The choices declared, in the order declared.
    pub fn choices(&self) -> &[ChoiceSpec] {
        &self.choices
    }

    /// Whether the purpose sells or shares personal data.
    pub fn is_sale_or_sharing(&self) -> bool {
        self.sells_or_shares
    }

    /// Whether the Global Privacy Control signal opts the customer out of this purpose: it is
    /// direct marketing or sells or shares personal data.
    pub fn is_covered_by_gpc(&self) -> bool {
        self.direct_marketing || self.sells_or_shares
    }

    /// The purpose's id, as given.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The description.
    pub fn description_text(&self) -> &str {
        &self.description
    }

    /// The lawful basis.
    pub fn basis(&self) -> LawfulBasis {
        self.basis
    }

    /// The fields this purpose may read, as given.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(String::as_str)
    }

    /// The privacy-notice version required.
    pub fn required_notice_version(&self) -> u32 {
        self.notice_version
    }

    /// How long a record lasts once given; `None` for no expiry.
    pub fn lifetime(&self) -> Option<Duration> {
        self.consent_lifetime
    }

    /// The retention period; `None` when unset.
    pub fn retention_period(&self) -> Option<Duration> {
        self.retention
    }

    /// Whether the purpose processes special-category data.
    pub fn is_special_category(&self) -> bool {
        self.special_category
    }

    /// Whether the purpose is direct marketing.
    pub fn is_direct_marketing(&self) -> bool {
        self.direct_marketing
    }

    /// Checks every identifier and setting, giving the validated form the vault works with.
    pub(crate) fn validate(self) -> Result<PurposeDef, Error> {
        let id = PurposeId::new(&self.id)?;
        let mut fields = self
            .fields
            .iter()
            .map(|f| FieldName::new(f))
            .collect::<Result<Vec<_>, _>>()?;
        fields.sort();
        fields.dedup();
        if fields.is_empty() {
            return Err(Error::Invalid("a purpose must name at least one field"));
        }
        validate_specs(&self.choices)?;
        if self.notice_version == 0 {
            return Err(Error::Invalid("notice versions start at 1"));
        }
        // The upper bound keeps every `time + period` the vault computes far from the end of
        // chrono's range (year 262,143), where the addition would panic.
        let too_long = |d: Duration| d > MAX_PERIOD;
        if self
            .consent_lifetime
            .is_some_and(|d| d <= Duration::zero() || too_long(d))
            || self.retention.is_some_and(|d| d < Duration::zero() || too_long(d))
        {
            return Err(Error::Invalid(
                "lifetimes and retention periods must be positive and at most 1,000 years",
            ));
        }
        Ok(PurposeDef {
            id,
            fields: fields.into(),
            purpose: self,
            rev: 0,
            mac: [0; 32],
            retired: Revocation::default(),
        })
    }
}

/// A validated purpose, shared by the vault and the passes it issues.
#[derive(Debug)]
pub(crate) struct PurposeDef {
    pub(crate) id: PurposeId,
    /// Sorted and deduplicated.
    pub(crate) fields: Arc<[FieldName]>,
    pub(crate) purpose: Purpose,
    /// The stored revision of this definition (0 until stored).
    pub(crate) rev: u64,
    /// The MAC of this definition at `rev`.
    pub(crate) mac: [u8; 32],
    /// Set when the purpose is redefined: passes issued under this definition stop working.
    pub(crate) retired: Revocation,
}

impl PurposeDef {
    /// The validated name of `field` if this purpose may read it.
    pub(crate) fn field(&self, field: &str) -> Option<&FieldName> {
        let i = self.fields.binary_search_by(|f| f.as_str().cmp(field)).ok()?;
        self.fields.get(i)
    }

    /// Stops the passes issued under this definition, now that `successor` replaces it: a
    /// notice update reads as [`AccessDenied::NoticeOutdated`], any other change as
    /// [`AccessDenied::PurposeChanged`].
    pub(crate) fn retire_for(&self, successor: &PurposeDef) {
        let notice_changed = self.purpose.required_notice_version() != successor.purpose.required_notice_version();
        self.retired.revoke(if notice_changed {
            AccessDenied::NoticeOutdated
        } else {
            AccessDenied::PurposeChanged
        });
    }

    /// Validates a purpose read back from a store (its MAC checked by the caller): a bad one
    /// is corrupt storage.
    pub(crate) fn from_stored(purpose: Purpose, rev: u64, mac: [u8; 32]) -> Result<Self, StoreError> {
        let mut def = purpose
            .validate()
            .map_err(|_| StoreError::Corrupt("invalid stored purpose".into()))?;
        def.rev = rev;
        def.mac = mac;
        Ok(def)
    }

    pub(crate) fn covers(&self, field: &str) -> bool {
        self.field(field).is_some()
    }
}

/// Serde for an optional duration as whole seconds.
mod opt_seconds {
    use chrono::Duration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.num_seconds()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<i64>::deserialize(d)? {
            None => Ok(None),
            Some(secs) => Duration::try_seconds(secs)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("duration out of range")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rejects_bad_ids_fields_and_settings() {
        assert!(
            Purpose::new("Bad Id", LawfulBasis::Consent)
                .fields(["email"])
                .validate()
                .is_err()
        );
        assert!(
            Purpose::new("ok", LawfulBasis::Consent)
                .fields(["E-mail"])
                .validate()
                .is_err()
        );
        assert!(Purpose::new("ok", LawfulBasis::Consent).validate().is_err());
        assert!(
            Purpose::new("ok", LawfulBasis::Consent)
                .fields(["a"])
                .notice_version(0)
                .validate()
                .is_err()
        );
        assert!(
            Purpose::new("ok", LawfulBasis::Consent)
                .fields(["a"])
                .consent_lifetime(Duration::zero())
                .validate()
                .is_err()
        );
        for long in [MAX_PERIOD + Duration::seconds(1), Duration::MAX] {
            let p = Purpose::new("ok", LawfulBasis::Consent).fields(["a"]);
            assert!(p.clone().consent_lifetime(long).validate().is_err());
            assert!(p.retention(long).validate().is_err());
        }
        let p = Purpose::new("ok", LawfulBasis::Consent).fields(["a"]);
        assert!(p.consent_lifetime(MAX_PERIOD).retention(MAX_PERIOD).validate().is_ok());
    }

    #[test]
    fn covers_exactly_the_listed_fields() {
        let def = Purpose::new("p", LawfulBasis::Contract)
            .fields(["b", "a", "b"])
            .validate()
            .unwrap();
        assert_eq!(def.fields.len(), 2);
        assert!(def.covers("a") && def.covers("b"));
        assert!(!def.covers("c") && !def.covers(""));
    }

    #[test]
    fn purposes_round_trip_through_json() {
        let p = Purpose::new("p", LawfulBasis::LegitimateInterests)
            .fields(["a"])
            .consent_lifetime(Duration::days(30))
            .retention(Duration::days(7))
            .direct_marketing();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Purpose>(&json).unwrap(), p);
    }
}
