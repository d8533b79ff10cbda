use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use kdns_net::{ServerConfig, exchange_tcp};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{
    Answers, GUARD, assert_closed, config, patient_config, query, read_frame, start, tcp_ask,
    write_frame,
};

#[tokio::test]
async fn a_tcp_query_gets_the_handler_answer() {
    let server = start(Answers::new(3), config()).await;
    let query = query("svc.example");
    let reply = exchange_tcp(server.addr, &query, GUARD)
        .await
        .expect("reply");
    assert_eq!(reply.metadata.id, query.metadata.id);
    assert_eq!(reply.answers.len(), 3);
}

#[tokio::test]
async fn a_frame_shorter_than_a_header_closes_the_connection() {
    let server = start(Answers::new(1), config()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(&[0, 5, 1, 2, 3, 4, 5])
        .await
        .expect("write");
    assert_closed(&mut stream).await;
}

#[tokio::test]
async fn a_response_sent_as_a_query_closes_the_connection() {
    let server = start(Answers::new(1), config()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let response = query("svc.example").into_response();
    write_frame(&mut stream, &response.to_vec().expect("encodes")).await;
    assert_closed(&mut stream).await;
}

#[tokio::test]
async fn a_malformed_query_gets_formerr_and_the_connection_stays_usable() {
    let server = start(Answers::new(1), patient_config()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let mut header_only = query("svc.example").to_vec().expect("encodes");
    header_only.truncate(12);
    write_frame(&mut stream, &header_only).await;
    let reply = Message::from_vec(&read_frame(&mut stream).await).expect("decodes");
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

    assert_eq!(tcp_ask(&mut stream, "svc.example").await.answers.len(), 1);
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let server = start(Answers::new(1), config()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    assert_closed(&mut stream).await;
    assert_eq!(server.stats.tcp_timeouts.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_client_dribbling_one_byte_at_a_time_is_cut_off_while_others_get_answers() {
    let server = start(Answers::new(1), config()).await;
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    let (mut reader, mut writer) = slow.split();
    let message = query("slow.example").to_vec().expect("encodes");
    let mut framed = u16::try_from(message.len())
        .expect("short")
        .to_be_bytes()
        .to_vec();
    framed.extend_from_slice(&message);

    let dribble = async {
        for byte in framed {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A server without a per-message deadline would now answer; the test then fails below.
        std::future::pending::<()>().await;
    };
    let others = async {
        let reply = exchange_tcp(server.addr, &query("fast.example"), GUARD)
            .await
            .expect("another client is served meanwhile");
        assert_eq!(reply.answers.len(), 1);
    };
    let closed = async {
        let mut buf = [0u8; 512];
        let read = tokio::io::AsyncReadExt::read(&mut reader, &mut buf);
        match tokio::time::timeout(GUARD, read).await {
            Ok(Ok(0) | Err(_)) => {}
            Ok(Ok(n)) => panic!("the slow client got {n} bytes instead of being cut off"),
            Err(_) => panic!("the slow client was never cut off"),
        }
    };
    tokio::select! {
        () = dribble => unreachable!("dribbling never ends on its own"),
        ((), ()) = async { tokio::join!(closed, others) } => {}
    }
    assert_eq!(server.stats.tcp_requests.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn connections_over_the_total_cap_are_closed_while_existing_ones_keep_working() {
    let config = ServerConfig {
        max_tcp_connections: 2,
        ..patient_config()
    };
    let server = start(Answers::new(1), config).await;
    let mut first = TcpStream::connect(server.addr).await.expect("connect");
    let mut second = TcpStream::connect(server.addr).await.expect("connect");
    // An answer proves the server has admitted the connection.
    tcp_ask(&mut first, "one.example").await;
    tcp_ask(&mut second, "two.example").await;

    let mut third = TcpStream::connect(server.addr).await.expect("connect");
    assert_closed(&mut third).await;
    assert_eq!(server.stats.tcp_rejected.load(Ordering::Relaxed), 1);

    assert_eq!(tcp_ask(&mut first, "again.example").await.answers.len(), 1);
}

#[tokio::test]
async fn connections_over_the_per_client_cap_are_closed_and_the_slot_comes_back() {
    let config = ServerConfig {
        max_tcp_connections_per_ip: 1,
        ..patient_config()
    };
    let server = start(Answers::new(1), config).await;
    let mut first = TcpStream::connect(server.addr).await.expect("connect");
    tcp_ask(&mut first, "one.example").await;

    let mut second = TcpStream::connect(server.addr).await.expect("connect");
    assert_closed(&mut second).await;
    assert_eq!(tcp_ask(&mut first, "again.example").await.answers.len(), 1);

    drop(first);
    // The server notices the close asynchronously; until then new connections are refused.
    let retry = async {
        while exchange_tcp(server.addr, &query("later.example"), GUARD)
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(GUARD, retry)
        .await
        .expect("a closed connection frees its slot");
}

#[tokio::test]
async fn pipelined_queries_on_one_connection_all_get_answers() {
    let server = start(Answers::new(1), patient_config()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let queries: Vec<Message> = (0..10u16)
        .map(|i| {
            let mut query = query(&format!("q{i}.example"));
            query.metadata.id = i;
            query
        })
        .collect();

    let mut burst = Vec::new();
    for query in &queries {
        let bytes = query.to_vec().expect("encodes");
        burst.extend_from_slice(&u16::try_from(bytes.len()).expect("short").to_be_bytes());
        burst.extend_from_slice(&bytes);
    }
    stream.write_all(&burst).await.expect("write");

    let mut answered = HashSet::new();
    for _ in &queries {
        let reply = Message::from_vec(&read_frame(&mut stream).await).expect("decodes");
        assert_eq!(reply.answers.len(), 1);
        answered.insert(reply.metadata.id);
    }
    let asked: HashSet<u16> = queries.iter().map(|query| query.metadata.id).collect();
    assert_eq!(answered, asked);
}
