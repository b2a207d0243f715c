//! The pipeline against the MongoDB manual's examples (written from its semantics, with
//! expressions beyond field paths and literals left out), the rules of each accumulator, every
//! refusal, and every limit.

use std::cell::Cell;

use serde_json::json;

use super::*;

fn run(pipeline: Value, documents: &[Value]) -> Vec<Value> {
    Pipeline::parse(&pipeline)
        .unwrap_or_else(|e| panic!("{pipeline}: {e}"))
        .run(documents.iter().cloned())
        .unwrap_or_else(|e| panic!("{pipeline}: {e}"))
}

fn refused(pipeline: Value) -> String {
    match Pipeline::parse(&pipeline) {
        Ok(_) => panic!("{pipeline} was accepted"),
        Err(e) => e.to_string(),
    }
}

/// The manual's `sales` collection (its `$group` page), dates left out.
fn sales() -> Vec<Value> {
    vec![
        json!({"_id": 1, "item": "abc", "price": 10, "quantity": 2}),
        json!({"_id": 2, "item": "jkl", "price": 20, "quantity": 1}),
        json!({"_id": 3, "item": "xyz", "price": 5, "quantity": 10}),
        json!({"_id": 4, "item": "xyz", "price": 5, "quantity": 20}),
        json!({"_id": 5, "item": "abc", "price": 10, "quantity": 10}),
        json!({"_id": 6, "item": "def", "price": 7.5, "quantity": 5}),
        json!({"_id": 7, "item": "def", "price": 7.5, "quantity": 10}),
        json!({"_id": 8, "item": "abc", "price": 10, "quantity": 5}),
    ]
}

/// The manual's `scores` collection (its `$count` page).
fn scores() -> Vec<Value> {
    [88, 92, 97, 71, 79, 83]
        .iter()
        .enumerate()
        .map(|(i, score)| json!({"_id": i + 1, "subject": "History", "score": score}))
        .collect()
}

/// The manual's `inventory` for `$unwind` with its options.
fn inventory() -> Vec<Value> {
    vec![
        json!({"_id": 1, "item": "ABC", "price": 80, "sizes": ["S", "M", "L"]}),
        json!({"_id": 2, "item": "EFG", "price": 120, "sizes": []}),
        json!({"_id": 3, "item": "IJK", "price": 160, "sizes": "M"}),
        json!({"_id": 4, "item": "LMN", "price": 10}),
        json!({"_id": 5, "item": "XYZ", "price": 5.75, "sizes": null}),
    ]
}

#[test]
fn group_by_item_as_the_manual_shows() {
    let grouped = run(
        json!([{"$group": {
            "_id": "$item",
            "totalQuantity": {"$sum": "$quantity"},
            "count": {"$sum": 1},
            "averagePrice": {"$avg": "$price"},
            "fewest": {"$min": "$quantity"},
            "most": {"$max": "$quantity"},
            "firstQuantity": {"$first": "$quantity"},
            "lastQuantity": {"$last": "$quantity"},
            "quantities": {"$push": "$quantity"},
            "prices": {"$addToSet": "$price"},
            "documents": {"$count": {}},
        }}]),
        &sales(),
    );
    // In the order of each group's first document.
    assert_eq!(
        grouped,
        [
            json!({"_id": "abc", "totalQuantity": 17, "count": 3, "averagePrice": 10.0,
                "fewest": 2, "most": 10, "firstQuantity": 2, "lastQuantity": 5,
                "quantities": [2, 10, 5], "prices": [10], "documents": 3}),
            json!({"_id": "jkl", "totalQuantity": 1, "count": 1, "averagePrice": 20.0,
                "fewest": 1, "most": 1, "firstQuantity": 1, "lastQuantity": 1,
                "quantities": [1], "prices": [20], "documents": 1}),
            json!({"_id": "xyz", "totalQuantity": 30, "count": 2, "averagePrice": 5.0,
                "fewest": 10, "most": 20, "firstQuantity": 10, "lastQuantity": 20,
                "quantities": [10, 20], "prices": [5], "documents": 2}),
            json!({"_id": "def", "totalQuantity": 15, "count": 2, "averagePrice": 7.5,
                "fewest": 5, "most": 10, "firstQuantity": 5, "lastQuantity": 10,
                "quantities": [5, 10], "prices": [7.5], "documents": 2}),
        ]
    );
}

#[test]
fn group_by_null_and_having_as_the_manual_shows() {
    assert_eq!(
        run(
            json!([{"$group": {"_id": null, "count": {"$count": {}},
                "averageQuantity": {"$avg": "$quantity"}, "total": {"$sum": "$quantity"}}}]),
            &sales()
        ),
        [json!({"_id": null, "count": 8, "averageQuantity": 7.875, "total": 63})]
    );
    // "Having": a $match on the groups' output.
    assert_eq!(
        run(
            json!([
                {"$group": {"_id": "$item", "totalQuantity": {"$sum": "$quantity"}}},
                {"$match": {"totalQuantity": {"$gte": 15}}},
                {"$sort": {"totalQuantity": -1}},
            ]),
            &sales()
        ),
        [
            json!({"_id": "xyz", "totalQuantity": 30}),
            json!({"_id": "abc", "totalQuantity": 17}),
            json!({"_id": "def", "totalQuantity": 15}),
        ]
    );
    // No input, no groups (even for `_id: null`), as MongoDB.
    assert_eq!(
        run(json!([{"$group": {"_id": null, "n": {"$sum": 1}}}]), &[]),
        Vec::<Value>::new()
    );
}

