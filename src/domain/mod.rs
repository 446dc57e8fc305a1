//! Pure types and rules: addresses, list settings, member states, tokens, DMARC records.
//!
//! Everything here is plain Rust with no I/O: the front ends parse input into these
//! types, `app` decides with them, and `store` maps them to rows. Nothing in this
//! module imports another part of the crate.

pub mod address;
pub mod archive;
pub mod bounce;
pub mod digest;
pub mod dmarc;
pub mod footer;
pub mod headers;
pub mod list;
pub mod member;
pub mod outbound;
pub mod post;
pub mod roster;
pub mod route;
pub mod search;
pub mod session;
pub mod token;

pub use address::{AddressError, EmailAddress, ListAddress, ListRef};
pub use list::{
    Archive, Dmarc, Footer, List, ListSettings, NonmemberAction, Posting, ReplyTo, SettingError,
    Subscription,
};
pub use member::{
    Consent, Delivery, Evidence, Member, MemberChange, MemberStatus, Mode, RequestKind, Role,
    Source,
};
pub use outbound::Purpose;
pub use session::{ReturnPath, SessionId};
pub use token::{
    ConfirmToken, FeedToken, MailtoToken, ModerateToken, SecretKey, TokenHash, UnsubscribeToken,
    VerpRef, VerpToken,
};

/// Declares a closed set of text values (a policy or status) with its spelling.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value's spelling in the CLI, the API and the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The accepted spellings, for error messages.
            pub fn choices() -> String {
                [$($text),+].join(", ")
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::domain::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.trim().to_ascii_lowercase().as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(crate::domain::UnknownValue {
                        value: s.to_string(),
                        choices: $name::choices(),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

/// A text that is not one of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not one of {choices}")]
pub struct UnknownValue {
    pub value: String,
    pub choices: String,
}
