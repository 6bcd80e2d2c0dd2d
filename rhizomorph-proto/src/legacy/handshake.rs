//! The legacy TEXT messages (legacy.md §L4): the client's authentication JSON, the server's
//! `connection_info` or `error` reply, and the keepalive/token messages that follow.
//!
//! Owns their JSON shapes, byte-compatible with what hypha-rpc and the hypha server send
//! (Python's `json.dumps` separators). Never touches a socket; never accepts a control message
//! longer than [`MAX_CONTROL_TEXT`] on the server side (hypha ignores those too).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::LegacyError;

/// Longest TEXT control message a server reads after the handshake (hypha ignores longer ones).
pub const MAX_CONTROL_TEXT: usize = 1000;

/// Longest first (authentication) message a server reads.
pub const MAX_AUTH_TEXT: usize = 64 * 1024;

/// The client's first message (legacy.md §L4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthInfo {
    /// The client id it asks for (unique within its workspace).
    pub client_id: Option<String>,
    /// The workspace it asks for (`None`: the server picks).
    pub workspace: Option<String>,
    /// An authentication token.
    pub token: Option<String>,
    /// A token from an earlier `connection_info`, to resume an identity.
    pub reconnection_token: Option<String>,
}

fn json_opt(v: &Option<String>) -> String {
    match v {
        // Serializing a string cannot fail.
        Some(s) => serde_json::to_string(s).unwrap_or_else(|_| "null".into()),
        None => "null".into(),
    }
}

impl AuthInfo {
    /// The message as hypha-rpc writes it (`json.dumps`: `", "` and `": "` separators, this
    /// key order).
    pub fn to_text(&self) -> String {
        format!(
            "{{\"client_id\": {}, \"workspace\": {}, \"token\": {}, \"reconnection_token\": {}}}",
            json_opt(&self.client_id),
            json_opt(&self.workspace),
            json_opt(&self.token),
            json_opt(&self.reconnection_token)
        )
    }

    /// Parses a client's first message.
    pub fn parse(text: &str) -> Result<AuthInfo, LegacyError> {
        if text.len() > MAX_AUTH_TEXT {
            return Err(LegacyError::TextTooLong {
                len: text.len(),
                max: MAX_AUTH_TEXT,
            });
        }
        serde_json::from_str(text).map_err(|e| LegacyError::BadJson(e.to_string()))
    }
}

/// What a legacy server says about the connection it accepted (legacy.md §L4.2).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionInfo {
    /// The workspace the client was placed in.
    pub workspace: String,
    /// Its client id.
    pub client_id: String,
    /// The workspace manager's client id (`*/<manager_id>`), if the server has one.
    pub manager_id: Option<String>,
    /// A token to reconnect with.
    pub reconnection_token: Option<String>,
    /// The authenticated user (hypha's `UserInfo`).
    pub user: Value,
    /// The whole message, for fields not named here.
    pub raw: Value,
}

impl ConnectionInfo {
    /// `<workspace>/<client_id>`: the id other peers send to.
    pub fn full_id(&self) -> String {
        format!("{}/{}", self.workspace, self.client_id)
    }
}

/// One TEXT message of a legacy connection.
#[derive(Debug, Clone, PartialEq)]
pub enum TextMessage {
    /// `{"type": "ping"}` (client → server).
    Ping,
    /// `{"type": "pong"}` (server → client).
    Pong,
    /// `{"type": "refresh_token"}` (client → server).
    RefreshToken,
    /// `{"type": "reconnection_token", "reconnection_token": …}` (server → client).
    ReconnectionToken(String),
    /// `{"type": "connection_info", …}` (server → client, once).
    ConnectionInfo(Box<ConnectionInfo>),
    /// `{"type": "error", "message": …}` (server → client, then close).
    Error(String),
    /// Any other type: logged and ignored, as hypha does.
    Other(String),
}