#[test]
fn group_keys_are_expressions_equal_as_the_order_says() {
    let documents = [
        json!({"a": 1, "b": "x"}),
        json!({"a": 1.0, "b": "x"}),
        json!({"a": 1, "b": "y"}),
        json!({"a": 2}),
        json!({"b": "x"}),
        json!({"a": null}),
        json!({"a": [1, 2]}),
    ];
    assert_eq!(
        run(
            json!([{"$group": {"_id": {"a": "$a", "b": "$b"}, "n": {"$sum": 1}}}]),
            &documents
        ),
        [
            json!({"_id": {"a": 1, "b": "x"}, "n": 2}),
            json!({"_id": {"a": 1, "b": "y"}, "n": 1}),
            json!({"_id": {"a": 2}, "n": 1}),
            json!({"_id": {"b": "x"}, "n": 1}),
            json!({"_id": {"a": null}, "n": 1}),
            json!({"_id": {"a": [1, 2]}, "n": 1}),
        ]
    );
    // A missing key and null are one group (`_id: null`).
    assert_eq!(
        run(
            json!([{"$group": {"_id": "$a", "n": {"$sum": 1}}}]),
            &documents
        ),
        [
            json!({"_id": 1, "n": 3}),
            json!({"_id": 2, "n": 1}),
            json!({"_id": null, "n": 2}),
            json!({"_id": [1, 2], "n": 1}),
        ]
    );
    // A literal key: one group.
    assert_eq!(
        run(
            json!([{"$group": {"_id": "all", "n": {"$sum": 2}}}]),
            &documents
        ),
        [json!({"_id": "all", "n": 14})]
    );
}

#[test]
fn sums_stay_integers_while_they_fit_and_ignore_non_numbers() {
    let total = |values: Value| {
        let documents: Vec<Value> = values
            .as_array()
            .unwrap()
            .iter()
            .map(|v| json!({"v": v}))
            .chain([json!({})])
            .collect();
        run(
            json!([{"$group": {"_id": null, "sum": {"$sum": "$v"}, "avg": {"$avg": "$v"}}}]),
            &documents,
        )
        .remove(0)
    };
    assert_eq!(
        total(json!([1, 2])),
        json!({"_id": null, "sum": 3, "avg": 1.5})
    );
    assert_eq!(
        total(json!([1, 2.5, "7", null, [1], {"x": 1}, true])),
        json!({"_id": null, "sum": 3.5, "avg": 1.75})
    );
    assert_eq!(
        total(json!(["a", null])),
        json!({"_id": null, "sum": 0, "avg": null})
    );
    assert_eq!(
        total(json!([2.0, 4])),
        json!({"_id": null, "sum": 6.0, "avg": 3.0}),
        "a float makes the sum a float"
    );
    assert_eq!(
        total(json!([i64::MAX, 1]))["sum"],
        json!(9_223_372_036_854_775_808.0),
        "past i64, a float"
    );
    assert_eq!(
        total(json!([i64::MAX, 1, -1]))["sum"],
        json!(i64::MAX),
        "summed exactly, so back within i64 is an integer (MongoDB's running sum would be a float)"
    );
    assert_eq!(
        total(json!([i64::MIN, -1]))["sum"],
        json!(-9_223_372_036_854_775_809.0)
    );
    assert_eq!(
        total(json!([1e308, 1e308]))["sum"],
        json!(null),
        "infinite: null"
    );
}

#[test]
fn min_max_ignore_null_and_compare_across_types() {
    let documents = [
        json!({"v": 3}),
        json!({"v": "a"}),
        json!({"v": null}),
        json!({}),
        json!({"v": [1]}),
        json!({"v": {"x": 1}}),
        json!({"v": true}),
        json!({"v": -2.5}),
    ];
    assert_eq!(
        run(
            json!([{"$group": {"_id": null, "min": {"$min": "$v"}, "max": {"$max": "$v"}}}]),
            &documents
        ),
        [json!({"_id": null, "min": -2.5, "max": true})]
    );
    assert_eq!(
        run(
            json!([{"$group": {"_id": null, "min": {"$min": "$v"}, "max": {"$max": "$v"}}}]),
            &[json!({"v": null}), json!({})]
        ),
        [json!({"_id": null, "min": null, "max": null})]
    );
}

