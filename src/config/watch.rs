//! `--watch`: reload when the configuration file, or a file it names (certificates,
//! their keys, session ticket keys), changes on disk, so that a renewed certificate or a
//! rotated ticket key needs no SIGHUP.
//!
//! The files are polled: each is stamped by its size, modification time, inode and
//! device, which catches an edit in place and a file replaced by rename (how
//! cert-manager, certbot and `ln -sf` swap files; a symlink is followed). A change is acted on
//! once it has held still for one more poll, so a reload does not read a file half
//! written nor a certificate renewed before its key. After every reload, applied or
//! refused, the files it read become the new base: a refused file is not retried until
//! it changes again. The files the configuration last read names are watched too,
//! applied or refused: one refused for a certificate not yet written is tried again when
//! the certificate appears.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::Config;
use crate::l7::config::{L7Config, TlsSpec};

/// What a file looks like on disk; `None` in a [`FileWatch`] is a file that is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    device: u64,
}

impl Stamp {
    /// The file's stamp now (through symlinks), `None` if it cannot be read.
    pub fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            len: m.len(),
            modified: m.modified().ok(),
            inode: m.ino(),
            device: m.dev(),
        })
    }
}

/// `paths` for a log line: `a, b`.
pub fn list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// The stamps of a set of files, taken at one moment.
pub type Stamps = Vec<(PathBuf, Option<Stamp>)>;

/// Polls a set of files for changes.
#[derive(Debug)]
pub struct FileWatch {
    every: Duration,
    next_poll: Instant,
    /// Each file and its stamp as of the last reload.
    base: Stamps,
    /// The stamps of a change seen at the last poll, not yet acted on.
    settling: Option<Vec<Option<Stamp>>>,
}

impl FileWatch {
    /// Watches `paths` (stamped now) every `every`.
    pub fn new(paths: Vec<PathBuf>, every: Duration, now: Instant) -> FileWatch {
        FileWatch {
            every,
            next_poll: now + every,
            base: stamp(paths),
            settling: None,
        }
    }

    /// The files watched.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.base.iter().map(|(p, _)| p.as_path())
    }

    /// When the next poll is due.
    pub fn next_poll(&self) -> Instant {
        self.next_poll
    }

    /// Whether a reload is due at `now`: a file changed since the base, and has not
    /// changed since the previous poll. Returns the files that changed. Polls at most
    /// once an interval; earlier calls return nothing.
    pub fn poll(&mut self, now: Instant) -> Vec<PathBuf> {
        if now < self.next_poll {
            return Vec::new();
        }
        self.next_poll = now + self.every;
        let current: Vec<Option<Stamp>> = self.base.iter().map(|(p, _)| Stamp::of(p)).collect();
        if current.iter().zip(&self.base).all(|(c, (_, b))| c == b) {
            self.settling = None;
            return Vec::new();
        }
        if self.settling.as_ref() != Some(&current) {
            // changed since the last poll: wait for it to hold still
            self.settling = Some(current);
            return Vec::new();
        }
        self.settling = None;
        self.base
            .iter()
            .zip(&current)
            .filter(|((_, b), c)| b != *c)
            .map(|((p, _), _)| p.clone())
            .collect()
    }

    /// The watched files' stamps now: take them before a reload reads the files and pass
    /// them to [`rebase`](Self::rebase) after, so a change made while it ran is seen.
    pub fn stamps(&self) -> Stamps {
        stamp(self.base.iter().map(|(p, _)| p.clone()).collect())
    }

    /// After a reload (applied or refused): watch `paths` (the files the running
    /// configuration names), based on `before` where it stamped them, on their stamps
    /// now where not.
    pub fn rebase(&mut self, paths: Vec<PathBuf>, before: Stamps) {
        let before: HashMap<PathBuf, Option<Stamp>> = before.into_iter().collect();
        self.base = paths
            .into_iter()
            .map(|p| {
                let s = match before.get(&p) {
                    Some(s) => *s,
                    None => Stamp::of(&p),
                };
                (p, s)
            })
            .collect();
        self.settling = None;
    }
}

fn stamp(paths: Vec<PathBuf>) -> Stamps {
    paths
        .into_iter()
        .map(|p| {
            let s = Stamp::of(&p);
            (p, s)
        })
        .collect()
}

/// The configuration file `path` and the files its TLS sections read: certificates,
/// keys, ticket keys.
fn named_by<'a>(path: &Path, tls: impl Iterator<Item = &'a TlsSpec>) -> Vec<PathBuf> {
    let mut out = vec![path.to_path_buf()];
    for t in tls {
        for c in &t.certificates {
            out.push(c.cert.clone());
            out.push(c.key.clone());
        }
        out.extend(t.session_ticket_keys.iter().cloned());
    }
    dedup(out)
}

fn dedup(mut files: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    files.retain(|p| seen.insert(p.clone()));
    files
}

