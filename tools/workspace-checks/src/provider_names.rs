//! The rule that abstraction crates name no provider: a provider's config
//! type, its settings and its keys live in the provider crate.
//!
//! The code of every `src/**/*.rs` file of an `*-abstractions` crate is read
//! as tokens: comments are skipped (docs may point at the provider crates)
//! and so are `#[cfg(test)]` items (tests may use a provider's name as
//! sample data, e.g. to show a subsection is captured as a name). Every
//! identifier, and every key path or variable name in a string literal (a
//! word with a `.` or `_`), is split into its parts (`RabbitMqConfig` →
//! `rabbit`, `mq`, `config`; `"storage.postgres.schema"` → `storage`,
//! `postgres`, `schema`); a run of parts spelling a provider name is a
//! finding. A provider's bare name as a value (`provider: "inmemory".into()`,
//! the section's default) is not a setting of that provider and passes.
//!
//! ```
//! use workspace_checks::provider_names::{find, PROVIDER_NAMES};
//!
//! let code = "/// Settings of the `postgres` provider live in storage-postgres.\n\
//!             pub struct StorageConfig { pub provider: String }\n\
//!             pub struct PostgresConfig { pub url: String }\n";
//! let found = find("src/config.rs", code, PROVIDER_NAMES);
//! assert_eq!(found.len(), 1);
//! assert_eq!(found[0].to_string(), "src/config.rs:3: `PostgresConfig` names the provider `postgres`");
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Kind, Package, classify};

/// Provider names the rule looks for besides the providers of the workspace
/// (the `<concern>-<provider>` crates): back ends a provider crate is
/// likely to be written for next.
pub const PROVIDER_NAMES: &[&str] = &[
    "rabbitmq", "postgres", "otlp", "nats", "sqlite", "kafka", "redis", "mysql", "mariadb", "mqtt",
];

/// A provider named in an abstraction crate's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file, as given to [`find`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The identifier or string literal naming it.
    pub text: String,
    /// The provider name it spells.
    pub provider: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}` names the provider `{}`",
            self.file, self.line, self.text, self.provider
        )
    }
}

/// Every place of `code` (a Rust source file called `file`) outside
/// comments and `#[cfg(test)]` items that names one of `providers`
/// (lower-case names).
pub fn find(file: &str, code: &str, providers: &[&str]) -> Vec<Finding> {
    let tokens = without_test_items(tokens(code));
    let mut found = Vec::new();
    for token in &tokens {
        let words: Vec<&str> = match token.kind {
            TokenKind::Ident => vec![token.text.as_str()],
            TokenKind::Str => token
                .text
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '.')
                .filter(|w| w.contains(['.', '_']))
                .collect(),
            TokenKind::Punct => continue,
        };
        let named = words.iter().find_map(|word| {
            let parts = parts(word);
            providers
                .iter()
                .find(|provider| spells(&parts, provider))
                .copied()
        });
        if let Some(provider) = named {
            found.push(Finding {
                file: file.to_owned(),
                line: token.line,
                text: token.text.clone(),
                provider: provider.to_owned(),
            });
        }
    }
    found
}

