//! The workspace manager (legacy.md §L6): the RPC peer at `*/<manager_id>` that unmodified
//! hypha-rpc programs talk to on their way in (`connect_to_server`), to register and find
//! services (`register_service`, `get_service`, `list_services`) and to hear who comes and
//! goes (`subscribe`, `client_connected`, `service_removed`, …).
//!
//! Sans-IO, as the session is: the router hands it messages addressed to it and connection
//! events, with the time, and sends what it returns ([`Outgoing`]). It owns the registry
//! ([`registry`]), the calls it made to providers on a caller's behalf (`get_service` asks the
//! provider's `services.built-in.get_service`, as hypha does) and their deadlines. It never
//! reads a clock, never blocks, never trusts an identity field a message carries (the router
//! gives it the sender's authenticated [`Identity`]), and every table it keeps is bounded by
//! [`ManagerConfig`].

mod methods;
pub mod protocol;
pub mod registry;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rmpv::Value;
use tracing::debug;

use crate::header::RoutingHeader;
use crate::legacy::Identity;
use protocol::{method_header, reject_payload, resolve_payload, Request};
use registry::{Limits, Registry};

/// The manager's limits and what it tells clients about the server.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The manager's client id: clients address it as `*/<manager_id>` (sent in
    /// `connection_info`, legacy.md §L4.2).
    pub manager_id: String,
    /// The server's base URL as clients see it (`public_base_url`).
    pub public_base_url: String,
    /// Largest payload of one call to the manager (a service description included).
    pub max_request_bytes: usize,
    /// Longest service name, client id or event name the manager stores.
    pub max_name_bytes: usize,
    /// Registry limits.
    pub limits: Limits,
    /// `get_service` calls waiting for a provider, in all and per caller.
    pub max_pending: usize,
    /// Per caller.
    pub max_pending_per_client: usize,
    /// How long a provider has to answer `services.built-in.get_service` (hypha-rpc's caller
    /// waits 15 s between heartbeats, so this stays below it).
    pub provider_timeout: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            manager_id: MANAGER_ID.to_string(),
            public_base_url: String::new(),
            max_request_bytes: 256 * 1024,
            max_name_bytes: 256,
            limits: Limits {
                services_per_client: 256,
                clients_per_workspace: 4096,
                services_total: 100_000,
                subscriptions_per_client: 64,
            },
            max_pending: 4096,
            max_pending_per_client: 64,
            provider_timeout: Duration::from_secs(10),
        }
    }
}

/// The manager id a rhizomorph server announces by default.
pub const MANAGER_ID: &str = "rhizomorph-manager";

/// A message the manager sends: to `to` (a connected `<workspace>/<client_id>`).
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The receiving peer's full id.
    pub to: String,
    /// The header (legacy mapping, legacy.md §L3.2: `user#` and `data#` carry msgpack).
    pub header: RoutingHeader,
    /// The payload (one msgpack value, or empty).
    pub payload: Bytes,
}

/// A `get_service` waiting for its provider's description.
#[derive(Debug)]
struct Pending {
    caller: String,
    resolve: Option<String>,
    reject: Option<String>,
    /// The full id of the service asked for.
    service: String,
    provider: String,
    deadline: Instant,
}

/// What the manager has done (for tests and the CLI).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ManagerStats {
    /// Calls answered with `.resolve`.
    pub resolved: u64,
    /// Calls answered with `.reject` (bad input, a limit, a missing service).
    pub rejected: u64,
    /// Events sent (one per receiver).
    pub events: u64,
}

