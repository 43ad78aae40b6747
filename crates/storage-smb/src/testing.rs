//! A real Samba server for tests (feature `testing`): started on loopback, on a
//! free port, with its own temporary configuration, state and share folder,
//! as the current user (tests run as root in CI). Nothing listens beyond
//! `lo`, NetBIOS is off, and the server is killed when dropped.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{SmbConfig, SmbCredentials};

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
pub struct SambaServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    user: String,
    password: String,
    share: String,
    tmpfs: bool,
}

impl std::fmt::Debug for SambaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SambaServer(127.0.0.1:{})", self.port)
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(cmd: &mut Command, what: &str) -> io::Result<String> {
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
        let user = run(Command::new("id").arg("-un"), "id -un")?.trim().to_owned();
        let password = "ibs-test-Passw0rd".to_owned();
        let port = free_port()?;
        let r = root.display();
        let conf = format!(
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
        );
        let conf_path = root.join("smb.conf");
        std::fs::write(&conf_path, conf)?;
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
            writeln!(stdin, "{password}\n{password}")?;
        }
        let out = pw.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "smbpasswd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut server = SambaServer {
            port,
            child: None,
            user,
            password,
            share: options.share,
            tmpfs,
            dir,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> io::Result<()> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.path().join("log/smbd.out"))?;
        let child = Command::new("smbd")
            .args(["--foreground", "--no-process-group", "--debug-stdout"])
            .arg(format!("--configfile={}", self.dir.path().join("smb.conf").display()))
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(io::Error::other(format!(
            "smbd did not listen on port {} within 20 s",
            self.port
        )))
    }

    /// The port it listens on (127.0.0.1 and ::1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder the share serves.
    pub fn share_dir(&self) -> PathBuf {
        self.dir.path().join("share")
    }

    /// The account's credentials.
    pub fn credentials(&self) -> SmbCredentials {
        SmbCredentials::new("", self.user.clone(), self.password.clone())
    }

    /// A client configuration for the share (5 s bound per operation).
    pub fn config(&self) -> SmbConfig {
        SmbConfig::new("127.0.0.1", self.share.clone(), self.credentials())
            .port(self.port)
            .timeout(Duration::from_secs(5))
    }

    /// `smbstatus` output (sessions, with their encryption).
    pub fn smbstatus(&self) -> io::Result<String> {
        run(
            Command::new("smbstatus")
                .arg(format!("--configfile={}", self.dir.path().join("smb.conf").display()))
                .arg("-b"),
            "smbstatus",
        )
    }

    fn signal(&self, sig: &str) -> io::Result<()> {
        if let Some(child) = &self.child {
            // The whole process group: smbd forks a child per connection.
            run(
                Command::new("kill").args([sig, "--", &format!("-{}", child.id())]),
                "kill",
            )?;
        }
        Ok(())
    }

    /// Freezes every smbd process (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) -> io::Result<()> {
        self.signal("-STOP")
    }

    /// Undoes [`SambaServer::freeze`].
    pub fn thaw(&self) -> io::Result<()> {
        self.signal("-CONT")
    }

    /// Stops the server (connections are refused afterwards).
    pub fn stop(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            let _ = self.signal("-CONT");
            self.signal("-KILL")?;
        }
        if let Some(mut child) = self.child.take() {
            child.wait()?;
        }
        Ok(())
    }

    /// The temporary directory holding config, state, logs and share.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SambaServer {
    fn drop(&mut self) {
        let _ = self.stop();
        if self.tmpfs {
            let _ = Command::new("umount").arg(self.share_dir()).status();
        }
    }
}
