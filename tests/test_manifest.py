import logging

import pytest

pd = pytest.importorskip("pandas")

from smilebot_tools import manifest  # noqa: E402
from smilebot_tools.manifest import ManifestError  # noqa: E402


def face(image="a.jpg", k=0, box=(10.0, 10.0, 50.0, 60.0), **fields):
    """A face row on a 100 x 80 image (``box=None``: box unknown)."""
    row = {"image": image, "width": 100, "height": 80, "source": "s", "group": f"g:{image}"}
    row["face"] = k
    if box is not None:
        row |= dict(zip(manifest.BOX, box, strict=True))
    return row | fields


def no_face(image="b.jpg", **fields):
    row = {"image": image, "width": 100, "height": 80, "source": "s", "group": f"g:{image}"}
    return row | fields


def sample():
    return manifest.new(
        [
            face('z/b, "quoted".jpg', 0, (0.1 + 0.2, 1 / 3, 99.5, 80.0), smile=1, ignore=True),
            face("a.jpg", 1, None, smile_source="rater:x", split="val"),
            face("a.jpg", 0, smile=0, smile_source="fer@1+facex@1", split="val"),
            no_face("n.jpg", box_source="blazeface@1"),
            no_face("m.png"),
        ]
    )


def test_new_fills_defaults_and_dtypes():
    df = sample()
    assert list(df.columns) == list(manifest.COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == {
        c: str(pd.Series(dtype=t).dtype) for c, t in manifest.DTYPES.items()
    }
    m = df[df["image"] == "m.png"].iloc[0]
    assert m["box_source"] == "" and m["split"] == "" and m["smile_source"] == ""
    assert not m["ignore"]
    assert pd.isna(m["face"]) and pd.isna(m["smile"]) and pd.isna(m["x1"])


@pytest.mark.parametrize(
    ("row", "needle"),
    [(face(colour="red"), "'colour'"), ({"image": "a.jpg", "width": 3}, "'height'")],
)
def test_new_rejects_unknown_and_missing_keys(row, needle):
    with pytest.raises(ManifestError, match=needle):
        manifest.new([row])


def test_round_trip_is_identical(tmp_path):
    df = sample()
    path = tmp_path / "sub" / "manifest.csv"
    manifest.save(df, path)
    loaded = manifest.load(path)
    expected = df.sort_values(["image", "face"], na_position="first").reset_index(drop=True)
    pd.testing.assert_frame_equal(loaded, expected)
    assert loaded["image"].tolist() == sorted(loaded["image"])
    assert [p.name for p in path.parent.iterdir()] == ["manifest.csv"]  # no temp file left


def test_save_refuses_an_invalid_manifest_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.csv"
    manifest.save(sample(), path)
    before = path.read_text()
    bad = manifest.new([face(box=(10, 10, 500, 60))])
    with pytest.raises(ManifestError, match="outside"):
        manifest.save(bad, path)
    assert path.read_text() == before


@pytest.mark.parametrize(
    ("column", "value", "needle"),
    [
        ("width", "wide", "line 3, column 'width'"),
        ("width", "", "line 3, column 'width'"),
        ("face", "1.5", "line 3, column 'face'"),
        ("smile", "300", "line 3, column 'smile'"),
        ("x1", "left", "line 3, column 'x1'"),
        ("ignore", "maybe", "line 3, column 'ignore'"),
    ],
)
def test_load_names_file_line_and_column_of_a_bad_cell(tmp_path, column, value, needle):
    path = tmp_path / "m.csv"
    manifest.save(sample(), path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[1, column] = value
    df.to_csv(path, index=False)
    with pytest.raises(ManifestError, match=needle) as info:
        manifest.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("change", "needle"), [("drop", "missing column 'split'"), ("add", "unknown column 'colour'")]
)
def test_load_rejects_wrong_columns(tmp_path, change, needle):
    path = tmp_path / "m.csv"
    manifest.save(sample(), path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df = df.drop(columns="split") if change == "drop" else df.assign(colour="red")
    df.to_csv(path, index=False)
    with pytest.raises(ManifestError, match=needle):
        manifest.load(path)


BAD = [
    ([face(k=1, box=(10, 10, 101.5, 60))], "a.jpg face 1: box .* outside the 100x80 image"),
    ([face(k=1, box=(-1.5, 10, 50, 60))], "a.jpg face 1: box .* outside"),
    ([face(k=1, box=(50, 10, 50, 60))], "a.jpg face 1: empty box"),
    ([face(k=1, box=(10, 60, 50, 20))], "a.jpg face 1: empty box"),
    ([face(k=1, box=None, x1=3.0)], "a.jpg face 1: box partly missing"),
    ([face(k=1, smile=2)], r"a.jpg face 1: smile not in \{0, 1, NA\}"),
    ([face(k=1, split="holdout")], "a.jpg face 1: split 'holdout' not in"),
    ([face(k=1), face(k=1, box=(1, 1, 9, 9))], "a.jpg face 1: duplicate"),
    ([no_face("a.jpg"), face(k=0)], r"a.jpg \(no-face row\): no-face row for an image that has"),
    ([no_face("a.jpg", smile=1)], r"a.jpg \(no-face row\): box or smile on a no-face row"),
    ([face(k=0), face(k=1) | {"width": 120}], "a.jpg face 1: one image with several .* width"),
    ([face(k=0), face(k=1) | {"group": "other"}], "a.jpg face 1: one image with several .* group"),
    (
        [face(k=0, split="train"), face("c.jpg", split="val") | {"group": "g:a.jpg"}],
        "c.jpg face 0: group 'g:a.jpg' is in several splits",
    ),
    ([face(k=-1)], "a.jpg face -1: negative face index"),
]


@pytest.mark.parametrize(("rows", "needle"), BAD)
def test_validate_names_the_bad_row(rows, needle):
    with pytest.raises(ManifestError, match=needle):
        manifest.validate(manifest.new(rows))


def test_validate_accepts_a_good_manifest_and_the_1px_tolerance():
    manifest.validate(sample())
    manifest.validate(manifest.new([face(box=(-0.9, -1.0, 100.9, 81.0))]))


def test_validate_counts_the_other_problems():
    rows = [face(k=1, box=(10, 10, 500, 60)), face(k=2, smile=5)]
    with pytest.raises(ManifestError, match=r"face 1: .*\(and 1 more problems\)"):
        manifest.validate(manifest.new(rows))


def test_validate_with_root_finds_missing_files(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    manifest.validate(manifest.new([face("a.jpg")]), root=tmp_path)
    with pytest.raises(ManifestError, match=r"b.jpg \(no-face row\): image file missing"):
        manifest.validate(manifest.new([face("a.jpg"), no_face("b.jpg")]), root=tmp_path)


# --- merge and join ------------------------------------------------------------------


def test_merge_later_frame_wins_and_logs_overrides(caplog):
    old = manifest.new([face(k=0, smile=0), face(k=1), no_face("b.jpg", box_source="t@1")])
    new = manifest.new([face(k=0, smile=1), face("c.jpg")])
    with caplog.at_level(logging.INFO, logger="smilebot_tools.manifest"):
        merged = manifest.merge(old, new)
    assert "(1 overridden)" in caplog.text
    assert len(merged) == 4
    assert merged.set_index(["image", "face"]).loc[("a.jpg", 0), "smile"] == 1
    first = manifest.merge(old, new, prefer="first")
    assert first.set_index(["image", "face"]).loc[("a.jpg", 0), "smile"] == 0
    manifest.validate(merged)


def test_merge_unlabeled_no_face_rows_never_replace_labels():
    unlabeled = manifest.new([no_face("a.jpg"), no_face("b.jpg"), no_face("d.jpg")])
    kindled = manifest.new([face("a.jpg", 0), face("a.jpg", 1), no_face("b.jpg", box_source="t")])
    for merged in (manifest.merge(unlabeled, kindled), manifest.merge(kindled, unlabeled)):
        manifest.validate(merged)
        assert merged["image"].tolist() == ["a.jpg", "a.jpg", "b.jpg", "d.jpg"]
        assert merged["box_source"].tolist()[2:] == ["t", ""]


def test_merge_face_rows_and_a_no_face_assertion_the_later_wins():
    faces = manifest.new([face("a.jpg", 0), face("a.jpg", 1)])
    none = manifest.new([no_face("a.jpg", box_source="rater:x")])
    assert manifest.merge(faces, none)["face"].isna().tolist() == [True]
    assert manifest.merge(none, faces)["face"].tolist() == [0, 1]


def test_join_labels_never_overwrites_with_na():
    df = manifest.new([face(k=0, smile=1, smile_source="fer@1"), face(k=1), face(k=2, smile=0)])
    labels = pd.DataFrame(
        {
            "image": ["a.jpg", "a.jpg", "a.jpg", "zzz.jpg"],
            "face": [0, 1, 2, 0],
            "smile": [None, 1, 1, 0],
            "smile_source": ["rater:r", "rater:r", "rater:r", "rater:r"],
        }
    )
    out = manifest.join_labels(df, labels)
    assert out["smile"].tolist() == [1, 1, 1]
    assert out["smile_source"].tolist() == ["fer@1", "rater:r", "rater:r"]
    assert out.dtypes.equals(df.dtypes)
    with pytest.raises(ManifestError, match="duplicate"):
        manifest.join_labels(df, pd.concat([labels, labels]))


# --- splits and stats ----------------------------------------------------------------


def many(n, prefix="p"):
    return manifest.new(
        [
            no_face(f"{prefix}{i}_{j}.jpg") | {"group": f"group{i}"}
            for i in range(n)
            for j in range(2)
        ]
    )


def test_assign_splits_is_deterministic_leak_free_and_roughly_proportional():
    df = many(1000)
    a = manifest.assign_splits(df, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=3)
    b = manifest.assign_splits(df, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert (a.groupby("group")["split"].nunique() == 1).all()
    share = a.drop_duplicates("group")["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.7) < 0.05 and abs(share["val"] - 0.2) < 0.04
    assert abs(share["test"] - 0.1) < 0.03
    other_seed = manifest.assign_splits(df, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=4)
    assert (other_seed["split"] != a["split"]).any()
    manifest.validate(a)


def test_assign_splits_is_stable_when_rows_are_added():
    small = manifest.assign_splits(many(50))
    bigger = manifest.assign_splits(manifest.merge(many(50), many(300, prefix="q")))
    before = small.set_index("image")["split"]
    assert bigger.set_index("image")["split"].loc[before.index].equals(before)


def test_assign_splits_keeps_existing_splits_and_fills_their_groups():
    df = manifest.new(
        [no_face(f"x{i}.jpg", split="test") | {"group": "fixed"} for i in range(3)]
        + [no_face("x3.jpg") | {"group": "fixed"}]
    )
    assert manifest.assign_splits(df)["split"].tolist() == ["test"] * 4
    leak = df.assign(split=["test", "val", "", ""])
    with pytest.raises(ManifestError, match="several splits"):
        manifest.assign_splits(leak)
    with pytest.raises(ManifestError, match="sum to 1"):
        manifest.assign_splits(df, {"train": 0.5, "val": 0.2})


def test_stats_counts_per_source_and_split():
    df = manifest.new(
        [
            face("a.jpg", 0, smile=1, split="train"),
            face("a.jpg", 1, smile=0, split="train", ignore=True),
            face("a.jpg", 2, split="train"),
            no_face("b.jpg", split="train"),
            face("c.jpg", 0, smile=1, split="val") | {"source": "t"},
        ]
    )
    got = manifest.stats(df).set_index(["source", "split"])
    assert got.loc[("s", "train")].tolist() == [2, 3, 1, 1, 1, 1]
    assert got.loc[("t", "val")].tolist() == [1, 1, 0, 1, 0, 0]
    assert list(got.columns) == [
        "images",
        "faces",
        "ignored",
        "smile_1",
        "smile_0",
        "smile_unknown",
    ]


def test_images_sha256_follows_the_pixels_not_the_rows(tmp_path):
    df = manifest.new([face("a.jpg", 0), face("a.jpg", 1), no_face("sub/b.jpg")])
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.jpg").write_bytes(b"aaa")
    (tmp_path / "sub" / "b.jpg").write_bytes(b"bbb")
    first = manifest.images_sha256(df, tmp_path)
    assert manifest.images_sha256(df.iloc[::-1], tmp_path) == first  # order-free
    assert manifest.images_sha256(df.iloc[:2], tmp_path) != first  # b.jpg left out
    (tmp_path / "a.jpg").write_bytes(b"aab")
    assert manifest.images_sha256(df, tmp_path) != first  # same rows, other pixels
    (tmp_path / "sub" / "b.jpg").unlink()
    with pytest.raises(ManifestError, match=r"sub/b\.jpg"):
        manifest.images_sha256(df, tmp_path)
