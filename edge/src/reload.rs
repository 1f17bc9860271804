//! Hot reload: parse -> validate -> build the new route table, chains and clusters ->
//! reload certificates -> swap, all or nothing. Triggered by SIGHUP, by a change to the
//! config file or certificate files, and by the admin endpoints.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::certs::PreparedCerts;
use crate::config::locate::KeyPath;
use crate::config::{load_file, ConfigError};
use crate::state::{EdgeState, Snapshot};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigReload {
    Applied { version: u64 },
    Unchanged,
}

/// Reloads the config file (and the certificates it names). A rejected file changes
/// nothing: the old config keeps serving and the problems are logged and counted.
pub async fn reload_config(state: &Arc<EdgeState>) -> Result<ConfigReload, ConfigError> {
    let _serialised = state.reload_lock.lock().await;
    let result = reload_locked(state).await;
    let label = match &result {
        Ok(ConfigReload::Applied { .. }) => "applied",
        Ok(ConfigReload::Unchanged) => "unchanged",
        Err(_) => "rejected",
    };
    state
        .metrics
        .config_reloads
        .with_label_values(&[label])
        .inc();
    match &result {
        Ok(ConfigReload::Applied { version }) => tracing::info!(version, "config reloaded"),
        Ok(ConfigReload::Unchanged) => tracing::debug!("config unchanged"),
        Err(err) => {
            for problem in &err.problems {
                tracing::error!(%problem, "config reload rejected; the previous config keeps serving");
            }
        }
    }
    result
}

async fn reload_locked(state: &Arc<EdgeState>) -> Result<ConfigReload, ConfigError> {
    let current = state.snapshot();
    let Some(path) = state.config_path.clone() else {
        // The embedded default cannot change; certificates still can.
        reload_certs_of(state, &current).await?;
        return Ok(ConfigReload::Unchanged);
    };
    let loaded = tokio::task::spawn_blocking(move || load_file(&path))
        .await
        .map_err(|e| internal(&current, format!("config loader failed: {e}")))??;
    if loaded.source_text == current.loaded.source_text {
        reload_certs_of(state, &current).await?;
        return Ok(ConfigReload::Unchanged);
    }
    warn_about_restart_only_changes(&current, &loaded.config);
    // Build and validate EVERYTHING first — policy resources, routes and their chains,
    // clusters, certificates — without touching what serves; then commit in one go. A
    // rejected reload therefore changes nothing (not even the JWT issuer or Redis URL).
    let policy_set = if loaded.config.plugins == current.config().plugins {
        current.policy.clone()
    } else {
        state
            .policy
            .prepare(&loaded.config.plugins)
            .await
            .map_err(|err| ConfigError {
                problems: vec![loaded.problem(&KeyPath::root().key("plugins"), err.to_string())],
            })?
    };
    let version = current.version + 1;
    let (snapshot, fresh_clusters) = Snapshot::build(
        loaded,
        Some(&current),
        &state.policy,
        policy_set.clone(),
        version,
    )?;
    let certs = prepare_certs_of(state, &snapshot).await?;
    // Commit: certificates (their own store, read by the TLS callbacks), the policy set
    // (health, admin), then the one snapshot every request reads.
    if let Some(certs) = certs {
        state.certs.install(certs);
    }
    state.policy.commit(&policy_set);
    state.start_health_checks(&fresh_clusters);
    state.swap(snapshot);
    Ok(ConfigReload::Applied { version })
}

async fn prepare_certs_of(
    state: &EdgeState,
    snapshot: &Snapshot,
) -> Result<Option<PreparedCerts>, ConfigError> {
    state
        .certs
        .prepare(&snapshot.config().tls)
        .await
        .map_err(|err| ConfigError {
            problems: vec![snapshot
                .loaded
                .problem(&KeyPath::root().key("tls"), err.to_string())],
        })
}

async fn reload_certs_of(state: &EdgeState, snapshot: &Snapshot) -> Result<(), ConfigError> {
    match state.certs.reload(&snapshot.config().tls).await {
        Ok(_) => Ok(()),
        Err(err) => {
            let key = KeyPath::root().key("tls");
            Err(ConfigError {
                problems: vec![snapshot.loaded.problem(&key, err.to_string())],
            })
        }
    }
}

fn internal(snapshot: &Snapshot, message: String) -> ConfigError {
    ConfigError {
        problems: vec![snapshot.loaded.problem(&KeyPath::root(), message)],
    }
}

