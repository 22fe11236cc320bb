//! What a compiled BPF object asks of the kernel, read from the object itself (aya-obj), and the
//! kernel version each of those things arrived in. Pure: no kernel is asked.
//!
//! No kernel older than 5.10 can be booted where strata is developed, yet the perf-buffer object
//! claims 4.14. So every program of every committed object is held, statically, to the rules of
//! the oldest kernel its object claims (tests/object_check.rs): its instruction count, the helpers
//! it calls, the map types it uses, back-edges (loops), BPF-to-BPF calls, JMP32 and atomic
//! instructions, global data, and the tracepoint section it attaches to.
//!
//! Each entry of the tables names the upstream kernel release and commit that brought the thing,
//! as the BPF documentation project (docs.ebpf.io) tags its helper, map and program type pages,
//! cilium/ebpf's feature probes and bcc's docs/kernel-versions.md record them. Two are less sure
//! than the rest: the syscall tracepoints' commit is known by its first 15 hex digits only, and
//! 5.12 for BPF_FETCH atomics is read off the commit's date.

use std::collections::BTreeSet;

use aya_obj::generated::bpf_insn;
use aya_obj::{EbpfSectionKind, Object};
use object::{Object as _, ObjectSection as _};

/// A kernel release as (major, minor).
pub type KernelRelease = (u32, u32);

/// When something arrived upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub kernel: KernelRelease,
    pub commit: &'static str,
}

const fn since(major: u32, minor: u32, commit: &'static str) -> Arrival {
    Arrival { kernel: (major, minor), commit }
}

/// BPF helpers by `enum bpf_func_id`.
pub const HELPERS: &[(u32, &str, Arrival)] = &[
    (1, "bpf_map_lookup_elem", since(3, 18, "0a542a86d73b1577e7d4f55fc95dcffd3fe62643")),
    (2, "bpf_map_update_elem", since(3, 18, "0a542a86d73b1577e7d4f55fc95dcffd3fe62643")),
    (3, "bpf_map_delete_elem", since(3, 19, "d0003ec01c667b731c139e23de3306a8b328ccf5")),
    (4, "bpf_probe_read", since(4, 1, "2541517c32be2531e0da59dfd7efc1ce844644f5")),
    (5, "bpf_ktime_get_ns", since(4, 1, "d9847d310ab4003725e6ed1822682e24bd406908")),
    (14, "bpf_get_current_pid_tgid", since(4, 2, "ffeedafbf0236f03aeb2e8db273b3e5ae5f5bc89")),
    (16, "bpf_get_current_comm", since(4, 2, "ffeedafbf0236f03aeb2e8db273b3e5ae5f5bc89")),
    (25, "bpf_perf_event_output", since(4, 4, "a43eec304259a6c637f4014a6d4767159b6a3aa3")),
    (35, "bpf_get_current_task", since(4, 8, "606274c5abd8e245add01bc7145a8cbb92b69ba8")),
    (45, "bpf_probe_read_str", since(4, 11, "a5e8c07059d0f0b31737408711d44794928ac218")),
    (112, "bpf_probe_read_user", since(5, 5, "6ae08ae3dea2cfa03dd3665a3c8475c2d429ef47")),
    (113, "bpf_probe_read_kernel", since(5, 5, "6ae08ae3dea2cfa03dd3665a3c8475c2d429ef47")),
    (130, "bpf_ringbuf_output", since(5, 8, "457f44363a8894135c85b7a9afd2bd8196db24ab")),
    (131, "bpf_ringbuf_reserve", since(5, 8, "457f44363a8894135c85b7a9afd2bd8196db24ab")),
    (132, "bpf_ringbuf_submit", since(5, 8, "457f44363a8894135c85b7a9afd2bd8196db24ab")),
    (134, "bpf_ringbuf_query", since(5, 8, "457f44363a8894135c85b7a9afd2bd8196db24ab")),
    (158, "bpf_get_current_task_btf", since(5, 11, "3ca1032ab7ab010eccb107aa515598788f7d93bb")),
];

