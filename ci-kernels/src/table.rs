//! The matrix table: kernel × scenario → tier, records, pass/fail, seconds. Pure.

use crate::judge::Verdict;

pub struct Row {
    pub kernel: String,
    pub scenario: String,
    pub verdict: Verdict,
    pub secs: f64,
}

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const RESET: &str = "\x1b[0m";

/// Renders the table; `color` paints PASS green and FAIL red (the whole result cell).
pub fn render(rows: &[Row], color: bool) -> String {
    let header = ["kernel", "scenario", "tier", "records", "result", "secs", "detail"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.kernel.clone(),
                r.scenario.clone(),
                r.verdict.tier.clone(),
                r.verdict.records.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                if r.verdict.pass { "PASS" } else { "FAIL" }.to_string(),
                format!("{:.1}", r.secs),
                r.verdict.reasons.join("; "),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c.iter()).take(6) {
            *w = (*w).max(s.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, c: &[String; 7], paint: Option<&str>| {
        for (i, s) in c.iter().enumerate() {
            if i == 6 {
                out.push_str(s);
                break;
            }
            let padded = format!("{s:<w$}", w = width[i]);
            match (i, paint) {
                (4, Some(p)) => out.push_str(&format!("{p}{padded}{RESET}")),
                _ => out.push_str(&padded),
            }
            out.push_str("  ");
        }
        while out.ends_with(' ') {
            out.pop();
        }
        out.push('\n');
    };
    line(&mut out, &header.map(String::from), None);
    let rule: [String; 7] = std::array::from_fn(|i| "-".repeat(if i == 6 { 6 } else { width[i] }));
    line(&mut out, &rule, None);
    for (c, r) in cells.iter().zip(rows) {
        let paint = color.then_some(if r.verdict.pass { GREEN } else { RED });
        line(&mut out, c, paint);
    }
    let failed = rows.iter().filter(|r| !r.verdict.pass).count();
    out.push_str(&format!("{} cells, {} passed, {} failed\n", rows.len(), rows.len() - failed, failed));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kernel: &str, pass: bool) -> Row {
        Row {
            kernel: kernel.into(),
            scenario: "native-btf".into(),
            verdict: Verdict {
                pass,
                tier: "core".into(),
                records: if pass { Some(10) } else { None },
                reasons: if pass { vec![] } else { vec!["no result line: timeout after 180 s".into()] },
            },
            secs: 12.34,
        }
    }

    #[test]
    fn renders_aligned_columns_and_a_summary() {
        let t = render(&[row("debian-6.1", true), row("debian-5.10", false)], false);
        let lines: Vec<_> = t.lines().collect();
        assert!(lines[0].starts_with("kernel       scenario    tier  records  result  secs  detail"), "{t}");
        assert!(lines[2].contains("PASS") && lines[2].contains("12.3"));
        assert!(lines[3].contains("FAIL") && lines[3].contains("timeout after 180 s"));
        assert!(lines[3].contains("  -  "), "records of a guest that never reported: {t}");
        assert_eq!(lines[4], "2 cells, 1 passed, 1 failed");
    }

    #[test]
    fn failing_cell_is_red_passing_is_green() {
        let t = render(&[row("a", true), row("b", false)], true);
        assert!(t.contains("\x1b[32mPASS"));
        assert!(t.contains("\x1b[31mFAIL"));
        assert!(!render(&[row("b", false)], false).contains('\x1b'));
    }
}
