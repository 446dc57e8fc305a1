//! Databases: a fresh one per test, cloned from a migrated template.
//!
//! They live on the server named by `LISTD_TEST_DATABASE_URL` or `DATABASE_URL`,
//! or else on a self-managed cluster started once per test process (in /tmp, stopped
//! when the process exits). Cloning the template makes a test start in milliseconds.

use sqlx::{Connection, PgConnection, PgPool};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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

impl TestDb {
    /// Leaves the archives as an upgrade that remakes the search vectors does: every
    /// vector dropped, every list named for the server to index again.
    pub async fn drop_search_vectors(&self) {
        sqlx::query("truncate archive_search")
            .execute(&self.pool)
            .await
            .unwrap();
        sqlx::query("insert into archive_reindex (list_id) select id from list")
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// Waits until a session on this database listens on each of `channels` (a worker
    /// that has started and will be woken by a `NOTIFY`).
    pub async fn wait_listening(&self, channels: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut missing = Vec::new();
            for channel in channels {
                let statement = format!("LISTEN \"{channel}\"");
                let n: i64 = sqlx::query_scalar(
                    "select count(*) from pg_stat_activity
                     where datname = current_database() and query = $1",
                )
                .bind(&statement)
                .fetch_one(&self.pool)
                .await
                .unwrap();
                if n == 0 {
                    missing.push(*channel);
                }
            }
            if missing.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "nobody listens on {missing:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
