"""Chapter 10: store embeddings beat one weight per store, sort the stores by their hidden kind
and put Saturday beside Sunday (over seeds); a bad CSV is refused with its reason."""

import functools

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import silhouette_score

from figures.views import tabular as views
from labs import tables
from labs import tabular as lab
from tests.runs import run_view


@pytest.fixture(scope="module")
def trained(seed):
    return run_view(lab.train, lab.Config(seed=seed))


def _rmse(view, model):
    return view.last(f"{model}: val RMSE")


@pytest.mark.lesson
def test_store_embeddings_beat_one_hot_stores(trained, lesson):
    # measured over seeds 0-2: MLP 1.59-1.72 k€ against ridge on one-hot 4.06; ratio about 0.4
    ratio = _rmse(trained, "MLP + embeddings") / _rmse(trained, "linear (one-hot)")
    lesson.expect("validation RMSE, embeddings MLP / one-hot linear", ratio, "<", 0.75)


@pytest.mark.lesson
def test_store_embeddings_sort_the_stores_by_their_hidden_kind(trained, lesson):
    stores = trained.view["embeddings"]["store"]
    kinds = np.array(trained.view["groups"]["store"])
    # the kind is never a column; measured about 0.27 (random embeddings: about 0)
    lesson.expect(
        "silhouette of the store embeddings by hidden kind", silhouette_score(stores, kinds), ">", 0.1
    )


@pytest.mark.lesson
def test_the_questions_are_settled_as_the_chapter_teaches(trained, lesson):
    for question, expected in zip(lab.QUESTIONS, ("the MLP with embeddings", "Sunday")):
        assert question.settings["data"] == "sales"  # the default run of this seed answers it
        answer, evidence = question.outcome(trained)
        lesson.expect(f"question: {question.prompt[:50]}…", answer, "==", expected, evidence)


def test_every_method_credits_the_store_and_the_day_over_the_temperature():
    view = run_view(lab.train, lab.Config(epochs=10, rows=2000, stores=100))
    importance = view.view["importance"]
    assert set(importance) == {
        "FeatureAblation (MLP)",
        "Integrated Gradients (MLP)",
        "permutation (gradient boosting)",
    }
    for method, shares in importance.items():
        assert sum(shares.values()) == pytest.approx(1.0)
        assert shares["store"] > shares["temperature"] and shares["day"] > shares["temperature"], method
    parts = views.draw(view)
    assert {"scores", "loss", "map: store", "map: day", "importance"} <= set(parts)
    assert "map: promo" not in parts  # two points on a line teach nothing
    assert len(parts["scores"]["layout"]["shapes"]) == 2  # both baselines as flat lines


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def test_a_learners_csv_trains_regression_or_classification():
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], 300)
    x = rng.normal(size=300)
    frame = pd.DataFrame({"x": x, "colour": colour, "id": [f"row{i}" for i in range(300)]})
    frame["y"] = 2 * x + (colour == "red") + rng.normal(0, 0.1, 300)
    table = tables.table_from_frame(tables.read_csv(_csv(frame)), "y")
    assert (
        table.task == "regression" and list(table.numeric) == ["x"] and list(table.categorical) == ["colour"]
    )
    frame["label"] = (x > 0).astype(int)
    labelled = tables.table_from_frame(tables.read_csv(_csv(frame.drop(columns="y"))), "label")
    assert labelled.task == "classification" and labelled.classes == ["0", "1"]
    view = run_view(functools.partial(lab.train, upload=labelled), lab.Config(data="upload", epochs=30))
    assert view.last("MLP + embeddings: val accuracy") > 0.9
    assert view.last("gradient boosting: val accuracy") > 0.9


@pytest.mark.parametrize(
    "data, target, why",
    [
        (b"", None, "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", None, "binary"),
        (b"just one column\n" + b"1\n" * 100, None, "1 column"),
        (b"a,b\n1,2\n3,4\n", None, "rows"),
        (_csv(pd.DataFrame({"x": range(100), "y": ["cat", "dog"] * 50})), "y", "not numeric"),
        (_csv(pd.DataFrame({"x": range(100), "y": [3.0] * 100})), "y", "one value"),
        (_csv(pd.DataFrame({"x": range(100), "y": range(100)})), "z", "no column"),
    ],
)
def test_a_bad_csv_is_refused_with_its_reason(data, target, why):
    with pytest.raises(tables.TableError, match=why):
        frame = tables.read_csv(data, "the file")
        tables.table_from_frame(frame, target or tables.default_target(frame))


def test_a_run_with_upload_chosen_and_no_file_says_what_to_do():
    view = run_view(lab.train, lab.Config(data="upload"), must_finish=False)
    assert "Upload a CSV first" in view.message


def test_a_csv_too_wide_is_refused_from_its_header_before_it_is_parsed(monkeypatch):
    wide = (",".join(f"c{i}" for i in range(200_000)) + "\n" + ",".join("1" * 200_000) + "\n").encode()

    def parsed(*args, **kwargs):
        raise AssertionError("the whole file was parsed before its width was known")

    monkeypatch.setattr(tables.pd, "read_csv", parsed)
    with pytest.raises(tables.TableError, match="200,000 columns; the limit is"):
        tables.read_csv(wide, "wide.csv")
