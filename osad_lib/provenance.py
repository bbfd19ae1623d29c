"""Which code produced a result: the git commit of the checkout that ran it.

Every results row records it (``git_sha``), so a number can be traced to the code behind it.
A checkout with changes to tracked files gets ``+dirty`` after the commit; an installed package
or a copy without ``.git`` records "".
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

from osad_lib.paths import PROJECT_ROOT

#: Appended to the commit when tracked files differ from it.
DIRTY_SUFFIX = "+dirty"


@functools.lru_cache(maxsize=4)
def code_commit(root: Path = PROJECT_ROOT) -> str:
    """The commit (40 hex digits) of the git checkout at ``root``, with :data:`DIRTY_SUFFIX`
    when its tracked files differ from it; "" when ``root`` is not a checkout's top folder (an
    installed package must not report the commit of a repository it happens to sit in) or git
    is missing. Asked once per process."""
    if not (root / ".git").exists() or not shutil.which("git"):
        return ""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=30)
        if head.returncode != 0:
            return ""
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                 capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return head.stdout.strip() + (DIRTY_SUFFIX if changed else "")


__all__ = ["DIRTY_SUFFIX", "code_commit"]
