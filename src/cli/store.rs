//! Where the command line keeps its tokens: one JSON file, by default
//! `$XDG_CONFIG_HOME/gatehouse/tokens.json` (else `~/.config/gatehouse/tokens.json`), holding
//! one entry per gatehouse server.
//!
//! Only the user may read it: it is written with mode 0600 (its directory, when we create it,
//! 0700), and a file that anyone else could read is refused rather than used, since its tokens
//! may already have leaked and the user must know. Writes are atomic (a temporary file in the
//! same directory, then a rename), so a crash never leaves half a file. A read-modify-write
//! holds an advisory lock on the directory: two `gatehouse token` at once refresh once, and a
//! rotated refresh token is never lost to a concurrent writer.

use std::collections::BTreeMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::identity::Token;

/// No store of ours comes near this; anything larger is not one.
const MAX_STORE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{path} has mode {mode:04o}: it holds tokens, so it must be readable by you only \
         (chmod 600 {path}, then sign in again if others may have read it)"
    )]
    Loose { path: String, mode: u32 },
    #[error("cannot tell where to keep tokens: set XDG_CONFIG_HOME or HOME, or pass --store PATH")]
    NoLocation,
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a gatehouse token store ({why}); move it away and sign in again")]
    Unreadable { path: String, why: &'static str },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.display().to_string();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// The tokens of one sign-in to one gatehouse. `Debug` never shows a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The provider that issued the tokens and the client they were issued to: a refresh must
    /// go to them, whatever the server says today.
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub access_token: Token,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Token>,
    /// Unix seconds, when the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// The whole file: entries by server (see [`server_key`]).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tokens {
    #[serde(default)]
    servers: BTreeMap<String, Entry>,
}

impl Tokens {
    pub fn get(&self, server: &str) -> Option<&Entry> {
        self.servers.get(server)
    }

    pub fn insert(&mut self, server: &str, entry: Entry) {
        self.servers.insert(server.to_owned(), entry);
    }

    pub fn remove(&mut self, server: &str) -> Option<Entry> {
        self.servers.remove(server)
    }
}

/// The key of a server's entry: its URL without a trailing slash (`https://g.example/base`).
pub fn server_key(server: &url::Url) -> String {
    server.as_str().trim_end_matches('/').to_owned()
}

pub struct Store {
    path: PathBuf,
}

