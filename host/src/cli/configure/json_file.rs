//! Adds or removes our server entry in a JSON (or JSON-with-comments) config file
//! by editing its text, so everything else survives byte for byte: key order,
//! indentation, spacing, escapes, number spelling, comments, the final newline.
//!
//! A small parser records where every value starts and ends; an edit is a splice
//! of the original text. Inserted text copies the file's indent unit, its line
//! ending and the separator its other members use, so a member we add and later
//! remove leaves the original bytes.

use serde::Serialize;
use serde_json::Value;

use super::EditError;

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 256;

/// Adds our entry `name` under `servers_key`, or brings its `fields` up to date.
///
/// Returns the new text, or `None` when the entry already has every field as
/// wanted (nothing to write). Keys the user added to our entry are kept; a
/// field whose value is `null` is removed (the other transport's keys).
pub fn configure(
    src: &str,
    comments: bool,
    servers_key: &[&str],
    name: &str,
    fields: &[(String, Value)],
) -> Result<Option<String>, EditError> {
    if is_blank(src) {
        return fresh_document(servers_key, name, fields).map(Some);
    }
    let mut text = src.to_owned();
    // Make sure the server table and our entry exist; adding them writes every field.
    let mut path: Vec<&str> = servers_key.to_vec();
    path.push(name);
    let doc = parse(&text, comments)?;
    let style = Style::detect(&text, &doc);
    let mut object = root_object(&doc)?;
    for (depth, key) in path.iter().enumerate() {
        let here = path_name(&path[..=depth]);
        match find_member(members(object), key) {
            None => {
                let value = nest(&path[depth + 1..], fields);
                let splice = insert_member(&text, object, key, &value, &style)?;
                return Ok(Some(splice.apply(&text)));
            }
            Some(member) => match &member.value.kind {
                Kind::Object(_) => object = &member.value,
                // Our own entry is the wrong type: ours to replace.
                _ if depth == path.len() - 1 => {
                    let value = Tree::object(fields);
                    let splice = replace_value(&text, member, &value, &style)?;
                    return Ok(Some(splice.apply(&text)));
                }
                other => {
                    return Err(EditError::Shape(format!(
                        "`{here}` is {}, not an object",
                        kind_name(other)
                    )));
                }
            },
        }
    }

    // The entry exists: set each field that differs, one splice at a time.
    for (key, want) in fields {
        let doc = parse(&text, comments)?;
        let style = Style::detect(&text, &doc);
        let entry = walk(&doc, &path)
            .ok_or_else(|| EditError::Shape(format!("`{}` vanished", path_name(&path))))?;
        if want.is_null() {
            // Remove every copy: the last duplicate would win otherwise.
            let Some(index) = members(entry).iter().rposition(|m| &m.key == key) else {
                continue;
            };
            text = remove_member(&text, entry, index).apply(&text);
            continue;
        }
        let splice = match find_member(members(entry), key) {
            Some(member) if values_equal(&to_value(&text, &member.value), want) => continue,
            Some(member) => replace_value(&text, member, &Tree::Leaf(want.clone()), &style)?,
            None => insert_member(&text, entry, key, &Tree::Leaf(want.clone()), &style)?,
        };
        text = splice.apply(&text);
    }
    Ok((text != src).then_some(text))
}

/// Removes our entry `name` from under `servers_key`.
///
/// Returns the new text, or `None` when there was no entry (nothing to write). If
/// that leaves the server table empty (`{}`), the table goes too: a client treats
/// a missing table as an empty one, and a fresh `~/.claude.json` has none, so a
/// configure then unconfigure gives back the file as it was.
pub fn unconfigure(
    src: &str,
    comments: bool,
    servers_key: &[&str],
    name: &str,
) -> Result<Option<String>, EditError> {
    if is_blank(src) {
        return Ok(None);
    }
    let mut text = src.to_owned();
    let mut removed = false;
    // Loop because a hand-edited file may repeat a key; JSON parsers keep the last,
    // so an earlier copy would come back to life.
    loop {
        let doc = parse(&text, comments)?;
        root_object(&doc)?;
        let Some(servers) = walk(&doc, servers_key) else {
            break;
        };
        let Kind::Object(list) = &servers.kind else {
            break;
        };
        let Some(index) = list.iter().rposition(|m| m.key == name) else {
            break;
        };
        text = remove_member(&text, servers, index).apply(&text);
        removed = true;
    }
    if !removed {
        return Ok(None);
    }
    // Drop server tables we emptied, innermost first; one holding a comment stays.
    for depth in (1..=servers_key.len()).rev() {
        let doc = parse(&text, comments)?;
        let Some(parent) = walk(&doc, &servers_key[..depth - 1]) else {
            break;
        };
        let Kind::Object(list) = &parent.kind else {
            break;
        };
        let key = servers_key[depth - 1];
        let Some(index) = list.iter().rposition(|m| m.key == key) else {
            break;
        };
        let table = &list[index].value;
        if &text[table.start..table.end] != "{}" {
            break;
        }
        text = remove_member(&text, parent, index).apply(&text);
    }
    Ok(Some(text))
}

