"""Shared parts of the benchmarks: the deterministic workload, one adapter per library, and the worker.

The worker runs ONE library in a fresh process (``python benchmarks/_harness.py --worker CONFIG_JSON``) so
every library starts cold, owns its own peak RSS, and cannot leave threads or sessions behind for the next
one. It prints one line ``RESULT_JSON {...}`` on stdout; libraries may log whatever they like around it.

Libraries (``--libs`` names):
    cio-v2      analytics_cio.Client(api_version="v2")  (this project; imported from the repository)
    cio-v1      analytics_cio.Client(api_version="v1")  (request-rate limit lifted for the throughput run)
    cio-pipelines  analytics_cio.Client(write_key=...)  (Data Pipelines, /v1/batch: the same wire as cdp)
    segment     segment.analytics.Client           (segment-analytics-python 2.x)
    cdp         customerio.analytics.Client        (customerio-cdp-analytics, Segment fork for CDP)
    customerio  customerio.CustomerIO              (synchronous Track API v1 client, http:// patched)
"""

from __future__ import annotations

import argparse
import gc
import importlib
import inspect
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from array import array
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

from fast_server import SEQ_KEY, get_stats

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
SITE_ID = "bench-site-id"
API_KEY = "bench-api-key"
WRITE_KEY = "bench-write-key"
ALL_LIBS = ("cio-v2", "cio-v2-stdlib", "cio-v1", "cio-pipelines", "segment", "cdp", "customerio")
RESULT_PREFIX = "RESULT_JSON "

# -- workload --------------------------------------------------------------------------------------------

_EVENTS = ("Order Completed", "Product Viewed", "Signed In", "Cart Updated", "Checkout Started")
_PLANS = ("free", "starter", "pro", "enterprise")
_CITIES = (("Berlin", "DE"), ("Lyon", "FR"), ("Austin", "US"), ("Osaka", "JP"), ("Porto", "PT"))
_BASE_TIME = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def make_workload(n: int, seed: int = 20240501) -> list[tuple[str, str, Optional[str], dict[str, Any]]]:
    """``n`` calls as (kind, user_id, event name or None, traits/properties); 1 in 10 is an identify.

    Deterministic: the same ``n`` and ``seed`` give the same data to every library, and a shorter run is a
    prefix of a longer one. Each payload carries ``bench_seq`` (its index), which the server reads back.
    """
    rng = random.Random(seed)
    calls: list[tuple[str, str, Optional[str], dict[str, Any]]] = []
    for i in range(n):
        user_id = f"user-{rng.randrange(2000):05d}"
        city, country = rng.choice(_CITIES)
        if i % 10 == 0:
            traits = {
                "email": f"{user_id}@example.com",
                "name": f"Person {user_id[-5:]}",
                "plan": rng.choice(_PLANS),
                "age": rng.randint(18, 90),
                "vip": rng.random() < 0.1,
                "created_at": _BASE_TIME - timedelta(days=rng.randrange(1000), seconds=rng.randrange(86400)),
                "address": {"city": city, "country": country, "zip": f"{rng.randrange(100000):05d}"},
                "tags": rng.sample(["beta", "newsletter", "mobile", "web", "b2b"], 2),
                SEQ_KEY: i,
            }
            calls.append(("identify", user_id, None, traits))
        else:
            properties = {
                "order_id": f"ord-{i:07d}",
                "revenue": round(rng.uniform(1, 500), 2),
                "currency": "EUR" if country in ("DE", "FR", "PT") else "USD",
                "quantity": rng.randint(1, 5),
                "product": {
                    "sku": f"SKU-{rng.randrange(10000):05d}",
                    "category": rng.choice(_PLANS),
                    "on_sale": True,
                },
                "skus": [f"SKU-{rng.randrange(10000):05d}" for _ in range(3)],
                "ordered_at": _BASE_TIME + timedelta(seconds=i),
                "coupon": None if rng.random() < 0.7 else "SPRING",
                SEQ_KEY: i,
            }
            calls.append(("track", user_id, rng.choice(_EVENTS), properties))
    return calls


