//! Rendering facts and plan: text for operators (`strata compat-check`), JSON for machines (the
//! schema is documented in SCHEMA.md and versioned by [`REPORT_SCHEMA_VERSION`]).

use std::fmt::Write;

use serde_json::{json, Value};

use crate::facts::Facts;
use crate::features::{FEATURES, PERF_EVENT_REQUIREMENTS};
use crate::plan::{Plan, SyscallHooks};
use crate::probe::Probe;

/// Version of the JSON report layout (SCHEMA.md). Independent of the facts' own version.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// The capabilities worth showing: the ones some tier needs.
const RELEVANT_CAPABILITIES: &[&str] =
    &["CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RESOURCE"];

pub fn render_text(facts: &Facts, plan: &Plan) -> String {
    let mut out = String::new();
    let k = &facts.kernel;
    let distro = facts.distro.pretty_name.as_deref().or(facts.distro.id.as_deref()).unwrap_or("unknown distro");
    let _ = writeln!(out, "kernel   {} ({}) on {distro}", or_dash(&k.release), or_dash(&k.arch));
    let _ = writeln!(
        out,
        "config   {}",
        facts.config.source.as_deref().unwrap_or("not readable (/proc/config.gz, /boot/config-<release>)")
    );
    if let Some(source) = &facts.source {
        let _ = writeln!(out, "facts    {source}");
    }

    let _ = writeln!(out, "\nfeatures (kernel version that introduced each; the probe decides, not the version)");
    for feature in FEATURES {
        let probe = (feature.probe)(facts);
        let detail = match probe {
            Probe::Supported => String::new(),
            other => format!("  {}", other.reason()),
        };
        let _ =
            writeln!(out, "  {} {:<40} {:>6}{detail}", mark(probe), feature.description, format!("{}", feature.since));
    }
    if let Some(size) = facts.btf.size_bytes {
        let _ = writeln!(out, "  (kernel BTF: {} bytes at {})", size, facts.btf.path);
    }

    let _ = writeln!(
        out,
        "\nperf-event tier's own needs (the kernel version that brought each; what the tier does without it)"
    );
    for r in PERF_EVENT_REQUIREMENTS {
        let probe = (r.probe)(facts);
        let detail = match probe {
            Probe::Supported => String::new(),
            other => format!("  {}", other.reason()),
        };
        let _ = writeln!(out, "  {} {:<56} {:>6}{detail}", mark(probe), r.description, format!("{}", r.since));
        let without = match probe {
            Probe::Supported => "without it",
            Probe::Unsupported { .. } => "in use instead",
            Probe::Unknown { .. } => "if missing",
        };
        let _ = writeln!(out, "      {without}: {}", r.fallback);
    }

    let _ = writeln!(out, "\nenvironment");
    let t = &facts.tracing;
    let _ = writeln!(out, "  tracefs                    {}", t.tracefs.as_deref().unwrap_or("not mounted"));
    let present = t.tracepoints.iter().filter(|tp| tp.present == Some(true)).count();
    let missing: Vec<String> = t
        .tracepoints
        .iter()
        .filter(|tp| tp.present == Some(false))
        .map(|tp| format!("{}:{}", tp.category, tp.name))
        .collect();
    let unknown = t.tracepoints.iter().filter(|tp| tp.present.is_none()).count();
    let mut tp_line = format!("{present}/{} present", t.tracepoints.len());
    if !missing.is_empty() {
        let _ = write!(tp_line, ", missing: {}", missing.join(", "));
    }
    if unknown > 0 {
        let _ = write!(tp_line, ", {unknown} not checked");
    }
    let _ = writeln!(out, "  required tracepoints       {tp_line}");
    let caps = match &facts.security.capabilities {
        Some(c) => {
            let held: Vec<&str> = RELEVANT_CAPABILITIES.iter().copied().filter(|n| c.has(n)).collect();
            if held.is_empty() {
                format!("none of {} (CapEff {})", RELEVANT_CAPABILITIES.join(", "), c.effective)
            } else {
                format!("{} (CapEff {})", held.join(" "), c.effective)
            }
        }
        None => "unknown".into(),
    };
    let _ = writeln!(out, "  capabilities               {caps}");
    let _ =
        writeln!(out, "  lockdown                   {}", facts.security.lockdown.as_deref().unwrap_or("not readable"));
    let _ = writeln!(out, "  unprivileged_bpf_disabled  {}", opt(facts.security.unprivileged_bpf_disabled));
    let _ = writeln!(out, "  perf_event_paranoid        {}", opt(t.perf_event_paranoid));
    let _ = writeln!(out, "  modules_disabled           {}", opt(facts.modules.modules_disabled));
    let _ = writeln!(
        out,
        "  kernel headers             {}",
        facts.toolchain.kernel_headers.as_deref().unwrap_or("not found")
    );
    let _ = writeln!(out, "  clang                      {}", facts.toolchain.clang.as_deref().unwrap_or("not found"));
    let _ = writeln!(
        out,
        "  gcc, make (kmod)           {}, {}",
        facts.toolchain.gcc.as_deref().unwrap_or("not found"),
        facts.toolchain.make.as_deref().unwrap_or("not found")
    );
    if let Some(h) = &facts.kmod_built {
        let what = match (&h.path, &h.error) {
            (Some(p), _) if h.available => format!("{p}{}", if h.cached { " (cached)" } else { "" }),
            (_, Some(e)) => format!("not built: {e}"),
            _ => "not built".into(),
        };
        let _ = writeln!(out, "  kernel module              {what}");
    }

    let _ = writeln!(
        out,
        "\ndecision: tier {} (fidelity {}, exit code {}), transport {}, BTF {}{}",
        plan.tier.name(),
        enum_name(&plan.fidelity()),
        plan.exit_code(),
        enum_name(&plan.transport),
        enum_name(&plan.btf_source),
        match plan.syscall_hooks {
            SyscallHooks::None => String::new(),
            hooks => format!(", syscall hooks {}", enum_name(&hooks)),
        },
    );
    for rejection in &plan.rejected {
        let _ = writeln!(out, "  {} rejected:", rejection.tier.name());
        for reason in &rejection.reasons {
            let _ = writeln!(out, "    - {reason}");
        }
    }
    if !plan.fallbacks.is_empty() {
        let names: Vec<&str> = plan.fallbacks.iter().map(|t| t.name()).collect();
        let _ = writeln!(out, "  if it fails to load: {}", names.join(", then "));
    }
    if let Some(h) = &facts.btf_archive_hint {
        let at = h.location.as_deref().unwrap_or("the archive");
        let _ = match (h.available, &h.path, &h.error) {
            (true, Some(p), _) => writeln!(
                out,
                "BTF from archive: {at}, {} {p}",
                if h.cached { "cached at" } else { "fetched and cached at" }
            ),
            (true, None, _) => writeln!(out, "BTF from archive: {at}"),
            (false, _, Some(e)) => writeln!(out, "BTF from archive: none usable ({e})"),
            (false, _, None) => writeln!(out, "BTF from archive: none for this kernel at {at}"),
        };
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "notes:");
        for note in &plan.notes {
            let _ = writeln!(out, "  - {note}");
        }
    }
    out
}

