//! The scheduler and the kubelet: pods are bound to the one node, get an IP, start
//! after `pod_ready_after` (init containers complete, native sidecars run), follow their
//! images' behaviour (unpullable, crash loop, slow start), and terminate gracefully
//! after a delete. Their status and events look like the real kubelet's.

use crate::store::{Key, NODE_NAME, Store};
use crate::{ImageBehaviour, Options, meta, names, time};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

/// What the kubelet knows about a pod beyond what it shows in the status.
#[derive(Debug, Clone)]
pub struct PodSim {
    created: Instant,
    created_wall: SystemTime,
    scheduled: bool,
    ip: Option<String>,
    behaviours: HashMap<String, ImageBehaviour>,
    pub deleted_at: Option<Instant>,
    /// The kubelet is done with the pod: once its finalizers are gone, it is removed.
    pub terminated: bool,
    last_status: Option<Value>,
    emitted: HashSet<String>,
    /// Condition type → (status, lastTransitionTime).
    transitions: HashMap<String, (bool, String)>,
}

impl PodSim {
    /// The behaviour of each container is fixed when the pod is created.
    pub fn new(pod: &Value, images: &[(String, ImageBehaviour)]) -> PodSim {
        let mut behaviours = HashMap::new();
        for list in ["initContainers", "containers"] {
            for c in pod["spec"][list].as_array().into_iter().flatten() {
                let image = c["image"].as_str().unwrap_or_default();
                let b = images
                    .iter()
                    .rev()
                    .find(|(needle, _)| image.contains(needle.as_str()))
                    .map(|(_, b)| *b)
                    .unwrap_or(ImageBehaviour::Pullable);
                behaviours.insert(c["name"].as_str().unwrap_or_default().to_string(), b);
            }
        }
        PodSim {
            created: Instant::now(),
            created_wall: SystemTime::now(),
            scheduled: false,
            ip: None,
            behaviours,
            deleted_at: None,
            terminated: false,
            last_status: None,
            emitted: HashSet::new(),
            transitions: HashMap::new(),
        }
    }

    fn wall(&self, t: Instant) -> String {
        time::rfc3339(self.created_wall + t.saturating_duration_since(self.created))
    }
}

/// One event the kubelet (or scheduler) would record, once per key.
struct Ev {
    key: String,
    type_: &'static str,
    reason: &'static str,
    message: String,
    component: &'static str,
}

fn ev(key: String, type_: &'static str, reason: &'static str, message: String) -> Ev {
    Ev {
        key,
        type_,
        reason,
        message,
        component: "kubelet",
    }
}

/// A container's status at `now`.
struct Run {
    status: Value,
    ready: bool,
    /// Running or restarting: keeps the pod in phase Running.
    alive: bool,
    /// For init containers: later ones may start (completed, or a started sidecar).
    done: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Init,
    Sidecar,
    Main,
}

struct Ctx<'a> {
    pod: &'a Value,
    sim: &'a PodSim,
    options: &'a Options,
    probe: Option<&'a crate::ReadinessProbe>,
    now: Instant,
    begin: Instant,
    stopped_at: Option<Instant>,
}

fn image_id(image: &str) -> String {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = repo
        .rsplit_once(':')
        .map_or(repo, |(r, tag)| if tag.contains('/') { repo } else { r });
    format!("{repo}@sha256:{}", names::hex_id(image, 64))
}

