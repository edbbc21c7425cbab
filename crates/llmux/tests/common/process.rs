//! llmux as a real process (the built binary), for what needs signals or several replicas.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::Llmux;

/// An llmux process on a free loopback port, killed when dropped.
pub struct Process {
    pub child: Child,
    pub port: u16,
}

impl Process {
    pub fn start(config: &Path, extra: &[&str]) -> Process {
        Process::start_env(config, extra, &[])
    }

    /// [`Process::start`] with extra environment variables.
    pub fn start_env(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Process {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_llmux"))
            .args(["--config", config.to_str().unwrap(), "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(extra)
            .env("LLMUX_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("llmux starts");
        Process { child, port }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn client(&self) -> Llmux {
        Llmux::at(self.addr())
    }

    /// Waits until the process accepts connections.
    pub async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(self.addr()).await.is_err() {
            assert!(Instant::now() < deadline, "llmux did not start listening");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
        assert!(status.expect("kill runs").success(), "kill -{name} failed");
    }

    pub async fn exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "llmux did not exit within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn write(path: &Path, text: &str) {
    // Write then rename, as editors and config managers do, so the watcher never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
