//! The decrypted values of a subject export: kept as the JSON text they were sealed as, wiped
//! when dropped, redacted in `Debug`, written as is into the export's JSON.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use zeroize::{Zeroize, Zeroizing};

use super::rights::SubjectExport;
use crate::error::Error;
use crate::ids::FieldName;

/// One decrypted field value of a [`SubjectExport`]: the JSON text it was sealed as.
///
/// It is the customer's data in clear, so it is wiped from memory when dropped, prints as
/// `[REDACTED]` in `Debug` (it has no `Display`), and cannot be cloned. Serialized with
/// `serde_json`, it writes its JSON text as is, so the export's JSON holds the value itself.
/// It is never decoded into a `serde_json::Value` (whose strings would not be wiped); read it
/// with [`expose`](ExportedValue::expose), and decode it yourself if you must.
///
/// ```
/// use egard::{Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, Vault};
///
/// let vault = Vault::builder().master_key(MasterKey::from_bytes([3; 32])).store(MemoryStore::new()).build()?;
/// vault.define_purpose(Purpose::new("shipping", LawfulBasis::Contract).fields(["email"]))?;
/// let alice = vault.create_customer()?;
/// vault.set_field(alice, "email", "alice@example.com")?;
///
/// let export = vault.export_customer(alice, Evidence::new("verified-email-link"))?;
/// let email = &export.fields["email"];
/// assert_eq!(format!("{email:?}"), "[REDACTED]");
/// assert_eq!(email.expose(), r#""alice@example.com""#);
/// # Ok::<(), egard::Error>(())
/// ```
pub struct ExportedValue {
    /// Valid JSON, checked once when the export was made. `Zeroizing<String>` wipes the
    /// string's whole allocation (its capacity, not only its length) when dropped.
    json: Zeroizing<String>,
}

impl ExportedValue {
    /// Takes a decrypted plaintext (the JSON text `set_field` sealed) without copying it.
    /// A plaintext that is not UTF-8 JSON is [`Error::Codec`], and is wiped as well.
    pub(crate) fn from_plaintext(field: &FieldName, mut plaintext: Zeroizing<Vec<u8>>) -> Result<Self, Error> {
        let codec = || Error::Codec {
            field: field.clone(),
            action: "decoded",
        };
        // Moves the buffer out (the one left behind is empty); a non-UTF-8 one comes back in
        // the error and is wiped here.
        let json = match String::from_utf8(std::mem::take(&mut *plaintext)) {
            Ok(json) => Zeroizing::new(json),
            Err(e) => {
                e.into_bytes().zeroize();
                return Err(codec());
            }
        };
        // Checked once, borrowing the text: nothing of the value is copied.
        serde_json::from_str::<&RawValue>(&json).map_err(|_| codec())?;
        Ok(Self { json })
    }

    /// The value's JSON text, for example `"alice@example.com"` (quotes included) or
    /// `{"street":"1 Rue de la Paix"}`. Handle with care: it is the customer's data in clear.
    pub fn expose(&self) -> &str {
        &self.json
    }
}

impl fmt::Debug for ExportedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Writes the JSON text as is with `serde_json` (as a `serde_json::value::RawValue`); other
/// serializers receive serde_json's representation of a raw value.
impl Serialize for ExportedValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Borrows the text again (checked when made, so this cannot fail; if it did, the
        // message is serde_json's own, which may quote the text: not used here).
        let raw = serde_json::from_str::<&RawValue>(&self.json)
            .map_err(|_| serde::ser::Error::custom("an exported value is not valid JSON"))?;
        raw.serialize(serializer)
    }
}

