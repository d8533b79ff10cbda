//! The README's Flags section and clap's flags name the same set, and every `--flag` the README
//! mentions anywhere is one healthz takes (or a klog flag it accepts and ignores).

use std::collections::BTreeSet;

use clap::CommandFactory as _;

const README: &str = include_str!("../README.md");

/// klog flags accepted and dropped by `kdns_daemon::normalize_args`.
const KLOG: &[&str] = &[
    "logtostderr",
    "alsologtostderr",
    "log-dir",
    "vmodule",
    "log-flush-frequency",
];

fn clap_flags() -> BTreeSet<String> {
    healthz::Args::command()
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| !matches!(*long, "help" | "version"))
        .map(str::to_owned)
        .collect()
}

fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("README has {heading}"));
    let rest = &text[start + heading.len()..];
    rest.find("\n## ").map_or(rest, |end| &rest[..end])
}

/// `--name` tokens in `text`, with Go's `_` spelling read as `-`.
fn mentioned(text: &str) -> BTreeSet<String> {
    text.match_indices("--")
        .filter(|(i, _)| {
            text[..*i]
                .chars()
                .last()
                .is_none_or(|c| !c.is_alphanumeric() && c != '-')
        })
        .map(|(i, _)| {
            text[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect::<String>()
                .replace('_', "-")
        })
        .filter(|name| name.len() > 1)
        .collect()
}

#[test]
fn the_flags_section_documents_exactly_the_flags_clap_takes() {
    let flags = section(README, "## Flags");
    // Each flag is documented in a bullet that starts with it.
    let documented: BTreeSet<String> = flags
        .lines()
        .filter_map(|line| line.strip_prefix("* `--"))
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect()
        })
        .collect();
    assert_eq!(documented, clap_flags());
}

#[test]
fn every_flag_the_readme_mentions_exists() {
    let known: BTreeSet<String> = clap_flags()
        .into_iter()
        .chain(KLOG.iter().map(|s| (*s).to_owned()))
        .chain(["help", "version"].map(String::from))
        .collect();
    let unknown: Vec<String> = mentioned(README).difference(&known).cloned().collect();
    assert!(
        unknown.is_empty(),
        "README mentions flags healthz does not take: {unknown:?}"
    );
}
