//! A configuration kept in a YAML or JSON file, read once or watched.
//!
//! A [`FileWatch`] polls the file's contents rather than using inotify: Kubernetes
//! updates a mounted ConfigMap by swapping a symlink, which inotify-based
//! watchers often miss, and a poll every second costs nothing worth counting.
//! A change applies once two polls in a row read the same text, so an editor
//! or a script caught mid-write never has half a file applied. It is parsed
//! and validated on Tokio's blocking pool, off the runtime's workers.

use std::path::{Path, PathBuf};

use super::{ConfigError, MeshConfig};

/// A configuration file: `.json` files are read as JSON, anything else as YAML.
///
/// ```no_run
/// use meshlib::config::FileSource;
///
/// let config = FileSource::new("mesh.yaml").load()?;
/// # Ok::<(), meshlib::config::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSource { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads, parses and validates the file; errors name the file.
    pub fn load(&self) -> Result<MeshConfig, ConfigError> {
        self.parse(&self.read_text()?)
    }

    /// Parses and validates `text` as this file's contents; errors name the file.
    /// An empty file (or one of white space only) is refused: a file is empty
    /// for a moment while an editor or a copy rewrites it, and applying it
    /// would fail every request.
    pub fn parse(&self, text: &str) -> Result<MeshConfig, ConfigError> {
        let origin = self.path.display().to_string();
        if text.trim().is_empty() {
            return Err(ConfigError::source(
                Some(&origin),
                "the file is empty: refused (a configuration with nothing in it would fail every request)"
                    .to_owned(),
            ));
        }
        if self.path.extension().is_some_and(|ext| ext == "json") {
            MeshConfig::parse_json(text, Some(&origin))
        } else {
            MeshConfig::parse_yaml(text, Some(&origin))
        }
    }

    fn io_error(&self, e: impl std::fmt::Display) -> ConfigError {
        ConfigError::source(
            Some(&self.path.display().to_string()),
            format!("cannot read: {e}"),
        )
    }

    /// A watch on this file that reports each new version of its text;
    /// `applied` is the text already in force, not reported again.
    pub fn watcher(self, applied: Option<String>) -> FileWatch {
        FileWatch {
            source: self,
            last: applied.map(Ok),
            candidate: None,
        }
    }

    /// Reads the file's text, for handing to [`FileSource::watcher`] as `applied`.
    pub fn read_text(&self) -> Result<String, ConfigError> {
        std::fs::read_to_string(&self.path).map_err(|e| self.io_error(e))
    }
}

/// Reports each new version of a file: see [`FileSource::watcher`].
#[derive(Debug)]
pub struct FileWatch {
    source: FileSource,
    /// What the last reported read gave: the text, or why it could not be read.
    last: Option<Result<String, String>>,
    /// A new read not yet reported: reported once a second read agrees, so a
    /// file caught half-written is never applied.
    candidate: Option<Result<String, String>>,
}

impl FileWatch {
    /// Reads the file once. A version that differs from the last reported
    /// one is reported when two consecutive reads agree on it: parsed and
    /// validated, or with the error it has. `None` when nothing (settled)
    /// changed. A broken file is reported once, not at every read.
    pub async fn changed(&mut self) -> Option<Result<MeshConfig, ConfigError>> {
        let read = tokio::fs::read_to_string(&self.source.path)
            .await
            .map_err(|e| e.to_string());
        if self.last.as_ref() == Some(&read) {
            self.candidate = None;
            return None;
        }
        if self.candidate.as_ref() != Some(&read) {
            self.candidate = Some(read);
            return None;
        }
        let result = match &read {
            Ok(text) => self.parse_off_runtime(text.clone()).await,
            Err(message) => Err(self.source.io_error(message)),
        };
        self.candidate = None;
        self.last = Some(read);
        Some(result)
    }

    /// Parses `text` on Tokio's blocking pool: a large or hostile file takes
    /// time to parse and validate, and must not hold up a runtime worker.
    async fn parse_off_runtime(&self, text: String) -> Result<MeshConfig, ConfigError> {
        let source = self.source.clone();
        tokio::task::spawn_blocking(move || source.parse(&text))
            .await
            .unwrap_or_else(|e| {
                Err(ConfigError::source(
                    Some(&self.source.path.display().to_string()),
                    format!("parsing the file failed: {e}"),
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_refused_not_applied_as_a_configuration_with_nothing() {
        let source = FileSource::new("mesh.yaml");
        for text in ["", "  \n\t\n"] {
            let error = source.parse(text).unwrap_err().to_string();
            assert!(
                error.contains("mesh.yaml") && error.contains("the file is empty"),
                "{error}"
            );
        }
        assert!(source.parse("clusters: []").is_ok());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_watched_file_is_parsed_off_the_runtime() {
        // A file that takes a while to parse and validate; the only runtime
        // thread must stay free meanwhile (it was blocked for as long).
        let clusters: Vec<String> = (0..5000)
            .map(|i| format!("  - {{ name: c{i}, endpoints: [{{ address: \"127.0.0.1:1\" }}] }}\n"))
            .collect();
        let path = std::env::temp_dir().join(format!("meshlib-parse-{}.yaml", std::process::id()));
        std::fs::write(&path, format!("clusters:\n{}", clusters.concat())).unwrap();
        let mut watch = FileSource::new(&path).watcher(None);
        assert!(watch.changed().await.is_none(), "one read is a candidate");
        let parse = tokio::spawn(async move {
            let start = std::time::Instant::now();
            let result = watch.changed().await;
            (result, start.elapsed())
        });
        let mut last = std::time::Instant::now();
        let mut longest_gap = std::time::Duration::ZERO;
        while !parse.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            longest_gap = longest_gap.max(last.elapsed());
            last = std::time::Instant::now();
        }
        let (result, took) = parse.await.unwrap();
        assert!(result.unwrap().is_ok());
        std::fs::remove_file(&path).unwrap();
        assert!(
            longest_gap < took / 2,
            "the runtime stalled {longest_gap:?} of a {took:?} parse"
        );
    }
}