/// Map types by `enum bpf_map_type`.
pub const MAP_TYPES: &[(u32, &str, Arrival)] = &[
    (1, "BPF_MAP_TYPE_HASH", since(3, 19, "0f8e4bd8a1fc8c4185f1630061d0a1f2d197a475")),
    (2, "BPF_MAP_TYPE_ARRAY", since(3, 19, "28fbcfa08d8ed7c5a50d41a0433aad222835e8e3")),
    (4, "BPF_MAP_TYPE_PERF_EVENT_ARRAY", since(4, 3, "ea317b267e9d03a8241893aa176fba7661d07579")),
    (6, "BPF_MAP_TYPE_PERCPU_ARRAY", since(4, 6, "a10423b87a7eae75da79ce80a8d9475047a674ee")),
    (9, "BPF_MAP_TYPE_LRU_HASH", since(4, 10, "29ba732acbeece1e34c68483d1ec1f3720fa1bb3")),
    (27, "BPF_MAP_TYPE_RINGBUF", since(5, 8, "457f44363a8894135c85b7a9afd2bd8196db24ab")),
];

/// Tracepoint programs (BPF_PROG_TYPE_TRACEPOINT).
pub const TRACEPOINT_PROGRAMS: Arrival = since(4, 7, "98b5c2c65c2951772a8fc661f50d675e450e8bce");
/// BPF programs on the syscall tracepoints (`syscalls:sys_enter_*`, `sys_exit_*`); 4.9 answers
/// EINVAL.
pub const SYSCALL_TRACEPOINTS: Arrival = since(4, 14, "cf5f5cea270655d");
/// BTF-typed raw tracepoint programs (`tp_btf/`, BPF_PROG_TYPE_TRACING attached by a kernel BTF
/// type's name); on `raw_syscalls:sys_enter`/`sys_exit` they see (regs, id) and (regs, ret).
pub const TP_BTF_PROGRAMS: Arrival = since(5, 5, "ac4414b5ca47d16c8de3134cc1b868056c4a68ea");
/// The `sock:inet_sock_set_state` tracepoint.
pub const INET_SOCK_SET_STATE: Arrival = since(4, 16, "563e0bb0dc74b3ca888e24f8c08f0239fe4016b0");
/// Programs above 4 096 instructions (privileged), and the 1M processed-instruction budget.
pub const LARGE_PROGRAMS: Arrival = since(5, 2, "c04c0d2b968ac45d6ef020316808ef6c82325a82");
/// Global data (BPF_PSEUDO_MAP_VALUE: .data, .rodata, .bss).
pub const GLOBAL_DATA: Arrival = since(5, 2, "d8eca5bbb2be9bc7546f9e733786fa2f1a594c67");
/// Bounded loops (back-edges the verifier follows).
pub const BOUNDED_LOOPS: Arrival = since(5, 3, "2589726d12a1b12eaaa93c7f1ea64287e383c7a5");
/// BPF-to-BPF function calls.
pub const BPF_TO_BPF_CALLS: Arrival = since(4, 16, "cc8b0b92a1699bc32f7fec71daa2bfc90de43a4d");
/// The JMP32 instruction class.
pub const JMP32: Arrival = since(5, 1, "092ed0968bb648cd18e8a0430cd0a8a71727315c");
/// Atomic instructions other than a plain add (BPF_FETCH, xchg, cmpxchg, and/or/xor).
pub const ATOMICS: Arrival = since(5, 12, "5ca419f2864a2c60940dcf4bbaeb69546200e36f");

/// Instructions a program may hold before [`LARGE_PROGRAMS`] (BPF_MAXINSNS).
pub const MAX_INSNS_OLD: usize = 4096;
/// Bytes a per-CPU map value may take on every kernel (PCPU_MIN_UNIT_SIZE).
pub const MAX_PERCPU_VALUE: u32 = 32 << 10;

