"""What to pip-install so that ``evox`` has the QE SDK (this very package) and its dependencies.

The rule, in order:

1. ``QE_SDK_SPEC`` (pip arguments, e.g. a wheel path or ``qe-python-worker==0.2``) if set;
2. if this package was installed from a local folder (``pip install -e .`` in development and
   CI, recorded in its ``direct_url.json``), that folder, editable when it was editable;
3. otherwise the same version from the package index: ``qe-python-worker==<version>``.

What must be present afterwards is the distribution at our version plus its (non-extra)
requirements; ``qe env create`` installs only what is missing of that.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from ._errors import EnvError

__all__ = ["DIST", "SPEC_VAR", "SdkSource", "sdk_source"]

DIST = "qe-python-worker"
SPEC_VAR = "QE_SDK_SPEC"


@dataclass(frozen=True)
class SdkSource:
    install_args: tuple[str, ...]  # for ``pip install``
    requirements: tuple[str, ...]  # what must be satisfied in evox
    describe: str


def sdk_source() -> SdkSource:
    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        raise EnvError(f"the {DIST} package is not installed here; reinstall qe") from None
    requirements = (f"{DIST}=={dist.version}", *(dist.requires or ()))
    override = os.environ.get(SPEC_VAR, "").strip()
    if override:
        return SdkSource(tuple(shlex.split(override)), requirements, f"{override} ({SPEC_VAR})")
    direct = dist.read_text("direct_url.json")
    if direct:
        info = json.loads(direct)
        url = urlparse(str(info.get("url", "")))
        if url.scheme == "file":
            folder = Path(url2pathname(unquote(url.path)))
            if info.get("dir_info", {}).get("editable"):
                return SdkSource(("-e", str(folder)), requirements, f"{DIST} {dist.version} (editable, {folder})")
            return SdkSource((str(folder),), requirements, f"{DIST} {dist.version} ({folder})")
    return SdkSource((f"{DIST}=={dist.version}",), requirements, f"{DIST} {dist.version}")
