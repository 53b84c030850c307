#!/usr/bin/env python3
"""Turns one perf/run.sh work directory into the run folder: raw.csv, summary.md, README.md
and profile-callgrind.txt. Standard library only.

    summarize.py --work /work/scratch/perf-run/<id> --out perf/YYYY-MM-DD-<host>

Inputs (written by run.sh into the work directory): meta.env (machine and settings),
index.tsv (one line per mcpgw-load run: scenario fields, PIDs, JSON path, exit code, note),
json/*.json (mcpgw-load --json reports), idle.tsv + json/idle-*.json (idle_sessions.py),
callgrind.tsv (callgrind dumps), peers.tsv (peer status), phases.tsv (phase start times).
"""

import argparse
import csv
import json
import os
import re
import statistics
from collections import defaultdict

INDEX_FIELDS = ["id", "scenario", "target", "driver", "workers", "session", "pinning", "rep",
                "sut_pid", "fix_pid", "json", "rc", "note", "busy", "utst"]

RAW_FIELDS = [
    "run", "scenario", "target", "driver", "workers", "session_mode", "pinning", "rep", "loop",
    "rate", "connections", "payload_bytes", "result_bytes", "window_s", "ok", "errors",
    "calls_per_s", "p50_us", "p90_us", "p99_us", "p99_9_us", "max_us", "cpu_us_gateway",
    "cpu_us_gateway_user", "cpu_us_gateway_sys",
    "cpu_us_fixture", "cpu_us_load", "tree_cpu_us_per_call", "late_sends", "errors_by_kind",
    "other_cpu_pct", "note",
]


def read_env(path):
    env = {}
    if os.path.exists(path):
        for line in open(path):
            if "=" in line:
                k, _, v = line.rstrip("\n").partition("=")
                env[k] = v
    return env


def read_tsv(path, fields=None):
    if not os.path.exists(path):
        return []
    rows = []
    for line in open(path):
        line = line.rstrip("\n")
        if not line:
            continue
        parts = line.split("\t")
        rows.append(dict(zip(fields, parts)) if fields else parts)
    return rows


def load_runs(work):
    runs = []
    for r in read_tsv(os.path.join(work, "index.tsv"), INDEX_FIELDS):
        try:
            j = json.load(open(r["json"]))
        except Exception:  # noqa: BLE001 - a failed run is reported as such
            j = None
        runs.append((r, j))
    return runs


def cpu_of(j, pid):
    if not j or not pid:
        return None
    for c in j.get("cpu", []):
        if str(c.get("pid")) == str(pid):
            return c["us_per_req"]
    return None


def self_cpu(j):
    if not j:
        return None
    for c in j.get("cpu", []):
        if c.get("name") == "self":
            return c["us_per_req"]
    return None


def raw_row(r, j):
    note = r.get("note", "")
    tree = None
    m = re.search(r"tree_cpu_s=([0-9.]+)", note)
    if m and j and (j["ok"] + j["errors"]) > 0:
        tree = float(m.group(1)) * 1e6 / (j["ok"] + j["errors"])
    direct = r["target"] == "direct"
    # For a direct run the only server is the fixture, whichever PID slot it was passed in.
    fix_pid = r["fix_pid"] or (r["sut_pid"] if direct else "")
    sut_pid = "" if direct else r["sut_pid"]
    row = {
        "run": r["id"], "scenario": r["scenario"], "target": r["target"], "driver": r["driver"],
        "workers": r["workers"], "session_mode": r["session"], "pinning": r["pinning"],
        "rep": r["rep"], "note": note if not m else "",
    }
    if not j:
        row.update({"errors": "run failed (exit %s)" % r["rc"]})
        return row
    p = j["latency_us"]
    row.update({
        "loop": j["mode"], "rate": j["rate"] or "", "connections": j["connections"],
        "payload_bytes": j["payload_bytes"], "result_bytes": j["result_bytes"] or "",
        "window_s": round(j["window_s"], 3), "ok": j["ok"], "errors": j["errors"],
        "calls_per_s": round(j["calls_per_s"], 1), "p50_us": p["p50"], "p90_us": p["p90"],
        "p99_us": p["p99"], "p99_9_us": p["p99_9"], "max_us": p["max"],
        "cpu_us_gateway": rnd(cpu_of(j, sut_pid)), "cpu_us_fixture": rnd(cpu_of(j, fix_pid)),
        "cpu_us_load": rnd(self_cpu(j)), "tree_cpu_us_per_call": rnd(tree),
        "late_sends": j["late_sends"] if j["mode"] == "open" else "",
        "errors_by_kind": ";".join(f"{k}={v}" for k, v in j["errors_by_kind"].items()),
    })
    # user/system split of the process under test over the whole invocation, applied to its
    # measured-window CPU per call
    ut = (r.get("utst") or "").split()
    g = cpu_of(j, sut_pid)
    if len(ut) == 4 and g is not None:
        du, ds = int(ut[2]) - int(ut[0]), int(ut[3]) - int(ut[1])
        if du + ds > 0:
            row["cpu_us_gateway_user"] = rnd(g * du / (du + ds))
            row["cpu_us_gateway_sys"] = rnd(g * ds / (du + ds))
    busy = num(r.get("busy"))
    if busy is not None:
        ours = sum(c.get("core_percent", 0) for c in j.get("cpu", []))
        row["other_cpu_pct"] = max(0, round(busy - ours))
    return row


def rnd(x, n=2):
    return "" if x is None else round(x, n)


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