/// What one program asks of the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramReport {
    pub name: String,
    /// The ELF section, e.g. `tracepoint/syscalls/sys_enter_read`.
    pub section: String,
    pub instructions: usize,
    pub helpers: BTreeSet<u32>,
    /// Edges of the control-flow graph back into a path being explored (loops), found as the
    /// verifiers before 5.3 do (check_cfg's depth-first search). A backward jump that is not a
    /// loop (clang often puts the shared exit block first) is not one.
    pub back_edges: usize,
    pub bpf_to_bpf_calls: usize,
    pub jmp32: usize,
    /// Atomic instructions beyond a plain add.
    pub new_atomics: usize,
}

/// What one object asks of the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectReport {
    pub programs: Vec<ProgramReport>,
    /// (map name, map type, value size)
    pub maps: Vec<(String, u32, u32)>,
    /// Sections of global data (.data, .rodata, .bss) the object carries.
    pub global_data: Vec<String>,
}

const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_STX: u8 = 0x03;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;
const BPF_ATOMIC: u8 = 0xc0;
const BPF_PSEUDO_CALL: u8 = 1;
const BPF_ADD: i32 = 0x00;

fn class(i: &bpf_insn) -> u8 {
    i.code & 0x07
}

/// Reads an object's programs, maps and sections.
pub fn analyze(bytes: &[u8]) -> Result<ObjectReport, String> {
    let obj = Object::parse(bytes).map_err(|e| format!("parsing the object: {e}"))?;
    let elf = object::File::parse(bytes).map_err(|e| format!("parsing the ELF: {e}"))?;
    let section_name = |index: usize| {
        elf.section_by_index(object::SectionIndex(index))
            .ok()
            .and_then(|s| s.name().ok().map(str::to_string))
            .unwrap_or_default()
    };
    let mut programs = Vec::new();
    for (name, program) in &obj.programs {
        let function =
            obj.functions.get(&program.function_key()).ok_or_else(|| format!("program {name} has no function body"))?;
        let mut report = ProgramReport {
            name: name.clone(),
            section: section_name(program.section_index),
            instructions: function.instructions.len(),
            ..Default::default()
        };
        for insn in &function.instructions {
            match class(insn) {
                BPF_JMP | BPF_JMP32 => {
                    let op = insn.code & 0xf0;
                    if class(insn) == BPF_JMP32 {
                        report.jmp32 += 1;
                    }
                    if op == BPF_CALL {
                        if insn.src_reg() == BPF_PSEUDO_CALL {
                            report.bpf_to_bpf_calls += 1;
                        } else {
                            report.helpers.insert(insn.imm as u32);
                        }
                    }
                }
                BPF_STX if insn.code & 0xe0 == BPF_ATOMIC && insn.imm != BPF_ADD => report.new_atomics += 1,
                _ => {}
            }
        }
        report.back_edges = back_edges(&function.instructions);
        programs.push(report);
    }
    programs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut maps: Vec<(String, u32, u32)> = Vec::new();
    let mut global_data = Vec::new();
    for (name, map) in &obj.maps {
        match map.section_kind() {
            EbpfSectionKind::Data | EbpfSectionKind::Rodata | EbpfSectionKind::Bss => global_data.push(name.clone()),
            _ => maps.push((name.clone(), map.map_type(), map.value_size())),
        }
    }
    maps.sort();
    global_data.sort();
    Ok(ObjectReport { programs, maps, global_data })
}

const BPF_LD: u8 = 0x00;
const BPF_DW_IMM: u8 = 0x18;
const BPF_JA: u8 = 0x00;

