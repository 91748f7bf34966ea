//! Writing the rendered files: atomically (a temporary file in the same
//! directory, flushed, then renamed over the old one), into a directory
//! given for the purpose, and only the two files centralita owns. Asterisk
//! reading the file during a reload sees either the old or the new text,
//! never half of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// The files centralita owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFile {
    /// Agents: `#include`d from the site's `pjsip.conf`.
    Pjsip,
    /// Trunks: `#include`d from the site's `pjsip_wizard.conf`.
    Wizard,
}

impl ConfigFile {
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Pjsip => "centralita_pjsip.conf",
            Self::Wizard => "centralita_pjsip_wizard.conf",
        }
    }
}

/// The directory the two files live in (Asterisk's `/etc/asterisk`, or a
/// directory of their own that the includes name by absolute path).
#[derive(Debug, Clone)]
pub struct ConfigDir {
    dir: PathBuf,
}

impl ConfigDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self, f: ConfigFile) -> PathBuf {
        self.dir.join(f.file_name())
    }

    /// The current text of `f`, `None` when it does not exist yet.
    pub fn read(&self, f: ConfigFile) -> Result<Option<String>, ConfigError> {
        match fs::read_to_string(self.path(f)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces `f` with `text` atomically. Returns false (and writes
    /// nothing) when the file already holds exactly `text`, so that an
    /// unchanged configuration does not need a reload.
    pub fn write(&self, f: ConfigFile, text: &str) -> Result<bool, ConfigError> {
        if self.read(f)?.as_deref() == Some(text) {
            return Ok(false);
        }
        let target = self.path(f);
        let tmp = self
            .dir
            .join(format!(".{}.tmp-{}", f.file_name(), std::process::id()));
        let res = write_then_rename(&tmp, &target, text);
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map(|()| true)
    }
}

fn write_then_rename(tmp: &Path, target: &Path, text: &str) -> Result<(), ConfigError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The trunk file holds carrier passwords: owner and group (the
        // asterisk group) only.
        opts.mode(0o640);
    }
    let mut file = opts.open(tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, target)?;
    // The rename itself is durable once the directory is synced.
    if let Some(dir) = target.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
