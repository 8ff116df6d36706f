"""One receiver: decoder workers -> ordering -> writer, forwarder and live view.

Threads: ``nworkers`` decoder workers each own their upstream PULL socket (ZMQ round-robins the
detector's frames between them) and decode in parallel; one engine thread restores order and owns
the HDF5 file and the secondary socket, so neither needs a lock. With one worker there is no
worker thread: the engine thread receives and decodes itself, which saves a thread hand-over
per batch (with the GIL, hand-overs cost as much as the work at small frames). Commands from
other threads (abort, reset, close) are run by the engine thread between two messages.

The bounded queue between the two is the back-pressure: when writing cannot keep up, workers
wait, the upstream socket's buffer fills and the detector's PUSH waits. Nothing is dropped on the
write path; only the secondary port drops, and counts it.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import zmq

from ..detector import Detector, detector_for
from ..messages import FrameRun, Header, Image, InvalidMessage, Message, SeriesEnd, runs_of
from ..receiver_config import NexusConfig, ReceiverConfig
from ..transport import Upstream, wire_nbytes
from . import allocator
from .budget import ByteBudget
from .dectris_layout import DectrisFilesWriter
from .errors import one_line
from .forwarder import DROPPED, NO_CONSUMER, SENT, Forwarder
from .liveview import DOWNSAMPLE_MAX, DOWNSAMPLE_MIN, LiveView
from .nxmx import Nxmx
from .ordering import Ordering, OrderingCounts
from .roi import RoiCounter
from .stats import Stats, StatsSnapshot
from .writer import FrameMismatch, SeriesWriter, WriteFailed, WriteRefused

log = logging.getLogger(__name__)

TICK_S = 0.1  # how often gaps, rates and the flush interval are looked at
POLL_MS = 100  # how long a worker waits on its socket before looking at the stop flag
PATIENCE_SHARE = 0.25  # of a gap's wait, after which every batch passes a spent budget


@dataclass(frozen=True)
class Rejected:
    """A message the decoder refused, passed to the engine so it counts in the right series."""

    text: str
    msg_number: int | None  # where it stood in the stream, when the decoder could tell


Item = Message | FrameRun | Rejected  # what the engine takes from a decoder


class Receiver:
    def __init__(self, config: ReceiverConfig, detector: Detector | None = None) -> None:
        self.config = config
        self.detector = detector or detector_for(config)
        self.stats = Stats(
            detector_class=config.detector_class, upstream=tuple(self.detector.endpoints())
        )
        self.liveview = LiveView()
        self.rois = RoiCounter(config.rois, self.stats, config.name, config.roi_cpu)
        self.detector.keep_pixels = self.rois.wanted
        self.save_enabled = True
        self._ctx = zmq.Context()
        # batches of decoded messages and their size; the byte budget bounds the memory
        self._queue: queue.SimpleQueue[tuple[list[Item], int]] = queue.SimpleQueue()
        self._budget = ByteBudget(config.queue_mb << 20)
        self._control: queue.SimpleQueue[
            tuple[Callable[[], None], threading.Event, list[Exception]]
        ] = queue.SimpleQueue()
        self._ordering = Ordering(config.gap_timeout_s, expect_gaps=bool(config.file_suffix))
        self._base = OrderingCounts()
        self._forwarder: Forwarder | None = None
        self._writer: SeriesWriter | None = None
        self._writer_class: Callable[..., SeriesWriter] = SeriesWriter
        if config.layout == "dectris":  # a master and data files (engine/dectris_layout.py)
            self._writer_class = functools.partial(
                DectrisFilesWriter, images_per_file=config.images_per_file
            )
        keys = self.detector.mx_keys  # MX detectors' files are NXmx (engine/nxmx.py)
        self._nxmx = (
            Nxmx(keys, config.nexus or NexusConfig(), self.detector.frame_times)
            if keys is not None
            else None
        )
        self._series_open = False
        self._discarding = False
        self._silence_told = False
        self._last_data = time.monotonic()
        self._engine: threading.Thread | None = None
        # one decoder: the engine thread receives and decodes itself (no hand-over at all)
        self._inline = config.nworkers == 1
        self._source: Upstream | None = None
        self._workers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._closing = threading.Event()

    # --- life cycle ----------------------------------------------------------------------
    def open(self) -> None:
        """Bind the secondary port and start the engine thread (no upstream yet)."""
        if self._engine is not None:
            return
        allocator.keep_freed_memory()
        self._forwarder = Forwarder(
            self._ctx, self.config.data_host, self.config.data_port, self.config.forward_hwm
        )
        self.stats.secondary_port = self._forwarder.port
        self._engine = threading.Thread(
            target=self._supervised,
            args=(self._run_engine,),
            name=f"{self.config.name}-engine",
            daemon=True,
        )
        self._engine.start()
        log.info(
            "%s: secondary port %d, upstream %s",
            self.config.name,
            self._forwarder.port,
            ", ".join(self.stats.upstream),
        )

    def start(self) -> None:
        """Connect to the detector stream."""
        self.open()
        if self._inline:
            self._call(self._connect)
            return
        if self._workers:
            return
        self._stopping.clear()
        self._workers = [
            threading.Thread(
                target=self._supervised,
                args=(self._run_worker,),
                name=f"{self.config.name}-worker-{i}",
                daemon=True,
            )
            for i in range(self.config.nworkers)
        ]
        for worker in self._workers:
            worker.start()
        self.stats.connected = True

    def stop(self) -> None:
        """Disconnect from the detector stream; an open series stays open."""
        if self._inline:
            self._call(self._disconnect)
            return
        self._stopping.set()
        for worker in self._workers:
            worker.join()
        self._workers = []
        self.stats.connected = False

    def close(self) -> None:
        """Stop, write out what was received and close the file cleanly (also on SIGTERM)."""
        self.stop()
        if self._engine is not None:
            self._closing.set()
            self._engine.join()
            self._engine = None
        self.rois.close()
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        self._ctx.term()

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- commands ------------------------------------------------------------------------
    @property
    def secondary_port(self) -> int:
        return self.stats.secondary_port

    @property
    def downsample(self) -> int:
        return self.liveview.downsample

    @downsample.setter
    def downsample(self, value: int) -> None:
        if not DOWNSAMPLE_MIN <= int(value) <= DOWNSAMPLE_MAX:
            raise ValueError(f"downsample must be {DOWNSAMPLE_MIN}..{DOWNSAMPLE_MAX}, got {value}")
        self.liveview.downsample = int(value)

    def snapshot(self) -> StatsSnapshot:
        return self.stats.snapshot()

    def health(self) -> str:
        """Why the receiver no longer works ('' while it does): a thread of it died, or the
        engine is gone while the receiver is open. A liveness probe restarts on it."""
        if self.stats.fatal:
            return self.stats.fatal
        if self._engine is not None and not self._engine.is_alive():
            return f"{self.config.name}: the engine thread has ended"
        return ""

    def _supervised(self, run: Callable[[], None]) -> None:
        """A thread's body; should anything escape it, the receiver says so everywhere
        (FAULT, /status error, /health, the CLI's exit status) instead of idling silently."""
        try:
            run()
        except BaseException as exc:
            log.exception("%s: thread %s died", self.config.name, threading.current_thread().name)
            self.stats.die(
                f"{self.config.name}: thread {threading.current_thread().name} died "
                f"({type(exc).__name__}: {exc}); restart the receiver"
            )

    def set_rois(self, table: object) -> dict:
        """ROI definitions (rois.py) for the next series; the series in progress keeps its own.
        ValueError names what is wrong."""
        defined = self.rois.define(table)
        self.detector.keep_pixels = self.rois.wanted
        return defined

    def abort(self) -> None:
        """Close the file now; the rest of the current series is counted as discarded."""

        def run() -> None:
            if self._series_open:
                self._discarding = True
                self._close_writer(complete=False)
                self.stats.warn("series aborted by the operator; the rest is discarded")

        self._call(run)

    def reset(self) -> None:
        """Leave the error state once its cause is gone."""
        self._call(lambda: self.stats.reset(running=self._series_open))

    def _call(self, fn: Callable[[], None]) -> None:
        if self._engine is None or not self._engine.is_alive():
            fn()
            return
        done, failed = threading.Event(), list[Exception]()
        self._control.put((fn, done, failed))
        deadline = time.monotonic() + 10
        while not done.wait(TICK_S):
            if not self._engine.is_alive():  # died with the command queued: no one else runs
                fn()
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.config.name}: engine did not take the command in 10 s")
        if failed:
            raise failed[0]  # in the caller's thread: the engine goes on

    # --- decoding in the engine thread (nworkers == 1) ------------------------------------
    def _connect(self) -> None:
        if self._source is None:
            self._source = self.detector.open(self._ctx)
        self.stats.connected = True

    def _disconnect(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None
        self.stats.connected = False

    def _next_batch(self) -> tuple[list[Item], int]:
        """Decoded messages from the own socket, or from the workers' queue ([] after a tick),
        and the bytes the workers took from the budget for them."""
        if self._source is not None:
            return self._decode_all(self._source.receive(int(TICK_S * 1000))), 0
        try:
            return self._queue.get(timeout=TICK_S)
        except queue.Empty:
            return [], 0

    def _return_budget(self, taken: int, held_before: int) -> None:
        """Give back the budget of what left the engine's hands; frames that now wait in the
        ordering stay counted, so they are bounded by queue_mb too (beyond it only by the
        batches the ordering needs, see ``_must_pass_budget``)."""
        if not self._inline:  # one decoder: in order by itself, no budget
            self._budget.give(taken + held_before - self._ordering.held_bytes)

    # --- decoder workers -----------------------------------------------------------------
    def _run_worker(self) -> None:
        source = self.detector.open(self._ctx)
        try:
            while not self._stopping.is_set():
                batch = self._decode_all(source.receive(POLL_MS))
                if not batch:
                    continue
                frames = [m for m in batch if isinstance(m, (Image, FrameRun))]
                size = sum(m.nbytes_held for m in frames)
                head = min((m.msg_number for m in frames), default=0)
                needed = functools.partial(self._must_pass_budget, head)
                while not self._budget.take(size, POLL_MS / 1000, needed):
                    if self._stopping.is_set():
                        self.stats.warn(
                            f"stopped with the queue full: {len(batch)} messages not taken"
                        )
                        break
                else:
                    self._queue.put((batch, size))
        finally:
            source.close()

    def _must_pass_budget(self, head: int) -> bool:
        """Whether a batch whose lowest number is ``head`` must pass a spent budget: the
        frames held in the ordering wait for a number in it, or they have used a quarter of
        their wait (the gap timeout, or the grace after the series' end). Then the number may
        sit behind this batch in its socket (with several upstream endpoints a worker's socket
        interleaves them), and holding the batch until the wait is over would lose that
        frame. So a frame that a worker is slow to decode holds at most ``queue_mb`` behind
        it for that long, and then what comes until the gap timeout, as without a budget."""
        waits_for = self._ordering.waits_for
        return waits_for is not None and (
            head <= waits_for or self._ordering.patience_used() > PATIENCE_SHARE
        )

    def _decode_all(self, received: list) -> list[Item]:
        """Fast-lane runs are decoded already (lane.py); every other message is decoded here."""
        return [item if isinstance(item, FrameRun) else self._decode(item) for item in received]

    def _decode(self, parts: list) -> Message | Rejected:
        try:
            message = self.detector.decode(parts)
            if isinstance(message, Image):  # what arrived, whatever the decoder made of it
                message.nbytes_wire = wire_nbytes(parts)
            return message
        except InvalidMessage as exc:
            text = f"{self.config.name}: invalid message ({len(parts)} parts): {exc}"
            number = exc.msg_number
        except Exception as exc:  # a decoder bug must not take the receiver down
            log.exception("%s: decoder failed", self.config.name)
            text = f"{self.config.name}: decoder error ({type(exc).__name__}): {exc}"
            number = None
        text = one_line(text)  # it quotes the wire: one line, control characters escaped
        log.warning(text)
        return Rejected(text, number)

    # --- engine thread -------------------------------------------------------------------
    def _run_engine(self) -> None:
        last_tick = 0.0
        while True:
            batch, taken = self._next_batch()
            if not batch and self._closing.is_set():
                break
            held = self._ordering.held_bytes
            if batch:
                self._last_data = time.monotonic()
            for msg in batch:
                try:
                    self._take(msg)
                except Exception as exc:  # a bug must cost one message, not the receiver
                    self._internal_error(msg, exc)
            self._return_budget(taken, held)
            while not self._control.empty():
                fn, done, failed = self._control.get()
                try:
                    fn()
                except Exception as exc:  # the command's caller hears of it, not the engine
                    failed.append(exc)
                finally:
                    done.set()
            now = time.monotonic()
            if now - last_tick >= TICK_S:
                last_tick = now
                try:
                    self._tick(now)
                except Exception as exc:  # noqa: BLE001 - the next tick tries again
                    log.exception("%s: tick failed", self.config.name)
                    self._fault(f"internal error between messages: {exc!r}")
        self._release(self._ordering.flush())
        self._finish_series(complete=False, reason="receiver shut down mid-series")

    def _tick(self, now: float) -> None:
        held = self._ordering.held_bytes
        self._release(self._ordering.poll())
        self._return_budget(0, held)
        silent = now - self._last_data
        if self._series_open and silent > self.config.silence_timeout_s and not self._silence_told:
            self._silence_told = True
            text = (
                f"{self.config.name}: no data from the detector for {silent:.0f} s in series "
                f"{self.stats.series_id}; the series stays open until its end or a new header"
            )
            log.warning(text)
            self.stats.warn(text)
        self._sync_counts()
        allocator.bound_kept()
        if self._forwarder is not None:
            self._forwarder.watch()
            self.stats.consumers = self._forwarder.consumers
        self.stats.queue_depth = self._queue.qsize()
        self.stats.sample(now)
        if self._writer is not None:
            writer = self._writer
            self._fault_on_write_failure(lambda: writer.maybe_flush(now))
            self._fault_on_write_failure(lambda: self.rois.save(writer, now))

    def _sync_counts(self) -> None:
        counts = self._ordering.counts
        self.stats.frames_missing = counts.missing - self._base.missing
        self.stats.frames_duplicate = counts.duplicate - self._base.duplicate
        self.stats.frames_outside = counts.outside - self._base.outside

    def _take(self, msg: Item) -> None:
        """One item from a decoder: into the ordering, and on to the file what is ready."""
        if isinstance(msg, FrameRun):
            self._handle_safely(msg)  # ordered by the run itself
        elif isinstance(msg, Rejected):
            self.stats.add("frames_invalid")  # counted in order with its series
            self.stats.warn(msg.text)
            if msg.msg_number is not None:
                self._ordering.reject(msg.msg_number)
        else:
            self._release(self._ordering.push(msg))

    def _release(self, ready: list[Message]) -> None:
        """What the ordering let go, in order; consecutive frames of one form as one run."""
        for item in runs_of(ready):
            self._handle_safely(item)

    def _handle_safely(self, msg: Message | FrameRun) -> None:
        try:
            self._handle(msg)
        except Exception as exc:  # a bug must cost one message, not the receiver
            self._internal_error(msg, exc)

    def _internal_error(self, msg: Item, exc: Exception) -> None:
        """Counted as an invalid message, logged with its number and the traceback."""
        log.exception("%s: message %s", self.config.name, msg.msg_number)
        self.stats.add("frames_invalid")
        self._fault(f"internal error on message {msg.msg_number}: {exc!r}")

    def _handle(self, msg: Message | FrameRun) -> None:
        if isinstance(msg, FrameRun):
            self._frame_run(msg)
        elif isinstance(msg, Image):
            self._image(msg)
        elif isinstance(msg, Header):
            self._header(msg)
        elif isinstance(msg, SeriesEnd):
            self._forward_control(msg, "series_end")
            self._sync_counts()
            snap = self.stats
            complete = not (snap.frames_missing or self._discarding or snap.frames_invalid)
            self._finish_series(complete=complete, reason="frames missing or invalid")

    def _header(self, header: Header) -> None:
        self._finish_series(
            complete=False, reason="detector restarted: new header before series_end"
        )
        self._sync_counts()
        self._base = replace(self._ordering.counts)
        series_id = "" if header.series_id is None else str(header.series_id)
        self.stats.new_series(series_id, header.filename if header.saves else "")
        self._series_open, self._discarding, self._silence_told = True, False, False
        self.rois.begin_series()
        self.detector.keep_pixels = self.rois.wanted
        if header.saves and self.save_enabled:
            try:
                self._writer = self._writer_class(
                    header,
                    self.config.dset_name,
                    self.config.write_roots,
                    self.config.flush_interval_s,
                    file_suffix=self.config.file_suffix,
                    nxmx=self._nxmx,
                )
                log.info("%s: series %s -> %s", self.config.name, series_id, self._writer.path)
            except WriteRefused as exc:
                self._fault(f"file refused: {exc}")
        else:
            self._no_file(header, series_id)
        self._forward_control(header, "header")

    def _no_file(self, header: Header, series_id: str) -> None:
        """Say why a series is not written, in the log and in the messages: a series that
        leaves no file must never leave the operator guessing."""
        if header.no_file_reason and not header.filename:
            text = f"series {series_id}: no file written: {header.no_file_reason}"
            log.warning("%s: %s", self.config.name, text)
        else:
            why = (
                "saving is disabled (save_enabled false)"
                if not self.save_enabled
                else "the header says save_raw: false"
                if not header.save_raw
                else "the header names no file"
            )
            text = f"series {series_id}: no file written: {why} (forwarding and live view only)"
            log.info("%s: %s", self.config.name, text)
        self.stats.warn(f"{self.config.name}: {text}")

    def _image(self, image: Image) -> None:
        stats = self.stats
        if self._discarding:
            stats.frames_discarded += 1
            return
        if image.discard:  # counted received, not stored: nor in the compression ratio
            self._received(1, image.nbytes_wire, 0, 0, image.frame)
        else:
            self._received(1, image.nbytes_wire, image.nbytes_stored, image.nbytes_raw, image.frame)
        if self._writer is not None and not image.discard:
            try:
                self._writer.write(image)
                stats.frames_written += 1
            except FrameMismatch as exc:
                stats.add("frames_invalid")
                stats.warn(f"{self.config.name}: {self._writer.path}: {exc}")
            except (WriteFailed, WriteRefused) as exc:
                self._fault(str(exc))
                self._close_writer(complete=False)
        outcome = self._forwarder.send(image) if self._forwarder else NO_CONSUMER
        sent = int(outcome == SENT)
        self._forwarded(sent, 1 - sent, outcome)
        self.liveview.update(image, stats.series_id)
        self.rois.submit(image)

    def _frame_run(self, run: FrameRun) -> None:
        """A run of consecutive frames that continues the series exactly (or that the ordering
        let go as one) is counted, written and forwarded as one item. Any other (a worker's
        every n-th frame, after a gap, the first frames of a file, an aborted series) goes
        through as its images, by the same rules as every image."""
        writer = self._writer
        whole = (
            not self._discarding
            and (writer is None or writer.takes(run))
            and (run.stride == 1 or len(run) == 1)
        )
        if run.ordered and not whole:
            for image in run.images():
                self._handle_safely(image)
            return
        if not (whole and (run.ordered or self._ordering.take_run(run.msg_number, len(run)))):
            self._release([ready for image in run.images() for ready in self._ordering.push(image)])
            return
        count = len(run)
        self._received(
            count, run.nbytes_wire, run.nbytes_stored, run.nbytes_raw, run.first + count - 1
        )
        if writer is not None:
            before = writer.written
            try:
                writer.write_run(run)
            except WriteFailed as exc:
                self._fault(str(exc))
                self._close_writer(complete=False)
            finally:
                self.stats.frames_written += writer.written - before
        sent, outcome = self._forwarder.send_run(run) if self._forwarder else (0, NO_CONSUMER)
        self._forwarded(sent, count - sent, outcome)
        self.liveview.update(run.image(count - 1), self.stats.series_id)
        self.rois.submit_run(run)

    def _received(self, count: int, wire: int, stored: int, raw: int, last_frame: int) -> None:
        stats = self.stats
        stats.frames_received += count
        stats.bytes_wire += wire
        stats.bytes_stored += stored
        stats.bytes_raw += raw
        stats.last_frame_number = last_frame

    def _forwarded(self, sent: int, unsent: int, outcome: str) -> None:
        """Count frames sent on the secondary port, and the others by why they were not."""
        self.stats.frames_forwarded += sent
        if outcome == DROPPED:
            self.stats.forward_dropped += unsent
        elif outcome == NO_CONSUMER:
            self.stats.forward_no_consumer += unsent

    def _forward_control(self, msg: Header | SeriesEnd, what: str) -> None:
        if self._forwarder is None or self._forwarder.send(msg) != SENT:
            self.stats.warn(
                f"{self.config.name}: {what} of series {self.stats.series_id} not "
                f"forwarded: no secondary consumer ready"
            )

    def _finish_series(self, complete: bool, reason: str) -> None:
        if not self._series_open:
            return
        if not complete:
            self.stats.warn(
                f"{self.config.name}: series {self.stats.series_id} incomplete: {reason}"
            )
        self._close_writer(complete)
        self.rois.end_series()
        self._series_open = False
        self.stats.end_series(complete)
        allocator.give_back()

    def _close_writer(self, complete: bool) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._fault_on_write_failure(lambda: self.rois.save(writer, final=True))
            self._fault_on_write_failure(lambda: writer.close(complete))

    def _fault_on_write_failure(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except WriteFailed as exc:
            self._fault(str(exc))

    def _fault(self, text: str) -> None:
        text = one_line(text)
        log.error("%s: %s", self.config.name, text)
        self.stats.fail(text)
