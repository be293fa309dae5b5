//! The root of the supervision tree: one supervisor per station under it.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::{Actor, Addr, Context, Handler, Message, Supervisor};

use super::tree::{SubtreeSupervisor, SupervisorPolicy};
use crate::station::{Station, StationSubtree};

/// A station's supervisor.
pub type StationSupervisor = SubtreeSupervisor<StationSubtree>;

/// Starts, keeps and stops the station supervisors. Each runs under actix's
/// `Supervisor` on its station's control thread, so one that stops is started again
/// (with a clean restart log, as in OTP).
#[derive(Debug, Default)]
pub struct RootSupervisor {
    stations: BTreeMap<String, Addr<StationSupervisor>>,
}

/// Puts a station under supervision.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Supervise {
    pub station: Arc<Station>,
    pub policy: SupervisorPolicy,
}

impl Actor for RootSupervisor {
    type Context = Context<Self>;
}

impl Handler<Supervise> for RootSupervisor {
    type Result = ();

    fn handle(&mut self, Supervise { station, policy }: Supervise, _ctx: &mut Context<Self>) {
        let supervisor = start_station_supervisor(&station, policy);
        self.stations.insert(station.id().to_string(), supervisor);
    }
}

/// Takes a stopped or removed station out of supervision. Its supervisor ran on the
/// station's control thread, which stopped with the station.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Unsupervise {
    pub station: String,
}

impl Handler<Unsupervise> for RootSupervisor {
    type Result = ();

    fn handle(&mut self, Unsupervise { station }: Unsupervise, _ctx: &mut Context<Self>) {
        self.stations.remove(&station);
    }
}

/// Starts a station's supervisor and connects the station's actors to it.
pub fn start_station_supervisor(
    station: &Arc<Station>,
    policy: SupervisorPolicy,
) -> Addr<StationSupervisor> {
    let subtree = StationSubtree(Arc::clone(station));
    let supervisor = match station.control_arbiter() {
        Some(arbiter) => {
            Supervisor::start_in_arbiter(&arbiter, move |_| SubtreeSupervisor::new(subtree, policy))
        }
        None => Supervisor::start(move |_| SubtreeSupervisor::new(subtree, policy)),
    };
    station.set_supervisor(supervisor.clone().recipient());
    supervisor
}
