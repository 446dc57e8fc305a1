//! What the public and personal pages show: the context of each template as a typed
//! value, and the wording of the pages, in one place (as `smtp/replies.rs` holds the
//! SMTP replies). Handlers decide which page a request gets and pass data; the field
//! names are those the templates in `templates/web/` (and operators' overrides) read.

use crate::app::sessions::SigninView;
use crate::app::subscriptions::Standing;
use crate::domain::{Delivery, List, Member, Mode};
use serde::Serialize;

/// A link offered as the way on from a page.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Link {
    pub href: String,
    pub text: String,
}

impl Link {
    pub fn new(href: impl Into<String>, text: impl Into<String>) -> Link {
        Link {
            href: href.into(),
            text: text.into(),
        }
    }

    /// The page of a list.
    pub fn list(list: &List, text: String) -> Link {
        Link::new(format!("/lists/{}", list.address.list_id()), text)
    }

    fn back_to(list: &List) -> Link {
        Link::list(list, format!("Back to {}", list.settings.name))
    }

    fn all_lists(href: &str) -> Link {
        Link::new(href, "See all lists")
    }

    fn my_subscriptions() -> Link {
        Link::new("/me", "Your subscriptions")
    }

    fn sign_in_again() -> Link {
        Link::new("/signin", "Sign in again")
    }
}

/// `web/message.html`: a page that says one thing, and offers a way on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Message {
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
}

impl Message {
    pub fn new(title: impl Into<String>, message: impl Into<String>, link: Link) -> Message {
        Message {
            title: title.into(),
            message: Some(message.into()),
            link: Some(link),
        }
    }

    /// `404` for an address with nothing at it; `home` is where the link leads.
    pub fn not_found(home: Link) -> Message {
        Message::new("Page not found", "There is nothing at this address.", home)
    }

    /// `500`: the cause is in the log, not on the page.
    pub fn unexpected() -> Message {
        Message {
            title: "Something went wrong".into(),
            message: Some("Please try again in a few minutes.".into()),
            link: None,
        }
    }

    /// `429`: how long to wait, and the way back.
    pub fn too_many_requests(wait_minutes: u64, back: Link) -> Message {
        let when = if wait_minutes == 1 {
            "a minute".to_string()
        } else {
            format!("{wait_minutes} minutes")
        };
        Message::new(
            "Error: too many requests",
            format!("Too many requests came from your network. Please try again in {when}."),
            back,
        )
    }

    pub fn no_such_list() -> Message {
        Message::new(
            "No such list",
            "There is no mailing list at this address.",
            Link::all_lists("/"),
        )
    }

    /// An archived message that is not there (or was taken down).
    pub fn no_such_message() -> Message {
        Message::new(
            "No such message",
            "The archive has no message at this address.",
            Link::all_lists("/"),
        )
    }

    pub fn form_unreadable(why: String) -> Message {
        Message {
            title: "Error: the form could not be read".into(),
            message: Some(why),
            link: None,
        }
    }

    pub fn form_expired() -> Message {
        Message::new(
            "Error: this form has expired",
            "Nothing was changed. The form came from an earlier or another session; open the page again and repeat what you did.",
            Link::my_subscriptions(),
        )
    }

    /// A sign-in link that cannot be used (any view but `Valid`).
    pub fn signin_link_spent(view: &SigninView) -> Message {
        let title = match view {
            SigninView::Used => "This sign-in link has already been used",
            SigninView::Expired => "This sign-in link has expired",
            _ => "This sign-in link is not valid",
        };
        Message::new(
            title,
            "Each link works once, for 15 minutes. Ask for a new one.",
            Link::sign_in_again(),
        )
    }

    pub fn signed_out() -> Message {
        Message::new(
            "You are signed out",
            "Your session has ended.",
            Link::sign_in_again(),
        )
    }

    pub fn not_a_member() -> Message {
        Message::new(
            "Error: you are not subscribed to this list",
            "Nothing was changed.",
            Link::my_subscriptions(),
        )
    }

    pub fn nothing_changed(reason: &str) -> Message {
        Message::new(
            "Error: nothing was changed",
            reason,
            Link::my_subscriptions(),
        )
    }

