//! `--set col=TEMPLATE`: a column's value spelled out. Text is copied; `{row}` (or `{n}`) is
//! the row's number (counting on from the rows already in the table); `{a|b|c}` cycles
//! through the choices row by row; `{{` and `}}` are braces. (`--help` can only show
//! `{row}`: clap prints `{n}` as a line break.)

use std::fmt::Write as _;

use super::value::Row;

#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Piece>);

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Number,
    Cycle(Vec<String>),
}

impl Template {
    pub fn parse(template: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut inner = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => inner.push(c),
                            None => return Err(format!("{template:?}: a {{ is not closed")),
                        }
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(if inner == "n" || inner == "row" {
                        Piece::Number
                    } else if inner.contains('|') {
                        Piece::Cycle(inner.split('|').map(String::from).collect())
                    } else {
                        return Err(format!(
                            "{template:?}: {{{inner}}} is neither {{row}} nor choices {{a|b}} \
                             (write {{{{ for a brace)"
                        ));
                    });
                }
                '}' => return Err(format!("{template:?}: a }} without a {{ (write }}}})")),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template(pieces))
    }

    /// Whether each row's value is its own: the template holds the row's number.
    pub fn numbered(&self) -> bool {
        self.0.contains(&Piece::Number)
    }

    pub fn write(&self, row: Row, out: &mut String) {
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Number => {
                    let _ = write!(out, "{}", row.number);
                }
                Piece::Cycle(choices) => {
                    out.push_str(&choices[(row.index % choices.len() as u64) as usize])
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(t: &str, index: u64) -> String {
        let mut out = String::new();
        Template::parse(t).unwrap().write(
            Row {
                index,
                number: index + 11,
            },
            &mut out,
        );
        out
    }

    #[test]
    fn numbers_choices_and_braces() {
        assert_eq!(
            written("user{n}@loadtest.example", 0),
            "user11@loadtest.example"
        );
        assert_eq!(written("{free|pro|team}", 4), "pro");
        assert_eq!(written("{{x}} {n}", 1), "{x} 12");
        assert_eq!(written("u{row}", 1), "u12");
        assert!(Template::parse("u{row}").unwrap().numbered());
        assert!(!Template::parse("{a|b}").unwrap().numbered());
        assert_eq!(written("constant", 9), "constant");
        assert!(Template::parse("{x}").is_err());
        assert!(Template::parse("{n").is_err());
        assert!(Template::parse("a}").is_err());
    }
}
