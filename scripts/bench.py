#!/usr/bin/env python3
"""The cluster DNS benchmark: the designs side by side, on loopback, with dnsperf.

Designs (each process on 127.0.0.1, ports picked free):
  pod            dnsmasq-rs (port 53 role) -> kubedns, plus healthz, with the manifest's flags
  kubedns        kubedns alone, queried directly (no cache)
  single         target/release/kube-dns-single: kubedns and dnsmasq-rs in one process
  legacy         Debian's dnsmasq (/usr/sbin/dnsmasq) with the manifest's flags -> kubedns
  dnsmasq        Debian's dnsmasq alone as a cache (the cache-hit reference)

Workloads: cache hits, record-store answers (caches off), the ndots:5 search-path walk, churn
(DNS programming latency, with and without NOTIFY), and scale (time to ready, RSS, relist peak).
Writes docs/benchmarks.md and docs/benchmarks.svg (the chart), and the raw results as JSON in
target/bench/results.json.

  scripts/bench.py                 # everything, under 15 minutes (make bench)
  scripts/bench.py --quick         # fewer rounds, shorter, fewer scales; under 2 minutes
  scripts/bench.py --only records --designs kubedns   # a part (make bench-kubedns)

Method: dnsperf runs closed-loop (CLIENTS sockets, OUTSTANDING queries in flight each), so the
server under test is saturated; on 2 cores dnsperf takes most of one. Candidates run in turn
within each round, several rounds, and rows quote the median round. CPU per server process is
utime+stime from /proc/PID/stat over the run; "per core" divides answered queries by those
CPU-seconds. Latency percentiles come from a separate run at a fixed rate with dnsperf -v (this
dnsperf, 2.10, prints only average, min, max and stddev otherwise).
"""

import argparse
import datetime
import json
import os
import platform
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_lib as lib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")
ZONE = "cluster.local"
DNSMASQ = "/usr/sbin/dnsmasq"
ENDPOINTS_PER_SERVICE = 10
WIDE_HEADLESS = 10
CLIENTS = 4
OUTSTANDING = 100
DNSPERF_TIMEOUT = 1
NOISY_CORES = 0.15
# Low enough for every design to keep up, so the percentiles are service times rather than
# queueing.
LATENCY_RATE = 5000
# Cached answers for the cache-memory part: dnsmasq's `--cache-size` the bench uses elsewhere.
CACHE_FILL = 10000

DESIGN_TITLES = {
    "pod": "pod (dnsmasq-rs → kubedns)",
    "pod-notify": "pod, NOTIFY (recommended manifest)",
    "kubedns": "kubedns alone",
    "single": "single binary",
    "single-notify": "single binary, NOTIFY (recommended flags)",
    "legacy": "legacy (dnsmasq → kubedns)",
    "dnsmasq": "dnsmasq alone",
}


STARTED = time.monotonic()


