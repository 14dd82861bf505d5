"""Sequences of one dataset padded into one time-major array, and batches cut from it.

Training reads random batches of rows many times per epoch.  Keeping the
sequences time-major, x (T, N, I), makes a batch one ``np.take`` along the
batch axis that is already the (T, B, I) layout the core reads, so the
batch-first GRU gets a transposed view and copies nothing more.  Rows with
fewer than T valid steps carry their ``lengths``; a batch is cut to its
longest row, and the core skips the padding.
"""

import numpy as np

__all__ = ["SequenceData", "pad_sequences"]


class SequenceData:
    """N sequences of I features, padded to T steps.

    Parameters
    ----------
    x_time_major : numpy.ndarray, shape (T, N, I)
        C-contiguous, zero after each row's last valid step.
    lengths : numpy.ndarray of int64, shape (N,), or None
        Valid steps per row (1..T); None when every row has T steps.
    """

    def __init__(self, x_time_major, lengths=None):
        self.x = x_time_major
        self.lengths = lengths

    @classmethod
    def from_batch_major(cls, x, lengths=None):
        """From (N, T, I) sequences (copied to time-major)."""
        return cls(np.ascontiguousarray(x.transpose(1, 0, 2)), lengths)

    @property
    def n_samples(self):
        """N, the number of sequences."""
        return self.x.shape[1]

    def batch(self, rows):
        """Rows `rows` as the batch-major view (B, T_b, I) and their lengths (or None).

        T_b is the longest of these rows; lengths is None when every row has T_b steps.
        """
        x, lengths = self.x, None
        if self.lengths is not None:
            lengths = self.lengths[rows]
            longest = int(lengths.max())
            x = x[:longest]
            if lengths.min() == longest:
                lengths = None
        return np.take(x, rows, axis=1).transpose(1, 0, 2), lengths

    def subset(self, rows):
        """A new SequenceData of the given rows."""
        x, lengths = self.batch(rows)
        return SequenceData(np.ascontiguousarray(x.transpose(1, 0, 2)), lengths)


def pad_sequences(sequences, dtype):
    """Pad a list of (T_i, I) arrays into one SequenceData.

    Parameters
    ----------
    sequences : list of numpy.ndarray
        Each (T_i, I) with T_i >= 1, all of the same I.
    dtype : numpy.dtype
        dtype of the padded array.

    Returns
    -------
    SequenceData
    """
    lengths = np.array([len(sequence) for sequence in sequences], dtype=np.int64)
    input_size = sequences[0].shape[1]
    x = np.zeros((int(lengths.max()), len(sequences), input_size), dtype=dtype)
    for row, sequence in enumerate(sequences):
        x[:len(sequence), row] = sequence
    return SequenceData(x, None if lengths.min() == lengths.max() else lengths)
