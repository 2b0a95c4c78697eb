//! Which process delivers subscriptions when several serve one ledger.
//!
//! On the AWS backend any number of `adledger serve` processes share the journal and the
//! subscription store; if each delivered, every event would reach a sink once per
//! process. So delivery sits behind a [`DeliveryGate`], which the delivery supervisor
//! awaits: it starts tasks only while the gate is open and stops them all when it closes.
//!
//! # Which lease
//!
//! The gate follows the state projector's lease (`DynamoLease`, an item of the journal
//! table): the process that projects the journal into the shared state store also
//! delivers every subscription. A lease of its own, or one per subscription, would cost
//! DynamoDB requests an idle process cannot afford: the holder renews every third of the
//! lease and a standby tries every 2 s, and an idle AWS process is held to one request a
//! second (`aws_health::aws::idle_*` assert it), most of which the projector lease and
//! the tip poll already use. Following the projector costs no request at all, and gives
//! delivery the projector's proven schedule: the holder renews every third of the lease
//! and stops a quarter of the lease before an unrenewed grant lapses (so the gate closes
//! then too); a standby takes over once the holder's grant lapses, at most the lease
//! duration (`--lease-ms`, 10 s by default) plus its 2 s retry after the holder's last
//! renewal; a graceful shutdown releases the lease, so the standby takes over within
//! 2 s. The price is that one process does both background jobs; a subscription's
//! throughput is bound by its sink and its checkpoint writes, not by the process.
//!
//! Should two processes ever overlap (a holder paused past its lease), every checkpoint
//! write is conditional on the revision it read, so the slower one gets a conflict and
//! stops: events may be delivered twice, never skipped, never out of order past the
//! stored checkpoint.
//!
//! The local and memory backends need no lease (one process owns the data directory):
//! their gate is always open.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the gate looks at the lease it follows (an in-memory read).
const FOLLOW_EVERY: Duration = Duration::from_millis(100);
/// How often the supervisor lists the subscriptions when one process owns the store (a
/// sled read): another process cannot change it, so this only restarts failed tasks.
const RECHECK_UNSHARED: Duration = Duration::from_secs(1);
/// How often the delivering process lists a shared store (one DynamoDB Query): a
/// subscription created or resumed through another process starts delivering within
/// this. Longer than the unshared period to keep an idle process within one request a
/// second.
const RECHECK_SHARED: Duration = Duration::from_secs(5);
/// The gauge that says whether this process delivers (1) or stands by (0).
const HOLDER_GAUGE: &str = "adledger_subscription_delivery_holder";

/// Whether this process may deliver subscriptions now. Cloning shares it.
#[derive(Clone)]
pub struct DeliveryGate {
    /// Shared with the follower task, which alone changes it.
    open: Arc<watch::Sender<bool>>,
    recheck: Duration,
    follower: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for DeliveryGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryGate")
            .field("open", &*self.open.borrow())
            .field("recheck", &self.recheck)
            .finish_non_exhaustive()
    }
}

impl DeliveryGate {
    /// A gate that is always open: this process is the ledger's only one.
    pub fn always_open() -> DeliveryGate {
        DeliveryGate {
            open: Arc::new(watch::Sender::new(true)),
            recheck: RECHECK_UNSHARED,
            follower: Arc::default(),
        }
    }

    /// A gate open while `holds` says this process holds the lease it follows (the
    /// state projector's: see the module docs), looked at every 100 ms until
    /// [`release`](Self::release). Must be called on a Tokio runtime.
    pub fn following(holds: impl Fn() -> bool + Send + 'static) -> DeliveryGate {
        let open = Arc::new(watch::Sender::new(false));
        metrics::gauge!(HOLDER_GAUGE).set(0.0);
        let follower = tokio::spawn(follow(holds, open.clone()));
        DeliveryGate {
            open,
            recheck: RECHECK_SHARED,
            follower: Arc::new(Mutex::new(Some(follower))),
        }
    }

    /// Whether this process may deliver now.
    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    /// How often the supervisor should list the subscriptions while the gate is open.
    pub fn recheck_every(&self) -> Duration {
        self.recheck
    }

    /// Waits until the gate is `open` or closed (for ever if it never will be: an
    /// unshared gate never closes, a released one never opens).
    pub async fn wait_until(&self, open: bool) {
        // The gate holds the sender, so the channel never closes while `self` lives.
        let _ = self.open.subscribe().wait_for(|now| *now == open).await;
    }

    /// Closes the gate for good (shutdown, after delivery stopped; the lease itself is
    /// released by the projector when the ledger stops).
    pub async fn release(&self) {
        let follower = self
            .follower
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(follower) = follower else {
            return;
        };
        follower.abort();
        let _ = follower.await;
        metrics::gauge!(HOLDER_GAUGE).set(0.0);
        self.open.send_replace(false);
    }
}

/// Mirrors `holds` into `open` for ever.
async fn follow(holds: impl Fn() -> bool, open: Arc<watch::Sender<bool>>) {
    let mut ticks = tokio::time::interval(FOLLOW_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let holding = holds();
        if *open.borrow() != holding {
            if holding {
                tracing::info!("this process holds the projector lease: it delivers subscriptions");
            } else {
                tracing::warn!(
                    "this process no longer holds the projector lease: subscription delivery stops here"
                );
            }
            metrics::gauge!(HOLDER_GAUGE).set(if holding { 1.0 } else { 0.0 });
            open.send_replace(holding);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::time::Instant;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_the_lease_and_closes_for_good_on_release() {
        let held = Arc::new(AtomicBool::new(false));
        let flag = held.clone();
        let gate = DeliveryGate::following(move || flag.load(Ordering::SeqCst));
        assert_eq!(gate.recheck_every(), RECHECK_SHARED);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!gate.is_open(), "not held: closed");
        held.store(true, Ordering::SeqCst);
        let taken = Instant::now();
        gate.wait_until(true).await;
        assert!(
            taken.elapsed() <= FOLLOW_EVERY,
            "opens within {FOLLOW_EVERY:?}"
        );
        held.store(false, Ordering::SeqCst);
        let lost = Instant::now();
        gate.wait_until(false).await;
        assert!(
            lost.elapsed() <= FOLLOW_EVERY,
            "closes within {FOLLOW_EVERY:?}"
        );
        held.store(true, Ordering::SeqCst);
        gate.wait_until(true).await;
        gate.release().await;
        assert!(!gate.is_open(), "released: closed");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!gate.is_open(), "and never opens again");
    }

    #[tokio::test]
    async fn the_unshared_gate_is_always_open() {
        let gate = DeliveryGate::always_open();
        assert!(gate.is_open());
        assert_eq!(gate.recheck_every(), RECHECK_UNSHARED);
        gate.wait_until(true).await;
        gate.release().await;
        assert!(gate.is_open());
    }
}
