//! odin-ws on a real three-node NATS cluster, in a test binary of its own: its
//! nodes are killed and leaders elected again, which takes timely heartbeats, so
//! it does not share the two cores with the integration suite's hundreds of
//! sockets (cargo runs test binaries one after another).

#[path = "cluster/cluster.rs"]
mod cluster;
#[path = "common/mod.rs"]
mod common;
#[path = "cluster/nats_cluster.rs"]
mod nats_cluster;
#[allow(dead_code)] // this binary uses part of the integration helpers
#[path = "integration/support.rs"]
mod support;
