"""results.json -> REPORT.md (tables and targets) and throughput.png.

    python bench/report.py [bench/results]     # redraw from an existing results.json
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADLINE = (8, 1)  # 8 concurrent clients, one doc per request: issue 2's figure
GB = 1e9


@dataclass(frozen=True)
class Row:
    setting: str
    kind: str  # service | raw | reference
    median: dict[str, Any]  # the setting's median round
    spread: tuple[float, float]  # words/s, slowest and fastest round
    vs_raw: float  # words/s over the raw forward's, paired within a round, median
    vs_ref: float | None
    peak_rss: int | None
    padding: str

    @property
    def words_per_s(self) -> float:
        return float(self.median["words_per_s"])

    @property
    def cpu_ms_per_word(self) -> str:
        """CPU time per word, all processes of the setting (service: server + client)."""
        cpu = self.median.get("cpu_s")
        if cpu is None:
            return "-"
        total = sum(cpu.values()) if isinstance(cpu, dict) else cpu
        words = self.median["words_per_s"] * self.median["seconds"]
        detail = f" ({1000 * cpu['server'] / words:.2f} server)" if isinstance(cpu, dict) and "server" in cpu else ""
        return f"{1000 * total / words:.2f}{detail}"


def _row(setting: str, kind: str, agg: dict[str, Any], peak_rss: int | None, padding: str) -> Row:
    low, high = agg["words_per_s_range"]
    return Row(setting, kind, agg["median"], (low, high), agg["vs_raw"], agg.get("vs_ref"), peak_rss, padding)


def service_name(clients: int, per_request: int) -> str:
    name = f"service, {clients} client{'s' * (clients > 1)} x {per_request} doc{'s' * (per_request > 1)}/request"
    return name + (" (headline)" if (clients, per_request) == HEADLINE else "")


def server_rss(res: dict[str, Any]) -> int | None:
    server = res["server"]
    rss = server["peak_rss_lifetime_bytes"] or server["peak_rss_sampled_bytes"]
    return int(rss) if rss else None


def rows(res: dict[str, Any]) -> list[Row]:
    out = [_row(service_name(s["clients"], s["docs_per_request"]), "service", s, server_rss(res),
                f"{s['offline_padding_efficiency']:.2f} (offline est.)") for s in res["service"]]
    raw = res["raw_forward"]
    for key, label in (("sorted", "length-sorted"), ("arrival", "arrival order")):
        out.append(_row(f"raw torch forward, {label}", "raw", raw[key], raw["peak_rss_bytes"],
                        f"{raw[key]['median']['padding_efficiency']:.2f}"))
    if ref := res["spacy_transformers"]:
        out.append(_row("spacy-transformers 1.4, nlp.pipe", "reference", ref, ref["peak_rss_bytes"],
                        f"{ref['median']['padding_efficiency']:.2f}"))
    return out


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def targets(res: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, what was measured, met). Throughput targets use the paired ratios."""
    service = {(s["clients"], s["docs_per_request"]): s for s in res["service"]}
    has_ref = res["spacy_transformers"] is not None
    out = []
    if head := service.get(HEADLINE):
        out.append(("service (8 clients) >= 0.9x raw forward words/s", f"{head['vs_raw']:.2f}x", head["vs_raw"] >= 0.9))
        if has_ref:
            out.append(("service (8 clients) >= 1.7x spacy-transformers words/s", f"{head['vs_ref']:.2f}x", head["vs_ref"] >= 1.7))
    top = max(service.values(), key=lambda s: float(s["vs_raw"]))
    name = service_name(top["clients"], top["docs_per_request"])
    out.append((f"best service setting >= 0.9x raw forward (issue 4, saturation): {name}", f"{top['vs_raw']:.2f}x", top["vs_raw"] >= 0.9))
    if has_ref:
        out.append((f"best service setting >= 2.5x spacy-transformers (issue 4): {name}", f"{top['vs_ref']:.2f}x", top["vs_ref"] >= 2.5))
    if rss := server_rss(res):
        out.append(("server peak RSS <= 1.2 GB", f"{rss / GB:.3f} GB", rss <= 1.2 * GB))
    one = res["single_doc"]
    out.append((f"idle p50 of a {one['words']}-word doc <= raw forward + 3 ms (issue 4)",
                f"{one['idle_minus_forward_ms']:+.1f} ms", one["idle_minus_forward_ms"] <= 3))
    return out


