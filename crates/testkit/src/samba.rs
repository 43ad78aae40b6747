//! A real Samba server (feature `samba`): `smbd` on loopback, on a free
//! port, with its own temporary configuration, state and share folder, as
//! the current user (tests run as root in CI). Nothing listens beyond `lo`
//! (`interfaces = lo`, `bind interfaces only`), NetBIOS is off, SMB 3 only,
//! and the server is killed when dropped.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ibs_storage_smb::{SmbConfig, SmbCredentials};

use crate::server::{Server, Spawn, free_port, run};

/// The account's password.
pub const PASSWORD: &str = "ibs-test-Passw0rd";

/// What the server offers.
#[derive(Clone, Debug)]
pub struct SambaOptions {
    /// `server smb encrypt`: `desired` (default), `off` or `required`.
    pub encrypt: &'static str,
    /// Put the share on a tmpfs of this many bytes (needs root), to fill it.
    pub tmpfs_bytes: Option<u64>,
    /// `sync always = yes` (every write synced before the reply).
    pub sync_always: bool,
    /// Share name.
    pub share: String,
}

impl Default for SambaOptions {
    fn default() -> Self {
        SambaOptions {
            encrypt: "desired",
            tmpfs_bytes: None,
            sync_always: false,
            share: "backup".into(),
        }
    }
}

/// A running `smbd`.
#[derive(Debug)]
pub struct SambaServer {
    server: Server,
    user: String,
    share: String,
    tmpfs: bool,
}

/// The `smb.conf` of a server rooted at `root` (which holds its state
/// folders and the share) listening on `port`.
fn smb_conf(root: &Path, port: u16, options: &SambaOptions) -> String {
    let r = root.display();
    format!(
        "[global]
  server role = standalone server
  interfaces = lo
  bind interfaces only = yes
  smb ports = {port}
  disable netbios = yes
  private dir = {r}/private
  lock directory = {r}/lock
  state directory = {r}/state
  cache directory = {r}/cache
  pid directory = {r}/pid
  ncalrpc dir = {r}/ncalrpc
  log file = {r}/log/%m.log
  log level = 1
  passdb backend = tdbsam:{r}/private/passdb.tdb
  server min protocol = SMB3
  server smb encrypt = {enc}
  map to guest = never
  load printers = no
  printcap name = /dev/null
  disable spoolss = yes
[{share}]
  path = {r}/share
  read only = no
  sync always = {sync}
",
        enc = options.encrypt,
        share = options.share,
        sync = if options.sync_always { "yes" } else { "no" },
    )
}

impl SambaServer {
    /// Starts a server and waits (at most 20 s) until it accepts connections.
    pub fn start(options: SambaOptions) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("ibs-samba-").tempdir()?;
        let root = dir.path();
        for d in ["private", "lock", "state", "cache", "pid", "ncalrpc", "log", "share"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        let mut tmpfs = false;
        if let Some(bytes) = options.tmpfs_bytes {
            run(
                Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                    .arg(root.join("share")),
                "mounting a tmpfs for the share (needs root)",
            )?;
            tmpfs = true;
        }
        // Unmounted on every path from here: a failed start drops the guard.
        let mut guard = Unmount(tmpfs.then(|| root.join("share")));
        let user = run(Command::new("id").arg("-un"), "id -un")?.trim().to_owned();
        let port = free_port()?;
        let conf_path = root.join("smb.conf");
        std::fs::write(&conf_path, smb_conf(root, port, &options))?;
        let mut pw = Command::new("smbpasswd")
            .arg("-c")
            .arg(&conf_path)
            .args(["-s", "-a", &user])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(stdin) = pw.stdin.as_mut() {
            use std::io::Write;
            writeln!(stdin, "{PASSWORD}\n{PASSWORD}")?;
        }
        let out = pw.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "smbpasswd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut command = Command::new("smbd");
        command
            .args(["--foreground", "--no-process-group", "--debug-stdout"])
            .arg(format!("--configfile={}", conf_path.display()));
        let server = Server::spawn(Spawn {
            log: "log/smbd.out".into(),
            ready_within: Duration::from_secs(20),
            process_group: true,
            ..Spawn::new(command, "smbd", dir, port)
        })?;
        guard.0 = None;
        Ok(SambaServer {
            server,
            user,
            share: options.share,
            tmpfs,
        })
    }

    /// The port it listens on (127.0.0.1 and ::1).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The folder the share serves.
    pub fn share_dir(&self) -> PathBuf {
        self.server.dir().join("share")
    }

    /// The account's credentials.
    pub fn credentials(&self) -> SmbCredentials {
        SmbCredentials::new("", self.user.clone(), PASSWORD)
    }

    /// A client configuration for the share (5 s bound per operation).
    pub fn config(&self) -> SmbConfig {
        SmbConfig::new("127.0.0.1", self.share.clone(), self.credentials())
            .port(self.port())
            .timeout(Duration::from_secs(5))
    }

    /// `smbstatus` output (sessions, with their encryption).
    pub fn smbstatus(&self) -> io::Result<String> {
        run(
            Command::new("smbstatus")
                .arg(format!("--configfile={}", self.server.dir().join("smb.conf").display()))
                .arg("-b"),
            "smbstatus",
        )
    }

    /// Freezes every smbd process (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) -> io::Result<()> {
        self.server.freeze()
    }

    /// Undoes [`SambaServer::freeze`].
    pub fn thaw(&self) -> io::Result<()> {
        self.server.thaw()
    }

    /// Stops the server (connections are refused afterwards).
    pub fn stop(&mut self) -> io::Result<()> {
        self.server.stop()
    }

    /// The temporary directory holding config, state, logs and share.
    pub fn dir(&self) -> &Path {
        self.server.dir()
    }
}

impl Drop for SambaServer {
    fn drop(&mut self) {
        let _ = self.server.stop();
        if self.tmpfs {
            let _ = Command::new("umount").arg(self.share_dir()).status();
        }
    }
}

/// Unmounts the share's tmpfs if a start fails after mounting it.
struct Unmount(Option<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = Command::new("umount").arg(path).status();
        }
    }
}
