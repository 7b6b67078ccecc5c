//! Tests of the JSON decoder: typed cases, the wipe of the scratch buffer, and differential
//! property tests against serde_json (built with `float_roundtrip` for the tests, so that both
//! read floats correctly rounded).

use std::cell::RefCell;
use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{DecodeError, from_slice};

thread_local! {
    /// The scratch buffer as the last decode on this thread left it, just before its drop.
    static LAST_SCRATCH: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Called by `from_slice` (tests only) with the scratch buffer after decoding.
pub(super) fn observe_scratch(scratch: &[u8]) {
    LAST_SCRATCH.with(|last| *last.borrow_mut() = Some(scratch.to_vec()));
}

/// The scratch buffer of the last decode on this thread.
fn last_scratch() -> Vec<u8> {
    LAST_SCRATCH
        .with(|last| last.borrow_mut().take())
        .expect("a decode ran")
}

/// Decodes with both decoders; both accept with equal values (compared by their JSON text,
/// which tells `1` from `1.0` and `0.0` from `-0.0`) or both refuse.
fn same<T: DeserializeOwned + serde::Serialize + std::fmt::Debug>(bytes: &[u8]) -> Option<T> {
    let ours: Result<T, DecodeError> = from_slice(bytes);
    let theirs: Result<T, serde_json::Error> = serde_json::from_slice(bytes);
    match (ours, theirs) {
        (Ok(a), Ok(b)) => {
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                serde_json::to_string(&b).unwrap(),
                "values differ for {:?}",
                String::from_utf8_lossy(bytes)
            );
            Some(a)
        }
        (Err(_), Err(_)) => None,
        (a, b) => panic!(
            "acceptance differs for {:?}: ours {a:?}, serde_json {b:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

#[test]
fn reference_reads_floats_correctly_rounded() {
    // 2^53 + 1 is a tie between 2^53 and 2^53 + 2: round half to even gives 2^53.
    assert_eq!(
        serde_json::from_str::<f64>("9007199254740993.0").unwrap(),
        9007199254740992.0
    );
    assert_eq!(from_slice::<f64>(b"9007199254740993.0").unwrap(), 9007199254740992.0);
}

#[test]
fn strings_with_and_without_escapes() {
    assert_eq!(from_slice::<String>(br#""plain""#).unwrap(), "plain");
    let text = "quote \" backslash \\ slash / controls \u{0}\u{8}\u{c}\n\r\t\u{1f} é € 𝄞";
    let json = serde_json::to_vec(text).unwrap();
    assert_eq!(from_slice::<String>(&json).unwrap(), text);
    assert_eq!(
        from_slice::<String>(br#""\u00e9\u20AC\ud834\udd1e\/""#).unwrap(),
        "é€𝄞/"
    );
    for bad in [
        &br#""\ud834""#[..],
        br#""\udd1e""#,
        br#""\ud834\u0041""#,
        br#""\ud834x""#,
        br#""\x""#,
        br#""\u12""#,
        br#""\u12g4""#,
        b"\"\x01\"",
        b"\"\xff\"",
        b"\"\xc3\"",
        br#""open"#,
        b"\"\\",
    ] {
        assert!(from_slice::<String>(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        assert!(serde_json::from_slice::<String>(bad).is_err());
    }
}

#[test]
fn typed_collections_and_options() {
    let v = vec!["a\"b".to_owned(), "c\\d".to_owned(), "plain".to_owned(), String::new()];
    assert_eq!(from_slice::<Vec<String>>(&serde_json::to_vec(&v).unwrap()).unwrap(), v);
    assert_eq!(from_slice::<Option<String>>(b"null").unwrap(), None);
    assert_eq!(
        from_slice::<Option<String>>(b" \"x\\ty\" ").unwrap(),
        Some("x\ty".to_owned())
    );
    assert!(from_slice::<Option<String>>(b"nul").is_err());
    let mut map = BTreeMap::new();
    map.insert("k\"ey".to_owned(), vec![1u8, 2, 255]);
    assert_eq!(
        from_slice::<BTreeMap<String, Vec<u8>>>(&serde_json::to_vec(&map).unwrap()).unwrap(),
        map
    );
    let numeric: BTreeMap<u32, String> = same(br#"{"1":"a","22":"b"}"#).unwrap();
    assert_eq!(numeric.get(&22).map(String::as_str), Some("b"));
    for bad in [
        &br#"{" 1":"a"}"#[..],
        br#"{"01":"a"}"#,
        br#"{"1 ":"a"}"#,
        br#"{"x":"a"}"#,
    ] {
        assert!(same::<BTreeMap<u32, String>>(bad).is_none());
    }
    assert!(same::<BTreeMap<bool, u8>>(br#"{"true":1,"false":0}"#).is_some());
    assert!(same::<BTreeMap<i128, u8>>(br#"{"-170141183460469231731687303715884105728":1}"#).is_some());
    assert!(same::<(u8, String, bool)>(br#"[1,"x",true]"#).is_some());
    assert!(same::<(u8, String)>(br#"[1,"x",true]"#).is_none());
    assert!(same::<char>(br#""\u00e9""#).is_some());
    assert!(same::<char>(br#""ab""#).is_none());
}

#[test]
fn integers_at_their_limits() {
    assert_eq!(from_slice::<u64>(b"18446744073709551615").unwrap(), u64::MAX);
    assert_eq!(from_slice::<i64>(b"-9223372036854775808").unwrap(), i64::MIN);
    assert!(from_slice::<u64>(b"18446744073709551616").is_err());
    assert!(from_slice::<i64>(b"-9223372036854775809").is_err());
    assert_eq!(from_slice::<u8>(b"255").unwrap(), 255);
    assert!(from_slice::<u8>(b"256").is_err());
    assert!(from_slice::<i8>(b"-129").is_err());
    assert!(from_slice::<u32>(b"-1").is_err());
    assert!(from_slice::<u64>(b"1.0").is_err());
    assert_eq!(
        from_slice::<u128>(b"340282366920938463463374607431768211455").unwrap(),
        u128::MAX
    );
    assert_eq!(
        from_slice::<i128>(b"-170141183460469231731687303715884105728").unwrap(),
        i128::MIN
    );
    assert!(from_slice::<u128>(b"-0").is_err());
    assert!(from_slice::<u128>(b"340282366920938463463374607431768211456").is_err());
    for text in [
        "0",
        "-0",
        "1",
        "-1",
        "18446744073709551616",
        "-9223372036854775809",
        "1e2",
        "1.5",
    ] {
        same::<Value>(text.as_bytes());
        same::<i128>(text.as_bytes());
        same::<u128>(text.as_bytes());
        same::<f64>(text.as_bytes());
    }
}

#[test]
fn floats_at_their_edges() {
    let zero = from_slice::<f64>(b"-0.0").unwrap();
    assert!(zero == 0.0 && zero.is_sign_negative());
    assert!(from_slice::<f64>(b"-0").unwrap().is_sign_negative());
    assert_eq!(from_slice::<f64>(b"5e-324").unwrap(), 5e-324);
    assert_eq!(from_slice::<f64>(b"1.7976931348623157e308").unwrap(), f64::MAX);
    assert!(from_slice::<f64>(b"1.7976931348623159e308").is_err());
    assert!(from_slice::<f64>(b"1e309").is_err());
    assert_eq!(from_slice::<f64>(b"1e-400").unwrap(), 0.0);
    assert_eq!(from_slice::<f64>(b"0e99999999999999").unwrap(), 0.0);
    assert!(from_slice::<f64>(b"1e99999999999999").is_err());
    for bad in [
        "01",
        "-01",
        "+1",
        ".5",
        "1.",
        "1.e5",
        "1e",
        "1e+",
        "-",
        "NaN",
        "Infinity",
        "-Infinity",
        "0x10",
        "1_0",
    ] {
        assert!(from_slice::<Value>(bad.as_bytes()).is_err(), "{bad}");
        assert!(serde_json::from_slice::<Value>(bad.as_bytes()).is_err(), "{bad}");
    }
    for text in [
        "-0.0",
        "5e-324",
        "2.4703282292062328e-324",
        "2.2250738585072011e-308",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "1.7976931348623159e308",
        "123456789012345678901234567890",
        "0.1e-2147483649",
        "1E+2",
        "1e-0",
    ] {
        same::<Value>(text.as_bytes());
    }
}

/// A newtype.
#[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
struct Email(String);

/// Every kind of enum variant.
#[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
enum Kind {
    Unit,
    Newtype(String),
    Tuple(u8, String),
    Struct { a: i64, b: Option<String> },
}

/// An untagged enum (decoded through serde's buffered content).
#[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
#[serde(untagged)]
enum Loose {
    Number(u64),
    Text(String),
    List(Vec<Loose>),
}

/// An internally tagged enum.
#[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
#[serde(tag = "type")]
enum Tagged {
    Phone { number: String },
    Postal { lines: Vec<String> },
}

/// A record with a bit of everything.
#[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
struct Profile {
    email: Email,
    kinds: Vec<Kind>,
    photo: Vec<u8>,
    floats: Vec<f64>,
    big: u64,
    small: i64,
    loose: Vec<Loose>,
    contact: Tagged,
    nothing: (),
    maybe: Option<Box<Profile>>,
}

fn profile() -> Profile {
    Profile {
        email: Email("ali\"ce@example.com".to_owned()),
        kinds: vec![
            Kind::Unit,
            Kind::Newtype("new\ntype".to_owned()),
            Kind::Tuple(7, "t\\u".to_owned()),
            Kind::Struct {
                a: -3,
                b: Some("\u{1}".to_owned()),
            },
        ],
        photo: vec![0, 1, 127, 128, 255],
        floats: vec![-0.0, 5e-324, 1.7976931348623157e308, 0.1, -2.5e-10],
        big: u64::MAX,
        small: i64::MIN,
        loose: vec![
            Loose::Number(3),
            Loose::Text("lo\"ose".to_owned()),
            Loose::List(vec![Loose::Text("é".to_owned())]),
        ],
        contact: Tagged::Postal {
            lines: vec!["1 \"Main\" St".to_owned()],
        },
        nothing: (),
        maybe: None,
    }
}

#[test]
fn derived_struct_round_trips() {
    let mut value = profile();
    value.maybe = Some(Box::new(profile()));
    let json = serde_json::to_vec(&value).unwrap();
    let back: Profile = from_slice(&json).unwrap();
    assert_eq!(back, value);
    assert!(back.floats[0].is_sign_negative());
    assert_eq!(same::<Profile>(&json), Some(value));
}

#[test]
fn enums_as_serde_json_reads_them() {
    for text in [
        r#""Unit""#,
        r#"{"Unit":null}"#,
        r#"{"Unit":1}"#,
        r#"{"Newtype":"x\"y"}"#,
        r#""Newtype""#,
        r#"{"Tuple":[1,"a"]}"#,
        r#"{"Tuple":[1]}"#,
        r#"{"Struct":{"a":1,"b":null}}"#,
        r#"{"Struct":[1,"b"]}"#,
        r#"{"Struct":{"a":1},"x":2}"#,
        r#"{"Nope":1}"#,
        r#"{1:2}"#,
        r#"{}"#,
        r#"{"Unit"}"#,
        r#"3"#,
    ] {
        same::<Kind>(text.as_bytes());
    }
    for text in [
        r#"{"type":"Phone","number":"0\"1"}"#,
        r#"{"number":"01","type":"Phone"}"#,
        r#"{"type":"Fax"}"#,
    ] {
        same::<Tagged>(text.as_bytes());
    }
    for text in [r#"[1,"a",[2,"b\n"]]"#, r#"{"a":1}"#, "-1"] {
        same::<Vec<Loose>>(text.as_bytes());
        same::<Loose>(text.as_bytes());
    }
}

#[test]
fn structure_errors() {
    for text in [
        "",
        " ",
        "[",
        "]",
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{\"a\":}",
        "{a:1}",
        "{\"a\":1 \"b\":2}",
        "[1] x",
        "1 2",
        "nul",
        "truex",
        "\"a\"\"b\"",
        "[1]]",
        "{}}",
        "\u{feff}1",
        "[1\u{a0}]",
    ] {
        assert!(from_slice::<Value>(text.as_bytes()).is_err(), "{text:?}");
        same::<Value>(text.as_bytes());
    }
    for text in [" 1 ", "\t\r\n[ 1 , { \"a\" : [ ] } ]\n", "{}", "[]", "\"\""] {
        assert!(same::<Value>(text.as_bytes()).is_some(), "{text:?}");
    }
}

#[test]
fn depth_limit_as_serde_json() {
    let deep = vec![b'['; 10_000];
    assert!(from_slice::<Value>(&deep).is_err());
    let mut closed = vec![b'['; 10_000];
    closed.extend(vec![b']'; 10_000]);
    assert!(from_slice::<Value>(&closed).is_err());
    for depth in [126, 127, 128, 129] {
        let mut text = "[".repeat(depth);
        text.push_str(&"]".repeat(depth));
        same::<Value>(text.as_bytes());
        let mut objects = "{\"a\":".repeat(depth);
        objects.push('1');
        objects.push_str(&"}".repeat(depth));
        same::<Value>(objects.as_bytes());
    }
    assert!(from_slice::<Value>(format!("{}{}", "[".repeat(127), "]".repeat(127)).as_bytes()).is_ok());
    assert!(from_slice::<Value>(format!("{}{}", "[".repeat(128), "]".repeat(128)).as_bytes()).is_err());
}

/// A struct that ignores unknown fields (they go through `deserialize_ignored_any`).
#[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
struct Known {
    a: u8,
}

#[test]
fn ignored_values_are_checked_for_syntax_only() {
    let deep = format!(r#"{{"a":1,"x":{}{}}}"#, "[".repeat(5_000), "]".repeat(5_000));
    for text in [
        r#"{"a":1,"x":1e999}"#,
        r#"{"a":1,"x":"\ud800"}"#,
        "{\"a\":1,\"x\":\"\u{e9}\"}",
        r#"{"a":1,"x":[1,{"y":[true,false,null,"s\"",-0.5e+3]}]}"#,
        r#"{"a":1,"x":[1,]}"#,
        r#"{"a":1,"x":{"y":1,}}"#,
        r#"{"a":1,"x":{"y"}}"#,
        r#"{"a":1,"x":[}"#,
        r#"{"a":1,"x":01}"#,
        r#"{"a":1,"x":"\q"}"#,
        "{\"a\":1,\"x\":\"\x01\"}",
        deep.as_str(),
    ] {
        same::<Known>(text.as_bytes());
    }
    assert!(same::<Known>(deep.as_bytes()).is_some());
    let mut invalid_utf8 = br#"{"a":1,"x":""#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\"}");
    assert!(same::<Known>(&invalid_utf8).is_some());
}

#[test]
fn bytes_read_raw_as_serde_json() {
    /// Bytes through `deserialize_bytes`.
    #[derive(Debug, PartialEq)]
    struct Raw(Vec<u8>);
    impl<'de> Deserialize<'de> for Raw {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Raw;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Raw, E> {
                    Ok(Raw(v.to_vec()))
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
                    let mut out = Vec::new();
                    while let Some(b) = seq.next_element()? {
                        out.push(b);
                    }
                    Ok(Raw(out))
                }
            }
            d.deserialize_bytes(V)
        }
    }
    for text in [
        &br#""plain""#[..],
        b"\"ctl\x01\"",
        b"\"\xff\xfe\"",
        br#""\ud800""#,
        br#""\ud800\n""#,
        br#""\ud800\ud801\udc00""#,
        br#""\udc00x""#,
        br#"[1,2,255]"#,
        br#"[256]"#,
        br#"1"#,
        br#""\ud800\q""#,
    ] {
        let ours = from_slice::<Raw>(text).map(|r| r.0);
        let theirs = serde_json::from_slice::<Raw>(text).map(|r| r.0);
        assert_eq!(ours.ok(), theirs.ok(), "{:?}", String::from_utf8_lossy(text));
    }
}

#[test]
fn scratch_is_wiped_after_decoding() {
    let secret = "Alice \"the\" Secret\\\n\u{1F600}";
    let json = serde_json::to_vec(&vec![secret, secret]).unwrap();
    assert_eq!(from_slice::<Vec<String>>(&json).unwrap(), [secret, secret]);
    let scratch = last_scratch();
    assert_eq!(scratch.len(), json.len(), "one buffer of the input's length");
    assert!(scratch.iter().all(|&b| b == 0), "the scratch buffer was not wiped");

    // Also when the visitor refuses the string, when a later escape is bad, and for keys.
    assert!(from_slice::<u8>(&serde_json::to_vec(secret).unwrap()).is_err());
    assert!(last_scratch().iter().all(|&b| b == 0));
    assert!(from_slice::<String>(b"\"Alice\\n Secret \\x\"").is_err());
    let scratch = last_scratch();
    assert!(!scratch.is_empty() && scratch.iter().all(|&b| b == 0));
    assert!(from_slice::<String>(b"\"Alice\\n Secret \xff\"").is_err());
    assert!(last_scratch().iter().all(|&b| b == 0));
    let map: BTreeMap<String, String> = from_slice(br#"{"se\"cret":"va\\lue"}"#).unwrap();
    assert_eq!(map.get("se\"cret").map(String::as_str), Some("va\\lue"));
    assert!(last_scratch().iter().all(|&b| b == 0));

    // Without escapes nothing is copied: the buffer is never allocated.
    assert_eq!(from_slice::<String>(b"\"plain\"").unwrap(), "plain");
    assert!(last_scratch().is_empty());
}

#[test]
fn errors_never_quote_the_input() {
    let secret = "SECRET-4111111111111111";
    for text in [
        format!("\"{secret}\""),
        format!("[\"{secret}\" x]"),
        format!("{{\"{secret}\":1}}"),
        format!("\"{secret}\\q\""),
    ] {
        for message in [
            from_slice::<u8>(text.as_bytes()).map(|_| ()).unwrap_err().to_string(),
            from_slice::<Kind>(text.as_bytes()).map(|_| ()).unwrap_err().to_string(),
            format!("{:?}", from_slice::<Tagged>(text.as_bytes()).map(|_| ()).unwrap_err()),
        ] {
            assert!(!message.contains("SECRET"), "{message}");
        }
    }
}

/// Strings with quotes, backslashes, control characters and any unicode.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            any::<char>(),
            Just('"'),
            Just('\\'),
            Just('/'),
            (0u8..0x20).prop_map(char::from),
            Just('\u{7f}'),
            Just('\u{2028}'),
        ],
        0..12,
    )
    .prop_map(String::from_iter)
}

/// Arbitrary JSON values, nested.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(5e-324),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE)
        ]
        .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A byte of JSON syntax, or any byte.
fn json_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(b"{}[]\",:\\/0123456789-+.eEtrufalsn \t\n\rbu".to_vec()),
        1 => any::<u8>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn values_decode_as_serde_json(value in value(), pretty in any::<bool>()) {
        let json = if pretty { serde_json::to_vec_pretty(&value) } else { serde_json::to_vec(&value) };
        let json = json.unwrap();
        let ours: Value = from_slice(&json).unwrap();
        prop_assert_eq!(serde_json::to_string(&ours).unwrap(), serde_json::to_string(&value).unwrap());
        same::<Value>(&json);
        prop_assert!(last_scratch().iter().all(|&b| b == 0));
    }

    #[test]
    fn arbitrary_bytes_decode_as_serde_json(bytes in prop::collection::vec(json_byte(), 0..48)) {
        same::<Value>(&bytes);
        same::<Known>(&bytes);
        same::<Vec<String>>(&bytes);
    }

    #[test]
    fn mutated_json_decodes_as_serde_json(
        value in value(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, json_byte()), 1..4),
    ) {
        let mut json = serde_json::to_vec(&value).unwrap();
        for (at, op, byte) in edits {
            let len = json.len();
            match op {
                0 => json.insert(at.index(len + 1), byte),
                1 if len > 0 => { json.remove(at.index(len)); }
                _ if len > 0 => json[at.index(len)] = byte,
                _ => json.push(byte),
            }
        }
        same::<Value>(&json);
        same::<Option<Vec<Value>>>(&json);
        same::<BTreeMap<String, Value>>(&json);
    }
}
