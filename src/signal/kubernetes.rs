//! The Kubernetes backend: a `DriftDetected=True` condition on the host's
//! own Node, optionally with a cordon (cargo feature `kube`).
//!
//! This is what node-problem-detector does for its problem conditions: a
//! strategic merge patch of the Node's `status` subresource
//! (`PATCH /api/v1/nodes/NAME/status`) holding one entry of
//! `status.conditions`. Conditions merge by `type`, so every other
//! condition (the kubelet's `Ready`, NPD's own) is left alone. Something
//! else acts on the condition: Cluster API's MachineHealthCheck, or a small
//! remediation controller (see the README).
//!
//! With `cordon = true` the Node's `spec.unschedulable` is set too (a
//! second strategic merge patch of the Node itself), so nothing new is
//! scheduled on the drifted host while it waits to be replaced.
//!
//! The node is `node_name` from the config, else `$NODE_NAME` (the
//! downward API's `spec.nodeName`), else the hostname, lowercased as the
//! kubelet does. Credentials: the kubeconfig file if one is configured
//! (read as a secret, [`crate::fsutil::read_secret`]: refused when others
//! can read it), else `kube::Config::infer` (`$KUBECONFIG` or
//! `~/.kube/config`, then the in-cluster service account). The client is
//! built on the first send and kept; `new` does no network IO.
//!
//! Both patches are idempotent, so a retry after a partial failure (the
//! condition set, the cordon refused) just does both again. driftd never
//! sets the condition back to `False`: a drifted node is to be replaced.
//!
//! Config: `node_name`, `cordon` (default false), `kubeconfig`; no
//! `timeout` (connect 10s, each request 30s). The config and the patches
//! are compiled in every build; the client needs the cargo feature `kube`,
//! and without it `driftd validate` and `driftd run` refuse the backend.

#[cfg(not(feature = "kube"))]
use super::backend::without_feature;
#[cfg(feature = "kube")]
use super::backend::SendFuture;
use super::backend::{in_image, Backend, BackendSpec, BackendType};
use super::Signal;
use crate::spec::Table;
#[cfg(feature = "kube")]
use k8s_openapi::api::core::v1::Node;
#[cfg(feature = "kube")]
use kube::api::{Api, Patch, PatchParams};
#[cfg(feature = "kube")]
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `type = "kubernetes"`.
pub static TYPE: BackendType = BackendType {
    name: "kubernetes",
    timeout: None,
    example: "",
    parse,
};

/// The Kubernetes backend's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConditionSpec {
    /// Default: `$NODE_NAME`, else the hostname.
    pub node_name: Option<String>,
    /// Also mark the Node unschedulable.
    pub cordon: bool,
    /// Default: `$KUBECONFIG` or `~/.kube/config`, else the in-cluster
    /// service account.
    pub kubeconfig: Option<PathBuf>,
}

fn parse(t: &mut Table<'_>, _timeout: Duration) -> Option<Box<dyn BackendSpec>> {
    Some(Box::new(NodeConditionSpec {
        node_name: t.take("node_name"),
        cordon: t.take("cordon").unwrap_or(false),
        kubeconfig: t.take("kubeconfig"),
    }))
}

impl BackendSpec for NodeConditionSpec {
    fn kind(&self) -> &'static str {
        TYPE.name
    }

    /// The node name and the kubeconfig, as `build` reads them.
    #[cfg(feature = "kube")]
    fn preflight(&self) -> Result<String, String> {
        let b = self.node_condition(TYPE.name)?;
        Ok(format!("node {}", b.node()))
    }

    #[cfg(not(feature = "kube"))]
    fn preflight(&self) -> Result<String, String> {
        Err(without_feature("kube"))
    }

    fn rebase(&mut self, image_root: &Path) {
        if let Some(k) = &mut self.kubeconfig {
            *k = in_image(image_root, k);
        }
    }

    #[cfg(feature = "kube")]
    fn build(&self, name: &str) -> Result<Box<dyn Backend>, String> {
        Ok(Box::new(self.node_condition(name)?))
    }

    #[cfg(not(feature = "kube"))]
    fn build(&self, _name: &str) -> Result<Box<dyn Backend>, String> {
        Err(without_feature("kube"))
    }
}

#[cfg(feature = "kube")]
impl NodeConditionSpec {
    fn node_condition(&self, name: &str) -> Result<NodeCondition, String> {
        NodeCondition::new(
            name,
            self.node_name.clone(),
            self.cordon,
            self.kubeconfig.clone(),
        )
    }
}