/// The workspace manager (see the module doc).
#[derive(Debug)]
pub struct Manager {
    config: ManagerConfig,
    /// `*/<manager_id>`.
    target: String,
    /// The manager's own identity: `from` of what it sends, `user` a root user.
    me: Identity,
    registry: Registry,
    pending: HashMap<String, Pending>,
    next_session: u64,
    /// Marks this node's `get_service` sessions in a cluster (`n<16 hex>x`; empty alone), so
    /// that a provider's answer that reached another node's manager finds its way here.
    node_tag: String,
    /// Clients connected to other nodes of a cluster (listed by `list_clients`).
    remote_clients: std::collections::BTreeSet<String>,
    stats: ManagerStats,
    /// Events a function produced while it ran (`service_added`), sent after its answer.
    outbox: Vec<Outgoing>,
}

impl Manager {
    /// A manager with no clients.
    pub fn new(config: ManagerConfig) -> Manager {
        let target = format!("*/{}", config.manager_id);
        let me = Identity::new(
            "*",
            config.manager_id.clone(),
            serde_json::json!({
                "id": "root", "roles": ["admin"], "is_anonymous": false,
                "scope": {"current_workspace": "*", "workspaces": {"*": "a"},
                          "client_id": config.manager_id, "extra_scopes": null},
                "email": null, "parent": null, "expires_at": null, "current_workspace": "*",
            }),
        );
        Manager {
            config,
            target,
            me,
            registry: Registry::default(),
            pending: HashMap::new(),
            next_session: 0,
            node_tag: String::new(),
            remote_clients: Default::default(),
            stats: ManagerStats::default(),
            outbox: Vec::new(),
        }
    }

    /// `*/<manager_id>`: the `to` of messages for the manager.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The configuration.
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> ManagerStats {
        self.stats
    }

    /// The registry (read-only: what is connected and registered).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether peer `id` takes a broadcast of type `event` (hypha delivers a client's
    /// broadcasts only to the clients subscribed to its type, legacy.md §L6.5).
    pub fn wants_broadcast(&self, id: &str, event: Option<&str>) -> bool {
        self.registry.wants(id, event)
    }

    /// A client connected: `client_connected` to its workspace's subscribers. `Err` with the
    /// reason if its workspace is full (the router then closes it).
    pub fn connected(&mut self, who: &Identity) -> Result<Vec<Outgoing>, String> {
        self.registry
            .connect(who, &self.config.limits)
            .map_err(|e| e.to_string())?;
        let data = protocol::map(vec![
            ("id", who.full_id().into()),
            ("workspace", who.workspace.as_str().into()),
        ]);
        Ok(self.event(
            &who.workspace,
            "client_connected",
            &data,
            Some(&who.full_id()),
        ))
    }

    /// A client connected to (`true`) or left (`false`) another node of the cluster: this
    /// node's subscribers in its workspace hear `client_connected` / `client_disconnected`;
    /// one that left takes its mirrored services with it (`service_removed` each) and fails
    /// the `get_service` calls waiting on it.
    pub fn remote_client_event(&mut self, id: &str, connected: bool) -> Vec<Outgoing> {
        let ws = id.split_once('/').map_or(id, |(ws, _)| ws).to_string();
        let data = protocol::map(vec![("id", id.into()), ("workspace", ws.as_str().into())]);
        if connected {
            // Bounded as the services are: a flood of remote ids cannot grow it without end.
            if self.remote_clients.len() < self.config.limits.services_total {
                self.remote_clients.insert(id.to_string());
            }
            return self.event(&ws, "client_connected", &data, Some(id));
        }
        self.remote_clients.remove(id);
        let mut out = self.fail_waiting_on(id);
        for s in self.registry.remove_remote_provider(id) {
            if s.name != "built-in" {
                out.extend(self.event(&ws, "service_removed", &s.info, None));
            }
        }
        out.extend(self.event(&ws, "client_disconnected", &data, Some(id)));
        out
    }

