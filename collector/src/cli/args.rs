//! Command-line arguments shared by several commands, and their validation into settings.

use std::path::PathBuf;
use std::time::Duration;

use kernel_compat::Tier;
use probes_core::loader::HooksChoice;
use probes_core::objects::SyscallHooks;
use probes_legacy::capture::{PerfConfig, Wakeup};

use collector::sources::CaptureSettings;

/// `--tier`: `auto` or a tier name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierChoice {
    /// The best tier this node can run, from the compat plan.
    Auto,
    /// This tier and no other.
    Forced(Tier),
}

impl std::str::FromStr for TierChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<TierChoice, String> {
        match s {
            "auto" => Ok(TierChoice::Auto),
            name => match name.parse::<Tier>()? {
                t @ (Tier::Core | Tier::ArchivedBtf | Tier::HostCompiled | Tier::Kmod | Tier::PerfEvent) => {
                    Ok(TierChoice::Forced(t))
                }
                t => Err(format!(
                    "tier {t} is not part of this build (auto, core, archived-btf, host-compiled, kmod, perf-event)"
                )),
            },
        }
    }
}

/// `--transport`: how the CO-RE tiers' records reach the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportChoice {
    /// The BPF ring buffer where the kernel has it (5.8+), else the perf buffer.
    Auto,
    /// The BPF ring buffer (5.8+).
    RingBuffer,
    /// The per-CPU BPF perf buffer (any kernel with eBPF): what kernels before 5.8 use.
    PerfBuffer,
}

/// `--syscall-hooks`: where the CO-RE probes hook the socket syscalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SyscallHooksArg {
    /// raw_syscalls where the ring buffer and the kernel's own BTF allow, else per-syscall.
    Auto,
    /// Each socket syscall's own tracepoints (syscalls:sys_enter_read, ...): any BTF, 4.14+.
    PerSyscall,
    /// Two BTF-typed programs on raw_syscalls:sys_enter/sys_exit (tp_btf): cheaper per captured
    /// call; the ring buffer and the kernel's own BTF only.
    RawSyscalls,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PerfWakeupArg {
    PerSample,
    Batched,
}

/// How to capture: shared by `run` and `record`.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Capture tier: auto (the best one this node runs), core, archived-btf, host-compiled, kmod
    /// or perf-event.
    #[arg(long, value_name = "TIER", default_value = "auto")]
    pub tier: TierChoice,
    /// How the CO-RE tiers' records travel: the ring buffer (5.8+) or the per-CPU perf buffer.
    #[arg(long, value_enum, default_value_t = TransportChoice::Auto)]
    pub transport: TransportChoice,
    /// Where the CO-RE probes hook the socket syscalls: raw_syscalls (one cheap call per syscall
    /// of the node, a full one only for socket syscalls) or each syscall's own tracepoints.
    #[arg(long, value_enum, default_value_t = SyscallHooksArg::Auto)]
    pub syscall_hooks: SyscallHooksArg,
    /// Payload bytes captured per syscall (at most 8192); the true byte count is always reported.
    #[arg(long, default_value_t = 4096)]
    pub capture_bytes: u32,
    /// Kernel buffer size in bytes (a power of two); a bigger one rides out longer bursts. Perf
    /// buffers share it out per CPU.
    #[arg(long, default_value_t = 8 << 20)]
    pub ring_bytes: u32,
    /// Events read from the kernel but not yet through the pipeline; beyond, new batches are
    /// dropped and counted (loss source agent_queue).
    #[arg(long, default_value_t = 262_144)]
    pub event_queue: usize,
    /// perf-event tier: run its reader thread SCHED_FIFO (priority 1), so payloads and sockets are
    /// read about 0.1 ms after the syscall instead of several ms on a busy node (short-lived clients
    /// are gone by then). `--perf-realtime false` keeps it an ordinary (nice -15) thread.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub perf_realtime: bool,
    /// perf-event tier: wake the reader on every sample (`per-sample`: fresher payloads) or in
    /// batches (`batched`: far less overhead under load, most payloads read too late to be right).
    #[arg(long, value_enum, default_value_t = PerfWakeupArg::PerSample)]
    pub perf_wakeup: PerfWakeupArg,
    /// CO-RE tiers: also capture TCP state changes (`state` events with --raw-events; 4.16+). Off by
    /// default: no record needs them, and every TCP state change on the node would pay for them.
    #[arg(long)]
    pub tcp_states: bool,
    /// Stop after this long (e.g. 30s, 5m); by default run until SIGINT or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub btf: BtfArgs,
}

