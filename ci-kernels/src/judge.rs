//! Pass/fail for one cell: what the guest reported against what the scenario expects. Pure.

use crate::guest::GuestResult;
use crate::manifest::Scenario;

/// How a guest ended, as far as the runner can tell.
#[derive(Debug, Clone)]
pub enum GuestOutcome {
    /// The guest printed a result line.
    Reported(Box<GuestResult>),
    /// It printed one the runner could not parse.
    BadResult(String),
    /// It never printed one: timeout, kernel panic, QEMU died.
    NoResult(String),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct JudgeOptions {
    /// Accept a strata without `compat-check` and judge by the tier `strata run` reports instead.
    /// For the transition only (see README): compat-check is being written now.
    pub allow_missing_compat_check: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub pass: bool,
    /// The tier shown in the table (`core`, `perf-event`, `core (run)` when only `strata run` said so,
    /// `unknown`, `-` when the guest never reported).
    pub tier: String,
    pub records: Option<u64>,
    /// Why it failed, or notes on a pass.
    pub reasons: Vec<String>,
}

/// Every cell runs five wget → httpd exchanges: each must come out as a record on both sides.
pub const EXPECTED_RECORDS: u64 = 10;
/// How far VmallocUsed may move over the load/unload cycles (a leaked ring per cycle would be
/// at least 64 KiB per CPU, 50 times over).
pub const MAX_VMALLOC_DRIFT_KB: i64 = 1024;

pub fn judge(scenario: &Scenario, outcome: &GuestOutcome, opts: JudgeOptions) -> Verdict {
    let r = match outcome {
        GuestOutcome::Reported(r) => r,
        GuestOutcome::BadResult(e) => {
            return Verdict { pass: false, tier: "-".into(), records: None, reasons: vec![e.clone()] }
        }
        GuestOutcome::NoResult(why) => {
            return Verdict {
                pass: false,
                tier: "-".into(),
                records: None,
                reasons: vec![format!("no result line: {why}")],
            }
        }
    };
    let mut fail = Vec::new();
    let mut notes = Vec::new();
    if r.scenario != scenario.name {
        fail.push(format!("the guest ran scenario {:?}, not {:?}", r.scenario, scenario.name));
    }

    // The tier: compat-check's top-level "tier" predicts it; `strata run` says what it captured with.
    let run_tier = (!r.run_tier.is_empty()).then_some(r.run_tier.as_str());
    let mut compat_tier: Option<String> = None;
    let mut compat_text = None;
    match r.compat() {
        None if opts.allow_missing_compat_check => {
            notes.push("no compat-check in this strata: tier as reported by `strata run`".into());
        }
        None => fail.push(
            "this strata has no `compat-check` (pass --allow-missing-compat-check to judge by `strata run` alone)"
                .into(),
        ),
        Some(Err(e)) => fail.push(format!("compat-check (exit {}): {e:#}", r.compat_rc)),
        Some(Ok(v)) => {
            // compat-check's exit status grades the node (kernel-compat/SCHEMA.md: 0 full, 10 degraded,
            // 11 unsupported) and the report repeats it as `exit_code`: they must agree. Without that
            // key, 0 and 10 are fine; the tier check below judges the grade.
            match v.get("exit_code").and_then(|c| c.as_i64()) {
                Some(code) if code != r.compat_rc as i64 => {
                    fail.push(format!("compat-check exited {} but its report says exit_code {code}", r.compat_rc))
                }
                Some(_) => {}
                None if r.compat_rc == 0 || r.compat_rc == 10 => {}
                None => fail.push(format!("compat-check exited {}", r.compat_rc)),
            }
            match v.get("tier").and_then(|t| t.as_str()) {
                Some(t) => compat_tier = Some(t.to_string()),
                None => fail.push("compat-check JSON has no top-level string \"tier\"".into()),
            }
            // Why the tier named by the scenario was passed over: the `reasons` of its entry in the
            // report's `rejected` list (`[{tier, reasons: [..]}]`, kernel-compat/SCHEMA.md), and only
            // that tier's: a word found among another tier's reasons proves nothing.
            if let Some(tier) = &scenario.expect_reason_in {
                compat_text = Some(
                    v.get("rejected")
                        .and_then(|r| r.as_array())
                        .and_then(|r| r.iter().find(|e| e.get("tier").and_then(|t| t.as_str()) == Some(tier)))
                        .and_then(|e| e.get("reasons"))
                        .map(|r| r.to_string().to_lowercase())
                        .unwrap_or_default(),
                );
            }
        }
    }

    // Which tier the cell is judged by.
    let (tier, shown) = if scenario.force_tier.is_some() {
        (run_tier.map(str::to_string), run_tier.unwrap_or("unknown").to_string())
    } else if let Some(t) = &compat_tier {
        (Some(t.clone()), t.clone())
    } else {
        (run_tier.map(str::to_string), run_tier.map(|t| format!("{t} (run)")).unwrap_or_else(|| "unknown".into()))
    };
    match &tier {
        Some(t) if *t == scenario.expect_tier => {}
        Some(t) => fail.push(format!("tier {t}, expected {}", scenario.expect_tier)),
        None => fail.push(format!("no tier reported, expected {}", scenario.expect_tier)),
    }
    // Detection predicts, loading decides: when both spoke, they must agree, unless the scenario
    // makes the predicted tier fail to load, and then `strata run` must have fallen back.
    if let Some(expected) = &scenario.expect_run_tier {
        if run_tier != Some(expected.as_str()) {
            fail.push(format!("`strata run` captured with {run_tier:?}, expected a fallback to {expected}"));
        }
        if let Some(phrase) = &scenario.expect_fallback {
            if !r.fallback.to_lowercase().contains(&phrase.to_lowercase()) {
                fail.push(format!("the fallback does not say {phrase:?}: {:?}", r.fallback));
            }
        }
        notes.push(format!("fell back: {}", short_detail(&r.fallback)));
    } else if scenario.force_tier.is_none() {
        if let (Some(c), Some(rt)) = (&compat_tier, run_tier) {
            if c != rt {
                fail.push(format!("compat-check chose {c} but `strata run` captured with {rt}"));
            }
        }
    }
    if let Some(word) = &scenario.expect_reason {
        let tier = scenario.expect_reason_in.as_deref().unwrap_or("?");
        match &compat_text {
            Some(text) if text.contains(&word.to_lowercase()) => {}
            Some(_) => fail.push(format!("the compat report does not give {word:?} as a reason it passed over {tier}")),
            None if opts.allow_missing_compat_check => {
                notes.push(format!("fallback reason ({word:?}) not checked: no compat report"))
            }
            None => {}
        }
    }
    if r.run_rc != 0 {
        fail.push(format!("strata run exited {}: {}", r.run_rc, short_detail(&r.detail)));
    }
    if let Some(phrase) = &scenario.expect_capturing {
        if !r.capturing.contains(phrase.as_str()) {
            fail.push(format!("strata run did not capture with {phrase:?}: {:?}", r.capturing));
        }
    }
    if r.records != EXPECTED_RECORDS {
        fail.push(format!(
            "{} records of GET /index.html, not {EXPECTED_RECORDS} (5 exchanges, both sides; {} JSON lines in all)",
            r.records, r.events
        ));
    }
    // strata's module: gone once strata stopped, and the kernel never complained.
    if scenario.kmod || scenario.kmod_damaged || scenario.cycles > 0 {
        if r.module_left != 0 {
            fail.push("strata's module is still loaded after strata run stopped".into());
        }
        if r.kernel_warnings != 0 {
            fail.push(format!("the kernel logged {} oops/BUG/WARNING lines (see the serial log)", r.kernel_warnings));
        }
    }
    if scenario.cycles > 0 {
        if r.cycles != scenario.cycles || r.cycles_ok != scenario.cycles {
            fail.push(format!("{} of {} load/capture/unload cycles were clean", r.cycles_ok, scenario.cycles));
        }
        // The module's rings are vmalloc'd per run: a leak would grow VmallocUsed by a ring per
        // CPU per cycle. Allow what other kernel activity moves.
        if r.vmalloc_delta_kb > MAX_VMALLOC_DRIFT_KB {
            fail.push(format!("VmallocUsed grew {} kB over the cycles (a leak?)", r.vmalloc_delta_kb));
        }
        // The killed agent must really have left its module (else the first cycle proved nothing).
        if r.crash_left != 1 {
            fail.push(format!("an agent killed while capturing left {} modules loaded, expected 1", r.crash_left));
        }
        notes.push(format!(
            "a killed agent's module replaced; {} clean load/unload cycles, VmallocUsed moved {} kB",
            r.cycles_ok, r.vmalloc_delta_kb
        ));
    }
    if scenario.cost {
        if r.base_cs == 0 || r.captured_cs == 0 {
            fail.push("the cost measurement did not run".into());
        } else {
            notes.push(format!(
                "200 requests: {:.2} s uncaptured, {:.2} s captured ({:.2}x)",
                r.base_cs as f64 / 100.0,
                r.captured_cs as f64 / 100.0,
                r.captured_cs as f64 / r.base_cs as f64
            ));
        }
    }
    let pass = fail.is_empty();
    Verdict { pass, tier: shown, records: Some(r.records), reasons: if pass { notes } else { fail } }
}

/// The guest's detail line without env_logger's `[time LEVEL]` prefix, cut for the table (the serial
/// log has it whole).
pub fn short_detail(d: &str) -> String {
    const MAX: usize = 160;
    let d = d.trim();
    let d = match d.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((_, rest)) => rest.trim(),
        None => d,
    };
    if d.chars().count() > MAX {
        format!("{}...", d.chars().take(MAX).collect::<String>())
    } else {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn detail_is_shortened_for_the_table() {
        assert_eq!(super::short_detail("[2026-11-27T00:32:03Z ERROR] the verifier said no "), "the verifier said no");
        let long = "x".repeat(500);
        assert_eq!(super::short_detail(&long).len(), 163);
    }

    use super::*;

    fn scenario(name: &str, expect: &str) -> Scenario {
        Scenario::plain(name, expect)
    }

    fn reported(scenario: &str, compat: Option<&str>, run_tier: &str, records: u64) -> GuestOutcome {
        GuestOutcome::Reported(Box::new(GuestResult {
            v: 1,
            scenario: scenario.into(),
            kernel: "6.1.0-50-amd64".into(),
            btf: "present".into(),
            bpffs: "yes".into(),
            bpf_errno: 22,
            compat_check: if compat.is_some() { "ran" } else { "missing" }.into(),
            compat_rc: if compat.is_some() { 0 } else { -1 },
            compat_b64: compat.map(b64).unwrap_or_default(),
            run_tier: run_tier.into(),
            run_rc: 0,
            records,
            events: records * 3,
            detail: String::new(),
            capturing: format!("capturing: tier {run_tier} (CO-RE probes relocated with the kernel BTF, ring buffer)"),
            fallback: String::new(),
            module_left: 0,
            kernel_warnings: 0,
            cycles: 0,
            cycles_ok: 0,
            vmalloc_delta_kb: 0,
            crash_left: 0,
            base_cs: 0,
            captured_cs: 0,
        }))
    }

    fn b64(s: &str) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in s.as_bytes().chunks(3) {
            let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    const STRICT: JudgeOptions = JudgeOptions { allow_missing_compat_check: false };
    const LENIENT: JudgeOptions = JudgeOptions { allow_missing_compat_check: true };

    #[test]
    fn matching_tier_with_records_passes() {
        let v = judge(
            &scenario("native-btf", "core"),
            &reported("native-btf", Some(r#"{"tier":"core"}"#), "core", 10),
            STRICT,
        );
        assert!(v.pass, "{v:?}");
        assert_eq!(v.tier, "core");
        assert_eq!(v.records, Some(10));
    }

    #[test]
    fn wrong_expected_tier_fails() {
        let v = judge(
            &scenario("native-btf", "core"),
            &reported("native-btf", Some(r#"{"tier":"perf-event"}"#), "perf-event", 10),
            STRICT,
        );
        assert!(!v.pass);
        assert!(v.reasons.iter().any(|r| r.contains("tier perf-event, expected core")), "{v:?}");
    }

    #[test]
    fn every_exchange_must_be_recorded_not_just_one() {
        for n in [0, 1, 9, 11] {
            let v = judge(
                &scenario("native-btf", "core"),
                &reported("native-btf", Some(r#"{"tier":"core"}"#), "core", n),
                STRICT,
            );
            assert!(!v.pass, "{n} records");
            assert!(v.reasons.iter().any(|r| r.contains(&format!("{n} records of GET /index.html, not 10"))), "{v:?}");
        }
    }

    #[test]
    fn the_capturing_line_must_name_the_transport() {
        let mut s = scenario("core-perf-buffer", "core");
        s.expect_capturing = Some("perf buffer".into());
        let ring = reported("core-perf-buffer", Some(r#"{"tier":"core"}"#), "core", 10);
        let v = judge(&s, &ring, STRICT);
        assert!(!v.pass && v.reasons.iter().any(|r| r.contains("perf buffer")), "{v:?}");
        let perf = match ring {
            GuestOutcome::Reported(mut r) => {
                r.capturing = r.capturing.replace("ring buffer", "perf buffer");
                GuestOutcome::Reported(r)
            }
            o => o,
        };
        assert!(judge(&s, &perf, STRICT).pass);
    }

    #[test]
    fn no_result_line_fails() {
        for why in ["timeout after 180 s", "Kernel panic - not syncing: VFS", "QEMU exited (status 1)"] {
            let v = judge(&scenario("native-btf", "core"), &GuestOutcome::NoResult(why.into()), LENIENT);
            assert!(!v.pass);
            assert_eq!(v.records, None);
            assert!(v.reasons[0].contains(why));
        }
        let v = judge(&scenario("native-btf", "core"), &GuestOutcome::BadResult("unparseable".into()), LENIENT);
        assert!(!v.pass);
    }

    #[test]
    fn missing_compat_check_fails_unless_allowed() {
        let o = reported("native-btf", None, "core", 10);
        let strict = judge(&scenario("native-btf", "core"), &o, STRICT);
        assert!(!strict.pass);
        assert!(strict.reasons[0].contains("--allow-missing-compat-check"));
        let lenient = judge(&scenario("native-btf", "core"), &o, LENIENT);
        assert!(lenient.pass, "{lenient:?}");
        assert_eq!(lenient.tier, "core (run)");
        // Lenient still checks the tier `strata run` reported.
        let wrong = judge(&scenario("bpf-less", "perf-event"), &reported("bpf-less", None, "core", 10), LENIENT);
        assert!(!wrong.pass);
        let none = judge(&scenario("bpf-less", "perf-event"), &reported("bpf-less", None, "", 10), LENIENT);
        assert!(!none.pass);
        assert_eq!(none.tier, "unknown");
    }

    #[test]
    fn prediction_and_capture_must_agree() {
        let v = judge(
            &scenario("native-btf", "core"),
            &reported("native-btf", Some(r#"{"tier":"core"}"#), "perf-event", 10),
            STRICT,
        );
        assert!(!v.pass);
        assert!(v.reasons.iter().any(|r| r.contains("captured with perf-event")));
    }

    #[test]
    fn forced_tier_is_judged_by_run() {
        let mut s = scenario("perf-event-forced", "perf-event");
        s.force_tier = Some("perf-event".into());
        let v = judge(&s, &reported("perf-event-forced", Some(r#"{"tier":"core"}"#), "perf-event", 10), STRICT);
        assert!(v.pass, "{v:?}");
        assert_eq!(v.tier, "perf-event");
    }

    #[test]
    fn fallback_must_say_why() {
        let mut s = scenario("hidden-btf", "perf-event");
        s.hide_btf = true;
        s.expect_reason = Some("btf".into());
        s.expect_reason_in = Some("core".into());
        let why = r#"{"tier":"perf-event","exit_code":10,"rejected":[{"tier":"core","reasons":["kernel BTF missing: /sys/kernel/btf/vmlinux not found"]}]}"#;
        let with_rc10 = |o: GuestOutcome| match o {
            GuestOutcome::Reported(mut r) => {
                r.compat_rc = 10;
                GuestOutcome::Reported(r)
            }
            o => o,
        };
        assert!(judge(&s, &with_rc10(reported("hidden-btf", Some(why), "perf-event", 10)), STRICT).pass);
        // A tier named archived-btf in the list is not a reason.
        let named = r#"{"tier":"perf-event","rejected":[{"tier":"archived-btf","reasons":["no archive reachable"]}]}"#;
        assert!(!judge(&s, &reported("hidden-btf", Some(named), "perf-event", 10), STRICT).pass);
        // The word among another tier's reasons does not count: core's must say it.
        let other = r#"{"tier":"perf-event","rejected":[{"tier":"core","reasons":["tracefs is not mounted"]},{"tier":"archived-btf","reasons":["needs a BTF archive"]}]}"#;
        assert!(!judge(&s, &with_rc10(reported("hidden-btf", Some(other), "perf-event", 10)), STRICT).pass);
        // BTF mentioned elsewhere in the report (its facts) does not count: the rejection must say it.
        let silent = r#"{"tier":"perf-event","facts":{"btf":"none"},"rejected":[]}"#;
        let v = judge(&s, &reported("hidden-btf", Some(silent), "perf-event", 10), STRICT);
        assert!(!v.pass);
        assert!(v.reasons.iter().any(|r| r.contains("as a reason it passed over core")), "{v:?}");
    }

    #[test]
    fn compat_check_that_is_not_json_fails() {
        let o = match reported("native-btf", Some("x"), "core", 10) {
            GuestOutcome::Reported(mut r) => {
                r.compat_b64 = b64("error: no such thing");
                GuestOutcome::Reported(r)
            }
            o => o,
        };
        assert!(!judge(&scenario("native-btf", "core"), &o, LENIENT).pass);
    }

    #[test]
    fn degraded_exit_code_is_not_a_failure() {
        // kernel-compat/SCHEMA.md: compat-check exits 10 for a degraded tier (perf-event).
        let s = scenario("bpf-less", "perf-event");
        let with_rc = |rc: i32, report: &str| match reported("bpf-less", Some(report), "perf-event", 10) {
            GuestOutcome::Reported(mut r) => {
                r.compat_rc = rc;
                GuestOutcome::Reported(r)
            }
            o => o,
        };
        let report = r#"{"tier":"perf-event","exit_code":10,"rejected":[]}"#;
        assert!(judge(&s, &with_rc(10, report), STRICT).pass);
        assert!(!judge(&s, &with_rc(0, report), STRICT).pass, "exit status and exit_code disagree");
        assert!(judge(&s, &with_rc(10, r#"{"tier":"perf-event"}"#), STRICT).pass);
        assert!(!judge(&s, &with_rc(1, r#"{"tier":"perf-event"}"#), STRICT).pass);
    }

    #[test]
    fn failed_run_fails() {
        let o = match reported("native-btf", Some(r#"{"tier":"core"}"#), "core", 10) {
            GuestOutcome::Reported(mut r) => {
                r.run_rc = 3;
                r.detail = "no BTF".into();
                GuestOutcome::Reported(r)
            }
            o => o,
        };
        let v = judge(&scenario("native-btf", "core"), &o, STRICT);
        assert!(!v.pass);
        assert!(v.reasons.iter().any(|r| r.contains("exited 3: no BTF")));
    }
}
