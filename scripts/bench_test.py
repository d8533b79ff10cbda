"""Tests of the benchmark harness's pure parts: python3 scripts/bench_test.py"""

import os
import sys
import unittest
import xml.dom.minidom

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_lib as lib  # noqa: E402

DNSPERF_OUTPUT = """DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 48101 -d /tmp/q.txt -l 1 -Q 30
[Status] Sending queries (to 127.0.0.1:48101)
[Status] Started at: Mon Nov 23 01:10:48 2026
[Status] Stopping after 1.000000 seconds
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         30
  Queries completed:    29 (96.67%)
  Queries lost:         1 (3.33%)

  Response codes:       NOERROR 20 (68.97%), NXDOMAIN 9 (31.03%)
  Average packet size:  request 34, response 49
  Run time (s):         1.003902
  Queries per second:   28.887395

  Average Latency (s):  0.000160 (min 0.000118, max 0.000235)
  Latency StdDev (s):   0.000029
"""


class DnsperfParsing(unittest.TestCase):
    def test_statistics_block(self):
        stats = lib.parse_dnsperf(DNSPERF_OUTPUT)
        self.assertEqual((stats["sent"], stats["completed"], stats["lost"]), (30, 29, 1))
        self.assertAlmostEqual(stats["run_time"], 1.003902)
        self.assertAlmostEqual(stats["qps"], 28.887395)
        self.assertAlmostEqual(stats["avg_ms"], 0.160)
        self.assertAlmostEqual(stats["min_ms"], 0.118)
        self.assertAlmostEqual(stats["max_ms"], 0.235)
        self.assertAlmostEqual(stats["stddev_ms"], 0.029)
        self.assertEqual(stats["rcodes"], {"NOERROR": 20, "NXDOMAIN": 9})

    def test_failed_run_is_an_error(self):
        with self.assertRaises(ValueError):
            lib.parse_dnsperf("Error: unable to open datafile")

    def test_verbose_latencies(self):
        text = "[Status] x\n> NOERROR a.example. A 0.000218\n> NXDOMAIN b. AAAA 0.001\n> junk\n"
        self.assertEqual([round(v, 6) for v in lib.parse_verbose_latencies(text)], [0.218, 1.0])


class Statistics(unittest.TestCase):
    def test_median(self):
        self.assertEqual(lib.median([3, 1, 2]), 2)
        self.assertEqual(lib.median([4, 1, 3, 2]), 2.5)
        self.assertEqual(lib.median([None, 5]), 5)
        self.assertIsNone(lib.median([]))

    def test_percentile_nearest_rank(self):
        values = list(range(1, 101))
        self.assertEqual(lib.percentile(values, 0.5), 50)
        self.assertEqual(lib.percentile(values, 0.99), 99)
        self.assertEqual(lib.percentile(values, 1.0), 100)
        self.assertEqual(lib.percentile([7], 0.01), 7)
        self.assertIsNone(lib.percentile([], 0.5))

    def test_verdict(self):
        self.assertEqual(lib.verdict(1.4, 1.3), "met")
        self.assertEqual(lib.verdict(1.17, 1.3), "**missed** by 10%")
        self.assertEqual(lib.verdict(36, 40, higher_is_better=False), "met")
        self.assertEqual(lib.verdict(50, 40, higher_is_better=False), "**missed** by 25%")
        self.assertEqual(lib.verdict(None, 1), "not measured")
        self.assertEqual(lib.verdict(22.5, 10, higher_is_better=False, points=True), "**missed** by 12.5 points")
        self.assertEqual(lib.verdict(-3.0, 10, higher_is_better=False, points=True), "met")


class Proc(unittest.TestCase):
    def test_stat_with_odd_command_name(self):
        # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        text = "42 (a) b (c) S 1 42 42 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 3 0\n"
        self.assertEqual(lib.parse_proc_stat_ticks(text), 325)

    def test_status_and_machine(self):
        status = "Name:\tkubedns\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n"
        self.assertEqual(lib.parse_status_kb(status, "VmRSS"), 10240)
        self.assertEqual(lib.parse_status_kb(status, "VmHWM"), 20480)
        self.assertIsNone(lib.parse_status_kb(status, "VmSwap"))
        stat = "cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n"
        self.assertEqual(lib.parse_machine_busy_ticks(stat), 10 + 1 + 5 + 2 + 3 + 4)


class Packets(unittest.TestCase):
    def test_query_and_reply(self):
        query = lib.dns_query(0x1234, "svc-1.ns-2.svc.cluster.local", "SRV")
        self.assertEqual(query[:2], b"\x12\x34")
        self.assertIn(b"\x05svc-1\x04ns-2\x03svc\x07cluster\x05local\x00\x00\x21\x00\x01", query)
        reply = b"\x12\x34\x81\x83\x00\x01\x00\x00" + query[8:]
        self.assertEqual(lib.dns_reply_summary(reply, 0x1234), (3, 0))
        self.assertIsNone(lib.dns_reply_summary(reply, 0x1235))
        self.assertIsNone(lib.dns_reply_summary(query, 0x1234), "a query is not a reply")
        self.assertIsNone(lib.dns_reply_summary(b"\x12", 0x1234))


class QueryFiles(unittest.TestCase):
    def test_search_path_walk(self):
        walk = lib.search_path_walk("www.example.com", "shop", "cluster.local.")
        self.assertEqual(walk, [
            "www.example.com.shop.svc.cluster.local A", "www.example.com.shop.svc.cluster.local AAAA",
            "www.example.com.svc.cluster.local A", "www.example.com.svc.cluster.local AAAA",
            "www.example.com.cluster.local A", "www.example.com.cluster.local AAAA",
            "www.example.com A", "www.example.com AAAA",
        ])

    def test_distinct_names(self):
        self.assertEqual(lib.distinct_names(["a A\n", "b A\n", "a A\n", "c A\n"], 2), ["a A", "b A"])


class Output(unittest.TestCase):
    def test_markdown_table(self):
        table = lib.markdown_table(["Design", "q/s"], [["pod", "1,000"]])
        self.assertEqual(table, "| Design | q/s |\n| --- | ---: |\n| pod | 1,000 |")

    def test_chart_is_well_formed_svg(self):
        svg = lib.svg_bar_chart(
            "Rates <&>", [("Cache hits", {"pod": 200000.0, "dnsmasq": 100000.0}), ("Other", {"pod": None})],
            ["pod", "dnsmasq"], "subtitle")
        doc = xml.dom.minidom.parseString(svg)
        rects = [r for r in doc.getElementsByTagName("rect") if r.getElementsByTagName("title")]
        widths = {r.getElementsByTagName("title")[0].firstChild.data.split(":")[0]: float(r.getAttribute("width"))
                  for r in rects}
        self.assertEqual(len(rects), 2)
        self.assertAlmostEqual(widths["pod"], 2 * widths["dnsmasq"])
        self.assertIn("not run", svg)


if __name__ == "__main__":
    unittest.main()
