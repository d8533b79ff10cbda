//! DNS-1123 name rules, as Kubernetes applies them to ConfigMap domains.

/// Checks a DNS-1123 label: 1 to 63 of `[a-z0-9-]`, starting and ending with a letter or digit.
pub(crate) fn check_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("empty label");
    }
    if label.len() > 63 {
        return Err("label longer than 63 characters");
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("only lowercase letters, digits, '-' and '.' are allowed");
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("labels must start and end with a letter or digit");
    }
    Ok(())
}

/// Checks a DNS-1123 subdomain: dot-separated labels, at most 253 characters in all.
pub(crate) fn check_subdomain(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    name.split('.').try_for_each(check_label)
}

/// Checks a domain as written in the ConfigMap, where a trailing dot is accepted, and returns it
/// without the dot.
pub(crate) fn normalize_domain(name: &str) -> Result<&str, &'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    check_subdomain(name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_follow_dns_1123() {
        for ok in ["a", "a.b", "0.example", "my-domain.local", &"a".repeat(63)] {
            assert_eq!(check_subdomain(ok), Ok(()), "{ok}");
        }
        // invalid
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a.",
            "A.local",
            "-a.local",
            "a-.local",
            "a_b.local",
            "a b",
            &"a".repeat(64),
            &["a"; 128].join("."),
        ] {
            assert!(check_subdomain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_trailing_dot_is_accepted_once_and_stripped() {
        assert_eq!(normalize_domain("acme.local."), Ok("acme.local"));
        assert_eq!(normalize_domain("acme.local"), Ok("acme.local"));
        // invalid
        assert!(normalize_domain("acme.local..").is_err());
        assert!(normalize_domain(".").is_err());
    }
}
