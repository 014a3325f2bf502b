//! Outgoing webhook delivery, shared by both simulators.
//!
//! Each side has one FIFO delivery task: messages are POSTed in the order the changes happened,
//! one at a time. Delivery guarantee: at-least-once towards a receiver that answers 2xx — a
//! non-2xx answer or a connection error is retried up to `attempts` times with a short doubling
//! backoff (100 ms, 200 ms, …), then counted as failed and given up (real retry schedules are not
//! documented for either API). Duplicates are therefore possible even without fault injection, as
//! with the real services; receivers must be idempotent.
//!
//! Webhook fault rules (see [`crate::faults`]) act here: `drop` skips a message, `duplicate` sends
//! it twice, `reorder` holds it back until the next message has been sent (or one second passed),
//! `delay` sends it from a separate task after the delay, so later messages overtake it.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use crate::{
    faults::{Faults, Side, WebhookFaultAction},
    stats::{Stats, WebhookLogEntry},
};

/// One HTTP POST to make.
#[derive(Debug, Clone)]
pub(crate) struct OutgoingWebhook {
    /// Target.
    pub(crate) url: String,
    /// Extra headers (signatures); `Content-Type: application/json` is always sent.
    pub(crate) headers: Vec<(String, String)>,
    /// Exact body bytes (signatures are over these).
    pub(crate) body: Vec<u8>,
}

/// Sending half of one side's delivery queue.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    side: Side,
    tx: mpsc::UnboundedSender<OutgoingWebhook>,
    stats: Arc<Stats>,
}

impl Outbox {
    /// Queues a message (never blocks; dropped silently after shutdown).
    pub(crate) fn send(&self, msg: OutgoingWebhook) {
        self.stats.webhook(self.side, |w| w.queued += 1);
        let _ = self.tx.send(msg);
    }
}

/// Delivery settings.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryConfig {
    /// Attempts per message (≥ 1).
    pub(crate) attempts: u32,
    /// Per-request timeout.
    pub(crate) timeout: Duration,
}

/// Starts a side's delivery task on the current Tokio runtime and returns its outbox.
pub(crate) fn start(
    side: Side,
    config: DeliveryConfig,
    faults: Arc<Faults>,
    stats: Arc<Stats>,
) -> Outbox {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .build()
        .unwrap_or_default();
    let sender = Sender {
        side,
        client,
        attempts: config.attempts.max(1),
        stats: Arc::clone(&stats),
    };
    tokio::spawn(run(rx, sender, faults));
    Outbox { side, tx, stats }
}

#[derive(Debug, Clone)]
struct Sender {
    side: Side,
    client: reqwest::Client,
    attempts: u32,
    stats: Arc<Stats>,
}

impl Sender {
    async fn post(&self, msg: &OutgoingWebhook) {
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=self.attempts {
            let mut req = self
                .client
                .post(&msg.url)
                .header("Content-Type", "application/json")
                .body(msg.body.clone());
            for (k, v) in &msg.headers {
                req = req.header(k, v);
            }
            let status = req.send().await.ok().map(|r| r.status().as_u16());
            self.stats.webhook_attempt(WebhookLogEntry {
                at: chrono::Utc::now(),
                side: self.side,
                url: msg.url.clone(),
                status,
                attempt,
            });
            if status.is_some_and(|s| (200..300).contains(&s)) {
                self.stats.webhook(self.side, |w| w.delivered += 1);
                return;
            }
            if attempt < self.attempts {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        tracing::debug!(url = %msg.url, "webhook delivery failed after retries");
        self.stats.webhook(self.side, |w| w.failed += 1);
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<OutgoingWebhook>,
    sender: Sender,
    faults: Arc<Faults>,
) {
    let mut held: Option<OutgoingWebhook> = None;
    loop {
        let next = if held.is_some() {
            match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    if let Some(h) = held.take() {
                        sender.post(&h).await;
                    }
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(msg) = next else { break };
        match faults.take_webhook(sender.side) {
            Some(WebhookFaultAction::Drop) => {
                sender.stats.webhook(sender.side, |w| w.dropped += 1);
            }
            Some(WebhookFaultAction::Duplicate) => {
                sender.stats.webhook(sender.side, |w| w.duplicated += 1);
                sender.post(&msg).await;
                sender.post(&msg).await;
            }
            Some(WebhookFaultAction::Reorder) if held.is_none() => {
                held = Some(msg);
                continue;
            }
            Some(WebhookFaultAction::Delay { ms }) => {
                let s = sender.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    s.post(&msg).await;
                });
            }
            _ => sender.post(&msg).await,
        }
        // A later message has been handled: release the one held back by `reorder`.
        if let Some(h) = held.take() {
            sender.post(&h).await;
        }
    }
    if let Some(h) = held {
        sender.post(&h).await;
    }
}
