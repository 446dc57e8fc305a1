//! A running listd for a test: HTTP on a real port, SMTP, delivery to the sink.

use super::{CliOutput, SmtpSink, TestDb, run_cli};
use listd::app::{App, AppSettings};
use listd::config::Config;
use listd::delivery::{CopySettings, Relay, Worker};
use listd::domain::SecretKey;
use listd::http::AppState;
use listd::templates::Templates;
use std::collections::HashMap;
use tokio::net::TcpListener;

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

/// The app on a test's database, as `serve` would build it from `config`, and its
/// signing key (base64).
pub async fn test_app(db: &TestDb, config: &Config) -> (App, String) {
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
    (app, secret)
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
        let (app, secret) = test_app(&db, &config).await;
        let relay = Relay::new(&config.relay_url, 4, "listd.test").unwrap();
        let copies = CopySettings {
            secret_key: app.settings().secret_key.clone(),
            public_url: app.settings().public_url.clone(),
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
