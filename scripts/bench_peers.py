#!/usr/bin/env python3
"""tierfs beside peer mounts of the same bucket, on one machine, in one run.

Run by scripts/bench.sh, which installs the tools, builds tierfs and starts Garage; this script
does the rest: it offloads a topic through tierfs, lays out a 10,000-segment topic, starts a
second S3 server (`rclone serve s3`) holding the same objects, and measures, for each server,
the raw GET with curl, tierfs, s3fs and rclone mount side by side. It writes bench/results.json,
docs/BENCHMARKS.md and docs/benchmarks.png.

Every figure is the median of RUNS runs; every cold run starts from a fresh mount (fresh daemon
caches; rclone's cache directory emptied) and `echo 3 > /proc/sys/vm/drop_caches`.
"""

import argparse
import concurrent.futures
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

MIB = 1 << 20
PREFIX = "bench"
SEGMENT_TOPIC = "bench/peers/seg"
LISTING_TOPIC = "bench/peers/many"
BIG_TOPIC = "bench/peers/big"  # one large segment (1 GiB)
CAT_TOPIC = "bench/peers/topic"  # 16 segments of 64 MiB, read with one `cat topic/*`
PEER_ROOT = f"{PREFIX}/bench/peers"  # the bucket prefix the peers mount: seg/, big/, topic/, many/
SYSTEMS = ["raw GET (curl)", "tierfs", "s3fs", "rclone mount"]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def drop_caches():
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


def peak_rss_mib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, predicate, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"bench: timed out waiting for {what}")


