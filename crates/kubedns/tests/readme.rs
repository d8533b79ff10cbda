//! The README documents every flag the binary has, and only those.

use std::collections::BTreeSet;

use clap::CommandFactory;

#[test]
fn readme_flags_match_the_command_line() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Flags")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Flags section");
    let documented: BTreeSet<String> = section
        .split('`')
        .filter(|s| s.starts_with("--") && s.len() > 2)
        .map(|s| {
            s.trim_start_matches("--")
                .split([' ', '='])
                .next()
                .unwrap_or("")
                .replace('_', "-")
        })
        .collect();
    let legacy = [
        "logtostderr",
        "alsologtostderr",
        "log-dir",
        "stderrthreshold",
        "vmodule",
        "log-flush-frequency",
        "dns-port",
    ];
    let command = kubedns::Args::command();
    let actual: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .chain(["version".to_owned()])
        .collect();
    let undocumented: Vec<_> = actual.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "flags missing from the README: {undocumented:?}"
    );
    let unknown: Vec<_> = documented
        .iter()
        .filter(|f| !actual.contains(*f) && !legacy.contains(&f.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "README documents flags the binary lacks: {unknown:?}"
    );
}
