//! The Markdown summary from a finished run's results: tables, the Mermaid edge graph
//! and the edge table, checked line by line.

use harness::report::summary;
use harness::runner::record::{RunRecord, StepRecord, StepStatus};
use harness::verdict::{EdgeRow, Evidence, Judged, Judgement, Padlock, Timing, Verdict};
use std::time::Duration;

fn step(slug: &str, outcome: &str, status: StepStatus, edges: Vec<EdgeRow>) -> StepRecord {
    let mut evidence = Evidence::new("every edge as expected after 31.0 s");
    evidence.edges = edges;
    StepRecord {
        suite: "mesh".into(),
        slug: slug.into(),
        title: String::new(),
        outcome: Some(outcome.into()),
        status,
        duration: Duration::from_millis(31_500),
        log: vec![],
        expectations: vec![Judged {
            description: "telemetry".into(),
            judgement: Judgement {
                verdict: Verdict::Passed,
                evidence,
                elapsed: Duration::from_secs(31),
            },
        }],
        diagnostics: None,
        istio_version: Some("1.31.2".into()),
        timing: Timing::default(),
    }
}

fn edge(
    from: &str,
    to: &str,
    mtls: f64,
    plain: f64,
    expected: bool,
    proxy: Option<bool>,
) -> EdgeRow {
    EdgeRow {
        from: from.into(),
        to: to.into(),
        mutual_tls: mtls,
        plaintext: plain,
        other: 0.0,
        errors: 0.0,
        expected: Padlock::expected(expected),
        padlock: if mtls + plain == 0.0 {
            Padlock::NoTraffic
        } else if mtls > 0.0 {
            Padlock::Present
        } else {
            Padlock::Absent
        },
        proxy_config_mtls: proxy,
    }
}

