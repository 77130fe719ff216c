//! A private containerd (Debian's package, runc underneath) on a temporary root, state and
//! socket, driven through `ctr`; and containers it runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const NAMESPACE: &str = "mirrorswap-airgap";

/// The running containerd; stopped on drop.
pub struct Containerd {
    pub dir: tempfile::TempDir,
    ctr: PathBuf,
    child: Child,
}

impl Containerd {
    pub fn start(containerd: &Path, ctr: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = |file: &str| dir.path().join(file).display().to_string();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{socket}\"\n[ttrpc]\n  address = \"{socket}.ttrpc\"\n",
            root = path("root"),
            state = path("state"),
            socket = path("ctd.sock"),
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new(containerd)
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let containerd = Self { dir, ctr: ctr.to_owned(), child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !containerd.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not answer:\n{}", containerd.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        containerd
    }

    /// `ctr` against this containerd, in the test namespace.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.ctr);
        command.arg("--address").arg(self.dir.path().join("ctd.sock")).args(["--namespace", NAMESPACE]);
        command
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        self.command().args(args).stdin(Stdio::null()).output().expect("run ctr")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Starts `image` as container `id` (`ctr run --rm --net-host --snapshotter native`), with
    /// `options` (`--env`, `--mount`, ...) and the image's own entrypoint and command.
    pub fn run(&self, image: &str, id: &str, options: &[String]) -> Container<'_> {
        let log_path = self.dir.path().join(format!("{id}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = self
            .command()
            .args(["run", "--rm", "--net-host", "--snapshotter", "native"])
            .args(options)
            .args([image, id])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run ctr run");
        Container { containerd: self, id: id.to_owned(), child, log_path, exited: None }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A container run by `ctr run` (attached: its exit status is the container's).
pub struct Container<'a> {
    containerd: &'a Containerd,
    pub id: String,
    child: Child,
    log_path: PathBuf,
    exited: Option<ExitStatus>,
}

impl Container<'_> {
    /// What the container wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether it is still running (else its exit status).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("ctr run");
        }
        self.exited
    }

    /// `ctr tasks exec` of `args` in the running container.
    pub fn exec(&self, exec_id: &str, args: &[&str]) -> Output {
        let mut full = vec!["tasks", "exec", "--exec-id", exec_id, &self.id];
        full.extend_from_slice(args);
        self.containerd.ctr(&full)
    }

    /// Sends `signal` (`ctr tasks kill -s`) and waits up to `within` for the exit.
    pub fn kill_and_wait(&mut self, signal: &str, within: Duration) -> Option<ExitStatus> {
        let output = self.containerd.ctr(&["tasks", "kill", "-s", signal, &self.id]);
        assert!(output.status.success(), "ctr tasks kill: {}", String::from_utf8_lossy(&output.stderr));
        let deadline = Instant::now() + within;
        while self.exit_status().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.exited
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.containerd.ctr(&["tasks", "kill", "-s", "SIGKILL", &self.id]);
            let _ = self.child.wait();
        }
        let _ = self.containerd.ctr(&["containers", "rm", &self.id]);
    }
}