#[test]
fn push_add_to_set_first_and_last_treat_missing_values_as_mongodb_does() {
    let documents = [
        json!({"_id": 1}),
        json!({"_id": 2, "v": 1}),
        json!({"_id": 3, "v": 1.0}),
        json!({"_id": 4, "v": [1]}),
        json!({"_id": 5, "v": null}),
        json!({"_id": 6, "v": 1}),
        json!({"_id": 7}),
    ];
    assert_eq!(
        run(
            json!([{"$group": {"_id": null, "push": {"$push": "$v"}, "set": {"$addToSet": "$v"},
                "first": {"$first": "$v"}, "last": {"$last": "$v"},
                "docs": {"$push": "$$ROOT"}, "ids": {"$push": "$$CURRENT._id"}}}]),
            &documents[..6]
        ),
        [
            json!({"_id": null, "push": [1, 1.0, [1], null, 1], "set": [1, [1], null],
            "first": null, "last": 1, "docs": documents[..6], "ids": [1, 2, 3, 4, 5, 6]})
        ]
    );
    assert_eq!(
        run(
            json!([{"$group": {"_id": null, "last": {"$last": "$v"}}}]),
            &documents
        ),
        [json!({"_id": null, "last": null})]
    );
}

#[test]
fn unwind_as_the_manual_shows() {
    assert_eq!(
        run(json!([{"$unwind": "$sizes"}]), &inventory()),
        [
            json!({"_id": 1, "item": "ABC", "price": 80, "sizes": "S"}),
            json!({"_id": 1, "item": "ABC", "price": 80, "sizes": "M"}),
            json!({"_id": 1, "item": "ABC", "price": 80, "sizes": "L"}),
            json!({"_id": 3, "item": "IJK", "price": 160, "sizes": "M"}),
        ]
    );
    assert_eq!(
        run(
            json!([{"$unwind": {"path": "$sizes", "includeArrayIndex": "arrayIndex"}}]),
            &inventory()
        ),
        [
            json!({"_id": 1, "item": "ABC", "price": 80, "sizes": "S", "arrayIndex": 0}),
            json!({"_id": 1, "item": "ABC", "price": 80, "sizes": "M", "arrayIndex": 1}),
            json!({"_id": 1, "item": "ABC", "price": 80, "sizes": "L", "arrayIndex": 2}),
            json!({"_id": 3, "item": "IJK", "price": 160, "sizes": "M", "arrayIndex": null}),
        ]
    );
    assert_eq!(
        run(
            json!([{"$unwind": {"path": "$sizes", "preserveNullAndEmptyArrays": true}}]),
            &inventory()
        ),
        [
            json!({"_id": 1, "item": "ABC", "price": 80, "sizes": "S"}),
            json!({"_id": 1, "item": "ABC", "price": 80, "sizes": "M"}),
            json!({"_id": 1, "item": "ABC", "price": 80, "sizes": "L"}),
            json!({"_id": 2, "item": "EFG", "price": 120}),
            json!({"_id": 3, "item": "IJK", "price": 160, "sizes": "M"}),
            json!({"_id": 4, "item": "LMN", "price": 10}),
            json!({"_id": 5, "item": "XYZ", "price": 5.75, "sizes": null}),
        ]
    );
    // Group by the unwound values, then sort (ties keep their input order: S before L).
    assert_eq!(
        run(
            json!([
                {"$unwind": {"path": "$sizes", "preserveNullAndEmptyArrays": true}},
                {"$group": {"_id": "$sizes", "averagePrice": {"$avg": "$price"}}},
                {"$sort": {"averagePrice": -1}},
            ]),
            &inventory()
        ),
        [
            json!({"_id": "M", "averagePrice": 120.0}),
            json!({"_id": "S", "averagePrice": 80.0}),
            json!({"_id": "L", "averagePrice": 80.0}),
            json!({"_id": null, "averagePrice": 45.25}),
        ]
    );
}

#[test]
fn unwind_reaches_through_objects_and_sets_a_nested_index() {
    let documents = [
        json!({"_id": 1, "a": {"b": [1, {"c": 2}]}}),
        json!({"_id": 2, "a": [{"b": [9]}]}),
    ];
    assert_eq!(
        run(
            json!([{"$unwind": {"path": "$a.b", "includeArrayIndex": "at.i",
                "preserveNullAndEmptyArrays": true}}]),
            &documents
        ),
        [
            json!({"_id": 1, "a": {"b": 1}, "at": {"i": 0}}),
            json!({"_id": 1, "a": {"b": {"c": 2}}, "at": {"i": 1}}),
            // `$unwind` does not reach through arrays: `a.b` is missing here.
            json!({"_id": 2, "a": [{"b": [9]}], "at": {"i": null}}),
        ]
    );
}

#[test]
fn count_as_the_manual_shows() {
    assert_eq!(
        run(
            json!([{"$match": {"score": {"$gt": 80}}}, {"$count": "passing_scores"}]),
            &scores()
        ),
        [json!({"passing_scores": 4})]
    );
    assert_eq!(
        run(
            json!([{"$match": {"score": {"$gt": 100}}}, {"$count": "passing_scores"}]),
            &scores()
        ),
        Vec::<Value>::new(),
        "no document when none came"
    );
}

