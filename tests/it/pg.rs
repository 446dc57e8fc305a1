//! The private PostgreSQL cluster: start, attach, release, crash recovery, root handling.
//!
//! Every test uses its own data directory under /tmp (made mode 755, so that the postgres
//! user can reach it when the tests run as root). Some tests re-run this test binary as a
//! second process, filtered to an ignored helper test and told what to do by an environment
//! variable.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use listd::pg::{Cluster, ClusterError, ClusterOptions};
use sqlx::Connection;

/// Environment variable naming the data directory for a helper run in a child process.
const HELPER_PGDATA: &str = "LISTD_PG_TEST_HELPER_PGDATA";

const FAST: ClusterOptions = ClusterOptions { durable: false };

/// A fresh directory for `$LISTD_DATA_DIR`, reachable by the postgres user.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").expect("/proc/self").uid() == 0
}

/// The pid in `postmaster.pid`, if the file is there.
fn postmaster_pid(pgdata: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Poll `cond` until it holds, failing the test after `limit`.
async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect(cluster: &Cluster, database: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&cluster.url(database))
        .await
        .expect("connect over the Unix socket")
}

/// Start or attach, with the watchdog armed so that a failing test (whose `Cluster` is dropped
/// while unwinding) does not leave a server running in a deleted directory.
async fn start(pgdata: &Path) -> Cluster {
    let mut cluster = start_unguarded(pgdata).await;
    cluster.stop_when_process_exits().expect("watchdog");
    cluster
}

async fn start_unguarded(pgdata: &Path) -> Cluster {
    let started = Instant::now();
    let cluster = Cluster::start_or_attach(pgdata, FAST)
        .await
        .unwrap_or_else(|e| panic!("start_or_attach: {e}"));
    eprintln!(
        "start_or_attach (started_here={}) took {:?}",
        cluster.started_here(),
        started.elapsed()
    );
    cluster
}

async fn release(cluster: Cluster) {
    let started = Instant::now();
    cluster
        .release()
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
    eprintln!("release took {:?}", started.elapsed());
}

/// Run this test binary again, filtered to the ignored helper test `name`, for `pgdata`.
fn run_helper(name: &str, pgdata: &Path) -> std::process::Output {
    let exe = std::env::current_exe().expect("current_exe");
    let output = Command::new(exe)
        .args([name, "--ignored", "--nocapture", "--test-threads=1"])
        .env(HELPER_PGDATA, pgdata)
        .output()
        .expect("run the test binary again");
    assert!(
        output.status.success(),
        "helper {name} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1 passed"),
        "helper {name} did not run exactly one test: {stdout}"
    );
    output
}

fn helper_pgdata() -> Option<PathBuf> {
    std::env::var_os(HELPER_PGDATA).map(PathBuf::from)
}