    /// What a member's delivery and mode are now, after a change with their token.
    pub fn preferences_saved(list: &List, member: &Member) -> Message {
        let how = match member.mode {
            Mode::Each => "every message as it is sent",
            Mode::Digest => "the messages gathered into digests",
            Mode::DigestPlain => "the messages gathered into plain-text digests",
        };
        let what = match member.delivery {
            Delivery::Disabled => format!(
                "Delivery to {} is paused: you stay a member of {} and receive nothing until you turn it back on; then you will get {how}.",
                member.address, list.settings.name
            ),
            Delivery::Enabled => format!(
                "{} receives {how} from {}.",
                member.address, list.settings.name
            ),
        };
        Message::new(
            "Your preferences are saved",
            what,
            Link::new("/signin", "Sign in to change more"),
        )
    }

    pub fn preferences_link_invalid() -> Message {
        Message::new(
            "This link is not valid",
            "Nothing was changed. Use the link from a recent message of the list.",
            Link::all_lists("/lists"),
        )
    }

    pub fn subscribed(list: &List, address: &str) -> Message {
        Message::new(
            "You are subscribed",
            format!(
                "{address} is now a member of {}. A welcome message is on its way.",
                list.settings.name
            ),
            Link::back_to(list),
        )
    }

    pub fn awaiting_approval(list: &List, address: &str) -> Message {
        Message::new(
            "Thank you",
            format!(
                "{address} is confirmed. The owners of {} will review the request.",
                list.settings.name
            ),
            Link::back_to(list),
        )
    }

    pub fn left(list: &List, address: &str) -> Message {
        Message::new(
            "You have left the list",
            format!(
                "{address} will receive no more messages from {}.",
                list.settings.name
            ),
            Link::back_to(list),
        )
    }

    pub fn delivery_resumed(list: &List, address: &str) -> Message {
        Message::new(
            "Delivery is on again",
            format!(
                "{address} will receive messages from {} again.",
                list.settings.name
            ),
            Link::back_to(list),
        )
    }

    /// A confirmation link used before, opened again: where the address stands.
    pub fn confirmation_used(list: &List, address: &str, standing: Standing) -> Message {
        let name = &list.settings.name;
        let message = match standing {
            Standing::Subscribed => {
                format!("{address} is subscribed to {name}. Nothing more to do.")
            }
            Standing::AwaitingApproval => {
                format!("{address} is confirmed; the owners of {name} are reviewing the request.")
            }
            Standing::NotSubscribed => format!(
                "{address} is not subscribed to {name}. To join, use the form on the list's page."
            ),
        };
        Message::new(
            "This link has already been used",
            message,
            Link::list(list, format!("Go to {name}")),
        )
    }

    /// An expired or unknown confirmation link, with the list's page when it is known.
    pub fn confirmation_spent(list: Option<&List>) -> Message {
        let link = match list {
            Some(l) => Link::list(l, format!("Go to {}", l.settings.name)),
            None => Link::all_lists("/"),
        };
        Message::new(
            "This link has already been used or has expired",
            "Nothing was changed. If you still want to join or leave, start again from the list's page.",
            link,
        )
    }

    /// The unsubscribe link of a membership that has ended.
    pub fn already_left(list: &List, address: &str) -> Message {
        let name = &list.settings.name;
        Message::new(
            format!("You have already left {name}"),
            format!(
                "{address} receives no messages from {name}. To join again, use the form on the list's page."
            ),
            Link::list(list, format!("Join {name} again")),
        )
    }

    pub fn bad_unsubscribe_token() -> Message {
        Message::new(
            "This unsubscribe link is not valid",
            "Nothing was changed. Use the link from a recent message of the list, or the list's page.",
            Link::all_lists("/"),
        )
    }
}

/// `web/check_inbox.html`: the neutral answer to a request whose link goes by mail.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckInbox {
    pub message: String,
    /// Who the message comes from.
    pub sender: String,
    /// How long the link works.
    pub expiry: String,
    pub link: Link,
}

impl CheckInbox {
    /// A join (`join`) or leave request on a list's form; the link works `hours`.
    pub fn membership(list: &List, address: &str, join: bool, hours: u64) -> CheckInbox {
        let name = &list.settings.name;
        let message = if join {
            format!(
                "If {address} can join {name}, a message is on its way with a link to confirm. You are not subscribed until you confirm."
            )
        } else {
            format!(
                "If {address} is subscribed to {name}, a message is on its way with a link to confirm leaving."
            )
        };
        CheckInbox {
            message,
            sender: list.address.with_suffix("owner"),
            expiry: if hours == 1 {
                "an hour".to_string()
            } else {
                format!("{hours} hours")
            },
            link: Link::back_to(list),
        }
    }

