//! Adds or removes our server table in a TOML config file (Codex's
//! `config.toml`) with toml_edit, which keeps every comment, blank line, key
//! order and quoting style of the parts we do not touch.

use serde_json::Value;
use toml_edit::{DocumentMut, InlineTable, Item, Table, TableLike};

use super::EditError;
use super::json_file::values_equal;

/// Adds `[servers_key.name]` with `fields`, or brings its fields up to date.
///
/// Returns the new text, or `None` when every field already has the wanted value.
/// Keys the user added to our table (say `env`) are kept; a field whose value
/// is `null` is removed.
pub fn configure(
    src: &str,
    servers_key: &[&str],
    name: &str,
    fields: &[(String, Value)],
) -> Result<Option<String>, EditError> {
    let mut doc = parse(src)?;
    let mut changed = false;
    let mut table: &mut dyn TableLike = doc.as_table_mut();
    for (depth, key) in servers_key.iter().enumerate() {
        if !table.contains_key(key) {
            // Implicit: only `[mcp_servers.poe-code]` is written, not `[mcp_servers]`,
            // and removing our table later leaves nothing behind.
            let mut servers = Table::new();
            servers.set_implicit(true);
            table.insert(key, Item::Table(servers));
            changed = true;
        }
        let item = table
            .get_mut(key)
            .ok_or_else(|| EditError::Shape(format!("`{key}` vanished")))?;
        let kind = item.type_name();
        table = item.as_table_like_mut().ok_or_else(|| {
            EditError::Shape(format!(
                "`{}` is {}, not a table",
                servers_key[..=depth].join("."),
                article(kind)
            ))
        })?;
    }

    // Our own entry: create it, or replace it if it is not a table at all.
    let is_table = table
        .get(name)
        .is_some_and(|item| item.as_table_like().is_some());
    if !is_table {
        let mut entry = Table::new();
        for (key, value) in fields.iter().filter(|(_, v)| !v.is_null()) {
            entry.insert(key, Item::Value(to_toml(value)?));
        }
        table.insert(name, Item::Table(entry));
        return render(doc).map(Some);
    }
    let entry = table
        .get_mut(name)
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| EditError::Shape(format!("`{name}` vanished")))?;
    for (key, want) in fields {
        if want.is_null() {
            changed |= entry.remove(key).is_some();
            continue;
        }
        match entry.get_mut(key) {
            Some(item) => {
                if let Some(have) = item.as_value() {
                    if to_json(have).is_some_and(|have| values_equal(&have, want)) {
                        continue;
                    }
                    // Keep the comment that may trail the old value.
                    let mut value = to_toml(want)?;
                    *value.decor_mut() = have.decor().clone();
                    *item = Item::Value(value);
                } else {
                    *item = Item::Value(to_toml(want)?);
                }
            }
            None => {
                entry.insert(key, Item::Value(to_toml(want)?));
            }
        }
        changed = true;
    }
    if changed {
        render(doc).map(Some)
    } else {
        Ok(None)
    }
}

/// Removes `[servers_key.name]`; `None` when it was not there.
///
/// A server table left empty goes too when the file never spelled it out (no
/// `[mcp_servers]` header of its own), so nothing of ours remains.
pub fn unconfigure(
    src: &str,
    servers_key: &[&str],
    name: &str,
) -> Result<Option<String>, EditError> {
    let mut doc = parse(src)?;
    {
        let mut table: &mut dyn TableLike = doc.as_table_mut();
        for key in servers_key {
            let Some(next) = table.get_mut(key).and_then(Item::as_table_like_mut) else {
                return Ok(None);
            };
            table = next;
        }
        if table.remove(name).is_none() {
            return Ok(None);
        }
    }
    for depth in (1..=servers_key.len()).rev() {
        let (parent_path, key) = (&servers_key[..depth - 1], servers_key[depth - 1]);
        let Some(parent) = walk_mut(doc.as_table_mut(), parent_path) else {
            break;
        };
        let removable = parent.get(key).is_some_and(|item| {
            item.as_table()
                .is_some_and(|t| t.is_empty() && (t.is_implicit() || t.is_dotted()))
        });
        if !removable {
            break;
        }
        parent.remove(key);
    }
    render(doc).map(Some)
}

