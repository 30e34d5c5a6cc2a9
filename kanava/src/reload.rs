//! Applying a new configuration to a running server (`systemctl reload kanava`, SIGHUP): what
//! can change live is applied — the certificate and key files, the operators file and the
//! message of the day, the per-user rates — and everything else that differs is named as
//! waiting for a restart. A configuration that does not check out is refused whole and the
//! running one kept.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kanava_hub::UserLimits;
use kanava_ssh::ChatFiles;

use crate::Settings;
use crate::tls::{CertificateFiles, TlsSource};

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// What was applied, in words (e.g. "certificate /etc/kanava/cert.pem (SHA-256 …)").
    pub applied: Vec<String>,
    /// Settings that differ but take effect only at the next start, by field path
    /// (e.g. `mles_listen`, `history.max_entries`).
    pub needs_restart: Vec<String>,
}

/// The parts of a running server that a reload may change, and the settings it runs with.
pub(crate) struct Reloadable {
    pub(crate) running: Mutex<Settings>,
    pub(crate) certificate: Option<CertificateFiles>,
    pub(crate) ssh_files: Arc<ChatFiles>,
    pub(crate) user_limits: Arc<UserLimits>,
}

impl Reloadable {
    /// Checks `new` and applies what can change live; on an error nothing is applied.
    pub(crate) fn apply(&self, mut new: Settings) -> anyhow::Result<ReloadReport> {
        new.check()?;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if !new.max_frame_given {
            // A defaulted frame limit may have been shrunk to the cluster's at start.
            new.mles.max_frame = running.mles.max_frame;
        }
        let mut report = ReloadReport::default();
        // Everything fallible first, so that a failure leaves the server as it was.
        let certificate = match (&new.tls, &self.certificate) {
            (TlsSource::Files { cert, key }, Some(files)) => Some((files, cert, key)),
            _ => None,
        };
        if let Some((files, cert, key)) = certificate {
            report.applied.push(files.reload(cert, key)?);
        }
        if new.ssh.ops_file != running.ssh.ops_file || new.ssh.motd_file != running.ssh.motd_file {
            report.applied.push(format!(
                "operators file {}, message of the day {}",
                shown(&new.ssh.ops_file),
                shown(&new.ssh.motd_file)
            ));
        }
        self.ssh_files.reload(&new.ssh);
        if new.user_rates != running.user_rates {
            self.user_limits.set_rates(new.user_rates);
            report.applied.push(format!(
                "user rates: {} rooms an hour, {} announcements a minute",
                new.user_rates.rooms_per_hour, new.user_rates.announcements_per_minute
            ));
        }
        // The rest is compared with the live parts taken as applied.
        let mut compared = new.clone();
        if certificate.is_some() {
            compared.tls = running.tls.clone();
        }
        compared.ssh.ops_file = running.ssh.ops_file.clone();
        compared.ssh.motd_file = running.ssh.motd_file.clone();
        compared.user_rates = running.user_rates;
        report.needs_restart = changed_fields(&running, &compared);
        // What a later reload compares with: what runs now, with the live changes.
        running.tls = if certificate.is_some() {
            new.tls
        } else {
            running.tls.clone()
        };
        running.ssh.ops_file = new.ssh.ops_file;
        running.ssh.motd_file = new.ssh.motd_file;
        running.user_rates = new.user_rates;
        Ok(report)
    }
}

fn shown(path: &Option<std::path::PathBuf>) -> String {
    path.as_ref()
        .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string())
}

/// The fields (and, inside a struct field, the sub-fields) whose values differ between `old`
/// and `new`. Read from the settings' `Debug` form, so that every field is compared, including
/// those added after this was written, without a hand-kept list that could miss one.
fn changed_fields(old: &Settings, new: &Settings) -> Vec<String> {
    let (old, new) = (fields(&format!("{old:#?}")), fields(&format!("{new:#?}")));
    let mut changed: Vec<String> = old
        .iter()
        .filter(|(path, value)| new.get(*path) != Some(value))
        .map(|(path, _)| path.clone())
        .collect();
    changed.extend(new.keys().filter(|p| !old.contains_key(*p)).cloned());
    // A struct whose sub-fields are listed is not listed itself.
    let parents: Vec<String> = changed
        .iter()
        .filter_map(|p| p.split_once('.').map(|(parent, _)| parent.to_owned()))
        .collect();
    changed.retain(|p| !parents.contains(p));
    changed.sort();
    changed.dedup();
    changed
}

/// The values of a pretty `Debug` struct by field path: `field` for each top-level field and
/// `field.sub` for the fields of a struct-valued one, each with the text of its value.
fn fields(debug: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let mut top: Option<String> = None;
    let mut sub: Option<String> = None;
    for line in debug.lines() {
        let indent = line.len() - line.trim_start().len();
        let name = line
            .trim_start()
            .split_once(": ")
            .map(|(name, _)| name)
            .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        match (indent, name) {
            (4, Some(name)) => {
                top = Some(name.to_owned());
                sub = None;
            }
            (8, Some(name)) if top.is_some() => {
                sub = top.as_ref().map(|t| format!("{t}.{name}"));
            }
            _ => {}
        }
        for path in [top.clone(), sub.clone()].into_iter().flatten() {
            if indent >= 4 {
                let value: &mut String = values.entry(path).or_default();
                value.push_str(line.trim());
                value.push('\n');
            }
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_fields_are_named_by_path() {
        // Their fields are read only through `Debug`, as the settings' are.
        #[allow(dead_code)]
        #[derive(Debug, Clone)]
        struct Inner {
            a: u32,
            b: Vec<u32>,
        }
        #[allow(dead_code)]
        #[derive(Debug, Clone)]
        struct Outer {
            x: u32,
            inner: Inner,
            list: Vec<u32>,
        }
        let old = Outer {
            x: 1,
            inner: Inner { a: 1, b: vec![1] },
            list: vec![1, 2],
        };
        let mut new = old.clone();
        new.inner.b.push(2);
        new.list.push(3);
        let (old, new) = (fields(&format!("{old:#?}")), fields(&format!("{new:#?}")));
        let differ: Vec<&String> = old
            .iter()
            .filter(|(p, v)| new.get(*p) != Some(v))
            .map(|(p, _)| p)
            .collect();
        assert_eq!(differ, ["inner", "inner.b", "list"]);
    }
}
