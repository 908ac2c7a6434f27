"""The server's settings: one typed object, read from ``WILDSCAN_*`` environment variables.

Every value has a safe default; :meth:`Settings.validate` refuses unsafe or contradictory
combinations with a :class:`SettingsError` that says what to change. The variables:

============================== ==================================================== ==============
variable                       meaning                                              default
============================== ==================================================== ==============
WILDSCAN_MODEL                 bundle name or path                                  shipped model
WILDSCAN_DATA_DIR              folder for the database and evidence copies          checkout's ``var/``
WILDSCAN_DB                    SQLite audit database                                DATA_DIR/wildscan.db
WILDSCAN_API_KEYS              extra keys, ``name=key,name=key`` (never logged)      none
WILDSCAN_ALLOW_ANONYMOUS       keyless local demo mode (loopback only); else keys   ``0``
WILDSCAN_AUTH                  old name: ``1`` accepted (keys), ``0`` refused       unset
WILDSCAN_HOST / WILDSCAN_PORT  where ``wildscan serve`` listens                     127.0.0.1:8000
WILDSCAN_MAX_UPLOAD_BYTES      largest accepted file                                25 MiB
WILDSCAN_MAX_PIXELS            largest accepted image (checked before decoding)     40 MP
WILDSCAN_MAX_DECODED_BYTES     memory one decode may take (from the header)         256 MiB
WILDSCAN_MAX_FILES             files per request                                    16
WILDSCAN_REQUEST_TIMEOUT_S     time budget of one classify request                  30
WILDSCAN_BATCH_MAX_SIZE        images per model call (micro-batch)                  4
WILDSCAN_BATCH_MAX_WAIT_MS     how long a batch waits for company                   2
WILDSCAN_THREADS               onnxruntime intra-op threads                         1
WILDSCAN_EXPLAIN_GRID          occlusion heatmap cells per side                     7
WILDSCAN_KEEP_EVIDENCE         keep a copy of every image, named by its SHA-256     ``0``
WILDSCAN_EVIDENCE_DIR          where those copies go                                DATA_DIR/evidence
WILDSCAN_MALLOC_ARENAS         glibc malloc arenas (caps memory growth under load)  2
============================== ==================================================== ==============
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from vision.errors import Reason, WildscanError
from vision.settings import REPO

PREFIX = "WILDSCAN_"
MIN_KEY_LENGTH = 16
HARD_MAX_UPLOAD_BYTES = 200 * 1024 * 1024
HARD_MAX_PIXELS = 200_000_000
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(WildscanError):
    """A setting that is malformed, out of range or unsafe in combination with another."""

    reason = Reason.BAD_SETTINGS


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know, validated on creation."""

    model: str | None = None
    data_dir: Path = field(default_factory=lambda: default_data_dir())
    db_path: Path = None  # type: ignore[assignment]  # None: DATA_DIR/wildscan.db (set on creation)
    api_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    allow_anonymous: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_decoded_bytes: int = 256 * 2**20
    max_files: int = 16
    request_timeout_s: float = 30.0
    batch_max_size: int = 4  # batches of 2-4 beat 16 on this CPU (benchmarks/bench_layout.py)
    batch_max_wait_ms: float = 2.0
    threads: int = 1
    explain_grid: int = 7
    keep_evidence: bool = False
    malloc_arenas: int = 2  # glibc malloc arenas of the server process (0: leave glibc's default)
    evidence_dir: Path = None  # type: ignore[assignment]  # None: DATA_DIR/evidence (set on creation)

    def __post_init__(self):
        data_dir = Path(self.data_dir)
        object.__setattr__(self, "data_dir", data_dir)
        object.__setattr__(self, "db_path", Path(self.db_path) if self.db_path else data_dir / "wildscan.db")
        object.__setattr__(
            self, "evidence_dir", Path(self.evidence_dir) if self.evidence_dir else data_dir / "evidence"
        )
        object.__setattr__(self, "api_keys", dict(self.api_keys))
        self.validate()

    @property
    def requires_key(self) -> bool:
        """True unless the explicit keyless demo mode is on."""
        return not self.allow_anonymous

    @property
    def max_request_bytes(self) -> int:
        """Largest request body accepted before parsing: every file at its limit, plus form fields."""
        return self.max_files * self.max_upload_bytes + 1024 * 1024

    def validate(self) -> None:
        """Raise :class:`SettingsError` for out-of-range values and unsafe combinations."""
        _check_range("max_upload_bytes", self.max_upload_bytes, 1, HARD_MAX_UPLOAD_BYTES)
        _check_range("max_pixels", self.max_pixels, 1, HARD_MAX_PIXELS)
        _check_range("max_decoded_bytes", self.max_decoded_bytes, 2**20, 16 * 2**30)
        _check_range("max_files", self.max_files, 1, 1000)
        _check_range("request_timeout_s", self.request_timeout_s, 0.1, 3600)
        _check_range("batch_max_size", self.batch_max_size, 1, 1024)
        _check_range("batch_max_wait_ms", self.batch_max_wait_ms, 0, 1000)
        _check_range("threads", self.threads, 1, 256)
        _check_range("malloc_arenas", self.malloc_arenas, 0, 64)
        _check_range("explain_grid", self.explain_grid, 2, 16)
        _check_range("port", self.port, 0, 65535)
        self._check_auth()
        for name, key in self.api_keys.items():
            if not name or len(key) < MIN_KEY_LENGTH:
                raise SettingsError(
                    f"WILDSCAN_API_KEYS: key {name!r} is shorter than {MIN_KEY_LENGTH} characters; "
                    "use `wildscan keys add NAME` to create a strong one"
                )

    def _check_auth(self) -> None:
        if self.allow_anonymous and not is_loopback(self.host):
            raise SettingsError(
                f"keyless demo mode only listens on loopback (127.0.0.1, ::1, localhost), not {self.host!r}; "
                "create a key with `wildscan keys add NAME` to serve other machines"
            )
        if self.allow_anonymous and self.api_keys:
            raise SettingsError("WILDSCAN_API_KEYS is set but WILDSCAN_ALLOW_ANONYMOUS=1 would ignore them; choose one")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Settings from ``environ`` (default ``os.environ``); keyword ``overrides`` win over it."""
        env = os.environ if environ is None else environ
        _check_old_auth_switch(env)
        values: dict = {}
        for f in fields(cls):
            raw = env.get(_ENV_NAMES.get(f.name, PREFIX + f.name.upper()))
            if raw is not None:
                values[f.name] = _parse(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _check_old_auth_switch(env: Mapping[str, str]) -> None:
    """``WILDSCAN_AUTH`` is the old switch for what ``WILDSCAN_ALLOW_ANONYMOUS`` now decides
    alone: ``1`` (keys, the default) is accepted unless the demo flag is on too; ``0`` is refused."""
    raw = env.get(PREFIX + "AUTH")
    if raw is None:
        return
    keys = _parse_bool(raw.strip())
    anonymous = _parse_bool(env.get(PREFIX + "ALLOW_ANONYMOUS", "0").strip())
    if keys and anonymous:
        raise SettingsError(
            "WILDSCAN_AUTH=1 asks for API keys and WILDSCAN_ALLOW_ANONYMOUS=1 turns them off; choose one"
        )
    if not keys:
        raise SettingsError(
            "WILDSCAN_AUTH=0 is no longer a switch: keyless local demo mode is WILDSCAN_ALLOW_ANONYMOUS=1 "
            "(or `wildscan serve --allow-anonymous`)"
        )


_ENV_NAMES = {"db_path": PREFIX + "DB"}
_BOOLS = {"allow_anonymous", "keep_evidence"}
_INTS = {
    "malloc_arenas",
    "port",
    "max_upload_bytes",
    "max_pixels",
    "max_decoded_bytes",
    "max_files",
    "batch_max_size",
    "threads",
    "explain_grid",
}
_FLOATS = {"request_timeout_s", "batch_max_wait_ms"}
_PATHS = {"data_dir", "db_path", "evidence_dir"}


def _parse(name: str, raw: str):
    """Convert one environment string to the field's type; :class:`SettingsError` if it cannot."""
    env_name = _ENV_NAMES.get(name, PREFIX + name.upper())
    text = raw.strip()
    try:
        if name in _BOOLS:
            return _parse_bool(text)
        if name in _INTS:
            return int(text.replace("_", ""))
        if name in _FLOATS:
            return float(text)
    except ValueError as e:
        raise SettingsError(f"{env_name}={raw!r}: {e}") from e
    if name in _PATHS:
        return Path(text).expanduser()
    if name == "api_keys":
        return _parse_keys(text, env_name)
    return text or None


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE - {''})}")


def _parse_keys(text: str, env_name: str) -> dict[str, str]:
    keys = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, key = item.partition("=")
        if not sep:
            raise SettingsError(f"{env_name}: expected name=key pairs separated by commas")
        keys[name.strip()] = key.strip()
    return keys


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise SettingsError(f"{PREFIX}{name.upper()} must be between {low} and {high}, got {value}")


def one_thread_per_worker() -> None:
    """Worker processes inherit one thread each for OpenMP/BLAS (their parallelism is the
    processes); a value already set by the user is kept."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


def default_data_dir() -> Path:
    """The server's folder when ``WILDSCAN_DATA_DIR`` is not set: ``var/`` of the checkout
    (whatever the current folder, so ``wildscan keys add`` run elsewhere writes the keys the
    server reads), else ``$XDG_DATA_HOME/wildscan`` (``~/.local/share/wildscan``)."""
    checkout = REPO / "pyproject.toml"
    if checkout.is_file():
        return REPO / "var"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "wildscan"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
