//! Port-forwarding through the fake with kube's own Portforwarder.

use crate::*;
use k8s_openapi::api::core::v1::Pod;
use std::net::SocketAddr;
use std::sync::Arc;
use testkit_k8s::{ImageBehaviour, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts one connection, echoes what it reads once, then closes it.
async fn echo_once() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            if let Ok(n) = s.read(&mut buf).await {
                let _ = s.write_all(&buf[..n]).await;
            }
        }
    });
    addr
}

/// A loopback port nobody listens on.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

async fn running_pod(pods: &Api<Pod>, name: &str, image: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name}, "spec": {"containers": [{"name": "app", "image": image}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
}

/// The error of a port-forward that must fail.
async fn refused(pods: &Api<Pod>, name: &str, port: u16) -> kube::Error {
    match pods.portforward(name, &[port]).await {
        Ok(_) => panic!("the port-forward to {name}:{port} was accepted"),
        Err(e) => e,
    }
}

async fn read_to_end(stream: &mut tokio::io::DuplexStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out))
        .await
        .expect("the stream did not end")
        .unwrap();
    out
}

#[tokio::test]
async fn port_forwards_reach_the_hooks_targets_and_fail_like_the_kubelet() {
    let (cluster, client) = start(Options::default()).await;
    cluster.set_image_behaviour("never", ImageBehaviour::Unpullable);
    let echo = echo_once().await;
    let closed = closed_port().await;
    cluster.set_port_forward(Arc::new(move |pod: &serde_json::Value, port: u16| {
        assert_eq!(pod["metadata"]["name"], "web");
        match port {
            8080 => Upstream::Tcp(echo),
            7070 => Upstream::Tcp(closed),
            9090 => Upstream::Refused("boom on 9090".into()),
            6060 => Upstream::CloseAfterUpgrade,
            _ => Upstream::RejectUpgrade {
                status: 403,
                message: "forwarding forbidden".into(),
            },
        }
    }));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    running_pod(&pods, "web", "web:1").await;
    running_pod(&pods, "stuck", "never:1").await;
    cluster
        .wait_for("web running", DEADLINE, |c| {
            c.get("", "Pod", Some("default"), "web")
                .is_some_and(|p| p["status"]["phase"] == "Running")
        })
        .await
        .unwrap();

    // Bytes round-trip; the upstream closing is EOF here.
    let mut pf = pods.portforward("web", &[8080]).await.unwrap();
    let mut stream = pf.take_stream(8080).unwrap();
    stream
        .write_all(b"hello through the api server")
        .await
        .unwrap();
    let mut buf = vec![0u8; 28];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf, b"hello through the api server");
    assert!(read_to_end(&mut stream).await.is_empty());
    drop(stream);
    let error = tokio::time::timeout(DEADLINE, pf.take_error(8080).unwrap())
        .await
        .unwrap();
    assert_eq!(error, None);

    // Refused: the text arrives on the error channel, the stream ends.
    let mut pf = pods.portforward("web", &[9090]).await.unwrap();
    let error = tokio::time::timeout(DEADLINE, pf.take_error(9090).unwrap())
        .await
        .unwrap();
    assert_eq!(error.as_deref(), Some("boom on 9090"));
    assert!(
        read_to_end(&mut pf.take_stream(9090).unwrap())
            .await
            .is_empty()
    );

    // Nothing listening upstream: the kubelet's "connection refused".
    let mut pf = pods.portforward("web", &[7070]).await.unwrap();
    let mut stream = pf.take_stream(7070).unwrap();
    let _ = stream.write_all(b"anyone?").await;
    let error = tokio::time::timeout(DEADLINE, pf.take_error(7070).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        error.starts_with("error forwarding port 7070 to pod "),
        "{error}"
    );
    assert!(
        error.contains("dial tcp4 127.0.0.1:7070: connect: connection refused"),
        "{error}"
    );
    assert!(read_to_end(&mut stream).await.is_empty());

    // A dropped forward: no data, no error, the stream just ends.
    let mut pf = pods.portforward("web", &[6060]).await.unwrap();
    let mut stream = pf.take_stream(6060).unwrap();
    assert!(read_to_end(&mut stream).await.is_empty());
    drop(stream);
    let error = tokio::time::timeout(DEADLINE, pf.take_error(6060).unwrap())
        .await
        .unwrap();
    assert_eq!(error, None);

    // Refused upgrades surface as API errors.
    let err = refused(&pods, "web", 5050).await;
    assert_eq!(api_code(&err), Some(403), "{err}");
    let err = refused(&pods, "nope", 8080).await;
    let kube::Error::Api(status) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (status.code, status.message.as_str()),
        (404, "pods \"nope\" not found")
    );
    let err = refused(&pods, "stuck", 8080).await;
    assert_eq!(api_code(&err), Some(400), "{err}");

    // The client offered v5 and v4; the fake speaks v4.
    let upgrade = cluster
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/web/portforward"))
        .unwrap();
    assert_eq!(upgrade.query, "&ports=8080");
}

#[tokio::test]
async fn without_a_hook_nothing_listens_in_the_pod() {
    let (cluster, client) = start(Options::default()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    running_pod(&pods, "lonely", "x:1").await;
    cluster
        .wait_for("running", DEADLINE, |c| {
            c.get("", "Pod", Some("default"), "lonely")
                .is_some_and(|p| p["status"]["phase"] == "Running")
        })
        .await
        .unwrap();
    let mut pf = pods.portforward("lonely", &[15000]).await.unwrap();
    let error = tokio::time::timeout(DEADLINE, pf.take_error(15000).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(error.contains("connect: connection refused"), "{error}");
}
