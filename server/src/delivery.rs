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
    FailurePolicy, Subscription, SubscriptionState, SubscriptionStore,
};
use adledger_engine::{Error, Ledger, Result};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::webhook::{self, Delivery};

/// How often the supervisor looks for subscriptions without a task (a task that stopped
/// on an error is restarted this long after).
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
    tasks: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
    wake: Arc<Notify>,
    stopped: Arc<AtomicBool>,
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
        let subscriptions = Subscriptions {
            store,
            ledger,
            options,
            client: webhook::client()?,
            tasks: Arc::default(),
            wake: Arc::new(Notify::new()),
            stopped: Arc::default(),
        };
        let supervisor = subscriptions.clone();
        tokio::spawn(async move { supervisor.supervise().await });
        Ok(subscriptions)
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
            match self.store.list().await {
                Ok(all) => {
                    let mut tasks = self.lock();
                    if self.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    tasks.retain(|_, task| !task.is_finished());
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
            let _ = tokio::time::timeout(SUPERVISE_EVERY, self.wake.notified()).await;
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
                // costs a checkpoint write, which competes with the journal's fsyncs.
                if sub.sink.batch_size > 1 {
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
            let batch = usize::try_from(sub.sink.batch_size.max(1)).unwrap_or(1);
            let chunks = page.events.chunks(batch);
            let count = chunks.len();
            for (n, chunk) in chunks.enumerate() {
                match webhook::deliver(&self.client, &sub.sink, chunk).await {
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