/// Successors of instruction `i` in the control-flow graph.
fn successors(insns: &[bpf_insn], i: usize) -> Vec<usize> {
    let insn = &insns[i];
    let next = |n: usize| (i + n < insns.len()).then_some(i + n);
    let target = || {
        let t = i as i64 + 1 + insn.off as i64;
        (0..insns.len() as i64).contains(&t).then_some(t as usize)
    };
    match class(insn) {
        BPF_LD if insn.code == BPF_LD | BPF_DW_IMM => next(2).into_iter().collect(),
        BPF_JMP | BPF_JMP32 => match insn.code & 0xf0 {
            BPF_EXIT => vec![],
            BPF_CALL => next(1).into_iter().collect(),
            BPF_JA => target().into_iter().collect(),
            _ => next(1).into_iter().chain(target()).collect(),
        },
        _ => next(1).into_iter().collect(),
    }
}

/// Back-edges found by a depth-first search from instruction 0, as check_cfg does.
fn back_edges(insns: &[bpf_insn]) -> usize {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    if insns.is_empty() {
        return 0;
    }
    let mut mark = vec![Mark::New; insns.len()];
    let mut found = 0;
    // (instruction, its successors, how many of them were explored)
    let mut stack: Vec<(usize, Vec<usize>, usize)> = vec![(0, successors(insns, 0), 0)];
    mark[0] = Mark::OnPath;
    while let Some((node, succ, done)) = stack.last_mut() {
        if *done == succ.len() {
            mark[*node] = Mark::Done;
            stack.pop();
            continue;
        }
        let s = succ[*done];
        *done += 1;
        match mark[s] {
            Mark::OnPath => found += 1,
            Mark::Done => {}
            Mark::New => {
                mark[s] = Mark::OnPath;
                stack.push((s, successors(insns, s), 0));
            }
        }
    }
    found
}

fn too_new(what: String, arrival: Arrival, oldest: KernelRelease) -> Option<String> {
    (arrival.kernel > oldest).then(|| {
        format!(
            "{what} needs {}.{} (commit {}), newer than the {}.{} this object claims",
            arrival.kernel.0,
            arrival.kernel.1,
            &arrival.commit[..12],
            oldest.0,
            oldest.1
        )
    })
}

/// Everything in `report` that a kernel `oldest` lacks, one line each; empty when it all loads.
pub fn violations(report: &ObjectReport, oldest: KernelRelease) -> Vec<String> {
    let mut out = Vec::new();
    if !report.global_data.is_empty() {
        out.extend(too_new(format!("global data ({})", report.global_data.join(", ")), GLOBAL_DATA, oldest));
    }
    for (name, map_type, value_size) in &report.maps {
        match MAP_TYPES.iter().find(|(t, _, _)| t == map_type) {
            Some((_, type_name, arrival)) => out.extend(too_new(format!("map {name} ({type_name})"), *arrival, oldest)),
            None => out.push(format!("map {name} has type {map_type}, which the arrival table does not know")),
        }
        // Per-CPU maps: PERCPU_HASH 5, PERCPU_ARRAY 6, LRU_PERCPU_HASH 10.
        if matches!(map_type, 5 | 6 | 10) && *value_size > MAX_PERCPU_VALUE {
            out.push(format!(
                "map {name}: per-CPU values of {value_size} bytes exceed the {MAX_PERCPU_VALUE} every kernel allows"
            ));
        }
    }
    for p in &report.programs {
        let at = |what: &str| format!("{} ({}): {what}", p.name, p.section);
        if p.section == "tp_btf/sys_enter" || p.section == "tp_btf/sys_exit" {
            out.extend(too_new(at("BTF-typed raw tracepoints"), TP_BTF_PROGRAMS, oldest));
        } else if !p.section.starts_with("tracepoint/") {
            out.push(at(
                "neither a tracepoint program nor a raw_syscalls tp_btf one: the arrival table covers no other",
            ));
            continue;
        } else {
            out.extend(too_new(at("tracepoint programs"), TRACEPOINT_PROGRAMS, oldest));
        }
        if p.section.starts_with("tp_btf/") {
            // raw_syscalls:sys_enter/sys_exit, known above
        } else if p.section.starts_with("tracepoint/syscalls/") {
            out.extend(too_new(at("BPF on syscall tracepoints"), SYSCALL_TRACEPOINTS, oldest));
        } else if p.section == "tracepoint/sock/inet_sock_set_state" {
            out.extend(too_new(at("tracepoint sock:inet_sock_set_state"), INET_SOCK_SET_STATE, oldest));
        } else {
            out.push(at("a tracepoint the arrival table does not know"));
        }
        if p.instructions > MAX_INSNS_OLD {
            out.extend(too_new(
                at(&format!("{} instructions (more than {MAX_INSNS_OLD})", p.instructions)),
                LARGE_PROGRAMS,
                oldest,
            ));
        }
        if p.back_edges > 0 {
            out.extend(too_new(at(&format!("{} backward jumps (loops)", p.back_edges)), BOUNDED_LOOPS, oldest));
        }
        if p.bpf_to_bpf_calls > 0 {
            out.extend(too_new(at("BPF-to-BPF calls"), BPF_TO_BPF_CALLS, oldest));
        }
        if p.jmp32 > 0 {
            out.extend(too_new(at(&format!("{} JMP32 instructions", p.jmp32)), JMP32, oldest));
        }
        if p.new_atomics > 0 {
            out.extend(too_new(at("atomic instructions beyond add"), ATOMICS, oldest));
        }
        for id in &p.helpers {
            match HELPERS.iter().find(|(h, _, _)| h == id) {
                Some((_, name, arrival)) => out.extend(too_new(at(&format!("helper {name}")), *arrival, oldest)),
                None => out.push(at(&format!("helper #{id}, which the arrival table does not know"))),
            }
        }
    }
    out
}