def log(message):
    print(f"bench: [{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


class Failure(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Processes


class Procs:
    """Every process the harness started; stop() ends one, stop_all() the rest (by pid)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.live = {}
        self.count = 0

    def start(self, name, argv, stdin=None, stdout=None):
        self.count += 1
        logfile = open(os.path.join(self.workdir, f"{self.count:03d}-{name}.log"), "wb")
        proc = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=stdout if stdout is not None else logfile,
            stderr=logfile,
            cwd=ROOT,
        )
        proc.bench_name = name
        proc.bench_log = logfile.name
        self.live[proc.pid] = proc
        return proc

    def tail(self, proc, lines=8):
        try:
            with open(proc.bench_log, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def check(self, proc):
        if proc.poll() is not None:
            raise Failure(f"{proc.bench_name} exited ({proc.returncode}): {self.tail(proc)}")

    def stop(self, proc, timeout=10):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.live.pop(proc.pid, None)

    def stop_all(self):
        for proc in list(self.live.values()):
            self.stop(proc, timeout=5)


def free_port(dns=True):
    """A port free on 127.0.0.1 for TCP and (dns) UDP."""
    while True:
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        if not dns:
            tcp.close()
            return port
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            udp.close()
            tcp.close()


def read_file(path):
    with open(path) as f:
        return f.read()


def cpu_ticks(pid):
    return lib.parse_proc_stat_ticks(read_file(f"/proc/{pid}/stat"))


def status_kb(pid, key):
    return lib.parse_status_kb(read_file(f"/proc/{pid}/status"), key)


def machine_ticks():
    return lib.parse_machine_busy_ticks(read_file("/proc/stat"))


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def dns_answers(port, name, qtype="A", timeout=0.3):
    """(rcode, answer count) for one UDP query, or None without a reply."""
    qid = random.randrange(1, 65535)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(lib.dns_query(qid, name, qtype), ("127.0.0.1", port))
            while True:
                packet, _ = s.recvfrom(65535)
                summary = lib.dns_reply_summary(packet, qid)
                if summary:
                    return summary
        except OSError:
            return None


def chaos_number(port, name):
    """The number a CHAOS TXT statistic (`insertions.bind`) holds, asked with dig; None if dig
    is missing or the answer is not one number."""
    try:
        out = subprocess.run(["dig", "+short", "+time=1", "+tries=2", "-p", str(port), "@127.0.0.1",
                              "CH", "TXT", name], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.strip().strip('"')
    return int(text) if text.isdigit() else None


def wait_for(what, condition, procs_to_watch, procs, limit=120):
    deadline = time.monotonic() + limit
    while not condition():
        for proc in procs_to_watch:
            procs.check(proc)
        if time.monotonic() > deadline:
            raise Failure(f"no {what} after {limit} s")
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# The environment: fake API server, fake upstream, query files


class Api:
    """A fake-apiserver (synthetic cluster) or a bench-churn driver: anything printing
    "listening on URL" first."""

    def __init__(self, procs, name, argv, stdin=None):
        self.proc = procs.start(name, argv, stdin=stdin, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            procs.check(self.proc)
            raise Failure(f"{name} printed {line!r}")
        self.url = line.split()[-1]


def start_fake_api(procs, bins, services):
    argv = [
        f"{bins}/fake-apiserver",
        "--services",
        str(services),
        "--endpoints",
        str(services * ENDPOINTS_PER_SERVICE),
        "--wide-headless",
        str(WIDE_HEADLESS),
    ]
    return Api(procs, f"fake-apiserver-{services}", argv)


def start_upstream(procs, bins, zone, ttl=3600):
    port = free_port()
    proc = procs.start(
        f"fake-upstream-{zone.strip('.')}",
        [f"{bins}/fake-upstream", "--listen", f"127.0.0.1:{port}", "--zone", zone, "--ttl", str(ttl)],
    )
    wait_for("fake-upstream", lambda: dns_answers(port, f"x.{zone}") is not None, [proc], procs)
    return port


class Queries:
    """dnsperf query files, written once per (services, kind)."""

    def __init__(self, bins, workdir):
        self.bins, self.workdir, self.files = bins, workdir, {}

    def get(self, services, kind, endpoints=None):
        key = (services, kind, endpoints)
        if key not in self.files:
            path = os.path.join(self.workdir, f"q-{services}-{kind}-{endpoints}")
            argv = [
                f"{self.bins}/fake-apiserver",
                "--services",
                str(services),
                "--endpoints",
                str(services * ENDPOINTS_PER_SERVICE),
                "--wide-headless",
                str(WIDE_HEADLESS),
                "--write-queries",
                path,
                "--query-kind",
                kind,
            ]
            if endpoints:
                argv += ["--query-endpoints", str(endpoints)]
            subprocess.run(argv, check=True, cwd=ROOT)
            self.files[key] = path
        return self.files[key]

    def custom(self, name, lines):
        path = os.path.join(self.workdir, f"q-{name}")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path


# ---------------------------------------------------------------------------------------------
# Designs


class Server:
    """One design, running: its DNS port and its server processes."""

    def __init__(self, design, port, processes):
        self.design = design
        self.port = port
        self.processes = processes  # [(role, Popen)]

    def pids(self):
        return {role: proc.pid for role, proc in self.processes}


def kubedns_flags(api_url, upstream_port, dns_port, healthz_port, config_dir, notify=None):
    flags = [
        f"--domain={ZONE}.",
        "--dns-bind-address=127.0.0.1",
        f"--dns-port={dns_port}",
        "--http-bind-address=127.0.0.1",
        f"--healthz-port={healthz_port}",
        "--metrics-port=off",
        f"--nameservers=127.0.0.1:{upstream_port}",
        f"--kube-master-url={api_url}",
        f"--config-dir={config_dir}",
    ]
    if notify:
        flags.append(f"--notify=127.0.0.1:{notify}")
    return flags


def dnsmasq_cache_flags(cache_size, kubedns_port, upstream_port, notify):
    """The kube-dns manifest's dnsmasq flags (or the recommended manifest's, with NOTIFY), on a
    loopback port; cache_size None keeps the manifest's."""
    flags = ["-k"]
    if notify:
        flags += [f"--cache-size={10000 if cache_size is None else cache_size}", "--neg-ttl=60"]
    else:
        flags += [f"--cache-size={1000 if cache_size is None else cache_size}", "--no-negcache"]
    flags += [
        "--dns-loop-detect",
        "--log-facility=-",
        f"--server=/{ZONE}/127.0.0.1#{kubedns_port}",
        f"--server=/in-addr.arpa/127.0.0.1#{kubedns_port}",
        f"--server=/ip6.arpa/127.0.0.1#{kubedns_port}",
        "--no-resolv",
        f"--server=127.0.0.1#{upstream_port}",
    ]
    return flags


def healthz_flags(port, dnsmasq_port, kubedns_port):
    name = f"kubernetes.default.svc.{ZONE}"
    return [
        "--prometheus-addr=127.0.0.1",
        f"--prometheus-port={port}",
        "--dnsmasq-addr=127.0.0.1",
        f"--dnsmasq-port={dnsmasq_port}",
        f"--probe=kubedns,127.0.0.1:{kubedns_port},{name},5,SRV",
        f"--probe=dnsmasq,127.0.0.1:{dnsmasq_port},{name},5,SRV",
    ]


class Designs:
    def __init__(self, procs, bins, workdir):
        self.procs, self.bins = procs, bins
        self.config_dir = os.path.join(workdir, "config")
        os.makedirs(self.config_dir, exist_ok=True)
        self.single = os.path.join(bins, "kube-dns-single")

    def available(self, design):
        if design == "single":
            return os.access(self.single, os.X_OK)
        if design in ("legacy", "dnsmasq"):
            return os.access(DNSMASQ, os.X_OK)
        return True

    def start(self, design, api_url, upstream_port, probe_name, cache_size=None, notify=False):
        """Starts design against api_url and waits until it answers probe_name at its port."""
        return self.launch(design, api_url, upstream_port, probe_name, cache_size, notify)()

    def start_all(self, designs, api_url, upstream_port, probe_name, cache_size=None):
        """Starts designs ({design: upstream port, or None for upstream_port}) at once, then
        waits for each; returns {design: Server}."""
        pending = {
            design: self.launch(design, api_url, up or upstream_port, probe_name, cache_size, False)
            for design, up in designs.items()
        }
        return {design: wait() for design, wait in pending.items()}

    def launch(self, design, api_url, upstream_port, probe_name, cache_size=None, notify=False):
        """Starts design's processes; returns a function that waits for them to be ready and
        returns the Server."""
        procs = self.procs
        started = time.monotonic()
        dns_port = free_port()
        kubedns_port = free_port()
        ready_port = free_port(dns=False)
        cache = dnsmasq_cache_flags(cache_size, kubedns_port, upstream_port, notify)
        kd_flags = kubedns_flags(
            api_url, upstream_port, kubedns_port, ready_port, self.config_dir,
            notify=dns_port if notify else None,
        )
        listen = [f"--port={dns_port}", "--listen-address=127.0.0.1"]
        processes = []
        if design == "pod":
            kd = procs.start("kubedns", [f"{self.bins}/kubedns", *kd_flags])
            dm = procs.start(
                "dnsmasq-rs",
                [f"{self.bins}/dnsmasq-rs", "-v=0", f"-configDir={self.config_dir}", "--",
                 *cache, *listen, "--metrics-port=0"],
            )
            hz = procs.start(
                "healthz",
                [f"{self.bins}/healthz", *healthz_flags(free_port(False), dns_port, kubedns_port)],
            )
            processes = [("kubedns", kd), ("dnsmasq-rs", dm), ("healthz", hz)]
        elif design == "kubedns":
            kd_flags[kd_flags.index(f"--dns-port={kubedns_port}")] = f"--dns-port={dns_port}"
            kd = procs.start("kubedns", [f"{self.bins}/kubedns", *kd_flags])
            processes = [("kubedns", kd)]
        elif design == "single":
            argv = [
                self.single, *kd_flags,
                "--dnsmasq", "-v=0", f"-configDir={self.config_dir}", "--", *cache, *listen,
                "--metrics-port=0",
                "--healthz", *healthz_flags(free_port(False), dns_port, kubedns_port),
            ]
            processes = [("kube-dns-single", procs.start("kube-dns-single", argv))]
        elif design == "legacy":
            kd = procs.start("kubedns", [f"{self.bins}/kubedns", *kd_flags])
            dm = procs.start(
                "dnsmasq", [DNSMASQ, *cache, *listen, "--bind-interfaces", "--pid-file=", "--no-hosts"]
            )
            processes = [("kubedns", kd), ("dnsmasq", dm)]
        elif design == "dnsmasq":
            # The upstream here is a fake-upstream answering the cluster zone itself.
            dm = procs.start(
                "dnsmasq",
                [DNSMASQ, "-k", "--cache-size=10000", "--log-facility=-", "--no-resolv",
                 f"--server=127.0.0.1#{upstream_port}", *listen, "--bind-interfaces",
                 "--pid-file=", "--no-hosts"],
            )
            processes = [("dnsmasq", dm)]
        else:
            raise Failure(f"unknown design {design}")
        watched = [proc for _, proc in processes]
        return lambda: self.ready(design, processes, watched, ready_port, dns_port, probe_name, started)

    def ready(self, design, processes, watched, ready_port, dns_port, probe_name, started):
        procs = self.procs
        if design != "dnsmasq":
            wait_for(f"{design} /readiness", lambda: http_ok(f"http://127.0.0.1:{ready_port}/readiness"),
                     watched, procs)
        ready = time.monotonic() - started

        def answers():
            reply = dns_answers(dns_port, probe_name)
            return reply is not None and reply[0] == 0 and reply[1] > 0

        wait_for(f"{design} answering {probe_name}", answers, watched, procs)
        server = Server(design, dns_port, processes)
        server.ready_seconds = ready
        log(f"{design} ready after {ready:.2f} s, answering after {time.monotonic() - started:.2f} s")
        return server

    def stop(self, server):
        for _, proc in reversed(server.processes):
            self.procs.stop(proc)


# ---------------------------------------------------------------------------------------------
# dnsperf runs


def dnsperf(procs, server, query_file, seconds, extra=(), verbose=False):
    """One dnsperf run against server; the parsed statistics plus CPU per process."""
    pids = server.pids()
    before = {role: cpu_ticks(pid) for role, pid in pids.items()}
    m0 = machine_ticks()
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(server.port), "-d", query_file,
            "-l", str(seconds), "-t", str(DNSPERF_TIMEOUT), "-c", str(CLIENTS),
            "-q", str(OUTSTANDING), *extra]
    if verbose:
        argv.append("-v")
    out = tempfile.TemporaryFile(dir=procs.workdir)
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    procs.live[proc.pid] = proc
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    procs.live.pop(proc.pid, None)
    after = {role: cpu_ticks(pid) for role, pid in pids.items()}
    m1 = machine_ticks()
    out.seek(0)
    text = out.read().decode(errors="replace")
    out.close()
    if proc.returncode != 0:
        raise Failure(f"dnsperf failed ({proc.returncode}): {text[-2000:]}")
    stats = lib.parse_dnsperf(text)
    secs = stats["run_time"] or seconds
    cpu = {role: (after[role] - before[role]) / TICKS for role in pids}
    server_cpu = sum(cpu.values())
    perf_cpu = usage.ru_utime + usage.ru_stime
    other = max(0.0, (m1 - m0) / TICKS - server_cpu - perf_cpu) / secs
    stats.update(
        cpu=cpu,
        server_cpu=server_cpu,
        server_cores=server_cpu / secs,
        dnsperf_cores=perf_cpu / secs,
        other_cores=other,
        per_core=stats["completed"] / server_cpu if server_cpu > 0 else None,
        cpu_per_1k={
            role: (c * 1000 / stats["completed"] if stats["completed"] else None)
            for role, c in cpu.items()
        },
    )
    if verbose:
        lat = lib.parse_verbose_latencies(text)
        stats["p50_ms"] = lib.percentile(lat, 0.5)
        stats["p90_ms"] = lib.percentile(lat, 0.9)
        stats["p99_ms"] = lib.percentile(lat, 0.99)
    return stats