// ---------------------------------------------------------------------------
// Parsing: values with their byte spans.

/// A parsed value and where it sits in the text.
#[derive(Debug)]
struct Node {
    start: usize,
    end: usize,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Object(Vec<Member>),
    Array(Vec<Node>),
    String,
    Number,
    Bool,
    Null,
}

/// One `"key": value` of an object.
#[derive(Debug)]
struct Member {
    key: String,
    key_start: usize,
    key_end: usize,
    value: Node,
    /// Where the comma after the value is, if one follows.
    comma: Option<usize>,
}

fn is_blank(src: &str) -> bool {
    src.trim_start_matches('\u{feff}').trim().is_empty()
}

fn parse(src: &str, comments: bool) -> Result<Node, EditError> {
    let mut parser = Parser {
        src,
        bytes: src.as_bytes(),
        pos: 0,
        comments,
        depth: 0,
    };
    // A byte order mark is not JSON, but editors write one; keep it as it is.
    if src.starts_with('\u{feff}') {
        parser.pos = '\u{feff}'.len_utf8();
    }
    parser.skip_blank()?;
    let node = parser.value()?;
    parser.skip_blank()?;
    if parser.pos != parser.bytes.len() {
        return Err(parser.error("unexpected text after the end of the JSON value"));
    }
    Ok(node)
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    comments: bool,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, message: impl std::fmt::Display) -> EditError {
        self.error_at(self.pos, message)
    }

    fn error_at(&self, pos: usize, message: impl std::fmt::Display) -> EditError {
        let before = &self.src[..pos.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        EditError::Parse(format!("line {line}, column {column}: {message}"))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Skips whitespace, and comments where the format allows them.
    fn skip_blank(&mut self) -> Result<(), EditError> {
        while let Some(byte) = self.peek() {
            match byte {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                b'/' if self.comments => match self.bytes.get(self.pos + 1) {
                    Some(b'/') => {
                        self.pos = self.src[self.pos..]
                            .find('\n')
                            .map_or(self.bytes.len(), |i| self.pos + i);
                    }
                    Some(b'*') => match self.src[self.pos + 2..].find("*/") {
                        Some(i) => self.pos += 2 + i + 2,
                        None => return Err(self.error("unterminated /* comment")),
                    },
                    _ => return Ok(()),
                },
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Node, EditError> {
        let start = self.pos;
        let kind = match self.peek() {
            None => return Err(self.error("unexpected end of file; expected a value")),
            Some(b'{') => return self.object(),
            Some(b'[') => return self.array(),
            Some(b'"') => {
                self.string()?;
                Kind::String
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Kind::Number
            }
            Some(b't') => {
                self.literal("true")?;
                Kind::Bool
            }
            Some(b'f') => {
                self.literal("false")?;
                Kind::Bool
            }
            Some(b'n') => {
                self.literal("null")?;
                Kind::Null
            }
            Some(_) => {
                let found = self.src[self.pos..].chars().next().unwrap_or('?');
                return Err(self.error(format!("unexpected {found:?}; expected a value")));
            }
        };
        Ok(Node {
            start,
            end: self.pos,
            kind,
        })
    }

    fn enter(&mut self) -> Result<(), EditError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn object(&mut self) -> Result<Node, EditError> {
        self.enter()?;
        let start = self.pos;
        self.pos += 1;
        self.skip_blank()?;
        let mut members = Vec::new();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                if self.peek() != Some(b'"') {
                    return Err(self.error("expected a \"quoted\" key"));
                }
                let key_start = self.pos;
                let key = self.string()?;
                let key_end = self.pos;
                self.skip_blank()?;
                if self.peek() != Some(b':') {
                    return Err(self.error("expected ':' after the key"));
                }
                self.pos += 1;
                self.skip_blank()?;
                let value = self.value()?;
                self.skip_blank()?;
                let mut member = Member {
                    key,
                    key_start,
                    key_end,
                    value,
                    comma: None,
                };
                match self.peek() {
                    Some(b',') => {
                        member.comma = Some(self.pos);
                        members.push(member);
                        self.pos += 1;
                        self.skip_blank()?;
                    }
                    Some(b'}') => {
                        members.push(member);
                        self.pos += 1;
                        break;
                    }
                    None => return Err(self.error("unexpected end of file inside an object")),
                    Some(_) => return Err(self.error("expected ',' or '}'")),
                }
            }
        }
        self.depth -= 1;
        Ok(Node {
            start,
            end: self.pos,
            kind: Kind::Object(members),
        })
    }

    fn array(&mut self) -> Result<Node, EditError> {
        self.enter()?;
        let start = self.pos;
        self.pos += 1;
        self.skip_blank()?;
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                items.push(self.value()?);
                self.skip_blank()?;
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_blank()?;
                    }
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    None => return Err(self.error("unexpected end of file inside an array")),
                    Some(_) => return Err(self.error("expected ',' or ']'")),
                }
            }
        }
        self.depth -= 1;
        Ok(Node {
            start,
            end: self.pos,
            kind: Kind::Array(items),
        })
    }

    /// Reads a string literal and returns it decoded.
    fn string(&mut self) -> Result<String, EditError> {
        let start = self.pos;
        let mut i = start + 1;
        loop {
            match self.bytes.get(i) {
                None => return Err(self.error_at(start, "unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => match self.bytes.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u')
                        if self
                            .bytes
                            .get(i + 2..i + 6)
                            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) =>
                    {
                        i += 6;
                    }
                    _ => return Err(self.error_at(i, "bad escape in a string")),
                },
                Some(&b) if b < 0x20 => {
                    return Err(self.error_at(i, "control character inside a string"));
                }
                Some(_) => i += 1,
            }
        }
        self.pos = i + 1;
        Ok(decode_string(&self.src[start + 1..i]))
    }

    /// Checks JSON's number grammar. Any size is accepted, as JavaScript does.
    fn number(&mut self) -> Result<(), EditError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while p.peek().is_some_and(|b| b.is_ascii_digit()) {
                p.pos += 1;
            }
            p.pos > from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let ok = match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                true
            }
            _ => digits(self),
        };
        let ok =
            ok && (self.peek() != Some(b'.') || {
                self.pos += 1;
                digits(self)
            }) && (!matches!(self.peek(), Some(b'e' | b'E')) || {
                self.pos += 1;
                if matches!(self.peek(), Some(b'+' | b'-')) {
                    self.pos += 1;
                }
                digits(self)
            });
        if ok {
            Ok(())
        } else {
            Err(self.error_at(start, "bad number"))
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), EditError> {
        if self.src[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("unexpected word; expected a value"))
        }
    }
}