/// The provider names to look for: [`PROVIDER_NAMES`] and the provider part
/// of every provider crate among `packages` (`messaging-inmemory` →
/// `inmemory`), so a new provider crate is covered the day it is added.
pub fn provider_names(packages: &[Package]) -> Vec<String> {
    let mut names: Vec<String> = PROVIDER_NAMES.iter().map(|n| (*n).to_owned()).collect();
    for package in packages {
        if classify(&package.name, &package.manifest_path) == Kind::Provider
            && let Some((_, provider)) = package.name.split_once('-')
        {
            names.push(provider.replace('-', ""));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Every finding in the `src/**/*.rs` files of the abstraction crates among
/// `packages`; files are named relative to `root`.
pub fn check_abstractions(
    root: &Path,
    packages: &[Package],
    providers: &[&str],
) -> std::io::Result<Vec<Finding>> {
    let mut found = Vec::new();
    for package in packages {
        if classify(&package.name, &package.manifest_path) != Kind::Abstractions {
            continue;
        }
        let dir = Path::new(&package.manifest_path)
            .parent()
            .unwrap_or(Path::new("."))
            .join("src");
        for file in rust_files(&dir)? {
            let code = std::fs::read_to_string(&file)?;
            let name = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            found.extend(find(&name, &code, providers));
        }
    }
    Ok(found)
}

/// The `.rs` files below `dir`, sorted.
pub fn rust_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The parts of an identifier-like word, lower-case: split at `_` and `.`, at
/// lower→upper case changes and before the last capital of a run of
/// capitals followed by a lower-case letter (`HTTPServer` → `http`, `server`).
fn parts(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut parts = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' || c == '.' {
            if !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            continue;
        }
        let previous = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1);
        let boundary = c.is_uppercase()
            && previous.is_some_and(|p| {
                p.is_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase()))
            });
        if boundary && !current.is_empty() {
            parts.push(std::mem::take(&mut current));
        }
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// Whether consecutive `parts` spell `name` exactly (`in` + `memory` spells
/// `inmemory`; `signatures` does not spell `nats`).
fn spells(parts: &[String], name: &str) -> bool {
    (0..parts.len()).any(|start| {
        let mut spelled = String::new();
        parts[start..].iter().any(|part| {
            spelled.push_str(part);
            spelled == name
        })
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Ident,
    /// The contents of a string literal.
    Str,
    Punct,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    text: String,
    line: usize,
}

/// Rust source as identifiers, string contents and punctuation; comments,
/// numbers, lifetimes and char literals are dropped.
fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if c == 'r'
            && (at(i + 1) == '"' || (at(i + 1) == '#' && matches!(at(i + 2), '"' | '#')))
        {
            // Raw string: r"..." or r#"..."#.
            let mut hashes = 0;
            i += 1;
            while at(i) == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1; // the opening quote
            let start_line = line;
            let mut text = String::new();
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#') {
                    i += 1 + hashes;
                    break;
                }
                line += usize::from(chars[i] == '\n');
                text.push(chars[i]);
                i += 1;
            }
            out.push(Token {
                kind: TokenKind::Str,
                text,
                line: start_line,
            });
        } else if c == '"' {
            i += 1;
            let start_line = line;
            let mut text = String::new();
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    text.push(' ');
                    i += 1;
                } else {
                    text.push(chars[i]);
                }
                line += usize::from(at(i) == '\n');
                i += 1;
            }
            i += 1;
            out.push(Token {
                kind: TokenKind::Str,
                text,
                line: start_line,
            });
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            if at(i + 1) == '\\' {
                // Past the quote, the backslash and the escaped character.
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            // b"..." and c"...": the prefix is not an identifier.
            if !(matches!(text.as_str(), "b" | "c" | "br") && at(i) == '"') {
                out.push(Token {
                    kind: TokenKind::Ident,
                    text,
                    line,
                });
            }
        } else if c.is_ascii_digit() {
            while at(i).is_alphanumeric()
                || at(i) == '_'
                || at(i) == '.' && at(i + 1).is_ascii_digit()
            {
                i += 1;
            }
        } else {
            out.push(Token {
                kind: TokenKind::Punct,
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

/// The tokens without the items marked `#[cfg(test)]` (up to the end of
/// their block, or their `;`).
fn without_test_items(tokens: Vec<Token>) -> Vec<Token> {
    const MARK: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let marked = tokens.len() >= i + MARK.len()
            && MARK
                .iter()
                .zip(&tokens[i..])
                .all(|(m, t)| t.text == *m && t.kind != TokenKind::Str);
        if !marked {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        i += MARK.len();
        let mut depth = 0usize;
        while i < tokens.len() {
            let t = &tokens[i];
            i += 1;
            if t.kind != TokenKind::Punct {
                continue;
            }
            match t.text.as_str() {
                "{" => depth += 1,
                "}" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                ";" if depth == 0 => break,
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(code: &str) -> Vec<String> {
        find(
            "f.rs",
            code,
            &["rabbitmq", "postgres", "otlp", "nats", "inmemory"],
        )
        .into_iter()
        .map(|f| format!("{}:{}", f.line, f.text))
        .collect()
    }

    #[test]
    fn splits_identifiers_into_parts() {
        assert_eq!(parts("RabbitMqConfig"), ["rabbit", "mq", "config"]);
        assert_eq!(parts("RabbitMQConfig"), ["rabbit", "mq", "config"]);
        assert_eq!(parts("PROVIDER_OTLP"), ["provider", "otlp"]);
        assert_eq!(parts("otlp_settings2"), ["otlp", "settings2"]);
        assert_eq!(parts("HTTPServer"), ["http", "server"]);
        assert!(spells(&parts("InMemoryBus"), "inmemory"));
        assert!(!spells(&parts("signatures"), "nats"));
        assert!(!spells(&parts("NatSorted"), "nats"));
    }

    #[test]
    fn finds_types_fields_consts_and_key_paths() {
        let code = r##"
pub struct StorageConfig {
    pub postgres: PostgresConfig,
}
pub const PROVIDER_OTLP: &str = "x";
fn f() -> Result<(), String> { Err("messaging.rabbitmq.url: expected a URL".into()) }
const RAW: &str = r#"tracing.otlp.timeout"#;
const VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
fn default() -> Self { Self { provider: "inmemory".into(), note: "a rabbitmq broker" } }
"##;
        assert_eq!(
            texts(code),
            [
                "3:postgres",
                "3:PostgresConfig",
                "5:PROVIDER_OTLP",
                "6:messaging.rabbitmq.url: expected a URL",
                "7:tracing.otlp.timeout",
                "8:OTEL_EXPORTER_OTLP_ENDPOINT",
            ]
        );
    }

    #[test]
    fn skips_comments_tests_and_lookalikes() {
        let code = r##"
//! The providers live in `messaging-rabbitmq` and `traces-otlp`.
/// Like `PostgresConfig`, /* nested /* RabbitMq */ */ nothing here.
pub fn signatures<'otlp>(c: char) -> bool { c == 'r' || c == '\'' }
pub const ESCAPED: &str = "a \" quote, then code";
pub struct Plain { pub provider: String }
#[cfg(test)]
mod tests {
    fn t() { let _ = r#"{"rabbitmq": {"url": "amqp://x"}}"#; struct PostgresConfig; }
}
#[cfg(test)]
use crate::otlp_helpers;
pub struct After { pub in_memory: bool }
"##;
        assert_eq!(texts(code), ["13:in_memory"]);
    }
}