/// The condition type (and the reason when the host drifted).
pub const CONDITION: &str = "DriftDetected";

/// The field manager recorded in the Node's `managedFields`.
pub const FIELD_MANAGER: &str = "driftd";

#[cfg(feature = "kube")]
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
#[cfg(feature = "kube")]
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest image id or reason quoted in the condition's message.
const QUOTE_MAX: usize = 128;

/// Longest API error message kept in an error.
#[cfg(feature = "kube")]
const API_MESSAGE_MAX: usize = 300;

#[cfg(feature = "kube")]
pub struct NodeCondition {
    name: String,
    node: String,
    cordon: bool,
    /// The kubeconfig file and its content (read in `new`).
    kubeconfig: Option<(PathBuf, Kubeconfig)>,
    client: tokio::sync::OnceCell<kube::Client>,
}

/// Is `name` a valid Node name (an RFC 1123 DNS subdomain)? It goes into
/// a URL path, so nothing else may pass.
fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The Node this host is: the configured name, else `env_node_name`
/// (`$NODE_NAME`), else `hostname` lowercased (as the kubelet names its
/// Node). Empty values count as absent.
pub fn resolve_node_name(
    configured: Option<&str>,
    env_node_name: Option<&str>,
    hostname: Option<&str>,
) -> Result<String, String> {
    fn present(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|s| !s.is_empty())
    }
    let (name, from) = if let Some(n) = present(configured) {
        (n.to_string(), "node_name")
    } else if let Some(n) = present(env_node_name) {
        (n.to_string(), "$NODE_NAME")
    } else if let Some(n) = present(hostname) {
        (n.to_ascii_lowercase(), "the hostname")
    } else {
        return Err(
            "no node name: set `node_name`, or $NODE_NAME (the downward API's spec.nodeName)"
                .into(),
        );
    };
    if valid_node_name(&name) {
        Ok(name)
    } else {
        Err(format!(
            "node name {name:?} (from {from}) is not a valid Kubernetes Node name \
             (lowercase letters, digits, '-' and '.')"
        ))
    }
}

/// At most `max` characters of `s`, with `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// The condition's reason: `DriftDetected`, or `VerdictUnknown` when the
/// signal is about a verdict that stayed unknown.
pub fn condition_reason(signal: &Signal) -> &'static str {
    if signal.event == "verdict.unknown" {
        "VerdictUnknown"
    } else {
        CONDITION
    }
}

/// The condition's short message: image id, manifest digest, number of
/// findings and the idempotency key.
pub fn condition_message(signal: &Signal) -> String {
    let what = match (signal.event.as_str(), &signal.reason) {
        ("verdict.unknown", Some(r)) => format!("verdict unknown ({})", clip(r, QUOTE_MAX)),
        ("verdict.unknown", None) => "verdict unknown".to_string(),
        _ => "drifted".to_string(),
    };
    format!(
        "driftd: {what} from image {} (manifest {}): {} finding(s); idempotency key {}",
        clip(&signal.image_id, QUOTE_MAX),
        signal.manifest_digest,
        signal.findings_total,
        signal.idempotency_key
    )
}

/// The strategic merge patch of the Node's status: one condition,
/// `DriftDetected=True`, set at `now` (RFC 3339).
pub fn condition_patch(signal: &Signal, now: &str) -> Value {
    json!({
        "status": {
            "conditions": [{
                "type": CONDITION,
                "status": "True",
                "reason": condition_reason(signal),
                "message": condition_message(signal),
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }]
        }
    })
}

/// The strategic merge patch that cordons a Node.
pub fn cordon_patch() -> Value {
    json!({ "spec": { "unschedulable": true } })
}

/// An API failure as `HTTP code (reason): message`; anything else (no
/// connection, TLS, credentials) as kube describes it. Neither holds the
/// bearer token: kube keeps it out of its errors.
#[cfg(feature = "kube")]
fn describe(e: kube::Error) -> String {
    match e {
        kube::Error::Api(r) => {
            let mut s = format!("HTTP {}", r.code);
            if !r.reason.is_empty() {
                s.push_str(&format!(" ({})", r.reason));
            }
            if !r.message.is_empty() {
                s.push_str(&format!(": {}", clip(&r.message, API_MESSAGE_MAX)));
            }
            s
        }
        other => {
            // kube's own text is terse ("client error (Connect)"): add the
            // causes ("tcp connect error: Connection refused").
            let mut s = other.to_string();
            let mut cause = std::error::Error::source(&other);
            while let Some(c) = cause {
                let t = c.to_string();
                if !s.contains(&t) {
                    s.push_str(": ");
                    s.push_str(&t);
                }
                cause = c.source();
            }
            s
        }
    }
}

