//! The floor of capturing on raw_syscalls (bpf/hooks_floor.bpf.c): the capture object's two hook
//! points with programs that return at once. It captures nothing; the capture_overhead benchmark
//! attaches it (its `hooks-only` mode) to show what hooking every syscall costs the workload
//! before any probe does any work, the most a capture on these hooks could keep.

use aya::programs::BtfTracePoint;
use aya::{Ebpf, EbpfLoader};

use crate::loader::{error_chain, load_btf, verifier_error, BtfSource, CaptureError};
use crate::objects::HOOKS_FLOOR_OBJECT;
use crate::preflight;

const OBJECT: &str = "hooks_floor.bpf.o";

/// The two programs, attached until this is dropped.
pub struct HooksFloor {
    _ebpf: Ebpf,
}

/// Attaches the do-nothing programs to raw_syscalls:sys_enter and sys_exit (the kernel's own BTF,
/// 5.5+).
pub fn attach() -> Result<HooksFloor, CaptureError> {
    preflight::check_capabilities()?;
    preflight::raise_memlock_rlimit();
    let btf = load_btf(&BtfSource::Kernel)?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .load(HOOKS_FLOOR_OBJECT)
        .map_err(|e| CaptureError::Object { object: OBJECT, error: error_chain(&e) })?;
    for (name, hook) in [("floor_sys_enter", "sys_enter"), ("floor_sys_exit", "sys_exit")] {
        let program: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| CaptureError::Object { object: OBJECT, error: format!("no program {name}") })?
            .try_into()
            .map_err(|e| CaptureError::Object { object: OBJECT, error: format!("{name}: {e}") })?;
        program.load(hook, &btf).map_err(|e| verifier_error(name, e))?;
        program.attach().map_err(|e| CaptureError::Attach {
            program: name.to_string(),
            tracepoint: format!("raw_syscalls:{hook}"),
            error: error_chain(&e),
        })?;
    }
    Ok(HooksFloor { _ebpf: ebpf })
}
