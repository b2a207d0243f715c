//! A stored document parsed for some of its top-level fields only: the others are read past
//! (checked as JSON, never built into values). An aggregation that groups 1 KB documents by
//! two fields spent most of its time building the rest (decision 73 in docs/ARCHITECTURE.md).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The JSON object in `bytes` with only the top-level fields named in `fields`, in the
/// document's order; as `serde_json::from_slice` would give, less the other fields. A field
/// that appears twice keeps its last value at its first place, as a whole parse does.
pub fn parse_fields(bytes: &[u8], fields: &[String]) -> serde_json::Result<Value> {
    parse(
        bytes,
        Fields {
            names: fields,
            checked: false,
        },
    )
}

/// As [`parse_fields`], and the other fields are checked as a whole parse into a `Value`
/// checks them, so the text is refused exactly when `serde_json::from_slice::<Value>` refuses
/// it: numbers out of range, strings that are not UTF-8 or hold a lone surrogate, nesting past
/// serde_json's depth limit (which skipping as `IgnoredAny` does not check). For text from a
/// client that is stored as sent (an insert needs only `_id` and the indexed fields): its
/// values are visited, not built. Slower than [`parse_fields`] (each skipped string is
/// decoded), still far cheaper than a whole parse's allocations.
pub fn parse_fields_checked(bytes: &[u8], fields: &[String]) -> serde_json::Result<Value> {
    parse(
        bytes,
        Fields {
            names: fields,
            checked: true,
        },
    )
}

fn parse(bytes: &[u8], fields: Fields<'_>) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let object = fields.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(Value::Object(object))
}

/// A JSON object, keeping the named fields; the others skipped (`IgnoredAny`) or, `checked`,
/// visited as a `Value` would be ([`Checked`]).
struct Fields<'f> {
    names: &'f [String],
    checked: bool,
}

impl<'de> DeserializeSeed<'de> for Fields<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = Map::new();
        while let Some(wanted) = map.next_key_seed(Wanted(self.names))? {
            match wanted {
                Some(name) => {
                    let value: Value = map.next_value()?;
                    object.insert(name, value);
                }
                None if self.checked => map.next_value_seed(Checked)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(object)
    }
}

/// Any JSON value, read through the same `deserialize_any` calls a `Value` makes (so with the
/// same refusals and depth limit), keeping nothing.
struct Checked;

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Checked)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Checked)?.is_some() {
            map.next_value_seed(Checked)?;
        }
        Ok(())
    }
}

/// A field name: `Some` (owned) when it is one of the wanted fields.
struct Wanted<'f>(&'f [String]);

impl<'de> DeserializeSeed<'de> for Wanted<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Wanted<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().any(|f| f == name).then(|| name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// The whole parse, less the fields not asked for.
    fn whole_less_others(text: &str, names: &[&str]) -> Value {
        let mut whole: Value = serde_json::from_str(text).unwrap();
        whole
            .as_object_mut()
            .unwrap()
            .retain(|k, _| names.contains(&k.as_str()));
        whole
    }

    #[test]
    fn keeps_the_named_fields_in_the_documents_order_as_a_whole_parse_gives_them() {
        let cases = [
            (
                r#"{"_id":1,"city":"Oslo","pad":"xyz","amount":2.5}"#,
                vec!["amount", "city"],
            ),
            (
                r#"{"a":{"b":[1,{"c":null}]},"b":true,"c":"\u00e9"}"#,
                vec!["a", "c"],
            ),
            (r#"{"a":1,"a":2,"b":3}"#, vec!["a"]),
            (
                r#"{"x":[[],{}],"y":-0.0,"z":12345678901234567890}"#,
                vec!["y", "z", "w"],
            ),
            (r#"{"esc\"aped":1,"plain":2}"#, vec!["esc\"aped"]),
            (r#"{}"#, vec!["a"]),
            (r#"{"a":1}"#, vec![]),
        ];
        for (text, names) in cases {
            let parsed = parse_fields(text.as_bytes(), &fields(&names)).unwrap();
            let expected = whole_less_others(text, &names);
            assert_eq!(parsed, expected, "{text} {names:?}");
            // Order too, which `==` on maps does not check.
            assert_eq!(
                serde_json::to_string(&parsed).unwrap(),
                serde_json::to_string(&expected).unwrap(),
                "{text}"
            );
        }
        assert_eq!(
            parse_fields(br#"{"a":1,"a":2}"#, &fields(&["a"])).unwrap(),
            json!({"a": 2})
        );
    }

    #[test]
    fn the_checked_parse_keeps_the_same_fields_and_refuses_what_a_whole_parse_refuses() {
        let deep = format!("{{\"a\":1,\"b\":{}{}}}", "[".repeat(200), "]".repeat(200));
        let cases = [
            // Accepted by both.
            r#"{"_id":1,"k":2,"pad":"xyz","n":[1,-2.5e3,{"x":null}],"t":true}"#.to_string(),
            r#"{"k":"\u00e9\ud83d\ude00","_id":"a"}"#.to_string(),
            // Refused by a whole parse; `IgnoredAny` would let some of them through.
            r#"{"_id":1,"x":1e999}"#.to_string(),
            r#"{"_id":1,"x":"\ud800"}"#.to_string(),
            r#"{"_id":1,"x":[1,]}"#.to_string(),
            r#"{"_id":1,"x":"a"#.to_string(),
            deep,
        ];
        let names = fields(&["_id", "k"]);
        for text in &cases {
            let whole = serde_json::from_str::<Value>(text);
            let checked = parse_fields_checked(text.as_bytes(), &names);
            match (whole, checked) {
                (Ok(_), Ok(parsed)) => {
                    assert_eq!(parsed, whole_less_others(text, &["_id", "k"]), "{text}")
                }
                (Err(_), Err(_)) => {}
                (whole, checked) => panic!("{text}: whole {whole:?}, checked {checked:?}"),
            }
        }
        assert!(parse_fields(br#"{"_id":1,"x":1e999}"#, &names).is_ok());
    }

    #[test]
    fn refuses_what_is_not_a_whole_json_object() {
        for text in [
            "[1]",
            "1",
            r#"{"a":1"#,
            r#"{"a":1} x"#,
            r#"{"pad":tru,"a":1}"#,
            "",
        ] {
            assert!(
                parse_fields(text.as_bytes(), &fields(&["a"])).is_err(),
                "{text}"
            );
        }
    }
}