class Rows:
    def __init__(self, rows):
        self.rows = rows

    def sel(self, **kw):
        out = []
        for r in self.rows:
            if all(str(r.get(k)) == str(v) for k, v in kw.items()):
                out.append(r)
        return out

    def values(self, field, **kw):
        return [v for v in (num(r.get(field)) for r in self.sel(**kw)) if v is not None]

    def med(self, field, **kw):
        v = self.values(field, **kw)
        return statistics.median(v) if v else None

    def spread(self, field, **kw):
        v = self.values(field, **kw)
        if len(v) < 2:
            return None
        m = statistics.median(v)
        return (max(v) - min(v)) / m * 100 if m else None


def paired(R, field, a, b):
    """Ratios a/b of FIELD between two row selections, paired by repetition (a run's
    repetitions are interleaved, so a pair saw the same machine state)."""
    out = []
    bs = {r["rep"]: num(r.get(field)) for r in R.sel(**b)}
    for r in R.sel(**a):
        x, y = num(r.get(field)), bs.get(r["rep"])
        if x is not None and y:
            out.append(x / y)
    return out


def prange(v):
    if not v:
        return ""
    if len(v) == 1:
        return ""
    return f", per-repetition {min(v):.2f}–{max(v):.2f}×"


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def f(x, d=1, suffix=""):
    if x is None:
        return "n/a"
    if isinstance(x, float) and d == 0:
        return f"{x:,.0f}{suffix}"
    return f"{x:,.{d}f}{suffix}"


def verdict(ok):
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


# ---------------------------------------------------------------- callgrind

def callgrind_self(path):
    """Self cost (first event) per function of one callgrind dump."""
    names = {"fn": {}, "fl": {}, "ob": {}}
    kinds = {"fn": "fn", "cfn": "fn", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl",
             "ob": "ob", "cob": "ob"}
    cost = defaultdict(int)
    callee = defaultdict(int)
    fn = "?"
    npos = 1
    skip_next = False
    total = None
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if not line:
            continue
        c = line[0]
        if c.isdigit() or c in "+-*":
            parts = line.split()
            if skip_next:
                skip_next = False
                if len(parts) > npos:
                    try:
                        callee[fn] += int(parts[npos])
                    except ValueError:
                        pass
                continue
            if len(parts) > npos:
                try:
                    cost[fn] += int(parts[npos])
                except ValueError:
                    pass
            continue
        key, eq, val = line.partition("=")
        if not eq:
            key, _, val = line.partition(":")
            if key == "positions":
                npos = len(val.split())
            elif key in ("summary", "totals"):
                total = int(val.split()[0])
            continue
        if key == "calls":
            skip_next = True
            continue
        kind = kinds.get(key)
        if not kind:
            continue
        m = re.match(r"\((\d+)\)\s*(.*)", val)
        if m:
            if m.group(2):
                names[kind][m.group(1)] = m.group(2)
            name = names[kind].get(m.group(1), val)
        else:
            name = val
        if key == "fn":
            fn = name
    if total is None:
        total = sum(cost.values())
    incl = {k: cost.get(k, 0) + callee.get(k, 0) for k in set(cost) | set(callee)}
    return total, cost, incl


