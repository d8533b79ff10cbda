"""The pure parts of the benchmark harness (scripts/bench.py): reading dnsperf's output and
/proc, statistics, DNS packets for readiness checks, markdown tables and the SVG chart.

Nothing here starts a process or opens a socket; scripts/bench_test.py tests it.
"""

import html
import math
import re
import struct

# ---------------------------------------------------------------------------------------------
# dnsperf


def parse_dnsperf(text):
    """The statistics block of one dnsperf run (version 2.x) as a dict.

    Keys: sent, completed, lost, run_time (s), qps, avg_ms, min_ms, max_ms, stddev_ms, rcodes
    ({"NOERROR": 123, ...}). Raises ValueError when the block is missing, e.g. dnsperf failed.
    """

    def number(pattern, cast=float, required=True):
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            if required:
                raise ValueError(f"dnsperf output lacks {pattern!r}:\n{text[-2000:]}")
            return None
        return cast(match.group(1))

    out = {
        "sent": number(r"^\s*Queries sent:\s+(\d+)", int),
        "completed": number(r"^\s*Queries completed:\s+(\d+)", int),
        "lost": number(r"^\s*Queries lost:\s+(\d+)", int),
        "run_time": number(r"^\s*Run time \(s\):\s+([0-9.]+)"),
        "qps": number(r"^\s*Queries per second:\s+([0-9.]+)"),
    }
    latency = re.search(
        r"^\s*Average Latency \(s\):\s+([0-9.]+)\s+\(min ([0-9.]+), max ([0-9.]+)\)",
        text,
        re.MULTILINE,
    )
    if latency:
        out["avg_ms"], out["min_ms"], out["max_ms"] = (float(v) * 1000 for v in latency.groups())
    else:
        out["avg_ms"] = out["min_ms"] = out["max_ms"] = None
    stddev = number(r"^\s*Latency StdDev \(s\):\s+([0-9.]+)", required=False)
    out["stddev_ms"] = None if stddev is None else stddev * 1000
    out["rcodes"] = {}
    codes = re.search(r"^\s*Response codes:\s+(.*)$", text, re.MULTILINE)
    if codes:
        for name, count in re.findall(r"([A-Z]+) (\d+) \(", codes.group(1)):
            out["rcodes"][name] = int(count)
    return out


def parse_verbose_latencies(text):
    """Latencies in ms from dnsperf -v lines: "> NOERROR name TYPE 0.000218"."""
    out = []
    for line in text.splitlines():
        if line.startswith("> "):
            parts = line.split()
            try:
                out.append(float(parts[-1]) * 1000)
            except (ValueError, IndexError):
                continue
    return out


# ---------------------------------------------------------------------------------------------
# Statistics


def median(values):
    """The median; the mean of the middle two for an even count. None for no values."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    if len(values) % 2:
        return values[mid]
    return (values[mid - 1] + values[mid]) / 2


def percentile(values, share):
    """Nearest-rank percentile, share in 0..1. None for no values."""
    values = sorted(values)
    if not values:
        return None
    rank = min(len(values), max(1, math.ceil(share * len(values))))
    return values[rank - 1]


def ratio(value, reference):
    if value is None or not reference:
        return None
    return value / reference


# ---------------------------------------------------------------------------------------------
# /proc


def parse_proc_stat_ticks(text):
    """utime + stime (clock ticks) from the text of /proc/PID/stat. The command name may hold
    spaces and parentheses, so fields are counted after the last ")"."""
    fields = text[text.rindex(")") + 2 :].split()
    # After ")": state is field 3 of the full line; utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def parse_status_kb(text, key):
    """A "Key:   123 kB" value of /proc/PID/status, in kB; None when absent."""
    match = re.search(rf"^{re.escape(key)}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def parse_machine_busy_ticks(text):
    """Non-idle ticks of all CPUs from the text of /proc/stat (user nice system irq softirq
    steal)."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:]]
            return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    raise ValueError("no cpu line in /proc/stat")


# ---------------------------------------------------------------------------------------------
# DNS packets (readiness checks only)

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "TXT": 16, "AAAA": 28, "SRV": 33}


def dns_query(qid, name, qtype="A"):
    """A recursive query packet for name, without EDNS."""
    labels = b"".join(
        bytes([len(label)]) + label.encode("ascii") for label in name.strip(".").split(".") if label
    )
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(
        ">HH", QTYPES[qtype], 1
    )


