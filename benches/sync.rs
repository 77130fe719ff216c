//! Filling a mirror: `cargo bench --bench sync`.
//!
//! Starts two real registries (Debian's `docker-registry` on 127.0.0.1, a test CA and
//! htpasswd basic auth each, `tests/common/registry.rs`), generates `SYNC_IMAGES` (default 16)
//! two-platform images whose platforms share a base layer each across all images
//! (`SYNC_BASE_MIB`, default 16) and carry one layer of their own per platform
//! (`SYNC_APP_MIB`, default 4), all random bytes, and pushes them to the source with skopeo.
//! Then, in one run, into fresh mirror repositories:
//!
//! - the release `mirrorswap sync --jobs SYNC_JOBS` (default 4) of every image, against
//!   `skopeo copy --all --preserve-digests` once per image in a sequential loop (what
//!   operators script); the throughput ratio (target ≥ 1.5×);
//! - each again with nothing left to copy, alternating `SYNC_RERUNS` times (default 5), the
//!   medians and the requests each registry answered (target ≥ 10×);
//! - `sync --to-archive` of every image and `sync --from-archive` into another prefix;
//! - the peak RSS (VmHWM, `--report-peak-memory`) of `mirrorswap sync` copying one image with
//!   a `SYNC_BIG_MIB` (default 1024) layer, and of `--to-archive` and `--from-archive` with it
//!   (target ≤ 64 MiB).
//!
//! Prints a table and the ratios. Skips (exit 0) when `docker-registry`, `skopeo` or
//! `htpasswd` is missing, and fails then under `CI=true`. Loopback only.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::registry::{Auth, Layout, PASSWORD, Registry, USER, noise};
use serde_json::{Value, json};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

const MIB: usize = 1 << 20;

/// A layer of `mib` MiB of random bytes written chunk by chunk (never whole in memory).
fn big_layer(layout: &Layout, seed: u64, mib: usize) -> Value {
    let temporary = layout.dir.join("big.partial");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&temporary).expect("create the layer"));
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for chunk in 0..mib {
        let bytes = noise(seed.wrapping_add(chunk as u64), MIB);
        context.update(&bytes);
        file.write_all(&bytes).expect("write the layer");
    }
    file.flush().expect("flush the layer");
    let hex: String = context.finish().as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    std::fs::rename(&temporary, layout.dir.join("blobs/sha256").join(&hex)).expect("rename the layer");
    json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{hex}"), "size": mib * MIB})
}

/// A directory holding `ca.crt`, as skopeo's `--*-cert-dir` wants it.
fn cert_dir(dir: &Path, name: &str, registry: &Registry) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).expect("cert dir");
    std::fs::copy(registry.ca_path(), path.join("ca.crt")).expect("copy the CA");
    path
}

/// Runs a command, fails the bench when it fails; its stderr.
fn run(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|error| panic!("{what}: {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{what}: {}{stderr}", String::from_utf8_lossy(&output.stdout));
    stderr
}

/// The kB of `peak memory: VmHWM:  N kB`.
fn peak_kib(stderr: &str) -> u64 {
    let line = stderr.lines().find(|line| line.starts_with("peak memory")).unwrap_or("");
    line.split_whitespace().rev().nth(1).and_then(|value| value.parse().ok()).unwrap_or(u64::MAX)
}

struct Bench {
    dir: tempfile::TempDir,
    source: Registry,
    mirror: Registry,
    source_auth: PathBuf,
    mirror_auth: PathBuf,
}

