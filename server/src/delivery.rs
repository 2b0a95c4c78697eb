//! Delivering durable subscriptions: one task per active subscription reads the feed from
//! its checkpoint and hands events to its sink, in journal order, at least once.
//!
//! Commits never wait for this: a task reads committed blocks like any feed reader. After
//! each acknowledged request the checkpoint is saved with a conditional write (see
//! `SubscriptionStore::replace`), so after a crash delivery resumes from the last saved
//! checkpoint: events since then may be delivered again, none is skipped. An operator's
//! change (pause, seek, delete) restarts the subscription's task, and a task that finds
//! its record changed under it (a conflict) stops and is restarted from the stored one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use adledger_engine::feed::{CloudEvent, EventId, FeedOptions, Position, ledger_source, read_page};
use adledger_engine::subscription::{
    FailurePolicy, Sink, Subscription, SubscriptionState, SubscriptionStore,
};
use adledger_engine::{Error, Ledger, Result};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::delivery_lease::DeliveryGate;
use crate::webhook::{self, Delivery};

/// How often the supervisor looks for subscriptions without a task (a task that stopped
/// on an error is restarted this long after) when one process owns the store (see
/// `DeliveryGate::recheck_every`), and how long a caught-up task waits for a block before
/// it reads its record again.
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);
/// Events read per page by a delivery task.
const PAGE_EVENTS: usize = 256;
/// How long a caught-up delivery task with batches waits after a commit wakes it, so
/// the commits of the next moments go in the same request (see `deliver`).
const LINGER: Duration = Duration::from_millis(20);

/// The subscriptions of a running server: their store, and the delivery tasks.
#[derive(Clone)]
pub struct Subscriptions {
    /// Where subscriptions live.
    pub store: Arc<dyn SubscriptionStore>,
    ledger: Arc<Ledger>,
    options: FeedOptions,
    client: reqwest_tls::Client,
    event_bridge: crate::eventbridge::Clients,
    tasks: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
    wake: Arc<Notify>,
    stopped: Arc<AtomicBool>,
    /// Open while this process may deliver (always, unless several processes share the
    /// ledger: see `delivery_lease`).
    gate: DeliveryGate,
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions").finish_non_exhaustive()
    }
}

impl Subscriptions {
    /// Starts the supervisor, which starts one delivery task per active subscription.
    pub fn start(
        store: Arc<dyn SubscriptionStore>,
        ledger: Arc<Ledger>,
        options: FeedOptions,
    ) -> std::result::Result<Subscriptions, String> {
        Subscriptions::start_gated(store, ledger, options, DeliveryGate::always_open())
    }

    /// Like [`start`](Self::start), delivering only while `gate` is open: every task is
    /// stopped when it closes, and started again from the stored checkpoints when it
    /// opens.
    pub fn start_gated(
        store: Arc<dyn SubscriptionStore>,
        ledger: Arc<Ledger>,
        options: FeedOptions,
        gate: DeliveryGate,
    ) -> std::result::Result<Subscriptions, String> {
        let subscriptions = Subscriptions {
            store,
            ledger,
            options,
            client: webhook::client()?,
            event_bridge: crate::eventbridge::Clients::default(),
            tasks: Arc::default(),
            wake: Arc::new(Notify::new()),
            stopped: Arc::default(),
            gate,
        };
        let supervisor = subscriptions.clone();
        tokio::spawn(async move { supervisor.supervise().await });
        let watcher = subscriptions.clone();
        tokio::spawn(async move { watcher.follow_gate().await });
        Ok(subscriptions)
    }

    /// The gate delivery waits behind (shutdown releases it).
    pub fn gate(&self) -> &DeliveryGate {
        &self.gate
    }

    /// Wakes the supervisor when the gate opens; stops every task when it closes.
    async fn follow_gate(self) {
        loop {
            self.gate.wait_until(true).await;
            self.wake.notify_one();
            self.gate.wait_until(false).await;
            for (_, task) in self.lock().drain() {
                task.abort();
            }
        }
    }