/// Decodes the inside of a string literal the parser has checked. A lone
/// surrogate (`"\\ud83d"`, which JavaScript writes for half an emoji) becomes
/// U+FFFD instead of failing the whole file.
fn decode_string(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    let hex4 = |chars: &mut std::str::Chars| {
        let hex: String = chars.by_ref().take(4).collect();
        u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD)
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next() {
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => {
                let unit = hex4(&mut chars);
                if (0xD800..0xDC00).contains(&unit) && chars.as_str().starts_with("\\u") {
                    let mut ahead = chars.clone();
                    ahead.next();
                    ahead.next();
                    let low = hex4(&mut ahead);
                    if (0xDC00..0xE000).contains(&low) {
                        chars = ahead;
                        let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        continue;
                    }
                }
                char::from_u32(unit).unwrap_or('\u{fffd}')
            }
            Some(other) => other,
            None => break,
        };
        out.push(decoded);
    }
    out
}

fn members(node: &Node) -> &[Member] {
    match &node.kind {
        Kind::Object(members) => members,
        _ => &[],
    }
}

/// The last member called `key`: JSON parsers let the last duplicate win.
fn find_member<'n>(members: &'n [Member], key: &str) -> Option<&'n Member> {
    members.iter().rev().find(|m| m.key == key)
}

fn walk<'n>(root: &'n Node, path: &[&str]) -> Option<&'n Node> {
    let mut node = root;
    for key in path {
        node = &find_member(members(node), key)?.value;
    }
    Some(node)
}

