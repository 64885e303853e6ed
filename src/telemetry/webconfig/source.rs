//! The web config as it is on disk now: every file a load read (the config
//! itself, the certificate, key and CA) is remembered with its identity and
//! modification stamp; [`WebConfigSource::current`] stats them at most once
//! per interval and reloads when any changed, so certificates rotate without
//! a restart. A reload that fails keeps the last good config and logs why:
//! a typo must not take the port down.

use super::{load_files, WebConfig, WebConfigError, BCRYPT_SLOTS};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// What identifies one version of a file: a replaced file (new inode, as
/// an atomic rename or a Kubernetes secret update makes) or one rewritten
/// in place (size, or mtime to the nanosecond) both differ, and so does a
/// chmod or chown (a key refused for its mode is retried once fixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    mode: u32,
    uid: u32,
}

impl Stamp {
    /// The stamp of `path`, following symlinks (a secret volume swaps a
    /// symlink); `None` if it cannot be stat'ed.
    fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            mode: m.mode(),
            uid: m.uid(),
        })
    }
}

/// The files one load read, each stamped just before it was read (so a
/// change during the read shows at the next check), missing ones too.
#[derive(Debug)]
pub(super) struct Files {
    /// Relative names in the config are resolved against its directory.
    dir: PathBuf,
    seen: Vec<(PathBuf, Option<Stamp>)>,
    /// The config file's mode and owner, as read ([`Files::read_config`]).
    config: Option<(PathBuf, u32, u32)>,
}

impl Files {
    pub(super) fn new(config: &Path) -> Files {
        Files {
            dir: config.parent().map(Path::to_path_buf).unwrap_or_default(),
            seen: Vec::new(),
            config: None,
        }
    }

    /// Read the config file itself, remembering the mode and owner of the
    /// file read (the opened one), for [`Files::config_as_secret`].
    pub(super) fn read_config(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        self.seen.push((path.to_path_buf(), Stamp::of(path)));
        let mut f = std::fs::File::open(path)?;
        let md = f.metadata()?;
        self.config = Some((path.to_path_buf(), md.mode(), md.uid()));
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Why the config file, holding an inline private key, is no safe
    /// place for one (the rule of [`crate::fsutil::read_secret`]).
    pub(super) fn config_as_secret(&self) -> Option<String> {
        let (path, mode, uid) = self.config.as_ref()?;
        let me = rustix::process::geteuid().as_raw();
        let problem = crate::fsutil::secret_problem(*mode, *uid, me)?;
        Some(format!(
            "the web config {} holds a private key and {problem}",
            path.display()
        ))
    }

    /// Read a secret (a private key): refused unless only its owner and
    /// group could read it ([`crate::fsutil::read_secret`]).
    pub(super) fn read_secret(
        &mut self,
        path: &Path,
        what: &str,
    ) -> Result<Vec<u8>, crate::fsutil::SecretError> {
        self.seen.push((path.to_path_buf(), Stamp::of(path)));
        crate::fsutil::read_secret(path, what)
    }

    /// `name` as written in the config, resolved against its directory.
    pub(super) fn resolve(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Read a file, remembering its stamp.
    pub(super) fn read(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.seen.push((path.to_path_buf(), Stamp::of(path)));
        std::fs::read(path)
    }

    /// Whether any file read differs from when it was read.
    fn changed(&self) -> bool {
        self.seen.iter().any(|(p, s)| Stamp::of(p) != *s)
    }
}

/// The web config as it is on disk now (see the module doc).
pub struct WebConfigSource {
    path: PathBuf,
    /// The bcrypt slots, shared by every config loaded, so a reload does not
    /// hand out fresh slots.
    pub(super) slots: Arc<Semaphore>,
    /// The least time between two checks of the files.
    pub(super) every: Duration,
    state: Mutex<State>,
    /// Reloads that failed (the last good config stayed), for a metric.
    failures: AtomicU64,
}

struct State {
    config: Arc<WebConfig>,
    files: Files,
    checked: Instant,
}

impl WebConfigSource {
    /// Load the web config at `path`; this first load must succeed.
    pub fn open(path: &Path) -> Result<WebConfigSource, WebConfigError> {
        WebConfigSource::open_every(path, Duration::from_secs(1))
    }

    /// [`WebConfigSource::open`], checking the files at most once per `every`.
    pub(super) fn open_every(
        path: &Path,
        every: Duration,
    ) -> Result<WebConfigSource, WebConfigError> {
        let slots = Arc::new(Semaphore::new(BCRYPT_SLOTS));
        let (config, files) = load_files(path, &slots);
        Ok(WebConfigSource {
            path: path.to_path_buf(),
            slots,
            every,
            state: Mutex::new(State {
                config: Arc::new(config?),
                files,
                checked: Instant::now(),
            }),
            failures: AtomicU64::new(0),
        })
    }

    /// The config file's path, as given to [`WebConfigSource::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many reloads failed so far (each kept the last good config and
    /// logged why); a broken file is tried again only when one of its files
    /// changes again, so this counts broken versions, not seconds.
    pub fn reload_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The current config: cheap (an `Arc` clone); at most once per second
    /// it stats the files and reloads on a change.
    pub fn current(&self) -> Arc<WebConfig> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now.duration_since(s.checked) < self.every {
            return s.config.clone();
        }
        s.checked = now;
        if !s.files.changed() {
            return s.config.clone();
        }
        let (loaded, files) = load_files(&self.path, &self.slots);
        // The files of this attempt, failed or not: a broken config is
        // retried when one of them changes again, not every second.
        s.files = files;
        match loaded {
            Ok(config) => {
                tracing::info!(
                    path = %self.path.display(),
                    config = %config.describe(),
                    "web config reloaded"
                );
                s.config = Arc::new(config);
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("{e}\n(keeping the last good web config)");
            }
        }
        s.config.clone()
    }
}