def short_fn(name, width=110):
    name = re.sub(r"\[[^\]]*\]$", "", name).strip()
    return name if len(name) <= width else name[: width - 1] + "…"


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    W, OUT = a.work, a.out
    os.makedirs(OUT, exist_ok=True)
    env = read_env(os.path.join(W, "meta.env"))
    runs = load_runs(W)
    raw = [raw_row(r, j) for r, j in runs]
    with open(os.path.join(OUT, "raw.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=RAW_FIELDS, extrasaction="ignore")
        w.writeheader()
        for row in raw:
            w.writerow(row)
    R = Rows(raw)

    # ---------------- idle sessions
    idle = {}
    for label, path, rc in read_tsv(os.path.join(W, "idle.tsv")):
        try:
            idle[label] = json.load(open(path))
        except Exception:  # noqa: BLE001
            idle[label] = {"error": f"no result (exit {rc})"}

    # ---------------- callgrind
    cg = {}
    cg_text = []
    for name, dump, jpath in read_tsv(os.path.join(W, "callgrind.tsv")):
        try:
            total, cost, incl = callgrind_self(dump)
            j = json.load(open(jpath))
            calls = j["ok"]
            cg[name] = {"total": total, "calls": calls, "per_call": total / calls if calls else None,
                        "errors": j["errors"]}
            top = sorted(cost.items(), key=lambda kv: -kv[1])[:15]
            cg_text.append(f"## {name}: {total:,} instructions (Ir) over {calls:,} tools/call "
                           f"= {total / calls:,.0f} per call\n")
            cg_text.append(f"{'self Ir/call':>12}  {'share':>6}  function")
            for fn_name, c in top:
                cg_text.append(f"{c / calls:12,.0f}  {c / total * 100:5.1f}%  {short_fn(fn_name)}")
            cg_text.append("")
            own = [(k, v) for k, v in incl.items() if re.search(r"\b(mcpgw|mcpgw_load)::", k) and "{{closure}}" not in k]
            own = sorted(own, key=lambda kv: -kv[1])[:20]
            if own:
                cg_text.append(f"{'incl Ir/call':>12}  {'share':>6}  own function, inclusive of callees (recursion counted once per level)")
                for fn_name, c in own:
                    cg_text.append(f"{c / calls:12,.0f}  {c / total * 100:5.1f}%  {short_fn(fn_name)}")
                cg_text.append("")
        except Exception as e:  # noqa: BLE001
            cg[name] = {"error": repr(e)}
    if cg_text:
        with open(os.path.join(OUT, "profile-callgrind.txt"), "w") as fh:
            fh.write("# valgrind --tool=callgrind; counters zeroed after a 2,000-call warm-up, then 10,000 "
                     "tools/call (1 KiB, 4 connections) and a dump.\n# User-space instructions only "
                     "(kernel and io_uring work are not counted). Self cost per call, top 15.\n\n")
            fh.write("\n".join(cg_text))

    # ---------------- perf stat (only where hardware counters exist)
    pstat = {}
    for t in ("gateway", "floor"):
        path = os.path.join(W, f"perf-stat-{t}.csv")
        if not os.path.exists(path):
            continue
        ins = None
        for line in open(path):
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[2].startswith("instructions"):
                ins = num(parts[0])
        cps = Rows(raw).med("calls_per_s", scenario="perf-stat", target=t)
        if ins and cps:
            pstat[t] = ins / (cps * 3.0)

    # ---------------- peers
    peers = read_tsv(os.path.join(W, "peers.tsv"))

    # ================================================================ summary.md
    S = []
    core = dict(scenario="core")
    gw_cpu = R.med("cpu_us_gateway", target="gateway", driver="uring", session_mode="per-client", **core)
    fl_cpu = R.med("cpu_us_gateway", target="floor", driver="uring", **core)
    gwe_cpu = R.med("cpu_us_gateway", target="gateway", driver="epoll", **core)
    fle_cpu = R.med("cpu_us_gateway", target="floor", driver="epoll", **core)
    gws_cpu = R.med("cpu_us_gateway", target="gateway", driver="uring", session_mode="shared", **core)
    gw_cps = R.med("calls_per_s", target="gateway", driver="uring", session_mode="per-client", **core)
    gwe_cps = R.med("calls_per_s", target="gateway", driver="epoll", **core)
    fl_cps = R.med("calls_per_s", target="floor", driver="uring", **core)
    fle_cps = R.med("calls_per_s", target="floor", driver="epoll", **core)
    gws_cps = R.med("calls_per_s", target="gateway", driver="uring", session_mode="shared", **core)
    dir_cps = R.med("calls_per_s", target="direct", **core)

    op = dict(scenario="open-50")
    added = {}
    for q in ("p50_us", "p99_us", "p99_9_us"):
        g = R.med(q, target="gateway", **op)
        d = R.med(q, target="direct", **op)
        fl = R.med(q, target="floor", **op)
        added[q] = (None if g is None or d is None else g - d, None if fl is None or d is None else fl - d, g, d, fl)

    lst = dict(scenario="tools-list-10000")
    l10k_p50 = R.med("p50_us", target="gateway", **lst)
    l10k_cpu = R.med("cpu_us_gateway", target="gateway", **lst)
    l10k_dir = R.med("p50_us", target="direct", **lst)
    l10k_fx_cpu = R.med("cpu_us_fixture", target="direct", **lst)
    l10k_bytes = None
    for r, j in runs:
        if r["scenario"] == "tools-list-10000" and r["target"] == "gateway" and j and j["ok"]:
            l10k_bytes = j["bytes_received"] / j["ok"]
    l10_p50 = R.med("p50_us", target="gateway", scenario="tools-list-10")
    l10_cpu = R.med("cpu_us_gateway", target="gateway", scenario="tools-list-10")

    wk = dict(scenario="workers", target="gateway")
    w1 = R.med("calls_per_s", workers=1, **wk)
    w2 = R.med("calls_per_s", workers=2, **wk)
    w1c = R.med("cpu_us_gateway", workers=1, **wk)
    w2c = R.med("cpu_us_gateway", workers=2, **wk)
    fw1 = R.med("calls_per_s", scenario="workers", target="floor", workers=1)
    fw2 = R.med("calls_per_s", scenario="workers", target="floor", workers=2)

    i100 = idle.get("100k", {})
    i10c = idle.get("10k-conn", {})
    rss100_mib = i100.get("rss_after_kib", 0) / 1024 if "rss_after_kib" in i100 else None
    conn_extra = None
    if "bytes_per_session" in i10c and i10c.get("bytes_per_session") and i100.get("rss_before_kib") is not None:
        conn_extra = (i100["rss_before_kib"] * 1024 + 100_000 * i10c["bytes_per_session"]) / 2**20

    S.append(f"# Summary: run of {env.get('date', '?')} on {env.get('host', '?')}\n")
    S.append(f"Commit `{env.get('commit', '?')[:12]}` ({env.get('commit_subject', '')}); "
             f"{env.get('duration_s')} s measured + {env.get('warmup_s')} s warm-up per run, "
             f"{env.get('reps')} repetitions of the core, open-loop and worker scenarios (medians shown), "
             f"{env.get('connections')} connections. Pinning: load generator and fixture on CPU "
             f"{env.get('load_cpu')}, system under test alone on CPU {env.get('sut_cpu')}, all under `{env.get('sched', 'nice -n -20')}`. "
             f"Runtime {env.get('runtime_s', '?')} s. Full data: `raw.csv`; machine and settings: `README.md`.\n")

    S.append("## Ratios against the goals (issue 5)\n")
    S.append("| goal | measured | target | verdict |")
    S.append("|---|---|---|---|")
    GWK = dict(scenario="core", target="gateway", driver="uring", session_mode="per-client")
    FLK = dict(scenario="core", target="floor", driver="uring")
    pr_cpu = paired(R, "cpu_us_gateway", GWK, FLK)
    cpu_ratio = statistics.median(pr_cpu) if pr_cpu else ratio(gw_cpu, fl_cpu)
    gu = R.med("cpu_us_gateway_user", target="gateway", driver="uring", session_mode="per-client", **core)
    gs = R.med("cpu_us_gateway_sys", target="gateway", driver="uring", session_mode="per-client", **core)
    fu = R.med("cpu_us_gateway_user", target="floor", driver="uring", **core)
    fs = R.med("cpu_us_gateway_sys", target="floor", driver="uring", **core)
    split = (f"; user {f(gu, 1)} vs {f(fu, 1)}, kernel {f(gs, 1)} vs {f(fs, 1)}" if gu is not None and fu is not None else "")
    S.append(f"| gateway CPU per `tools/call` vs minimal proxy (1 KiB, io_uring, closed loop, each at its saturation) | **{f(cpu_ratio, 2)}×** "
             f"(median of paired repetitions{prange(pr_cpu)}; medians {f(gw_cpu, 2)} vs {f(fl_cpu, 2)} µs/call{split}) | ≤ 1.25× | {verdict(cpu_ratio is not None and cpu_ratio <= 1.25 if cpu_ratio else None)} |")
    og = R.med("cpu_us_gateway", scenario="open-50", target="gateway")
    of = R.med("cpu_us_gateway", scenario="open-50", target="floor")
    if og and of:
        S.append(f"| same, at an equal rate (open loop at 50% of saturation; each request is a wake-up, which adds the same cost to both and dilutes the ratio) | "
                 f"**{f(ratio(og, of), 2)}×** ({f(og, 1)} vs {f(of, 1)} µs/call) | ≤ 1.25× | "
                 f"{verdict(ratio(og, of) <= 1.25)} |")
    if "gateway" in cg and "floor" in cg and cg["gateway"].get("per_call") and cg["floor"].get("per_call"):
        ir = ratio(cg["gateway"]["per_call"], cg["floor"]["per_call"])
        S.append(f"| same, user-space instructions per call (callgrind, repeatable) | **{f(ir, 2)}×** "
                 f"({f(cg['gateway']['per_call'], 0)} vs {f(cg['floor']['per_call'], 0)} Ir/call) | ≤ 1.25× | "
                 f"{verdict(ir <= 1.25)} |")
    if pstat.get("gateway") and pstat.get("floor"):
        pr = ratio(pstat["gateway"], pstat["floor"])
        S.append(f"| same, instructions per call (perf stat, user + kernel, 3 s under load) | **{f(pr, 2)}×** "
                 f"({f(pstat['gateway'], 0)} vs {f(pstat['floor'], 0)}) | ≤ 1.25× | {verdict(pr <= 1.25)} |")
    for q, goal, name in (("p50_us", 25, "p50"), ("p99_us", 100, "p99"), ("p99_9_us", 250, "p99.9")):
        a_gw = added[q][0]
        dv = R.values(q, scenario="open-50", target="direct")
        gv = R.values(q, scenario="open-50", target="gateway")
        v = verdict(None if a_gw is None else a_gw <= goal)
        if a_gw is not None and a_gw <= goal and dv and gv and (max(dv) - min(dv)) > goal:
            v = ("**not resolved**: the harness's own noise is larger than the goal (over the repetitions, "
                 f"direct's {name} ranges {f(min(dv), 0)}–{f(max(dv), 0)} µs, the gateway's "
                 f"{f(min(gv), 0)}–{f(max(gv), 0)} µs)")
        S.append(f"| added latency at 50% of saturation, open loop, {name} | **{f(a_gw, 0)} µs** "
                 f"(gateway {f(added[q][2], 0)} − direct {f(added[q][3], 0)}; the floor proxy adds {f(added[q][1], 0)}) | ≤ {goal} µs | "
                 f"{v} |")
    S.append(f"| `tools/list` over 10,000 tools | **{f(l10k_cpu, 0)} µs** gateway CPU per list; "
             f"{f(l10k_p50, 0)} µs p50 latency (1 connection; includes moving the {f(l10k_bytes, 0)}-byte body and the "
             f"load generator's JSON parse; direct to the fixture {f(l10k_dir, 0)} µs) | ≤ 50 µs | "
             f"{verdict(None if l10k_cpu is None else l10k_cpu <= 50)} (CPU), "
             f"{verdict(None if l10k_p50 is None else l10k_p50 <= 50)} (latency) |")
    S.append(f"| 100,000 idle sessions | **{f(rss100_mib, 0)} MiB** RSS (sessions without open connections)"
             + (f"; ≈ {f(conn_extra, 0)} MiB extrapolated if each also held an idle connection" if conn_extra else "")
             + f" | ≤ 1024 MiB | {verdict(None if rss100_mib is None else rss100_mib <= 1024)}"
             + (f" (without connections); {verdict(conn_extra <= 1024)} (with)" if conn_extra else "") + " |")
    GEK = dict(scenario="core", target="gateway", driver="epoll", session_mode="per-client")
    pr_ue = paired(R, "calls_per_s", GWK, GEK)
    pr_uec = paired(R, "cpu_us_gateway", GEK, GWK)
    ue = statistics.median(pr_ue) if pr_ue else ratio(gw_cps, gwe_cps)
    S.append(f"| io_uring vs epoll calls/s (gateway, 1 worker pinned) | **{f(ue, 2)}×** "
             f"(paired{prange(pr_ue)}; medians {f(gw_cps, 0)} vs {f(gwe_cps, 0)}); CPU/call epoll÷uring "
             f"{f(statistics.median(pr_uec) if pr_uec else None, 2)}× | ≥ 1.15× | "
             f"{verdict(None if ue is None else ue >= 1.15)} |")
    def cost_row(question, on, off, limit):
        """A 'CPU per call with X on vs off' row: the median of paired repetitions."""
        pr = paired(R, "cpu_us_gateway", on, off)
        m = statistics.median(pr) if pr else None
        goal = f"≤ {limit:.2f}× | {verdict(None if m is None else m <= limit)}" if limit else "(reported) | -"
        S.append(f"| CPU per call with {question} | **{f(m, 3)}×** "
                 f"(paired{prange(pr)}; medians {f(R.med('cpu_us_gateway', **on), 1)} vs "
                 f"{f(R.med('cpu_us_gateway', **off), 1)} µs/call) | {goal} |")
    GPK = dict(scenario="core", target="gateway", driver="uring", session_mode="per-client")
    cost_row("per-call metrics and the audit log on vs both off",
             dict(scenario="core", target="gateway-obs-full"),
             dict(scenario="core", target="gateway-obs-off"), 1.05)
    cost_row("auth on (API key, role check, per-principal rate limit) vs off",
             dict(scenario="core", target="gateway-auth"), GPK, None)
    cost_row("screening on (arguments and result, secrets + PII + injection) vs off",
             dict(scenario="core", target="gateway-guard"), GPK, 1.15)
    wr = ratio(w2, w1)
    S.append(f"| 2 workers vs 1 (calls/s, unpinned) | **{f(wr, 2)}×** ({f(w2, 0)} vs {f(w1, 0)}); "
             f"floor 2 vs 1 thread {f(ratio(fw2, fw1), 2)}× | ≥ 1.8× | {verdict(None if wr is None else wr >= 1.8)} "
             f"(not measurable on 2 cores: load + fixture need about half the machine) |")
    S.append("")

    # peers ratios
    prow = {}
    for r in raw:
        if r["scenario"].startswith("peers"):
            prow[(r["scenario"], r["target"])] = r
    if prow:
        S.append("## Peers (same run, same load: 4 connections, closed loop, 1 KiB)\n")
        S.append("| comparison | mcpgw calls/s | peer calls/s | throughput ratio | p50 µs (mcpgw / peer) | CPU µs/call, process tree (mcpgw / peer) | fixture CPU µs/call (mcpgw / peer) |")
        S.append("|---|---|---|---|---|---|---|")
        for scen, ref, peer in (("peers-http", "mcpgw", "contextforge"),
                                ("peers-stdio", "mcpgw", "mcp-proxy"),
                                ("peers-stdio", "mcpgw", "supergateway")):
            m = prow.get((scen, ref))
            peer_rows = [r for (s, t), r in prow.items() if s == scen and t == peer]
            # contextforge has two rows (stateless, stateful) under one target: take them from raw
            if peer == "contextforge":
                peer_rows = [r for r in raw if r["scenario"] == scen and r["target"] == peer]
            for p in peer_rows:
                label = f"{peer} ({p['session_mode']})" if peer == "contextforge" else peer
                upstream = "fast HTTP fixture" if scen == "peers-http" else "stdio `mcpgw demo-server`"
                S.append(f"| mcpgw vs {label}, {upstream} | {f(num(m and m.get('calls_per_s')), 0)} | "
                         f"{f(num(p.get('calls_per_s')), 1)} | **{f(ratio(num(m and m.get('calls_per_s')), num(p.get('calls_per_s'))), 0)}×** | "
                         f"{m and m.get('p50_us')} / {p.get('p50_us')} | "
                         f"{m and m.get('tree_cpu_us_per_call')} / {p.get('tree_cpu_us_per_call')} | "
                         + (f"{m and m.get('cpu_us_fixture')} / {p.get('cpu_us_fixture')} |" if scen == "peers-http"
                            else "- (stdio child is in the tree) |"))
        d = prow.get(("peers-http", "direct"))
        if d:
            S.append(f"\nDirect to the fixture at the same load: {f(num(d.get('calls_per_s')), 0)} calls/s, p50 {d.get('p50_us')} µs.")
        failed = [p for p in peers if p[1] != "ok"]
        for p in failed:
            S.append(f"\n**{p[0]}: {p[1]}** — {p[2]}")
        S.append("")

    # ---------------- detail tables
    def proxy_cell(kw, t):
        if t == "direct":
            return "-"
        cell = f(R.med("cpu_us_gateway", **kw), 2)
        u, sy = R.med("cpu_us_gateway_user", **kw), R.med("cpu_us_gateway_sys", **kw)
        if u is not None and sy is not None:
            cell += f" ({f(u, 1)} + {f(sy, 1)})"
        return cell

    S.append("## Core: 1 KiB arguments and result, closed loop, pinned (median of repetitions)\n")
    S.append("| target | driver | session | calls/s | p50 µs | p99 µs | p99.9 µs | CPU µs/call: proxy (user + sys) | fixture | load | calls/s spread |")
    S.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for t, d, s in (("direct", "uring", "-"), ("floor", "uring", "-"), ("floor", "epoll", "-"),
                    ("gateway", "uring", "per-client"), ("gateway", "epoll", "per-client"),
                    ("gateway", "uring", "shared")):
        kw = dict(scenario="core", target=t, driver=d, session_mode=s)
        S.append(f"| {t} | {d} | {s} | {f(R.med('calls_per_s', **kw), 0)} | {f(R.med('p50_us', **kw), 0)} | "
                 f"{f(R.med('p99_us', **kw), 0)} | {f(R.med('p99_9_us', **kw), 0)} | "
                 f"{proxy_cell(kw, t)} | {f(R.med('cpu_us_fixture', **kw), 2)} | "
                 f"{f(R.med('cpu_us_load', **kw), 2)} | {f(R.spread('calls_per_s', **kw), 0, '%')} |")
    GSK = dict(scenario="core", target="gateway", driver="uring", session_mode="shared")
    p_sc = paired(R, "calls_per_s", GSK, GWK)
    p_su = paired(R, "cpu_us_gateway", GSK, GWK)
    S.append(f"\nShared vs per-client upstream session (paired by repetition): calls/s "
             f"{f(statistics.median(p_sc) if p_sc else None, 2)}×{prange(p_sc)}, gateway CPU/call "
             f"{f(statistics.median(p_su) if p_su else None, 2)}×{prange(p_su)}. Gateway vs floor calls/s: "
             f"{f(ratio(gw_cps, fl_cps), 2)}× (io_uring), {f(ratio(gwe_cps, fle_cps), 2)}× (epoll); "
             f"CPU/call gateway÷floor on epoll {f(ratio(gwe_cpu, fle_cpu), 2)}×. Direct (no proxy) "
             f"{f(dir_cps, 0)} calls/s is bounded by CPU {env.get('load_cpu')}, which runs load and fixture.\n")

    S.append("## Payload sizes (closed loop, pinned, one run each; 1 KiB row from the core medians)\n")
    S.append("| payload = result | direct calls/s | floor calls/s | gateway calls/s | gateway÷floor CPU/call | CPU µs/call floor | gateway | p50 µs direct / floor / gateway |")
    S.append("|---|---|---|---|---|---|---|---|")
    for size in (128, 1024, 16384, 262144):
        scen = "core" if size == 1024 else f"payload-{size}"
        kw_d = dict(scenario=scen, target="direct")
        kw_f = dict(scenario=scen, target="floor", driver="uring")
        kw_g = dict(scenario=scen, target="gateway", driver="uring", session_mode="per-client")
        S.append(f"| {size:,} B | {f(R.med('calls_per_s', **kw_d), 0)} | {f(R.med('calls_per_s', **kw_f), 0)} | "
                 f"{f(R.med('calls_per_s', **kw_g), 0)} | "
                 f"{f(ratio(R.med('cpu_us_gateway', **kw_g), R.med('cpu_us_gateway', **kw_f)), 2)}× | "
                 f"{f(R.med('cpu_us_gateway', **kw_f), 2)} | {f(R.med('cpu_us_gateway', **kw_g), 2)} | "
                 f"{f(R.med('p50_us', **kw_d), 0)} / {f(R.med('p50_us', **kw_f), 0)} / {f(R.med('p50_us', **kw_g), 0)} |")
    S.append("")

    S.append(f"## Open loop at {env.get('open_rate', '?')} calls/s, latency from intended send time\n")
    S.append(f"50% of the gateway's saturation, its median closed-loop rate in `core`: "
             f"{env.get('gateway_saturation', '?')} calls/s (its core would be fully busy at "
             f"{env.get('gateway_cpu_bound_calls', '?')} calls/s by CPU per call). Fresh fixture, floor and gateway, "
             f"pinned as in `core`, scheduled `{env.get('open_sched', '?')}` (see README). {env.get('connections')} "
             "connections. CPU per call is higher than in closed loop for every process: each request "
             "wakes its receiver (no batching).\n")
    S.append("| target | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | added p50 / p99 / p99.9 vs direct | late sends (median) | CPU µs/call proxy / fixture / load | load+fixture core busy |")
    S.append("|---|---|---|---|---|---|---|---|---|---|")
    for t in ("direct", "floor", "gateway"):
        kw = dict(scenario="open-50", target=t)
        ad = "-" if t == "direct" else " / ".join(
            f(None if R.med(q, **kw) is None or R.med(q, scenario='open-50', target='direct') is None
              else R.med(q, **kw) - R.med(q, scenario="open-50", target="direct"), 0) for q in ("p50_us", "p99_us", "p99_9_us"))
        busy = []
        for r, j in runs:
            if r["scenario"] == "open-50" and r["target"] == t and j:
                busy.append(sum(c.get("core_percent", 0) for c in j["cpu"]
                                if c.get("name") == "self" or str(c.get("pid")) == (r["fix_pid"] or r["sut_pid"])))
        S.append(f"| {t} | {f(R.med('p50_us', **kw), 0)} | {f(R.med('p90_us', **kw), 0)} | {f(R.med('p99_us', **kw), 0)} | "
                 f"{f(R.med('p99_9_us', **kw), 0)} | {f(R.med('max_us', **kw), 0)} | {ad} | {f(R.med('late_sends', **kw), 0)} | "
                 f"{f(R.med('cpu_us_gateway', **kw), 1) if t != 'direct' else '-'} / {f(R.med('cpu_us_fixture', **kw), 1)} / "
                 f"{f(R.med('cpu_us_load', **kw), 1)} | {f(statistics.median(busy) if busy else None, 0, '%')} |")
    S.append("")

    S.append("## Workers (unpinned: gateway, load and fixture share both cores)\n")
    S.append("| target | workers | calls/s | CPU µs/call proxy | fixture | load | p50 µs |")
    S.append("|---|---|---|---|---|---|---|")
    for t in ("gateway", "floor"):
        for n in (1, 2):
            kw = dict(scenario="workers", target=t, workers=n)
            S.append(f"| {t} | {n} | {f(R.med('calls_per_s', **kw), 0)} | {f(R.med('cpu_us_gateway', **kw), 2)} | "
                     f"{f(R.med('cpu_us_fixture', **kw), 2)} | {f(R.med('cpu_us_load', **kw), 2)} | {f(R.med('p50_us', **kw), 0)} |")
    S.append(f"\nCPU per call with 2 workers vs 1: {f(ratio(w2c, w1c), 2)}× (1.00× would mean no cost from sharing "
             "sessions across cores).\n")

    S.append("## tools/list (1 connection, closed loop, one run each)\n")
    S.append("| tools | target | lists/s | p50 µs | p99 µs | CPU µs/list: gateway | fixture | load | response bytes |")
    S.append("|---|---|---|---|---|---|---|---|---|")
    for n in (10, 10000):
        for t in ("direct", "gateway"):
            kw = dict(scenario=f"tools-list-{n}", target=t)
            rows = R.sel(**kw)
            resp = None
            for r, j in runs:
                if r["scenario"] == f"tools-list-{n}" and r["target"] == t and j and j["ok"]:
                    resp = j["bytes_received"] / j["ok"]
            S.append(f"| {n:,} | {t} | {f(R.med('calls_per_s', **kw), 0)} | {f(R.med('p50_us', **kw), 0)} | "
                     f"{f(R.med('p99_us', **kw), 0)} | {f(R.med('cpu_us_gateway', **kw), 1) if t == 'gateway' else '-'} | "
                     f"{f(R.med('cpu_us_fixture', **kw), 1) if t == 'direct' else '-'} | {f(R.med('cpu_us_load', **kw), 1)} | "
                     f"{f(resp, 0)} |")
            del rows
    S.append("")

    S.append("## Idle sessions (gateway with 2 workers; RSS = VmRSS of the gateway)\n")
    S.append("| case | sessions | RSS before MiB | RSS after MiB | bytes per session | gateway fds after | setup s |")
    S.append("|---|---|---|---|---|---|---|")
    desc = {"10k": "initialize + initialized, connection reused, closed at end",
            "100k": "same, 100,000 sessions",
            "10k-called": "plus one tools/call each (per-client upstream session held)",
            "10k-conn": "each session keeps its own idle connection open"}
    for k in ("10k", "100k", "10k-called", "10k-conn"):
        d = idle.get(k)
        if not d:
            continue
        if "rss_after_kib" not in d:
            S.append(f"| {k}: {desc[k]} | - | - | - | - | - | {d.get('error', 'failed')} |")
            continue
        S.append(f"| {k}: {desc[k]} | {d['sessions_ok']:,} ({d['errors']} errors) | {d['rss_before_kib'] / 1024:,.1f} | "
                 f"{d['rss_after_kib'] / 1024:,.1f} | {d['bytes_per_session']:,.0f} | {d['server_fds_after']} | {d['setup_s']} |")
    S.append(f"\n{env.get('idle_note', '')}. The 100k-with-connections figure above is extrapolated from the "
             "10k-conn bytes per session.\n")

    if cg:
        S.append("## Instructions per call (valgrind callgrind; user space only)\n")
        S.append("| process | Ir per tools/call | calls | errors |")
        S.append("|---|---|---|---|")
        for k in ("gateway", "floor", "fixture"):
            d = cg.get(k)
            if d and "per_call" in d:
                S.append(f"| {k} | {f(d['per_call'], 0)} | {d['calls']:,} | {d['errors']} |")
            elif d:
                S.append(f"| {k} | {d.get('error')} | | |")
        S.append("\n`perf stat -e instructions`: " + env.get("perf_stat_instructions", "?") +
                 " on this VM (no PMU exposed); callgrind counts are the repeatable number. Top functions: "
                 "`profile-callgrind.txt`; time profile: `profile-perf.txt`.\n")

    # noise
    S.append("## Noise\n")
    sp = []
    for t, d, s in (("floor", "uring", "-"), ("gateway", "uring", "per-client"), ("gateway", "epoll", "per-client")):
        v = R.spread("calls_per_s", scenario="core", target=t, driver=d, session_mode=s)
        c = R.spread("cpu_us_gateway", scenario="core", target=t, driver=d, session_mode=s)
        sp.append(f"{t}/{d}: calls/s {f(v, 0, '%')}, CPU/call {f(c, 0, '%')}")
    oth = defaultdict(list)
    for r in raw:
        v = num(r.get("other_cpu_pct"))
        if v is not None:
            oth[r["scenario"]].append(v)
    if oth:
        S.append("CPU used by other processes during the runs (machine busy minus load generator, fixture "
                 "and process under test; percent of one core; median / max per scenario): " +
                 "; ".join(f"{k} {statistics.median(v):.0f}/{max(v):.0f}" for k, v in oth.items()) + ".\n")
    S.append("Spread (max−min)/median over the core repetitions: " + "; ".join(sp) +
             f". Before the start, other processes used {env.get('busy_before_start_pct', '?')}% of a core "
             f"(after waiting {env.get('quiet_wait_s', '?')} s for quiet). Load average at start "
             f"{env.get('loadavg_start')}, at end {env.get('loadavg_end')} "
             "(other work on the machine, such as a test suite, shows up there).\n")

    with open(os.path.join(OUT, "summary.md"), "w") as fh:
        fh.write("\n".join(S) + "\n")

    # ================================================================ README.md
    P = []
    P.append(f"# Performance run {env.get('date', '?')[:10]} on `{env.get('host')}`\n")
    P.append("Made by `perf/run.sh` (one command; see its header for the knobs). Results: `summary.md` "
             "(ratios first), `raw.csv` (one row per load run), `profile-perf.txt`, `profile-callgrind.txt`, "
             "`flamegraph.svg` (if inferno was available).\n")
    P.append(f"Command: `perf/run.sh` (here with PERF_DURATION={env.get('duration_s')} PERF_WARMUP={env.get('warmup_s')} "
             f"PERF_REPS={env.get('reps')} PERF_CONNECTIONS={env.get('connections')}, scheduling "
             f"`{env.get('sched')}`, open loop `{env.get('open_sched')}`; these are the defaults). Total runtime "
             f"{env.get('runtime_s')} s, build included.\n")
    P.append("## Machine\n")
    for k, label in (("cpu_model", "CPU"), ("cpus", "CPUs"), ("hypervisor", "Hypervisor"), ("caches", "Caches"),
                     ("mem_total", "Memory"), ("kernel", "Kernel"), ("rustc", "rustc"), ("python", "Python"),
                     ("node", "Node"), ("nofile", "RLIMIT_NOFILE"), ("valgrind", "valgrind"),
                     ("perf_stat_instructions", "perf stat -e instructions")):
        P.append(f"- {label}: {env.get(k, '?')}")
    P.append(f"- Commit: `{env.get('commit')}` ({env.get('commit_subject')}); uncommitted changes in src/, "
             f"loadtest/, Cargo.*: {env.get('dirty_files')} file(s) at build time")
    P.append(f"- Date: {env.get('date')}; runtime {env.get('runtime_s')} s; load average at start "
             f"{env.get('loadavg_start')}, at end {env.get('loadavg_end')}\n")
    P.append("## How processes were placed\n")
    P.append(f"- `taskset -c {env.get('load_cpu')}`: the load generator (`mcpgw-load`, 1 thread) and the fixture "
             f"(`mcpgw-fixture`, 1 thread, io_uring).")
    P.append(f"- `taskset -c {env.get('sut_cpu')}`: the system under test alone: `mcpgw` (1 worker), `mcpgw-floor` "
             "(1 thread), or a peer (with its stdio child, which inherits the mask).")
    P.append(f"- Every process started by the script runs under `{env.get('sched', 'nice -n -20')}`.")
    P.append("- Workers scenario and idle sessions: unpinned (`taskset -c 0-1`); the gateway has 1 or 2 workers.")
    P.append(f"- Runs: {env.get('duration_s')} s measured after {env.get('warmup_s')} s warm-up (open loop: "
             f"{int(env.get('duration_s', 4)) + 1} s); {env.get('connections')} connections, each its own MCP "
             f"session; core, open-loop and worker scenarios repeated {env.get('reps')} times, interleaved "
             "(medians in summary.md).")
    P.append("- CPU per call: `utime+stime` deltas of `/proc/PID/stat` over the measured window (`mcpgw-load --pid`), "
             "divided by completed calls. Peers: the whole process tree (proxy plus stdio children), sampled "
             "by the script around a run with no warm-up window (a separate 2 s warm-up run precedes it), so "
             "the 4 session setups are included.\n")
    P.append("## Scenarios\n")
    P.append("| scenario | what |")
    P.append("|---|---|")
    for s, d in (
        ("core", "direct (load → fixture), floor (load → mcpgw-floor → fixture), gateway (load → mcpgw → fixture); "
                 "floor and gateway on io_uring and epoll; gateway with per-client and shared upstream session; "
                 "closed loop, 1 KiB `text` argument and 1 KiB result"),
        ("payload-N", "the same direct/floor/gateway(io_uring, per-client) at N = 128 B, 16 KiB, 256 KiB argument and result"),
        ("open-50", "open loop (constant rate, coordinated-omission corrected) at 50% of the gateway's saturation "
                    "(its median closed-loop calls/s in `core`); direct, floor, gateway at the same rate, on "
                    "fresh servers run SCHED_FIFO (`PERF_SCHED_OPEN`, default fifo) so that other work on the "
                    "machine does not delay wake-ups; at 50% load that leaves half of each CPU to other work"),
        ("profile", "closed-loop run during which `perf record` samples the gateway (profile-perf.txt)"),
        ("workers", "gateway 1 vs 2 workers and floor 1 vs 2 threads, unpinned"),
        ("tools-list-N", "`tools/list` only, 1 connection, fixture with N tools; gateway with page_size 20000 "
                         "(all tools on one page); the fixture on the gateway's core (since 2026-12-07, "
                         "before: on the load generator's)"),
        ("idle sessions", "`perf/idle_sessions.py`: 10k and 100k sessions (initialize + notifications/initialized) "
                          "over reused keep-alive connections, then idle; 10k with one call each; 10k each "
                          "holding an open connection. RSS from /proc/PID/status VmRSS before/after"),
        ("callgrind", "gateway, floor and fixture under `valgrind --tool=callgrind`: counters zeroed after 2,000 "
                      "calls, then 10,000 calls (4 connections), instructions per call"),
        ("peers-stdio", "`mcpgw`, `mcp-proxy`, `supergateway` each fronting the stdio server `mcpgw demo-server` "
                        "(tool `echo`, argument `text`, 1 KiB); 4 connections"),
        ("peers-http", "direct, `mcpgw` and ContextForge (stateless and stateful) fronting the fast fixture; 4 connections"),
    ):
        P.append(f"| {s} | {d} |")
    P.append("")
    P.append("## Peers: versions, settings, status\n")
    for k in ("peer_contextforge", "peer_contextforge_mcp_sdk", "peer_mcp_proxy", "peer_mcp_proxy_mcp_sdk",
              "peer_supergateway"):
        if k in env:
            P.append(f"- {k.replace('peer_', '').replace('_', ' ')}: {env[k] or 'not installed'}")
    if "peer_contextforge_env" in env:
        P.append(f"- ContextForge environment: `{env['peer_contextforge_env']}`, plus `USE_STATEFUL_SESSIONS` "
                 "true/false and `DATABASE_URL` (SQLite in the scratch dir). Auth is off for the benchmark: the "
                 "load generator sends no token; the fixture is registered through the (open) admin API; rate "
                 "limiting is off.")
    for name, status, detail in peers:
        P.append(f"- **{name}**: {status}. {detail}")
    P.append("")
    P.append("## raw.csv columns\n")
    P.append("`cpu_us_gateway` is the process under test (mcpgw, mcpgw-floor or the peer's main process), "
             "split into `_user` and `_sys` by its utime/stime ratio over the whole invocation; "
             "`cpu_us_fixture` the fixture; `cpu_us_load` the load generator; `tree_cpu_us_per_call` the peer "
             "rows' whole process tree. Latencies are µs from the load generator (open loop: from the intended "
             "send time). `errors` > 0 means the run had errors (`errors_by_kind` says which). "
             "`other_cpu_pct`: CPU used by other processes during the run (machine busy from /proc/stat over "
             "the whole invocation minus ours over the measured window; percent of one core; a noise "
             "indicator, not exact).\n")
    P.append("## Phases (seconds from start)\n")
    ph = read_tsv(os.path.join(W, "phases.tsv"))
    P.append(", ".join(f"{p[0]} @{p[1]}" for p in ph) + "\n")
    with open(os.path.join(OUT, "README.md"), "w") as fh:
        fh.write("\n".join(P) + "\n")


if __name__ == "__main__":
    main()