fn root_object(doc: &Node) -> Result<&Node, EditError> {
    match &doc.kind {
        Kind::Object(_) => Ok(doc),
        other => Err(EditError::Shape(format!(
            "the file holds {}, not a JSON object",
            kind_name(other)
        ))),
    }
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Object(_) => "an object",
        Kind::Array(_) => "an array",
        Kind::String => "a string",
        Kind::Number => "a number",
        Kind::Bool => "a boolean",
        Kind::Null => "null",
    }
}

fn path_name(path: &[&str]) -> String {
    path.join(".")
}

/// The value of a parsed node (comments dropped).
fn to_value(src: &str, node: &Node) -> Value {
    match &node.kind {
        Kind::Object(members) => Value::Object(
            members
                .iter()
                .map(|m| (m.key.clone(), to_value(src, &m.value)))
                .collect(),
        ),
        Kind::Array(items) => Value::Array(items.iter().map(|n| to_value(src, n)).collect()),
        Kind::String => Value::String(decode_string(&src[node.start + 1..node.end - 1])),
        // Checked by the parser; a number too big for f64 has no value to compare.
        _ => serde_json::from_str(&src[node.start..node.end]).unwrap_or(Value::Null),
    }
}

/// Equality where `600` and `600.0` are the same number.
pub(super) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// Writing: text in the file's own style.

/// How the file is laid out, so what we add looks like the rest.
#[derive(Debug)]
struct Style {
    newline: &'static str,
    /// One level of indentation.
    unit: String,
    /// Between a key and its value.
    colon: String,
    /// One value per line (pretty), or everything on one line (minified).
    multiline: bool,
}

impl Style {
    const DEFAULT_UNIT: &'static str = "  ";

    fn detect(src: &str, root: &Node) -> Style {
        let newline = if src.contains("\r\n") { "\r\n" } else { "\n" };
        let first = members(root).first();
        // An empty top-level object gives no hint; pretty is what every client writes.
        let multiline = first.is_none() || src[root.start..root.end].contains('\n');
        let unit = first
            .and_then(|m| {
                let gap = &src[root.start + 1..m.key_start];
                let indent = &gap[gap.rfind('\n')? + 1..];
                (!indent.is_empty() && indent.bytes().all(|b| b == b' ' || b == b'\t'))
                    .then(|| indent.to_owned())
            })
            .unwrap_or_else(|| Self::DEFAULT_UNIT.to_owned());
        let colon = first
            .map(|m| &src[m.key_end..m.value.start])
            .filter(|gap| gap.trim() == ":" && !gap.contains('\n'))
            .map(str::to_owned)
            .unwrap_or_else(|| if multiline { ": " } else { ":" }.to_owned());
        Style {
            newline,
            unit,
            colon,
            multiline,
        }
    }
}

/// A value to write, with object keys in the order given.
///
/// serde_json's map sorts keys (the workspace does not enable `preserve_order`),
/// so objects we create are rendered from this instead.
enum Tree {
    Leaf(Value),
    Object(Vec<(String, Tree)>),
}

impl Tree {
    /// An object of `fields`; a `null` field means "no such key" and is left out.
    fn object(fields: &[(String, Value)]) -> Tree {
        Tree::Object(
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), Tree::Leaf(v.clone())))
                .collect(),
        )
    }
}

/// `{ path[0]: { path[1]: … { fields } } }`, or just `{ fields }` for an empty path.
fn nest(path: &[&str], fields: &[(String, Value)]) -> Tree {
    path.iter().rev().fold(Tree::object(fields), |inner, key| {
        Tree::Object(vec![((*key).to_owned(), inner)])
    })
}

fn fresh_document(
    servers_key: &[&str],
    name: &str,
    fields: &[(String, Value)],
) -> Result<String, EditError> {
    let mut path = servers_key.to_vec();
    path.push(name);
    let style = Style {
        newline: "\n",
        unit: Style::DEFAULT_UNIT.to_owned(),
        colon: ": ".to_owned(),
        multiline: true,
    };
    let body = render(&nest(&path, fields), &style, "")?;
    Ok(format!("{body}\n"))
}

fn render_key(key: &str) -> Result<String, EditError> {
    serde_json::to_string(key).map_err(|e| EditError::Shape(e.to_string()))
}