#[tokio::test]
async fn fresh_data_dir_starts_migrates_stops_and_restarts_with_data_intact() {
    let dir = data_dir();
    let pgdata = dir.path().join("postgres");

    let cluster = start(&pgdata).await;
    assert!(cluster.started_here());
    assert!(pgdata.join("PG_VERSION").exists());
    assert!(
        cluster
            .url("listd")
            .starts_with("postgres://postgres@localhost")
    );
    // No TCP: the server listens on its socket inside the data directory only.
    assert!(pgdata.join(".s.PGSQL.5432").exists());
    if is_root() {
        let owner = std::fs::metadata(&pgdata).unwrap().uid();
        assert_ne!(owner, 0, "the data directory belongs to the postgres user");
    }
    cluster.ensure_database("listd").await.expect("create");
    cluster.ensure_database("listd").await.expect("exists");
    let mut conn = connect(&cluster, "listd").await;
    let listen: String = sqlx::query_scalar("SHOW listen_addresses")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(listen, "");
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(fsync, "off", "not durable");
    sqlx::query("CREATE TABLE kept (id int PRIMARY KEY, note text NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO kept VALUES (1, 'still here')")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let pid = postmaster_pid(&pgdata).expect("postmaster.pid while running");
    release(cluster).await;
    assert!(!pgdata.join("postmaster.pid").exists(), "server stopped");
    assert!(!alive(pid), "postmaster {pid} is gone");

    let cluster = start(&pgdata).await;
    assert!(cluster.started_here());
    cluster.ensure_database("listd").await.expect("exists");
    let mut conn = connect(&cluster, "listd").await;
    let note: String = sqlx::query_scalar("SELECT note FROM kept WHERE id = 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(note, "still here");
    conn.close().await.unwrap();
    release(cluster).await;
    assert!(!pgdata.join("postmaster.pid").exists(), "server stopped");
}

#[tokio::test]
async fn stale_postmaster_pid_is_recovered() {
    let dir = data_dir();
    let pgdata = dir.path().join("postgres");
    let pid_file = pgdata.join("postmaster.pid");
    let socket_lock = pgdata.join(".s.PGSQL.5432.lock");

    // A postmaster killed outright leaves postmaster.pid and the socket lock file behind.
    // (No watchdog here: dropping it below would stop the next server.)
    let cluster = start_unguarded(&pgdata).await;
    cluster.ensure_database("listd").await.unwrap();
    let real_pid_file = std::fs::read_to_string(&pid_file).unwrap();
    let real_socket_lock = std::fs::read_to_string(&socket_lock).unwrap();
    let pid = postmaster_pid(&pgdata).unwrap();
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    drop(cluster); // the crashed process's lock goes with it
    wait_for(
        "the killed postmaster to die",
        Duration::from_secs(10),
        || !alive(pid),
    )
    .await;
    assert!(
        pid_file.exists(),
        "a SIGKILLed postmaster leaves its pid file"
    );

    let cluster = start(&pgdata).await;
    assert!(cluster.started_here(), "a new server was started");
    assert_ne!(postmaster_pid(&pgdata), Some(pid));
    let mut conn = connect(&cluster, "listd").await;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    conn.close().await.unwrap();
    release(cluster).await;
    assert!(!pid_file.exists());

    // A pid file (and socket lock) naming a process that has exited, one naming a live
    // process that is not PostgreSQL (this test process), and one naming the server of
    // another data directory.
    let mut exited = Command::new("true").spawn().unwrap();
    let dead_pid = exited.id();
    exited.wait().unwrap();
    let other_dir = data_dir();
    let other = start(&other_dir.path().join("postgres")).await;
    let other_pid = postmaster_pid(&other_dir.path().join("postgres")).unwrap();
    for stale_pid in [dead_pid, std::process::id(), other_pid] {
        let rewrite = |text: &str| {
            let rest = text.split_once('\n').map_or("", |(_, rest)| rest);
            format!("{stale_pid}\n{rest}")
        };
        std::fs::write(&pid_file, rewrite(&real_pid_file)).unwrap();
        std::fs::write(&socket_lock, rewrite(&real_socket_lock)).unwrap();
        let cluster = start(&pgdata).await;
        assert!(cluster.started_here(), "stale pid {stale_pid}: started");
        let mut conn = connect(&cluster, "listd").await;
        sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        release(cluster).await;
        // the postmaster removes its pid file as it exits; on a loaded machine that can
        // come a moment after the stop returns
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while pid_file.exists() && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            !pid_file.exists(),
            "stale pid {stale_pid}: the pid file is removed"
        );
    }
    assert!(
        alive(other_pid),
        "the other data directory's server was left alone"
    );
    release(other).await;
}

#[tokio::test]
async fn two_processes_share_one_cluster() {
    let dir = data_dir();
    let pgdata = dir.path().join("postgres");

    let first = start(&pgdata).await;
    assert!(first.started_here());
    let pid = postmaster_pid(&pgdata).unwrap();

    // The locks are per open file description, so a second use within one process counts
    // like another process.
    let second = start(&pgdata).await;
    assert!(!second.started_here(), "the second use attaches");
    assert_eq!(postmaster_pid(&pgdata), Some(pid));
    second.ensure_database("shared").await.unwrap();

    // A real second process attaches and releases without stopping the server.
    run_helper("pg_helper_attach_query_release", &pgdata);
    assert!(
        alive(pid),
        "a releasing attached process leaves the server running"
    );
    assert_eq!(postmaster_pid(&pgdata), Some(pid));

    // Releasing the starter leaves the server to the other user...
    release(first).await;
    assert!(alive(pid), "still used by the second");
    let mut conn = connect(&second, "shared").await;
    sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    // ...and the last release stops it, whoever started it.
    release(second).await;
    assert!(!pgdata.join("postmaster.pid").exists());
    wait_for("the postmaster to exit", Duration::from_secs(5), || {
        !alive(pid)
    })
    .await;
}

