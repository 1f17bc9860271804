//! The error of building policy: a config problem at a key, or a metrics clash.

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    /// The registry already holds `edge_*` policy metrics (one runtime per registry).
    #[error("cannot register policy metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl RuntimeError {
    pub(crate) fn config(path: impl Into<String>, message: impl Into<String>) -> Self {
        RuntimeError::Config {
            path: path.into(),
            message: message.into(),
        }
    }
}
