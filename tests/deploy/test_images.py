"""Builds the runtime stages of docker/Dockerfile (scheduler, worker) with buildah and runs them,
without a Docker engine or a registry (CI has neither):

- The base is Debian bookworm made by `debootstrap --variant=minbase` and slimmed like the official
  debian:bookworm-slim (which is built the same way: same packages, no docs, manuals or
  translations), cached as a tarball under the build dir and imported into buildah's store under
  the name the Dockerfile's FROM uses.
- The build stage is replaced by one holding this checkout's binaries at the paths the build stage
  makes (/opt/radial/build/...); every other line of the runtime stages is built as written, with
  buildah's layer cache under the build dir, so a missing Debian package, file or path fails here.
- The images run in chroots of their own filesystems (mount and PID namespaces, one network
  namespace shared like a pod's) with the images' user, environment and working directory: the
  entrypoints' --help, ldd of every binary, the scheduler's default command and HEALTHCHECK, and a
  2-step CPU job of the tiny bundle from a worker image to the scheduler image's scheduler.
- Weaker, on purpose: the worker image's venv (several GB of CUDA wheels) is not installed from
  PyPI here. Its site-packages are the distributions docker/worker-requirements.txt resolves to in
  this checkout's .venv (same pinned torch), hard-linked and bind-mounted at the image's path.

Needs root (buildah, chroot, mounts, namespaces); skips without it. Timings of the last run are in
<build>/image-test/timings.json. Environment (set by ctest): RADIAL_BUILD_DIR, RADIAL_SCHEDULER_BIN,
RADIAL_WORKER_BIN, RADIAL_RADIALCTL_BIN, RADIAL_TEST_BUNDLE."""

import ctypes
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
WORKER_REQUIREMENTS = ROOT / "docker" / "worker-requirements.txt"
SUITE, VARIANT = "bookworm", "minbase"
MIRROR = os.environ.get("RADIAL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("RADIAL_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
# The debian.sources of the official image: updates and security too, so the stages' apt-get sees
# the same archive a real build would.
SOURCES = f"""Types: deb
URIs: {MIRROR}
Suites: {SUITE} {SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: {SECURITY_MIRROR}
Suites: {SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
# What makes debian:bookworm-slim slim (debuerreotype's): dpkg leaves documentation, manuals and
# translations out, now and in every later apt-get install ...
SLIM_EXCLUDES = ["/usr/share/doc/*", "/usr/share/groff/*", "/usr/share/info/*", "/usr/share/linda/*",
                 "/usr/share/lintian/*", "/usr/share/locale/*", "/usr/share/man/*"]
SLIM_DPKG = "".join(f"path-exclude {p}\n" for p in SLIM_EXCLUDES) + "path-include /usr/share/doc/*/copyright\n"
# ... and apt keeps neither downloaded packages nor its binary caches after a run.
_APT_CLEAN = "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"
SLIM_APT = f"""Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke {{ "{_APT_CLEAN}"; }};
APT::Update::Post-Invoke {{ "{_APT_CLEAN}"; }};
"""
# Where the build stage leaves what the runtime stages copy (WORKDIR /opt/radial, scripts/build.sh
# into build/, python3 -m venv /opt/venv); test_build_stage_makes_what_the_runtime_stages_copy
# checks the build stage still says so.
BUILD_PREFIX, SOURCE_PREFIX, VENV = "/opt/radial/build/", "/opt/radial/", "/opt/venv"
SITE_PACKAGES = VENV + "/lib/python3.11/site-packages"
RUNTIME_STAGES = ("scheduler", "worker")
WORKER_METRICS = "127.0.0.1:9091"
WORKER_READY = r'radial_worker_state\{.*state="(idle|busy)".*\} 1'


def _build_dir():
    path = os.environ.get("RADIAL_BUILD_DIR")
    if not path:
        pytest.skip("RADIAL_BUILD_DIR is not set (ctest sets it)")
    return Path(path)


def _env_path(name):
    path = os.environ.get(name)
    if not path:
        pytest.skip(f"{name} is not set (ctest sets it)")
    assert Path(path).exists(), f"{name}={path} does not exist (build it first)"
    return Path(path)


# --- the Dockerfile -------------------------------------------------------------------------------

def _logical_lines(text):
    """Instruction lines with continuations joined, comments and blank lines dropped."""
    lines = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _split_stages(text):
    """(text before the first FROM, [(stage name, raw text of the stage)])."""
    parts = re.split(r"(?im)^(?=FROM\s)", text)
    stages = []
    for part in parts[1:]:
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", part, re.IGNORECASE)
        assert match, f"every stage is named: {part.splitlines()[0]}"
        stages.append((match.group(1), part))
    return parts[0], stages


def _copies(stage_text):
    """[(from stage or None, [sources], destination)] of a stage's COPY instructions."""
    copies = []
    for line in _logical_lines(stage_text):
        if not line.upper().startswith("COPY "):
            continue
        words = shlex.split(line)[1:]
        flags = {w.split("=", 1)[0]: w.split("=", 1)[-1] for w in words if w.startswith("--")}
        assert set(flags) <= {"--from", "--chown", "--chmod"}, f"COPY flag this test cannot stage: {line}"
        paths = [w for w in words if not w.startswith("--")]
        copies.append((flags.get("--from"), paths[:-1], paths[-1]))
    return copies


def _apt_packages(stage_text):
    """The packages a stage's RUN lines apt-get install."""
    packages = []
    for line in _logical_lines(stage_text):
        for command in re.findall(r"apt-get install ([^&;|]*)", line):
            packages += [word for word in command.split() if not word.startswith("-")]
    return packages


def _copied_to(sources, destination):
    """Where each source lands, with COPY's rule: into DEST/ when it ends in / or takes several."""
    if destination.endswith("/") or len(sources) > 1:
        return [destination.rstrip("/") + "/" + Path(s.rstrip("/")).name for s in sources]
    return [destination]


def _base_reference(preamble, stage_text):
    """The image a stage starts FROM, with the global ARG defaults substituted."""
    args = dict(re.findall(r"(?m)^ARG\s+(\w+)=(\S+)", preamble))
    reference = stage_text.split()[1]
    reference = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], reference)
    name, tag = reference.rsplit(":", 1)
    if "/" not in name:
        name = "library/" + name
    if name.count("/") == 1:
        name = "docker.io/" + name
    return f"{name}:{tag}"