class Server:
    """An S3 endpoint the systems read from."""

    def __init__(self, name, endpoint, region, bucket, note):
        self.name, self.endpoint, self.region, self.bucket, self.note = (
            name, endpoint, region, bucket, note)

    def client(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            config=Config(s3={"addressing_style": "path"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required",
                          max_pool_connections=32))


# ---------------------------------------------------------------------------------------------
# The mounts
# ---------------------------------------------------------------------------------------------

class Mount:
    """A FUSE mount of one system over one server; `restart` gives a cold one."""

    def __init__(self, work, server):
        self.work, self.server = work, server
        self.mnt = work / f"mnt-{self.key}-{server.name}"
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.proc = None
        self.peak_rss = 0.0

    def restart(self):
        self.stop()
        drop_caches()
        self.start()
        wait_for(f"{self.key} to mount", lambda: os.path.ismount(self.mnt) and self.ready())
        drop_caches()

    def ready(self):
        return True

    def stop(self):
        if self.proc is None:
            return
        rss = peak_rss_mib(self.proc.pid)
        if rss:
            self.peak_rss = max(self.peak_rss, rss)
        subprocess.run(["umount", str(self.mnt)], stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["fusermount3", "-u", "-z", "-q", str(self.mnt)], stderr=subprocess.DEVNULL)
        self.proc = None

    def spawn(self, argv, env=None, shown_env=""):
        logfile = open(self.work / f"{self.key}-{self.server.name}.log", "a")
        self.proc = subprocess.Popen(argv, stdout=logfile, stderr=logfile, env=env)
        self.command = shown_env + shown(argv, self.work)


def shown(argv, work):
    """A command line for the report: quoted, the work directory as $WORK."""
    import shlex
    line = " ".join(shlex.quote(str(a)) for a in argv).replace(str(work), "$WORK")
    return line.replace(str(Path.home()), "~")


class TierfsMount(Mount):
    key = "tierfs"

    def __init__(self, work, server, binary, data_dir, config_file, log_level="warn"):
        super().__init__(work, server)
        self.binary, self.data_dir, self.config_file = binary, data_dir, config_file
        self.log_level = log_level

    def start(self):
        (self.data_dir / "admin.addr").unlink(missing_ok=True)
        # Cold means cold: the disk cache (on by default under the data directory) is emptied,
        # as rclone's cache directory is.
        shutil.rmtree(self.data_dir / "cache", ignore_errors=True)
        self.spawn([str(self.binary), "mount", str(self.mnt), "--data-dir", str(self.data_dir),
                    "--config", str(self.config_file), "--log", self.log_level])

    def ready(self):
        return (self.data_dir / "admin.addr").exists()

    def segment(self):
        return self.mnt / SEGMENT_TOPIC / "00000000000000000001.seg"

    def big(self):
        return self.mnt / BIG_TOPIC / "00000000000000000001.seg"

    def topic(self):
        return self.mnt / CAT_TOPIC

    def listing(self):
        return self.mnt / LISTING_TOPIC


class S3fsMount(Mount):
    key = "s3fs"

    def start(self):
        passwd = self.work / "s3fs.passwd"
        passwd.write_text(f"{os.environ['AWS_ACCESS_KEY_ID']}:{os.environ['AWS_SECRET_ACCESS_KEY']}\n")
        passwd.chmod(0o600)
        self.spawn(["s3fs", f"{self.server.bucket}:/{PEER_ROOT}", str(self.mnt), "-f",
                    "-o", f"url={self.server.endpoint}", "-o", "use_path_request_style",
                    "-o", f"endpoint={self.server.region}", "-o", f"passwd_file={passwd}",
                    "-o", "dbglevel=warn"])

    def segment(self):
        return next((self.mnt / "seg").glob("*.seg"))

    def big(self):
        return next((self.mnt / "big").glob("*.seg"))

    def topic(self):
        return self.mnt / "topic"

    def listing(self):
        return self.mnt / "many"


class RcloneMount(Mount):
    key = "rclone"

    def __init__(self, work, server, rclone):
        super().__init__(work, server)
        self.rclone = rclone
        self.cache = work / f"rclone-cache-{server.name}"

    def start(self):
        shutil.rmtree(self.cache, ignore_errors=True)
        env = dict(os.environ)
        env.pop("AWS_CA_BUNDLE", None)  # rclone refuses to start when it is set
        env.update({
            "RCLONE_S3_PROVIDER": "Other",
            "RCLONE_S3_ENDPOINT": self.server.endpoint,
            "RCLONE_S3_REGION": self.server.region,
            "RCLONE_S3_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
            "RCLONE_S3_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
            "RCLONE_S3_FORCE_PATH_STYLE": "true",
            "RCLONE_CONFIG": "/dev/null",
        })
        self.spawn([self.rclone, "mount", f":s3:{self.server.bucket}/{PEER_ROOT}", str(self.mnt),
                    "--vfs-cache-mode", "full", "--cache-dir", str(self.cache),
                    "--log-level", "ERROR"], env=env,
                   shown_env=f"RCLONE_S3_PROVIDER=Other RCLONE_S3_ENDPOINT={self.server.endpoint} "
                   f"RCLONE_S3_REGION={self.server.region} RCLONE_S3_ACCESS_KEY_ID=… "
                   "RCLONE_S3_SECRET_ACCESS_KEY=… RCLONE_S3_FORCE_PATH_STYLE=true ")

    def segment(self):
        return next((self.mnt / "seg").glob("*.seg"))

    def big(self):
        return next((self.mnt / "big").glob("*.seg"))

    def topic(self):
        return self.mnt / "topic"

    def listing(self):
        return self.mnt / "many"


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------

def random_offsets(size, count=1000, seed=42):
    rng = random.Random(seed)
    return [rng.randrange(0, size - 4096) & ~4095 for _ in range(count)]


def read_file(path):
    """(seconds to the first 4 KiB, MiB/s of the whole file) of one sequential read."""
    buf = bytearray(MIB)
    start = time.monotonic()
    with open(path, "rb", buffering=0) as f:
        f.readinto(memoryview(buf)[:4096])
        first = time.monotonic() - start
        total = 4096
        while n := f.readinto(buf):
            total += n
    return first, total / MIB / (time.monotonic() - start)


def preads(path, offsets):
    fd = os.open(path, os.O_RDONLY)
    latencies = []
    start = time.monotonic()
    try:
        for at in offsets:
            t = time.monotonic()
            if len(os.pread(fd, 4096, at)) != 4096:
                raise SystemExit(f"bench: short read of {path} at {at}")
            latencies.append(time.monotonic() - t)
    finally:
        os.close(fd)
    return time.monotonic() - start, sorted(latencies)


def cat_topic(directory):
    """MiB/s of one `cat DIR/*.seg > /dev/null`: every segment of a topic, in order."""
    start = time.monotonic()
    out = subprocess.run(["sh", "-c", f'cat "{directory}"/*.seg | wc -c'], check=True,
                         capture_output=True, text=True).stdout
    return int(out) / MIB / (time.monotonic() - start)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def big_read(mount):
    """(MiB/s, MiB of peak RSS over the idle process) of one cold read of the large segment."""
    path = mount.big()
    os.stat(path)
    idle = rss_mib(mount.proc.pid)
    with open(f"/proc/{mount.proc.pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    _, rate = read_file(path)
    return rate, peak_rss_mib(mount.proc.pid) - idle


def timed(argv):
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def random_summary(runs):
    """Medians over runs of (total s, p50 ms, p99 ms)."""
    return {
        "total_s": median([total for total, _ in runs]),
        "p50_ms": median([percentile(lat, 0.50) * 1000 for _, lat in runs]),
        "p99_ms": median([percentile(lat, 0.99) * 1000 for _, lat in runs]),
    }


def measure_mount(mount, size, offsets, runs):
    seq_cold, seq_warm, ttfb, rand_cold, rand_warm, ls, find = [], [], [], [], [], [], []
    big, big_rss, topic = [], [], []
    for run in range(runs):
        mount.restart()
        rate, over_idle = big_read(mount)
        big.append(rate)
        big_rss.append(over_idle)
        mount.restart()
        topic.append(cat_topic(mount.topic()))
        mount.restart()
        first, rate = read_file(mount.segment())
        ttfb.append(first * 1000)
        seq_cold.append(rate)
        seq_warm.append(read_file(mount.segment())[1])
        mount.restart()
        rand_cold.append(preads(mount.segment(), offsets))
        rand_warm.append(preads(mount.segment(), offsets))
        mount.restart()
        ls.append(timed(["ls", "-l", str(mount.listing())]))
        mount.restart()
        find.append(timed(["find", str(mount.listing())]))
        log(f"  {mount.key} run {run + 1}: cold {seq_cold[-1]:.1f} MiB/s, warm {seq_warm[-1]:.1f},"
            f" ttfb {ttfb[-1]:.1f} ms, random cold {rand_cold[-1][0]:.2f} s,"
            f" warm {rand_warm[-1][0]:.2f} s, ls -l {ls[-1]:.2f} s, find {find[-1]:.2f} s,"
            f" big {big[-1]:.1f} MiB/s (+{big_rss[-1]:.0f} MiB), cat topic {topic[-1]:.1f} MiB/s")
    entries = len(os.listdir(mount.listing()))
    mount.stop()
    return {
        "cold_seq_mib_s": median(seq_cold),
        "warm_seq_mib_s": median(seq_warm),
        "ttfb_ms": median(ttfb),
        "random_cold": random_summary(rand_cold),
        "random_warm": random_summary(rand_warm),
        "ls_l_s": median(ls),
        "find_s": median(find),
        "listing_entries": entries,
        "peak_rss_mib": round(mount.peak_rss, 1),
        "big_cold_seq_mib_s": median(big),
        "big_rss_over_idle_mib": round(median(big_rss), 1),
        "cat_topic_mib_s": median(topic),
        "command": mount.command + (
            f"\n# with {mount.config_file.name}:\n" + "\n".join(
                f"#   {line}" for line in mount.config_file.read_text().splitlines())
            if isinstance(mount, TierfsMount) else ""),
    }


class Curl:
    """Raw ranged GETs of the object with curl (SigV4), the limit of what the store serves."""

    def __init__(self, work, server, key):
        self.work, self.server, self.key = work, server, key
        self.url = f"{server.endpoint}/{server.bucket}/{key}"

    def auth(self):
        return [f'aws-sigv4 = "aws:amz:{self.server.region}:s3"',
                f'user = "{os.environ["AWS_ACCESS_KEY_ID"]}:{os.environ["AWS_SECRET_ACCESS_KEY"]}"',
                'header = "x-amz-content-sha256: UNSIGNED-PAYLOAD"']

    def run(self, transfers):
        """Runs one curl process for the (first, last) byte ranges; per-transfer (ttfb, total)."""
        config = self.work / "curl.conf"
        blocks = []
        for first, last in transfers:
            blocks.append("\n".join(self.auth() + [
                f'url = "{self.url}"', f'range = "{first}-{last}"', 'output = "/dev/null"',
                'silent', 'fail',
                r'write-out = "%{time_starttransfer} %{time_total} %{size_download}\n"']))
        config.write_text("\nnext\n".join(blocks) + "\n")
        config.chmod(0o600)
        start = time.monotonic()
        out = subprocess.run(["curl", "-K", str(config)], check=True, capture_output=True,
                             text=True).stdout
        wall = time.monotonic() - start
        config.unlink()
        rows = [line.split() for line in out.splitlines() if line.strip()]
        return wall, [(float(a), float(b), int(c)) for a, b, c in rows]

    def measure(self, size, offsets, runs, big=None, topic=()):
        """`big`: (key, size) of the large segment; `topic`: (key, size) of each segment of the
        topic read with `cat`, fetched one after another."""
        seq, warm, ttfb, rand, rand_warm, big_rates, topic_rates = [], [], [], [], [], [], []
        headers = []
        for _ in range(runs):
            if big:
                drop_caches()
                _, [(_, total, got)] = Curl(self.work, self.server, big[0]).run([(0, big[1] - 1)])
                assert got == big[1], f"curl got {got} bytes of {big[1]}"
                big_rates.append(big[1] / MIB / total)
            if topic:
                drop_caches()
                start = time.monotonic()
                for key, length in topic:
                    Curl(self.work, self.server, key).run([(0, length - 1)])
                topic_rates.append(sum(n for _, n in topic) / MIB / (time.monotonic() - start))
            drop_caches()
            _, [(first, total, got)] = self.run([(0, size - 1)])
            assert got == size, f"curl got {got} bytes of {size}"
            seq.append(size / MIB / total)
            headers.append(first * 1000)
            # Time to first byte, as the mounts' is measured: until the first 4 KiB of the
            # object's data are in hand (curl's time_starttransfer is the response headers,
            # which a server sends before it has read any data).
            drop_caches()
            _, [(_, total, _)] = self.run([(0, 4095)])
            ttfb.append(total * 1000)
            _, [(_, total, _)] = self.run([(0, size - 1)])
            warm.append(size / MIB / total)
            wall, rows = self.run([(at, at + 4095) for at in offsets])
            rand.append((wall, sorted(r[1] for r in rows)))
            # curl has no cache: "warm" is the server answering the same ranges again.
            wall, rows = self.run([(at, at + 4095) for at in offsets])
            rand_warm.append((wall, sorted(r[1] for r in rows)))
        result = {"cold_seq_mib_s": median(seq), "warm_seq_mib_s": median(warm),
                  "ttfb_ms": median(ttfb), "ttfb_headers_ms": median(headers),
                  "random_cold": random_summary(rand),
                  "random_warm": random_summary(rand_warm), "ls_l_s": None, "find_s": None,
                  "listing_entries": None, "peak_rss_mib": None,
                  "big_cold_seq_mib_s": median(big_rates) if big_rates else None,
                  "big_rss_over_idle_mib": None,
                  "cat_topic_mib_s": median(topic_rates) if topic_rates else None,
                  "command": "curl -K CONFIG, CONFIG holding per transfer: "
                             f'aws-sigv4 "aws:amz:{self.server.region}:s3", user "KEY:SECRET", '
                             'header "x-amz-content-sha256: UNSIGNED-PAYLOAD", range "FIRST-LAST", '
                             f'url "{self.url}", output /dev/null'}
        log(f"  curl: {result['cold_seq_mib_s']:.1f} MiB/s, ttfb {result['ttfb_ms']:.1f} ms,"
            f" random {result['random_cold']['total_s']:.2f} s")
        return result


# ---------------------------------------------------------------------------------------------
# Setting up the objects
# ---------------------------------------------------------------------------------------------

def tierfs_config(path, server, segment_mib):
    path.write_text(
        f"managedLedgerMaxEntriesPerLedger={segment_mib}\n"
        "managedLedgerMinLedgerRolloverTimeMinutes=0\n"
        "managedLedgerOffloadDeletionLagMs=0\n"
        "managedLedgerOffloadDriver=S3\n"
        f"managedLedgerOffloadBucket={server.bucket}\n"
        f"managedLedgerOffloadServiceEndpoint={server.endpoint}\n"
        f"managedLedgerOffloadPrefix={PREFIX}\n")


def admin(binary, data_dir, *args):
    return subprocess.run([str(binary), "admin", "--data-dir", str(data_dir), *args],
                          check=True, capture_output=True, text=True).stdout


def xattr(path, name):
    return os.getxattr(path, name).decode()


def write_segment(mount, topic, source):
    """Appends `source` to the topic in 1 MiB entries (page-aligned buffers, one write each)."""
    (mount.mnt / topic).mkdir(parents=True, exist_ok=True)
    subprocess.run(["dd", f"if={source}", f"of={mount.mnt / topic / 'active'}", "bs=1M",
                    "oflag=append", "conv=notrunc", "status=none"], check=True)


def offload_segment(binary, mount, segment_mib, source):
    """Offloads one segment of the source bytes through tierfs; returns its object key."""
    mount.restart()
    write_segment(mount, SEGMENT_TOPIC, source)
    admin(binary, mount.data_dir, "topics", "offload", "-s", "0", SEGMENT_TOPIC)
    status = admin(binary, mount.data_dir, "topics", "offload-status", "-w", SEGMENT_TOPIC)
    assert status.strip() == "Offload was a success", status
    segment = mount.segment()
    wait_for("the local copy to go", lambda: xattr(segment, "user.tierfs.local") == "no")
    key = xattr(segment, "user.tierfs.object").split("/", 3)[3]
    mount.stop()
    return key


def offload_topic(binary, work, server, data_dir, topic, total_mib, segment_mib):
    """Writes `total_mib` MiB of random bytes to `topic` in segments of `segment_mib` MiB through
    a tierfs mount of its own rollover, offloads them, waits until the local copies are gone;
    returns [(data key, size)] of the segments, in order."""
    config = work / f"setup-{segment_mib}.conf"
    tierfs_config(config, server, segment_mib)
    mount = TierfsMount(work, server, binary, data_dir, config)
    mount.restart()
    (mount.mnt / topic).mkdir(parents=True, exist_ok=True)
    subprocess.run(["dd", "if=/dev/urandom", f"of={mount.mnt / topic / 'active'}", "bs=1M",
                    f"count={total_mib}", "iflag=fullblock", "oflag=append", "conv=notrunc",
                    "status=none"],
                   check=True)
    admin(binary, data_dir, "topics", "offload", "-s", "0", topic)
    status = admin(binary, data_dir, "topics", "offload-status", "-w", topic)
    assert status.strip() == "Offload was a success", status
    segments = sorted((mount.mnt / topic).glob("*.seg"))
    assert len(segments) == total_mib // segment_mib, segments
    for segment in segments:
        wait_for("the local copy to go", lambda: xattr(segment, "user.tierfs.local") == "no")
    keys = [(xattr(s, "user.tierfs.object").split("/", 3)[3], s.stat().st_size)
            for s in segments]
    mount.stop()
    return keys


LISTED_BODY = b"x" * 1024


def listed_key(i):
    return f"{PEER_ROOT}/many/{i:020}-u.seg"


def lay_out_listing(data_dir, server, count):
    """A topic of `count` offloaded one-KiB segments: objects in the bucket (what the peers list)
    and tierfs's manifest naming them (what tierfs lists); nothing of it is read."""
    client = server.client()

    def put(i):
        client.put_object(Bucket=server.bucket, Key=listed_key(i), Body=LISTED_BODY)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(put, range(1, count + 1)))
    root = data_dir / "topics" / LISTING_TOPIC
    root.mkdir(parents=True, exist_ok=True)
    now = int(time.time() * 1000)
    sealed = [{"id": i, "entries": 1, "size": 1024, "crc32c": 0, "created_ms": now,
               "sealed_ms": now, "local": False,
               "offload": {"uuid": "u", "data_key": listed_key(i),
                           "index_key": f"{PEER_ROOT}/many/{i:020}-u.idx",
                           "started_ms": now, "completed_ms": now}}
              for i in range(1, count + 1)]
    manifest = {"format": 1, "topic": LISTING_TOPIC, "created_ms": now, "sealed": sealed,
                "active": {"id": count + 1, "created_ms": now}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    active = f"{count + 1:020}"
    (root / f"{active}.seg").write_bytes(b"")
    (root / f"{active}.idx").write_bytes(b"TFSEGIDX" + (1).to_bytes(4, "little") + bytes(4))


def copy_bucket_to_directory(server, root, count):
    """Mirrors the benchmark's objects into the directory `rclone serve s3` serves: the
    offloaded segment's objects are downloaded, the listed ones written in place."""
    client = server.client()
    paginator = client.get_paginator("list_objects_v2")
    for folder in ("seg", "big", "topic"):
        for page in paginator.paginate(Bucket=server.bucket, Prefix=f"{PEER_ROOT}/{folder}/"):
            for obj in page.get("Contents", []):
                target = root / server.bucket / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(server.bucket, obj["Key"], str(target))
    for i in range(1, count + 1):
        target = root / server.bucket / listed_key(i)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(LISTED_BODY)


def start_rclone_server(work, rclone, bucket):
    root = work / "rclone-s3"
    (root / bucket).mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)
    env["RCLONE_CONFIG"] = "/dev/null"
    proc = subprocess.Popen(
        # No ETag hash: by default it computes the MD5 of the whole object for every GET, even a
        # ranged one (0.2 s for 128 MiB), which would measure hashing, not serving.
        [rclone, "serve", "s3", "--etag-hash", "", "--addr", f"127.0.0.1:{port}", "--auth-key",
         f"{os.environ['AWS_ACCESS_KEY_ID']},{os.environ['AWS_SECRET_ACCESS_KEY']}", str(root)],
        stdout=open(work / "rclone-serve.log", "w"), stderr=subprocess.STDOUT, env=env)

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    wait_for("rclone serve s3", up)
    server = Server("rclone-serve-s3", f"http://127.0.0.1:{port}", "us-east-1", bucket,
                    "rclone serve s3 (sets TCP_NODELAY)")
    server.command = shown([rclone, "serve", "s3", "--etag-hash", "", "--addr", f"127.0.0.1:{port}",
                            "--auth-key", "KEY,SECRET", root], work)
    return proc, root, server


# ---------------------------------------------------------------------------------------------
# Offload vs a plain multipart upload
# ---------------------------------------------------------------------------------------------

def measure_offload(binary, mount, server, source, segment_mib, runs, part, threads):
    """tierfs offload of a segment vs boto3's multipart upload of the same bytes (same part size
    and concurrency), MiB/s, median of runs."""
    topic = "bench/offload/t"
    tierfs_rates, boto_rates = [], []
    mount.restart()
    log_file = mount.work / f"tierfs-{server.name}.log"
    client = server.client()
    transfer = TransferConfig(multipart_threshold=part, multipart_chunksize=part,
                              max_concurrency=threads)
    for run in range(1, runs + 1):
        write_segment(mount, topic, source)
        admin(binary, mount.data_dir, "topics", "offload", "-s", "0", topic)
        status = admin(binary, mount.data_dir, "topics", "offload-status", "-w", topic)
        assert status.strip() == "Offload was a success", status
        done = [line for line in log_file.read_text().splitlines()
                if "offload complete" in line and f"topic={topic} " in line
                and f"segment={run} " in line]
        seconds = float(done[-1].split("seconds=")[1].split()[0])
        tierfs_rates.append(segment_mib / seconds)
        start = time.monotonic()
        client.upload_file(str(source), server.bucket, f"bench-boto3/{run}.seg", Config=transfer)
        boto_rates.append(segment_mib / (time.monotonic() - start))
        log(f"  offload run {run}: tierfs {tierfs_rates[-1]:.1f} MiB/s,"
            f" boto3 {boto_rates[-1]:.1f} MiB/s")
    mount.stop()
    return {"tierfs_mib_s": median(tierfs_rates), "multipart_mib_s": median(boto_rates),
            "part_mib": part // MIB, "threads": threads, "segment_mib": segment_mib}


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def versions(binary, rclone):
    def first_line(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"
    return {
        "tierfs": first_line([str(binary), "--version"]),
        "s3fs": first_line(["s3fs", "--version"]),
        "rclone": first_line([rclone, "version"]),
        "curl": first_line(["curl", "--version"]),
        "garage": first_line(["garage", "--version"]),
        "kernel": platform.release(),
    }


def machine():
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    os_name = next((line.split("=", 1)[1].strip('"')
                    for line in Path("/etc/os-release").read_text().splitlines()
                    if line.startswith("PRETTY_NAME=")), "Linux")
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem, "os": os_name}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--tierfs", type=Path, required=True)
    parser.add_argument("--rclone", required=True)
    parser.add_argument("--segment-mib", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--listing", type=int, default=10_000)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--topic-segments", type=int, default=16)
    parser.add_argument("--topic-segment-mib", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True)
    # For development: a subset of the systems, no offload rows (the report wants a full run).
    parser.add_argument("--systems", default="curl,tierfs,s3fs,rclone")
    parser.add_argument("--no-offload", action="store_true")
    args = parser.parse_args()
    systems = set(args.systems.split(","))
    started = time.monotonic()
    work, size = args.work, args.segment_mib * MIB
    garage = Server("garage", os.environ["TIERFS_TEST_S3_ENDPOINT"],
                    os.environ["TIERFS_TEST_S3_REGION"], os.environ["TIERFS_TEST_S3_BUCKET"],
                    "Garage (no TCP_NODELAY: ~40 ms delayed-ACK stalls on small responses)")
    garage.command = "scripts/s3-server.sh start $WORK/s3   # Garage 2.5.0, one node, on loopback"
    source = work / "segment.bin"
    with open(source, "wb") as f:
        f.write(os.urandom(size))
    offsets = random_offsets(size)

    log(f"setting up: a {args.segment_mib} MiB segment offloaded through tierfs,"
        f" {args.listing} listed segments")
    data_dir = work / "data"
    data_dir.mkdir()
    configs = {}
    configs["garage"] = work / "garage.conf"
    tierfs_config(configs["garage"], garage, args.segment_mib)
    setup_mount = TierfsMount(work, garage, args.tierfs, data_dir, configs["garage"])
    key = offload_segment(args.tierfs, setup_mount, args.segment_mib, source)
    log(f"setting up: a {args.big_mib} MiB segment and a topic of {args.topic_segments}"
        f" x {args.topic_segment_mib} MiB segments")
    [big] = offload_topic(args.tierfs, work, garage, data_dir, BIG_TOPIC, args.big_mib,
                          args.big_mib)
    topic = offload_topic(args.tierfs, work, garage, data_dir, CAT_TOPIC,
                          args.topic_segments * args.topic_segment_mib, args.topic_segment_mib)
    lay_out_listing(data_dir, garage, args.listing)
    rclone_proc, rclone_root, rclone_server = start_rclone_server(work, args.rclone, garage.bucket)
    try:
        copy_bucket_to_directory(garage, rclone_root, args.listing)
        configs[rclone_server.name] = work / "rclone-serve.conf"
        tierfs_config(configs[rclone_server.name], rclone_server, args.segment_mib)

        results = {"servers": {}, "offload": {}}
        for server in (garage, rclone_server):
            log(f"reading through {server.name}")
            table = {}
            if "curl" in systems:
                table["raw GET (curl)"] = Curl(work, server, key).measure(size, offsets,
                                                                          args.runs, big, topic)
            for mount in (TierfsMount(work, server, args.tierfs, data_dir, configs[server.name]),
                          S3fsMount(work, server),
                          RcloneMount(work, server, args.rclone)):
                if mount.key not in systems:
                    continue
                name = {"tierfs": "tierfs", "s3fs": "s3fs", "rclone": "rclone mount"}[mount.key]
                try:
                    table[name] = measure_mount(mount, size, offsets, args.runs)
                finally:
                    mount.stop()
            results["servers"][server.name] = {"note": server.note, "command": server.command,
                                               "systems": table}
        for server in (garage, rclone_server) if not args.no_offload else ():
            log(f"offload through {server.name}")
            offload_mount = TierfsMount(work, server, args.tierfs,
                                        work / f"offload-data-{server.name}",
                                        work / f"offload-{server.name}.conf", log_level="info")
            offload_mount.data_dir.mkdir()
            tierfs_config(offload_mount.config_file, server, args.segment_mib)
            results["offload"][server.name] = measure_offload(
                args.tierfs, offload_mount, server, source, args.segment_mib, args.runs,
                64 * MIB, 2)
    finally:
        rclone_proc.send_signal(signal.SIGTERM)
        rclone_proc.wait()

    results.update({
        "segment_mib": args.segment_mib, "runs": args.runs, "random_reads": len(offsets),
        "big_mib": args.big_mib, "topic_segments": args.topic_segments,
        "topic_segment_mib": args.topic_segment_mib,
        "listing_segments": args.listing, "machine": machine(),
        "versions": versions(args.tierfs, args.rclone),
        "seconds": round(time.monotonic() - started),
    })
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.out} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
