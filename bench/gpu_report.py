"""REPORT.md of a GPU run (bench/gpu.py): the facts, the checks, the speeds and the targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGET_SERVICE = 0.85  # service words/s over the raw padded forward's, 64 clients, both sizes
TARGET_RAGGED = 1.2  # ragged raw forward over the raw length-sorted padded forward
TARGET_BUSY = 0.80  # BERT-base-sized, 64 clients


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def _load(result: dict[str, Any] | None, clients: int) -> dict[str, Any] | None:
    return next((x for x in (result or {}).get("loads", []) if x["clients"] == clients), None)


def _facts(r: dict[str, Any]) -> list[str]:
    f = r.get("facts") or {}
    smi = f.get("nvidia_smi")
    card = ", ".join(f"{k} {v}" for k, v in smi.items()) if isinstance(smi, dict) else str(smi)
    return [
        f"# tokvec GPU run, {r['date']}{' (DRY RUN on CPU: tiny encoders, figures mean nothing)' if r['dry_run'] else ''}",
        "",
        f"- card: {card}",
        f"- torch {f.get('torch')} (CUDA {f.get('cuda')}), transformers {f.get('transformers')}, {f.get('cpu_count')} CPU cores",
        f"- {r['docs']} docs, {r['words']:,} words (UD EWT test x {r['repeat']}), spans tokens:128:96, batch budget {r['batch_budget']} pieces, "
        f"speed runs in {r['speed_dtype']}; checks on {r['check_docs']} docs",
        f"- run took {r.get('seconds', 0):.0f} s",
        "",
    ]


def _checks(r: dict[str, Any]) -> list[str]:
    lines = [
        "## Rows",
        "",
        "| model | variant | attention | against | max abs diff | min cosine | check |",
        "| --- | --- | --- | --- | ---: | ---: | --- |",
    ]
    for model, variants in (r.get("parity") or {}).items():
        for name, v in (variants or {}).items():
            if v.get("reference"):
                lines.append(f"| {model} | {name} | {v['attention'] or 'padded'} | (reference) | | | |")
            else:
                lines.append(
                    f"| {model} | {name} | {v['attention'] or 'padded'} | {v['against']} | {v['max_abs_diff']:.2e} | {v['cosine_min']:.6f} | {_mark(v['ok'])} |"
                )
    lines += [
        "",
        "float32 rows: within 1e-4 of CPU float32 (TF32 off); float16/bfloat16 rows: cosine >= 0.999 per token against float32.",
        "",
        "## Device -> host copies (float16 rows on the wire)",
        "",
        "| variant | batches | bytes copied | pooled row bytes | piece row bytes | extra bytes per batch | check |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for d in r.get("device_to_host") or []:
        if d:
            extra = d["extra_bytes"] / max(d["batches"], 1)
            lines.append(
                f"| {d['variant']} | {d['batches']} | {d['device_to_host_bytes']:,} | {d['pooled_row_bytes']:,} | {d['piece_row_bytes']:,} | {extra:,.0f} | {_mark(d['ok'])} |"
            )
    return lines + [
        "",
        "Pooling and the cast run on the device: only pooled rows cross, and at most 256 bytes a batch beside them (a finite flag, mask counts).",
        "",
    ]


def _speed(r: dict[str, Any]) -> list[str]:
    lines = [
        "## Speed",
        "",
        "| model | setting | words/s | vs raw padded | p50 ms | p99 ms | GPU busy | GPU memory |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for model, s in (r.get("speed") or {}).items():
        raw = (s.get("raw_padded") or {}).get("words_per_s")

        def ratio(x: float | None) -> str:
            return f"{x / raw:.2f}x" if x and raw else ""

        if raw:
            mem = s["raw_padded"].get("peak_memory_bytes")
            cold = r["words"] / s["raw_padded"]["first_pass_seconds"]
            lines.append(
                f"| {model} | raw forward, length-sorted padded (first pass, every shape new: {cold:,.0f}) | {raw:,.0f} | 1.00x | | | | "
                f"{f'{mem / 2**20:,.0f} MiB' if mem else ''} |"
            )
        ragged = s.get("raw_ragged") or {}
        if ragged.get("words_per_s"):
            cold = r["words"] / ragged["first_pass_seconds"]
            lines.append(
                f"| {model} | raw forward, ragged, {ragged['attention']} attention (first pass: {cold:,.0f}) | {ragged['words_per_s']:,.0f} | "
                f"{ratio(ragged['words_per_s'])} | | | | |"
            )
            verdicts.append(
                f"- {model}: ragged raw forward {ratio(ragged['words_per_s'])} the padded one (target {TARGET_RAGGED}x): "
                f"{_mark(ragged['words_per_s'] / raw >= TARGET_RAGGED if raw else None)}"
            )
        for label in [k for k in s if k.startswith("service")]:
            for x in (s.get(label) or {}).get("loads", []):
                busy = f"{x['gpu_busy']:.0%}" if x.get("gpu_busy") is not None else ""
                mem = f"{x['gpu_memory_used_max_bytes'] / 2**20:,.0f} MiB" if x.get("gpu_memory_used_max_bytes") else ""
                lines.append(
                    f"| {model} | {label.replace('_', ' ')}, {x['clients']} clients x {x['docs_per_request']} docs | {x['words_per_s']:,.0f} | "
                    f"{ratio(x['words_per_s'])} | {x['p50_ms']:.0f} | {x['p99_ms']:.0f} | {busy} | {mem} |"
                )
        at64 = _load(s.get("service"), 64)
        if at64 and raw:
            verdicts.append(
                f"- {model}: service at 64 clients {ratio(at64['words_per_s'])} the raw padded forward (target {TARGET_SERVICE}x): "
                f"{_mark(at64['words_per_s'] / raw >= TARGET_SERVICE)}"
            )
        if model == "bert-base" and at64 and at64.get("gpu_busy") is not None:
            verdicts.append(
                f"- bert-base: GPU busy {at64['gpu_busy']:.0%} at 64 clients (target {TARGET_BUSY:.0%}): {_mark(at64['gpu_busy'] >= TARGET_BUSY)}"
            )
    return lines + ["", "## Targets", "", *(verdicts or ["- no speed figures"]), ""]


def _host(r: dict[str, Any]) -> list[str]:
    lines = ["## Where the host time goes", ""]
    null = r.get("null_forward") or {}
    for x in null.get("loads", []):
        server = x.get("server", {})
        lines.append(
            f"- null forward service (fake model on the device), {x['clients']} clients x {x['docs_per_request']} docs: "
            f"{x['words_per_s']:,.0f} words/s, p50 {x['p50_ms']:.0f} ms; {server.get('spans_per_batch', 0):.0f} spans per batch"
        )
    stages = r.get("host_stages") or {}
    if stages:
        lines += [
            "",
            f"One thread, {stages['words']:,} words, width {stages['width']}, on {stages['device']}:",
            "",
            "| stage | words/s |",
            "| --- | ---: |",
        ]
        lines += [f"| {k.replace('_', ' ')} | {v['words_per_s']:,.0f} |" for k, v in stages["stages"].items()]
        lines.append(f"| all three | {stages['all_stages_words_per_s']:,.0f} |")
    return lines + [""]


def _steps(r: dict[str, Any]) -> list[str]:
    lines = ["## Steps", "", "| step | status | seconds |", "| --- | --- | ---: |"]
    for name, v in r["steps"].items():
        detail = v.get("error") or v.get("why") or ""
        lines.append(f"| {name} | {v['status']}{': ' + detail[:200] if detail else ''} | {v.get('seconds', 0):.1f} |")
    return lines + [
        "",
        "ONNX on the GPU is not in this run: onnxruntime-gpu is too large to carry to the GPU machine.",
        "",
    ]


def write_report(results: dict[str, Any], out: Path) -> None:
    lines = _facts(results) + _checks(results) + _speed(results) + _host(results) + _steps(results)
    (out / "REPORT.md").write_text("\n".join(lines))
