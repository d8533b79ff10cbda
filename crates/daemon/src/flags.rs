//! The flag spellings that old kube-dns manifests pass, mapped onto clap.
//!
//! kube-dns used pflag with a word-separator normaliser (`--dns_port` is `--dns-port`), klog
//! added `--v`, `--vmodule` and friends, and older images took `--logtostderr`. Go's `flag`
//! package (dnsmasq-nanny, exechealthz) also takes long flags with a single dash
//! (`-configDir=/x`). [`normalize_args`] rewrites all of these into the double-dash kebab-case
//! form clap expects and drops the klog flags that only steer Go's logger.

/// klog flags that take a value and are accepted and ignored.
const KLOG_VALUE_FLAGS: &[&str] = &[
    "log-dir",
    "log-file",
    "log-file-max-size",
    "stderrthreshold",
    "vmodule",
    "log-flush-frequency",
    "log-backtrace-at",
];

/// klog flags that are booleans and are accepted and ignored.
const KLOG_BOOL_FLAGS: &[&str] = &[
    "logtostderr",
    "alsologtostderr",
    "skip-headers",
    "skip-log-headers",
    "add-dir-header",
    "one-output",
];

/// What [`normalize_args`] removed, so that a binary can mention it once in its logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LegacyFlags {
    /// The legacy flags seen and ignored, as given.
    pub ignored: Vec<String>,
}

/// Rewrites legacy flag spellings for clap.
///
/// - `-name=value` and `-name` for names longer than one character become `--name...`;
/// - underscores in a flag name become dashes (`--dns_port=1` → `--dns-port=1`);
/// - `-v=2`/`-v 2` become `--v=2`;
/// - klog-only flags are dropped (with their value when it is a separate argument).
///
/// Everything after a bare `--` is passed through untouched; `short_flags` lists the single-letter
/// flags the binary really has (e.g. `k` for dnsmasq's `-k`), which are left alone.
pub fn normalize_args<I>(args: I, short_flags: &[char]) -> (Vec<String>, LegacyFlags)
where
    I: IntoIterator<Item = String>,
{
    let mut out = Vec::new();
    let mut legacy = LegacyFlags::default();
    let mut iter = args.into_iter();
    if let Some(program) = iter.next() {
        out.push(program);
    }
    let mut rest_verbatim = false;
    let mut skip_value = false;
    for arg in iter {
        if rest_verbatim {
            out.push(arg);
            continue;
        }
        if skip_value {
            skip_value = false;
            if !arg.starts_with('-') {
                legacy.ignored.push(arg);
                continue;
            }
        }
        if arg == "--" {
            rest_verbatim = true;
            out.push(arg);
            continue;
        }
        let Some(body) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|b| !b.is_empty())
        else {
            out.push(arg);
            continue;
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let single_dash = !arg.starts_with("--");
        let mut chars = name.chars();
        if single_dash
            && let (Some(c), None) = (chars.next(), chars.next())
            && short_flags.contains(&c)
        {
            out.push(arg);
            continue;
        }
        let name = name.replace('_', "-");
        if KLOG_BOOL_FLAGS.contains(&name.as_str()) {
            legacy.ignored.push(arg);
            continue;
        }
        if KLOG_VALUE_FLAGS.contains(&name.as_str()) {
            skip_value = value.is_none();
            legacy.ignored.push(arg);
            continue;
        }
        out.push(match value {
            Some(v) => format!("--{name}={v}"),
            None => format!("--{name}"),
        });
    }
    (out, legacy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str], short: &[char]) -> Vec<String> {
        let all = std::iter::once("prog")
            .chain(args.iter().copied())
            .map(String::from);
        normalize_args(all, short).0[1..].to_vec()
    }

    #[test]
    fn legacy_spellings_become_clap_flags() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["--dns_port=10053"], &["--dns-port=10053"]),
            (&["--dns-port", "10053"], &["--dns-port", "10053"]),
            (&["-v=2"], &["--v=2"]),
            (&["--v=2"], &["--v=2"]),
            (&["-configDir=/etc/x"], &["--configDir=/etc/x"]),
            (&["--logtostderr"], &[]),
            (&["--logtostderr=true", "--alsologtostderr"], &[]),
            (&["--log-dir", "/tmp", "--domain=x."], &["--domain=x."]),
            (&["--vmodule=a=1"], &[]),
            (&["--log_flush_frequency=5s"], &[]),
            (
                &["--", "-k", "--logtostderr"],
                &["--", "-k", "--logtostderr"],
            ),
            (&["plain"], &["plain"]),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input, &[]), *want, "input {input:?}");
        }
    }

    #[test]
    fn declared_short_flags_are_left_alone() {
        assert_eq!(norm(&["-k", "-v=1"], &['k']), ["-k", "--v=1"]);
    }

    #[test]
    fn ignored_flags_are_reported() {
        let args = ["prog", "--logtostderr", "--log-dir", "/x"].map(String::from);
        let (_, legacy) = normalize_args(args, &[]);
        assert_eq!(legacy.ignored, ["--logtostderr", "--log-dir", "/x"]);
    }
}