/// The JSON report (SCHEMA.md).
pub fn render_json(facts: &Facts, plan: &Plan) -> Value {
    json!({
        "schema_version": REPORT_SCHEMA_VERSION,
        "tier": plan.tier,
        "transport": plan.transport,
        "syscall_hooks": plan.syscall_hooks,
        "btf_source": plan.btf_source,
        "fidelity": plan.fidelity(),
        "exit_code": plan.exit_code(),
        "rejected": plan.rejected,
        "fallbacks": plan.fallbacks,
        "btf_archive": facts.btf_archive_hint,
        "notes": plan.notes,
        "features": FEATURES.iter().map(|f| json!({
            "key": f.key,
            "description": f.description,
            "since": f.since.to_string(),
            "probe": (f.probe)(facts),
        })).collect::<Vec<_>>(),
        "perf_event_requirements": PERF_EVENT_REQUIREMENTS.iter().map(|r| {
            let probe = (r.probe)(facts);
            json!({
                "key": r.key,
                "description": r.description,
                "since": r.since.to_string(),
                "probe": probe,
                "fallback": r.fallback,
                "fallback_in_use": probe.is_unsupported(),
            })
        }).collect::<Vec<_>>(),
        "facts": facts,
    })
}

fn mark(probe: &Probe) -> char {
    match probe {
        Probe::Supported => '✓',
        Probe::Unsupported { .. } => '✗',
        Probe::Unknown { .. } => '?',
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "not readable".into())
}

/// The serde name of a unit enum variant ("ring-buffer"), so text and JSON say the same words.
fn enum_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => "?".into(),
    }
}
