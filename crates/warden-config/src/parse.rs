//! Text -> `Config`, collecting every error with its line.
//!
//! Three passes, each reporting all it finds:
//! 1. syntax: `toml`'s recovering parser yields a document and every syntax error;
//! 2. schema: serde into [`RawConfig`] (`deny_unknown_fields`). Serde stops at the first error,
//!    so each error's span is mapped to the entry it lies in, that entry is removed, and
//!    deserialisation runs again until it succeeds;
//! 3. validation: [`crate::validate`] checks values and relations and names fields by path,
//!    which is looked up in the document to find the line.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::Deserialize as _;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::config::Config;
use crate::error::{ConfigError, ConfigErrorKind, ConfigErrors, FieldPath, PathSegment};
use crate::raw::RawConfig;
use crate::validate::validate;

/// Most schema errors reported. Each one costs a full deserialisation of the document, so an
/// unbounded count would make a large garbage file quadratic to reject.
const MAX_SCHEMA_ERRORS: usize = 100;

pub(crate) fn parse(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    let lines = LineIndex::new(text);
    let error = |line: Option<usize>, field: Option<FieldPath>, kind| ConfigError {
        file: file.to_owned(),
        line,
        field,
        kind,
    };

    let (document, syntax_errors) = DeTable::parse_recoverable(text);

    // 1. Syntax. After one mistake the recovering parser often reports more on the same line;
    // keep the first per line.
    let mut syntax = Vec::new();
    let mut syntax_lines = BTreeSet::new();
    for syntax_error in syntax_errors {
        let line = syntax_error.span().map(|span| lines.line(span.start));
        if line.is_some_and(|line| !syntax_lines.insert(line)) {
            continue;
        }
        let message = syntax_message(&syntax_error, text);
        syntax.push(error(line, None, ConfigErrorKind::Syntax { message }));
    }
    syntax.sort_by_key(|error| error.line.unwrap_or(usize::MAX));

    // 2. Schema.
    let (raw, schema_errors) = deserialize_all(document.clone());
    let mut later = Vec::new();
    let mut rejected = Vec::new();
    for schema_error in schema_errors {
        if let Some(path) = &schema_error.path {
            rejected.push(path.clone());
        }
        later.push(error(
            schema_error.offset.map(|offset| lines.line(offset)),
            schema_error.path,
            schema_error.kind,
        ));
    }

    // 3. Validation.
    let (config, problems) = validate(raw, &rejected);
    for (path, kind) in problems {
        let line = locate(document.get_ref(), &path).map(|offset| lines.line(offset));
        later.push(error(line, Some(path), kind));
    }

    // On a line with a syntax error the recovered value is a guess; whatever passes 2 and 3
    // say about it is noise.
    later.retain(|error| error.line.is_none_or(|line| !syntax_lines.contains(&line)));
    later.sort_by_key(|error| error.line.unwrap_or(usize::MAX));

    syntax.extend(later);
    if syntax.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors::new(syntax))
    }
}

/// The parser's message, naming the key for duplicates (`toml` says only "duplicate key").
fn syntax_message(error: &toml::de::Error, text: &str) -> String {
    let message = error.message();
    let key = error
        .span()
        .and_then(|span| text.get(span))
        .filter(|key| !key.is_empty() && !key.contains('\n'));
    match key {
        Some(key) if message == "duplicate key" => {
            if key.starts_with(['"', '\'']) {
                format!("duplicate key {key}")
            } else {
                format!("duplicate key \"{key}\"")
            }
        }
        _ => message.to_owned(),
    }
}

/// Serde's message in TOML's words: tables have keys, not fields; arrays are not sequences.
fn schema_message(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return format!("unknown key {rest}");
    }
    if message.starts_with("invalid length ") && message.ends_with("expected a table") {
        // Serde lets an array fill a struct and then complains about its length.
        return "invalid type: array, expected a table".to_owned();
    }
    message
        .replace("invalid type: sequence", "invalid type: array")
        .replace("invalid type: map", "invalid type: table")
        .replace("expected a sequence", "expected an array")
}

struct SchemaError {
    path: Option<FieldPath>,
    offset: Option<usize>,
    kind: ConfigErrorKind,
}

/// Deserialises `document`, removing each entry that fails until the rest succeeds.
fn deserialize_all(mut document: Spanned<DeTable<'_>>) -> (RawConfig, Vec<SchemaError>) {
    let mut errors = Vec::new();
    loop {
        let error = match RawConfig::deserialize(toml::de::Deserializer::from(document.clone())) {
            Ok(raw) => return (raw, errors),
            Err(error) => error,
        };
        let span = error.span();
        let path = span
            .as_ref()
            .and_then(|span| find_entry(document.get_ref(), span));
        let removed = path
            .as_ref()
            .is_some_and(|path| remove_entry(document.get_mut(), path));
        errors.push(SchemaError {
            path,
            offset: span.map(|span| span.start),
            kind: ConfigErrorKind::Schema {
                message: schema_message(error.message()),
            },
        });
        if !removed {
            // Cannot make progress; what was collected is all we can say.
            return (RawConfig::default(), errors);
        }
        if errors.len() >= MAX_SCHEMA_ERRORS {
            errors.push(SchemaError {
                path: None,
                offset: None,
                kind: ConfigErrorKind::Schema {
                    message: format!("too many errors; stopped after {MAX_SCHEMA_ERRORS}"),
                },
            });
            return (RawConfig::default(), errors);
        }
    }
}

