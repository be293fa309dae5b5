//! Chaos hooks: kill one station actor on request, by stopping it or by making one of
//! its handlers panic, so tests can prove that listeners do not notice.
//!
//! Off by default (`[chaos] enabled = false`), and refused on a listen address that
//! is not loopback unless `allow_non_loopback = true`.

use actix::{Actor, ActorContext, Context, Handler, Message};
use serde::{Deserialize, Serialize};

use super::tree::Restart;
use crate::station::{
    EncoderActor, EventWriterActor, GeneratorActor, MixerActor, SchedulerActor, Station,
};

/// Which actor to kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChaosActor {
    Scheduler,
    Generator,
    Mixer,
    Encoder,
    EventWriter,
    /// One WebSocket listener session; its client reconnects.
    Listener,
}

impl ChaosActor {
    pub fn name(self) -> &'static str {
        match self {
            Self::Scheduler => "scheduler",
            Self::Generator => "generator",
            Self::Mixer => "mixer",
            Self::Encoder => "encoder",
            Self::EventWriter => "event_writer",
            Self::Listener => "listener",
        }
    }
}

/// Which actor a chaos request killed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Killed {
    pub station: String,
    #[serde(rename = "killed")]
    pub actor: ChaosActor,
    pub mode: ChaosMode,
    /// The listener's session id (as in its hello) when a listener was killed.
    pub session: Option<u64>,
}

/// Why a chaos request killed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KillError {
    #[error("station {0} has no WebSocket listener to kill")]
    NoListener(String),
    #[error("station {0} is stopped")]
    StationStopped(String),
}

/// How it dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChaosMode {
    /// The actor stops; its supervisor restarts it.
    Stop,
    /// One of its handlers panics; the panic is caught and counted as a restart.
    Panic,
}

/// Kills the receiving actor the chosen way.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Kill(pub ChaosMode);

/// What a station actor does with [`Kill`].
pub(crate) trait Killable: Actor<Context = Context<Self>> {
    const NAME: &'static str;
    fn station(&self) -> &Station;
}

pub(crate) fn kill<A: Killable>(actor: &mut A, mode: ChaosMode, ctx: &mut Context<A>) {
    tracing::warn!(station = %actor.station().id(), actor = A::NAME, ?mode, "chaos: killing actor");
    match mode {
        ChaosMode::Stop => {
            actor.station().actor_stopped(A::NAME);
            ctx.stop();
        }
        ChaosMode::Panic => {
            crate::station::run_guarded(actor.station(), A::NAME, || -> () {
                panic!("chaos: injected panic in the {}", A::NAME)
            });
        }
    }
}

/// What a station actor does with [`Restart`]: it stops, and its supervisor starts it
/// again (part of a subtree restart, not counted as an exit).
pub(crate) fn restart<A: Killable>(actor: &mut A, ctx: &mut Context<A>) {
    tracing::info!(station = %actor.station().id(), actor = A::NAME, "restarting for a subtree restart");
    ctx.stop();
}

macro_rules! killable {
    ($actor:ty, $name:literal) => {
        impl Killable for $actor {
            const NAME: &'static str = $name;
            fn station(&self) -> &Station {
                self.station()
            }
        }

        impl Handler<Kill> for $actor {
            type Result = ();

            fn handle(&mut self, Kill(mode): Kill, ctx: &mut Context<Self>) {
                kill(self, mode, ctx);
            }
        }

        impl Handler<Restart> for $actor {
            type Result = ();

            fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
                restart(self, ctx);
            }
        }

        impl actix::Supervised for $actor {
            fn restarting(&mut self, _ctx: &mut Context<Self>) {
                self.station().child_restarting($name);
            }
        }
    };
}

killable!(SchedulerActor, "scheduler");
killable!(GeneratorActor, "generator");
killable!(MixerActor, "mixer");
killable!(EncoderActor, "encoder");
killable!(EventWriterActor, "event_writer");
