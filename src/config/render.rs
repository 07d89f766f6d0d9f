//! `check-config`'s output: the effective configuration as TOML, with only the keys that apply,
//! unset options as comments and secrets redacted.

use std::fmt;

use serde::Deserialize;

use super::{AuthMode, Config, HmacScheme};

impl Config {
    /// The effective configuration as TOML (what `check-config` prints): only the keys that
    /// apply to the chosen `webhook.auth.mode` and `webhook.auth.hmac.scheme`, unset optional
    /// keys as `# key = (unset)` comments, secrets as `[redacted]`. The output parses as TOML.
    pub fn to_redacted_toml(&self) -> String {
        // Through JSON, which keeps unset options (as null) and the fields' order.
        let tree = serde_json::to_string(self)
            .map_err(|e| e.to_string())
            .and_then(|json| serde_json::from_str::<Node>(&json).map_err(|e| e.to_string()));
        let mut tree = match tree {
            Ok(t) => t,
            Err(e) => return format!("# cannot render config: {e}\n"),
        };
        for path in self.inapplicable_keys() {
            tree.remove(path);
        }
        let mut out = String::new();
        tree.render("", &mut out);
        out
    }

    /// Dotted keys that do nothing with this configuration's mode, scheme and roles.
    fn inapplicable_keys(&self) -> Vec<&'static str> {
        if !self.webhook.enabled {
            return vec!["webhook.auth"];
        }
        let mut keys = match self.webhook.auth.mode {
            Some(AuthMode::Hmac) => vec!["webhook.auth.basic"],
            Some(AuthMode::Basic) => return vec!["webhook.auth.hmac"],
            Some(AuthMode::None) => return vec!["webhook.auth.basic", "webhook.auth.hmac"],
            None => vec![],
        };
        const GENERIC_ONLY: [&str; 5] = [
            "webhook.auth.hmac.algorithm",
            "webhook.auth.hmac.encoding",
            "webhook.auth.hmac.timestamp_header",
            "webhook.auth.hmac.id_header",
            "webhook.auth.hmac.signed_template",
        ];
        match self.webhook.auth.hmac.scheme {
            HmacScheme::StandardWebhooks => {
                keys.extend(GENERIC_ONLY);
                keys.extend(["webhook.auth.hmac.header", "webhook.auth.hmac.prefix"]);
            }
            HmacScheme::Stripe => {
                keys.extend(GENERIC_ONLY);
                keys.push("webhook.auth.hmac.prefix");
            }
            // No timestamp: nothing to hold against the tolerance.
            HmacScheme::Hex => {
                keys.extend(GENERIC_ONLY);
                keys.push("webhook.auth.hmac.tolerance");
            }
            HmacScheme::Generic => {}
        }
        keys
    }
}

/// The configuration as an ordered tree, for [`Config::to_redacted_toml`]: unlike
/// `toml::Value` it keeps unset keys, and unlike `serde_json::Value` (without its
/// `preserve_order` feature) the fields' order.
enum Node {
    Unset,
    Value(toml::Value),
    Table(Vec<(String, Node)>),
}

impl Node {
    fn remove(&mut self, dotted: &str) {
        let (head, rest) = match dotted.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (dotted, None),
        };
        if let Node::Table(entries) = self {
            match rest {
                None => entries.retain(|(k, _)| k != head),
                Some(rest) => {
                    for (k, v) in entries.iter_mut() {
                        if k == head {
                            v.remove(rest);
                        }
                    }
                }
            }
        }
    }

    /// Writes the table at `path`: its keys, then its sub-tables.
    fn render(&self, path: &str, out: &mut String) {
        let Node::Table(entries) = self else { return };
        if !path.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("[{path}]\n"));
        }
        for (k, v) in entries {
            match v {
                Node::Unset => out.push_str(&format!("# {k} = (unset)\n")),
                Node::Value(v) => out.push_str(&format!("{k} = {v}\n")),
                Node::Table(_) => {}
            }
        }
        for (k, v) in entries {
            if let Node::Table(_) = v {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                v.render(&sub, out);
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a configuration value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Unset)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Value(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Value(v.into()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Node, E> {
                i64::try_from(v)
                    .map(|v| Node::Value(v.into()))
                    .map_err(|_| E::custom("integer too large for TOML"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Value(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Value(v.into()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<toml::Value>()? {
                    items.push(item);
                }
                Ok(Node::Value(toml::Value::Array(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Node>()? {
                    entries.push((k, v));
                }
                Ok(Node::Table(entries))
            }
        }
        d.deserialize_any(V)
    }
}