/// The text of `tree` for a place indented by `base`.
fn render(tree: &Tree, style: &Style, base: &str) -> Result<String, EditError> {
    match tree {
        Tree::Leaf(value) => {
            if !style.multiline {
                return serde_json::to_string(value).map_err(|e| EditError::Shape(e.to_string()));
            }
            let mut out = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(style.unit.as_bytes());
            let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
            value
                .serialize(&mut serializer)
                .map_err(|e| EditError::Shape(e.to_string()))?;
            let text = String::from_utf8(out).map_err(|e| EditError::Shape(e.to_string()))?;
            // Strings escape their newlines, so every raw one is the formatter's.
            Ok(text.replace('\n', &format!("{}{base}", style.newline)))
        }
        Tree::Object(entries) if entries.is_empty() => Ok("{}".to_owned()),
        Tree::Object(entries) => {
            let inner = format!("{base}{}", style.unit);
            let mut parts = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                let value = render(value, style, &inner)?;
                parts.push(format!("{}{}{value}", render_key(key)?, style.colon));
            }
            if style.multiline {
                let nl = style.newline;
                let joined = parts.join(&format!(",{nl}{inner}"));
                Ok(format!("{{{nl}{inner}{joined}{nl}{base}}}"))
            } else {
                Ok(format!("{{{}}}", parts.join(",")))
            }
        }
    }
}

/// Replace `start..end` of the text with `text`.
struct Splice {
    start: usize,
    end: usize,
    text: String,
}

impl Splice {
    fn apply(&self, src: &str) -> String {
        let mut out = String::with_capacity(src.len() + self.text.len());
        out.push_str(&src[..self.start]);
        out.push_str(&self.text);
        out.push_str(&src[self.end..]);
        out
    }
}

