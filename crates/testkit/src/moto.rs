//! A real S3 server for tests (feature `object-store`): moto's server
//! (`moto[s3,server]` from PyPI, in the virtual environment
//! `tools/moto/.venv` made by `scripts/install-deps.sh`, or `$IBS_MOTO`),
//! on 127.0.0.1 and a free port; killed when dropped. It checks no
//! signatures: any key is accepted.

use std::io;
use std::process::Command;
use std::time::Duration;

use ibs_storage::ObjectPath;
use ibs_storage_object::{ObjectOptions, ObjectTarget};
use object_store::aws::AmazonS3Builder;

use crate::server::{Server, Spawn, find_binary, free_port};

/// A running moto S3 server.
#[derive(Debug)]
pub struct MotoS3 {
    server: Server,
}

impl MotoS3 {
    /// Starts moto's server and waits (at most 30 s) until it accepts connections.
    pub fn start() -> io::Result<Self> {
        let binary = find_binary("IBS_MOTO", "moto/.venv/bin/moto_server", "moto_server")?;
        let dir = tempfile::Builder::new().prefix("ibs-moto-").tempdir()?;
        let port = free_port()?;
        let mut command = Command::new(&binary);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let server = Server::spawn(Spawn::new(command, "moto_server", dir, port))?;
        Ok(MotoS3 { server })
    }

    /// The endpoint: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    /// What the server wrote to stdout and stderr.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// The environment variables that point `object_store` (and so `ibs`) at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "ibs-test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "ibs-test-secret".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    /// A client builder for this server.
    pub fn builder(&self) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_access_key_id("ibs-test")
            .with_secret_access_key("ibs-test-secret")
            .with_region("us-east-1")
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
    }

    /// A target on `bucket` (which must exist), objects under `prefix`.
    pub fn target(&self, bucket: &str, prefix: &str, options: ObjectOptions) -> ObjectTarget {
        ObjectTarget::s3(
            self.builder(),
            bucket,
            &ObjectPath::parse(prefix).expect("valid prefix"),
            options,
        )
        .expect("s3 client")
    }

    /// Creates a bucket (`PUT /<bucket>`; moto does not check signatures).
    pub async fn create_bucket(&self, name: &str) -> io::Result<()> {
        let response = crate::http_client()
            .put(format!("{}/{name}", self.endpoint()))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(io::Error::other)?;
        if !response.status().is_success() {
            return Err(io::Error::other(format!("create bucket {name}: {}", response.status())));
        }
        Ok(())
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        let _ = self.server.stop();
    }
}
