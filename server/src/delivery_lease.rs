//! Which process delivers subscriptions when several serve one ledger.
//!
//! On the AWS backend any number of `adledger serve` processes share the journal and the
//! subscription store; if each delivered, every event would reach a sink once per
//! process. So delivery sits behind a [`DeliveryGate`]: on AWS it is open only while
//! this process holds a lease (the projector lease's mechanism, `DynamoLease`, on a lease
//! item of its own), and the delivery supervisor starts tasks only while it is open and
//! stops them all when it closes. One lease for every subscription, not one each: an
//! idle standby costs one request every two seconds whatever the number of
//! subscriptions, and the holder one renewal every third of the lease; a subscription's
//! throughput is bound by its sink and its checkpoint writes, not by the process.
//!
//! The holder renews every third of the lease and closes the gate a quarter of the lease
//! before an unrenewed grant lapses (the same margin as the projector, for clocks that
//! disagree); a standby tries again when the holder's grant lapses (at least every 2 s),
//! so a killed holder's subscriptions are taken over at most one lease duration (plus
//! that retry) after its last renewal. A graceful shutdown releases the lease, so the
//! standby takes over within 2 s. Should two processes ever overlap (a holder paused past
//! its lease), each checkpoint write is conditional on the revision it read, so the
//! slower one gets a conflict and stops: events may be delivered twice, never skipped.
//!
//! The local and memory backends need no lease (one process owns the data directory):
//! their gate is always open.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use adledger_engine::ports::{LeaseGrant, ProjectionLease};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The shortest wait before trying a lease another process holds.
const STANDBY_RETRY_MIN: Duration = Duration::from_millis(100);
/// The longest: a standby notices a released lease within this.
const STANDBY_RETRY_MAX: Duration = Duration::from_secs(2);
/// The wait after the lease store failed to answer.
const ERROR_RETRY: Duration = Duration::from_millis(500);
/// The gauge that says whether this process delivers (1) or stands by (0).
const HOLDER_GAUGE: &str = "adledger_subscription_delivery_holder";

