"""Model registry: bundled files, the real pooch download path against a local HTTP server, and clear errors."""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import pytest

from napari_cvdm import ModelFileError, load_model, registry
from napari_cvdm.model import ModelMetadata, save_model, sha256_of
from tests.conftest import tiny_network


class _Server:
    """A static file server on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served_model(tmp_path, monkeypatch):
    """A registered model 'test-model' that exists only on a local server (not bundled, not cached)."""
    root = tmp_path / "server"
    info = ModelMetadata(task="super-resolution", scale_factor=2, name="test-model")
    file = save_model(root / "test-model.cvdm", tiny_network(residual=True), info)
    entry = registry.RegisteredModel("test-model", "test-model.cvdm", sha256_of(file), "a test model")
    monkeypatch.setitem(registry.REGISTRY, "test-model", entry)
    monkeypatch.setenv("NAPARI_CVDM_CACHE", str(tmp_path / "cache"))
    server = _Server(root)
    monkeypatch.setenv("NAPARI_CVDM_MODEL_URL", server.url)
    yield server, root / "test-model.cvdm", tmp_path / "cache"
    server.close()


def test_first_fetch_downloads_second_fetch_uses_the_cache(served_model):
    server, _, cache = served_model
    progress = []
    model = load_model("test-model", progress=lambda done, total: progress.append(done))
    assert model.task == "super-resolution" and model.source == "test-model"
    assert server.requests == ["/test-model.cvdm"]
    assert (cache / "test-model.cvdm").is_file()
    assert progress and progress[-1] == (cache / "test-model.cvdm").stat().st_size
    load_model("test-model")
    assert server.requests == ["/test-model.cvdm"]  # no second request


def test_a_corrupted_download_is_refused(served_model):
    _, served_file, cache = served_model
    served_file.write_bytes(served_file.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelFileError, match="corrupted"):
        load_model("test-model")
    assert not (cache / "test-model.cvdm").exists()


def test_an_unreachable_server_explains_how_to_work_offline(served_model, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("NAPARI_CVDM_MODEL_URL", f"http://127.0.0.1:{port}/")
    with pytest.raises(ModelFileError, match=r"could not download model 'test-model'.*To work offline, copy"):
        load_model("test-model")


def test_a_copied_file_in_the_cache_works_offline(served_model, monkeypatch):
    server, served_file, cache = served_model
    cache.mkdir(parents=True)
    (cache / "test-model.cvdm").write_bytes(served_file.read_bytes())
    monkeypatch.setenv("NAPARI_CVDM_MODEL_URL", "http://127.0.0.1:9/")  # would fail if asked
    assert load_model("test-model").task == "super-resolution"
    assert server.requests == []


def test_bundled_models_are_hash_checked(tmp_path, monkeypatch):
    info = ModelMetadata(task="super-resolution", scale_factor=2)
    file = save_model(tmp_path / "bundled.cvdm", tiny_network(residual=True), info)
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path)
    entry = registry.RegisteredModel("bundled", "bundled.cvdm", "0" * 64, "x")
    monkeypatch.setitem(registry.REGISTRY, "bundled", entry)
    with pytest.raises(ModelFileError, match="does not match the registry"):
        load_model("bundled")
    entry = registry.RegisteredModel("bundled", "bundled.cvdm", sha256_of(file), "x")
    monkeypatch.setitem(registry.REGISTRY, "bundled", entry)
    assert load_model("bundled").source == "bundled"


def test_registered_default_models_are_bundled_and_valid():
    for name, entry in registry.REGISTRY.items():
        path = registry.BUNDLED_DIR / entry.filename
        assert path.is_file(), f"{name} is registered but not bundled"
        assert sha256_of(path) == entry.sha256
        assert path.stat().st_size <= 25 * 2**20
        assert load_model(name).info.name == name


def test_each_bundled_model_is_calibrated_at_its_default_steps_and_at_fewer():
    """A run at fewer steps than the default (the way to a faster reconstruction) gets its own calibration, not the
    default's: the spread shrinks with fewer steps, so the default's map would make the error bars too small."""
    for name in registry.REGISTRY:
        info = load_model(name).info
        default = info.sampler
        steps = {c.steps for c in info.calibrations if c.method == default.method and c.eta == default.eta}
        assert default.steps in steps, f"{name}: no calibration at its default {default.steps} steps"
        assert min(steps) < default.steps, f"{name}: calibrated only at {sorted(steps)} steps"


def test_user_models_are_listed_and_loaded_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_MODELS", str(tmp_path))
    save_model(tmp_path / "my-finetune.cvdm", tiny_network(), ModelMetadata(task="generic"))
    assert "my-finetune" in registry.list_models()
    assert load_model("my-finetune").task == "generic"


def test_unknown_name_lists_the_known_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_MODELS", str(tmp_path))
    with pytest.raises(ModelFileError, match="no model named 'nope'. Known models"):
        load_model("nope")
