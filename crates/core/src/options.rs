//! Cleaning of custom SELECT field options, as the incumbent's `clean_options` does it.
//!
//! Fyle option lists sometimes arrive with a value that itself contained a comma split into
//! pieces (`"\"Acme", "Inc\""` for `Acme, Inc`), wrapped in quotes, or with escaped
//! apostrophes. The cleaned list is what becomes attributes; it is deduplicated keeping the
//! first occurrence so positions stay stable.

/// Rejoin pieces split on commas inside double quotes, strip surrounding quotes and
/// backslashes, unescape `\'`, drop empty values and deduplicate in order.
pub fn clean_options<S: AsRef<str>>(raw: &[S]) -> Vec<String> {
    let mut cleaned: Vec<String> = Vec::with_capacity(raw.len());
    let mut open: Option<String> = None;
    for piece in raw.iter().map(AsRef::as_ref) {
        match open.take() {
            Some(mut joined) => {
                joined.push(',');
                joined.push_str(piece);
                if piece.ends_with('"') {
                    push_clean(&mut cleaned, &joined);
                } else {
                    open = Some(joined);
                }
            }
            None if opens_quote(piece) => open = Some(piece.to_owned()),
            None => push_clean(&mut cleaned, piece),
        }
    }
    if let Some(unterminated) = open {
        push_clean(&mut cleaned, &unterminated);
    }
    cleaned
}

/// A piece that starts a quoted value which a comma split: `"Acme` but not `"Acme"`.
fn opens_quote(piece: &str) -> bool {
    piece.starts_with('"') && (piece.len() == 1 || !piece.ends_with('"'))
}

fn push_clean(out: &mut Vec<String>, value: &str) {
    let unescaped = value.replace("\\'", "'");
    let trimmed = unescaped.trim();
    let unquoted = trimmed.trim_matches('"');
    let clean: String = unquoted.chars().filter(|c| *c != '\\').collect();
    let clean = clean.trim();
    if !clean.is_empty() && !out.iter().any(|o| o == clean) {
        out.push(clean.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_options_pass_through_in_order() {
        assert_eq!(
            clean_options(&["France", "Denmark"]),
            vec!["France", "Denmark"]
        );
    }

    #[test]
    fn values_split_on_a_quoted_comma_are_rejoined() {
        assert_eq!(
            clean_options(&["\"Acme", " Inc\"", "Globex"]),
            vec!["Acme, Inc", "Globex"]
        );
        assert_eq!(clean_options(&["\"A", "B", "C\""]), vec!["A,B,C"]);
    }

    #[test]
    fn quotes_backslashes_and_escaped_apostrophes_are_removed() {
        assert_eq!(
            clean_options(&["\"Quoted\"", "O\\'Brien", "back\\slash"]),
            vec!["Quoted", "O'Brien", "backslash"]
        );
    }

    #[test]
    fn duplicates_and_empty_values_are_dropped_keeping_the_first() {
        assert_eq!(clean_options(&["A", "B", "A", "", "\"B\""]), vec!["A", "B"]);
    }

    #[test]
    fn an_unterminated_quote_keeps_what_it_gathered() {
        assert_eq!(clean_options(&["\"Open", "ended"]), vec!["Open,ended"]);
    }
}
