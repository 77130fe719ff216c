//! An error and its causes as one line, each said once: libraries often repeat a cause in
//! their own message (kube's `ServiceError: client error (Connect)` above hyper's `client
//! error (Connect)`), which `{:#}` prints twice.

use std::error::Error;

/// `error: cause: cause`, skipping a cause whose text the line already holds.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = next.source();
    }
    line
}

/// [`one_line`] for an `anyhow` error and its context.
pub fn anyhow_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layers(texts: &[&'static str]) -> Layer {
        texts.iter().rev().fold(None, |source, text| Some(Layer { text, source: source.map(Box::new) })).unwrap()
    }

    #[test]
    fn a_cause_already_said_is_said_once() {
        let table = [
            (&["reading x", "not found"][..], "reading x: not found"),
            (
                &["ServiceError: client error (Connect)", "client error (Connect)", "tcp connect error", "refused"],
                "ServiceError: client error (Connect): tcp connect error: refused",
            ),
            (&["failed to read a: gone", "gone"], "failed to read a: gone"),
        ];
        for (texts, expected) in table {
            assert_eq!(one_line(&layers(texts)), expected);
            let error = anyhow::Error::new(layers(texts));
            assert_eq!(anyhow_line(&error), expected);
        }
        let error = anyhow::Error::new(layers(&["no such file"])).context("opening f");
        assert_eq!(anyhow_line(&error), "opening f: no such file");
    }
}
