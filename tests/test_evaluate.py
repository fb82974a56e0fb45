"""One evaluation for every family: the metric registry keyed by capability, the report written
after training, and `simulacra evaluate` / `simulacra metrics` as thin callers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from simulacra.cli import main
from simulacra.config import DataConfig, TrainConfig
from simulacra.data import load_dataset
from simulacra.data.info import DataInfo, Split
from simulacra.errors import CapabilityError, ConfigError, DataError, UnknownNameError
from simulacra.metrics.evaluate import METRICS, EvalOptions, available_metrics, evaluate
from simulacra.metrics.fid import save_feature_classifier, shipped_feature_network, train_feature_classifier
from simulacra.metrics.likelihood import evaluate_nll
from simulacra.models.zoo import build_model
from simulacra.report import plan_evaluation, report_pictures, write_run_report
from simulacra.train import fit


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_dataset(DataConfig("digits"))


def _split(data, n: int = 200) -> Split:  # type: ignore[no-untyped-def]
    part = data.test or data.valid
    return Split(part.x[:n], None if part.y is None else part.y[:n])


def test_metrics_are_chosen_by_capability(digits) -> None:  # type: ignore[no-untyped-def]
    ae = build_model({"name": "ae", "latent_dim": 2, "hidden": [8]}, digits.info)
    vae = build_model({"name": "vae", "latent_dim": 2, "hidden": [8]}, digits.info)
    assert "nll" not in available_metrics(ae) and {"nll", "mmd", "fid"} <= set(available_metrics(vae))
    with pytest.raises(
        CapabilityError,
        match=r"ae has no likelihood for 'nll'; use --metric c2st or --metric classes or --metric fid or --metric kid",
    ):
        evaluate(ae, _split(digits), ["nll"])
    with pytest.raises(UnknownNameError, match="Did you mean 'mmd'"):
        evaluate(vae, _split(digits), ["mdm"])
    assert set(METRICS.names()) >= {"nll", "mmd", "fid"}


def test_nll_through_the_registry_is_evaluate_nll(digits) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    vae = build_model({"name": "vae", "latent_dim": 2, "hidden": [8]}, digits.info).eval()
    split = _split(digits, 50)
    got = evaluate(vae, split, "nll", num_samples=7, seed=3)
    direct = evaluate_nll(vae, split.x, None, num_samples=7, generator=torch.Generator().manual_seed(3))
    assert got.keys() == direct.keys() == {"nll", "bpd", "elbo_nll", "elbo_bpd"}
    for key in got:
        assert got[key].value == pytest.approx(direct[key].value, rel=1e-12)
        assert got[key].estimator == direct[key].estimator


@pytest.fixture(scope="module")
def untrained_and_trained(digits):  # type: ignore[no-untyped-def]
    """Two VAEs of one architecture on the digits: at initialisation, and after 300 steps."""
    torch.manual_seed(0)
    spec = {"name": "vae", "latent_dim": 4, "hidden": [64]}
    untrained = build_model(spec, digits.info)
    trained = build_model(spec, digits.info)
    fit(trained, digits, TrainConfig(steps=300, batch_size=64, lr=3e-3), progress=False)
    return untrained, trained


def test_mmd_ranks_a_trained_model_above_an_untrained_one(digits, untrained_and_trained) -> None:  # type: ignore[no-untyped-def]
    untrained, trained = untrained_and_trained
    split = _split(digits, 300)
    bad = evaluate(untrained, split, ["mmd"], max_samples=300)
    good = evaluate(trained, split, ["mmd"], max_samples=300)
    assert good["mmd"].value < 0.5 * bad["mmd"].value
    assert bad["mmd_p_value"].value < 0.01 and bad["mmd"].n == len(split)
    with pytest.raises(ConfigError, match="at least 2 samples"):
        evaluate(trained, split, ["mmd"], max_samples=1)


def test_fid_needs_images_and_a_feature_network(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    vae = build_model({"name": "vae", "latent_dim": 2, "hidden": [8]}, digits.info)
    with pytest.raises(ConfigError, match="--features FILE"):
        evaluate(vae, _split(digits), ["fid"])
    net = train_feature_classifier(digits.train.x, digits.train.y, epochs=1, width=4)
    path = save_feature_classifier(net, tmp_path / "features.safetensors")
    by_object = evaluate(vae, _split(digits), ["fid"], features=net, max_samples=100)
    by_path = evaluate(vae, _split(digits), ["fid"], options=None, features=path, max_samples=100)
    assert (
        by_object["fid"].value == pytest.approx(by_path["fid"].value, rel=1e-6) and by_object["fid"].value > 0
    )
    assert "features.safetensors" in by_path["fid"].estimator
    moons = load_dataset(DataConfig("moons", num_samples=200))
    flow = build_model({"name": "maf", "transforms": 1, "hidden": [8]}, moons.info)
    with pytest.raises(CapabilityError, match="fid compares images; maf models examples of shape"):
        evaluate(flow, moons.test or moons.valid, ["fid"], features=net)
    with pytest.raises(ConfigError, match="either options= or keyword"):
        evaluate(vae, _split(digits), ["nll"], EvalOptions(), seed=1)


def test_a_script_gets_the_runs_report_from_one_call(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build_model({"name": "vae", "latent_dim": 2, "hidden": [16]}, digits.info)
    result = fit(model, digits, TrainConfig(steps=20, batch_size=64), run_dir=tmp_path, progress=False)
    plan = plan_evaluation(model, digits.test, num_samples=5)  # no budget: the whole test split
    assert (plan.examples, plan.samples, plan.reasons) == (
        297,
        297,
        {"examples": "split size", "samples": "split size"},
    )
    record, pictures = write_run_report(model, digits, tmp_path, result, plan=plan)
    assert set(pictures) == {
        "samples.png",
        "reconstructions.png",
        "interpolation.png",
        "manifold.png",
        "latents.png",
        "training.png",
    }
    assert all((tmp_path / p).is_file() for p in pictures)
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored == json.loads(json.dumps(record)) and stored["steps"] == 20
    assert stored["test"]["nll"]["estimator"] == "IWAE k=5" and math.isfinite(stored["test"]["mmd"]["value"])
    # a model without a latent space gets only its samples; an exact 2-D density its heat map
    moons = load_dataset(DataConfig("moons", num_samples=200))
    flow = build_model({"name": "maf", "transforms": 1, "hidden": [8]}, moons.info)
    assert report_pictures(flow, moons.test or moons.valid, tmp_path / "flow") == ["samples.png"]


def test_cli_evaluate_takes_every_registered_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", "ae", "--data", "digits", "--out", str(run), "--steps", "5", "--no-progress"]
    assert main([*argv, "--set", "model.hidden=[8]", "--set", "model.latent_dim=2"]) == 0
    data = load_dataset(DataConfig("digits"))
    net = train_feature_classifier(data.train.x, data.train.y, epochs=1, width=4)
    features = save_feature_classifier(net, tmp_path / "features.safetensors")
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(run),
                "--metric",
                "mmd",
                "--metric",
                "fid",
                "--metric",
                "kid",
                "--metric",
                "prdc",
                "--metric",
                "classes",
                "--features",
                str(features),
                "--samples",
                "50",
            ]
        )
        == 0
    )
    stored = json.loads((run / "metrics.json").read_text())["evaluations"][-1]["metrics"]
    assert set(stored) == {
        "mmd", "mmd_p_value", "fid", "kid", "precision", "recall", "density", "coverage", "class_kl", "classes_reached",
    }  # fmt: skip
    assert 1 <= stored["classes_reached"]["value"] <= 10 and stored["class_kl"]["unit"] == "nats"
    assert stored["kid"]["stderr"] > 0 and "features.safetensors" in stored["kid"]["estimator"]
    assert all(0 <= stored[k]["value"] <= 1 for k in ("precision", "recall", "coverage"))
    assert main(["evaluate", str(run)]) == 2  # nll, the default, needs a likelihood
    err = capsys.readouterr().err
    assert "has no likelihood" in err and "--metric mmd" in err
    assert main(["metrics"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("nll", "mmd", "fid"))


def test_training_and_evaluate_report_the_same_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With an EMA, the figures written after training and `simulacra evaluate` come from the same
    (averaged) weights, each says which, and --weights raw chooses the others."""
    run = tmp_path / "run"
    argv = ["train", "vae", "--data", "digits", "--out", str(run), "--steps", "30", "--no-progress"]
    argv += [
        "--set",
        "model.hidden=[8]",
        "--set",
        "train.ema_decay=0.9",
        "--eval-k",
        "4",
        "--eval-examples",
        "297",
    ]
    assert main(argv) == 0
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["weights"] == "ema"
    assert main(["evaluate", str(run), "--k", "4"]) == 0
    assert main(["evaluate", str(run), "--k", "4", "--weights", "raw"]) == 0
    ema, raw = json.loads((run / "metrics.json").read_text())["evaluations"]
    assert (ema["weights"], raw["weights"], ema["weights_step"]) == ("ema", "raw", 30)
    assert ema["metrics"]["nll"]["value"] == pytest.approx(trained["test"]["nll"]["value"], rel=1e-9)
    assert raw["metrics"]["nll"]["value"] != pytest.approx(ema["metrics"]["nll"]["value"], rel=1e-6)
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png"), "--weights", "raw"]) == 0
    assert "weights: raw, step 30" in capsys.readouterr().out


