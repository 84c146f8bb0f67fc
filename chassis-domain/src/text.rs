//! Required texts of an input (names, addresses, SKUs): one rule, stated so
//! an OpenAPI schema can say exactly the same.
//!
//! A text is valid when it has at most `max` characters (Unicode scalar
//! values, as JSON Schema's `maxLength` counts them) and holds something
//! other than [`BLANK`] characters (JSON Schema: `minLength: 1` and
//! `pattern:` [`NOT_BLANK_PATTERN`]). What is kept is the text without
//! leading and trailing [`BLANK`] characters.
//!
//! ```
//! use chassis_domain::text;
//! assert_eq!(text::required("  Ada Lovelace\n", 200), Ok("Ada Lovelace"));
//! assert_eq!(text::required(" \t ", 200), Err(text::TextError::Blank));
//! assert_eq!(text::required("abcd", 3), Err(text::TextError::TooLong { max: 3 }));
//! ```

/// The characters a text may be padded with, and that alone make it blank:
/// ASCII whitespace, which every regular-expression dialect agrees on
/// (Unicode whitespace differs between ECMAScript, Python and Rust).
pub const BLANK: [char; 6] = [' ', '\t', '\n', '\r', '\u{0B}', '\u{0C}'];

/// The JSON Schema `pattern` of a text that is not blank: one character
/// that is not in [`BLANK`] (JSON Schema patterns are not anchored).
pub const NOT_BLANK_PATTERN: &str = "[^\\t\\n\\v\\f\\r ]";

/// Why a required text is refused; the `Display` text is the detail of the
/// field's 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Empty, or only [`BLANK`] characters.
    #[error("must not be empty")]
    Blank,
    /// More than `max` characters (padding included).
    #[error("must be at most {max} characters long")]
    TooLong {
        /// The limit.
        max: usize,
    },
}

/// The text of `value` without its [`BLANK`] padding, when it is valid (see
/// the module docs).
pub fn required(value: &str, max: usize) -> Result<&str, TextError> {
    if value.chars().count() > max {
        return Err(TextError::TooLong { max });
    }
    let trimmed = value.trim_matches(BLANK);
    if trimmed.is_empty() {
        return Err(TextError::Blank);
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_counts_towards_the_limit_and_only_ascii_whitespace_is_blank() {
        assert_eq!(required(" ab ", 4), Ok("ab"));
        assert_eq!(required(" ab ", 3), Err(TextError::TooLong { max: 3 }));
        assert_eq!(required("\u{0B}\u{0C}\r\n", 9), Err(TextError::Blank));
        // Other whitespace is content: the schema's pattern accepts it too.
        assert_eq!(required("\u{3000}", 9), Ok("\u{3000}"));
        assert_eq!(required("\u{1C}", 9), Ok("\u{1C}"));
        assert_eq!(required("ÿ€😀", 3), Ok("ÿ€😀"), "characters, not bytes");
        assert_eq!(TextError::Blank.to_string(), "must not be empty");
    }
}