def seq_of(message: Any, depth: int = 0) -> Optional[int]:
    """The ``bench_seq`` of a message a library hands back: a dict, or an object wrapping one."""
    if message is None or depth > 3:
        return None

    def get(obj: Any, name: str) -> Any:
        return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)

    value = get(message, SEQ_KEY)
    if value is not None:
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    for name in ("properties", "traits", "attributes", "data", "message", "msg", "op", "operation"):
        inner = get(message, name)
        if inner is not None and inner is not message and not isinstance(inner, (str, bytes, int, float)):
            found = seq_of(inner, depth + 1)
            if found is not None:
                return found
    return None


# -- adapters --------------------------------------------------------------------------------------------


class LibraryUnavailable(RuntimeError):
    """The library cannot be imported or does not have the expected API."""


Call = Callable[[str, str, Optional[str], dict[str, Any]], bool]


class Adapter:
    """How to create, call, flush and stop one library. ``call`` returns the library's ok flag."""

    name = ""
    synchronous = False

    def __init__(self, url: str, on_error: Callable[[Any, Any], None], mode: str) -> None:
        self.url = url
        self.on_error = on_error
        self.mode = mode
        self.settings: dict[str, Any] = {}

    def version(self) -> str:
        return ""

    def call(self, kind: str, user_id: str, name: Optional[str], payload: dict[str, Any]) -> bool:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


class SegmentApiAdapter(Adapter):
    """A client with analytics-python's API: ``identify``/``track`` returning ``(ok, msg)``, ``flush``, ``shutdown``."""

    client: Any

    def call(self, kind: str, user_id: str, name: Optional[str], payload: dict[str, Any]) -> bool:
        if kind == "identify":
            ok, _ = self.client.identify(user_id=user_id, traits=payload)
        else:
            ok, _ = self.client.track(user_id=user_id, event=name, properties=payload)
        return bool(ok)

    def flush(self) -> None:
        self.client.flush()

    def shutdown(self) -> None:
        self.client.shutdown()


class SegmentAdapter(SegmentApiAdapter):
    name = "segment"

    def __init__(self, url: str, on_error: Callable[[Any, Any], None], mode: str) -> None:
        super().__init__(url, on_error, mode)
        try:
            module = importlib.import_module("segment.analytics")
        except ImportError as exc:
            raise LibraryUnavailable(f"segment-analytics-python is not installed: {exc}") from exc
        # default settings; only the destination and the error callback are set
        self.client = module.Client(WRITE_KEY, host=url, on_error=on_error)
        self.settings = {"host": url, "on_error": "counted", "other": "defaults"}

    def version(self) -> str:
        return metadata.version("segment-analytics-python")



class CdpAdapter(SegmentAdapter):
    name = "cdp"

    def __init__(self, url: str, on_error: Callable[[Any, Any], None], mode: str) -> None:
        Adapter.__init__(self, url, on_error, mode)
        try:
            module = importlib.import_module("customerio.analytics")
        except ImportError as exc:
            raise LibraryUnavailable(f"customerio-cdp-analytics is not installed: {exc}") from exc
        # posts {"batch": [...]} to {host}/v1/batch like Segment's client; host= is honoured as given
        self.client = module.Client(WRITE_KEY, host=url, on_error=on_error)
        self.settings = {"host": url, "on_error": "counted", "other": "defaults"}

    def version(self) -> str:
        return metadata.version("customerio-cdp-analytics")


class CustomerIOAdapter(Adapter):
    """customerio 3.x: synchronous, one HTTP request per call, made on the caller's thread."""

    name = "customerio"
    synchronous = True

    def __init__(self, url: str, on_error: Callable[[Any, Any], None], mode: str) -> None:
        super().__init__(url, on_error, mode)
        try:
            customerio = importlib.import_module("customerio")
        except ImportError as exc:
            raise LibraryUnavailable(f"customerio is not installed: {exc}") from exc
        self.client = _local_customerio_class(customerio.CustomerIO)(SITE_ID, API_KEY, host=url)
        self.settings = {"base_url": self.client.base_url, "patched": "http:// base URL + adapter (README)"}

    def version(self) -> str:
        return metadata.version("customerio")

    def call(self, kind: str, user_id: str, name: Optional[str], payload: dict[str, Any]) -> bool:
        # a synchronous client reports failure by raising (CustomerIOException): the worker counts it as
        # "raised" and the call as refused
        if kind == "identify":
            self.client.identify(user_id, **payload)
        else:
            self.client.track(user_id, name, payload)
        return True

    def shutdown(self) -> None:
        self.client.close()


