//! JSON decoding of revealed plaintext that leaves no unwiped copy of it behind.
//!
//! `serde_json::from_slice` unescapes strings into a scratch buffer of its own that grows
//! (leaving freed, unwiped copies behind) and is freed without being wiped. This decoder reads
//! the same JSON (RFC 8259, as serde_json writes and reads it) and hands strings to the visitor
//! either borrowed from the input (no escapes: no copy at all) or unescaped into one scratch
//! buffer of the input's length, allocated once, never grown, wiped after every string and
//! wiped again when dropped. Nothing else ever holds unescaped plaintext.
//!
//! It accepts and rejects exactly what serde_json (without `arbitrary_precision`) accepts and
//! rejects, with the same values, except that numbers with a fraction or an exponent are read
//! with std's correctly rounded `str::parse::<f64>` (which is what serde_json's
//! `float_roundtrip` feature gives; without it serde_json can be off by an ulp).

use std::fmt;

use serde::de::{self, DeserializeSeed, Visitor};
use zeroize::{Zeroize, Zeroizing};

/// How deep arrays, objects and enums may nest: serde_json's limit.
const DEPTH_LIMIT: u8 = 128;

/// Why a plaintext could not be decoded. Opaque on purpose: it never quotes the input (which
/// is personal data), only names the kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// What went wrong, as a fixed text.
    reason: &'static str,
}

impl DecodeError {
    /// An error with a fixed reason.
    const fn new(reason: &'static str) -> Self {
        Self { reason }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the JSON value could not be decoded: {}", self.reason)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    /// The target type's message is dropped unformatted: it can quote the value.
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Self::new("the value does not fit the target type")
    }
}

/// Shorthand for this module's results.
type Result<T> = std::result::Result<T, DecodeError>;

/// An error of the JSON syntax.
const SYNTAX: DecodeError = DecodeError::new("invalid JSON");
/// The input ended inside a value.
const EOF: DecodeError = DecodeError::new("unexpected end of input");
/// A string was not valid UTF-8, or an escape was not a valid code point.
const UNICODE: DecodeError = DecodeError::new("invalid unicode in a string");
/// A number was out of the range of every number type (an infinite float).
const RANGE: DecodeError = DecodeError::new("number out of range");
/// A value of another JSON type than the target type expects.
const TYPE: DecodeError = DecodeError::new("the value does not fit the target type");
/// Too deep nesting.
const DEPTH: DecodeError = DecodeError::new("nesting too deep");
/// Anything but whitespace after the value.
const TRAILING: DecodeError = DecodeError::new("trailing characters");
/// The scratch buffer would have had to grow: cannot happen, refused rather than reallocate.
const SCRATCH: DecodeError = DecodeError::new("internal scratch buffer exhausted");

/// Decodes `bytes` (one JSON value, surrounded by whitespace at most) as `T`, like
/// `serde_json::from_slice`, without leaving any unwiped copy of unescaped string contents.
pub(crate) fn from_slice<T: de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut decoder = Decoder::new(bytes);
    let value = T::deserialize(&mut decoder).and_then(|value| decoder.end().map(|()| value));
    #[cfg(test)]
    tests::observe_scratch(&decoder.scratch);
    value
}

/// A string read from the input.
enum Text<'de> {
    /// Without escapes: the bytes between the quotes, borrowed from the input.
    Borrowed(&'de [u8]),
    /// With escapes: unescaped into `scratch[..used]`.
    Scratch,
}

/// How a string is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As text: no control characters, UTF-8, surrogates paired (`deserialize_str` & co.).
    Text,
    /// As bytes (`deserialize_bytes`): control characters and lone surrogates (as WTF-8)
    /// allowed, no UTF-8 check, as serde_json's `parse_str_raw`.
    Raw,
}