def paired(res: dict[str, Any]) -> list[str]:
    """The headline's ratio in every round, so the spread behind the median is visible."""
    head = next((s for s in res["service"] if (s["clients"], s["docs_per_request"]) == HEADLINE), None)
    if head is None:
        return []
    speeds = [r["words_per_s"] for r in head["rounds"]]
    raw = [r["sorted"]["words_per_s"] for r in res["raw_forward"]["rounds"]]
    line = "Headline, round by round: " + ", ".join(f"{w:,.0f} words/s = {w / x:.2f}x raw" for w, x in zip(speeds, raw))
    if res["spacy_transformers"]:
        ref = [r["words_per_s"] for r in res["spacy_transformers"]["rounds"]]
        line += "; " + ", ".join(f"{w / x:.2f}x" for w, x in zip(speeds, ref)) + " spacy-transformers"
    return [line + "."]


def server_side(res: dict[str, Any]) -> list[str]:
    """The server's own view of each load (its /metrics, read before and after), when it has one."""
    seen = [(r, r.median["server"]) for r in rows(res) if "server" in r.median]
    if not seen:
        return []
    lines = ["## Inside the server (its /metrics, median round)", "",
             "| setting | batches | spans/batch | forward ms/batch | model busy | mean queue wait ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.setting} | {m['batches']:.0f} | {m['spans_per_batch']:.1f} | {m['forward_ms_per_batch']:.0f} | "
              f"{m['model_busy']:.0%} | {m['queue_wait_ms_mean']:.0f} |" for r, m in seen]
    lines += ["", "model busy: forward time / wall time of the load; the rest is the model thread waiting "
              "(batch window, tokenizing, pooling and copying out, the event loop, the clients).", ""]
    if (eff := res["server"].get("padding_efficiency_whole_run")) is not None:
        lines += [f"Padding efficiency the server counted over the whole run (warmup and every setting): {eff:.2f}.", ""]
    return lines


