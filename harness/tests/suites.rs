//! The embedded suites load and say what SPEC §3 says, in order; malformed suite files
//! are refused with file:line:column.

use harness::suite::source::SuiteSource;
use harness::suite::{self, Action, Expectation, SuiteError};
use std::path::PathBuf;

fn embedded_with(path: &str, text: &str) -> SuiteSource {
    let mut source = SuiteSource::embedded();
    source.files.insert(PathBuf::from(path), text.to_string());
    source
}

fn mesh_with(replace: &str, with: &str) -> SuiteSource {
    let original = SuiteSource::embedded().files[&PathBuf::from("mesh/suite.yaml")].clone();
    assert!(
        original.contains(replace),
        "fixture text `{replace}` not in mesh/suite.yaml"
    );
    embedded_with("mesh/suite.yaml", &original.replacen(replace, with, 1))
}

fn load_err(source: &SuiteSource) -> SuiteError {
    suite::load(source).expect_err("the mutated suite must be refused")
}

/// Line and column of the first occurrence of `needle` in a file of the embedded suites
/// after `source` mutated it.
fn position(source: &SuiteSource, path: &str, needle: &str) -> (u64, u64) {
    let text = &source.files[&PathBuf::from(path)];
    for (i, line) in text.lines().enumerate() {
        if let Some(col) = line.find(needle) {
            return (i as u64 + 1, col as u64 + 1);
        }
    }
    panic!("{needle} not in {path}");
}

#[test]
fn embedded_suites_load_in_run_order() {
    let catalog = suite::load(&SuiteSource::embedded()).unwrap();
    assert_eq!(catalog.names(), ["mesh", "ingress"]);
    let names: Vec<String> = catalog
        .suites
        .iter()
        .flat_map(|s| s.steps.iter().map(|st| st.trial_name()))
        .collect();
    assert_eq!(
        names,
        [
            "mesh::01-no-sidecars",
            "mesh::02-strict-without-sidecars",
            "mesh::03-strict-partial-injection",
            "mesh::04-permissive-restores",
            "mesh::05-full-injection-strict",
            "mesh::06-destination-rule-subsets",
            "ingress::01-app-with-sidecars",
            "ingress::02-mutual-gateway-accepts-client-certificate",
            "ingress::03-rejects-client-without-certificate",
            "ingress::04-rejects-untrusted-client-certificate",
        ]
    );
    let outcomes: Vec<&str> = catalog
        .suites
        .iter()
        .flat_map(|s| s.steps.iter().filter_map(|st| st.outcome.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        ["O1", "O2", "O3", "O4", "O5", "O6", "O7", "O8", "O9"]
    );
}

#[test]
fn mesh_steps_expect_what_spec_section_3_documents() {
    let catalog = suite::load(&SuiteSource::embedded()).unwrap();
    let mesh = &catalog.suites[0];
    let kinds = |i: usize| -> Vec<String> {
        mesh.steps[i]
            .expect
            .iter()
            .map(|e| format!("{e}"))
            .collect()
    };
    // O1: no sidecar anywhere, traffic flows.
    assert!(
        matches!(&mesh.steps[0].expect[0], Expectation::Sidecars(s) if s.present.is_empty() && s.absent.len() == 4)
    );
    assert!(matches!(mesh.steps[0].expect[1], Expectation::Flows(_)));
    // O2: a hold window, not a single request.
    assert!(
        matches!(&mesh.steps[1].expect[0], Expectation::Holds(h) if h.window.0.as_secs() >= 20)
    );
    // O3: only age injected, then the frontend's 500 on every request over a window.
    assert!(
        matches!(&mesh.steps[2].actions[0], Action::Inject(i) if i.sidecar && i.workloads.len() == 1 && i.workloads[0].value == "age")
    );
    assert!(
        matches!(&mesh.steps[2].expect[1], Expectation::Fails(f) if f.class.value.to_string() == "http-500" && f.consecutive >= 10 && f.window.0.as_secs() >= 10)
    );
    // O4: traffic restored.
    assert!(matches!(mesh.steps[3].expect[0], Expectation::Flows(_)));
    // O5: padlock on every edge; O6: none for v1, one for v2.
    assert!(
        kinds(4)
            .iter()
            .any(|k| k.contains("istio-ingressgateway → sentences all mTLS"))
    );
    let o6 = kinds(5).join("\n");
    assert!(
        o6.contains("sentences → name all plaintext")
            && o6.contains("sentences → name-v2 all mTLS"),
        "{o6}"
    );
    assert!(
        o6.contains("answered by each of name, name-v2"),
        "both subsets must answer: {o6}"
    );
    assert!(
        o6.contains("name/name-v1 plaintext"),
        "O6 checks the proxy config first: {o6}"
    );
}

#[test]
fn ingress_negative_checks_follow_a_positive_control() {
    let catalog = suite::load(&SuiteSource::embedded()).unwrap();
    let ingress = &catalog.suites[1];
    for step in &ingress.steps[2..] {
        assert!(
            matches!(step.expect[0], Expectation::TlsAccepts(_)),
            "{}",
            step.trial_name()
        );
        assert!(
            matches!(step.expect[1], Expectation::TlsRejects(_)),
            "{}",
            step.trial_name()
        );
    }
    assert!(ingress.manifests["tls-secret"].uses_pki);
}

#[test]
fn unknown_field_names_file_line_and_column() {
    let source = mesh_with(
        "    title: PERMISSIVE restores traffic\n",
        "    title: PERMISSIVE restores traffic\n    colour: blue\n",
    );
    let err = load_err(&source);
    assert_eq!(err.file, "suites/mesh/suite.yaml");
    assert_eq!(
        (err.line, err.column),
        (position(&source, "mesh/suite.yaml", "colour"),).0
    );
    assert!(err.message.contains("colour"), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("suites/mesh/suite.yaml:{}:", err.line)),
        "{err}"
    );
}