impl Bench {
    /// `mirrorswap sync ARGS` with both logins and CAs; its stderr and wall time.
    fn sync(&self, args: &[String], logins: bool) -> (String, Duration) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mirrorswap"));
        command.arg("sync").args(args);
        for registry in [&self.source, &self.mirror] {
            command.arg("--registry-ca").arg(registry.ca_path());
        }
        if logins {
            command.arg("--source-auth").arg(&self.source_auth).arg("--registry-auth").arg(&self.mirror_auth);
        }
        let started = Instant::now();
        let stderr = run(&mut command, &format!("mirrorswap sync {}", args.join(" ")));
        (stderr, started.elapsed())
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// `skopeo copy --all` of each image to `prefix/imgN:1`, one after the other.
    fn skopeo_loop(&self, images: usize, prefix: &str) -> Duration {
        let src_certs = cert_dir(self.dir.path(), "src-certs", &self.source);
        let dst_certs = cert_dir(self.dir.path(), "dst-certs", &self.mirror);
        let creds = format!("{USER}:{PASSWORD}");
        let started = Instant::now();
        for n in 0..images {
            let from = format!("docker://{}/bench/img{n}:1", self.source.host());
            let to = format!("docker://{}/{prefix}/img{n}:1", self.mirror.host());
            run(
                Command::new("skopeo")
                    .args(["copy", "--quiet", "--all", "--preserve-digests", "--src-cert-dir"])
                    .arg(&src_certs)
                    .arg("--dest-cert-dir")
                    .arg(&dst_certs)
                    .args(["--src-creds", &creds, "--dest-creds", &creds, &from, &to]),
                &format!("skopeo copy {from}"),
            );
        }
        started.elapsed()
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (such as `cargo test --benches`) only checks it builds.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let images = env_number("SYNC_IMAGES", 16).max(1) as usize;
    let base_mib = env_number("SYNC_BASE_MIB", 16) as usize;
    let app_mib = env_number("SYNC_APP_MIB", 4) as usize;
    let big_mib = env_number("SYNC_BIG_MIB", 1024) as usize;
    let jobs = env_number("SYNC_JOBS", 4).max(1).to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (Some(source), Some(mirror)) = (Registry::start(Auth::Basic).await, Registry::start(Auth::Basic).await)
        else {
            eprintln!("sync bench skipped: docker-registry, skopeo or htpasswd is missing");
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(&dir.path().join("layout"));
        let bases = [
            layout.blob("application/vnd.oci.image.layer.v1.tar", &noise(1, base_mib * MIB)),
            layout.blob("application/vnd.oci.image.layer.v1.tar", &noise(2, base_mib * MIB)),
        ];
        for n in 0..images {
            let platforms: Vec<Value> = ["amd64", "arm64"]
                .iter()
                .zip(&bases)
                .enumerate()
                .map(|(p, (arch, base))| {
                    let own = layout
                        .blob("application/vnd.oci.image.layer.v1.tar", &noise(100 + (n * 2 + p) as u64, app_mib * MIB));
                    layout.image("linux", arch, &[base.clone(), own])
                })
                .collect();
            layout.tag(&format!("img{n}"), &layout.index(&platforms));
        }
        let pushing = Instant::now();
        for n in 0..images {
            source.push_layout(&layout.dir, &format!("img{n}"), &format!("bench/img{n}:1")).await;
        }
        let unique_mib = 2 * base_mib + images * 2 * app_mib;
        eprintln!("pushed {images} images ({unique_mib} MiB of distinct layers) in {:.1?}", pushing.elapsed());
        let bench = Bench {
            source_auth: dir.path().join("source.json"),
            mirror_auth: dir.path().join("mirror.json"),
            dir,
            source,
            mirror,
        };
        std::fs::write(&bench.source_auth, bench.source.docker_config()).expect("source login");
        std::fs::write(&bench.mirror_auth, bench.mirror.docker_config()).expect("mirror login");
        let (src, dst) = (bench.source.host(), bench.mirror.host());
        let list: String = (0..images).map(|n| format!("{src}/bench/img{n}:1 {dst}/ms/img{n}:1\n")).collect();
        let list = bench.write("list.txt", &list).display().to_string();
        let sync_args = vec!["--images".to_owned(), list.clone(), "--jobs".into(), jobs.clone()];

        let (_, mirrorswap_first) = bench.sync(&sync_args, true);
        let skopeo_first = bench.skopeo_loop(images, "sk");
        // Reruns alternate, `SYNC_RERUNS` each (default 5); medians, and the requests each
        // registry answered (401 challenges left out) during the last of each.
        let reruns = env_number("SYNC_RERUNS", 5).max(1) as usize;
        let requests = |bench: &Bench| (bench.source.access_log().len(), bench.mirror.access_log().len());
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut our_requests, mut their_requests) = ((0, 0), (0, 0));
        for _ in 0..reruns {
            let before = requests(&bench);
            ours.push(bench.sync(&sync_args, true).1);
            let after = requests(&bench);
            our_requests = (after.0 - before.0, after.1 - before.1);
            theirs.push(bench.skopeo_loop(images, "sk"));
            let last = requests(&bench);
            their_requests = (last.0 - after.0, last.1 - after.1);
        }
        let median = |mut runs: Vec<Duration>| {
            runs.sort_unstable();
            runs[runs.len() / 2]
        };
        let (mirrorswap_rerun, skopeo_rerun) = (median(ours), median(theirs));

        // The archive: every image into one tar, then from it into another prefix.
        let archive = bench.dir.path().join("images.tar").display().to_string();
        let rules = bench.write("rules.conf", &format!("{src}::{dst}/fromarchive\n")).display().to_string();
        let to_args = vec!["--images".to_owned(), list.clone(), "--jobs".into(), jobs.clone(), "--to-archive".into(), archive.clone()];
        let (_, to_archive) = bench.sync(&[to_args, vec!["--source-auth".into(), bench.source_auth.display().to_string()]].concat(), false);
        let archive_bytes = std::fs::metadata(&archive).map(|meta| meta.len()).unwrap_or(0);
        let from_args = vec![
            "--rules".to_owned(),
            rules,
            "--jobs".into(),
            jobs.clone(),
            "--from-archive".into(),
            archive.clone(),
            "--registry-auth".into(),
            bench.mirror_auth.display().to_string(),
        ];
        let (_, from_archive) = bench.sync(&from_args, false);
        let _ = std::fs::remove_file(&archive);

        // One big layer: peak memory of the three ways it moves.
        let big_layout = Layout::new(&bench.dir.path().join("big"));
        let big = big_layer(&big_layout, 9, big_mib);
        let image = big_layout.image("linux", "amd64", &[big]);
        big_layout.tag("big", &image);
        bench.source.push_layout(&big_layout.dir, "big", "bench/big:1").await;
        let _ = std::fs::remove_dir_all(&big_layout.dir);
        let big_list = bench.write("big.txt", &format!("{src}/bench/big:1 {dst}/big/big:1\n")).display().to_string();
        let peak = vec!["--report-peak-memory".to_owned()];
        let (stderr, big_sync) = bench.sync(&[vec!["--images".to_owned(), big_list.clone()], peak.clone()].concat(), true);
        let sync_peak = peak_kib(&stderr);
        let big_archive = bench.dir.path().join("big.tar").display().to_string();
        let (stderr, big_to) = bench.sync(
            &[
                vec!["--images".to_owned(), big_list, "--to-archive".into(), big_archive.clone()],
                vec!["--source-auth".into(), bench.source_auth.display().to_string()],
                peak.clone(),
            ]
            .concat(),
            false,
        );
        let to_peak = peak_kib(&stderr);
        let big_rules = bench.write("big.conf", &format!("{src}::{dst}/bigarchive\n")).display().to_string();
        let (stderr, big_from) = bench.sync(
            &[
                vec!["--rules".to_owned(), big_rules, "--from-archive".into(), big_archive.clone()],
                vec!["--registry-auth".into(), bench.mirror_auth.display().to_string()],
                peak,
            ]
            .concat(),
            false,
        );
        let from_peak = peak_kib(&stderr);
        let _ = std::fs::remove_file(&big_archive);

        let seconds = |duration: Duration| duration.as_secs_f64();
        let rate = |duration: Duration| unique_mib as f64 / seconds(duration).max(f64::MIN_POSITIVE);
        let first_ratio = seconds(skopeo_first) / seconds(mirrorswap_first);
        let rerun_ratio = seconds(skopeo_rerun) / seconds(mirrorswap_rerun);
        println!(
            "{images} two-platform images, {base_mib} MiB base layer per platform shared by all, {app_mib} MiB own layer \
             per platform: {unique_mib} MiB distinct; loopback docker-registry, TLS, basic auth"
        );
        println!();
        println!("| run | mirrorswap sync --jobs {jobs} | skopeo copy --all loop | ratio |");
        println!("| --- | ---: | ---: | ---: |");
        println!(
            "| first copy | {:.2} s ({:.0} MiB/s) | {:.2} s ({:.0} MiB/s) | {first_ratio:.2}× (target ≥ 1.5×) |",
            seconds(mirrorswap_first),
            rate(mirrorswap_first),
            seconds(skopeo_first),
            rate(skopeo_first)
        );
        println!(
            "| rerun, nothing to copy (median of {reruns}) | {:.3} s | {:.2} s | {rerun_ratio:.1}× (target ≥ 10×) |",
            seconds(mirrorswap_rerun),
            seconds(skopeo_rerun)
        );
        println!(
            "| rerun: requests at source / mirror | {} / {} | {} / {} | |",
            our_requests.0, our_requests.1, their_requests.0, their_requests.1
        );
        println!();
        println!(
            "archive: --to-archive {:.2} s ({:.1} MiB tar), --from-archive into a fresh prefix {:.2} s",
            seconds(to_archive),
            archive_bytes as f64 / MIB as f64,
            seconds(from_archive)
        );
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "one {big_mib} MiB layer, peak RSS (VmHWM): sync {:.1} MiB in {:.1} s; --to-archive {:.1} MiB in {:.1} s; \
             --from-archive {:.1} MiB in {:.1} s (target ≤ 64 MiB)",
            mib(sync_peak),
            seconds(big_sync),
            mib(to_peak),
            seconds(big_to),
            mib(from_peak),
            seconds(big_from)
        );
        let ok = |met: bool| if met { "met" } else { "NOT met" };
        println!(
            "targets: throughput {}, rerun {}, memory {}",
            ok(first_ratio >= 1.5),
            ok(rerun_ratio >= 10.0),
            ok([sync_peak, to_peak, from_peak].iter().all(|kib| *kib <= 64 * 1024))
        );
    });
}
