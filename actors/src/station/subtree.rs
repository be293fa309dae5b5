//! A station's actors as a subtree of the supervision tree.

use std::sync::Arc;

use super::Station;
use crate::supervise::tree::{Subtree, Watched};

/// What the station supervisor can do to the station's actors.
#[derive(Debug, Clone)]
pub struct StationSubtree(pub Arc<Station>);

impl Subtree for StationSubtree {
    fn name(&self) -> &str {
        self.0.id()
    }

    fn watched(&self) -> Vec<Watched> {
        self.0.watched()
    }

    fn replace_stalled(&mut self, child: &'static str) -> bool {
        self.0.replace_stalled(child)
    }

    fn restart_all(&mut self) {
        self.0.restart_actors();
    }

    fn degrade(&mut self) {
        self.0.set_degraded(true);
    }

    fn recover(&mut self) {
        self.0.set_degraded(false);
    }
}
