"""Checkpoints: save → load → identical outputs, the thesis' deployment recipe for our
files and plain `.pth` state dicts, refusal of pickles that would run code (and proof
that they did not run), and one-line errors for corrupt or mismatched files."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from explorer_core import SimpleNN, load_pruned_model
from explorer_core.checkpoint import load_checkpoint, read_state, save_checkpoint
from explorer_core.errors import CheckpointError
from explorer_core.models import MLP, build_model, default_spec


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg, f"message must be one line: {msg!r}"
    return msg


def pruned_simplenn(seed: int = 0) -> MLP:
    """A 784-100-30-10 MLP, as a pruned thesis SimpleNN would be."""
    torch.manual_seed(seed)
    return MLP(784, [100, 30], 10)


def randomise_bn(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)


CASES = {
    "mlp": (lambda: default_spec("mlp", 1, 8, 10), (1, 8, 8)),
    "pruned_mlp": (lambda: {**default_spec("mlp"), "hidden": [100, 30]}, (1, 28, 28)),
    "cnn": (lambda: default_spec("cnn", 1, 28, 10), (1, 28, 28)),
    "resnet18": (lambda: default_spec("resnet18", 3, 32, 10), (3, 32, 32)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_save_load_gives_identical_outputs(tmp_path, case):
    make_spec, shape = CASES[case]
    torch.manual_seed(1)
    spec = make_spec()
    model = build_model(spec)
    randomise_bn(model)
    model.eval()
    x = torch.randn(3, *shape)
    want = model(x)
    path = save_checkpoint(model, spec, tmp_path / "best_model", meta={"val_acc": 91.5})
    assert path.name == "best_model.safetensors" and (tmp_path / "best_model.json").is_file()
    ckpt = load_checkpoint(path)
    assert not ckpt.model.training
    assert torch.equal(ckpt.model(x), want)
    assert ckpt.meta == {"val_acc": 91.5} and ckpt.spec["arch"] == spec["arch"]
    # also loadable through the JSON path and without the sidecar (spec in metadata)
    assert torch.equal(load_checkpoint(tmp_path / "best_model.json").model(x), want)
    (tmp_path / "best_model.json").unlink()
    assert torch.equal(load_checkpoint(path).model(x), want)


def test_pruned_mlp_checkpoint_records_its_widths(tmp_path):
    model = pruned_simplenn()
    path = save_checkpoint(model, default_spec("mlp"), tmp_path / "m")  # dense base spec
    info = json.loads((tmp_path / "m.json").read_text())
    assert info["spec"]["hidden"] == [100, 30] and info["spec"]["in"] == 784
    assert load_checkpoint(path).model.hidden == [100, 30]


def test_meta_cannot_overwrite_the_spec(tmp_path):
    model = pruned_simplenn()
    path = save_checkpoint(model, default_spec("mlp"), tmp_path / "m", meta={"spec": "junk"})
    assert load_checkpoint(path).model.hidden == [100, 30]


def test_thesis_recipe_with_our_safetensors(tmp_path):
    pruned = pruned_simplenn().eval()
    x = torch.randn(5, 1, 28, 28)
    path = save_checkpoint(pruned, default_spec("mlp"), tmp_path / "best_model")

    model = SimpleNN()
    load_pruned_model(model, path)
    out = model(x)

    assert torch.equal(out, pruned(x))
    assert model.hidden == [100, 30] and not model.training


def test_thesis_recipe_with_a_plain_pth_state_dict(tmp_path):
    pruned = pruned_simplenn(3).eval()
    x = torch.randn(5, 784)
    f = tmp_path / "model_pruned.pth"
    torch.save(pruned.state_dict(), f)

    model = SimpleNN()
    load_pruned_model(model, f)
    assert torch.equal(model(x), pruned(x))


def test_pth_wrapped_state_dicts_load(tmp_path):
    pruned = pruned_simplenn(4).eval()
    x = torch.randn(2, 784)
    f = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in pruned.state_dict().items()}}, f)
    model = load_pruned_model(SimpleNN(), f)
    assert torch.equal(model(x), pruned(x))
    ckpt = load_checkpoint(f, spec=default_spec("mlp"))  # a .pth plus a (dense) spec
    assert torch.equal(ckpt.model(x), pruned(x))


# ------------------------------------------------------------------ malicious pickles

class _TouchesFile:
    """Unpickling this would create `marker` (a stand-in for any code execution)."""

    def __init__(self, marker: Path, how: str):
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "system":
            return (os.system, (f"touch {self.marker}",))
        return (open, (str(self.marker), "w"))


def write_malicious(path: Path, marker: Path, how: str, fmt: str) -> None:
    payload = {"fc1.weight": torch.zeros(2, 2), "evil": _TouchesFile(marker, how)}
    if fmt == "torch.save":
        torch.save(payload, path)
    else:  # a raw pickle stream, as an attacker could write by hand
        path.write_bytes(pickle.dumps(_TouchesFile(marker, how), protocol=2))


@pytest.mark.parametrize("fmt", ["torch.save", "raw"])
@pytest.mark.parametrize("how", ["system", "open"])
def test_pth_that_would_run_code_is_refused_and_does_not_run(tmp_path, how, fmt):
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.pth"
    write_malicious(f, marker, how, fmt)
    assert not marker.exists()
    for load in (lambda: load_pruned_model(SimpleNN(), f),
                 lambda: load_checkpoint(f, spec=default_spec("mlp")),
                 lambda: read_state(f)):
        with pytest.raises(CheckpointError) as exc:
            load()
        msg = one_line(exc)
        assert "refused" in msg and "evil.pth" in msg
    assert not marker.exists(), "unpickling ran the payload"


def test_whole_pickled_model_is_refused_with_advice(tmp_path):
    f = tmp_path / "whole_model.pth"
    torch.save(SimpleNN(), f)  # the thesis' old habit: pickling the module object
    with pytest.raises(CheckpointError) as exc:
        load_pruned_model(SimpleNN(), f)
    msg = one_line(exc)
    assert "refused" in msg and "state dict" in msg


# ------------------------------------------------------------- corrupt / mismatched

@pytest.fixture
def saved(tmp_path) -> Path:
    return save_checkpoint(pruned_simplenn(), default_spec("mlp"), tmp_path / "best_model")


@pytest.mark.parametrize("damage", ["truncated", "header_only", "garbage", "empty",
                                    "huge_header"])
def test_corrupt_safetensors_are_refused(saved, damage):
    blob = saved.read_bytes()
    broken = {"truncated": blob[: len(blob) // 2], "header_only": blob[:40],
              "garbage": os.urandom(200), "empty": b"",
              "huge_header": (10 ** 12).to_bytes(8, "little") + blob[8:]}[damage]
    saved.write_bytes(broken)
    for load in (lambda: load_checkpoint(saved), lambda: load_pruned_model(SimpleNN(), saved)):
        with pytest.raises(CheckpointError) as exc:
            load()
        assert saved.name in one_line(exc)


def test_an_iterations_damaged_checkpoint_is_named_with_its_run_and_iteration(tmp_path):
    """Every iteration of a run saves best_model.safetensors, so a message naming only
    that did not say which run or iteration to redo."""
    folder = tmp_path / "runs" / "2026-12-06" / "my-run" / "3" / "prune_w_retrain"
    folder.mkdir(parents=True)
    saved = save_checkpoint(pruned_simplenn(), default_spec("mlp"), folder / "best_model")
    saved.write_bytes(saved.read_bytes()[:100])
    for load in (lambda: load_checkpoint(saved), lambda: load_pruned_model(SimpleNN(), saved)):
        with pytest.raises(CheckpointError) as exc:
            load()
        assert one_line(exc).startswith(
            "my-run/3/prune_w_retrain/best_model.safetensors is not a valid safetensors file")
    save_checkpoint(pruned_simplenn(), default_spec("mlp"), folder / "best_model")
    saved.with_suffix(".json").write_text("{not json")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(saved)
    assert "my-run/3/prune_w_retrain/best_model.json is not valid JSON" in one_line(exc)


def test_corrupt_pth_is_refused(tmp_path):
    f = tmp_path / "broken.pth"
    torch.save(pruned_simplenn().state_dict(), f)
    f.write_bytes(f.read_bytes()[:300])
    with pytest.raises(CheckpointError) as exc:
        load_pruned_model(SimpleNN(), f)
    assert "broken.pth" in one_line(exc)


def test_bytes_that_are_no_pytorch_file_are_called_corrupt_not_a_refused_pickle(tmp_path):
    """The restricted unpickler fails on any bytes, and its error read as a refusal of
    objects that "could run code" for a file that was no pickle at all."""
    f = tmp_path / "random.pth"
    f.write_bytes(bytes(range(1, 256)) * 12)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(f, spec=default_spec("mlp"))
    assert one_line(exc) == ("random.pth is corrupt or not a PyTorch file (neither a zip "
                             "archive nor a pickle)")


@pytest.mark.parametrize("text,word", [("{not json", "JSON"), ('{"val_acc": 3}', "spec"),
                                       ('{"spec": {"arch": "gpt"}}', "gpt"),
                                       ('{"spec": [1, 2]}', "spec")])
def test_bad_sidecar_json_is_refused(saved, text, word):
    saved.with_suffix(".json").write_text(text)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(saved)
    assert word in one_line(exc)


def test_sidecar_spec_that_does_not_match_the_weights_is_refused(saved):
    sidecar = saved.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    for spec, word in (({**info["spec"], "hidden": [256, 64]}, "hidden"),   # dense widths
                       ({**info["spec"], "hidden": [100]}, "unexpected"),  # other depth
                       ({**info["spec"], "in": 64, "input_shape": [1, 8, 8]}, "input"),
                       ({**info["spec"], "out": 7}, "classes"),
                       (default_spec("cnn", 1, 28, 10), "missing")):
        sidecar.write_text(json.dumps({"spec": spec}))
        with pytest.raises(CheckpointError) as exc:
            load_checkpoint(saved)
        assert word in one_line(exc), spec


def test_weights_for_another_input_size_are_refused_and_model_untouched(tmp_path):
    torch.manual_seed(0)
    digits_model = MLP(64, [20, 10], 10)
    path = save_checkpoint(digits_model, default_spec("mlp", 1, 8, 10), tmp_path / "d")
    model = SimpleNN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as exc:
        load_pruned_model(model, path)
    assert "input features" in one_line(exc)
    after = model.state_dict()
    assert model.hidden == [256, 64] and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(CheckpointError):
        load_checkpoint(path, spec=default_spec("mlp"))  # explicit spec: interface still checked


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(tmp_path / "nothing.safetensors")
    assert "not found" in one_line(exc)
    odd = tmp_path / "weights.npz"
    odd.write_bytes(b"PK")
    with pytest.raises(CheckpointError) as exc:
        load_pruned_model(SimpleNN(), odd)
    assert "unsupported" in one_line(exc)
    lonely = tmp_path / "lonely.pth"
    torch.save(pruned_simplenn().state_dict(), lonely)
    with pytest.raises(CheckpointError) as exc:  # no spec anywhere
        load_checkpoint(lonely)
    assert "lonely.json" in one_line(exc)
    torch.save({"a": 1, "b": "text"}, tmp_path / "notstate.pth")
    with pytest.raises(CheckpointError) as exc:
        load_pruned_model(SimpleNN(), tmp_path / "notstate.pth")
    assert "state dict" in one_line(exc)


def test_dotted_names_keep_their_stem(tmp_path):
    model = pruned_simplenn()
    path = save_checkpoint(model, default_spec("mlp"), tmp_path / "model.v2")
    assert path.name == "model.v2.safetensors"
    assert (tmp_path / "model.v2.json").is_file()
    assert load_checkpoint(path).model.hidden == [100, 30]


# ------------------------------------------------------------------ non-finite weights

def poisoned_simplenn(seed: int = 5) -> MLP:
    """A pruned SimpleNN with NaN in fc1.bias and -inf in fc2.weight: layer order names
    fc1.bias first, though a safetensors file lists fc2.weight before it."""
    model = pruned_simplenn(seed)
    with torch.no_grad():
        model.fc1.bias[7] = float("nan")
        model.fc2.weight[0, :3] = float("-inf")
    return model


def test_nan_weights_are_refused_by_every_loader_naming_the_first_bad_tensor(tmp_path):
    """A NaN checkpoint loaded fine and predicted "8 (nan%)"."""
    model = poisoned_simplenn()
    ours = save_checkpoint(model, default_spec("mlp"), tmp_path / "nan")
    pth = tmp_path / "nan.pth"
    torch.save(model.state_dict(), pth)
    for name, load in (("nan.safetensors", lambda: load_checkpoint(ours)),
                       ("nan.pth", lambda: load_checkpoint(pth, spec=default_spec("mlp"))),
                       ("nan.safetensors", lambda: load_pruned_model(SimpleNN(), ours)),
                       ("nan.pth", lambda: load_pruned_model(SimpleNN(), pth))):
        with pytest.raises(CheckpointError) as exc:
            load()
        msg = one_line(exc)
        assert msg.startswith(f"{name} has weights that are not finite: fc1.bias holds NaN "
                              "(1 of 100 values)"), msg


def test_inf_weights_are_refused_but_huge_finite_ones_load(tmp_path):
    """±inf is refused before the thesis model is touched; values whose float32 sum
    overflows to inf (the check's quick path sums each tensor) are no bad values."""
    model = pruned_simplenn(6)
    with torch.no_grad():
        model.fc3.bias[:2] = 3e38
    big = save_checkpoint(model, default_spec("mlp"), tmp_path / "big")
    assert torch.equal(load_checkpoint(big).model.fc3.bias, model.fc3.bias)
    with torch.no_grad():
        model.fc3.weight[2, 1] = float("inf")
    path = save_checkpoint(model, default_spec("mlp"), tmp_path / "inf")
    target = SimpleNN()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError) as exc:
        load_pruned_model(target, path)
    assert "fc3.weight holds ±inf (1 of 300 values)" in one_line(exc)
    assert target.hidden == [256, 64]
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.uint8])
def test_weights_that_are_not_floating_point_are_refused_by_every_loader(tmp_path, dtype):
    """load_state_dict casts silently: a 0/1 mask saved under fc2.weight loaded as the
    layer's weights, and the model predicted one class for everything."""
    from safetensors.torch import load_file, save_file

    model = pruned_simplenn()
    ours = save_checkpoint(model, default_spec("mlp"), tmp_path / "mask")
    state = load_file(ours)
    state["fc2.weight"] = state["fc2.weight"] > 0 if dtype is torch.bool \
        else state["fc2.weight"].round().to(dtype)
    meta = read_state(ours)[1]
    save_file(state, ours, metadata=meta)
    pth = tmp_path / "mask.pth"
    torch.save(state, pth)
    name = str(dtype).removeprefix("torch.")
    for load in (lambda: load_checkpoint(ours), lambda: load_checkpoint(pth, spec=default_spec("mlp")),
                 lambda: load_pruned_model(SimpleNN(), ours),
                 lambda: load_pruned_model(SimpleNN(), pth)):
        with pytest.raises(CheckpointError) as exc:
            load()
        assert f"fc2.weight holds {name}, not floating-point weights" in one_line(exc)