/// The newest kernel among everything `report` uses: the oldest kernel it can load on, as far as
/// this table knows.
pub fn oldest_kernel(report: &ObjectReport) -> KernelRelease {
    (0..=6u32)
        .flat_map(|major| (0..=20u32).map(move |minor| (major, minor)))
        .find(|k| violations(report, *k).is_empty())
        .unwrap_or((u32::MAX, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u8, off: i16) -> bpf_insn {
        // SAFETY: bpf_insn is plain integers; all zeroes is a valid value.
        let mut i: bpf_insn = unsafe { std::mem::zeroed() };
        i.code = code;
        i.off = off;
        i
    }
    const ALU_ADD_IMM: u8 = 0x07;
    const JLT_IMM: u8 = 0xa5;
    const JEQ_IMM: u8 = 0x15;
    const JA: u8 = 0x05;
    const EXIT: u8 = 0x95;
    const LD_IMM64: u8 = 0x18;

    #[test]
    fn a_loop_is_a_back_edge() {
        // 0: r1 += 1; 1: if r1 < 10 goto 0; 2: exit
        let prog = [insn(ALU_ADD_IMM, 0), insn(JLT_IMM, -2), insn(EXIT, 0)];
        assert_eq!(back_edges(&prog), 1);
    }

    #[test]
    fn a_backward_jump_to_a_shared_exit_is_not_a_loop() {
        // 0: goto 2; 1: exit; 2: if r1 == 0 goto 1; 3: r1 += 1; 4: goto 1
        let prog = [insn(JA, 1), insn(EXIT, 0), insn(JEQ_IMM, -2), insn(ALU_ADD_IMM, 0), insn(JA, -4)];
        assert_eq!(back_edges(&prog), 0);
    }

    #[test]
    fn the_second_half_of_a_wide_load_is_not_an_instruction() {
        // 0-1: r1 = imm64 (the second slot's code byte is 0, which must not be read as a jump);
        // 2: exit
        let prog = [insn(LD_IMM64, 0), insn(0, -1), insn(EXIT, 0)];
        assert_eq!(back_edges(&prog), 0);
    }
}
