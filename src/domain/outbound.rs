//! The outbound queue's vocabulary: why a message is sent.

use super::text_enum;

text_enum! {
    /// Why listd sends a message: the `purpose` of its row in the outbound queue.
    /// `Confirm` asks to confirm a subscription or an unsubscription; `Reply` answers
    /// a mail (help, or a word to the author of a held or rejected post); `Signin` is a
    /// sign-in link; `Notice` tells a member or the list's staff something; `Owner`
    /// and `Postmaster` forward mail for the list's `-owner` address and for
    /// `postmaster@` or `abuse@`; `Post` and `Digest` are a member's copies.
    Purpose {
        Confirm = "confirm",
        Reply = "reply",
        Signin = "signin",
        Notice = "notice",
        Welcome = "welcome",
        Goodbye = "goodbye",
        Owner = "owner",
        Postmaster = "postmaster",
        Post = "post",
        Digest = "digest",
    }
}

impl Purpose {
    /// The automatic replies to a request: they count together against the daily limit
    /// per address (docs/standards.md#27).
    pub const AUTOMATIC: &'static [Purpose] = &[Purpose::Confirm, Purpose::Reply, Purpose::Signin];

    /// The spellings of `purposes`, for a query's `any($n)`.
    pub fn texts(purposes: &[Purpose]) -> Vec<String> {
        purposes.iter().map(|p| p.as_str().to_string()).collect()
    }
}

/// The queues at a glance, for monitoring.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueStats {
    /// Messages waiting to be sent (leased or not).
    pub queued: i64,
    /// Of those, the ones due now.
    pub due: i64,
    /// How long the oldest due message has been due (0 when none is).
    pub oldest_due_seconds: f64,
    /// Received mail not yet processed.
    pub inbound_waiting: i64,
    pub held: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for p in Purpose::ALL {
            assert_eq!(p.as_str().parse::<Purpose>(), Ok(*p));
        }
        assert_eq!(
            Purpose::texts(Purpose::AUTOMATIC),
            vec!["confirm", "reply", "signin"]
        );
    }
}
