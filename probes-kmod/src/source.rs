//! The module's sources, compiled into strata so a node needs nothing from this repository to
//! build it: the C file, its device ABI header, the record layout it shares with the BPF probes,
//! and the kbuild file. Their hash names the built module in the cache, so a strata with other
//! sources never loads a module built from old ones.

use std::path::Path;

/// One file of the module's source tree.
pub struct SourceFile {
    pub name: &'static str,
    pub text: &'static str,
}

pub const FILES: [SourceFile; 4] = [
    SourceFile { name: "strata_kmod.c", text: include_str!("../../kmod/strata_kmod.c") },
    SourceFile { name: "strata_kmod.h", text: include_str!("../../kmod/strata_kmod.h") },
    SourceFile { name: "event.h", text: include_str!("../../probes-core/bpf/event.h") },
    SourceFile { name: "Kbuild", text: include_str!("../../kmod/Kbuild") },
];

/// The module's name as the kernel knows it (`/proc/modules`, `delete_module`).
pub const MODULE_NAME: &str = "strata";

/// A short hash of every source file (names and contents): which sources a built module came from.
pub fn source_hash() -> String {
    let mut all = Vec::new();
    for f in &FILES {
        all.extend_from_slice(f.name.as_bytes());
        all.push(0);
        all.extend_from_slice(f.text.as_bytes());
        all.push(0);
    }
    btf_cache::cache::sha256_hex(&all)[..16].to_string()
}

/// Writes the sources into `dir` (which must exist).
pub fn write_to(dir: &Path) -> std::io::Result<()> {
    for f in &FILES {
        std::fs::write(dir.join(f.name), f.text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_names_these_sources() {
        let h = source_hash();
        assert_eq!(h.len(), 16);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(h, source_hash());
    }

    #[test]
    fn the_module_includes_only_what_is_shipped_with_it() {
        let c = FILES[0].text;
        for include in c.lines().filter_map(|l| l.strip_prefix("#include \"")) {
            let name = include.trim_end_matches('"');
            assert!(FILES.iter().any(|f| f.name == name), "strata_kmod.c includes {name}, which is not shipped");
        }
    }
}
