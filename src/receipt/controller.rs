//! The controller's details a receipt names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Who the controller is, as a consent receipt names them: the business's details, never a
/// customer's. Given to [`VaultBuilder::controller`](crate::VaultBuilder::controller).
///
/// `name`, `jurisdiction` and the privacy policy's URL are required (the vault builder refuses
/// a controller without them); the rest is printed in the receipt when given.
///
/// ```
/// use egard::Controller;
///
/// let controller = Controller::new("Acme Books SAS")
///     .jurisdiction("EU")
///     .policy_url("https://books.example/privacy/v3")
///     .contact("Data Protection Officer")
///     .address("1 rue de la Paix, 75002 Paris", "FR")
///     .email("dpo@books.example")
///     .phone("+33 1 23 45 67 89")
///     .url("https://books.example")
///     .service("Acme Books online shop")
///     .withdrawal_method("https://books.example/account/consents, or reply STOP to any message")
///     .third_party("delivery", "Parcel Express SA");
/// assert_eq!(controller.name(), "Acme Books SAS");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Controller {
    pub(super) name: String,
    pub(super) jurisdiction: String,
    pub(super) policy_url: String,
    pub(super) contact: Option<String>,
    pub(super) address: Option<(String, String)>,
    pub(super) email: Option<String>,
    pub(super) phone: Option<String>,
    pub(super) url: Option<String>,
    pub(super) on_behalf: bool,
    pub(super) service: Option<String>,
    pub(super) language: String,
    pub(super) withdrawal_method: Option<String>,
    pub(super) third_parties: BTreeMap<String, String>,
}

impl Controller {
    /// A controller with this (legal) name. Set its jurisdiction and policy URL too.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            jurisdiction: String::new(),
            policy_url: String::new(),
            contact: None,
            address: None,
            email: None,
            phone: None,
            url: None,
            on_behalf: false,
            service: None,
            language: "en".to_owned(),
            withdrawal_method: None,
            third_parties: BTreeMap::new(),
        }
    }

    /// The jurisdiction(s) the processing falls under, such as `EU` or `FR` (required).
    pub fn jurisdiction(mut self, jurisdiction: &str) -> Self {
        jurisdiction.clone_into(&mut self.jurisdiction);
        self
    }

    /// Where the privacy policy is (required).
    pub fn policy_url(mut self, url: &str) -> Self {
        url.clone_into(&mut self.policy_url);
        self
    }

    /// Whom to contact about the processing (a role such as "Data Protection Officer").
    pub fn contact(mut self, contact: &str) -> Self {
        self.contact = Some(contact.to_owned());
        self
    }

    /// The controller's postal address and its country (ISO 3166-1 alpha-2).
    pub fn address(mut self, street: &str, country: &str) -> Self {
        self.address = Some((street.to_owned(), country.to_owned()));
        self
    }

    /// The controller's contact email address.
    pub fn email(mut self, email: &str) -> Self {
        self.email = Some(email.to_owned());
        self
    }

    /// The controller's contact phone number.
    pub fn phone(mut self, phone: &str) -> Self {
        self.phone = Some(phone.to_owned());
        self
    }

    /// The controller's web site.
    pub fn url(mut self, url: &str) -> Self {
        self.url = Some(url.to_owned());
        self
    }

    /// Marks the controller as acting on behalf of another one (Kantara's `onBehalf`).
    pub fn on_behalf(mut self) -> Self {
        self.on_behalf = true;
        self
    }

    /// The name of the service the consents are given to (the controller's name by default).
    pub fn service(mut self, service: &str) -> Self {
        self.service = Some(service.to_owned());
        self
    }

    /// The language of the receipts' texts (ISO 639 / BCP 47; `en` by default).
    pub fn language(mut self, language: &str) -> Self {
        language.clone_into(&mut self.language);
        self
    }

    /// How a customer withdraws a consent (a page, an address, a keyword): printed in every
    /// receipt.
    pub fn withdrawal_method(mut self, method: &str) -> Self {
        self.withdrawal_method = Some(method.to_owned());
        self
    }

    /// Declares that the data of `purpose` is disclosed to the third party `name`: its
    /// receipts say so (`thirdPartyDisclosure`, `thirdPartyName`). Without it a purpose's
    /// receipts say nothing is disclosed.
    pub fn third_party(mut self, purpose: &str, name: &str) -> Self {
        self.third_parties.insert(purpose.to_owned(), name.to_owned());
        self
    }

    /// The controller's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the required details.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.name.trim().is_empty() || self.jurisdiction.trim().is_empty() || self.policy_url.trim().is_empty() {
            return Err(Error::Config(
                "a controller needs a name, a jurisdiction and a policy URL",
            ));
        }
        Ok(())
    }
}
