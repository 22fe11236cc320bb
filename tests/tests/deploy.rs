//! What ships to deploy strata, checked as far as this machine can: no container engine runs
//! here, so the Dockerfile is read (parse-dockerfile) rather than built; the Kubernetes manifests
//! are rendered by Debian's `kubectl kustomize` and validated offline against the Kubernetes and
//! Prometheus Operator schemas (deploy/kubernetes/check.py, tools installed by .ci/run).

use std::path::{Path, PathBuf};
use std::process::Command;

use parse_dockerfile::{Command as Cmd, Instruction, Source, Stage};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A shell-form command with its line continuations joined and its spaces collapsed.
fn shell(cmd: &Cmd<'_>) -> String {
    let text = match cmd {
        Cmd::Shell(s) => s.value.to_string(),
        Cmd::Exec(args) => args.value.iter().map(|a| a.value.to_string()).collect::<Vec<_>>().join(" "),
        other => panic!("a command form this test does not know: {other:?}"),
    };
    text.replace("\\\n", " ").split_whitespace().collect::<Vec<_>>().join(" ")
}

fn runs(stage: &Stage<'_, '_>) -> Vec<String> {
    stage
        .instructions
        .iter()
        .filter_map(|i| if let Instruction::Run(r) = i { Some(shell(&r.arguments)) } else { None })
        .collect()
}

fn exec_form(cmd: &Cmd<'_>) -> Vec<String> {
    match cmd {
        Cmd::Exec(args) => args.value.iter().map(|a| a.value.to_string()).collect(),
        other => panic!("exec form expected (signals reach strata only then): {other:?}"),
    }
}

/// The `[[bin]]` name of the collector: what `cargo build -p collector` produces.
fn binary_name() -> String {
    let manifest = std::fs::read_to_string(repo().join("collector/Cargo.toml")).unwrap();
    let bin = manifest.split("[[bin]]").nth(1).expect("collector has a [[bin]]");
    let line = bin.lines().find(|l| l.trim_start().starts_with("name")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

#[test]
fn the_dockerfile_builds_a_static_strata_and_copies_exactly_that_binary() {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let dockerfile = parse_dockerfile::parse(&text).expect("deploy/Dockerfile parses");
    let names: Vec<String> = dockerfile
        .stages()
        .map(|s| s.from.as_.as_ref().map(|(_, n)| n.value.to_string()).unwrap_or_default())
        .collect();
    assert_eq!(names, ["build", "runtime", "node-tools"], "the stages");

    // The build stage: a release build of the collector for the gnu target, glibc linked in.
    let build = dockerfile.stage("build").unwrap();
    assert!(build.from.image.value.starts_with("rust:"), "{}", build.from.image.value);
    let workdir = build
        .instructions
        .iter()
        .rev()
        .find_map(|i| if let Instruction::Workdir(w) = i { Some(w.arguments.value.to_string()) } else { None })
        .expect("the build stage has a WORKDIR");
    let env: Vec<String> = build
        .instructions
        .iter()
        .filter_map(|i| if let Instruction::Env(e) = i { Some(e.arguments.value.to_string()) } else { None })
        .collect();
    assert!(env.iter().any(|e| e.contains("RUSTFLAGS") && e.contains("+crt-static")), "static glibc: {env:?}");
    assert!(!env.iter().any(|e| e.contains("CARGO_TARGET_DIR")), "the target directory is the default one");
    let cargo = runs(&build).into_iter().find(|r| r.contains("cargo build")).expect("a cargo build");
    let words: Vec<&str> = cargo.split_whitespace().collect();
    let triple = words.windows(2).find(|w| w[0] == "--target").map(|w| w[1]).expect("an explicit --target");
    assert_eq!(triple, "x86_64-unknown-linux-gnu");
    assert!(words.contains(&"--release") && words.windows(2).any(|w| w == ["-p", "collector"]), "{cargo}");
    let built = format!("{}/target/{triple}/release/{}", workdir.trim_end_matches('/'), binary_name());
    assert!(cargo.contains("not a dynamic executable"), "the build checks the binary is static: {cargo}");

    // The runtime stage copies that very file and runs it.
    let runtime = dockerfile.stage("runtime").unwrap();
    let copies: Vec<(Option<String>, Vec<String>, String)> = runtime
        .instructions
        .iter()
        .filter_map(|i| match i {
            Instruction::Copy(c) => Some((
                c.options
                    .iter()
                    .find(|f| f.name.value == "from")
                    .and_then(|f| f.value.as_ref())
                    .map(|v| v.value.to_string()),
                c.src
                    .iter()
                    .filter_map(|s| if let Source::Path(p) = s { Some(p.value.to_string()) } else { None })
                    .collect(),
                c.dest.value.to_string(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let (from, src, dest) = &copies[0];
    assert_eq!(from.as_deref(), Some("build"));
    assert_eq!(src, std::slice::from_ref(&built), "the path the build stage produces");
    let entrypoint = runtime
        .instructions
        .iter()
        .find_map(|i| if let Instruction::Entrypoint(e) = i { Some(exec_form(&e.arguments)) } else { None })
        .expect("an ENTRYPOINT");
    assert_eq!(entrypoint, std::slice::from_ref(dest), "the entrypoint is the copied strata");
    assert!(dest.ends_with("/strata"));

    // The node-tools variant: the agent plus what the host-compiled and kmod tiers run.
    let tools = dockerfile.stage("node-tools").unwrap();
    assert_eq!(tools.from.image.value, "runtime", "built on the agent's image");
    let install = runs(&tools).join(" ");
    for package in ["clang", "llvm", "dwarves", "make", "gcc", "kmod", "libelf-dev"] {
        assert!(install.split_whitespace().any(|w| w == package), "node-tools installs {package}: {install}");
    }
    let tools_entry = tools.instructions.iter().find_map(|i| {
        if let Instruction::Entrypoint(e) = i {
            Some(exec_form(&e.arguments))
        } else {
            None
        }
    });
    assert!(
        tools_entry.as_ref().is_none_or(|e| *e == [dest.clone()]),
        "node-tools runs the same strata: {tools_entry:?}"
    );
}

/// Where .ci/run puts the tools (STRATA_CI_TOOLS overrides the directory).
fn tools_dir() -> PathBuf {
    std::env::var_os("STRATA_CI_TOOLS").map_or_else(|| PathBuf::from("/var/cache/strata-ci-tools"), PathBuf::from)
}

#[test]
fn every_overlay_renders_and_validates_offline() {
    let tools = tools_dir();
    let kubectl = tools.join("kubernetes-client/usr/bin/kubectl");
    let python = tools.join("kubernetes-validate-1.37.0/bin/python");
    let models = tools.join("prometheus-operator-models-6.0.0");
    for (path, what) in [
        (&kubectl, "Debian's kubectl (apt-get download kubernetes-client, extracted)"),
        (&python, "a venv with kubernetes-validate 1.37.0 from PyPI"),
        (
            &models.join("node_modules/@kubernetes-models/prometheus-operator"),
            "npm's @kubernetes-models/prometheus-operator 6.0.0",
        ),
    ] {
        assert!(path.exists(), "{} missing: {what}; .ci/run installs it", path.display());
    }
    strata_e2e::require_tool("node", "nodejs");
    let out = Command::new(&python)
        .arg(repo().join("deploy/kubernetes/check.py"))
        .arg("--kubectl")
        .arg(&kubectl)
        .arg("--models")
        .arg(&models)
        .output()
        .expect("run check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "deploy/kubernetes/check.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{stdout}");
    assert!(stdout.contains("6 overlays rendered and valid"), "{stdout}");
}
