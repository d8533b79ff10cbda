//! exechealthz commands run through `sh -c`: exit status, output, and commands that hang.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::LIMIT;
use healthz::check::{Check, Status, Target};
use healthz::exec::{ExecSpec, MAX_OUTPUT, run};
use healthz::prober::Prober;
use tokio::time::Instant;

#[tokio::test]
async fn a_command_passes_when_it_exits_zero_and_keeps_its_output() {
    let cases = [
        ("true", None, ""),
        ("echo healthz", None, "healthz\n"),
        (
            "echo out; echo err >&2; exit 3",
            Some("exit status: 3"),
            "out\nerr\n",
        ),
        ("false", Some("exit status: 1"), ""),
        (
            "no-such-command-here 2>/dev/null",
            Some("exit status: 127"),
            "",
        ),
    ];
    for (command, error, output) in cases {
        let outcome = test_support::timeout_after(LIMIT, run(command, LIMIT)).await;
        assert_eq!(outcome.error.as_deref(), error, "{command}");
        assert_eq!(outcome.output, output, "{command}");
    }
}

#[tokio::test]
async fn a_chatty_command_is_cut_to_the_output_limit_without_blocking() {
    let outcome =
        test_support::timeout_after(LIMIT, run("head -c 1000000 /dev/zero | tr '\\0' x", LIMIT))
            .await;
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.output.len(), MAX_OUTPUT);
}

// Paused time: nothing else is runnable while the command sleeps, so the timeout fires at once.
#[tokio::test(start_paused = true)]
async fn a_command_that_hangs_is_killed_and_fails_at_its_timeout() {
    let outcome = run("sleep 600", Duration::from_secs(30)).await;
    assert_eq!(
        outcome.error.as_deref(),
        Some("command did not finish within 30s")
    );
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

#[tokio::test]
async fn a_timed_out_command_takes_its_children_with_it() {
    let dir = std::env::temp_dir().join(format!("healthz-exec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pidfile = dir.join("child.pid");
    let command = format!("sleep 600 & echo $! > {}; wait", pidfile.display());
    // The command never ends by itself, so the timeout only sets how long the test takes.
    let outcome = test_support::timeout_after(LIMIT, run(&command, Duration::from_secs(2))).await;
    assert_eq!(
        outcome.error.as_deref(),
        Some("command did not finish within 2s")
    );
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("the command wrote its child's pid")
        .trim()
        .parse()
        .expect("a pid");
    let _ = std::fs::remove_dir_all(&dir);
    common::eventually(LIMIT, "the command's child is killed", || async move {
        !alive(pid)
    })
    .await;
}

#[tokio::test]
async fn a_prober_records_the_command_result_on_its_check() {
    let spec = ExecSpec {
        url: "/healthz-x".into(),
        command: "echo fine".into(),
    };
    let check = Arc::new(Check::new(
        spec.label(),
        Target::Exec(spec),
        Duration::from_secs(30),
    ));
    let prober = Prober::new(Arc::clone(&check), Duration::from_secs(2), LIMIT);
    let result = test_support::timeout_after(LIMIT, prober.run_once()).await;
    assert!(result.passed());
    assert_eq!(result.output, "fine\n");
    check.record(result);
    assert_eq!(check.report(Instant::now()).status, Status::Passing);
}