fn run_container(c: &Value, role: Role, ctx: &Ctx, events: &mut Vec<Ev>) -> Run {
    let name = c["name"].as_str().unwrap_or_default();
    let image = c["image"].as_str().unwrap_or_default();
    let behaviour = ctx
        .sim
        .behaviours
        .get(name)
        .copied()
        .unwrap_or(ImageBehaviour::Pullable);
    let (pod_name, ns, uid) = (
        meta::name(ctx.pod),
        meta::namespace(ctx.pod),
        meta::uid(ctx.pod),
    );
    let started_at = ctx.sim.wall(ctx.begin);
    let container_id = format!(
        "containerd://{}",
        names::hex_id(&format!("{uid}/{name}"), 64)
    );
    let base = |state: Value,
                ready: bool,
                started: bool,
                restarts: i64,
                last: Value,
                running_id: bool| {
        let mut s = json!({
            "name": name, "image": image, "imageID": if running_id { image_id(image) } else { String::new() },
            "ready": ready, "started": started, "restartCount": restarts,
            "state": state, "lastState": last,
        });
        if running_id {
            s["containerID"] = json!(container_id);
        }
        s
    };
    let k = |what: &str| format!("{name}/{what}");
    let pulled = |events: &mut Vec<Ev>| {
        events.push(ev(
            k("pulling"),
            "Normal",
            "Pulling",
            format!("Pulling image \"{image}\""),
        ));
        events.push(ev(
            k("pulled"),
            "Normal",
            "Pulled",
            format!("Successfully pulled image \"{image}\" in 512ms (512ms including waiting). Image size: 10485760 bytes."),
        ));
        events.push(ev(
            k("created"),
            "Normal",
            "Created",
            format!("Created container: {name}"),
        ));
        events.push(ev(
            k("started"),
            "Normal",
            "Started",
            format!("Started container {name}"),
        ));
    };
    let since_begin = ctx.now.saturating_duration_since(ctx.begin);
    let period = ctx.options.pod_ready_after.max(Duration::from_millis(1));
    match behaviour {
        ImageBehaviour::Unpullable => {
            events.push(ev(
                k("pulling"),
                "Normal",
                "Pulling",
                format!("Pulling image \"{image}\""),
            ));
            events.push(ev(
                k("pullfailed"),
                "Warning",
                "Failed",
                format!("Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found"),
            ));
            events.push(ev(
                k("errimagepull"),
                "Warning",
                "Failed",
                "Error: ErrImagePull".into(),
            ));
            let state = if since_begin < period {
                json!({"waiting": {"reason": "ErrImagePull", "message": format!("rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found")}})
            } else {
                events.push(ev(
                    k("backoff"),
                    "Normal",
                    "BackOff",
                    format!("Back-off pulling image \"{image}\""),
                ));
                events.push(ev(
                    k("imagepullbackoff"),
                    "Warning",
                    "Failed",
                    "Error: ImagePullBackOff".into(),
                ));
                json!({"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image \"{image}\"")}})
            };
            Run {
                status: base(state, false, false, 0, json!({}), false),
                ready: false,
                alive: false,
                done: false,
            }
        }
        ImageBehaviour::CrashLoop => {
            pulled(events);
            events.push(ev(
                k("crashloop"),
                "Warning",
                "BackOff",
                format!(
                    "Back-off restarting failed container {name} in pod {pod_name}_{ns}({uid})"
                ),
            ));
            let restarts = 1 + (since_begin.as_millis() / period.as_millis()) as i64;
            let backoff = (10i64 << (restarts - 1).min(5)).min(300);
            let last_start = ctx.begin + period * (restarts - 1) as u32;
            let state = json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off {backoff}s restarting failed container={name} pod={pod_name}_{ns}({uid})")}});
            let last = json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": ctx.sim.wall(last_start), "finishedAt": ctx.sim.wall(last_start), "containerID": container_id}});
            Run {
                status: base(state, false, false, restarts, last, true),
                ready: false,
                alive: true,
                done: false,
            }
        }
        ImageBehaviour::Pullable | ImageBehaviour::StartsAfter(_) => {
            let ready_at = match behaviour {
                ImageBehaviour::StartsAfter(d) => (ctx.sim.created + d).max(ctx.begin),
                _ => ctx.begin,
            };
            if role == Role::Init {
                if ctx.now < ready_at {
                    pulled(events);
                    let state = json!({"running": {"startedAt": started_at}});
                    return Run {
                        status: base(state, false, true, 0, json!({}), true),
                        ready: false,
                        alive: false,
                        done: false,
                    };
                }
                pulled(events);
                let state = json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started_at, "finishedAt": ctx.sim.wall(ready_at), "containerID": container_id}});
                return Run {
                    status: base(state, true, false, 0, json!({}), true),
                    ready: true,
                    alive: false,
                    done: true,
                };
            }
            pulled(events);
            if let Some(stop) = ctx.stopped_at {
                let state = json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started_at, "finishedAt": ctx.sim.wall(stop), "containerID": container_id}});
                return Run {
                    status: base(state, false, false, 0, json!({}), true),
                    ready: false,
                    alive: true,
                    done: true,
                };
            }
            let probed = || ctx.probe.and_then(|p| p(ctx.pod, name)).unwrap_or(true);
            let ready = ctx.now >= ready_at && probed();
            let state = json!({"running": {"startedAt": started_at}});
            Run {
                status: base(state, ready, true, 0, json!({}), true),
                ready,
                alive: true,
                done: true,
            }
        }
    }
}

