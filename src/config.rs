//! Layered settings (docs/contract.md#running): defaults, then an optional TOML file,
//! then environment.
//!
//! Every key of the file is the environment variable's name without `LISTD_`, in
//! lower case (`relay_url = "smtp://…"`). Unknown keys in the file are an error. A bad
//! value stops the program with one sentence naming the key; secrets never appear in
//! messages or in `Debug` output.

use crate::domain::SecretKey;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where outgoing mail goes.
#[derive(Clone, PartialEq, Eq)]
pub enum RelayUrl {
    /// `smtp://host:port` (STARTTLS when offered) or `smtps://user:pass@host:465`.
    Smtp {
        host: String,
        port: u16,
        implicit_tls: bool,
        credentials: Option<(String, String)>,
    },
    /// `file:///dir`: one `.eml` file per message, for development.
    File(PathBuf),
}

impl std::fmt::Debug for RelayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayUrl::Smtp {
                host,
                port,
                implicit_tls,
                credentials,
            } => write!(
                f,
                "{}://{}{host}:{port}",
                if *implicit_tls { "smtps" } else { "smtp" },
                if credentials.is_some() { "…@" } else { "" }
            ),
            RelayUrl::File(p) => write!(f, "file://{}", p.display()),
        }
    }
}

/// A number of events per period, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone)]
pub struct Config {
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub smtp_addr: Option<SocketAddr>,
    pub lmtp_addr: Option<SocketAddr>,
    /// A listener for `/healthz`, `/readyz` and `/metrics` alone (for processes run
    /// without the HTTP front end).
    pub status_addr: Option<SocketAddr>,
    /// Base of every link in mail and pages, without a trailing slash.
    pub public_url: String,
    pub relay_url: RelayUrl,
    pub secret_key: Option<SecretKey>,
    pub hostname: String,
    pub max_message_bytes: u64,
    pub delivery_concurrency: usize,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub dns_server: Option<SocketAddr>,
    pub template_dir: Option<PathBuf>,
    /// `None` when per-IP limits are off.
    pub rate_per_ip: Option<Rate>,
    pub trusted_proxies: Vec<IpAddr>,
    /// How long a confirmation link stays valid.
    pub confirm_expiry: Duration,
    /// The tracing filter, when one was configured.
    pub log: Option<String>,
    pub log_format: LogFormat,
    /// Site admins (`LISTD_ADMINS`): told of mail that cannot be processed, and the
    /// recipients of `postmaster@` and `abuse@` at every list domain.
    pub admins: Vec<crate::domain::EmailAddress>,
    /// Concurrent SMTP sessions one client IP may hold (LMTP is exempt: its clients
    /// are the local MTA).
    pub smtp_max_per_ip: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &self.database_url.as_ref().map(|_| "…"))
            .field("data_dir", &self.data_dir)
            .field("http_addr", &self.http_addr)
            .field("smtp_addr", &self.smtp_addr)
            .field("lmtp_addr", &self.lmtp_addr)
            .field("status_addr", &self.status_addr)
            .field("public_url", &self.public_url)
            .field("relay_url", &self.relay_url)
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

/// Configuration that cannot be used; the message is one sentence naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid TOML: {message}")]
    NotToml { path: PathBuf, message: String },
    #[error("unknown key `{key}` in the configuration file {path}")]
    UnknownKey { key: String, path: PathBuf },
    #[error("`{key}` {problem}")]
    BadValue { key: String, problem: String },
}

/// The settings a user can give, by file key. The environment variable is
/// `LISTD_` followed by the key in upper case.
const KEYS: &[&str] = &[
    "database_url",
    "data_dir",
    "http_addr",
    "smtp_addr",
    "lmtp_addr",
    "status_addr",
    "public_url",
    "relay_url",
    "secret_key",
    "hostname",
    "max_message_bytes",
    "delivery_concurrency",
    "tls_cert",
    "tls_key",
    "dns_server",
    "template_dir",
    "rate_per_ip",
    "trusted_proxies",
    "confirm_expiry_hours",
    "log",
    "log_format",
    "admins",
    "smtp_max_per_ip",
];