/// Child-process half of `two_processes_share_one_cluster`.
#[tokio::test]
#[ignore = "helper run in a child process by other tests"]
async fn pg_helper_attach_query_release() {
    let Some(pgdata) = helper_pgdata() else {
        return;
    };
    let cluster = Cluster::start_or_attach(&pgdata, FAST).await.unwrap();
    assert!(!cluster.started_here(), "the child process attaches");
    let mut conn = connect(&cluster, "shared").await;
    sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    cluster.release().await.unwrap();
}

#[tokio::test]
async fn unreachable_data_dir_as_root_names_listd_data_dir() {
    if !is_root() {
        eprintln!("skipped: only meaningful when the tests run as root");
        return;
    }
    let dir = data_dir();
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let pgdata = private.join("listd").join("postgres");
    let err = Cluster::start_or_attach(&pgdata, FAST)
        .await
        .expect_err("the postgres user cannot reach a mode-700 root directory");
    assert!(
        matches!(err, ClusterError::Unreachable { .. }),
        "unexpected error: {err}"
    );
    let message = err.to_string();
    assert!(message.contains("LISTD_DATA_DIR"), "{message}");
    assert!(!pgdata.exists(), "nothing was initialised");
}

#[tokio::test]
async fn stop_when_process_exits() {
    let dir = data_dir();
    let pgdata = dir.path().join("postgres");
    let output = run_helper("pg_helper_start_with_watchdog_and_exit", &pgdata);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let pid: u32 = stdout
        .lines()
        .find_map(|line| line.split_once("POSTMASTER_PID=").map(|(_, pid)| pid))
        .expect("the helper prints the postmaster pid")
        .trim()
        .parse()
        .unwrap();
    let exited = Instant::now();
    wait_for(
        "the watchdog to stop the server",
        Duration::from_secs(30),
        || !alive(pid),
    )
    .await;
    eprintln!(
        "server gone {:?} after the process exited",
        exited.elapsed()
    );

    // It starts again afterwards.
    let cluster = start(&pgdata).await;
    assert!(cluster.started_here());
    release(cluster).await;
}

/// Child-process half of `stop_when_process_exits`: start with the watchdog, keep the
/// cluster in a static that is never dropped, and exit without `release`.
#[tokio::test]
#[ignore = "helper run in a child process by other tests"]
async fn pg_helper_start_with_watchdog_and_exit() {
    static KEEP: std::sync::OnceLock<Cluster> = std::sync::OnceLock::new();
    let Some(pgdata) = helper_pgdata() else {
        return;
    };
    let mut cluster = Cluster::start_or_attach(&pgdata, FAST).await.unwrap();
    assert!(cluster.started_here());
    cluster.stop_when_process_exits().unwrap();
    println!("POSTMASTER_PID={}", postmaster_pid(&pgdata).unwrap());
    assert!(KEEP.set(cluster).is_ok());
}

#[tokio::test]
async fn released_watchdog_does_not_stop_a_server_still_in_use() {
    let dir = data_dir();
    let pgdata = dir.path().join("postgres");
    let mut first = start(&pgdata).await;
    first.stop_when_process_exits().unwrap();
    let second = start(&pgdata).await;
    let pid = postmaster_pid(&pgdata).unwrap();
    release(first).await;
    // The disarmed watchdog has exited by the time release returns; the server must be up.
    assert!(alive(pid));
    let mut conn = connect(&second, "postgres").await;
    sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    release(second).await;
    // `pg_ctl stop -w` returns once the pid file is gone, which the postmaster removes
    // just before it exits
    wait_for("the postmaster to exit", Duration::from_secs(5), || {
        !alive(pid)
    })
    .await;
}

