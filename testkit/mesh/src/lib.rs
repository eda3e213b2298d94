//! Istio's and the app's behaviour on loopback (work in progress).