@pytest.mark.parametrize("layout, named", [
    ("coo", "fc1.weight, fc1.bias, fc2.weight …"),  # every tensor sparse
    ("csr", "fc1.weight, fc2.weight, fc3.weight"),  # the matrices (CSR is 2-D only)
    ("one", "fc2.weight")])
def test_sparse_tensors_are_refused_by_every_loader_naming_them(tmp_path, layout, named):
    """A .pth of sparse tensors beside a correct sidecar gave a ~2 500-character line,
    "cannot build the model of its spec (RuntimeError: Error(s) in loading state_dict …
    copy_() between dense and sparse Tensors is not implemented …)" once per parameter:
    the spec was fine. Saved by torch.save and read as every .pth is (weights_only)."""
    import warnings

    model = pruned_simplenn()
    save_checkpoint(model, default_spec("mlp"), tmp_path / "sparse")  # its sidecar
    state = model.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        if layout == "coo":
            state = {k: v.to_sparse() for k, v in state.items()}
        elif layout == "csr":
            state = {k: v.to_sparse_csr() if v.dim() == 2 else v for k, v in state.items()}
        else:
            state["fc2.weight"] = state["fc2.weight"].to_sparse()
    pth = tmp_path / "sparse.pth"
    torch.save(state, pth)
    target = SimpleNN()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    for load in (lambda: load_checkpoint(pth), lambda: load_checkpoint(pth, spec=default_spec("mlp")),
                 lambda: load_pruned_model(target, pth)):
        with pytest.raises(CheckpointError) as exc:
            load()
        assert one_line(exc) == (f"sparse.pth: sparse tensors are not supported ({named}); "
                                 "save the dense state dict (tensor.to_dense())")
    assert target.hidden == [256, 64]
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    # saved dense, as the message says, it loads
    torch.save({k: v.to_dense() for k, v in state.items()}, pth)
    assert torch.equal(load_checkpoint(pth).model.fc2.weight, model.fc2.weight)


