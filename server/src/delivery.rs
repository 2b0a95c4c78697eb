//! Delivering durable subscriptions: one task per active subscription reads the feed from
//! its checkpoint and hands events to its sink, in journal order, at least once.
//!
//! Commits never wait for this: a task reads committed blocks like any feed reader. After
//! an acknowledged request the checkpoint is saved with a conditional write (see
//! `SubscriptionStore::replace`), requests in quick succession sharing one save (see
//! [`CheckpointSaves`]), so after a crash delivery resumes from the last saved
//! checkpoint: events since then may be delivered again, none is skipped.
//!
//! An operator's change (pause, seek, rotate, delete) restarts the subscription's task,
//! cooperatively: the task lets a request in flight be answered (for [`STOP_GRACE`] at
//! most), saves what was acknowledged, and ends; only then does its successor start,
//! from the stored record. A save that an operator's write got to first is rebased onto
//! it (see `save_progress`), so a change never makes acknowledged events go out again;
//! only a seek discards the task's progress, as it means to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use adledger_engine::feed::{CloudEvent, EventId, FeedOptions, Position, ledger_source, read_page};
use adledger_engine::subscription::{
    CheckpointSaves, FailurePolicy, Sink, Subscription, SubscriptionState, SubscriptionStore,
    WebhookSink, save_progress,
};
use adledger_engine::{Error, Ledger, Result};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::delivery_lease::DeliveryGate;
use crate::feed_tail::{FeedTail, Prepared, TailBlock};
use crate::webhook::{self, Delivery, Outgoing};

/// How often the supervisor looks for subscriptions without a task (a task that stopped
/// on an error is restarted this long after) when one process owns the store (see
/// `DeliveryGate::recheck_every`), and how long a caught-up task waits for a block before
/// it reads its record again.
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);
/// Events read per page by a delivery task.
const PAGE_EVENTS: usize = 256;
/// Starts the server's shared live tail of the feed, or answers the running one.
pub type TailStarter = Arc<dyn Fn() -> FeedTail + Send + Sync>;

