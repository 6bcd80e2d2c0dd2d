//! The workspace manager's functions (legacy.md §L6.4): what each of `services.default.*`
//! (and `services.built-in.get_service`) does with its arguments, as hypha 0.21's manager does.
//!
//! Owns argument checking: a wrong type, an unknown function or a limit is an `Err` with the
//! reason, answered as a `.reject`. Never sends: the manager turns each answer into messages.

use std::time::Instant;

use rmpv::Value;

use super::protocol::{self, encoded_method, get, map, Request};
use super::registry::{Service, Visibility};
use super::{Manager, Outgoing};
use crate::legacy::Identity;

/// How a call is answered.
pub(super) enum Answer {
    /// Now, with this result.
    Now(Result<Value, String>),
    /// Later: the manager asked a provider (these messages go out now).
    Later(Vec<Outgoing>),
}

/// The manager's functions: name and the doc hypha-rpc shows for it.
pub(super) const FUNCTIONS: &[(&str, &str)] = &[
    ("echo", "Echo an object."),
    ("ping", "Ping the server."),
    ("check_status", "Check the server's status."),
    ("register_service", "Register a service."),
    ("unregister_service", "Unregister a service."),
    (
        "get_service",
        "Get a service by id: svc, client:svc or workspace/client:svc.",
    ),
    (
        "get_service_info",
        "Get the description of a registered service.",
    ),
    ("list_services", "List the services of a workspace."),
    ("list_clients", "List the clients of a workspace."),
    ("subscribe", "Subscribe to event types."),
    ("unsubscribe", "Unsubscribe from event types."),
];

/// Event types a client may subscribe to besides its workspace's own (hypha's list).
const SYSTEM_EVENTS: &[&str] = &[
    "service_added",
    "service_removed",
    "service_updated",
    "client_connected",
    "client_disconnected",
    "client_updated",
    "workspace_loaded",
    "workspace_deleted",
    "workspace_changed",
    "workspace_ready",
    "workspace_unloaded",
    "workspace_status_changed",
];

/// Runs `request` from `from`.
pub(super) fn call(m: &mut Manager, from: &Identity, request: &Request, now: Instant) -> Answer {
    match (request.service.as_str(), request.function.as_str()) {
        ("built-in", "get_service") => {
            Answer::Now(match request.arg(0, "service_id").and_then(Value::as_str) {
                Some("default") | Some("~") => Ok(description(m)),
                Some(other) => Err(format!("Service not found: {other}")),
                None => Err("get_service takes a service id (a string)".into()),
            })
        }
        ("built-in", "ping") | ("default", "ping") => Answer::Now(Ok("pong".into())),
        ("default", f) => match f {
            "echo" => Answer::Now(
                request
                    .arg(0, "data")
                    .cloned()
                    .ok_or_else(|| "echo takes data".to_string()),
            ),
            "check_status" => Answer::Now(Ok(map(vec![
                ("status", "ready".into()),
                ("errors", Value::Nil),
                ("user_permission", "a".into()),
            ]))),
            "register_service" => Answer::Now(register(m, from, request).map(|_| Value::Nil)),
            "unregister_service" => Answer::Now(unregister(m, from, request).map(|_| Value::Nil)),
            "get_service_info" => Answer::Now(
                service_id(request)
                    .and_then(|q| {
                        m.registry
                            .lookup(q, &from.workspace)
                            .map_err(|e| e.to_string())
                    })
                    .map(|s| s.info.clone()),
            ),
            "get_service" => {
                let service = service_id(request).and_then(|q| {
                    m.registry
                        .lookup(q, &from.workspace)
                        .map_err(|e| e.to_string())
                        .cloned()
                });
                match service.and_then(|s| m.ask_provider(from, request, &s, now)) {
                    Ok(out) => Answer::Later(out),
                    Err(e) => Answer::Now(Err(e)),
                }
            }
            "list_services" => Answer::Now(list_services(m, from, request)),
            "list_clients" => Answer::Now(list_clients(m, from, request)),
            "subscribe" | "unsubscribe" => {
                Answer::Now(subscribe(m, from, request, f == "subscribe"))
            }
            other => Answer::Now(Err(format!(
                "the rhizomorph workspace manager has no function {other:?} (legacy.md §L6.4 lists \
                 what it implements)"
            ))),
        },
        (service, _) => Answer::Now(Err(format!(
            "the workspace manager has no service {service:?}: call services.default.<function>"
        ))),
    }
}

