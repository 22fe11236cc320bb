#!/usr/bin/env python3
"""Check that every PromQL expression in a Grafana dashboard parses and evaluates.

Usage:
    python3 deploy/grafana/check_exprs.py [dashboard.json ...] [--url http://127.0.0.1:9090]

Collects every panel target `expr` (rows included) and every template variable query
(`label_values(<selector>, label)` -> the selector, `query_result(<expr>)` -> the expr), replaces
Grafana's variables ($__rate_interval -> 1m, $__range -> 1h, $__interval -> 1m, $service_name and
the other dashboard variables -> .*), and runs each as an instant query against a Prometheus.

Without --url it starts a throwaway `prometheus` (empty configuration, temporary storage, a free
port on 127.0.0.1), and stops that process when done. Exit code 0 only when every expression
returns status "success".
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__interval_ms": "60000",
}


def collect(dashboard):
    """Yield (where, expr) for every expression in the dashboard."""
    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield f'panel {p.get("id")} "{p.get("title")}" target {t.get("refId")}', t["expr"]
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", q, re.S)
        if m:
            q = m.group(1)
        else:
            m = re.fullmatch(r"\s*query_result\((.*)\)\s*", q, re.S)
            if m:
                q = m.group(1)
            elif re.fullmatch(r"\s*(label_names|metrics)\(.*\)\s*", q, re.S):
                continue
        yield f'variable ${v["name"]}', q


def substitute(expr, variables):
    def rep(m):
        name = m.group(1) or m.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in variables:
            return ".*"
        return m.group(0)  # e.g. $1 in label_replace: leave alone

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)", rep, expr)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prometheus():
    exe = shutil.which("prometheus")
    if not exe:
        sys.exit("prometheus not found (Debian: apt-get install prometheus), or pass --url")
    tmp = tempfile.mkdtemp(prefix="strata-exprcheck-")
    cfg = os.path.join(tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global: {}\n")
    port = free_port()
    proc = subprocess.Popen(
        [exe, f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/data",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "prometheus.log"), "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/-/ready", timeout=1)
            return proc, tmp, url
        except Exception:
            if proc.poll() is not None:
                sys.exit(open(os.path.join(tmp, "prometheus.log")).read())
            time.sleep(0.2)
    proc.kill()
    sys.exit("prometheus did not become ready")


def query(url, expr):
    data = urllib.parse.urlencode({"query": expr}).encode()
    try:
        with urllib.request.urlopen(url + "/api/v1/query", data=data, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dashboards", nargs="*", default=[os.path.join(HERE, "strata-red.json")])
    ap.add_argument("--url", help="Prometheus base URL; default: start a throwaway one")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    proc = tmp = None
    url = args.url
    if not url:
        proc, tmp, url = start_prometheus()
    total = failed = 0
    try:
        for path in args.dashboards:
            with open(path) as f:
                dash = json.load(f)
            variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
            for where, expr in collect(dash):
                total += 1
                q = substitute(expr, variables)
                res = query(url, q)
                ok = res.get("status") == "success"
                if not ok:
                    failed += 1
                    print(f"FAIL {path}: {where}\n  {res.get('errorType')}: {res.get('error')}\n  {q}\n")
                elif args.verbose:
                    n = len(res["data"]["result"]) if isinstance(res["data"]["result"], list) else 1
                    print(f"ok   {where}: {n} series")
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=10)
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{total} expressions, {total - failed} success, {failed} failed")
    sys.exit(1 if failed or not total else 0)


if __name__ == "__main__":
    main()
