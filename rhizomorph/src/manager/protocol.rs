//! hypha-rpc's call protocol as the workspace manager speaks it (legacy.md §L6.2): reading a
//! call (`services.<svc>.<fn>` with `args`, kwargs and a promise) and writing what answers it
//! (`<session>.resolve` / `.reject` method calls, events, the encoded methods of a service).
//!
//! Owns the msgpack shapes only. Never routes and never decides what a call means: that is the
//! manager's. Everything read from the wire is bounded before it is decoded (size, nesting).

use bytes::Bytes;
use rmpv::Value;

use crate::header::RoutingHeader;

/// Deepest msgpack nesting a call to the manager may use (a service description is a few
/// levels deep; hypha-rpc's schemas reach about 8).
pub const MAX_DEPTH: usize = 32;

/// Why a message to the manager could not be read as a call. Each is answered with a
/// `.reject` naming it when the call has a session; the connection goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The payload is larger than the manager accepts.
    #[error("a call to the workspace manager is {size} bytes, over its limit of {limit}")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// `ManagerConfig::max_request_bytes`.
        limit: usize,
    },
    /// The payload is not one msgpack map (or nests deeper than [`MAX_DEPTH`]).
    #[error("the call's payload is not a msgpack map: {0}")]
    BadPayload(String),
    /// The header's `method` is missing or not `services.<service>.<function>`.
    #[error("method {0:?} is not services.<service>.<function>")]
    BadMethod(String),
    /// `args` is not a list, or kwargs are not a map.
    #[error("{0}")]
    BadArguments(String),
}

/// A call to the manager, read from hypha-rpc's two msgpack segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The service called (`default` or `built-in`).
    pub service: String,
    /// The function called.
    pub function: String,
    /// The caller's session (present when an answer is expected).
    pub session: Option<String>,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments (`with_kwargs: true` makes the last element of `args` this map).
    pub kwargs: Vec<(String, Value)>,
    /// The method that receives the result: the promise's `resolve` (`<session>.resolve` for
    /// the compact promise `"*"`); `None` when nobody waits.
    pub resolve: Option<String>,
    /// The method that receives an error.
    pub reject: Option<String>,
}

impl Request {
    /// Argument `name`: the kwarg of that name, else positional argument `index`; `Nil` is
    /// treated as absent (hypha-rpc sends `None` for omitted optionals).
    pub fn arg(&self, index: usize, name: &str) -> Option<&Value> {
        self.kwargs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .or_else(|| self.args.get(index))
            .filter(|v| !v.is_nil())
    }
}

/// Reads a call: `method` from the header, `args`/`with_kwargs`/`promise` from the payload.
///
/// spec: legacy.md §L6.2
pub fn parse_request(
    header: &RoutingHeader,
    payload: &[u8],
    max_bytes: usize,
) -> Result<Request, ProtocolError> {
    let method = header.get_str("method").unwrap_or_default();
    let (service, function) = method
        .strip_prefix("services.")
        .and_then(|rest| rest.split_once('.'))
        .filter(|(s, f)| !s.is_empty() && !f.is_empty() && !f.contains('.'))
        .ok_or_else(|| ProtocolError::BadMethod(truncate(method, 80)))?;
    let session = header.get_str("session").map(str::to_string);
    if payload.len() > max_bytes {
        return Err(ProtocolError::TooLarge {
            size: payload.len(),
            limit: max_bytes,
        });
    }
    let extra = if payload.is_empty() {
        Value::Map(Vec::new())
    } else {
        rmpv::decode::read_value_with_max_depth(&mut &payload[..], MAX_DEPTH)
            .map_err(|e| ProtocolError::BadPayload(e.to_string()))?
    };
    let Value::Map(extra) = extra else {
        return Err(ProtocolError::BadPayload("not a map".into()));
    };
    let field = |name: &str| {
        extra
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    };
    let mut args = match field("args") {
        None | Some(Value::Nil) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(ProtocolError::BadArguments("args is not a list".into())),
    };
    let mut kwargs = Vec::new();
    if field("with_kwargs").and_then(Value::as_bool) == Some(true) {
        match args.pop() {
            Some(Value::Map(m)) => {
                for (k, v) in m {
                    let k = k
                        .as_str()
                        .ok_or_else(|| {
                            ProtocolError::BadArguments("a kwarg name is not a string".into())
                        })?
                        .to_string();
                    kwargs.push((k, v));
                }
            }
            _ => {
                return Err(ProtocolError::BadArguments(
                    "with_kwargs without a kwargs map".into(),
                ))
            }
        }
    }
    let (resolve, reject) = match (field("promise"), &session) {
        (Some(Value::Map(p)), _) => (promise_method(p, "resolve"), promise_method(p, "reject")),
        (Some(_), Some(s)) => (Some(format!("{s}.resolve")), Some(format!("{s}.reject"))),
        _ => (None, None),
    };
    Ok(Request {
        service: service.to_string(),
        function: function.to_string(),
        session,
        args,
        kwargs,
        resolve,
        reject,
    })
}

