"""Chapter 20: a one-stage grid detector. Over seeds: without non-maximum suppression precision
falls at the same recall (the duplicates); GIoU and L1 fit these boxes about equally; a 4×4 grid
misses touching objects far more than an 8×8 one; Integrated Gradients of a detection's class
find their evidence on its object. The pieces: scenes with exact boxes, targets where the larger
of two objects in one cell wins, NMS dropping a duplicate, average precision by hand."""

import numpy as np
import pytest
import torch

from labs import detection as lab
from labs import detection_scenes as scenes
from labs import detector
from tests.runs import run_view


def test_scenes_are_reproducible_with_tight_boxes_inside_the_image():
    image, boxes, labels = scenes.scene((0, scenes.TEST, 3), clutter=2, touching=0.5)
    again = scenes.scene((0, scenes.TEST, 3), clutter=2, touching=0.5)
    assert np.array_equal(image, again[0]) and np.array_equal(boxes, again[1])
    for i in range(50):
        _, boxes, labels = scenes.scene((1, scenes.TRAIN, i), clutter=3, touching=0.5)
        assert 1 <= len(boxes) <= 4 and set(labels.tolist()) <= {0, 1, 2}
        assert (boxes[:, :2] >= 1).all() and (boxes[:, 2:] <= scenes.SIDE - 1).all()  # none cut off
        assert (boxes[:, 2:] - boxes[:, :2] >= 4).all()
        iou = detector.box_iou(torch.from_numpy(boxes), torch.from_numpy(boxes)).fill_diagonal_(0)
        assert (iou < 0.3).all()  # shapes never overlap; their boxes barely

    def touching_share(touching: float) -> int:
        return sum(
            lab.touches(torch.from_numpy(scenes.scene((2, 0, i), 0, touching)[1])).any().item()
            for i in range(30)
        )

    touching, apart = touching_share(1.0), touching_share(0.0)
    assert touching > apart + 10


def test_where_two_objects_claim_one_cell_the_larger_wins():
    small, large = [20.0, 20.0, 26.0, 26.0], [15.0, 15.0, 33.0, 33.0]  # centres in one 16-pixel cell
    target = detector.targets([torch.tensor([small, large])], [torch.tensor([0, 2])], 4, "cpu")
    assert target["heat"][0, 1, 1] == 1.0 and target["cls"][0, 1, 1] == 2
    fine = detector.targets([torch.tensor([small, large])], [torch.tensor([0, 2])], 8, "cpu")
    assert set(fine["cls"][0][fine["heat"][0] == 1].tolist()) == {2}  # still one centre cell each…
    assert (fine["heat"][0] == 1).sum() == 2  # …but two different cells on the finer grid


def test_nms_drops_a_duplicate_box_and_matching_counts_it_false():
    out = torch.zeros(1, 8, 8, 8)
    out[..., 0] = -9.0  # no objectness anywhere, but two neighbouring cells on one object
    for row, col in ((2, 2), (2, 3)):
        out[0, row, col, 0] = 4.0
        out[0, row, col, 1] = 5.0  # a circle
    out[0, 2, 3, 4] = torch.atanh(torch.tensor(-0.5 / detector.REACH))  # pointing back at (2, 2)'s centre
    without = detector.detect(out, 0.3, None)[0]
    kept = detector.detect(out, 0.3, 0.5)[0]
    assert len(without["boxes"]) == 2 and len(kept["boxes"]) == 1
    truth = [without["boxes"][:1].clone()]
    scores, hits, _, n = detector.match([without], truth, [torch.tensor([0])])
    assert sorted(hits) == [False, True] and n == 1


def test_average_precision_by_hand():
    ap, recall, precision = detector.average_precision([0.9, 0.8, 0.7], [True, False, True], 2)
    assert recall == [0.5, 0.5, 1.0] and precision == pytest.approx([1.0, 0.5, 2 / 3])
    assert ap == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


def test_each_classs_ap_is_read_from_one_matching_as_if_matched_alone():
    """evaluate matches every image once and reads each class's detections from it: the same
    as matching each class's detections against its objects alone (the book's per-class AP)."""
    g = torch.Generator().manual_seed(0)
    found, boxes, labels = [], [], []
    for _ in range(12):
        objects = int(torch.randint(1, 5, (1,), generator=g))
        corner = torch.rand(objects, 2, generator=g) * 40
        truth = torch.cat([corner, corner + 8 + torch.rand(objects, 2, generator=g) * 12], 1)
        kinds = torch.randint(0, len(scenes.CLASSES), (objects,), generator=g)
        guesses = truth[torch.randint(0, objects, (30,), generator=g)] + torch.randn(30, 4, generator=g) * 3
        order = torch.rand(30, generator=g).sort(descending=True)
        found.append(
            {
                "boxes": guesses[order.indices],
                "scores": order.values,
                "labels": torch.randint(0, len(scenes.CLASSES), (30,), generator=g),
            }
        )
        boxes.append(truth)
        labels.append(kinds)
    aps = []
    for c in range(len(scenes.CLASSES)):
        mine = [{k: v[d["labels"] == c] for k, v in d.items()} for d in found]
        truth = [b[lb == c] for b, lb in zip(boxes, labels)]
        scores, hits, _, n = detector.match(mine, truth, [lb[lb == c] for lb in labels])
        if n:
            aps.append(detector.average_precision(scores, hits, n)[0])
    result = detector.evaluate(found, boxes, labels, threshold=0.5)
    assert 0 < result["mAP@0.5"] < 1
    assert result["mAP@0.5"] == pytest.approx(sum(aps) / len(aps), abs=1e-12)