def test_the_sample_metrics_of_one_call_share_one_draw(digits, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """mmd, fid, kid, prdc and classes in one evaluate call draw the samples once (the same
    seed, labels and count each would use alone), and give what each gives alone."""
    torch.manual_seed(0)
    model = build_model({"name": "ae", "latent_dim": 2, "hidden": [8]}, digits.info)
    net = train_feature_classifier(digits.train.x, digits.train.y, epochs=1, width=4)
    options = EvalOptions(max_samples=40, features=net)
    draws = []
    sample = model.sample
    monkeypatch.setattr(model, "sample", lambda *a, **k: draws.append(a) or sample(*a, **k))
    together = evaluate(model, _split(digits, 40), ["mmd", "fid", "kid", "prdc", "classes"], options)
    assert len(draws) == 1
    alone = evaluate(model, _split(digits, 40), ["fid"], options)
    assert together["fid"].value == alone["fid"].value and len(draws) == 2


def _mnist_shaped(classes: int = 10, n: int = 24, shape: tuple[int, ...] = (1, 28, 28)):  # type: ignore[no-untyped-def]
    """A small model of 1×28×28 grey images (untrained: the metrics only read its samples) and
    a held-out split of such images, without the MNIST files."""
    info = DataInfo(shape, "unit", num_classes=classes, levels=256)
    torch.manual_seed(0)
    model = build_model({"name": "vae", "latent_dim": 2, "hidden": [8]}, info)
    g = torch.Generator().manual_seed(0)
    return model, Split(torch.rand(n, *shape, generator=g), torch.arange(n) % classes)


def test_mnist_shaped_images_take_the_shipped_network_and_say_so() -> None:
    model, split = _mnist_shaped()
    out = evaluate(model, split, ["fid", "kid", "prdc", "classes"], max_samples=20)
    shipped_label = "features: simulacra MNIST classifier ("
    for name in ("fid", "kid", "precision", "coverage"):
        assert shipped_label in out[name].estimator and "test accuracy, shipped)" in out[name].estimator
    assert "classes by: simulacra MNIST classifier" in out["class_kl"].estimator
    net, _ = shipped_feature_network()
    given = evaluate(model, split, ["fid"], max_samples=20, features=net)
    assert given["fid"].value == out["fid"].value and "given feature network" in given["fid"].estimator
    # 28×28 grey images of 3 classes: the features serve, the classes do not
    three, split3 = _mnist_shaped(classes=3)
    assert "shipped" in evaluate(three, split3, ["fid"], max_samples=20)["fid"].estimator
    with pytest.raises(ConfigError, match="tells 10 classes, these data have 3"):
        evaluate(three, split3, ["classes"], max_samples=20)


def test_other_images_need_a_network_of_their_own(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Images the shipped network does not read (8×8 digits, colour) get the error naming
    --features and `simulacra features train`; a saved network of another image size is refused."""
    vae = build_model({"name": "vae", "latent_dim": 2, "hidden": [8]}, digits.info)
    for metric in ("fid", "kid", "prdc", "classes"):
        with pytest.raises(
            ConfigError,
            match=rf"{metric} needs a feature network: give --features FILE.*features train.*these are 1×8×8",
        ):
            evaluate(vae, _split(digits, 20), [metric], max_samples=10)
    colour, split = _mnist_shaped(shape=(3, 28, 28))
    with pytest.raises(ConfigError, match="these are 3×28×28"):
        evaluate(colour, split, ["fid"], max_samples=10)
    small = train_feature_classifier(digits.train.x, digits.train.y, epochs=1, width=4)
    path = save_feature_classifier(small, tmp_path / "digits.safetensors")
    model, split = _mnist_shaped()
    with pytest.raises(
        DataError, match=r"digits.safetensors reads images of shape \(1, 8, 8\); vae makes \(1, 28, 28\)"
    ):
        evaluate(model, split, ["fid"], max_samples=10, features=path)


def test_the_classifier_two_sample_test_tells_an_untrained_model_from_the_data(
    digits, untrained_and_trained
) -> None:  # type: ignore[no-untyped-def]
    """c2st through the registry: an untrained VAE's samples are told apart from held-out digits
    always, a briefly trained one's less often (its grainy draws still give it away); vectors and
    images without a feature network are compared by their raw values, MNIST-shaped images by the
    shipped network's features."""
    untrained, trained = untrained_and_trained
    split = _split(digits, 300)
    bad = evaluate(untrained, split, ["c2st"], max_samples=300)
    good = evaluate(trained, split, ["c2st"], max_samples=300)
    assert bad["c2st"].value > 0.9 and bad["c2st_p_value"].value < 1e-6
    assert good["c2st"].value < bad["c2st"].value - 3 * good["c2st"].stderr  # measured: 0.922 against 1.0
    assert "raw values" in good["c2st"].estimator
    assert abs(bad["c2st"].n - len(split.x)) <= 1 and good["c2st"].stderr > 0  # half of each set held out
    model, mnist = _mnist_shaped()
    out = evaluate(model, mnist, ["c2st"], max_samples=20)
    assert "features: simulacra MNIST classifier (" in out["c2st"].estimator
