//! Keys given twice in one object. serde refuses the first it meets, but a tree
//! (`serde_json::Value`) keeps one of the two silently, so the decodings that go on from a tree
//! to name every other refused field would never see the rest: the body is walked once for
//! all of them.

use std::collections::HashSet;
use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_path_to_error::Segment;

/// The path of every key given more than once in its object, in the order they appear (a
/// key given three times is named twice). `None` when the body is not JSON.
pub(super) fn find(body: &[u8]) -> Option<Vec<Vec<Segment>>> {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    Walk { path: &mut Vec::new(), found: &mut found }.deserialize(&mut de).ok()?;
    Some(found)
}

struct Walk<'a> {
    path: &'a mut Vec<Segment>,
    found: &'a mut Vec<Vec<Segment>>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            self.path.push(Segment::Map { key: key.clone() });
            if !seen.insert(key) {
                self.found.push(self.path.clone());
            }
            map.next_value_seed(Walk { path: self.path, found: self.found })?;
            self.path.pop();
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            self.path.push(Segment::Seq { index });
            let more = seq.next_element_seed(Walk { path: self.path, found: self.found })?;
            self.path.pop();
            if more.is_none() {
                return Ok(());
            }
            index += 1;
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(body: &str) -> Vec<String> {
        find(body.as_bytes())
            .expect("JSON")
            .iter()
            .map(|p| super::super::decode::path_string(p))
            .collect()
    }

    #[test]
    fn every_repeated_key_is_found_at_its_path_and_nothing_else() {
        assert!(paths(r#"{"a": 1, "b": {"a": 2}, "c": [{"a": 1}, {"a": 2}]}"#).is_empty());
        assert_eq!(
            paths(r#"{"a": 1, "a": 2, "b": {"x": [1, {"y": 1, "y": 2}], "x": 3}, "a": 3}"#),
            ["a", "b.x[1].y", "b.x", "a"]
        );
        assert!(find(b"{\"a\": ").is_none());
    }
}