def test_a_vae_checkpoint_is_called_an_autoencoder_not_an_unknown_model(tmp_path, capsys):
    """Inspect and prune-once said "unknown model 'fc_vae'; choose one of slp, mlp, …"
    for the model a train-time VAE run saves."""
    from explorer_core.cli import main
    from explorer_core.vae import FCVAE, spec_of_vae

    vae = FCVAE(64, [16], 4)
    path = save_checkpoint(vae, spec_of_vae(vae, [1, 8, 8]), tmp_path / "vae")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert one_line(exc) == ("vae.safetensors is a variational autoencoder (a train-time VAE "
                             "run's model), not a classifier; pick a classifier's checkpoint")
    assert main(["prune-once", "--checkpoint", str(path), "--criterion", "l1", "--ratio", "0.5",
                 "--no-latency", "--out", str(tmp_path / "small")]) == 2
    assert "is a variational autoencoder" in capsys.readouterr().err
    assert not list(tmp_path.glob("small*"))


# ------------------------------------------------------------------ share kept of a dense spec

def test_a_pth_with_the_dense_spec_records_the_share_of_hidden_units_it_kept(tmp_path):
    """Our checkpoints record percent_retained; a .pth loaded with the dense spec had none."""
    f = tmp_path / "pruned.pth"
    torch.save(pruned_simplenn().state_dict(), f)  # 100-30 of the dense 256-64
    ck = load_checkpoint(f, spec=default_spec("mlp"))
    assert ck.meta["percent_retained"] == pytest.approx(100 * (100 + 30) / (256 + 64))
    cnn_spec = {**default_spec("cnn", 1, 28, 10), "channels": [16, 32], "hidden": [128]}
    torch.manual_seed(0)
    small = build_model({**cnn_spec, "channels": [8, 16], "hidden": [32]})
    torch.save(small.state_dict(), tmp_path / "cnn.pth")  # conv channels and FC units alike
    ck = load_checkpoint(tmp_path / "cnn.pth", spec=cnn_spec)
    assert ck.meta["percent_retained"] == pytest.approx(100 * (8 + 16 + 32) / (16 + 32 + 128))
    saved = save_checkpoint(pruned_simplenn(), default_spec("mlp"), tmp_path / "own")
    assert "percent_retained" not in load_checkpoint(saved).meta  # its sidecar's spec is exact


