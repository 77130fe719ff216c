//! A count with its noun, singular or plural as English wants it: "1 image", "3 images",
//! "1 registry", "2 registries".

/// `n` and `singular`, or `plural` when `n` is not 1.
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// [`count`] for a noun whose plural adds an `s`.
pub fn count_s(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_everything_else_plural() {
        assert_eq!(count_s(1, "image"), "1 image");
        assert_eq!(count_s(0, "image"), "0 images");
        assert_eq!(count(2, "registry", "registries"), "2 registries");
        assert_eq!(count(1, "registry", "registries"), "1 registry");
    }
}
