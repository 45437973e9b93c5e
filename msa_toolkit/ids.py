"""File and sample ids: one rule for `msa extract`, `msa dataset create` and MMSA pickles.

A clip is identified by its **video** and its **clip** within that video. The three places
that name clips write that pair with a different separator, and only here:

=====================  ======================  ===========================================
where                  form                    example for ``vidA/1.mp4``
=====================  ======================  ===========================================
``msa extract``        folder parts + stem,    ``vidA__1`` (``vidA__1.safetensors``); a file
(bundle names)         joined by ``__``        given directly is named by its stem (``1``)
``msa dataset create`` ``<video>_<clip>``      ``vidA_1`` (label files: ``video_id`` +
(sample ids)                                   ``clip_id``, or one ``id`` column)
MMSA pickle ``id``     ``<video>$_$<clip>``    ``vidA$_$1`` (as MMSA-FET writes it)
=====================  ======================  ===========================================

The sample id is the canonical one. A sample id is split into video and clip at its *last*
``_`` (CMU-MOSI ``03bSnISJMiM_1`` -> ``03bSnISJMiM`` + ``1``) unless the video and clip are
known (label files with both columns: clip ids may hold ``_``). MMSA export writes
``<video>$_$<clip>`` for every sample whose id is ``<video>_<clip>`` and the id itself
otherwise; MMSA import turns ``<video>$_$<clip>`` back into ``<video>_<clip>``, so a native
dataset exported and imported again keeps every id exactly (and an MMSA-FET pickle imported
and exported again keeps its ``$_$`` ids). An ``msa extract`` name maps to the sample id
with :func:`sample_id_of_name`; a dataset build also finds ``<video>__<clip>.<ext>`` files.
"""

from __future__ import annotations

from pathlib import PurePath

#: joins the folder parts of a file found inside a given folder into its `msa extract` name (``sub__clip``)
NAME_SEPARATOR = "__"
#: joins video and clip into a dataset sample id (``vidA_1``)
ID_SEPARATOR = "_"
#: joins video and clip in MMSA(-FET) pickle ids (``vidA$_$1``)
MMSA_ID_SEPARATOR = "$_$"


def extract_name(relative: PurePath) -> str:
    """The `msa extract` output name of a file at ``relative`` inside a given folder: its folder
    parts and stem joined by ``__`` (``vidA/1.mp4`` -> ``vidA__1``)."""
    return NAME_SEPARATOR.join(relative.with_suffix("").parts)


def sample_id(video: str, clip: str | None) -> str:
    """The dataset sample id of a clip: ``<video>_<clip>``, or ``<video>`` for a clip-less id."""
    return f"{video}{ID_SEPARATOR}{clip}" if clip else video


def split_sample_id(sid: str) -> tuple[str, str]:
    """``(video, clip)`` of a sample id without known columns: split at the last ``_``
    (``""`` as clip when there is none)."""
    video, _, clip = sid.rpartition(ID_SEPARATOR)
    return (video, clip) if video else (sid, "")


def sample_id_of_name(name: str) -> str:
    """The sample id of an `msa extract` name: the last folder is the video, the stem the clip
    (``vidA__1`` -> ``vidA_1``; a name without folders is its own id)."""
    video, _, clip = name.rpartition(NAME_SEPARATOR)
    return sample_id(video.rpartition(NAME_SEPARATOR)[2], clip) if video else name


def to_mmsa_id(sid: str, video: str | None, clip: str | None) -> str:
    """The MMSA pickle id of a sample: ``<video>$_$<clip>`` when ``sid`` is ``<video>_<clip>``, else ``sid``."""
    if video and clip and sid == sample_id(video, clip):
        return f"{video}{MMSA_ID_SEPARATOR}{clip}"
    return sid


def from_mmsa_id(mmsa_id: str) -> tuple[str, str, str | None]:
    """``(sample id, video, clip)`` of an MMSA pickle id: ``vidA$_$1`` -> ``("vidA_1", "vidA", "1")``;
    other ids are kept and split at their last ``_`` (clip None when there is no ``_``)."""
    if MMSA_ID_SEPARATOR in mmsa_id:
        video, _, clip = mmsa_id.partition(MMSA_ID_SEPARATOR)
        return sample_id(video, clip), video, clip
    video, clip = split_sample_id(mmsa_id)
    return mmsa_id, video, clip or None
