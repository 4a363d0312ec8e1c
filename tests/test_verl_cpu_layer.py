"""The verl CPU compatibility layer (genbench_tasks.verl_cpu): each patch checks the names it touches and
fails naming the release and the patch on an incompatible verl (a fake verl tree built here), and the checks
pass on the installed release. Wiring main_ppo on CPU into the nightly is issue 12's remaining work."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from genbench_tasks.verl_cpu import VerlCPULayerError, check_path, family

ROOT = Path(__file__).resolve().parents[1]


# A fake verl 0.9.1 with every name the layer patches, in the expected shape, except those a test drops.
# Its __init__ loads VERL_USE_EXTERNAL_MODULES the way verl's does.
FAKE_VERL = {
    "verl/__init__.py": """
        import importlib, os
        __version__ = "0.9.1"
        for _m in filter(None, os.getenv("VERL_USE_EXTERNAL_MODULES", "").split(",")):
            importlib.import_module(_m)
    """,
    "verl/plugin/__init__.py": "",
    "verl/plugin/platform/__init__.py": "",
    "verl/plugin/platform/platform_base.py": "class PlatformBase:\n    pass\n",
    "verl/plugin/platform/platform_manager.py": """
        _current_platform = None
        class PlatformRegistry:
            _platforms = {}
            @classmethod
            def register(cls, platform):
                return lambda c: cls._platforms.setdefault(platform, c)
        def set_platform(platform):
            global _current_platform
            _current_platform = platform
    """,
    "verl/utils/__init__.py": "",
    "verl/utils/distributed.py": "def initialize_global_process_group_ray(timeout_second=None, backend=None):\n    pass\n",
    "verl/utils/model.py": "def load_valuehead_model(local_path, torch_dtype, model_config, trust_remote_code):\n    pass\n",
    "verl/workers/__init__.py": "",
    "verl/workers/engine/__init__.py": "",
    "verl/workers/engine/base.py": """
        class EngineRegistry:
            _engines = {"language_model": {"fsdp2": {"cuda": object}}, "value_model": {"fsdp2": {"cuda": object}}}
    """,
    "verl/workers/engine/fsdp/__init__.py": "",
    "verl/workers/engine/fsdp/transformer_impl.py": "class CPUOffloadPolicy:\n    def __init__(self, pin_memory=True):\n        pass\n",
    "verl/workers/rollout/__init__.py": "",
    "verl/workers/rollout/base.py": """
        _ROLLOUT_REGISTRY = {}
        class BaseRollout:
            async def update_weights(self, weights, **kwargs):
                pass
    """,
    "verl/workers/rollout/replica.py": """
        class TokenOutput:
            model_fields = {"token_ids": 1, "log_probs": 1, "stop_reason": 1, "extra_fields": 1}
        class RolloutReplica:
            def __init__(self):
                self.servers = []
                self._server_handle = None
                self._server_address = None
        class RolloutReplicaRegistry:
            @classmethod
            def register(cls, name, loader):
                pass
    """,
    "verl/trainer/__init__.py": "",
    "verl/trainer/ppo/__init__.py": "",
    "verl/trainer/ppo/v1/__init__.py": "",
    "verl/trainer/ppo/v1/replay_buffer.py": """
        class ReplayBuffer:
            def _materialize_batch(self, partition_id, selected_prompt_uids, partition_snapshot):
                pass
            def _sync_metadata_from_transfer_queue(self):
                pass
    """,
}


def fake_verl(root: Path, replace: dict[str, str] | None = None) -> Path:
    for rel, text in {**FAKE_VERL, **(replace or {})}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def test_fake_verl_with_every_name_passes(tmp_path):
    results = check_path(str(fake_verl(tmp_path)), "0.9.1")
    assert {r["name"] for r in results} == {p.name for p in family("0.9.1").patches()}
    assert all(r["ok"] for r in results)


@pytest.mark.parametrize(
    ("rel", "text", "message"),
    [
        (
            "verl/workers/rollout/base.py",
            "class BaseRollout:\n    async def update_weights(self, weights, **kw):\n        pass\n",
            "verl 0.9.1: CPU layer patch 'hf-rollout' cannot apply: "
            "verl.workers.rollout.base._ROLLOUT_REGISTRY does not exist",
        ),
        (
            "verl/utils/model.py",
            "def load_valuehead_model(path, dtype, config):\n    pass\n",
            "CPU layer patch 'critic-sdpa' cannot apply: verl.utils.model.load_valuehead_model(path, dtype, "
            "config) lacks parameter(s) local_path, torch_dtype, model_config, trust_remote_code",
        ),
        (
            "verl/workers/engine/base.py",
            "class EngineRegistry:\n    _engines = {}\n",
            "CPU layer patch 'fsdp-engines-on-cpu' cannot apply: EngineRegistry._engines has no "
            "language_model/fsdp2/cuda engine",
        ),
    ],
)
def test_layer_checks_fail_cleanly_on_an_incompatible_verl(tmp_path, rel, text, message):
    """What check-config runs (the check, not applied) and what verl's hook runs (check + apply) both stop
    with one line naming the verl version, the patch and the missing/misshapen name."""
    root = fake_verl(tmp_path, {rel: text})
    with pytest.raises(VerlCPULayerError) as exc:
        check_path(str(root), "0.9.1")
    assert message in str(exc.value)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(ROOT)])}
    env["VERL_USE_EXTERNAL_MODULES"] = "genbench_tasks.verl_cpu.hook"
    proc = subprocess.run([sys.executable, "-c", "import verl"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert message in proc.stderr.strip().splitlines()[-1]


def test_unsupported_release_family(tmp_path):
    with pytest.raises(
        VerlCPULayerError, match=r"verl 0\.7\.1: the CPU layer supports verl 0\.8\.x, 0\.9\.x"
    ):
        family("0.7.1")
    root = fake_verl(tmp_path, {"verl/__init__.py": '__version__ = "0.10.0"\n'})
    with pytest.raises(VerlCPULayerError, match=r"imported verl 0\.10\.0, expected 0\.9\.1"):
        check_path(str(root), "0.9.1")


def test_layer_checks_pass_on_the_installed_release():
    import importlib.metadata

    installed = importlib.metadata.version("verl")
    proc = subprocess.run(
        [sys.executable, "-m", "genbench_tasks.verl_cpu", "check", "--expect", installed],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ok" in proc.stdout and "hf-rollout" in proc.stdout
