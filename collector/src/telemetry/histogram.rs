//! Fixed-bucket latency histograms for the Prometheus exposition (cumulative `le` buckets). OTLP
//! gets exponential histograms from the OpenTelemetry SDK instead.

/// Bucket upper bounds in seconds: 100 µs to 10 s, the OpenTelemetry HTTP duration advice
/// extended below 5 ms, where loopback and in-cluster calls live.
pub const BOUNDS: [f64; 19] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0,
];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is +Inf.
    counts: [u64; BOUNDS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        let i = BOUNDS.iter().position(|b| seconds <= *b).unwrap_or(BOUNDS.len());
        self.counts[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// (upper bound, cumulative count) pairs, ending with +Inf.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = BOUNDS.iter().copied().chain(std::iter::once(f64::INFINITY));
        bounds.zip(self.counts.iter().scan(0, |acc, c| {
            *acc += c;
            Some(*acc)
        }))
    }

    /// The `q` quantile (0..=1) by linear interpolation inside its bucket, as PromQL's
    /// histogram_quantile does; None when empty. Past the last finite bound, that bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut below = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 && (below + c) as f64 >= rank {
                let Some(&upper) = BOUNDS.get(i) else { return Some(BOUNDS[BOUNDS.len() - 1]) };
                let lower = if i == 0 { 0.0 } else { BOUNDS[i - 1] };
                return Some(lower + (upper - lower) * (rank - below as f64) / c as f64);
            }
            below += c;
        }
        Some(BOUNDS[BOUNDS.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::default();
        for s in [0.0001, 0.0005, 0.003, 20.0] {
            h.observe(s);
        }
        let c: Vec<(f64, u64)> = h.cumulative().collect();
        assert_eq!(c[0], (0.0001, 1));
        assert_eq!(c[2], (0.0005, 2), "le is inclusive");
        assert_eq!(c[5], (0.005, 3));
        assert_eq!(*c.last().unwrap(), (f64::INFINITY, 4));
        assert_eq!(h.count(), 4);
        assert!((h.sum() - 20.0036).abs() < 1e-9);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for _ in 0..100 {
            h.observe(0.007); // bucket (0.005, 0.01]
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 0.0075).abs() < 1e-12, "{p50}");
        assert_eq!(h.quantile(1.0), Some(0.01));
        h.observe(60.0);
        assert_eq!(h.quantile(1.0), Some(10.0), "past the last bound: that bound");
    }
}