/// A JSON number as serde_json hands it to a visitor.
enum Number {
    /// A non-negative integer that fits a `u64`.
    U64(u64),
    /// A negative integer that fits an `i64`.
    I64(i64),
    /// Anything else: a fraction, an exponent, `-0`, or an integer out of range.
    F64(f64),
}

/// The deserializer: a position in the input, the scratch buffer and the nesting budget.
struct Decoder<'de> {
    /// The whole input.
    input: &'de [u8],
    /// The index of the next byte to read.
    pos: usize,
    /// Unescaped string contents, one string at a time: empty until the first escaped string,
    /// then `input.len()` zero bytes, never resized (an unescaped string is never longer than
    /// its escaped form). Wiped after each use and on drop.
    scratch: Zeroizing<Vec<u8>>,
    /// How many bytes at the start of `scratch` hold the current string.
    used: usize,
    /// How many more levels of nesting are allowed.
    remaining_depth: u8,
}

impl<'de> Decoder<'de> {
    /// A decoder at the start of `input`.
    fn new(input: &'de [u8]) -> Self {
        Self {
            input,
            pos: 0,
            scratch: Zeroizing::new(Vec::new()),
            used: 0,
            remaining_depth: DEPTH_LIMIT,
        }
    }

    /// Checks that only whitespace follows the value.
    fn end(&mut self) -> Result<()> {
        match self.skip_whitespace() {
            None => Ok(()),
            Some(_) => Err(TRAILING),
        }
    }

    /// The next byte, not consumed.
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Consumes one byte (after a `peek`).
    fn eat(&mut self) {
        self.pos = self.pos.saturating_add(1);
    }

    /// The next byte, consumed.
    fn bump(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.eat();
        Some(byte)
    }

    /// Skips JSON whitespace; gives the next byte, not consumed.
    fn skip_whitespace(&mut self) -> Option<u8> {
        while let Some(byte) = self.peek() {
            match byte {
                b' ' | b'\n' | b'\t' | b'\r' => self.eat(),
                other => return Some(other),
            }
        }
        None
    }

    /// Consumes `ident` (`null`, `true`, `false`) exactly.
    fn expect_ident(&mut self, ident: &[u8]) -> Result<()> {
        for expected in ident {
            match self.bump() {
                Some(byte) if byte == *expected => {}
                Some(_) => return Err(SYNTAX),
                None => return Err(EOF),
            }
        }
        Ok(())
    }

    /// Enters an array, object or enum.
    fn enter(&mut self) -> Result<()> {
        self.remaining_depth = self.remaining_depth.saturating_sub(1);
        if self.remaining_depth == 0 { Err(DEPTH) } else { Ok(()) }
    }

    /// Leaves an array, object or enum.
    fn leave(&mut self) {
        self.remaining_depth = self.remaining_depth.saturating_add(1).min(DEPTH_LIMIT);
    }

    /// Consumes the `:` between an object's key and value.
    fn expect_colon(&mut self) -> Result<()> {
        match self.skip_whitespace() {
            Some(b':') => {
                self.eat();
                Ok(())
            }
            Some(_) => Err(SYNTAX),
            None => Err(EOF),
        }
    }

    /// Consumes the `]` closing an array whose visitor is done.
    fn end_seq(&mut self) -> Result<()> {
        match self.skip_whitespace() {
            Some(b']') => {
                self.eat();
                Ok(())
            }
            Some(_) => Err(SYNTAX),
            None => Err(EOF),
        }
    }

    /// Consumes the `}` closing an object whose visitor is done.
    fn end_map(&mut self) -> Result<()> {
        match self.skip_whitespace() {
            Some(b'}') => {
                self.eat();
                Ok(())
            }
            Some(_) => Err(SYNTAX),
            None => Err(EOF),
        }
    }

    // ----- scratch -----

    /// Wipes the used part of the scratch buffer.
    fn wipe(&mut self) {
        if let Some(used) = self.scratch.get_mut(..self.used) {
            used.zeroize();
        }
        self.used = 0;
    }

