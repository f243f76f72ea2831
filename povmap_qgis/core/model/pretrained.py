"""ImageNet weights for the paper's ResNet backbones: Keras's cache, a folder, or a download.

``PRETRAINED=imagenet`` uses Keras's own cache (``$KERAS_HOME/models``, default
``~/.keras/models``) when the files are there, and otherwise downloads them from
Keras's address (or a mirror in ``POVMAP_IMAGENET_BASE_URL``) with a short time-out,
progress in the log and Keras's own checksum; offline, the step stops at once with a
message that says where to put the files. A folder given instead is used as it is,
never downloaded into.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import PovmapInputError

if TYPE_CHECKING:
    from ..progress import Reporter


KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
BASE_URL_VARIABLE = "POVMAP_IMAGENET_BASE_URL"
TIMEOUT_VARIABLE = "POVMAP_DOWNLOAD_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 20.0
# Keras's file names for the weights without the classifier, and their md5 as
# keras.applications.resnet / resnet_v2 check them (WEIGHTS_HASHES, "notop").
IMAGENET_FILES = {
    "resnet50": (
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626",
    ),
    "resnet50v2": (
        "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "fac2f116257151a9d068a22e544a4917",
    ),
    "resnet101": (
        "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "88cf7a10940856eca736dc7b7e228a21",
    ),
}
_CHUNK = 1 << 20


def keras_cache_folder() -> str:
    return os.path.expanduser(os.path.join(os.environ.get("KERAS_HOME", "~/.keras"), "models"))


def backbone_weights(
    pretrained: str | None, members: Iterable[str], reporter: Reporter | None = None
) -> dict[str, str]:
    """Path of the ImageNet weights file per paper member that can use one."""
    wanted = [member for member in members if member in IMAGENET_FILES]
    unable = [member for member in members if member not in IMAGENET_FILES]
    if pretrained and pretrained != "none" and unable and reporter is not None:
        reporter.warning(
            f"PRETRAINED: {', '.join(unable)} cannot start from ImageNet weights (only "
            f"{', '.join(IMAGENET_FILES)} can); {'they start' if len(unable) > 1 else 'it starts'} "
            "from random weights."
        )
    if not pretrained or pretrained == "none" or not wanted:
        return {}
    if pretrained != "imagenet":
        return _from_folder(pretrained, wanted)
    folder = keras_cache_folder()
    found = {}
    for member in wanted:
        name, md5 = IMAGENET_FILES[member]
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            _download(name, md5, folder, reporter)
        found[member] = path
    return found


def _from_folder(folder: str, wanted: Iterable[str]) -> dict[str, str]:
    found, missing = {}, []
    for member in wanted:
        path = os.path.join(folder, IMAGENET_FILES[member][0])
        if os.path.isfile(path):
            found[member] = path
        else:
            missing.append(path)
    if missing:
        raise PovmapInputError(
            "PRETRAINED",
            f"ImageNet weights are not in the folder given: {', '.join(missing)} not found. "
            "Copy Keras's *_notop.h5 files there, use 'imagenet' (Keras's cache, downloaded "
            "when missing), or leave it empty for no pretrained weights.",
        )
    return found


def _download(name: str, md5: str, folder: str, reporter: Reporter | None) -> None:
    base = os.environ.get(BASE_URL_VARIABLE) or KERAS_BASE_URL
    url = base.rstrip("/") + "/" + name
    timeout = float(os.environ.get(TIMEOUT_VARIABLE) or DEFAULT_TIMEOUT_S)
    target = os.path.join(folder, name)
    partial = f"{target}.partial-{os.getpid()}"
    offline_hint = (
        f"Copy {name} into {folder} (Keras's cache) from a machine with internet, give a "
        "folder holding Keras's *_notop.h5 files, or leave it empty for no pretrained weights."
    )
    if reporter:
        reporter.info(f"downloading ImageNet weights {url} into {folder}")
    os.makedirs(folder, exist_ok=True)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, reported = 0, -1
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if reporter:
                    reporter.check_canceled()
                    tenth = int(10 * done / total) if total else -1
                    if tenth > reported:
                        reported = tenth
                        reporter.info(f"  {name}: {done / 1e6:.0f} of {total / 1e6:.0f} MB")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        _remove(partial)
        reason = getattr(error, "reason", None) or error
        raise PovmapInputError(
            "PRETRAINED",
            f"the ImageNet weights could not be downloaded from {url} ({reason}; time-out "
            f"{timeout:g} s): this machine seems offline. {offline_hint}",
        ) from None
    except BaseException:
        _remove(partial)
        raise
    if digest.hexdigest() != md5:
        _remove(partial)
        raise PovmapInputError(
            "PRETRAINED",
            f"the file downloaded from {url} is not Keras's {name} (checksum differs); nothing "
            f"was kept. {offline_hint}",
        )
    os.replace(partial, target)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