fn waiting(c: &Value, reason: &str) -> Value {
    json!({
        "name": c["name"], "image": c["image"], "imageID": "", "ready": false, "started": false,
        "restartCount": 0, "state": {"waiting": {"reason": reason}}, "lastState": {},
    })
}

/// (type, status, (reason, message) when False).
type Condition<'a> = (&'a str, bool, Option<(&'a str, String)>);

/// The pod's status at `now`, and the events that go with it.
fn compute(
    pod: &Value,
    sim: &mut PodSim,
    options: &Options,
    probe: Option<&crate::ReadinessProbe>,
    now: Instant,
) -> (Value, Vec<Ev>) {
    let begin = sim.created + options.pod_ready_after;
    let started = now >= begin;
    let stopped_at = sim
        .deleted_at
        .map(|d| d + options.pod_terminate_after / 2)
        .filter(|s| now >= *s);
    let ctx = Ctx {
        pod,
        sim,
        options,
        probe,
        now,
        begin,
        stopped_at,
    };
    let mut events = Vec::new();
    let inits: Vec<Value> = pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mains: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();

    let mut init_statuses = Vec::new();
    let mut init_done = started;
    let mut incomplete = Vec::new();
    let mut unready = Vec::new();
    for c in &inits {
        let sidecar = c["restartPolicy"] == "Always";
        let name = c["name"].as_str().unwrap_or_default().to_string();
        if !init_done {
            init_statuses.push(waiting(c, "PodInitializing"));
            incomplete.push(name.clone());
            if sidecar {
                unready.push(name);
            }
            continue;
        }
        let run = run_container(
            c,
            if sidecar { Role::Sidecar } else { Role::Init },
            &ctx,
            &mut events,
        );
        if !run.done {
            init_done = false;
            incomplete.push(name.clone());
        }
        if sidecar && !run.ready {
            unready.push(name);
        }
        init_statuses.push(run.status);
    }
    let mut statuses = Vec::new();
    let mut alive = false;
    for c in &mains {
        let name = c["name"].as_str().unwrap_or_default().to_string();
        if !init_done {
            let reason = if inits.is_empty() {
                "ContainerCreating"
            } else {
                "PodInitializing"
            };
            statuses.push(waiting(c, reason));
            unready.push(name);
            continue;
        }
        let run = run_container(c, Role::Main, &ctx, &mut events);
        alive |= run.alive;
        if !run.ready {
            unready.push(name);
        }
        statuses.push(run.status);
    }
    if stopped_at.is_some() {
        for s in init_statuses.iter_mut().chain(statuses.iter_mut()) {
            if s["state"]["running"].is_object() {
                let started_at = s["state"]["running"]["startedAt"].clone();
                s["state"] = json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started_at,
                    "finishedAt": stopped_at.map(|t| sim.wall(t)), "containerID": s["containerID"]}});
                s["ready"] = json!(false);
                s["started"] = json!(false);
            }
        }
        for c in inits.iter().chain(&mains) {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            if !unready.contains(&name) && (mains.contains(c) || c["restartPolicy"] == "Always") {
                unready.push(name);
            }
        }
    }
    if sim.deleted_at.is_some() {
        for c in inits
            .iter()
            .filter(|c| c["restartPolicy"] == "Always")
            .chain(&mains)
        {
            let name = c["name"].as_str().unwrap_or_default();
            events.push(ev(
                format!("{name}/killing"),
                "Normal",
                "Killing",
                format!("Stopping container {name}"),
            ));
        }
    }
    let phase = if init_done && alive {
        "Running"
    } else {
        "Pending"
    };
    let list = |names: &[String]| names.join(" ");
    // A pod without init containers is initialized as soon as it is scheduled.
    let initialized = init_done || inits.is_empty();
    let mut conds: Vec<Condition> = vec![
        ("PodReadyToStartContainers", true, None),
        (
            "Initialized",
            initialized,
            (!initialized).then(|| {
                (
                    "ContainersNotInitialized",
                    format!("containers with incomplete status: [{}]", list(&incomplete)),
                )
            }),
        ),
    ];
    let ready = init_done && unready.is_empty();
    let not_ready = (!ready).then(|| {
        (
            "ContainersNotReady",
            format!("containers with unready status: [{}]", list(&unready)),
        )
    });
    conds.push(("Ready", ready, not_ready.clone()));
    conds.push(("ContainersReady", ready, not_ready));
    conds.push(("PodScheduled", true, None));
    let now_wall = time::now();
    let conditions: Vec<Value> = conds
        .into_iter()
        .map(|(t, ok, why)| {
            let at = match sim.transitions.get(t) {
                Some((was, at)) if *was == ok => at.clone(),
                _ => {
                    sim.transitions.insert(t.to_string(), (ok, now_wall.clone()));
                    now_wall.clone()
                }
            };
            let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": at});
            if let Some((reason, message)) = why {
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            }
            c
        })
        .collect();
    let ip = sim.ip.clone().unwrap_or_default();
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": "172.18.0.2",
        "hostIPs": [{"ip": "172.18.0.2"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": sim.wall(sim.created),
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
        "observedGeneration": pod["metadata"]["generation"],
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    (status, events)
}

/// One pass of the scheduler and the kubelet over every pod.
pub fn tick(store: &mut Store, now: Instant) {
    let info = store.kind("", "Pod");
    let keys: Vec<Key> = store
        .list(&info, None)
        .iter()
        .map(|p| Key::new(&info, meta::namespace(p), meta::name(p)))
        .collect();
    let options = store.options.clone();
    let probe = store.readiness.clone();
    for key in keys {
        let Some(pod) = store.get(&info, &key.namespace, &key.name).cloned() else {
            continue;
        };
        let uid = meta::uid(&pod).to_string();
        let mut sim = match store.pods.remove(&uid) {
            Some(sim) => sim,
            None => PodSim::new(&pod, &store.images),
        };
        let mut pod = pod;
        if !sim.scheduled && !meta::is_deleting(&pod) {
            sim.scheduled = true;
            sim.ip = Some(store.alloc.pod_ip());
            if let Some(bound) =
                store.update_internal(&key, |p| p["spec"]["nodeName"] = json!(NODE_NAME))
            {
                pod = bound;
            }
            store.event(
                &pod,
                "Normal",
                "Scheduled",
                &format!(
                    "Successfully assigned {}/{} to {NODE_NAME}",
                    key.namespace, key.name
                ),
                "default-scheduler",
            );
        }
        if !sim.scheduled {
            store.pods.insert(uid, sim);
            continue;
        }
        if sim.deleted_at.is_none() && meta::is_deleting(&pod) {
            sim.deleted_at = Some(now);
        }
        let (status, events) = compute(&pod, &mut sim, &options, probe.as_ref(), now);
        for e in events {
            if sim.emitted.insert(e.key.clone()) {
                store.event(&pod, e.type_, e.reason, &e.message, e.component);
            }
        }
        let gone = sim
            .deleted_at
            .is_some_and(|d| now >= d + options.pod_terminate_after);
        if gone {
            sim.terminated = true;
        }
        let changed = sim.last_status.as_ref() != Some(&status);
        if changed {
            sim.last_status = Some(status.clone());
        }
        store.pods.insert(uid, sim);
        if changed {
            store.update_internal(&key, |p| p["status"] = status);
        }
        if gone {
            store.settle(&key);
        }
    }
}
