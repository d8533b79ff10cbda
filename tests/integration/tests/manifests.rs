//! The manifests agree with the code: every object is a valid Kubernetes object, every container
//! command line is accepted by the binary its image runs, declared ports and probes are ones the
//! binaries serve (asked of the real servers, started in-process), the RBAC rules are exactly
//! the requests kubedns makes to an API server, and the drop-in manifest is the upstream addon
//! but for what it has to change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use integration_tests::client::http_get;
use integration_tests::container::{Binary, Listener, Parsed, Server, command_line, parse};
use integration_tests::manifest::{Document, MANIFESTS, Manifest, UPSTREAM_ADDON};
use integration_tests::{eventually, repo_root};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Probe, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use test_support::FakeApiServer;
use tokio_util::sync::CancellationToken;

/// Images the manifests run that are not this project's.
const THIRD_PARTY_IMAGES: &[&str] = &[
    "registry.k8s.io/cpa/cluster-proportional-autoscaler:",
    "docker.io/library/busybox:",
];

/// The object re-serialized from its k8s-openapi type: equal to the original only when every
/// field is one Kubernetes knows (a misspelt field would vanish).
fn round_trip(doc: &Document) -> Value {
    let value = match doc.kind.as_str() {
        "ServiceAccount" => serde_json::to_value(doc.to::<ServiceAccount>()),
        "ConfigMap" => serde_json::to_value(doc.to::<ConfigMap>()),
        "Service" => serde_json::to_value(doc.to::<Service>()),
        "Deployment" => serde_json::to_value(doc.to::<Deployment>()),
        "DaemonSet" => serde_json::to_value(doc.to::<DaemonSet>()),
        "ClusterRole" => serde_json::to_value(doc.to::<ClusterRole>()),
        "ClusterRoleBinding" => serde_json::to_value(doc.to::<ClusterRoleBinding>()),
        "PodDisruptionBudget" => serde_json::to_value(doc.to::<PodDisruptionBudget>()),
        other => panic!("{}: a kind the tests do not know: {other}", doc.id()),
    };
    value.expect("a k8s-openapi object serializes")
}

/// JSON pointers where `a` and `b` differ.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let null = Value::Null;
                let (x, y) = (a.get(key).unwrap_or(&null), b.get(key).unwrap_or(&null));
                differences(&format!("{path}/{key}"), x, y, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}/{i}"), x, y, out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: {a} ≠ {b}")),
    }
}

fn assert_same(what: &str, got: &Value, want: &Value) {
    let mut diff = Vec::new();
    differences("", got, want, &mut diff);
    assert!(diff.is_empty(), "{what} differs:\n  {}", diff.join("\n  "));
}

/// Every container of a pod spec, init containers included.
fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
}

/// The containers running this project's binaries, each with its parsed command line.
fn our_containers(manifest: &Manifest, spec: &PodSpec) -> Vec<(Container, Binary, Parsed)> {
    let mut ours = Vec::new();
    for container in all_containers(spec) {
        let image = container.image.as_deref().unwrap_or_default();
        let Some(binary) = Binary::of_image(image) else {
            assert!(
                THIRD_PARTY_IMAGES
                    .iter()
                    .any(|prefix| image.starts_with(prefix)),
                "{}: container {} runs {image:?}, neither ours nor a known third-party image",
                manifest.path,
                container.name
            );
            continue;
        };
        let parsed = parse(binary, command_line(binary, container)).unwrap_or_else(|e| {
            panic!(
                "{}: container {}: {} rejects its command line: {e}",
                manifest.path,
                container.name,
                binary.name()
            )
        });
        ours.push((container.clone(), binary, parsed));
    }
    ours
}

#[test]
fn every_manifest_document_is_a_kubernetes_object_with_no_unknown_field() {
    for manifest in Manifest::all()
        .into_iter()
        .chain([Manifest::load(UPSTREAM_ADDON)])
    {
        assert!(!manifest.documents.is_empty(), "{} is empty", manifest.path);
        for doc in &manifest.documents {
            assert_same(
                &format!("{}: {} read back from its type", manifest.path, doc.id()),
                &round_trip(doc),
                &doc.value,
            );
        }
    }
}

