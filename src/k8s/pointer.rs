//! JSON pointers (RFC 6901) into a Kubernetes object, such as where an image field is
//! ([`super::workload::ImageField::pointer`]): the paths of the server's JSON patch
//! (`server::patch`, `server::admission`). Each is one `String` written once, escaped where
//! a token needs it (`mirrorswap.io/original-images` does).

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
}
