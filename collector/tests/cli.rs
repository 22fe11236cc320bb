//! The command line itself (no root needed). Being an integration test of the `collector` package,
//! it also makes `cargo test --workspace` build the `strata` binary the end-to-end tests run.

use std::process::Command;

#[test]
fn help_lists_the_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_strata")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("run"), "{text}");
}

#[test]
fn run_help_documents_the_outputs() {
    let out = Command::new(env!("CARGO_BIN_EXE_strata")).args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for word in ["--output", "jsonl", "text", "--capture-bytes", "--duration"] {
        assert!(text.contains(word), "run --help lacks {word}: {text}");
    }
}
