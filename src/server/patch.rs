//! The RFC 6902 JSON patch mirrorswap answers with: plain structs serialized
//! by serde_json.
//!
//! json-patch's `PatchOperation` builds each path as a `jsonptr::PointerBuf`
//! (one allocation and an escape pass per token) and serializes through an
//! internally tagged enum: about a quarter of a patched answer's work. Here a
//! path is one `String` written once, escaped per RFC 6901 where a token needs
//! it (`mirrorswap.io/original-images` does). The tests and fuzz targets apply
//! every patch with the json-patch crate, which keeps this honest.

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
    // ≈ 100 bytes an image operation; sized once instead of growing from serde_json's 128.
    let mut json = Vec::with_capacity(operations.len() * 112 + 2);
    serde_json::to_writer(&mut json, operations)?;
    Ok(json)
}

/// A JSON pointer (RFC 6901) made of `tokens`; `~` and `/` inside a token are escaped.
pub fn pointer<'t>(tokens: impl IntoIterator<Item = &'t str>) -> String {
    let mut path = String::with_capacity(64);
    tokens.into_iter().for_each(|token| push_token(&mut path, token));
    path
}

/// Appends `/token` to a pointer.
pub fn push_token(path: &mut String, token: &str) {
    path.push('/');
    if token.contains(['~', '/']) {
        path.push_str(&token.replace('~', "~0").replace('/', "~1"));
    } else {
        path.push_str(token);
    }
}

/// Appends `/index` to a pointer.
pub fn push_index(path: &mut String, index: usize) {
    path.push('/');
    path.push_str(itoa::Buffer::new().format(index));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape_as_rfc_6901_says() {
        let cases: [(&[&str], &str); 4] = [
            (&["spec", "containers"], "/spec/containers"),
            (
                &["metadata", "annotations", "mirrorswap.io/original-images"],
                "/metadata/annotations/mirrorswap.io~1original-images",
            ),
            (&["a~b", "c/d~"], "/a~0b/c~1d~0"),
            (&[], ""),
        ];
        for (tokens, expected) in cases {
            assert_eq!(pointer(tokens.iter().copied()), expected);
            let parsed = json_patch::jsonptr::PointerBuf::parse(expected).expect("a valid pointer");
            let decoded: Vec<String> = parsed.tokens().map(|token| token.decoded().into_owned()).collect();
            assert_eq!(decoded, tokens.to_vec(), "json-patch reads the tokens back");
        }
        let mut path = pointer(["spec", "containers"]);
        push_index(&mut path, 12);
        assert_eq!(path, "/spec/containers/12");
    }

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
