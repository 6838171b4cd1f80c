//! The README's complete example is `examples/quick_start.rs`, verbatim.

#[test]
fn readme_example_is_the_quick_start_example() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/quick_start.rs");
    let start = readme
        .find("```rust\n//! The seed guide's Quick Start")
        .expect("the README shows the example")
        + "```rust\n".len();
    let block = &readme[start..];
    let block = &block[..block.find("```").expect("the code block ends")];
    assert_eq!(block, example);
}