# --- privileges and processes ---------------------------------------------------------------------

def _die_with_parent():
    """preexec_fn: the child (nsenter/unshare, running as root) gets SIGKILL when pytest dies; its
    --kill-child then takes the namespace's processes down with it."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _require_root():
    """Skips, saying why, where this machine cannot make containers; fails where it could but a
    tool is missing."""
    if os.geteuid() != 0:
        pytest.skip("needs root: buildah's chroot isolation, debootstrap, chroot and mount/PID/network "
                    "namespaces (CI runs ctest as root)")
    probe = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--net", "chroot", "/", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"root, but namespaces or chroot are refused here: {probe.stderr.strip()}")
    missing = [tool for tool in ("buildah", "debootstrap", "nsenter") if not shutil.which(tool)]
    assert not missing, f"{', '.join(missing)} missing: run scripts/setup.sh"


class Buildah:
    """buildah on a store of its own under the build dir, so its layer cache survives runs."""

    def __init__(self, work):
        self.root = work / "storage"
        self.runroot = Path(tempfile.mkdtemp(prefix="radial-buildah-run-"))
        self.driver = os.environ.get("RADIAL_BUILDAH_STORAGE_DRIVER", "overlay")

    def __call__(self, *args, timeout=1200):
        command = ["buildah", "--root", str(self.root), "--runroot", str(self.runroot),
                   "--storage-driver", self.driver, *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, \
            f"buildah {' '.join(args[:3])}... failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    def has_image(self, reference, label):
        result = subprocess.run(["buildah", "--root", str(self.root), "--runroot", str(self.runroot),
                                 "--storage-driver", self.driver, "inspect", "--type", "image", "--format",
                                 '{{index .Docker.Config.Labels "radial.base"}}', reference],
                                capture_output=True, text=True, timeout=60)
        return result.returncode == 0 and result.stdout.strip() == label


def _remove_tree(path):
    """rm -rf that first unmounts what a killed debootstrap or buildah left mounted inside path."""
    if not path.exists():
        return
    inside = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
              if line.split()[1].startswith(f"{path.resolve()}/")]
    for mountpoint in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    shutil.rmtree(path)


def _bound_store(store, limit_bytes=4 << 30):
    """Each changed binary leaves a few MB of unreferenced layers; past the limit the store starts
    over (the base tarball stays, so that costs the apt-get layers, about 1.5 min)."""
    if not store.exists():
        return
    used = int(subprocess.run(["du", "-sb", str(store)], capture_output=True, text=True).stdout.split()[0])
    if used > limit_bytes:
        _remove_tree(store)


def _base_tarball(work):
    """A debootstrapped bookworm as a tarball, made once per key (suite, variant, mirrors, arch)."""
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    recipe = [SUITE, VARIANT, MIRROR, SECURITY_MIRROR, arch, SOURCES, SLIM_DPKG, SLIM_APT]
    key = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]
    tarball = work / f"debian-{SUITE}-{VARIANT}-{key}.tar"
    if tarball.exists():
        return tarball, key, 0.0
    start = time.monotonic()
    target = work / "debootstrap"
    _remove_tree(target)
    result = subprocess.run(["debootstrap", f"--variant={VARIANT}", f"--arch={arch}", SUITE, str(target), MIRROR],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"debootstrap failed (is {MIRROR} reachable?):\n{result.stdout[-3000:]}"
    (target / "etc/apt/sources.list").unlink(missing_ok=True)
    (target / "etc/apt/sources.list.d/debian.sources").write_text(SOURCES)
    (target / "etc/dpkg/dpkg.cfg.d/slim").write_text(SLIM_DPKG)
    (target / "etc/apt/apt.conf.d/slim").write_text(SLIM_APT)
    for pattern in SLIM_EXCLUDES:
        for entry in target.glob(pattern.lstrip("/")):
            if entry.is_dir() and not entry.is_symlink():
                for file in [f for f in entry.rglob("*") if not f.is_dir() and f.name != "copyright"]:
                    file.unlink()
            elif entry.name != "copyright":
                entry.unlink()
    for cache in ("var/cache/apt", "var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (target / cache).glob("*"):
            if entry.is_file():
                entry.unlink()
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(target), "--numeric-owner", "-cf", str(partial), "."], check=True, timeout=600)
    partial.rename(tarball)
    _remove_tree(target)
    for stale in work.glob(f"debian-{SUITE}-{VARIANT}-*.tar"):
        if stale != tarball:
            stale.unlink()
    return tarball, key, time.monotonic() - start


def _import_base(buildah, tarball, key, reference):
    if buildah.has_image(reference, key):
        return
    container = buildah("from", "scratch").strip()
    buildah("add", container, str(tarball), "/")
    buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--cmd", "bash", "--label", f"radial.base={key}", container)
    buildah("commit", "--format", "docker", "-q", container, reference)
    buildah("rm", container)


# --- the runtime venv (weaker: from this checkout's .venv) ----------------------------------------

def _requirements(path):
    return [Requirement(line.split("#")[0].strip()) for line in path.read_text().splitlines()
            if line.split("#")[0].strip()]


def _runtime_distributions():
    """The distributions pip installs for docker/worker-requirements.txt, as this interpreter's
    (.venv's) metadata resolves them: the pins must match what is installed."""
    todo, found, extras = _requirements(WORKER_REQUIREMENTS), {}, {}
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found and set(requirement.extras) <= extras[name]:
            continue
        extras.setdefault(name, set()).update(requirement.extras)
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{requirement.name} (needed by docker/worker-requirements.txt) is not in {sys.prefix}")
        assert requirement.specifier.contains(distribution.version, prereleases=True), \
            f"{sys.prefix} has {name} {distribution.version}; the runtime venv needs {requirement}"
        found[name] = distribution
        for line in distribution.requires or []:
            dependency = Requirement(line)
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": extra})
                                                 for extra in ["", *sorted(extras[name])]):
                todo.append(dependency)
    return found