#[test]
fn sort_skip_and_limit() {
    let top = run(
        json!([{"$sort": {"score": -1}}, {"$limit": 3}, {"$project": {"_id": 0, "score": 1}}]),
        &scores(),
    );
    assert_eq!(
        top,
        [
            json!({"score": 97}),
            json!({"score": 92}),
            json!({"score": 88})
        ]
    );
    let page = run(
        json!([{"$sort": {"score": 1}}, {"$skip": 2}, {"$limit": 2.0}, {"$project": {"score": 1}}]),
        &scores(),
    );
    assert_eq!(
        page,
        [
            json!({"_id": 6, "score": 83}),
            json!({"_id": 1, "score": 88})
        ]
    );
    // Across types, MongoDB's order; a missing field sorts as null; ties keep input order.
    let mixed = [
        json!({"_id": 1, "v": "b"}),
        json!({"_id": 2, "v": 2}),
        json!({"_id": 3}),
        json!({"_id": 4, "v": null}),
        json!({"_id": 5, "v": true}),
        json!({"_id": 6, "v": [5, 0]}),
        json!({"_id": 7, "v": 1.5}),
    ];
    let ids = |pipeline: Value| -> Vec<i64> {
        run(pipeline, &mixed)
            .iter()
            .map(|d| d["_id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(json!([{"$sort": {"v": 1}}])), [3, 4, 6, 7, 2, 1, 5]);
    assert_eq!(ids(json!([{"$sort": {"v": -1}}])), [5, 1, 6, 2, 7, 3, 4]);
    assert_eq!(
        ids(json!([{"$sort": {"v": 1, "_id": -1}}])),
        [4, 3, 6, 7, 2, 1, 5]
    );
    // Paths reach into arrays of objects, as a find's do.
    let nested = [
        json!({"_id": 1, "a": [{"b": 5}, {"b": 1}]}),
        json!({"_id": 2, "a": {"b": 3}}),
    ];
    let sorted = run(json!([{"$sort": {"a.b": 1}}]), &nested);
    assert_eq!(sorted[0]["_id"], json!(1));
    let sorted = run(json!([{"$sort": {"a.b": -1}}]), &nested);
    assert_eq!(sorted[0]["_id"], json!(1));
}

/// `$sort` then `$limit` keeps only the best as it goes; its result is the full sort's first n,
/// ties in input order, on many documents with many ties.
#[test]
fn a_sort_keeping_the_best_n_agrees_with_a_full_sort() {
    let documents: Vec<Value> = (0..1000)
        .map(|i: i64| json!({"_id": i, "k": (i * 7919) % 37, "j": (i * 31) % 5}))
        .collect();
    for limit in [1, 5, 63, 64, 100, 999, 1000, 5000] {
        for keys in [json!({"k": 1}), json!({"k": -1, "j": 1})] {
            let full = run(json!([{"$sort": keys}]), &documents);
            let best = run(json!([{"$sort": keys}, {"$limit": limit}]), &documents);
            assert_eq!(best, full[..limit.min(full.len())], "{keys} limit {limit}");
        }
    }
}

#[test]
fn a_limit_after_passing_stages_stops_reading_the_input() {
    let read = Cell::new(0);
    let endless = (0..).map(|i: u64| {
        read.set(read.get() + 1);
        json!({"_id": i, "even": i.is_multiple_of(2)})
    });
    let pipeline = Pipeline::parse(&json!([
        {"$match": {"even": true}}, {"$skip": 1}, {"$limit": 3}, {"$project": {"even": 0}}
    ]))
    .unwrap();
    assert_eq!(
        pipeline.run(endless).unwrap(),
        [json!({"_id": 2}), json!({"_id": 4}), json!({"_id": 6})]
    );
    assert_eq!(read.get(), 7);
}

/// The manual's `$project` examples over its `books` document (expressions beyond field paths
/// and literals left out).
#[test]
fn project_as_the_manual_shows() {
    let book = json!({"_id": 1, "title": "abc123", "isbn": "0001122223334",
        "author": {"last": "zzz", "first": "aaa"}, "copies": 5, "lastModified": "2016-07-28"});
    let cases = [
        (
            json!({"title": 1, "author": 1}),
            json!({"_id": 1, "title": "abc123", "author": {"last": "zzz", "first": "aaa"}}),
        ),
        (
            json!({"author": 1, "title": 1}),
            json!({"_id": 1, "title": "abc123", "author": {"last": "zzz", "first": "aaa"}}),
        ),
        (
            json!({"_id": 0, "title": 1, "author": 1}),
            json!({"title": "abc123", "author": {"last": "zzz", "first": "aaa"}}),
        ),
        (
            json!({"lastModified": 0}),
            json!({"_id": 1, "title": "abc123", "isbn": "0001122223334",
                "author": {"last": "zzz", "first": "aaa"}, "copies": 5}),
        ),
        (
            json!({"author.first": 0, "lastModified": 0}),
            json!({"_id": 1, "title": "abc123", "isbn": "0001122223334",
                "author": {"last": "zzz"}, "copies": 5}),
        ),
        (
            json!({"_id": 0, "copies": 0, "isbn": 0, "author": 0, "lastModified": 0}),
            json!({"title": "abc123"}),
        ),
        (
            json!({"title": 1, "author.last": 1}),
            json!({"_id": 1, "title": "abc123", "author": {"last": "zzz"}}),
        ),
        (
            json!({"title": 1, "author": {"last": 1}}),
            json!({"_id": 1, "title": "abc123", "author": {"last": "zzz"}}),
        ),
        (
            json!({"title": 1, "lastName": "$author.last", "copiesSold": "$copies"}),
            json!({"_id": 1, "title": "abc123", "lastName": "zzz", "copiesSold": 5}),
        ),
        (
            json!({"_id": "$isbn", "title": 1}),
            json!({"_id": "0001122223334", "title": "abc123"}),
        ),
        (json!({"_id": 1}), json!({"_id": 1})),
        (
            json!({"_id": 0}),
            json!({"title": "abc123", "isbn": "0001122223334",
                "author": {"last": "zzz", "first": "aaa"}, "copies": 5, "lastModified": "2016-07-28"}),
        ),
        (
            json!({"_id": 0, "note": "text", "one": {"$literal": 1}, "flag": {"$literal": "$x"},
                "missing": "$nothing", "names": ["$author.first", "$nothing", 3],
                "who": {"first": "$author.first", "none": "$nothing"}}),
            json!({"note": "text", "one": 1, "flag": "$x", "names": ["aaa", null, 3],
                "who": {"first": "aaa"}}),
        ),
        (
            json!({"_id": 0, "author.initial": "$author.first", "author.last": 1}),
            json!({"author": {"last": "zzz", "initial": "aaa"}}),
        ),
        (
            json!({"_id": 0, "made.here": "$copies"}),
            json!({"made": {"here": 5}}),
        ),
        (
            json!({"_id": 0, "title.x": "$copies"}),
            json!({"title": {"x": 5}}),
        ),
        (
            json!({"_id": 0, "whole": "$$ROOT.author"}),
            json!({"whole": {"last": "zzz", "first": "aaa"}}),
        ),
    ];
    for (spec, expected) in cases {
        let out = run(json!([{"$project": spec}]), std::slice::from_ref(&book));
        assert_eq!(out, std::slice::from_ref(&expected), "{spec}");
        // Field order too (serde_json's equality of objects ignores it).
        assert_eq!(out[0].to_string(), expected.to_string(), "{spec}");
    }
}

#[test]
fn project_and_field_paths_reach_into_arrays() {
    let document =
        json!({"_id": 1, "items": [{"n": 1, "p": 2}, {"n": 2}, {"x": 3}, 7, [{"n": 4}]]});
    assert_eq!(
        run(
            json!([{"$project": {"_id": 0, "ns": "$items.n"}}]),
            std::slice::from_ref(&document)
        ),
        [json!({"ns": [1, 2, [4]]})]
    );
    assert_eq!(
        run(
            json!([{"$project": {"items.n": 1}}]),
            std::slice::from_ref(&document)
        ),
        [json!({"_id": 1, "items": [{"n": 1}, {"n": 2}, {}, [{"n": 4}]]})]
    );
    assert_eq!(
        run(
            json!([{"$project": {"items.n": 0}}]),
            std::slice::from_ref(&document)
        ),
        [json!({"_id": 1, "items": [{"p": 2}, {}, {"x": 3}, 7, [{}]]})]
    );
    assert_eq!(
        run(
            json!([{"$project": {"_id": 0, "items.k": {"$literal": 0}}}]),
            &[document]
        ),
        [json!({"items": [{"k": 0}, {"k": 0}, {"k": 0}, {"k": 0}, [{"k": 0}]]})]
    );
}

#[test]
fn leading_match_is_offered_and_still_applied() {
    let pipeline = Pipeline::parse(&json!([
        {"$match": {"item": "abc"}}, {"$group": {"_id": null, "n": {"$sum": 1}}}
    ]))
    .unwrap();
    assert_eq!(
        pipeline.leading_match(),
        Some(&Filter::parse(&json!({"item": "abc"})).unwrap())
    );
    assert_eq!(
        pipeline.run(sales()).unwrap(),
        [json!({"_id": null, "n": 3})],
        "the caller may pass every document"
    );
    let later = Pipeline::parse(&json!([{"$skip": 1}, {"$match": {"item": "abc"}}])).unwrap();
    assert_eq!(later.leading_match(), None);
    assert_eq!(Pipeline::parse(&json!([])).unwrap().leading_match(), None);
    assert_eq!(
        Pipeline::parse(&json!([])).unwrap().run(sales()).unwrap(),
        sales()
    );
}

#[test]
fn refusals_name_the_stage_and_the_operator() {
    let cases = [
        (
            json!({"$match": {}}),
            "a pipeline must be a JSON array of stages",
        ),
        (
            json!([5]),
            "stage 1: a stage must be an object with one field, its operator",
        ),
        (
            json!([{"$match": {}, "$limit": 1}]),
            "stage 1: a stage must be an object with one field, its operator",
        ),
        (
            json!([{"$match": {}}, {"$lookup": {}}]),
            "stage 2 ($lookup): unknown stage (supported: $match $project $group $sort $skip \
             $limit $unwind $count)",
        ),
        (
            json!([{"$match": {"a": {"$foo": 1}}}]),
            "stage 1 ($match): unknown operator $foo (at 'a')",
        ),
        (
            json!([{"$match": {"a": {"$regex": "("}}}]),
            "stage 1 ($match): $regex \"(\" is not a valid pattern: unclosed group (at 'a')",
        ),
        (
            json!([{"$group": {"n": {"$sum": 1}}}]),
            "stage 1 ($group): needs an _id (null for one group of everything)",
        ),
        (json!([{"$group": []}]), "stage 1 ($group): needs an object"),
        (
            json!([{"$group": {"_id": null, "m": {"$median": "$a"}}}]),
            "stage 1 ($group): unknown accumulator $median for 'm' (supported: $sum $avg $min \
             $max $count $push $addToSet $first $last)",
        ),
        (
            json!([{"$group": {"_id": null, "n": 1}}]),
            "stage 1 ($group): 'n' must be an accumulator object with one operator, such as \
             {\"$sum\": 1}",
        ),
        (
            json!([{"$group": {"_id": null, "n": {"$sum": 1, "$avg": 1}}}]),
            "stage 1 ($group): 'n' must be an accumulator object with one operator, such as \
             {\"$sum\": 1}",
        ),
        (
            json!([{"$group": {"_id": null, "n": {"$sum": [1, 2]}}}]),
            "stage 1 ($group): $sum for 'n' takes one argument, not an array",
        ),
        (
            json!([{"$group": {"_id": null, "n": {"$count": 1}}}]),
            "stage 1 ($group): $count for 'n' takes no argument: {\"$count\": {}}",
        ),
        (
            json!([{"$group": {"_id": null, "a.b": {"$sum": 1}}}]),
            "stage 1 ($group): a $group field name 'a.b' cannot contain '.'",
        ),
        (
            json!([{"$group": {"_id": null, "n": {"$sum": "$"}}}]),
            "stage 1 ($group): $sum for 'n': '$' is not a valid field path",
        ),
        (
            json!([{"$group": {"_id": {"$multiply": ["$a", 2]}}}]),
            "stage 1 ($group): unknown expression operator $multiply (only field paths, \
             literals and $literal so far)",
        ),
        (
            json!([{"$group": {"_id": "$$NOW"}}]),
            "stage 1 ($group): unknown variable $$NOW (only $$ROOT and $$CURRENT)",
        ),
        (
            json!([{"$sort": {"a": 2}}]),
            "stage 1 ($sort): the order of 'a' must be 1 or -1",
        ),
        (
            json!([{"$sort": {}}]),
            "stage 1 ($sort): needs at least one path",
        ),
        (
            json!([{"$skip": -1}]),
            "stage 1 ($skip): needs a non-negative integer",
        ),
        (
            json!([{"$skip": 1.5}]),
            "stage 1 ($skip): needs a non-negative integer",
        ),
        (
            json!([{"$limit": 0}]),
            "stage 1 ($limit): needs a positive integer",
        ),
        (
            json!([{"$limit": "5"}]),
            "stage 1 ($limit): needs a positive integer",
        ),
        (
            json!([{"$unwind": "sizes"}]),
            "stage 1 ($unwind): the path must be a string starting with '$', as \"$sizes\"",
        ),
        (
            json!([{"$unwind": {"path": "$a", "preserve": true}}]),
            "stage 1 ($unwind): unknown option preserve",
        ),
        (
            json!([{"$unwind": {"path": "$a", "includeArrayIndex": "$i"}}]),
            "stage 1 ($unwind): includeArrayIndex must be a field name not starting with '$'",
        ),
        (
            json!([{"$unwind": {"path": "$a", "preserveNullAndEmptyArrays": 1}}]),
            "stage 1 ($unwind): preserveNullAndEmptyArrays must be true or false",
        ),
        (
            json!([{"$count": ""}]),
            "stage 1 ($count): the count field must be a non-empty string",
        ),
        (
            json!([{"$count": "$n"}]),
            "stage 1 ($count): the count field '$n' cannot start with '$'",
        ),
        (
            json!([{"$count": "a.b"}]),
            "stage 1 ($count): the count field 'a.b' cannot contain '.'",
        ),
        (
            json!([{"$count": 1}]),
            "stage 1 ($count): needs the output field's name, a string",
        ),
        (
            json!([{"$project": {}}]),
            "stage 1 ($project): needs at least one field",
        ),
        (
            json!([{"$project": {"a": 1, "b": 0}}]),
            "stage 1 ($project): cannot exclude 'b' in a projection that includes or computes \
             fields",
        ),
        (
            json!([{"$project": {"b": 0, "c": "$a"}}]),
            "stage 1 ($project): cannot exclude 'b' in a projection that includes or computes \
             fields",
        ),
        (
            json!([{"$project": {"a": 1, "a.b": 1}}]),
            "stage 1 ($project): path collision at 'a.b'",
        ),
        (
            json!([{"$project": {"a.b": 1, "a": {"b": 0}}}]),
            "stage 1 ($project): path collision at 'a.b'",
        ),
        (
            json!([{"$project": {"a": {}}}]),
            "stage 1 ($project): an empty object is not a valid value for 'a'",
        ),
        (
            json!([{"$project": {"a..b": 1}}]),
            "stage 1 ($project): 'a..b' is not a valid field path",
        ),
        (
            json!([{"$project": {"x": {"$concat": ["a", "b"]}}}]),
            "stage 1 ($project): unknown expression operator $concat (only field paths, \
             literals and $literal so far)",
        ),
        (
            json!([{"$project": {"x": {"$literal": 1, "y": 2}}}]),
            "stage 1 ($project): an expression object must be one operator, or plain fields",
        ),
    ];
    for (pipeline, expected) in cases {
        assert_eq!(refused(pipeline.clone()), expected, "{pipeline}");
    }
    let error = Pipeline::parse(&json!([{"$skip": 0}, {"$bad": 1}])).unwrap_err();
    assert_eq!(
        (error.stage, error.operator.as_deref()),
        (Some(2), Some("$bad"))
    );
}

#[test]
fn stage_count_and_patterns_are_bounded_for_the_whole_pipeline() {
    let skips = |n: usize| Value::Array(vec![json!({"$skip": 0}); n]);
    assert!(Pipeline::parse(&skips(STAGES_MAX)).is_ok());
    assert_eq!(
        refused(skips(STAGES_MAX + 1)),
        format!(
            "a pipeline of {} stages is over the limit of {STAGES_MAX}",
            STAGES_MAX + 1
        )
    );
    let matches: Vec<Value> = (0..=REGEXES_MAX)
        .map(|i| json!({"$match": {"s": {"$regex": format!("^{i}")}}}))
        .collect();
    assert_eq!(
        refused(Value::Array(matches)),
        format!(
            "stage {} ($match): the pipeline holds {} $regex patterns, over the limit of \
             {REGEXES_MAX}",
            REGEXES_MAX + 1,
            REGEXES_MAX + 1
        )
    );
}

/// Documents pass through the stages on a work list, not by recursion: the longest pipeline
/// runs on a test thread's stack (2 MiB), unoptimized builds included (a recursive first cut
/// overflowed it at opt-level 0).
#[test]
fn the_longest_pipeline_runs() {
    let mut stages = vec![json!({"$unwind": "$a"}); STAGES_MAX / 2];
    stages.extend(vec![json!({"$match": {"a": {"$gte": 0}}}); STAGES_MAX / 2]);
    let pipeline = Pipeline::parse(&Value::Array(stages)).unwrap();
    assert_eq!(
        pipeline.run([json!({"a": [1, 2]})]).unwrap(),
        [json!({"a": 1}), json!({"a": 2})]
    );
}

#[test]
fn the_default_limits_are_the_named_constants() {
    assert_eq!(
        Limits::DEFAULT,
        Limits {
            groups_max: GROUPS_MAX,
            blocking_stage_bytes_max: BLOCKING_STAGE_BYTES_MAX,
            result_bytes_max: RESULT_BYTES_MAX,
            computed_bytes_max: DOCUMENT_BYTES_MAX,
        }
    );
    assert_eq!(
        (GROUPS_MAX, BLOCKING_STAGE_BYTES_MAX, RESULT_BYTES_MAX),
        (1_000_000, 100 << 20, 256 << 20)
    );
}

/// Each limit, at and past a small value (the defaults are the same code with larger numbers).
#[test]
fn runs_stop_at_each_limit_with_the_stage_named() {
    let small = Limits {
        groups_max: 3,
        blocking_stage_bytes_max: 1000,
        result_bytes_max: 1000,
        computed_bytes_max: 200,
    };
    let run_small = |pipeline: Value, documents: Vec<Value>| {
        Pipeline::parse(&pipeline)
            .unwrap()
            .run_within(documents, &small)
            .map_err(|e| e.to_string())
    };
    let numbered = |n: usize| -> Vec<Value> { (0..n).map(|i| json!({"_id": i})).collect() };

    let group = json!([{"$group": {"_id": "$_id"}}]);
    assert_eq!(run_small(group.clone(), numbered(3)).unwrap().len(), 3);
    assert_eq!(
        run_small(group, numbered(4)).unwrap_err(),
        "stage 1 ($group): more than 3 groups (the limit of one $group)"
    );

    let long = json!({"s": "x".repeat(60)});
    let pushed = json!([{"$group": {"_id": null, "all": {"$push": "$s"}}}]);
    assert!(run_small(pushed.clone(), vec![long.clone(); 2]).is_ok());
    assert_eq!(
        run_small(pushed.clone(), vec![long.clone(); 3]).unwrap_err(),
        "stage 1 ($group): the group null makes a document of 212 bytes, over the limit of 200",
        "the array fits, the group's document does not"
    );
    assert_eq!(
        run_small(pushed, vec![long.clone(); 4]).unwrap_err(),
        "stage 1 ($group): 'all': $push array is over the limit of 200 bytes"
    );
    let set = json!([{"$group": {"_id": null, "all": {"$addToSet": "$s"}}}]);
    assert!(
        run_small(set, vec![long.clone(); 100]).is_ok(),
        "equal values are held once"
    );

    let groups_bytes = json!([{"$group": {"_id": "$s", "one": {"$first": "$s"}}}]);
    let distinct =
        |n: usize| -> Vec<Value> { (0..n).map(|i| json!({"s": format!("{i:0>60}")})).collect() };
    assert!(run_small(groups_bytes.clone(), distinct(3)).is_ok());
    let small_groups = Limits {
        groups_max: 100,
        ..small
    };
    let error = Pipeline::parse(&groups_bytes)
        .unwrap()
        .run_within(distinct(20), &small_groups)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "stage 1 ($group): the groups hold more than the limit of 1000 bytes"
    );

    let sort = json!([{"$sort": {"s": 1}}, {"$project": {"_id": 0, "n": {"$literal": 1}}}]);
    assert_eq!(
        run_small(sort.clone(), vec![long.clone(); 14])
            .unwrap()
            .len(),
        14
    );
    assert_eq!(
        run_small(sort, vec![long.clone(); 15]).unwrap_err(),
        "stage 1 ($sort): the documents to sort are over the limit of 1000 bytes"
    );
    // With a $limit after it, the sort holds only the best, so it stays within the limit.
    let best = json!([{"$sort": {"s": 1}}, {"$limit": 2}, {"$project": {"s": 0}}]);
    assert_eq!(run_small(best, vec![long.clone(); 500]).unwrap().len(), 2);

    // An $unwind of a large array stops at the result's limit.
    let wide = json!({"a": (0..1000).collect::<Vec<_>>(), "pad": "x".repeat(20)});
    assert_eq!(
        run_small(json!([{"$unwind": "$a"}]), vec![wide.clone()]).unwrap_err(),
        "the result is over the limit of 1000 bytes"
    );
    assert_eq!(
        run_small(json!([{"$unwind": "$a"}, {"$count": "n"}]), vec![wide]).unwrap(),
        [json!({"n": 1000})],
        "what is not kept is not counted"
    );

    // An expression naming one field many times stops at the computed limit.
    let echo = json!([{"$project": {"a": "$s", "b": "$s", "c": "$s", "d": "$s"}}]);
    assert!(run_small(echo.clone(), vec![json!({"s": "x".repeat(40)})]).is_ok());
    assert_eq!(
        run_small(echo, vec![long.clone()]).unwrap_err(),
        "stage 1 ($project): the values computed from one document are over the limit of 200 \
         bytes"
    );
    let root_twice = json!([{"$group": {"_id": "$$ROOT", "again": {"$first": "$$ROOT"}}}]);
    assert!(run_small(root_twice, vec![json!({"s": "x".repeat(120)})])
        .unwrap_err()
        .ends_with("the values computed from one document are over the limit of 200 bytes"));

    assert_eq!(
        Pipeline::parse(&json!([]))
            .unwrap()
            .run(vec![json!({}), json!(5)])
            .unwrap_err()
            .to_string(),
        "input document 2 is not a JSON object"
    );
}

#[test]
fn input_fields_name_what_the_stages_before_a_group_read_and_suffice_for_the_result() {
    let documents = vec![
        json!({"_id": 1, "city": "Oslo", "amount": 5, "pad": "x", "a": {"b": [1, {"c": 2}]}}),
        json!({"_id": 2, "city": "Rome", "amount": 2.5, "tags": ["t"], "a": {"b": 3}}),
        json!({"_id": 3, "amount": "n/a", "a": null, "z": {"city": "Oslo"}}),
        json!({"_id": 4, "city": "Oslo", "amount": 7, "a": [{"b": 9}, {"b": 1}]}),
    ];
    let cases = [
        (
            json!([{"$group": {"_id": "$city", "total": {"$sum": "$amount"}, "n": {"$sum": 1}}}]),
            Some(vec!["city", "amount"]),
        ),
        (
            json!([{"$match": {"$or": [{"a.b": {"$gt": 2}}, {"z.city": "Oslo"}]}},
                   {"$sort": {"amount": -1}}, {"$skip": 1},
                   {"$group": {"_id": {"k": "$a.b", "l": ["$city"]}, "f": {"$first": "$_id"},
                               "c": {"$count": {}}}},
                   {"$project": {"whatever": "$$ROOT"}}]),
            Some(vec!["a", "z", "amount", "city", "_id"]),
        ),
        (
            json!([{"$group": {"_id": null, "all": {"$push": "$$ROOT"}}}]),
            None,
        ),
        (
            json!([{"$project": {"city": 1}}, {"$group": {"_id": "$city"}}]),
            None,
        ),
        (
            json!([{"$unwind": "$tags"}, {"$group": {"_id": "$tags"}}]),
            None,
        ),
        (json!([{"$match": {"city": "Oslo"}}, {"$limit": 2}]), None),
        (json!([{"$count": "n"}]), None),
    ];
    for (spec, expected) in cases {
        let pipeline = Pipeline::parse(&spec).unwrap();
        let fields = pipeline.input_fields();
        let expected: Option<Vec<String>> =
            expected.map(|names| names.iter().map(|n| n.to_string()).collect());
        assert_eq!(fields, expected, "{spec}");
        let Some(fields) = fields else { continue };
        // Documents as the scan parses them give what the whole ones give.
        let partial: Vec<Value> = documents
            .iter()
            .map(|d| {
                let text = serde_json::to_vec(d).unwrap();
                crate::doc::partial::parse_fields(&text, &fields).unwrap()
            })
            .collect();
        assert_eq!(
            run(spec.clone(), &partial),
            run(spec.clone(), &documents),
            "{spec}"
        );
    }
}
