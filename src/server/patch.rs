//! The RFC 6902 JSON patch mirrorswap answers with: plain structs serialized
//! by serde_json.
//!
//! json-patch's `PatchOperation` builds each path as a `jsonptr::PointerBuf`
//! (one allocation and an escape pass per token) and serializes through an
//! internally tagged enum: about a quarter of a patched answer's work. Here a
//! path is one `String` written once by [`crate::k8s::pointer`], escaped per RFC 6901
//! where a token needs it (`mirrorswap.io/original-images` does). The tests and fuzz
//! targets apply every patch with the json-patch crate, which keeps this honest.

use serde::Serialize;
use serde_json::Value;

/// One patch operation: `replace` or `add`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatchOperation {
    op: &'static str,
    path: String,
    value: Value,
}

impl PatchOperation {
    /// Replaces the value at `path`.
    pub fn replace(path: String, value: Value) -> Self {
        Self { op: "replace", path, value }
    }

    /// Adds `value` at `path` (a new key, or `…/-` to append to a list).
    pub fn add(path: String, value: Value) -> Self {
        Self { op: "add", path, value }
    }
}

/// Serializes `operations` as the patch document.
pub fn to_json(operations: &[PatchOperation]) -> serde_json::Result<Vec<u8>> {
    // Sized once instead of growing from serde_json's 128: the fixed text of an operation is
    // 33 bytes, a string value its length (and rarely escapes), any other value a guess.
    let size = |operation: &PatchOperation| {
        40 + operation.path.len() + operation.value.as_str().map_or(128, |value| value.len() + value.len() / 8)
    };
    let mut json = Vec::with_capacity(2 + operations.iter().map(size).sum::<usize>());
    serde_json::to_writer(&mut json, operations)?;
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::pointer::pointer;

    #[test]
    fn serializes_as_json_patch_reads_it() {
        let operations = vec![
            PatchOperation::replace(pointer(["spec", "image"]), Value::String("m.example/nginx".into())),
            PatchOperation::add(pointer(["spec", "list", "-"]), serde_json::json!({"name": "s"})),
        ];
        let text = serde_json::to_string(&operations).unwrap();
        assert_eq!(
            text,
            r#"[{"op":"replace","path":"/spec/image","value":"m.example/nginx"},{"op":"add","path":"/spec/list/-","value":{"name":"s"}}]"#
        );
        let patch: json_patch::Patch = serde_json::from_str(&text).expect("json-patch parses it");
        let mut document = serde_json::json!({"spec": {"image": "nginx", "list": []}});
        json_patch::patch(&mut document, &patch).expect("applies");
        assert_eq!(document, serde_json::json!({"spec": {"image": "m.example/nginx", "list": [{"name": "s"}]}}));
    }
}