def _local_customerio_class(base: type) -> type:
    """customerio.CustomerIO with the two overrides needed to reach http://127.0.0.1:PORT.

    ``setup_base_url`` always builds ``https://{host}[:{port}]/api/v1``, and ``_build_session`` mounts the
    retrying keep-alive adapter on ``https://`` only. Everything else (sanitising, retries, pooling) is as is.
    """

    class LocalCustomerIO(base):  # type: ignore[valid-type, misc]
        def setup_base_url(self) -> None:
            host = self.host if "://" in self.host else f"http://{self.host}"
            self.base_url = f"{host.rstrip('/')}/{self.url_prefix.strip('/')}"

        def _build_session(self) -> Any:
            session = super()._build_session()
            session.mount("http://", session.get_adapter("https://"))
            return session

    return LocalCustomerIO


class AnalyticsCioAdapter(SegmentApiAdapter):
    """This project's client, through its public API only (api.md)."""

    api_version = "v2"

    def __init__(self, url: str, on_error: Callable[[Any, Any], None], mode: str) -> None:
        super().__init__(url, on_error, mode)
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))  # benchmark the package in this checkout
        try:
            module = importlib.import_module("analytics_cio")
        except Exception as exc:
            raise LibraryUnavailable(f"analytics_cio is not importable from {REPO_ROOT}: {exc!r}") from exc
        client_class = getattr(module, "Client", None)
        if client_class is None:
            raise LibraryUnavailable(
                f"analytics_cio (from {getattr(module, '__file__', None) or REPO_ROOT}) has no Client yet"
            )
        self.module = module
        kwargs: dict[str, Any] = {"host": url, "api_version": self.api_version, "on_error": on_error}
        try:
            params = inspect.signature(client_class).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        if self.api_version == "v1" and mode == "throughput":
            # v1 sends one request per op under a self-imposed rate limit: lift it to measure the client
            for name in params:
                if "per_second" in name or name in ("rate_limit", "max_rps", "requests_per_second"):
                    kwargs[name] = 1_000_000
        try:
            self.client = client_class(SITE_ID, API_KEY, **kwargs)
        except (TypeError, ValueError) as exc:
            lifted = [k for k in kwargs if k not in ("host", "api_version", "on_error")]
            if not lifted:
                raise
            for key in lifted:  # the limit may want None for "unlimited" instead of a large number
                kwargs[key] = None
            try:
                self.client = client_class(SITE_ID, API_KEY, **kwargs)
            except (TypeError, ValueError):
                raise LibraryUnavailable(f"analytics_cio.Client rejected {sorted(kwargs)}: {exc}") from exc
        for method in ("identify", "track", "flush", "shutdown"):
            if not callable(getattr(self.client, method, None)):
                raise LibraryUnavailable(f"analytics_cio.Client has no {method}() yet")
        self.settings = {key: (value if key != "on_error" else "counted") for key, value in kwargs.items()}

    def version(self) -> str:
        version = getattr(self.module, "__version__", "") or getattr(self.module, "VERSION", "")
        return str(version or "checkout")



class AnalyticsCioV1Adapter(AnalyticsCioAdapter):
    api_version = "v1"


class AnalyticsCioStdlibJsonAdapter(AnalyticsCioAdapter):
    """v2 with the standard library's JSON encoder even when the optional orjson is installed."""

    def __init__(self, url: str, on_error: Callable[[Any, Any], None], mode: str) -> None:
        os.environ["ANALYTICS_CIO_JSON"] = "stdlib"  # read when analytics_cio is imported, in this fresh process
        super().__init__(url, on_error, mode)


