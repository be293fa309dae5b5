//! The supervision tree proven with mock actors: one that fails with an error (and
//! stops), one that panics, one that stalls its thread. Each mock reports its deaths
//! the way station actors do, and a [`MockSubtree`] records what the supervisor did.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, Addr, Arbiter, AsyncContext, Context, Handler, Message, Recipient,
    Supervised, Supervisor,
};
use sonicforge_engine::frame::{FRAME_SAMPLES, SILENT_FRAME};
use sonicforge_engine::ring::{PcmConsumer, PcmFrame, PcmProducer, pcm_ring};

use super::intensity::RestartIntensity;
use super::tree::{
    ChildExited, Escalation, ExitReason, Heartbeat, Subtree, SubtreeSupervisor, SupervisorPolicy,
    Watched, catch_panic,
};

fn policy(max_restarts: u32, max_subtree_restarts: u32) -> SupervisorPolicy {
    SupervisorPolicy {
        children: RestartIntensity {
            max_restarts,
            within: Duration::from_secs(30),
        },
        subtrees: RestartIntensity {
            max_restarts: max_subtree_restarts,
            within: Duration::from_secs(300),
        },
        recover_after: Duration::from_secs(60),
        check_every: Duration::from_millis(10),
    }
}

/// Records what the supervisor asked of the subtree.
#[derive(Debug, Default)]
struct MockSubtree {
    restarts_of_all: usize,
    degraded: bool,
    recoveries: usize,
    watched: Vec<Watched>,
    replaced: Vec<&'static str>,
}

impl Subtree for MockSubtree {
    fn name(&self) -> &str {
        "mock"
    }
    fn watched(&self) -> Vec<Watched> {
        self.watched.clone()
    }
    fn replace_stalled(&mut self, child: &'static str) -> bool {
        self.replaced.push(child);
        true
    }
    fn restart_all(&mut self) {
        self.restarts_of_all += 1;
    }
    fn degrade(&mut self) {
        self.degraded = true;
    }
    fn recover(&mut self) {
        self.degraded = false;
        self.recoveries += 1;
    }
}

#[test]
fn restarts_within_the_intensity_restart_only_the_child() {
    let mut supervisor = SubtreeSupervisor::new(MockSubtree::default(), policy(5, 2));
    let start = Instant::now();
    for i in 0..5 {
        let escalation =
            supervisor.on_exit("mixer", ExitReason::Stopped, start + Duration::from_secs(i));
        assert_eq!(escalation, None);
    }
    assert_eq!(supervisor.subtree().restarts_of_all, 0);
}

#[test]
fn one_restart_past_the_intensity_restarts_the_whole_subtree() {
    let mut supervisor = SubtreeSupervisor::new(MockSubtree::default(), policy(5, 2));
    let start = Instant::now();
    for _ in 0..5 {
        supervisor.on_exit("encoder", ExitReason::Panicked, start);
    }
    let escalation = supervisor.on_exit("encoder", ExitReason::Panicked, start);
    assert_eq!(escalation, Some(Escalation::SubtreeRestart));
    assert_eq!(supervisor.subtree().restarts_of_all, 1);
    // The slate is clean afterwards: five more restarts are allowed again.
    for _ in 0..5 {
        assert_eq!(
            supervisor.on_exit("encoder", ExitReason::Panicked, start),
            None
        );
    }
}

#[test]
fn restarts_spread_wider_than_the_window_never_escalate() {
    let mut supervisor = SubtreeSupervisor::new(MockSubtree::default(), policy(5, 2));
    let start = Instant::now();
    for i in 0..100 {
        let at = start + Duration::from_secs(7 * i);
        assert_eq!(
            supervisor.on_exit("scheduler", ExitReason::Stopped, at),
            None
        );
    }
}