/// The spaces and tabs that start the line holding `pos`.
fn line_indent(src: &str, pos: usize) -> &str {
    let line_start = src[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line = &src[line_start..];
    let width = line
        .bytes()
        .take_while(|b| *b == b' ' || *b == b'\t')
        .count();
    &line[..width]
}

/// Adds `"key": value` as the last member of `object`.
fn insert_member(
    src: &str,
    object: &Node,
    key: &str,
    value: &Tree,
    style: &Style,
) -> Result<Splice, EditError> {
    let list = members(object);
    let Some(last) = list.last() else {
        // An empty object: open it up the way a pretty printer would, keeping any
        // comment that sat inside.
        let inside = &src[object.start + 1..object.end - 1];
        let kept = inside.trim_end();
        let text = if style.multiline {
            let base = line_indent(src, object.start);
            let inner = format!("{base}{}", style.unit);
            let nl = style.newline;
            let value = render(value, style, &inner)?;
            format!(
                "{kept}{nl}{inner}{}{}{value}{nl}{base}",
                render_key(key)?,
                style.colon
            )
        } else {
            let value = render(value, style, "")?;
            format!("{kept}{}{}{value}", render_key(key)?, style.colon)
        };
        return Ok(Splice {
            start: object.start + 1,
            end: object.end - 1,
            text,
        });
    };
    // Copy what separates the last member from the one before it (or from `{`).
    let gap_start = list
        .len()
        .checked_sub(2)
        .and_then(|i| list[i].comma)
        .map_or(object.start + 1, |comma| comma + 1);
    let gap = &src[gap_start..last.key_start];
    let (separator, base, pretty) = match gap.rfind('\n') {
        Some(i) => {
            let base = line_indent(src, last.key_start);
            let line_break = if gap[..i].ends_with('\r') {
                "\r\n"
            } else {
                "\n"
            };
            (format!("{line_break}{base}"), base.to_owned(), true)
        }
        None if gap.trim().is_empty() => (gap.to_owned(), String::new(), false),
        None => (" ".to_owned(), String::new(), false),
    };
    let colon = {
        let gap = &src[last.key_end..last.value.start];
        if gap.trim() == ":" && !gap.contains('\n') {
            gap.to_owned()
        } else {
            style.colon.clone()
        }
    };
    let local = Style {
        newline: style.newline,
        unit: style.unit.clone(),
        colon: colon.clone(),
        multiline: pretty,
    };
    let value = render(value, &local, &base)?;
    Ok(Splice {
        start: last.value.end,
        end: last.value.end,
        text: format!(",{separator}{}{colon}{value}", render_key(key)?),
    })
}

/// Replaces the value of `member`, indented for the line its key is on.
fn replace_value(
    src: &str,
    member: &Member,
    value: &Tree,
    style: &Style,
) -> Result<Splice, EditError> {
    let base = line_indent(src, member.key_start);
    Ok(Splice {
        start: member.value.start,
        end: member.value.end,
        text: render(value, style, base)?,
    })
}

/// Removes member `index` of `object` with exactly the separator that
/// [`insert_member`] would have added for it.
fn remove_member(src: &str, object: &Node, index: usize) -> Splice {
    let list = members(object);
    let member = &list[index];
    if list.len() == 1 {
        // The only member: the object becomes `{}`, unless a comment is left inside.
        let before = &src[object.start + 1..member.key_start];
        let after = &src[member.value.end..object.end - 1];
        if before.trim().is_empty() && after.trim().is_empty() {
            return Splice {
                start: object.start + 1,
                end: object.end - 1,
                text: String::new(),
            };
        }
        return Splice {
            start: member.key_start,
            end: member.value.end,
            text: String::new(),
        };
    }
    if index > 0 {
        // From the comma after the previous value to the end of ours.
        let start = list[index - 1].comma.unwrap_or(list[index - 1].value.end);
        return Splice {
            start,
            end: member.value.end,
            text: String::new(),
        };
    }
    // The first of several: up to where the next key starts.
    Splice {
        start: member.key_start,
        end: list[1].key_start,
        text: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SERVERS: &[&str] = &["mcpServers"];

    fn fields() -> Vec<(String, Value)> {
        vec![
            ("type".into(), json!("stdio")),
            ("command".into(), json!("/opt/poe/bin/poe-code")),
            ("args".into(), json!(["mcp", "run"])),
        ]
    }

    fn configure_json(src: &str) -> Option<String> {
        configure(src, false, SERVERS, "poe-code", &fields()).unwrap()
    }

    fn unconfigure_json(src: &str) -> Option<String> {
        unconfigure(src, false, SERVERS, "poe-code").unwrap()
    }

    /// Through our own parser: serde_json refuses lone surrogates and 1e400.
    fn value_of(text: &str) -> Value {
        to_value(text, &parse(text, true).unwrap())
    }

    /// Configure, configure again, unconfigure, unconfigure again.
    fn round_trip(original: &str) -> String {
        let configured = configure_json(original).expect("first configure writes");
        let parsed = value_of(&configured);
        assert_eq!(
            parsed["mcpServers"]["poe-code"],
            json!({"type": "stdio", "command": "/opt/poe/bin/poe-code", "args": ["mcp", "run"]})
        );
        assert_eq!(
            configure_json(&configured),
            None,
            "second configure is a no-op"
        );
        let back = unconfigure_json(&configured).expect("unconfigure writes");
        assert_eq!(back, original, "unconfigure restores the original bytes");
        assert_eq!(unconfigure_json(&back), None);
        configured
    }

    const CLAUDE: &str = r#"{
  "numStartups": 42,
  "installMethod": "native",
  "autoUpdates": false,
  "tipsHistory": {
    "new-user-warmup": 7
  },
  "projects": {
    "/home/ana/src/app": {
      "allowedTools": [],
      "mcpServers": {},
      "hasTrustDialogAccepted": true
    }
  },
  "mcpServers": {
    "github": {
      "type": "stdio",
      "command": "npx",
      "args": [
        "-y",
        "@modelcontextprotocol/server-github"
      ],
      "env": {
        "GITHUB_TOKEN": "ghp_\u00e9x"
      }
    }
  },
  "userID": "abc",
  "cost": 1.50e2
}"#;

    #[test]
    fn claude_config_round_trips_byte_for_byte() {
        let configured = round_trip(CLAUDE);
        // Added after the existing server, in the file's own style.
        assert!(configured.contains(
            r#"      }
    },
    "poe-code": {
      "type": "stdio",
      "command": "/opt/poe/bin/poe-code",
      "args": [
        "mcp",
        "run"
      ]
    }
  },
  "userID": "abc","#
        ));
        // The project-level table is not ours.
        assert_eq!(
            value_of(&configured)["projects"]["/home/ana/src/app"]["mcpServers"],
            json!({})
        );
        assert!(configured.contains(r#""ghp_\u00e9x""#));
        assert!(configured.contains("1.50e2"));
    }

    #[test]
    fn missing_server_table_is_added_and_removed_again() {
        let original =
            "{\n  \"firstStartTime\": \"2026-01-01T00:00:00.000Z\",\n  \"userID\": \"u\"\n}";
        let configured = round_trip(original);
        assert!(configured.ends_with(
            "\"userID\": \"u\",\n  \"mcpServers\": {\n    \"poe-code\": {\n      \"type\": \"stdio\",\n      \"command\": \"/opt/poe/bin/poe-code\",\n      \"args\": [\n        \"mcp\",\n        \"run\"\n      ]\n    }\n  }\n}"
        ));
    }

    #[test]
    fn an_empty_server_table_is_opened_then_dropped() {
        let original = "{\n  \"mcpServers\": {},\n  \"x\": 1\n}\n";
        let configured = configure_json(original).unwrap();
        assert_eq!(
            configured,
            "{\n  \"mcpServers\": {\n    \"poe-code\": {\n      \"type\": \"stdio\",\n      \"command\": \"/opt/poe/bin/poe-code\",\n      \"args\": [\n        \"mcp\",\n        \"run\"\n      ]\n    }\n  },\n  \"x\": 1\n}\n"
        );
        // The one case that does not give back the bytes: an empty table cannot be
        // told from one we created, and a missing table means the same to clients.
        assert_eq!(unconfigure_json(&configured).unwrap(), "{\n  \"x\": 1\n}\n");
        let minified = configure_json("{\"mcpServers\":{}}").unwrap();
        assert_eq!(
            minified,
            r#"{"mcpServers":{"poe-code":{"type":"stdio","command":"/opt/poe/bin/poe-code","args":["mcp","run"]}}}"#
        );
        assert_eq!(unconfigure_json(&minified).unwrap(), "{}");
    }

    #[test]
    fn indentation_and_line_endings_follow_the_file() {
        let tabs = "{\n\t\"mcpServers\": {\n\t\t\"a\": {\"command\": \"x\"}\n\t}\n}\n";
        let configured = round_trip(tabs);
        assert!(configured.contains("\n\t\t\"poe-code\": {\n\t\t\t\"type\": \"stdio\","));
        let four = "{\r\n    \"a\": 1\r\n}\r\n";
        let configured = round_trip(four);
        assert!(configured.contains(",\r\n    \"mcpServers\": {\r\n        \"poe-code\": {\r\n"));
        assert!(!configured.replace("\r\n", "").contains('\n'));
    }

    #[test]
    fn minified_files_stay_on_one_line() {
        let configured = round_trip(r#"{"a":1,"mcpServers":{"b":{"command":"y"}}}"#);
        assert!(configured.contains(r#""b":{"command":"y"},"poe-code":{"type":"stdio""#));
        assert!(!configured.contains('\n'));
    }

    #[test]
    fn our_entry_first_in_the_table_is_removed_cleanly() {
        let original = "{\n  \"mcpServers\": {\n    \"poe-code\": {\"command\": \"old\"},\n    \"b\": {}\n  }\n}";
        let back = unconfigure_json(original).unwrap();
        assert_eq!(back, "{\n  \"mcpServers\": {\n    \"b\": {}\n  }\n}");
    }

    #[test]
    fn a_changed_entry_is_updated_in_place_keeping_user_keys() {
        let original = r#"{
  "mcpServers": {
    "poe-code": {
      "command": "/old/poe-code",
      "args": ["mcp", "run"],
      "env": {"POE_API_KEY": "k"}
    },
    "z": {"command": "z"}
  }
}"#;
        let configured = configure_json(original).unwrap();
        assert_eq!(
            configured,
            r#"{
  "mcpServers": {
    "poe-code": {
      "command": "/opt/poe/bin/poe-code",
      "args": ["mcp", "run"],
      "env": {"POE_API_KEY": "k"},
      "type": "stdio"
    },
    "z": {"command": "z"}
  }
}"#
        );
        assert_eq!(configure_json(&configured), None);
    }

    #[test]
    fn a_wrongly_typed_entry_of_ours_is_replaced() {
        let configured = configure_json(r#"{"mcpServers": {"poe-code": null}}"#).unwrap();
        assert_eq!(
            value_of(&configured)["mcpServers"]["poe-code"]["command"],
            json!("/opt/poe/bin/poe-code")
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        let f = vec![("timeout".to_string(), json!(600000))];
        let src = r#"{"mcpServers": {"poe-code": {"timeout": 600000.0}}}"#;
        assert_eq!(
            configure(src, false, SERVERS, "poe-code", &f).unwrap(),
            None
        );
    }

    #[test]
    fn blank_or_missing_files_get_a_fresh_document() {
        let fresh = configure_json("").unwrap();
        assert_eq!(
            fresh,
            "{\n  \"mcpServers\": {\n    \"poe-code\": {\n      \"type\": \"stdio\",\n      \"command\": \"/opt/poe/bin/poe-code\",\n      \"args\": [\n        \"mcp\",\n        \"run\"\n      ]\n    }\n  }\n}\n"
        );
        assert_eq!(configure_json(&fresh), None);
        assert_eq!(unconfigure_json(&fresh).unwrap(), "{}\n");
        assert_eq!(configure_json("  \n").unwrap(), fresh);
        assert_eq!(unconfigure_json(""), None);
        // `{}` opens up pretty, as the client itself would write it.
        assert_eq!(configure_json("{}\n").unwrap(), fresh);
    }

    #[test]
    fn comments_survive_in_jsonc() {
        let original = r#"// Gemini settings
{
  /* theme */ "theme": "GitHub", // trailing
  "mcpServers": {
    // my servers
    "a": {"command": "a"} // keep me
  }
}
"#;
        let f = fields();
        let configured = configure(original, true, SERVERS, "poe-code", &f)
            .unwrap()
            .unwrap();
        assert!(configured.contains("// keep me"));
        assert_eq!(
            configure(&configured, true, SERVERS, "poe-code", &f).unwrap(),
            None
        );
        let back = unconfigure(&configured, true, SERVERS, "poe-code")
            .unwrap()
            .unwrap();
        assert_eq!(back, original);
        // Strict JSON refuses the same file.
        let err = configure(original, false, SERVERS, "poe-code", &f).unwrap_err();
        assert!(err.to_string().contains("line 1, column 1"), "{err}");
    }

    #[test]
    fn a_comment_left_in_an_emptied_table_keeps_the_table() {
        let src = "{\n  \"mcpServers\": {\n    // mine\n    \"poe-code\": {}\n  }\n}";
        let back = unconfigure(src, true, SERVERS, "poe-code")
            .unwrap()
            .unwrap();
        assert_eq!(back, "{\n  \"mcpServers\": {\n    // mine\n    \n  }\n}");
    }

    #[test]
    fn duplicate_entries_are_all_removed() {
        let src = r#"{"mcpServers": {"poe-code": {}, "x": 1, "poe-code": {}}}"#;
        assert_eq!(
            unconfigure_json(src).unwrap(),
            r#"{"mcpServers": {"x": 1}}"#
        );
    }

    #[test]
    fn anything_javascript_writes_is_accepted() {
        // Half an emoji, a huge number, escapes of every kind: valid JSON all.
        let src = r#"{"history": ["cut \ud83d", "\ud83d\ude00 \u00e9 \/ \b\f\n\r\t"], "n": 1e400, "z": -0.5E-3}"#;
        let configured = round_trip(src);
        assert!(configured.contains(r#""cut \ud83d""#));
        assert_eq!(decode_string(r"\ud83d\ude00\u00e9\/x"), "\u{1F600}\u{e9}/x");
        assert_eq!(decode_string(r"a\ud83d"), "a\u{fffd}");
        assert_eq!(decode_string(r"\ude00\ud83d\u0041"), "\u{fffd}\u{fffd}A");
    }

    #[test]
    fn the_byte_order_mark_is_kept() {
        round_trip("\u{feff}{\n  \"a\": true\n}");
    }

    #[test]
    fn bad_files_are_refused_with_a_position() {
        for (src, needle) in [
            (
                "{\n  \"a\": 1,\n}",
                "line 3, column 1: expected a \"quoted\" key",
            ),
            ("{\"a\": tru}", "line 1, column 7"),
            ("{\"a\": 01}", "line 1, column 8: expected ','"),
            ("{\"a\": \"x}", "unterminated string"),
            ("{} {}", "unexpected text after"),
            ("[1, 2]", "holds an array, not a JSON object"),
            (
                "{\"mcpServers\": []}",
                "`mcpServers` is an array, not an object",
            ),
            ("{\"a\": \"\\q\"}", "line 1, column 8: bad escape"),
            ("{\"a\": \"\\u12\"}", "bad escape"),
            ("{\"a\": 1.}", "bad number"),
            ("{\"a\": -}", "bad number"),
            ("{\"a\": 1e}", "bad number"),
        ] {
            let err = configure(src, false, SERVERS, "poe-code", &fields())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{src:?}: {err}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1);
        let err = configure(&deep, false, SERVERS, "poe-code", &fields()).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }

    #[test]
    fn nested_server_keys_are_created_and_pruned() {
        let path: &[&str] = &["mcp", "servers"];
        let original = "{\n  \"a\": 1\n}";
        let configured = configure(original, false, path, "poe-code", &fields())
            .unwrap()
            .unwrap();
        assert_eq!(
            value_of(&configured)["mcp"]["servers"]["poe-code"]["type"],
            json!("stdio")
        );
        let back = unconfigure(&configured, false, path, "poe-code")
            .unwrap()
            .unwrap();
        assert_eq!(back, original);
    }
}
