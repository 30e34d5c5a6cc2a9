//! The files the SSH chat reads each time it needs them: the operators' keys (`--ssh-ops`) and
//! the message of the day (`--ssh-motd`). Edits to them take effect at once; a configuration
//! reload may also point the chat at other files, through this one shared place.

use std::path::PathBuf;
use std::sync::RwLock;

use crate::ops::Ops;
use crate::server::SshConfig;

/// Where the operators file and the message of the day are, now.
#[derive(Debug, Default)]
pub struct ChatFiles {
    paths: RwLock<Paths>,
}

#[derive(Debug, Default, Clone)]
struct Paths {
    ops: Option<PathBuf>,
    motd: Option<PathBuf>,
}

impl ChatFiles {
    /// The files `config` names.
    pub fn new(config: &SshConfig) -> Self {
        Self {
            paths: RwLock::new(Paths {
                ops: config.ops_file.clone(),
                motd: config.motd_file.clone(),
            }),
        }
    }

    /// Uses the files `config` names from now on.
    pub fn reload(&self, config: &SshConfig) {
        *self.paths.write().unwrap_or_else(|p| p.into_inner()) = Paths {
            ops: config.ops_file.clone(),
            motd: config.motd_file.clone(),
        };
    }

    fn paths(&self) -> Paths {
        self.paths.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The operators, as the operators file lists them now.
    pub fn ops(&self) -> Ops {
        Ops::new(self.paths().ops)
    }

    /// The message of the day's file, if there is one.
    pub fn motd(&self) -> Option<PathBuf> {
        self.paths().motd
    }
}