def test_a_sidecar_that_is_not_the_weights_own_says_they_are_not_one_checkpoint(saved):
    """One line naming the sidecar and both widths, as a person compares them."""
    sidecar = saved.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**info, "spec": {**info["spec"], "hidden": [18, 9]},
                                   "metrics": {"test_acc": 82.17}}))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(saved)
    assert one_line(exc) == ("best_model.json records hidden widths 18·9 but the weights have "
                             "100·30: they are not one checkpoint")


def test_weights_wider_than_a_template_spec_are_refused(tmp_path):
    """A dense spec is the most a pruned model can have: 120·30 weights with a 100·30
    spec loaded and reported 120 % kept."""
    f = tmp_path / "wide.pth"
    torch.manual_seed(0)
    torch.save(MLP(784, [120, 30], 10).state_dict(), f)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(f, spec={**default_spec("mlp"), "hidden": [100, 30]})
    assert one_line(exc).startswith("wide.pth has hidden widths 120·30, wider than the model "
                                    "spec's 100·30")
    ck = load_checkpoint(f, spec={**default_spec("mlp"), "hidden": [120, 30]})  # its own: 100 %
    assert ck.meta["percent_retained"] == pytest.approx(100.0)


# ------------------------------------------------ safetensors bytes without the numpy detour

