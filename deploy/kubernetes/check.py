#!/usr/bin/env python3
"""Renders every overlay under deploy/kubernetes/overlays with `kubectl kustomize` (Debian's
kubectl 1.20, whose kustomize is v2.0.3) and checks the result offline:

1. every object against the Kubernetes 1.33 OpenAPI schemas, strictly (unknown fields fail), with
   kubernetes-validate (PyPI; it ships the schemas);
2. the ServiceMonitor against the Prometheus Operator's monitoring.coreos.com/v1 schema, with the
   npm package @kubernetes-models/prometheus-operator (generated from the operator's API types);
3. what each tier must hold: the least privileges its kernels need (deploy/README.md), the host
   namespaces and mounts, the probes, the init container, the Service and ServiceMonitor wiring.

Usage: check.py --kubectl KUBECTL --models DIR [--kubernetes-version 1.33.0] [--out DIR]
Run it with the Python of the venv that has kubernetes-validate. Fails loudly when a tool is
missing; .ci/run installs them.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    import yaml
    import kubernetes_validate
except ImportError as e:
    sys.exit(f"check.py: {e}: run it with the Python of a venv where `pip install kubernetes-validate==1.37.0` was done (.ci/run makes one)")

HERE = os.path.dirname(os.path.abspath(__file__))

# What each overlay's agent container adds (all others dropped), and its init container's.
PRIVILEGES = {
    "core": (["BPF", "PERFMON", "NET_ADMIN"], ["BPF", "PERFMON"]),
    "core-5.8": (["BPF", "PERFMON", "SYS_RESOURCE", "NET_ADMIN"], ["BPF", "PERFMON", "SYS_RESOURCE"]),
    "archived-btf": (["SYS_ADMIN", "SYS_RESOURCE", "NET_ADMIN"], ["SYS_ADMIN", "SYS_RESOURCE"]),
    "host-compiled": (["SYS_ADMIN", "SYS_RESOURCE", "NET_ADMIN"], ["SYS_ADMIN", "SYS_RESOURCE"]),
    "perf-event": (["SYS_ADMIN", "SYS_PTRACE", "NET_ADMIN"], ["SYS_ADMIN"]),
    "kmod": (["SYS_MODULE", "SYS_ADMIN", "MKNOD", "SYS_RESOURCE", "NET_ADMIN"], ["SYS_ADMIN"]),
}
NODE_TOOLS = {"host-compiled", "kmod"}
OLD_KERNELS = {"archived-btf", "host-compiled", "perf-event", "kmod"}
DEBUGFS = {"perf-event", "kmod"}
READ_ONLY = ["/sys/fs/cgroup", "/var/log/pods", "/var/log/containers", "/lib/modules", "/usr/src"]


class Failures:
    def __init__(self):
        self.messages = []

    def check(self, ok, message):
        if not ok:
            self.messages.append(message)


def render(kubectl, overlay):
    out = subprocess.run([kubectl, "kustomize", overlay], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{kubectl} kustomize {overlay} failed:\n{out.stderr}")
    return out.stdout, [d for d in yaml.safe_load_all(out.stdout) if d]


def check_tier(name, docs, f):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    for kind in ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Service", "ServiceMonitor"]:
        f.check(len(by_kind.get(kind, [])) == 1, f"{name}: one {kind}, found {len(by_kind.get(kind, []))}")
    ds = by_kind["DaemonSet"][0]
    pod = ds["spec"]["template"]["spec"]
    f.check(pod.get("hostPID") is True, f"{name}: hostPID")
    f.check(pod.get("hostNetwork") is True, f"{name}: hostNetwork (the process connector)")
    f.check({"operator": "Exists"} in pod.get("tolerations", []), f"{name}: tolerates every taint")
    f.check(pod.get("serviceAccountName") == "strata", f"{name}: service account")
    volumes = {v["name"]: v for v in pod["volumes"]}
    agent = next(c for c in pod["containers"] if c["name"] == "strata")
    init = next((c for c in pod.get("initContainers", []) if c["name"] == "compat-check"), None)
    f.check(init is not None, f"{name}: the compat-check init container")
    if init:
        script = " ".join(init.get("command", []) + init.get("args", []))
        f.check("strata compat-check" in script and "strata btf fetch" in script, f"{name}: init runs compat-check and fetches BTF")
    want_main, want_init = PRIVILEGES[name]
    for c, want in [(agent, want_main), (init, want_init)]:
        if not c:
            continue
        sc = c.get("securityContext", {})
        caps = sc.get("capabilities", {})
        f.check(caps.get("drop") == ["ALL"], f"{name}/{c['name']}: drops every capability first")
        f.check(sorted(caps.get("add", [])) == sorted(want), f"{name}/{c['name']}: adds {sorted(caps.get('add', []))}, want {sorted(want)}")
        f.check(sc.get("readOnlyRootFilesystem") is True, f"{name}/{c['name']}: read-only root filesystem")
        f.check(sc.get("privileged", False) == (name == "kmod" and c is agent), f"{name}/{c['name']}: privileged only for kmod's agent")
        image = c["image"]
        tools = "strata-node-tools:" in image
        f.check(tools == (name in NODE_TOOLS), f"{name}/{c['name']}: image {image}")
    # The CAP_SYS_MODULE / CAP_SYS_PTRACE / CAP_SYS_ADMIN rules of deploy/README.md.
    f.check(("SYS_MODULE" in want_main) == (name == "kmod"), f"{name}: CAP_SYS_MODULE only with kmod")
    f.check(("SYS_PTRACE" in want_main) == (name == "perf-event"), f"{name}: CAP_SYS_PTRACE only with perf-event")
    f.check(("SYS_ADMIN" in want_main) == (name in OLD_KERNELS), f"{name}: CAP_SYS_ADMIN only before CAP_BPF (5.8)")
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    for path in READ_ONLY:
        f.check(mounts.get(path, {}).get("readOnly") is True, f"{name}: {path} mounted read-only")
        host = volumes.get(mounts.get(path, {}).get("name"), {}).get("hostPath", {}).get("path")
        f.check(host == path, f"{name}: {path} is the host's ({host})")
    tracing = "/sys/kernel/debug" if name in DEBUGFS else "/sys/kernel/tracing"
    f.check(mounts.get(tracing, {}).get("readOnly") is True, f"{name}: {tracing} mounted read-only")
    f.check(("/sys/kernel/btf" in mounts) == (name not in OLD_KERNELS), f"{name}: /sys/kernel/btf only where kernels have it")
    if "/sys/kernel/btf" in mounts:
        f.check(mounts["/sys/kernel/btf"].get("readOnly") is True, f"{name}: /sys/kernel/btf read-only")
    # What the agent writes besides the cache, with a read-only root: the compilers' /tmp where it
    # builds (a BTF, a module), the module's device node under /run/strata.
    scratch = {"/tmp"} if name in NODE_TOOLS else set()
    if name == "kmod":
        scratch.add("/run/strata")
    for path in sorted(scratch):
        f.check(path in mounts and "emptyDir" in volumes.get(mounts[path]["name"], {}) and not mounts[path].get("readOnly"), f"{name}: a writable emptyDir at {path}")
    cache = mounts.get("/var/cache/strata")
    f.check(cache is not None and not cache.get("readOnly") and volumes[cache["name"]]["hostPath"]["path"] == "/var/cache/strata", f"{name}: the host's cache, writable")
    f.check(agent.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", f"{name}: liveness on /healthz")
    f.check(agent.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", f"{name}: readiness on /readyz")
    res = agent.get("resources", {})
    f.check("requests" in res and "limits" in res, f"{name}: requests and limits")
    env = {e["name"]: e for e in agent.get("env", [])}
    f.check(env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName", f"{name}: NODE_NAME from the downward API")
    f.check(any(e.get("configMapRef", {}).get("name") == "strata-otel" for e in agent.get("envFrom", [])), f"{name}: OTEL_* from the strata-otel ConfigMap")
    f.check("--prometheus-listen=$(POD_IP):9464" in agent["args"], f"{name}: metrics on the node's address")
    # RBAC: read-only, this node's pods and the owners above them.
    role = by_kind["ClusterRole"][0]
    verbs = {v for r in role["rules"] for v in r["verbs"]}
    f.check(verbs <= {"get", "list", "watch"}, f"{name}: a read-only ClusterRole ({verbs})")
    resources = {res for r in role["rules"] for res in r["resources"]}
    f.check(resources == {"pods", "replicasets", "jobs"}, f"{name}: ClusterRole resources {resources}")
    # Service → pods, ServiceMonitor → Service.
    svc = by_kind["Service"][0]
    labels = ds["spec"]["template"]["metadata"]["labels"]
    f.check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), f"{name}: the Service selects the agents")
    f.check(any(p.get("name") == "metrics" and p.get("port") == 9464 for p in svc["spec"]["ports"]), f"{name}: the Service's metrics port")
    sm = by_kind["ServiceMonitor"][0]
    sel = sm["spec"]["selector"]["matchLabels"]
    f.check(all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items()), f"{name}: the ServiceMonitor selects the Service")
    f.check(sm["spec"]["endpoints"][0]["port"] == "metrics", f"{name}: the ServiceMonitor scrapes the metrics port")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kubectl", required=True)
    p.add_argument("--models", required=True, help="the npm prefix where @kubernetes-models/prometheus-operator is installed")
    p.add_argument("--kubernetes-version", default="1.33.0")
    p.add_argument("--out", help="keep the rendered overlays here")
    args = p.parse_args()
    if not os.access(args.kubectl, os.X_OK):
        sys.exit(f"check.py: no kubectl at {args.kubectl}: .ci/run extracts Debian's kubernetes-client there")
    sm_module = os.path.join(args.models, "node_modules/@kubernetes-models/prometheus-operator")
    if not os.path.isdir(sm_module):
        sys.exit(f"check.py: {sm_module} missing: npm install --prefix {args.models} @kubernetes-models/prometheus-operator@6.0.0")
    out = args.out or tempfile.mkdtemp(prefix="strata-kustomize-")
    overlays = sorted(os.listdir(os.path.join(HERE, "overlays")))
    if sorted(overlays) != sorted(PRIVILEGES):
        sys.exit(f"check.py: overlays {overlays}, but privileges are known for {sorted(PRIVILEGES)}: add the new tier's here")
    f = Failures()
    monitors = []
    for name in overlays:
        text, docs = render(args.kubectl, os.path.join(HERE, "overlays", name))
        with open(os.path.join(out, f"{name}.yaml"), "w") as fh:
            fh.write(text)
        for d in docs:
            what = f"{name}: {d['kind']} {d['metadata'].get('name')}"
            if d["kind"] == "ServiceMonitor":
                monitors.append(json.dumps(d))
                continue
            try:
                kubernetes_validate.validate(d, args.kubernetes_version, strict=True)
            except Exception as e:  # ValidationError, SchemaNotFoundError, ...
                f.check(False, f"{what}: {getattr(e, 'message', str(e)).splitlines()[0]}")
        check_tier(name, docs, f)
        print(f"{name}: rendered ({len(docs)} objects), Kubernetes {args.kubernetes_version} schemas (strict), tier checks")
    node = subprocess.run(["node", os.path.join(HERE, "validate-servicemonitor.mjs"), args.models], input="\n".join(monitors), capture_output=True, text=True)
    f.check(node.returncode == 0, f"ServiceMonitor schema: {node.stdout}{node.stderr}")
    print(f"ServiceMonitor: {len(monitors)} validated against monitoring.coreos.com/v1 ({node.stdout.count('ok:')} ok)")
    if f.messages:
        print("FAILED:\n  " + "\n  ".join(f.messages), file=sys.stderr)
        sys.exit(1)
    print(f"{len(overlays)} overlays rendered and valid (rendered YAML in {out})")


if __name__ == "__main__":
    main()
