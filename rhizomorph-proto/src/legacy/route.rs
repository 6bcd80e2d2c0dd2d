//! Hypha's routing rules (legacy.md §L5), as a pure function of a header and the sender's
//! authenticated identity: normalise `to`, overwrite `from`, add `ws` and `user`.
//!
//! Owns the rewrite only. Never sees the payload (a router forwards it untouched) and never
//! trusts identity fields the sender wrote: `from`, `ws` and `user` are always replaced.

use bytes::Bytes;
use serde_json::{json, Value};

use super::codec::MSGPACK_SUFFIX;
use super::LegacyError;
use crate::header::RoutingHeader;

/// Who sent a message, as the server authenticated it.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The workspace the peer is in.
    pub workspace: String,
    /// Its client id within the workspace.
    pub client_id: String,
    /// Hypha's `UserInfo` for the peer (sent to receivers as `user`).
    pub user: Value,
    user_msgpack: Bytes,
}

impl Identity {
    /// An identity with the given user information.
    pub fn new(workspace: impl Into<String>, client_id: impl Into<String>, user: Value) -> Self {
        // A serde_json::Value always encodes.
        let user_msgpack = Bytes::from(rmp_serde::to_vec(&user).unwrap_or_else(|_| vec![0xc0]));
        Identity {
            workspace: workspace.into(),
            client_id: client_id.into(),
            user,
            user_msgpack,
        }
    }

    /// An anonymous user, shaped as hypha's `UserInfo` for anonymous clients.
    pub fn anonymous(workspace: impl Into<String>, client_id: impl Into<String>) -> Self {
        let workspace = workspace.into();
        let client_id = client_id.into();
        let user = json!({
            "id": format!("anonymous-{client_id}"),
            "roles": ["anonymous"],
            "is_anonymous": true,
            "scope": {
                "current_workspace": workspace,
                "workspaces": { workspace.clone(): "a" },
                "client_id": client_id,
                "extra_scopes": null,
            },
            "email": null,
            "parent": null,
            "expires_at": null,
            "current_workspace": null,
        });
        Identity::new(workspace, client_id, user)
    }

    /// `<workspace>/<client_id>`.
    pub fn full_id(&self) -> String {
        format!("{}/{}", self.workspace, self.client_id)
    }

    /// `user` as msgpack (what the `user` field of a routed header carries).
    pub fn user_msgpack(&self) -> &Bytes {
        &self.user_msgpack
    }
}

/// Hypha's `to` normalisation: `*` → `<ws>/*`, a bare id → `<ws>/<id>`, a full id unchanged.
pub fn normalize_to(to: &str, workspace: &str) -> Result<String, LegacyError> {
    if to.is_empty() {
        return Err(LegacyError::NoTarget);
    }
    Ok(if to == "*" {
        format!("{workspace}/*")
    } else if !to.contains('/') {
        format!("{workspace}/{to}")
    } else {
        to.to_string()
    })
}

/// The field a cluster node sets on a message it delivers from its inbox, `<node>/<entry id>`
/// (wire.md §22.3.4): what a client drops a redelivered copy by (§22.5). Only a router writes
/// it; [`rewrite`] drops every copy a sender wrote.
pub const ENTRY_FIELD: &str = "rz-entry";

/// A header rewritten for forwarding, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The rewritten header.
    pub header: RoutingHeader,
    /// The normalised target: `<ws>/<client_id>`, or `<ws>/*` for a broadcast.
    pub target: String,
}

/// Rewrites `header` as hypha does before forwarding (`message.update({"ws", "to", "from",
/// "user"})`): fields already present keep their position, new ones are appended in that
/// order, and every other copy of those four names (plain or `#`) is dropped, as is every
/// [`ENTRY_FIELD`] (wire.md §22.3.4: only a router sets it).
pub fn rewrite(header: &RoutingHeader, sender: &Identity) -> Result<Routed, LegacyError> {
    let to = header
        .get("to")
        .ok_or(LegacyError::NoTarget)
        .and_then(|v| std::str::from_utf8(v).map_err(|_| LegacyError::NoTarget))?;
    let target = normalize_to(to, &sender.workspace)?;
    let updates: [(&str, &str, Bytes); 4] = [
        ("ws", "ws", Bytes::from(sender.workspace.clone())),
        ("to", "to", Bytes::from(target.clone())),
        ("from", "from", Bytes::from(sender.full_id())),
        ("user", "user#", sender.user_msgpack.clone()),
    ];
    let key_of = |name: &[u8]| -> Option<usize> {
        let bare = name.strip_suffix(MSGPACK_SUFFIX.as_bytes()).unwrap_or(name);
        updates.iter().position(|(k, _, _)| k.as_bytes() == bare)
    };
    let mut placed = [false; 4];
    let mut out = RoutingHeader::new();
    for field in header.fields() {
        match key_of(&field.name) {
            Some(i) if !placed[i] => {
                placed[i] = true;
                out.push(updates[i].1, updates[i].2.clone());
            }
            Some(_) => {}
            // spec: wire.md §22.3.4 — a sender cannot make a client drop what it is sent.
            None if field.name == ENTRY_FIELD.as_bytes() => {}
            None => out.push(field.name.clone(), field.value.clone()),
        }
    }
    for (i, (_, name, value)) in updates.iter().enumerate() {
        if !placed[i] {
            out.push(*name, value.clone());
        }
    }
    Ok(Routed {
        header: out,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_hypha() {
        assert_eq!(normalize_to("*", "ws-1").unwrap(), "ws-1/*");
        assert_eq!(normalize_to("bob", "ws-1").unwrap(), "ws-1/bob");
        assert_eq!(normalize_to("ws-2/bob", "ws-1").unwrap(), "ws-2/bob");
        assert_eq!(normalize_to("*/manager", "ws-1").unwrap(), "*/manager");
        assert!(normalize_to("", "ws-1").is_err());
    }

    #[test]
    fn identity_fields_are_overwritten_in_hypha_order() {
        let alice = Identity::anonymous("ws-a", "alice");
        let header = RoutingHeader::new()
            .with("type", "method")
            .with("from", "ws-x/mallory")
            .with("to", "bob")
            .with("method", "services.echo.echo")
            .with("user", "forged")
            .with("user#", vec![0xc0])
            .with(ENTRY_FIELD, "n2/99999999999999-0");
        let routed = rewrite(&header, &alice).unwrap();
        assert_eq!(routed.target, "ws-a/bob");
        let names: Vec<&[u8]> = routed.header.fields().iter().map(|f| &f.name[..]).collect();
        assert_eq!(
            names,
            [&b"type"[..], b"from", b"to", b"method", b"user#", b"ws"]
        );
        assert_eq!(routed.header.get_str("from"), Some("ws-a/alice"));
        assert_eq!(routed.header.get("user#"), Some(alice.user_msgpack()));
        // No `to`: nowhere to route.
        assert!(rewrite(&RoutingHeader::new(), &alice).is_err());
    }
}