fn parse(src: &str) -> Result<DocumentMut, EditError> {
    src.parse::<DocumentMut>()
        .map_err(|e| EditError::Parse(e.to_string().trim_end().to_owned()))
}

fn render(doc: DocumentMut) -> Result<String, EditError> {
    Ok(doc.to_string())
}

fn walk_mut<'t>(root: &'t mut dyn TableLike, path: &[&str]) -> Option<&'t mut dyn TableLike> {
    let mut table = root;
    for key in path {
        table = table.get_mut(key)?.as_table_like_mut()?;
    }
    Some(table)
}

fn article(type_name: &str) -> String {
    match type_name.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}

/// A TOML value for one of our fields.
fn to_toml(value: &Value) -> Result<toml_edit::Value, EditError> {
    Ok(match value {
        Value::String(s) => s.as_str().into(),
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n
                .as_f64()
                .ok_or_else(|| EditError::Shape(format!("{n} does not fit in TOML")))?
                .into(),
        },
        Value::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                array.push(to_toml(item)?);
            }
            array.into()
        }
        Value::Object(map) => {
            let mut table = InlineTable::new();
            for (key, item) in map {
                table.insert(key, to_toml(item)?);
            }
            table.into()
        }
        Value::Null => return Err(EditError::Shape("TOML has no null".to_owned())),
    })
}

