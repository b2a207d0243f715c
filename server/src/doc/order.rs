//! MongoDB's comparison order, for JSON values: first by type, Null < Number < String <
//! Object < Array < Boolean (BSON's order with the types JSON has), then within a type:
//! numbers by value (integers and floats compare exactly), strings bytewise (MongoDB's simple
//! collation), objects pair by pair (the value's type, then the key, then the value), arrays
//! element by element, false < true. A shorter object or array that is a prefix of a longer
//! one sorts first.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// A value's place in the order of types.
pub fn type_rank(value: &Value) -> u8 {
    match value {
        Value::Null => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Object(_) => 4,
        Value::Array(_) => 5,
        Value::Bool(_) => 6,
    }
}

/// Compares two numbers exactly: integers as integers, and an integer against a float
/// without losing the integer's low bits.
pub fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x.cmp(&y);
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => match x.partial_cmp(&y) {
            Some(Ordering::Equal) => exact_tie(a, b),
            Some(order) => order,
            None => Ordering::Equal,
        },
        _ => Ordering::Equal,
    }
}

/// Two numbers equal as f64 where one is an integer that f64 rounds: compare the integer with
/// the float's exact integer value.
fn exact_tie(a: &Number, b: &Number) -> Ordering {
    let as_i128 = |n: &Number| -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| {
                let f = n.as_f64()?;
                (f.fract() == 0.0 && f.abs() < 1.7e38).then_some(f as i128)
            })
    };
    match (as_i128(a), as_i128(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => Ordering::Equal,
    }
}

/// The total order over JSON values.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    let by_type = type_rank(a).cmp(&type_rank(b));
    if by_type != Ordering::Equal {
        return by_type;
    }
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let order = compare(p, q);
                if order != Ordering::Equal {
                    return order;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((k1, v1), (k2, v2)) in x.iter().zip(y) {
                let order = type_rank(v1)
                    .cmp(&type_rank(v2))
                    .then_with(|| k1.as_bytes().cmp(k2.as_bytes()))
                    .then_with(|| compare(v1, v2));
                if order != Ordering::Equal {
                    return order;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => unreachable!("same type rank"),
    }
}

/// Equality as queries use it: the order's, so `1` equals `1.0`.
pub fn equal(a: &Value, b: &Value) -> bool {
    compare(a, b) == Ordering::Equal
}

/// The key an ascending (`descending` false) or descending sort uses for a field's value:
/// an array sorts by its smallest element ascending and its largest descending (an empty
/// array before everything, as MongoDB sorts it), anything else by itself; a missing field
/// sorts as null.
pub fn sort_key(value: Option<&Value>, descending: bool) -> Value {
    match value {
        None => Value::Null,
        Some(Value::Array(items)) if items.is_empty() => Value::Null,
        Some(Value::Array(items)) => {
            let pick = if descending {
                items.iter().max_by(|a, b| compare(a, b))
            } else {
                items.iter().min_by(|a, b| compare(a, b))
            };
            pick.cloned().unwrap_or(Value::Null)
        }
        Some(other) => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_order_as_mongodb_documents_them() {
        let ascending = [
            json!(null),
            json!(-5),
            json!(2.5),
            json!(3),
            json!(""),
            json!("a"),
            json!("b"),
            json!({}),
            json!({"a": 1}),
            json!([]),
            json!([1]),
            json!([1, 2]),
            json!(false),
            json!(true),
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(compare(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn numbers_compare_exactly_across_integers_and_floats() {
        assert!(equal(&json!(1), &json!(1.0)));
        assert_eq!(compare(&json!(-1), &json!(u64::MAX)), Ordering::Less);
        // 2^53 + 1 is not a float: it is above 2^53 as a float.
        let big = json!(9_007_199_254_740_993i64);
        assert_eq!(
            compare(&big, &json!(9_007_199_254_740_992.0)),
            Ordering::Greater
        );
        assert_eq!(compare(&json!(0.5), &json!(1)), Ordering::Less);
    }

    #[test]
    fn objects_compare_pair_by_pair_and_arrays_sort_by_their_extremes() {
        assert_eq!(compare(&json!({"a": 1}), &json!({"a": 2})), Ordering::Less);
        assert_eq!(compare(&json!({"a": 1}), &json!({"b": 0})), Ordering::Less);
        assert_eq!(
            compare(&json!({"a": "x"}), &json!({"a": 5})),
            Ordering::Greater,
            "string > number"
        );
        assert_eq!(sort_key(Some(&json!([3, 1, 2])), false), json!(1));
        assert_eq!(sort_key(Some(&json!([3, 1, 2])), true), json!(3));
        assert_eq!(sort_key(None, false), json!(null));
    }
}
