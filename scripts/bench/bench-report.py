#!/usr/bin/env python3
"""Renders docs/PERFORMANCE.md from one benchmark run's results (scripts/bench/bench.sh).

    scripts/bench/bench-report.py RESULTS_DIR OUT [--analysis docs/bench-analysis.md]

RESULTS_DIR is what bench.sh keeps of a run (target/bench/last-run): run.json (the run's
settings and figures bench.sh measured itself), the vx-load summaries (*.json), CPU seconds per
process (*-cpu), peak RSS (*-rss-kib), callgrind figures (*-ir, *-annotate.txt) and the burst's
upstream calls (d-burst-calls), the naive handler's (n*) and the latency sweep's (sweep-*.json).
Parts a run did not measure (an older run without (n)) are left out. It measures nothing and starts nothing; the machine line is read
when the report is written, as before. Standard library only.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

# The steps of the callgrind table: label and the function as named in the release binary.
STEPS = [
    ("whole handler", "<F as axum::handler::Handler<(M,T1,T2),S>>::call::{{closure}}"),
    ("signature (HMAC-SHA256 over the body)", "vx_bridge::auth::hmac::HmacVerifier::verify"),
    ("strict JSON parse to Value (duplicate keys refused)", "vx_bridge::json::parse_strict"),
    ("dropping the Value", "core::ptr::drop_in_place<serde_json::value::Value>"),
    ("schema validation", "vx_bridge::schema::check"),
    ("event draft (envelope, ids, headers)", "vx_bridge::event::draft_event"),
    ("of which the body hash in the Nats-Msg-Id", "vx_bridge::event::delivery_msg_id"),
    ("data key and encryption (a new session's key made and stored)", "vx_bridge::pii::Sealer::seal::{{closure}}"),
    ("of which the JWE (AES-256-GCM, base64url)", "vx_bridge::pii::jwe::encrypt"),
    ("publish and PubAck (incl. NATS headers)", "vx_bridge::ingress::publish_once::{{closure}}"),
    (
        "log line (formatter)",
        "<tracing_subscriber::layer::layered::Layered<L,S> as tracing_core::subscriber::Subscriber>::event",
    ),
    (
        "span fields recorded (span.record)",
        "<tracing_subscriber::fmt::fmt_layer::Layer<S,N,E,W> as tracing_subscriber::layer::Layer<S>>::on_record",
    ),
    ("session projector (its whole task)", "vx_bridge::sessions::projector::run_once::{{closure}}"),
    ("of which one event (fields, rule, KV write, ack)", "vx_bridge::sessions::projector::handle::{{closure}}"),
    ("of which the view's fields from the headers", "vx_bridge::sessions::fields::from_headers"),
    ("async-nats connection task (all NATS traffic)", "async_nats::ConnectionHandler::process::{{closure}}"),
    ("mimalloc alloc (all callers)", "mi_malloc_aligned"),
    ("mimalloc free (all callers)", "mi_free"),
]


def num(v):
    """A JSON number as jq prints it: integral values without a fraction."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def sh(*cmd):
    """The stripped output of a command, or "?" when it cannot run."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"


class Run:
    def __init__(self, results: Path):
        self.dir = results
        self.vars = json.loads((results / "run.json").read_text())

    def var(self, name):
        return str(self.vars.get(name, ""))

    def json(self, name):
        return json.loads((self.dir / f"{name}.json").read_text())

    def text(self, name):
        return (self.dir / name).read_text().strip()

    def has(self, name):
        return (self.dir / name).is_file()


def row(label, r):
    codes = ", ".join(f"{k}: {v}" for k, v in r["codes"].items())
    return (
        f"| {label} | {int(r['rps'] // 1)} | {num(r['p50_ms'])} | {num(r['p90_ms'])} "
        f"| {num(r['p99_ms'])} | {codes} |"
    )


def pct(a, b):
    return f"{100 * a / b:.0f} %" if b > 0 else "n/a"


def yes_no(met):
    return "**met**" if met else "**missed**"


def server_us(load, srv_cpu):
    """The server's CPU µs per request of a peak run."""
    return float(srv_cpu) * 1e6 / float(load["all_requests"])


