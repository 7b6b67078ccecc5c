//! Declared choices (zero-party data): what a customer says they want when they agree to a
//! purpose, such as the topics of a newsletter and how often it comes.
//!
//! A purpose declares its choices ([`Purpose::choice`](crate::Purpose::choice),
//! [`Purpose::single_choice`](crate::Purpose::single_choice)); the customer's selections
//! ([`Choices`]) are given with a consent
//! ([`Vault::give_consent_with`](crate::Vault::give_consent_with)), changed with
//! [`Vault::change_choices`](crate::Vault::change_choices), and read back only through a pass
//! ([`Vault::choices`](crate::Vault::choices)). They are personal data: sealed under the
//! customer's data key, never stored in clear, never printed.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::Error;
use crate::ids::is_slug;

/// The most choices one purpose may declare.
pub(crate) const MAX_CHOICES: usize = 32;
/// The most options one choice may declare.
pub(crate) const MAX_OPTIONS: usize = 64;

/// A choice a purpose declares: its name, the options offered, and whether the customer picks
/// exactly one ([`Purpose::single_choice`](crate::Purpose::single_choice)) or any subset
/// ([`Purpose::choice`](crate::Purpose::choice)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChoiceSpec {
    name: String,
    options: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    single: bool,
}

impl ChoiceSpec {
    pub(crate) fn new<I, S>(name: &str, options: I, single: bool) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            name: name.to_owned(),
            options: options.into_iter().map(|o| o.as_ref().to_owned()).collect(),
            single,
        }
    }

    /// The choice's name, as declared.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The options offered, in the order declared.
    pub fn options(&self) -> &[String] {
        &self.options
    }

    /// Whether the customer picks exactly one option.
    pub fn is_single(&self) -> bool {
        self.single
    }

    /// Whether `option` is one of the declared options.
    pub fn offers(&self, option: &str) -> bool {
        self.options.iter().any(|o| o == option)
    }
}

/// Checks the choices a purpose declares: names and options follow the slug rule of field
/// names, no name or option twice, every choice with at least one option, within bounds.
pub(crate) fn validate_specs(specs: &[ChoiceSpec]) -> Result<(), Error> {
    const RULE: &str = "1 to 64 characters of a-z, 0-9, '.', '_' or '-'";
    if specs.len() > MAX_CHOICES {
        return Err(Error::Invalid("a purpose declares at most 32 choices"));
    }
    for (i, spec) in specs.iter().enumerate() {
        if !is_slug(&spec.name) {
            return Err(Error::InvalidId {
                kind: "choice name",
                rule: RULE,
            });
        }
        if specs[..i].iter().any(|s| s.name == spec.name) {
            return Err(Error::InvalidChoice {
                choice: spec.name.clone(),
                reason: ChoiceProblem::DeclaredTwice,
            });
        }
        if spec.options.is_empty() || spec.options.len() > MAX_OPTIONS {
            return Err(Error::InvalidChoice {
                choice: spec.name.clone(),
                reason: ChoiceProblem::OptionCount,
            });
        }
        for (j, option) in spec.options.iter().enumerate() {
            if !is_slug(option) {
                return Err(Error::InvalidId {
                    kind: "choice option",
                    rule: RULE,
                });
            }
            if spec.options[..j].contains(option) {
                return Err(Error::InvalidChoice {
                    choice: spec.name.clone(),
                    reason: ChoiceProblem::DeclaredTwice,
                });
            }
        }
    }
    Ok(())
}

/// Why a declaration or a customer's selection was refused ([`Error::InvalidChoice`]). Never
/// names the option selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChoiceProblem {
    /// The purpose declares no choice of that name.
    UnknownChoice,
    /// An option selected is not among the options declared for the choice.
    UndeclaredOption,
    /// More than one option selected for a single choice.
    MoreThanOne,
    /// No option selected for a single choice.
    NoneSelected,
    /// A purpose declares a choice twice, or an option twice within a choice.
    DeclaredTwice,
    /// A declared choice has no option, or more than 64.
    OptionCount,
}