    /// Stops `name`'s task (if any) and lets the supervisor start a new one from the
    /// stored record: called after every operator change.
    pub fn restart(&self, name: &str) {
        if let Some(task) = self.lock().remove(name) {
            task.abort();
        }
        self.wake.notify_one();
    }

    /// Stops every delivery task (at shutdown).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        for (_, task) in self.lock().drain() {
            task.abort();
        }
    }

    /// The ledger the subscriptions read.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The webhook client (redelivery uses it too).
    pub fn client(&self) -> &reqwest_tls::Client {
        &self.client
    }

    /// The EventBridge clients (redelivery uses them too).
    pub fn event_bridge(&self) -> &crate::eventbridge::Clients {
        &self.event_bridge
    }

    /// The feed options.
    pub fn options(&self) -> &FeedOptions {
        &self.options
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, JoinHandle<()>>> {
        // Map operations only: a poisoned lock guards no torn state.
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn supervise(self) {
        loop {
            // A process that does not deliver does not read the store (on AWS, a Query).
            if !self.gate.is_open() {
                self.gate.wait_until(true).await;
            }
            match self.store.list().await {
                Ok(all) => {
                    let mut tasks = self.lock();
                    if self.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    tasks.retain(|_, task| !task.is_finished());
                    // Checked again under the lock `follow_gate` takes to stop the tasks.
                    let all = if self.gate.is_open() { all } else { Vec::new() };
                    for sub in all {
                        if sub.state == SubscriptionState::Active && !tasks.contains_key(&sub.name)
                        {
                            let worker = self.clone();
                            let name = sub.name.clone();
                            let task = tokio::spawn(async move {
                                if let Err(error) = worker.deliver(&name).await {
                                    tracing::warn!(subscription = %name, %error, "delivery stopped; restarting it from the stored checkpoint");
                                }
                            });
                            tasks.insert(sub.name, task);
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot list subscriptions"),
            }
            let _ = tokio::time::timeout(self.gate.recheck_every(), self.wake.notified()).await;
        }
    }

    /// Delivers `name` until it is no longer active (or an error stops it).
    async fn deliver(&self, name: &str) -> Result<()> {
        let journal = self.ledger.ports().journal.clone();
        let mut source: Option<String> = None;
        loop {
            let Some(mut sub) = self.store.get(name).await? else {
                return Ok(());
            };
            if sub.state != SubscriptionState::Active {
                return Ok(());
            }
            let tip = self.ledger.read_point().await?;
            if sub.checkpoint.block >= tip {
                let deadline = tokio::time::Instant::now() + SUPERVISE_EVERY;
                self.ledger
                    .wait_for_block(sub.checkpoint.block, deadline)
                    .await?;
                // Let a burst of commits gather into fewer, fuller requests: each one
                // costs a checkpoint write, which competes with the journal's fsyncs
                // (an EventBridge sink sends up to 10 entries per call).
                if sub.sink.webhook().is_none_or(|hook| hook.batch_size > 1) {
                    tokio::time::sleep(LINGER).await;
                }
                continue;
            }
            let source = match &source {
                Some(source) => source.clone(),
                None => {
                    let Some(found) = ledger_source(journal.as_ref()).await? else {
                        continue;
                    };
                    source = Some(found.clone());
                    found
                }
            };
            let page = read_page(
                journal.as_ref(),
                &source,
                &self.options,
                &sub.filter(),
                sub.checkpoint,
                PAGE_EVENTS,
                tip,
            )
            .await?;
            // The one place delivery depends on the sink's kind.
            let hook = match &sub.sink {
                Sink::Webhook(hook) => hook.clone(),
                Sink::EventBridge(bus) => {
                    let bus = bus.clone();
                    let events = &page.events;
                    let (store, clients) = (self.store.as_ref(), &self.event_bridge);
                    if !crate::eventbridge::deliver_page(
                        store, clients, &mut sub, &bus, events, page.next,
                    )
                    .await?
                    {
                        return Ok(());
                    }
                    continue;
                }
            };
            let batch = usize::try_from(hook.batch_size.max(1)).unwrap_or(1);
            let chunks = page.events.chunks(batch);
            let count = chunks.len();
            for (n, chunk) in chunks.enumerate() {
                match webhook::deliver(&self.client, &hook, chunk).await {
                    Delivery::Acknowledged => {
                        sub.checkpoint = after(chunk)?;
                        sub.last_error = None;
                        metrics::counter!("adledger_subscription_events_delivered_total")
                            .increment(chunk.len() as u64);
                    }
                    Delivery::Gone => {
                        sub.state = SubscriptionState::Disabled;
                        sub.last_error = Some("the endpoint answered 410 Gone".into());
                        self.store.replace(&sub).await?;
                        tracing::warn!(subscription = %name, "sink answered 410 Gone; subscription disabled");
                        return Ok(());
                    }
                    Delivery::Failed(detail) => {
                        sub.last_error = Some(detail);
                        if sub.on_failure == FailurePolicy::Block {
                            sub.state = SubscriptionState::Blocked;
                            self.store.replace(&sub).await?;
                            tracing::warn!(subscription = %name, "retries ran out; subscription blocked");
                            return Ok(());
                        }
                        sub.dead_letter(chunk.iter().map(|e| e.id.clone()));
                        sub.checkpoint = after(chunk)?;
                        metrics::counter!("adledger_subscription_events_dead_lettered_total")
                            .increment(chunk.len() as u64);
                    }
                }
                // The last chunk's checkpoint is saved below with the page's end: one
                // write, still before anything else is sent.
                if n + 1 < count {
                    sub = self.store.replace(&sub).await?;
                }
            }
            if page.next > sub.checkpoint || count > 0 {
                sub.checkpoint = sub.checkpoint.max(page.next);
                self.store.replace(&sub).await?;
            }
        }
    }
}

/// The position after the last event of `chunk`.
fn after(chunk: &[CloudEvent]) -> Result<Position> {
    let last = chunk.last().map(|e| e.id.as_str()).unwrap_or_default();
    EventId::parse(last)
        .map(Position::after_event)
        .ok_or_else(|| Error::Corrupt(format!("the feed produced an unparsable event id {last:?}")))
}

/// The event `id`, read from the journal (dead letters keep ids only).
pub async fn read_event(subscriptions: &Subscriptions, id: &str) -> Result<Option<CloudEvent>> {
    let Some(event_id) = EventId::parse(id) else {
        return Ok(None);
    };
    let journal = subscriptions.ledger.ports().journal.clone();
    let tip = subscriptions.ledger.read_point().await?;
    if event_id.sequence >= tip {
        return Ok(None);
    }
    let Some(source) = ledger_source(journal.as_ref()).await? else {
        return Ok(None);
    };
    let page = read_page(
        journal.as_ref(),
        &source,
        &subscriptions.options,
        &Default::default(),
        Position {
            block: event_id.sequence,
            index: event_id.index,
        },
        1,
        tip,
    )
    .await?;
    Ok(page.events.into_iter().find(|e| e.id == id))
}

/// How far `sub` is behind: blocks not yet fully delivered, and the age in seconds of
/// the oldest of them (0 when caught up).
pub async fn lag(subscriptions: &Subscriptions, sub: &Subscription) -> Result<(u64, u64)> {
    let tip = subscriptions.ledger.read_point().await?;
    let blocks = tip.saturating_sub(sub.checkpoint.block);
    if blocks == 0 {
        return Ok((0, 0));
    }
    let journal = subscriptions.ledger.ports().journal.clone();
    let Some(source) = ledger_source(journal.as_ref()).await? else {
        return Ok((blocks, 0));
    };
    let page = read_page(
        journal.as_ref(),
        &source,
        &subscriptions.options,
        &Default::default(),
        Position {
            block: sub.checkpoint.block,
            index: 0,
        },
        1,
        tip,
    )
    .await?;
    let seconds = page
        .events
        .first()
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(&e.time).ok())
        .map(|t| {
            let age = chrono::Utc::now().signed_duration_since(t).num_seconds();
            u64::try_from(age).unwrap_or(0)
        })
        .unwrap_or(0);
    Ok((blocks, seconds))
}
