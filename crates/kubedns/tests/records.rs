//! Table tests per Service kind: objects in, DNS answers out, expected answers written as
//! zone-file lines. No sockets: the handler is called directly.

mod common;

use common::{ask, zone, zone_with};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use kubedns::records::PodRecords;
use serde_json::Value;
use test_support::assert_records_eq;
use test_support::fixtures::{endpoint_slice, endpoints, pod, service};

struct Case {
    qname: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    answer: &'static [&'static str],
    additional: &'static [&'static str],
}

const fn case(
    qname: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    answer: &'static [&'static str],
) -> Case {
    Case {
        qname,
        qtype,
        rcode,
        answer,
        additional: &[],
    }
}

async fn check(objects: Vec<Value>, cases: &[Case]) {
    let zone = zone(objects);
    for c in cases {
        let reply = ask(&zone, c.qname, c.qtype).await;
        assert_eq!(
            reply.metadata.response_code, c.rcode,
            "{} {}: rcode\n{reply}",
            c.qname, c.qtype
        );
        assert_records_eq(&reply.answers, c.answer);
        assert_records_eq(&reply.additionals, c.additional);
        if c.rcode == ResponseCode::NoError || c.rcode == ResponseCode::NXDomain {
            assert!(reply.metadata.authoritative, "{} {}: AA", c.qname, c.qtype);
        }
        if c.answer.is_empty() && c.rcode != ResponseCode::ServFail {
            assert_eq!(
                reply.authorities.len(),
                1,
                "{} {}: negative answers carry the SOA",
                c.qname,
                c.qtype
            );
            assert_eq!(reply.authorities[0].record_type(), RecordType::SOA);
        }
    }
}

use RecordType::{A, AAAA, ANY, CNAME, PTR, SOA, SRV, TXT};
const OK: ResponseCode = ResponseCode::NoError;
const NX: ResponseCode = ResponseCode::NXDomain;

#[tokio::test]
async fn clusterip_v4_service_answers_a_srv_and_ptr() {
    let objects = vec![
        service("ns1", "svc1")
            .cluster_ip("10.0.0.1")
            .port("http", 80, "TCP")
            .port("dns", 53, "UDP")
            .port("", 9090, "TCP")
            .build(),
    ];
    check(
        objects,
        &[
            case("svc1.ns1.svc.cluster.local.", A, OK, &["svc1.ns1.svc.cluster.local. 30 IN A 10.0.0.1"]),
            case("svc1.ns1.svc.cluster.local.", AAAA, OK, &[]),
            case("svc1.ns1.svc.cluster.local.", TXT, OK, &[]),
            case("svc1.ns1.svc.cluster.local.", CNAME, OK, &[]),
            Case {
                qname: "_http._tcp.svc1.ns1.svc.cluster.local.",
                qtype: SRV,
                rcode: OK,
                answer: &["_http._tcp.svc1.ns1.svc.cluster.local. 30 IN SRV 10 100 80 svc1.ns1.svc.cluster.local."],
                additional: &["svc1.ns1.svc.cluster.local. 30 IN A 10.0.0.1"],
            },
            Case {
                qname: "_dns._udp.svc1.ns1.svc.cluster.local.",
                qtype: SRV,
                rcode: OK,
                answer: &["_dns._udp.svc1.ns1.svc.cluster.local. 30 IN SRV 10 100 53 svc1.ns1.svc.cluster.local."],
                additional: &["svc1.ns1.svc.cluster.local. 30 IN A 10.0.0.1"],
            },
            // Port names and protocols do not mix.
            case("_http._udp.svc1.ns1.svc.cluster.local.", SRV, NX, &[]),
            case("_dns._tcp.svc1.ns1.svc.cluster.local.", SRV, NX, &[]),
            // The protocol label exists (RFC 8020: NODATA, not NXDOMAIN).
            case("_tcp.svc1.ns1.svc.cluster.local.", SRV, OK, &[]),
            case("_sctp.svc1.ns1.svc.cluster.local.", SRV, NX, &[]),
            case("_http._tcp.svc1.ns1.svc.cluster.local.", A, OK, &[]),
            // SRV on the bare name: kube-dns's port-0 records to the per-IP name.
            Case {
                qname: "svc1.ns1.svc.cluster.local.",
                qtype: SRV,
                rcode: OK,
                answer: &["svc1.ns1.svc.cluster.local. 30 IN SRV 10 100 0 3234633364383235.svc1.ns1.svc.cluster.local."],
                additional: &["3234633364383235.svc1.ns1.svc.cluster.local. 30 IN A 10.0.0.1"],
            },
            case("3234633364383235.svc1.ns1.svc.cluster.local.", A, OK, &["3234633364383235.svc1.ns1.svc.cluster.local. 30 IN A 10.0.0.1"]),
            case("1.0.0.10.in-addr.arpa.", PTR, OK, &["1.0.0.10.in-addr.arpa. 30 IN PTR svc1.ns1.svc.cluster.local."]),
            case("1.0.0.10.in-addr.arpa.", TXT, OK, &[]),
            case("ns1.svc.cluster.local.", A, OK, &[]),
            case("svc.cluster.local.", A, OK, &[]),
            case("other.ns1.svc.cluster.local.", A, NX, &[]),
            case("svc1.other.svc.cluster.local.", A, NX, &[]),
            case("x.svc1.ns1.svc.cluster.local.", A, NX, &[]),
            case("nothing.cluster.local.", A, NX, &[]),
        ],
    )
    .await;
}

