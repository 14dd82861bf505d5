"""Both directions of a bidirectional layer at once, where that pays.

The two directions of a layer are independent sequences: run at the same time
(one on a helper thread; the core releases the GIL for the whole sequence)
they need no meeting at all, where one call's threads meet at every step.
Whether it pays is measured per problem by `_concurrent.run_all`:
concurrently, each direction gets half of the core's threads; one after the
other, each gets all of them.
"""

from . import _concurrent


def run_both(first, second, key):
    """(first(), second()): two independent core calls, concurrently when that is faster.

    Parameters
    ----------
    first, second : callable
        Without arguments; each makes one core call (or a few).
    key : hashable
        What the timing is remembered by (the shapes, dtype and kind of call).

    Returns
    -------
    tuple
        (first(), second()).
    """
    return tuple(_concurrent.run_all([first, second], key))
