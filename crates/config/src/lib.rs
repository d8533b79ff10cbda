//! Configuration the pod's binaries share: the `kube-system/kube-dns` ConfigMap and
//! `/etc/resolv.conf`.
//!
//! Owns reading the ConfigMap as the kubelet mounts it (one file per key, in a directory that may
//! be missing), parsing and validating its keys (`upstreamNameservers`, `stubDomains`,
//! `federations`) the way kube-dns and dnsmasq-nanny did, noticing when it changes
//! ([`watch_dir`]), reading `resolv.conf`, and the `ip[:port]` nameserver syntax used by flags.
//!
//! Does not own acting on the configuration: resolving host names given as stub-domain servers,
//! choosing forwarders, warning that federations are ignored, and registering metrics are the
//! binaries' business. It does not talk to the Kubernetes API either; the mounted directory is the
//! only source.

mod config;
mod dir;
mod error;
mod names;
mod nameserver;
mod resolv;
mod watch;

pub use config::{
    DnsConfig, FEDERATIONS_KEY, MAX_UPSTREAM_NAMESERVERS, STUB_DOMAINS_KEY, StubDomain,
    UPSTREAM_NAMESERVERS_KEY, parse_federations,
};
pub use dir::{ConfigFiles, MAX_FILE_BYTES, read_dir};
pub use error::{ConfigError, NameserverError};
pub use nameserver::{DNS_PORT, Nameserver, parse_nameserver, parse_nameserver_list};
pub use resolv::{RESOLV_CONF_PATH, ResolvConf, parse_resolv_conf, read_resolv_conf};
pub use watch::{ConfigWatch, DirPoller, watch_dir};