impl Config {
    /// Loads the configuration from the process environment and the file it names.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::from_sources(file, &env)
    }

    /// Loads from an explicit environment (for tests and embedding).
    pub fn from_sources(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut raw: HashMap<&'static str, (String, String)> = HashMap::new();
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("LISTD_CONFIG").map(PathBuf::from));
        if let Some(path) = &file {
            for (key, value) in read_file(path)? {
                raw.insert(key, (format!("{key} in {}", path.display()), value));
            }
        }
        if let Some(url) = env.get("DATABASE_URL").filter(|v| !v.is_empty()) {
            raw.insert("database_url", ("DATABASE_URL".into(), url.clone()));
        }
        for key in KEYS {
            let var = format!("LISTD_{}", key.to_ascii_uppercase());
            if let Some(value) = env.get(&var) {
                raw.insert(key, (var, value.clone()));
            }
        }
        Self::from_raw(raw)
    }

    fn from_raw(raw: HashMap<&'static str, (String, String)>) -> Result<Config, ConfigError> {
        let raw = Raw(raw);
        let data_dir = raw
            .get("data_dir")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| PathBuf::from("./listd-data"));
        let data_dir = absolute(&data_dir);
        let database_url = raw.database_url()?;
        let Listeners {
            http_addr,
            smtp_addr,
            lmtp_addr,
            status_addr,
        } = raw.listeners()?;
        let public_url = raw.public_url(http_addr)?;
        let relay_url = match raw.get("relay_url") {
            Some((name, v)) => parse_relay_url(v).map_err(|p| bad(name, p))?,
            None => RelayUrl::File(data_dir.join("outbox")),
        };
        let secret_key = raw.optional("secret_key", SecretKey::from_base64)?;
        let hostname = raw.hostname(&public_url)?;
        let max_message_bytes = raw.number("max_message_bytes", 10_485_760, 1024)?;
        let delivery_concurrency = raw.number("delivery_concurrency", 16, 1)? as usize;
        let confirm_expiry = Duration::from_secs(raw.number("confirm_expiry_hours", 72, 1)? * 3600);
        let (tls_cert, tls_key) = raw.tls()?;
        let dns_server = raw.optional("dns_server", parse_socket_addr)?;
        let template_dir = raw.path("template_dir");
        let rate_per_ip = match raw.get("rate_per_ip") {
            None => Some(Rate {
                count: 30,
                per: Duration::from_secs(3600),
            }),
            Some((name, v)) => parse_rate(v).map_err(|p| bad(name, p))?,
        };
        let trusted_proxies = raw.trusted_proxies()?;
        let log = raw
            .get("log")
            .map(|(_, v)| v.to_string())
            .filter(|v| !v.is_empty());
        let log_format = raw.log_format()?;
        let admins = raw.admins()?;
        let smtp_max_per_ip = raw.number("smtp_max_per_ip", 20, 1)? as usize;

        Ok(Config {
            admins,
            smtp_max_per_ip,
            database_url,
            data_dir,
            http_addr,
            smtp_addr,
            lmtp_addr,
            status_addr,
            public_url,
            relay_url,
            secret_key,
            hostname,
            max_message_bytes,
            delivery_concurrency,
            tls_cert,
            tls_key,
            dns_server,
            template_dir,
            rate_per_ip,
            trusted_proxies,
            confirm_expiry,
            log,
            log_format,
        })
    }
}

struct Listeners {
    http_addr: SocketAddr,
    smtp_addr: Option<SocketAddr>,
    lmtp_addr: Option<SocketAddr>,
    status_addr: Option<SocketAddr>,
}

