"""Explorer responsiveness on lister-tiny: regenerate -> first streamed token, and -> done.

Runs the real app headless (Textual's run_test) and drives it with key presses, so the
timings go through the app's own code path: key -> action -> thread worker ->
sample_lists(on_step=...) -> message -> token view updated. Timestamps are taken by
the main screen (``MainScreen.latency``) when the key's action runs, when the first
streamed token has been drawn into the view, and when the finished run (with its base,
curves and deltas) is shown.

    OMP_NUM_THREADS=1 python bench/explorer_latency.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import torch


async def _wait_done(pilot, screen, rid: int, timeout: float = 30.0) -> dict:
    start = time.perf_counter()
    while "done" not in screen.controller.latency.get(rid, {}) and "cancelled" not in screen.controller.latency.get(rid, {}):
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"run {rid} did not finish")
        await pilot.pause(0.005)
    return screen.controller.latency[rid]


async def _measure(pilot, screen, runs: int) -> list[tuple[float, float, int]]:
    out = []
    for _ in range(runs):
        await pilot.press("r")
        stamps = await _wait_done(pilot, screen, screen.state.run_id)
        run = screen.ws.latest_run(screen.state.current)
        out.append(((stamps["first_token"] - stamps["requested"]) * 1e3, (stamps["done"] - stamps["requested"]) * 1e3,
                    run.ablated.metrics.n_tokens - (run.ablated.prefix_len - run.ablated.prompt_len)))
    return out


def _row(name: str, values: list[tuple[float, float, int]]) -> str:
    first = [v[0] for v in values]
    done = [v[1] for v in values]
    new = statistics.median(v[2] for v in values)
    return (f"{name:<44} {statistics.median(first):>8.1f} {max(first):>8.1f} {statistics.median(done):>8.1f} "
            f"{max(done):>8.1f} {new:>6.0f}")


async def collect(runs: int) -> dict[str, list[tuple[float, float, int]]]:
    """Per case: (ms to the first streamed token, ms to the finished run, new tokens) of each run."""
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.engine.prompts import TEMPLATES
    from lister_tui.tui.app import ListerApp
    from lister_tui.tui.screens.generate import GenerateRequest

    torch.set_num_threads(1)
    lab = load_model("lister-tiny", device="cpu")
    app = ListerApp(lab, initial=GenerateRequest(tuple(TEMPLATES), ("Fruits", "Countries"), 2, 0, "code"))
    cases: dict[str, list[tuple[float, float, int]]] = {}
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        # a short list: the study's loop (top-5 res_0 pairs, regenerate from the attribution position)
        await pilot.press("a")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("K")
        cases["short list, from attr pos, top-5 (cold)"] = await _measure(pilot, screen, 1)
        cases["short list, from attr pos, top-5"] = await _measure(pilot, screen, runs)
        # the longest list, regenerated whole from the prompt with 5 features ablated everywhere
        longest = max(app.workspace.samples, key=lambda k: app.workspace.state(k).sample.metrics.n_tokens)
        from lister_tui.tui.widgets.sample_table import SampleTable

        app.screen.query_one(SampleTable).move_cursor(row=list(app.workspace.samples).index(longest))
        await pilot.pause()
        await pilot.press("a")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("R", "F")
        for _ in range(5):
            await pilot.press("e", "down")
        await pilot.pause()
        name = f"longest list ({app.workspace.state(longest).sample.metrics.n_tokens} tok), from prompt, 5 features everywhere"
        cases[name] = await _measure(pilot, screen, runs)
    return cases


def measure_latency(runs: int) -> dict[str, tuple[float, ...]]:
    """For `python -m bench`: per case and stage, the seconds of each run (the cold run is its own case)."""
    out = {}
    for case, values in asyncio.run(collect(runs)).items():
        for stage, index in (("first token", 0), ("done", 1)):
            out[f"{case}: {stage}"] = tuple(v[index] / 1e3 for v in values)
    return out


def main(runs: int) -> None:
    cases = asyncio.run(collect(runs))
    print(f"{'case':<44} {'first ms':>8} {'max':>8} {'done ms':>8} {'max':>8} {'new tok':>6}")
    print("\n".join(_row(name, values) for name, values in cases.items()))
    print("first = key press handled -> first streamed token drawn; done = -> finished run (base, curves, deltas) shown")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    main(parser.parse_args().runs)
