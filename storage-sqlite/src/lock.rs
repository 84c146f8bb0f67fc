//! One process per database file: an exclusive advisory lock on
//! `<file>.lock`, taken at open and held until shutdown. The outbox relay
//! and the single-writer assumptions hold only for one process; a second
//! one must fail at start-up, naming the file and who holds it, instead of
//! relaying the same messages twice.
//!
//! The lock is the operating system's (`flock` on Unix, `LockFileEx` on
//! Windows, through [`std::fs::File::try_lock`]): it goes away with the
//! process that holds it, so a killed service leaves no stale lock behind.
//! The holder writes its process id into the file for the message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::SqliteError;

/// The lock of one database file; released when dropped (or at shutdown).
#[derive(Debug)]
pub(crate) struct FileLock {
    file: File,
}

/// `<database>.lock`.
pub(crate) fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl FileLock {
    /// Takes the lock of `database` or fails at once with
    /// [`SqliteError::Locked`] (naming the holder's process id when it
    /// wrote one) or [`SqliteError::LockFile`].
    pub(crate) fn acquire(database: &Path) -> Result<FileLock, SqliteError> {
        let path = lock_path(database);
        let lock_file = |source| SqliteError::LockFile {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(lock_file)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(SqliteError::Locked {
                    database: database.display().to_string(),
                    holder: if holder.is_empty() {
                        "another process".to_owned()
                    } else {
                        format!("process {holder}")
                    },
                    lock: path.display().to_string(),
                });
            }
            Err(TryLockError::Error(source)) => return Err(lock_file(source)),
        }
        // Ours now: say who holds it.
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()))
            .and_then(|()| file.flush())
            .map_err(lock_file)?;
        Ok(FileLock { file })
    }

    /// Releases the lock (a later open of the file, in this process or
    /// another, takes it).
    pub(crate) fn release(&self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_naming_file_and_holder_until_released() {
        let db = std::env::temp_dir().join(format!("lock-test-{}.sqlite", uuid::Uuid::new_v4()));
        let first = FileLock::acquire(&db).unwrap();
        // flock locks belong to an open file: a second open conflicts even
        // in the same process.
        let err = FileLock::acquire(&db).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "the SQLite database {} is in use by process {} (lock file {}): one process per \
                 database file; stop the other one or set another storage.sqlite.path",
                db.display(),
                std::process::id(),
                lock_path(&db).display()
            )
        );
        first.release();
        let again = FileLock::acquire(&db).unwrap();
        drop(again);
        FileLock::acquire(&db).unwrap();
        let _ = std::fs::remove_file(lock_path(&db));
    }
}