    /// Clients of `ws` connected to other nodes of the cluster, by full id.
    pub fn remote_clients_in<'a>(&'a self, ws: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let prefix = format!("{ws}/");
        self.remote_clients
            .range(prefix.clone()..)
            .take_while(move |id| id.starts_with(&prefix))
            .map(String::as_str)
    }

    /// Marks this manager's `get_service` sessions with `tag` (cluster mode: one per node).
    pub fn set_node_tag(&mut self, tag: &str) {
        self.node_tag = format!("n{tag}x");
    }

    /// The node tag of a provider's answer (`<session>.resolve`) to a `get_service` another
    /// node's manager made, if `header` is one: this manager made no such call, and its
    /// session carries another tag (cluster.md §C4.8).
    pub fn foreign_answer(&self, header: &RoutingHeader) -> Option<String> {
        let method = header.get_str("method")?;
        let (session, _) = method.rsplit_once('.')?;
        if self.pending.contains_key(session) {
            return None;
        }
        let tag = session.strip_prefix("mgrn")?.split_once('x')?.0;
        (tag.len() == 16 && format!("n{tag}x") != self.node_tag).then(|| tag.to_string())
    }

    /// The services of this node's clients (what a cluster node registers again after Redis
    /// lost them).
    pub fn local_services(&self) -> Vec<registry::Service> {
        self.registry.local_services().cloned().collect()
    }

    /// What changed in this node's services since the last call: for the other nodes of a
    /// cluster to mirror.
    pub fn take_service_changes(&mut self) -> Vec<registry::ServiceChange> {
        self.registry.take_changes()
    }

    /// A service of a client on another node was registered (`added`) or removed: mirrored
    /// here (so `get_service` and `list_services` find it), announced to this node's
    /// subscribers as `service_added` / `service_removed`.
    pub fn remote_service(&mut self, service: registry::Service, added: bool) -> Vec<Outgoing> {
        let ws = service.workspace.clone();
        if added {
            let info = service.info.clone();
            let builtin = service.name == "built-in";
            if !self.registry.add_remote(service, &self.config.limits) || builtin {
                return Vec::new();
            }
            return self.event(&ws, "service_added", &info, None);
        }
        match self.registry.remove_remote(&service.id) {
            Some(s) if s.name != "built-in" => self.event(&ws, "service_removed", &s.info, None),
            _ => Vec::new(),
        }
    }

    /// Rejects the `get_service` calls waiting on provider `id`, and forgets those it made.
    fn fail_waiting_on(&mut self, id: &str) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let waiting: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.provider == id || p.caller == id)
            .map(|(s, _)| s.clone())
            .collect();
        for session in waiting {
            if let Some(p) = self.pending.remove(&session) {
                if p.caller != id {
                    let message = format!("the provider of {} disconnected", p.service);
                    out.extend(self.answer_pending(p, Err(message)));
                }
            }
        }
        out
    }

    /// A client left: its services are removed (`service_removed` each), its workspace hears
    /// `client_disconnected`, and `get_service` calls waiting on it are rejected.
    pub fn disconnected(&mut self, id: &str) -> Vec<Outgoing> {
        let mut out = self.fail_waiting_on(id);
        let Some((client, services)) = self.registry.disconnect(id) else {
            return out;
        };
        let ws = client.identity.workspace;
        for s in services.iter().filter(|s| s.name != "built-in") {
            out.extend(self.event(&ws, "service_removed", &s.info, None));
        }
        let data = protocol::map(vec![("id", id.into()), ("workspace", ws.as_str().into())]);
        out.extend(self.event(&ws, "client_disconnected", &data, None));
        out
    }

    /// A message addressed to the manager, from the authenticated `from`: a call to one of its
    /// functions, or a provider's answer to a call the manager made. Returns what to send.
    pub fn handle(
        &mut self,
        from: &Identity,
        header: &RoutingHeader,
        payload: &[u8],
        now: Instant,
    ) -> Vec<Outgoing> {
        let method = header.get_str("method").unwrap_or_default();
        if let Some((session, callback)) = method.rsplit_once('.') {
            if let Some(p) = self.pending.get(session) {
                if p.provider != from.full_id() {
                    debug!(from = %from.full_id(), "an answer to a call the manager made it to someone else");
                    return Vec::new();
                }
                return match callback {
                    "resolve" | "reject" => {
                        let p = self.pending.remove(session).expect("present");
                        let result = answer_of(callback, payload);
                        self.answer_pending(p, result)
                    }
                    // A provider's heartbeat for a slow answer.
                    _ => Vec::new(),
                };
            }
        }
        let request = match protocol::parse_request(header, payload, self.config.max_request_bytes)
        {
            Ok(r) => r,
            Err(e) => return self.reject_call(from, header, &e.to_string()),
        };
        let mut out = match methods::call(self, from, &request, now) {
            methods::Answer::Now(result) => self.answer(from, &request, result),
            methods::Answer::Later(out) => out,
        };
        out.append(&mut self.outbox);
        out
    }

    /// Rejects a call that cannot be read (`message` says why), if it has a session.
    pub fn reject_call(
        &mut self,
        from: &Identity,
        header: &RoutingHeader,
        message: &str,
    ) -> Vec<Outgoing> {
        let reject = header.get_str("session").map(|s| format!("{s}.reject"));
        self.reply(from, reject.as_deref(), None, Err(message.to_string()))
    }

    /// Rejects the `get_service` calls whose provider did not answer in time; call it now and
    /// then (the router does, once a second).
    pub fn expire(&mut self, now: Instant) -> Vec<Outgoing> {
        let late: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(s, _)| s.clone())
            .collect();
        let mut out = Vec::new();
        for session in late {
            if let Some(p) = self.pending.remove(&session) {
                let message = format!(
                    "the provider of {} did not answer in {:?}",
                    p.service, self.config.provider_timeout
                );
                out.extend(self.answer_pending(p, Err(message)));
            }
        }
        out
    }

    /// Calls waiting for a provider.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The answer to `request`, to whoever waits for it.
    fn answer(
        &mut self,
        from: &Identity,
        request: &Request,
        result: Result<Value, String>,
    ) -> Vec<Outgoing> {
        self.reply(
            from,
            request.reject.as_deref(),
            request.resolve.as_deref(),
            result,
        )
    }

    /// A `.resolve` (with `result`) or a `.reject` (with its message) to `to`; nothing if
    /// nobody waits.
    fn reply(
        &mut self,
        to: &Identity,
        reject: Option<&str>,
        resolve: Option<&str>,
        result: Result<Value, String>,
    ) -> Vec<Outgoing> {
        let (method, payload) = match result {
            Ok(v) => {
                self.stats.resolved += 1;
                (resolve, resolve_payload(v))
            }
            Err(message) => {
                self.stats.rejected += 1;
                debug!(to = %to.full_id(), %message, "workspace manager: reject");
                (reject, reject_payload(&message))
            }
        };
        let Some(method) = method else {
            return Vec::new();
        };
        let parent = method.rsplit_once('.').map(|(s, _)| s);
        vec![self.send(&to.full_id(), &to.workspace, method, None, parent, payload)]
    }

    /// A method call from the manager to `to`.
    fn send(
        &self,
        to: &str,
        ws: &str,
        method: &str,
        session: Option<&str>,
        parent: Option<&str>,
        payload: Bytes,
    ) -> Outgoing {
        Outgoing {
            to: to.to_string(),
            header: method_header(
                &self.target,
                to,
                method,
                session,
                parent,
                ws,
                self.me.user_msgpack(),
            ),
            payload,
        }
    }

    /// `event` with `data` to every client of `ws` subscribed to it (but `except`).
    fn event(
        &mut self,
        ws: &str,
        event: &str,
        data: &Value,
        except: Option<&str>,
    ) -> Vec<Outgoing> {
        let header = protocol::event_header(event, data);
        let out: Vec<Outgoing> = self
            .registry
            .clients_in(ws)
            .filter(|c| {
                c.subscriptions.as_ref().is_some_and(|s| s.contains(event))
                    && Some(c.identity.full_id().as_str()) != except
            })
            .map(|c| Outgoing {
                to: c.identity.full_id(),
                header: header.clone(),
                payload: Bytes::new(),
            })
            .collect();
        self.stats.events += out.len() as u64;
        out
    }

    /// Asks `provider` for its service `name` on behalf of `caller` (`get_service`).
    fn ask_provider(
        &mut self,
        caller: &Identity,
        request: &Request,
        service: &registry::Service,
        now: Instant,
    ) -> Result<Vec<Outgoing>, String> {
        let caller_id = caller.full_id();
        if self.pending.len() >= self.config.max_pending {
            return Err(format!(
                "the workspace manager has {} get_service calls waiting: try again",
                self.pending.len()
            ));
        }
        let mine = self
            .pending
            .values()
            .filter(|p| p.caller == caller_id)
            .count();
        if mine >= self.config.max_pending_per_client {
            return Err(format!(
                "{mine} get_service calls of yours are waiting for providers (limit {})",
                self.config.max_pending_per_client
            ));
        }
        self.next_session += 1;
        let session = format!(
            "mgr{}{:016x}{:06}",
            self.node_tag,
            rand::random::<u64>(),
            self.next_session
        );
        let out = self.send(
            &service.provider,
            &service.workspace,
            "services.built-in.get_service",
            Some(&session),
            None,
            protocol::call_payload(vec![service.name.as_str().into()]),
        );
        self.pending.insert(
            session,
            Pending {
                caller: caller_id,
                resolve: request.resolve.clone(),
                reject: request.reject.clone(),
                service: service.id.clone(),
                provider: service.provider.clone(),
                deadline: now + self.config.provider_timeout,
            },
        );
        Ok(vec![out])
    }

    /// The provider's answer to a `get_service`, completed as hypha does (`id`, the config's
    /// `workspace` and `url`) and passed to the caller.
    fn answer_pending(&mut self, p: Pending, result: Result<Value, String>) -> Vec<Outgoing> {
        let Some(caller) = self.registry.client(&p.caller).map(|c| c.identity.clone()) else {
            return Vec::new();
        };
        let result = result.and_then(|mut svc| {
            if svc.as_map().is_none() {
                return Err(format!(
                    "the provider of {} answered without a service",
                    p.service
                ));
            }
            let ws = p.service.split('/').next().unwrap_or_default().to_string();
            let short = p.service.split_once('/').map_or("", |(_, s)| s).to_string();
            protocol::set(&mut svc, "id", p.service.as_str().into());
            let mut config = protocol::get(&svc, "config")
                .filter(|c| c.is_map())
                .cloned()
                .unwrap_or(Value::Map(Vec::new()));
            protocol::set(&mut config, "workspace", ws.as_str().into());
            let url = format!("{}/{ws}/services/{short}", self.config.public_base_url);
            protocol::set(&mut config, "url", url.into());
            protocol::set(&mut svc, "config", config);
            Ok(svc)
        });
        self.reply(&caller, p.reject.as_deref(), p.resolve.as_deref(), result)
    }
}

