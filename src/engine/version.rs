//! What to tell a user whose session's library and database extension differ in version.

use std::cmp::Ordering;

/// Compares dotted version numbers numerically ("0.10.0" is newer than "0.9.1"); parts that
/// are not numbers compare as text.
fn compare(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> Vec<String> { v.split('.').map(str::to_string).collect() };
    let (a, b) = (parts(a), parts(b));
    for (x, y) in a.iter().zip(&b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// The explanation of `extension_version_mismatch` for a library of version `library` called
/// from a database whose extension is at `installed` (None: not installed).
pub fn mismatch(library: &str, installed: Option<&str>) -> String {
    match installed {
        None => format!(
            "this session's quantum_flow library is version {library} but the extension is \
             not installed in this database"
        ),
        Some(db) if compare(db, library) == Ordering::Less => format!(
            "the quantum_flow library is version {library} but this database has the \
             extension at version {db}; run ALTER EXTENSION quantum_flow UPDATE"
        ),
        Some(db) => format!(
            "this session loaded the quantum_flow library of version {library}, but this \
             database has been updated to version {db}; reconnect"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare("0.1.0", "0.2.0"), Ordering::Less);
        assert_eq!(compare("0.10.0", "0.9.1"), Ordering::Greater);
        assert_eq!(compare("1.0", "1.0.0"), Ordering::Less);
        assert_eq!(compare("0.2.0", "0.2.0"), Ordering::Equal);
    }

    #[test]
    fn the_advice_depends_on_which_is_older() {
        assert_eq!(
            mismatch("0.2.0", Some("0.1.0")),
            "the quantum_flow library is version 0.2.0 but this database has the extension at \
             version 0.1.0; run ALTER EXTENSION quantum_flow UPDATE"
        );
        assert_eq!(
            mismatch("0.2.0", Some("0.3.0")),
            "this session loaded the quantum_flow library of version 0.2.0, but this database \
             has been updated to version 0.3.0; reconnect"
        );
        assert!(mismatch("0.2.0", None).ends_with("not installed in this database"));
    }
}