#[test]
fn no_placeholder_is_left_unsubstituted() {
    for path in MANIFESTS {
        let manifest = Manifest::load(path);
        let text = serde_json::to_string(
            &manifest
                .documents
                .iter()
                .map(|d| &d.value)
                .collect::<Vec<_>>(),
        )
        .expect("JSON");
        assert!(
            !text.contains("__"),
            "{path}: a placeholder the tests (and the README) do not know"
        );
    }
}

#[test]
fn every_container_command_line_is_accepted_by_the_binary_its_image_runs() {
    let mut seen = BTreeSet::new();
    for manifest in Manifest::all() {
        for (_, spec) in manifest.pod_specs() {
            for (_, binary, _) in our_containers(&manifest, &spec) {
                seen.insert(binary.name());
            }
        }
    }
    assert_eq!(
        seen,
        Binary::ALL.iter().map(|b| b.name()).collect(),
        "every binary runs somewhere"
    );
}

#[test]
fn the_upstream_addons_command_lines_run_unchanged_on_these_binaries() {
    let upstream = Manifest::load(UPSTREAM_ADDON);
    let (_, spec) = &upstream.pod_specs()[0];
    for (name, binary) in [
        ("kubedns", Binary::Kubedns),
        ("dnsmasq", Binary::DnsmasqRs),
        ("sidecar", Binary::Healthz),
    ] {
        let container = spec
            .containers
            .iter()
            .find(|c| c.name == name)
            .expect("upstream container");
        if let Err(e) = parse(binary, command_line(binary, container)) {
            panic!(
                "upstream {name} arguments rejected by {}: {e}",
                binary.name()
            );
        }
    }
}

#[test]
fn the_drop_in_is_the_upstream_addon_but_for_images_and_security_contexts() {
    let ours = Manifest::load("manifests/kube-dns.yaml");
    let upstream = Manifest::load(UPSTREAM_ADDON);
    for want in &upstream.documents {
        let got = ours
            .get(&want.kind, &want.name)
            .unwrap_or_else(|| panic!("kube-dns.yaml lacks the upstream {}", want.id()));
        assert_eq!(got.namespace, want.namespace, "{}", want.id());
        let mut got = got.value.clone();
        if want.kind == "Deployment" {
            let containers = got
                .pointer_mut("/spec/template/spec/containers")
                .and_then(Value::as_array_mut)
                .expect("containers");
            for (container, upstream) in containers.iter_mut().zip(
                want.value
                    .pointer("/spec/template/spec/containers")
                    .and_then(Value::as_array)
                    .expect("upstream containers"),
            ) {
                let image = container["image"].as_str().unwrap_or_default();
                let binary = Binary::of_image(image)
                    .unwrap_or_else(|| panic!("{} runs {image}, not ours", container["name"]));
                assert_eq!(image, binary.image());
                container["image"] = upstream["image"].clone();
                // Ours are stricter (no capabilities but NET_BIND_SERVICE for port 53; no
                // SETGID, as nothing changes users), which the next test checks on its own.
                container["securityContext"] = upstream["securityContext"].clone();
            }
        }
        assert_same(
            &format!("kube-dns.yaml {} against upstream", want.id()),
            &got,
            &want.value,
        );
    }
}

