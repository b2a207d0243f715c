//! A stored document parsed for some of its top-level fields only: the others are read past
//! (checked as JSON, never built into values). An aggregation that groups 1 KB documents by
//! two fields spent most of its time building the rest (decision 73 in docs/ARCHITECTURE.md).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// The JSON object in `bytes` with only the top-level fields named in `fields`, in the
/// document's order; as `serde_json::from_slice` would give, less the other fields. A field
/// that appears twice keeps its last value at its first place, as a whole parse does.
pub fn parse_fields(bytes: &[u8], fields: &[String]) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let object = Fields(fields).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(Value::Object(object))
}

/// A JSON object, keeping the named fields.
struct Fields<'f>(&'f [String]);

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
        while let Some(wanted) = map.next_key_seed(Wanted(self.0))? {
            match wanted {
                Some(name) => {
                    let value: Value = map.next_value()?;
                    object.insert(name, value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(object)
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