impl TextMessage {
    /// Parses a TEXT message.
    pub fn parse(text: &str) -> Result<TextMessage, LegacyError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| LegacyError::BadJson(e.to_string()))?;
        let s = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        let kind = s("type").ok_or_else(|| LegacyError::BadJson("no \"type\"".into()))?;
        Ok(match kind.as_str() {
            "ping" => TextMessage::Ping,
            "pong" => TextMessage::Pong,
            "refresh_token" => TextMessage::RefreshToken,
            "reconnection_token" => {
                TextMessage::ReconnectionToken(s("reconnection_token").unwrap_or_default())
            }
            "error" => TextMessage::Error(s("message").unwrap_or_default()),
            "connection_info" => {
                let workspace = s("workspace").ok_or_else(|| {
                    LegacyError::BadJson("connection_info without workspace".into())
                })?;
                let client_id = s("client_id").ok_or_else(|| {
                    LegacyError::BadJson("connection_info without client_id".into())
                })?;
                TextMessage::ConnectionInfo(Box::new(ConnectionInfo {
                    workspace,
                    client_id,
                    manager_id: s("manager_id"),
                    reconnection_token: s("reconnection_token"),
                    user: v.get("user").cloned().unwrap_or(Value::Null),
                    raw: v,
                }))
            }
            _ => TextMessage::Other(kind),
        })
    }

    /// The message as hypha writes it (`json.dumps`).
    pub fn to_text(&self) -> String {
        match self {
            TextMessage::Ping => r#"{"type": "ping"}"#.into(),
            TextMessage::Pong => r#"{"type": "pong"}"#.into(),
            TextMessage::RefreshToken => r#"{"type": "refresh_token"}"#.into(),
            TextMessage::ReconnectionToken(t) => format!(
                r#"{{"type": "reconnection_token", "reconnection_token": {}}}"#,
                json_opt(&Some(t.clone()))
            ),
            TextMessage::Error(m) => format!(
                r#"{{"type": "error", "message": {}}}"#,
                json_opt(&Some(m.clone()))
            ),
            TextMessage::ConnectionInfo(info) => python_json(&info.raw),
            TextMessage::Other(kind) => format!(r#"{{"type": {}}}"#, json_opt(&Some(kind.clone()))),
        }
    }
}

/// `value` as Python's `json.dumps` writes it (`", "` and `": "` separators).
pub fn python_json(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Writing a Value into a Vec cannot fail.
    let _ = value.serialize(&mut ser);
    String::from_utf8(out).unwrap_or_default()
}

struct PythonFormatter;

/// Python's item separator, before every item but the first.
fn separator<W: ?Sized + std::io::Write>(w: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        w.write_all(b", ")
    }
}

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separator(w, first)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separator(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_text_matches_the_captured_bytes() {
        // ../shared/reference/hypha-rpc-hexdumps.txt, #0.
        let info = AuthInfo {
            client_id: Some("provider".into()),
            ..AuthInfo::default()
        };
        assert_eq!(
            info.to_text(),
            r#"{"client_id": "provider", "workspace": null, "token": null, "reconnection_token": null}"#
        );
        assert_eq!(AuthInfo::parse(&info.to_text()).unwrap(), info);
    }

    #[test]
    fn control_messages_round_trip() {
        for m in [
            TextMessage::Ping,
            TextMessage::Pong,
            TextMessage::RefreshToken,
            TextMessage::ReconnectionToken("tok".into()),
            TextMessage::Error("no \"way\"".into()),
        ] {
            assert_eq!(TextMessage::parse(&m.to_text()).unwrap(), m);
        }
        assert!(TextMessage::parse("{}").is_err());
        assert!(TextMessage::parse("[1,").is_err());
        let info = TextMessage::parse(
            r#"{"type": "connection_info", "workspace": "ws-1", "client_id": "c", "manager_id": "m"}"#,
        )
        .unwrap();
        let TextMessage::ConnectionInfo(info) = info else {
            panic!("not connection_info")
        };
        assert_eq!(info.full_id(), "ws-1/c");
        assert_eq!(info.manager_id.as_deref(), Some("m"));
    }
}