def _sweep_state(arch: str) -> tuple[dict, dict]:
    """A Digits model of the Compare sweep's benchmark grid: (state as saved, spec)."""
    from explorer_core.sweep import SweepConfig

    spec = SweepConfig(name="x", models=["mlp", "cnn"], datasets=["digits"]).spec(arch, "digits")
    torch.manual_seed(3)
    model = build_model(spec)
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}, spec


def _mixed_dtypes() -> dict:
    torch.manual_seed(4)
    x = torch.randn(3, 5)
    return {"f64": x.double(), "f32": x, "f16": x.half(), "bf16": x.bfloat16(),
            "i64": torch.arange(7), "i32": torch.arange(-3, 3, dtype=torch.int32),
            "i16": torch.tensor([-2, 9], dtype=torch.int16),
            "i8": torch.tensor([-128, 127], dtype=torch.int8),
            "u8": torch.tensor([0, 255], dtype=torch.uint8), "bool": x > 0,
            "scalar": torch.tensor(2.5)}


def _exotic_dtypes() -> dict:
    return {"c64": torch.randn(2, dtype=torch.complex64), "w": torch.randn(3),
            "f8": torch.randn(4).to(torch.float8_e4m3fn), "u16": torch.arange(3).to(torch.uint16)}


def _resnet_state() -> dict:
    model = build_model(default_spec("resnet18", 3, 32, 10))
    randomise_bn(model)  # int64 scalar num_batches_tracked buffers among the floats
    return {k: v.contiguous() for k, v in model.state_dict().items()}


