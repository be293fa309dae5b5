//! The supervision tree, after Erlang/OTP: a root supervisor, one supervisor per
//! station, and under it the station's actors.
//!
//! actix restarts an actor that stops (its `Supervisor`), and station actors catch
//! panics at each step (`station::run_guarded`). Both report the death here as a
//! [`ChildExited`]. A [`SubtreeSupervisor`] adds what actix lacks:
//! - **restart intensity**: at most `children.max_restarts` restarts within
//!   `children.within`;
//! - **escalation**: one restart more and it restarts its whole subtree (fresh rings,
//!   every child started again); more subtree restarts than `subtrees` allows and it
//!   gives up on restarts: the subtree is degraded (a station plays its fallback loop
//!   and reports not ready) until it has been calm for `recover_after`;
//! - **stall detection**: children publish a [`Heartbeat`]; one busy for longer than
//!   its `stall_after` counts as an exit (`stalled`) and is replaced where its parts
//!   allow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, Message, Supervised};

use super::intensity::{RestartIntensity, RestartLog};

/// How a child died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// It stopped; actix's `Supervisor` started it again.
    Stopped,
    /// A step panicked; the panic was caught and the actor went on from its kept state.
    Panicked,
    /// It stopped showing signs of life for longer than allowed.
    Stalled,
}

impl ExitReason {
    /// The `reason` label of `sonicforge_actor_restarts_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Panicked => "panic",
            Self::Stalled => "stalled",
        }
    }
}

/// A child of a supervisor died (and was restarted where it could be).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct ChildExited {
    pub child: &'static str,
    pub reason: ExitReason,
}

/// Asks a child to stop so that its supervisor starts it again (a subtree restart).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Restart;

/// What a supervisor did beyond restarting one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    /// Every child of the subtree was restarted with freshly wired rings.
    SubtreeRestart,
    /// Restarts did not help: the subtree runs degraded (fallback loop, not ready).
    Degraded,
}

impl Escalation {
    /// The `level` label of `sonicforge_supervisor_escalations_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::SubtreeRestart => "subtree_restart",
            Self::Degraded => "degraded",
        }
    }
}

/// A child's sign of life: when it last made progress, or idle (nothing to do).
#[derive(Debug)]
pub struct Heartbeat {
    origin: Instant,
    /// Milliseconds since `origin` (plus one) of the last beat; 0 while idle.
    last_beat_ms: AtomicU64,
}

impl Heartbeat {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            last_beat_ms: AtomicU64::new(0),
        })
    }

    /// The child made progress now. One relaxed store: cheap enough for every tick.
    pub fn beat(&self) {
        let ms = self.origin.elapsed().as_millis() as u64 + 1;
        self.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// The child has nothing to do; it cannot stall until it beats again.
    pub fn idle(&self) {
        self.last_beat_ms.store(0, Ordering::Relaxed);
    }

    /// How long since the last beat, or `None` while idle.
    pub fn silent_for(&self, now: Instant) -> Option<Duration> {
        let last = self.last_beat_ms.load(Ordering::Relaxed);
        if last == 0 {
            return None;
        }
        let now_ms = now.saturating_duration_since(self.origin).as_millis() as u64 + 1;
        Some(Duration::from_millis(now_ms.saturating_sub(last)))
    }
}

/// A child whose heartbeat the supervisor watches.
#[derive(Debug, Clone)]
pub struct Watched {
    pub child: &'static str,
    pub heartbeat: Arc<Heartbeat>,
    pub stall_after: Duration,
}

/// What a supervisor can do to the children it supervises.
pub trait Subtree: Unpin + 'static {
    /// The subtree's name, for logs (a station's id).
    fn name(&self) -> &str;
    /// The children to watch for stalls.
    fn watched(&self) -> Vec<Watched>;
    /// A child was found stalled: count it, and replace it if its parts allow.
    /// Returns whether it was replaced.
    fn replace_stalled(&mut self, child: &'static str) -> bool;
    /// Restarts every child, re-wiring the rings between them.
    fn restart_all(&mut self);
    /// Gives up on restarts and runs in a safe, degraded way.
    fn degrade(&mut self);
    /// Leaves the degraded way after a calm period.
    fn recover(&mut self);
}

/// How much a supervisor tolerates before it escalates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorPolicy {
    /// Child restarts allowed before the whole subtree is restarted.
    pub children: RestartIntensity,
    /// Subtree restarts allowed before the subtree is degraded.
    pub subtrees: RestartIntensity,
    /// Calm (no exits) needed before a degraded subtree recovers.
    pub recover_after: Duration,
    /// How often heartbeats and recovery are checked.
    pub check_every: Duration,
}

