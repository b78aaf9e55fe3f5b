"""Build KenLM's `lmplz` and `build_binary` once from the kenlm source package on PyPI, cached outside the repo.

The kenlm wheel only carries the query side (the `kenlm` Python module); estimating a model
needs the C++ programs, which the sdist contains. `python -m lm.tools` downloads the sdist with
pip, builds the two programs with cmake against Debian's boost, and copies them to
`$ASR_KENLM_HOME/bin` (default `~/.cache/asr-kenlm/bin`). A second run finds them and returns.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from asr.locking import exclusive_lock

KENLM_VERSION = "0.3.0"
KENLM_MAX_ORDER = 6
PROGRAMS = ("lmplz", "build_binary")
APT_PACKAGES = (
    "cmake g++ make libboost-program-options-dev libboost-system-dev libboost-thread-dev "
    "libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev"
)
INSTALL_HINT = f"install the build dependencies with: apt-get install {APT_PACKAGES}"


class ToolsError(RuntimeError):
    """The KenLM programs are missing or could not be built; the message says what to do."""


@dataclass(frozen=True)
class KenLMTools:
    lmplz: Path
    build_binary: Path


def cache_home() -> Path:
    """Where the built programs live: $ASR_KENLM_HOME, else ~/.cache/asr-kenlm (never inside the repo)."""
    return Path(os.environ.get("ASR_KENLM_HOME", Path.home() / ".cache" / "asr-kenlm")).expanduser()


def _tools_in(directory: Path) -> KenLMTools | None:
    paths = [directory / name for name in PROGRAMS]
    if all(path.is_file() and os.access(path, os.X_OK) for path in paths):
        return KenLMTools(*paths)
    return None


def find_tools() -> KenLMTools:
    """Paths of lmplz and build_binary: the cached build first, then $PATH; raises ToolsError if absent."""
    cached = _tools_in(cache_home() / "bin")
    if cached:
        return cached
    on_path = [shutil.which(name) for name in PROGRAMS]
    if all(on_path):
        return KenLMTools(*(Path(path) for path in on_path))
    raise ToolsError(f"KenLM's lmplz and build_binary are not in {cache_home() / 'bin'} or on PATH: run `python -m lm.tools`")


def check_build_prerequisites() -> None:
    """Fail early, naming the Debian packages, when the compiler or boost headers are missing."""
    missing = [tool for tool in ("cmake", "make", "g++") if shutil.which(tool) is None]
    headers = ("boost/program_options.hpp", "boost/thread.hpp", "boost/test/unit_test.hpp", "zlib.h")
    missing += [header for header in headers if not (Path("/usr/include") / header).exists()]
    if missing:
        raise ToolsError(f"cannot build KenLM, missing {', '.join(missing)}: {INSTALL_HINT}")


def _run(command: Sequence[str | Path], log: Path, cwd: Path | None = None) -> None:
    """Run one build step niced, its output appended to `log`; a failure names the log and the likely fix."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(map(str, command))}\n")
        out.flush()
        result = subprocess.run(list(map(str, command)), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(10))
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        hint = INSTALL_HINT if any(word in tail for word in ("Boost", "ZLIB", "CXX compiler", "Threads")) else f"see {log}"
        raise ToolsError(f"`{Path(str(command[0])).name}` failed while building KenLM ({hint}); end of {log}:\n{tail}")


def download_sdist(directory: Path, log: Path) -> Path:
    """The kenlm source archive from PyPI, fetched with pip (build dependencies as wheels, kenlm as source)."""
    command = [sys.executable, "-m", "pip", "download", f"kenlm=={KENLM_VERSION}", "--no-deps", "--no-binary", "kenlm", "-d", directory]
    _run(command, log)
    archives = sorted(directory.glob("kenlm-*.tar.gz"))
    if not archives:
        raise ToolsError(f"pip did not leave a kenlm source archive in {directory}; see {log}")
    return archives[0]


def unpack_sdist(archive: Path, directory: Path) -> Path:
    """Unpack the sdist and check that it carries the estimation code (lm/builder), not only the bindings."""
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    source = next((path for path in directory.glob("kenlm-*") if path.is_dir()), directory / "kenlm-missing")
    if not (source / "lm" / "builder" / "lmplz_main.cc").is_file():
        raise ToolsError(f"{archive.name} has no lm/builder/lmplz_main.cc: this kenlm sdist cannot build lmplz")
    return source


def compile_programs(source: Path, build: Path, log: Path, jobs: int) -> Path:
    """Configure with cmake and build only lmplz and build_binary; returns the folder holding them."""
    configure = ["cmake", "-S", source, "-B", build, "-DCMAKE_BUILD_TYPE=Release", f"-DKENLM_MAX_ORDER={KENLM_MAX_ORDER}"]
    _run(configure, log)
    _run(["cmake", "--build", build, "--target", *PROGRAMS, "--", f"-j{jobs}"], log)
    return build / "bin"


def install_programs(built: Path, destination: Path) -> KenLMTools:
    """Copy the programs into the cache atomically, so a half-copied binary is never found."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in PROGRAMS:
        partial = destination / f".{name}.partial"
        shutil.copy2(built / name, partial)
        partial.replace(destination / name)
    return KenLMTools(*(destination / name for name in PROGRAMS))


def ensure_tools(jobs: int = 2, verbose: bool = False) -> KenLMTools:
    """The cached programs, building them first if needed (a few minutes once, instant afterwards)."""
    home = cache_home()
    with exclusive_lock(home / ".build.lock"):  # one build at a time per cache: parallel test workers wait
        cached = _tools_in(home / "bin")
        if cached:
            return cached
        check_build_prerequisites()
        log = home / "build.log"
        log.write_text("")
        if verbose:
            print(f"building KenLM {KENLM_VERSION} lmplz and build_binary with -j{jobs}; log: {log}", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="kenlm-build-", dir=home) as work:
            work_dir = Path(work)
            source = unpack_sdist(download_sdist(work_dir, log), work_dir)
            built = compile_programs(source, work_dir / "build", log, jobs)
            return install_programs(built, home / "bin")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build (or find) the tools and print their paths."""
    parser = argparse.ArgumentParser(prog="python -m lm.tools", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", "-j", type=int, default=int(os.environ.get("ASR_KENLM_JOBS", "2")), help="parallel compile jobs (default 2)")
    args = parser.parse_args(argv)
    try:
        tools = ensure_tools(jobs=args.jobs, verbose=True)
    except ToolsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"lmplz: {tools.lmplz}\nbuild_binary: {tools.build_binary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