def summarize(runs):
    """The median round (by answered q/s) of runs, with the range and totals."""
    runs = sorted(runs, key=lambda r: r["qps"])
    mid = runs[(len(runs) - 1) // 2]
    row = dict(mid)
    row["rounds"] = len(runs)
    row["qps_median"] = lib.median([r["qps"] for r in runs])
    row["qps_range"] = (runs[0]["qps"], runs[-1]["qps"])
    row["per_core_median"] = lib.median([r["per_core"] for r in runs])
    row["lost_total"] = sum(r["lost"] for r in runs)
    row["sent_total"] = sum(r["sent"] for r in runs)
    row["noisy"] = any(r["other_cores"] > NOISY_CORES for r in runs)
    return row


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.bins = os.path.join(ROOT, "target", "release")
        self.workdir = tempfile.mkdtemp(prefix="kdns-bench-")
        self.procs = Procs(self.workdir)
        self.designs = Designs(self.procs, self.bins, self.workdir)
        self.queries = Queries(self.bins, self.workdir)
        self.results = {"notices": [], "quick": args.quick}
        q = self.quick
        self.rounds = 1 if q else 3
        self.hit_seconds = 1 if q else 3
        self.record_seconds = 1 if q else 2
        self.latency_seconds = 1 if q else 2
        self.latency_rate = LATENCY_RATE
        self.record_scales = [1000, 10000]
        self.scale_scales = [10000] if q else [1000, 10000, 50000]
        self.churn_services = 1000 if q else 10000
        self.churn_seconds = 2 if q else 10
        self.churn_deadline = 1 if q else 5
        self.churn_rate = 20

    def notice(self, message):
        log(message)
        self.results["notices"].append(message)

    def wanted(self, designs):
        out = []
        for design in designs:
            if self.args.designs and design not in self.args.designs:
                continue
            if not self.designs.available(design):
                what = self.designs.single if design == "single" else DNSMASQ
                self.notice(f"design {design} skipped: {what} not found")
                continue
            out.append(design)
        return out

    def measure(self, workload, servers, files, seconds):
        """Rounds of closed-loop runs, designs in turn; then one fixed-rate latency run each (in
        a quick run only for the main rows). files: {label: query file}. Returns
        {label: {design: row}}."""
        latency = ("hits", "search", "ClusterIP A") if self.quick else files
        runs = {label: {d: [] for d in servers} for label in files}
        for r in range(self.rounds):
            for label, path in files.items():
                for design, server in servers.items():
                    log(f"{workload} {label}: {design}, round {r + 1}/{self.rounds}, {seconds}s")
                    runs[label][design].append(dnsperf(self.procs, server, path, seconds))
        out = {}
        for label in files:
            out[label] = {}
            for design in servers:
                row = summarize(runs[label][design])
                if label in latency:
                    fixed = dnsperf(self.procs, servers[design], files[label], self.latency_seconds,
                                    extra=["-Q", str(self.latency_rate)], verbose=True)
                    row["latency"] = {k: fixed.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "lost")}
                out[label][design] = row
        return out

    # -- workloads ------------------------------------------------------------------------------

    def cache_and_search(self):
        """Cache hits on 500 warmed cluster names, and the ndots:5 search-path walk, at 1,000
        Services with the manifests' cache flags."""
        services = 1000
        api = start_fake_api(self.procs, self.bins, services)
        upstream = start_upstream(self.procs, self.bins, "example.com.")
        cluster_upstream = start_upstream(self.procs, self.bins, f"{ZONE}.")
        with open(self.queries.get(services, "clusterip-a")) as f:
            names = lib.distinct_names(f, 500)
        probe = names[0].split()[0]
        hits = self.queries.custom("hits", names)
        walk = []
        for i in range(100):
            walk += lib.search_path_walk(f"ext-{i}.example.com", f"ns-{i % 100}", ZONE)
        walk_file = self.queries.custom("search-path", walk)

        servers = {}
        try:
            servers = self.designs.start_all(
                {d: cluster_upstream if d == "dnsmasq" else None
                 for d in self.wanted(["pod", "single", "legacy", "dnsmasq", "kubedns"])},
                api.url, upstream, probe)
            for design, server in servers.items():
                # Warm the caches: every name once, then again to be sure.
                dnsperf(self.procs, server, hits, 2, extra=["-n", "2"])
            result = {"hits": self.measure("cache hits", servers, {"hits": hits}, self.hit_seconds)["hits"]}
            walkers = {d: s for d, s in servers.items() if d != "dnsmasq"}
            for server in walkers.values():
                dnsperf(self.procs, server, walk_file, 2, extra=["-n", "1"])
            result["search"] = self.measure("search path", walkers, {"search": walk_file},
                                            self.hit_seconds)["search"]
        finally:
            for server in servers.values():
                self.designs.stop(server)
            self.procs.stop(api.proc)
        self.results["cache"] = result

    def cache_memory(self):
        """RSS of dnsmasq-rs and Debian's dnsmasq, each alone with --cache-size=10000, empty and
        after 10,000 distinct names (one A record each) were asked once through it."""
        upstream = start_upstream(self.procs, self.bins, "example.com.")
        fill = self.queries.custom("cache-fill", [f"fill-{i}.example.com A" for i in range(CACHE_FILL)])
        common = ["-k", f"--cache-size={CACHE_FILL}", "--no-resolv", f"--server=127.0.0.1#{upstream}",
                  "--listen-address=127.0.0.1", "--no-hosts"]
        servers = {"dnsmasq-rs": [f"{self.bins}/dnsmasq-rs", *common, "--metrics-port=0"],
                   "dnsmasq": [DNSMASQ, *common, "--bind-interfaces", "--pid-file=", "--log-facility=-"]}
        result = {}
        for name in self.wanted_servers(servers):
            port = free_port()
            proc = self.procs.start(f"{name}-cache", [*servers[name], f"--port={port}"])
            try:
                wait_for(f"{name} answering", lambda: dns_answers(port, "probe.example.com") is not None,
                         [proc], self.procs)
                empty = status_kb(proc.pid, "VmRSS")
                log(f"cache memory: filling {name} with {CACHE_FILL:,} answers")
                dnsperf(self.procs, Server(name, port, [(name, proc)]), fill, 60, extra=["-n", "1"])
                result[name] = {"empty_kb": empty, "full_kb": status_kb(proc.pid, "VmRSS"),
                                "cached": chaos_number(port, "cachesize.bind"),
                                "inserted": chaos_number(port, "insertions.bind")}
            finally:
                self.procs.stop(proc)
        self.results["cache_memory"] = result

    def wanted_servers(self, servers):
        """The names in servers whose binary is there; Debian's dnsmasq may be missing."""
        if os.path.exists(DNSMASQ):
            return list(servers)
        self.notice(f"cache memory: {DNSMASQ} not found, dnsmasq-rs measured alone")
        return [name for name in servers if name != "dnsmasq"]

    def records(self):
        """Record-store answers with every cache off, at 1,000 and 10,000 Services."""
        kinds = [
            ("ClusterIP A", "clusterip-a", None),
            ("headless A, 10 endpoints", "headless-a", 10),
            ("headless A, 100 endpoints", "headless-a", 100),
            ("SRV", "srv", None),
            ("PTR", "ptr", None),
            ("NXDOMAIN", "nxdomain", None),
        ]
        upstream = start_upstream(self.procs, self.bins, "example.com.")
        result = {}
        for services in self.record_scales:
            api = start_fake_api(self.procs, self.bins, services)
            files = {}
            for label, kind, endpoints in kinds:
                if self.quick and services != self.record_scales[-1] and kind != "clusterip-a":
                    continue
                files[label] = self.queries.get(services, kind, endpoints)
            with open(files["ClusterIP A"]) as f:
                probe = f.readline().split()[0]
            servers = {}
            try:
                servers = self.designs.start_all(
                    dict.fromkeys(self.wanted(["pod", "single", "kubedns", "legacy"])),
                    api.url, upstream, probe, cache_size=0)
                for server in servers.values():
                    dnsperf(self.procs, server, files["ClusterIP A"], 1)
                result[services] = self.measure(f"records {services}", servers, files, self.record_seconds)
            finally:
                for server in servers.values():
                    self.designs.stop(server)
                self.procs.stop(api.proc)
        self.results["records"] = result

    def churn(self):
        """DNS programming latency while the cluster changes, with and without NOTIFY."""
        upstream = start_upstream(self.procs, self.bins, "example.com.")
        configs = [("pod-notify", "pod", True), ("pod", "pod", False),
                   ("single-notify", "single", True), ("single", "single", False),
                   ("kubedns", "kubedns", False), ("legacy", "legacy", False)]
        if self.quick:
            configs = configs[:3]
        load_file = self.queries.get(self.churn_services, "clusterip-a")
        with open(load_file) as f:
            probe = f.readline().split()[0]
        result = {}
        for label, design, notify in configs:
            if self.args.designs and label not in self.args.designs and design not in self.args.designs:
                continue
            if not self.designs.available(design):
                self.notice(f"churn {label} skipped: {design} not available")
                continue
            log(f"churn: {label}, {self.churn_seconds}s of changes at {self.churn_rate}/s")
            driver = Api(
                self.procs, "bench-churn",
                [f"{self.bins}/bench-churn", "--services", str(self.churn_services),
                 "--wide-headless", str(WIDE_HEADLESS),
                 "--rate", str(self.churn_rate), "--duration", str(self.churn_seconds),
                 "--deadline", str(self.churn_deadline)],
                stdin=subprocess.PIPE,
            )
            server = None
            try:
                server = self.designs.start(design, driver.url, upstream, probe, notify=notify)
                driver.proc.stdin.write(f"127.0.0.1:{server.port}\n".encode())
                driver.proc.stdin.flush()
                # Queries meanwhile, at a fixed rate.
                load = dnsperf(self.procs, server, load_file, self.churn_seconds,
                               extra=["-Q", "10000"])
                out, _ = driver.proc.communicate(timeout=self.churn_seconds + self.churn_deadline + 60)
                report = json.loads(out.decode().strip().splitlines()[-1])
                report["load_qps"] = load["qps"]
                report["load_lost"] = load["lost"]
                result[label] = report
            finally:
                if server:
                    self.designs.stop(server)
                self.procs.stop(driver.proc)
        self.results["churn"] = result

    def scale(self):
        """Time to ready and RSS at 1,000 .. 50,000 Services, 10 endpoints each, steady and at
        the peak of a forced relist."""
        upstream = start_upstream(self.procs, self.bins, "example.com.")
        result = {}
        for services in self.scale_scales:
            api = start_fake_api(self.procs, self.bins, services)
            with open(self.queries.get(services, "clusterip-a")) as f:
                probe = f.readline().split()[0]
            result[services] = {}
            try:
                for design in self.wanted(["pod", "single"]):
                    log(f"scale {services}: {design}")
                    server = self.designs.start(design, api.url, upstream, probe)
                    try:
                        result[services][design] = self.memory(server, api)
                    finally:
                        self.designs.stop(server)
            finally:
                self.procs.stop(api.proc)
        self.results["scale"] = result

    def memory(self, server, api):
        pids = server.pids()
        time.sleep(1)
        steady = {role: status_kb(pid, "VmRSS") for role, pid in pids.items()}
        for pid in pids.values():
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        ticks0 = sum(cpu_ticks(pid) for pid in pids.values())
        started = time.monotonic()
        api.proc.send_signal(signal.SIGUSR1)
        # The API stand-in prints "relisted" once the watches are open again, i.e. kubedns has
        # the new list; its writer may still be building the records from it, so wait for the
        # servers to be idle for 0.3 s too.
        ready, _, _ = select.select([api.proc.stdout], [], [], 90)
        line = api.proc.stdout.readline().decode().strip() if ready else "nothing"
        if line != "relisted":
            raise Failure(f"no relist after expiring the watch history: fake-apiserver said {line!r}")
        relist_seconds = time.monotonic() - started
        idle_since, last = None, sum(cpu_ticks(pid) for pid in pids.values())
        while time.monotonic() - started < 90:
            time.sleep(0.05)
            now = sum(cpu_ticks(pid) for pid in pids.values())
            if now == last:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= 0.3:
                    break
            else:
                idle_since = None
            last = now
        relist_cpu = (last - ticks0) / TICKS
        peak = {role: status_kb(pid, "VmHWM") for role, pid in pids.items()}
        after = {role: status_kb(pid, "VmRSS") for role, pid in pids.items()}
        return {
            "ready_seconds": server.ready_seconds,
            "steady_kb": steady,
            "relist_peak_kb": peak,
            "after_relist_kb": after,
            "relist_cpu_seconds": relist_cpu,
            "relist_seconds": relist_seconds,
        }

    # -- the run ---------------------------------------------------------------------------------

    def run(self):
        started = time.monotonic()
        self.results["started"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.results["load_before"] = read_file("/proc/loadavg").split()[:3]
        parts = {"cache": self.cache_and_search, "cachemem": self.cache_memory,
                 "records": self.records, "churn": self.churn, "scale": self.scale}
        for name, part in parts.items():
            if self.args.only and name not in self.args.only:
                continue
            t0 = time.monotonic()
            part()
            self.results.setdefault("part_seconds", {})[name] = time.monotonic() - t0
        self.results["load_after"] = read_file("/proc/loadavg").split()[:3]
        self.results["wall_seconds"] = time.monotonic() - started


# ---------------------------------------------------------------------------------------------
# Report


def versions(bins):
    def first_line(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    perf = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True).stdout + \
        subprocess.run(["dnsperf", "-h"], capture_output=True, text=True).stderr
    perf_version = next((line.split()[-1] for line in perf.splitlines() if line.startswith("Version")), "?")
    return {
        "kubedns": first_line([f"{bins}/kubedns", "--version"]),
        "dnsmasq-rs": first_line([f"{bins}/dnsmasq-rs", "--version"]),
        "dnsmasq": " ".join(first_line([DNSMASQ, "--version"]).split()[:3]) if os.path.exists(DNSMASQ) else "absent",
        "dnsperf": perf_version,
        "rustc": first_line(["rustc", "--version"]),
    }


def machine():
    model = "unknown CPU"
    for line in read_file("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = lib.parse_status_kb(read_file("/proc/meminfo"), "MemTotal") or 0
    return f"{model}, {os.cpu_count()} CPUs, {mem / 1048576:.0f} GiB RAM, {platform.system()} {platform.release()}"


def cpu_cells(row):
    return " / ".join(
        f"{role} {lib.fmt_float(v * 1000 if v is not None else None, 1)}"
        for role, v in row["cpu_per_1k"].items()
        if role != "healthz"
    )


def throughput_table(rows, reference, order):
    """rows: {design: summarized row}. Ratios against rows[reference]."""
    ref = rows.get(reference)
    headers = ["Design", "Answered q/s (range)", f"× {DESIGN_TITLES.get(reference, reference)}",
               "Per server core, q/s", "× per core", "Server CPU ms per 1,000 q",
               "Lost", f"Latency p50 / p99 ms at {LATENCY_RATE:,} q/s", "Cores: server / dnsperf / other"]
    out = []
    for design in order:
        row = rows.get(design)
        if not row:
            continue
        lat = row.get("latency") or {}
        low, high = row["qps_range"]
        out.append([
            DESIGN_TITLES.get(design, design),
            f"**{lib.fmt_int(row['qps_median'])}** ({lib.fmt_int(low)}–{lib.fmt_int(high)})",
            lib.fmt_ratio(lib.ratio(row["qps_median"], ref and ref["qps_median"])),
            lib.fmt_int(row["per_core_median"]),
            lib.fmt_ratio(lib.ratio(row["per_core_median"], ref and ref["per_core_median"])),
            cpu_cells(row),
            f"{row['lost_total']:,} of {row['sent_total']:,}",
            f"{lib.fmt_float(lat.get('p50_ms'), 3)} / {lib.fmt_float(lat.get('p99_ms'), 3)}",
            f"{row['server_cores']:.2f} / {row['dnsperf_cores']:.2f} / {row['other_cores']:.2f}"
            + (" (noisy)" if row["noisy"] else ""),
        ])
    return lib.markdown_table(headers, out)


def mb(kb):
    return None if kb is None else kb / 1024


def report(bench, path, chart_path):
    res, args = bench.results, bench.args
    v = versions(bench.bins)
    lines = ["# Benchmarks", ""]
    lines += [
        "Generated by `make bench` (scripts/bench.py) from one run; rerun it to regenerate this "
        "file and the chart. Numbers are only comparable within one run: ratios against the real "
        "dnsmasq measured in the same run are the result, absolute rates depend on the machine.",
        "",
        f"- Date: {res['started']}{' (quick run: `make bench-quick`, 1 short round each)' if bench.quick else ''};"
        f" wall time {res['wall_seconds']:.0f} s",
        f"- Machine: {machine()}",
        f"- Load average before / after: {' '.join(res['load_before'])} / {' '.join(res['load_after'])}",
        f"- Versions: {v['kubedns']}; {v['dnsmasq-rs']}; Debian {v['dnsmasq']}; dnsperf {v['dnsperf']}; {v['rustc']}"
        " (release builds)",
        f"- dnsperf: UDP over loopback, {CLIENTS} clients × {OUTSTANDING} queries outstanding, "
        f"timeout {DNSPERF_TIMEOUT} s, closed loop; {bench.rounds} round(s) per row, designs in turn, "
        "median round shown with the range of all rounds. Latency percentiles: one more run per "
        f"row at a fixed {bench.latency_rate:,} q/s with `dnsperf -v`.",
        "- Server CPU: utime+stime of each server process from /proc over the run; \"per server core\" "
        "is answered queries per CPU-second of all server processes. \"other\" is CPU used by neither "
        f"server nor dnsperf (other work on the machine); rows where it passed {NOISY_CORES} cores "
        "are marked noisy.",
        "- Clusters: tests/support's synthetic generator through the fake API server: "
        f"{ENDPOINTS_PER_SERVICE} endpoints per Service on average, 10% headless, 100 namespaces, "
        f"EndpointSlices, plus {WIDE_HEADLESS} headless Services with 100 endpoints each.",
        "",
    ]
    for message in res["notices"]:
        lines.append(f"> **Notice:** {message}")
        lines.append("")
    lines += ["![Answered queries per second by design](benchmarks.svg)", ""]
    lines += ["## Designs", ""]
    lines += [
        "| Design | Processes | Flags |", "|---|---|---|",
        "| pod (dnsmasq-rs → kubedns) | kubedns, dnsmasq-rs, healthz | manifests/kube-dns.yaml: "
        "`--cache-size=1000 --no-negcache --dns-loop-detect`, servers for the cluster zone and the "
        "reverse zones at kubedns |",
        "| pod, NOTIFY | the same | manifests/kube-dns-recommended.yaml: kubedns `--notify`, "
        "dnsmasq-rs `--cache-size=10000 --neg-ttl=60` |",
        "| kubedns alone | kubedns | queried directly, no cache |",
        "| single binary | kube-dns-single | kubedns, dnsmasq-rs and healthz flag groups as in the pod |",
        "| single binary, NOTIFY | kube-dns-single | as the pod with NOTIFY |",
        "| legacy (dnsmasq → kubedns) | kubedns, Debian's dnsmasq | the manifest's dnsmasq flags |",
        "| dnsmasq alone | Debian's dnsmasq | `--cache-size=10000`, filled from a local fake upstream answering the cluster zone |",
        "",
        "In \"record-store answers\" every cache runs with `--cache-size=0`, so every query "
        "crosses to the record store: the pod and the legacy shape pay the loopback hop there.",
        "",
    ]

    chart_groups = []
    targets = []
    cache = res.get("cache")
    if cache:
        hits = cache["hits"]
        lines += ["## Cache hits", "",
                  "500 distinct ClusterIP A names of a 1,000-Service cluster, warmed, asked in a loop. "
                  "Ratios against Debian's dnsmasq alone.", ""]
        lines += [throughput_table(hits, "dnsmasq", ["pod", "single", "legacy", "dnsmasq", "kubedns"]), ""]
        chart_groups.append(("Cache hits", {d: r["qps_median"] for d, r in hits.items()}))
        ref = hits.get("dnsmasq")
        for design in ("pod", "single"):
            row = hits.get(design)
            if row and ref:
                r1 = lib.ratio(row["qps_median"], ref["qps_median"])
                r2 = lib.ratio(row["per_core_median"], ref["per_core_median"])
                targets.append((f"Cache hits ≥ 1.3× real dnsmasq's rate ({DESIGN_TITLES[design]})",
                                lib.fmt_ratio(r1), lib.verdict(r1, 1.3)))
                targets.append((f"Cache hits ≥ 1.6× real dnsmasq's rate per server core ({DESIGN_TITLES[design]})",
                                lib.fmt_ratio(r2), lib.verdict(r2, 1.6)))
        search = cache["search"]
        lines += ["## Search-path walk", "",
                  "What a pod with `ndots:5` sends for an external name: `name.<ns>.svc.cluster.local`, "
                  "`name.svc.cluster.local`, `name.cluster.local`, then `name`, each A and AAAA "
                  "(100 names under example.com, answered by a local fake upstream; the three "
                  "cluster suffixes are NXDOMAIN from kubedns). Manifest cache flags "
                  "(`--no-negcache`: the NXDOMAINs are not cached). Ratios against the legacy shape.", ""]
        lines += [throughput_table(search, "legacy", ["pod", "single", "legacy", "kubedns"]), ""]
        chart_groups.append(("Search-path walk", {d: r["qps_median"] for d, r in search.items()}))

    cache_memory = res.get("cache_memory")
    if cache_memory:
        lines += ["## Cache memory", "",
                  f"Each server alone with `--cache-size={CACHE_FILL}`: VmRSS once answering, and "
                  f"after {CACHE_FILL:,} distinct names (one A record each, TTL 3600, from a local fake "
                  "upstream) were asked once through it. The CHAOS statistics say what each holds. "
                  "Debian's dnsmasq allocates its whole cache at start, so its RSS hardly grows; "
                  "dnsmasq-rs allocates per cached answer.", ""]
        rows = []
        for name in ("dnsmasq-rs", "dnsmasq"):
            m = cache_memory.get(name)
            if m:
                full, empty = mb(m["full_kb"]), mb(m["empty_kb"])
                rows.append([name if name == "dnsmasq-rs" else "Debian's dnsmasq", f"{empty:.1f}",
                             f"**{full:.1f}**", f"{full - empty:.1f}",
                             f"{m['cached']:,}" if m.get("cached") is not None else "–",
                             f"{m['inserted']:,}" if m.get("inserted") is not None else "–"])
        lines += [lib.markdown_table(["Server", "RSS empty, MB", "RSS with the cache full, MB", "Growth, MB",
                                      "cachesize.bind", "insertions.bind"], rows), ""]

    records = res.get("records")
    if records:
        lines += ["## Record-store answers", "",
                  "Every cache off (`--cache-size=0`). Ratios against the legacy shape (Debian's "
                  "dnsmasq in front of kubedns). Headless answers with 100 endpoints exceed the "
                  "512-byte UDP limit dnsperf asks for (no EDNS), so they are answered truncated (TC) "
                  "and measure that path.", ""]
        for services, kinds in records.items():
            for label, rows in kinds.items():
                lines += [f"### {label}, {int(services):,} Services", ""]
                lines += [throughput_table(rows, "legacy", ["pod", "single", "kubedns", "legacy"]), ""]
        big = records.get(max(records, key=int))
        if big and "ClusterIP A" in big:
            chart_groups.append((f"ClusterIP A, {max(int(s) for s in records):,} Services, no cache",
                                 {d: r["qps_median"] for d, r in big["ClusterIP A"].items()}))
        small_key, big_key = min(records, key=int), max(records, key=int)
        for design in ("kubedns", "pod", "single"):
            row = (records[big_key].get("ClusterIP A") or {}).get(design)
            if row:
                targets.append((f"Record answers ≥ 100,000/s per server core, ClusterIP A, "
                                f"{int(big_key):,} Services ({DESIGN_TITLES[design]})",
                                lib.fmt_int(row["per_core_median"]), lib.verdict(row["per_core_median"], 100000)))
            small = (records[small_key].get("ClusterIP A") or {}).get(design)
            if row and small and small_key != big_key:
                slower = (1 - row["per_core_median"] / small["per_core_median"]) * 100
                measured = f"{slower:.1f}% slower" if slower >= 0 else f"{-slower:.1f}% faster"
                targets.append((f"< 10% slower per core at {int(big_key):,} than at {int(small_key):,} "
                                f"Services ({DESIGN_TITLES[design]})", measured, lib.verdict(slower, 10, False, points=True)))

    churn = res.get("churn")
    if churn:
        lines += ["## Churn: DNS programming latency", "",
                  f"A {bench.churn_services:,}-Service cluster changing {bench.churn_rate} times a second for "
                  f"{bench.churn_seconds} s (a new ClusterIP Service, or one more endpoint of a headless "
                  "Service, alternately), with 10,000 q/s of ClusterIP A queries meanwhile. Each name is "
                  "asked once before its change, so a cache holds the old answer; after the change it is "
                  "asked every millisecond. Latency: from the API event to the first right answer at the "
                  f"port-53 role. A change not visible within {bench.churn_deadline} s counts as missed.", ""]
        rows = []
        for label, r in churn.items():
            rows.append([DESIGN_TITLES.get(label, label), r["changes"], r["answered"], r["missed"],
                         lib.fmt_float(r.get("p50_ms"), 1), lib.fmt_float(r.get("p90_ms"), 1),
                         lib.fmt_float(r.get("p99_ms"), 1), lib.fmt_float(r.get("max_ms"), 1)])
        lines += [lib.markdown_table(["Design", "Changes", "Seen", "Missed", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows), ""]
        n = churn.get("pod-notify")
        if n:
            targets.append(("DNS programming latency < 100 ms with NOTIFY (p99, pod)",
                            f"{lib.fmt_float(n.get('p99_ms'), 1)} ms" + (f", {n['missed']} missed" if n["missed"] else ""),
                            lib.verdict(n.get("p99_ms") if not n["missed"] else float("inf"), 100, False)))

    scale = res.get("scale")
    if scale:
        lines += ["## Scale", "",
                  f"{ENDPOINTS_PER_SERVICE} endpoints per Service through the fake API server. Ready: from "
                  "starting the processes to kubedns's `/readiness` answering 200. Steady: VmRSS 1 s "
                  "after ready. Relist peak: VmHWM after resetting it (`echo 5 > /proc/PID/clear_refs`) "
                  "and making the API server expire its watch history, so kubedns gets 410 Gone and "
                  "relists everything.", ""]
        rows = []
        for services, designs in scale.items():
            for design, m in designs.items():
                steady = sum(v for v in m["steady_kb"].values() if v)
                peak = sum(v for v in m["relist_peak_kb"].values() if v)
                per = ", ".join(f"{role} {mb(kb):.1f}" for role, kb in m["steady_kb"].items() if kb)
                peaks = ", ".join(f"{role} {mb(kb):.1f}" for role, kb in m["relist_peak_kb"].items() if kb)
                rows.append([f"{int(services):,}", DESIGN_TITLES.get(design, design),
                             f"{m['ready_seconds']:.2f}", f"**{mb(steady):.1f}** ({per})",
                             f"**{mb(peak):.1f}** ({peaks})", lib.fmt_ratio(peak / steady if steady else None),
                             f"{m['relist_seconds']:.2f}", f"{m['relist_cpu_seconds']:.2f}"])
        lines += [lib.markdown_table(["Services", "Design", "Ready after, s", "Steady RSS, MB", "Relist peak, MB",
                                      "Peak / steady", "Relist took, s", "Relist CPU, s"], rows), ""]
        pod = (scale.get(10000) or scale.get("10000") or {}).get("pod")
        if pod:
            steady = sum(v for v in pod["steady_kb"].values() if v)
            peak = sum(v for v in pod["relist_peak_kb"].values() if v)
            targets.append(("Whole pod < 40 MB RSS at 10,000 Services, 100,000 endpoints",
                            f"{mb(steady):.1f} MB", lib.verdict(mb(steady), 40, False)))
            targets.append(("Relist peak < 1.5× steady (pod, 10,000 Services)",
                            lib.fmt_ratio(peak / steady), lib.verdict(peak / steady, 1.5, False)))

    lines += ["## Where the pod loses to the single binary", ""]
    lines += pod_vs_single(res)
    lines += [""]

    if targets:
        lines[lines.index("## Designs"):lines.index("## Designs")] = [
            "## Targets", "", lib.markdown_table(["Target", "Measured", "Verdict"], targets, "lrl"), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    series = [d for d in ["pod", "single", "kubedns", "legacy", "dnsmasq"]
              if any(d in g for _, g in chart_groups)]
    renamed = [(label, {DESIGN_TITLES[d]: v for d, v in g.items()}) for label, g in chart_groups]
    with open(chart_path, "w") as f:
        f.write(lib.svg_bar_chart(
            "Answered queries per second (median round)", renamed, [DESIGN_TITLES[d] for d in series],
            f"{res['started']}; {os.cpu_count()} CPUs shared with dnsperf; bars scaled per group"))


def pod_vs_single(res):
    """Where the pod (two processes, a loopback hop) loses to the single binary, as a table and
    a sentence."""
    rows, worst = [], None

    def compare(what, pod, single):
        nonlocal worst
        if not pod or not single or not pod["qps_median"] or not pod["per_core_median"]:
            return
        rate = single["qps_median"] / pod["qps_median"]
        core = single["per_core_median"] / pod["per_core_median"]
        rows.append([what, lib.fmt_int(pod["qps_median"]), lib.fmt_int(single["qps_median"]),
                     f"**{rate:.2f}×**" if rate > 1 else f"{rate:.2f}×",
                     lib.fmt_int(pod["per_core_median"]), lib.fmt_int(single["per_core_median"]),
                     f"**{core:.2f}×**" if core > 1 else f"{core:.2f}×"])
        if worst is None or rate > worst[1]:
            worst = (what, rate)

    cache = res.get("cache") or {}
    compare("Cache hits", cache.get("hits", {}).get("pod"), cache.get("hits", {}).get("single"))
    compare("Search-path walk", cache.get("search", {}).get("pod"), cache.get("search", {}).get("single"))
    for services, kinds in (res.get("records") or {}).items():
        for label, by_design in kinds.items():
            compare(f"{label}, {int(services):,} Services, no cache", by_design.get("pod"), by_design.get("single"))
    memory = []
    for services, designs in (res.get("scale") or {}).items():
        pod, single = designs.get("pod"), designs.get("single")
        if pod and single:
            a = sum(v for v in pod["steady_kb"].values() if v)
            b = sum(v for v in single["steady_kb"].values() if v)
            memory.append(f"{int(services):,} Services: {mb(a):.1f} MB against {mb(b):.1f} MB "
                          f"({(a / b - 1) * 100:+.0f}%)")
    if not rows and not memory:
        return ["Not measured in this run: the single binary (target/release/kube-dns-single) was not "
                "available, or was not selected."]
    out = []
    if rows:
        out += [lib.markdown_table(["Workload", "Pod q/s", "Single q/s", "Single ÷ pod", "Pod q/s per core",
                                    "Single q/s per core", "Single ÷ pod per core"], rows), ""]
        losing = [r for r in rows if r[3].startswith("**")]
        out.append(f"The pod is slower than the single binary in {len(losing)} of {len(rows)} workloads; "
                   f"the widest gap is {worst[0]}, where the single binary answers {worst[1]:.2f}× the pod's "
                   "rate. Every query that reaches kubedns crosses the loopback hop twice in the pod "
                   "(encode, send, receive, decode each way); the single binary calls kubedns's handler "
                   "in-process.")
    if memory:
        out += ["", "Steady RSS of the pod (kubedns + dnsmasq-rs + healthz) against the single binary: "
                + "; ".join(memory) + "."]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter, fewer scales")
    parser.add_argument("--only", nargs="+", choices=["cache", "cachemem", "records", "churn", "scale"],
                        help="run only these parts")
    parser.add_argument("--designs", nargs="+", choices=sorted(DESIGN_TITLES), help="run only these designs")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--chart", default=None, help="default: the --out path with .svg")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report from the last run's target/bench/results.json")
    args = parser.parse_args()
    chart = args.chart or os.path.splitext(args.out)[0] + ".svg"
    results_path = os.path.join(ROOT, "target", "bench", "results.json")
    if args.report_only:
        with open(results_path) as f:
            results = json.load(f)
        args.quick = results.get("quick", False)
        bench = Bench(args)
        bench.results = results
        report(bench, args.out, chart)
        shutil.rmtree(bench.workdir, ignore_errors=True)
        print(read_file(args.out))
        return

    missing = [tool for tool in ("dnsperf",) if shutil.which(tool) is None]
    if missing:
        sys.exit(f"bench: {', '.join(missing)} not found; `make test-deps` installs it")
    if not os.path.exists(DNSMASQ):
        log(f"{DNSMASQ} not found (`make test-deps` installs dnsmasq-base): the designs using it are skipped")
    bins = os.path.join(ROOT, "target", "release")
    for binary in ("kubedns", "dnsmasq-rs", "healthz", "fake-apiserver", "fake-upstream", "bench-churn"):
        if not os.access(os.path.join(bins, binary), os.X_OK):
            sys.exit(f"bench: {bins}/{binary} is missing; run `cargo build --release --bins` first")

    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        bench.run()
    except Failure as error:
        sys.exit(f"bench: {error}\n(logs in {bench.workdir})")
    finally:
        bench.procs.stop_all()
    os.makedirs(os.path.join(ROOT, "target", "bench"), exist_ok=True)
    with open(results_path, "w") as f:
        json.dump(bench.results, f, indent=1, default=str)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    report(bench, args.out, chart)
    shutil.rmtree(bench.workdir, ignore_errors=True)
    log(f"wrote {args.out} and {chart} in {bench.results['wall_seconds']:.0f} s")
    print(read_file(args.out))


if __name__ == "__main__":
    main()
