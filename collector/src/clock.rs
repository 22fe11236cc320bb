//! Event times are CLOCK_MONOTONIC nanoseconds (what `bpf_ktime_get_ns` returns); what people read
//! is wall-clock time. The offset between the two is taken once, at start (or from a capture
//! file's header, for a replay).

/// Turns CLOCK_MONOTONIC event times into wall-clock times.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    realtime_minus_monotonic_ns: i128,
}

impl WallClock {
    pub fn now() -> WallClock {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let mono = probes_core::loader::monotonic_ns() as i128;
        WallClock { realtime_minus_monotonic_ns: real - mono }
    }

    /// A clock recorded elsewhere (a capture file's header).
    pub fn from_offset_ns(realtime_minus_monotonic_ns: i128) -> WallClock {
        WallClock { realtime_minus_monotonic_ns }
    }

    pub fn offset_ns(&self) -> i128 {
        self.realtime_minus_monotonic_ns
    }

    pub fn unix_ns(&self, monotonic_ns: u64) -> i128 {
        monotonic_ns as i128 + self.realtime_minus_monotonic_ns
    }

    pub fn system_time(&self, monotonic_ns: u64) -> std::time::SystemTime {
        let ns = self.unix_ns(monotonic_ns).max(0) as u128;
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns as u64)
    }
}
