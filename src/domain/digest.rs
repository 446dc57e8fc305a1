//! Digests as rules: how often a list's digest goes out, when the period's boundary
//! falls, and how an issue is named (docs/contract.md#digests).
//!
//! Who is owed which post is decided by the fan-out, not here: see
//! docs/standards.md#digest-exactly-once.

use super::text_enum;
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

text_enum! {
    /// How often the posts still waiting go out in a digest.
    Frequency { Daily = "daily", Weekly = "weekly", Monthly = "monthly" }
}

impl Frequency {
    /// The latest period boundary at or before `now`: 00:00 UTC of the day, of the
    /// Monday, or of the 1st of the month.
    pub fn last_boundary(self, now: OffsetDateTime) -> OffsetDateTime {
        let day = now.to_offset(UtcOffset::UTC).date();
        let start: Date = match self {
            Frequency::Daily => day,
            Frequency::Weekly => {
                day - Duration::days(i64::from(day.weekday().number_days_from_monday()))
            }
            Frequency::Monthly => day.replace_day(1).expect("every month has a 1st"),
        };
        PrimitiveDateTime::new(start, Time::MIDNIGHT).assume_utc()
    }

    /// Whether posts waiting since `oldest` are due at `now`: a boundary fell after
    /// the oldest one arrived.
    pub fn due(self, oldest: OffsetDateTime, now: OffsetDateTime) -> bool {
        oldest < self.last_boundary(now)
    }
}

/// A digest's volume and issue number: the UTC year, and its place within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueNumber {
    pub volume: i32,
    pub number: i32,
}

impl IssueNumber {
    /// The volume for an issue made at `now`.
    pub fn volume_at(now: OffsetDateTime) -> i32 {
        now.to_offset(UtcOffset::UTC).year()
    }

    /// `Dev Digest, Vol 2026, Issue 3`: the Subject (no subject prefix) and the title
    /// of the table of contents.
    pub fn title(&self, list_name: &str) -> String {
        format!(
            "{list_name} Digest, Vol {}, Issue {}",
            self.volume, self.number
        )
    }
}

/// Whether a digest is due by size: the waiting posts' bytes reach `size_kb` KiB.
pub fn size_reached(waiting_bytes: i64, size_kb: i32) -> bool {
    waiting_bytes >= i64::from(size_kb) * 1024
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn boundaries_fall_at_midnight_utc_mondays_and_the_first() {
        // a Wednesday
        let now = datetime!(2026-03-18 15:30 UTC);
        assert_eq!(
            Frequency::Daily.last_boundary(now),
            datetime!(2026-03-18 0:00 UTC)
        );
        assert_eq!(
            Frequency::Weekly.last_boundary(now),
            datetime!(2026-03-16 0:00 UTC)
        );
        assert_eq!(
            Frequency::Monthly.last_boundary(now),
            datetime!(2026-03-01 0:00 UTC)
        );
        // another offset names the same instant
        let there = datetime!(2026-03-19 01:00 +02:00);
        assert_eq!(
            Frequency::Daily.last_boundary(there),
            datetime!(2026-03-18 0:00 UTC)
        );
        // a Monday at midnight is its own boundary
        let monday = datetime!(2026-03-16 0:00 UTC);
        assert_eq!(Frequency::Weekly.last_boundary(monday), monday);
    }

    #[test]
    fn posts_are_due_once_a_boundary_passed_after_the_oldest() {
        let oldest = datetime!(2026-03-18 15:30 UTC);
        assert!(!Frequency::Daily.due(oldest, datetime!(2026-03-18 23:59 UTC)));
        assert!(Frequency::Daily.due(oldest, datetime!(2026-03-19 0:00 UTC)));
        assert!(!Frequency::Weekly.due(oldest, datetime!(2026-03-22 23:00 UTC)));
        assert!(Frequency::Weekly.due(oldest, datetime!(2026-03-23 0:01 UTC)));
        assert!(!Frequency::Monthly.due(oldest, datetime!(2026-03-31 23:00 UTC)));
        assert!(Frequency::Monthly.due(oldest, datetime!(2026-04-01 0:00 UTC)));
    }

    #[test]
    fn issues_are_named_by_year_and_number() {
        let n = IssueNumber {
            volume: IssueNumber::volume_at(datetime!(2026-12-31 23:30 -02:00)),
            number: 3,
        };
        assert_eq!(n.title("Dev"), "Dev Digest, Vol 2027, Issue 3");
        assert!(size_reached(30 * 1024, 30));
        assert!(!size_reached(30 * 1024 - 1, 30));
    }
}
