//! The embedded key-value store: a redb database in the `store.data_source` directory.
//!
//! Each commit is durable before it returns (redb's default immediate durability, i.e. fsync), so
//! a registration acknowledged to a client survives `kill -9` and power loss, and a write cut
//! short leaves the previous committed state. The directory is created with mode 0700 and the
//! database file 0600, as the Go services do; redb locks the file, so two processes cannot share it.
//!
//! Keys live in named tables (rtcd: `clients`; the offloader adds `jobs`), so one daemon's records
//! cannot collide with another kind's, unlike the Go services' single flat bitcask namespace.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

const FILE_NAME: &str = "store.redb";

/// Errors, with the Go store's texts where the Go service shows them to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("error: empty key")]
    EmptyKey,
    #[error("error: not found")]
    NotFound,
    #[error("error: conflict")]
    Conflict,
    #[error("store error: {0}")]
    Backend(String),
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store in directory `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    StoreError::Backend(format!(
                        "cannot create store directory {}: {e}",
                        dir.display()
                    ))
                })?;
        }
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| {
                    StoreError::Backend(format!("cannot create {}: {e}", path.display()))
                })?;
        }
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        let db = Database::create(&path)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        Ok(Self { db, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn def(table: &str) -> TableDefinition<'_, &'static str, &'static str> {
        TableDefinition::new(table)
    }

    /// Inserts a new key; fails with [`StoreError::Conflict`] if it exists.
    pub fn put(&self, table: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(table, key, |t| {
            if t.get(key).map_err(backend)?.is_some() {
                return Err(StoreError::Conflict);
            }
            t.insert(key, value).map_err(backend)?;
            Ok(())
        })
    }

    /// Inserts or replaces.
    pub fn set(&self, table: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(table, key, |t| {
            t.insert(key, value).map(|_| ()).map_err(backend)
        })
    }

    pub fn delete(&self, table: &str, key: &str) -> Result<(), StoreError> {
        self.write(table, key, |t| match t.remove(key).map_err(backend)? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound),
        })
    }

    pub fn get(&self, table: &str, key: &str) -> Result<String, StoreError> {
        if key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        let tx = self.db.begin_read().map_err(backend)?;
        let t = match tx.open_table(Self::def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Err(StoreError::NotFound),
            Err(e) => return Err(backend(e)),
        };
        match t.get(key).map_err(backend)? {
            Some(v) => Ok(v.value().to_owned()),
            None => Err(StoreError::NotFound),
        }
    }

    /// Every `(key, value)` of a table, in key order.
    pub fn list(&self, table: &str) -> Result<Vec<(String, String)>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let t = match tx.open_table(Self::def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(backend(e)),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            out.push((k.value().to_owned(), v.value().to_owned()));
        }
        Ok(out)
    }

    fn write(
        &self,
        table: &str,
        key: &str,
        f: impl FnOnce(&mut redb::Table<&'static str, &'static str>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        let tx = self.db.begin_write().map_err(backend)?;
        {
            let mut t = tx.open_table(Self::def(table)).map_err(backend)?;
            f(&mut t)?; // on error the transaction is dropped, i.e. aborted
        }
        tx.commit().map_err(backend)
    }
}

/// Opens the `[store]` of a daemon at start-up (off the async threads), with the error naming the
/// setting to fix.
pub async fn open_configured(cfg: &crate::config::StoreConfig) -> Result<Store, String> {
    let dir = std::path::PathBuf::from(&cfg.data_source);
    let store = tokio::task::spawn_blocking(move || Store::open(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("failed to open store (store.data_source): {e}"))?;
    tracing::info!(data_source = %cfg.data_source, "initiated data store");
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_set_delete_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        assert_eq!(s.get("clients", "a"), Err(StoreError::NotFound));
        assert_eq!(s.put("clients", "", "x"), Err(StoreError::EmptyKey));
        s.put("clients", "a", "1").unwrap();
        assert_eq!(s.put("clients", "a", "2"), Err(StoreError::Conflict));
        assert_eq!(s.get("clients", "a").unwrap(), "1");
        assert_eq!(
            s.get("jobs", "a"),
            Err(StoreError::NotFound),
            "tables are separate namespaces"
        );
        s.set("clients", "a", "3").unwrap();
        assert_eq!(
            s.list("clients").unwrap(),
            vec![("a".to_string(), "3".to_string())]
        );
        s.delete("clients", "a").unwrap();
        assert_eq!(s.delete("clients", "a"), Err(StoreError::NotFound));
        assert_eq!(StoreError::NotFound.to_string(), "error: not found");
    }

    #[test]
    fn survives_reopen_with_private_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        {
            let s = Store::open(&db).unwrap();
            s.put("clients", "k", "v").unwrap();
        }
        let s = Store::open(&db).unwrap();
        assert_eq!(s.get("clients", "k").unwrap(), "v");
        assert_eq!(
            std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