def _link_site_packages(destination):
    """Hard-links (copies across file systems) the runtime distributions' files into destination."""
    shutil.rmtree(destination, ignore_errors=True)
    names = sorted(_runtime_distributions())
    for name in names:
        distribution = metadata.distribution(name)
        for file in distribution.files or []:
            if str(file).startswith(".."):  # console scripts: pip writes its own for /opt/venv/bin
                continue
            source, target = Path(distribution.locate_file(file)), destination / file
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except FileExistsError:
                pass
            except OSError:
                shutil.copy2(source, target)
    return names


def _venv_skeleton(path):
    """What `python3 -m venv /opt/venv` makes with the image's python, minus site-packages' content."""
    (path / "bin").mkdir(parents=True)
    (path / "lib/python3.11/site-packages").mkdir(parents=True)
    (path / "lib64").symlink_to("lib")
    (path / "bin/python3").symlink_to("/usr/bin/python3")
    (path / "bin/python").symlink_to("python3")
    (path / "bin/python3.11").symlink_to("python3")
    (path / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11\n")


# --- images ---------------------------------------------------------------------------------------

def _stage_context(context, build_dir, stages):
    """The build context: a Dockerfile whose build stage is this checkout's binaries at the build
    stage's paths (prebuilt/), then the runtime stages as written; and the files they copy."""
    shutil.rmtree(context, ignore_errors=True)
    prebuilt = context / "prebuilt"
    prebuilt.mkdir(parents=True)
    for name in RUNTIME_STAGES:
        for from_stage, sources, _ in _copies(stages[name]):
            for source in sources:
                if from_stage is None:
                    assert source not in (".", "./"), f"{name}: COPY . is not staged by this test"
                    local, staged = ROOT / source, context / source
                else:
                    assert from_stage == "build", f"{name}: COPY --from={from_stage} is not staged by this test"
                    path = source.rstrip("/")
                    staged = prebuilt / path.lstrip("/")
                    if path == VENV:
                        if not staged.exists():
                            _venv_skeleton(staged)
                        continue
                    if path.startswith(BUILD_PREFIX):
                        local = build_dir / path[len(BUILD_PREFIX):]
                    elif path.startswith(SOURCE_PREFIX):
                        local = ROOT / path[len(SOURCE_PREFIX):]
                    else:
                        pytest.fail(f"{name}: the build stage makes nothing at {source} that this test knows")
                assert local.exists(), f"{name}: copies {source}, but {local} does not exist (build it)"
                staged.parent.mkdir(parents=True, exist_ok=True)
                if local.is_dir():
                    shutil.copytree(local, staged, symlinks=True, dirs_exist_ok=True)
                else:
                    shutil.copy2(local, staged)


def _generated_dockerfile(preamble, stages):
    text = preamble + "FROM scratch AS build\nCOPY prebuilt/ /\n\n"
    return text + "".join(stages[name] for name in RUNTIME_STAGES)


@pytest.fixture(scope="module")
def images():
    """The built runtime images ("stages": reference, Docker config and COPY list of each), the
    buildah store, the runtime site-packages and the run's timings."""
    _require_root()
    build_dir = _build_dir()
    work = build_dir / "image-test"
    work.mkdir(exist_ok=True)
    preamble, stage_list = _split_stages(DOCKERFILE.read_text())
    stages = dict(stage_list)
    assert stage_list[0][0] == "build" and set(RUNTIME_STAGES) <= set(stages)
    buildah = Buildah(work)
    for container in buildah("containers", "--quiet").split():  # left by a run that was killed
        buildah("rm", container)
    _bound_store(buildah.root)
    timings = {}
    start = time.monotonic()
    tarball, key, timings["debootstrap_s"] = _base_tarball(work)
    bases = {_base_reference(preamble, stages[name]) for name in RUNTIME_STAGES}
    for reference in bases:
        _import_base(buildah, tarball, key, reference)
    context = work / "context"
    _stage_context(context, build_dir, stages)
    (context / "Dockerfile").write_text(_generated_dockerfile(preamble, stages))
    built = {}
    for name in RUNTIME_STAGES:
        stage_start = time.monotonic()
        reference = f"localhost/radial-image-test/{name}:latest"
        buildah("bud", "--layers", "--pull=never", "--isolation", "chroot", "--format", "docker",
                "--target", name, "-t", reference, "-f", str(context / "Dockerfile"), str(context))
        timings[f"build_{name}_s"] = time.monotonic() - stage_start
        config = json.loads(buildah("inspect", "--type", "image", reference))["Docker"]["config"]
        built[name] = {"reference": reference, "config": config, "copies": _copies(stages[name]),
                       "text": stages[name]}
    timings["images_ready_s"] = time.monotonic() - start
    site_start = time.monotonic()
    site_packages = work / "venv-site-packages"
    _link_site_packages(site_packages)
    timings["venv_link_s"] = time.monotonic() - site_start
    yield {"stages": built, "buildah": buildah, "site_packages": site_packages, "work": work,
           "timings": timings}
    timings["total_s"] = time.monotonic() - start
    (work / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=1) + "\n")
    shutil.rmtree(buildah.runroot, ignore_errors=True)


