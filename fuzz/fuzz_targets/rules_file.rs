//! The rules-file readers (maps, YAML): never panic on any text; whatever loads rewrites
//! without panicking, and every diagnostic names a line of the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirrorswap::rules_file::{Format, LoadError, load_text};

const IMAGES: [&str; 4] = ["nginx:1.27", "registry.k8s.io/pause:3.9", "quay.io/a/b@sha256:0", "localhost:5000/x"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // YAML counts a lone `\r` as a line break too (old Mac line endings), so bound by both.
    let lines = text.bytes().filter(|&b| b == b'\n' || b == b'\r').count() as u32 + 1;
    for format in [Format::Maps, Format::Yaml] {
        match load_text(text, "fuzz", format, Default::default()) {
            Ok(loaded) => {
                for image in IMAGES {
                    let _ = loaded.rules.rewrite(image);
                }
            }
            Err(LoadError::Invalid { diagnostics, .. }) => {
                assert!(!diagnostics.is_empty(), "an invalid file says why");
                for diagnostic in diagnostics {
                    assert!(diagnostic.line <= lines, "line {} of {lines}", diagnostic.line);
                }
            }
            Err(error) => panic!("text cannot fail with I/O: {error}"),
        }
    }
});
