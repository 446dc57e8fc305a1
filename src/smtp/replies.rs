//! Every reply the SMTP/LMTP front end sends, in one place.
//!
//! All replies after the greeting carry an enhanced status code (RFC 2034, RFC 3463),
//! except those that the RFC exempts: the answers to EHLO/LHLO and HELO, and `354`.

use super::Protocol;
use smtp_proto::{
    EXT_8BIT_MIME, EXT_ENHANCED_STATUS_CODES, EXT_PIPELINING, EXT_SIZE, EXT_SMTP_UTF8,
    EXT_START_TLS, EhloResponse, Response,
};
use std::fmt::Display;

/// A reply with a fixed text.
pub(super) type Fixed = Response<&'static str>;

const fn fixed(code: u16, esc: [u8; 3], message: &'static str) -> Fixed {
    Response { code, esc, message }
}

pub(super) const OK: Fixed = fixed(250, [2, 0, 0], "OK");
pub(super) const SENDER_OK: Fixed = fixed(250, [2, 1, 0], "OK");
pub(super) const RECIPIENT_OK: Fixed = fixed(250, [2, 1, 5], "OK");
pub(super) const MESSAGE_ACCEPTED: Fixed = fixed(250, [2, 0, 0], "Message accepted");
pub(super) const VRFY: Fixed = fixed(
    252,
    [2, 5, 0],
    "Cannot VRFY user, but will accept message and attempt delivery",
);
pub(super) const HELP: Fixed = fixed(214, [2, 0, 0], "See RFC 5321");
pub(super) const BYE: Fixed = fixed(221, [2, 0, 0], "Bye");
pub(super) const READY_FOR_TLS: Fixed = fixed(220, [2, 0, 0], "Ready to start TLS");
/// Not a `Response`: 354 carries no enhanced status code.
pub(super) const START_DATA: &[u8] = b"354 Start mail input; end with <CRLF>.<CRLF>\r\n";

pub(super) const TEMPORARY_FAILURE: Fixed =
    fixed(451, [4, 3, 0], "Temporary failure, please try again later");
pub(super) const TOO_MANY_RECIPIENTS: Fixed = fixed(452, [4, 5, 3], "Too many recipients");
/// Written straight to a socket that gets no session, hence raw bytes.
pub(super) const TOO_MANY_CONNECTIONS: &[u8] =
    b"421 4.3.2 Too many connections, try again later\r\n";
/// Also written straight to the socket: one client holds its share of the sessions.
pub(super) const TOO_MANY_CONNECTIONS_FROM_YOU: &[u8] =
    b"421 4.7.0 Too many connections from your address, try again later\r\n";

pub(super) const UNRECOGNIZED: Fixed = fixed(500, [5, 5, 2], "Syntax error, command unrecognized");
pub(super) const LINE_TOO_LONG: Fixed = fixed(500, [5, 5, 2], "Line too long");
pub(super) const USE_LHLO: Fixed = fixed(500, [5, 5, 1], "This is LMTP: use LHLO");
pub(super) const USE_EHLO: Fixed = fixed(500, [5, 5, 1], "This is SMTP: use EHLO or HELO");
pub(super) const BAD_SENDER: Fixed = fixed(501, [5, 1, 7], "Bad sender address syntax");
pub(super) const BAD_RECIPIENT: Fixed = fixed(501, [5, 1, 3], "Bad recipient address syntax");
pub(super) const NOT_IMPLEMENTED: Fixed = fixed(502, [5, 5, 1], "Command not implemented");
pub(super) const BAD_SEQUENCE: Fixed = fixed(503, [5, 5, 1], "Bad sequence of commands");
pub(super) const NO_VALID_RECIPIENTS: Fixed = fixed(503, [5, 5, 1], "No valid recipients");
pub(super) const MESSAGE_TOO_BIG: Fixed = fixed(
    552,
    [5, 3, 4],
    "Message size exceeds fixed maximum message size",
);
pub(super) const BARE_NEWLINE: Fixed = fixed(550, [5, 6, 11], "Bare CR or LF not allowed");

