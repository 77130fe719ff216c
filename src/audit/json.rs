//! JSON input (`kubectl get -o json`) read with serde_json straight from the reader: the
//! top-level object's `items` (a `List`) are handed on one by one as they are parsed and
//! never held together; any other top-level object is one document.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::Read;
use std::rc::Rc;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Reads one JSON value from `reader`, calling `sink` with it, or with each of its `items`,
/// and the line each starts on. The error is `LINE: reason`, or `sink`'s own error.
pub fn documents(reader: impl Read, sink: impl FnMut(Value, u64) -> Result<(), String>) -> Result<(), String> {
    let line = Rc::new(Cell::new(1));
    let counted = Lines { inner: reader, line: Rc::clone(&line) };
    let failed = RefCell::new(None);
    let sink = RefCell::new(sink);
    let context = Context { sink: &sink, failed: &failed, line: &line };
    let mut deserializer = serde_json::Deserializer::from_reader(counted);
    let result = TopLevel(&context).deserialize(&mut deserializer).and_then(|()| deserializer.end());
    if let Some(error) = failed.borrow_mut().take() {
        return Err(error);
    }
    result.map_err(|error| format!("{}: not valid JSON: {error}", error.line()))
}

/// A reader that counts the newlines read through it (serde_json reads byte by byte).
struct Lines<R> {
    inner: R,
    line: Rc<Cell<u64>>,
}

impl<R: Read> Read for Lines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        let newlines = buf[..read].iter().filter(|&&b| b == b'\n').count() as u64;
        self.line.set(self.line.get() + newlines);
        Ok(read)
    }
}

type Sink<'s> = RefCell<dyn FnMut(Value, u64) -> Result<(), String> + 's>;

struct Context<'c, 's> {
    sink: &'c Sink<'s>,
    failed: &'c RefCell<Option<String>>,
    line: &'c Rc<Cell<u64>>,
}

impl Context<'_, '_> {
    fn hand_on<E: serde::de::Error>(&self, value: Value, line: u64) -> Result<(), E> {
        let result = (self.sink.borrow_mut())(value, line);
        result.map_err(|error| {
            *self.failed.borrow_mut() = Some(error);
            E::custom("stopped")
        })
    }
}

struct TopLevel<'a, 'c, 's>(&'a Context<'c, 's>);

impl<'de> DeserializeSeed<'de> for TopLevel<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a Kubernetes object or List")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let start = self.0.line.get();
        let mut rest = Map::new();
        let mut listed = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                map.next_value_seed(Items(self.0))?;
                listed = true;
            } else {
                rest.insert(key, map.next_value::<Value>()?);
            }
        }
        if listed { Ok(()) } else { self.0.hand_on(Value::Object(rest), start) }
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while seq.next_element_seed(Item(self.0))?.is_some() {}
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom("a string is not a Kubernetes object"))
    }
}

/// A List's `items`, each handed on as it completes.
struct Items<'a, 'c, 's>(&'a Context<'c, 's>);

impl<'de> DeserializeSeed<'de> for Items<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Items<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a list of items")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while seq.next_element_seed(Item(self.0))?.is_some() {}
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// One item, parsed whole and handed on.
struct Item<'a, 'c, 's>(&'a Context<'c, 's>);

impl<'de> DeserializeSeed<'de> for Item<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let line = self.0.line.get();
        let value = Value::deserialize(deserializer)?;
        if value.is_null() {
            return Err(D::Error::custom("null item"));
        }
        self.0.hand_on(value, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<Vec<(String, u64)>, String> {
        let mut found = Vec::new();
        documents(text.as_bytes(), |value, line| {
            found.push((value.to_string(), line));
            Ok(())
        })?;
        Ok(found)
    }

    #[test]
    fn list_items_one_by_one_and_single_objects() {
        let list = "{\n\"apiVersion\": \"v1\",\n\"items\": [\n{\"kind\": \"Pod\"},\n{\"kind\": \"Job\"}\n],\n\"kind\": \"List\"\n}\n";
        assert_eq!(all(list).unwrap(), [(r#"{"kind":"Pod"}"#.to_owned(), 4), (r#"{"kind":"Job"}"#.to_owned(), 5)]);
        assert_eq!(all("{\"kind\": \"Pod\", \"a\": 1}").unwrap(), [(r#"{"a":1,"kind":"Pod"}"#.to_owned(), 1)]);
        let error = all("{\"items\": [\n{\"kind\": \"Pod\"},\n{\"kind\": }\n]}").unwrap_err();
        assert!(error.starts_with("3: not valid JSON"), "{error}");
        let stopped = documents(list.as_bytes(), |_, line| Err(format!("{line}: refused"))).unwrap_err();
        assert_eq!(stopped, "4: refused");
    }
}
