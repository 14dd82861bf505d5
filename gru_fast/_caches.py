"""The CPU's level-2 cache per core, read from the machine at run time.

The packed kernel sizes the blocks of its large products to half of it, and
forward without a cache sizes its row blocks to it (functional.py): a Zen 3
core has 512 KiB, a Zen 4 core 1 MiB, a Xeon core 1-2 MiB, so no single
constant fits every CPU.  On Linux the kernel's cache description in sysfs
says it; elsewhere ``os.sysconf`` where the platform knows the name (CPython
on Linux often does not); otherwise FALLBACK_L2_BYTES.
"""

import functools
import os
import pathlib

FALLBACK_L2_BYTES = 1 << 20
SYSFS_CACHES = pathlib.Path("/sys/devices/system/cpu/cpu0/cache")


def _parse_size(text):
    """Bytes of a sysfs cache size such as '512K' or '2M'; 0 when unreadable."""
    text = text.strip().upper()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        if text and text[-1] in units:
            return int(text[:-1]) * units[text[-1]]
        return int(text)
    except ValueError:
        return 0


def _from_sysfs(caches=SYSFS_CACHES):
    """The level-2 data (or unified) cache of CPU 0 as Linux describes it; 0 if absent."""
    try:
        entries = sorted(caches.glob("index*"))
        for entry in entries:
            level = (entry / "level").read_text().strip()
            kind = (entry / "type").read_text().strip()
            if level == "2" and kind in ("Data", "Unified"):
                return _parse_size((entry / "size").read_text())
    except OSError:
        return 0
    return 0


def _from_sysconf():
    """os.sysconf's level-2 cache size where the platform knows the name; 0 otherwise."""
    try:
        size = os.sysconf("SC_LEVEL2_CACHE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 0
    return size if size > 0 else 0


@functools.cache
def level2_cache_bytes():
    """The level-2 cache of one core in bytes, as the machine reports it.

    Returns
    -------
    int
        From sysfs (Linux), else ``os.sysconf``, else FALLBACK_L2_BYTES (1 MiB).
    """
    return _from_sysfs() or _from_sysconf() or FALLBACK_L2_BYTES
