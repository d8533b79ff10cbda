//! healthz's `--probe` parser on arbitrary text. What it accepts must print in the canonical
//! form, which must parse back to the same probe, as the Display impl promises.

#![no_main]

use healthz::probe::{MAX_INTERVAL, ProbeSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = text.parse::<ProbeSpec>() else {
        return;
    };
    assert!(!spec.interval.is_zero() && spec.interval <= MAX_INTERVAL);
    assert!(spec.name.is_fqdn());
    let canonical = spec.to_string();
    match canonical.parse::<ProbeSpec>() {
        Ok(again) => assert_eq!(again, spec, "{text:?} prints as {canonical:?}"),
        Err(e) => panic!("{text:?} prints as {canonical:?}, which does not parse: {e}"),
    }
});