    /// A sign-in request; the link works `minutes`, once.
    pub fn signin(address: &str, minutes: i64) -> CheckInbox {
        CheckInbox {
            message: format!(
                "If {address} belongs to a list here, a message with a sign-in link is on its way."
            ),
            sender: "the owner address of one of your lists (its name ends in +owner)".into(),
            expiry: format!("{minutes} minutes, once"),
            link: Link::all_lists("/lists"),
        }
    }
}

/// `web/confirm.html`, `web/unsubscribe.html` and `web/resume.html`: the page of a
/// link in mail, with one button that posts back to `action` (GET changes nothing).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Button {
    pub title: String,
    pub message: String,
    pub action: String,
    /// The button's label, where the template does not have its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub button: Option<&'static str>,
    /// The page for changing delivery instead (`web/unsubscribe.html`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferences: Option<String>,
}

impl Button {
    pub fn confirm_join(list: &List, address: &str, action: String) -> Button {
        Button {
            title: format!("Join {}", list.settings.name),
            message: format!(
                "Press the button to subscribe {address} to {} <{}>.",
                list.settings.name, list.address
            ),
            action,
            button: Some("Confirm subscription"),
            preferences: None,
        }
    }

    pub fn confirm_leave(list: &List, address: &str, action: String) -> Button {
        Button {
            title: format!("Leave {}", list.settings.name),
            message: format!(
                "Press the button to unsubscribe {address} from {} <{}>.",
                list.settings.name, list.address
            ),
            action,
            button: Some("Confirm unsubscription"),
            preferences: None,
        }
    }

    pub fn sign_in(address: &str, token: &str) -> Button {
        Button {
            title: "Sign in".into(),
            message: format!("Press the button to sign in as {address}."),
            action: format!("/signin/{token}"),
            button: Some("Sign in"),
            preferences: None,
        }
    }

    /// The one-click unsubscribe link's page, with the way to change delivery instead.
    pub fn unsubscribe(list: &List, address: &str, token: &str) -> Button {
        Button {
            button: None,
            preferences: Some(format!("/preferences/{token}")),
            ..Button::confirm_leave(list, address, format!("/unsubscribe/{token}"))
        }
    }

    /// The link in the notice sent when bounces turned a member's delivery off.
    pub fn resume(list: &List, address: &str, token: &str) -> Button {
        Button {
            title: format!("Receive {} again", list.settings.name),
            message: format!(
                "Messages from {} <{}> to {address} stopped because they bounced. Press the button to receive them again.",
                list.settings.name, list.address
            ),
            action: format!("/resume/{token}"),
            button: None,
            preferences: None,
        }
    }
}

/// The notice at the top of `/me` after a change.
pub(crate) fn me_notice(changed: Option<&str>, left: Option<&str>) -> Option<String> {
    match (changed, left) {
        (Some(name), _) => Some(format!("Your settings for {name} are saved.")),
        (_, Some(id)) => Some(format!(
            "You have left the list {id}. A goodbye message is on its way."
        )),
        _ => None,
    }
}

/// The notice at the top of a list's settings in the console, after it was created
/// or saved.
pub(crate) fn settings_notice(created: bool, saved: bool) -> Option<&'static str> {
    if created {
        Some("The list is created, with you as its owner.")
    } else if saved {
        Some("The settings are saved.")
    } else {
        None
    }
}

/// The notice at the top of the console's held posts after a decision (`done`) on
/// message `id`.
pub(crate) fn held_notice(done: Option<&str>, id: Option<i64>) -> Option<String> {
    let id = id?;
    Some(match done? {
        "approve" => format!("Message {id} is approved and on its way to the members."),
        "accept-sender" => {
            format!("Message {id} is approved, and its sender's posts are accepted from now on.")
        }
        "reject" => format!("Message {id} is rejected; the sender is told."),
        "discard" => format!("Message {id} is discarded."),
        _ => return None,
    })
}

/// The notice at the top of the console's waiting subscriptions after a decision.
pub(crate) fn requests_notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "approve" => Some("Approved: the new member is welcomed."),
        "refuse" => Some("Refused: the requester is told."),
        "none" => Some("That request was no longer waiting."),
        _ => None,
    }
}
