//! A small CSV reader (RFC 4180 quoting, no multi-line fields): enough for the demo's file
//! without another dependency.

/// Splits one line into fields, honouring double quotes (`""` is a literal quote).
pub fn split_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// One data row: its line number in the file and its `(column, value)` pairs.
pub type Row = (usize, Vec<(String, String)>);

/// The rows of a CSV text with a header line: `(line number, [(column, value)])`, line
/// numbers counted in the file (the header is line 1). Blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<Row>, String> {
    let mut lines = text.lines().enumerate();
    let header = match lines.next() {
        Some((_, h)) => split_line(h),
        None => return Err("the file is empty".into()),
    };
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let values = split_line(line);
        if values.len() != header.len() {
            return Err(format!(
                "line {}: {} fields, the header has {}",
                i + 1,
                values.len(),
                header.len()
            ));
        }
        rows.push((i + 1, header.iter().cloned().zip(values).collect()));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_commas() {
        assert_eq!(
            split_line(r#""Wirth, Niklaus",a@b.c,"say ""hi""",,x"#),
            ["Wirth, Niklaus", "a@b.c", "say \"hi\"", "", "x"]
        );
    }

    #[test]
    fn line_numbers_count_the_header() {
        let rows = parse("a,b\n1,2\n\n3,4\n").unwrap();
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[1].0, 4);
        assert_eq!(
            rows[1].1,
            [("a".into(), "3".into()), ("b".into(), "4".into())]
        );
        assert!(parse("a,b\n1\n").unwrap_err().contains("line 2"));
    }
}
