//! Test support: a fresh database per test, a capturing SMTP sink, a running server,
//! and the `listd` binary.
//!
//! Databases live on the server named by `LISTD_TEST_DATABASE_URL` or `DATABASE_URL`,
//! or else on a self-managed cluster started once per test process (in /tmp, stopped
//! when the process exits). Each test's database is cloned from a migrated template,
//! so a test starts in milliseconds.

use listd::app::{App, AppSettings};
use listd::config::Config;
use listd::delivery::{CopySettings, Relay, Worker};
use listd::domain::SecretKey;
use listd::http::AppState;
use listd::templates::Templates;
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Where test databases are created: an admin URL (ending in `/postgres`) and the
/// base to which a database name is appended.
struct Server {
    admin_url: String,
    url_for: Box<dyn Fn(&str) -> String + Send + Sync>,
    _cluster: Option<listd::pg::Cluster>,
    _dir: Option<tempfile::TempDir>,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let configured = std::env::var("LISTD_TEST_DATABASE_URL")
            .ok()
            .or_else(|| std::env::var("DATABASE_URL").ok())
            .filter(|u| !u.is_empty());
        if let Some(url) = configured {
            let parsed = url::Url::parse(&url).expect("the test database URL parses");
            let make = move |db: &str| {
                let mut u = parsed.clone();
                u.set_path(&format!("/{db}"));
                u.to_string()
            };
            return Server {
                admin_url: make("postgres"),
                url_for: Box::new(make),
                _cluster: None,
                _dir: None,
            };
        }
        // a private cluster for this test process, on a thread of its own so that
        // starting it does not depend on any one test's runtime
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let dir = tempfile::Builder::new()
                    .prefix("listd-test-")
                    .tempdir_in("/tmp")
                    .unwrap();
                // the server may run as the postgres user, which must reach the directory
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
                let mut cluster = listd::pg::Cluster::start_or_attach(
                    &dir.path().join("postgres"),
                    listd::pg::ClusterOptions { durable: false },
                )
                .await
                .expect("a self-managed PostgreSQL for the tests starts");
                cluster
                    .stop_when_process_exits()
                    .expect("the cluster's watchdog starts");
                let admin_url = cluster.url("postgres");
                let base = cluster.url("DBNAME");
                Server {
                    admin_url,
                    url_for: Box::new(move |db| base.replace("DBNAME", db)),
                    _cluster: Some(cluster),
                    _dir: Some(dir),
                }
            })
        })
        .join()
        .expect("starting the test database server")
    })
}

/// The migrated template database, created once per migration set.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let s = server();
            let mut hash: u64 = 0xcbf29ce484222325;
            for m in listd::store::MIGRATOR.iter() {
                for b in m.checksum.iter() {
                    hash = (hash ^ *b as u64).wrapping_mul(0x100000001b3);
                }
            }
            let name = format!("listd_tpl_{hash:016x}");
            let mut admin = PgConnection::connect(&s.admin_url)
                .await
                .expect("connect to the test server");
            sqlx::query("select pg_advisory_lock(4242)")
                .execute(&mut admin)
                .await
                .unwrap();
            let exists: bool =
                sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap();
            if !exists {
                let building = format!("{name}_building");
                let q = |s: String| sqlx::query(sqlx::AssertSqlSafe(s));
                q(format!("drop database if exists {building}"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                q(format!("create database {building}"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                let pool = PgPool::connect(&(s.url_for)(&building)).await.unwrap();
                listd::store::migrate(&pool)
                    .await
                    .expect("migrations apply to an empty database");
                pool.close().await;
                q(format!("alter database {building} rename to {name}"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
            }
            sqlx::query("select pg_advisory_unlock(4242)")
                .execute(&mut admin)
                .await
                .unwrap();
            name
        })
        .await
}

/// A database of one test's own, dropped at the end of the test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let tpl = template().await;
        let s = server();
        let name = format!("listd_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&s.admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "create database {name} template {tpl}"
        )))
        .execute(&mut admin)
        .await
        .expect("cloning the template database");
        let url = (s.url_for)(&name);
        let pool = listd::store::connect(&url, 10).await.unwrap();
        TestDb { name, url, pool }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = server().admin_url.clone();
        // dropping needs async I/O, and Drop may run inside or outside a runtime
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "drop database if exists {name} with (force)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            })
        })
        .join();
    }
}

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

