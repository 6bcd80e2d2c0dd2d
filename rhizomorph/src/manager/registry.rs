//! The workspace manager's tables (legacy.md §L6.3): which clients are connected in which
//! workspace, which services each registered, what each subscribed to, and how a service id
//! (`svc`, `client:svc`, `ws/client:svc`) resolves under hypha's visibility rules.
//!
//! Owns every count the manager bounds (services per client, clients per workspace, services
//! in all). Never sends anything and never decodes a message: the manager does both.

use std::collections::{BTreeMap, HashMap, HashSet};

use rmpv::Value;

use crate::legacy::Identity;

/// Who may get a service (hypha's `config.visibility`; `protected` when unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Anyone, from any workspace, finds it by id and in listings.
    Public,
    /// Anyone with its full id gets it; listings outside its workspace leave it out.
    Unlisted,
    /// Only clients of its own workspace.
    Protected,
}

impl Visibility {
    /// Its name in a service's config.
    pub fn name(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Unlisted => "unlisted",
            Visibility::Protected => "protected",
        }
    }

    /// From the `visibility` string of a service's config.
    pub fn parse(s: Option<&str>) -> Visibility {
        match s {
            Some("public") => Visibility::Public,
            Some("unlisted") => Visibility::Unlisted,
            _ => Visibility::Protected,
        }
    }
}

/// A registered service.
#[derive(Debug, Clone)]
pub struct Service {
    /// `<workspace>/<client_id>:<name>`.
    pub id: String,
    /// Its workspace.
    pub workspace: String,
    /// `<workspace>/<client_id>` of the client that provides it.
    pub provider: String,
    /// The service's own name (`echo`, `built-in`).
    pub name: String,
    /// Who may get it.
    pub visibility: Visibility,
    /// The description as listed (`list_services`, `get_service_info`, events).
    pub info: Value,
}

impl Service {
    /// The service as one msgpack array `[id, workspace, provider, name, visibility, info]`:
    /// how a cluster's nodes tell each other about it (cluster.md §C4.7).
    pub fn to_msgpack(&self) -> Vec<u8> {
        let v = Value::Array(vec![
            self.id.as_str().into(),
            self.workspace.as_str().into(),
            self.provider.as_str().into(),
            self.name.as_str().into(),
            self.visibility.name().into(),
            self.info.clone(),
        ]);
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut out, &v);
        out
    }

    /// Reads [`to_msgpack`](Self::to_msgpack)'s bytes back, within `max_bytes`; `None` if
    /// they are not such an array. The id must name the provider (`<provider>:<name>`).
    pub fn from_msgpack(bytes: &[u8], max_bytes: usize) -> Option<Service> {
        if bytes.len() > max_bytes {
            return None;
        }
        let v = rmpv::decode::read_value(&mut &bytes[..]).ok()?;
        let [id, ws, provider, name, visibility, info] = v.as_array()?.as_slice() else {
            return None;
        };
        let service = Service {
            id: id.as_str()?.to_string(),
            workspace: ws.as_str()?.to_string(),
            provider: provider.as_str()?.to_string(),
            name: name.as_str()?.to_string(),
            visibility: Visibility::parse(visibility.as_str()),
            info: info.clone(),
        };
        let own = service.id == format!("{}:{}", service.provider, service.name)
            && service
                .provider
                .starts_with(&format!("{}/", service.workspace));
        own.then_some(service)
    }
}

/// A connected client, as the manager knows it.
#[derive(Debug, Clone)]
pub struct Client {
    /// Its identity.
    pub identity: Identity,
    /// Names of the services it registered.
    pub services: Vec<String>,
    /// Event types it subscribed to; `None` until it first subscribes (such a client gets
    /// every broadcast, as a router without a manager delivers them, legacy.md §L5.3).
    pub subscriptions: Option<HashSet<String>>,
}

/// Why a lookup or a registration failed; each becomes the `.reject` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No service matches.
    #[error("Service not found: {0}")]
    NotFound(String),
    /// A service of another workspace that is not public.
    #[error("Permission denied for getting protected service: {0}")]
    Denied(String),
    /// The caller is not connected (it left while its call was on the way).
    #[error("client {0} is not connected")]
    UnknownClient(String),
    /// A client registers a service for another client or workspace.
    #[error("service id {id:?} does not belong to {client}")]
    NotYours {
        /// The id asked for.
        id: String,
        /// The caller.
        client: String,
    },
    /// A limit of [`Limits`].
    #[error("{what}: limit of {limit} reached")]
    Limit {
        /// What is limited.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
}

