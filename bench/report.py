"""results.json -> REPORT.md (tables and targets) and throughput.png.

python bench/report.py [bench/results]     # redraw from an existing results.json
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADLINES = (
    (8, 16),
    (8, 1),
)  # issue 2's 8 concurrent clients: as `tokvec embed` sends docs (16 a message), and one doc a call
FP32 = ("torch", "onnx")
GB = 1e9


@dataclass(frozen=True)
class Row:
    setting: str
    kind: str  # service | raw | reference
    median: dict[str, Any]  # the setting's median round
    spread: tuple[float, float]  # words/s, slowest and fastest round
    vs_raw: float  # words/s over its backend's raw forward, paired within a round, median
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


def service_name(backend: str, clients: int, per_request: int) -> str:
    return f"service ({backend}), {clients} client{'s' * (clients > 1)} x {per_request} doc{'s' * (per_request > 1)}/request"


def server_rss(res: dict[str, Any], backend: str) -> int | None:
    server = res["servers"][backend]
    rss = server["peak_rss_lifetime_bytes"] or server["peak_rss_sampled_bytes"]
    return int(rss) if rss else None


def rows(res: dict[str, Any]) -> list[Row]:
    out = []
    for name, b in res["backends"].items():
        ragged = name == "torch"
        out += [
            _row(
                service_name(name, s["clients"], s["docs_per_request"]),
                "service",
                s,
                server_rss(res, name),
                "1.00 (ragged)" if ragged else f"{s['offline_padding_efficiency']:.2f} (offline est.)",
            )
            for s in b["service"]
        ]
        raw = b["raw_forward"]
        for key, label in (("sorted", "length-sorted"), ("arrival", "arrival order")):
            out.append(
                _row(
                    f"raw {name} forward, {label}",
                    "raw",
                    raw[key],
                    raw["peak_rss_bytes"],
                    f"{raw[key]['median']['padding_efficiency']:.2f}",
                )
            )
    if ref := res["spacy_transformers"]:
        out.append(
            _row(
                "spacy-transformers 1.4, nlp.pipe",
                "reference",
                ref,
                ref["peak_rss_bytes"],
                f"{ref['median']['padding_efficiency']:.2f}",
            )
        )
    return out


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def targets(res: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, what was measured, met). Throughput targets use the paired ratios."""
    has_ref = res["spacy_transformers"] is not None
    out = []
    if torch := res["backends"].get("torch"):
        service = {(s["clients"], s["docs_per_request"]): s for s in torch["service"]}
        for c, d in HEADLINES:
            if head := service.get((c, d)):
                out.append(
                    (
                        f"torch service, {c} clients x {d} docs/request >= 0.9x raw forward words/s (issue 2)",
                        f"{head['vs_raw']:.2f}x",
                        head["vs_raw"] >= 0.9,
                    )
                )
                if has_ref:
                    out.append(
                        (
                            f"torch service, {c} clients x {d} docs/request >= 1.7x spacy-transformers words/s (issue 2)",
                            f"{head['vs_ref']:.2f}x",
                            head["vs_ref"] >= 1.7,
                        )
                    )
        if rss := server_rss(res, "torch"):
            out.append(("torch server peak RSS <= 1.2 GB (issue 2)", f"{rss / GB:.3f} GB", rss <= 1.2 * GB))
        one = torch["single_doc"]
        out.append(
            (
                f"torch: idle p50 of a {one['words']}-word doc <= raw forward + 3 ms (issue 4)",
                f"{one['service_minus_forward_ms_p50']:+.1f} ms",
                one["service_minus_forward_ms_p50"] <= 3,
            )
        )
    fp32 = [(name, s) for name, b in res["backends"].items() if name in FP32 for s in b["service"]]
    if fp32:
        name, top = max(fp32, key=lambda item: float(item[1]["median"]["words_per_s"]))
        setting = service_name(name, top["clients"], top["docs_per_request"])
        if has_ref:
            out.append(
                (
                    f"best fp32 service >= 2.5x spacy-transformers (issue 4): {setting}",
                    f"{top['vs_ref']:.2f}x",
                    top["vs_ref"] >= 2.5,
                )
            )
        for backend in (n for n in res["backends"] if n in FP32):
            best = max(res["backends"][backend]["service"], key=lambda s: float(s["vs_raw"]))
            out.append(
                (
                    f"{backend} service at saturation >= 0.9x its own raw forward (issue 4): {service_name(backend, best['clients'], best['docs_per_request'])}",
                    f"{best['vs_raw']:.2f}x",
                    best["vs_raw"] >= 0.9,
                )
            )
    return out


