//! `manifest.toml`: kernels and scenarios. Pure parsing and validation.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "scenario", default)]
    pub scenarios: Vec<Scenario>,
    #[serde(rename = "kernel", default)]
    pub kernels: Vec<Kernel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// The tier the cell must report.
    pub expect_tier: String,
    /// `strata run --tier <this>`.
    #[serde(default)]
    pub force_tier: Option<String>,
    /// Mount an empty tmpfs over /sys/kernel/btf first.
    #[serde(default)]
    pub hide_btf: bool,
    /// A word the compat report must give (case-insensitive) as a reason it passed over
    /// `expect_reason_in`.
    #[serde(default)]
    pub expect_reason: Option<String>,
    /// The tier whose rejection must hold `expect_reason` (required with it).
    #[serde(default)]
    pub expect_reason_in: Option<String>,
    /// Serve the kernel's BTF archive in the guest (`good`), or a damaged copy of it (`damaged`:
    /// the entry cut short, as a broken download would be); compat-check and run are pointed at it.
    #[serde(default)]
    pub archive: Option<ArchiveState>,
    /// `strata run --transport <this>`.
    #[serde(default)]
    pub transport: Option<String>,
    /// The CI host generates the kernel's BTF from its Debian headers package (as a node's init
    /// container would), checks it against the kernel's own, and the guest's cache holds it.
    #[serde(default)]
    pub generated_btf: bool,
    /// A phrase `strata run`'s "capturing: tier ..." line must contain (e.g. `perf buffer`).
    #[serde(default)]
    pub expect_capturing: Option<String>,
    /// The CI host builds strata's kernel module against the kernel's build tree (its Debian
    /// headers and kbuild packages, or a built kernel's own tree), and the guest's cache holds it.
    /// The cell then also fails if the module is still loaded after strata stops, or the kernel
    /// logged an oops or a warning.
    #[serde(default)]
    pub kmod: bool,
    /// Instead, the guest's cache holds that module with its ELF header overwritten, under a checksum that matches (as
    /// a module damaged before it was cached would be): the kernel must refuse to load it.
    #[serde(default)]
    pub kmod_damaged: bool,
    /// The tier `strata run` must end up capturing with, where it differs from the plan's (a
    /// tier that fails to load hands over to the next).
    #[serde(default)]
    pub expect_run_tier: Option<String>,
    /// A phrase the `falling back` log line must hold (the failed tier's reason).
    #[serde(default)]
    pub expect_fallback: Option<String>,
    /// After the capture, run `strata run --tier kmod` this many times for a second each, with
    /// HTTP traffic throughout: every run must load, capture and unload cleanly, and the kernel's
    /// vmalloc use must come back to where it was.
    #[serde(default)]
    pub cycles: u32,
    /// Time 200 requests without and with the cell's tier capturing (the guest prints both).
    #[serde(default)]
    pub cost: bool,
    /// Seconds `strata run` captures for.
    #[serde(default = "default_duration")]
    pub duration_secs: u32,
}

#[cfg(test)]
impl Scenario {
    /// A scenario expecting `expect` and asking for nothing else: tests change what they need.
    pub fn plain(name: &str, expect: &str) -> Scenario {
        Scenario {
            name: name.into(),
            expect_tier: expect.into(),
            force_tier: None,
            hide_btf: false,
            expect_reason: None,
            expect_reason_in: None,
            archive: None,
            transport: None,
            generated_btf: false,
            expect_capturing: None,
            kmod: false,
            kmod_damaged: false,
            expect_run_tier: None,
            expect_fallback: None,
            cycles: 0,
            cost: false,
            duration_secs: 8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveState {
    Good,
    Damaged,
}

impl ArchiveState {
    pub fn word(self) -> &'static str {
        match self {
            ArchiveState::Good => "good",
            ArchiveState::Damaged => "damaged",
        }
    }
}

fn default_duration() -> u32 {
    8
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    pub name: String,
    #[serde(default)]
    pub deb: Option<DebSource>,
    #[serde(default)]
    pub build: Option<BuildSource>,
    pub scenarios: Vec<String>,
    /// Extra kernel command line.
    #[serde(default)]
    pub append: Option<String>,
    /// The distribution the guest claims in /etc/os-release (`ID`, `VERSION_ID`): what strata
    /// names the kernel's archive entry by.
    #[serde(default)]
    pub os_release: Option<OsRelease>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
}

/// A Debian kernel image package, named through a meta package in a suite.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebSource {
    pub meta: String,
    pub suite: String,
}

/// A kernel built from a Debian kernel source package.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSource {
    pub source: String,
    pub suite: String,
    pub base: String,
    /// Path relative to the manifest.
    pub fragment: String,
}

