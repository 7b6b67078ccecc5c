//! The canonical serialisation a receipt is signed over.
//!
//! It is RFC 8785 (JSON Canonicalization Scheme, JCS) restricted to what a receipt holds:
//! objects, arrays, strings, booleans, `null` and integers of at most 2⁵³ − 1 in magnitude.
//!
//! - No whitespace anywhere.
//! - Object members sorted by their names compared as sequences of UTF-16 code units (for the
//!   ASCII names of a receipt, byte order); a name appears once.
//! - Arrays keep their order.
//! - Strings: UTF-8, in double quotes; `"` and `\` escaped with a backslash; U+0008, U+0009,
//!   U+000A, U+000C, U+000D as `\b`, `\t`, `\n`, `\f`, `\r`; every other code point below
//!   U+0020 as `\u00xx` with lowercase hex digits; every other character as itself (no
//!   Unicode normalisation, no escape of `/`, of non-ASCII or of U+2028/U+2029).
//! - Integers in decimal, no sign for zero or positive values, no leading zero, no fraction,
//!   no exponent (what ECMAScript prints for a safe integer, so JCS libraries agree). A number
//!   with a fraction or beyond ±(2⁵³ − 1) is refused: a receipt never holds one.

use serde_json::Value;

/// The largest integer magnitude JCS prints exactly (ECMAScript's `Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotCanonical;

/// The canonical bytes of `value`.
pub(crate) fn to_vec(value: &Value) -> Result<Vec<u8>, NotCanonical> {
    let mut out = String::new();
    write(value, &mut out)?;
    Ok(out.into_bytes())
}

fn write(value: &Value, out: &mut String) -> Result<(), NotCanonical> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u > MAX_SAFE_INTEGER {
                    return Err(NotCanonical);
                }
                out.push_str(&u.to_string());
            } else if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(NotCanonical);
                }
                out.push_str(&i.to_string());
            } else {
                return Err(NotCanonical);
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out)?;
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (name, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(name, out);
                out.push(':');
                write(member, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => {
                let b = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value) -> String {
        String::from_utf8(to_vec(&v).unwrap()).unwrap()
    }

    #[test]
    fn members_are_sorted_without_whitespace() {
        assert_eq!(
            canon(json!({"b": [1, true, null], "a": {"z": "x", "y": -3}, "A": false})),
            r#"{"A":false,"a":{"y":-3,"z":"x"},"b":[1,true,null]}"#
        );
    }

    #[test]
    fn strings_escape_as_jcs_does() {
        assert_eq!(
            canon(json!("q\"b\\ \u{8}\t\n\u{c}\r\u{1}\u{1f} / é € \u{2028} 😀 \u{7f}")),
            "\"q\\\"b\\\\ \\b\\t\\n\\f\\r\\u0001\\u001f / é € \u{2028} 😀 \u{7f}\""
        );
    }

    #[test]
    fn names_sort_by_utf16_code_units() {
        // U+FB01 (one UTF-16 unit 0xFB01) sorts after U+1F600 (surrogates 0xD83D 0xDE00),
        // though its UTF-8 bytes sort before.
        assert_eq!(canon(json!({"\u{fb01}": 1, "😀": 2})), "{\"😀\":2,\"\u{fb01}\":1}");
    }

    #[test]
    fn only_safe_integers_are_numbers() {
        assert_eq!(
            canon(json!([0, -0, 9007199254740991_u64, -9007199254740991_i64])),
            "[0,0,9007199254740991,-9007199254740991]"
        );
        assert_eq!(to_vec(&json!(9007199254740992_u64)), Err(NotCanonical));
        assert_eq!(to_vec(&json!(-9007199254740992_i64)), Err(NotCanonical));
        assert_eq!(to_vec(&json!(1.5)), Err(NotCanonical));
        assert_eq!(to_vec(&json!({"a": [u64::MAX]})), Err(NotCanonical));
    }
}