/// Listener addresses, threads and timeouts of the process are fixed at start.
fn warn_about_restart_only_changes(current: &Snapshot, next: &crate::config::EdgeConfig) {
    let now = current.config();
    if now.listeners != next.listeners
        || now.admin.address != next.admin.address
        || now.limits.handshake_timeout != next.limits.handshake_timeout
    {
        tracing::warn!("listener changes take effect only after a restart or graceful upgrade");
    }
    if now.server != next.server
        || now.http3 != next.http3
        || now.logging != next.logging
        || now.cache != next.cache
    {
        tracing::warn!("[server], [http3], [logging] and [cache] changes take effect only after a restart or graceful upgrade");
    }
}

/// Files whose change should trigger a reload: the config file and every certificate.
fn watched_files(state: &EdgeState) -> BTreeSet<PathBuf> {
    let snapshot = state.snapshot();
    let mut files = BTreeSet::new();
    if let Some(path) = &state.config_path {
        files.insert(path.clone());
    }
    let tls = &snapshot.config().tls;
    if let Some(default) = &tls.default {
        files.insert(default.cert.clone());
        files.insert(default.key.clone());
    }
    for entry in &tls.certs {
        files.insert(entry.cert.clone());
        files.insert(entry.key.clone());
    }
    files
}

/// Watches the directories of the config and certificate files. Directories, not files:
/// editors and `certs-tool` replace files by rename, and the kubelet swaps a `..data`
/// symlink, none of which a watch on the old inode would see.
pub async fn watch_files(state: Arc<EdgeState>) {
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel::<notify::Event>();
    let mut watcher = match notify::recommended_watcher(
        move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                let _ = events_tx.send(event);
            }
        },
    ) {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::error!(%err, "cannot watch files; reload with SIGHUP or the admin endpoint");
            return;
        }
    };
    let mut watched_dirs: BTreeSet<PathBuf> = BTreeSet::new();
    loop {
        let files = watched_files(&state);
        let dirs: BTreeSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for dir in dirs.difference(&watched_dirs) {
            if let Err(err) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(%err, dir = %dir.display(), "cannot watch directory");
            }
        }
        for dir in watched_dirs.difference(&dirs) {
            let _ = watcher.unwatch(dir);
        }
        watched_dirs = dirs;

        // Wait for a change to one of our files (reads, lock files and unrelated files in
        // the same directory are ignored).
        loop {
            match events_rx.recv().await {
                Some(event) if is_relevant(&event, &files) => break,
                Some(_) => continue,
                None => return,
            }
        }
        // Debounce: a rotation writes several files; act once they have landed, but never
        // postpone a reload by more than a second however busy the directory is.
        let settle = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(settle);
        loop {
            tokio::select! {
                _ = &mut settle => break,
                next = tokio::time::timeout(Duration::from_millis(200), events_rx.recv()) => match next {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                },
            }
        }
        let _ = reload_config(&state).await;
    }
}

/// A write, create, rename or removal of a watched file, or of the kubelet's `..data`
/// symlink and timestamped directories (ConfigMap and Secret volumes).
fn is_relevant(event: &notify::Event, files: &BTreeSet<PathBuf>) -> bool {
    use notify::EventKind;
    if !matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
    ) || matches!(
        event.kind,
        EventKind::Modify(notify::event::ModifyKind::Metadata(_))
    ) {
        return false;
    }
    event.paths.iter().any(|path| {
        files.contains(path)
            || path.file_name().is_some_and(|name| {
                let name = name.to_string_lossy();
                name.starts_with("..")
                    || files
                        .iter()
                        .any(|f| f.file_name().is_some_and(|n| n.to_string_lossy() == name))
            })
    })
}

/// Reloads on every SIGHUP.
pub async fn reload_on_sighup(state: Arc<EdgeState>) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::error!(%err, "cannot listen for SIGHUP");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading config and certificates");
        let _ = reload_config(&state).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, DataChange, ModifyKind, RenameMode};
    use notify::{Event, EventKind};

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn only_changes_to_watched_files_and_kubelet_swaps_trigger_a_reload() {
        let files: BTreeSet<PathBuf> = ["/etc/edge/tls/tls.crt", "/etc/edge/edge.toml"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Content));
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert!(is_relevant(&event(write, "/etc/edge/tls/tls.crt"), &files));
        assert!(is_relevant(&event(rename, "/etc/edge/tls/..data"), &files));
        assert!(is_relevant(
            &event(EventKind::Create(CreateKind::File), "/etc/edge/edge.toml"),
            &files
        ));
        // Clients reading the CA bundle, lock files, editor swap files: no reload.
        assert!(!is_relevant(
            &event(EventKind::Access(AccessKind::Read), "/etc/edge/tls/tls.crt"),
            &files
        ));
        assert!(!is_relevant(
            &event(write, "/etc/edge/tls/.certs-tool.lock"),
            &files
        ));
        assert!(!is_relevant(
            &event(write, "/etc/edge/.edge.toml.swp"),
            &files
        ));
    }
}
