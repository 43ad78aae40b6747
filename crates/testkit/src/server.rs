//! A server started as a child process for one test: on 127.0.0.1 and a
//! free port, in a temporary folder of its own that holds its output, and
//! killed when dropped. [`Server::spawn`] waits until the port accepts
//! connections, bounded in time, and fails early with the server's output if
//! it exits first. [`Server::freeze`] stops it without closing its sockets
//! (SIGSTOP: requests hang, as against a server that stopped answering),
//! [`Server::thaw`] lets it run again, [`Server::stop`] kills it.
//!
//! The Samba, Azurite and moto harnesses (`samba`,
//! `azurite`, `moto`) are this plus what each server needs
//! to be told.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago (the listener that
/// found it is closed before the server binds it).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `$var`, else `<workspace>/tools/<bundled>`, else `name` on `PATH`: where
/// the test servers installed by `scripts/install-deps.sh` are found.
pub fn find_binary(var: &str, bundled: &str, name: &str) -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Ok(PathBuf::from(path));
    }
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools").join(bundled);
    if bundled.exists() {
        return Ok(bundled);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if candidate.exists() {
                return Ok(candidate);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{name} not found: run `bash scripts/install-deps.sh` or set {var}"),
    ))
}

/// Runs `cmd` to completion; its stdout, or an error with all it printed.
pub fn run(cmd: &mut Command, what: &str) -> io::Result<String> {
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

/// How to start a [`Server`].
#[derive(Debug)]
pub struct Spawn {
    /// The command; its working folder, stdin and output are set by [`Server::spawn`].
    pub command: Command,
    /// The server's name, for errors.
    pub what: &'static str,
    /// Its folder (removed when the server is dropped).
    pub dir: tempfile::TempDir,
    /// The file under `dir` its stdout and stderr go to.
    pub log: PathBuf,
    /// The port it will listen on, on 127.0.0.1.
    pub port: u16,
    /// How long it may take to listen.
    pub ready_within: Duration,
    /// Whether it forks workers (smbd forks one per connection): then it is
    /// started in a process group of its own, and signals go to the group.
    pub process_group: bool,
}

impl Spawn {
    /// `command`, named `what`, in `dir`, to listen on `port` within 30 s;
    /// its output in `server.log`, no process group.
    pub fn new(command: Command, what: &'static str, dir: tempfile::TempDir, port: u16) -> Self {
        Spawn {
            command,
            what,
            dir,
            log: "server.log".into(),
            port,
            ready_within: Duration::from_secs(30),
            process_group: false,
        }
    }
}

/// A running server; killed when dropped.
#[derive(Debug)]
pub struct Server {
    dir: tempfile::TempDir,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
    process_group: bool,
}

impl Server {
    /// Starts the server and waits until its port accepts connections.
    pub fn spawn(spawn: Spawn) -> io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let Spawn {
            mut command,
            what,
            dir,
            log,
            port,
            ready_within,
            process_group,
        } = spawn;
        let log = dir.path().join(log);
        let out = std::fs::File::create(&log)?;
        command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if process_group {
            command.process_group(0);
        }
        let child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {what}: {e}")))?;
        let mut server = Server {
            dir,
            log,
            port,
            child: Some(child),
            process_group,
        };
        let deadline = Instant::now() + ready_within;
        loop {
            if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if let Some(child) = server.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "{what} exited with {status}: {}",
                    server.log()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{what} did not listen on {port} within {} s: {}",
                        ready_within.as_secs(),
                        server.log()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What it wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-KILL`) to the server, or to its
    /// process group.
    fn signal(&self, signal: &str) -> io::Result<()> {
        let pid = self
            .child
            .as_ref()
            .ok_or_else(|| io::Error::other("the server is not running"))?
            .id();
        let target = if self.process_group {
            format!("-{pid}")
        } else {
            pid.to_string()
        };
        run(Command::new("kill").args([signal, "--", &target]), "kill").map(drop)
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) -> io::Result<()> {
        self.signal("-STOP")
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) -> io::Result<()> {
        self.signal("-CONT")
    }

    /// Kills the server (woken first: a frozen process must run to die
    /// promptly); connections are refused afterwards. Stopping a stopped
    /// server does nothing.
    pub fn stop(&mut self) -> io::Result<()> {
        if self.child.is_none() {
            return Ok(());
        }
        let _ = self.signal("-CONT");
        if self.process_group {
            self.signal("-KILL")?;
        }
        if let Some(mut child) = self.child.take() {
            if !self.process_group {
                let _ = child.kill();
            }
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