impl fmt::Display for ChoiceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownChoice => "the purpose declares no such choice",
            Self::UndeclaredOption => "an option selected is not declared for this choice",
            Self::MoreThanOne => "a single choice takes exactly one option, more were selected",
            Self::NoneSelected => "a single choice takes exactly one option, none was selected",
            Self::DeclaredTwice => "a choice or option is declared twice",
            Self::OptionCount => "a choice declares 1 to 64 options",
        })
    }
}

/// One choice's selection.
#[derive(Clone, PartialEq, Eq, Zeroize)]
struct Selection {
    name: String,
    /// Sorted, without repeats.
    options: Vec<String>,
}

/// A customer's declared choices: for each choice a purpose declares, the options they
/// selected.
///
/// It is personal data: `Debug` prints the choice names only, never the options selected; it
/// is wiped from memory when dropped. It serializes (for the subject export) as a JSON object
/// from choice name to the array of selected options.
///
/// ```
/// use egard::Choices;
///
/// let choices = Choices::new()
///     .select("topics", ["rides", "food"])
///     .select("frequency", ["weekly"]);
/// assert!(choices.is_selected("topics", "food"));
/// assert_eq!(choices.get("frequency"), Some(&["weekly".to_owned()][..]));
/// assert_eq!(format!("{choices:?}"), "Choices { frequency: [REDACTED], topics: [REDACTED] }");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Choices {
    /// By name.
    selected: Vec<Selection>,
}

impl Choices {
    /// No choice made.
    pub fn new() -> Self {
        Self::default()
    }

    /// Selects `options` for `choice`, replacing any selection made for it before. The
    /// options are kept as a set (order and repeats do not matter). Checked against the
    /// purpose's declaration when given to the vault.
    pub fn select<I, S>(mut self, choice: &str, options: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut options: Vec<String> = options.into_iter().map(|o| o.as_ref().to_owned()).collect();
        as_set(&mut options);
        let selection = Selection {
            name: choice.to_owned(),
            options,
        };
        match self.selected.binary_search_by(|s| s.name.as_str().cmp(choice)) {
            Ok(i) => {
                if let Some(old) = self.selected.get_mut(i) {
                    old.zeroize();
                    *old = selection;
                }
            }
            Err(i) => self.selected.insert(i, selection),
        }
        self
    }

    /// The options selected for `choice` (sorted), if it was selected at all.
    pub fn get(&self, choice: &str) -> Option<&[String]> {
        self.selected
            .binary_search_by(|s| s.name.as_str().cmp(choice))
            .ok()
            .and_then(|i| self.selected.get(i))
            .map(|s| s.options.as_slice())
    }

    /// Whether `option` is selected for `choice`.
    pub fn is_selected(&self, choice: &str, option: &str) -> bool {
        self.get(choice).is_some_and(|o| o.iter().any(|x| x == option))
    }

    /// Every choice made, by name: the name and the options selected.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.selected.iter().map(|s| (s.name.as_str(), s.options.as_slice()))
    }

    /// The names of the choices made, by name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.selected.iter().map(|s| s.name.as_str())
    }

    /// Whether no choice was made.
    pub fn is_empty(&self) -> bool {
        self.selected.is_empty()
    }

    /// Checks the selections against a purpose's declared choices: every choice declared,
    /// every option offered, exactly one option for a single choice that is selected. A
    /// declared choice may be left out (the customer did not answer it).
    pub(crate) fn check(&self, specs: &[ChoiceSpec]) -> Result<(), Error> {
        for s in &self.selected {
            let spec = specs
                .iter()
                .find(|spec| spec.name == s.name)
                // A name the host never declared may be anything: it is not repeated.
                .ok_or_else(|| Error::InvalidChoice {
                    choice: String::from("(undeclared)"),
                    reason: ChoiceProblem::UnknownChoice,
                })?;
            let invalid = |reason| Error::InvalidChoice {
                choice: spec.name.clone(),
                reason,
            };
            if s.options.iter().any(|o| !spec.offers(o)) {
                return Err(invalid(ChoiceProblem::UndeclaredOption));
            }
            if spec.single {
                match s.options.len() {
                    0 => return Err(invalid(ChoiceProblem::NoneSelected)),
                    1 => {}
                    _ => return Err(invalid(ChoiceProblem::MoreThanOne)),
                }
            }
        }
        Ok(())
    }
}