#[tokio::test]
async fn clusterip_v6_and_dual_stack_services_answer_each_family() {
    let objects = vec![
        service("ns1", "v6")
            .cluster_ip("fd00::10")
            .port("http", 80, "TCP")
            .build(),
        service("ns1", "dual")
            .cluster_ips(&["10.0.0.2", "fd00::20"])
            .port("http", 80, "TCP")
            .build(),
    ];
    check(
        objects,
        &[
            case("v6.ns1.svc.cluster.local.", AAAA, OK, &["v6.ns1.svc.cluster.local. 30 IN AAAA fd00::10"]),
            case("v6.ns1.svc.cluster.local.", A, OK, &[]),
            case("dual.ns1.svc.cluster.local.", A, OK, &["dual.ns1.svc.cluster.local. 30 IN A 10.0.0.2"]),
            case("dual.ns1.svc.cluster.local.", AAAA, OK, &["dual.ns1.svc.cluster.local. 30 IN AAAA fd00::20"]),
            case(
                "dual.ns1.svc.cluster.local.",
                ANY,
                OK,
                &["dual.ns1.svc.cluster.local. 30 IN A 10.0.0.2", "dual.ns1.svc.cluster.local. 30 IN AAAA fd00::20"],
            ),
            Case {
                qname: "_http._tcp.dual.ns1.svc.cluster.local.",
                qtype: SRV,
                rcode: OK,
                answer: &["_http._tcp.dual.ns1.svc.cluster.local. 30 IN SRV 10 100 80 dual.ns1.svc.cluster.local."],
                additional: &["dual.ns1.svc.cluster.local. 30 IN A 10.0.0.2", "dual.ns1.svc.cluster.local. 30 IN AAAA fd00::20"],
            },
            case(
                "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
                PTR,
                OK,
                &["0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 30 IN PTR dual.ns1.svc.cluster.local."],
            ),
            case("2.0.0.10.in-addr.arpa.", PTR, OK, &["2.0.0.10.in-addr.arpa. 30 IN PTR dual.ns1.svc.cluster.local."]),
        ],
    )
    .await;
}

