//! A self-contained HTML report: run parameters, the summary table, the three charts inline (SVG)
//! and links to their PNG copies.

use super::{
    charts, table, BenchReport, ReportError, LATENCY_DISTRIBUTION_PNG, LATENCY_PERCENTILES_PNG,
    THROUGHPUT_PNG,
};
use std::fmt::Write as _;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders the whole report page.
///
/// # Errors
/// [`ReportError::Chart`] when a chart cannot be drawn.
pub fn render(report: &BenchReport) -> Result<String, ReportError> {
    let svgs = charts::render_svgs(report)?;
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"
    );
    let _ = writeln!(h, "<title>{}</title>", escape(&report.title()));
    let _ = writeln!(
        h,
        "<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}td:first-child{{text-align:left}}\
         .fail{{color:#b00;font-weight:bold}}.pass{{color:#080;font-weight:bold}}svg{{max-width:100%;height:auto}}</style>"
    );
    let _ = writeln!(
        h,
        "</head>\n<body>\n<h1>riptide-bench: {}</h1>",
        escape(report.config.mode.name())
    );
    let _ = writeln!(h, "<p>{}</p>", escape(&report.title()));
    for (label, value) in [
        ("identifier", &report.identifier),
        ("remark", &report.remark),
        ("git ref", &report.gitref),
        ("git ref date", &report.gitref_date),
    ] {
        if let Some(v) = value {
            let _ = writeln!(h, "<p><b>{label}:</b> {}</p>", escape(v));
        }
    }
    write_table(&mut h, report);
    write_verify(&mut h, report);
    let pngs = [
        THROUGHPUT_PNG,
        LATENCY_PERCENTILES_PNG,
        LATENCY_DISTRIBUTION_PNG,
    ];
    for (svg, png) in svgs.iter().zip(pngs) {
        let _ = writeln!(
            h,
            "<figure>\n{svg}\n<figcaption><a href=\"{png}\">{png}</a></figcaption>\n</figure>"
        );
    }
    let _ = writeln!(h, "</body>\n</html>");
    Ok(h)
}

fn write_table(h: &mut String, report: &BenchReport) {
    let _ = writeln!(h, "<h2>Summary (latency in ms)</h2>\n<table>\n<tr>");
    for c in table::COLUMNS {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    let _ = writeln!(h, "</tr>");
    for r in table::rows(report) {
        let _ = write!(h, "<tr>");
        for cell in r {
            let _ = write!(h, "<td>{}</td>", escape(&cell));
        }
        let _ = writeln!(h, "</tr>");
    }
    let _ = writeln!(
        h,
        "</table>\n<p>messages sent: {}, received: {}</p>",
        report.messages_sent, report.messages_received
    );
}

fn write_verify(h: &mut String, report: &BenchReport) {
    let Some(v) = &report.verify else { return };
    let (class, verdict) = if v.passed() {
        ("pass", "PASSED")
    } else {
        ("fail", "FAILED")
    };
    let _ = writeln!(
        h,
        "<p class=\"{class}\">verification {verdict}: {} checked, {} unique of {} expected, {} mismatches</p>",
        v.messages_checked, v.messages_unique, v.messages_expected, v.mismatches
    );
    if !v.examples.is_empty() {
        let _ = writeln!(h, "<ul>");
        for e in &v.examples {
            let _ = writeln!(h, "<li>{}</li>", escape(e));
        }
        let _ = writeln!(h, "</ul>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn remark_is_escaped_in_the_page() {
        let mut r = crate::report::tests::sample_report();
        r.remark = Some("<script>alert(1)</script>".into());
        let page = render(&r).unwrap();
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;"));
    }
}