/// Whether this process may deliver subscriptions now. Cloning shares it.
#[derive(Clone)]
pub struct DeliveryGate {
    /// Shared with the keeper task, which alone changes it.
    open: Arc<watch::Sender<bool>>,
    lease: Option<Arc<dyn ProjectionLease>>,
    keeper: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for DeliveryGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryGate")
            .field("open", &*self.open.borrow())
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl DeliveryGate {
    /// A gate that is always open: this process is the ledger's only one.
    pub fn always_open() -> DeliveryGate {
        DeliveryGate {
            open: Arc::new(watch::Sender::new(true)),
            lease: None,
            keeper: Arc::default(),
        }
    }

    /// A gate open while this process holds `lease`; a task takes and renews it until
    /// [`release`](Self::release). Must be called on a Tokio runtime.
    pub fn leased(lease: Arc<dyn ProjectionLease>) -> DeliveryGate {
        let open = Arc::new(watch::Sender::new(false));
        metrics::gauge!(HOLDER_GAUGE).set(0.0);
        let keeper = tokio::spawn(keep(lease.clone(), open.clone()));
        DeliveryGate {
            open,
            lease: Some(lease),
            keeper: Arc::new(Mutex::new(Some(keeper))),
        }
    }

    /// Whether this process may deliver now.
    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    /// Waits until the gate is `open` or closed (for ever if it never will be: an
    /// unshared gate never closes, a released one never opens).
    pub async fn wait_until(&self, open: bool) {
        // The gate holds the sender, so the channel never closes while `self` lives.
        let _ = self.open.subscribe().wait_for(|now| *now == open).await;
    }

    /// Stops taking the lease and gives it up, so another process takes over at once
    /// (graceful shutdown). Delivery must be stopped first.
    pub async fn release(&self) {
        let keeper = self
            .keeper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(keeper) = keeper else {
            return;
        };
        keeper.abort();
        let _ = keeper.await;
        self.open.send_replace(false);
        if let Some(lease) = &self.lease {
            metrics::gauge!(HOLDER_GAUGE).set(0.0);
            match lease.release().await {
                Ok(()) => tracing::info!(
                    owner = lease.owner(),
                    "subscription delivery lease released on shutdown"
                ),
                Err(error) => tracing::warn!(
                    owner = lease.owner(),
                    %error,
                    "could not release the subscription delivery lease; another process \
                     takes over when it lapses"
                ),
            }
        }
    }
}

/// Takes and renews `lease` for ever, saying in `open` whether it is held.
async fn keep(lease: Arc<dyn ProjectionLease>, open: Arc<watch::Sender<bool>>) {
    let owner = lease.owner().to_string();
    // While `Some`, this process may deliver: the last grant, less the margin.
    let mut held_until: Option<Instant> = None;
    let mut next_attempt = Instant::now();
    loop {
        let wake = held_until.map_or(next_attempt, |until| until.min(next_attempt));
        tokio::time::sleep_until(wake).await;
        let now = Instant::now();
        if now >= next_attempt {
            // An attempt still unanswered when the grant lapses must not keep the gate
            // open: it is abandoned (the contract allows either outcome) and retried.
            let attempt = lease.acquire();
            let answer = match held_until {
                Some(until) => tokio::time::timeout_at(until, attempt).await.ok(),
                None => Some(attempt.await),
            };
            match answer {
                Some(Ok(LeaseGrant::Held { valid_for })) => {
                    let far = Duration::from_secs(86_400);
                    if held_until.is_none() {
                        tracing::info!(
                            owner,
                            "subscription delivery lease acquired: this process delivers subscriptions"
                        );
                    }
                    held_until = Some(now + (valid_for - valid_for / 4).min(far));
                    next_attempt = now + (valid_for / 3).min(far);
                }
                Some(Ok(LeaseGrant::HeldElsewhere {
                    owner: holder,
                    expires_in,
                })) => {
                    if held_until.take().is_some() {
                        tracing::warn!(owner, %holder, "subscription delivery lease lost to another process; delivery stops here");
                    } else {
                        tracing::debug!(owner, %holder, "another process delivers subscriptions");
                    }
                    next_attempt = now + expires_in.clamp(STANDBY_RETRY_MIN, STANDBY_RETRY_MAX);
                }
                Some(Err(error)) => {
                    tracing::error!(owner, %error, "cannot take or renew the subscription delivery lease; retrying");
                    next_attempt = now + ERROR_RETRY;
                }
                None => next_attempt = Instant::now(),
            }
        }
        if held_until.is_some_and(|until| Instant::now() >= until) {
            tracing::warn!(
                owner,
                "subscription delivery lease lapsed before it could be renewed; delivery stops here"
            );
            held_until = None;
            next_attempt = Instant::now();
        }
        let holding = held_until.is_some();
        if *open.borrow() != holding {
            metrics::gauge!(HOLDER_GAUGE).set(if holding { 1.0 } else { 0.0 });
            open.send_replace(holding);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use adledger_engine::Result;
    use async_trait::async_trait;

    use super::*;

    /// A lease granted while `available`, for `valid_for`; counts releases.
    #[derive(Debug)]
    struct Scripted {
        available: AtomicBool,
        valid_for: Duration,
        releases: AtomicUsize,
    }

    #[async_trait]
    impl ProjectionLease for Scripted {
        fn owner(&self) -> &str {
            "test"
        }

        async fn acquire(&self) -> Result<LeaseGrant> {
            Ok(if self.available.load(Ordering::SeqCst) {
                LeaseGrant::Held {
                    valid_for: self.valid_for,
                }
            } else {
                LeaseGrant::HeldElsewhere {
                    owner: "other".into(),
                    expires_in: self.valid_for,
                }
            })
        }

        async fn release(&self) -> Result<()> {
            self.releases.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_while_held_closes_when_lost_and_releases() {
        let lease = Arc::new(Scripted {
            available: AtomicBool::new(false),
            valid_for: Duration::from_secs(8),
            releases: AtomicUsize::new(0),
        });
        let gate = DeliveryGate::leased(lease.clone());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!gate.is_open(), "held elsewhere: closed");
        lease.available.store(true, Ordering::SeqCst);
        let started = Instant::now();
        gate.wait_until(true).await;
        assert!(
            started.elapsed() <= STANDBY_RETRY_MAX,
            "a standby retries within 2 s"
        );
        // Renewed every third: stays open across many lease lengths.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(gate.is_open());
        // Lost (another process took it after a pause, say): closed by the next renewal
        // at the latest, before the grant would have lapsed.
        lease.available.store(false, Ordering::SeqCst);
        let lost = Instant::now();
        gate.wait_until(false).await;
        assert!(lost.elapsed() <= Duration::from_secs(8) / 3 + Duration::from_millis(1));
        gate.release().await;
        assert_eq!(lease.releases.load(Ordering::SeqCst), 1);
        assert!(!gate.is_open());
    }

    /// A lease store that stops answering: the gate closes a quarter of the lease before
    /// the last grant lapses, while the renewal is still waiting.
    #[tokio::test(start_paused = true)]
    async fn closes_before_the_grant_lapses_when_renewals_hang() {
        #[derive(Debug)]
        struct Hangs(AtomicUsize);
        #[async_trait]
        impl ProjectionLease for Hangs {
            fn owner(&self) -> &str {
                "test"
            }
            async fn acquire(&self) -> Result<LeaseGrant> {
                if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Ok(LeaseGrant::Held {
                        valid_for: Duration::from_secs(12),
                    });
                }
                std::future::pending().await
            }
            async fn release(&self) -> Result<()> {
                Ok(())
            }
        }
        let gate = DeliveryGate::leased(Arc::new(Hangs(AtomicUsize::new(0))));
        let start = Instant::now();
        gate.wait_until(true).await;
        gate.wait_until(false).await;
        let closed_after = start.elapsed();
        assert!(
            closed_after >= Duration::from_secs(9) && closed_after < Duration::from_secs(12),
            "closed after {closed_after:?}"
        );
    }

    #[tokio::test]
    async fn the_unshared_gate_is_always_open() {
        let gate = DeliveryGate::always_open();
        assert!(gate.is_open());
        gate.wait_until(true).await;
        gate.release().await;
        assert!(gate.is_open());
    }
}