_WHOLE = torch.arange(10.0)
STATES = {
    "digits mlp": lambda: _sweep_state("mlp")[0],
    "digits cnn": lambda: _sweep_state("cnn")[0],
    "pruned mlp": lambda: dict(pruned_simplenn().state_dict()),
    "resnet18": _resnet_state,
    "every common dtype": _mixed_dtypes,
    "complex, float8, uint16": _exotic_dtypes,
    "slices of one storage": lambda: {"a": _WHOLE[:4], "b": _WHOLE[4:]},
    "a view into a larger storage": lambda: {"w": torch.randn(6, 4)[2:5], "b": torch.ones(2)},
    "an empty tensor": lambda: {"w": torch.randn(2, 2), "none": torch.zeros(0, 3)},
    "no tensors": lambda: {},
}


@pytest.mark.parametrize("case", list(STATES))
def test_safetensors_bytes_are_exactly_what_safetensors_save_returns(case):
    from safetensors.torch import save

    from explorer_core.checkpoint import safetensors_bytes

    state = STATES[case]()
    # one key, as save_checkpoint writes: safetensors orders several in a per-call random way
    meta = {"spec": json.dumps({"arch": "mlp", "hidden": [3, 2], "note": "é ü"},
                               ensure_ascii=False)}
    assert safetensors_bytes(state, meta) == save(state, metadata=meta)
    assert safetensors_bytes(state, {}) == save(state, metadata={})


BAD_STATES = {  # safetensors refuses these; so must we, with its own error
    "shared tensors": lambda: (lambda t: {"a": t, "tied": t})(torch.randn(3, 3)),
    "overlapping views": lambda: (lambda t: {"a": t[:3], "b": t[2:]})(torch.randn(5)),
    "non-contiguous": lambda: {"t": torch.randn(3, 4).t()},
    "not a tensor": lambda: {"w": torch.randn(2), "step": 3},
}


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_state_that_safetensors_refuses_is_refused_with_its_error(case):
    from safetensors.torch import save

    from explorer_core.checkpoint import safetensors_bytes

    with pytest.raises(Exception) as theirs:
        save(BAD_STATES[case](), metadata={})
    with pytest.raises(type(theirs.value)):
        safetensors_bytes(BAD_STATES[case](), {})


def test_without_tensorspec_safetensors_own_save_writes_the_same_bytes(monkeypatch):
    import safetensors
    from safetensors.torch import save

    from explorer_core.checkpoint import safetensors_bytes

    state = _sweep_state("cnn")[0]
    want = save(state, metadata={"spec": "{}"})
    monkeypatch.delattr(safetensors, "TensorSpec")  # as in safetensors < 0.8
    assert safetensors_bytes(state, {"spec": "{}"}) == want


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_a_sweep_checkpoint_is_byte_for_byte_what_safetensors_and_json_write(
        tmp_path, monkeypatch, arch):
    """The files save_checkpoint wrote before (safetensors' own save, json.dumps with
    indent=2 and sorted keys), fsynced, with the mode open() would give."""
    from safetensors.torch import save

    from explorer_core import fileio
    from explorer_core.models import spec_of

    state, spec = _sweep_state(arch)
    model = build_model(spec)
    model.load_state_dict(state)
    meta = {"metrics": {"test_acc": 91.5, "test_loss": 0.25}, "class_names": list("0123456789"),
            "normalisation": {"mean": [0.3053], "std": [0.3759]}, "percent_retained": 100.0}
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    old = os.umask(0o027)
    try:
        path = save_checkpoint(model, spec, tmp_path / "cells" / f"{arch}-r0", meta)
    finally:
        os.umask(old)
    monkeypatch.undo()
    full_spec = spec_of(model, spec)
    assert path.read_bytes() == save(state, metadata={"spec": json.dumps(full_spec)})
    assert (tmp_path / "cells" / f"{arch}-r0.json").read_text() == \
        json.dumps({**meta, "spec": full_spec}, indent=2, sort_keys=True) + "\n"
    names = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert names == [f"{arch}-r0.json", f"{arch}-r0.safetensors"]
    assert all((tmp_path / "cells" / n).stat().st_mode & 0o777 == 0o640 for n in names)
    assert [os.path.basename(s).split(".tmp")[0].rsplit(".", 1)[0] for s in synced] == \
        [f".{arch}-r0.safetensors", f".{arch}-r0.json"]