class AnalyticsCioPipelinesAdapter(SegmentApiAdapter):
    """This project's client sending to Customer.io Data Pipelines (``write_key``), default settings otherwise."""

    name = "cio-pipelines"

    def __init__(self, url: str, on_error: Callable[[Any, Any], None], mode: str) -> None:
        super().__init__(url, on_error, mode)
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        try:
            self.module = importlib.import_module("analytics_cio")
            self.client = self.module.Client(write_key=WRITE_KEY, host=url, on_error=on_error)
        except Exception as exc:
            raise LibraryUnavailable(f"analytics_cio has no Data Pipelines client here: {exc!r}") from exc
        self.settings = {"write_key": "bench", "host": url, "on_error": "counted", "other": "defaults"}

    def version(self) -> str:
        return str(getattr(self.module, "__version__", "") or "checkout")


ADAPTERS: dict[str, type[Adapter]] = {
    "cio-v2": AnalyticsCioAdapter,
    "cio-v2-stdlib": AnalyticsCioStdlibJsonAdapter,
    "cio-v1": AnalyticsCioV1Adapter,
    "cio-pipelines": AnalyticsCioPipelinesAdapter,
    "segment": SegmentAdapter,
    "cdp": CdpAdapter,
    "customerio": CustomerIOAdapter,
}


# -- the worker (one library, one fresh process) ---------------------------------------------------------


def _current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _percentile(sorted_values: Any, fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return float(sorted_values[index])


def _wait_for_delivery(url: str, expected: int, quiet: float = 0.5, timeout: float = 30.0) -> dict[str, Any]:
    """Poll the server until ``expected`` distinct events arrived, or nothing new came for ``quiet`` s."""
    deadline = time.monotonic() + timeout
    stats = get_stats(url)
    since = time.monotonic()
    while stats["unique_seqs"] < expected and time.monotonic() < deadline:
        time.sleep(0.01)
        now = get_stats(url)
        if (now["requests"], now["events_delivered"]) != (stats["requests"], stats["events_delivered"]):
            since = time.monotonic()
        elif time.monotonic() - since >= quiet:
            stats = now
            break
        stats = now
    return stats


def run_worker(config: dict[str, Any]) -> dict[str, Any]:
    lib, url, events, mode = config["lib"], config["url"], int(config["events"]), config["mode"]
    result: dict[str, Any] = {"lib": lib, "mode": mode, "events": events}
    if config.get("cpu") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(config["cpu"])})  # before any library thread exists, so all inherit it
    result["cpus"] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

    lock = threading.Lock()
    reported: list[int] = []
    reported_count = [0]
    error_types: dict[str, int] = {}

    def on_error(exc: Any, messages: Any) -> None:
        if isinstance(messages, dict) or not hasattr(messages, "__iter__"):
            messages = [messages]
        with lock:
            for message in messages:
                reported_count[0] += 1
                seq = seq_of(message)
                if seq is not None:
                    reported.append(seq)
            error_types[type(exc).__name__] = error_types.get(type(exc).__name__, 0) + 1

    workload = make_workload(events)
    gc.collect()
    result["rss_before_client_bytes"] = _current_rss_bytes()
    try:
        adapter = ADAPTERS[lib](url, on_error, mode)
    except LibraryUnavailable as exc:
        result["error"] = str(exc)
        return result
    result["version"] = adapter.version()
    result["settings"] = adapter.settings
    result["synchronous"] = adapter.synchronous

    latencies = array("q", bytes(8 * events))
    refused: list[int] = []
    raised = 0
    perf_ns = time.perf_counter_ns
    call = adapter.call

    start_wall = time.time()
    start_cpu = time.process_time()
    start = time.perf_counter()
    for i, (kind, user_id, name, payload) in enumerate(workload):
        t0 = perf_ns()
        try:
            ok = call(kind, user_id, name, payload)
        except Exception as exc:  # a library raising at the call is an outcome to report, not a crash
            ok = False
            raised += 1
            label = "raised:" + type(exc).__name__
            error_types[label] = error_types.get(label, 0) + 1
        latencies[i] = perf_ns() - t0
        if not ok:
            refused.append(i)
    calls_done = time.perf_counter()
    adapter.flush()
    flush_done = time.perf_counter()
    flush_done_wall = time.time()
    cpu_seconds = time.process_time() - start_cpu

    accepted = events - len(refused)
    stats = _wait_for_delivery(url, accepted)
    last_delivery = stats.get("last_delivery_time") or flush_done_wall
    end_to_end = max(flush_done_wall, last_delivery) - start_wall

    shutdown_start = time.perf_counter()
    adapter.shutdown()
    shutdown_seconds = time.perf_counter() - shutdown_start

    ordered = sorted(latencies)
    result.update(
        {
            "calls": events,
            "accepted": accepted,
            "refused": len(refused),
            "refused_seqs": refused if mode == "faults" else None,
            "raised": raised,
            "reported": reported_count[0],
            "reported_seqs": sorted(set(reported)) if mode == "faults" else None,
            "error_types": error_types,
            "caller_median_us": _percentile(ordered, 0.5) / 1000,
            "caller_p99_us": _percentile(ordered, 0.99) / 1000,
            "caller_max_us": ordered[-1] / 1000 if ordered else None,
            "caller_total_s": sum(ordered) / 1e9,
            "calls_seconds": calls_done - start,
            "flush_seconds": flush_done - calls_done,
            "first_call_to_flush_return_s": flush_done - start,
            "end_to_end_s": end_to_end,
            "shutdown_seconds": shutdown_seconds,
            "cpu_seconds": cpu_seconds,
            "cpu_us_per_event": cpu_seconds * 1e6 / events if events else None,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "delivered_at_flush_plus_wait": stats["unique_seqs"],
        }
    )
    return result