/// A test configuration: the test's database, the sink as relay, a temp data dir.
pub fn config(db: &TestDb, relay: &str, data_dir: &std::path::Path) -> Config {
    let env: HashMap<String, String> = [
        ("LISTD_DATABASE_URL", db.url.as_str()),
        ("LISTD_RELAY_URL", relay),
        ("LISTD_DATA_DIR", data_dir.to_str().unwrap()),
        ("LISTD_HOSTNAME", "listd.test"),
        ("LISTD_RATE_PER_IP", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Config::from_sources(None, &env).unwrap()
}

/// A running listd: HTTP on a real port, delivery to a capturing sink.
pub struct TestServer {
    pub db: TestDb,
    /// The signing key, base64 (tests that make tokens as earlier versions did).
    pub secret: String,
    pub app: App,
    pub sink: SmtpSink,
    pub worker: Worker,
    pub base: String,
    pub data_dir: tempfile::TempDir,
    /// The DNS server DMARC look-ups go to (no record anywhere until a test adds one).
    pub dns: crate::dns::DnsServer,
    http: tokio::task::JoinHandle<()>,
    smtp_addr: std::net::SocketAddr,
    smtp_stop: tokio::sync::watch::Sender<bool>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts with a configuration the test may adjust (before the base URL is known,
    /// `public_url` is filled in afterwards).
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let db = TestDb::new().await;
        let sink = SmtpSink::start().await;
        let data_dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let dns = crate::dns::start().await;
        let mut config = config(&db, &sink.url(), data_dir.path());
        config.public_url = base.clone();
        config.dns_server = Some(dns.addr);
        adjust(&mut config);
        // the key the CLI's processes find in the database too, as `serve`'s would
        let secret =
            listd::store::secret::insert_secret_if_absent(&db.pool, &SecretKey::generate_base64())
                .await
                .unwrap();
        let settings = AppSettings {
            public_url: config.public_url.clone(),
            secret_key: SecretKey::from_base64(&secret).unwrap(),
            confirm_expiry: config.confirm_expiry,
            admins: config.admins.clone(),
        };
        let app = App::new(
            db.pool.clone(),
            settings,
            Templates::new(config.template_dir.clone()),
            listd::mail::dmarc::DmarcResolver::new(config.dns_server).unwrap(),
        );
        let relay = Relay::new(&config.relay_url, 4, "listd.test").unwrap();
        let copies = CopySettings {
            secret_key: app.settings.secret_key.clone(),
            public_url: app.settings.public_url.clone(),
        };
        let worker = Worker::new(db.pool.clone(), relay, 4, copies);
        let state = AppState::new(app.clone(), &config);
        let smtp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let smtp_addr = smtp_listener.local_addr().unwrap();
        let (smtp_stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut smtp_config =
            listd::smtp::SmtpConfig::new("listd.test", listd::smtp::Protocol::Smtp);
        smtp_config.max_message_bytes = config.max_message_bytes as usize;
        smtp_config.max_sessions_per_ip = config.smtp_max_per_ip;
        tokio::spawn(listd::smtp::serve(
            smtp_listener,
            smtp_config,
            listd::smtp::AppBackend::new(app.clone()),
            stop_rx,
        ));
        let http = tokio::spawn(async move {
            let _ = listd::http::serve(listener, state, std::future::pending()).await;
        });
        TestServer {
            db,
            secret,
            app,
            sink,
            worker,
            base,
            data_dir,
            dns,
            http,
            smtp_addr,
            smtp_stop,
        }
    }

    /// Carries out the web form requests stored so far, then delivers everything
    /// queued, now.
    pub async fn deliver(&self) -> usize {
        while self
            .app
            .process_web_requests_batch()
            .await
            .expect("web form requests are carried out")
            > 0
        {}
        self.worker
            .dispatch_all_pending()
            .await
            .expect("delivery works")
    }

    /// Processes received mail, then delivers what that queued.
    pub async fn process(&self) {
        self.app
            .process_all_inbound()
            .await
            .expect("processing received mail works");
        self.deliver().await;
    }

    pub fn smtp_port(&self) -> u16 {
        self.smtp_addr.port()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Runs the `listd` binary against this server's database.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        let dns = self.dns.addr.to_string();
        run_cli(
            &self.db.url,
            self.data_dir.path(),
            &self.base,
            &[("LISTD_DNS_SERVER", &dns)],
            args,
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.http.abort();
        let _ = self.smtp_stop.send(true);
    }
}

/// What a run of the binary printed.
#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

pub fn listd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_listd"))
}

pub fn run_cli(
    db_url: &str,
    data_dir: &std::path::Path,
    public_url: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> CliOutput {
    let out = std::process::Command::new(listd_bin())
        .args(args)
        .env_remove("DATABASE_URL")
        .env("LISTD_DATABASE_URL", db_url)
        .env("LISTD_DATA_DIR", data_dir)
        .env("LISTD_PUBLIC_URL", public_url)
        .env("LISTD_HOSTNAME", "listd.test")
        .envs(env.iter().copied())
        .output()
        .expect("the listd binary runs");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

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