#[tokio::test]
async fn socket_path_too_long_is_a_clear_error() {
    let dir = data_dir();
    let pgdata = dir.path().join("d".repeat(100)).join("postgres");
    let err = Cluster::start_or_attach(&pgdata, FAST).await.unwrap_err();
    assert!(
        matches!(err, ClusterError::SocketPathTooLong { .. }),
        "unexpected error: {err}"
    );
    assert!(err.to_string().contains("LISTD_DATA_DIR"));
}

#[tokio::test]
async fn durable_cluster_keeps_fsync_on() {
    let dir = data_dir();
    let pgdata = dir.path().join("postgres");
    let cluster = Cluster::start_or_attach(&pgdata, ClusterOptions { durable: true })
        .await
        .unwrap_or_else(|e| panic!("start_or_attach: {e}"));
    let mut conn = connect(&cluster, "postgres").await;
    for setting in ["fsync", "synchronous_commit", "full_page_writes"] {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(value, "on", "{setting}");
    }
    conn.close().await.unwrap();
    release(cluster).await;
}

#[tokio::test]
async fn concurrent_starts_start_one_server() {
    let dir = data_dir();
    let pgdata = dir.path().join("postgres");
    let (a, b) = tokio::join!(
        Cluster::start_or_attach(&pgdata, FAST),
        Cluster::start_or_attach(&pgdata, FAST)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        a.started_here() != b.started_here(),
        "exactly one of them starts the server"
    );
    release(a).await;
    assert!(pgdata.join("postmaster.pid").exists(), "still in use");
    release(b).await;
    assert!(!pgdata.join("postmaster.pid").exists());
}

#[tokio::test]
async fn failed_start_reports_the_server_log() {
    let dir = data_dir();
    let pgdata = dir.path().join("postgres");
    release(start(&pgdata).await).await;
    let conf = pgdata.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("shared_buffers = 'lots'\n");
    std::fs::write(&conf, text).unwrap();
    let err = match Cluster::start_or_attach(&pgdata, FAST).await {
        Ok(mut cluster) => {
            cluster.stop_when_process_exits().unwrap();
            panic!("a bad setting should stop the server from starting");
        }
        Err(err) => err,
    };
    let message = err.to_string();
    assert!(matches!(err, ClusterError::Start(_)), "{message}");
    assert!(message.contains("shared_buffers"), "{message}");
    eprintln!("{message}");
    assert!(!pgdata.join("postmaster.pid").exists());
}

/// The README's first command as root, from a data directory the postgres user cannot
/// reach (a fresh clone under a mode-700 home): `serve` keeps its cluster under
/// /var/lib/listd, says where, answers `/readyz`, shares the cluster with the CLI, and
/// stops it when it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_first_run_under_a_private_home_serves() {
    if !is_root() {
        eprintln!("skipped: only meaningful when the tests run as root");
        return;
    }
    let home = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = home.path().join("clone").join("listd-data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = |cmd: &mut Command| {
        cmd.env_remove("DATABASE_URL")
            .env_remove("LISTD_DATABASE_URL")
            .env("LISTD_DATA_DIR", &data)
            .env("LISTD_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("LISTD_SMTP_ADDR", "off")
            .env("LISTD_LOG", "info");
    };
    let mut serve = Command::new(crate::harness::listd_bin());
    env(serve.arg("serve"));
    let log = home.path().join("serve.log");
    let mut child = serve
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = reqwest::get(&readyz).await
            && r.status() == 200
        {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "serve exited with {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "no /readyz within 90 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recorded = std::fs::read_to_string(data.join("postgres.location")).unwrap();
    let pgdata = PathBuf::from(recorded.trim());
    let _cleanup = Removes(pgdata.parent().unwrap().to_path_buf());
    assert!(pgdata.starts_with("/var/lib/listd"), "{}", pgdata.display());
    assert!(postmaster_pid(&pgdata).is_some(), "the cluster runs there");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&pgdata.display().to_string()),
        "one line says where: {logged}"
    );

    // the CLI uses the same cluster
    let mut cli = Command::new(crate::harness::listd_bin());
    env(cli.args(["lists", "ls", "--json"]));
    let out = cli.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        postmaster_pid(&pgdata).is_none(),
        "the last process stopped the cluster"
    );
}

/// Removes a directory when dropped.
struct Removes(PathBuf);

impl Drop for Removes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