impl Default for SupervisorPolicy {
    fn default() -> Self {
        Self {
            children: RestartIntensity::default(),
            subtrees: RestartIntensity {
                max_restarts: 2,
                within: Duration::from_secs(300),
            },
            recover_after: Duration::from_secs(60),
            check_every: Duration::from_millis(100),
        }
    }
}

/// Supervises one subtree (a station's actors) with restart intensity, escalation,
/// stall detection and recovery.
#[derive(Debug)]
pub struct SubtreeSupervisor<S: Subtree> {
    subtree: S,
    policy: SupervisorPolicy,
    children: RestartLog,
    subtree_restarts: RestartLog,
    degraded_since: Option<Instant>,
    last_exit: Option<Instant>,
    /// Children found stalled and not beating since.
    stalled: Vec<&'static str>,
}

impl<S: Subtree> SubtreeSupervisor<S> {
    pub fn new(subtree: S, policy: SupervisorPolicy) -> Self {
        Self {
            subtree,
            policy,
            children: RestartLog::new(policy.children),
            subtree_restarts: RestartLog::new(policy.subtrees),
            degraded_since: None,
            last_exit: None,
            stalled: Vec::new(),
        }
    }

    pub fn subtree(&self) -> &S {
        &self.subtree
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded_since.is_some()
    }

    /// Decides what the exit of `child` at `now` leads to, and does it.
    pub fn on_exit(
        &mut self,
        child: &'static str,
        reason: ExitReason,
        now: Instant,
    ) -> Option<Escalation> {
        self.last_exit = Some(now);
        if self.degraded_since.is_some() {
            // Nothing left to escalate to: children keep being restarted one by one.
            return None;
        }
        if self.children.record(now) {
            return None;
        }
        self.children.clear();
        let intensity = self.policy.children;
        if self.subtree_restarts.record(now) {
            tracing::error!(
                subtree = %self.subtree.name(), child, reason = reason.label(),
                max_restarts = intensity.max_restarts, within_s = intensity.within.as_secs_f64(),
                "restart intensity exceeded; restarting the whole subtree"
            );
            self.subtree.restart_all();
            Some(Escalation::SubtreeRestart)
        } else {
            tracing::error!(
                subtree = %self.subtree.name(), child, reason = reason.label(),
                "subtree restarts did not help; running degraded until calm"
            );
            self.degraded_since = Some(now);
            self.subtree.degrade();
            Some(Escalation::Degraded)
        }
    }

    /// Looks for stalled children and for a degraded subtree that may recover.
    pub fn check(&mut self, now: Instant) {
        for watched in self.subtree.watched() {
            let silent = watched.heartbeat.silent_for(now);
            let stalled = silent.is_some_and(|silent| silent > watched.stall_after);
            let flagged = self.stalled.contains(&watched.child);
            if stalled && !flagged {
                tracing::error!(
                    subtree = %self.subtree.name(), child = watched.child,
                    silent_ms = silent.unwrap_or_default().as_millis() as u64,
                    "child stalled"
                );
                self.stalled.push(watched.child);
                if self.subtree.replace_stalled(watched.child) {
                    self.stalled.retain(|child| *child != watched.child);
                }
                self.on_exit(watched.child, ExitReason::Stalled, now);
            } else if !stalled && flagged {
                tracing::info!(subtree = %self.subtree.name(), child = watched.child, "stalled child is alive again");
                self.stalled.retain(|child| *child != watched.child);
            }
        }
        if let Some(since) = self.degraded_since {
            let calm_since = self.last_exit.map_or(since, |last| last.max(since));
            if now.saturating_duration_since(calm_since) >= self.policy.recover_after {
                tracing::warn!(subtree = %self.subtree.name(), "calm again; leaving the degraded state");
                self.degraded_since = None;
                self.children.clear();
                self.subtree_restarts.clear();
                self.subtree.recover();
            }
        }
    }
}

impl<S: Subtree> Actor for SubtreeSupervisor<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.policy.check_every, |supervisor, _ctx| {
            supervisor.check(Instant::now());
        });
    }
}

impl<S: Subtree> Supervised for SubtreeSupervisor<S> {}

impl<S: Subtree> Handler<ChildExited> for SubtreeSupervisor<S> {
    type Result = ();

    fn handle(&mut self, exit: ChildExited, _ctx: &mut Context<Self>) {
        self.on_exit(exit.child, exit.reason, Instant::now());
    }
}

/// Catches a panic in `step`, returning its message instead.
pub fn catch_panic<R>(step: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step))
        .map_err(|payload| panic_message(payload.as_ref()).to_string())
}

/// The message a panic was raised with.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}
