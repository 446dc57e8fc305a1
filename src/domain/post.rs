//! What happens to a post: the posting policies of docs/contract.md#policies and the
//! loop rules of docs/standards.md#31 and #32, as one pure function of what is known
//! about the post.

use super::{NonmemberAction, Posting, text_enum};
use std::fmt;

text_enum! {
    /// Where a post stands.
    PostStatus { Held = "held", Accepted = "accepted", Rejected = "rejected", Discarded = "discarded" }
}

/// More `Received` fields than this and a post is taken for a loop (RFC 5321 §6.3).
pub const MAX_RECEIVED: usize = 30;

/// How long a Message-ID is remembered per list: a repeat is accepted but not relayed.
pub const DUPLICATE_WINDOW_DAYS: i64 = 7;

/// Who the author is to the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poster {
    /// A subscribed owner or moderator.
    Privileged,
    /// A subscribed member.
    Member,
    /// Not a member, but on the list's `accept-senders`: posts as a member would.
    AcceptedSender,
    /// Anyone else.
    Stranger,
}

/// What is known about a post when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostFacts {
    pub poster: Poster,
    /// The post already carries this list's List-Id: it has been through the list.
    pub carries_own_list_id: bool,
    /// How many `Received` fields it has.
    pub received: usize,
    /// Sent by a program (null sender, `Auto-Submitted`, `MAILER-DAEMON`…).
    pub automatic: bool,
}

/// Why a post is not relayed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Moderated,
    NotAMember,
    AnnounceOnly,
    OwnListId,
    TooManyHops(usize),
    Automatic,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Moderated => {
                f.write_str("the list is moderated: a moderator approves every post")
            }
            Reason::NotAMember => f.write_str("the sender is not a member of the list"),
            Reason::AnnounceOnly => {
                f.write_str("only the list's owners and moderators post to this announcement list")
            }
            Reason::OwnListId => {
                f.write_str("the message already carries this list's List-Id (a mail loop)")
            }
            Reason::TooManyHops(n) => write!(
                f,
                "the message has {n} Received header fields, more than {MAX_RECEIVED} (a mail loop)"
            ),
            Reason::Automatic => {
                f.write_str("the message was sent by a program (an auto-reply or a bounce)")
            }
        }
    }
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Hold(Reason),
    /// Refused; the sender is told unless the mail is automatic.
    Reject(Reason),
    /// Dropped without a word.
    Discard(Reason),
}

/// Decides what happens to a post. Loops are held whatever the policy; a post the
/// policy would relay but a program sent is held too, so an auto-reply never goes
/// round a list.
pub fn decide(posting: Posting, nonmember: NonmemberAction, facts: &PostFacts) -> Verdict {
    if facts.carries_own_list_id {
        return Verdict::Hold(Reason::OwnListId);
    }
    if facts.received > MAX_RECEIVED {
        return Verdict::Hold(Reason::TooManyHops(facts.received));
    }
    let outsider = |reason| match nonmember {
        NonmemberAction::Hold => Verdict::Hold(reason),
        NonmemberAction::Reject => Verdict::Reject(reason),
        NonmemberAction::Discard => Verdict::Discard(reason),
    };
    let verdict = match (posting, facts.poster) {
        (Posting::Open, _) => Verdict::Accept,
        (Posting::Moderated, _) => Verdict::Hold(Reason::Moderated),
        (Posting::Members, Poster::Privileged | Poster::Member | Poster::AcceptedSender) => {
            Verdict::Accept
        }
        (Posting::Members, Poster::Stranger) => outsider(Reason::NotAMember),
        (Posting::Announce, Poster::Privileged) => Verdict::Accept,
        (Posting::Announce, Poster::Member | Poster::AcceptedSender | Poster::Stranger) => {
            outsider(Reason::AnnounceOnly)
        }
    };
    match verdict {
        Verdict::Accept if facts.automatic => Verdict::Hold(Reason::Automatic),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(poster: Poster) -> PostFacts {
        PostFacts {
            poster,
            carries_own_list_id: false,
            received: 3,
            automatic: false,
        }
    }

    #[test]
    fn members_post_and_strangers_follow_the_nonmember_action() {
        let d = |p, a| decide(Posting::Members, a, &facts(p));
        assert_eq!(d(Poster::Member, NonmemberAction::Reject), Verdict::Accept);
        assert_eq!(
            d(Poster::Privileged, NonmemberAction::Reject),
            Verdict::Accept
        );
        assert_eq!(
            d(Poster::Stranger, NonmemberAction::Hold),
            Verdict::Hold(Reason::NotAMember)
        );
        assert_eq!(
            d(Poster::Stranger, NonmemberAction::Reject),
            Verdict::Reject(Reason::NotAMember)
        );
        assert_eq!(
            d(Poster::Stranger, NonmemberAction::Discard),
            Verdict::Discard(Reason::NotAMember)
        );
    }

    #[test]
    fn accepted_senders_post_as_members_do() {
        for posting in Posting::ALL {
            for action in NonmemberAction::ALL {
                assert_eq!(
                    decide(*posting, *action, &facts(Poster::AcceptedSender)),
                    decide(*posting, *action, &facts(Poster::Member)),
                    "{posting} {action}"
                );
            }
        }
    }

    #[test]
    fn open_lists_take_anyone_and_moderated_lists_hold_everyone() {
        let stranger = facts(Poster::Stranger);
        assert_eq!(
            decide(Posting::Open, NonmemberAction::Reject, &stranger),
            Verdict::Accept
        );
        for p in [Poster::Privileged, Poster::Member, Poster::Stranger] {
            assert_eq!(
                decide(Posting::Moderated, NonmemberAction::Discard, &facts(p)),
                Verdict::Hold(Reason::Moderated)
            );
        }
    }

    #[test]
    fn announce_lists_take_only_owners_and_moderators() {
        let d = |p| decide(Posting::Announce, NonmemberAction::Hold, &facts(p));
        assert_eq!(d(Poster::Privileged), Verdict::Accept);
        assert_eq!(d(Poster::Member), Verdict::Hold(Reason::AnnounceOnly));
        assert_eq!(d(Poster::Stranger), Verdict::Hold(Reason::AnnounceOnly));
    }

    #[test]
    fn loops_are_held_whatever_the_policy() {
        let own = PostFacts {
            carries_own_list_id: true,
            ..facts(Poster::Privileged)
        };
        assert_eq!(
            decide(Posting::Open, NonmemberAction::Discard, &own),
            Verdict::Hold(Reason::OwnListId)
        );
        let hops = PostFacts {
            received: MAX_RECEIVED + 1,
            ..facts(Poster::Member)
        };
        assert_eq!(
            decide(Posting::Members, NonmemberAction::Hold, &hops),
            Verdict::Hold(Reason::TooManyHops(31))
        );
        let at_limit = PostFacts {
            received: MAX_RECEIVED,
            ..facts(Poster::Member)
        };
        assert_eq!(
            decide(Posting::Members, NonmemberAction::Hold, &at_limit),
            Verdict::Accept
        );
    }

    #[test]
    fn automatic_mail_is_never_relayed_unseen() {
        let auto = PostFacts {
            automatic: true,
            ..facts(Poster::Member)
        };
        assert_eq!(
            decide(Posting::Members, NonmemberAction::Hold, &auto),
            Verdict::Hold(Reason::Automatic)
        );
        let stranger = PostFacts {
            automatic: true,
            ..facts(Poster::Stranger)
        };
        assert_eq!(
            decide(Posting::Members, NonmemberAction::Discard, &stranger),
            Verdict::Discard(Reason::NotAMember)
        );
    }
}