/// The manager's own service (`services.built-in.get_service("default")`): hypha's top-level
/// keys, and each function encoded as a remote method on the manager.
fn description(m: &Manager) -> Value {
    let c = &m.config;
    let mut entries = vec![
        ("id", "default".into()),
        ("name", "Default workspace management service".into()),
        ("description", "Services for managing workspace.".into()),
        (
            "config",
            map(vec![
                ("require_context", true.into()),
                ("visibility", "public".into()),
                ("server_id", c.manager_id.as_str().into()),
                (
                    "hypha_version",
                    concat!("rhizomorph-", env!("CARGO_PKG_VERSION")).into(),
                ),
                ("public_base_url", c.public_base_url.as_str().into()),
                ("local_base_url", c.public_base_url.as_str().into()),
            ]),
        ),
        ("type", "generic".into()),
    ];
    for (name, doc) in FUNCTIONS {
        entries.push((name, encoded_method(m.target(), "default", name, doc)));
    }
    map(entries)
}

/// The `service_id` argument, as a string.
fn service_id(request: &Request) -> Result<&str, String> {
    request
        .arg(0, "service_id")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{} takes a service id (a string)", request.function))
}

/// A name the manager stores: non-empty, at most `max` bytes, no `/` or `:`.
fn check_name<'a>(what: &str, s: &'a str, max: usize) -> Result<&'a str, String> {
    if s.is_empty() || s.len() > max || s.contains('/') || s.contains(':') {
        let shown: String = s.chars().take(40).collect();
        return Err(format!(
            "{what} {shown:?} ({} bytes) must be 1–{max} bytes without '/' or ':'",
            s.len()
        ));
    }
    Ok(s)
}

/// `register_service(service)`: stores the description the client sent (its functions stay on
/// the client; only `get_service` fetches them) and tells the workspace (`service_added`).
fn register(m: &mut Manager, from: &Identity, request: &Request) -> Result<(), String> {
    let mut info = request
        .arg(0, "service")
        .filter(|v| v.is_map())
        .cloned()
        .ok_or("register_service takes a service description (a map)")?;
    let id = get(&info, "id")
        .and_then(Value::as_str)
        .ok_or("the service description has no id (a string)")?;
    // `ws/client:svc`, `client:svc` or `svc`: the workspace and client must be the caller's.
    let (prefix, name) = id.rsplit_once(':').unwrap_or(("", id));
    let me = from.full_id();
    if !(prefix.is_empty() || prefix == from.client_id || prefix == me) {
        return Err(format!("service id {id:?} does not belong to {me}"));
    }
    let name = check_name("the service name", name, m.config.max_name_bytes)?.to_string();
    let full = format!("{me}:{name}");
    let mut config = get(&info, "config")
        .filter(|c| c.is_map())
        .cloned()
        .unwrap_or(Value::Map(Vec::new()));
    let visibility = Visibility::parse(get(&config, "visibility").and_then(Value::as_str));
    protocol::set(&mut config, "workspace", from.workspace.as_str().into());
    let user_id = protocol::from_json(&from.user["id"]);
    protocol::set(&mut config, "created_by", map(vec![("id", user_id)]));
    protocol::set(&mut info, "id", full.as_str().into());
    protocol::set(&mut info, "config", config);
    let service = Service {
        id: full,
        workspace: from.workspace.clone(),
        provider: me,
        name,
        visibility,
        info,
    };
    let added = service.name != "built-in";
    let data = service.info.clone();
    m.registry
        .register(service, &m.config.limits)
        .map_err(|e| e.to_string())?;
    if added {
        let out = m.event(&from.workspace, "service_added", &data, None);
        m.outbox.extend(out);
    }
    Ok(())
}

/// `unregister_service(service_id)`: only the caller's own services.
fn unregister(m: &mut Manager, from: &Identity, request: &Request) -> Result<(), String> {
    let id = service_id(request)?;
    let me = from.full_id();
    let full = match id.rsplit_once(':') {
        Some((p, name)) if p == me || p == from.client_id => format!("{me}:{name}"),
        Some(_) => id.to_string(),
        None => format!("{me}:{id}"),
    };
    let service = m
        .registry
        .unregister(&me, &full)
        .map_err(|e| e.to_string())?;
    let out = m.event(&from.workspace, "service_removed", &service.info, None);
    m.outbox.extend(out);
    Ok(())
}

