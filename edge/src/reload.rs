//! Hot reload: parse -> validate -> build the new route table, chains and clusters ->
//! reload certificates -> swap, all or nothing. Triggered by SIGHUP, by a change to the
//! config file or certificate files, and by the admin endpoints.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

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
    if loaded.config.plugins != current.config().plugins {
        state
            .policy
            .reconfigure(&loaded.config.plugins)
            .await
            .map_err(|err| ConfigError {
                problems: vec![loaded.problem(&KeyPath::root().key("plugins"), err.to_string())],
            })?;
    }
    let version = current.version + 1;
    let (snapshot, fresh_clusters) =
        Snapshot::build(loaded, Some(&current), &state.policy, version)?;
    // Certificates named by the new config must load before anything is swapped.
    reload_certs_of(state, &snapshot).await?;
    state.start_health_checks(&fresh_clusters);
    state.swap(snapshot);
    Ok(ConfigReload::Applied { version })
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
    if now.listeners != next.listeners || now.admin != next.admin {
        tracing::warn!("listener changes take effect only after a restart or graceful upgrade");
    }
    if now.server != next.server || now.http3 != next.http3 || now.logging != next.logging {
        tracing::warn!("[server], [http3] and [logging] changes take effect only after a restart or graceful upgrade");
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
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = match notify::recommended_watcher(
        move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = events_tx.send(());
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
        let dirs: BTreeSet<PathBuf> = watched_files(&state)
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

        if events_rx.recv().await.is_none() {
            return;
        }
        // Debounce: a rotation writes several files; act once they have all landed.
        loop {
            match tokio::time::timeout(Duration::from_millis(250), events_rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        let _ = reload_config(&state).await;
    }
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