class Container:
    """A working container's filesystem (buildah mount), run like `docker run` would: the image's
    user, environment and working directory, /proc, /dev and /sys, optional read-only binds, in
    its own mount and PID namespaces and in the given network namespace."""

    def __init__(self, images, stage, binds=()):
        self.hostname = f"radial-{stage}"
        self.buildah = images["buildah"]
        self.config = images["stages"][stage]["config"]
        self.name = self.buildah("from", "--pull=never", images["stages"][stage]["reference"]).strip()
        self.root = Path(self.buildah("mount", self.name).strip())
        self.binds = list(binds)
        if stage == "worker":
            self.binds.append((images["site_packages"], SITE_PACKAGES))

    def remove(self):
        self.buildah("umount", self.name)
        self.buildah("rm", self.name)

    def _environment(self, user):
        env = dict(item.split("=", 1) for item in self.config.get("Env") or [])
        if "HOME" not in env:  # as Docker does: the user's home from the image's passwd, else /
            uid = user.split(":")[0]
            homes = {f.split(":")[2]: f.split(":")[5] for f in (self.root / "etc/passwd").read_text().splitlines()}
            env["HOME"] = homes.get(uid, "/")
        env.setdefault("HOSTNAME", self.hostname)
        return env

    def command(self, argv, netns=None, user=None):
        """argv run inside the container (argv[0] resolved by the image's PATH)."""
        user = user or self.config.get("User") or "0:0"
        if ":" not in user:
            user += ":" + user
        env = self._environment(user)
        mounts = ['mount -t proc proc "$R/proc"', 'mount --rbind /dev "$R/dev"', 'mount -t sysfs -o ro sysfs "$R/sys"']
        for source, target in self.binds:
            mounts.append(f'mkdir -p "$R{target}" && mount --bind {shlex.quote(str(source))} "$R{target}" '
                          f'&& mount -o remount,bind,ro "$R{target}"')
        # sh stays PID 1 and root, so --kill-child still ends the namespace once chroot dropped to
        # the image's user; a command after chroot keeps dash from exec'ing it.
        script = ("set -e; R=$1; shift; hostname \"$HN\"; " + "; ".join(mounts) +
                  '; chroot --userspec="$U" "$R" "$@"; exit $?')
        wrapped = ["unshare", "--mount", "--pid", "--uts", "--fork", "--kill-child", "env", f"U={user}",
                   f"HN={self.hostname}", "sh", "-c",
                   script, "sh", str(self.root), "/usr/bin/env", "-i", "-C", self.config.get("WorkingDir") or "/",
                   *[f"{k}={v}" for k, v in env.items()], *argv]
        return (["nsenter", f"--net=/proc/{netns}/ns/net"] if netns else []) + wrapped

    def run(self, argv, netns=None, user=None, timeout=120):
        return subprocess.run(self.command(argv, netns, user), capture_output=True, text=True, timeout=timeout,
                              preexec_fn=_die_with_parent)

    def start(self, argv, log, netns=None):
        return subprocess.Popen(self.command(argv, netns), stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)

    def entrypoint(self):
        return self.config["Entrypoint"]


