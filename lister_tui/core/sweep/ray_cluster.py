"""`lister-tui sweep --ray`: the sweep's shards on a Ray cluster, with the tables of a local run.

The driver (this process) plans the shards from the settings alone
(:func:`sweep.plan_shards`) and starts one actor per worker, each of which loads the
model once and keeps it (an ablation shard loads its one SAE). Each free worker gets
the next shard whose topic's original lists are sampled, runs the same
:class:`sweep.ShardRunner` as a local sweep and returns the shard's rows. The driver
saves each finished shard (``<out>/shards/``), merges the rows with
:class:`sweep.SweepState` in the canonical order and rewrites the tables, so they are
the ones a local run writes, whichever worker ran which shard.

Faults: Ray restarts an actor whose process died (``max_restarts``; the model is
loaded again) and the driver resubmits the shard it was running to the next free
worker, up to ``max_attempts`` runs; the manifest records each shard's worker,
attempts and failures. Finished shards stay in ``shards/`` when the driver stops, so
``--resume`` runs only the missing ones.

A cluster that lister-tui starts itself listens on 127.0.0.1 only, without Ray's dashboard
unless asked (:func:`init_ray`); a cluster for several machines is started on purpose with
``ray start --head`` and named with ``--ray HOST:PORT``.

Ray is an optional extra (``pip install 'lister-tui[ray]'``), imported only here. Long because
the worker actor, the driver's scheduling loop with its fault handling, and the cluster's start
belong together: each depends on the others' handling of a dead worker.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lister_tui.core.engine.registry import ModelEntry
from lister_tui.core.engine.threads import configure_torch_threads
from lister_tui.core.errors import ListerError
from lister_tui.core.sweep.run import ShardStore, SweepProgress, SweepResult, SweepState
from lister_tui.core.sweep.settings import SweepSettings
from lister_tui.core.sweep.shards import (
    ORIGINALS,
    Shard,
    ShardRunner,
    shard_meta,
    this_process,
)

RAY_MISSING = "--ray needs Ray, an optional extra: pip install 'lister-tui[ray]'"
# Fault injection for tests: "<shard id>|<marker file>" makes the worker running that
# shard kill its own process after the shard's first sample, once (while the marker
# file does not exist yet).
KILL_ONCE_ENV = "LISTER_TUI_SWEEP_KILL_ONCE"


def import_ray():
    """The ``ray`` module, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ListerError(f"{RAY_MISSING} ({exc})") from exc
    return ray


@dataclass
class RayOptions:
    """How a sweep runs on Ray (none of it changes the tables)."""

    address: str | None = None  # None: $RAY_ADDRESS or the cluster this machine joined, else a new local one
    workers: int | None = None  # None: as many as the cluster's CPUs (or GPUs) hold
    gpus_per_worker: float | None = None  # None: 1 if the cluster has GPUs and the device is not cpu, else 0
    threads: int | None = None  # torch CPU threads per worker, and the CPUs each one reserves (default 1)
    max_attempts: int = 3  # runs of one shard before the sweep fails
    max_restarts: int = 4  # restarts of one worker after its process died
    init: dict = field(default_factory=dict)  # more ray.init arguments (e.g. num_cpus of a local cluster)
    dashboard: bool = False  # a local cluster started here gets Ray's dashboard (on 127.0.0.1) only if asked
    worker_env: dict = field(default_factory=dict)  # environment variables of the workers' processes


