//! The controllers: one background task that reconciles the whole store every
//! `controller_tick` (no watches): CRDs, namespaces, garbage collection, the scheduler
//! and kubelet, ReplicaSets, Deployments, EndpointSlices.

pub mod crds;
pub mod deployments;
pub mod endpoints;
pub mod gc;
pub mod namespaces;
pub mod pods;

use crate::cluster::Shared;
use crate::store::Store;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// A pod a ReplicaSet wants; created outside the store lock, because creation runs the
/// pod admission hook.
pub struct PodPlan {
    pub namespace: String,
    pub pod: Value,
    pub owner: Value,
}

#[derive(Default)]
pub struct Controllers {
    deployments: deployments::State,
    endpoints: endpoints::State,
    namespaces: namespaces::State,
}

impl Controllers {
    /// One reconcile pass; returns the pods to create.
    pub fn tick(&mut self, store: &mut Store, now: Instant) -> Vec<PodPlan> {
        crds::tick(store);
        namespaces::tick(store, &mut self.namespaces, now);
        gc::tick(store);
        pods::tick(store, now);
        let mut plans = Vec::new();
        deployments::reconcile_replica_sets(store, &mut plans);
        deployments::reconcile_deployments(store, &mut self.deployments, now);
        endpoints::tick(store, &mut self.endpoints, now);
        plans
    }
}

/// The controller loop, until the cluster shuts down.
pub async fn run(shared: Arc<Shared>) {
    let mut controllers = Controllers::default();
    let mut stop = shared.stopped();
    loop {
        let plans = {
            let mut store = shared.lock();
            controllers.tick(&mut store, Instant::now())
        };
        for plan in plans {
            shared.create_planned_pod(plan);
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.options.controller_tick) => {}
            _ = stop.changed() => return,
        }
    }
}
