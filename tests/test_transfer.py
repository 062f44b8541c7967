"""Chapter 8: transfer beats scratch with few labels and not with many; the three ways start
alike; plain stacks starve their first layers where skip paths do not; CKA means what it says."""

from dataclasses import replace

import pytest
import torch

from figures.variants import layer_history_of
from labs import backbones, blocks, transfer
from labs.similarity import linear_cka
from tests.runs import CPU, run_view


@pytest.mark.lesson
def test_with_few_labels_transfer_beats_scratch_and_the_gap_closes_with_many(seed, lesson):
    view = run_view(transfer.sweep, transfer.SweepConfig(points=("5", "10", "500"), seed=seed))
    acc = {name: dict(points) for name, points in view.view["sweep"].items()}
    scratch = acc[transfer.WAYS["scratch"]]
    transfer_ways = [acc[transfer.WAYS[w]] for w in ("frozen", "finetune")]
    many = max(scratch)  # 500 asked; the digits that ship hold ~400 of each
    few_gap = sum(min(w[n] for w in transfer_ways) - scratch[n] for n in (5, 10)) / 2
    many_gap = min(w[many] for w in transfer_ways) - scratch[many]
    # measured over seeds 0-2: few 0.064 / 0.162 / 0.133, many 0.010 / -0.008 / 0.019
    lesson.expect("transfer: both ways minus scratch, mean at 5 and 10 labels/class", few_gap, ">", 0.03)
    lesson.expect("transfer: that gap minus the gap at ~400 labels/class", few_gap - many_gap, ">", 0.02)


@pytest.mark.lesson
def test_each_question_is_settled_by_its_run_as_the_chapter_teaches(seed, lesson):
    for question, expected in zip(transfer.QUESTIONS, ("no", "conv 3"), strict=True):
        cfg = replace(transfer.Config(), **question.settings, seed=seed)
        answer, evidence = question.outcome(run_view(transfer.train, cfg))
        lesson.expect(f"question: {question.prompt[:60]}…", answer, "==", expected, evidence)


def test_every_way_starts_from_the_same_head_and_freezing_keeps_the_backbone():
    cfg = transfer.Config(pretrain_steps=50, steps=20)
    state, _ = backbones.pretrained(cfg.channels, cfg.pretrain_steps, cfg.seed)
    nets = {w: transfer.make_net(w, cfg, state, CPU) for w in transfer.WAYS}
    heads = [n.head.weight for n in nets.values()]
    assert all(torch.equal(heads[0], h) for h in heads)
    assert torch.equal(nets["frozen"].backbone.convs[0].weight, state["convs.0.weight"])
    assert not torch.equal(nets["scratch"].backbone.convs[0].weight, state["convs.0.weight"])
    view = run_view(transfer.train, cfg)
    frozen = view.state_dict[transfer.WAYS["frozen"]]
    assert torch.equal(frozen["backbone.convs.2.weight"], state["convs.2.weight"])
    tuned = view.state_dict[transfer.WAYS["finetune"]]
    assert not torch.equal(tuned["backbone.convs.2.weight"], state["convs.2.weight"])
    assert view.view["variants"][transfer.WAYS["frozen"]]["cka"] == pytest.approx([1, 1, 1])
    models = transfer.load_ways(cfg, view.state_dict)
    image = transfer.target_digits(cfg.seed)[1][0][:1]
    cams = transfer.grad_cams(models, image, 0)
    assert len(cams["maps"]) == 3 and all(m.shape == (28, 28) for m in cams["maps"].values())


def test_linear_cka_is_one_for_a_rotation_and_small_for_unrelated_responses():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 30, generator=g)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g))
    assert linear_cka(a, 3 * a @ q) == pytest.approx(1.0, abs=1e-6)
    assert linear_cka(a, torch.randn(200, 30, generator=g)) < 0.3


def test_a_deep_plain_stack_starves_its_first_layer_and_skip_paths_do_not():
    view = run_view(blocks.train_blocks, blocks.BlocksConfig(depth=12, steps=10))

    def ratio(kind):  # at the first step, before any learning could change it
        first = layer_history_of(view.layer_history, blocks.STACKS[kind])[0][1]
        return first["layer 1"]["grad_rms"] / first["layer 12"]["grad_rms"]

    assert ratio("plain") < 1e-3  # measured ~3e-5
    assert ratio("residual") > 1e-2 and ratio("dense") > 1e-2
    weights = {n: v["weights"] for n, v in view.view["variants"].items()}
    assert max(weights.values()) < 1.25 * min(weights.values())  # about equal weight counts


def test_without_resnet18_weights_on_disk_the_small_cnn_is_used_and_the_page_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("DLLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = transfer.Config(backbone="resnet18", pretrain_steps=50, steps=10, ways=("frozen",))
    view = run_view(transfer.train, cfg)
    assert any("resnet18 weights are not on this server" in n for n in view.notes)
    assert not any(str(tmp_path) in n for n in view.notes)  # what is missing, not where it was looked for
    assert view.last(f"{transfer.WAYS['frozen']}: test_acc") > 0.3


def test_resnet18_weights_on_disk_become_the_backbone(tmp_path, monkeypatch):
    from torchvision.models import resnet18

    monkeypatch.setenv("DLLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.save(resnet18().state_dict(), tmp_path / transfer.RESNET18_FILE)  # stands in for ImageNet's
    cfg = transfer.Config(
        backbone="resnet18", steps=10, batch_size=8, labels_per_class=5, ways=("frozen", "finetune")
    )
    view = run_view(transfer.train, cfg)
    assert any("resnet18 ImageNet weights" in n for n in view.notes)
    assert not any(str(tmp_path) in n for n in view.notes)  # the learner is not told where
    models = transfer.load_ways(cfg, view.state_dict)
    assert isinstance(models[transfer.WAYS["frozen"]].backbone, transfer.ResNet18Backbone)


def test_pre_training_shows_its_first_numbers_before_the_target_digits_are_scanned(monkeypatch):
    """Scanning digits 5-9 (~0.1 s) is the adaptation's set-up: a learner sees pre-training's
    first loss without waiting for it."""
    scanned = []
    scan = transfer.target_digits
    monkeypatch.setattr(transfer, "target_digits", lambda seed: scanned.append(seed) or scan(seed))
    cfg = transfer.Config(pretrain_steps=100, steps=20, seed=4321)  # a backbone no test keeps
    assert not backbones.already_pretrained(cfg.channels, cfg.pretrain_steps, cfg.seed)
    run = transfer.train(cfg, CPU)
    first = next(run)
    assert first.metrics and not scanned  # pre-training's first loss, nothing scanned yet
    last = list(run)[-1]
    assert scanned == [cfg.seed] and last.final  # scanned once, before adapting
