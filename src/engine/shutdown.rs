//! One way to stop for every long-running role (`serve`, `subscribe`, `pbx run`, `handler`):
//! a [`Stop`] (a cancellation token that also carries the deadline) and `tokio_util`'s
//! `TaskTracker` for the tasks that must finish, instead of aborting them mid-write.
//!
//! The order is always the same: stop taking work (the listener, the receive loop), let the
//! producers finish their step (the scheduler's tick, the PBX sync's write), then let the
//! consumers deliver what they hold (the sinks' queues, the pending marks) — all within
//! [`DRAIN_BOUND`] of the signal. What is still undelivered at the bound is counted and said
//! in one line; it is not lost for good: every start shows the stored presence again.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a role may take to stop after the signal.
pub const DRAIN_BOUND: Duration = Duration::from_secs(10);

/// A cancellation token with the deadline of the stop it announces. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    deadline: Arc<OnceLock<Instant>>,
}

impl Stop {
    /// A stop not yet begun.
    pub fn new() -> Self {
        Self::default()
    }

    /// Begins the stop (once; later calls keep the first deadline) and returns its deadline,
    /// `bound` from now.
    pub fn begin(&self, bound: Duration) -> Instant {
        let deadline = *self.deadline.get_or_init(|| Instant::now() + bound);
        self.token.cancel();
        deadline
    }

    /// Resolves with the deadline once the stop has begun.
    pub async fn begun(&self) -> Instant {
        self.token.cancelled().await;
        self.deadline
            .get()
            .copied()
            .unwrap_or_else(|| Instant::now() + DRAIN_BOUND)
    }

    /// Whether the stop has begun.
    pub fn is_begun(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The token, for what only needs to know *that* it stops.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

/// Closes `tasks` and waits for them until `deadline`; says in one line which did not finish
/// (`what`). Returns whether all finished.
pub async fn wait(tasks: &TaskTracker, deadline: Instant, what: &str) -> bool {
    tasks.close();
    let done = tokio::time::timeout_at(deadline, tasks.wait())
        .await
        .is_ok();
    if !done {
        tracing::warn!(
            tasks = tasks.len(),
            "{what} did not finish within {} s of the signal; stopping without them",
            DRAIN_BOUND.as_secs()
        );
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_begin_sets_the_deadline_everyone_sees() {
        let stop = Stop::new();
        let waiter = {
            let stop = stop.clone();
            tokio::spawn(async move { stop.begun().await })
        };
        assert!(!stop.is_begun());
        let start = Instant::now();
        let deadline = stop.begin(Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(stop.begin(Duration::from_secs(10)), deadline, "kept");
        assert_eq!(waiter.await.unwrap(), deadline);
        assert_eq!(deadline - start, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_gives_up_at_the_deadline_on_a_task_that_does_not_finish() {
        let tasks = TaskTracker::new();
        tasks.spawn(async { tokio::time::sleep(Duration::from_secs(1)).await });
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(wait(&tasks, deadline, "the quick task").await);
        let tasks = TaskTracker::new();
        tasks.spawn(std::future::pending::<()>());
        assert!(
            !wait(
                &tasks,
                Instant::now() + Duration::from_secs(5),
                "the stuck task"
            )
            .await
        );
    }
}
