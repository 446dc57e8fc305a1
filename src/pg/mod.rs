//! The private PostgreSQL cluster that listd runs when no database URL is configured.
//!
//! This module owns everything about that cluster: finding the machine's PostgreSQL server
//! binaries, `initdb` into `$LISTD_DATA_DIR/postgres` on first use, starting the server on a
//! Unix socket inside the data directory (no TCP port), attaching to a server that another
//! listd process already runs, recovering from a crashed earlier run, and stopping the server
//! when the last listd process using it lets go. The rest of listd only sees [`Cluster::url`].
//!
//! Coordination between listd processes uses two advisory (`flock`) lock files beside the
//! data directory, in its parent (which the listd process itself owns, also when root):
//!
//! * `<pgdata>.lock` (e.g. `$LISTD_DATA_DIR/postgres.lock`): held exclusively while one process
//!   initialises, starts or stops the server, so those steps never interleave.
//! * `<pgdata>.users` (e.g. `$LISTD_DATA_DIR/postgres.users`): every process using the server
//!   holds a shared lock on it for the life of its [`Cluster`]. [`Cluster::release`] drops its
//!   own shared lock and stops the server only if it can then take the lock exclusively, that
//!   is when no other process is using it. A process that dies releases its lock with it.
//!
//! When run as root the server runs as the `postgres` system user (PostgreSQL refuses to run
//! as root): the data directory is created owned by that user and every PostgreSQL program is
//! run with its uid and gid.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Stdio};
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection};
use tokio::process::Command;
use tracing::{info, warn};