/// A provider's `.resolve` / `.reject` payload as a result.
fn answer_of(callback: &str, payload: &[u8]) -> Result<Value, String> {
    let extra = rmpv::decode::read_value_with_max_depth(&mut &payload[..], protocol::MAX_DEPTH)
        .map_err(|e| format!("the provider's answer is not msgpack: {e}"))?;
    let first = protocol::get(&extra, "args")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Nil);
    if callback == "resolve" {
        Ok(first)
    } else {
        let message = protocol::get(&first, "_rvalue")
            .and_then(Value::as_str)
            .unwrap_or("the provider refused")
            .to_string();
        Err(message)
    }
}

#[cfg(test)]
mod tests {
    use super::protocol::{call_payload, encode, map};
    use super::*;

    fn call(m: &mut Manager, from: &Identity, f: &str, args: Vec<Value>, s: &str) -> Vec<Outgoing> {
        let h = RoutingHeader::new()
            .with("type", "method")
            .with("to", m.target().to_string())
            .with("method", format!("services.default.{f}"))
            .with("session", s.to_string());
        m.handle(from, &h, &call_payload(args), Instant::now())
    }

    #[test]
    fn get_service_asks_the_provider_and_completes_its_answer() {
        let mut m = Manager::new(ManagerConfig {
            public_base_url: "http://h".into(),
            ..ManagerConfig::default()
        });
        let (prov, caller) = (
            Identity::anonymous("ws", "p"),
            Identity::anonymous("ws", "c"),
        );
        m.connected(&prov).unwrap();
        m.connected(&caller).unwrap();
        assert!(call(
            &mut m,
            &caller,
            "subscribe",
            vec!["service_added".into()],
            "s0"
        )
        .iter()
        .all(|o| o.to == "ws/c"));
        let info = map(vec![("id", "calc".into())]);
        let out = call(&mut m, &prov, "register_service", vec![info], "s1");
        // The resolve to the provider, then the event to the subscribed caller.
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].to, "ws/c");
        assert_eq!(out[1].header.get_str("type"), Some("service_added"));
        let out = call(&mut m, &caller, "get_service", vec!["p:calc".into()], "s2");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, "ws/p");
        assert_eq!(
            out[0].header.get_str("method"),
            Some("services.built-in.get_service")
        );
        let session = out[0].header.get_str("session").unwrap().to_string();
        // The provider answers (a stranger's answer to the same session is ignored).
        let answer = RoutingHeader::new()
            .with("to", m.target().to_string())
            .with("method", format!("{session}.resolve"));
        let desc = encode(&map(vec![(
            "args",
            Value::Array(vec![map(vec![("id", "calc".into())])]),
        )]));
        assert!(m.handle(&caller, &answer, &desc, Instant::now()).is_empty());
        let out = m.handle(&prov, &answer, &desc, Instant::now());
        assert_eq!(out[0].to, "ws/c");
        assert_eq!(out[0].header.get_str("method"), Some("s2.resolve"));
        let v = rmpv::decode::read_value(&mut &out[0].payload[..]).unwrap();
        let svc = &protocol::get(&v, "args").unwrap().as_array().unwrap()[0];
        assert_eq!(
            protocol::get(svc, "id").and_then(Value::as_str),
            Some("ws/p:calc")
        );
        let url = protocol::get(protocol::get(svc, "config").unwrap(), "url");
        assert_eq!(
            url.and_then(Value::as_str),
            Some("http://h/ws/services/p:calc")
        );
        assert_eq!(m.pending(), 0);
    }

    #[test]
    fn a_silent_provider_expires_and_a_departing_one_rejects() {
        let mut m = Manager::new(ManagerConfig::default());
        let (prov, caller) = (
            Identity::anonymous("ws", "p"),
            Identity::anonymous("ws", "c"),
        );
        m.connected(&prov).unwrap();
        m.connected(&caller).unwrap();
        call(
            &mut m,
            &prov,
            "register_service",
            vec![map(vec![("id", "calc".into())])],
            "s1",
        );
        call(&mut m, &caller, "get_service", vec!["calc".into()], "s2");
        call(&mut m, &caller, "get_service", vec!["calc".into()], "s3");
        assert_eq!(m.pending(), 2);
        let later = Instant::now() + m.config().provider_timeout + Duration::from_millis(1);
        let out = m.expire(later);
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .all(|o| o.header.get_str("method").unwrap().ends_with(".reject")));
        call(&mut m, &caller, "get_service", vec!["calc".into()], "s4");
        let out = m.disconnected("ws/p");
        assert_eq!(out[0].header.get_str("method"), Some("s4.reject"));
        assert_eq!(m.pending(), 0);
        assert_eq!(m.registry().service_count(), 0);
    }
}