impl CaptureArgs {
    /// The settings, or what is wrong with them.
    pub fn settings(&self) -> Result<CaptureSettings, String> {
        let max = strata_event::wire::MAX_CAPTURE;
        if self.capture_bytes > max {
            return Err(format!(
                "capture size {} is out of range: give 0..={max} bytes (--capture-bytes)",
                self.capture_bytes
            ));
        }
        if !self.ring_bytes.is_power_of_two() || self.ring_bytes < 4096 {
            return Err(format!("--ring-bytes {} must be a power of two and at least 4096", self.ring_bytes));
        }
        if self.event_queue == 0 {
            return Err("--event-queue must be at least 1".into());
        }
        Ok(CaptureSettings {
            capture_bytes: self.capture_bytes,
            ring_bytes: self.ring_bytes,
            tcp_states: self.tcp_states,
            hooks: match self.syscall_hooks {
                SyscallHooksArg::Auto => HooksChoice::Auto,
                SyscallHooksArg::PerSyscall => HooksChoice::Only(SyscallHooks::PerSyscall),
                SyscallHooksArg::RawSyscalls => HooksChoice::Only(SyscallHooks::RawSyscalls),
            },
            perf: PerfConfig {
                capture_bytes: self.capture_bytes,
                realtime: self.perf_realtime,
                wakeup: match self.perf_wakeup {
                    PerfWakeupArg::PerSample => Wakeup::PerSample,
                    PerfWakeupArg::Batched => Wakeup::Batched,
                },
                ..Default::default()
            },
        })
    }
}

/// Where a BTF comes from when the kernel has none of its own.
#[derive(Debug, Clone, clap::Args)]
pub struct BtfArgs {
    /// The BTF archive (public layout ID/VERSION_ID/ARCH/RELEASE.btf.tar.xz): an http(s):// base URL,
    /// or file:///DIR for an air-gapped copy.
    #[arg(long, value_name = "URL", default_value = btf_cache::DEFAULT_ARCHIVE)]
    pub btf_archive: String,
    /// A BTF file for this kernel, used instead of fetching one (it is checked against the kernel
    /// all the same).
    #[arg(long, value_name = "FILE")]
    pub btf: Option<PathBuf>,
    /// Where fetched and generated BTF is cached (BTF under DIR/btf/).
    #[arg(long, value_name = "DIR", default_value = btf_cache::DEFAULT_ROOT)]
    pub cache_dir: PathBuf,
    /// The running kernel's headers, where the distribution's usual places (/lib/modules/R/build,
    /// /usr/src/linux-headers-R, /usr/src/kernels/R) do not have them.
    #[arg(long, value_name = "DIR")]
    pub headers: Option<PathBuf>,
    /// How long one download may take.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    pub btf_timeout: Duration,
}

impl BtfArgs {
    pub fn archive(&self) -> Result<btf_cache::Archive, String> {
        self.btf_archive.parse().map_err(|e| format!("--btf-archive {e}"))
    }

    pub fn limits(&self) -> btf_cache::FetchLimits {
        btf_cache::FetchLimits {
            timeout: self.btf_timeout,
            connect_timeout: self.btf_timeout.min(Duration::from_secs(10)),
            ..Default::default()
        }
    }
}