/// The counts the registry bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Services one client may register (its `built-in` included).
    pub services_per_client: usize,
    /// Clients connected in one workspace at once.
    pub clients_per_workspace: usize,
    /// Services registered in all.
    pub services_total: usize,
    /// Event types one client may subscribe to.
    pub subscriptions_per_client: usize,
}

/// A change to the services of this node's clients, for the other nodes of a cluster to
/// mirror (cluster.md §C4.7).
#[derive(Debug, Clone)]
pub struct ServiceChange {
    /// The service.
    pub service: Service,
    /// Added (or replaced) if `true`, removed if `false`.
    pub added: bool,
}

/// Clients and services, by id.
#[derive(Debug, Default)]
pub struct Registry {
    clients: HashMap<String, Client>,
    per_workspace: HashMap<String, usize>,
    /// By full service id; ordered so that a lookup's first match is stable. Holds the
    /// services of clients of other nodes too (`remote`).
    services: BTreeMap<String, Service>,
    /// Providers on other nodes of a cluster → their services' full ids.
    remote: HashMap<String, Vec<String>>,
    /// Changes to local clients' services since the last [`take_changes`](Self::take_changes).
    changes: Vec<ServiceChange>,
}

impl Registry {
    /// Adds a connected client; `Err` if its workspace is full.
    pub fn connect(&mut self, identity: &Identity, limits: &Limits) -> Result<(), RegistryError> {
        let id = identity.full_id();
        if self.clients.contains_key(&id) {
            return Ok(());
        }
        let n = self
            .per_workspace
            .entry(identity.workspace.clone())
            .or_default();
        if *n >= limits.clients_per_workspace {
            return Err(RegistryError::Limit {
                what: "clients in this workspace",
                limit: limits.clients_per_workspace,
            });
        }
        *n += 1;
        self.clients.insert(
            id,
            Client {
                identity: identity.clone(),
                services: Vec::new(),
                subscriptions: None,
            },
        );
        Ok(())
    }

    /// Removes a client and its services; returns the services it had.
    pub fn disconnect(&mut self, id: &str) -> Option<(Client, Vec<Service>)> {
        let client = self.clients.remove(id)?;
        if let Some(n) = self.per_workspace.get_mut(&client.identity.workspace) {
            *n -= 1;
            if *n == 0 {
                self.per_workspace.remove(&client.identity.workspace);
            }
        }
        let removed: Vec<Service> = client
            .services
            .iter()
            .filter_map(|name| self.services.remove(&format!("{id}:{name}")))
            .collect();
        self.changes.extend(removed.iter().map(|s| ServiceChange {
            service: s.clone(),
            added: false,
        }));
        Some((client, removed))
    }