#[test]
fn too_many_subtree_restarts_degrade_the_subtree_until_it_is_calm() {
    let mut supervisor = SubtreeSupervisor::new(MockSubtree::default(), policy(1, 2));
    let start = Instant::now();
    let mut escalations = Vec::new();
    for _ in 0..6 {
        if let Some(e) = supervisor.on_exit("mixer", ExitReason::Stopped, start) {
            escalations.push(e);
        }
    }
    assert_eq!(
        escalations,
        [
            Escalation::SubtreeRestart,
            Escalation::SubtreeRestart,
            Escalation::Degraded
        ]
    );
    assert!(supervisor.is_degraded());
    assert!(supervisor.subtree().degraded);
    // Degraded: deaths are still restarts, with nothing further to escalate to.
    assert_eq!(
        supervisor.on_exit("mixer", ExitReason::Stopped, start),
        None
    );
    // Not yet calm for recover_after (60 s since the last death).
    supervisor.check(start + Duration::from_secs(59));
    assert!(supervisor.is_degraded());
    supervisor.check(start + Duration::from_secs(60));
    assert!(!supervisor.is_degraded());
    assert_eq!(supervisor.subtree().recoveries, 1);
    assert!(!supervisor.subtree().degraded);
}

#[test]
fn a_child_silent_past_its_stall_time_is_replaced_and_counted_once() {
    let heartbeat = Heartbeat::new();
    let subtree = MockSubtree {
        watched: vec![Watched {
            child: "generator",
            heartbeat: Arc::clone(&heartbeat),
            stall_after: Duration::from_millis(50),
        }],
        ..MockSubtree::default()
    };
    let mut supervisor = SubtreeSupervisor::new(subtree, policy(5, 2));
    heartbeat.beat();
    let now = Instant::now();
    supervisor.check(now);
    assert!(supervisor.subtree().replaced.is_empty());
    supervisor.check(now + Duration::from_millis(200));
    assert_eq!(supervisor.subtree().replaced, ["generator"]);
    // An idle child cannot stall.
    heartbeat.idle();
    supervisor.check(now + Duration::from_secs(10));
    assert_eq!(supervisor.subtree().replaced, ["generator"]);
}

// --- Mock actors under a real supervisor ---

/// Makes a mock actor fail: stop with an error, panic in its handler, or block its thread.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
enum Fail {
    Error,
    Panic,
    Stall(Arc<Mutex<mpsc::Receiver<()>>>),
}

/// Asks a mock for how many times it started.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
struct Starts;

/// A mock child: counts its starts, and on [`Fail`] dies the way it is told.
#[derive(Debug)]
struct MockChild {
    name: &'static str,
    starts: Arc<AtomicUsize>,
    supervisor: Recipient<ChildExited>,
}

impl Actor for MockChild {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.starts.fetch_add(1, Ordering::SeqCst);
    }
}

impl Supervised for MockChild {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.supervisor.do_send(ChildExited {
            child: self.name,
            reason: ExitReason::Stopped,
        });
    }
}

impl Handler<Fail> for MockChild {
    type Result = ();

    fn handle(&mut self, fail: Fail, ctx: &mut Context<Self>) {
        match fail {
            Fail::Error => {
                let result: Result<(), &str> = Err("mock failure");
                if result.is_err() {
                    ctx.stop();
                }
            }
            Fail::Panic => {
                if catch_panic(|| -> () { panic!("mock panic") }).is_err() {
                    self.supervisor.do_send(ChildExited {
                        child: self.name,
                        reason: ExitReason::Panicked,
                    });
                }
            }
            Fail::Stall(release) => {
                let release = release.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = release.recv_timeout(Duration::from_secs(30));
            }
        }
    }
}

impl Handler<Starts> for MockChild {
    type Result = usize;

    fn handle(&mut self, _: Starts, _ctx: &mut Context<Self>) -> usize {
        self.starts.load(Ordering::SeqCst)
    }
}

/// A subtree of one mock child, sharing what the supervisor did through atomics.
#[derive(Debug)]
struct SharedSubtree {
    restarts_of_all: Arc<AtomicUsize>,
    degraded: Arc<AtomicUsize>,
}

impl Subtree for SharedSubtree {
    fn name(&self) -> &str {
        "mock"
    }
    fn watched(&self) -> Vec<Watched> {
        Vec::new()
    }
    fn replace_stalled(&mut self, _child: &'static str) -> bool {
        false
    }
    fn restart_all(&mut self) {
        self.restarts_of_all.fetch_add(1, Ordering::SeqCst);
    }
    fn degrade(&mut self) {
        self.degraded.fetch_add(1, Ordering::SeqCst);
    }
    fn recover(&mut self) {}
}