def cpu_row(label, load, nats_cpu, srv_cpu, cores):
    n, gen = float(load["all_requests"]), float(load["cpu_s"])
    a = float(nats_cpu) if nats_cpu is not None else 0.0
    b = float(srv_cpu) if srv_cpu is not None else 0.0
    f = 1e6 / n
    total = (a + b + gen) * f
    col_a = "-" if nats_cpu is None else f"{a * f:.1f}"
    col_b = "-" if srv_cpu is None else f"{b * f:.1f}"
    return f"| {label} | {col_a} | {col_b} | {gen * f:.1f} | {total:.1f} | {cores * 1e6 / total:.0f} req/s |"


def annotate_name(line):
    """The function a callgrind_annotate line names: counts, file and object stripped."""
    line = re.sub(r"^ *[0-9,]+ *(\([ 0-9.%]*\))? *", "", line, count=1)
    line = re.sub(r" \[.*$", "", line, count=1)
    return re.sub(r"^[^:]*:", "", line, count=1)


def step_ir(annotate, fn, requests):
    """Inclusive instructions per webhook of the first line naming exactly `fn`."""
    for line in annotate.splitlines():
        if annotate_name(line) == fn:
            fields = line.split()
            return str(int(int(fields[0].replace(",", "")) / requests))
    return "n/a"


def largest(annotate, requests, count=30):
    """The largest inclusive costs per webhook, as the table after the fourth dashed line."""
    out, dashes = [], 0
    for line in annotate.splitlines():
        if re.fullmatch(r"-+", line):
            dashes += 1
            continue
        fields = line.split()
        if dashes >= 4 and len(fields) >= 2 and re.fullmatch(r"[0-9,]+", fields[0]):
            ir = int(fields[0].replace(",", ""))
            rest = re.sub(r"\(.*%\) *", "", " ".join(fields[1:]), count=1)
            name = re.sub(r" \[.*$", "", rest, count=1)
            if len(name) > 110:
                name = name[:107] + "..."
            out.append(f"{int(ir / requests):10d}  {name}")
            if len(out) == count:
                break
    return out


SWEPT = [("b", "(b) plain axum 202"), ("n", "(n) naive handler"), ("c", "(c) vx-bridge")]


def sweep_rows(run):
    """One table row per sweep point and peak, for the servers that were swept."""
    out = []
    for name, label in SWEPT:
        files = sorted(run.dir.glob(f"sweep-{name}-*.json"), key=lambda f: float(f.stem.split("-")[-1]))
        for f in files:
            r = json.loads(f.read_text())
            frac = float(f.stem.split("-")[-1])
            out.append(f"| {label} | {frac:.2f} | {int(r['rps'])} | {num(r['p50_ms'])} | {num(r['p99_ms'])} |")
        if files:
            r = run.json(name)
            out.append(f"| {label} | peak | {int(r['rps'])} | {num(r['p50_ms'])} | {num(r['p99_ms'])} |")
    return out


def machine_line(cores):
    model = next(
        (l.split(":", 1)[1].strip() for l in sh("lscpu").splitlines() if "Model name" in l), "?"
    )
    mem = next((l.split()[1] for l in sh("free", "-g").splitlines() if l.startswith("Mem:")), "?")
    return f"- CPU: {model}, {cores} cores; memory {mem} GiB; Linux {os.uname().release}"


