//! Gathers this node's facts and prints the report: `cargo run -p kernel-compat --example gather
//! [-- --json | --facts]`. The CLI's `strata compat-check` is the real front end; this example
//! is how fixture files (`--facts`) are produced on machines without the agent.

use kernel_compat::{gather, plan, report, BuiltTiers, GatherOptions};

fn main() {
    let tracepoints = [
        ("syscalls", "sys_enter_read"),
        ("syscalls", "sys_exit_read"),
        ("syscalls", "sys_enter_write"),
        ("syscalls", "sys_exit_write"),
        ("syscalls", "sys_enter_connect"),
        ("syscalls", "sys_exit_connect"),
        ("syscalls", "sys_exit_accept4"),
        ("syscalls", "sys_enter_close"),
        ("sock", "inet_sock_set_state"),
    ];
    let facts = gather(&GatherOptions::with_tracepoints(tracepoints));
    let plan = plan(&facts, &BuiltTiers::current());
    match std::env::args().nth(1).as_deref() {
        Some("--facts") => println!("{}", serde_json::to_string_pretty(&facts).unwrap()),
        Some("--json") => println!("{}", serde_json::to_string_pretty(&report::render_json(&facts, &plan)).unwrap()),
        _ => print!("{}", report::render_text(&facts, &plan)),
    }
    std::process::exit(plan.exit_code().into());
}
