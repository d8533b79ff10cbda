//! DNS NOTIFY (RFC 1996) to the caches in front, so they drop changed answers at once instead of
//! serving them until their TTL runs out.
//!
//! One message per changed owner name, question `<name> IN SOA`, opcode NOTIFY, AA set; the
//! receiver drops what it caches at and below the name and acknowledges. When a publish changes
//! more than [`crate::store::MAX_CHANGED_NAMES`] names, NOTIFY for the zone apex and for the two
//! reverse zones replaces them (a cache holds PTR answers under `in-addr.arpa.` and `ip6.arpa.`,
//! not under the zone). Unacknowledged messages are resent up to three times, 100 ms apart.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::sync::mpsc;

const ATTEMPTS: usize = 3;
const ACK_TIMEOUT: Duration = Duration::from_millis(100);

/// Sends NOTIFY messages for changed names, in the background.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<Vec<Name>>,
}

impl Notifier {
    /// Starts the sender task for `targets`; `zone` is what to notify when too much changed.
    pub fn start(targets: Vec<SocketAddr>, zone: Name) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Name>>();
        tokio::spawn(async move {
            while let Some(mut names) = rx.recv().await {
                // Fold whatever queued up meanwhile into one round.
                while let Ok(more) = rx.try_recv() {
                    names.extend(more);
                }
                names.sort();
                names.dedup();
                if names.len() > crate::store::MAX_CHANGED_NAMES || names.contains(&zone) {
                    names = everything(&zone);
                }
                let sends = targets
                    .iter()
                    .flat_map(|t| names.iter().map(move |n| send(*t, n.clone())));
                futures::future::join_all(sends).await;
            }
        });
        Self { tx }
    }

    /// Queues NOTIFY messages for `names`.
    pub fn notify(&self, names: Vec<Name>) {
        if !names.is_empty() {
            let _ = self.tx.send(names);
        }
    }
}

/// The names that stand for every answer: the zone apex and the reverse zones.
fn everything(zone: &Name) -> Vec<Name> {
    let reverse = ["in-addr.arpa.", "ip6.arpa."]
        .into_iter()
        .filter_map(|z| Name::from_ascii(z).ok());
    std::iter::once(zone.clone()).chain(reverse).collect()
}

/// The NOTIFY message for `name`.
pub fn notify_message(name: Name) -> Message {
    let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Notify);
    message.metadata.authoritative = true;
    message.add_query(Query::query(name, RecordType::SOA));
    message
}

async fn send(target: SocketAddr, name: Name) {
    for attempt in 1..=ATTEMPTS {
        let message = notify_message(name.clone());
        match kdns_net::exchange_udp(target, &message, ACK_TIMEOUT).await {
            Ok(_) => return,
            Err(e) if attempt == ATTEMPTS => {
                tracing::warn!(%target, name = %name, error = %e, "NOTIFY not acknowledged");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_changed_covers_the_reverse_zones_too() {
        let zone = Name::from_ascii("cluster.local.").expect("a name");
        let names: Vec<String> = everything(&zone).iter().map(Name::to_ascii).collect();
        assert_eq!(names, ["cluster.local.", "in-addr.arpa.", "ip6.arpa."]);
    }
}
