//! The SMTP sink: a minimal SMTP server on loopback that keeps what it receives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The message parsed by a real MIME parser.
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("the captured message parses")
    }

    /// Every value of a header, unfolded, as raw text.
    pub fn headers(&self, name: &str) -> Vec<String> {
        let text = self.text();
        let head = text
            .split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .replace("\r\n ", " ")
            .replace("\r\n\t", " ");
        head.split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// The address in the Reply-To header (where a reply to the message goes).
    pub fn reply_to_address(&self) -> String {
        let parsed = self.parsed();
        let reply_to = parsed.reply_to().expect("a Reply-To header");
        reply_to
            .first()
            .and_then(|a| a.address())
            .expect("an address in Reply-To")
            .to_string()
    }

    /// The decoded text body.
    pub fn body_text(&self) -> String {
        self.parsed()
            .body_text(0)
            .map(|b| b.into_owned())
            .unwrap_or_default()
    }
}

/// A minimal SMTP server on loopback that keeps what it receives. `reply_to_rcpt`
/// lets a test make it refuse recipients (e.g. `450` or `550`).
#[derive(Clone)]
pub struct SmtpSink {
    pub addr: std::net::SocketAddr,
    pub messages: Arc<Mutex<Vec<Captured>>>,
    pub rcpt_replies: Arc<Mutex<HashMap<String, String>>>,
    /// Whether EHLO offers PIPELINING (on unless a test turns it off).
    pub offer_pipelining: Arc<std::sync::atomic::AtomicBool>,
    /// How many transactions arrived with RCPT already sent behind MAIL.
    pub pipelined: Arc<std::sync::atomic::AtomicUsize>,
    /// How many connections were opened to it.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Misbehaviour a test asks for.
    pub quirks: Arc<Mutex<SinkQuirks>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

/// Ways the sink can misbehave, as broken or unlucky relays do.
#[derive(Debug, Default)]
pub struct SinkQuirks {
    /// Answer 354 to DATA even when every recipient was refused.
    pub data_after_refusal: bool,
    /// Keep the message for these recipients, then hang up instead of answering 250.
    pub hang_up_after_data_for: std::collections::HashSet<String>,
    /// Keep each message, then wait this long before answering 250 (a slow relay).
    pub delay_after_data: Duration,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let rcpt_replies: Arc<Mutex<HashMap<String, String>>> =
            Arc::new(Mutex::new(HashMap::new()));
        let offer_pipelining = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let pipelined = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let quirks = Arc::new(Mutex::new(SinkQuirks::default()));
        let shared = SinkShared {
            connections: connections.clone(),
            quirks: quirks.clone(),
            messages: messages.clone(),
            rcpt_replies: rcpt_replies.clone(),
            offer_pipelining: offer_pipelining.clone(),
            pipelined: pipelined.clone(),
        };
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = sink_session(sock, shared).await;
                });
            }
        });
        SmtpSink {
            addr,
            messages,
            rcpt_replies,
            offer_pipelining,
            pipelined,
            connections,
            quirks,
            task: Arc::new(task),
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Captured> {
        self.messages.lock().unwrap().clone()
    }

    /// Messages to one recipient.
    pub fn to(&self, rcpt: &str) -> Vec<Captured> {
        self.received()
            .into_iter()
            .filter(|c| c.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(rcpt)))
            .collect()
    }

    /// Waits (with a deadline) until `n` messages have arrived.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Captured> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

#[derive(Clone)]
struct SinkShared {
    messages: Arc<Mutex<Vec<Captured>>>,
    rcpt_replies: Arc<Mutex<HashMap<String, String>>>,
    offer_pipelining: Arc<std::sync::atomic::AtomicBool>,
    pipelined: Arc<std::sync::atomic::AtomicUsize>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    quirks: Arc<Mutex<SinkQuirks>>,
}

async fn sink_session(sock: tokio::net::TcpStream, shared: SinkShared) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    let SinkShared {
        messages,
        rcpt_replies,
        offer_pipelining,
        pipelined,
        connections,
        quirks,
    } = shared;
    connections.fetch_add(1, Ordering::SeqCst);
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink.test ESMTP\r\n").await?;
    let (mut from, mut rcpts) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let arg = |prefix: &str| {
            line[prefix.len()..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string()
        };
        let reply: String = if upper.starts_with("EHLO") {
            if offer_pipelining.load(Ordering::SeqCst) {
                "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".into()
            } else {
                "250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".into()
            }
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            "250 ok\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            if r.buffer().starts_with(b"RCPT") {
                pipelined.fetch_add(1, Ordering::SeqCst);
            }
            from = arg("MAIL FROM:");
            rcpts.clear();
            "250 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = arg("RCPT TO:");
            match rcpt_replies.lock().unwrap().get(&rcpt.to_ascii_lowercase()) {
                Some(reply) => format!("{reply}\r\n"),
                None => {
                    rcpts.push(rcpt);
                    "250 ok\r\n".into()
                }
            }
        } else if upper.starts_with("DATA") {
            if rcpts.is_empty() && !quirks.lock().unwrap().data_after_refusal {
                "554 no valid recipients\r\n".into()
            } else {
                w.write_all(b"354 go ahead\r\n").await?;
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    if l.starts_with(b"..") {
                        l.remove(0);
                    }
                    data.extend_from_slice(&l);
                }
                if rcpts.is_empty() {
                    "554 no valid recipients\r\n".into()
                } else {
                    messages.lock().unwrap().push(Captured {
                        mail_from: from.clone(),
                        rcpt_to: rcpts.clone(),
                        data,
                    });
                    let hang_up = rcpts.iter().any(|r| {
                        quirks
                            .lock()
                            .unwrap()
                            .hang_up_after_data_for
                            .contains(&r.to_ascii_lowercase())
                    });
                    if hang_up {
                        return Ok(());
                    }
                    let delay = quirks.lock().unwrap().delay_after_data;
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    "250 queued\r\n".into()
                }
            }
        } else if upper.starts_with("RSET") {
            rcpts.clear();
            "250 ok\r\n".into()
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            "502 not implemented\r\n".into()
        };
        w.write_all(reply.as_bytes()).await?;
    }
}