/// `promise[name]._rmethod` of a full promise (`{"resolve": {"_rtype": "method", …}}`).
fn promise_method(promise: &[(Value, Value)], name: &str) -> Option<String> {
    let callback = promise
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))?
        .1
        .as_map()?;
    callback
        .iter()
        .find(|(k, _)| k.as_str() == Some("_rmethod"))?
        .1
        .as_str()
        .map(str::to_string)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The header of a method call the manager sends (a resolve, a reject, a call to a provider):
/// as hypha's manager writes it, with `ws` and `user` (receivers need both).
pub fn method_header(
    from: &str,
    to: &str,
    method: &str,
    session: Option<&str>,
    parent: Option<&str>,
    ws: &str,
    user: &Bytes,
) -> RoutingHeader {
    let mut h = RoutingHeader::new()
        .with("type", "method")
        .with("from", from.to_string())
        .with("to", to.to_string())
        .with("method", method.to_string());
    if let Some(s) = session {
        h.push("session", s.to_string());
    }
    if let Some(p) = parent {
        h.push("parent", p.to_string());
    }
    h.push("ws", ws.to_string());
    h.push("user#", user.clone());
    h
}

/// `{"args": [value]}`: the payload of a `.resolve`.
pub fn resolve_payload(value: Value) -> Bytes {
    encode(&map(vec![("args", Value::Array(vec![value]))]))
}

/// `{"args": [{"_rtype": "error", "_rvalue": message, "_rtrace": ""}]}`: the payload of a
/// `.reject` (what hypha-rpc raises as a `RemoteException` with this message).
pub fn reject_payload(message: &str) -> Bytes {
    let error = map(vec![
        ("_rtype", "error".into()),
        ("_rvalue", message.into()),
        ("_rtrace", "".into()),
    ]);
    encode(&map(vec![("args", Value::Array(vec![error]))]))
}

/// `{"args": [..], "promise": "*", "t": 15.0}`: a call that expects an answer (compact promise).
pub fn call_payload(args: Vec<Value>) -> Bytes {
    encode(&map(vec![
        ("args", Value::Array(args)),
        ("promise", "*".into()),
        ("t", Value::F64(15.0)),
    ]))
}

/// An event as hypha broadcasts it: one msgpack map `{"type": event, "to": "*", "data": data}`
/// (no second segment), here as a header with `data#` holding the data's msgpack bytes.
pub fn event_header(event: &str, data: &Value) -> RoutingHeader {
    RoutingHeader::new()
        .with("type", event.to_string())
        .with("to", "*")
        .with("data#", encode(data))
}

/// An encoded remote method (`_rtype: "method"`), as hypha-rpc decodes into a callable.
pub fn encoded_method(target: &str, service: &str, name: &str, doc: &str) -> Value {
    map(vec![
        ("_rtype", "method".into()),
        ("_rtarget", target.into()),
        ("_rmethod", format!("services.{service}.{name}").into()),
        ("_rpromise", "*".into()),
        ("_rname", name.into()),
        ("_rasync", true.into()),
        ("_rdoc", doc.into()),
    ])
}