    /// Appends bytes to the scratch buffer, which is allocated (once, at the input's length)
    /// on first use and never grows.
    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        if self.scratch.is_empty() {
            // The one allocation: zero-filled, its full length usable, never resized.
            *self.scratch = vec![0; self.input.len()];
        }
        let end = self.used.checked_add(bytes.len()).ok_or(SCRATCH)?;
        let slot = self.scratch.get_mut(self.used..end).ok_or(SCRATCH)?;
        slot.copy_from_slice(bytes);
        self.used = end;
        Ok(())
    }

    /// Appends a code point (a surrogate too, for `Mode::Raw`) as (WTF-)8.
    fn push_code_point(&mut self, n: u32) -> Result<()> {
        // The casts keep the low bits on purpose: each byte is masked first.
        let mut buf = [0u8; 4];
        let len = if n < 0x80 {
            buf[0] = n as u8;
            1
        } else if n < 0x800 {
            buf[0] = 0xC0 | (n >> 6) as u8;
            buf[1] = 0x80 | (n & 0x3F) as u8;
            2
        } else if n < 0x1_0000 {
            buf[0] = 0xE0 | (n >> 12) as u8;
            buf[1] = 0x80 | ((n >> 6) & 0x3F) as u8;
            buf[2] = 0x80 | (n & 0x3F) as u8;
            3
        } else {
            buf[0] = 0xF0 | ((n >> 18) & 0x07) as u8;
            buf[1] = 0x80 | ((n >> 12) & 0x3F) as u8;
            buf[2] = 0x80 | ((n >> 6) & 0x3F) as u8;
            buf[3] = 0x80 | (n & 0x3F) as u8;
            4
        };
        let result = self.push(buf.get(..len).ok_or(SCRATCH)?);
        buf.zeroize();
        result
    }

    // ----- strings -----

    /// Reads the four hex digits of a `\u` escape.
    fn hex4(&mut self) -> Result<u16> {
        let digits = self.input.get(self.pos..self.pos.saturating_add(4)).ok_or(EOF)?;
        let mut n: u16 = 0;
        for &digit in digits {
            let value = match digit {
                b'0'..=b'9' => digit - b'0',
                b'a'..=b'f' => digit - b'a' + 10,
                b'A'..=b'F' => digit - b'A' + 10,
                _ => return Err(SYNTAX),
            };
            n = (n << 4) | u16::from(value);
        }
        self.pos = self.pos.saturating_add(4);
        Ok(n)
    }

    /// Unescapes one escape (the `\` is consumed) into the scratch buffer, as serde_json's
    /// `parse_escape` does.
    fn unescape(&mut self, mode: Mode) -> Result<()> {
        let byte = match self.bump().ok_or(EOF)? {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0C,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => return self.unescape_unicode(mode),
            _ => return Err(SYNTAX),
        };
        self.push(&[byte])
    }

    /// Unescapes a `\u` escape (the `\u` is consumed), pairing surrogates; in `Mode::Text`
    /// a lone surrogate is an error, in `Mode::Raw` it is kept as WTF-8.
    fn unescape_unicode(&mut self, mode: Mode) -> Result<()> {
        let validate = mode == Mode::Text;
        let mut n = self.hex4()?;
        if validate && (0xDC00..=0xDFFF).contains(&n) {
            return Err(UNICODE);
        }
        loop {
            if !(0xD800..=0xDBFF).contains(&n) {
                return self.push_code_point(u32::from(n));
            }
            let lead = n;
            if self.peek().ok_or(EOF)? == b'\\' {
                self.eat();
            } else if validate {
                return Err(UNICODE);
            } else {
                return self.push_code_point(u32::from(lead));
            }
            if self.peek().ok_or(EOF)? == b'u' {
                self.eat();
            } else if validate {
                return Err(UNICODE);
            } else {
                // The `\` began another (not `\u`) escape.
                self.push_code_point(u32::from(lead))?;
                return self.unescape(mode);
            }
            let trail = self.hex4()?;
            if !(0xDC00..=0xDFFF).contains(&trail) {
                if validate {
                    return Err(UNICODE);
                }
                self.push_code_point(u32::from(lead))?;
                n = trail;
                continue;
            }
            let code = (((u32::from(lead) - 0xD800) << 10) | (u32::from(trail) - 0xDC00)) + 0x1_0000;
            return self.push_code_point(code);
        }
    }

    /// Reads a string whose opening quote is consumed, up to and including its closing quote.
    /// On error the scratch buffer is wiped.
    fn read_string(&mut self, mode: Mode) -> Result<Text<'de>> {
        let result = self.read_string_inner(mode);
        if result.is_err() {
            self.wipe();
        }
        result
    }

    /// [`read_string`](Self::read_string) without the wipe on error.
    fn read_string_inner(&mut self, mode: Mode) -> Result<Text<'de>> {
        let input = self.input;
        let mut start = self.pos;
        let mut escaped = false;
        loop {
            let byte = self.peek().ok_or(EOF)?;
            match byte {
                b'"' => {
                    let tail = input.get(start..self.pos).ok_or(SYNTAX)?;
                    self.eat();
                    if !escaped {
                        return Ok(Text::Borrowed(tail));
                    }
                    self.push(tail)?;
                    return Ok(Text::Scratch);
                }
                b'\\' => {
                    let segment = input.get(start..self.pos).ok_or(SYNTAX)?;
                    escaped = true;
                    self.push(segment)?;
                    self.eat();
                    self.unescape(mode)?;
                    start = self.pos;
                }
                0x00..=0x1F if mode == Mode::Text => return Err(SYNTAX),
                _ => self.eat(),
            }
        }
    }

    /// Reads a string (opening quote consumed) as text and visits it: borrowed when it has no
    /// escapes, else from the scratch buffer, which is wiped right after the visit.
    fn visit_text<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        match self.read_string(Mode::Text)? {
            Text::Borrowed(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => visitor.visit_borrowed_str(text),
                Err(_) => Err(UNICODE),
            },
            Text::Scratch => {
                let result = match self.scratch.get(..self.used).map(std::str::from_utf8) {
                    Some(Ok(text)) => visitor.visit_str(text),
                    Some(Err(_)) => Err(UNICODE),
                    None => Err(SCRATCH),
                };
                self.wipe();
                result
            }
        }
    }

    /// Reads a string (opening quote consumed) as bytes and visits it, like
    /// [`visit_text`](Self::visit_text).
    fn visit_raw<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        match self.read_string(Mode::Raw)? {
            Text::Borrowed(bytes) => visitor.visit_borrowed_bytes(bytes),
            Text::Scratch => {
                let result = match self.scratch.get(..self.used) {
                    Some(bytes) => visitor.visit_bytes(bytes),
                    None => Err(SCRATCH),
                };
                self.wipe();
                result
            }
        }
    }

    // ----- numbers -----

    /// Consumes a run of ASCII digits; gives how many.
    fn digits(&mut self) -> usize {
        let mut count = 0usize;
        while let Some(b'0'..=b'9') = self.peek() {
            self.eat();
            count = count.saturating_add(1);
        }
        count
    }

    /// Consumes the integer part of a number (no sign): `0` or a non-zero digit and digits.
    fn integer_part(&mut self) -> Result<()> {
        match self.bump() {
            Some(b'0') => match self.peek() {
                Some(b'0'..=b'9') => Err(SYNTAX),
                _ => Ok(()),
            },
            Some(b'1'..=b'9') => {
                self.digits();
                Ok(())
            }
            Some(_) => Err(SYNTAX),
            None => Err(EOF),
        }
    }

    /// Reads a number (at its first byte, `-` or a digit) as serde_json does: a `u64` if it
    /// is a non-negative integer in range, an `i64` if a negative one in range (but `-0` is a
    /// float), else a correctly rounded `f64`; an infinite float is an error.
    fn parse_number(&mut self) -> Result<Number> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.eat();
        }
        let int_start = self.pos;
        self.integer_part()?;
        let int_end = self.pos;
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.eat();
            if self.digits() == 0 {
                return Err(if self.peek().is_some() { SYNTAX } else { EOF });
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.eat();
            if let Some(b'+' | b'-') = self.peek() {
                self.eat();
            }
            if self.digits() == 0 {
                return Err(if self.peek().is_some() { SYNTAX } else { EOF });
            }
            float = true;
        }
        let ascii = |range: std::ops::Range<usize>| -> Result<&str> {
            let bytes = self.input.get(range).ok_or(SYNTAX)?;
            std::str::from_utf8(bytes).map_err(|_| SYNTAX)
        };
        if !float {
            if let Ok(magnitude) = ascii(int_start..int_end)?.parse::<u64>() {
                if !negative {
                    return Ok(Number::U64(magnitude));
                }
                if magnitude != 0 {
                    if let Ok(value) = i64::try_from(-i128::from(magnitude)) {
                        return Ok(Number::I64(value));
                    }
                }
            }
        }
        match ascii(start..self.pos)?.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Number::F64(value)),
            Ok(_) => Err(RANGE),
            Err(_) => Err(SYNTAX),
        }
    }

    /// Reads a number and visits it.
    fn visit_number<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        match self.parse_number()? {
            Number::U64(n) => visitor.visit_u64(n),
            Number::I64(n) => visitor.visit_i64(n),
            Number::F64(n) => visitor.visit_f64(n),
        }
    }

    /// Reads an integer (at `-` or a digit) for `i128`/`u128`, as serde_json's
    /// `deserialize_i128`/`deserialize_u128`: no fraction, no exponent.
    fn visit_integer128<V: Visitor<'de>>(&mut self, visitor: V, signed: bool) -> Result<V::Value> {
        let start = self.pos;
        match self.peek() {
            Some(b'-') if signed => self.eat(),
            Some(b'-') => return Err(RANGE),
            Some(_) => {}
            None => return Err(EOF),
        }
        self.integer_part()?;
        let text = self
            .input
            .get(start..self.pos)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .ok_or(SYNTAX)?;
        if signed {
            visitor.visit_i128(text.parse().map_err(|_| RANGE)?)
        } else {
            visitor.visit_u128(text.parse().map_err(|_| RANGE)?)
        }
    }

    // ----- skipping -----

    /// Skips a string whose opening quote is consumed, as serde_json's `ignore_str`: control
    /// characters and bad escapes are errors; UTF-8 and surrogates are not checked.
    fn skip_string(&mut self) -> Result<()> {
        loop {
            match self.bump().ok_or(EOF)? {
                b'"' => return Ok(()),
                b'\\' => match self.bump().ok_or(EOF)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        self.hex4()?;
                    }
                    _ => return Err(SYNTAX),
                },
                0x00..=0x1F => return Err(SYNTAX),
                _ => {}
            }
        }
    }

    /// Skips a number's syntax (no range check), as serde_json's `ignore_integer`.
    fn skip_number(&mut self) -> Result<()> {
        if self.peek() == Some(b'-') {
            self.eat();
        }
        self.integer_part()?;
        if self.peek() == Some(b'.') {
            self.eat();
            if self.digits() == 0 {
                return Err(SYNTAX);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.eat();
            if let Some(b'+' | b'-') = self.peek() {
                self.eat();
            }
            if self.digits() == 0 {
                return Err(SYNTAX);
            }
        }
        Ok(())
    }

    /// Skips one value, checking only its syntax, without recursion and without a nesting
    /// limit, as serde_json's `ignore_value`. The stack holds only `[` and `{`.
    fn skip_value(&mut self) -> Result<()> {
        let mut stack: Vec<u8> = Vec::new();
        loop {
            // A value.
            let opened = match self.skip_whitespace().ok_or(EOF)? {
                b'n' => {
                    self.expect_ident(b"null")?;
                    None
                }
                b't' => {
                    self.expect_ident(b"true")?;
                    None
                }
                b'f' => {
                    self.expect_ident(b"false")?;
                    None
                }
                b'-' | b'0'..=b'9' => {
                    self.skip_number()?;
                    None
                }
                b'"' => {
                    self.eat();
                    self.skip_string()?;
                    None
                }
                frame @ (b'[' | b'{') => {
                    self.eat();
                    Some(frame)
                }
                _ => return Err(SYNTAX),
            };
            // What follows it: a close, a comma, or (right after an open) the first element.
            let mut after_open = opened.is_some();
            if let Some(frame) = opened {
                stack.push(frame);
            }
            loop {
                let Some(&frame) = stack.last() else {
                    return Ok(());
                };
                let close = if frame == b'[' { b']' } else { b'}' };
                match self.skip_whitespace().ok_or(EOF)? {
                    byte if byte == close => {
                        self.eat();
                        stack.pop();
                        after_open = false;
                    }
                    b',' if !after_open => {
                        self.eat();
                        break;
                    }
                    _ if after_open => break,
                    _ => return Err(SYNTAX),
                }
            }
            if stack.last() == Some(&b'{') {
                match self.skip_whitespace().ok_or(EOF)? {
                    b'"' => self.eat(),
                    _ => return Err(SYNTAX),
                }
                self.skip_string()?;
                self.expect_colon()?;
            }
        }
    }

    /// Checks that the next value (after whitespace) begins with a byte `allowed` accepts,
    /// which is how serde_json's typed `deserialize_*` methods refuse other JSON types.
    fn expect_start(&mut self, allowed: fn(u8) -> bool) -> Result<()> {
        match self.skip_whitespace() {
            Some(byte) if allowed(byte) => Ok(()),
            Some(_) => Err(TYPE),
            None => Err(EOF),
        }
    }
}