/// Sorts `options` and drops the repeats, each wiped first.
fn as_set(options: &mut Vec<String>) {
    options.sort_unstable();
    options.dedup_by(|later, kept| {
        let repeat = later == kept;
        if repeat {
            later.zeroize();
        }
        repeat
    });
}

impl fmt::Debug for Choices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted;
        impl fmt::Debug for Redacted {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[REDACTED]")
            }
        }
        let mut s = f.debug_struct("Choices");
        for sel in &self.selected {
            // Names are the host's declarations (slugs once checked); anything else is not
            // repeated.
            let name = if is_slug(&sel.name) { sel.name.as_str() } else { "?" };
            s.field(name, &Redacted);
        }
        s.finish()
    }
}

impl Serialize for Choices {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.selected.len()))?;
        for s in &self.selected {
            map.serialize_entry(&s.name, &s.options)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ChoicesVisitor;
        impl<'de> Visitor<'de> for ChoicesVisitor {
            type Value = Choices;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from choice name to selected options")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Choices, A::Error> {
                // Read whole, then sorted once (inserting each in place would take time
                // quadratic in the map's size); held in a `Choices` so that an error midway
                // still wipes what was read.
                let mut read = Choices::new();
                while let Some((name, mut options)) = map.next_entry::<String, Vec<String>>()? {
                    as_set(&mut options);
                    read.selected.push(Selection { name, options });
                }
                // Stable: of a name given twice, the later selection replaces the earlier, as
                // `select` does.
                read.selected.sort_by(|a, b| a.name.cmp(&b.name));
                let mut choices = Choices::new();
                for selection in read.selected.drain(..) {
                    match choices.selected.last_mut() {
                        Some(last) if last.name == selection.name => {
                            last.zeroize();
                            *last = selection;
                        }
                        _ => choices.selected.push(selection),
                    }
                }
                Ok(choices)
            }
        }
        d.deserialize_map(ChoicesVisitor)
    }
}

/// A customer's choices sealed under their data key: ciphertext (a field envelope, see
/// FORMAT.md), stored with the consent record it was given with and bound to it. Opens only
/// through a pass ([`Vault::choices`](crate::Vault::choices)).
///
/// `Debug` prints its length only; it serializes as base64.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedChoices(Vec<u8>);

impl SealedChoices {
    /// Wraps sealed bytes read back from a store (a backend's constructor: the vault checks
    /// them against the consent record's MAC before opening them).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The sealed bytes, as a store keeps them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SealedChoices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedChoices({} bytes)", self.0.len())
    }
}

