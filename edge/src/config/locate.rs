//! Maps a key path (`routes[2].upstream`) to the line it is written on, so every config
//! error can say `file:line: key: message`.

use std::fmt;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path into the config document, e.g. `routes[2].plugins.jwt.mode`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.to_string()));
        next
    }

    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }

    /// Appends a relative dotted path as produced by gateway-plugins
    /// (`jwt.algorithms[1]`, `rate_limits[0].scope`).
    pub fn join_dotted(&self, relative: &str) -> Self {
        let mut next = self.clone();
        for part in relative.split('.').filter(|p| !p.is_empty()) {
            let mut rest = part;
            let name_end = rest.find('[').unwrap_or(rest.len());
            if name_end > 0 {
                next.0.push(Segment::Key(rest[..name_end].to_string()));
            }
            rest = &rest[name_end..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(index) = stripped[..close].parse() {
                    next.0.push(Segment::Index(index));
                }
                rest = &stripped[close + 1..];
            }
        }
        next
    }

    /// Parses a path printed by `serde_path_to_error` (`routes[2].upstream`, `clusters.auth.protocol`).
    pub fn parse(text: &str) -> Self {
        if text == "." {
            return Self::root();
        }
        Self::root().join_dotted(text)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for segment in &self.0 {
            match segment {
                Segment::Key(key) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
            first = false;
        }
        if first {
            f.write_str("(top level)")?;
        }
        Ok(())
    }
}

/// 1-based line of the deepest existing part of `path` in `source`.
pub fn line_of(source: &str, path: &KeyPath) -> Option<usize> {
    let document = toml_edit::Document::parse(source).ok()?;
    let offset = offset_of(document.as_table(), &path.0)?;
    Some(line_at(source, offset))
}

/// 1-based line containing byte `offset`.
pub fn line_at(source: &str, offset: usize) -> usize {
    let end = offset.min(source.len());
    source.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn offset_of(table: &toml_edit::Table, path: &[Segment]) -> Option<usize> {
    let Some((first, rest)) = path.split_first() else {
        return table.span().map(|s| s.start);
    };
    let Segment::Key(key) = first else {
        return table.span().map(|s| s.start);
    };
    let key_offset = table.key(key).and_then(|k| k.span()).map(|s| s.start);
    let Some(item) = table.get(key) else {
        // The key is missing: point at the table itself.
        return table
            .span()
            .map(|s| s.start)
            .or_else(|| first_key_offset(table));
    };
    let deeper = offset_in_item(item, rest);
    deeper
        .or(key_offset)
        .or_else(|| item.span().map(|s| s.start))
}

fn offset_in_item(item: &toml_edit::Item, path: &[Segment]) -> Option<usize> {
    match item {
        toml_edit::Item::Table(table) => {
            if path.is_empty() {
                return table
                    .span()
                    .map(|s| s.start)
                    .or_else(|| first_key_offset(table));
            }
            offset_of(table, path)
        }
        toml_edit::Item::ArrayOfTables(array) => {
            let Some((Segment::Index(index), rest)) = path.split_first() else {
                return array.span().map(|s| s.start);
            };
            let table = array.get(*index)?;
            if rest.is_empty() {
                return table
                    .span()
                    .map(|s| s.start)
                    .or_else(|| first_key_offset(table));
            }
            offset_of(table, rest).or_else(|| first_key_offset(table))
        }
        toml_edit::Item::Value(value) => offset_in_value(value, path),
        toml_edit::Item::None => None,
    }
}

fn offset_in_value(value: &toml_edit::Value, path: &[Segment]) -> Option<usize> {
    let Some((first, rest)) = path.split_first() else {
        return value.span().map(|s| s.start);
    };
    match (value, first) {
        (toml_edit::Value::Array(array), Segment::Index(index)) => match array.get(*index) {
            Some(element) => offset_in_value(element, rest),
            None => array.span().map(|s| s.start),
        },
        (toml_edit::Value::InlineTable(table), Segment::Key(key)) => match table.get(key) {
            Some(element) => offset_in_value(element, rest)
                .or_else(|| table.key(key).and_then(|k| k.span()).map(|s| s.start)),
            None => table.span().map(|s| s.start),
        },
        _ => value.span().map(|s| s.start),
    }
}

/// Tables written as `[header]` may carry no span of their own; their first key does.
fn first_key_offset(table: &toml_edit::Table) -> Option<usize> {
    table
        .iter()
        .filter_map(|(key, _)| table.key(key).and_then(|k| k.span()))
        .map(|s| s.start)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"[server]
threads = 2

[clusters.records]
addresses = ["127.0.0.1:4002", "bad"]

[[routes]]
id = "one"
upstream = "records"

[[routes]]
id = "two"
upstream = "recrods"
plugins = { jwt = { mode = "required" } }
"#;

    #[test]
    fn finds_keys_in_arrays_of_tables() {
        assert_eq!(
            line_of(DOC, &KeyPath::parse("routes[1].upstream")),
            Some(13)
        );
        assert_eq!(line_of(DOC, &KeyPath::parse("routes[0].id")), Some(8));
    }

    #[test]
    fn finds_array_elements_and_nested_tables() {
        assert_eq!(
            line_of(DOC, &KeyPath::parse("clusters.records.addresses[1]")),
            Some(5)
        );
        assert_eq!(line_of(DOC, &KeyPath::parse("server.threads")), Some(2));
        assert_eq!(
            line_of(DOC, &KeyPath::parse("routes[1].plugins.jwt.mode")),
            Some(14)
        );
    }

    #[test]
    fn missing_keys_point_at_their_table() {
        assert_eq!(line_of(DOC, &KeyPath::parse("routes[1].hosts")), Some(11));
    }

    #[test]
    fn paths_round_trip_through_display() {
        let path = KeyPath::root()
            .key("routes")
            .index(2)
            .join_dotted("plugins.rate_limits[0].scope");
        assert_eq!(path.to_string(), "routes[2].plugins.rate_limits[0].scope");
        assert_eq!(KeyPath::parse(&path.to_string()), path);
    }
}
