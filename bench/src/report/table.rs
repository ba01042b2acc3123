//! The summary table printed at the end of a run (and embedded in the HTML report).

use super::BenchReport;
use crate::stats::{LatencySummary, Throughput};
use std::fmt::Write as _;

/// Column titles; latency columns are milliseconds.
pub const COLUMNS: [&str; 15] = [
    "actor", "messages", "MB/s", "msg/s", "p50", "p90", "p95", "p99", "p99.9", "p99.99", "min",
    "max", "mean", "std-dev", "(ms)",
];

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// One row: name, throughput and latency cells.
pub fn row(name: &str, t: &Throughput, l: &LatencySummary, what: &str) -> Vec<String> {
    let mut cells = vec![
        name.to_string(),
        t.messages.to_string(),
        format!("{:.2}", t.mb_per_sec),
        format!("{:.0}", t.messages_per_sec),
    ];
    cells.extend(l.ladder().iter().map(|(_, v)| ms(*v)));
    cells.extend([
        ms(l.min_us),
        ms(l.max_us),
        format!("{:.3}", l.mean_us / 1000.0),
        format!("{:.3}", l.std_dev_us / 1000.0),
    ]);
    cells.push(what.to_string());
    cells
}

/// All rows of the report: one per group total, one per actor, one per end-to-end figure.
pub fn rows(report: &BenchReport) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for g in &report.groups {
        let name = format!("all {}s ({})", g.actor.label(), g.actors);
        out.push(row(&name, &g.throughput, &g.latency, "request"));
        if let Some(e2e) = &g.end_to_end {
            out.push(row(
                &format!("all {}s end-to-end", g.actor.label()),
                &g.throughput,
                e2e,
                "end-to-end",
            ));
        }
    }
    for a in &report.actors {
        out.push(row(
            &format!("{} {}", a.actor.label(), a.id),
            &a.throughput,
            &a.latency,
            "request",
        ));
    }
    out
}

/// Renders the table as aligned plain text.
pub fn render(report: &BenchReport) -> String {
    let rows = rows(report);
    let mut widths: Vec<usize> = COLUMNS.iter().map(|c| c.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "{}", report.title());
    let line = |out: &mut String, cells: &[String]| {
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let _ = if i == 0 {
                write!(out, "{cell:<w$}  ")
            } else {
                write!(out, "{cell:>w$}  ")
            };
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    };
    line(&mut out, &COLUMNS.map(String::from));
    for r in &rows {
        line(&mut out, r);
    }
    let _ = writeln!(
        out,
        "messages sent: {}, received: {}",
        report.messages_sent, report.messages_received
    );
    // One machine-readable line per group, for scripts (scripts/bench.sh reads these with awk).
    for g in &report.groups {
        let _ = writeln!(
            out,
            "summary: {} mb_per_sec={:.2} msg_per_sec={:.0} p50_us={} p99_us={} p999_us={} messages={}",
            g.actor.label().replace(' ', "_"),
            g.throughput.mb_per_sec,
            g.throughput.messages_per_sec,
            g.latency.p50_us,
            g.latency.p99_us,
            g.latency.p999_us,
            g.throughput.messages
        );
    }
    if let Some(v) = &report.verify {
        let verdict = if v.passed() { "PASSED" } else { "FAILED" };
        let _ = writeln!(
            out,
            "verify: {verdict} — {} checked, {} unique of {} expected, {} mismatches",
            v.messages_checked, v.messages_unique, v.messages_expected, v.mismatches
        );
        for e in &v.examples {
            let _ = writeln!(out, "  {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

    #[test]
    fn table_has_a_row_per_group_and_actor() {
        let r = sample_report();
        let text = render(&r);
        assert!(text.contains("all producers (2)"), "{text}");
        assert!(text.contains("all consumers end-to-end"), "{text}");
        assert!(text.contains("producer 1"));
        assert!(text.contains("p99.99"));
        assert!(text.contains("summary: producer mb_per_sec="), "{text}");
        assert!(text.contains("summary: consumer mb_per_sec="), "{text}");
        assert!(text.contains("verify: PASSED"), "{text}");
        // 2 group rows + 1 end-to-end + 3 actors.
        assert_eq!(rows(&r).len(), 6);
        assert!(rows(&r).iter().all(|r| r.len() == COLUMNS.len()));
    }
}
