//! The healthz binary: bad flags exit 64 before anything binds, and both legacy forms (sidecar
//! and exechealthz) serve over real HTTP.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;

use common::{Kubedns, LIMIT, eventually, http_get};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_healthz");

/// Runs the binary to completion (it must exit by itself); returns exit code and stderr.
async fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = test_support::timeout_after(LIMIT, output)
        .await
        .expect("runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running healthz binary, killed on drop (also when the test fails).
struct Healthz {
    addr: SocketAddr,
    _child: Child,
}

impl Healthz {
    /// Starts the binary and waits for its "serving HTTP" log line to learn the port.
    async fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--log-format=json", "--prometheus-addr=127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawns");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = test_support::timeout_after(LIMIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if json["fields"]["message"] == "serving HTTP" {
                    return json["fields"]["addr"]
                        .as_str()
                        .and_then(|a| a.parse().ok())
                        .expect("address in the log line");
                }
            }
            panic!("healthz exited before serving");
        })
        .await;
        // Keep reading, so that the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            addr,
            _child: child,
        }
    }
}

#[tokio::test]
async fn bad_flags_exit_64_with_a_clear_message_before_anything_binds() {
    // Holding the port: a binary that bound first would fail with 1, not 64.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("bound").port().to_string();
    let base = ["--prometheus-addr=127.0.0.1", "--port", port.as_str()];
    let cases: &[(&[&str], &str)] = &[
        (&["--probe=kubedns,127.0.0.1:10053"], "got 2 fields"),
        (
            &["--probe=kubedns,127.0.0.1:10053,kubernetes.default.svc.cluster.local,5,MX"],
            "invalid type \"MX\"",
        ),
        (&["--probe=kube-dns,127.0.0.1,x"], "invalid label"),
        (
            &["--cmd=true", "--cmd=false", "--url=/a"],
            "2 --cmd but 1 --url",
        ),
        (&["--prometheus-port=1"], "differ"),
        (&["--period=soon"], "--period"),
        (&["--bogus"], "unexpected argument '--bogus'"),
    ];
    for (args, message) in cases {
        let all: Vec<&str> = base.iter().chain(args.iter()).copied().collect();
        let (code, stderr) = run_to_exit(&all).await;
        assert_eq!(code, Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }

    // The same port with good flags: the bind fails, which is a different exit.
    let (code, stderr) =
        run_to_exit(&[&base[..], &["--dnsmasq-poll-interval-ms=0"]].concat()).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("failed to bind the HTTP server"),
        "{stderr}"
    );
    drop(held);
}

#[tokio::test]
async fn help_and_version_exit_0() {
    let (code, _) = run_to_exit(&["--help"]).await;
    assert_eq!(code, Some(0));
    let (code, _) = run_to_exit(&["-version"]).await;
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn the_exechealthz_form_answers_each_url_from_its_command() {
    let healthz = Healthz::spawn(&[
        "-cmd=echo fine",
        "-url=/healthz-good",
        "-cmd=echo broken; exit 1",
        "-url=/healthz-bad",
        "-port=0",
        "-period=100ms",
        "-quiet",
        "--dnsmasq-poll-interval-ms=0",
    ])
    .await;
    let addr = healthz.addr;
    eventually(LIMIT, "both commands ran", || async move {
        // Before its first run, a check is 503 too ("waiting for first probe").
        http_get(addr, "/healthz-good").await.status == 200
            && http_get(addr, "/healthz-bad")
                .await
                .body
                .starts_with("Healthz probe on")
    })
    .await;
    let good = http_get(addr, "/healthz-good").await;
    assert_eq!(good.body, "ok");
    let bad = http_get(addr, "/healthz-bad").await;
    assert!(
        bad.body
            .starts_with("Healthz probe on /healthz-bad error: Result of last exec: broken\n, at "),
        "{}",
        bad.body
    );
    assert!(bad.body.ends_with(", error exit status: 1"), "{}", bad.body);
    let all = http_get(addr, "/healthz").await;
    assert_eq!(all.status, 503);
    assert!(all.body.starts_with("unhealthy: bad\n"), "{}", all.body);
    assert_eq!(http_get(addr, "/healthcheck/good").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_form_probes_a_real_kubedns() {
    let kubedns = Kubedns::start(0).await;
    let probe = format!(
        "--probe=kubedns,{},kubernetes.default.svc.cluster.local,1,SRV",
        kubedns.dns
    );
    let healthz = Healthz::spawn(&[
        "--v=2",
        "--logtostderr",
        &probe,
        "--prometheus-port=0",
        "--dnsmasq-poll-interval-ms=0",
    ])
    .await;
    let addr = healthz.addr;
    eventually(LIMIT, "kubedns probed", || async move {
        http_get(addr, "/healthcheck/kubedns").await.status == 200
    })
    .await;
    let reply = http_get(addr, "/healthcheck/kubedns").await;
    assert_eq!(reply.content_type, "application/json");
    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(body["IsOk"], true);
    assert_eq!(body["Err"], "");
    assert_eq!(http_get(addr, "/healthz").await.status, 200);
    assert_eq!(http_get(addr, "/healthz-kubedns").await.body, "ok");
    assert_eq!(http_get(addr, "/metrics").await.status, 200);
    assert_eq!(http_get(addr, "/nope").await.status, 404);
    kubedns.stop().await;
}