#[test]
fn wrong_type_names_file_line_and_column() {
    let source = mesh_with(
        "      - flows: { consecutive: 10 }\n      # Kiali",
        "      - flows: { consecutive: ten }\n      # Kiali",
    );
    let err = load_err(&source);
    assert_eq!(err.file, "suites/mesh/suite.yaml");
    let (line, _) = position(&source, "mesh/suite.yaml", "consecutive: ten");
    assert_eq!(err.line, line, "{err}");
    assert!(err.column > 1, "{err}");
}

#[test]
fn bad_duration_and_unknown_result_class_are_refused() {
    let err = load_err(&mesh_with("window: 20s", "window: twenty"));
    assert!(err.message.contains("not a duration"), "{err}");
    let err = load_err(&mesh_with("class: http-500", "class: http-5000"));
    assert!(err.message.contains("unknown result class"), "{err}");
}

#[test]
fn missing_manifest_points_at_the_reference() {
    let source = mesh_with("apply: [peer-auth-strict]", "apply: [peer-auth-strickt]");
    let err = load_err(&source);
    let (line, column) = position(&source, "mesh/suite.yaml", "peer-auth-strickt");
    assert_eq!(
        (err.file.as_str(), err.line, err.column),
        ("suites/mesh/suite.yaml", line, column),
        "{err}"
    );
    assert!(
        err.message
            .contains("suites/mesh/manifests/peer-auth-strickt.yaml"),
        "{err}"
    );
}

#[test]
fn unknown_workload_points_at_the_reference() {
    let source = mesh_with("workloads: [age] }", "workloads: [aeg] }");
    let err = load_err(&source);
    let (line, column) = position(&source, "mesh/suite.yaml", "aeg");
    assert_eq!((err.line, err.column), (line, column), "{err}");
    assert!(
        err.message.contains("unknown workload `aeg`") && err.message.contains("name-v2"),
        "{err}"
    );
}

#[test]
fn unknown_template_variable_names_the_manifest_position() {
    let path = "mesh/manifests/peer-auth-strict.yaml";
    let original = SuiteSource::embedded().files[&PathBuf::from(path)].clone();
    let source = embedded_with(
        path,
        &original.replace(
            "{{ app_namespace }}",
            "{{ app_namespace }}{{ cluster_domain }}",
        ),
    );
    let err = load_err(&source);
    let (line, _) = position(&source, path, "cluster_domain");
    assert_eq!(err.file, format!("suites/{path}"));
    assert_eq!(err.line, line);
    assert!(
        err.message.contains("unknown variable `cluster_domain`"),
        "{err}"
    );
}

#[test]
fn semantic_guards_refuse_verdicts_that_could_pass_for_the_wrong_reason() {
    // `fails` on a transport class cannot tell Istio's behaviour from a dead port-forward.
    let err = load_err(&mesh_with("class: http-500", "class: refused"));
    assert!(err.message.contains("an HTTP class"), "{err}");
    // `holds` too: a hold of `refused` would pass against a closed port.
    let source = mesh_with("holds: { class: ok,", "holds: { class: refused,");
    let err = load_err(&source);
    assert!(err.message.contains("an HTTP class"), "{err}");
    assert_eq!(
        (err.line, err.column),
        position(&source, "mesh/suite.yaml", "refused"),
        "points at the class"
    );
    // A negative TLS check without its positive control first.
    let original = SuiteSource::embedded().files[&PathBuf::from("ingress/suite.yaml")].clone();
    let mutated = original.replacen("      - tls-accepts: { client: trusted, consecutive: 1 }\n      - tls-rejects: { client: none", "      - tls-rejects: { client: none", 1);
    assert_ne!(mutated, original);
    let err = load_err(&embedded_with("ingress/suite.yaml", &mutated));
    assert!(err.message.contains("positive control"), "{err}");
    // A manifest carrying keys can only be applied through issue-pki.
    let mutated = original.replacen(
        "apply: [gateway-mutual, virtual-service-mutual]",
        "apply: [gateway-mutual, tls-secret]",
        1,
    );
    let err = load_err(&embedded_with("ingress/suite.yaml", &mutated));
    assert!(err.message.contains("issue-pki"), "{err}");
}

#[test]
fn index_must_list_existing_suites_once() {
    let err = load_err(&embedded_with(
        "index.yaml",
        "suites:\n  - mesh\n  - egress\n",
    ));
    assert_eq!(
        (err.file.as_str(), err.line, err.column),
        ("suites/index.yaml", 3, 5),
        "{err}"
    );
    let err = load_err(&embedded_with("index.yaml", "suites: [mesh, mesh]\n"));
    assert!(err.message.contains("twice"), "{err}");
}

#[test]
fn a_suites_dir_on_disk_loads_like_the_embedded_copy() {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in &SuiteSource::embedded().files {
        let target = dir.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text).unwrap();
    }
    let catalog = suite::load(&SuiteSource::from_dir(dir.path()).unwrap()).unwrap();
    assert_eq!(catalog.names(), ["mesh", "ingress"]);
    let err = catalog.select(&["nope".into()]).unwrap_err();
    assert!(err.contains("valid suites: mesh, ingress"), "{err}");
}
