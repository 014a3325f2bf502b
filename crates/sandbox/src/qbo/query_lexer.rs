//! Tokenizer of the QBO query language (see [`super::query_parser`] for the grammar). Pure.
//!
//! Tokens: words (identifiers and keywords; dots allowed inside, so `Metadata.LastUpdatedTime` is
//! one word), single-quoted strings with backslash escapes, numbers, `*`, `(`, `)`, `,` and the
//! comparison operators. Anything else (`;`, `"`, an unterminated string) is a lexical error.

/// A token of the query language.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// Identifier or keyword (dots allowed inside: `MetaData.LastUpdatedTime`).
    Word(String),
    /// Quoted string, unescaped.
    Str(String),
    /// Number literal (kept as text).
    Num(String),
    /// `*`
    Star,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
    /// `=`, `<`, `>`, `<=`, `>=`, `!=`
    Cmp(&'static str),
}

/// A parse failure with its 1-based column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What went wrong.
    pub message: String,
    /// Column (1-based) of the offending token.
    pub column: usize,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at line 1, column {}.", self.message, self.column)
    }
}

/// Splits a statement into tokens with their columns.
pub fn tokenize(input: &str) -> Result<Vec<(Token, usize)>, ParseError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        match c {
            c if c.is_whitespace() => i += 1,
            '*' => {
                out.push((Token::Star, col));
                i += 1;
            }
            '(' => {
                out.push((Token::LParen, col));
                i += 1;
            }
            ')' => {
                out.push((Token::RParen, col));
                i += 1;
            }
            ',' => {
                out.push((Token::Comma, col));
                i += 1;
            }
            '=' => {
                out.push((Token::Cmp("="), col));
                i += 1;
            }
            '<' | '>' | '!' => {
                let two = chars.get(i + 1) == Some(&'=');
                let op = match (c, two) {
                    ('<', true) => "<=",
                    ('>', true) => ">=",
                    ('!', true) => "!=",
                    ('<', false) => "<",
                    ('>', false) => ">",
                    _ => {
                        return Err(ParseError {
                            message: "Encountered \"!\"".into(),
                            column: col,
                        });
                    }
                };
                out.push((Token::Cmp(op), col));
                i += if two { 2 } else { 1 };
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(ParseError {
                                message: "Lexical error: unterminated string".into(),
                                column: col,
                            });
                        }
                        Some('\\') => {
                            if let Some(n) = chars.get(i + 1) {
                                s.push(*n);
                            }
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push((Token::Str(s), col));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while chars
                    .get(i)
                    .is_some_and(|ch| ch.is_ascii_digit() || *ch == '.')
                {
                    i += 1;
                }
                out.push((Token::Num(chars[start..i].iter().collect()), col));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|ch| ch.is_alphanumeric() || *ch == '_' || *ch == '.')
                {
                    i += 1;
                }
                out.push((Token::Word(chars[start..i].iter().collect()), col));
            }
            other => {
                return Err(ParseError {
                    message: format!("Lexical error: encountered \"{other}\""),
                    column: col,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_dots_and_strings_unescape() {
        let toks: Vec<Token> = tokenize(
            "select * from Customer where Metadata.LastUpdatedTime >= 'it\\'s' and Id <= 5",
        )
        .expect("tokenizes")
        .into_iter()
        .map(|(t, _)| t)
        .collect();
        assert_eq!(toks[5], Token::Word("Metadata.LastUpdatedTime".into()));
        assert_eq!(toks[6], Token::Cmp(">="));
        assert_eq!(toks[7], Token::Str("it's".into()));
        assert_eq!(toks[10], Token::Cmp("<="));
        assert_eq!(toks[11], Token::Num("5".into()));
    }

    #[test]
    fn stray_characters_are_lexical_errors_with_a_column() {
        let e = tokenize("select * from Account;").expect_err("semicolon");
        assert_eq!(e.column, 22);
        assert!(tokenize("select 'open").is_err());
    }
}