impl Serialize for SealedChoices {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for SealedChoices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        BASE64
            .decode(text.as_bytes())
            .map(Self)
            .map_err(|_| serde::de::Error::custom("sealed choices are not base64"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<ChoiceSpec> {
        vec![
            ChoiceSpec::new("topics", ["rides", "food", "offers"], false),
            ChoiceSpec::new("frequency", ["weekly", "monthly"], true),
        ]
    }

    #[test]
    fn selections_are_checked_against_the_declaration() {
        let ok = Choices::new()
            .select("topics", ["food", "rides", "food"])
            .select("frequency", ["weekly"]);
        assert!(ok.check(&specs()).is_ok());
        assert_eq!(ok.get("topics").unwrap(), ["food", "rides"]);
        assert!(Choices::new().check(&specs()).is_ok());
        assert!(Choices::new().select("topics", [] as [&str; 0]).check(&specs()).is_ok());
        let problem = |c: Choices| match c.check(&specs()) {
            Err(Error::InvalidChoice { choice, reason }) => (choice, reason),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            problem(Choices::new().select("colour", ["red"])),
            ("(undeclared)".into(), ChoiceProblem::UnknownChoice)
        );
        assert_eq!(
            problem(Choices::new().select("topics", ["rides", "cars"])),
            ("topics".into(), ChoiceProblem::UndeclaredOption)
        );
        assert_eq!(
            problem(Choices::new().select("frequency", ["weekly", "monthly"])),
            ("frequency".into(), ChoiceProblem::MoreThanOne)
        );
        assert_eq!(
            problem(Choices::new().select("frequency", [] as [&str; 0])),
            ("frequency".into(), ChoiceProblem::NoneSelected)
        );
    }

    #[test]
    fn declarations_are_validated() {
        assert!(validate_specs(&specs()).is_ok());
        assert!(matches!(
            validate_specs(&[ChoiceSpec::new("Bad", ["a"], false)]),
            Err(Error::InvalidId { .. })
        ));
        assert!(matches!(
            validate_specs(&[ChoiceSpec::new("a", ["B B"], false)]),
            Err(Error::InvalidId { .. })
        ));
        assert!(matches!(
            validate_specs(&[ChoiceSpec::new("a", ["x", "x"], false)]),
            Err(Error::InvalidChoice {
                reason: ChoiceProblem::DeclaredTwice,
                ..
            })
        ));
        assert!(matches!(
            validate_specs(&[ChoiceSpec::new("a", ["x"], false), ChoiceSpec::new("a", ["y"], true)]),
            Err(Error::InvalidChoice {
                reason: ChoiceProblem::DeclaredTwice,
                ..
            })
        ));
        assert!(matches!(
            validate_specs(&[ChoiceSpec::new("a", [] as [&str; 0], false)]),
            Err(Error::InvalidChoice {
                reason: ChoiceProblem::OptionCount,
                ..
            })
        ));
    }

    #[test]
    fn many_choices_deserialize_in_time() {
        // A host may read choices from a request's JSON: a map of 100 000 names in reverse
        // order must not take time quadratic in its size.
        let mut json = String::from("{");
        for i in (0..100_000).rev() {
            if i != 99_999 {
                json.push(',');
            }
            json.push_str(&format!("\"c{i:06}\":[\"x\"]"));
        }
        json.push('}');
        let started = std::time::Instant::now();
        let choices: Choices = serde_json::from_str(&json).unwrap();
        let took = started.elapsed();
        assert_eq!(choices.names().count(), 100_000);
        assert!(choices.names().zip(choices.names().skip(1)).all(|(a, b)| a < b));
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
        // A name given twice: the later selection counts, as with `select`.
        let twice: Choices = serde_json::from_str(r#"{"b":["y"],"a":["x","x"],"b":["z"]}"#).unwrap();
        assert_eq!(twice, Choices::new().select("a", ["x"]).select("b", ["z"]));
    }

    #[test]
    fn choices_round_trip_and_never_print_selections() {
        let c = Choices::new().select("topics", ["secret-topic"]);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"topics":["secret-topic"]}"#);
        let back: Choices = crate::codec::from_slice(json.as_bytes()).unwrap();
        assert_eq!(back, c);
        assert!(!format!("{c:?}").contains("secret"));
        let sealed = SealedChoices::from_bytes(vec![1, 2, 3]);
        assert_eq!(format!("{sealed:?}"), "SealedChoices(3 bytes)");
        let json = serde_json::to_string(&sealed).unwrap();
        assert_eq!(serde_json::from_str::<SealedChoices>(&json).unwrap(), sealed);
    }
}
