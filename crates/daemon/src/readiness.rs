//! A readiness latch in the manner of linkerd's admin server: the process is ready once every
//! latch handed out has been released.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether the process is ready: true once every [`Latch`] has been released.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicUsize>);

/// Holds readiness back until released (or dropped).
#[derive(Debug)]
pub struct Latch {
    readiness: Option<Readiness>,
}

impl Readiness {
    /// A readiness with no latches: ready at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands out a latch; the process is not ready until it is released.
    pub fn latch(&self) -> Latch {
        self.0.fetch_add(1, Ordering::AcqRel);
        Latch {
            readiness: Some(self.clone()),
        }
    }

    /// True once every latch is released.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}

impl Latch {
    /// Releases the latch; releasing twice is a no-op.
    pub fn release(&mut self) {
        if let Some(r) = self.readiness.take() {
            r.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Latch {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_after_every_latch_is_released() {
        let readiness = Readiness::new();
        assert!(readiness.is_ready());
        let mut a = readiness.latch();
        let b = readiness.latch();
        assert!(!readiness.is_ready());
        a.release();
        a.release();
        assert!(!readiness.is_ready());
        drop(b);
        assert!(readiness.is_ready());
    }
}