#[tokio::test]
async fn headless_service_answers_one_record_per_ready_endpoint() {
    let objects = vec![
        service("ns1", "hl")
            .headless()
            .port("http", 80, "TCP")
            .build(),
        endpoint_slice("ns1", "hl-v4", "hl")
            .endpoint_with_hostname("10.1.0.1", "web-0", true)
            .endpoint_with_hostname("10.1.0.2", "web-1", true)
            .endpoint("10.244.2.12", true)
            .endpoint_with_hostname("10.1.0.9", "web-9", false)
            .port("http", 8080, "TCP")
            .build(),
        endpoint_slice("ns1", "hl-v6", "hl")
            .endpoint_with_hostname("fd00::1:1", "web-0", true)
            .port("http", 8080, "TCP")
            .build(),
    ];
    check(
        objects,
        &[
            case(
                "hl.ns1.svc.cluster.local.",
                A,
                OK,
                &[
                    "hl.ns1.svc.cluster.local. 30 IN A 10.1.0.1",
                    "hl.ns1.svc.cluster.local. 30 IN A 10.1.0.2",
                    "hl.ns1.svc.cluster.local. 30 IN A 10.244.2.12",
                ],
            ),
            case("hl.ns1.svc.cluster.local.", AAAA, OK, &["hl.ns1.svc.cluster.local. 30 IN AAAA fd00::1:1"]),
            case("web-0.hl.ns1.svc.cluster.local.", A, OK, &["web-0.hl.ns1.svc.cluster.local. 30 IN A 10.1.0.1"]),
            case("web-0.hl.ns1.svc.cluster.local.", AAAA, OK, &["web-0.hl.ns1.svc.cluster.local. 30 IN AAAA fd00::1:1"]),
            case("6462323962636362.hl.ns1.svc.cluster.local.", A, OK, &["6462323962636362.hl.ns1.svc.cluster.local. 30 IN A 10.244.2.12"]),
            // Not ready: not served.
            case("web-9.hl.ns1.svc.cluster.local.", A, NX, &[]),
            Case {
                qname: "_http._tcp.hl.ns1.svc.cluster.local.",
                qtype: SRV,
                rcode: OK,
                answer: &[
                    "_http._tcp.hl.ns1.svc.cluster.local. 30 IN SRV 10 33 8080 web-0.hl.ns1.svc.cluster.local.",
                    "_http._tcp.hl.ns1.svc.cluster.local. 30 IN SRV 10 33 8080 web-1.hl.ns1.svc.cluster.local.",
                    "_http._tcp.hl.ns1.svc.cluster.local. 30 IN SRV 10 33 8080 6462323962636362.hl.ns1.svc.cluster.local.",
                ],
                additional: &[
                    "web-0.hl.ns1.svc.cluster.local. 30 IN A 10.1.0.1",
                    "web-0.hl.ns1.svc.cluster.local. 30 IN AAAA fd00::1:1",
                    "web-1.hl.ns1.svc.cluster.local. 30 IN A 10.1.0.2",
                    "6462323962636362.hl.ns1.svc.cluster.local. 30 IN A 10.244.2.12",
                ],
            },
            case("1.0.1.10.in-addr.arpa.", PTR, OK, &["1.0.1.10.in-addr.arpa. 30 IN PTR web-0.hl.ns1.svc.cluster.local."]),
            case("12.2.244.10.in-addr.arpa.", PTR, OK, &["12.2.244.10.in-addr.arpa. 30 IN PTR 6462323962636362.hl.ns1.svc.cluster.local."]),
        ],
    )
    .await;
}

#[tokio::test]
async fn endpoints_sharing_a_hostname_keep_one_record_per_ip() {
    let objects = vec![
        service("ns1", "shared").headless().build(),
        endpoint_slice("ns1", "shared-a", "shared")
            .endpoint_with_hostname("10.2.0.1", "same", true)
            .endpoint_with_hostname("10.2.0.2", "same", true)
            .build(),
    ];
    check(
        objects,
        &[case(
            "same.shared.ns1.svc.cluster.local.",
            A,
            OK,
            &[
                "same.shared.ns1.svc.cluster.local. 30 IN A 10.2.0.1",
                "same.shared.ns1.svc.cluster.local. 30 IN A 10.2.0.2",
            ],
        )],
    )
    .await;
}