def worker_shape(
    resources: Mapping[str, float], settings: SweepSettings, options: RayOptions
) -> tuple[int, float, float]:
    """(workers, CPUs per worker, GPUs per worker) for a cluster with ``resources`` (ray.cluster_resources())."""
    cpus_total, gpus_total = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    gpus = options.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if gpus_total >= 1 and settings.device != "cpu" else 0.0
    if gpus < 0 or not math.isfinite(gpus):
        raise ListerError(f"--gpus-per-worker must be 0 or more, got {gpus:g}")
    if options.threads is not None and options.threads < 1:
        raise ListerError(f"threads must be >= 1, got {options.threads}")
    if options.workers is not None and options.workers < 1:
        raise ListerError(f"--workers must be >= 1, got {options.workers}")
    cpus = float(options.threads or 1)
    capacity = int(cpus_total // cpus)
    if gpus > 0:
        capacity = min(capacity, int(gpus_total // gpus))
    have = f"the cluster has {cpus_total:g} CPUs and {gpus_total:g} GPUs"
    need = f"{cpus:g} CPU and {gpus:g} GPU per worker"
    if capacity < 1:
        raise ListerError(f"{have}: not enough for one worker ({need}); lower --gpus-per-worker or --threads")
    if options.workers is not None and options.workers > capacity:
        raise ListerError(f"{have}: room for {capacity} workers ({need}), not --workers {options.workers}")
    return options.workers or capacity, cpus, gpus


def _kill_once(shard: Shard) -> Callable[[str], bool] | None:
    """The test hook of KILL_ONCE_ENV for ``shard`` (None when it does not name it)."""
    target, _, marker = os.environ.get(KILL_ONCE_ENV, "").partition("|")
    if not marker or target != shard.id:
        return None

    def kill_after_a_sample(detail: str) -> bool:
        try:
            open(marker, "x").close()
        except FileExistsError:
            return False
        os.kill(os.getpid(), signal.SIGKILL)
        return False

    return kill_after_a_sample


class SweepWorker:
    """One worker of a Ray sweep (made an actor with ``ray.remote``): the model, loaded once, and a shard runner."""

    def __init__(self, settings: SweepSettings, threads: int | None, entry: dict | None = None, templates: tuple = ()):
        from lister_tui.core.engine.loading import load_model
        from lister_tui.core.engine.prompts import register_templates
        from lister_tui.core.engine.registry import entry_for

        self.settings = settings
        # the driver's entry and templates travel with the worker: a node has no --registry / --templates file
        register_templates(templates)
        model = entry_for(settings.model, entry) if entry is not None else settings.model
        self.loaded = load_model(model, device=settings.device, dtype=settings.dtype)
        self.threads = configure_torch_threads(self.loaded, threads)
        self.runner = ShardRunner(self.loaded, settings, one_sae_at_a_time=True)

    def describe(self) -> dict:
        """Where this worker runs: host, pid, Ray node and actor ids, device."""
        import ray

        context = ray.get_runtime_context()
        return {
            **this_process(),
            "node_ip": ray.util.get_node_ip_address(),
            "node_id": context.get_node_id(),
            "actor_id": context.get_actor_id(),
            "device": self.loaded.device,
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "torch_threads": self.threads,
        }

    def model_info(self) -> dict:
        from lister_tui.core.sweep.output import model_manifest

        return model_manifest(self.loaded, self.settings.sae_ids(self.loaded.entry))

    def run(self, shard: Shard, originals: list[dict] | None, run_id: str | None, attempt: int) -> tuple[dict, dict]:
        started = time.perf_counter()
        output = self.runner.run(shard, originals, _kill_once(shard))
        return output, shard_meta(time.perf_counter() - started, run_id, self.describe(), attempts=attempt)


def _reason(exc: BaseException) -> str:
    """A Ray error's cause in one line: the last line that names an exception (a ListerError's
    message alone), else the first line."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and not type(cause).__module__.startswith("ray"):
        return str(cause) if isinstance(cause, ListerError) else f"{type(cause).__name__}: {cause}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [m for m in map(_EXCEPTION_LINE.match, lines) if m]
    if named:
        name, message = named[-1].groups()
        return message if name == "ListerError" else f"{name}: {message}"
    return (lines or [type(exc).__name__])[0][:500]


_EXCEPTION_LINE = re.compile(r"^(?:[\w]+\.)*(\w+(?:Error|Exception)): (.*)$")


@dataclass
class _Slot:
    """One worker as the driver sees it."""

    actor: object
    info: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        i = self.info
        return f"worker pid {i.get('pid')} on {i.get('host')} ({i.get('node_ip')})"


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when nothing listens at a ``HOST:PORT`` (or ``ray://HOST:PORT``) address.

    ``ray.init`` retries an unreachable address for minutes before it gives up; a
    plain TCP connection answers in seconds. Other forms ("auto", "local") pass.
    """
    host_port = address.split("://", 1)[-1]
    host, sep, port = host_port.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ListerError(
            f"nothing answers at Ray address {address!r} ({exc.strerror or exc}); start the head node there with "
            f"`ray start --head --port={port}`, or check the address (give --ray alone to start a local cluster)"
        ) from exc


def run_sweep_ray(
    settings: SweepSettings,
    entry: ModelEntry,
    options: RayOptions | None = None,
    *,
    store: ShardStore | None = None,
    result: SweepResult | None = None,
    run_id: str | None = None,
    on_ready: Callable[[dict, dict], None] | None = None,
    on_progress: Callable[[SweepProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[SweepResult], None] | None = None,
    checkpoint_seconds: float = 2.0,
) -> SweepResult:
    """Run the sweep's shards on Ray workers; returns (and fills ``result`` in place) the merged rows.

    ``on_ready(model_info, runtime)`` is called once the workers have loaded the model
    (a writer starts the manifest with it). ``on_checkpoint(result)`` after finished
    shards, at most every ``checkpoint_seconds`` and once at the end.
    ``should_stop()`` is asked after each finished shard: True stops the sweep there
    (shards still running are dropped, ``complete=False``). With ``store``, finished
    shards are saved there and shards already saved are not run again.
    """
    options = options or RayOptions()
    ray = import_ray()
    state = SweepState(settings, entry, store, result, run_id)
    result = state.result
    report = on_progress or (lambda p: None)
    stop = should_stop or (lambda: False)
    checkpoint = on_checkpoint or (lambda r: None)

    started_here = not ray.is_initialized()
    if started_here and options.address:
        check_reachable(options.address)
    restore_env = None
    if started_here:
        where = options.address or "$RAY_ADDRESS, the cluster this machine joined, or a new local one"
        report(SweepProgress("shards", 0, len(state.plan), f"connecting to Ray ({where})"))
        restore_env = init_ray(ray, options)
    slots: list[_Slot] = []
    try:
        n, cpus, gpus = worker_shape(ray.cluster_resources(), settings, options)
        n = min(n, max(1, len(state.pending)))
        report(SweepProgress("shards", len(state.outputs), len(state.plan), f"starting {n} workers"))
        actor_options: dict = {
            "num_cpus": cpus,
            "num_gpus": gpus,
            "max_restarts": options.max_restarts,
            "max_task_retries": 0,  # the driver resubmits, and counts the attempts
        }
        if options.worker_env:
            actor_options["runtime_env"] = {"env_vars": {k: str(v) for k, v in options.worker_env.items()}}
        worker_class = ray.remote(SweepWorker).options(**actor_options)
        from lister_tui.core.engine.prompts import get_template
        from lister_tui.core.engine.registry_file import entry_record

        used = tuple(get_template(t, entry) for t in settings.templates)
        slots = [_Slot(worker_class.remote(settings, options.threads, entry_record(entry), used)) for _ in range(n)]
        try:
            for slot, info in zip(slots, ray.get([s.actor.describe.remote() for s in slots])):
                slot.info = info
            model_info = ray.get(slots[0].actor.model_info.remote())
        except ray.exceptions.RayError as exc:
            raise ListerError(f"a Ray worker could not start on {settings.model}: {_reason(exc)}") from exc
        runtime = {
            "mode": "ray",
            "run_id": run_id,
            "torch_threads": slots[0].info.get("torch_threads"),
            "ray": {
                "version": ray.__version__,
                "address": ray.get_runtime_context().gcs_address,
                "workers": [s.info for s in slots],
                "cpus_per_worker": cpus,
                "gpus_per_worker": gpus,
                "max_attempts": options.max_attempts,
            },
        }
        if on_ready is not None:
            on_ready(model_info, runtime)
        _drive(ray, state, slots, options, report, stop, checkpoint, checkpoint_seconds)
    finally:
        for slot in slots:
            with contextlib.suppress(Exception):  # an actor that is gone already is fine
                ray.kill(slot.actor, no_restart=True)
        if started_here:
            ray.shutdown()
        if restore_env is not None:
            restore_env()
    return result


# Ray's own switch for a single-machine instance: every server of the cluster (GCS, raylet, object
# manager, workers) then binds 127.0.0.1 instead of every interface.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def starts_local_cluster(ray, address: str | None) -> bool:
    """True when ``ray.init(address)`` would start a new cluster here (no address, no $RAY_ADDRESS,
    no cluster this machine joined)."""
    try:
        return ray._private.services.canonicalize_bootstrap_address(address) is None
    except (ConnectionError, ValueError, AttributeError):
        return False  # an address of a cluster elsewhere (ray.init says what is wrong with it)


def init_ray(ray, options: RayOptions) -> Callable[[], None]:
    """``ray.init`` for a sweep; a cluster it starts here listens on 127.0.0.1 only, with no dashboard
    unless ``options.dashboard``. Returns what undoes its changes to the environment (call it after
    ``ray.shutdown``). Its temp folder (sockets, logs, spilled objects) is a new folder of mode 700,
    not Ray's shared /tmp/ray (mode 777). To offer a cluster to other machines, start it yourself (``ray start --head
    --node-ip-address=<this machine's address>``) and give its address to ``--ray``."""
    kwargs = dict(options.init)
    previous = os.environ.get(LOOPBACK_ENV)
    local = starts_local_cluster(ray, options.address)
    private = None
    if local:
        # Ray's own temp folder (/tmp/ray) is made mode 777 for every user of the machine, and holds
        # the cluster's sockets, logs and object spill; a cluster of ours gets a folder of its own, 700
        import tempfile

        private = Path(kwargs.get("_temp_dir") or tempfile.mkdtemp(prefix="lister-ray-"))  # mkdtemp: mode 700
        kwargs["_temp_dir"] = str(private)
        os.environ[LOOPBACK_ENV] = "0"
        constants = ray._private.ray_constants
        was = constants.ENABLE_RAY_CLUSTER
        constants.ENABLE_RAY_CLUSTER = False  # read at import; the child processes read the variable
        kwargs.setdefault("include_dashboard", options.dashboard)
    where = options.address or "$RAY_ADDRESS, the cluster this machine joined, or a new local one"

    def restore() -> None:
        if local:
            constants.ENABLE_RAY_CLUSTER = was
            if previous is None:
                os.environ.pop(LOOPBACK_ENV, None)
            else:
                os.environ[LOOPBACK_ENV] = previous

    try:
        ray.init(address=options.address or None, log_to_driver=False, **kwargs)
        if private is not None:
            os.chmod(private, 0o700)  # Ray makes its temp folder shared (777) as it starts: closed again
    except (ConnectionError, RuntimeError, ValueError) as exc:
        restore()
        raise ListerError(
            f"cannot reach a Ray cluster at {where} ({exc}); start one with `ray start --head`, "
            "or give no address to start one here"
        ) from exc
    return restore


def _drive(
    ray, state: SweepState, slots: list[_Slot], options: RayOptions, report, stop, checkpoint, every: float
) -> None:
    """Hand out shards to free workers until every shard is done (or the sweep is asked to stop)."""
    result = state.result
    total = len(state.plan)
    queue = list(state.pending)  # plan order: the originals first, then condition by condition
    attempts: dict[str, int] = {}
    failures: dict[str, list[dict]] = {}
    running: dict = {}  # object ref -> (slot, shard or None for a worker's restart probe)
    idle = list(slots)
    alive = list(slots)
    last_checkpoint = time.monotonic()

    def progress(detail: str) -> None:
        report(SweepProgress("shards", len(state.outputs), total, detail))

    progress(f"{len(queue)} shards on {len(slots)} workers")
    state.check_samples()
    checkpoint(result)
    while queue or any(shard is not None for _, shard in running.values()):
        while idle:
            shard = next((s for s in queue if s.condition == ORIGINALS or state.originals(s) is not None), None)
            if shard is None:
                break
            queue.remove(shard)
            slot = idle.pop(0)
            attempts[shard.id] = attempts.get(shard.id, 0) + 1
            ref = slot.actor.run.remote(shard, state.originals(shard), state.run_id, attempts[shard.id])
            running[ref] = (slot, shard)
        if not alive or not running:
            raise ListerError(
                "every Ray worker died and could not be restarted; the finished shards are saved (--resume)"
            )
        done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
        for ref in done:
            slot, shard = running.pop(ref)
            if shard is None:  # a restarted worker answers again
                try:
                    slot.info = ray.get(ref)
                    idle.append(slot)
                except ray.exceptions.RayError:
                    alive.remove(slot)
                continue
            try:
                output, meta = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # the shard's own error: running it again gives the same
                raise ListerError(f"shard {shard.label} failed on {slot.name}: {_reason(exc)}") from exc
            except ray.exceptions.RayError as exc:  # the worker died (or is unreachable): run the shard again
                failures.setdefault(shard.id, []).append(
                    {"attempt": attempts[shard.id], "worker": dict(slot.info), "error": _reason(exc)}
                )
                if attempts[shard.id] >= options.max_attempts:
                    raise ListerError(
                        f"shard {shard.label} failed {attempts[shard.id]} times; the last time on {slot.name}: {_reason(exc)}"
                    ) from exc
                queue.insert(0, shard)
                running[slot.actor.describe.remote()] = (slot, None)  # free again once Ray has restarted it
                progress(f"{slot.name} died; running {shard.label} again")
                continue
            meta["failures"] = failures.get(shard.id, [])
            state.finish(shard, output, meta)
            idle.append(slot)
            if shard.condition == ORIGINALS:
                state.check_samples()
            progress(shard.label)
            if stop():
                checkpoint(result)
                return
            if time.monotonic() - last_checkpoint >= every:
                checkpoint(result)
                last_checkpoint = time.monotonic()
    checkpoint(result)
