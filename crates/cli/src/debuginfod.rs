//! A small debuginfod client: `GET $URL/buildid/HEX/debuginfo` for each
//! server in `DEBUGINFOD_URLS`, kept in the standard client cache
//! (`$DEBUGINFOD_CACHE_PATH`, else `$XDG_CACHE_HOME/debuginfod_client`, else
//! `~/.cache/debuginfod_client`, as elfutils' client does) under
//! `HEX/debuginfo`, so gdb, elfutils and pyattach share downloads.
//!
//! It is plugged into `symbols` as its fetcher hook: the symbol chain asks
//! for a build id only when every local source has failed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Default deadline for one download (elfutils uses `DEBUGINFOD_TIMEOUT`
/// too, but as a stall timeout; ours bounds the whole transfer).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Refuse absurd downloads (`DEBUGINFOD_MAXSIZE` overrides).
const DEFAULT_MAX_SIZE: u64 = 2 << 30;

#[derive(Clone, Debug)]
pub struct Client {
    urls: Vec<String>,
    cache: PathBuf,
    timeout: Duration,
    max_size: u64,
    /// What happened, for `pyattach info`: one line per attempt.
    log: Arc<Mutex<Vec<String>>>,
}

/// The client cache directory, by elfutils' rules.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("DEBUGINFOD_CACHE_PATH")
        .or_else(|| var("XDG_CACHE_HOME").map(|x| x.join("debuginfod_client")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/debuginfod_client")))
}

impl Client {
    /// A client for the servers of `DEBUGINFOD_URLS`, or `None` if none is
    /// set (debuginfod is opt-in, like everywhere else).
    pub fn from_env() -> Option<Client> {
        let urls: Vec<String> = std::env::var("DEBUGINFOD_URLS")
            .ok()?
            .split_whitespace()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        if urls.is_empty() {
            return None;
        }
        let secs = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Some(Client {
            urls,
            cache: cache_dir()?,
            timeout: secs("DEBUGINFOD_TIMEOUT")
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_TIMEOUT),
            max_size: secs("DEBUGINFOD_MAXSIZE")
                .filter(|s| *s > 0)
                .unwrap_or(DEFAULT_MAX_SIZE),
            log: Arc::default(),
        })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The attempts made so far, for display.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn note(&self, line: String) {
        if let Ok(mut l) = self.log.lock() {
            l.push(line);
        }
    }

    /// The debug file for `build_id`: from the cache, else downloaded.
    pub fn fetch_debuginfo(&self, build_id: &[u8]) -> Option<PathBuf> {
        let hex = symbols::hex(build_id);
        if hex.is_empty() {
            return None;
        }
        let dir = self.cache.join(&hex);
        let dest = dir.join("debuginfo");
        if std::fs::metadata(&dest).is_ok_and(|m| m.len() > 0) {
            self.note(format!("{hex}: cached at {}", dest.display()));
            return Some(dest);
        }
        for url in &self.urls {
            let full = format!("{url}/buildid/{hex}/debuginfo");
            match self.download(&full, &dir, &dest) {
                Ok(()) => {
                    self.note(format!("{hex}: fetched from {url}"));
                    return Some(dest);
                }
                Err(e) => self.note(format!("{hex}: {url}: {e}")),
            }
        }
        None
    }

    fn download(&self, url: &str, dir: &Path, dest: &Path) -> Result<(), String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build()
            .into();
        let mut resp = agent.get(url).call().map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir).map_err(|e| format!("cache {}: {e}", dir.display()))?;
        // Write beside the destination and rename: a reader never sees half
        // a file, and an interrupted download leaves no cache entry.
        let tmp = dir.join(format!(".debuginfo.{}.tmp", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
            let mut body = resp.body_mut().with_config().limit(self.max_size).reader();
            std::io::copy(&mut body, &mut f).map_err(|e| e.to_string())?;
            f.flush().map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, dest).map_err(|e| e.to_string())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// This client as the fetcher hook of `symbols`.
    pub fn fetcher(self) -> symbols::DebugFetcher {
        Arc::new(move |id: &[u8]| self.fetch_debuginfo(id))
    }
}