#[actix::test]
async fn a_child_that_errors_or_panics_is_restarted_and_escalates_past_the_intensity() {
    let restarts_of_all = Arc::new(AtomicUsize::new(0));
    let degraded = Arc::new(AtomicUsize::new(0));
    let supervisor = SubtreeSupervisor::new(
        SharedSubtree {
            restarts_of_all: Arc::clone(&restarts_of_all),
            degraded: Arc::clone(&degraded),
        },
        policy(3, 1),
    )
    .start();
    let starts = Arc::new(AtomicUsize::new(0));
    let child = {
        let starts = Arc::clone(&starts);
        let supervisor = supervisor.clone().recipient();
        Supervisor::start(move |_| MockChild {
            name: "mock",
            starts,
            supervisor,
        })
    };
    // Three deaths, both ways: within the intensity.
    for fail in [Fail::Error, Fail::Panic, Fail::Error] {
        child.send(fail).await.unwrap();
    }
    // The child keeps answering: two stops restarted it, the panic was caught in place.
    assert_eq!(child.send(Starts).await.unwrap(), 3);
    settle().await;
    assert_eq!(restarts_of_all.load(Ordering::SeqCst), 0);
    // A fourth death is past the intensity: the subtree is restarted.
    child.send(Fail::Panic).await.unwrap();
    settle().await;
    assert_eq!(restarts_of_all.load(Ordering::SeqCst), 1);
    // Four more: past it again, and past the subtree intensity: degraded.
    for _ in 0..4 {
        child.send(Fail::Error).await.unwrap();
    }
    settle().await;
    assert_eq!(degraded.load(Ordering::SeqCst), 1);
    assert_eq!(child.send(Starts).await.unwrap(), 7);
}

/// Lets the supervisor handle the messages sent so far.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

// --- Ring re-wiring: a stalled consumer is replaced on fresh wiring ---

/// The producer side: pushes a frame per tick into its ring, and takes a newer ring's
/// producer end when the generation moves on.
#[derive(Debug)]
struct MockProducer {
    ring: PcmProducer,
    wiring: Arc<Wiring>,
    next_pts: u64,
}

/// The ring ends waiting to be taken after a re-wiring.
#[derive(Debug, Default)]
struct Wiring {
    generation: AtomicUsize,
    producer: Mutex<Option<PcmProducer>>,
}

impl Actor for MockProducer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(2), |producer, _ctx| {
            if producer.ring.generation() as usize
                != producer.wiring.generation.load(Ordering::Acquire)
                && let Ok(mut pending) = producer.wiring.producer.try_lock()
                && let Some(ring) = pending.take()
            {
                producer.ring = ring;
            }
            let frame = PcmFrame {
                pts: producer.next_pts,
                epoch: 1,
                samples: SILENT_FRAME,
            };
            if producer.ring.push(&frame).is_ok() {
                producer.next_pts += FRAME_SAMPLES as u64;
            }
        });
    }
}

/// The consumer side: pops frames and reports (generation, pts) of each.
#[derive(Debug)]
struct MockConsumer {
    ring: PcmConsumer,
    heartbeat: Arc<Heartbeat>,
    seen: mpsc::Sender<(u64, u64)>,
}

impl Actor for MockConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(2), |consumer, _ctx| {
            consumer.heartbeat.beat();
            let mut frame = PcmFrame {
                pts: 0,
                epoch: 0,
                samples: SILENT_FRAME,
            };
            while consumer.ring.pop_into(&mut frame) {
                let _ = consumer.seen.send((consumer.ring.generation(), frame.pts));
            }
        });
    }
}

impl Handler<Fail> for MockConsumer {
    type Result = ();

    fn handle(&mut self, fail: Fail, _ctx: &mut Context<Self>) {
        if let Fail::Stall(release) = fail {
            let release = release.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = release.recv_timeout(Duration::from_secs(30));
        }
    }
}

