//! A real Azurite, Microsoft's Azure Storage emulator (feature
//! `object-store`): the blob service only, on 127.0.0.1, on a free port,
//! with telemetry off (`--disableTelemetry`: without it Azurite sends
//! telemetry to an outside host), in-memory persistence and its own
//! workspace folder; killed when dropped.
//!
//! The emulator comes from npm: `npm ci --prefix tools/azurite` (done by
//! `scripts/install-deps.sh`). [`Azurite::start`] looks for it in
//! `$IBS_AZURITE` (the path of `azurite-blob`), then in
//! `tools/azurite/node_modules/.bin/` of this workspace, then on `PATH`.

use std::io;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use ibs_storage::ObjectPath;
use ibs_storage_object::{ObjectOptions, ObjectTarget};
use object_store::azure::MicrosoftAzureBuilder;

use crate::server::{Server, Spawn, find_binary, free_port};

/// Azurite's well-known development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development account key (public, in Microsoft's docs).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How the emulator runs.
#[derive(Clone, Debug, Default)]
pub struct AzuriteOptions {
    /// `--extentMemoryLimit`: megabytes of blob data it holds before refusing writes.
    pub memory_limit_mb: Option<u64>,
}

/// A running Azurite blob service.
#[derive(Debug)]
pub struct Azurite {
    server: Server,
}

impl Azurite {
    /// Starts the emulator and waits (at most 30 s) until it accepts connections.
    pub fn start(options: AzuriteOptions) -> io::Result<Self> {
        let binary = find_binary("IBS_AZURITE", "azurite/node_modules/.bin/azurite-blob", "azurite-blob")?;
        let dir = tempfile::Builder::new().prefix("ibs-azurite-").tempdir()?;
        let port = free_port()?;
        let mut command = Command::new(&binary);
        command
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--disableTelemetry")
            .arg("--inMemoryPersistence")
            .arg("--skipApiVersionCheck");
        if let Some(mb) = options.memory_limit_mb {
            command.args(["--extentMemoryLimit", &mb.to_string()]);
        }
        let server = Server::spawn(Spawn::new(command, "azurite", dir, port))?;
        Ok(Azurite { server })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The account's blob endpoint, path style: `http://127.0.0.1:<port>/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.server.port())
    }

    /// What the emulator wrote to stdout and stderr.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// The environment variables that point `object_store` (and so `ibs`) at
    /// this emulator, as an Azure user would set them.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT.to_owned()),
            ("AZURE_STORAGE_ACCOUNT_KEY", ACCOUNT_KEY.to_owned()),
            ("AZURE_STORAGE_ENDPOINT", self.endpoint()),
            ("AZURE_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    /// A client builder for this emulator with `key` as the account key.
    pub fn builder_with_key(&self, key: &str) -> MicrosoftAzureBuilder {
        MicrosoftAzureBuilder::new()
            .with_account(ACCOUNT)
            .with_access_key(key)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
    }

    /// A target on `container` (which must exist), objects under `prefix`.
    pub fn target(&self, container: &str, prefix: &str, options: ObjectOptions) -> ObjectTarget {
        ObjectTarget::azure(
            self.builder_with_key(ACCOUNT_KEY),
            container,
            &ObjectPath::parse(prefix).expect("valid prefix"),
            options,
        )
        .expect("azurite client")
    }

    /// Creates a container (object stores leave that to the operator, and
    /// `object_store` has no call for it): one `PUT ?restype=container`,
    /// signed with the account key (Shared Key).
    pub async fn create_container(&self, name: &str) -> io::Result<()> {
        let date = http_date(SystemTime::now());
        let version = "2021-08-06";
        let string_to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(ACCOUNT_KEY)
            .map_err(io::Error::other)?;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(io::Error::other)?;
        mac.update(string_to_sign.as_bytes());
        let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let response = crate::http_client()
            .put(format!("{}/{name}?restype=container", self.endpoint()))
            .header("x-ms-date", date)
            .header("x-ms-version", version)
            .header("Content-Length", "0")
            .header("Authorization", format!("SharedKey {ACCOUNT}:{signature}"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(io::Error::other)?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(io::Error::other(format!("create container {name}: {status}: {body}")));
        }
        Ok(())
    }

    /// Stops the emulator without closing its socket (SIGSTOP): requests hang.
    pub fn freeze(&self) -> io::Result<()> {
        self.server.freeze()
    }

    /// Lets a frozen emulator run again (SIGCONT).
    pub fn thaw(&self) -> io::Result<()> {
        self.server.thaw()
    }

    /// Kills the emulator (its data goes with it).
    pub fn stop(&mut self) {
        let _ = self.server.stop();
    }
}

/// An RFC 1123 date (`Sun, 22 Nov 2026 07:00:24 GMT`).
fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(1_795_330_824)),
            "Sun, 22 Nov 2026 07:00:24 GMT"
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
    }
}