/// `501` for a malformed argument; `syntax` is smtp-proto's description of the command.
pub(super) fn bad_arguments(syntax: &str) -> Response<String> {
    Response::new(501, 5, 5, 4, format!("Syntax: {syntax}"))
}

pub(super) fn invalid_parameter(param: &str) -> Response<String> {
    Response::new(501, 5, 5, 4, format!("Invalid value for parameter {param}"))
}

/// For MAIL or RCPT parameters of extensions we do not advertise (RFC 5321 §4.1.1.11).
pub(super) fn unsupported_parameter(param: &str) -> Response<String> {
    Response::new(555, 5, 5, 4, format!("Unsupported parameter: {param}"))
}

pub(super) fn no_such_list(address: &str) -> Response<String> {
    Response::new(
        550,
        5,
        1,
        1,
        format!("<{address}>: Recipient address rejected: no such list here"),
    )
}

/// LMTP's per-recipient answer to the end of DATA on success.
pub(super) fn delivered(address: &str) -> Response<String> {
    Response::new(250, 2, 1, 5, format!("<{address}> delivered"))
}

/// LMTP's per-recipient answer to the end of DATA on failure: the general reply,
/// naming the recipient.
pub(super) fn for_recipient(reply: &Fixed, address: &str) -> Response<String> {
    let [class, subject, detail] = reply.esc;
    Response::new(
        reply.code,
        class,
        subject,
        detail,
        format!("<{address}> {}", reply.message),
    )
}

pub(super) fn idle_timeout(hostname: &str) -> Response<String> {
    Response::new(
        421,
        4,
        4,
        2,
        format!("{hostname} Idle timeout, closing connection"),
    )
}

pub(super) fn session_too_long(hostname: &str) -> Response<String> {
    Response::new(
        421,
        4,
        4,
        2,
        format!("{hostname} Session too long, closing connection"),
    )
}

pub(super) fn shutting_down(hostname: &str) -> Response<String> {
    Response::new(
        421,
        4,
        3,
        2,
        format!("{hostname} Service shutting down, closing connection"),
    )
}

/// The banner; like EHLO's answer it carries no enhanced status code.
pub(super) fn greeting(out: &mut Vec<u8>, hostname: &str, protocol: Protocol) {
    let dialect = match protocol {
        Protocol::Smtp => "ESMTP",
        Protocol::Lmtp => "LMTP",
    };
    out.extend_from_slice(format!("220 {hostname} {dialect} listd\r\n").as_bytes());
}

/// The answer to EHLO or LHLO: exactly the extensions this front end implements.
pub(super) fn ehlo(out: &mut Vec<u8>, hostname: &str, max_message_bytes: usize, offer_tls: bool) {
    let mut reply = EhloResponse::new(hostname);
    reply.capabilities =
        EXT_PIPELINING | EXT_SIZE | EXT_8BIT_MIME | EXT_ENHANCED_STATUS_CODES | EXT_SMTP_UTF8;
    if offer_tls {
        reply.capabilities |= EXT_START_TLS;
    }
    reply.size = max_message_bytes;
    push(out, |out| reply.write(out));
}

/// The answer to HELO: no extensions, no enhanced status code (RFC 2034 §3).
pub(super) fn helo(out: &mut Vec<u8>, hostname: &str) {
    out.extend_from_slice(format!("250 {hostname}\r\n").as_bytes());
}

/// Appends one reply to the session's output.
pub(super) fn reply<T: Display>(out: &mut Vec<u8>, reply: &Response<T>) {
    metrics::counter!("listd_smtp_replies_total", "code" => reply.code.to_string()).increment(1);
    push(out, |out| reply.write(out));
}

fn push(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) {
    // Writing into a Vec cannot fail.
    let _ = write(out);
}

/// `421` for a client whose command or message arrives too slowly.
pub(super) fn too_slow(hostname: &str) -> Response<String> {
    Response::new(
        421,
        4,
        4,
        2,
        format!("{hostname} Data arriving too slowly, closing connection"),
    )
}

/// `421` for a client that had too many recipients refused.
pub(super) fn too_many_errors(hostname: &str) -> Response<String> {
    Response::new(
        421,
        4,
        7,
        0,
        format!("{hostname} Too many refused recipients, closing connection"),
    )
}
