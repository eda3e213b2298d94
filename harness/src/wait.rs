//! The one way the harness waits for a condition: poll a check until it says ready,
//! gives up, or the deadline passes. Checks are small functions over observed state;
//! the loop, the pace and the deadline live here.

use std::future::Future;
use std::time::{Duration, Instant};

/// What one look at the world found.
pub enum Check<T> {
    /// The condition holds.
    Ready(T),
    /// Not yet; the text says what is missing (reported if the deadline passes).
    NotYet(String),
    /// It can no longer hold (e.g. an image that cannot be pulled): stop now.
    Abort(String),
}

/// Why a wait ended without the condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitError {
    /// The deadline passed; `last` is what the last look found missing.
    Deadline { after: Duration, last: String },
    /// A check said the condition can no longer hold.
    Aborted(String),
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitError::Deadline { after, last } => {
                write!(f, "not done within {:.0} s ({last})", after.as_secs_f64())
            }
            WaitError::Aborted(why) => f.write_str(why),
        }
    }
}

/// Polls `check` every `pace` until it is ready, aborts, or `deadline` passes. The
/// check runs at least once; the last sleep is cut to the deadline.
pub async fn until<T, F, Fut>(
    deadline: Duration,
    pace: Duration,
    mut check: F,
) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Check<T>>,
{
    let started = Instant::now();
    loop {
        let last = match check().await {
            Check::Ready(value) => return Ok(value),
            Check::Abort(why) => return Err(WaitError::Aborted(why)),
            Check::NotYet(last) => last,
        };
        let left = deadline.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(WaitError::Deadline {
                after: started.elapsed(),
                last,
            });
        }
        tokio::time::sleep(pace.min(left)).await;
    }
}

/// What one look found, for waits whose answer is a value either way (a verdict with
/// its evidence): final now, or what it would be if time ran out.
pub enum Look<T> {
    Final(T),
    Pending(T),
}

/// Polls `look` every `pace` until it is final or `deadline` passes; then the last
/// pending value is the answer.
pub async fn until_final<T, F, Fut>(deadline: Duration, pace: Duration, mut look: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Look<T>>,
{
    let started = Instant::now();
    loop {
        let value = match look().await {
            Look::Final(value) => return value,
            Look::Pending(value) => value,
        };
        let left = deadline.saturating_sub(started.elapsed());
        if left.is_zero() {
            return value;
        }
        tokio::time::sleep(pace.min(left)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn ready_after_a_few_looks() {
        let n = AtomicU32::new(0);
        let v = until(Duration::from_secs(2), Duration::from_millis(1), || async {
            match n.fetch_add(1, Ordering::SeqCst) {
                3 => Check::Ready(3),
                i => Check::NotYet(format!("look {i}")),
            }
        })
        .await;
        assert_eq!(v, Ok(3));
    }

    #[tokio::test]
    async fn until_final_answers_the_last_pending_value_at_the_deadline() {
        let n = AtomicU32::new(0);
        let v = until_final(
            Duration::from_millis(30),
            Duration::from_millis(5),
            || async { Look::Pending(n.fetch_add(1, Ordering::SeqCst)) },
        )
        .await;
        assert!(v >= 1, "looked more than once: {v}");
        let v = until_final(Duration::from_secs(60), Duration::from_secs(1), || async {
            Look::Final("settled")
        })
        .await;
        assert_eq!(v, "settled");
    }

    #[tokio::test]
    async fn the_deadline_reports_the_last_look_and_abort_stops_at_once() {
        let started = Instant::now();
        let e = until(
            Duration::from_millis(50),
            Duration::from_millis(10),
            || async { Check::<()>::NotYet("still rolling".into()) },
        )
        .await
        .unwrap_err();
        assert!(matches!(&e, WaitError::Deadline { last, .. } if last == "still rolling"));
        assert!(started.elapsed() < Duration::from_secs(1));
        let e = until(Duration::from_secs(60), Duration::from_secs(1), || async {
            Check::<()>::Abort("image cannot be pulled".into())
        })
        .await
        .unwrap_err();
        assert_eq!(e, WaitError::Aborted("image cannot be pulled".into()));
    }
}
