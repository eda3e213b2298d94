//! Image behaviours: unpullable images and crash loops, as the kubelet reports them.

use crate::*;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, LogParams};
use testkit_k8s::ImageBehaviour;

fn pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }))
    .unwrap()
}

fn waiting_reason(p: &Pod) -> Option<(String, String, String, i32)> {
    let s = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .clone();
    let w = s.state?.waiting?;
    Some((
        w.reason?,
        w.message.unwrap_or_default(),
        s.image,
        s.restart_count,
    ))
}

#[tokio::test]
async fn unpullable_images_back_off_and_crash_loops_count_restarts() {
    // A wider ErrImagePull window than the default, so polling cannot miss it.
    let options = Options {
        pod_ready_after: Duration::from_millis(200),
        ..Default::default()
    };
    let (cluster, client) = start(options).await;
    cluster.set_image_behaviour("registry.invalid/", ImageBehaviour::Unpullable);
    cluster.set_image_behaviour("crashy", ImageBehaviour::CrashLoop);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    pods.create(&pp, &pod("pull", "registry.invalid/app:1"))
        .await
        .unwrap();
    pods.create(&pp, &pod("crash", "example/crashy:1"))
        .await
        .unwrap();

    let (reason, message, image, _) =
        eventually("ErrImagePull", DEADLINE, || {
            let pods = pods.clone();
            async move {
                waiting_reason(&pods.get("pull").await.ok()?).filter(|w| w.0 == "ErrImagePull")
            }
        })
        .await;
    assert!(
        message.contains("registry.invalid/app:1"),
        "{reason}: {message}"
    );
    assert_eq!(image, "registry.invalid/app:1");
    let (_, message, _, _) = eventually("ImagePullBackOff", DEADLINE, || {
        let pods = pods.clone();
        async move {
            waiting_reason(&pods.get("pull").await.ok()?).filter(|w| w.0 == "ImagePullBackOff")
        }
    })
    .await;
    assert_eq!(message, "Back-off pulling image \"registry.invalid/app:1\"");
    let p = pods.get("pull").await.unwrap();
    let status = p.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    let err = pods.logs("pull", &LogParams::default()).await.unwrap_err();
    assert_eq!(api_code(&err), Some(400), "{err}");

    let (_, message, _, first) = eventually("CrashLoopBackOff", DEADLINE, || {
        let pods = pods.clone();
        async move {
            waiting_reason(&pods.get("crash").await.ok()?).filter(|w| w.0 == "CrashLoopBackOff")
        }
    })
    .await;
    assert!(
        message.contains("restarting failed container=app pod=crash_default"),
        "{message}"
    );
    eventually("a growing restart count", DEADLINE, || {
        let pods = pods.clone();
        async move { waiting_reason(&pods.get("crash").await.ok()?).filter(|w| w.3 > first) }
    })
    .await;
    let p = pods.get("crash").await.unwrap();
    let status = p.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let c = &status.container_statuses.unwrap()[0];
    assert!(!c.ready);
    assert_eq!(
        c.last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        1
    );
    assert!(
        pods.logs("crash", &LogParams::default())
            .await
            .unwrap()
            .contains("fake log of crash/app")
    );

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let reasons: Vec<(String, String)> = events
        .list(&ListParams::default().fields("involvedObject.name=pull"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect();
    for expected in ["Scheduled", "Pulling", "Failed", "BackOff"] {
        assert!(
            reasons.iter().any(|(r, _)| r == expected),
            "no {expected} event in {reasons:?}"
        );
    }
    assert!(
        reasons
            .iter()
            .any(|(_, m)| m.starts_with("Failed to pull image \"registry.invalid/app:1\""))
    );
}
