import pytest

from msa_toolkit.errors import SpecMismatchError
from msa_toolkit.spec import ExtractorSpec, FeatureSpec


def _spec(dim=25, model="a"):
    return FeatureSpec((
        ExtractorSpec("opensmile", "audio", "1", {"feature_set": "eGeMAPSv02"}, dim, 100.0),
        ExtractorSpec("minilm", "text", "1", {"model": model}, 384, None),
    ))


def test_roundtrip_and_fingerprint():
    s = _spec()
    s2 = FeatureSpec.from_json(s.to_json())
    assert s2 == s and s2.fingerprint() == s.fingerprint()
    assert s.dims == {"text": 384, "audio": 25, "vision": 0}
    assert s.modalities == ("text", "audio")


def test_diff_names_every_difference():
    a, b = _spec(), _spec(dim=88, model="b")
    d = a.diff(b)
    assert any("audio.dim" in x for x in d) and any("text.params.model" in x for x in d)
    assert a.diff(b, modalities=["vision"]) == []
    with pytest.raises(SpecMismatchError, match="text.params.model"):
        a.require_compatible(b)
    # the message says which side of each "a != b" line is whose
    with pytest.raises(SpecMismatchError, match=r"\(each line: checkpoint != dataset\)"):
        a.require_compatible(b, sides=("checkpoint", "dataset"))


def test_duplicate_modality_rejected():
    e = ExtractorSpec("x", "audio", "1")
    with pytest.raises(ValueError):
        FeatureSpec((e, e))