#[test]
fn every_image_is_this_projects_at_the_workspace_version_built_by_its_dockerfile() {
    for manifest in Manifest::all() {
        for (_, spec) in manifest.pod_specs() {
            for (container, binary, _) in our_containers(&manifest, &spec) {
                assert_eq!(
                    container.image.as_deref(),
                    Some(binary.image().as_str()),
                    "{}: container {}",
                    manifest.path,
                    container.name
                );
            }
        }
    }
    let build_script = std::fs::read_to_string(repo_root().join("scripts/build-images.sh"))
        .expect("scripts/build-images.sh");
    for binary in Binary::ALL {
        let path = repo_root().join(format!("images/{}/Dockerfile", binary.image_dir()));
        let dockerfile =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = binary.name();
        let installed = binary.installed_path();
        for needed in [
            format!("--bin {name}"),
            format!("/rootfs{installed}"),
            "USER 1001:1001".to_owned(),
            format!("ENTRYPOINT [\"{installed}\"]"),
        ] {
            assert!(
                dockerfile.contains(&needed),
                "{}: no {needed:?}",
                path.display()
            );
        }
        for legacy in binary.legacy_paths() {
            let link = format!("ln -s {installed} /rootfs{legacy}");
            assert!(
                dockerfile.contains(&link),
                "{}: the legacy entrypoint {legacy} is missing ({link:?})",
                path.display()
            );
        }
        assert!(
            build_script.contains(&format!("{}:{name}", binary.image_dir())),
            "scripts/build-images.sh does not build images/{} as {name}",
            binary.image_dir()
        );
    }
    assert!(build_script.contains(integration_tests::container::IMAGE_REPOSITORY));
}

#[test]
fn containers_run_as_uid_1001_read_only_without_capabilities_but_binding_a_low_port() {
    for manifest in Manifest::all() {
        for (workload, spec) in manifest.pod_specs() {
            let seccomp = spec
                .security_context
                .as_ref()
                .and_then(|s| s.seccomp_profile.as_ref())
                .map(|p| p.type_.as_str());
            assert_eq!(
                seccomp,
                Some("RuntimeDefault"),
                "{}: {workload}",
                manifest.path
            );
            for (container, _, parsed) in our_containers(&manifest, &spec) {
                let what = format!("{}: {workload} container {}", manifest.path, container.name);
                let context = container.security_context.clone().unwrap_or_default();
                assert_eq!(context.run_as_user, Some(1001), "{what}");
                assert_eq!(context.run_as_group, Some(1001), "{what}");
                assert_eq!(context.read_only_root_filesystem, Some(true), "{what}");
                assert_eq!(context.allow_privilege_escalation, Some(false), "{what}");
                let capabilities = context.capabilities.unwrap_or_default();
                assert_eq!(
                    capabilities.drop,
                    Some(vec!["ALL".to_string()]),
                    "{what}: every capability dropped"
                );
                let added: Vec<String> = capabilities.add.unwrap_or_default();
                let low_port = parsed.listeners().iter().any(|l| l.port < 1024);
                let wanted: Vec<String> = if low_port {
                    vec!["NET_BIND_SERVICE".into()]
                } else {
                    Vec::new()
                };
                assert_eq!(added, wanted, "{what}: added capabilities");
            }
        }
    }
}

/// Two listeners in one network namespace that cannot both bind.
fn collide(a: &Listener, b: &Listener) -> bool {
    a.port == b.port
        && a.protocol == b.protocol
        && (a.ip == b.ip || a.ip.is_unspecified() || b.ip.is_unspecified())
}

#[test]
fn declared_container_ports_are_ports_the_binaries_listen_on_and_none_collide() {
    for manifest in Manifest::all() {
        for (workload, spec) in manifest.pod_specs() {
            let ours = our_containers(&manifest, &spec);
            let mut pod: Vec<(String, Listener)> = Vec::new();
            for (container, binary, parsed) in &ours {
                let what = format!("{}: {workload} container {}", manifest.path, container.name);
                let listeners = parsed.listeners();
                let declared: BTreeSet<(u16, String)> = container
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| {
                        let port = u16::try_from(p.container_port).expect("a port");
                        (port, p.protocol.clone().unwrap_or_else(|| "TCP".into()))
                    })
                    .collect();
                for (port, protocol) in &declared {
                    assert!(
                        listeners
                            .iter()
                            .any(|l| l.port == *port && l.protocol == protocol),
                        "{what}: declares {port}/{protocol}, but {} listens on {listeners:?}",
                        binary.name()
                    );
                }
                for l in listeners.iter().filter(|l| l.server == Server::Dns) {
                    assert!(
                        declared.contains(&(l.port, l.protocol.to_owned())),
                        "{what}: serves DNS on {}/{} without declaring it",
                        l.port,
                        l.protocol
                    );
                }
                for l in listeners {
                    if let Some((other, _)) = pod.iter().find(|(_, seen)| collide(seen, &l)) {
                        panic!("{what}: {l:?} collides with container {other} in the same pod");
                    }
                    pod.push((container.name.clone(), l));
                }
            }
        }
    }
}