/// Splits a Markdown table row into cells, honouring `\|` escapes.
fn cells(row: &str) -> Vec<String> {
    let inner = row
        .trim()
        .strip_prefix('|')
        .and_then(|r| r.strip_suffix('|'))
        .expect("a table row");
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

fn record() -> RunRecord {
    let mut record = RunRecord::default();
    record.properties.istio_version = "1.31.2".into();
    record.push_step(
        "mesh",
        step("01-no-sidecars", "O1", StepStatus::Passed, vec![]),
    );
    record.push_step(
        "mesh",
        step(
            "03-strict-partial-injection",
            "O3",
            StepStatus::Failed { message: "traffic fails: expected 20 consecutive http-500, saw 17 | codes: 500×17,\n200×3".into() },
            vec![],
        ),
    );
    record.push_step(
        "mesh",
        step(
            "04-permissive-restores",
            "O4",
            StepStatus::Ignored {
                reason: "mesh::03-strict-partial-injection did not pass".into(),
            },
            vec![],
        ),
    );
    record.push_step(
        "mesh",
        step(
            "06-destination-rule-subsets",
            "O6",
            StepStatus::Passed,
            vec![
                edge("sentences", "name", 0.0, 21.0, false, Some(false)),
                edge("sentences", "name-v2", 19.0, 0.0, true, Some(true)),
            ],
        ),
    );
    record
}

#[test]
fn suite_tables_have_one_row_per_step_with_four_cells() {
    let md = summary::render(&record());
    let lines: Vec<&str> = md.lines().collect();
    let header = lines
        .iter()
        .position(|l| *l == "| step | verdict | evidence | time |")
        .expect("suite table");
    assert_eq!(lines[header - 2], "### mesh");
    let rows: Vec<Vec<String>> = lines[header + 2..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .map(|l| cells(l))
        .collect();
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert_eq!(row.len(), 4, "{row:?}");
        assert_eq!(row[3], "31.5 s");
    }
    assert_eq!(rows[0][0], "01-no-sidecars (O1)");
    assert_eq!(rows[0][1], "✅ passed");
    assert_eq!(rows[1][1], "❌ failed");
    assert_eq!(
        rows[1][2],
        "traffic fails: expected 20 consecutive http-500, saw 17 | codes: 500×17, 200×3",
        "one line, pipe kept as text"
    );
    assert_eq!(rows[2][1], "⏭️ ignored");
    assert_eq!(rows[2][2], "mesh::03-strict-partial-injection did not pass");
}

#[test]
fn the_edge_graph_shows_padlocks_as_kiali_would_and_the_table_repeats_it() {
    let md = summary::render(&record());
    assert!(md.contains("#### mesh::06-destination-rule-subsets — mTLS per edge"));
    let start = md.find("```mermaid\n").expect("a mermaid block");
    let block: Vec<&str> = md[start..]
        .lines()
        .skip(1)
        .take_while(|l| *l != "```")
        .collect();
    assert_eq!(block[0], "flowchart LR");
    assert_eq!(
        block[1],
        r#"  n_sentences["sentences"] -- "🔓 no mTLS" --> n_name["name"]"#
    );
    assert_eq!(
        block[2],
        r#"  n_sentences["sentences"] -- "🔒 mTLS" --> n_name_v2["name-v2"]"#
    );
    assert_eq!(block.len(), 3, "one line per edge");
    let table: Vec<Vec<String>> = md
        .lines()
        .skip_while(|l| !l.starts_with("| edge |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(cells)
        .collect();
    assert_eq!(
        table[0],
        [
            "sentences → name",
            "21",
            "0",
            "21",
            "0",
            "🔓 no mTLS",
            "🔓 plaintext only",
            "plaintext"
        ]
    );
    assert_eq!(
        table[1],
        [
            "sentences → name-v2",
            "19",
            "19",
            "0",
            "0",
            "🔒 mTLS",
            "🔒 mTLS only",
            "mTLS"
        ]
    );
}

#[test]
fn a_wrong_edge_says_what_was_expected_in_the_graph() {
    let rows = vec![edge("sentences", "name", 5.0, 16.0, false, Some(false))];
    let graph = summary::mermaid(&rows);
    assert!(
        graph.contains(r#"-- "🔒 mTLS (expected no mTLS)" -->"#),
        "{graph}"
    );
    // Kiali shows error rates on edges; so does the graph.
    let mut failing = edge("istio-ingressgateway", "sentences", 0.0, 20.0, false, None);
    failing.errors = 20.0;
    let graph = summary::mermaid(&[failing]);
    assert!(
        graph.contains(r#"-- "🔓 no mTLS, 100 % errors" -->"#),
        "{graph}"
    );
}

#[test]
fn the_summary_is_written_and_appended_to_the_step_summary() {
    let dir = tempfile::tempdir().unwrap();
    let step_summary = dir.path().join("step-summary.md");
    std::fs::write(&step_summary, "earlier step\n").unwrap();
    summary::write(&record(), dir.path(), Some(&step_summary)).unwrap();
    let written = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        written.starts_with(
            "## Istio mTLS conformance — failed: 3 of 4 steps ran (2 passed, 1 failed, 0 errors, 1 not run)\n"
        ),
        "{written}"
    );
    let appended = std::fs::read_to_string(&step_summary).unwrap();
    assert!(
        appended.starts_with("earlier step\n## Istio mTLS conformance"),
        "appended, not replaced"
    );
}

#[test]
fn the_summary_ends_with_where_the_time_went_and_the_critical_path() {
    use harness::runner::record::PhaseTime;
    let mut record = record();
    let phase = |name: &str, group: Option<&str>, secs: u64| PhaseTime {
        name: name.into(),
        group: group.map(str::to_string),
        elapsed: Duration::from_secs(secs),
    };
    record.setup_phases = vec![
        phase("preflight: Docker", None, 1),
        phase("create the kind cluster", Some("cluster"), 60),
        phase("download the Istio release", Some("cluster"), 12),
        phase("istioctl install", Some("install"), 40),
        phase("apply the Prometheus addon", Some("install"), 2),
        // Recorded when it ended, after a phase of another group: still one row with
        // its own group.
        phase("istiod, the ingress gateway and Prometheus ready", None, 9),
        phase("download the Istio release, again", Some("cluster"), 3),
        // Nothing waits for it: shown, off the critical path.
        phase("pre-pull images onto the node", Some("background"), 45),
    ];
    let md = summary::render(&record);
    let budget = &md[md.find("### Where the time went").expect("a time budget")..];
    let rows: Vec<Vec<String>> = budget
        .lines()
        .skip(4)
        .take_while(|l| l.starts_with('|'))
        .map(cells)
        .collect();
    assert_eq!(rows[0], ["setup: preflight: Docker", "1.0 s", "✔"]);
    assert_eq!(
        rows[1],
        [
            "setup, at the same time: create the kind cluster 60.0 s ∥ download the Istio release 12.0 s ∥ download the Istio release, again 3.0 s",
            "60.0 s",
            "✔ create the kind cluster"
        ]
    );
    assert_eq!(
        rows[2],
        [
            "setup, at the same time: istioctl install 40.0 s ∥ apply the Prometheus addon 2.0 s",
            "40.0 s",
            "✔ istioctl install"
        ]
    );
    assert_eq!(
        rows[3],
        [
            "setup: istiod, the ingress gateway and Prometheus ready",
            "9.0 s",
            "✔"
        ]
    );
    assert!(
        rows[4][0].starts_with("mesh::01-no-sidecars (actions "),
        "{:?}",
        rows[4]
    );
    assert_eq!(
        rows[rows.len() - 2],
        [
            "setup, in the background: pre-pull images onto the node",
            "45.0 s",
            "no (nothing waits for it)"
        ]
    );
    let total = rows.last().unwrap();
    // 1 + 60 + 40 + 9 of setup, and four steps of 31.5 s each; not the pre-pull.
    assert_eq!(total[0], "**critical path**");
    assert_eq!(total[1], "**236.0 s**");
}