#[cfg(feature = "kube")]
impl NodeCondition {
    /// Resolve the node name and read the kubeconfig (if any); no network
    /// IO.
    pub fn new(
        name: &str,
        node_name: Option<String>,
        cordon: bool,
        kubeconfig: Option<PathBuf>,
    ) -> Result<NodeCondition, String> {
        let env = std::env::var("NODE_NAME").ok();
        let hostname = super::hostname();
        let node = resolve_node_name(node_name.as_deref(), env.as_deref(), hostname.as_deref())?;
        let kubeconfig = match kubeconfig {
            None => None,
            Some(path) => {
                let kc = read_kubeconfig(&path)?;
                Some((path, kc))
            }
        };
        Ok(NodeCondition {
            name: name.to_string(),
            node,
            cordon,
            kubeconfig,
            client: tokio::sync::OnceCell::new(),
        })
    }

    /// The Node this backend patches.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The client, built on first use (a failure is retried next time).
    async fn client(&self) -> Result<kube::Client, String> {
        self.client
            .get_or_try_init(|| async {
                let mut config = match &self.kubeconfig {
                    None => kube::Config::infer().await.map_err(|e| {
                        format!("no Kubernetes credentials (kubeconfig or in-cluster service account): {e}")
                    })?,
                    Some((path, kc)) => {
                        kube::Config::from_custom_kubeconfig(kc.clone(), &KubeConfigOptions::default())
                            .await
                            .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
                    }
                };
                // A hung API server must not hold an attempt for kube's
                // default of five minutes.
                config.connect_timeout = Some(CONNECT_TIMEOUT);
                config.read_timeout = Some(REQUEST_TIMEOUT);
                config.write_timeout = Some(REQUEST_TIMEOUT);
                kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
            })
            .await
            .cloned()
    }

    async fn patch(&self, s: &Signal) -> Result<String, String> {
        let nodes: Api<Node> = Api::all(self.client().await?);
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let now = super::rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        let reason = condition_reason(s);
        nodes
            .patch_status(&self.node, &pp, &Patch::Strategic(condition_patch(s, &now)))
            .await
            .map_err(|e| {
                format!(
                    "PATCH node {} status (condition {CONDITION}): {}",
                    self.node,
                    describe(e)
                )
            })?;
        let mut done = format!(
            "node {}: condition {CONDITION}=True (reason {reason}) set",
            self.node
        );
        if self.cordon {
            nodes
                .patch(&self.node, &pp, &Patch::Strategic(cordon_patch()))
                .await
                .map_err(|e| {
                    format!(
                        "node {}: condition set, but cordon (PATCH spec.unschedulable) failed: {}",
                        self.node,
                        describe(e)
                    )
                })?;
            done.push_str("; cordoned");
        }
        Ok(done)
    }
}

/// The kubeconfig, read as the secret it is ([`crate::fsutil::read_secret`]),
/// its relative file names made absolute as `Kubeconfig::read_from` does.
#[cfg(feature = "kube")]
fn read_kubeconfig(path: &Path) -> Result<Kubeconfig, String> {
    let bytes = crate::fsutil::read_secret(path, "kubeconfig").map_err(|e| e.to_string())?;
    let err = |e: &dyn std::fmt::Display| format!("kubeconfig {}: {e}", path.display());
    let text = String::from_utf8(bytes).map_err(|e| err(&e))?;
    let mut kc = Kubeconfig::from_yaml(&text).map_err(|e| err(&e))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let abs = |f: &mut Option<String>| {
        if let Some(p) = f.as_mut().filter(|p| Path::new(p.as_str()).is_relative()) {
            *p = dir.join(&*p).to_string_lossy().into_owned();
        }
    };
    for c in kc.clusters.iter_mut().filter_map(|n| n.cluster.as_mut()) {
        abs(&mut c.certificate_authority);
    }
    for a in kc
        .auth_infos
        .iter_mut()
        .filter_map(|n| n.auth_info.as_mut())
    {
        abs(&mut a.client_certificate);
        abs(&mut a.client_key);
        abs(&mut a.token_file);
    }
    Ok(kc)
}

#[cfg(feature = "kube")]
impl Backend for NodeCondition {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn send<'a>(&'a self, signal: &'a Signal) -> SendFuture<'a> {
        Box::pin(self.patch(signal))
    }
}

#[cfg(test)]
mod tests;