/// The port a probe's `port` names: a number, or a port name of the probed container.
fn probe_port(container: &Container, port: &IntOrString) -> u16 {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).expect("a port"),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| u16::try_from(p.container_port).expect("a port"))
            .unwrap_or_else(|| panic!("container {}: no port named {name}", container.name)),
    }
}

fn probes(container: &Container) -> Vec<(&'static str, &Probe)> {
    [
        ("liveness", &container.liveness_probe),
        ("readiness", &container.readiness_probe),
        ("startup", &container.startup_probe),
    ]
    .into_iter()
    .filter_map(|(kind, probe)| probe.as_ref().map(|p| (kind, p)))
    .collect()
}

/// Starts `parsed`'s binary in-process on loopback ports, GETs `path` from its `server`, and
/// returns the status; kubedns reads the demo cluster-state file and is asked once ready.
async fn status_of(parsed: &Parsed, server: Server, path: &str) -> u16 {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let any_port = SocketAddr::new(loopback, 0);
    let shutdown = CancellationToken::new();
    match parsed {
        Parsed::Kubedns(args) => {
            let mut args = (**args).clone();
            args.dns_bind_address = loopback;
            args.dns_port = 0;
            args.http_bind_address = loopback;
            args.healthz_port = 0;
            args.metrics_port = kubedns::config::OptionalPort(Some(0));
            args.config_dir = None;
            args.notify.clear();
            args.cluster_state = Some(repo_root().join("tests/fixtures/state/demo.yaml"));
            let running = kubedns::start(args, shutdown.clone())
                .await
                .expect("kubedns starts");
            eventually("kubedns to be ready", || async {
                running.readiness.is_ready().then_some(())
            })
            .await;
            let addr = match server {
                Server::KubednsHealthz => running.healthz,
                Server::KubednsMetrics => running.metrics.expect("metrics are on"),
                other => panic!("kubedns has no {other:?} server"),
            };
            let status = http_get(addr, path).await.0;
            shutdown.cancel();
            running.wait().await.expect("kubedns stops");
            status
        }
        Parsed::DnsmasqRs(config) => {
            assert_eq!(
                server,
                Server::DnsmasqMetrics,
                "dnsmasq-rs's HTTP is /metrics"
            );
            let mut config = (**config).clone();
            config.listen = vec![any_port];
            config.metrics = Some(any_port);
            config.config_dir = None;
            config.resolv_file = None;
            config.hosts_files.clear();
            config.dns_loop_detect = false;
            let running = dnsmasq_rs::start(config, shutdown.clone())
                .await
                .expect("dnsmasq-rs starts");
            let status = http_get(running.metrics_addr.expect("metrics are on"), path)
                .await
                .0;
            shutdown.cancel();
            running.wait().await.expect("dnsmasq-rs stops");
            status
        }
        Parsed::Healthz(config) => {
            assert_eq!(server, Server::Healthz);
            let mut config = (**config).clone();
            config.listen = any_port;
            config.dnsmasq = None;
            // Probes keep their labels (and so their paths) but ask nothing outside loopback.
            for probe in &mut config.probes {
                probe.server =
                    healthz::probe::ServerAddr::from_socket_addr(SocketAddr::new(loopback, 9));
            }
            let running = healthz::start(config, shutdown.clone())
                .await
                .expect("healthz starts");
            let status = http_get(running.http, path).await.0;
            shutdown.cancel();
            running.wait().await.expect("healthz stops");
            status
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probes_ask_ports_and_paths_the_binaries_serve() {
    test_support::subscribe();
    for manifest in Manifest::all() {
        for (workload, spec) in manifest.pod_specs() {
            let ours = our_containers(&manifest, &spec);
            for container in all_containers(&spec) {
                for (kind, probe) in probes(container) {
                    let what = format!(
                        "{}: {workload} container {} {kind} probe",
                        manifest.path, container.name
                    );
                    let get = probe
                        .http_get
                        .as_ref()
                        .unwrap_or_else(|| panic!("{what}: not an HTTP probe"));
                    let port = probe_port(container, &get.port);
                    let path = get.path.as_deref().unwrap_or("/");
                    // The kubelet probes the pod's address: any container's listener will do.
                    let (parsed, listener) = ours
                        .iter()
                        .find_map(|(_, _, parsed)| {
                            let listener = parsed
                                .listeners()
                                .into_iter()
                                .find(|l| l.port == port && l.protocol == "TCP")?;
                            Some((parsed, listener))
                        })
                        .unwrap_or_else(|| panic!("{what}: nothing listens on port {port}"));
                    if let Some(host) = &get.host {
                        let host: IpAddr = host.parse().expect("probe host is an IP");
                        assert!(
                            listener.ip.is_unspecified() || listener.ip == host,
                            "{what}: probes {host} but the server listens on {}",
                            listener.ip
                        );
                    } else {
                        assert!(
                            listener.ip.is_unspecified(),
                            "{what}: probes the pod address, the server listens on {}",
                            listener.ip
                        );
                    }
                    let status = status_of(parsed, listener.server, path).await;
                    // 503 is a real answer (a failing check, kubedns not ready); 404 is not.
                    assert!(
                        status == 200 || status == 503,
                        "{what}: GET {path} on the {:?} server answered {status}",
                        listener.server
                    );
                    if kind == "readiness" {
                        assert_eq!(status, 200, "{what}: not ready once synced");
                    }
                }
            }
        }
    }
}

#[test]
fn the_sidecar_probes_the_ports_kubedns_and_dnsmasq_listen_on() {
    for manifest in Manifest::all() {
        for (workload, spec) in manifest.pod_specs() {
            let ours = our_containers(&manifest, &spec);
            let dns_ports = |binary: Binary| -> BTreeSet<u16> {
                ours.iter()
                    .filter(|(_, b, _)| *b == binary)
                    .flat_map(|(_, _, parsed)| parsed.listeners())
                    .filter(|l| l.server == Server::Dns)
                    .map(|l| l.port)
                    .collect()
            };
            for (_, _, parsed) in &ours {
                let Parsed::Healthz(config) = parsed else {
                    continue;
                };
                for probe in &config.probes {
                    let target = if probe.label.starts_with("kubedns") {
                        Binary::Kubedns
                    } else {
                        Binary::DnsmasqRs
                    };
                    assert!(
                        dns_ports(target).contains(&probe.server.port),
                        "{}: {workload}: probe {} asks port {}, where {} does not listen",
                        manifest.path,
                        probe.label,
                        probe.server.port,
                        target.name()
                    );
                }
                if let Some(poll) = &config.dnsmasq {
                    assert!(
                        dns_ports(Binary::DnsmasqRs).contains(&poll.server.port),
                        "{}: {workload}: dnsmasq statistics polled on the wrong port",
                        manifest.path
                    );
                }
            }
        }
    }
}

#[test]
fn dnsmasq_forwards_the_cluster_zones_to_kubedns_and_accepts_its_notify() {
    for manifest in Manifest::all() {
        for (workload, spec) in manifest.pod_specs() {
            let ours = our_containers(&manifest, &spec);
            let Some(kubedns) = ours.iter().find_map(|(_, _, p)| match p {
                Parsed::Kubedns(args) => Some(args),
                _ => None,
            }) else {
                continue;
            };
            let dnsmasq = ours
                .iter()
                .find_map(|(_, _, p)| match p {
                    Parsed::DnsmasqRs(config) => Some(config),
                    _ => None,
                })
                .expect("a dnsmasq-rs beside kubedns");
            let what = format!("{}: {workload}", manifest.path);
            let kubedns_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, kubedns.dns_port));
            let zone = kubedns.domain.to_lowercase();
            for domain in [
                zone.clone(),
                "in-addr.arpa.".parse().expect("name"),
                "ip6.arpa.".parse().expect("name"),
            ] {
                let routed = dnsmasq.servers.iter().any(|spec| {
                    spec.domains.contains(&domain)
                        && spec.target == dnsmasq_rs::config::ServerTarget::Addr(kubedns_addr)
                });
                assert!(
                    routed,
                    "{what}: {domain} is not sent to kubedns at {kubedns_addr}"
                );
            }
            assert_eq!(
                dnsmasq.kubedns_server, kubedns_addr,
                "{what}: --kubednsServer"
            );
            for target in &kubedns.notify {
                assert!(
                    dnsmasq.listen.iter().any(|l| l.port() == target.port()),
                    "{what}: kubedns notifies {target}, where dnsmasq-rs does not listen"
                );
                match &dnsmasq.notify {
                    dnsmasq_rs::config::NotifyPolicy::From(allowed) => assert!(
                        allowed.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
                        "{what}: dnsmasq-rs refuses NOTIFY from kubedns"
                    ),
                    dnsmasq_rs::config::NotifyPolicy::Disabled => {
                        panic!("{what}: kubedns notifies, dnsmasq-rs has --no-notify")
                    }
                }
            }
        }
    }
}

#[test]
fn the_node_local_cache_asks_the_cluster_dns_over_tcp_at_its_link_local_address() {
    let manifest = Manifest::load("manifests/nodelocal-dnsmasq-rs.yaml");
    let (_, spec) = manifest
        .pod_specs()
        .into_iter()
        .find(|(id, _)| id.starts_with("DaemonSet/"))
        .expect("a DaemonSet");
    assert_eq!(spec.host_network, Some(true), "on the node's network");
    let ours = our_containers(&manifest, &spec);
    let config = ours
        .iter()
        .find_map(|(_, _, p)| match p {
            Parsed::DnsmasqRs(config) => Some(config),
            _ => None,
        })
        .expect("dnsmasq-rs");
    let cluster_dns: SocketAddr = "10.96.0.10:53".parse().expect("address");
    let link_local: SocketAddr = "169.254.20.10:53".parse().expect("address");
    assert_eq!(config.listen, vec![link_local]);
    for domain in ["cluster.local.", "in-addr.arpa.", "ip6.arpa."] {
        let domain = domain.parse().expect("name");
        assert!(
            config.servers.iter().any(|s| s.domains.contains(&domain)
                && s.target == dnsmasq_rs::config::ServerTarget::Addr(cluster_dns)),
            "{domain} goes to the cluster DNS"
        );
    }
    assert_eq!(
        config.always_tcp,
        vec![cluster_dns],
        "TCP towards the cluster DNS"
    );
}

/// `(apiGroup, resource, verb)` a ClusterRole grants, wildcards not allowed.
fn granted(role: &ClusterRole) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(
                        ![group, resource, verb].contains(&&"*".to_owned()),
                        "no wildcards"
                    );
                    out.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}