/// Forwards typed `deserialize_*` methods to `deserialize_any` after checking the JSON type
/// of the value by its first byte.
macro_rules! typed {
    ($($method:ident)*, $allowed:expr) => {
        $(
            /// As serde_json: only the JSON type(s) this method expects, else an error.
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
                self.expect_start($allowed)?;
                self.deserialize_any(visitor)
            }
        )*
    };
}

/// Whether `byte` begins a number.
fn is_number_start(byte: u8) -> bool {
    byte == b'-' || byte.is_ascii_digit()
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.skip_whitespace().ok_or(EOF)? {
            b'n' => {
                self.expect_ident(b"null")?;
                visitor.visit_unit()
            }
            b't' => {
                self.expect_ident(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.expect_ident(b"false")?;
                visitor.visit_bool(false)
            }
            b'-' | b'0'..=b'9' => self.visit_number(visitor),
            b'"' => {
                self.eat();
                self.visit_text(visitor)
            }
            b'[' => {
                self.enter()?;
                self.eat();
                let value = visitor.visit_seq(Seq {
                    de: &mut *self,
                    first: true,
                });
                self.leave();
                let value = value?;
                self.end_seq()?;
                Ok(value)
            }
            b'{' => {
                self.enter()?;
                self.eat();
                let value = visitor.visit_map(Map {
                    de: &mut *self,
                    first: true,
                });
                self.leave();
                let value = value?;
                self.end_map()?;
                Ok(value)
            }
            _ => Err(SYNTAX),
        }
    }

    typed!(deserialize_bool, |b| b == b't' || b == b'f');
    typed!(
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_f32 deserialize_f64,
        is_number_start
    );
    typed!(deserialize_unit, |b| b == b'n');
    typed!(deserialize_seq, |b| b == b'[');
    typed!(deserialize_map, |b| b == b'{');

    /// An `i128` from an integer's text, as serde_json.
    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.skip_whitespace().ok_or(EOF)?;
        self.visit_integer128(visitor, true)
    }

    /// A `u128` from an integer's text, as serde_json.
    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.skip_whitespace().ok_or(EOF)?;
        self.visit_integer128(visitor, false)
    }

    /// A string only (serde_json reads a char as a string).
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    /// A string only, borrowed when it has no escapes.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.expect_start(|b| b == b'"')?;
        self.eat();
        self.visit_text(visitor)
    }

    /// A string only.
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    /// A string's raw bytes (no UTF-8 check), or an array of numbers, as serde_json.
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.skip_whitespace().ok_or(EOF)? {
            b'"' => {
                self.eat();
                self.visit_raw(visitor)
            }
            b'[' => self.deserialize_any(visitor),
            _ => Err(TYPE),
        }
    }

    /// As [`deserialize_bytes`](Self::deserialize_bytes).
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    /// `null` is `None`; anything else is `Some` of it.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.skip_whitespace() {
            Some(b'n') => {
                self.expect_ident(b"null")?;
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    /// `null` only.
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    /// The inner value, as serde_json.
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    /// An array only.
    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    /// An array only.
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    /// An object or an array (serde_json accepts both for a struct).
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.expect_start(|b| b == b'[' || b == b'{')?;
        self.deserialize_any(visitor)
    }

    /// A string (a unit variant) or `{"Variant": value}` (any variant), as serde_json.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.skip_whitespace().ok_or(EOF)? {
            b'{' => {
                self.enter()?;
                self.eat();
                let value = visitor.visit_enum(MapVariant { de: &mut *self });
                self.leave();
                let value = value?;
                self.end_map()?;
                Ok(value)
            }
            b'"' => visitor.visit_enum(UnitVariant { de: self }),
            _ => Err(SYNTAX),
        }
    }

    /// A string only (field and variant names).
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    /// Any value, checked for syntax only (no nesting limit, no range or UTF-8 check), as
    /// serde_json's `ignore_value`.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.skip_value()?;
        visitor.visit_unit()
    }
}

