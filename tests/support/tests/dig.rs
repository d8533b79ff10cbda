//! `dig` against a tiny DNS responder, checking what `DigOutput` extracts.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use test_support::{
    assert_records_eq, dig, dig_async, dig_available, rr, subscribe, timeout_after,
};
use tokio::net::UdpSocket;

const LIMIT: Duration = Duration::from_secs(20);

/// Answers `known.test.` A with two addresses, `text.test.` TXT, and NXDOMAIN
/// (with an SOA in authority) for everything else.
async fn responder() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buffer).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buffer[..len]) else {
                continue;
            };
            let mut response = Message::response(query.metadata.id, query.metadata.op_code);
            response.metadata.authoritative = true;
            response.metadata.recursion_desired = query.metadata.recursion_desired;
            let question = query.queries[0].clone();
            let name = question.name().to_string();
            match (name.as_str(), question.query_type()) {
                ("known.test.", RecordType::A) => {
                    response.add_answer(rr("known.test. 30 IN A 10.0.0.1"));
                    response.add_answer(rr("known.test. 30 IN A 10.0.0.2"));
                }
                ("text.test.", RecordType::TXT) => {
                    response.add_answer(rr("text.test. 5 IN TXT \"hello  world\""));
                }
                _ => {
                    response.metadata.response_code = ResponseCode::NXDomain;
                    response.add_authority(rr(
                        "test. 30 IN SOA ns.test. hostmaster.test. 1 7200 1800 86400 30",
                    ));
                }
            }
            response.add_query(question);
            let bytes = response.to_vec().expect("response encodes");
            let _ = socket.send_to(&bytes, peer).await;
        }
    });
    addr
}

#[tokio::test]
async fn dig_reports_status_flags_and_answers() {
    subscribe();
    if !dig_available() {
        eprintln!("dig is not installed; skipping");
        return;
    }
    let server = responder().await;

    let found = timeout_after(LIMIT, dig_async(server, &["known.test.", "A"])).await;
    assert_eq!(found.status, "NOERROR", "{}", found.stdout);
    assert!(
        found.flags.iter().any(|flag| flag == "aa"),
        "{:?}",
        found.flags
    );
    assert_records_eq(
        &found.answer_records(),
        &[
            "known.test. 30 IN A 10.0.0.1",
            "known.test. 30 IN A 10.0.0.2",
        ],
    );

    let text = timeout_after(LIMIT, dig_async(server, &["text.test.", "TXT"])).await;
    assert_eq!(text.answer, ["text.test. 5 IN TXT \"hello  world\""]);
    assert_records_eq(
        &text.answer_records(),
        &["text.test. 5 IN TXT \"hello  world\""],
    );

    let missing = timeout_after(LIMIT, dig_async(server, &["nope.test.", "A", "+authority"])).await;
    assert_eq!(missing.status, "NXDOMAIN");
    assert!(missing.answer.is_empty());
    assert_records_eq(
        &missing
            .authority
            .iter()
            .map(|line| rr(line))
            .collect::<Vec<_>>(),
        &["test. 30 IN SOA ns.test. hostmaster.test. 1 7200 1800 86400 30"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_dig_and_no_reply() {
    subscribe();
    if !dig_available() {
        eprintln!("dig is not installed; skipping");
        return;
    }
    let server = responder().await;
    let found = timeout_after(
        LIMIT,
        tokio::task::spawn_blocking(move || dig(server, &["known.test."])),
    )
    .await
    .unwrap();
    assert_eq!(found.answer.len(), 2, "{}", found.stdout);

    // A bound socket that never answers: dig gives up after +time=2.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let out = timeout_after(
        LIMIT,
        dig_async(silent.local_addr().unwrap(), &["known.test."]),
    )
    .await;
    assert!(!out.answered(), "{}", out.stdout);
    assert_eq!(out.exit_code, Some(9), "{}", out.stdout);
}