/// The given settings by key: the name they were given under (a file key or an
/// environment variable, for messages) and their text.
struct Raw(HashMap<&'static str, (String, String)>);

fn bad(name: &str, problem: String) -> ConfigError {
    ConfigError::BadValue {
        key: name.to_string(),
        problem,
    }
}

impl Raw {
    fn get(&self, key: &str) -> Option<(&str, &str)> {
        self.0.get(key).map(|(name, v)| (name.as_str(), v.trim()))
    }

    /// A setting that may be absent or empty, parsed when given.
    fn optional<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            Some((_, "")) | None => Ok(None),
            Some((name, v)) => parse(v).map(Some).map_err(|p| bad(name, p)),
        }
    }

    fn database_url(&self) -> Result<Option<String>, ConfigError> {
        self.optional("database_url", |v| {
            if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                Ok(v.to_string())
            } else {
                Err("must be a postgres:// URL".into())
            }
        })
    }

    /// A listening address, `off` (or empty) for none.
    fn addr(&self, key: &str, default: Option<&str>) -> Result<Option<SocketAddr>, ConfigError> {
        let (name, v) = match self.get(key) {
            Some(pair) => pair,
            None => match default {
                Some(d) => (key, d),
                None => return Ok(None),
            },
        };
        if v.eq_ignore_ascii_case("off") || v.is_empty() {
            return Ok(None);
        }
        parse_socket_addr(v).map(Some).map_err(|p| bad(name, p))
    }

    /// The HTTP, SMTP, LMTP and status listeners.
    fn listeners(&self) -> Result<Listeners, ConfigError> {
        let http_addr = self
            .addr("http_addr", Some("127.0.0.1:8080"))?
            .ok_or_else(|| {
                bad(
                    "LISTD_HTTP_ADDR",
                    "cannot be off: the HTTP listener is needed".into(),
                )
            })?;
        let smtp_addr = self.addr("smtp_addr", Some("127.0.0.1:2525"))?;
        let lmtp_addr = self.addr("lmtp_addr", None)?;
        let status_addr = self.addr("status_addr", None)?;
        if let Some(a) = lmtp_addr
            && a.port() == 25
        {
            return Err(bad(
                self.get("lmtp_addr").map(|(n, _)| n).unwrap_or("LISTD_LMTP_ADDR"),
                "must not use port 25: LMTP is for hand-over from a local MTA, not for the Internet".into(),
            ));
        }
        Ok(Listeners {
            http_addr,
            smtp_addr,
            lmtp_addr,
            status_addr,
        })
    }

    fn public_url(&self, http_addr: SocketAddr) -> Result<String, ConfigError> {
        Ok(match self.get("public_url") {
            Some((name, v)) => {
                let u = url::Url::parse(v).map_err(|e| bad(name, format!("is not a URL ({e})")))?;
                if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
                    return Err(bad(name, "must be an http:// or https:// URL".into()));
                }
                v.trim_end_matches('/').to_string()
            }
            // links must name a reachable host: 0.0.0.0 and :: are not
            None if http_addr.ip().is_unspecified() => {
                format!("http://127.0.0.1:{}", http_addr.port())
            }
            None => format!("http://{http_addr}"),
        })
    }

    fn hostname(&self, public_url: &str) -> Result<String, ConfigError> {
        Ok(match self.get("hostname") {
            Some((name, v)) => {
                if v.is_empty()
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                {
                    return Err(bad(
                        name,
                        "must be a host name such as lists.example.org".into(),
                    ));
                }
                v.to_ascii_lowercase()
            }
            None => default_hostname(public_url),
        })
    }

    fn number(&self, key: &str, default: u64, min: u64) -> Result<u64, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some((name, v)) => match v.replace('_', "").parse::<u64>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(bad(
                    name,
                    format!("must be a whole number of at least {min}, not `{v}`"),
                )),
            },
        }
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        self.get(key)
            .filter(|(_, v)| !v.is_empty())
            .map(|(_, v)| PathBuf::from(v))
    }

    /// The TLS certificate and key, given together or not at all.
    fn tls(&self) -> Result<(Option<PathBuf>, Option<PathBuf>), ConfigError> {
        let tls_cert = self.path("tls_cert");
        let tls_key = self.path("tls_key");
        if tls_cert.is_some() != tls_key.is_some() {
            return Err(bad(
                "LISTD_TLS_CERT",
                "and LISTD_TLS_KEY must be set together".into(),
            ));
        }
        Ok((tls_cert, tls_key))
    }

    fn trusted_proxies(&self) -> Result<Vec<IpAddr>, ConfigError> {
        match self.get("trusted_proxies") {
            None => Ok(Vec::new()),
            Some((name, v)) => v
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<IpAddr>()
                        .map_err(|_| bad(name, format!("`{s}` is not an IP address")))
                })
                .collect(),
        }
    }

    fn log_format(&self) -> Result<LogFormat, ConfigError> {
        match self.get("log_format") {
            None => Ok(LogFormat::Text),
            Some((_, v)) if v.eq_ignore_ascii_case("text") || v.is_empty() => Ok(LogFormat::Text),
            Some((_, v)) if v.eq_ignore_ascii_case("json") => Ok(LogFormat::Json),
            Some((name, v)) => Err(bad(name, format!("must be `text` or `json`, not `{v}`"))),
        }
    }

    fn admins(&self) -> Result<Vec<crate::domain::EmailAddress>, ConfigError> {
        match self.get("admins") {
            None => Ok(Vec::new()),
            Some((name, v)) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    crate::domain::EmailAddress::parse(s).map_err(|e| {
                        bad(name, format!("holds `{s}`, which is not an address ({e})"))
                    })
                })
                .collect(),
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::NotToml {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
    let mut out = Vec::new();
    for (key, value) in table {
        let normalized = key.to_ascii_lowercase().replace('-', "_");
        let Some(known) = KEYS.iter().find(|k| **k == normalized) else {
            return Err(ConfigError::UnknownKey {
                key,
                path: path.to_path_buf(),
            });
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => {
                return Err(ConfigError::BadValue {
                    key: format!("{key} in {}", path.display()),
                    problem: format!("must be a string or a number, not {}", other.type_str()),
                });
            }
        };
        out.push((*known, text));
    }
    Ok(out)
}