def paired(res: dict[str, Any]) -> list[str]:
    """The headline settings' ratios in every round, so the spread behind each median is visible."""
    torch = res["backends"].get("torch")
    if torch is None:
        return []
    raw = [r["sorted"]["words_per_s"] for r in torch["raw_forward"]["rounds"]]
    lines = []
    for c, d in HEADLINES:
        head = next((s for s in torch["service"] if (s["clients"], s["docs_per_request"]) == (c, d)), None)
        if head is None:
            continue
        speeds = [r["words_per_s"] for r in head["rounds"]]
        line = f"torch, {c} clients x {d} docs/request, round by round: " + ", ".join(
            f"{w:,.0f} words/s = {w / x:.2f}x raw" for w, x in zip(speeds, raw)
        )
        if res["spacy_transformers"]:
            ref = [r["words_per_s"] for r in res["spacy_transformers"]["rounds"]]
            line += "; " + ", ".join(f"{w / x:.2f}x" for w, x in zip(speeds, ref)) + " spacy-transformers"
        lines += [line + ".", ""]
    return lines


def agreement(res: dict[str, Any]) -> list[str]:
    seen = res.get("agreement_with_torch") or {}
    if not seen:
        return []
    lines = [
        "## Rows against the torch server's",
        "",
        "| backend | tokens | max abs diff | cosine mean | cosine min |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {name} | {a['tokens']:,} | {a['max_abs_diff']:.1e} | {a['cosine_mean']:.4f} | {a['cosine_min']:.4f} |"
        for name, a in seen.items()
    ]
    return [
        *lines,
        "",
        "int8 is reported beside fp32, not counted in the targets: what its speed costs in accuracy is this cosine.",
        "",
    ]


def server_side(res: dict[str, Any]) -> list[str]:
    """The server's own view of each load (its /metrics, read before and after), when it has one."""
    seen = [(r, r.median["server"]) for r in rows(res) if "server" in r.median]
    if not seen:
        return []
    lines = [
        "## Inside the server (its /metrics, median round)",
        "",
        "| setting | batches | spans/batch | forward ms/batch | model busy | mean queue wait ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.setting} | {m['batches']:.0f} | {m['spans_per_batch']:.1f} | {m['forward_ms_per_batch']:.0f} | "
        f"{m['model_busy']:.0%} | {m['queue_wait_ms_mean']:.0f} |"
        for r, m in seen
    ]
    lines += [
        "",
        "model busy: forward time / wall time of the load; the rest is the model thread waiting for work, or "
        "pooling and copying out.",
        "",
    ]
    return lines


def single_docs(res: dict[str, Any]) -> list[str]:
    lines = []
    for name, b in res["backends"].items():
        one = b["single_doc"]
        lines.append(
            f"- {name}: service p50 on an idle server {one['service_ms_p50']:.1f} ms (send to rows back, one request at a time); "
            f"raw forward p50 {one['forward_ms_p50']:.1f} ms (tokenize + forward {one['tokenize_forward_ms_p50']:.1f} ms); "
            f"paired difference, median: {one['service_minus_forward_ms_p50']:+.1f} ms."
        )
    return lines