/// `list_services(query)`: `query` is a workspace name, `"ws/*"`, or a map with `workspace`,
/// `client_id`, `service_id`, `visibility`, `type`.
fn list_services(m: &Manager, from: &Identity, request: &Request) -> Result<Value, String> {
    let query = request.arg(0, "query");
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let (mut ws, mut client, mut name, mut kind, mut vis) = (None, None, None, None, None);
    match query {
        None => {}
        Some(Value::String(q)) => {
            let q = q.as_str().unwrap_or_default();
            let (w, rest) = q.split_once('/').unwrap_or((q, "*"));
            let (c, n) = rest.split_once(':').unwrap_or((rest, "*"));
            ws = Some(w.to_string());
            client = Some(c.to_string());
            name = Some(n.to_string());
        }
        Some(q @ Value::Map(_)) => {
            ws = s(get(q, "workspace"));
            client = s(get(q, "client_id"));
            name = s(get(q, "service_id"));
            kind = s(get(q, "type"));
            vis = s(get(q, "visibility"));
        }
        Some(_) => return Err("list_services takes a query (a map or a string)".into()),
    }
    let any = |v: &Option<String>| v.as_deref().filter(|x| *x != "*").map(str::to_string);
    let ws = any(&ws).unwrap_or_else(|| from.workspace.clone());
    let (client, name) = (any(&client), any(&name));
    let list = m
        .registry
        .list(&ws, &from.workspace, client.as_deref(), name.as_deref())
        .filter(|svc| {
            kind.as_deref().map_or(true, |k| {
                get(&svc.info, "type").and_then(Value::as_str) == Some(k)
            })
        })
        .filter(|svc| {
            vis.as_deref()
                .map_or(true, |v| Visibility::parse(Some(v)) == svc.visibility)
        })
        .map(|svc| svc.info.clone())
        .collect();
    Ok(Value::Array(list))
}

/// `list_clients(workspace)`: the caller's own workspace only.
fn list_clients(m: &Manager, from: &Identity, request: &Request) -> Result<Value, String> {
    let ws = request
        .arg(0, "workspace")
        .and_then(Value::as_str)
        .unwrap_or(&from.workspace);
    if ws != from.workspace && ws != "*" {
        return Err(format!("Permission denied for workspace {ws}"));
    }
    let mut clients: Vec<(String, Value)> = m
        .registry
        .clients_in(&from.workspace)
        .map(|c| (c.identity.full_id(), protocol::from_json(&c.identity.user)))
        .collect();
    // spec: cluster.md §C3.2 — and those of the other nodes (their user is theirs to tell).
    clients.extend(
        m.remote_clients_in(&from.workspace)
            .map(|id| (id.to_string(), Value::Nil)),
    );
    clients.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Value::Array(
        clients
            .into_iter()
            .map(|(id, user)| map(vec![("id", id.into()), ("user", user)]))
            .collect(),
    ))
}

/// `subscribe(event_type)` / `unsubscribe(event_type)`: a name or a list of names; system
/// events, or events of the caller's own workspace (`<ws>/<event>`), as hypha allows.
fn subscribe(
    m: &mut Manager,
    from: &Identity,
    request: &Request,
    on: bool,
) -> Result<Value, String> {
    let events: Vec<String> = match request.arg(0, "event_type") {
        Some(Value::String(s)) => vec![s.as_str().unwrap_or_default().to_string()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or("event types must be strings")?,
        _ => return Err("subscribe takes an event type or a list of them".into()),
    };
    for e in &events {
        if e.is_empty() || e.len() > m.config.max_name_bytes {
            return Err(format!("event type of {} bytes is not allowed", e.len()));
        }
        let own = e
            .split_once('/')
            .map_or(!e.starts_with("ws-"), |(w, _)| w == from.workspace);
        if !SYSTEM_EVENTS.contains(&e.as_str()) && !own {
            return Err(format!(
                "Subscription to event '{e}' is forbidden: clients can only subscribe to events \
                 within their own workspace ({}) or system events",
                from.workspace
            ));
        }
    }
    let me = from.full_id();
    if on {
        m.registry
            .subscribe(&me, &events, &m.config.limits)
            .map_err(|e| e.to_string())?;
    } else {
        m.registry.unsubscribe(&me, &events);
    }
    Ok(Value::Boolean(true))
}
