//! Clients for the tests: HTTP without cookies or redirects, SMTP (Python's smtplib
//! or exact bytes), and reading links out of mail.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Finds the first URL in a text that starts with `prefix`.
pub fn find_link(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(prefix)?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '"')
        .unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// An HTTP client that, like a mail client or a script, keeps no cookies and does not
/// follow redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Sends one message with Python's smtplib; returns (code, text) of the failure, if any.
pub fn smtplib(port: u16, mail_from: &str, rcpts: &[&str], message: &str) -> Result<(), String> {
    let script = r#"
import smtplib, sys, json
port, mail_from, rcpts, msg = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.stdin.read()
try:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.sendmail(mail_from, rcpts, msg.encode())
except smtplib.SMTPRecipientsRefused as e:
    code, text = list(e.recipients.values())[0]
    print(code, text.decode()); sys.exit(1)
except smtplib.SMTPResponseException as e:
    print(e.smtp_code, e.smtp_error.decode()); sys.exit(1)
"#;
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &port.to_string(),
            mail_from,
            &serde_json::to_string(rcpts).unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else if out.stdout.is_empty() {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

pub fn mail(from: &str, to: &str, subject: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{}@example.net>\r\n{extra_headers}\r\n{body}\r\n",
        uuid::Uuid::new_v4().simple()
    )
}

/// An SMTP client that sends exactly the bytes it is given (a NUL, an endless line),
/// one command at a time; returns the last reply line of each step: the greeting,
/// EHLO, MAIL, each RCPT, DATA, and the end of the data when DATA was accepted.
pub async fn smtp_raw(port: u16, mail_from: &str, rcpts: &[&str], data: &[u8]) -> Vec<String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut replies = vec![read_reply(&mut r).await];
    let mut step = async |w: &mut tokio::net::tcp::OwnedWriteHalf, line: Vec<u8>| {
        w.write_all(&line).await.unwrap();
        read_reply(&mut r).await
    };
    replies.push(step(&mut w, b"EHLO client.test\r\n".to_vec()).await);
    replies.push(step(&mut w, format!("MAIL FROM:<{mail_from}>\r\n").into_bytes()).await);
    for rcpt in rcpts {
        replies.push(step(&mut w, format!("RCPT TO:<{rcpt}>\r\n").into_bytes()).await);
    }
    let go = step(&mut w, b"DATA\r\n".to_vec()).await;
    let accepted = go.starts_with("354");
    replies.push(go);
    if accepted {
        let mut stuffed = Vec::new();
        for line in data.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                stuffed.push(b'.');
            }
            stuffed.extend_from_slice(line);
        }
        stuffed.extend_from_slice(b".\r\n");
        replies.push(step(&mut w, stuffed).await);
    }
    let _ = w.write_all(b"QUIT\r\n").await;
    replies
}

/// Reads one (possibly multi-line) SMTP reply; returns its last line, or "" at EOF.
pub async fn read_reply(r: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> String {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return String::new();
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.trim_end().to_string();
        }
    }
}