#[tokio::test]
async fn headless_service_without_ready_endpoints_is_nxdomain() {
    let objects = vec![
        service("ns1", "empty")
            .headless()
            .port("http", 80, "TCP")
            .build(),
        endpoint_slice("ns1", "empty-x", "empty")
            .endpoint("10.3.0.1", false)
            .port("http", 80, "TCP")
            .build(),
        service("ns1", "noslices").headless().build(),
    ];
    check(
        objects,
        &[
            case("empty.ns1.svc.cluster.local.", A, NX, &[]),
            case("empty.ns1.svc.cluster.local.", SRV, NX, &[]),
            case("_http._tcp.empty.ns1.svc.cluster.local.", SRV, NX, &[]),
            case("noslices.ns1.svc.cluster.local.", A, NX, &[]),
            case("1.0.3.10.in-addr.arpa.", PTR, ResponseCode::ServFail, &[]),
        ],
    )
    .await;
}

#[tokio::test]
async fn publish_not_ready_addresses_serves_every_endpoint() {
    let objects = vec![
        service("ns1", "pnr").headless().publish_not_ready().build(),
        endpoint_slice("ns1", "pnr-x", "pnr")
            .endpoint("10.4.0.1", false)
            .endpoint("10.4.0.2", true)
            .build(),
    ];
    check(
        objects,
        &[case(
            "pnr.ns1.svc.cluster.local.",
            A,
            OK,
            &[
                "pnr.ns1.svc.cluster.local. 30 IN A 10.4.0.1",
                "pnr.ns1.svc.cluster.local. 30 IN A 10.4.0.2",
            ],
        )],
    )
    .await;
}