pub enum Source<'a> {
    Deb(&'a DebSource),
    Build(&'a BuildSource),
}

impl Kernel {
    pub fn source(&self) -> Source<'_> {
        match (&self.deb, &self.build) {
            (Some(d), None) => Source::Deb(d),
            (None, Some(b)) => Source::Build(b),
            _ => unreachable!("validated: exactly one of deb/build"),
        }
    }
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest> {
        let m: Manifest = toml::from_str(text).context("parsing the manifest")?;
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<()> {
        let mut names = BTreeSet::new();
        for s in &self.scenarios {
            if !names.insert(&s.name) {
                bail!("scenario {:?} is defined twice", s.name);
            }
            if !is_word(&s.name) || !is_word(&s.expect_tier) || s.force_tier.as_deref().is_some_and(|t| !is_word(t)) {
                bail!("scenario {:?}: names and tiers are [a-z0-9-] words (they go on a kernel command line)", s.name);
            }
            if s.duration_secs == 0 {
                bail!("scenario {:?}: duration_secs must be > 0", s.name);
            }
            if s.expect_reason.is_some() != s.expect_reason_in.is_some() {
                bail!("scenario {:?}: expect_reason and expect_reason_in go together (the word, and the tier it explains)", s.name);
            }
            if s.transport.as_deref().is_some_and(|t| !is_word(t))
                || s.expect_capturing.as_deref().is_some_and(|c| c.contains('"'))
            {
                bail!("scenario {:?}: transport is a [a-z-] word; expect_capturing has no quotes", s.name);
            }
        }
        let mut knames = BTreeSet::new();
        for k in &self.kernels {
            if !knames.insert(&k.name) {
                bail!("kernel {:?} is defined twice", k.name);
            }
            if !is_word(&k.name.replace('.', "")) {
                bail!("kernel {:?}: the name must be [a-z0-9.-]", k.name);
            }
            match (&k.deb, &k.build) {
                (Some(_), Some(_)) => bail!("kernel {:?}: give either `deb` or `build`, not both", k.name),
                (None, None) => {
                    bail!("kernel {:?}: needs a source: `deb = {{ meta, suite }}` or `build = {{ ... }}`", k.name)
                }
                _ => {}
            }
            if k.scenarios.is_empty() {
                bail!("kernel {:?}: lists no scenarios", k.name);
            }
            for s in &k.scenarios {
                if !names.contains(s) {
                    bail!("kernel {:?}: unknown scenario {:?} (defined: {:?})", k.name, s, names);
                }
                if self.scenario(s).is_some_and(|s| s.archive.is_some() || s.generated_btf)
                    && (k.os_release.is_none() || k.deb.is_none())
                {
                    bail!(
                        "kernel {:?}: scenario {s:?} needs the kernel's BTF (archive or headers), so a Debian kernel and os_release",
                        k.name
                    );
                }
            }
        }
        Ok(())
    }

    pub fn scenario(&self, name: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.name == name)
    }

    /// The (kernel, scenario) cells selected by `--kernel`/`--scenario` (empty = all).
    pub fn select(&self, kernels: &[String], scenarios: &[String]) -> Result<Vec<(&Kernel, &Scenario)>> {
        for k in kernels {
            if !self.kernels.iter().any(|x| &x.name == k) {
                bail!(
                    "no kernel {k:?} in the manifest (have: {})",
                    self.kernels.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
        }
        for s in scenarios {
            if self.scenario(s).is_none() {
                bail!(
                    "no scenario {s:?} in the manifest (have: {})",
                    self.scenarios.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
        }
        let mut cells = Vec::new();
        for k in &self.kernels {
            if !kernels.is_empty() && !kernels.contains(&k.name) {
                continue;
            }
            for s in &k.scenarios {
                if !scenarios.is_empty() && !scenarios.contains(s) {
                    continue;
                }
                cells.push((k, self.scenario(s).expect("validated")));
            }
        }
        if cells.is_empty() {
            bail!("the selection matches no cell (a scenario runs only on the kernels that list it)");
        }
        Ok(cells)
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../manifest.toml");

    #[test]
    fn the_shipped_manifest_parses() {
        let m = Manifest::parse(SHIPPED).unwrap();
        assert!(m.kernels.iter().any(|k| k.name == "debian-6.1"));
        assert!(m.kernels.iter().any(|k| k.name == "debian-5.10"));
        let bpfless = m.kernels.iter().find(|k| k.build.is_some()).unwrap();
        assert_eq!(bpfless.scenarios, vec!["bpf-less", "perf-event-forced", "kmod", "kmod-cycles", "kmod-damaged"]);
        let kmod = m.scenario("kmod").unwrap();
        assert!(kmod.kmod && kmod.force_tier.is_none() && kmod.cost, "kmod is chosen by itself where it can run");
        assert_eq!(m.scenario("kmod-cycles").unwrap().cycles, 50);
        assert!(m.kernels.iter().filter(|k| k.deb.is_some()).all(|k| k.scenarios.iter().any(|s| s == "kmod-forced")));
        assert_eq!(m.scenario("native-btf").unwrap().expect_tier, "core");
        let hidden = m.scenario("hidden-btf").unwrap();
        assert!(hidden.hide_btf);
        assert_eq!(hidden.expect_reason.as_deref(), Some("btf"));
        assert_eq!(hidden.expect_reason_in.as_deref(), Some("core"));
        let archived = m.scenario("archived-btf").unwrap();
        assert_eq!((archived.archive, archived.expect_tier.as_str()), (Some(ArchiveState::Good), "archived-btf"));
        assert_eq!(m.scenario("archive-damaged").unwrap().archive, Some(ArchiveState::Damaged));
        let host = m.scenario("host-compiled").unwrap();
        assert!(host.generated_btf && host.hide_btf && host.archive.is_none());
        assert!(m.kernels.iter().filter(|k| k.deb.is_some()).all(|k| k.os_release.is_some()));
        assert_eq!(m.scenario("perf-event-forced").unwrap().force_tier.as_deref(), Some("perf-event"));
        assert_eq!(m.scenario("native-btf").unwrap().duration_secs, 8);
    }

    #[test]
    fn the_shipped_fragment_keeps_bpf_off() {
        let frag = include_str!("../configs/bpf-less.config");
        assert!(frag.lines().any(|l| l.trim() == "# CONFIG_BPF_SYSCALL is not set"));
        assert!(!frag.lines().any(|l| l.trim() == "CONFIG_BPF_SYSCALL=y"));
    }

    const SMALL: &str = r#"
        [[scenario]]
        name = "a"
        expect_tier = "core"
        [[scenario]]
        name = "b"
        expect_tier = "perf-event"
        [[kernel]]
        name = "k1"
        deb = { meta = "linux-image-amd64", suite = "bookworm" }
        scenarios = ["a", "b"]
        [[kernel]]
        name = "k2"
        build = { source = "linux-source-5.10", suite = "bullseye", base = "tinyconfig", fragment = "f" }
        scenarios = ["b"]
    "#;

    #[test]
    fn selection_by_kernel_and_scenario() {
        let m = Manifest::parse(SMALL).unwrap();
        let all = m.select(&[], &[]).unwrap();
        let names: Vec<_> = all.iter().map(|(k, s)| format!("{}/{}", k.name, s.name)).collect();
        assert_eq!(names, ["k1/a", "k1/b", "k2/b"]);
        let one = m.select(&["k1".into()], &["b".into()]).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].0.name.as_str(), one[0].1.name.as_str()), ("k1", "b"));
        assert!(m.select(&["nope".into()], &[]).is_err());
        assert!(m.select(&[], &["nope".into()]).is_err());
        // k2 does not list scenario a: nothing to run.
        assert!(m.select(&["k2".into()], &["a".into()]).is_err());
    }

    #[test]
    fn rejects_bad_manifests() {
        let unknown_scenario = SMALL.replace(r#"scenarios = ["b"]"#, r#"scenarios = ["c"]"#);
        assert!(Manifest::parse(&unknown_scenario).unwrap_err().to_string().contains("unknown scenario"));
        let both =
            SMALL.replace(r#"build = { source"#, "deb = { meta = \"x\", suite = \"y\" }\n        build = { source");
        assert!(Manifest::parse(&both).unwrap_err().to_string().contains("not both"));
        let typo = SMALL.replace("expect_tier = \"core\"", "expect_teir = \"core\"");
        assert!(Manifest::parse(&typo).is_err());
        let spaces = SMALL.replace("name = \"a\"", "name = \"a b\"").replace("\"a\", \"b\"", "\"a b\", \"b\"");
        assert!(Manifest::parse(&spaces).is_err());
    }
}