def spawn_worker(config: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one library in a fresh interpreter; return its result (with ``error`` set if it failed)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(config)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(BENCH_DIR))
    except subprocess.TimeoutExpired as exc:
        return {"lib": config["lib"], "error": f"timed out after {timeout:.0f}s", "stderr": _tail(exc.stderr)}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
            if done.stderr.strip():
                result["stderr"] = _tail(done.stderr)
            return result
    return {
        "lib": config["lib"],
        "error": f"worker exited with {done.returncode} and no result",
        "stderr": _tail(done.stderr),
    }


def _tail(text: Any, lines: int = 15) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").strip().splitlines()[-lines:])


# -- shared helpers for the two benchmark scripts --------------------------------------------------------


def parse_libs(values: list[str], default: tuple[str, ...]) -> list[str]:
    libs: list[str] = []
    for value in values or [",".join(default)]:
        libs += [v.strip() for v in value.split(",") if v.strip()]
    unknown = [lib for lib in libs if lib not in ADAPTERS]
    if unknown:
        raise SystemExit(f"unknown libraries {unknown}; choose from {', '.join(ADAPTERS)}")
    return libs


def pick_cpus(pin: bool) -> tuple[Optional[int], Optional[int]]:
    """(client cpu, server cpu) when pinning: different cores if there are two, else the same one."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[0], cpus[1] if len(cpus) > 1 else cpus[0]


def add_common_arguments(parser: argparse.ArgumentParser, default_json: str) -> None:
    """The options both benchmark scripts take the same way."""
    parser.add_argument("--json", default=default_json, help="results file (default %(default)s)")
    parser.add_argument("--pin", action="store_true", help="pin libraries to one core, server to another")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a library may take (then killed)")


def announce(pin: bool) -> tuple[dict[str, Any], Optional[int], Optional[int]]:
    """Print where the run happens; return the environment record and the client and server CPUs."""
    client_cpu, server_cpu = pick_cpus(pin)
    env = environment(pin)
    placement = f"pinned: client cpu {client_cpu}, server cpu {server_cpu}" if pin else "unpinned"
    print(f"Python {env['python']} on {env['platform']}, {env['cpus']} CPUs, {placement}", flush=True)
    return env, client_cpu, server_cpu


def environment(pin: bool) -> dict[str, Any]:
    import platform

    versions = {}
    for dist in ("segment-analytics-python", "customerio", "customerio-cdp-analytics", "requests", "urllib3"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pinned": pin,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions,
    }


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(str(h))] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    return "\n".join(lines)


def write_json(path: str, payload: dict[str, Any]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(target)


def _main() -> int:
    parser = argparse.ArgumentParser(description="benchmark worker (internal)")
    parser.add_argument("--worker", required=True, help="JSON config")
    args = parser.parse_args()
    try:
        result = run_worker(json.loads(args.worker))
    except Exception as exc:
        import traceback

        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    sys.stdout.write(RESULT_PREFIX + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