def markdown(res: dict[str, Any]) -> str:
    m, st = res["machine"], res["settings"]
    lines = [
        "# tokvec benchmark",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu']}; {m['date']}; load average {m['load_avg_start'][0]:.2f} at start, "
        f"{m['load_avg_end'][0]:.2f} at end. The machine is shared: read the ratios, not the absolute numbers.",
        f"Input: {st['docs']} UD English EWT test docs, {st['words']:,} words, {st['pieces']:,} pieces in spans `{st['spans']}` "
        f"(spacy-transformers strided_spans 128/96); padded-piece budget {st['budget']}; all-MiniLM-L6-v2, fp32, CPU.",
        f"{st['rounds']} round(s), every setting once in each. Figures are each setting's median round; the ratio "
        "columns are paired within a round (this setting's words/s over the raw forward's, or spacy-transformers', "
        "in the same round), then the median is taken; the spread is the slowest and fastest round."
        + (" **Quick run: every 4th doc.**" if st["quick"] else ""),
        "",
        "| setting | words/s | spread | pieces/s | p50 ms | p99 ms | peak RSS | padding eff. | CPU ms/word | vs raw forward | vs spacy-transformers |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows(res):
        rss = f"{r.peak_rss / GB:.2f} GB" if r.peak_rss else "-"
        lines.append(f"| {r.setting} | {r.words_per_s:,.0f} | {r.spread[0]:,.0f}-{r.spread[1]:,.0f} | "
                     f"{r.median['pieces_per_s']:,.0f} | {_fmt(r.median.get('p50_ms'), '.0f')} | {_fmt(r.median.get('p99_ms'), '.0f')} | "
                     f"{rss} | {r.padding} | {r.cpu_ms_per_word} | {r.vs_raw:.2f}x | {_fmt(r.vs_ref, '.2f')}{'x' * (r.vs_ref is not None)} |")
    one = res["single_doc"]
    lines += ["", *paired(res), "", "Service rows: latency is per request (send to last row back); peak RSS is the server process's "
        "(kernel high-water mark over its life, else the largest 50 ms psutil sample); the service's padding "
        "efficiency per setting cannot be seen from outside, so it is an offline estimate: the server's own span "
        "lengths (Tokenize RPC), each group of clients x docs/request consecutive docs packed by length under the "
        "budget. Raw and spacy-transformers rows: peak RSS of their own process; padding counted from the batches they ran. "
        "CPU ms/word: CPU time per word of the processes doing the work (for the service, the server and the bench "
        "client), all threads, spin-waiting included.",
        "",
        f"Single doc ({one['words']} words, `{one['id']}`), median round: service p50 on an idle server "
        f"{one['service_idle_p50_ms']:.1f} ms (send to rows back, one request at a time); raw forward p50 "
        f"{one['raw_forward_ms_p50']:.1f} ms (tokenize + forward {one['raw_tokenize_forward_ms_p50']:.1f} ms); "
        f"difference within a round, median: {one['idle_minus_forward_ms']:+.1f} ms.",
        "",
        *server_side(res),
        "## Targets",
        "",
        "| target | measured | met |",
        "| --- | ---: | :---: |",
    ]
    lines += [f"| {t} | {v} | {'yes' if ok else '**no**'} |" for t, v, ok in targets(res)]
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = rows(res)
    colors = {"service": "tab:blue", "raw": "tab:gray", "reference": "tab:orange"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    y = range(len(table))
    speeds = [r.words_per_s for r in table]
    whiskers = [[w - r.spread[0] for w, r in zip(speeds, table)], [r.spread[1] - w for w, r in zip(speeds, table)]]
    left.barh(list(y), speeds, xerr=whiskers, capsize=3, color=[colors[r.kind] for r in table])
    left.set_yticks(list(y), [r.setting for r in table], fontsize=8)
    left.invert_yaxis()
    raw = res["raw_forward"]["sorted"]["median"]["words_per_s"]
    left.axvline(0.9 * raw, color="tab:gray", linestyle="--", label="0.9x raw forward (target)")
    if ref := res["spacy_transformers"]:
        left.axvline(1.7 * ref["median"]["words_per_s"], color="tab:orange", linestyle="--", label="1.7x spacy-transformers (target)")
    for i, r in enumerate(table):
        left.text(r.spread[1], i, f"  {r.words_per_s:,.0f} ({r.vs_raw:.2f}x raw)", va="center", fontsize=8)
    left.set_xlabel("words/s, median round; whiskers: slowest to fastest round (higher is better)")
    left.set_xlim(0, 1.4 * max(r.spread[1] for r in table))  # room for the labels
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    left.set_title(f"Throughput, EWT test, {res['settings']['spans']}", fontsize=10)

    single = [s for s in res["service"] if s["docs_per_request"] == 1]
    clients = [s["clients"] for s in single]
    right.plot(clients, [s["median"]["p50_ms"] for s in single], "o-", label="p50")
    right.plot(clients, [s["median"]["p99_ms"] for s in single], "s--", label="p99")
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xticks(clients, [str(c) for c in clients])
    right.set_xlabel("concurrent clients (1 doc per request)")
    right.set_ylabel("request latency, ms")
    right.legend(fontsize=8)
    right.set_title("Service latency", fontsize=10)
    m = res["machine"]
    fig.suptitle(f"tokvec, all-MiniLM-L6-v2 fp32 on {m['nproc']} CPU cores ({m['cpu']}), {m['date'][:10]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(res: dict[str, Any], out: Path) -> None:
    (out / "REPORT.md").write_text(markdown(res))
    plot(res, out / "throughput.png")


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"
    write_report(json.loads((folder / "results.json").read_text()), folder)