/// The path of the entry an error span points into.
///
/// An entry whose key or value span *is* the error span wins (serde reports a wrong type at the
/// value, an unknown field at the key); otherwise the deepest entry whose span encloses it.
/// Spans overlap: an implicit table such as `upstreams` in `[upstreams.docs]` has its key's
/// span, which lies inside the header that is `docs`'s span, and does not enclose its children.
fn find_entry(root: &DeTable<'_>, span: &Range<usize>) -> Option<FieldPath> {
    let mut best: Option<((bool, usize), FieldPath)> = None;
    let mut consider = |exact: bool, path: &FieldPath| {
        let rank = (exact, path.segments().len());
        if best.as_ref().is_none_or(|(best_rank, _)| rank > *best_rank) {
            best = Some((rank, path.clone()));
        }
    };
    walk(
        root,
        &FieldPath::root(),
        &mut |path, key_span, value_span| {
            let exact = key_span.as_ref() == Some(span) || value_span == span;
            let encloses = key_span.as_ref().is_some_and(|key| encloses(key, span))
                || encloses(value_span, span);
            if exact || encloses {
                consider(exact, path);
            }
        },
    );
    best.map(|(_, path)| path)
}

/// Called with an entry's path, key span (none for array elements) and value span.
type Visit<'a> = dyn FnMut(&FieldPath, Option<Range<usize>>, &Range<usize>) + 'a;

/// Calls `visit(path, key span, value span)` for every entry and array element under `table`.
fn walk(table: &DeTable<'_>, prefix: &FieldPath, visit: &mut Visit<'_>) {
    for (key, value) in table.iter() {
        let path = prefix.key(key.get_ref().as_ref());
        visit(&path, Some(key.span()), &value.span());
        walk_value(value.get_ref(), &path, visit);
    }
}

fn walk_value(value: &DeValue<'_>, path: &FieldPath, visit: &mut Visit<'_>) {
    match value {
        DeValue::Table(table) => walk(table, path, visit),
        DeValue::Array(array) => {
            for (index, element) in array.iter().enumerate() {
                let element_path = path.index(index);
                visit(&element_path, None, &element.span());
                walk_value(element.get_ref(), &element_path, visit);
            }
        }
        _ => {}
    }
}

fn encloses(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// Removes the table entry at `path`; an array element path removes the whole array's entry
/// (removing one element would shift the indices of later errors).
fn remove_entry(root: &mut DeTable<'_>, path: &FieldPath) -> bool {
    let segments = path.segments();
    let Some(last_key) = segments
        .iter()
        .rposition(|segment| matches!(segment, PathSegment::Key(_)))
    else {
        return false;
    };
    remove_in_table(root, &segments[..=last_key])
}

fn remove_in_table(table: &mut DeTable<'_>, segments: &[PathSegment]) -> bool {
    match segments {
        [PathSegment::Key(key)] => table.remove(key.as_str()).is_some(),
        [PathSegment::Key(key), rest @ ..] => table
            .get_mut(key.as_str())
            .is_some_and(|value| remove_in_value(value.get_mut(), rest)),
        _ => false,
    }
}

fn remove_in_value(value: &mut DeValue<'_>, segments: &[PathSegment]) -> bool {
    match (value, segments) {
        (DeValue::Table(table), [PathSegment::Key(_), ..]) => remove_in_table(table, segments),
        (DeValue::Array(array), [PathSegment::Index(index), rest @ ..]) => array
            .get_mut(*index)
            .is_some_and(|element| remove_in_value(element.get_mut(), rest)),
        _ => false,
    }
}

/// The byte offset where `path` is written: the key of a table entry, the value of an array
/// element. A path that leads to nothing written (a missing key) stops at its deepest written
/// ancestor; the root has no offset.
fn locate(root: &DeTable<'_>, path: &FieldPath) -> Option<usize> {
    let mut offset = None;
    let mut table = Some(root);
    let mut array = None;
    for segment in path.segments() {
        let value = match segment {
            PathSegment::Key(key) => {
                let Some((found_key, value)) = table.and_then(|table| {
                    table
                        .iter()
                        .find(|(candidate, _)| candidate.get_ref().as_ref() == key.as_str())
                }) else {
                    break;
                };
                offset = Some(found_key.span().start);
                value
            }
            PathSegment::Index(index) => {
                let Some(value) = array.and_then(|array: &toml::de::DeArray<'_>| array.get(*index))
                else {
                    break;
                };
                offset = Some(value.span().start);
                value
            }
        };
        (table, array) = match value.get_ref() {
            DeValue::Table(inner) => (Some(inner), None),
            DeValue::Array(inner) => (None, Some(inner)),
            _ => (None, None),
        };
    }
    offset
}

/// Maps byte offsets to 1-based line numbers.
struct LineIndex {
    newlines: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let newlines = text
            .bytes()
            .enumerate()
            .filter_map(|(offset, byte)| (byte == b'\n').then_some(offset))
            .collect();
        Self { newlines }
    }

    fn line(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&newline| newline < offset) + 1
    }
}

#[cfg(test)]
mod tests;
