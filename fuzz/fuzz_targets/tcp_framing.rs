//! A byte stream into kdns-net's TCP connection handling (length-prefixed requests, answered by
//! the demo kubedns zone), read back as the client would: the replies must be whole frames, one
//! per request in order, each a valid response with its request's ID.

#![no_main]

use kdns_fuzz::{CLIENT, check_reply, demo_zone, runtime};
use kdns_net::{ServerConfig, serve_stream};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The frames the server can read before it must stop: complete ones, up to the first that is
/// too short to hold a DNS header.
fn request_frames(mut stream: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while let [high, low, rest @ ..] = stream {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        if len < 12 || rest.len() < len {
            break;
        }
        let (frame, next) = rest.split_at(len);
        frames.push(frame);
        stream = next;
    }
    frames
}

fuzz_target!(|data: &[u8]| {
    let output = runtime().block_on(async {
        let (client, server) = tokio::io::duplex(16 * 1024);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let serving = serve_stream(demo_zone(), ServerConfig::default(), server, CLIENT);
        let talking = async {
            // The server may close early (junk); later writes then fail, which is fine.
            let _ = to_server.write_all(data).await;
            let _ = to_server.shutdown().await;
            drop(to_server);
        };
        let reading = async {
            let mut output = Vec::new();
            from_server
                .read_to_end(&mut output)
                .await
                .expect("reading the replies");
            output
        };
        let ((), (), output) = tokio::join!(serving, talking, reading);
        output
    });

    let requests = request_frames(data);
    let mut rest = &output[..];
    let mut replies = 0;
    while !rest.is_empty() {
        let [high, low, body @ ..] = rest else {
            panic!("a partial length prefix ends the reply stream");
        };
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        assert!(body.len() >= len, "a partial reply frame ends the stream");
        let (reply, next) = body.split_at(len);
        let request = requests
            .get(replies)
            .unwrap_or_else(|| panic!("reply {replies} has no request"));
        check_reply(request, reply, None);
        replies += 1;
        rest = next;
    }
});