    /// A connected client.
    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.get(id)
    }

    /// Clients of `workspace`, by id.
    pub fn clients_in<'a>(&'a self, workspace: &'a str) -> impl Iterator<Item = &'a Client> + 'a {
        self.clients
            .values()
            .filter(move |c| c.identity.workspace == workspace)
    }

    /// Adds or replaces `service` for its provider.
    pub fn register(&mut self, service: Service, limits: &Limits) -> Result<(), RegistryError> {
        let client = self
            .clients
            .get_mut(&service.provider)
            .ok_or_else(|| RegistryError::UnknownClient(service.provider.clone()))?;
        if !client.services.contains(&service.name) {
            if client.services.len() >= limits.services_per_client {
                return Err(RegistryError::Limit {
                    what: "services of one client",
                    limit: limits.services_per_client,
                });
            }
            if self.services.len() >= limits.services_total {
                return Err(RegistryError::Limit {
                    what: "services on this server",
                    limit: limits.services_total,
                });
            }
            client.services.push(service.name.clone());
        }
        self.changes.push(ServiceChange {
            service: service.clone(),
            added: true,
        });
        self.services.insert(service.id.clone(), service);
        Ok(())
    }

    /// The services of clients connected here (not the mirrored ones).
    pub fn local_services(&self) -> impl Iterator<Item = &Service> + '_ {
        self.services
            .values()
            .filter(|s| self.clients.contains_key(&s.provider))
    }

    /// What changed in local clients' services since the last call (for a cluster to mirror).
    pub fn take_changes(&mut self) -> Vec<ServiceChange> {
        std::mem::take(&mut self.changes)
    }

    /// Mirrors a service of a client on another node (added, or replaced); `false` if it is
    /// refused: its provider is connected here (a local registration wins), or the server's
    /// service limit is reached.
    pub fn add_remote(&mut self, service: Service, limits: &Limits) -> bool {
        if self.clients.contains_key(&service.provider) {
            return false;
        }
        let ids = self.remote.entry(service.provider.clone()).or_default();
        if !ids.contains(&service.id) {
            if self.services.len() >= limits.services_total {
                return false;
            }
            ids.push(service.id.clone());
        }
        self.services.insert(service.id.clone(), service);
        true
    }

    /// Forgets a mirrored service; returns it if it was mirrored.
    pub fn remove_remote(&mut self, id: &str) -> Option<Service> {
        let provider = self.services.get(id)?.provider.clone();
        let ids = self.remote.get_mut(&provider)?;
        ids.retain(|i| i != id);
        if ids.is_empty() {
            self.remote.remove(&provider);
        }
        self.services.remove(id)
    }

    /// Forgets every mirrored service of `provider` (it left its node); returns them.
    pub fn remove_remote_provider(&mut self, provider: &str) -> Vec<Service> {
        let ids = self.remote.remove(provider).unwrap_or_default();
        ids.iter()
            .filter_map(|id| self.services.remove(id))
            .collect()
    }

    /// Removes service `id` (a full id) of `provider`.
    pub fn unregister(&mut self, provider: &str, id: &str) -> Result<Service, RegistryError> {
        let service = self.unregister_quietly(provider, id)?;
        self.changes.push(ServiceChange {
            service: service.clone(),
            added: false,
        });
        Ok(service)
    }

    fn unregister_quietly(&mut self, provider: &str, id: &str) -> Result<Service, RegistryError> {
        let service = self
            .services
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        if service.provider != provider {
            return Err(RegistryError::NotYours {
                id: id.to_string(),
                client: provider.to_string(),
            });
        }
        let service = self.services.remove(id).expect("present: just looked up");
        if let Some(c) = self.clients.get_mut(provider) {
            c.services.retain(|n| *n != service.name);
        }
        Ok(service)
    }

    /// Resolves a service id as hypha's `get_service_info` does: `svc` and `client:svc` are in
    /// the caller's workspace, `ws/svc` means any client of `ws`, `@app` is ignored; a service
    /// of another workspace must be public or unlisted.
    pub fn lookup(&self, query: &str, caller_workspace: &str) -> Result<&Service, RegistryError> {
        let query = query.split('@').next().unwrap_or(query);
        let (ws, rest) = query.split_once('/').unwrap_or((caller_workspace, query));
        let (client, name) = rest.split_once(':').unwrap_or(("*", rest));
        let not_found = || RegistryError::NotFound(format!("{ws}/{client}:{name}"));
        let mut denied = None;
        let prefix = format!("{ws}/");
        for s in self.services.range(prefix.clone()..) {
            let (id, s) = s;
            if !id.starts_with(&prefix) {
                break;
            }
            let provider_id = &s.provider[prefix.len()..];
            if s.name != name || (client != "*" && provider_id != client) {
                continue;
            }
            if s.workspace != caller_workspace && s.visibility == Visibility::Protected {
                denied = Some(RegistryError::Denied(s.id.clone()));
                continue;
            }
            return Ok(s);
        }
        Err(denied.unwrap_or_else(not_found))
    }

    /// Services a client of `caller_workspace` may list in `workspace` (all of its own; the
    /// public ones of another), filtered by provider client id and service name.
    pub fn list<'a>(
        &'a self,
        workspace: &'a str,
        caller_workspace: &'a str,
        client: Option<&'a str>,
        name: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        let prefix = format!("{workspace}/");
        self.services
            .range(prefix.clone()..)
            .take_while(move |(id, _)| id.starts_with(&prefix))
            .map(|(_, s)| s)
            .filter(move |s| workspace == caller_workspace || s.visibility == Visibility::Public)
            .filter(move |s| client.map_or(true, |c| s.provider.rsplit('/').next() == Some(c)))
            .filter(move |s| name.map_or(true, |n| s.name == n))
    }

    /// Subscribes client `id` to `events`.
    pub fn subscribe(
        &mut self,
        id: &str,
        events: &[String],
        limits: &Limits,
    ) -> Result<(), RegistryError> {
        let client = self
            .clients
            .get_mut(id)
            .ok_or_else(|| RegistryError::UnknownClient(id.to_string()))?;
        let subs = client.subscriptions.get_or_insert_with(HashSet::new);
        for e in events {
            if subs.len() >= limits.subscriptions_per_client && !subs.contains(e) {
                return Err(RegistryError::Limit {
                    what: "event subscriptions of one client",
                    limit: limits.subscriptions_per_client,
                });
            }
            subs.insert(e.clone());
        }
        Ok(())
    }

    /// Unsubscribes client `id` from `events`.
    pub fn unsubscribe(&mut self, id: &str, events: &[String]) {
        if let Some(subs) = self
            .clients
            .get_mut(id)
            .and_then(|c| c.subscriptions.as_mut())
        {
            for e in events {
                subs.remove(e);
            }
        }
    }

    /// Whether client `id` takes a broadcast of type `event`: it subscribed to it, or it never
    /// subscribed to anything (a peer that does not use the manager), or it is not a client the
    /// manager knows (a native peer without the manager's protocol).
    pub fn wants(&self, id: &str, event: Option<&str>) -> bool {
        match self.clients.get(id).and_then(|c| c.subscriptions.as_ref()) {
            None => true,
            Some(subs) => event.is_some_and(|e| subs.contains(e)),
        }
    }

    /// Services registered in all.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        services_per_client: 3,
        clients_per_workspace: 2,
        services_total: 100,
        subscriptions_per_client: 4,
    };

    fn service(ws: &str, client: &str, name: &str, visibility: Visibility) -> Service {
        Service {
            id: format!("{ws}/{client}:{name}"),
            workspace: ws.into(),
            provider: format!("{ws}/{client}"),
            name: name.into(),
            visibility,
            info: Value::Nil,
        }
    }

    #[test]
    fn ids_resolve_as_hypha_resolves_them() {
        let mut r = Registry::default();
        r.connect(&Identity::anonymous("ws-a", "prov"), &LIMITS)
            .unwrap();
        r.connect(&Identity::anonymous("ws-b", "other"), &LIMITS)
            .unwrap();
        r.register(service("ws-a", "prov", "echo", Visibility::Public), &LIMITS)
            .unwrap();
        r.register(
            service("ws-a", "prov", "secret", Visibility::Protected),
            &LIMITS,
        )
        .unwrap();
        for q in [
            "echo",
            "prov:echo",
            "ws-a/prov:echo",
            "ws-a/echo",
            "echo@app",
        ] {
            assert_eq!(r.lookup(q, "ws-a").unwrap().id, "ws-a/prov:echo", "{q}");
        }
        assert_eq!(
            r.lookup("ws-a/prov:echo", "ws-b").unwrap().id,
            "ws-a/prov:echo"
        );
        assert!(matches!(
            r.lookup("ws-a/secret", "ws-b"),
            Err(RegistryError::Denied(_))
        ));
        assert!(r.lookup("ws-a/secret", "ws-a").is_ok());
        assert!(matches!(
            r.lookup("nope", "ws-a"),
            Err(RegistryError::NotFound(_))
        ));
        assert_eq!(r.list("ws-a", "ws-b", None, None).count(), 1);
        assert_eq!(r.list("ws-a", "ws-a", None, None).count(), 2);
        let (_, gone) = r.disconnect("ws-a/prov").unwrap();
        assert_eq!(gone.len(), 2);
        assert_eq!(r.service_count(), 0);
    }

    #[test]
    fn limits_hold() {
        let mut r = Registry::default();
        r.connect(&Identity::anonymous("ws-a", "a"), &LIMITS)
            .unwrap();
        r.connect(&Identity::anonymous("ws-a", "b"), &LIMITS)
            .unwrap();
        assert!(matches!(
            r.connect(&Identity::anonymous("ws-a", "c"), &LIMITS),
            Err(RegistryError::Limit { limit: 2, .. })
        ));
        for n in 0..3 {
            r.register(
                service("ws-a", "a", &format!("s{n}"), Visibility::Public),
                &LIMITS,
            )
            .unwrap();
        }
        // Replacing one is not a new one; a fourth is refused.
        r.register(service("ws-a", "a", "s0", Visibility::Public), &LIMITS)
            .unwrap();
        assert!(r
            .register(service("ws-a", "a", "s3", Visibility::Public), &LIMITS)
            .is_err());
        assert!(matches!(
            r.unregister("ws-a/b", "ws-a/a:s0"),
            Err(RegistryError::NotYours { .. })
        ));
        let many: Vec<String> = (0..5).map(|i| format!("e{i}")).collect();
        assert!(r.subscribe("ws-a/a", &many, &LIMITS).is_err());
        assert!(
            r.wants("ws-a/b", Some("anything")),
            "never subscribed: gets all"
        );
        assert!(r.wants("ws-a/a", Some("e0")));
        assert!(!r.wants("ws-a/a", Some("e4")));
    }
}
