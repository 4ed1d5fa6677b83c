//! Small text helpers for messages, shared by the pure core and the commands.

/// The first `shown` items joined by `separator`, then `more(n)` for the `n` left
/// out, if any: long lists in one-line messages stay readable.
pub fn at_most(
    items: Vec<String>,
    shown: usize,
    separator: &str,
    more: impl Fn(usize) -> String,
) -> String {
    let left_out = items.len().saturating_sub(shown);
    let mut text = items
        .into_iter()
        .take(shown)
        .collect::<Vec<_>>()
        .join(separator);
    if left_out > 0 {
        text.push_str(&more(left_out));
    }
    text
}

/// `a`, `a and b`, `a, b and c`: a list for a sentence.
pub fn and_list<T: std::fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_cut_and_say_how_many_more() {
        let items = |n: usize| (1..=n).map(|i| i.to_string()).collect::<Vec<_>>();
        let more = |n: usize| format!(" and {n} more");
        assert_eq!(at_most(items(2), 3, ", ", more), "1, 2");
        assert_eq!(at_most(items(5), 3, ", ", more), "1, 2, 3 and 2 more");
        assert_eq!(at_most(Vec::new(), 3, ", ", more), "");
    }

    #[test]
    fn lists_read_as_a_sentence() {
        assert_eq!(and_list::<&str>(&[]), "");
        assert_eq!(and_list(&["a"]), "a");
        assert_eq!(and_list(&["a", "b"]), "a and b");
        assert_eq!(and_list(&["a", "b", "c"]), "a, b and c");
    }
}
