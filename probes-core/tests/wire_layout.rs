//! `bpf/event.h` and `src/wire.rs` must describe the same bytes. This compiles a C program that
//! prints sizeof/offsetof of every field as a C compiler lays out event.h, and compares with Rust.

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use strata_event::wire::*;

macro_rules! rust_layout {
    ($($ty:ident => $cname:literal { $($field:ident),* }),* $(,)?) => {{
        let mut v: Vec<String> = vec![];
        $(
            v.push(format!("{} size {}", $cname, size_of::<$ty>()));
            $( v.push(format!("{} {} {}", $cname, stringify!($field), offset_of!($ty, $field))); )*
        )*
        v
    }};
}

fn c_program() -> String {
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n#include \"event.h\"\nint main(void) {\n",
    );
    let fields: &[(&str, &[&str])] = &[
        ("strata_config", &["capture_bytes", "self_tgid", "wakeup_bytes", "_pad"]),
        ("strata_lost_key", &["tgid", "slot"]),
        ("strata_endpoint", &["family", "port", "addr"]),
        ("strata_header", &["kind", "tgid", "tid", "fd", "sock_id", "ts_ns", "comm"]),
        ("strata_socket", &["protocol", "role", "_pad0", "local", "remote"]),
        ("strata_open_event", &["hdr", "sock", "syscall", "ret", "enter_ns"]),
        (
            "strata_data_event",
            &[
                "hdr",
                "sock",
                "enter_ns",
                "byte_count",
                "captured_len",
                "syscall",
                "direction",
                "flags",
                "_pad0",
                "_pad1",
            ],
        ),
        ("strata_close_event", &["hdr", "sock", "bytes_sent", "bytes_received", "first_seen_ns"]),
        ("strata_state_event", &["hdr", "sock", "old_state", "new_state"]),
    ];
    for (name, fs) in fields {
        c.push_str(&format!("printf(\"{name} size %zu\\n\", sizeof(struct {name}));\n"));
        for f in *fs {
            c.push_str(&format!("printf(\"{name} {f} %zu\\n\", offsetof(struct {name}, {f}));\n"));
        }
    }
    c.push_str(
        "printf(\"MAX_CAPTURE %d\\n\", STRATA_MAX_CAPTURE);\nprintf(\"COMM_LEN %d\\n\", STRATA_COMM_LEN);\n\
         printf(\"LOST_SLOTS %d\\n\", STRATA_LOST_SLOTS);\nreturn 0; }\n",
    );
    c
}

#[test]
fn event_h_and_wire_rs_agree_on_every_offset() {
    let bpf = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf");
    let dir = std::env::temp_dir().join(format!("strata-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("layout.c"), c_program()).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .arg("-I")
        .arg(&bpf)
        .arg(dir.join("layout.c"))
        .arg("-o")
        .arg(dir.join("layout"))
        .status()
        .unwrap_or_else(|e| panic!("a C compiler ({cc}) is needed to check event.h: {e}"));
    assert!(status.success(), "compiling the layout probe failed");
    let out = Command::new(dir.join("layout")).output().unwrap();
    let c_lines: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();

    let mut rust = rust_layout!(
        Config => "strata_config" { capture_bytes, self_tgid, wakeup_bytes, _pad },
        LostKey => "strata_lost_key" { tgid, slot },
        Endpoint => "strata_endpoint" { family, port, addr },
        Header => "strata_header" { kind, tgid, tid, fd, sock_id, ts_ns, comm },
        Socket => "strata_socket" { protocol, role, _pad0, local, remote },
        OpenEvent => "strata_open_event" { hdr, sock, syscall, ret, enter_ns },
        DataEvent => "strata_data_event" { hdr, sock, enter_ns, byte_count, captured_len, syscall, direction, flags, _pad0, _pad1 },
        CloseEvent => "strata_close_event" { hdr, sock, bytes_sent, bytes_received, first_seen_ns },
        StateEvent => "strata_state_event" { hdr, sock, old_state, new_state },
    );
    rust.push(format!("MAX_CAPTURE {MAX_CAPTURE}"));
    rust.push(format!("COMM_LEN {COMM_LEN}"));
    rust.push(format!("LOST_SLOTS {LOST_SLOTS}"));
    assert_eq!(c_lines, rust);
    std::fs::remove_dir_all(dir).unwrap();
}