/// The configuration file `path` and every file `cfg` names.
pub fn watched_files(path: &Path, cfg: &Config) -> Vec<PathBuf> {
    named_by(
        path,
        cfg.services
            .iter()
            .filter_map(|s| s.l7.as_ref().and_then(|l| l.tls.as_ref())),
    )
}

/// What the watch follows after a reload: the files the `running` configuration names,
/// and those the configuration just `read` names (the same when it was applied; when it
/// was refused for a certificate not there yet, its appearing retries the reload without
/// an edit of the configuration).
pub fn after_reload(running: Vec<PathBuf>, read: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut all = running;
    all.extend(read);
    dedup(all)
}

/// The stand-alone L7 pool's file `path` and every file `cfg` names.
pub fn watched_l7_files(path: &Path, cfg: &L7Config) -> Vec<PathBuf> {
    named_by(path, cfg.services.iter().filter_map(|s| s.tls.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fulcrum-watch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Polls at the next due instant.
    fn tick(w: &mut FileWatch) -> Vec<PathBuf> {
        let at = w.next_poll();
        w.poll(at)
    }

    #[test]
    fn a_change_is_reported_once_it_holds_still_for_a_poll() {
        let d = dir("settle");
        let (a, b) = (d.join("a"), d.join("b"));
        std::fs::write(&a, "one").unwrap();
        std::fs::write(&b, "key").unwrap();
        let mut w = FileWatch::new(
            vec![a.clone(), b.clone()],
            Duration::from_secs(2),
            Instant::now(),
        );
        assert!(tick(&mut w).is_empty(), "nothing changed");
        assert!(
            w.poll(Instant::now()).is_empty(),
            "not due before the interval"
        );

        std::fs::write(&a, "two!").unwrap();
        assert!(tick(&mut w).is_empty(), "first seen: settling");
        std::fs::write(&a, "three").unwrap();
        assert!(tick(&mut w).is_empty(), "changed again: still settling");
        assert_eq!(tick(&mut w), vec![a.clone()], "held still for a poll");

        // the caller reloads and rebases: nothing is due until the files change again
        let before = w.stamps();
        w.rebase(vec![a.clone(), b.clone()], before);
        assert!(tick(&mut w).is_empty());
        assert!(tick(&mut w).is_empty(), "after the rebase nothing is due");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_replaced_by_rename_or_removed_is_a_change() {
        let d = dir("rename");
        let cert = d.join("cert.pem");
        std::fs::write(&cert, "AAAA").unwrap();
        let mut w = FileWatch::new(
            vec![cert.clone()],
            Duration::from_millis(10),
            Instant::now(),
        );
        // same size, and possibly the same mtime second: the new inode tells
        let tmp = d.join("cert.pem.tmp");
        std::fs::write(&tmp, "BBBB").unwrap();
        std::fs::rename(&tmp, &cert).unwrap();
        assert!(tick(&mut w).is_empty());
        assert_eq!(tick(&mut w), vec![cert.clone()]);
        w.rebase(vec![cert.clone()], w.stamps());

        std::fs::remove_file(&cert).unwrap();
        assert!(tick(&mut w).is_empty());
        assert_eq!(
            tick(&mut w),
            vec![cert.clone()],
            "a missing file is a change"
        );
        w.rebase(vec![cert.clone()], w.stamps());
        assert!(tick(&mut w).is_empty());
        assert!(tick(&mut w).is_empty(), "still missing: no change");

        std::fs::write(&cert, "CCCC").unwrap();
        assert!(tick(&mut w).is_empty());
        assert_eq!(tick(&mut w), vec![cert.clone()], "back again");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_change_made_while_a_reload_ran_is_seen_after_it() {
        let d = dir("race");
        let (cfg, new_cert) = (d.join("fulcrum.yaml"), d.join("new.pem"));
        std::fs::write(&cfg, "v1").unwrap();
        let mut w = FileWatch::new(vec![cfg.clone()], Duration::from_millis(10), Instant::now());
        std::fs::write(&cfg, "v2 (and a new certificate)").unwrap();
        std::fs::write(&new_cert, "cert").unwrap();
        assert!(tick(&mut w).is_empty());
        assert_eq!(tick(&mut w), vec![cfg.clone()]);
        // the reload: stamps first, then it reads the files; meanwhile the file changes
        let before = w.stamps();
        std::fs::write(&cfg, "v3, written during the reload").unwrap();
        w.rebase(vec![cfg.clone(), new_cert.clone()], before);
        assert_eq!(
            w.paths().count(),
            2,
            "the new configuration's files are watched"
        );
        assert!(tick(&mut w).is_empty());
        assert_eq!(tick(&mut w), vec![cfg.clone()], "v3 is not lost");
        w.rebase(vec![cfg.clone(), new_cert.clone()], w.stamps());
        std::fs::write(&new_cert, "renewed cert").unwrap();
        assert!(tick(&mut w).is_empty());
        assert_eq!(
            tick(&mut w),
            vec![new_cert.clone()],
            "a file added by the reload is watched"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
