"""Sardana's NeXus scan recorder, taught the references of tango_receiver's controller.

Sardana's ``NXscanH5_FileRecorder`` turns h5file references into one virtual dataset, but maps
each point to one whole 2-D dataset; a receiver writes one 3-D frame stack per series, and a
point is a run of rows in it (``...::entry/instrument/detector/data[first:stop]``). The stock
recorder does not match that form, warns, and keeps the references as strings; this one maps
each point to its rows: ``measurement/<channel>`` is ``[point, frame, y, x]``, a virtual dataset
over the receivers' files, and ``measurement/<channel>_ref`` keeps the references.

The MacroServer loads this file from its ``RecorderPath`` (``tango_receiver.sardana
.RECORDER_PATH``) as a top-level module; being in a directory ahead of Sardana's own, it is the
recorder of ``.h5`` scan files. Every other column and reference form goes to the stock code.
"""

from __future__ import annotations

import h5py
import numpy as np
import sardana.macroserver.recorders.h5storage as h5storage

from tango_receiver.sardana.points import FrameRange


class NXscanH5_ReceiverRecorder(h5storage.NXscanH5_FileRecorder):
    """``NXscanH5_FileRecorder`` that also resolves references to a range of frames."""

    formats = {"h5": ".h5"}

    def _endRecordList(self, recordlist):
        if self.filename is not None:
            # by name: self.datadesc lacks the columns of types the recorder does not store
            declared = {dd.name: dd for dd in self.currentlist.getEnviron()["datadesc"]}
            for dd in self.datadesc:
                if dd.value_ref_enabled and self._map_frame_ranges(dd.label, declared[dd.name]):
                    dd.value_ref_enabled = False  # mapped here: the stock code leaves it be
        super()._endRecordList(recordlist)

    def _map_frame_ranges(self, label: str, declared) -> bool:
        """Replace the column's references by a virtual dataset of the frames they name, laid
        out by the channel's ``declared`` frame shape and type (from the scan's start, as the
        stock recorder does); False (nothing done) when they are not frame ranges."""
        measurement = self.fd[self.entryname]["measurement"]
        references = list(measurement[label].asstr()[...])
        ranges = [FrameRange.parse(r) for r in references]
        named = [r for r in ranges if r is not None]
        if not named:
            return False
        frame = tuple(declared.shape)
        if len(frame) != 2:
            self.warning(
                "%s: frame shape %r unknown (the channel's shape); references kept as strings",
                label,
                frame,
            )
            return False
        frames = max(r.stop - r.first for r in named)
        layout = h5py.VirtualLayout(shape=(len(ranges), frames, *frame), dtype=declared.dtype)
        for point, (reference, rows) in enumerate(zip(references, ranges, strict=True)):
            if rows is None:
                self.warning(
                    "%s: point %d: %r names no frames; left empty", label, point, reference
                )
                continue
            source = h5py.VirtualSource(rows.file, rows.dataset, shape=(rows.stop, *frame))
            layout[point, : rows.stop - rows.first] = source[rows.first : rows.stop]
        measurement.move(label, f"{label}_ref")
        measurement.create_virtual_dataset(label, layout, fillvalue=np.zeros((), declared.dtype))
        return True
