//! Work started in order and taken back in order, at most a few at once.
//!
//! The pulls write their pages this way: each page is a task of its own, in a transaction of
//! its own, so the database inserts one page's rows while another page's commit waits for its
//! WAL flush and the next page is read. [`InFlight::start`] starts a task and, once `limit`
//! are running, waits for the oldest; [`InFlight::drain`] waits for the rest. Outcomes come
//! back in the order the tasks were started, so a caller counts every task exactly once.
//!
//! Failure policy: a task that panicked is returned as its place's `JoinError`; the caller
//! decides. Nothing outlives the caller unseen: `drain` waits for every task, and the tasks are
//! held by abort-on-drop handles, so dropping an `InFlight` — or the caller's future while it
//! waits in `start` or `drain` (a cancelled pull) — aborts those still running, as dropping the
//! same work run inline would have. (An abort takes effect at the task's next await: a page
//! whose commit was already sent may still commit.)

use std::{collections::VecDeque, future::Future};

use tokio::task::JoinError;
use tokio_util::task::AbortOnDropHandle;

/// Tasks started in order, at most `limit` running, outcomes taken oldest first.
#[derive(Debug)]
pub struct InFlight<T> {
    limit: usize,
    running: VecDeque<AbortOnDropHandle<T>>,
}

impl<T: Send + 'static> InFlight<T> {
    /// At most `limit` tasks at once (at least one).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Self {
            limit,
            running: VecDeque::with_capacity(limit),
        }
    }

    /// Starts `work` as a task; when `limit` tasks are then running, waits for the oldest and
    /// returns its outcome.
    pub async fn start<F>(&mut self, work: F) -> Option<Result<T, JoinError>>
    where
        F: Future<Output = T> + Send + 'static,
    {
        self.running
            .push_back(AbortOnDropHandle::new(tokio::spawn(work)));
        if self.running.len() < self.limit {
            return None;
        }
        self.take_oldest().await
    }

    /// Waits for every task still running; their outcomes, oldest first.
    pub async fn drain(&mut self) -> Vec<Result<T, JoinError>> {
        let mut outcomes = Vec::with_capacity(self.running.len());
        while let Some(outcome) = self.take_oldest().await {
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Waits for the oldest task, which stays held (and so aborted if this wait is dropped)
    /// until it has finished.
    async fn take_oldest(&mut self) -> Option<Result<T, JoinError>> {
        let outcome = self.running.front_mut()?.await;
        self.running.pop_front();
        Some(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    use super::*;

    /// A task that records how many of its kind run at once, sleeping `ms`.
    fn counted(
        running: &Arc<AtomicUsize>,
        most: &Arc<AtomicUsize>,
        ms: u64,
        out: usize,
    ) -> impl Future<Output = usize> + Send + 'static {
        let (running, most) = (Arc::clone(running), Arc::clone(most));
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            out
        }
    }

    #[tokio::test]
    async fn outcomes_come_back_in_start_order_with_at_most_limit_running() {
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = InFlight::new(2);
        let mut outcomes = Vec::new();
        // Later tasks finish sooner: order must still be the order started.
        for (i, ms) in [40_u64, 5, 30, 1, 20].into_iter().enumerate() {
            if let Some(done) = tasks.start(counted(&running, &most, ms, i)).await {
                outcomes.push(done.expect("the task ran"));
            }
        }
        outcomes.extend(
            tasks
                .drain()
                .await
                .into_iter()
                .map(|d| d.expect("the task ran")),
        );
        assert_eq!(outcomes, [0, 1, 2, 3, 4]);
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_panicking_task_is_its_places_error_and_the_others_still_come_back() {
        let mut tasks = InFlight::new(3);
        assert!(tasks.start(async { 1 }).await.is_none());
        assert!(tasks.start(async { panic!("page failed") }).await.is_none());
        let oldest = tasks.start(async { 3 }).await;
        assert!(matches!(oldest, Some(Ok(1))), "{oldest:?}");
        let rest = tasks.drain().await;
        assert!(rest[0].as_ref().is_err_and(JoinError::is_panic));
        assert_eq!(rest[1].as_ref().ok(), Some(&3));
    }

    #[tokio::test]
    async fn a_cancelled_wait_keeps_its_task_and_drain_still_returns_its_outcome() {
        let finished = Arc::new(AtomicUsize::new(0));
        let mut tasks = InFlight::new(1);
        let counter = Arc::clone(&finished);
        let waited = tokio::time::timeout(
            Duration::from_millis(20),
            tasks.start(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                counter.fetch_add(1, Ordering::SeqCst)
            }),
        )
        .await;
        assert!(waited.is_err(), "the wait was cut short");
        // Neither lost nor aborted: the task is still held, and its outcome comes back.
        let rest = tasks.drain().await;
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].as_ref().ok(), Some(&0));
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn dropping_it_aborts_the_tasks_still_running() {
        let finished = Arc::new(AtomicUsize::new(0));
        let mut tasks = InFlight::new(4);
        for _ in 0..2 {
            let finished = Arc::clone(&finished);
            tasks
                .start(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                })
                .await;
        }
        drop(tasks);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(finished.load(Ordering::SeqCst), 0);
    }
}
