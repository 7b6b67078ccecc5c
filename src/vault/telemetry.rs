//! What egard tells a `tracing` subscriber (feature `tracing`, on by default).
//!
//! Three kinds of output, all made of ids, names and codes — never a value, an email, a
//! lookup value, a key or a token:
//!
//! - a span per public vault operation (`egard.authorize`, `egard.give_consent`, …), with the
//!   customer id, purpose and field it concerns; an operation that fails records an event
//!   with the error's `Display` (which never holds personal data) in its span. A subscriber
//!   measures each span's duration (for example `fmt` with `FmtSpan::CLOSE`).
//! - an event per audit entry, target `egard::audit`, level INFO: `kind` (the audit code:
//!   `access_granted`, `access_denied`, `consent_withdrawn`, …), `customer`, `purpose`,
//!   `field`, `actor`, `detail` (a denial reason such as `withdrawn`, a consent id, a key version). This
//!   is the stream for a dashboard's grants and denials by reason.
//! - an event per store round trip on the paths that matter (the audit write and the cold
//!   loads), target `egard::store`, level DEBUG: `op`, `ok`, `micros`.
//!
//! With the feature off, or no subscriber installed, or the level filtered out, each of these
//! costs one relaxed atomic load (`tracing`'s callsite interest) and no clock read.

use crate::audit::Entry;
use crate::store::StoreError;

/// Emits one `egard::audit` event per entry just written (or queued for a batched write).
#[cfg(feature = "tracing")]
pub(crate) fn audit_entries<'a>(entries: impl IntoIterator<Item = &'a Entry>) {
    if !tracing::enabled!(target: "egard::audit", tracing::Level::INFO) {
        return;
    }
    for e in entries {
        tracing::info!(
            target: "egard::audit",
            kind = e.kind.code(),
            customer = e.customer.map(tracing::field::display),
            purpose = e.purpose.as_ref().map(|p| p.as_str()),
            field = e.field.as_ref().map(|f| f.as_str()),
            // A host-supplied id that `Actor::new` refused to take if it looked like an email.
            actor = e.actor.as_ref().map(|a| a.as_str()),
            // INVARIANT: an entry's detail is a code or an id (audit::Entry docs); it never
            // holds personal data, as the audit log itself must not.
            detail = e.detail.as_str(),
        );
    }
}

/// Without the feature: nothing.
#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn audit_entries<'a>(_entries: impl IntoIterator<Item = &'a Entry>) {}

/// Runs one store round trip, timed and reported as an `egard::store` event when a subscriber
/// listens at DEBUG.
#[cfg(feature = "tracing")]
#[inline]
pub(crate) fn store_call<T>(op: &'static str, call: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    if !tracing::enabled!(target: "egard::store", tracing::Level::DEBUG) {
        return call();
    }
    let start = std::time::Instant::now();
    let result = call();
    let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    tracing::debug!(target: "egard::store", op, ok = result.is_ok(), micros);
    result
}

/// Without the feature: the call itself.
#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn store_call<T>(_op: &'static str, call: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    call()
}

/// A purpose or field name as given by the caller, for a span: itself when it follows the
/// naming rule (then it is a name the host chose, as the audit log records it), `"(invalid)"`
/// otherwise — a caller can pass anything, even personal data, where a name belongs.
#[cfg(feature = "tracing")]
pub(crate) fn name(given: &str) -> &str {
    if crate::ids::FieldName::new(given).is_ok() {
        given
    } else {
        "(invalid)"
    }
}
