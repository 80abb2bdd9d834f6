//! The `tierfs` command line: `tierfs mount …` and `tierfs admin …`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tierfs::admin::cli::{AdminArgs, run as run_admin};
use tierfs::cache::CacheConfig;
use tierfs::fuse::MountSettings;
use tierfs::mount::{MountOptions, run as run_mount};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "tierfs",
    version,
    about = "A tiered segment log filesystem (FUSE), modelled on Apache Pulsar's tiered storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mount the log at MOUNTPOINT and serve until SIGINT/SIGTERM or `fusermount3 -u`
    Mount(MountArgs),
    /// Administer a running mount, as pulsar-admin does a broker
    Admin(AdminArgs),
    /// Rebuild a lost data directory from the bucket: every topic, offloaded segment and
    /// namespace policy the bucket's catalog records
    Recover(RecoverArgs),
    /// Read what Apache Pulsar's own offloader wrote: messages of ledger files of a
    /// `--pulsar` mount, their checksums, and a check of the whole bucket
    #[command(subcommand)]
    Pulsar(PulsarCommand),
}

#[derive(Debug, Subcommand)]
enum PulsarCommand {
    /// Print every message of the ledger files (or directories of them) as JSON lines
    Messages {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Check every entry's CRC32C and every block's structure; a summary per ledger
    Verify {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Report every object of the bucket (OK, INCOMPLETE, DUPLICATE, UNKNOWN), open uploads
    /// and totals; deletes nothing
    Scan {
        /// The broker.conf naming the offload bucket
        #[arg(long)]
        config: PathBuf,
        /// One JSON document instead of the table
        #[arg(long)]
        json: bool,
        /// Abort open uploads of Pulsar data objects started longer ago than this (e.g. 1d)
        #[arg(long, value_parser = tierfs::units::parse_duration)]
        abort_uploads_older_than: Option<std::time::Duration>,
    },
}

fn run_pulsar(command: PulsarCommand) -> ExitCode {
    use tierfs::pulsar::cli;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let (what, result) = match command {
        PulsarCommand::Messages { paths } => ("messages", cli::messages(&paths, &mut out)),
        PulsarCommand::Verify { paths } => ("verify", cli::verify(&paths, &mut out)),
        PulsarCommand::Scan {
            config,
            json,
            abort_uploads_older_than,
        } => {
            return match cli::scan(&config, json, abort_uploads_older_than) {
                Ok(report) => {
                    use std::io::Write as _;
                    // A reader that went away (`| head`) is not a failure.
                    let _ = out.write_all(report.as_bytes()).and_then(|()| out.flush());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tierfs pulsar scan: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(outcome) if outcome.bad.is_empty() => ExitCode::SUCCESS,
        Ok(outcome) => {
            eprintln!(
                "tierfs pulsar {what}: {} bad entries: {}",
                outcome.bad.len(),
                outcome.bad.join(" ")
            );
            ExitCode::FAILURE
        }
        // A reader that went away (`| head`) is not a failure.
        Err(cli::CliError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tierfs pulsar {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, clap::Args)]
struct RecoverArgs {
    /// The new data directory to write (must be missing or empty)
    #[arg(long, env = "TIERFS_DATA_DIR", default_value_os_t = tierfs::config::default_data_dir())]
    data_dir: PathBuf,
    /// The broker.conf-style properties file naming the bucket and prefix
    #[arg(long)]
    config: PathBuf,
    /// How long a deleted segment's objects (retention, topics truncate/delete) stay in the
    /// bucket after the deletion is recorded, so that read-only mounts stop showing it first
    #[arg(long, default_value = "30s", value_parser = tierfs::units::parse_duration)]
    deletion_grace: std::time::Duration,
    /// Log filter, e.g. `info` or `tierfs=debug` (RUST_LOG works too)
    #[arg(long, env = "TIERFS_LOG", default_value = "warn")]
    log: String,
}

#[derive(Debug, clap::Args)]
struct MountArgs {
    /// Where to mount
    mountpoint: PathBuf,
    /// Where the local tier (and the default offload directory) lives
    #[arg(long, env = "TIERFS_DATA_DIR", default_value_os_t = tierfs::config::default_data_dir())]
    data_dir: PathBuf,
    /// A broker.conf-style properties file (Pulsar's key names)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address of the admin REST endpoint (port 0 picks a free port; the URL is written to <data-dir>/admin.addr)
    #[arg(long, env = "TIERFS_ADMIN_LISTEN", default_value = "127.0.0.1:0")]
    admin_listen: SocketAddr,
    /// Token every admin request must carry (required when --admin-listen is not loopback)
    #[arg(long, env = "TIERFS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Threads serving FUSE requests
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// Let users other than the one who mounted see the mount (needs user_allow_other in /etc/fuse.conf for non-root)
    #[arg(long)]
    allow_other: bool,
    /// Memory for cached blocks of offloaded segments (e.g. 24M, 1G); the kernel's page cache
    /// keeps what was read besides
    #[arg(long, default_value = "8M", value_parser = tierfs::units::parse_bytes)]
    cache_size: u64,
    /// Directory of the disk cache of offloaded blocks read at random (kept across restarts);
    /// <data-dir>/cache by default
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// No disk cache: blocks of offloaded segments are cached in memory only
    #[arg(long, conflicts_with = "cache_dir")]
    no_disk_cache: bool,
    /// Bound of the disk cache (e.g. 10G)
    #[arg(long, default_value = "1G", value_parser = tierfs::units::parse_bytes)]
    cache_max_size: u64,
    /// Memory for fetches in flight (read-ahead and readers' own), across all open files
    #[arg(long, default_value = "24M", value_parser = tierfs::units::parse_bytes)]
    readahead_budget: u64,
    /// A read of an offloaded segment that cannot complete in this time fails with EIO (e.g. 20s)
    #[arg(long, default_value = "20s", value_parser = tierfs::units::parse_duration)]
    read_timeout: std::time::Duration,
    /// Mount every topic the bucket's catalog records, read-only (no local log; the data
    /// directory holds only the cache and the admin address)
    #[arg(long)]
    read_only: bool,
    /// Take the prefix's writer lease from another writer that looks alive (only when you know
    /// it is dead: two writers on one prefix lose offloads)
    #[arg(long, conflicts_with = "read_only")]
    take_over: bool,
    /// Mount the ledgers Apache Pulsar's own offloader wrote to the bucket --config names,
    /// read-only: MNT/<managed-ledger>/<ledgerId>.ledger (see docs/PULSAR.md)
    #[arg(long, conflicts_with_all = ["read_only", "take_over"])]
    pulsar: bool,
    /// How often a read-only mount looks for changes in the bucket (one conditional GET;
    /// a --pulsar mount lists the bucket again)
    #[arg(long, default_value = "5s", value_parser = parse_refresh_interval)]
    refresh_interval: std::time::Duration,
    /// How long a deleted segment's objects (retention, topics truncate/delete) stay in the
    /// bucket after the deletion is recorded, so that read-only mounts stop showing it first
    #[arg(long, default_value = "30s", value_parser = tierfs::units::parse_duration)]
    deletion_grace: std::time::Duration,
    /// Log filter, e.g. `info` or `tierfs=debug` (RUST_LOG works too)
    #[arg(long, env = "TIERFS_LOG", default_value = "info")]
    log: String,
}

fn parse_refresh_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = tierfs::units::parse_duration(text)?;
    if interval < std::time::Duration::from_millis(100) {
        return Err(format!(
            "{text} is too short; the refresh interval is at least 100ms"
        ));
    }
    Ok(interval)
}

fn init_logging(filter: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .unwrap_or_else(|| filter.to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("tierfs: ignoring invalid log filter {filter:?}: {e}");
        EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Mount(args) => {
            init_logging(&args.log);
            tierfs::allocator::bound_large_buffers();
            let disk = (!args.no_disk_cache).then(|| {
                let dir = args
                    .cache_dir
                    .clone()
                    .unwrap_or_else(|| args.data_dir.join(tierfs::cache::DISK_CACHE_DIR));
                (dir, args.cache_max_size)
            });
            let options = MountOptions {
                mountpoint: args.mountpoint,
                data_dir: args.data_dir,
                config_file: args.config,
                admin_listen: args.admin_listen,
                admin_token: args.admin_token.map(tierfs::config::Secret::new),
                settings: MountSettings {
                    threads: usize::from(args.threads),
                    allow_other: args.allow_other,
                },
                cache: CacheConfig {
                    memory_bytes: args.cache_size,
                    disk,
                    inflight_bytes: args.readahead_budget,
                    read_timeout: args.read_timeout,
                    ..CacheConfig::default()
                },
                read_only: args.read_only,
                refresh_interval: args.refresh_interval,
                deletion_grace: args.deletion_grace,
                take_over: args.take_over,
                pulsar: args.pulsar,
            };
            match run_mount(options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("tierfs: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Recover(args) => {
            init_logging(&args.log);
            let options = tierfs::recover::RecoverOptions {
                data_dir: args.data_dir,
                config_file: args.config,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            match tierfs::recover::run(&options) {
                Ok(summary) => {
                    println!("{summary} into {}", options.data_dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tierfs: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Pulsar(command) => run_pulsar(command),
        Command::Admin(args) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("tierfs: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run_admin(args)) {
                Ok(output) => {
                    print!("{output}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    if let Some(out) = e.stdout() {
                        print!("{out}");
                        eprintln!();
                    }
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