/// A msgpack map from string keys.
pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// `value` as msgpack bytes.
pub fn encode(value: &Value) -> Bytes {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    Bytes::from(out)
}

/// A `serde_json` value as msgpack (the identities' `UserInfo` are JSON).
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (_, Some(u)) => Value::from(u),
            _ => Value::F64(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => s.as_str().into(),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        serde_json::Value::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (k.as_str().into(), from_json(v)))
                .collect(),
        ),
    }
}

/// `map[key]` of a msgpack map.
pub fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// Sets `map[key] = v` (appending the key if it is new); a non-map is left as it is.
pub fn set(value: &mut Value, key: &str, v: Value) {
    if let Value::Map(m) = value {
        match m.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
            Some((_, old)) => *old = v,
            None => m.push((key.into(), v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(method: &str, session: Option<&str>) -> RoutingHeader {
        let mut h = RoutingHeader::new()
            .with("type", "method")
            .with("to", "*/m")
            .with("method", method.to_string());
        if let Some(s) = session {
            h.push("session", s.to_string());
        }
        h
    }

    #[test]
    fn a_compact_promise_answers_the_session() {
        let payload = call_payload(vec!["x".into()]);
        let r = parse_request(
            &header("services.default.echo", Some("s1")),
            &payload,
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            (r.service.as_str(), r.function.as_str()),
            ("default", "echo")
        );
        assert_eq!(r.resolve.as_deref(), Some("s1.resolve"));
        assert_eq!(r.reject.as_deref(), Some("s1.reject"));
        assert_eq!(r.arg(0, "data"), Some(&Value::from("x")));
    }

    #[test]
    fn a_full_promise_names_its_callbacks_and_kwargs_come_last() {
        let cb = |m: &str| map(vec![("_rtype", "method".into()), ("_rmethod", m.into())]);
        let payload = encode(&map(vec![
            (
                "args",
                Value::Array(vec!["svc".into(), map(vec![("config", map(vec![]))])]),
            ),
            ("with_kwargs", true.into()),
            (
                "promise",
                map(vec![
                    ("resolve", cb("s2.resolve")),
                    ("reject", cb("s2.reject")),
                ]),
            ),
        ]));
        let r = parse_request(
            &header("services.built-in.get_service", Some("s2")),
            &payload,
            1 << 20,
        )
        .unwrap();
        assert_eq!(r.args.len(), 1);
        assert_eq!(r.kwargs.len(), 1);
        assert!(r.arg(1, "config").is_some());
        assert_eq!(r.resolve.as_deref(), Some("s2.resolve"));
    }

    #[test]
    fn bad_calls_name_what_is_wrong() {
        let h = header("services.default.echo", Some("s"));
        assert!(matches!(
            parse_request(&header("echo", None), b"", 10),
            Err(ProtocolError::BadMethod(_))
        ));
        assert!(matches!(
            parse_request(&h, &[0x91, 0x01], 10),
            Err(ProtocolError::BadPayload(_))
        ));
        assert!(matches!(
            parse_request(&h, &[0u8; 11], 10),
            Err(ProtocolError::TooLarge {
                size: 11,
                limit: 10
            })
        ));
        let args_not_list = encode(&map(vec![("args", 3.into())]));
        assert!(matches!(
            parse_request(&h, &args_not_list, 100),
            Err(ProtocolError::BadArguments(_))
        ));
        // 100 nested arrays: refused by depth, never a stack overflow.
        let mut deep = vec![0x81, 0xa4, b'a', b'r', b'g', b's'];
        deep.extend(std::iter::repeat(0x91).take(100));
        deep.push(0x01);
        assert!(matches!(
            parse_request(&h, &deep, 1000),
            Err(ProtocolError::BadPayload(_))
        ));
    }
}