def dns_reply_summary(packet, qid):
    """(rcode, answer count) of a reply to query qid, or None when it is not one."""
    if len(packet) < 12:
        return None
    rid, flags, _, ancount = struct.unpack(">HHHH", packet[:8])
    if rid != qid or not flags & 0x8000:
        return None
    return flags & 0xF, ancount


# ---------------------------------------------------------------------------------------------
# Query files


def search_path_walk(name, namespace, zone="cluster.local"):
    """The queries a pod with ndots:5 and the default search list sends for an external name
    with fewer than 5 dots before the name itself is tried: each search suffix, then the name,
    each as A then AAAA."""
    zone = zone.strip(".")
    out = []
    for candidate in (
        f"{name}.{namespace}.svc.{zone}",
        f"{name}.svc.{zone}",
        f"{name}.{zone}",
        name,
    ):
        out.append(f"{candidate} A")
        out.append(f"{candidate} AAAA")
    return out


def distinct_names(query_lines, count):
    """The first count distinct "name TYPE" lines."""
    seen = []
    for line in query_lines:
        line = line.strip()
        if line and line not in seen:
            seen.append(line)
            if len(seen) == count:
                break
    return seen


# ---------------------------------------------------------------------------------------------
# Formatting


def fmt_int(value):
    return "–" if value is None else f"{value:,.0f}"


def fmt_float(value, digits=2):
    return "–" if value is None else f"{value:,.{digits}f}"


def fmt_ratio(value):
    return "–" if value is None else f"{value:.2f}×"


def markdown_table(headers, rows, align=None):
    """A GitHub markdown table; align is a string of "l"/"r" per column (default: first left,
    the rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def verdict(measured, target, higher_is_better=True, points=False):
    """"met", or "missed by N%" (how far measured is from target, relative to target), or with
    points (for targets that are percentages) "missed by N points"; "not measured" without a
    value."""
    if measured is None:
        return "not measured"
    if points:
        gap = target - measured if higher_is_better else measured - target
        return "met" if gap <= 0 and (gap < 0 or higher_is_better) else f"**missed** by {gap:.1f} points"
    if higher_is_better:
        if measured >= target:
            return "met"
        return f"**missed** by {(target - measured) / target * 100:.0f}%"
    if measured < target:
        return "met"
    return f"**missed** by {(measured - target) / target * 100:.0f}%"


# ---------------------------------------------------------------------------------------------
# SVG chart

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]


def svg_bar_chart(title, groups, series, subtitle=""):
    """A horizontal grouped bar chart.

    groups: [(group label, {series name: value or None})]; series: the series names in order
    (one colour each). Bars are scaled per group to the group's largest value, so groups of
    different magnitudes read alike; each bar is labelled with its value.
    """
    bar_h, gap, label_w, bar_w, right = 14, 10, 250, 420, 110
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    legend_h = 22 * math.ceil(len(series) / 3)
    top = 56 + legend_h
    height = top + sum(len(series) * bar_h + gap + 18 for _ in groups) + 10
    width = label_w + bar_w + right
    esc = html.escape
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="22" font-size="16" font-weight="bold">{esc(title)}</text>',
        f'<text x="10" y="40" fill="#555">{esc(subtitle)}</text>',
    ]
    for i, name in enumerate(series):
        x = 10 + (i % 3) * 250
        y = 52 + (i // 3) * 22
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{colours[name]}"/>')
        out.append(f'<text x="{x + 18}" y="{y + 11}">{esc(name)}</text>')
    y = top
    for label, values in groups:
        out.append(f'<text x="10" y="{y + 12}" font-weight="bold">{esc(label)}</text>')
        y += 18
        biggest = max((v for v in values.values() if v), default=0)
        for name in series:
            value = values.get(name)
            if value is not None and biggest:
                w = max(1, bar_w * value / biggest)
                out.append(
                    f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" '
                    f'fill="{colours[name]}"><title>{esc(name)}: {value:,.0f}</title></rect>'
                )
                out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 10}">{value:,.0f}</text>')
            else:
                out.append(f'<text x="{label_w + 4}" y="{y + 10}" fill="#999">not run</text>')
            out.append(
                f'<text x="{label_w - 6}" y="{y + 10}" text-anchor="end" fill="#333">'
                f"{esc(name)}</text>"
            )
            y += bar_h
        y += gap
    out.append("</svg>")
    return "\n".join(out) + "\n"