/// The elements of an array, its `[` consumed.
struct Seq<'a, 'de> {
    /// The decoder.
    de: &'a mut Decoder<'de>,
    /// Whether no element was read yet.
    first: bool,
}

impl<'de> de::SeqAccess<'de> for Seq<'_, 'de> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match self.de.skip_whitespace().ok_or(EOF)? {
            b']' => return Ok(None),
            _ if self.first => self.first = false,
            b',' => {
                self.de.eat();
                if self.de.skip_whitespace().ok_or(EOF)? == b']' {
                    return Err(SYNTAX);
                }
            }
            _ => return Err(SYNTAX),
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}

/// The entries of an object, its `{` consumed.
struct Map<'a, 'de> {
    /// The decoder.
    de: &'a mut Decoder<'de>,
    /// Whether no entry was read yet.
    first: bool,
}

impl<'de> de::MapAccess<'de> for Map<'_, 'de> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.de.skip_whitespace().ok_or(EOF)? {
            b'}' => return Ok(None),
            b'"' if self.first => self.first = false,
            _ if self.first => return Err(SYNTAX),
            b',' => {
                self.de.eat();
                match self.de.skip_whitespace().ok_or(EOF)? {
                    b'"' => {}
                    _ => return Err(SYNTAX),
                }
            }
            _ => return Err(SYNTAX),
        }
        seed.deserialize(Key { de: &mut *self.de }).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        self.de.expect_colon()?;
        seed.deserialize(&mut *self.de)
    }
}