#[tokio::test]
async fn external_name_services_answer_a_cname_or_an_address() {
    let objects = vec![
        service("ns1", "ext")
            .external_name("db.example.com")
            .build(),
        service("ns1", "inzone")
            .external_name("svc1.ns1.svc.cluster.local")
            .build(),
        service("ns1", "svc1").cluster_ip("10.0.0.1").build(),
        service("ns1", "extip").external_name("192.0.2.7").build(),
        service("ns1", "extip6")
            .external_name("2001:db8::7")
            .build(),
    ];
    check(
        objects,
        &[
            // No upstream answers: the CNAME stays.
            case(
                "ext.ns1.svc.cluster.local.",
                A,
                OK,
                &["ext.ns1.svc.cluster.local. 30 IN CNAME db.example.com."],
            ),
            case(
                "ext.ns1.svc.cluster.local.",
                CNAME,
                OK,
                &["ext.ns1.svc.cluster.local. 30 IN CNAME db.example.com."],
            ),
            case(
                "inzone.ns1.svc.cluster.local.",
                A,
                OK,
                &[
                    "inzone.ns1.svc.cluster.local. 30 IN CNAME svc1.ns1.svc.cluster.local.",
                    "svc1.ns1.svc.cluster.local. 30 IN A 10.0.0.1",
                ],
            ),
            case(
                "extip.ns1.svc.cluster.local.",
                A,
                OK,
                &["extip.ns1.svc.cluster.local. 30 IN A 192.0.2.7"],
            ),
            case("extip.ns1.svc.cluster.local.", AAAA, OK, &[]),
            case(
                "extip6.ns1.svc.cluster.local.",
                AAAA,
                OK,
                &["extip6.ns1.svc.cluster.local. 30 IN AAAA 2001:db8::7"],
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn core_v1_endpoints_work_where_there_are_no_slices() {
    let objects = vec![
        service("ns1", "old")
            .headless()
            .port("http", 80, "TCP")
            .build(),
        endpoints("ns1", "old")
            .address_with_hostname("10.5.0.1", "a", true)
            .address("10.5.0.2", false)
            .port("http", 8080, "TCP")
            .build(),
    ];
    check(
        objects,
        &[
            case("old.ns1.svc.cluster.local.", A, OK, &["old.ns1.svc.cluster.local. 30 IN A 10.5.0.1"]),
            Case {
                qname: "_http._tcp.old.ns1.svc.cluster.local.",
                qtype: SRV,
                rcode: OK,
                answer: &["_http._tcp.old.ns1.svc.cluster.local. 30 IN SRV 10 100 8080 a.old.ns1.svc.cluster.local."],
                additional: &["a.old.ns1.svc.cluster.local. 30 IN A 10.5.0.1"],
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn zone_apex_schema_version_and_pod_names() {
    let objects = vec![
        service("kube-system", "kube-dns")
            .cluster_ip("10.96.0.10")
            .build(),
    ];
    let zone = zone(objects);
    let soa = ask(&zone, "cluster.local.", SOA).await;
    assert_eq!(soa.answers.len(), 1);
    assert!(
        soa.answers[0]
            .to_string()
            .contains("ns.dns.cluster.local. hostmaster.cluster.local."),
        "{soa}"
    );
    let version = ask(&zone, "dns-version.cluster.local.", TXT).await;
    assert_records_eq(
        &version.answers,
        &["dns-version.cluster.local. 30 IN TXT \"1.1.0\""],
    );
    let ns = ask(&zone, "ns.dns.cluster.local.", A).await;
    assert_records_eq(&ns.answers, &["ns.dns.cluster.local. 30 IN A 10.96.0.10"]);
    let pod4 = ask(&zone, "10-244-1-10.ns1.pod.cluster.local.", A).await;
    assert_records_eq(
        &pod4.answers,
        &["10-244-1-10.ns1.pod.cluster.local. 30 IN A 10.244.1.10"],
    );
    let pod6 = ask(&zone, "fd00-10-244-1--21.ns1.pod.cluster.local.", AAAA).await;
    assert_records_eq(
        &pod6.answers,
        &["fd00-10-244-1--21.ns1.pod.cluster.local. 30 IN AAAA fd00:10:244:1::21"],
    );
    // kube-dns crashed on these; here they are plain NODATA.
    for qtype in [SRV, PTR, RecordType::CAA, SOA] {
        let reply = ask(&zone, "1-2-3-4.ns1.pod.cluster.local.", qtype).await;
        assert_eq!(reply.metadata.response_code, OK, "{qtype}");
        assert!(reply.answers.is_empty());
    }
    let bad = ask(&zone, "not-an-ip.ns1.pod.cluster.local.", A).await;
    assert_eq!(bad.metadata.response_code, NX);
}

#[tokio::test]
async fn verified_pod_records_need_a_pod_with_that_ip_in_that_namespace() {
    let objects = vec![pod("ns1", "p1", "10.244.0.5")];
    let zone = zone_with(objects, PodRecords::Verified, Vec::new());
    let ok = ask(&zone, "10-244-0-5.ns1.pod.cluster.local.", A).await;
    assert_records_eq(
        &ok.answers,
        &["10-244-0-5.ns1.pod.cluster.local. 30 IN A 10.244.0.5"],
    );
    let other_ns = ask(&zone, "10-244-0-5.ns2.pod.cluster.local.", A).await;
    assert_eq!(other_ns.metadata.response_code, NX);
    let unknown = ask(&zone, "10-244-0-6.ns1.pod.cluster.local.", A).await;
    assert_eq!(unknown.metadata.response_code, NX);

    let disabled = zone_with(Vec::new(), PodRecords::Disabled, Vec::new());
    let reply = ask(&disabled, "10-244-0-5.ns1.pod.cluster.local.", A).await;
    assert_eq!(reply.metadata.response_code, NX);
}

#[tokio::test]
async fn names_outside_the_zone_without_upstreams_get_servfail() {
    let zone = zone(Vec::new());
    let reply = ask(&zone, "www.example.com.", A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let reply = ask(&zone, "8.8.8.8.in-addr.arpa.", PTR).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn names_match_case_insensitively_and_answers_keep_the_question_case() {
    let zone = zone(vec![service("ns1", "svc1").cluster_ip("10.0.0.1").build()]);
    let reply = ask(&zone, "SVC1.Ns1.svc.Cluster.LOCAL.", A).await;
    assert_eq!(reply.metadata.response_code, OK);
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(
        reply.answers[0].name.to_ascii(),
        "SVC1.Ns1.svc.Cluster.LOCAL."
    );
}