def markdown(res: dict[str, Any]) -> str:
    m, st = res["machine"], res["settings"]
    doc = next(iter(res["backends"].values()))["single_doc"]
    lines = [
        "# tokvec benchmark",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu']}; {m['date']}; load average {m['load_avg_start'][0]:.2f} at start, "
        f"{m['load_avg_end'][0]:.2f} at end. The machine is shared: read the ratios, not the absolute numbers.",
        f"Input: {st['docs']} UD English EWT test docs, {st['words']:,} words, {st['pieces']:,} pieces in spans `{st['spans']}` "
        f"(spacy-transformers strided_spans 128/96); piece budget {st['budget']}; all-MiniLM-L6-v2, CPU; backends "
        f"{', '.join(res['backends'])} (onnx: `tokvec export-onnx`; onnx-int8: `--quantize int8`).",
        f"{st['rounds']} round(s), every setting once in each. Figures are each setting's median round; the ratio "
        "columns are paired within a round (this setting's words/s over the length-sorted raw forward of its own backend, "
        "or over spacy-transformers', in the same round), then the median is taken; the spread is the slowest and fastest round."
        + (" **Quick run: every 4th doc.**" if st["quick"] else ""),
        "",
        "| setting | words/s | spread | pieces/s | p50 ms | p99 ms | peak RSS | padding eff. | CPU ms/word | vs raw forward | vs spacy-transformers |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows(res):
        rss = f"{r.peak_rss / GB:.2f} GB" if r.peak_rss else "-"
        lines.append(
            f"| {r.setting} | {r.words_per_s:,.0f} | {r.spread[0]:,.0f}-{r.spread[1]:,.0f} | "
            f"{r.median['pieces_per_s']:,.0f} | {_fmt(r.median.get('p50_ms'), '.0f')} | {_fmt(r.median.get('p99_ms'), '.0f')} | "
            f"{rss} | {r.padding} | {r.cpu_ms_per_word} | {r.vs_raw:.2f}x | {_fmt(r.vs_ref, '.2f')}{'x' * (r.vs_ref is not None)} |"
        )
    lines += [
        "",
        *paired(res),
        "Service rows: latency is per request (send to last row back); peak RSS is the server process's "
        "(kernel high-water mark over its life, else the largest 50 ms psutil sample). The torch server runs ragged batches "
        "(no padding); the onnx servers pad, and their padding efficiency per setting cannot be seen from outside, so it is "
        "an offline estimate: the server's own span lengths (Tokenize RPC), each group of clients x docs/request consecutive "
        "docs packed by length under the budget. Raw and spacy-transformers rows: peak RSS of their own process; padding "
        "counted from the batches they ran. CPU ms/word: CPU time per word of the processes doing the work (for the service, "
        "the server and the bench client), all threads, spin-waiting included.",
        "",
        f"Single doc ({doc['words']} words, `{doc['id']}`), each figure its median over the rounds. Each round alternates blocks of {doc['rounds'][0]['block']} "
        f"service calls and {doc['rounds'][0]['block']} raw forwards from one process, {doc['rounds'][0]['pairs']} pairs of blocks "
        "(bench/single_doc.py); the difference is paired block by block:",
        "",
        *single_docs(res),
        "",
        *agreement(res),
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
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 7), gridspec_kw={"width_ratios": [3, 2]})
    y = range(len(table))
    speeds = [r.words_per_s for r in table]
    whiskers = [[w - r.spread[0] for w, r in zip(speeds, table)], [r.spread[1] - w for w, r in zip(speeds, table)]]
    left.barh(list(y), speeds, xerr=whiskers, capsize=3, color=[colors[r.kind] for r in table])
    left.set_yticks(list(y), [r.setting for r in table], fontsize=8)
    left.invert_yaxis()
    if torch := res["backends"].get("torch"):
        raw = torch["raw_forward"]["sorted"]["median"]["words_per_s"]
        left.axvline(0.9 * raw, color="tab:gray", linestyle="--", label="0.9x raw torch forward (target)")
    if ref := res["spacy_transformers"]:
        left.axvline(
            1.7 * ref["median"]["words_per_s"],
            color="tab:orange",
            linestyle="--",
            label="1.7x spacy-transformers (target)",
        )
    for i, r in enumerate(table):
        left.text(r.spread[1], i, f"  {r.words_per_s:,.0f} ({r.vs_raw:.2f}x raw)", va="center", fontsize=8)
    left.set_xlabel("words/s, median round; whiskers: slowest to fastest round (higher is better)")
    left.set_xlim(0, 1.4 * max(r.spread[1] for r in table))  # room for the labels
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    left.set_title(f"Throughput, EWT test, {res['settings']['spans']}", fontsize=10)

    for name, b in res["backends"].items():
        single = [s for s in b["service"] if s["docs_per_request"] == 1]
        clients = [s["clients"] for s in single]
        line = right.plot(clients, [s["median"]["p50_ms"] for s in single], "o-", label=f"{name} p50")[0]
        right.plot(clients, [s["median"]["p99_ms"] for s in single], "s--", color=line.get_color(), label=f"{name} p99")
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xticks(clients, [str(c) for c in clients])
    right.set_xlabel("concurrent clients (1 doc per request)")
    right.set_ylabel("request latency, ms")
    right.legend(fontsize=8)
    right.set_title("Service latency", fontsize=10)
    m = res["machine"]
    fig.suptitle(f"tokvec, all-MiniLM-L6-v2 on {m['nproc']} CPU cores ({m['cpu']}), {m['date'][:10]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(res: dict[str, Any], out: Path) -> None:
    (out / "REPORT.md").write_text(markdown(res))
    plot(res, out / "throughput.png")


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"
    write_report(json.loads((folder / "results.json").read_text()), folder)