/// The port number of the server; it only names the socket file, since there is no TCP.
const PORT: u16 = 5432;
/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes including the NUL).
const SOCKET_PATH_MAX: usize = 107;
/// Superuser role created by `initdb` and used by listd.
const SUPERUSER: &str = "postgres";
/// The settings file listd rewrites at every start, included from `postgresql.conf`.
const LISTD_CONF: &str = "listd.conf";
/// The server log inside the data directory.
const SERVER_LOG: &str = "server.log";
/// The server log is moved aside at start once it is larger than this.
const SERVER_LOG_ROTATE_BYTES: u64 = 8 << 20;
/// How long to wait for a server to become ready or to shut down.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the processes of a crashed server to go away.
const LEFTOVER_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the private PostgreSQL cluster could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No directory with `initdb`, `pg_ctl` and `postgres` was found.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) were found on PATH, via \
         `pg_config --bindir` or under /usr/lib/postgresql/*/bin: install the PostgreSQL server \
         package (e.g. `apt-get install postgresql`) or set LISTD_DATABASE_URL (or DATABASE_URL) \
         to use an existing database"
    )]
    NoBinaries,
    /// listd runs as root but there is no `postgres` user to run the server as.
    #[error(
        "listd is running as root but there is no `postgres` system user to run PostgreSQL as \
         (PostgreSQL refuses to run as root): install the PostgreSQL server package, which \
         creates it, or run listd as an unprivileged user"
    )]
    NoPostgresUser,
    /// listd runs as root and the `postgres` user cannot reach the data directory.
    #[error(
        "the postgres system user cannot reach the data directory under {}, so PostgreSQL \
         cannot run there: set LISTD_DATA_DIR to a directory it can reach (e.g. /var/lib/listd)",
        dir.display()
    )]
    Unreachable {
        /// The directory that holds the data directory.
        dir: PathBuf,
    },
    /// The socket path inside the data directory would be too long for the kernel.
    #[error(
        "the PostgreSQL socket path {} is longer than the {SOCKET_PATH_MAX} bytes Unix sockets \
         allow: set LISTD_DATA_DIR to a shorter path",
        path.display()
    )]
    SocketPathTooLong {
        /// The socket path that would have been used.
        path: PathBuf,
    },
    /// The data directory exists but is neither empty nor a PostgreSQL data directory.
    #[error(
        "{} exists but is not a PostgreSQL data directory (it has no PG_VERSION file): move it \
         away or set LISTD_DATA_DIR to another directory",
        dir.display()
    )]
    NotADataDirectory {
        /// The data directory.
        dir: PathBuf,
    },
    /// `initdb` failed.
    #[error("initdb failed to create the PostgreSQL data directory: {0}")]
    Initdb(String),
    /// The server did not start.
    #[error("PostgreSQL failed to start: {0}")]
    Start(String),
    /// The server did not stop.
    #[error("PostgreSQL failed to stop: {0}")]
    Stop(String),
    /// Talking to the running server failed.
    #[error("could not {action} on the private PostgreSQL server: {source}")]
    Sql {
        /// What was being done.
        action: String,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// A file operation on a named path failed.
    #[error("could not {action} {}: {source}", path.display())]
    File {
        /// What was being done.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Any other I/O error.
    #[error("I/O error while managing the private PostgreSQL cluster: {0}")]
    Io(#[from] io::Error),
}

/// How the cluster is run.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterOptions {
    /// `false` trades crash safety for speed: `fsync=off`, `synchronous_commit=off`,
    /// `full_page_writes=off` and `initdb --no-sync`. Meant for test harnesses.
    pub durable: bool,
}

/// Where the cluster of a root process lives when the `postgres` user cannot reach the
/// listd data directory: one directory per data directory under this one.
const ROOT_FALLBACK_DIR: &str = "/var/lib/listd";
/// The file in the listd data directory that names a cluster kept elsewhere.
const LOCATION_FILE: &str = "postgres.location";

/// The data directory of the cluster that belongs to the listd data directory
/// `data_dir`: `<data_dir>/postgres`, unless listd runs as root and the `postgres` user
/// cannot reach `data_dir` (a fresh clone under a mode-700 home, as in a root shell on a
/// new machine). Then the cluster is kept in a directory of its own under
/// `/var/lib/listd`, named after `data_dir`, and recorded in `<data_dir>/postgres.location`,
/// so that every listd process of that data directory (`serve`, the CLI) uses the same
/// one. An existing `<data_dir>/postgres` is always kept.
pub async fn locate_cluster(data_dir: &Path) -> Result<PathBuf, ClusterError> {
    let data_dir = std::path::absolute(data_dir).map_err(|source| ClusterError::File {
        action: "resolve the data directory path",
        path: data_dir.to_path_buf(),
        source,
    })?;
    let default = data_dir.join("postgres");
    let record = data_dir.join(LOCATION_FILE);
    if let Ok(text) = fs::read_to_string(&record) {
        let recorded = PathBuf::from(text.trim());
        if recorded.is_absolute() {
            return Ok(recorded);
        }
    }
    if !running_as_root()? || default.exists() {
        return Ok(default);
    }
    let user = postgres_user()?;
    fs::create_dir_all(&data_dir).map_err(|source| ClusterError::File {
        action: "create directory",
        path: data_dir.clone(),
        source,
    })?;
    if check_reachable(&data_dir, user).await.is_ok() {
        return Ok(default);
    }
    let home = Path::new(ROOT_FALLBACK_DIR).join(fallback_name(&data_dir));
    for dir in [Path::new(ROOT_FALLBACK_DIR), home.as_path()] {
        make_reachable_dir(dir)?;
    }
    let cluster = home.join("postgres");
    let tmp = data_dir.join(format!(".{LOCATION_FILE}.{}", std::process::id()));
    fs::write(&tmp, format!("{}\n", cluster.display()))
        .and_then(|()| fs::rename(&tmp, &record))
        .map_err(|source| ClusterError::File {
            action: "write",
            path: record.clone(),
            source,
        })?;
    info!(
        cluster = %cluster.display(),
        "the postgres system user cannot reach {}, so the private PostgreSQL cluster is kept in {} (recorded in {})",
        data_dir.display(),
        cluster.display(),
        record.display()
    );
    Ok(cluster)
}

/// `<last path component>-<16 hex digits of the path's SHA-256>`: readable, and one
/// directory per data directory.
fn fallback_name(data_dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let base: String = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("{base}-{hex}")
}

/// Creates `dir` (if needed) with mode 755 whatever the umask, so that the `postgres`
/// user can reach what is inside.
fn make_reachable_dir(dir: &Path) -> Result<(), ClusterError> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |action: &'static str| {
        move |source| ClusterError::File {
            action,
            path: dir.to_path_buf(),
            source,
        }
    };
    fs::create_dir_all(dir).map_err(failed("create directory"))?;
    let mut mode = fs::metadata(dir).map_err(failed("inspect"))?.permissions();
    if mode.mode() & 0o755 != 0o755 {
        mode.set_mode(mode.mode() | 0o755);
        fs::set_permissions(dir, mode).map_err(failed("change the mode of"))?;
    }
    Ok(())
}

/// A user and group to run PostgreSQL programs as (when listd runs as root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// The watchdog child of [`Cluster::stop_when_process_exits`].
#[derive(Debug)]
struct Watchdog {
    child: std::process::Child,
    /// Closing this pipe (also by process exit) makes the watchdog stop the server.
    stdin: ChildStdin,
}

/// This process's use of the private PostgreSQL cluster; see the module documentation.
#[derive(Debug)]
pub struct Cluster {
    /// Absolute path of the data directory; also the socket directory.
    pgdata: PathBuf,
    /// Directory holding `initdb`, `pg_ctl` and `postgres`.
    bindir: PathBuf,
    /// The `postgres` user when listd runs as root.
    run_as: Option<RunAs>,
    /// Shared lock on `<pgdata>.users`, held for the life of this value.
    users_lock: Option<File>,
    started_here: bool,
    watchdog: Option<Watchdog>,
}

impl Cluster {
    /// Start (initdb on first use) or attach to the cluster whose data directory is `pgdata`.
    pub async fn start_or_attach(
        pgdata: &Path,
        opts: ClusterOptions,
    ) -> Result<Cluster, ClusterError> {
        let pgdata = std::path::absolute(pgdata).map_err(|source| ClusterError::File {
            action: "resolve the data directory path",
            path: pgdata.to_path_buf(),
            source,
        })?;
        let paths = Paths::new(&pgdata)?;
        let socket = paths.socket_file();
        if socket.as_os_str().len() > SOCKET_PATH_MAX {
            return Err(ClusterError::SocketPathTooLong { path: socket });
        }
        let bindir = tokio::task::spawn_blocking(locate_bindir)
            .await
            .map_err(|e| ClusterError::Io(io::Error::other(e)))??;
        let run_as = if running_as_root()? {
            Some(postgres_user()?)
        } else {
            None
        };
        fs::create_dir_all(&paths.parent).map_err(|source| ClusterError::File {
            action: "create directory",
            path: paths.parent.clone(),
            source,
        })?;
        if let Some(user) = run_as {
            check_reachable(&paths.parent, user).await?;
        }

        let init_lock = lock_file(paths.init_lock.clone(), LockKind::Exclusive).await?;
        let users_lock = lock_file(paths.users_lock.clone(), LockKind::Shared).await?;
        let mut cluster = Cluster {
            pgdata,
            bindir,
            run_as,
            users_lock: Some(users_lock),
            started_here: false,
            watchdog: None,
        };
        let result = cluster.start_if_needed(&paths, opts).await;
        drop(init_lock);
        result?;
        Ok(cluster)
    }

    /// `postgres://` URL over the Unix socket for `database`, as the `postgres` role.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost:{PORT}/{}?host={}&sslmode=disable",
            percent_encode(database),
            percent_encode(&self.pgdata.to_string_lossy()),
        )
    }

    /// CREATE DATABASE if it does not exist (connecting to the `postgres` database).
    pub async fn ensure_database(&self, database: &str) -> Result<(), ClusterError> {
        let sql_err = |action: &str| {
            let action = action.to_string();
            move |source| ClusterError::Sql { action, source }
        };
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .map_err(sql_err("connect to the postgres database"))?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1")
                .bind(database)
                .fetch_optional(&mut conn)
                .await
                .map_err(sql_err("look up database"))?;
        if exists.is_none() {
            let sql = format!("CREATE DATABASE {}", quote_ident(database));
            match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await {
                Ok(_) => info!(database, "created PostgreSQL database"),
                // Another process created it between our check and our CREATE: 42P04
                // when it had finished, 23505 (a unique violation in the catalogue)
                // when both were creating it at the same moment.
                Err(sqlx::Error::Database(e))
                    if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
                Err(e) => return Err(sql_err(&format!("create database {database:?}"))(e)),
            }
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// True when this process started the server (rather than attaching to a running one).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Give up this process's use. Stops the server (`pg_ctl stop -m fast`, waiting for it)
    /// when no other listd process is using it, whoever started it.
    pub async fn release(mut self) -> Result<(), ClusterError> {
        self.disarm_watchdog();
        let paths = Paths::new(&self.pgdata)?;
        let init_lock = lock_file(paths.init_lock.clone(), LockKind::Exclusive).await?;
        // Drop our shared lock, then see whether anybody else still holds one. Nobody can
        // take a new one meanwhile: starters take the init lock first, and we hold it.
        drop(self.users_lock.take());
        let users = open_lock_file(&paths.users_lock)?;
        // A process being spawned by another thread of this program holds a copy of every
        // open descriptor, our lock's among them, until it execs; such a copy would pass for
        // another user. A real user keeps its lock, so ask again for a moment.
        let mut answer = users.try_lock();
        let patience = Instant::now() + Duration::from_millis(500);
        while matches!(answer, Err(TryLockError::WouldBlock)) && Instant::now() < patience {
            tokio::time::sleep(Duration::from_millis(25)).await;
            answer = users.try_lock();
        }
        let result = match answer {
            Ok(()) => self.stop_server().await,
            Err(TryLockError::WouldBlock) => {
                info!(
                    pgdata = %self.pgdata.display(),
                    "PostgreSQL is still used by another listd process; leaving it running"
                );
                Ok(())
            }
            Err(TryLockError::Error(source)) => Err(ClusterError::File {
                action: "lock",
                path: paths.users_lock.clone(),
                source,
            }),
        };
        drop(users);
        drop(init_lock);
        result
    }

    /// For test harnesses: spawn a watchdog child whose stdin is a pipe held by this value, so
    /// that the server is stopped (`pg_ctl stop -m immediate`) when this process exits or this
    /// value is dropped, even if [`Cluster::release`] is never called. `release` disarms it.
    pub fn stop_when_process_exits(&mut self) -> Result<(), ClusterError> {
        if self.watchdog.is_some() {
            return Ok(());
        }
        // `read` fails at end of file (our end closed); `release` writes "keep" instead.
        let script = r#"read -r cmd; [ "$cmd" = keep ] || exec "$1" -D "$2" stop -m immediate -s"#;
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .arg("listd-pg-watchdog")
            .arg(self.bindir.join("pg_ctl"))
            .arg(&self.pgdata)
            .current_dir("/")
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so a Ctrl-C aimed at the test run does not kill it first.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        if let Some(user) = self.run_as {
            std::os::unix::process::CommandExt::uid(&mut cmd, user.uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, user.gid);
        }
        let mut child = cmd.spawn().map_err(|source| ClusterError::File {
            action: "run",
            path: PathBuf::from("/bin/sh"),
            source,
        })?;
        let stdin = child.stdin.take().expect("stdin is piped");
        self.watchdog = Some(Watchdog { child, stdin });
        Ok(())
    }

    /// Tell the watchdog, if any, to exit without stopping the server.
    fn disarm_watchdog(&mut self) {
        if let Some(Watchdog {
            mut child,
            mut stdin,
        }) = self.watchdog.take()
        {
            let _ = stdin.write_all(b"keep\n");
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// With the init lock held: make sure the server runs, starting it if needed.
    async fn start_if_needed(
        &mut self,
        paths: &Paths,
        opts: ClusterOptions,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match server_state(&self.pgdata)? {
                ServerState::Ready => {
                    info!(pgdata = %self.pgdata.display(), "using the running PostgreSQL server");
                    return Ok(());
                }
                ServerState::Busy(status) => {
                    if Instant::now() > deadline {
                        return Err(ClusterError::Start(format!(
                            "the server running in {} stayed in state {status:?} for {} seconds",
                            self.pgdata.display(),
                            READY_TIMEOUT.as_secs()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                ServerState::Stale(pid) => {
                    warn!(
                        pgdata = %self.pgdata.display(),
                        pid,
                        "recovering from a PostgreSQL server that did not shut down cleanly"
                    );
                    self.wait_for_leftover_processes().await;
                    remove_if_exists(&self.pgdata.join("postmaster.pid"))?;
                    break;
                }
                ServerState::Stopped => break,
            }
        }
        // The server is not running: anything left of a socket lock file is stale, and its pid
        // may by now belong to an unrelated process, which would make PostgreSQL refuse to start.
        remove_if_exists(&PathBuf::from(format!(
            "{}.lock",
            paths.socket_file().display()
        )))?;
        if !self.pgdata.join("PG_VERSION").exists() {
            self.initdb(paths, opts).await?;
        }
        self.write_settings(opts)?;
        self.start_server().await?;
        self.started_here = true;
        Ok(())
    }

    /// Create the data directory: initdb into a temporary directory beside it, then rename,
    /// so that a crash part way never leaves a half-made data directory behind.
    async fn initdb(&self, paths: &Paths, opts: ClusterOptions) -> Result<(), ClusterError> {
        if self.pgdata.exists() && !dir_is_empty(&self.pgdata)? {
            return Err(ClusterError::NotADataDirectory {
                dir: self.pgdata.clone(),
            });
        }
        let tmp = &paths.initdb_tmp;
        if tmp.exists() {
            fs::remove_dir_all(tmp).map_err(|source| ClusterError::File {
                action: "remove the unfinished data directory",
                path: tmp.clone(),
                source,
            })?;
        }
        self.make_private_dir(tmp)?;
        info!(pgdata = %self.pgdata.display(), "creating the PostgreSQL data directory (initdb)");
        let started = Instant::now();
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(tmp)
            .arg("-U")
            .arg(SUPERUSER)
            .args(["--auth-local=trust", "--auth-host=reject"])
            .args(["--encoding=UTF8", "--locale=C"]);
        if !opts.durable {
            cmd.arg("--no-sync");
        }
        let output = run(cmd, "initdb").await.map_err(ClusterError::Initdb)?;
        if !output.status.success() {
            return Err(ClusterError::Initdb(command_failure("initdb", &output)));
        }
        let conf = tmp.join("postgresql.conf");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|source| ClusterError::File {
                action: "open",
                path: conf.clone(),
                source,
            })?;
        writeln!(
            file,
            "\n# Added by listd: socket, port and durability settings, rewritten at every start.\n\
             include_if_exists = '{LISTD_CONF}'"
        )?;
        drop(file);
        if self.pgdata.exists() {
            // An empty directory (checked above); rename cannot replace it if it is a mount
            // point, which gives a clear error.
            fs::remove_dir(&self.pgdata).map_err(|source| ClusterError::File {
                action: "replace the empty directory",
                path: self.pgdata.clone(),
                source,
            })?;
        }
        fs::rename(tmp, &self.pgdata).map_err(|source| ClusterError::File {
            action: "move the new data directory into place at",
            path: self.pgdata.clone(),
            source,
        })?;
        info!(
            pgdata = %self.pgdata.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "created the PostgreSQL data directory"
        );
        Ok(())
    }

    /// Write `listd.conf`, the settings listd owns, into the data directory.
    fn write_settings(&self, opts: ClusterOptions) -> Result<(), ClusterError> {
        let mut conf = format!(
            "# Written by listd at every start; put your own settings in postgresql.conf.\n\
             listen_addresses = ''\n\
             unix_socket_directories = '{}'\n\
             port = {PORT}\n",
            self.pgdata.to_string_lossy().replace('\'', "''"),
        );
        if !opts.durable {
            conf.push_str(
                "# Not durable (test harness): fast, but a machine crash may lose data.\n\
                 fsync = off\n\
                 synchronous_commit = off\n\
                 full_page_writes = off\n",
            );
        }
        let path = self.pgdata.join(LISTD_CONF);
        fs::write(&path, conf).map_err(|source| ClusterError::File {
            action: "write",
            path: path.clone(),
            source,
        })?;
        self.give_to_postgres(&path)
    }

    async fn start_server(&self) -> Result<(), ClusterError> {
        let log = self.pgdata.join(SERVER_LOG);
        if fs::metadata(&log).is_ok_and(|m| m.len() > SERVER_LOG_ROTATE_BYTES) {
            let _ = fs::rename(&log, self.pgdata.join(format!("{SERVER_LOG}.old")));
        }
        let log_start = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        info!(pgdata = %self.pgdata.display(), "starting PostgreSQL");
        let started = Instant::now();
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t"])
            .arg(READY_TIMEOUT.as_secs().to_string())
            .arg("start");
        let output = run(cmd, "pg_ctl").await.map_err(ClusterError::Start)?;
        if !output.status.success() {
            let mut message = command_failure("pg_ctl start", &output);
            let tail = log_tail(&log, log_start);
            if !tail.is_empty() {
                message.push_str(&format!(
                    "; the server log {} ends with:\n{tail}",
                    log.display()
                ));
            }
            return Err(ClusterError::Start(message));
        }
        info!(
            pgdata = %self.pgdata.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "started PostgreSQL"
        );
        Ok(())
    }

    async fn stop_server(&self) -> Result<(), ClusterError> {
        // Nothing to stop when no server runs; a stale pid file is cleaned up at next start.
        if matches!(
            server_state(&self.pgdata)?,
            ServerState::Stopped | ServerState::Stale(_)
        ) {
            return Ok(());
        }
        info!(pgdata = %self.pgdata.display(), "stopping PostgreSQL");
        let started = Instant::now();
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w", "-t"])
            .arg(READY_TIMEOUT.as_secs().to_string())
            .arg("stop");
        let output = run(cmd, "pg_ctl").await.map_err(ClusterError::Stop)?;
        if !output.status.success() {
            // Already gone (e.g. stopped by hand) is what we wanted.
            if matches!(
                server_state(&self.pgdata)?,
                ServerState::Stopped | ServerState::Stale(_)
            ) {
                return Ok(());
            }
            return Err(ClusterError::Stop(command_failure("pg_ctl stop", &output)));
        }
        info!(
            pgdata = %self.pgdata.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "stopped PostgreSQL"
        );
        Ok(())
    }

    /// Wait (a bounded time) for processes of a crashed server still working in the data
    /// directory, since PostgreSQL refuses to start while they hold its shared memory.
    async fn wait_for_leftover_processes(&self) {
        let Ok(canonical) = fs::canonicalize(&self.pgdata) else {
            return;
        };
        let deadline = Instant::now() + LEFTOVER_TIMEOUT;
        loop {
            let leftovers = postgres_processes_in(&canonical);
            if leftovers.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                warn!(
                    pids = ?leftovers,
                    "processes of a crashed PostgreSQL server are still running"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A command for one of the server binaries, run as the `postgres` user when root.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.current_dir("/")
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        if let Some(user) = self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    /// Create a mode-700 directory owned by the server's user.
    fn make_private_dir(&self, dir: &Path) -> Result<(), ClusterError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|source| ClusterError::File {
                action: "create directory",
                path: dir.to_path_buf(),
                source,
            })?;
        self.give_to_postgres(dir)
    }

    /// When root, hand `path` to the `postgres` user.
    fn give_to_postgres(&self, path: &Path) -> Result<(), ClusterError> {
        if let Some(user) = self.run_as {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(|source| {
                ClusterError::File {
                    action: "give the postgres user",
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        }
        Ok(())
    }
}

/// The files that belong to one data directory.
struct Paths {
    pgdata: PathBuf,
    parent: PathBuf,
    init_lock: PathBuf,
    users_lock: PathBuf,
    initdb_tmp: PathBuf,
}

impl Paths {
    fn new(pgdata: &Path) -> Result<Paths, ClusterError> {
        let (Some(parent), Some(name)) = (pgdata.parent(), pgdata.file_name()) else {
            return Err(ClusterError::NotADataDirectory {
                dir: pgdata.to_path_buf(),
            });
        };
        let sibling = |suffix: &str| {
            let mut file = OsString::from(name);
            file.push(suffix);
            parent.join(file)
        };
        let mut tmp = OsString::from(".");
        tmp.push(name);
        tmp.push(".initdb");
        Ok(Paths {
            pgdata: pgdata.to_path_buf(),
            parent: parent.to_path_buf(),
            init_lock: sibling(".lock"),
            users_lock: sibling(".users"),
            initdb_tmp: parent.join(tmp),
        })
    }

    fn socket_file(&self) -> PathBuf {
        self.pgdata.join(format!(".s.PGSQL.{PORT}"))
    }
}

#[derive(Debug, Clone, Copy)]
enum LockKind {
    Shared,
    Exclusive,
}

/// Open (creating if needed) a lock file. A file made by another user (root) that we may not
/// write is opened read-only, which is enough for `flock`.
fn open_lock_file(path: &Path) -> Result<File, ClusterError> {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path);
    let opened = match opened {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => File::open(path),
        other => other,
    };
    opened.map_err(|source| ClusterError::File {
        action: "open lock file",
        path: path.to_path_buf(),
        source,
    })
}

/// Take an advisory lock, waiting for it in a blocking thread.
async fn lock_file(path: PathBuf, kind: LockKind) -> Result<File, ClusterError> {
    let file = open_lock_file(&path)?;
    tokio::task::spawn_blocking(move || {
        let locked = match kind {
            LockKind::Shared => file.lock_shared(),
            LockKind::Exclusive => file.lock(),
        };
        locked.map(|()| file).map_err(|source| ClusterError::File {
            action: "lock",
            path,
            source,
        })
    })
    .await
    .map_err(|e| ClusterError::Io(io::Error::other(e)))?
}

/// What `postmaster.pid` tells about the server.
#[derive(Debug, PartialEq, Eq)]
enum ServerState {
    /// No server.
    Stopped,
    /// A server of this data directory runs and accepts connections.
    Ready,
    /// A server of this data directory runs but is starting or stopping.
    Busy(String),
    /// `postmaster.pid` names a process that is gone or is not this directory's server.
    Stale(u32),
}

fn server_state(pgdata: &Path) -> Result<ServerState, ClusterError> {
    let pid_file = pgdata.join("postmaster.pid");
    let contents = match fs::read_to_string(&pid_file) {
        Ok(contents) => contents,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ServerState::Stopped),
        Err(source) => {
            return Err(ClusterError::File {
                action: "read",
                path: pid_file,
                source,
            });
        }
    };
    Ok(server_state_from(pgdata, &contents))
}

fn server_state_from(pgdata: &Path, contents: &str) -> ServerState {
    let mut lines = contents.lines();
    let Some(pid) = lines.next().and_then(|l| l.trim().parse::<u32>().ok()) else {
        return ServerState::Stale(0);
    };
    let Ok(canonical) = fs::canonicalize(pgdata) else {
        return ServerState::Stale(pid);
    };
    let ours = match inspect_process(pid, &canonical) {
        Process::Gone => false,
        Process::Inspected { ours } => ours,
        // A live process we may not inspect: only treat the pid file as stale when nothing
        // answers on the socket, rather than risk two servers on one data directory.
        Process::Opaque => {
            std::os::unix::net::UnixStream::connect(pgdata.join(format!(".s.PGSQL.{PORT}"))).is_ok()
        }
    };
    if !ours {
        return ServerState::Stale(pid);
    }
    // Line 8 is the postmaster status: "starting", "stopping", "ready" or "standby".
    match contents.lines().nth(7).map(str::trim) {
        Some("ready") | Some("standby") => ServerState::Ready,
        Some(status) => ServerState::Busy(status.to_string()),
        None => ServerState::Busy("starting".into()),
    }
}

/// What /proc tells about a process.
#[derive(Debug, PartialEq, Eq)]
enum Process {
    /// No such process, or a zombie.
    Gone,
    /// A live process we could look at: `ours` when it runs a PostgreSQL server binary with
    /// the data directory as its working directory (the postmaster and all its children do).
    Inspected { ours: bool },
    /// A live process whose binary and working directory we may not see.
    Opaque,
}

fn inspect_process(pid: u32, dir: &Path) -> Process {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = fs::read_to_string(proc.join("stat")) else {
        return Process::Gone;
    };
    // The state follows the parenthesised command name, which may itself hold ") ".
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, Some('Z' | 'X') | None) {
        return Process::Gone;
    }
    let exe = match fs::read_link(proc.join("exe")) {
        Ok(exe) => exe,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Process::Gone,
        Err(_) => return Process::Opaque,
    };
    let is_postgres = exe.file_name().is_some_and(|name| {
        let name = name.to_string_lossy();
        name.starts_with("postgres") || name.starts_with("postmaster")
    });
    if !is_postgres {
        return Process::Inspected { ours: false };
    }
    match fs::read_link(proc.join("cwd")) {
        Ok(cwd) => Process::Inspected { ours: cwd == dir },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Process::Gone,
        Err(_) => Process::Opaque,
    }
}

/// Pids of PostgreSQL processes working in `dir`.
fn postgres_processes_in(dir: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| inspect_process(pid, dir) == Process::Inspected { ours: true })
        .collect()
}

fn remove_if_exists(path: &Path) -> Result<(), ClusterError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ClusterError::File {
            action: "remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn dir_is_empty(dir: &Path) -> Result<bool, ClusterError> {
    let mut entries = fs::read_dir(dir).map_err(|source| ClusterError::File {
        action: "read directory",
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(entries.next().is_none())
}

/// Run a command to completion, capturing its output; the error is a sentence fragment.
async fn run(mut cmd: Command, name: &str) -> Result<std::process::Output, String> {
    cmd.output()
        .await
        .map_err(|e| format!("could not run {name}: {e}"))
}

/// What a failed command said, as one message: its exit code and its last lines of output.
fn command_failure(name: &str, output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let text: Vec<&str> = text
        .lines()
        .map(str::trim)
        // pg_ctl's pointer to the log, which we quote ourselves.
        .filter(|line| !line.is_empty() && *line != "Examine the log output.")
        .collect();
    let status = match output.status.code() {
        Some(code) => format!("{name} exited with code {code}"),
        None => format!("{name} was killed ({})", output.status),
    };
    if text.is_empty() {
        status
    } else {
        format!("{status}: {}", last_lines(&text.join("\n"), 20))
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last lines the server logged since byte `from` of its log.
fn log_tail(log: &Path, from: u64) -> String {
    const MAX: u64 = 16 * 1024;
    let Ok(mut file) = File::open(log) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = if len < from {
        0
    } else {
        from.max(len.saturating_sub(MAX))
    };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    last_lines(String::from_utf8_lossy(&bytes).trim(), 20)
}

fn running_as_root() -> Result<bool, ClusterError> {
    let meta = fs::metadata("/proc/self").map_err(|source| ClusterError::File {
        action: "inspect",
        path: PathBuf::from("/proc/self"),
        source,
    })?;
    Ok(meta.uid() == 0)
}

/// The uid and primary gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> Result<RunAs, ClusterError> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(|source| ClusterError::File {
        action: "read",
        path: PathBuf::from("/etc/passwd"),
        source,
    })?;
    parse_passwd_user(&passwd, "postgres").ok_or(ClusterError::NoPostgresUser)
}

fn parse_passwd_user(passwd: &str, user: &str) -> Option<RunAs> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != user {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(RunAs { uid, gid })
    })
}

/// As root: can the `postgres` user reach (search) `dir`, and so the data directory in it?
async fn check_reachable(dir: &Path, user: RunAs) -> Result<(), ClusterError> {
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"test -x "$1""#)
        .arg("listd-check")
        .arg(dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .uid(user.uid)
        .gid(user.gid)
        .status()
        .await
        .map_err(|source| ClusterError::File {
            action: "run",
            path: PathBuf::from("/bin/sh"),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(ClusterError::Unreachable {
            dir: dir.to_path_buf(),
        })
    }
}

/// Find the server binaries on this machine.
fn locate_bindir() -> Result<PathBuf, ClusterError> {
    let path_env = std::env::var_os("PATH");
    let pg_config = std::process::Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let versions: Vec<OsString> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.file_name())).collect())
        .unwrap_or_default();
    let candidates = versioned_candidates(Path::new("/usr/lib/postgresql"), &versions);
    find_bindir(
        path_env.as_deref(),
        pg_config.as_deref(),
        &candidates,
        has_server_binaries,
    )
}

/// `<root>/<version>/bin` for each version directory name, newest version first.
fn versioned_candidates(root: &Path, versions: &[OsString]) -> Vec<PathBuf> {
    let key = |v: &OsString| -> Vec<u64> {
        v.to_string_lossy()
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|part| part.parse().ok())
            .collect()
    };
    let mut sorted: Vec<&OsString> = versions.iter().collect();
    sorted.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| b.cmp(a)));
    sorted
        .into_iter()
        .map(|v| root.join(v).join("bin"))
        .collect()
}

/// The binary search, pure but for `is_bindir`: the first directory on `path_env` holding the
/// server binaries, else `pg_config --bindir`'s answer, else the first of `candidates`.
fn find_bindir(
    path_env: Option<&OsStr>,
    pg_config_bindir: Option<&Path>,
    candidates: &[PathBuf],
    is_bindir: impl Fn(&Path) -> bool,
) -> Result<PathBuf, ClusterError> {
    let on_path = path_env
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .filter(|dir| !dir.as_os_str().is_empty())
        .chain(pg_config_bindir.map(Path::to_path_buf))
        .chain(candidates.iter().cloned())
        .find(|dir| is_bindir(dir))
        .ok_or(ClusterError::NoBinaries)
}

/// Whether `dir` holds executable `initdb`, `pg_ctl` and `postgres`.
fn has_server_binaries(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    ["initdb", "pg_ctl", "postgres"].iter().all(|name| {
        fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Percent-encode everything but unreserved characters and `/` (for URL paths and values).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Quote an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dir(_: &Path) -> bool {
        false
    }

    #[test]
    fn nothing_found_is_no_binaries_naming_both_fixes() {
        let err = find_bindir(
            Some(OsStr::new("/usr/bin:/bin")),
            None,
            &[PathBuf::from("/usr/lib/postgresql/15/bin")],
            no_dir,
        )
        .unwrap_err();
        assert!(matches!(err, ClusterError::NoBinaries));
        let message = err.to_string();
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains("LISTD_DATABASE_URL"), "{message}");
        assert!(message.contains("DATABASE_URL"), "{message}");
        assert!(matches!(
            find_bindir(None, None, &[], no_dir),
            Err(ClusterError::NoBinaries)
        ));
    }

    #[test]
    fn path_wins_over_pg_config_which_wins_over_candidates() {
        let candidates = [PathBuf::from("/c/16/bin"), PathBuf::from("/c/15/bin")];
        let all = |_: &Path| true;
        let found = find_bindir(
            Some(OsStr::new("/p1:/p2")),
            Some(Path::new("/cfg")),
            &candidates,
            all,
        )
        .unwrap();
        assert_eq!(found, Path::new("/p1"));
        let only = |want: &'static str| move |d: &Path| d == Path::new(want);
        let path = Some(OsStr::new("/p1::/p2"));
        let cfg = Some(Path::new("/cfg"));
        assert_eq!(
            find_bindir(path, cfg, &candidates, only("/p2")).unwrap(),
            Path::new("/p2")
        );
        assert_eq!(
            find_bindir(path, cfg, &candidates, only("/cfg")).unwrap(),
            Path::new("/cfg")
        );
        let not_16 = |d: &Path| d != Path::new("/c/16/bin") && d.starts_with("/c");
        assert_eq!(
            find_bindir(path, cfg, &candidates, not_16).unwrap(),
            Path::new("/c/15/bin")
        );
    }

    #[test]
    fn candidates_are_newest_version_first() {
        let versions: Vec<OsString> = ["9.6", "15", "10", "16", "9.5"]
            .iter()
            .map(OsString::from)
            .collect();
        let got = versioned_candidates(Path::new("/usr/lib/postgresql"), &versions);
        let want: Vec<PathBuf> = ["16", "15", "10", "9.6", "9.5"]
            .iter()
            .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn processes_are_inspected_through_proc() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert_eq!(inspect_process(dead, Path::new("/")), Process::Gone);
        let cwd = fs::canonicalize(".").unwrap();
        assert_eq!(
            inspect_process(std::process::id(), &cwd),
            Process::Inspected { ours: false },
            "this test binary is not a PostgreSQL server"
        );
    }

    #[test]
    fn passwd_lookup() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(
            parse_passwd_user(passwd, "postgres"),
            Some(RunAs { uid: 101, gid: 104 })
        );
        assert_eq!(parse_passwd_user(passwd, "nobody"), None);
    }

    #[test]
    fn url_encodes_socket_dir_and_database() {
        assert_eq!(percent_encode("/tmp/a b+c"), "/tmp/a%20b%2Bc");
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
    }

    #[test]
    fn error_messages_are_one_sentence() {
        let unreachable = ClusterError::Unreachable {
            dir: PathBuf::from("/root/listd"),
        }
        .to_string();
        assert!(unreachable.contains("LISTD_DATA_DIR"), "{unreachable}");
        assert!(unreachable.contains("/root/listd"), "{unreachable}");
        assert!(
            !unreachable.replace("e.g. ", "").contains(". "),
            "{unreachable}"
        );
    }
}