def _stop(process):
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


# `ip link set lo up` without iproute2, run inside the new network namespace: SIOCGIFFLAGS, then
# SIOCSIFFLAGS with IFF_UP, on a struct ifreq padded to its 40 bytes.
LOOPBACK_UP = """
import fcntl, socket, struct
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH22x", fcntl.ioctl(sock, 0x8913, struct.pack("16sH22x", b"lo", 0)))[1]
fcntl.ioctl(sock, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))
"""


class NetworkNamespace:
    """A network namespace with only loopback, held by a sleeping process: the images' fixed ports
    (50051, 9090, ...) cannot collide with anything on the machine."""

    def __init__(self):
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"], preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self.holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline, "unshare --net did not make a namespace"
            time.sleep(0.01)
        subprocess.run(self.host([sys.executable, "-c", LOOPBACK_UP]), check=True, timeout=60)

    @property
    def pid(self):
        return self.holder.pid

    def host(self, argv):
        """argv from this machine's filesystem, inside the namespace."""
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", *argv]

    def close(self):
        _stop(self.holder)


def _wait_for(check, what, timeout, process=None, log=None):
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what}: the process exited with {process.returncode}:\n{Path(log.name).read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s" + (f":\n{Path(log.name).read_text()[-4000:]}" if log else ""))
        time.sleep(0.5)


def _worker_has_metrics():
    result = subprocess.run([str(_env_path("RADIAL_WORKER_BIN")), "--help"], capture_output=True, text=True, timeout=60)
    return "--metrics-listen" in result.stdout


@pytest.fixture(scope="module")
def pod(images):
    """The scheduler image with its default command (as `docker run radial-scheduler`), and a worker
    image serving the tiny bundle on CPU against it, in one network namespace."""
    bundle = _env_path("RADIAL_TEST_BUNDLE")
    radialctl = _env_path("RADIAL_RADIALCTL_BIN")
    logs = images["work"] / "logs"
    logs.mkdir(exist_ok=True)
    netns = NetworkNamespace()
    scheduler = Container(images, "scheduler")
    worker = Container(images, "worker", binds=[(bundle, "/models/tiny")])
    processes, log_files = [], []
    try:
        command = scheduler.config["Cmd"]
        port = command[command.index("--listen") + 1].rsplit(":", 1)[1]
        probe = scheduler.config["Healthcheck"]["Test"]
        assert probe[0] == "CMD", probe
        before = scheduler.run(probe[1:], netns.pid, timeout=30)
        assert before.returncode != 0, "the HEALTHCHECK passes with no scheduler running"
        start = time.monotonic()
        scheduler_log = open(logs / "scheduler.log", "w")
        log_files.append(scheduler_log)
        processes.append(scheduler.start(scheduler.entrypoint() + command, scheduler_log, netns.pid))

        def healthy():
            return scheduler.run(probe[1:], netns.pid, timeout=30).returncode == 0
        _wait_for(healthy, "the scheduler image's HEALTHCHECK", 60, processes[0], scheduler_log)
        worker_args = ["--scheduler", f"127.0.0.1:{port}", "--bundle", "/models/tiny", "--device", "cpu",
                       "--warmup", "off"]
        if _worker_has_metrics():
            worker_args += ["--metrics-listen", WORKER_METRICS]
        worker_log = open(logs / "worker.log", "w")
        log_files.append(worker_log)
        processes.append(worker.start(worker.entrypoint() + worker_args, worker_log, netns.pid))

        def models():
            listed = subprocess.run(netns.host([str(radialctl), "--server", f"127.0.0.1:{port}", "models",
                                                "--json"]), capture_output=True, text=True, timeout=30)
            return listed.returncode == 0 and "wan2.1-tiny" in listed.stdout
        _wait_for(models, "the worker image's worker announcing wan2.1-tiny", 180, processes[1], worker_log)
        images["timings"]["pod_ready_s"] = time.monotonic() - start
        yield {"netns": netns, "scheduler": scheduler, "worker": worker, "radialctl": radialctl,
               "processes": processes, "logs": logs, "server": f"127.0.0.1:{port}"}
    finally:
        for process in processes:
            _stop(process)
        for log in log_files:
            log.close()
        scheduler.remove()
        worker.remove()
        netns.close()


# --- tests ----------------------------------------------------------------------------------------

def test_hadolint_is_clean():
    hadolint = ROOT / ".venv" / "bin" / "hadolint"
    if not hadolint.exists():
        hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint missing: run scripts/setup.sh (docker/requirements-lint.txt)"
    result = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_worker_venv_is_the_build_torch_and_nothing_for_tests():
    build = {canonicalize_name(r.name): r for r in _requirements(ROOT / "requirements.txt")}
    runtime = {canonicalize_name(r.name): r for r in _requirements(WORKER_REQUIREMENTS)}
    assert str(runtime["torch"].specifier) == str(build["torch"].specifier), \
        "docker/worker-requirements.txt and requirements.txt pin different torch versions"
    assert not set(runtime) & {"pytest", "diffusers", "transformers", "grpcio-tools"}, runtime


def test_build_stage_makes_what_the_runtime_stages_copy():
    """The paths this test stages the build stage's output at are where the build stage puts it."""
    stages = dict(_split_stages(DOCKERFILE.read_text())[1])
    build = _logical_lines(stages["build"])
    assert f"WORKDIR {SOURCE_PREFIX.rstrip('/')}" in build
    run = " ".join(line for line in build if line.startswith("RUN "))
    assert "scripts/build.sh" in run and "RADIAL_BUILD_DIR" not in run, "build.sh builds into build/"
    assert f"python3 -m venv {VENV}" in run and "-r docker/worker-requirements.txt" in run
    for name in RUNTIME_STAGES:
        assert not [c for c in _copies(stages[name]) if c[0] not in (None, "build")], name


def test_images_copy_the_binaries_ctest_built():
    build_dir = _build_dir()
    stages = dict(_split_stages(DOCKERFILE.read_text())[1])
    for name, variable in (("scheduler", "RADIAL_SCHEDULER_BIN"), ("worker", "RADIAL_WORKER_BIN")):
        sources = [source for from_stage, sources, _ in _copies(stages[name]) if from_stage == "build"
                   for source in sources if Path(source).name == f"radial-{name}"]
        assert len(sources) == 1 and sources[0].startswith(BUILD_PREFIX), f"{name}: {sources}"
        local = build_dir / sources[0][len(BUILD_PREFIX):]
        assert local.exists() and local.samefile(_env_path(variable)), f"{name}: stages {local}, ctest built {variable}"


def test_images_run_as_a_user_with_probes(images):
    for name, stage in images["stages"].items():
        config = stage["config"]
        uid = (config.get("User") or "0").split(":")[0]
        assert uid.isdigit() and int(uid) != 0, \
            f"{name}: runs as {config.get('User')!r}, expected a numeric non-root uid"
        assert Path(config["Entrypoint"][0]).name == f"radial-{name}", config["Entrypoint"]
    scheduler = images["stages"]["scheduler"]["config"]
    assert scheduler["Healthcheck"]["Test"][0] == "CMD", scheduler.get("Healthcheck")
    assert "--metrics-listen" in scheduler["Cmd"], "the HEALTHCHECK probes /metrics of the default command"


def test_scheduler_image_has_no_python_torch_or_ffmpeg(images):
    container = Container(images, "scheduler")
    try:
        found = [str(p.relative_to(container.root)) for pattern in ("python3*", "libtorch*", "libc10*", "libavcodec*",
                                                                  "libcudart*")
                 for directory in ("usr/bin", "usr/lib", "usr/lib/x86_64-linux-gnu", "usr/local")
                 for p in (container.root / directory).glob(pattern)]
        assert not found, found
    finally:
        container.remove()


def _elf_files(container, copies):
    files = []
    for from_stage, sources, destination in copies:
        if from_stage is None:
            continue
        for target in _copied_to(sources, destination):
            path = container.root / target.lstrip("/")
            if path.is_file() and path.read_bytes()[:4] == b"\x7fELF":
                files.append(target)
    return files


@pytest.mark.parametrize("stage", RUNTIME_STAGES)
def test_every_library_resolves_inside_the_image(images, stage):
    container = Container(images, stage)
    try:
        files = _elf_files(container, images["stages"][stage]["copies"])
        assert files, f"{stage}: no binaries copied from the build stage"
        result = container.run(["ldd", *files], user="0:0")
        assert result.returncode == 0, result.stdout + result.stderr
        missing = [line.strip() for line in result.stdout.splitlines()
                   if "not found" in line and not line.strip().startswith("libcuda.so.1")]
        assert not missing, f"{stage}: libraries the image lacks (a Debian package missing from its apt-get " \
                            f"install, or LD_LIBRARY_PATH):\n" + "\n".join(missing)
        # And no library package more than they link: each one the stage installs holds one of them.
        linked = {line.split("=>")[0].strip() for line in result.stdout.splitlines() if "=>" in line}
        for package in _apt_packages(images["stages"][stage]["text"]):
            if not package.startswith("lib"):
                continue
            listing = next(container.root.glob(f"var/lib/dpkg/info/{package}[.:]*list"), None)
            assert listing, f"{stage}: {package} is not installed"
            files = {Path(line).name for line in listing.read_text().splitlines()}
            assert files & linked, f"{stage}: installs {package}, but no copied binary links a library of it"
    finally:
        container.remove()


@pytest.mark.parametrize("stage", RUNTIME_STAGES)
def test_entrypoint_prints_its_usage_inside_the_image(images, stage):
    container = Container(images, stage)
    try:
        result = container.run(container.entrypoint() + ["--help"])
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith(f"usage: radial-{stage}"), result.stdout[:200]
    finally:
        container.remove()


def test_worker_venv_loads_torch_and_has_nothing_else(images):
    container = Container(images, "worker")
    try:
        source = ("import importlib.util, sys, torch; "
                  "print(sys.version_info[:2], torch.__version__, torch.__file__); "
                  "print([m for m in ('pytest', 'diffusers', 'transformers') if importlib.util.find_spec(m)])")
        result = container.run(["python", "-c", source])
        assert result.returncode == 0, result.stdout + result.stderr
        version, extra = result.stdout.splitlines()[-2:]
        torch_version = next(iter(_requirements(WORKER_REQUIREMENTS)[0].specifier)).version
        assert version.startswith(f"{tuple(sys.version_info[:2])} {torch_version}"), \
            f"the image's Python and torch, then the .venv's {sys.version_info[:2]}: {version}"
        assert f"{SITE_PACKAGES}/torch/__init__.py" in version, version
        assert extra == "[]", f"the runtime venv has test or export packages: {extra}"
    finally:
        container.remove()


def test_scheduler_default_command_is_healthy(pod):
    scheduler = pod["scheduler"]
    result = scheduler.run(scheduler.config["Healthcheck"]["Test"][1:], pod["netns"].pid)
    assert result.returncode == 0, result.stderr
    stored = scheduler.root / "var/lib/radial/jobs.db"
    assert stored.exists(), "the default --data-dir is the image's /var/lib/radial"


def test_two_step_job_from_the_worker_image_to_the_scheduler_image(pod, tmp_path):
    video = tmp_path / "job.mp4"
    result = subprocess.run(pod["netns"].host([str(pod["radialctl"]), "--server", pod["server"],
                                               "generate", "a lighthouse at dusk", "--width", "64", "--height", "64",
                                               "--frames", "5", "--steps", "2", "-o", str(video)]),
                            capture_output=True, text=True, timeout=600)
    worker_log = (pod["logs"] / "worker.log").read_text()[-4000:]
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\nworker:\n{worker_log}"
    data = video.read_bytes()
    assert data[4:8] == b"ftyp", data[:16]
    # The worker id defaults to hostname-pid: the job ran in the worker container (UTS namespace).
    assert re.search(r"assigned to worker radial-worker-\d+", (pod["logs"] / "scheduler.log").read_text())
    assert all(process.poll() is None for process in pod["processes"]), "a container exited during the job"


def test_worker_metrics_probe_documented_in_the_readme(pod):
    if not _worker_has_metrics():
        pytest.skip("this radial-worker has no --metrics-listen, which the documented worker probe needs")
    readme = (ROOT / "docker" / "README.md").read_text()
    assert WORKER_READY in readme, "docker/README.md documents the worker probe this test runs"
    worker = pod["worker"]
    result = worker.run(["radial-healthcheck", WORKER_METRICS, WORKER_READY], pod["netns"].pid)
    assert result.returncode == 0, result.stderr