/// `(apiGroup, resource, verb)` of an API request as [`FakeApiServer::requests`] records it,
/// or `None` for discovery (`/api`, `/apis`, `/apis/<group>/<version>`), which every
/// authenticated client may read.
fn access(request: &str) -> Option<(String, String, String)> {
    let (method, target) = request.split_once(' ').expect("METHOD /path");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [] => return None,
        [resource] => (*resource, false),
        [resource, _name, ..] => (*resource, true),
    };
    let watch = query
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1");
    let verb = match (method, watch, named) {
        ("GET", true, _) => "watch",
        ("GET", false, true) => "get",
        ("GET", false, false) => "list",
        (other, _, _) => panic!("kubedns sent {other} {path}: it only reads"),
    };
    Some((group.to_owned(), resource.to_owned(), verb.to_owned()))
}

/// What kubedns with `args` asks of an API server, until it has listed and watched everything
/// it lists; with or without discovery.k8s.io/v1 served.
async fn observed(
    args: &kubedns::Args,
    endpointslices: bool,
) -> BTreeSet<(String, String, String)> {
    let api = FakeApiServer::start().await;
    if !endpointslices {
        api.disable_endpointslices();
    }
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut args = args.clone();
    args.dns_bind_address = loopback;
    args.dns_port = 0;
    args.http_bind_address = loopback;
    args.healthz_port = 0;
    args.metrics_port = kubedns::config::OptionalPort(None);
    args.config_dir = None;
    args.notify.clear();
    args.kube_master_url = Some(api.url());
    let shutdown = CancellationToken::new();
    let running = kubedns::start(args, shutdown.clone())
        .await
        .expect("kubedns starts");
    let seen = eventually("kubedns to list and then watch what it lists", || async {
        let seen: BTreeSet<_> = api.requests().iter().filter_map(|r| access(r)).collect();
        let listed = seen.iter().filter(|(_, _, verb)| verb == "list");
        let all_watched = listed.clone().all(|(group, resource, _)| {
            seen.contains(&(group.clone(), resource.clone(), "watch".to_owned()))
        });
        (running.readiness.is_ready() && listed.count() > 0 && all_watched).then_some(seen)
    })
    .await;
    shutdown.cancel();
    running.wait().await.expect("kubedns stops");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_role_grants_exactly_what_kubedns_lists_and_watches() {
    test_support::subscribe();
    let mut checked = 0;
    for manifest in Manifest::all() {
        let roles: BTreeMap<&str, ClusterRole> = manifest
            .of_kind("ClusterRole")
            .map(|doc| (doc.name.as_str(), doc.to()))
            .collect();
        for (workload, spec) in manifest.pod_specs() {
            let Some(args) = our_containers(&manifest, &spec)
                .into_iter()
                .find_map(|(_, _, p)| match p {
                    Parsed::Kubedns(args) => Some(args),
                    _ => None,
                })
            else {
                continue;
            };
            let what = format!("{}: {workload}", manifest.path);
            let account = spec
                .service_account_name
                .clone()
                .expect("a service account");
            let mut granted_to_kubedns = BTreeSet::new();
            for binding in manifest.of_kind("ClusterRoleBinding") {
                let binding: ClusterRoleBinding = binding.to();
                let bound = binding.subjects.iter().flatten().any(|s| {
                    s.kind == "ServiceAccount"
                        && s.name == account
                        && s.namespace.as_deref() == Some("kube-system")
                });
                if bound {
                    let role = roles
                        .get(binding.role_ref.name.as_str())
                        .unwrap_or_else(|| {
                            panic!("{what}: {} is not in the file", binding.role_ref.name)
                        });
                    granted_to_kubedns.extend(granted(role));
                }
            }
            let mut asked = observed(&args, true).await;
            asked.extend(observed(&args, false).await);
            println!("{what}: kubedns asked for {asked:?}");
            assert_eq!(
                granted_to_kubedns, asked,
                "{what}: the ClusterRole (left) must grant exactly what kubedns asks for (right)"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "the kube-dns manifests were checked");
}

#[test]
fn objects_refer_to_each_other() {
    for manifest in Manifest::all() {
        let names = |kind: &str| -> BTreeSet<String> {
            manifest.of_kind(kind).map(|d| d.name.clone()).collect()
        };
        let accounts = names("ServiceAccount");
        let config_maps = names("ConfigMap");
        let mut templates: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for doc in &manifest.documents {
            let what = format!("{}: {}", manifest.path, doc.id());
            let (selector, labels, spec) = match doc.kind.as_str() {
                "Deployment" => {
                    let d: Deployment = doc.to();
                    let spec = d.spec.expect("spec");
                    (spec.selector, spec.template.metadata, spec.template.spec)
                }
                "DaemonSet" => {
                    let d: DaemonSet = doc.to();
                    let spec = d.spec.expect("spec");
                    (spec.selector, spec.template.metadata, spec.template.spec)
                }
                _ => continue,
            };
            let labels = labels.and_then(|m| m.labels).unwrap_or_default();
            for (key, value) in selector.match_labels.unwrap_or_default() {
                assert_eq!(labels.get(&key), Some(&value), "{what}: selector {key}");
            }
            templates.insert(doc.name.clone(), labels);
            let spec = spec.expect("pod spec");
            match spec.service_account_name.as_deref() {
                Some(account) => assert!(
                    accounts.contains(account),
                    "{what}: no ServiceAccount {account}"
                ),
                None => assert_eq!(
                    spec.automount_service_account_token,
                    Some(false),
                    "{what}: no API access wanted, so no token"
                ),
            }
            let volumes: BTreeSet<String> = spec
                .volumes
                .iter()
                .flatten()
                .map(|v| {
                    if let Some(cm) = &v.config_map {
                        // The node-local cache reads the kube-dns ConfigMap of kube-dns.yaml.
                        assert!(
                            config_maps.contains(&cm.name) || cm.optional == Some(true),
                            "{what}: volume {} needs a ConfigMap {}",
                            v.name,
                            cm.name
                        );
                    }
                    v.name.clone()
                })
                .collect();
            for container in all_containers(&spec) {
                for mount in container.volume_mounts.iter().flatten() {
                    assert!(
                        volumes.contains(&mount.name),
                        "{what}: no volume {}",
                        mount.name
                    );
                }
                for arg in container
                    .command
                    .iter()
                    .flatten()
                    .chain(container.args.iter().flatten())
                {
                    if let Some(target) = arg.strip_prefix("--target=Deployment/") {
                        assert!(
                            manifest.get("Deployment", target).is_some(),
                            "{what}: autoscales a Deployment {target} not in the file"
                        );
                    }
                }
            }
        }
        for doc in manifest.of_kind("Service") {
            let service: Service = doc.to();
            let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
            assert!(
                templates
                    .values()
                    .any(|labels| selector.iter().all(|(k, v)| labels.get(k) == Some(v))),
                "{}: Service {} selects no pods of the file",
                manifest.path,
                doc.name
            );
        }
        for doc in manifest.of_kind("PodDisruptionBudget") {
            let pdb: PodDisruptionBudget = doc.to();
            let selector = pdb
                .spec
                .and_then(|s| s.selector)
                .and_then(|s| s.match_labels)
                .unwrap_or_default();
            assert!(
                templates
                    .values()
                    .any(|labels| selector.iter().all(|(k, v)| labels.get(k) == Some(v))),
                "{}: PodDisruptionBudget {} selects no pods of the file",
                manifest.path,
                doc.name
            );
        }
        for doc in manifest.of_kind("ClusterRoleBinding") {
            let binding: ClusterRoleBinding = doc.to();
            assert_eq!(binding.role_ref.kind, "ClusterRole");
            assert!(
                manifest
                    .get("ClusterRole", &binding.role_ref.name)
                    .is_some(),
                "{}: {} binds a ClusterRole not in the file",
                manifest.path,
                doc.name
            );
            for subject in binding.subjects.iter().flatten() {
                assert!(
                    subject.kind == "ServiceAccount" && accounts.contains(&subject.name),
                    "{}: {} binds {} {} not in the file",
                    manifest.path,
                    doc.name,
                    subject.kind,
                    subject.name
                );
            }
        }
    }
}

#[test]
fn the_readme_names_every_manifest_and_placeholder() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    for path in MANIFESTS {
        assert!(readme.contains(path), "README.md does not mention {path}");
    }
    for (placeholder, _) in integration_tests::manifest::PLACEHOLDERS {
        assert!(
            readme.contains(placeholder),
            "README.md does not explain {placeholder}"
        );
    }
}
