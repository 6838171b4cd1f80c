//! "Did you mean ...?": the closest of some known names to a misspelt one.

/// The candidate closest to `wanted` by edit distance (transpositions count as one edit), if it
/// is close enough to be a likely misspelling: at most 2 edits, or a third of the longer name.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted_lower = wanted.to_ascii_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != wanted)
        .map(|c| {
            (
                strsim::damerau_levenshtein(&wanted_lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(distance, c)| *distance <= 2.max(wanted.len().max(c.len()) / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// `did you mean "x"?` for the closest candidate, if any.
pub fn did_you_mean<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(wanted, candidates).map(|c| format!("did you mean {c:?}?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_likely_misspellings_only() {
        let keys = ["depends_on", "slug", "type", "initial_tasks", "timeout"];
        assert_eq!(closest("depend_on", keys), Some("depends_on"));
        assert_eq!(closest("dependson", keys), Some("depends_on"));
        assert_eq!(closest("dpeends_on", keys), Some("depends_on"));
        assert_eq!(closest("Type", keys), Some("type"));
        assert_eq!(closest("timout", keys), Some("timeout"));
        assert_eq!(closest("colour", keys), None);
        assert_eq!(
            closest("slug", keys),
            None,
            "an exact name needs no suggestion"
        );
        assert_eq!(
            did_you_mean("claude_et", ["claude_etl", "ai_data_pipeline"]),
            Some("did you mean \"claude_etl\"?".to_string())
        );
    }
}