/// Replaces a stalled consumer with a new one on a new thread and a new ring.
#[derive(Debug)]
struct RewiringSubtree {
    wiring: Arc<Wiring>,
    heartbeat: Arc<Heartbeat>,
    seen: mpsc::Sender<(u64, u64)>,
    arbiters: Vec<Arbiter>,
    consumers: Vec<Addr<MockConsumer>>,
}

impl Subtree for RewiringSubtree {
    fn name(&self) -> &str {
        "rewiring"
    }
    fn watched(&self) -> Vec<Watched> {
        vec![Watched {
            child: "consumer",
            heartbeat: Arc::clone(&self.heartbeat),
            stall_after: Duration::from_millis(100),
        }]
    }
    fn replace_stalled(&mut self, _child: &'static str) -> bool {
        let generation = self.wiring.generation.load(Ordering::Acquire) as u64 + 1;
        let (producer, consumer) = pcm_ring(200, generation);
        *self
            .wiring
            .producer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(producer);
        self.wiring
            .generation
            .store(generation as usize, Ordering::Release);
        let arbiter = Arbiter::new();
        let heartbeat = Arc::clone(&self.heartbeat);
        heartbeat.beat();
        let seen = self.seen.clone();
        let consumer = MockConsumer::start_in_arbiter(&arbiter.handle(), move |_| MockConsumer {
            ring: consumer,
            heartbeat,
            seen,
        });
        self.arbiters.push(arbiter);
        self.consumers.push(consumer);
        true
    }
    fn restart_all(&mut self) {}
    fn degrade(&mut self) {}
    fn recover(&mut self) {}
}

#[actix::test]
async fn a_stalled_consumer_is_replaced_on_a_new_ring_generation_and_the_producer_follows() {
    let wiring = Arc::new(Wiring::default());
    wiring.generation.store(1, Ordering::Release);
    let (producer, consumer) = pcm_ring(200, 1);
    let (seen_tx, seen_rx) = mpsc::channel();
    let heartbeat = Heartbeat::new();

    let producer_arbiter = Arbiter::new();
    let producer_wiring = Arc::clone(&wiring);
    let _producer =
        MockProducer::start_in_arbiter(&producer_arbiter.handle(), move |_| MockProducer {
            ring: producer,
            wiring: producer_wiring,
            next_pts: 0,
        });
    let consumer_arbiter = Arbiter::new();
    let consumer_heartbeat = Arc::clone(&heartbeat);
    let consumer_seen = seen_tx.clone();
    let stuck = MockConsumer::start_in_arbiter(&consumer_arbiter.handle(), move |_| MockConsumer {
        ring: consumer,
        heartbeat: consumer_heartbeat,
        seen: consumer_seen,
    });
    // This test's own thread blocks on the channel below: the supervisor gets a thread.
    let supervisor_arbiter = Arbiter::new();
    let subtree = RewiringSubtree {
        wiring: Arc::clone(&wiring),
        heartbeat,
        seen: seen_tx,
        arbiters: Vec::new(),
        consumers: Vec::new(),
    };
    let _supervisor =
        SubtreeSupervisor::start_in_arbiter(&supervisor_arbiter.handle(), move |_| {
            SubtreeSupervisor::new(subtree, policy(5, 2))
        });

    // Frames flow on generation 1.
    let first = seen_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(first.0, 1);
    // The consumer's thread blocks.
    let (release_tx, release_rx) = mpsc::channel::<()>();
    stuck.do_send(Fail::Stall(Arc::new(Mutex::new(release_rx))));

    // Frames come again, now on generation 2, from a replacement consumer.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last_on_first = first.1;
    let first_on_second = loop {
        let (generation, pts) = seen_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(Instant::now() < deadline, "no frame on the new ring");
        if generation == 2 {
            break pts;
        }
        last_on_first = pts;
    };
    // The producer moved on without pausing, and never went back in time: the frames
    // the stuck consumer held are the only ones missing (a gap its timestamps show).
    assert!(first_on_second > last_on_first);
    let (generation, pts) = seen_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(generation, 2);
    assert_eq!(pts, first_on_second + FRAME_SAMPLES as u64);
    drop(release_tx);
    producer_arbiter.stop();
    consumer_arbiter.stop();
    supervisor_arbiter.stop();
}
