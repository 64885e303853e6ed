//! Large trees, made once per run and shared between tests.
//!
//! A tree lives in `CARGO_TARGET_TMPDIR/shared/` (the same filesystem as
//! every test's [`super::Dir`], so a test can rename it into its root and
//! back). It is made under an exclusive `flock` and marked done by a file
//! beside it; a test holds the lock for as long as it uses the tree, so
//! test binaries running at once take turns. A tree left half made (a
//! killed run) is made again.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// A shared tree, locked for this test until dropped.
pub struct Shared {
    pub path: PathBuf,
    _lock: File,
}

/// `dirs` directories of `per_dir` empty files each (`d0000/f0000`...):
/// `dirs * (per_dir + 1) + 1` entries with the top directory.
pub fn flood(dirs: usize, per_dir: usize) -> Shared {
    let shared = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shared");
    std::fs::create_dir_all(&shared).expect("create the shared tree directory");
    let name = format!("flood-{dirs}x{per_dir}");
    let path = shared.join(&name);
    let done = shared.join(format!("{name}.done"));
    let lock = File::create(shared.join(format!("{name}.lock"))).expect("create the lock file");
    rustix::fs::flock(lock.as_fd(), rustix::fs::FlockOperation::LockExclusive)
        .expect("lock the shared tree");
    if !(done.exists() && path.is_dir()) {
        let started = std::time::Instant::now();
        let _ = std::fs::remove_file(&done);
        if path.exists() {
            std::fs::remove_dir_all(&path).expect("remove a half-made tree");
        }
        make(&path, dirs, per_dir);
        File::create(&done).expect("mark the tree done");
        eprintln!(
            "made {} ({} entries) in {:.1?}",
            path.display(),
            dirs * (per_dir + 1) + 1,
            started.elapsed()
        );
    }
    Shared { path, _lock: lock }
}

fn make(path: &Path, dirs: usize, per_dir: usize) {
    std::fs::create_dir(path).expect("create the tree");
    let workers = 4;
    std::thread::scope(|s| {
        for w in 0..workers {
            s.spawn(move || {
                for d in (w..dirs).step_by(workers) {
                    let dir = path.join(format!("d{d:04}"));
                    std::fs::create_dir(&dir).expect("create a directory of the tree");
                    for i in 0..per_dir {
                        File::create(dir.join(format!("f{i:04}"))).expect("create a file");
                    }
                }
            });
        }
    });
}