/// The JSON value of a TOML value, to compare with what we want; dates have none.
fn to_json(value: &toml_edit::Value) -> Option<Value> {
    Some(match value {
        toml_edit::Value::String(s) => Value::from(s.value().as_str()),
        toml_edit::Value::Integer(i) => Value::from(*i.value()),
        toml_edit::Value::Float(f) => Value::from(*f.value()),
        toml_edit::Value::Boolean(b) => Value::from(*b.value()),
        toml_edit::Value::Datetime(_) => return None,
        toml_edit::Value::Array(items) => {
            Value::Array(items.iter().map(to_json).collect::<Option<_>>()?)
        }
        toml_edit::Value::InlineTable(table) => Value::Object(
            table
                .iter()
                .map(|(k, v)| Some((k.to_owned(), to_json(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SERVERS: &[&str] = &["mcp_servers"];

    fn fields(timeout: u32) -> Vec<(String, Value)> {
        vec![
            ("command".into(), json!("/opt/poe/bin/poe-code")),
            ("args".into(), json!(["mcp", "run"])),
            ("tool_timeout_sec".into(), json!(timeout)),
        ]
    }

    fn configure_toml(src: &str) -> Option<String> {
        configure(src, SERVERS, "poe-code", &fields(600)).unwrap()
    }

    fn unconfigure_toml(src: &str) -> Option<String> {
        unconfigure(src, SERVERS, "poe-code").unwrap()
    }

    fn round_trip(original: &str) -> String {
        let configured = configure_toml(original).expect("first configure writes");
        let parsed: toml::Table = toml::from_str(&configured).unwrap();
        let ours = &parsed["mcp_servers"]["poe-code"];
        assert_eq!(ours["command"].as_str(), Some("/opt/poe/bin/poe-code"));
        assert_eq!(ours["tool_timeout_sec"].as_integer(), Some(600));
        assert_eq!(
            configure_toml(&configured),
            None,
            "second configure is a no-op"
        );
        let back = unconfigure_toml(&configured).expect("unconfigure writes");
        assert_eq!(back, original, "unconfigure restores the original bytes");
        assert_eq!(unconfigure_toml(&back), None);
        configured
    }

    const CODEX: &str = r#"# Codex settings
model = "gpt-5-codex"   # default model
approval_policy = "on-request"

[profiles.fast]
model = "gpt-5-mini"
model_reasoning_effort = 'low'

# Servers
[mcp_servers.docs]
command = "npx"
args = ["-y", "docs-mcp"] # pinned
startup_timeout_sec = 20

[mcp_servers.docs.env]
DOCS_TOKEN = "t"

[mcp_servers.shell]
command = "/usr/local/bin/shell-mcp"

[tui]
notifications = true
"#;

    #[test]
    fn codex_config_round_trips_byte_for_byte() {
        let configured = round_trip(CODEX);
        assert!(
            configured.contains(
                "[mcp_servers.shell]\ncommand = \"/usr/local/bin/shell-mcp\"\n\n[mcp_servers.poe-code]\ncommand = \"/opt/poe/bin/poe-code\"\nargs = [\"mcp\", \"run\"]\ntool_timeout_sec = 600\n"
            ),
            "{configured}"
        );
        assert!(configured.contains("args = [\"-y\", \"docs-mcp\"] # pinned"));
    }

    #[test]
    fn files_without_servers_round_trip() {
        let configured = round_trip("model = \"o3\"\n\n[tui]\nnotifications = false\n");
        assert!(configured.ends_with("[mcp_servers.poe-code]\ncommand = \"/opt/poe/bin/poe-code\"\nargs = [\"mcp\", \"run\"]\ntool_timeout_sec = 600\n"), "{configured}");
        assert!(!configured.contains("[mcp_servers]\n"));
        round_trip("");
        round_trip("# only a comment\n");
    }

    #[test]
    fn an_explicit_server_table_stays() {
        round_trip("[mcp_servers]\n\n[other]\nx = 1\n");
    }

    #[test]
    fn a_changed_entry_is_updated_in_place() {
        let original = r#"[mcp_servers.poe-code]
command = "/old/poe-code" # moved since
args = ["mcp", "run"]
env = { POE_API_KEY = "k" }
tool_timeout_sec = 600.0

[after]
x = 1
"#;
        let configured = configure(original, SERVERS, "poe-code", &fields(900))
            .unwrap()
            .unwrap();
        assert_eq!(
            configured,
            r#"[mcp_servers.poe-code]
command = "/opt/poe/bin/poe-code" # moved since
args = ["mcp", "run"]
env = { POE_API_KEY = "k" }
tool_timeout_sec = 900

[after]
x = 1
"#
        );
        // 600.0 and 600 are the same timeout.
        assert_eq!(
            configure(original, SERVERS, "poe-code", &[fields(600).remove(2)]).unwrap(),
            None
        );
    }

    #[test]
    fn inline_and_dotted_server_tables_are_edited_where_they_are() {
        let inline = "mcp_servers = { a = { command = \"a\" } }\n";
        let configured = configure_toml(inline).unwrap();
        let parsed: toml::Table = toml::from_str(&configured).unwrap();
        assert_eq!(
            parsed["mcp_servers"]["poe-code"]["args"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        assert_eq!(unconfigure_toml(&configured).unwrap(), inline);

        let dotted = "mcp_servers.poe-code.command = \"old\"\nother = 1\n";
        let configured = configure_toml(dotted).unwrap();
        let parsed: toml::Table = toml::from_str(&configured).unwrap();
        assert_eq!(
            parsed["mcp_servers"]["poe-code"]["command"].as_str(),
            Some("/opt/poe/bin/poe-code")
        );
        let back = unconfigure_toml(&configured).unwrap();
        let parsed: toml::Table = toml::from_str(&back).unwrap();
        assert!(!parsed.contains_key("mcp_servers"), "{back}");
        assert_eq!(parsed["other"].as_integer(), Some(1));
    }

    #[test]
    fn bad_files_are_refused() {
        let err = configure_toml_err("[mcp_servers\ncommand = 1\n");
        assert!(err.contains("line 1"), "{err}");
        let err = configure_toml_err("mcp_servers = 3\n");
        assert!(
            err.contains("`mcp_servers` is an integer, not a table"),
            "{err}"
        );
        let err = configure_toml_err("a = 1\na = 2\n");
        assert!(err.contains("duplicate key"), "{err}");
    }

    fn configure_toml_err(src: &str) -> String {
        configure(src, SERVERS, "poe-code", &fields(600))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_non_table_entry_of_ours_is_replaced() {
        let configured = configure_toml("mcp_servers.poe-code = \"x\"\n").unwrap();
        let parsed: toml::Table = toml::from_str(&configured).unwrap();
        assert_eq!(
            parsed["mcp_servers"]["poe-code"]["tool_timeout_sec"].as_integer(),
            Some(600)
        );
    }
}