impl SubjectExport {
    /// The export as JSON, in a buffer wiped when dropped: hand it to the customer and let it
    /// go. The JSON is measured first and written once into a buffer of exactly its size, so
    /// no growing buffer leaves unwiped copies of the values behind in freed memory.
    ///
    /// `serde_json::to_string(&export)` gives the same JSON, but the `String` is then the
    /// host's to wipe; `serde_json::to_value` decodes every value into a `serde_json::Value`,
    /// which is never wiped.
    ///
    /// ```
    /// use egard::{Evidence, LawfulBasis, MasterKey, MemoryStore, Purpose, Vault};
    ///
    /// let vault = Vault::builder().master_key(MasterKey::from_bytes([3; 32])).store(MemoryStore::new()).build()?;
    /// vault.define_purpose(Purpose::new("shipping", LawfulBasis::Contract).fields(["email"]))?;
    /// let alice = vault.create_customer()?;
    /// vault.set_field(alice, "email", "alice@example.com")?;
    ///
    /// let export = vault.export_customer(alice, Evidence::new("verified-email-link"))?;
    /// let json = export.to_json()?;
    /// let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
    /// assert_eq!(parsed["fields"]["email"], "alice@example.com");
    /// # Ok::<(), egard::Error>(())
    /// ```
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        to_json_exact(self)
    }
}

/// Serializes `value` into a wiped-on-drop buffer of exactly the size of its JSON.
fn to_json_exact<T: Serialize + ?Sized>(value: &T) -> Result<Zeroizing<Vec<u8>>, Error> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    const FAILED: Error = Error::Invalid("the export could not be written as JSON");
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_err(|_| FAILED)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *bytes, value).map_err(|_| FAILED)?;
    if bytes.len() != count.0 {
        // Serialized differently the second time: whatever was written is wiped on return.
        return Err(FAILED);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field() -> FieldName {
        FieldName::new("email").unwrap()
    }

    fn value(json: &str) -> Result<ExportedValue, Error> {
        ExportedValue::from_plaintext(&field(), Zeroizing::new(json.as_bytes().to_vec()))
    }

    #[test]
    fn keeps_the_json_text_as_is_and_serializes_it_raw() {
        let v = value(r#"{"street":"1 Rue de la Paix","zip":75002}"#).unwrap();
        assert_eq!(v.expose(), r#"{"street":"1 Rue de la Paix","zip":75002}"#);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"street":"1 Rue de la Paix","zip":75002}"#
        );
        let s = value(r#""alice@example.com""#).unwrap();
        assert_eq!(serde_json::to_value(&s).unwrap(), "alice@example.com");
    }

    #[test]
    fn debug_is_redacted() {
        let v = value(r#""alice@example.com""#).unwrap();
        assert_eq!(format!("{v:?}"), "[REDACTED]");
        assert_eq!(format!("{v:#?}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(&v)), "Some([REDACTED])");
    }

    #[test]
    fn a_damaged_plaintext_is_a_codec_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\"unterminated",
            b"{\"a\":",
            b"1 2",
            b"\xff\xfe",
            b"\"\xff\"",
            b"nul",
            &[b'['; 200][..],
        ] {
            match ExportedValue::from_plaintext(&field(), Zeroizing::new(bad.to_vec())) {
                Err(Error::Codec { field: f, action }) => assert_eq!((f.as_str(), action), ("email", "decoded")),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    /// The wipe itself: the value holds its text in a `Zeroizing<String>` (a type check, so
    /// it cannot drift), and zeroizing such a string zeroes every byte of its allocation,
    /// which is what its `Drop` does. The allocator-level check, that no freed memory still
    /// holds an exported value, is in `tests/export_wipe.rs`.
    #[test]
    fn the_text_is_held_in_a_zeroizing_buffer() {
        let mut v = value(r#""alice@example.com""#).unwrap();
        let held: &mut Zeroizing<String> = &mut v.json;
        let capacity = held.capacity();
        assert!(capacity >= r#""alice@example.com""#.len());
        // What `Drop for Zeroizing<String>` calls: the contents go, the allocation is kept
        // (zeroed, up to its capacity) until freed.
        held.zeroize();
        assert!(held.is_empty());
        assert_eq!(held.capacity(), capacity);
    }

    #[test]
    fn to_json_fits_its_buffer_exactly() {
        let values = vec![value(r#""a""#).unwrap(), value("[1,2,3]").unwrap()];
        let json = to_json_exact(&values).unwrap();
        assert_eq!(&json[..], br#"["a",[1,2,3]]"#);
        assert_eq!(json.capacity(), json.len());
    }
}