fn parse_socket_addr(v: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = v.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = v
        .rsplit_once(':')
        .ok_or_else(|| format!("`{v}` is not of the form host:port"))?;
    port.parse::<u16>()
        .map_err(|_| format!("`{v}` has no valid port number"))?;
    (host, port.parse::<u16>().unwrap_or(0))
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| format!("`{v}` is not an address this machine can resolve"))
}

fn parse_relay_url(v: &str) -> Result<RelayUrl, String> {
    let u = url::Url::parse(v).map_err(|e| format!("is not a URL ({e})"))?;
    match u.scheme() {
        "file" => {
            let p = u
                .to_file_path()
                .map_err(|_| "must be file:///absolute/dir".to_string())?;
            Ok(RelayUrl::File(p))
        }
        "smtp" | "smtps" => {
            let implicit_tls = u.scheme() == "smtps";
            let host = u
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or("has no host")?
                .to_string();
            let port = u.port().unwrap_or(if implicit_tls { 465 } else { 25 });
            let credentials = if u.username().is_empty() {
                None
            } else {
                let user = percent_decode(u.username());
                let pass = percent_decode(u.password().unwrap_or(""));
                Some((user, pass))
            };
            Ok(RelayUrl::Smtp {
                host: host.trim_matches(['[', ']']).to_string(),
                port,
                implicit_tls,
                credentials,
            })
        }
        other => Err(format!(
            "has scheme `{other}`; use smtp://, smtps:// or file://"
        )),
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn parse_rate(v: &str) -> Result<Option<Rate>, String> {
    if v == "0" || v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let (count, unit) = v
        .split_once('/')
        .ok_or_else(|| format!("`{v}` is not of the form N/hour"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("`{v}` does not start with a number"))?;
    let per = match unit.trim().to_ascii_lowercase().as_str() {
        "second" | "sec" | "s" => 1,
        "minute" | "min" | "m" => 60,
        "hour" | "h" => 3600,
        "day" | "d" => 86_400,
        other => {
            return Err(format!(
                "has unit `{other}`; use second, minute, hour or day"
            ));
        }
    };
    if count == 0 {
        return Ok(None);
    }
    Ok(Some(Rate {
        count,
        per: Duration::from_secs(per),
    }))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let joined = std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf());
    // tidy `./listd-data` into `listd-data`
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// The name listd greets with when `LISTD_HOSTNAME` is not set: a real domain, never a
/// bare short host name (spam filters penalise those). The host of `LISTD_PUBLIC_URL`
/// when it is a domain name, else the machine's fully qualified name (its host name if
/// that has a dot, or the first name with a dot given to it in /etc/hosts), else
/// `localhost`.
fn default_hostname(public_url: &str) -> String {
    let is_domain = |h: &str| {
        h.contains('.')
            && h.parse::<std::net::IpAddr>().is_err()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    };
    if let Some(host) = url::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .filter(|h| is_domain(h))
    {
        return host;
    }
    let short = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if is_domain(&short) {
        return short;
    }
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    fully_qualified(&short, &hosts)
        .filter(|h| is_domain(h))
        .unwrap_or_else(|| "localhost".into())
}

/// The first name with a dot on an /etc/hosts line that also names `short`.
fn fully_qualified(short: &str, hosts: &str) -> Option<String> {
    if short.is_empty() {
        return None;
    }
    hosts.lines().find_map(|line| {
        let names: Vec<&str> = line.split('#').next()?.split_whitespace().skip(1).collect();
        names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(short) || n.split('.').next() == Some(short))
            .then(|| {
                names
                    .iter()
                    .find(|n| n.contains('.'))
                    .map(|n| n.to_ascii_lowercase())
            })
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_host_name_is_a_domain() {
        assert_eq!(
            default_hostname("https://Lists.Example.org/x"),
            "lists.example.org"
        );
        let from_machine = default_hostname("http://127.0.0.1:8080");
        assert!(
            from_machine == "localhost" || from_machine.contains('.'),
            "{from_machine}"
        );
        let hosts = "127.0.0.1 localhost\n10.0.0.5 vm vm.corp.example.net # ours\n";
        assert_eq!(
            fully_qualified("vm", hosts).as_deref(),
            Some("vm.corp.example.net")
        );
        assert_eq!(fully_qualified("other", hosts), None);
        assert_eq!(fully_qualified("vm", "127.0.0.1 vm\n"), None);
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::from_sources(None, &env(&[])).unwrap();
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.smtp_addr.unwrap().to_string(), "127.0.0.1:2525");
        assert_eq!(c.lmtp_addr, None);
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert_eq!(c.relay_url, RelayUrl::File(c.data_dir.join("outbox")));
        assert!(c.data_dir.ends_with("listd-data"));
        assert_eq!(c.max_message_bytes, 10_485_760);
        assert_eq!(c.delivery_concurrency, 16);
        assert_eq!(
            c.rate_per_ip,
            Some(Rate {
                count: 30,
                per: Duration::from_secs(3600)
            })
        );
        assert_eq!(c.confirm_expiry, Duration::from_secs(72 * 3600));
    }

    #[test]
    fn environment_overrides_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("listd.toml");
        std::fs::write(
            &f,
            "http_addr = \"127.0.0.1:9000\"\nsmtp_addr = \"off\"\nmax_message_bytes = 2048\n",
        )
        .unwrap();
        let c =
            Config::from_sources(Some(&f), &env(&[("LISTD_HTTP_ADDR", "127.0.0.1:9001")])).unwrap();
        assert_eq!(c.http_addr.port(), 9001);
        assert_eq!(c.smtp_addr, None);
        assert_eq!(c.max_message_bytes, 2048);
        let via_env =
            Config::from_sources(None, &env(&[("LISTD_CONFIG", f.to_str().unwrap())])).unwrap();
        assert_eq!(via_env.http_addr.port(), 9000);
    }

    #[test]
    fn listd_database_url_wins_over_database_url() {
        let c = Config::from_sources(
            None,
            &env(&[
                ("DATABASE_URL", "postgres://a/b"),
                ("LISTD_DATABASE_URL", "postgres://c/d"),
            ]),
        )
        .unwrap();
        assert_eq!(c.database_url.as_deref(), Some("postgres://c/d"));
    }

    #[test]
    fn bad_configuration_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("listd.toml");
        std::fs::write(&f, "colour = \"red\"\n").unwrap();
        let e = Config::from_sources(Some(&f), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key `colour`"), "{e}");

        let e = Config::from_sources(None, &env(&[("LISTD_HTTP_ADDR", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("LISTD_HTTP_ADDR"), "{e}");
        let e = Config::from_sources(Some(&dir.path().join("missing.toml")), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
        let e = Config::from_sources(None, &env(&[("LISTD_LMTP_ADDR", "127.0.0.1:25")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("port 25"), "{e}");
        let e = Config::from_sources(None, &env(&[("LISTD_RELAY_URL", "http://x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("LISTD_RELAY_URL"), "{e}");
    }

    #[test]
    fn secrets_are_never_printed() {
        let key = SecretKey::generate_base64();
        let c = Config::from_sources(
            None,
            &env(&[
                ("LISTD_SECRET_KEY", &key),
                (
                    "LISTD_RELAY_URL",
                    "smtps://user:hunter2@relay.example.org:465",
                ),
                ("LISTD_DATABASE_URL", "postgres://u:pgpass@db/listd"),
            ]),
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("pgpass") && !shown.contains(&key),
            "{shown}"
        );
        assert_eq!(
            c.relay_url,
            RelayUrl::Smtp {
                host: "relay.example.org".into(),
                port: 465,
                implicit_tls: true,
                credentials: Some(("user".into(), "hunter2".into()))
            }
        );
        let e = Config::from_sources(None, &env(&[("LISTD_SECRET_KEY", "c2hvcnQ=")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("LISTD_SECRET_KEY") && !e.contains("c2hvcnQ"),
            "{e}"
        );
    }

    #[test]
    fn the_default_public_url_never_names_an_unspecified_address() {
        let c = Config::from_sources(None, &env(&[("LISTD_HTTP_ADDR", "0.0.0.0:9090")])).unwrap();
        assert_eq!(c.public_url, "http://127.0.0.1:9090");
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("0").unwrap(), None);
        assert_eq!(
            parse_rate("5/minute").unwrap(),
            Some(Rate {
                count: 5,
                per: Duration::from_secs(60)
            })
        );
        assert!(parse_rate("5 per hour").is_err());
    }
}
