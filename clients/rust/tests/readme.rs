//! The README's complete example is `examples/quick_start.rs`, verbatim.

#[test]
fn readme_example_is_the_quick_start_example() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/quick_start.rs");
    let start = readme
        .find("```rust\n//! The Quick Start with the Rust client")
        .expect("the README shows the example")
        + "```rust\n".len();
    let block = &readme[start..];
    let block = &block[..block.find("```").expect("the code block ends")];
    assert_eq!(block, example);
}

/// `(code, SQLSTATE)` of each row of the first Markdown table after `heading` whose cells
/// hold a `` `code` `` and a 5-character SQLSTATE, at cell positions `code_cell` and
/// `sqlstate_cell`.
fn error_table(
    markdown: &str,
    heading: &str,
    code_cell: usize,
    sqlstate_cell: usize,
) -> Vec<(String, String)> {
    let section = markdown
        .split(heading)
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let mut rows: Vec<(String, String)> = section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code = cells.get(code_cell)?;
            let sqlstate = cells.get(sqlstate_cell)?;
            (code.starts_with('`') && sqlstate.len() == 5)
                .then(|| (code.trim_matches('`').to_string(), sqlstate.to_string()))
        })
        .collect();
    rows.sort();
    rows
}

fn client_codes() -> Vec<(String, String)> {
    let mut codes: Vec<(String, String)> = quantum_flow_client::ErrorCode::ALL
        .iter()
        .map(|c| {
            (
                c.as_str().to_string(),
                c.expected_sqlstate().expect("a known code").to_string(),
            )
        })
        .collect();
    codes.sort();
    codes
}

/// The server's error table (the root README, which the extension's own tests tie to the
/// codes it raises) lists exactly the client's `ErrorCode`s, with the same SQLSTATEs.
#[test]
fn error_codes_are_the_servers() {
    let server = error_table(
        include_str!("../../../README.md"),
        "\n## Error codes\n",
        1,
        2,
    );
    assert!(server.len() >= 27, "{server:?}");
    assert_eq!(client_codes(), server);
}

/// The client README's table of `ErrorCode`s is complete.
#[test]
fn the_client_readme_lists_every_error_code() {
    let documented = error_table(include_str!("../README.md"), "\n## Errors\n", 2, 3);
    assert_eq!(documented, client_codes());
}