/// How long a deliverer behind the tip waits for the tail to offer the next block
/// before it reads the journal itself.
const TAIL_WAIT: Duration = Duration::from_millis(100);
/// How long a caught-up delivery task with batches waits after a commit wakes it, so
/// the commits of the next moments go in the same request (see `deliver`).
const LINGER: Duration = Duration::from_millis(20);
/// How long a deliverer asked to stop waits for the answer to the request in flight
/// (its events are delivered again if it does not come), and how long shutdown waits
/// for the deliverers to save.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// One subscription's delivery task, and how to ask it to stop.
struct Worker {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

/// The subscriptions of a running server: their store, and the delivery tasks.
#[derive(Clone)]
pub struct Subscriptions {
    /// Where subscriptions live.
    pub store: Arc<dyn SubscriptionStore>,
    ledger: Arc<Ledger>,
    options: FeedOptions,
    client: reqwest_tls::Client,
    event_bridge: crate::eventbridge::Clients,
    tasks: Arc<Mutex<HashMap<String, Worker>>>,
    wake: Arc<Notify>,
    stopped: Arc<AtomicBool>,
    /// Starts (or finds) the feed's shared live tail, once the server offers it (see
    /// `use_tail`).
    tail: Arc<OnceLock<TailStarter>>,
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
            tail: Arc::default(),
            gate,
        };
        let supervisor = subscriptions.clone();
        tokio::spawn(async move { supervisor.supervise().await });
        let watcher = subscriptions.clone();
        tokio::spawn(async move { watcher.follow_gate().await });
        Ok(subscriptions)
    }

    /// Lets caught-up webhook deliverers take new blocks from the feed's shared live
    /// tail (the one event streams use) instead of each reading and serializing every
    /// new block itself: with three sinks that was three times the feed's work per
    /// commit. Without it (tests that assemble no server) they read the journal.
    /// The tail starts when a deliverer first catches up (as it does for the first
    /// event stream), so a server without subscriptions runs no tail.
    pub fn use_tail(&self, tail: TailStarter) {
        let _ = self.tail.set(tail);
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
            // Another process may deliver now: nothing more is sent or written.
            for (_, worker) in self.lock().drain() {
                worker.task.abort();
            }
        }
    }

    /// Asks `name`'s task (if any) to stop and lets the supervisor start a new one from
    /// the stored record once it has ended: called after every operator change.
    pub fn restart(&self, name: &str) {
        if let Some(worker) = self.lock().get(name) {
            worker.stop.cancel();
        }
        self.wake.notify_one();
    }

    /// Stops every delivery task (at shutdown), letting each save what was acknowledged
    /// ([`STOP_GRACE`] at most for a request in flight); tasks still running after that
    /// are aborted.
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let workers: Vec<Worker> = self.lock().drain().map(|(_, worker)| worker).collect();
        for worker in &workers {
            worker.stop.cancel();
        }
        let deadline = Instant::now() + STOP_GRACE + Duration::from_secs(1);
        for mut worker in workers {
            if tokio::time::timeout_at(deadline, &mut worker.task)
                .await
                .is_err()
            {
                worker.task.abort();
            }
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Worker>> {
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
                    // A task asked to stop stays until it has ended (and saved), so
                    // its successor starts from what it saved.
                    tasks.retain(|_, worker| !worker.task.is_finished());
                    // Checked again under the lock `follow_gate` takes to stop the tasks.
                    let all = if self.gate.is_open() { all } else { Vec::new() };
                    for sub in all {
                        if sub.state == SubscriptionState::Active && !tasks.contains_key(&sub.name)
                        {
                            let deliverer = self.clone();
                            let name = sub.name.clone();
                            let stop = CancellationToken::new();
                            let stopping = stop.clone();
                            let task = tokio::spawn(async move {
                                match deliverer.deliver(&name, &stopping).await {
                                    // Stopped on purpose (or the record changed): a
                                    // successor may start at once.
                                    Ok(()) => deliverer.wake.notify_one(),
                                    Err(error) => {
                                        tracing::warn!(subscription = %name, %error, "delivery stopped; restarting it from the stored checkpoint");
                                    }
                                }
                            });
                            tasks.insert(sub.name, Worker { task, stop });
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot list subscriptions"),
            }
            let _ = tokio::time::timeout(self.gate.recheck_every(), self.wake.notified()).await;
        }
    }

    /// Delivers `name` until it is no longer active (or an error stops it).
    ///
    /// The record is read when the task starts and again whenever it is idle with
    /// nothing unsaved (so an operator's change through another process is seen); in
    /// between, the task's copy is the truth, saved as [`CheckpointSaves`] says.
    ///
    /// A caught-up webhook deliverer takes new blocks from the shared live tail (see
    /// [`Subscriptions::use_tail`]), each event read and serialized once for every
    /// subscription and event stream, exactly like an event stream does: only the block
    /// that is next at its checkpoint, and the journal for anything else (a later block,
    /// a lag past the tail's buffer, or a tail silent while the journal moved).
    ///
    /// When `stop` is cancelled the task ends at once if it is waiting, or after the
    /// request in flight is answered (for [`STOP_GRACE`] at most); either way it saves
    /// what was acknowledged before it ends.
    async fn deliver(&self, name: &str, stop: &CancellationToken) -> Result<()> {
        let Some(mut sub) = self.store.get(name).await? else {
            return Ok(());
        };
        let mut saves = CheckpointSaves::new(Instant::now());
        let busy = AtomicBool::new(false);
        let outcome = {
            let run = self.run(&mut sub, &mut saves, &busy, stop);
            tokio::pin!(run);
            tokio::select! {
                outcome = &mut run => outcome,
                () = stop.cancelled() => {
                    if busy.load(Ordering::SeqCst) {
                        // `run` returns once the request settles (see `settle`).
                        tokio::time::timeout(STOP_GRACE, &mut run).await.unwrap_or(Ok(()))
                    } else {
                        Ok(())
                    }
                }
            }
        };
        // Also when `run` was dropped in a save: saving twice is harmless.
        if saves.pending() || stop.is_cancelled() {
            save_progress(self.store.as_ref(), &mut sub).await?;
        }
        outcome
    }

    /// The delivery loop of [`deliver`](Self::deliver), on its copy of the record.
    /// `busy` is set while a request is in flight or being settled.
    async fn run(
        &self,
        sub: &mut Subscription,
        saves: &mut CheckpointSaves,
        busy: &AtomicBool,
        stop: &CancellationToken,
    ) -> Result<()> {
        let journal = self.ledger.ports().journal.clone();
        let mut source: Option<String> = None;
        let name = sub.name.clone();
        // Subscribed when first caught up, and kept, so no block falls between a
        // journal read and the tail.
        let mut live: Option<broadcast::Receiver<Arc<TailBlock>>> = None;
        // Set when the tail could not offer the next block: one journal read first.
        let mut journal_once = false;
        loop {
            if sub.state != SubscriptionState::Active {
                return Ok(());
            }
            let tip = self.ledger.read_point().await?;
            let caught_up = sub.checkpoint.block >= tip;
            let hook = sub.sink.webhook().cloned();
            if let (Some(hook), Some(tail), false) = (hook, self.tail.get(), journal_once) {
                if live.is_none() && caught_up {
                    live = Some(tail().subscribe());
                }
                if let Some(receiver) = live.as_mut() {
                    let wait = if !caught_up {
                        // Committed, and the tail is reading it: wait that long at most.
                        Instant::now() + TAIL_WAIT
                    } else if saves.pending() {
                        saves.deadline()
                    } else {
                        Instant::now() + SUPERVISE_EVERY
                    };
                    let flags = (busy, stop);
                    match self
                        .take_live(receiver, &hook, sub, saves, flags, wait, caught_up)
                        .await?
                    {
                        Live::Delivered => continue,
                        Live::Stopped => return Ok(()),
                        Live::Journal => {
                            journal_once = true;
                            continue;
                        }
                        Live::Lagged => {
                            live = None;
                            journal_once = true;
                            continue;
                        }
                        Live::Idle if !caught_up => {
                            journal_once = true;
                            continue;
                        }
                        Live::Idle if saves.pending() => {
                            if !self.save(sub, saves).await? {
                                return Ok(());
                            }
                            continue;
                        }
                        Live::Idle => {
                            let Some(stored) = self.store.get(&name).await? else {
                                return Ok(());
                            };
                            *sub = stored;
                            continue;
                        }
                    }
                }
            }
            journal_once = false;
            if caught_up {
                let lingers = sub.sink.webhook().is_none_or(|hook| hook.batch_size > 1);
                if saves.pending() {
                    // Caught up with an unsaved checkpoint: save it when it is due,
                    // unless a block comes first (then it goes with the next request).
                    let tip = self
                        .ledger
                        .wait_for_block(sub.checkpoint.block, saves.deadline())
                        .await?;
                    if tip <= sub.checkpoint.block {
                        if !self.save(sub, saves).await? {
                            return Ok(());
                        }
                    } else if lingers {
                        tokio::time::sleep(LINGER).await;
                    }
                    continue;
                }
                let deadline = Instant::now() + SUPERVISE_EVERY;
                self.ledger
                    .wait_for_block(sub.checkpoint.block, deadline)
                    .await?;
                // Let a burst of commits gather into fewer, fuller requests (an
                // EventBridge sink sends up to 10 entries per call).
                if lingers {
                    tokio::time::sleep(LINGER).await;
                }
                // Everything is saved: what is stored is the truth (an operator may
                // have changed it through another process).
                let Some(stored) = self.store.get(&name).await? else {
                    return Ok(());
                };
                *sub = stored;
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
                    // Saves after every accepted call itself.
                    let bus = bus.clone();
                    let events = &page.events;
                    let (store, clients) = (self.store.as_ref(), &self.event_bridge);
                    busy.store(true, Ordering::SeqCst);
                    let goes_on = crate::eventbridge::deliver_page(
                        store, clients, sub, &bus, events, page.next,
                    )
                    .await?;
                    busy.store(false, Ordering::SeqCst);
                    if !goes_on || stop.is_cancelled() {
                        return Ok(());
                    }
                    continue;
                }
            };
            let batch = usize::try_from(hook.batch_size.max(1)).unwrap_or(1);
            for chunk in page.events.chunks(batch) {
                busy.store(true, Ordering::SeqCst);
                let sent = Instant::now();
                let delivery = webhook::deliver_until(&self.client, &hook, chunk, stop).await;
                let ids = || chunk.iter().map(|e| e.id.clone());
                let next = (after(chunk)?, sent.elapsed());
                let goes_on = self.settle(sub, saves, delivery, next, ids).await?;
                busy.store(false, Ordering::SeqCst);
                if !goes_on || stop.is_cancelled() {
                    return Ok(());
                }
            }
            // Past blocks the filter skipped: saved with the next save.
            if page.next > sub.checkpoint {
                sub.checkpoint = page.next;
                saves.advanced();
            }
        }
    }

    /// Waits until `deadline` for the block next at `sub`'s checkpoint from the tail,
    /// and delivers it with the next ones the receiver holds (after a linger when
    /// `caught_up`, so a burst of commits goes in fewer requests), a page at most.
    /// `busy` and `stop` are [`run`](Self::run)'s.
    #[allow(clippy::too_many_arguments)]
    async fn take_live(
        &self,
        receiver: &mut broadcast::Receiver<Arc<TailBlock>>,
        hook: &WebhookSink,
        sub: &mut Subscription,
        saves: &mut CheckpointSaves,
        (busy, stop): (&AtomicBool, &CancellationToken),
        deadline: Instant,
        caught_up: bool,
    ) -> Result<Live> {
        let mut blocks = Vec::new();
        loop {
            let received = match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(received) => received,
                Err(_) => return Ok(Live::Idle),
            };
            match received {
                Ok(block) if block.sequence < sub.checkpoint.block => continue,
                Ok(block) if block.sequence == sub.checkpoint.block => {
                    blocks.push(block);
                    break;
                }
                // A later block: the journal has what is next.
                Ok(_) => return Ok(Live::Journal),
                // Blocks lost to lag (or no tail): the journal, and a new receiver.
                Err(_) => return Ok(Live::Lagged),
            }
        }
        if caught_up && hook.batch_size > 1 {
            // Let a burst of commits gather into fewer, fuller requests.
            tokio::time::sleep(LINGER).await;
        }
        let mut then = Live::Delivered;
        let mut events = blocks.iter().map(|b| b.events.len()).sum::<usize>();
        while events < PAGE_EVENTS {
            let next = blocks.last().map_or(0, |b| b.sequence + 1);
            match receiver.try_recv() {
                Ok(block) if block.sequence == next => {
                    events += block.events.len();
                    blocks.push(block);
                }
                Ok(block) if block.sequence < next => {}
                Err(broadcast::error::TryRecvError::Empty) => break,
                Ok(_) => {
                    then = Live::Journal;
                    break;
                }
                Err(_) => {
                    then = Live::Lagged;
                    break;
                }
            }
        }
        let filter = sub.filter();
        let start = sub.checkpoint;
        let events: Vec<(EventId, &Arc<Prepared>)> = blocks
            .iter()
            .flat_map(|block| {
                block.events.iter().map(move |event| {
                    let id = EventId {
                        sequence: block.sequence,
                        index: event.index,
                    };
                    (id, event)
                })
            })
            .filter(|(id, event)| {
                (id.sequence > start.block || id.index >= start.index) && event.admitted_by(&filter)
            })
            .collect();
        let batch = usize::try_from(hook.batch_size.max(1)).unwrap_or(1);
        for chunk in events.chunks(batch) {
            let (Some((first, _)), Some((last, _))) = (chunk.first(), chunk.last()) else {
                continue;
            };
            let jsons: Vec<&[u8]> = chunk.iter().map(|(_, e)| e.json.as_ref()).collect();
            let outgoing = Outgoing::join(&first.to_string(), &last.to_string(), &jsons);
            busy.store(true, Ordering::SeqCst);
            let sent = Instant::now();
            let delivery = webhook::send_until(&self.client, hook, &outgoing, stop).await;
            let ids = || chunk.iter().map(|(id, _)| id.to_string());
            let next = (Position::after_event(*last), sent.elapsed());
            let goes_on = self.settle(sub, saves, delivery, next, ids).await?;
            busy.store(false, Ordering::SeqCst);
            if !goes_on || stop.is_cancelled() {
                return Ok(Live::Stopped);
            }
        }
        if let Some(block) = blocks.last() {
            let end = Position::after_block(block.sequence);
            if end > sub.checkpoint {
                sub.checkpoint = end;
                saves.advanced();
            }
        }
        Ok(then)
    }

    /// Records how one request ended: past its events (`next` is the position after
    /// them, and how long the request took) when acknowledged or dead-lettered, saving
    /// as due; `Ok(false)` when
    /// delivery stops: the subscription stopped (410, or a `block` failure, saved in that
    /// state), the request was interrupted, or a save found the record sought to or
    /// deleted.
    async fn settle<I: Iterator<Item = String>>(
        &self,
        sub: &mut Subscription,
        saves: &mut CheckpointSaves,
        delivery: Delivery,
        (next, took): (Position, Duration),
        ids: impl Fn() -> I,
    ) -> Result<bool> {
        let count = ids().count() as u64;
        match delivery {
            Delivery::Acknowledged => {
                sub.checkpoint = next;
                sub.last_error = None;
                saves.acknowledged(count, took);
                metrics::counter!("adledger_subscription_events_delivered_total").increment(count);
            }
            Delivery::Interrupted => return Ok(false),
            Delivery::Gone => {
                sub.state = SubscriptionState::Disabled;
                sub.last_error = Some("the endpoint answered 410 Gone".into());
                self.save(sub, saves).await?;
                tracing::warn!(subscription = %sub.name, "sink answered 410 Gone; subscription disabled");
                return Ok(false);
            }
            Delivery::Failed(detail) => {
                sub.last_error = Some(detail);
                if sub.on_failure == FailurePolicy::Block {
                    sub.state = SubscriptionState::Blocked;
                    self.save(sub, saves).await?;
                    tracing::warn!(subscription = %sub.name, "retries ran out; subscription blocked");
                    return Ok(false);
                }
                sub.dead_letter(ids());
                sub.checkpoint = next;
                metrics::counter!("adledger_subscription_events_dead_lettered_total")
                    .increment(count);
                // A dead letter is saved at once: the list is the operator's.
                saves.acknowledged(count, took);
                return self.save(sub, saves).await;
            }
        }
        // Saved before anything else is sent, unless requests come quickly.
        if saves.due(Instant::now()) {
            return self.save(sub, saves).await;
        }
        Ok(true)
    }

    /// Saves `sub` now (see `save_progress`): `Ok(false)` when delivery must stop and
    /// start again from the store (the record was sought to or deleted).
    async fn save(&self, sub: &mut Subscription, saves: &mut CheckpointSaves) -> Result<bool> {
        saves.saving(Instant::now());
        save_progress(self.store.as_ref(), sub).await
    }
}

/// How a caught-up deliverer's wait on the live tail ended.
enum Live {
    /// Blocks from the tail were delivered.
    Delivered,
    /// The subscription stopped (410, or blocked).
    Stopped,
    /// The tail offered a later block than the next one: read the journal.
    Journal,
    /// The receiver lost blocks (it fell behind the tail's buffer): read the journal,
    /// and subscribe again when caught up.
    Lagged,
    /// Nothing came before the deadline.
    Idle,
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