/// An object's key, at its opening quote (not consumed). Keys are strings; like serde_json,
/// a numeric or boolean target type reads the number or `true`/`false` inside the quotes.
struct Key<'a, 'de> {
    /// The decoder.
    de: &'a mut Decoder<'de>,
}

impl Key<'_, '_> {
    /// Consumes the opening quote and checks that a number follows.
    fn open_number(&mut self) -> Result<()> {
        self.de.eat();
        match self.de.peek() {
            Some(byte) if is_number_start(byte) => Ok(()),
            _ => Err(TYPE),
        }
    }

    /// Consumes the closing quote after a number.
    fn close_number(&mut self) -> Result<()> {
        match self.de.peek() {
            Some(b'"') => {
                self.de.eat();
                Ok(())
            }
            _ => Err(SYNTAX),
        }
    }
}

/// Numeric keys: the number inside the quotes, as serde_json's `MapKey`.
macro_rules! numeric_key {
    ($($method:ident)*) => {
        $(
            /// A number inside the key's quotes.
            fn $method<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
                self.open_number()?;
                let value = self.de.visit_number(visitor)?;
                self.close_number()?;
                Ok(value)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Key<'_, 'de> {
    type Error = DecodeError;

    /// The key as a string.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.de.eat();
        self.de.visit_text(visitor)
    }

    numeric_key!(
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_f32 deserialize_f64
    );

    /// An `i128` inside the key's quotes.
    fn deserialize_i128<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        self.open_number()?;
        let value = self.de.visit_integer128(visitor, true)?;
        self.close_number()?;
        Ok(value)
    }

    /// A `u128` inside the key's quotes.
    fn deserialize_u128<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        self.open_number()?;
        let value = self.de.visit_integer128(visitor, false)?;
        self.close_number()?;
        Ok(value)
    }

    /// `"true"` or `"false"`.
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.de.eat();
        match self.de.bump().ok_or(EOF)? {
            b't' => {
                self.de.expect_ident(b"rue\"")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.de.expect_ident(b"alse\"")?;
                visitor.visit_bool(false)
            }
            _ => Err(TYPE),
        }
    }

    /// Keys are never `null`.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_some(self)
    }

    /// The key itself.
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    /// A unit variant named by the key.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        de::Deserializer::deserialize_enum(self.de, name, variants, visitor)
    }

    /// The key's raw bytes.
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_bytes(self.de, visitor)
    }

    /// The key's raw bytes.
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_bytes(self.de, visitor)
    }

    serde::forward_to_deserialize_any! {
        char str string unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// `{"Variant": value}`, its `{` consumed.
struct MapVariant<'a, 'de> {
    /// The decoder.
    de: &'a mut Decoder<'de>,
}

impl<'de> de::EnumAccess<'de> for MapVariant<'_, 'de> {
    type Error = DecodeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        match self.de.skip_whitespace().ok_or(EOF)? {
            b'"' => {}
            _ => return Err(SYNTAX),
        }
        let variant = seed.deserialize(Key { de: &mut *self.de })?;
        self.de.expect_colon()?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for MapVariant<'_, 'de> {
    type Error = DecodeError;

    /// `{"Unit": null}`, as serde_json.
    fn unit_variant(self) -> Result<()> {
        <() as de::Deserialize>::deserialize(self.de)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_seq(self.de, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_struct(self.de, "", fields, visitor)
    }
}

/// `"Variant"`, at its opening quote (not consumed).
struct UnitVariant<'a, 'de> {
    /// The decoder.
    de: &'a mut Decoder<'de>,
}

impl<'de> de::EnumAccess<'de> for UnitVariant<'_, 'de> {
    type Error = DecodeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let variant = seed.deserialize(&mut *self.de)?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitVariant<'_, 'de> {
    type Error = DecodeError;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value> {
        Err(TYPE)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value> {
        Err(TYPE)
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], _visitor: V) -> Result<V::Value> {
        Err(TYPE)
    }
}

#[cfg(test)]
mod tests;