@pytest.fixture(scope="module")
def trained(seed):
    return run_view(lab.train, lab.Config(seed=seed))


@pytest.fixture(scope="module")
def grids(seed):
    return run_view(lab.train, lab.Config(seed=seed, variants=("giou", "coarse"), touching=0.5))


def last(view, variant: str, name: str) -> float:
    return view.last(f"{lab.VARIANTS[variant]}: {name}")


@pytest.mark.lesson
def test_without_nms_precision_falls_at_the_same_recall(trained, lesson):
    lesson.expect("mAP@0.5 after the default run (GIoU)", last(trained, "giou", "mAP@0.5"), ">", 0.8)
    drop = last(trained, "giou", "precision") - last(trained, "giou", "precision without NMS")
    lesson.expect("precision with NMS − without", drop, ">", 0.25)
    moved = abs(last(trained, "giou", "recall") - last(trained, "giou", "recall without NMS"))
    lesson.expect("|recall with NMS − without|", moved, "<", 0.05)


@pytest.mark.lesson
def test_giou_and_l1_fit_these_boxes_about_equally(trained, lesson):
    # measured over seeds 0-2: 0.003-0.057 apart (GIoU ahead on two seeds, L1 on one), at ~0.8
    gap = abs(last(trained, "giou", "box IoU") - last(trained, "l1", "box IoU"))
    lesson.expect("|mean IoU of true detections, GIoU − L1|", gap, "<", 0.08)


@pytest.mark.lesson
def test_a_coarse_grid_misses_touching_objects(grids, lesson):
    touching = last(grids, "giou", "recall, touching") - last(grids, "coarse", "recall, touching")
    alone = last(grids, "giou", "recall, alone") - last(grids, "coarse", "recall, alone")
    lesson.expect("recall on touching objects, 8×8 − 4×4", touching, ">", 0.2)
    lesson.expect("that loss beyond the loss on objects alone", touching - alone, ">", 0.05)


@pytest.mark.lesson
def test_the_questions_are_settled_as_the_chapter_teaches(trained, grids, lesson):
    for question, answer_taught, view in zip(
        lab.QUESTIONS, ("it falls", "about the same", "the 8×8 grid"), (trained, trained, grids), strict=True
    ):
        answer, evidence = question.outcome(view)
        lesson.expect(f"question: {question.prompt[:50]}…", answer, "==", answer_taught, evidence)


@pytest.mark.lesson
def test_a_detections_class_rests_on_its_own_object(trained, lesson):
    c = trained.cfg
    model = lab.load(c, trained.state_dict)[lab.VARIANTS["giou"]]
    data = lab.dataset(c.train_scenes, c.clutter, c.touching, c.seed)
    inside = []
    for index in range(6):
        image = data["X_test"][index : index + 1]
        for box in lab.found_in(model, image, c)["after_nms"][:2]:
            attr = np.abs(lab.explain(model, image, int(box[6]), int(box[5]))["map"])
            x0, y0, x1, y1 = (int(round(v)) for v in box[:4])
            x0, y0, x1, y1 = max(x0 - 2, 0), max(y0 - 2, 0), min(x1 + 2, 64), min(y1 + 2, 64)
            share = attr[y0:y1, x0:x1].sum() / attr.sum()
            inside.append(share / ((x1 - x0) * (y1 - y0) / 64**2))  # against the box's share of the image
    lesson.expect(
        "attribution in and around the box, times its share of the image", float(np.median(inside)), ">", 2.0
    )


def test_training_scenes_made_as_batches_draw_them_are_those_made_up_front():
    """A run's first step waits for its batch's scenes only: each scene is seeded by its index."""
    from labs.detection_scenes import TRAIN, DrawnScenes, scenes

    X, B, L = scenes(40, 3, TRAIN, 3, 0.5)
    drawn = DrawnScenes(40, 3, TRAIN, 3, 0.5)
    index = torch.tensor([7, 39, 0, 7])
    images, boxes, labels = drawn.batch(index)
    assert torch.equal(images, X[index]) and len(drawn) == 40
    for i, b, lb in zip(index.tolist(), boxes, labels, strict=True):
        assert torch.equal(b, B[i]) and torch.equal(lb, L[i])