impl Store {
    /// `--store PATH`, else the XDG default. A relative XDG_CONFIG_HOME is ignored, as the
    /// XDG Base Directory specification says.
    pub fn locate(explicit: Option<PathBuf>) -> Result<Store, StoreError> {
        if let Some(path) = explicit {
            return Ok(Store { path });
        }
        let absolute = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let config = absolute("XDG_CONFIG_HOME")
            .or_else(|| absolute("HOME").map(|home| home.join(".config")))
            .ok_or(StoreError::NoLocation)?;
        Ok(Store {
            path: config.join("gatehouse").join("tokens.json"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Takes the store's lock (blocking until other gatehouse commands are done with it).
    /// `create`: make the directory (0700) when missing; without it, a missing directory means
    /// an empty store and nothing is locked.
    pub fn lock(&self, create: bool) -> Result<Locked<'_>, StoreError> {
        let dir = self.dir();
        if create {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io("create the directory", &dir))?;
        } else if !dir.exists() {
            return Ok(Locked {
                store: self,
                _lock: None,
            });
        }
        // Advisory, on the directory: the file itself is replaced by each write, so a lock on
        // it would guard an inode nobody reads any more.
        let handle = File::open(&dir).map_err(io("open the directory", &dir))?;
        handle.lock().map_err(io("lock the directory", &dir))?;
        Ok(Locked {
            store: self,
            _lock: Some(handle),
        })
    }
}

/// The store while we hold its lock (released on drop).
pub struct Locked<'a> {
    store: &'a Store,
    _lock: Option<File>,
}

impl Locked<'_> {
    /// The stored tokens; a missing file is an empty store. Refuses a file others may read.
    pub fn read(&self) -> Result<Tokens, StoreError> {
        let path = &self.store.path;
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tokens::default()),
            Err(e) => return Err(io("read", path)(e)),
        };
        let meta = file.metadata().map_err(io("read", path))?;
        let unreadable = |why| StoreError::Unreadable {
            path: path.display().to_string(),
            why,
        };
        if !meta.is_file() {
            return Err(unreadable("not a regular file"));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(StoreError::Loose {
                path: path.display().to_string(),
                mode,
            });
        }
        if meta.len() > MAX_STORE_BYTES {
            return Err(unreadable("too large"));
        }
        let mut text = String::new();
        file.take(MAX_STORE_BYTES)
            .read_to_string(&mut text)
            .map_err(io("read", path))?;
        serde_json::from_str(&text).map_err(|_| unreadable("not the JSON gatehouse writes"))
    }

    /// Replaces the file atomically; an empty store deletes it.
    pub fn write(&self, tokens: &Tokens) -> Result<(), StoreError> {
        let path = &self.store.path;
        if tokens.servers.is_empty() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("delete", path)(e)),
                _ => Ok(()),
            };
        }
        let body = serde_json::to_vec_pretty(tokens).map_err(|e| StoreError::Io {
            action: "encode the tokens for",
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        let dir = self.store.dir();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tokens.json".into());
        let temp = dir.join(format!(".{name}.{}.tmp", crate::random::token()));
        let written = write_new(&temp, &body).and_then(|()| std::fs::rename(&temp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io("write", path)(e));
        }
        // The rename is durable once the directory is on disk too.
        if let Ok(dir) = File::open(&dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// A new file (never an existing one, never through a symlink planted there) with mode 0600
/// from its creation on, flushed to disk.
fn write_new(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(body)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gatehouse-store-{}", crate::random::token()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn entry(access: &str) -> Entry {
        Entry {
            issuer: "https://idp.example".into(),
            client_id: "cli".into(),
            scopes: vec!["openid".into()],
            subject: "alice".into(),
            email: None,
            access_token: Token::new(access.into()),
            refresh_token: Some(Token::new("r-secret".into())),
            expires_at: Some(10),
        }
    }

    #[test]
    fn round_trip_with_owner_only_modes_and_nothing_left_behind() {
        let root = temp_dir();
        let store = Store::locate(Some(root.join("new/dir/tokens.json"))).expect("store");
        let locked = store.lock(true).expect("locked");
        let mut tokens = locked.read().expect("empty store");
        assert!(tokens.get("https://g.example").is_none());
        tokens.insert("https://g.example", entry("a-1"));
        locked.write(&tokens).expect("written");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(&root.join("new/dir")), 0o700);
        let again = locked.read().expect("read back");
        let got = again.get("https://g.example").expect("entry");
        assert_eq!(got.access_token.expose(), "a-1");
        assert!(
            !format!("{got:?}").contains("r-secret"),
            "Debug hides tokens"
        );
        let files: Vec<_> = std::fs::read_dir(root.join("new/dir"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(files, vec![std::ffi::OsString::from("tokens.json")]);

        let mut emptied = again;
        emptied.remove("https://g.example");
        locked.write(&emptied).expect("deleted");
        assert!(!store.path().exists());
        std::fs::remove_dir_all(root).expect("cleanup");
    }

    #[test]
    fn a_file_others_may_read_is_refused_naming_it_and_its_mode() {
        let root = temp_dir();
        let path = root.join("tokens.json");
        std::fs::write(&path, "{}").expect("written");
        for mode in [0o644, 0o640, 0o604, 0o660, 0o601] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let store = Store::locate(Some(path.clone())).expect("store");
            let err = store
                .lock(false)
                .and_then(|l| l.read())
                .expect_err("refused");
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let store = Store::locate(Some(path.clone())).expect("store");
        assert!(store.lock(false).and_then(|l| l.read()).is_ok());
        std::fs::write(&path, "not json").expect("written");
        assert!(matches!(
            store.lock(false).and_then(|l| l.read()),
            Err(StoreError::Unreadable { .. })
        ));
        std::fs::remove_dir_all(root).expect("cleanup");
    }

    #[test]
    fn a_missing_directory_is_an_empty_store_and_is_not_created_by_reading() {
        let root = temp_dir();
        let store = Store::locate(Some(root.join("absent/tokens.json"))).expect("store");
        let tokens = store.lock(false).and_then(|l| l.read()).expect("empty");
        assert!(tokens.get("x").is_none());
        assert!(!root.join("absent").exists());
        std::fs::remove_dir_all(root).expect("cleanup");
    }

    #[test]
    fn server_keys_ignore_a_trailing_slash() {
        let key = |u: &str| server_key(&url::Url::parse(u).expect("url"));
        assert_eq!(key("https://g.example"), key("https://g.example/"));
        assert_eq!(key("https://G.example:443/base/"), "https://g.example/base");
    }
}