def render(run: Run, analysis: Path | None, nats_server: str) -> str:
    v = run.var
    quick, before, before_rev = v("QUICK") == "1", v("BEFORE"), v("BEFORE_REV")
    has_before, status, profile = v("BEFORE_BIN_SET") != "", v("STATUS") == "1", v("PROFILE") == "1"
    requests = int(v("PROFILE_REQUESTS") or 1)
    cores = len(os.sched_getaffinity(0))
    a, b, c, c_half = run.json("a"), run.json("b"), run.json("c"), run.json("c-half")
    startup = run.json("startup")
    rss_kib = float(run.text("c-rss-kib"))
    ready_ms = startup["median_ms"]
    lines = []
    p = lines.append
    invoked = "scripts/bench/bench.sh" + (" --quick" if quick else "") + (f" --before {before}" if before else "")
    p("# Performance")
    p("")
    p(
        f"Written by `{invoked}` on {v('MEASURED_AT')}, at commit `{v('MEASURED_REV')}`. "
        "Do not edit by hand: run the script again."
    )
    if quick:
        p("")
        p("**A quick run (3 s per measurement): indicative only.**")
    p("")
    p("Load generator, NATS and vx-bridge share the machine's cores, so absolute numbers drift from run to run;")
    p(f"every target is a ratio to a baseline measured in the same run. Each measurement runs {v('DURATION')}")
    p(f"(the first {v('WARMUP')} not counted) against a fresh `nats-server` with a file store in a temp dir.")
    p("")
    p("## Machine")
    p("")
    p(machine_line(cores))
    p(
        f"- load average (1, 5, 15 min): {v('LOAD_START')} before the run, {v('LOAD_END')} after "
        "(the machine is shared with other builds)"
    )
    p(f"- {sh(nats_server, '--version')}, {sh('rustc', '--version')}")
    p("")
    p("## Results")
    p("")
    p("| measurement | req/s | p50 ms | p90 ms | p99 ms | answers |")
    p("|---|---:|---:|---:|---:|---|")
    conns, in_flight = v("CONNS"), v("IN_FLIGHT")
    p(row(f"(a) raw JetStream publish, {in_flight} in flight, Nats-Msg-Id (baseline)", a))
    p(row(f"(b) plain axum 202, {conns} connections (baseline)", b))
    naive = run.json("n") if run.has("n.json") else None
    if naive:
        p(row(f"(n) naive handler (HMAC, Value parse, jsonschema is_valid, awaited PubAck), {conns} connections (baseline)", naive))
    p(row(f"(c) vx-bridge ingress, {conns} connections, peak", c))
    p(row("(c) vx-bridge ingress at half of peak (open loop)", c_half))
    p(row("(c) vx-bridge ingress, log.level = warn, peak", run.json("cwarn")))
    p(row("(c) vx-bridge ingress, session view off, peak", run.json("cnoview")))
    if run.has("cnoview2.json"):
        p(row("(c) vx-bridge ingress, session view off, 2 webhooks per session, peak", run.json("cnoview2")))
    if run.has("cclear.json"):
        p(row("(c) vx-bridge ingress, events.pii = clear (no encryption), peak", run.json("cclear")))
    if run.has("c2encrypted.json"):
        p(row("(c) vx-bridge ingress, encrypted, 2 webhooks per session, peak", run.json("c2encrypted")))
        p(row("(c) vx-bridge ingress, clear, 2 webhooks per session, peak", run.json("c2clear")))
    if has_before:
        p(row(f"(c) before ({before_rev}), peak", run.json("cbefore")))
        p(row(f"(c) before ({before_rev}), half of its peak", run.json("cbefore-half")))
    if status:
        p(row("(d) raw NATS request-reply, 64 requesters (baseline)", run.json("d-raw")))
        p(row("(d) status from cache, 64 requesters", run.json("d-cache")))
        p(row("(d) status from the session view, 1000 terminal sessions, 64 requesters", run.json("d-view")))
        p(row("(d) status, each lookup upstream (mock VX API, 20 ms)", run.json("d-upstream")))
    p("")
    p("## Where the CPU goes (peak runs)")
    p("")
    p("CPU time (user + system, from `/proc/PID/stat`) each process used during the run, divided by every")
    p(f"request it served (warm-up included). The three share {cores} cores, so their sum bounds the rate:")
    p(f"{cores} cores ÷ (µs per request) is the most the machine could do if nothing else ran.")
    p("")
    p(f"| run | nats-server µs/req | server µs/req | load generator µs/req | sum | {cores} cores ÷ sum |")
    p("|---|---:|---:|---:|---:|---:|")
    cpu = run.text
    p(cpu_row("(a) raw JetStream publish", a, cpu("a-nats-cpu"), None, cores))
    p(cpu_row("(b) plain axum 202", b, None, cpu("b-srv-cpu"), cores))
    if naive:
        p(cpu_row("(n) naive handler", naive, cpu("n-nats-cpu"), cpu("n-srv-cpu"), cores))
    p(cpu_row("(c) vx-bridge ingress, every feature on", c, cpu("c-nats-cpu"), cpu("c-srv-cpu"), cores))
    noview = run.json("cnoview")
    if run.has("cnoview-srv-cpu"):
        p(cpu_row("(c) vx-bridge ingress, session view off", noview, cpu("cnoview-nats-cpu"), cpu("cnoview-srv-cpu"), cores))
    if run.has("cnoview2-srv-cpu"):
        p(cpu_row("(c) vx-bridge ingress, session view off, 2 webhooks per session", run.json("cnoview2"), cpu("cnoview2-nats-cpu"), cpu("cnoview2-srv-cpu"), cores))
    if run.has("cclear-srv-cpu"):
        p(cpu_row("(c) vx-bridge ingress, events.pii = clear", run.json("cclear"), cpu("cclear-nats-cpu"), cpu("cclear-srv-cpu"), cores))
    if run.has("c2encrypted-srv-cpu"):
        for mode in ("encrypted", "clear"):
            p(cpu_row(f"(c) vx-bridge ingress, {mode}, 2 webhooks per session", run.json(f"c2{mode}"), cpu(f"c2{mode}-nats-cpu"), cpu(f"c2{mode}-srv-cpu"), cores))
    if has_before:
        p(cpu_row(f"(c) before ({before_rev})", run.json("cbefore"), cpu("cbefore-nats-cpu"), cpu("cbefore-srv-cpu"), cores))
    p("")
    p("## Targets")
    p("")
    p("| target | measured | |")
    p("|---|---|---|")
    ra, rb, rc, rv = a["rps"], b["rps"], c["rps"], noview["rps"]
    c_us = server_us(c, cpu("c-srv-cpu"))
    if naive and run.has("cnoview-srv-cpu"):
        rn = naive["rps"]
        n_us = server_us(naive, cpu("n-srv-cpu"))
        v_us = server_us(noview, cpu("cnoview-srv-cpu"))
        p(f"| ingress with the session view off ≥ naive handler in webhooks/s (cnoview/n) | {rv:.0f} against {rn:.0f} req/s: {pct(rv, rn)} | {yes_no(rv >= rn)} |")
        p(f"| ingress with the session view off ≤ naive handler in bridge CPU µs per webhook | {v_us:.1f} against {n_us:.1f} µs | {yes_no(v_us <= n_us)} |")
        if run.has("cnoview2-srv-cpu"):
            v2 = run.json("cnoview2")
            v2_us = server_us(v2, cpu("cnoview2-srv-cpu"))
            p(
                f"| (the same with 2 webhooks per session, a journey's PENDING and result: one data key per two webhooks) "
                f"| {v2['rps']:.0f} req/s: {pct(v2['rps'], rn)}; {v2_us:.1f} µs |  |"
            )
        p(f"| (every feature on, view included, against the naive handler: webhooks/s; bridge CPU µs per webhook) | {pct(rc, rn)}; {c_us:.1f} against {n_us:.1f} µs | |")
    if run.has("cnoview-nats-cpu"):
        cn_us = server_us(c, cpu("c-nats-cpu"))
        vn_us = server_us(noview, cpu("cnoview-nats-cpu"))
        p(f"| the view costs ≤ 15 %: every feature on ≥ 0.85 × the view-off peak (c/cnoview) | {rc:.0f} against {rv:.0f} req/s: {pct(rc, rv)} | {yes_no(rc >= 0.85 * rv)} |")
        p(
            f"| the view costs ≤ 15 %: nats-server CPU per webhook, view on ≤ 1.3 × view off "
            f"| {cn_us:.1f} against {vn_us:.1f} µs: {cn_us / vn_us:.2f}× | {yes_no(cn_us <= 1.3 * vn_us)} |"
        )
    lag = [int(float(x)) for x in run.text("c-lag").split() if x]
    half_lag = [int(float(x)) for x in run.text("c-half-lag").split() if x]
    catch = run.text("c-catchup-s").strip()
    try:
        caught = float(catch) <= 1.0
    except ValueError:
        caught = False
    p(
        "| the projector keeps up at the ingress's peak: backlog (vx_bridge_sessions_pending, max of 0.5 s samples; "
        f"the gauge is sampled every 0.5 s) bounded, and 0 within 1 s of the load stopping | max {max(lag) if lag else 'n/a'} events, 0 again {catch} s "
        f"after the load stopped | {yes_no(caught)} |"
    )
    if run.has("cclear-srv-cpu"):
        clear = run.json("cclear")
        e_us, k_us = server_us(c, cpu("c-srv-cpu")), server_us(clear, cpu("cclear-srv-cpu"))
        p(
            f"| mode encrypted (default) ≥ 90 % of mode clear in webhooks/s (c/cclear; every webhook a new session: one data key made per webhook) "
            f"| {rc:.0f} against {clear['rps']:.0f} req/s: {pct(rc, clear['rps'])}; bridge CPU {e_us:.1f} against {k_us:.1f} µs per webhook "
            f"| {yes_no(rc >= 0.9 * clear['rps'])} |"
        )
    if run.has("c2encrypted-srv-cpu"):
        e2, k2 = run.json("c2encrypted"), run.json("c2clear")
        e2_us, k2_us = server_us(e2, cpu("c2encrypted-srv-cpu")), server_us(k2, cpu("c2clear-srv-cpu"))
        p(
            f"| (the same with 2 webhooks per session, as a journey's PENDING and final ones: one data key per two webhooks) "
            f"| {e2['rps']:.0f} against {k2['rps']:.0f} req/s: {pct(e2['rps'], k2['rps'])}; bridge CPU {e2_us:.1f} against {k2_us:.1f} µs per webhook "
            f"| {yes_no(e2['rps'] >= 0.9 * k2['rps'])} |"
        )
    p(f"| full ingress ≥ 35 % of raw JetStream publish (c/a) | {pct(rc, ra)} | {yes_no(rc >= 0.35 * ra)} |")
    p(f"| (the same, session view off) | {pct(rv, ra)} | |")
    p(f"| (c/b: ingress against plain axum, for reference) | {pct(rc, rb)} | |")
    p(f"| p99 ≤ 10 ms at half of peak rate | {num(c_half['p99_ms'])} ms | {yes_no(c_half['p99_ms'] <= 10)} |")
    if status:
        d, dr = run.json("d-cache")["rps"], run.json("d-raw")["rps"]
        burst = run.text("d-burst-calls")
        codes = json.dumps(run.json("d-burst")["codes"], separators=(",", ":"), ensure_ascii=False)
        p(f"| status from cache ≥ 50 % of raw request-reply (d/raw) | {pct(d, dr)} | {yes_no(d >= 0.5 * dr)} |")
        dv = run.json("d-view")["rps"]
        p(
            f"| status from the session view ≥ 50 % of raw request-reply (d-view/raw) | {pct(dv, dr)}, "
            f"{run.text('d-view-calls')} VX calls | {yes_no(dv >= 0.5 * dr)} |"
        )
        p(f"| burst of 100 identical lookups → 1 upstream call | {burst} call(s), answers {codes} | {yes_no(burst == '1')} |")
    else:
        p("| status targets | not measured: no status service in this build | |")
    p(f"| peak RSS ≤ 32 MiB under load (VmHWM after the (c) runs) | {rss_kib / 1024:.1f} MiB | {yes_no(rss_kib <= 32 * 1024)} |")
    p(
        "| session projector at half of the ingress's peak: backlog, max of 0.5 s samples "
        f"| max {max(half_lag) if half_lag else 'n/a'} events | |"
    )
    p(
        f"| peak RSS, session view off (same load, peak only) | {float(run.text('cnoview-rss-kib')) / 1024:.1f} MiB "
        f"(view on: {rss_kib / 1024:.1f} MiB) | |"
    )
    p(
        f"| ready ≤ 200 ms after start (median of 5, exec to /readyz 200) | {ready_ms:.1f} ms "
        f"(min {startup['min_ms']:.1f}, max {startup['max_ms']:.1f}) | {yes_no(ready_ms <= 200)} |"
    )
    p(f"| binary size (release, debug info stripped) | {float(v('BIN_BYTES')) / 1048576:.1f} MiB | |")
    if has_before:
        p(f"| before ({before_rev}): peak RSS | {float(run.text('cbefore-rss-kib')) / 1024:.1f} MiB | |")
    sweeps = sweep_rows(run)
    if sweeps:
        p("")
        p("## Latency against offered rate")
        p("")
        p("Open-loop runs (`vx-load webhook --rate`) at fractions of each one's own peak, then the closed-loop")
        p("peak, all in this run; drawn by `scripts/bench/bench-plot.py` (matplotlib) from the same results.")
        p("")
        p("![p50 and p99 latency against rate](perf-latency.png)")
        p("")
        p("| server | fraction of its peak | req/s | p50 ms | p99 ms |")
        p("|---|---:|---:|---:|---:|")
        lines.extend(sweeps)
    if profile:
        annotate = run.text("p-annotate.txt")
        before_annotate = run.text("pbefore-annotate.txt") if has_before else ""
        p("")
        p("## Instructions per webhook (callgrind)")
        p("")
        p("The whole vx-bridge process (and (n)'s, the same way) under `valgrind --tool=callgrind`, counters zeroed after 300 warm-up")
        p(f"webhooks, then {requests} signed seed webhooks over 8 connections: every instruction the process")
        p("ran (hyper, axum, auth, parse, schema, event, async-nats, tokio, logging, metrics), divided by the count.")
        p("Instruction counts do not drift with the machine's load.")
        p("")
        p("| build | instructions per webhook |")
        p("|---|---:|")
        p(f"| this commit, every feature on | {run.text('p-ir')} |")
        if run.has("pnoview-ir"):
            p(f"| this commit, session view off | {run.text('pnoview-ir')} |")
        if run.has("pclear-ir"):
            p(f"| this commit, events.pii = clear (no data keys, no encryption) | {run.text('pclear-ir')} |")
        if run.has("pn-ir"):
            p(f"| (n) naive handler (`vx-load naive`, same allocator) | {run.text('pn-ir')} |")
        if has_before:
            p(f"| before ({before_rev}) | {run.text('pbefore-ir')} |")
        p("")
        p("By step (inclusive instructions per webhook; functions as named in the release binary's symbols):")
        p("")
        noview_annotate = run.text("pnoview-annotate.txt") if run.has("pnoview-annotate.txt") else ""
        cols = [("this commit", annotate)]
        if noview_annotate:
            cols.append(("view off", noview_annotate))
        if has_before:
            cols.append((f"before ({before_rev})", before_annotate))
        p("| step | function | " + " | ".join(c for c, _ in cols) + " |")
        p("|---|---|" + "---:|" * len(cols))
        for step, fn in STEPS:
            p(f"| {step} | `{fn}` | " + " | ".join(str(step_ir(a, fn, requests)) for _, a in cols) + " |")
        p("")
        p("Largest inclusive costs, this commit (`callgrind_annotate --inclusive=yes`, per webhook):")
        p("")
        p("```")
        lines.extend(largest(annotate, requests))
        p("```")
    if analysis is not None and analysis.is_file():
        p("")
        lines.extend(analysis.read_text().rstrip("\n").split("\n"))
    p("")
    p(
        f"Reproduce: `scripts/bench/bench.sh{f' --before {before}' if before else ''}` "
        "(needs nats-server; installs jq and valgrind with apt-get when missing)."
    )
    p("Micro-benchmarks of the hot functions: `cargo bench --bench hot`.")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="a run's results (target/bench/last-run)")
    ap.add_argument("out", type=Path, help="the report to write (docs/PERFORMANCE.md)")
    ap.add_argument("--analysis", type=Path, help="Markdown appended to the report")
    args = ap.parse_args()
    text = render(Run(args.results), args.analysis, os.environ.get("NATS_SERVER", "nats-server"))
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
