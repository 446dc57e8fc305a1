//! Running the `listd` binary.

use std::path::PathBuf;

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
