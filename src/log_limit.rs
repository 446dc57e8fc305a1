//! Rate-limited log lines: during an outage or an attack the same failure happens
//! thousands of times a second, and one line per failure kind per interval, with a
//! count of those not written, says as much without filling the disk.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How often one kind of failure is written to the log, at most.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// The process's one throttle: every front end and worker reports through it.
pub static LOG_LIMIT: LazyLock<LogLimit> = LazyLock::new(|| LogLimit::new(INTERVAL));

/// Counts occurrences per kind and admits one line per kind per interval.
#[derive(Debug)]
pub struct LogLimit {
    interval: Duration,
    kinds: Mutex<HashMap<&'static str, Kind>>,
}

#[derive(Debug)]
struct Kind {
    last: Instant,
    suppressed: u64,
}

impl LogLimit {
    pub fn new(interval: Duration) -> Self {
        LogLimit {
            interval,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Records one occurrence of `kind` at `now`. `Some(n)`: write a line now, saying
    /// that `n` more happened since the last line of this kind; `None`: stay quiet.
    pub fn admit_at(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        match kinds.get_mut(kind) {
            Some(k) if now.duration_since(k.last) < self.interval => {
                k.suppressed += 1;
                None
            }
            Some(k) => {
                k.last = now;
                Some(std::mem::take(&mut k.suppressed))
            }
            None => {
                kinds.insert(
                    kind,
                    Kind {
                        last: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }

    /// [`LogLimit::admit_at`] now.
    pub fn admit(&self, kind: &'static str) -> Option<u64> {
        self.admit_at(kind, Instant::now())
    }
}

/// Logs an error at most once per interval per `kind` (a `&'static str`, also the
/// message), with its cause chain on one line (no backtrace), the number of the same
/// not logged since, and any further tracing fields:
/// `error_limited!("processing received mail", e, id = row.id)`.
#[macro_export]
macro_rules! error_limited {
    ($kind:expr, $error:expr $(, $($field:tt)+)?) => {
        if let Some(suppressed) = $crate::log_limit::LOG_LIMIT.admit($kind) {
            tracing::error!($($($field)+,)? error = format!("{:#}", $error), suppressed, "{}", $kind);
        }
    };
}

/// As [`error_limited!`], at warning level.
#[macro_export]
macro_rules! warn_limited {
    ($kind:expr, $error:expr $(, $($field:tt)+)?) => {
        if let Some(suppressed) = $crate::log_limit::LOG_LIMIT.admit($kind) {
            tracing::warn!($($($field)+,)? error = format!("{:#}", $error), suppressed, "{}", $kind);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_with_the_count_of_the_rest() {
        let limit = LogLimit::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(limit.admit_at("db", t0), Some(0));
        for i in 1..=8143 {
            let at = t0 + Duration::from_millis(i);
            assert_eq!(limit.admit_at("db", at), None);
        }
        assert_eq!(
            limit.admit_at("smtp", t0),
            Some(0),
            "kinds are counted apart"
        );
        assert_eq!(
            limit.admit_at("db", t0 + Duration::from_secs(61)),
            Some(8143)
        );
        assert_eq!(limit.admit_at("db", t0 + Duration::from_secs(62)), None);
    }
}
